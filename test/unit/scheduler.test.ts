import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Backoff } from '../../src/engine/backoff.js';
import { Scheduler, type RunEnd, type ScheduledRunner, type SyncPlan, type SyncState, type Timers } from '../../src/engine/scheduler.js';
import type { RunKind, RunResult } from '../../src/engine/types.js';
import { WakeCoordinator } from '../../src/engine/wake.js';

const log = pino({ level: 'silent' });

/** Let every promise chain and microtask that is ready settle. */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/** A clock that moves only when the test says so. */
class ManualTimers implements Timers {
  t = 0;
  private seq = 0;
  private readonly q = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.q.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.q.delete(handle as number);
  }
  /** Delays of the timers waiting now, from the current time. */
  delays(): number[] {
    return [...this.q.values()].map((x) => x.at - this.t).sort((a, b) => a - b);
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.q) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.q.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

/** A runner whose runs end when the test says so (or at once, with `auto`). */
class FakeRunner implements ScheduledRunner {
  readonly calls: { kind: RunKind; kickId: number | undefined }[] = [];
  active = 0;
  maxActive = 0;
  auto: ((kind: RunKind) => Partial<RunResult>) | undefined;
  throwNext: Error | undefined;
  private readonly waiting: Array<(o: Partial<RunResult>) => void> = [];
  private nextId = 1;

  constructor(readonly sync: string) {}

  run(kind: RunKind, opts: { kickId?: number }): Promise<RunResult> {
    this.calls.push({ kind, kickId: opts.kickId });
    if (this.throwNext) {
      const err = this.throwNext;
      this.throwNext = undefined;
      return Promise.reject(err);
    }
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise((resolve) => {
      const finish = (o: Partial<RunResult>): void => {
        this.active--;
        resolve({
          runId: this.nextId++, sync: this.sync, kind, status: 'empty', inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {}, durationMs: 1, ...o,
        });
      };
      if (this.auto) {
        const o = this.auto(kind);
        queueMicrotask(() => finish(o));
      } else this.waiting.push(finish);
    });
  }

  /** End the oldest run in progress. */
  finish(o: Partial<RunResult> = { status: 'empty' }): void {
    const f = this.waiting.shift();
    assert.ok(f, `no run of ${this.sync} is in progress`);
    f(o);
  }

  get inProgress(): number {
    return this.waiting.length;
  }
}

const PLAN: SyncPlan = { autokick: true, fullcopyOnly: false, checktimeMs: 60_000, fullcopyIntervalMs: undefined, onetimecopy: 0, paused: false, pauseMaxMs: 100 };

function setup(opts: { random?: () => number } = {}) {
  const timers = new ManualTimers();
  const states = new Map<string, SyncState[]>();
  const ends: { sync: string; end: RunEnd }[] = [];
  const paused: { sync: string; reason: string }[] = [];
  const quiet: string[] = [];
  const scheduler = new Scheduler({
    log,
    timers,
    backoff: new Backoff({ minMs: 200, maxMs: 30_000, random: opts.random ?? (() => 0.999999) }),
    contentionBackoff: new Backoff({ minMs: 50, maxMs: 2000, random: opts.random ?? (() => 0.999999) }),
    hooks: {
      stateChanged: (sync, s) => void states.set(sync, [...(states.get(sync) ?? []), s]),
      runEnded: (sync, end) => void ends.push({ sync, end }),
      pauseRequested: (sync, reason) => void paused.push({ sync, reason }),
      quiescent: (sync) => void quiet.push(sync),
    },
  });
  const last = (sync: string): SyncState => states.get(sync)!.at(-1)!;
  return { timers, scheduler, states, ends, paused, quiet, last };
}

