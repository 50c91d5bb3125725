/**
 * Targets of other kinds in a run (DESIGN, "Targets of other kinds"): they take no COPY text, so
 * in every COPY fan-out they are extra sinks whose bytes are decoded into rows of text
 * (targets/copy-text.ts) and applied through the Target contract. Deletes are buffered per table
 * and applied in the delete phase (children first); rows are upserted in batches as they arrive
 * (deletes are done by then). A refused row is set aside in the conflict log, never stopping the run.
 * They begin and read their progress with the PostgreSQL dbs, and commit after all of them.
 */
import { Writable } from 'node:stream';
import * as store from '../../control/run-store.js';
import type { ConflictRecord } from '../../control/run-store.js';
import { CopyTextParser } from '../../targets/copy-text.js';
import type { KeyRow, ProgressEntry, RefusedRow, TableSpec, TextRow } from '../../targets/target.js';
import { TargetLostError } from '../errors.js';
import type { CopySink } from '../exchange.js';
import type { TablePlan } from '../plan.js';
import { together } from '../together.js';
import type { RunContext, TypedDb } from './context.js';
import type { RunState } from './state.js';

/** A db of another kind that a sync writes, with its open session. */

/** Rows handed on per batch by a RowSink: a multiple of the statement sizes of the targets that cut batches (MariaDB's 500). */
const BATCH_ROWS = 5_000;

/**
 * A stream that decodes COPY text into rows and hands them on in batches, one call at a time.
 * While a batch is applied the next one is decoded; the bytes after that wait until the first is
 * applied (backpressure reaches the source, at most two batches held). `rowCount`: rows decoded.
 */
export class RowSink extends Writable {
  rowCount = 0;
  private readonly parser = new CopyTextParser();
  private batch: TextRow[] = [];
  /** The batch being applied (settled when none is). */
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly onRows: (rows: TextRow[]) => Promise<void>, private readonly batchRows = BATCH_ROWS) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    for (const row of this.parser.push(chunk)) this.batch.push(row);
    if (this.batch.length < this.batchRows) return done();
    const before = this.applying;
    // Whole batches only (the rest starts the next one): a target that splits a batch into
    // statements of a fixed size then sends no odd-sized one before the last.
    while (this.batch.length >= this.batchRows) this.hand(this.batchRows);
    // More bytes are taken once the batch before this one is applied.
    before.then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    for (const row of this.parser.end()) this.batch.push(row);
    this.hand();
    this.applying.then(() => done(), done);
  }

  /** Queue the first `count` decoded rows (all by default) behind the batch being applied. */
  private hand(count = this.batch.length): void {
    if (count === 0) return;
    const rows = count === this.batch.length ? this.batch : this.batch.slice(0, count);
    this.batch = count === this.batch.length ? [] : this.batch.slice(count);
    this.rowCount += rows.length;
    this.applying = this.applying.then(() => this.onRows(rows));
    // Its failure reaches the stream through done(); this only keeps it from counting as unhandled.
    this.applying.catch(() => {});
  }
}

/** A COPY sink for a typed target: the decoded rows go to `onRows`. */
export function typedSink(td: TypedDb, onRows: (rows: TextRow[]) => Promise<void>): CopySink {
  return { stream: new RowSink(onRows), name: td.db.name };
}

/** A refused row as a quarantine record of the conflict log. */
export function refusedRecord(spec: TableSpec, db: string, winner: string | null, r: RefusedRow, row: TextRow | undefined): ConflictRecord {
  const key = Object.fromEntries(spec.keys.map((k, i) => [k, r.key[i] ?? null]));
  return {
    schema: spec.schema, table: spec.name, key, kind: 'refused', strategy: 'quarantine', winner, winnerTime: null,
    winnerRow: row ? Object.fromEntries(spec.columns.map((c, i) => [c.name, row[i] ?? null])) : null,
    losers: [{ db, row: null, changed_at: null, constraint: r.reason }],
  };
}

/** Upsert rows on a typed target (counted as inserted); refused ones are quarantined. */
export async function upsertTyped(ctx: RunContext, st: RunState, td: TypedDb, p: TablePlan, rows: TextRow[], winner: string | null): Promise<void> {
  if (rows.length === 0) return;
  const spec = ctx.spec(p, td.db.name);
  const out = await td.target.upsertRows(spec, rows);
  st.counts(p).inserted += out.applied;
  st.result.inserted += out.applied;
  if (out.refused.length === 0) return;
  const keyAt = spec.keys.map((k) => spec.columns.findIndex((c) => c.name === k));
  const byKey = new Map(rows.map((row) => [JSON.stringify(keyAt.map((i) => row[i] ?? null)), row]));
  for (const r of out.refused) {
    st.quarantined.push(refusedRecord(spec, td.db.name, winner, r, byKey.get(JSON.stringify(r.key))));
    ctx.log.warn({ table: p.label, db: td.db.name, key: JSON.stringify(r.key) }, `a row was refused by db ${td.db.name} and quarantined (see ibex.conflict): ${r.reason}`);
  }
}

