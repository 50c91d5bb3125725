/**
 * Whole-table copies: `onetimecopy` (fill targets once, then go on with
 * deltas) and `fullcopy` targets (replaced on kick or on an interval).
 *
 * onetimecopy copies in key-range chunks, each chunk in its own snapshot and
 * upserted on the targets, with progress saved per table and target after
 * each chunk commits: a crash resumes from the last chunk. The sync's cursors
 * were set when capture was installed, before the first chunk, so every
 * change made during the copy is applied by the delta runs that follow
 * (idempotently: rows are re-read from their source).
 *
 * Fencing: with a lease epoch, every transaction a copy opens on a target first writes the
 * sync's fence record there (checked and raised to this daemon's epoch, refused when a newer
 * owner wrote it: see Target.writeProgress), and every write of copy progress to the control db
 * holds only while the lease is still at that epoch. A daemon that lost the lease mid-copy
 * commits no further chunk and moves no progress.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { pgArray } from '../db/catalog.js';
import { errorText } from '../db/connect.js';
import { IbexError } from '../errors.js';
import { stringifyExactJson } from '../db/json.js';
import * as store from '../control/run-store.js';
import type { SyncConfig, SyncDb } from '../control/sync-config.js';
import type { PostgresTarget } from '../targets/postgres/postgres-target.js';
import { fenceEntry, type ProgressEntry, type TableSpec, type Target } from '../targets/target.js';
import { writeProgressSql } from '../targets/postgres/postgres-dialect.js';
import type { ConflictRecord } from '../control/run-store.js';
import { markApplied, refusedRecord, RowSink } from './run/typed.js';
import { copyAsOwner, copyOwnerSwitch, switchBack, type OwnerCache } from './run/owner.js';
import { copyFanOut } from './exchange.js';
import type { TablePlan } from './plan.js';
import { tableCounts } from './run/state.js';
import { anyRowSql, tableCopyInSql } from './sql/apply.js';
import {
  analyzeSql, chunkLastKeySql, chunkSql, chunkStageSql, deleteAllSql, lastKeyFillSql, lastKeyTableSql, lockTableSql, wholeTableCopyOutSql,
} from './sql/copy.js';
import type { RunKind, RunResult } from './types.js';

/** What a copy needs from its runner. */
export interface CopyContext {
  sync: string;
  cfg: SyncConfig;
  plans: TablePlan[];
  log: Logger;
  /** db → tables another sync reads there (capture must record what a copy writes to them). */
  downstream: Map<string, Set<string>>;
  control(): Promise<pg.Client>;
  db(d: SyncDb): Promise<PostgresTarget>;
  /** A session on a db of another kind. */
  target(d: SyncDb): Promise<Target>;
  /** A table as targets of other kinds see it. */
  /** A table as the target `db` (by name) sees it. */
  spec(p: TablePlan, db: string): TableSpec;
  discard(name: string): void;
  /** The lease epoch the daemon holds the sync at (absent: no lease, no fencing). */
  epoch?: number | undefined;
}

/** The fence record a copy's transaction writes first on a target (none without a lease). */
function fences(ctx: CopyContext, result: RunResult): ProgressEntry[] {
  return ctx.epoch === undefined ? [] : [fenceEntry(result.runId, ctx.epoch)];
}

/** Fence a copy's transaction on a PostgreSQL db (after its BEGIN). */
async function fencePg(ctx: CopyContext, result: RunResult, s: PostgresTarget): Promise<void> {
  const f = fences(ctx, result);
  if (f.length) await s.query(writeProgressSql(ctx.sync, f));
}

/** Fence a copy's transaction on a target of another kind (after its begin; before any data on kinds without transactions). */
async function fenceTyped(ctx: CopyContext, result: RunResult, t: Target): Promise<void> {
  const f = fences(ctx, result);
  if (f.length) await t.writeProgress(ctx.sync, f);
}

/** Rows per onetimecopy chunk (IBEX_COPY_CHUNK_ROWS overrides, for tests). */
function chunkRows(): number {
  return Number(process.env.IBEX_COPY_CHUNK_ROWS ?? 50_000);
}

/** Run a onetimecopy or a fullcopy; fills `result`. */
export async function copyTables(ctx: CopyContext, kind: Exclude<RunKind, 'delta'>, result: RunResult): Promise<Record<string, unknown>> {
  return kind === 'fullcopy' ? fullcopy(ctx, result) : onetimecopy(ctx, result);
}