describe('the scheduler', () => {
  it('coalesces a burst of wake-ups during a run into exactly one follow-up run', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.equal(r.calls.length, 1);
    for (let i = 0; i < 50; i++) scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.equal(r.calls.length, 1, 'nothing starts while the sync runs');
    r.finish({ status: 'empty' });
    await flush();
    assert.equal(r.calls.length, 2, 'one follow-up run for the whole burst');
    r.finish({ status: 'empty' });
    await flush();
    assert.equal(r.calls.length, 2, 'and no more');
    assert.equal(r.maxActive, 1);
  });

  it('coalesces requests made in the same tick into one run', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    scheduler.request('s', { reason: 'check' });
    scheduler.request('s', { reason: 'catchup' });
    await flush();
    assert.equal(r.calls.length, 1);
    r.finish();
    await flush();
    assert.equal(r.calls.length, 1);
  });

  it('never runs one sync twice at once, and runs different syncs concurrently', async () => {
    const { scheduler } = setup();
    const a = new FakeRunner('a');
    const b = new FakeRunner('b');
    scheduler.add('a', a, PLAN);
    scheduler.add('b', b, PLAN);
    for (let round = 0; round < 5; round++) {
      scheduler.request('a', { reason: 'wake' });
      scheduler.request('b', { reason: 'kick', kickId: round });
      await flush();
      assert.equal(a.active + b.active, 2, 'both syncs run at the same time');
      scheduler.request('a', { reason: 'check' });
      await flush();
      a.finish({ status: 'empty' });
      b.finish({ status: 'empty' });
      await flush();
      while (a.inProgress) {
        a.finish({ status: 'empty' });
        await flush();
      }
      while (b.inProgress) {
        b.finish({ status: 'empty' });
        await flush();
      }
    }
    assert.equal(a.maxActive, 1);
    assert.equal(b.maxActive, 1);
  });

  it('polls again at once after a run that did something, until a run is empty', async () => {
    const { scheduler, quiet } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    await flush();
    quiet.length = 0;
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'good', inserted: 5 });
    await flush();
    assert.equal(r.calls.length, 2);
    r.finish({ status: 'good', inserted: 1 });
    await flush();
    assert.equal(r.calls.length, 3);
    assert.deepEqual(quiet, [], 'not quiescent while busy');
    r.finish({ status: 'empty' });
    await flush();
    assert.equal(r.calls.length, 3);
    assert.deepEqual(quiet, ['s']);
  });

  it('retries a transient failure with exponential backoff, stalls the sync, and recovers by itself', async () => {
    const { scheduler, timers, last, ends } = setup();
    const r = new FakeRunner('s');
    const other = new FakeRunner('o');
    other.auto = () => ({ status: 'empty' });
    scheduler.add('s', r, PLAN);
    scheduler.add('o', other, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      r.finish({ status: 'failed', error: 'db B is unreachable', transient: true });
      await flush();
      assert.equal(last('s').state, 'stalled');
      assert.equal(last('s').lastError, 'db B is unreachable');
      assert.equal(last('s').attempts, i + 1);
      const retry = ends.at(-1)!.end.retryInMs!;
      delays.push(retry);
      assert.equal(r.inProgress, 0, 'no retry before the backoff elapsed');
      scheduler.request('s', { reason: 'wake' });
      await timers.advance(retry - 1);
      assert.equal(r.inProgress, 0, 'a wake-up does not cut the backoff short');
      await timers.advance(1);
      assert.equal(r.inProgress, 1, `retry ${i + 1} after ${retry} ms`);
    }
    // random() ≈ 1: each delay is its ceiling — 200 ms doubling, capped at 30 s.
    assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
    // Another sync is not held back by this one's stall.
    assert.ok(other.calls.length >= 1, 'its periodic checks ran meanwhile');
    const before = other.calls.length;
    scheduler.request('o', { reason: 'wake' });
    await flush();
    assert.equal(other.calls.length, before + 1);
    r.finish({ status: 'good', inserted: 3 });
    await flush();
    assert.equal(last('s').state, 'running', 'caught up, and polling again after a good run');
    assert.equal(last('s').attempts, 0);
    r.finish({ status: 'empty' });
    await flush();
    assert.equal(last('s').state, 'idle');
    assert.equal(last('s').lastError, 'db B is unreachable', 'the last error stays as history');
  });

  it('retries a run that lost to local writes (contention) on a short backoff, capped at 2 s', async () => {
    const { scheduler, timers, ends } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      r.finish({ status: 'failed', error: 'db B: could not serialize access due to concurrent update (SQLSTATE 40001)', transient: true, contention: true });
      await flush();
      const retry = ends.at(-1)!.end.retryInMs!;
      delays.push(retry);
      await timers.advance(retry);
      assert.equal(r.inProgress, 1, `retry ${i + 1} after ${retry} ms`);
    }
    assert.deepEqual(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
  });

  it('draws backoff delays with jitter within [ceiling/2, ceiling)', () => {
    let x = 0;
    const b = new Backoff({ minMs: 200, maxMs: 30_000, random: () => (x = (x + 0.37) % 1) });
    for (let attempt = 1; attempt < 20; attempt++) {
      const c = b.ceiling(attempt);
      const d = b.delay(attempt);
      assert.ok(d >= c / 2 && d <= c, `${d} in [${c / 2}, ${c}]`);
    }
    assert.equal(b.ceiling(100), 30_000);
  });

  it('after a run that moved many rows, waits as long as it took (at most 100 ms), after a few rows half that; a kick does not wait', async () => {
    const { scheduler, timers, quiet } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    await flush();
    quiet.length = 0;
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'good', inserted: 19, durationMs: 30 });
    await flush();
    assert.equal(r.calls.length, 1, 'a few rows: the next run waits half the run time');
    await timers.advance(14);
    assert.equal(r.calls.length, 1);
    await timers.advance(1);
    assert.equal(r.calls.length, 2, 'the next run starts after half the run time');
    r.finish({ status: 'empty', durationMs: 30 });
    await flush();
    assert.equal(r.calls.length, 2, 'an empty run is not followed by another');
    scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.equal(r.calls.length, 3, 'a wake-up after an empty run runs at once');
    quiet.length = 0;
    r.finish({ status: 'good', inserted: 15, deleted: 5, durationMs: 30 });
    await flush();
    assert.equal(r.calls.length, 3, 'many rows: the next run waits');
    assert.deepEqual(quiet, [], 'not quiescent while pacing');
    scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.equal(r.calls.length, 3, 'a wake-up does not cut the pause');
    await timers.advance(29);
    assert.equal(r.calls.length, 3);
    await timers.advance(1);
    assert.equal(r.calls.length, 4, 'the next run starts after the run time');
    r.finish({ status: 'good', inserted: 500, durationMs: 5000 });
    await flush();
    assert.ok(timers.delays().includes(100), `capped at 100 ms: ${timers.delays().join(',')}`);
    scheduler.request('s', { reason: 'kick', kickId: 3 });
    await flush();
    assert.equal(r.calls.length, 5, 'a kick runs at once');
    assert.equal(r.calls.at(-1)!.kickId, 3);
  });

  it('a sync that runs only when kicked gets no paced follow-up run, however many rows it moved', async () => {
    const { scheduler, timers } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, autokick: false });
    scheduler.request('s', { reason: 'kick', kickId: 1 });
    await flush();
    r.finish({ status: 'good', inserted: 500, durationMs: 30 });
    await flush();
    await timers.advance(1000);
    assert.equal(r.calls.length, 1, 'no follow-up after a busy run');
    scheduler.request('s', { reason: 'kick', kickId: 2 });
    await flush();
    r.finish({ status: 'good', inserted: 3, durationMs: 30 });
    await flush();
    await timers.advance(1000);
    assert.equal(r.calls.length, 2, 'nor after a light one');
  });

  it('never pauses with pauseMaxMs 0 (the run_pause_max_ms setting)', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, pauseMaxMs: 0 });
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'good', inserted: 5000, durationMs: 80 });
    await flush();
    assert.equal(r.calls.length, 2);
  });

  it('ends a backoff wait at once for a kick', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'failed', transient: true, error: 'x' });
    await flush();
    assert.equal(r.inProgress, 0);
    scheduler.request('s', { reason: 'kick', kickId: 7 });
    await flush();
    assert.equal(r.inProgress, 1);
    assert.equal(r.calls.at(-1)!.kickId, 7);
  });

  it('retries a non-transient failure on the slower periodic schedule', async () => {
    const { scheduler, timers, last, ends } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, checktimeMs: 5000 });
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'failed', error: 'relation "t" does not exist' });
    await flush();
    assert.equal(last('s').state, 'stalled');
    assert.equal(ends.at(-1)!.end.retryInMs, 5000);
    await timers.advance(4999);
    assert.equal(r.inProgress, 0);
    await timers.advance(1);
    assert.equal(r.inProgress, 1);
  });

  it('pauses a sync whose run asks for it, and runs it no more until resumed', async () => {
    const { scheduler, timers, paused, last } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, checktimeMs: 1000 });
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'failed', error: 'column "x" of public.t differs on db B', pause: true });
    await flush();
    assert.deepEqual(paused, [{ sync: 's', reason: 'column "x" of public.t differs on db B' }]);
    assert.equal(last('s').state, 'paused');
    assert.equal(last('s').lastError, 'column "x" of public.t differs on db B');
    assert.equal(scheduler.request('s', { reason: 'wake' }), false);
    await timers.advance(60_000);
    assert.equal(r.calls.length, 1, 'no retry, no periodic check while paused');
    assert.ok(scheduler.isQuiescent('s'));
    scheduler.update('s', { ...PLAN, checktimeMs: 1000, paused: false });
    await flush();
    assert.equal(r.calls.length, 2, 'a resumed sync catches up at once');
    assert.equal(last('s').attempts, 0);
  });

  it('aborted runs pause the sync like any run that asks for it', async () => {
    const { scheduler, paused, last } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'aborted', error: 'conflict on public.t (id)=(1) with strategy abort', pause: true });
    await flush();
    assert.equal(paused.length, 1);
    assert.equal(last('s').state, 'paused');
  });

  it('runs a sync with autokick off only when kicked', async () => {
    const { scheduler, timers } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, autokick: false, checktimeMs: 1000 });
    assert.equal(scheduler.request('s', { reason: 'wake' }), false);
    assert.equal(scheduler.request('s', { reason: 'catchup' }), false);
    await timers.advance(10_000);
    assert.equal(r.calls.length, 0, 'no wake-up run and no periodic check');
    assert.equal(scheduler.request('s', { reason: 'kick', kickId: 1 }), true);
    await flush();
    assert.equal(r.calls.length, 1);
    r.finish({ status: 'good', inserted: 2 });
    await flush();
    assert.equal(r.calls.length, 1, 'no busy polling either');
  });

  it('runs the periodic check checktime after the last run ended', async () => {
    const { scheduler, timers } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, checktimeMs: 1000 });
    await timers.advance(999);
    assert.equal(r.calls.length, 0);
    await timers.advance(1);
    assert.equal(r.calls.length, 1);
    await timers.advance(5000);
    r.finish({ status: 'empty' });
    await flush();
    assert.equal(r.calls.length, 1, 'no check fires during a run');
    await timers.advance(999);
    assert.equal(r.calls.length, 1);
    await timers.advance(1);
    assert.equal(r.calls.length, 2);
    assert.deepEqual([...new Set(r.calls.map((c) => c.kind))], ['delta']);
  });

  it('answers every coalesced kick with the one run that served them', async () => {
    const { scheduler, ends } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    scheduler.request('s', { reason: 'kick', kickId: 10 });
    scheduler.request('s', { reason: 'kick', kickId: 11 });
    r.finish();
    await flush();
    assert.deepEqual(ends.at(-1)!.end.kickIds, []);
    r.finish();
    await flush();
    assert.deepEqual(ends.at(-1)!.end.kickIds, [10, 11]);
    assert.equal(r.calls.at(-1)!.kickId, 10);
  });

  it('runs a onetimecopy first, then the deltas captured meanwhile', async () => {
    const { scheduler, last } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, { ...PLAN, autokick: false, onetimecopy: 1 });
    scheduler.request('s', { reason: 'kick', kickId: 1 });
    await flush();
    assert.equal(r.calls[0]!.kind, 'onetimecopy');
    assert.equal(last('s').state, 'copying');
    r.finish({ status: 'good', inserted: 1000 });
    await flush();
    assert.equal(r.calls[1]!.kind, 'delta');
    assert.equal(scheduler.plan('s')!.onetimecopy, 0);
  });

  it('refreshes fullcopy targets on their interval, and a kick of a fullcopy-only sync does a fullcopy', async () => {
    const { scheduler, timers } = setup();
    const r = new FakeRunner('s');
    r.auto = () => ({ status: 'good' });
    scheduler.add('s', r, { ...PLAN, fullcopyOnly: true, fullcopyIntervalMs: 10_000 });
    assert.equal(scheduler.request('s', { reason: 'wake' }), false, 'changes do not run a fullcopy-only sync');
    await timers.advance(10_000);
    assert.deepEqual(r.calls.map((c) => c.kind), ['fullcopy']);
    await timers.advance(10_000);
    assert.deepEqual(r.calls.map((c) => c.kind), ['fullcopy', 'fullcopy']);
    scheduler.request('s', { reason: 'kick', kind: 'fullcopy', kickId: 3 });
    await flush();
    assert.deepEqual(r.calls.map((c) => c.kind), ['fullcopy', 'fullcopy', 'fullcopy']);
  });

  it('counts a runner that throws as a failed run and goes on', async () => {
    const { scheduler, last, ends } = setup();
    const r = new FakeRunner('s');
    r.throwNext = Object.assign(new Error('Connection terminated unexpectedly'), {});
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.equal(last('s').state, 'stalled');
    assert.equal(ends[0]!.end.result.status, 'failed');
    assert.equal(ends[0]!.end.result.transient, true, 'a lost connection is transient');
  });

  it('runs maintenance between runs, never during one', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    const order: string[] = [];
    const done = scheduler.maintain('s', async () => {
      order.push(`maintain while ${r.active} active`);
    });
    scheduler.request('s', { reason: 'wake' });
    await flush();
    assert.deepEqual(order, []);
    r.finish();
    await done;
    await flush();
    assert.deepEqual(order, ['maintain while 0 active']);
    assert.equal(r.calls.length, 2, 'the follow-up run comes after the maintenance');
  });

  it('says a sync is quiescent again after maintenance (a reload), not only after runs', async () => {
    const { scheduler, quiet } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    r.finish({ status: 'empty' });
    await flush();
    assert.deepEqual(quiet, ['s']);
    let release!: () => void;
    const done = scheduler.maintain('s', () => new Promise<void>((resolve) => (release = resolve)));
    await flush();
    assert.equal(scheduler.isQuiescent('s'), false, 'busy while reloading');
    release();
    await done;
    await flush();
    assert.deepEqual(quiet, ['s', 's'], 'the hook is owed once the reload is done');
  });

  it('stops after the runs in progress and hands back the kicks it will not answer', async () => {
    const { scheduler } = setup();
    const r = new FakeRunner('s');
    scheduler.add('s', r, PLAN);
    scheduler.request('s', { reason: 'wake' });
    await flush();
    scheduler.request('s', { reason: 'kick', kickId: 42 });
    let stopped = false;
    const stopping = scheduler.stop().then((k) => {
      stopped = true;
      return k;
    });
    await flush();
    assert.equal(stopped, false, 'waits for the run in progress');
    assert.equal(scheduler.request('s', { reason: 'wake' }), false);
    r.finish();
    assert.deepEqual(await stopping, [42]);
    await flush();
    assert.equal(r.calls.length, 1, 'nothing new started');
  });
});

