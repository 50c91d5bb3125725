/**
 * `ibex validate --repair`: re-apply the rows that differ from one db to every
 * other compared db, the way the engine applies (DESIGN, "One run", Apply):
 *
 * - one REPEATABLE READ transaction per db; keys that became in flight since
 *   the validation (pending delta rows, read in these snapshots) are left to
 *   the sync;
 * - the source's rows go as raw COPY text into a staging table on every
 *   target; keys absent at the source are deleted (children first), the
 *   others upserted (parents first), never delete-then-insert;
 * - every write carries the engine's transaction-local markers (origin = the
 *   repair's source, by = the sync, nocapture unless another sync reads the
 *   table there), so the sync does not send the repair back;
 * - a local write that landed after a target's snapshot makes the upsert fail
 *   with a serialization error instead of being overwritten;
 * - every key changed on a target is logged in the conflict log (strategy
 *   `repair`, status `applied`) with the versions it overwrote.
 */
import type pg from 'pg';
import { configError, IbexError } from '../errors.js';
import * as store from '../control/run-store.js';
import { copyFanOut } from '../engine/exchange.js';
import { stampSql } from '../targets/postgres/postgres-dialect.js';
import type { TablePlan } from '../engine/plan.js';
import type { SyncDb } from '../control/sync-config.js';
import * as q from './queries.js';
import { keyColumnsOf, repairKind } from './compare.js';
import type { Validator } from './validate.js';
import { repairForeignTable, type ForeignDiff, type ForeignWrite } from './foreign.js';
import type { TableSpec } from '../targets/target.js';
import { parseExactJson } from '../db/json.js';

/** Keys per statement when filling the repair's key tables. */
const KEY_BATCH = 20_000;

/** Options of a repair. */
export interface RepairOptions {
  /** The db whose rows win. */
  from: string;
  /** Do everything, then roll back the targets and log nothing. */
  dryRun: boolean;
  progress?: (line: string) => void;
}

/** The outcome of a repair for one table. */
export interface RepairTableReport {
  table: string;
  /** Differing keys handed to the repair. */
  keys: number;
  /** Keys left alone because they had changes in flight by the time of the repair. */
  inFlight: number;
  /** Per target, the keys whose row was changed (or would be, in a dry run). */
  changed: Record<string, number>;
  /** Per target, rows inserted less rows deleted. */
  netRows: Record<string, number>;
  /** Rows a target of another kind refused (a value it cannot hold exactly): not written, still different. */
  refused: { db: string; key: Record<string, string | null>; reason: string }[];
}

/** The outcome of a repair. */
export interface RepairReport {
  sync: string;
  from: string;
  targets: string[];
  dryRun: boolean;
  tables: RepairTableReport[];
  /** Distinct keys changed on at least one target. */
  changedKeys: number;
}

interface Change {
  k: string;
  key: string;
  here: string | null;
}

interface TableWork {
  plan: TablePlan;
  report: RepairTableReport;
  /** Key identity → the source's version (conflict-log key form and row). */
  winners: Map<string, { key: string; row: string | null }>;
  /** Target → its changed keys with the version overwritten. */
  changes: Map<string, Change[]>;
}

/** Re-apply the differing keys (`diffs`: table label → key identities) from `opts.from` to every other compared db. */
export async function repair(v: Validator, control: pg.Client, diffs: Map<string, string[]>, opts: RepairOptions): Promise<RepairReport> {
  const sync = v.sync;
  const dbs = v.compared();
  const fromDb = dbs.find((d) => d.name === opts.from);
  if (!fromDb) {
    throw configError(`db "${opts.from}" is not a compared db of sync "${sync}" (compared: ${dbs.map((d) => d.name).join(', ') || 'none'}): name one of them with --from=`);
  }
  const targets = dbs.filter((d) => d.name !== fromDb.name);
  const report: RepairReport = {
    sync, from: fromDb.name, targets: [...targets, ...v.comparedForeign()].map((d) => d.name), dryRun: opts.dryRun, tables: [], changedKeys: 0,
  };
  const plans = v.tablePlans().filter((p) => (diffs.get(p.label) ?? []).length > 0);
  if (plans.length && targets.length) await repairPostgres(v, control, diffs, opts, fromDb, targets, plans, report);
  await repairForeign(v, control, fromDb, opts, report);
  return report;
}