function count(result: RunResult, p: TablePlan, what: 'inserted' | 'deleted' | 'truncates', n: number): void {
  tableCounts(result, p.label)[what] += n;
  result[what] += n;
}

/**
 * Stamp what a copy writes to table `p` on db `d`: its origin and this sync (which never sends it
 * back); capture records it where another sync reads the table there, so copied rows cascade.
 */
async function mark(ctx: CopyContext, s: PostgresTarget, d: SyncDb, p: TablePlan, origin: string): Promise<void> {
  await s.stamp({ origin, sync: ctx.sync, capture: ctx.downstream.get(d.name)?.has(p.label) ?? false });
  // apply_mode=replica silences user triggers and rules while copying, as while applying runs
  // (set only then: setting it at all needs the privilege replica mode needs).
  if (ctx.cfg.applyMode === 'replica') await s.query(`SELECT set_config('session_replication_role', 'replica', true)`);
}

/** The db a copy reads from: onetimecopy_from, else the first source. */
function copySource(cfg: SyncConfig): SyncDb {
  const from = cfg.onetimecopyFrom ? cfg.dbs.find((d) => d.name === cfg.onetimecopyFrom) : cfg.dbs.find((d) => d.role === 'source');
  if (!from) throw new IbexError('config', `sync ${cfg.name} has no db to copy from: set onetimecopy_from= to one of its dbs`);
  return from;
}

/** Statistics for freshly copied rows help the next runs' plans; a failed ANALYZE costs only that. */
async function analyze(ctx: CopyContext, s: PostgresTarget, p: TablePlan): Promise<void> {
  try {
    await s.query(analyzeSql(p));
  } catch (err) {
    ctx.log.debug({ table: p.label, db: s.name, err: errorText(err) }, 'ANALYZE after a copy failed');
  }
}

/** One onetimecopy: what it copies from, to, and the run it fills. */
interface Onetime {
  ctx: CopyContext;
  control: pg.Client;
  from: SyncDb;
  src: PostgresTarget;
  result: RunResult;
  skipped: string[];
  /** Table owners read on the destinations: rows are written as the owner where ibex may (run/owner.ts). */
  owners: OwnerCache;
}

/**
 * Where a copy writes: a PostgreSQL db (COPY into a staging table, then upserted) or a target of
 * another kind (the COPY text decoded into rows and upserted through the Target contract).
 */
interface Dest {
  db: SyncDb;
  /** Remove every row of these tables (children first), in one transaction; rows deleted per table where known. */
  empty(plans: TablePlan[]): Promise<Map<TablePlan, number>>;
  /** onetimecopy=2: has the table no rows? */
  isEmpty(p: TablePlan): Promise<boolean>;
  /** Begin, and receive one chunk of COPY text (the source's `copyOut`); rows received. */
  receive(p: TablePlan, copyOut: string): Promise<number>;
  /** Apply what was received and commit; rows applied. */
  finish(p: TablePlan): Promise<number>;
  /** After the last chunk of a table. */
  done(p: TablePlan): Promise<void>;
}

/** A PostgreSQL destination. */
function pgDest(o: Onetime, db: SyncDb, c: PostgresTarget): Dest {
  const { ctx } = o;
  return {
    db,
    async empty(plans) {
      const n = new Map<TablePlan, number>();
      await c.begin();
      await fencePg(ctx, o.result, c);
      for (const p of [...plans].reverse()) {
        await mark(ctx, c, db, p, o.from.name);
        n.set(p, await copyAsOwner(c, o.owners, `${db.name} ${p.q}`, p.q, [], async () => (await c.query(deleteAllSql(p))).rowCount ?? 0));
      }
      await c.commit();
      return n;
    },
    // Checked under a lock that keeps writers out while it is checked; rows written after that are
    // kept (chunks are upserted), the check only decides whether to copy at all.
    async isEmpty(p) {
      await c.begin();
      await c.query(lockTableSql(p));
      const r = await c.query(anyRowSql(p.q));
      await c.commit();
      return r.rows[0].e !== 't';
    },
    async receive(p, copyOut) {
      const stage = chunkStageSql(p);
      await c.begin();
      await fencePg(ctx, o.result, c);
      await mark(ctx, c, db, p, o.from.name);
      await c.query(stage.create);
      const [copied] = await copyFanOut(o.src.client, copyOut, [{ client: c.client, sql: stage.copyIn }]);
      return copied ?? 0;
    },
    async finish(p) {
      const stage = chunkStageSql(p);
      // The upsert reads the staging table (and, under rules, empties it of rows it updated).
      const n = await copyAsOwner(c, o.owners, `${db.name} ${p.q}`, p.q, [stage.stage], async () => {
        let rows = 0;
        for (const sql of stage.upsert) rows += (await c.query(sql)).rowCount ?? 0;
        return rows;
      }, p.hasRules ? 'SELECT, DELETE' : 'SELECT');
      await c.commit();
      return n;
    },
    done: (p) => analyze(ctx, c, p),
  };
}

