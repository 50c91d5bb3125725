/**
 * A row too large to move: PostgreSQL builds each COPY line in one buffer of at most 1 GB, so a
 * row whose text passes it (two 600 MB columns, a 600 MB bytea in hex) cannot leave its source by
 * COPY, and the source fails the COPY with 54000 ("out of memory") or XX000 ("invalid memory alloc
 * request size"), naming no row. The run is repeated at once
 * (runner.ts); from then on, before each COPY of that table out of that source, ibex estimates the
 * rows' text (without building it, see largestRowsSql) and leaves out those over the limit; right
 * after each failure, one row more than the failed attempt left out: the largest of the others
 * (escaping can push a row over). A run whose estimate finds none over the limit ends this until
 * a COPY fails again. Each row left out is set aside for every db it should reach, with its table, key and
 * error (on_row_error=quarantine; under stall the run fails naming it), and the rest flows. Like
 * any set-aside row it is queued again after a good run: it stays aside until it shrinks.
 */
import { IbexError } from '../../errors.js';
import type { SyncDb } from '../../control/sync-config.js';
import { errorText } from '../../db/connect.js';
import { sqlstate } from '../../db/sqlstate.js';
import type { TablePlan } from '../plan.js';
import { largestRowsSql, withoutKeysSql } from '../sql/apply.js';
import { others, type RunContext } from './context.js';
import type { RunState } from './state.js';
import { parseExactJson } from '../../db/json.js';

/** PostgreSQL's limit on one COPY line (and on any value): 1 GB less one byte. */
export const COPY_LINE_LIMIT = 0x3fffffff;

/** Rows a flagged table's estimate looks at, largest first. */
const CANDIDATES = 20;

/** A COPY out of `src` failed on a row too large for it: the run is repeated, leaving such rows out. */
export class TooLargeError extends IbexError {
  constructor(readonly table: string, readonly src: string, cause: unknown) {
    super('run_failed', `a row of ${table} on db ${src} is too large to COPY (${errorText(cause)}): it is looked for and set aside`, { cause });
  }
}

/** The key of a table and source in the runner's record of tables that met a row too large. */
export function tooLargeKey(src: string, table: string): string {
  return `${src} ${table}`;
}

/**
 * After a COPY out of `src` failed: a row too large is a program limit on the source (54xxx: the
 * line passed 1 GB), or a value whose own text cannot be allocated (a bytea over 512 MB is over
 * 1 GB in hex: "invalid memory alloc request size", XX000).
 */
export function tooLarge(err: unknown, p: TablePlan, src: SyncDb): unknown {
  const from = (err as { ibexDb?: string } | null)?.ibexDb;
  if (from !== undefined && from !== src.name) return err;
  const state = sqlstate(err);
  const limit = state?.startsWith('54') || (state === 'XX000' && /invalid memory alloc request size/.test(errorText(err)));
  return limit ? new TooLargeError(p.label, src.name, err) : err;
}

/**
 * The rows of `select` (a source's rows of table `p`) that can be moved: where this table met a
 * row too large on this source, those estimated too large are set aside (st.aside) and left out.
 */
export async function movable(ctx: RunContext, st: RunState, p: TablePlan, src: SyncDb, select: string): Promise<string> {
  const k = tooLargeKey(src.name, p.label);
  const seen = ctx.tooLarge.get(k);
  if (seen === undefined) return select;
  const failed = seen.failed;
  seen.failed = false;
  const types = p.cols.map((col) => ctx.columnTypes(p).find((x) => x.name === col)?.type ?? '');
  const rows = (await ctx.pg(src).query(largestRowsSql(p, types, select, CANDIDATES))).rows
    .map((r) => ({ key: String(r.key), texts: JSON.parse(String(r.texts)) as string[], bytes: Number(r.bytes) }));
  const wasPicked = (texts: string[]): boolean => seen.picked.some((x) => JSON.stringify(x) === JSON.stringify(texts));
  // The attempts before this one of the run were rolled back: what they left out is left out
  // again, with the rows estimated over the limit.
  const out = rows.filter((r) => r.bytes >= COPY_LINE_LIMIT || wasPicked(r.texts));
  // Right after a failure, at least one row more than the failed attempt left out: the largest
  // of the others (the estimate may miss a row that escaping pushes over the limit).
  if (failed && out.every((r) => wasPicked(r.texts))) {
    const next = rows.find((r) => !out.includes(r));
    if (next) out.push(next);
  }
  for (const r of out) if (!wasPicked(r.texts)) seen.picked.push(r.texts);
  if (out.length === 0) {
    // Nothing over the limit and nothing to leave out after a failure: the estimate stops here
    // (a COPY that fails again sets it going again).
    if (seen.picked.length === 0 && !failed) ctx.tooLarge.delete(k);
    return select;
  }
  const dbs = [...others(ctx, src).map((d) => d.name), ...ctx.typed.map((t) => t.db.name)];
  for (const r of out) {
    const error = `too large to COPY: about ${r.bytes} bytes of text, and one COPY line holds at most ${COPY_LINE_LIMIT}`;
    if (ctx.cfg.onRowError === 'stall') {
      throw new IbexError('run_failed', `sync ${ctx.sync} stalls on the row ${p.label} ${r.key} from db ${src.name}: ${error} (shrink it there, or "ibex update sync ${ctx.sync} on_row_error=quarantine" to set such rows aside)`);
    }
    for (const db of dbs) {
      st.aside.push({ db, schema: p.rel.schema, table: p.rel.name, key: parseExactJson<Record<string, unknown>>(r.key), op: 'upsert', source: src.name, row: null, sqlstate: '54000', error });
    }
    ctx.log.warn({ table: p.label, db: src.name, key: r.key, bytes: r.bytes }, `the row ${p.label} ${r.key} of db ${src.name} was set aside: ${error} (see "ibex quarantine list")`);
  }
  return withoutKeysSql(p, select, out.map((r) => r.texts));
}