describe('the wake-up coordinator', () => {
  function coordinator() {
    const flags: { db: string; idle: boolean }[] = [];
    const busy = new Set<string>();
    const pending = new Set<string>();
    const requested: string[] = [];
    const syncsByDb: Record<string, string[]> = { A: ['s1', 's2'], B: ['s2'] };
    const w = new WakeCoordinator({
      log,
      syncsOf: (db) => syncsByDb[db] ?? [],
      dbsOf: (sync) => Object.keys(syncsByDb).filter((db) => syncsByDb[db]!.includes(sync)),
      isQuiescent: (s) => !busy.has(s),
      hasPending: async (s) => pending.has(s),
      request: (s) => void requested.push(s),
      setIdle: async (db, idle) => void flags.push({ db, idle }),
    });
    return { w, flags, busy, pending, requested, syncsByDb };
  }

  it('marks a db busy on a wake-up and schedules every sync that reads it', async () => {
    const { w, flags, requested } = coordinator();
    w.wake('A');
    await w.settled();
    assert.deepEqual(flags, [{ db: 'A', idle: false }]);
    assert.deepEqual(requested, ['s1', 's2']);
  });

  it('marks a db idle only when no sync reading it runs, then looks once more for changes', async () => {
    const { w, flags, busy, pending, requested } = coordinator();
    w.connected('A');
    w.connected('B');
    await w.settled();
    flags.length = 0;
    requested.length = 0;
    busy.add('s2');
    w.quiescent('s1');
    await flush();
    assert.equal(flags.length, 0, 's2 still runs on A');
    busy.delete('s2');
    pending.add('s2');
    w.quiescent('s2');
    await flush();
    assert.deepEqual(flags.sort((a, b) => a.db.localeCompare(b.db)), [{ db: 'A', idle: true }, { db: 'B', idle: true }]);
    assert.deepEqual(requested.sort(), ['s2', 's2'], 'a commit that raced the flag is picked up');
  });

  it('does not leave a db busy when the sync that kept it busy stops reading it (paused, removed) while it ran', async () => {
    const { w, flags, busy, syncsByDb } = coordinator();
    w.connected('A');
    await w.settled();
    flags.length = 0;
    w.runStarting('s2');
    busy.add('s2');
    w.quiescent('s1');
    await flush();
    await w.settled();
    assert.deepEqual(flags.filter((f) => f.db === 'A'), [], 's2 runs on A: A stays busy');
    assert.equal(w.applied('A'), false);
    // s2 is paused while it runs: it reads no db any more, and its run ends.
    syncsByDb.A = ['s1'];
    syncsByDb.B = [];
    busy.delete('s2');
    w.quiescent('s2');
    await flush();
    await w.settled();
    assert.deepEqual(flags.filter((f) => f.db === 'A'), [{ db: 'A', idle: true }]);
  });

  it('looks again at every db when the syncs reading them change', async () => {
    const { w, flags, busy, syncsByDb } = coordinator();
    w.connected('A');
    await w.settled();
    busy.add('s2');
    w.quiescent('s1');
    await flush();
    await w.settled();
    flags.length = 0;
    // s2 is removed while busy with a reload: nothing of s2 will say it is quiescent.
    syncsByDb.A = ['s1'];
    w.recheck();
    await flush();
    await w.settled();
    assert.deepEqual(flags, [{ db: 'A', idle: true }]);
  });

  it('keeps the flag writes of a db in the order they were decided', async () => {
    const { w, flags } = coordinator();
    w.connected('B');
    w.quiescent('s2');
    w.runStarting('s2');
    await flush();
    await w.settled();
    assert.deepEqual(flags.filter((f) => f.db === 'B').map((f) => f.idle), [false, true, false]);
    assert.equal(w.applied('B'), false);
  });
});