/** What a copy applied on typed targets, and what they refused (logged, then quarantined, by logRefused). */
interface Tally {
  applied: number;
  refused: ConflictRecord[];
  /** Refused rows warned about one by one so far. */
  warned: number;
}

const newTally = (): Tally => ({ applied: 0, refused: [], warned: 0 });

/** Warnings a copy writes for refused rows, each with its key, before it only counts them. */
const REFUSED_WARNINGS = 100;

/** Rows a typed target refused during a copy: warned about with their keys, logged as quarantined (never stopping the copy). */
async function logRefused(ctx: CopyContext, result: RunResult, tally: Tally): Promise<void> {
  if (tally.refused.length === 0) return;
  const batch = tally.refused.splice(0);
  for (const r of batch) {
    tally.warned += 1;
    const db = r.losers[0]?.db ?? '?';
    if (tally.warned <= REFUSED_WARNINGS) {
      ctx.log.warn({ table: `${r.schema}.${r.table}`, db, key: stringifyExactJson(r.key) },
        `a row was refused by db ${db} and quarantined (see ibex.conflict): ${r.losers[0]?.constraint ?? ''}`);
    } else if (tally.warned === REFUSED_WARNINGS + 1) {
      ctx.log.warn({ sync: ctx.sync }, `more than ${REFUSED_WARNINGS} rows were refused and quarantined; the rest are not logged one by one: see "ibex conflicts --status=quarantined"`);
    }
  }
  await store.logConflicts(await ctx.control(), ctx.sync, result.runId, batch, 'quarantined');
}

/** A sink that upserts decoded rows on a typed target, counting what it applied and noting what it refused. */
function upsertSink(target: Target, db: SyncDb, spec: TableSpec, winner: string, tally: Tally): RowSink {
  return new RowSink(async (rows) => {
    const out = await target.upsertRows(spec, rows);
    tally.applied += out.applied;
    for (const r of out.refused) tally.refused.push(refusedRecord(spec, db.name, winner, r, undefined));
  });
}

/** A destination of another kind. */
function typedDest(o: Onetime, db: SyncDb, target: Target): Dest {
  const { ctx } = o;
  const tally = newTally();
  return {
    db,
    async empty(plans) {
      await target.begin();
      await fenceTyped(ctx, o.result, target);
      for (const p of [...plans].reverse()) await target.truncate(ctx.spec(p, db.name));
      await target.commit();
      return new Map();
    },
    async isEmpty(p) {
      for await (const _ of target.scan(ctx.spec(p, db.name))) return false;
      return true;
    },
    async receive(p, copyOut) {
      await target.begin();
      await fenceTyped(ctx, o.result, target);
      const sink = upsertSink(target, db, ctx.spec(p, db.name), o.from.name, tally);
      await copyFanOut(o.src.client, copyOut, [{ stream: sink, name: db.name }]);
      return sink.rowCount;
    },
    async finish() {
      await target.commit();
      await logRefused(ctx, o.result, tally);
      const n = tally.applied;
      tally.applied = 0;
      return n;
    },
    done: async () => {},
  };
}

async function onetimecopy(ctx: CopyContext, result: RunResult): Promise<Record<string, unknown>> {
  const { cfg } = ctx;
  const from = copySource(cfg);
  const o: Onetime = { ctx, control: await ctx.control(), from, src: await ctx.db(from), result, skipped: [], owners: new Map() };
  const dests: Dest[] = [];
  for (const d of cfg.dbs.filter((x) => x.name !== from.name && x.role !== 'fullcopy' && x.status === 'active')) {
    dests.push(d.dbtype === 'postgres' ? pgDest(o, d, await ctx.db(d)) : typedDest(o, d, await ctx.target(d)));
  }
  // Mode 1 replaces the targets' rows: empty them first, children first, once (progress rows mark it done).
  if (cfg.onetimecopy === 1) for (const t of dests) await emptyTarget(o, t);
  for (const p of ctx.plans) for (const t of dests) await copyTable(o, p, t);
  await store.finishOnetimecopy(o.control, ctx.sync, ctx.epoch);
  result.status = result.inserted + result.deleted > 0 ? 'good' : 'empty';
  return { from: from.name, skippedNotEmpty: o.skipped };
}