/** Sinks that upsert every typed target's rows (each row cut to the table's columns: a staged row ends with its origin). */
export function upsertSinks(ctx: RunContext, st: RunState, p: TablePlan, winner: string | null): CopySink[] {
  const width = p.cols.length;
  return ctx.typed.map((td) => typedSink(td, (rows) => {
    // The sink's rows are its own (each sink decodes its copy of the bytes): cut in place, no copy per row.
    for (const r of rows) if (r.length > width) r.length = width;
    return upsertTyped(ctx, st, td, p, rows, winner);
  }));
}

/** Sinks that buffer every typed target's delete keys of a table (each row: the key, then its origin). */
export function deleteSinks(ctx: RunContext, st: RunState, p: TablePlan): CopySink[] {
  return ctx.typed.map((td) => typedSink(td, async (rows) => {
    const keys = st.typedDeletes(td.target, p);
    for (const r of rows) keys.push(r.slice(0, p.keys.length) as KeyRow);
  }));
}

/** Apply the buffered deletes of a table on every typed target; returns the rows deleted. */
export async function applyTypedDeletes(ctx: RunContext, st: RunState, p: TablePlan): Promise<number> {
  const counts = await together(ctx.typed, async (td) => {
    const keys = st.typedDeletes(td.target, p);
    if (keys.length === 0) return 0;
    const n = await td.target.deleteKeys(ctx.spec(p, td.db.name), keys.splice(0));
    return n;
  });
  return counts.reduce((a, b) => a + b, 0);
}

/**
 * Begin on every typed target and read its progress; a store that lost everything fails the open
 * with TargetLostError. A store answers 'missing' when it can tell (a Redis this process saw
 * written); no progress at all where the control db records that the sync wrote some there is the
 * same loss, seen by a process that started after it (the daemon and the Redis restarted together).
 */
export async function openTyped(ctx: RunContext, st: RunState): Promise<void> {
  await together(ctx.typed, async (td) => {
    await td.target.begin();
    const progress = await td.target.readProgress(ctx.sync);
    // Deltas alone cannot rebuild an emptied store: the runner refills it (runner.ts, refill).
    if (progress === 'missing') throw new TargetLostError(td.db.name);
    if (progress.length === 0 && await store.targetApplied(ctx.control, ctx.sync, td.db.name)) throw new TargetLostError(td.db.name);
    st.progress.set(td.db, progress);
  });
}

/** The (sync, db) pairs each control session has already recorded in ibex.target_applied. */
const marked = new WeakMap<object, Set<string>>();

/** Record once per control session that the sync's progress is on this target (see openTyped). */
export async function markApplied(control: RunContext['control'], sync: string, db: string): Promise<void> {
  let done = marked.get(control);
  if (done === undefined) marked.set(control, (done = new Set()));
  const k = JSON.stringify([sync, db]);
  if (done.has(k)) return;
  await store.markTargetApplied(control, sync, db);
  done.add(k);
}

/**
 * After every PostgreSQL db committed: each typed target records how far it applied every source
 * (inside its transaction where it has one, else after the data) and commits. A failure fails the
 * run: the cursors stay behind and the next run re-applies idempotently.
 */
export async function commitTyped(ctx: RunContext, st: RunState): Promise<void> {
  // With the lease epoch: each target refuses the commit if a newer owner committed there (fencing).
  const entries: ProgressEntry[] = ctx.sources.map((s) => ({ source: s.name, snapshot: st.snaps.get(s)!, run: st.result.runId, ...(ctx.epoch !== undefined ? { epoch: ctx.epoch } : {}) }));
  await together(ctx.typed, async (td) => {
    if (td.target.caps.progressInTxn) {
      await td.target.writeProgress(ctx.sync, entries);
      await td.target.commit();
    } else {
      await td.target.commit();
      await td.target.writeProgress(ctx.sync, entries);
    }
    await markApplied(ctx.control, ctx.sync, td.db.name);
  });
}

/** Merged rows (custom conflict code) as rows of the table's columns. */
export function mergedRows(p: TablePlan, rows: readonly Record<string, string | null>[]): TextRow[] {
  return rows.map((r) => p.cols.map((c) => r[c] ?? null));
}
