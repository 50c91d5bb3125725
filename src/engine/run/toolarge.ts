/**
 * A row too large to move: PostgreSQL builds each COPY line in one buffer of at most 1 GB, so a
 * row whose text passes it (two 600 MB columns, a 600 MB bytea in hex) cannot leave its source by
 * COPY, and the source fails the COPY with 54000 ("out of memory") or XX000 ("invalid memory alloc
 * request size"), naming no row. The run is repeated at once
 * (runner.ts); from then on, before each COPY of that table out of that source, ibex estimates the
 * rows' text (without building it, see largestRowsSql) and leaves out those over the limit — or,
 * right after a failure where none is estimated over it (escaping can push a row over), the
 * largest. Each row left out is set aside for every db it should reach, with its table, key and
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
  ctx.tooLarge.set(k, 'known');
  const types = p.cols.map((col) => ctx.columnTypes(p).find((x) => x.name === col)?.type ?? '');
  const rows = (await ctx.pg(src).query(largestRowsSql(p, types, select, CANDIDATES))).rows.map((r) => ({ key: String(r.key), bytes: Number(r.bytes) }));
  let out = rows.filter((r) => r.bytes >= COPY_LINE_LIMIT);
  if (out.length === 0 && seen === 'failed' && rows[0]) out = [rows[0]];
  if (out.length === 0) return select;
  const dbs = [...others(ctx, src).map((d) => d.name), ...ctx.typed.map((t) => t.db.name)];
  for (const r of out) {
    const error = `too large to COPY: about ${r.bytes} bytes of text, and one COPY line holds at most ${COPY_LINE_LIMIT}`;
    if (ctx.cfg.onRowError === 'stall') {
      throw new IbexError('run_failed', `sync ${ctx.sync} stalls on the row ${p.label} ${r.key} from db ${src.name}: ${error} (shrink it there, or "ibex update sync ${ctx.sync} on_row_error=quarantine" to set such rows aside)`);
    }
    for (const db of dbs) {
      st.aside.push({ db, schema: p.rel.schema, table: p.rel.name, key: JSON.parse(r.key) as Record<string, unknown>, op: 'upsert', source: src.name, row: null, sqlstate: '54000', error });
    }
    ctx.log.warn({ table: p.label, db: src.name, key: r.key, bytes: r.bytes }, `the row ${p.label} ${r.key} of db ${src.name} was set aside: ${error} (see "ibex quarantine list")`);
  }
  return withoutKeysSql(p, select, out.map((r) => JSON.parse(r.key) as Record<string, unknown>));
}
