/**
 * What capture costs one statement (a diagnostic, not a scenario), free of the fsync and
 * checkpoint noise of a TPS figure: on A, one backend runs N single-row UPDATEs of bench_item,
 * each committed, with synchronous_commit off (no WAL flush wait), so its time is its CPU; the WAL
 * it wrote is read back with pg_walinspect and split by resource manager, full-page images apart.
 * Variants, each on a fresh delta table (no daemon), ROUNDS times between two passes without capture:
 *
 *   none        no capture objects
 *   installed   capture as `ibex add sync` installs it (column mask, ibex_txid btree), flag busy
 *   nomask      the trigger without the column mask
 *   noindex     the delta table without its ibex_txid index
 *   txidconst   ibex_txid's default a constant instead of pg_current_xact_id()
 *   notify      as installed with the flag idle: every statement NOTIFYs
 *   nopath      as installed, the function without its pinned search_path (ALTER … RESET: not safe, a measure only)
 *   invoker     as installed, the function SECURITY INVOKER (not safe either: a measure only)
 *   noop        the capture triggers calling a function that returns at once: what firing costs
 *
 *   node --import tsx bench/tools/capture-statement.ts [N, default 20000] [ROUNDS, default 3]
 */
import { rmSync } from 'node:fs';
import { BenchEnv, RUN_ROOT } from '../lib/env.js';
import { IbexSystem, srcFingerprint } from '../systems/ibex.js';
import { topologyOf } from '../systems/system.js';
import { captureNames, tableDdl, type CaptureTable } from '../../src/capture/objects.js';
import { ident, qualified } from '../../src/db/ident.js';

const n = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
const rows = 100_000;
const env = await BenchEnv.create({ nodes: 2, seedRows: rows, label: 'capture-statement' });
const sys = new IbexSystem();
type Result = { us_per_stmt: number[]; wal_per_stmt: number[]; by_rmgr: Record<string, number>; fpi_bytes: number[] };
const out: Record<string, Result> = {};
try {
  await env.q(1, 'CREATE EXTENSION IF NOT EXISTS pg_walinspect');
  const { delta, index, fn } = captureNames('public', 'bench_item');
  const d = qualified('ibex', delta).text;
  const measure = async (name: string): Promise<void> => {
    if (name !== 'none') await env.q(1, `TRUNCATE ${d}`);
    await env.q(1, 'VACUUM bench_item');
    // Warm: every page of bench_item touched once since the checkpoint, so the measured pass writes no image of it.
    await env.q(1, 'CHECKPOINT');
    await env.q(1, 'SET synchronous_commit = off');
    const loop = (from: number) => `DO $$ BEGIN FOR i IN ${from}..${from + n - 1} LOOP
      UPDATE bench_item SET amount = amount + 1 WHERE id = (i * 7919) % ${rows} + 1; COMMIT; END LOOP; END $$`;
    await env.q(1, loop(0));
    const lsn0 = String((await env.q(1, 'SELECT pg_current_wal_insert_lsn() AS l'))[0]!.l);
    const t0 = performance.now();
    await env.q(1, loop(n));
    const ms = performance.now() - t0;
    const lsn1 = String((await env.q(1, 'SELECT pg_current_wal_insert_lsn() AS l'))[0]!.l);
    await env.q(1, 'RESET synchronous_commit');
    // pg_walinspect reads only flushed WAL: wait for the WAL writer to pass lsn1.
    for (let t = 0; t < 100; t++) {
      if ((await env.q(1, 'SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok', [lsn1]))[0]!.ok) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const stats = await env.q<{ rm: string; rec: string; fpi: string }>(1,
      `SELECT "resource_manager/record_type" AS rm, sum(record_size)::bigint AS rec, sum(fpi_size)::bigint AS fpi FROM pg_get_wal_stats($1, $2) GROUP BY 1`, [lsn0, lsn1]);
    const r = (out[name] ??= { us_per_stmt: [], wal_per_stmt: [], by_rmgr: {}, fpi_bytes: [] });
    r.us_per_stmt.push(Math.round((ms * 1000) / n));
    r.wal_per_stmt.push(Math.round(stats.reduce((t, s) => t + Number(s.rec), 0) / n));
    r.fpi_bytes.push(stats.reduce((t, s) => t + Number(s.fpi), 0));
    r.by_rmgr = Object.fromEntries(stats.filter((s) => Number(s.rec) > 0).map((s) => [s.rm, Math.round(Number(s.rec) / n)]));
    console.error(`${name}: ${r.us_per_stmt.at(-1)} µs, ${r.wal_per_stmt.at(-1)} B of WAL records per statement ${JSON.stringify(r.by_rmgr)}, FPI ${r.fpi_bytes.at(-1)} B`);
  };
  const role = String((await env.q(1, `SELECT session_user AS u`))[0]!.u);
  const cols = await env.q(1, `SELECT attname AS name FROM pg_attribute WHERE attrelid = 'bench_item'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`);
  const table = (mask: boolean): CaptureTable => ({
    schema: 'public', name: 'bench_item', keyColumns: ['id'], keyTypes: ['bigint'], partitioned: false,
    ...(mask ? { columns: cols.map((c) => ({ name: String(c.name), eq: true })) } : {}),
  });
  await measure('none');
  await sys.setup(env, topologyOf(2, 'mesh'), env.tables());
  for (let i = 0; i < rounds; i++) {
    await env.q(1, 'UPDATE ibex.wakeup SET idle = false');
    await env.q(1, tableDdl(table(true), role));
    await measure('installed');
    await env.q(1, tableDdl(table(false), role));
    await measure('nomask');
    await env.q(1, tableDdl(table(true), role));
    await env.q(1, `DROP INDEX ibex.${ident(index).text}`);
    await measure('noindex');
    await env.q(1, tableDdl(table(true), role));
    await env.q(1, `ALTER TABLE ${d} ALTER COLUMN ibex_txid SET DEFAULT '1'::xid8`);
    await measure('txidconst');
    await env.q(1, `ALTER TABLE ${d} ALTER COLUMN ibex_txid SET DEFAULT pg_current_xact_id()`);
    await env.q(1, 'UPDATE ibex.wakeup SET idle = true');
    await measure('notify');
    await env.q(1, 'UPDATE ibex.wakeup SET idle = false');
    const f = `${qualified('ibex', fn).text}()`;
    await env.q(1, `ALTER FUNCTION ${f} RESET search_path`);
    await measure('nopath');
    await env.q(1, tableDdl(table(true), role));
    await env.q(1, `ALTER FUNCTION ${f} SECURITY INVOKER`);
    await measure('invoker');
    await env.q(1, tableDdl(table(true), role));
    await env.q(1, `CREATE OR REPLACE FUNCTION ${f} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN RETURN NULL; END $fn$`);
    await measure('noop');
    await env.q(1, tableDdl(table(true), role));
  }
  await sys.teardown();
  await measure('none');
  console.log(JSON.stringify({ src_sha: srcFingerprint(), n, rounds, ...out }));
} finally {
  await sys.teardown().catch(() => {});
  await env.destroy();
  rmSync(RUN_ROOT, { recursive: true, force: true });
}
