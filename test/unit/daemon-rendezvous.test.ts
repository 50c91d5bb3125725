/** Who runs which sync among several daemons: rendezvous hashing and the --syncs filter. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { admits, preferredDaemon } from '../../src/engine/daemon.js';

const daemon = (id: number, syncs: string[] | null = null): { id: number; syncs: string[] | null } => ({ id, syncs });
const names = Array.from({ length: 300 }, (_, i) => `sync_${i}`);

describe('sync placement among daemons', () => {
  it('admits by name or * pattern, and everything without a filter', () => {
    assert.equal(admits(null, 'orders'), true);
    assert.equal(admits([], 'orders'), true);
    assert.equal(admits(['orders'], 'orders'), true);
    assert.equal(admits(['orders'], 'orders2'), false);
    assert.equal(admits(['eu_*', 'x'], 'eu_shop'), true);
    assert.equal(admits(['eu_*'], 'us_shop'), false);
    assert.equal(admits(['*_a'], 'b_a'), true);
  });

  it('spreads syncs evenly and gives every sync exactly one owner', () => {
    const live = [daemon(1), daemon(2), daemon(3)];
    const counts = new Map<number, number>();
    for (const n of names) {
      const d = preferredDaemon(n, live)!;
      counts.set(d.id, (counts.get(d.id) ?? 0) + 1);
    }
    for (const id of [1, 2, 3]) assert.ok((counts.get(id) ?? 0) > 60, `daemon ${id} runs ${counts.get(id)} of 300`);
  });

  it('moves only the syncs of a daemon that leaves, and only a share to one that joins', () => {
    const three = [daemon(1), daemon(2), daemon(3)];
    const two = [daemon(1), daemon(3)];
    for (const n of names) {
      const before = preferredDaemon(n, three)!.id;
      const after = preferredDaemon(n, two)!.id;
      if (before !== 2) assert.equal(after, before, `${n} moved although its daemon stayed`);
    }
    const four = [...three, daemon(4)];
    const moved = names.filter((n) => preferredDaemon(n, three)!.id !== preferredDaemon(n, four)!.id);
    assert.ok(moved.every((n) => preferredDaemon(n, four)!.id === 4), 'a joining daemon only takes syncs');
    assert.ok(moved.length > 30 && moved.length < 120, `${moved.length} of 300 moved`);
  });

  it('places a sync only on daemons whose filter admits it, and nowhere when none does', () => {
    const live = [daemon(1, ['eu_*']), daemon(2, ['us_*']), daemon(3)];
    assert.ok([1, 3].includes(preferredDaemon('eu_shop', live)!.id));
    assert.ok([2, 3].includes(preferredDaemon('us_shop', live)!.id));
    assert.equal(preferredDaemon('asia', live)!.id, 3);
    assert.equal(preferredDaemon('asia', [daemon(1, ['eu_*'])]), undefined);
  });
});