/** The PostgreSQL part of a repair: staging, deletes and upserts in one transaction per db, logged. */
async function repairPostgres(v: Validator, control: pg.Client, diffs: Map<string, string[]>, opts: RepairOptions,
  fromDb: SyncDb, targets: SyncDb[], plans: TablePlan[], report: RepairReport): Promise<void> {
  const sync = v.sync;

  const downstream = await store.downstreamReaders(control, sync);
  const client = (d: SyncDb): Promise<pg.Client> => v.session(d);
  const setLocal = async (c: pg.Client, p: TablePlan, dbName: string): Promise<void> => {
    // The engine's rule: capture stays on only where another sync reads this table.
    await c.query(stampSql({ origin: fromDb.name, sync, capture: downstream.get(dbName)?.has(p.label) ?? false }));
  };

  const cursors = await v.begin(false);
  const committed: string[] = [];
  const works: TableWork[] = [];
  try {
    const fromClient = await client(fromDb);
    for (const p of plans) {
      const all = diffs.get(p.label)!;
      const pending = await v.pendingKeys(p, all, cursors);
      const keys = all.filter((k) => !pending.has(k));
      const tr: RepairTableReport = { table: p.label, keys: all.length, inFlight: all.length - keys.length, changed: {}, netRows: {}, refused: [] };
      report.tables.push(tr);
      if (keys.length === 0) continue;
      opts.progress?.(`sync ${sync}: repairing ${keys.length} key(s) of ${p.label} from ${fromDb.name}`);
      const setup = q.repairSetupSql(p);
      for (const d of [fromDb, ...targets]) {
        const c = await client(d);
        await c.query(setup.create);
        for (let i = 0; i < keys.length; i += KEY_BATCH) await c.query(setup.fill, keyColumnsOf(keys.slice(i, i + KEY_BATCH), p.keys.length));
      }
      const sinks = await Promise.all(targets.map(async (d) => ({ client: await client(d), sql: q.repairCopyInSql(p) })));
      await copyFanOut(fromClient, q.repairCopyOutSql(p), sinks);
      const w = await fromClient.query(q.repairWinnersSql(p));
      const work: TableWork = {
        plan: p, report: tr, changes: new Map(),
        winners: new Map(w.rows.map((r) => [String(r.k), { key: String(r.key), row: r.row === null ? null : String(r.row) }])),
      };
      for (const d of targets) {
        const r = await (await client(d)).query(q.repairChangesSql(p));
        const changes = r.rows.map((x): Change => ({ k: String(x.k), key: String(x.key), here: x.here === null ? null : String(x.here) }));
        work.changes.set(d.name, changes);
        tr.changed[d.name] = changes.length;
        tr.netRows[d.name] = changes.reduce((n, c) => n + (c.here === null ? 1 : work.winners.get(c.k)?.row == null ? -1 : 0), 0);
      }
      works.push(work);
    }

    // Deletes children first, upserts parents first (plans are in FK order, parents first).
    for (const work of [...works].reverse()) {
      for (const d of targets) {
        if (!work.changes.get(d.name)?.length) continue;
        const c = await client(d);
        await setLocal(c, work.plan, d.name);
        await c.query(q.repairDeleteSql(work.plan));
      }
    }
    for (const work of works) {
      for (const d of targets) {
        if (!work.changes.get(d.name)?.length) continue;
        const c = await client(d);
        await setLocal(c, work.plan, d.name);
        await c.query(q.repairUpsertSql(work.plan));
      }
    }

    // The source (and every other db) only read: end those transactions first.
    await fromClient.query('COMMIT');
    for (const d of targets) {
      const c = await client(d);
      if (opts.dryRun) await c.query('ROLLBACK');
      else {
        await c.query('COMMIT');
        committed.push(d.name);
      }
    }
  } catch (err) {
    await v.rollback();
    // A target that committed before the failure was changed: its overwrites are logged all the same.
    let unlogged = '';
    try {
      if (committed.length) await logRepair(control, sync, fromDb.name, works, committed);
    } catch (logErr) {
      unlogged = ` (and its overwrites could not be logged: ${(logErr as Error).message ?? String(logErr)})`;
    }
    if (err instanceof IbexError && !unlogged) throw err;
    throw new IbexError(err instanceof IbexError ? err.code : 'internal', `repair of sync "${sync}" from ${fromDb.name} failed${committed.length ? ` after ${committed.join(', ')} committed` : ', nothing was changed'}: ${(err as Error).message ?? String(err)}${unlogged}`, { cause: err });
  }
  report.changedKeys = countChanged(works);
  if (!opts.dryRun) await logRepair(control, sync, fromDb.name, works, committed);
}

/**
 * The targets of other kinds: the differing keys of each table re-applied from `fromDb` (read in
 * one snapshot) through the Target contract, in one target transaction each (rolled back in a dry
 * run where the target has transactions; a dry run writes nothing to one that has none).
 */
