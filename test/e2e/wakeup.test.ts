/**
 * No wake-up is lost while a running daemon's configuration changes under it:
 * after pause / resume / add / remove / update / SIGHUP (in the order of the
 * observe test, then in random orders and with random gaps), a single write
 * reaches the target within about 2 s, without a kick. The periodic check is
 * 60 s here, so a lost wake-up shows as a timeout.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useDaemonProcess } from '../helpers/daemon.js';
import { ok, useClusters, waitFor } from '../helpers/env.js';
import { addSync, setupControl } from '../helpers/sync.js';

const env = useClusters(2);
const daemon = useDaemonProcess(env, {}, 'wakeup');
/** How long one write may take to arrive (the target's own latency is a few ms). */
const ARRIVAL_MS = 2500;
let nextId = 1;
const ROUNDS = 10;

async function writeArrives(what: string): Promise<void> {
  const id = nextId++;
  const at = Date.now();
  await env.query(0, `INSERT INTO t VALUES (${id}, 'w')`);
  try {
    await waitFor(`row ${id} on B`, async () => (await env.query(1, `SELECT 1 FROM t WHERE id = ${id}`)).length === 1, ARRIVAL_MS, 20);
  } catch {
    assert.fail(`after ${what}, a write did not arrive within ${ARRIVAL_MS} ms (${Date.now() - at} ms). Daemon log:\n${daemon.logTail(30)}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('wake-ups survive configuration changes on a running daemon', () => {
  before(async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE t (id int PRIMARY KEY, v text)`);
      await env.query(i, `CREATE TABLE u (id int PRIMARY KEY, v text)`);
      await env.query(i, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
      for (let x = 1; x <= ROUNDS * 5; x++) await env.query(i, `CREATE TABLE x${x} (id int PRIMARY KEY, v text)`);
    }
    await env.query(0, `INSERT INTO u SELECT g, 'copied' FROM generate_series(1, 500) g`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'rep', { dbs: { A: 'source', B: 'target' }, tables: ['public.t'] });
    await daemon.start();
    await writeArrives('the start');
  });

  it('after pause, resume, add, remove and SIGHUP, in the order of the observe test', async () => {
    ok(await daemon.ibex('pause', 'rep'));
    ok(await daemon.ibex('resume', 'rep'));
    await writeArrives('pause and resume');
    // A sync on the same source with a onetimecopy, and one that runs only when kicked.
    ok(await daemon.ibex('add', 'sync', 'late', 'tables=public.u', 'dbs=A:source,B:target', 'onetimecopy=1'));
    await waitFor('the onetimecopy of late', async () => Number((await env.query(1, `SELECT count(*) AS n FROM u`))[0]!.n) === 500, 30_000, 50);
    ok(await daemon.ibex('add', 'sync', 'kicked', 'tables=public.k', 'dbs=A:source,B:target', 'autokick=0'));
    ok(await daemon.ibex('kick', 'kicked', '30'));
    ok(await daemon.ibex('remove', 'sync', 'kicked'));
    await writeArrives('add and remove');
    process.kill(daemon.pid()!, 'SIGHUP');
    await sleep(300);
    await writeArrives('SIGHUP');
    // Writes to the other sync's table while the first one reloads.
    process.kill(daemon.pid()!, 'SIGHUP');
    await env.query(0, `INSERT INTO u VALUES (10000, 'during reload')`);
    await writeArrives('SIGHUP with a write to the other sync');
  });

  it('after the same steps in random orders and with random gaps', async () => {
    let made = 0;
    const extras: string[] = [];
    const steps: Record<string, () => Promise<void>> = {
      'pause/resume': async () => {
        ok(await daemon.ibex('pause', 'rep'));
        await sleep(Math.random() * 200);
        ok(await daemon.ibex('resume', 'rep'));
      },
      'add': async () => {
        const name = `x${++made}`;
        extras.push(name);
        ok(await daemon.ibex('add', 'sync', name, `tables=public.${name}`, 'dbs=A:source,B:target', `autokick=${Math.random() < 0.5 ? 1 : 0}`));
      },
      'remove': async () => {
        const name = extras.splice(Math.floor(Math.random() * extras.length), 1)[0];
        if (name) ok(await daemon.ibex('remove', 'sync', name));
      },
      'update': async () => {
        ok(await daemon.ibex('update', 'sync', 'rep', `checktime=${Math.random() < 0.5 ? 60 : 61}`));
      },
      'SIGHUP': async () => {
        process.kill(daemon.pid()!, 'SIGHUP');
      },
      'write u': async () => {
        const table = extras[Math.floor(Math.random() * extras.length)] ?? 'u';
        await env.query(0, `INSERT INTO ${table} VALUES (${20000 + nextId * 10 + Math.floor(Math.random() * 10)}, 'other') ON CONFLICT DO NOTHING`);
      },
    };
    const names = Object.keys(steps);
    for (let round = 0; round < ROUNDS; round++) {
      const seq = Array.from({ length: 2 + Math.floor(Math.random() * 4) }, () => names[Math.floor(Math.random() * names.length)]!);
      for (const s of seq) {
        await steps[s]!();
        await sleep(Math.random() * 400);
      }
      await writeArrives(`round ${round}: ${seq.join(', ')}`);
    }
  });
});
