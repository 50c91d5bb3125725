/**
 * Truncate: the latest truncate of a table among the sources wins; changes older than it are
 * dropped, and every other db loses the rows the truncating db no longer holds.
 */
import type { SyncDb } from '../../control/sync-config.js';
import { copyFanOut } from '../exchange.js';
import type { TablePlan } from '../plan.js';
import { anyRowSql, dropBeforeTruncateSql, keepCopyInSql, keysCopyOutSql, truncateKeepingSql } from '../sql/apply.js';
import { keepTableSql, tempNames } from '../sql/temp.js';
import { together } from '../together.js';
import { others, stampFor, type RunContext } from './context.js';
import { ownerDo } from './owner.js';
import type { RunState } from './state.js';
import { upsertSinks } from './typed.js';
import { wholeTableCopyOutSql } from '../sql/copy.js';

/** Apply every table's winning truncate on the other dbs. */
export async function truncate(ctx: RunContext, st: RunState): Promise<void> {
  for (const p of ctx.plans) {
    const t = st.table(p).truncate;
    if (!t) continue;
    await truncateTable(ctx, st, p, t);
    st.counts(p).truncates++;
    st.result.truncates++;
  }
}

async function truncateTable(ctx: RunContext, st: RunState, p: TablePlan, t: { src: SyncDb; ts: string }): Promise<void> {
  const table = st.table(p);
  if (!table.active) {
    table.active = true;
    await together(ctx.all, (d) => ctx.pg(d).query(ctx.temps.prepareSql(ctx.pg(d).client, [p])));
  }
  for (const src of ctx.sources) await ctx.pg(src).query(dropBeforeTruncateSql(p), [t.ts]);
  // What the truncating db holds now stays everywhere: its own later changes, and rows a run
  // applied there after the truncate committed but before it was replicated (that run's
  // snapshot predated it). Truncating the others regardless would leave those rows on the
  // truncating db alone, for ever.
  const receivers = others(ctx, t.src);
  const held = (await ctx.pg(t.src).query(anyRowSql(p.q))).rows[0].e === 't';
  if (held) {
    await together(receivers, (d) => ctx.pg(d).query(keepTableSql(p)));
    await copyFanOut(ctx.pg(t.src).client, keysCopyOutSql(p), receivers.map((d) => ({ client: ctx.pg(d).client, sql: keepCopyInSql(p) })));
  }
  for (const d of receivers) {
    const s = ctx.pg(d);
    await s.stamp(stampFor(ctx, p, d, t.src.name));
    // Rows a source changed after the truncate are still pending there and are read from its
    // table later in this run: keep them (a plain TRUNCATE would lose them everywhere).
    const pending = ctx.sources.includes(d) && (await s.query(anyRowSql(tempNames(p).pend))).rows[0].e === 't';
    // As the table's owner where ibex may (see owner.ts): its triggers run with its rights.
    const reads = [...(pending ? [tempNames(p).pend] : []), ...(held ? [tempNames(p).keep] : [])];
    if (pending || held) await ownerDo(ctx, d, p, reads, () => s.query(truncateKeepingSql(p, pending, held)));
    else await ownerDo(ctx, d, p, [], () => s.truncateWithFallback(p));
  }
  if (ctx.typed.length === 0) return;
  // Targets of other kinds are emptied and get every row the truncating db holds now.
  await together(ctx.typed, (td) => td.target.truncate(ctx.spec(p, td.db.name)));
  if (held) await copyFanOut(ctx.pg(t.src).client, wholeTableCopyOutSql(p), upsertSinks(ctx, st, p, t.src.name));
}