async function repairForeign(v: Validator, control: pg.Client, fromDb: SyncDb, opts: RepairOptions, report: RepairReport): Promise<void> {
  const source = await v.session(fromDb);
  for (const d of v.comparedForeign()) {
    const perTable = v.foreignDifferences().get(d.name);
    const plans = v.tablePlans().filter((p) => (perTable?.get(p.label) ?? []).length > 0);
    if (plans.length === 0) continue;
    if (opts.dryRun && !(await v.target(d)).caps.transactional) {
      // No transaction to roll back: nothing is written, and every differing key counts as one
      // the repair would write (each differs, so each would be upserted or deleted).
      for (const p of plans) {
        const n = perTable!.get(p.label)!.length;
        const t = tableReport(report, p.label);
        t.keys = Math.max(t.keys, n);
        t.changed[d.name] = n;
        report.changedKeys += n;
      }
      continue;
    }
    const target = await v.target(d);
    const records: store.ConflictRecord[] = [];
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await target.begin();
    try {
      for (const p of plans) {
        const diffs = perTable!.get(p.label)!;
        const keys = diffs.map((x) => x.key);
        opts.progress?.(`sync ${v.sync}: repairing ${keys.length} key(s) of ${p.label} on ${d.name} from ${fromDb.name}`);
        const spec = await v.spec(p, fromDb, d);
        const done = await repairForeignTable(source, p, spec, target, keys);
        const t = tableReport(report, p.label);
        t.keys = Math.max(t.keys, keys.length);
        t.changed[d.name] = done.upserted + done.deleted;
        for (const r of done.refused) t.refused.push({ db: d.name, key: Object.fromEntries(spec.keys.map((k, i) => [k, r.key[i] ?? null])), reason: r.reason });
        report.changedKeys += done.upserted + done.deleted;
        records.push(...foreignRecords(p, spec, fromDb.name, d.name, diffs, done.written));
      }
      if (opts.dryRun) await target.rollback();
      else await target.commit();
      await source.query('COMMIT');
    } catch (err) {
      await target.rollback();
      await source.query('ROLLBACK').catch(() => undefined); // the session is closed with the validator
      throw err instanceof IbexError ? err : new IbexError('internal', `repair of sync "${v.sync}" on ${d.name} from ${fromDb.name} failed: ${(err as Error).message ?? String(err)}`, { cause: err });
    }
    // As for PostgreSQL dbs, every overwritten version is logged once the target committed.
    try {
      if (!opts.dryRun) await store.logConflicts(control, v.sync, null, records, 'applied');
    } catch (err) {
      throw new IbexError('internal', `repair of sync "${v.sync}" on ${d.name} from ${fromDb.name} committed, but its overwrites could not be logged: ${(err as Error).message ?? String(err)}`, { cause: err });
    }
  }
}

/**
 * The conflict-log records of a repair on a target of another kind: the winner's row and key as
 * for a PostgreSQL db (`to_jsonb`, typed key), the target's overwritten version as validate read
 * it (canonical text per column; a target has no snapshot to read it again in).
 */
function foreignRecords(p: TablePlan, spec: TableSpec, from: string, db: string, diffs: readonly ForeignDiff[], written: readonly ForeignWrite[]): store.ConflictRecord[] {
  const held = new Map(diffs.map((x) => [x.key, x.target]));
  return written.map((w): store.ConflictRecord => {
    const here = held.get(w.key) ?? null;
    return {
      schema: p.rel.schema, table: p.rel.name, key: parseExactJson<Record<string, unknown>>(w.typedKey),
      kind: repairKind(w.row !== null, here !== null), strategy: 'repair', winner: from,
      winnerRow: w.row === null ? null : parseExactJson(w.row), winnerTime: null,
      losers: [{ db, row: here === null ? null : Object.fromEntries(spec.columns.map((c, i) => [c.name, here[i] ?? null])), changed_at: null }],
    };
  });
}

function tableReport(report: RepairReport, label: string): RepairTableReport {
  let t = report.tables.find((x) => x.table === label);
  if (!t) {
    t = { table: label, keys: 0, inFlight: 0, changed: {}, netRows: {}, refused: [] };
    report.tables.push(t);
  }
  return t;
}

function countChanged(works: TableWork[]): number {
  let n = 0;
  for (const w of works) {
    const keys = new Set<string>();
    for (const list of w.changes.values()) for (const c of list) keys.add(c.k);
    n += keys.size;
  }
  return n;
}

/** One conflict-log record per changed key, its losers the committed targets' overwritten versions. */
async function logRepair(control: pg.Client, sync: string, from: string, works: TableWork[], committed: string[]): Promise<void> {
  const records: store.ConflictRecord[] = [];
  for (const w of works) {
    const byKey = new Map<string, store.ConflictRecord>();
    for (const db of committed) {
      for (const c of w.changes.get(db) ?? []) {
        let rec = byKey.get(c.k);
        if (!rec) {
          const win = w.winners.get(c.k);
          rec = {
            schema: w.plan.rel.schema, table: w.plan.rel.name, key: parseExactJson<Record<string, unknown>>(win?.key ?? c.key),
            kind: 'update_update', strategy: 'repair', winner: from, winnerRow: win?.row ? parseExactJson(win.row) : null, winnerTime: null, losers: [],
          };
          byKey.set(c.k, rec);
        }
        rec.losers.push({ db, row: c.here === null ? null : parseExactJson(c.here), changed_at: null });
      }
    }
    for (const rec of byKey.values()) {
      rec.kind = repairKind(rec.winnerRow !== null, !rec.losers.some((l) => l.row === null));
      records.push(rec);
    }
  }
  // Not part of a run: the conflict log's run is NULL for a repair.
  await store.logConflicts(control, sync, null, records, 'applied');
}
