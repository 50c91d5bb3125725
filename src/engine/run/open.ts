/**
 * Open: one transaction per db (REPEATABLE READ, or SERIALIZABLE), its snapshot fixed by the
 * first query, the db's clock, the schema check and the progress rows, in one round trip per db.
 * Then Recover: a run whose transactions all committed but whose cursor update was lost is
 * recognised from the progress rows it wrote on every other db.
 */
import { PauseError } from '../errors.js';
import * as store from '../../control/run-store.js';
import { openSql, NEWER_SNAPSHOT_SQL } from '../sql/open.js';
import { together } from '../together.js';
import type { RunContext } from './context.js';
import type { RunState } from './state.js';
import { openTyped } from './typed.js';
import { noteOwners, ownersSql } from './owner.js';
import { classifyText } from './gather.js';

/** Open every db's run transaction and check its tables still match the plans. */
export async function open(ctx: RunContext, st: RunState): Promise<void> {
  // The tables' owners (run/owner.ts) come in the same round trip, after the progress rows.
  const text = `${openSql({ serializable: ctx.cfg.isolationLevel === 'serializable', replica: ctx.replica, sync: ctx.sync, rels: ctx.plans.map((p) => p.rel) })};
         ${ownersSql(ctx.plans)}`;
  // Targets of other kinds begin and read their progress meanwhile.
  const typed = openTyped(ctx, st);
  const pg = together(ctx.all, async (d) => {
    // A source whose cursor is known already classifies its pending changes in this round trip
    // too (not when before_check_rows customcode runs between the open and the gather).
    const cursor = ctx.sources.includes(d) && !ctx.hooks.has('before_check_rows') ? st.cursors.get(d) : undefined;
    const t0 = Date.now();
    const [, r, fp, prog, own, tr, cls] = await ctx.pg(d).queryAll(cursor === undefined ? text : `${text};\n${classifyText(ctx, d, cursor)}`);
    const t1 = Date.now();
    noteOwners(ctx, d, own!.rows);
    if (cursor !== undefined) st.preclassified.set(d, { cursor, truncates: tr!.rows, classes: cls!.rows });
    st.progress.set(d, prog!.rows.map((x) => ({ source: String(x.source), snapshot: String(x.snapshot), run: Number(x.run) })));
    st.snaps.set(d, String(r!.rows[0].snap));
    st.clocks.push(Number(r!.rows[0].now_ms) + (ctx.clockOffsetMs?.(d.name) ?? 0) - (t0 + t1) / 2);
    const got = new Map(fp!.rows.map((row) => [String(row.label), String(row.fp)]));
    for (const p of ctx.plans) {
      const f = got.get(p.label) ?? '';
      if (f !== p.fingerprint) {
        throw new PauseError(`table ${p.label} on db ${d.name} no longer matches (${describeDiff(p.fingerprint, f)}): make the tables identical on every db, then "ibex resume ${ctx.sync}"`);
      }
    }
  });
  await together<Promise<unknown>, unknown>([pg, typed], (x) => x);
}

/** The spread of the dbs' clocks measured at open (ms). */
export function clockSkew(st: RunState): number {
  return st.clocks.length > 1 ? Math.max(...st.clocks) - Math.min(...st.clocks) : 0;
}

/**
 * Adopt the snapshots of a run that committed everywhere before its cursor was saved (keeps a
 * stale re-delivery from overriding a later change under a priority strategy), and settle that
 * run's conflict records: its overwrites happened everywhere.
 */
export async function recover(ctx: RunContext, st: RunState): Promise<void> {
  const adoptedRuns = new Set<number>();
  for (const src of ctx.sources) {
    const others = [...ctx.all, ...ctx.typed.map((t) => t.db)].filter((d) => d !== src);
    const seen = new Set(others.map((d) => (st.progress.get(d) ?? []).find((e) => e.source === src.name)?.snapshot ?? ''));
    const snap = [...seen][0];
    const cur = st.cursors.get(src);
    if (others.length === 0 || seen.size !== 1 || !snap || !cur || snap === cur) continue;
    const newer = await ctx.pg(src).query(NEWER_SNAPSHOT_SQL, [snap, cur]);
    if (newer.rows[0].n === 't') {
      ctx.log.info({ source: src.name }, 'adopting the snapshot of a run that committed everywhere before its cursor was saved');
      st.cursors.set(src, snap);
      for (const d of others) for (const e of st.progress.get(d) ?? []) adoptedRuns.add(e.run);
    }
  }
  for (const run of adoptedRuns) if (run && run !== st.result.runId) await store.settleConflicts(ctx.control, run, true);
}

/** Say which columns differ between two fingerprints. */
function describeDiff(want: string, got: string): string {
  if (!got) return 'the table is missing';
  const a = new Set(want.split(', '));
  const b = new Set(got.split(', '));
  const missing = [...a].filter((x) => x && !b.has(x));
  const added = [...b].filter((x) => x && !a.has(x));
  const parts = [];
  if (missing.length) parts.push(`expected ${missing.join(', ')}`);
  if (added.length) parts.push(`found ${added.join(', ')}`);
  return parts.join('; ') || 'columns differ';
}