/**
 * Refill a target of another kind that lost everything ibex applied there (its readProgress said
 * 'missing': a Redis restarted without persistence). As onetimecopy=1, but for that db alone and
 * leaving the sync's onetimecopy setting and the other dbs alone: its tables are emptied and
 * copied from the copy source, then the cursors read before the copy are recorded as its
 * progress, so the delta runs that follow re-apply every change since them (idempotently). A
 * refill cut short resumes from its copy progress: the store still reports 'missing' until the end.
 */
export async function refill(ctx: CopyContext, db: SyncDb, result: RunResult): Promise<void> {
  const control = await ctx.control();
  const cursors = await store.readCursors(control, ctx.sync);
  const from = copySource(ctx.cfg);
  const copyCtx: CopyContext = { ...ctx, cfg: { ...ctx.cfg, onetimecopy: 1 } };
  const o: Onetime = { ctx: copyCtx, control, from, src: await ctx.db(from), result, skipped: [], owners: new Map() };
  const target = await ctx.target(db);
  const dest = typedDest(o, db, target);
  await emptyTarget(o, dest);
  for (const p of ctx.plans) await copyTable(o, p, dest);
  await target.begin();
  await target.writeProgress(ctx.sync, [...cursors].map(([source, snapshot]) => ({ source, snapshot, run: result.runId, ...(ctx.epoch !== undefined ? { epoch: ctx.epoch } : {}) })));
  await target.commit();
  await markApplied(control, ctx.sync, db.name);
  await store.clearCopyProgress(control, ctx.sync, db.name, ctx.epoch);
  ctx.log.warn({ sync: ctx.sync, db: db.name, rows: result.inserted }, `db ${db.name} had lost what ibex applied there: refilled it by a onetimecopy from ${from.name}`);
}

/** onetimecopy=1: empty the tables not yet started on a target, children first. */
async function emptyTarget(o: Onetime, t: Dest): Promise<void> {
  const { ctx, control } = o;
  const fresh: TablePlan[] = [];
  for (const p of ctx.plans) if (!(await store.readCopyProgress(control, ctx.sync, p.rel.id, t.db.name))) fresh.push(p);
  if (fresh.length === 0) return;
  for (const [p, n] of await t.empty(fresh)) count(o.result, p, 'deleted', n);
  for (const p of fresh) await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.db.name, null, 0, false, ctx.epoch);
}

/** Copy one table to one target, chunk after chunk, resuming from saved progress. */
async function copyTable(o: Onetime, p: TablePlan, t: Dest): Promise<void> {
  const { ctx, control } = o;
  const progress = await store.readCopyProgress(control, ctx.sync, p.rel.id, t.db.name);
  if (progress?.done) return;
  if (ctx.cfg.onetimecopy === 2 && !progress && !(await t.isEmpty(p))) {
    o.skipped.push(`${p.label}@${t.db.name}`);
    await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.db.name, null, 0, true, ctx.epoch);
    return;
  }
  let lastKey = progress?.lastKey ?? null;
  let rows = progress?.rows ?? 0;
  const n = chunkRows();
  for (let done = false; !done;) {
    const chunk = await copyChunk(o, p, t, lastKey, n);
    rows += chunk.copied;
    done = chunk.copied < n;
    lastKey = chunk.lastKey ?? lastKey;
    await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.db.name, lastKey, rows, done, ctx.epoch);
    ctx.log.info({ table: p.label, db: t.db.name, rows }, 'onetimecopy progress');
  }
  if (rows > 0) await t.done(p);
}

/**
 * One chunk: read in its own snapshot on the source, received by the target, applied there and
 * committed. Returns the rows copied and the chunk's last key.
 */
async function copyChunk(o: Onetime, p: TablePlan, t: Dest, lastKey: string[] | null, n: number): Promise<{ copied: number; lastKey: string[] | null }> {
  const { src } = o;
  await src.begin('REPEATABLE READ');
  await src.query(lastKeyTableSql(p));
  // The key types come from the catalog (format_type); the values are parameters.
  if (lastKey) await src.query(lastKeyFillSql(p), [lastKey]);
  const chunk = chunkSql(p, lastKey !== null, n);
  const copied = await t.receive(p, `COPY (${chunk}) TO STDOUT`);
  const last = await src.query(chunkLastKeySql(p, chunk));
  await src.commit();
  count(o.result, p, 'inserted', await t.finish(p));
  return { copied, lastKey: last.rows[0] ? pgArray(last.rows[0].k) : null };
}

async function fullcopy(ctx: CopyContext, result: RunResult): Promise<Record<string, unknown>> {
  const { cfg } = ctx;
  const from = copySource(cfg);
  const targets = cfg.dbs.filter((d) => d.role === 'fullcopy' && d.status === 'active');
  if (targets.length === 0) {
    result.status = 'empty';
    return { from: from.name, note: 'no fullcopy targets' };
  }
  const src = await ctx.db(from);
  const sinks = await Promise.all(targets.filter((t) => t.dbtype === 'postgres').map(async (t) => ({ t, s: await ctx.db(t) })));
  const typed = await Promise.all(targets.filter((t) => t.dbtype !== 'postgres').map(async (t) => ({ t, target: await ctx.target(t) })));
  // One snapshot on the source for every table; one transaction per target.
  await src.begin('REPEATABLE READ');
  for (const { s } of sinks) {
    await s.begin();
    await fencePg(ctx, result, s);
  }
  for (const { target } of typed) {
    await target.begin();
    await fenceTyped(ctx, result, target);
  }
  // Each table is emptied and filled as its owner where ibex may (run/owner.ts).
  const owners: OwnerCache = new Map();
  const asOwner = <T>(t: SyncDb, s: PostgresTarget, p: TablePlan, work: () => Promise<T>): Promise<T> => copyAsOwner(s, owners, `${t.name} ${p.q}`, p.q, [], work);
  for (const p of [...ctx.plans].reverse()) {
    for (const { t, s } of sinks) {
      await mark(ctx, s, t, p, from.name);
      if (cfg.deletemethod === 'delete') count(result, p, 'deleted', await asOwner(t, s, p, async () => (await s.query(deleteAllSql(p))).rowCount ?? 0));
      else {
        await asOwner(t, s, p, () => s.truncateWithFallback(p, cfg.deletemethod === 'truncate_cascade'));
        count(result, p, 'truncates', 1);
      }
    }
    for (const { t, target } of typed) {
      await target.truncate(ctx.spec(p, t.name));
      count(result, p, 'truncates', 1);
    }
  }
  const tally = newTally();
  for (const p of ctx.plans) {
    for (const { t, s } of sinks) await mark(ctx, s, t, p, from.name);
    // COPY straight into the tables, each target's session as the table's owner, back after.
    const switches = await Promise.all(sinks.map(({ t, s }) => copyOwnerSwitch(s, owners, `${t.name} ${p.q}`, p.q)));
    let rows: number[];
    try {
      for (const [i, { s }] of sinks.entries()) if (switches[i]!.before) await s.query(switches[i]!.before);
      rows = await copyFanOut(src.client, wholeTableCopyOutSql(p), [
        ...sinks.map(({ s }) => ({ client: s.client, sql: tableCopyInSql(p) })),
        ...typed.map(({ t, target }) => ({ stream: upsertSink(target, t, ctx.spec(p, t.name), from.name, tally), name: t.name })),
      ]);
    } catch (err) {
      for (const [i, { s }] of sinks.entries()) await switchBack(s, switches[i]!);
      throw err;
    }
    for (const [i, { s }] of sinks.entries()) if (switches[i]!.after) await s.query(switches[i]!.after);
    count(result, p, 'inserted', rows.slice(0, sinks.length).reduce((a, b) => a + b, 0) + tally.applied);
    tally.applied = 0;
  }
  await src.commit();
  for (const { s } of sinks) await s.commit();
  // Targets of other kinds commit after the PostgreSQL dbs (as in a delta run).
  for (const { target } of typed) await target.commit();
  await logRefused(ctx, result, tally);
  for (const { s } of sinks) for (const p of ctx.plans) await analyze(ctx, s, p);
  result.status = 'good';
  return { from: from.name, targets: targets.map((t) => t.name) };
}
