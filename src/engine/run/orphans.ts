/**
 * Foreign-key conflicts settled by the sync's strategy, after every db applied: a child written
 * on one db under a parent deleted on another is refused on both sides (the parent's delete where
 * the child is, the child where the parent is gone). Every db compares the same two pending
 * versions (each source's ibex_pend: the child's change, the parent's delete) in the strategy's
 * order, so every db reaches the same outcome:
 *  - the delete wins: where the child is, it is deleted (as a change of that db: the delete
 *    replicates) and then the parent; where the parent is gone, the child is left out. The
 *    children's versions are logged.
 *  - the child wins: where the parent still is, parent and children are rewritten unchanged as a
 *    change of that db, so they replicate by the next run and the parent is restored everywhere;
 *    where it is gone, the child waits for that run. The lost delete is logged.
 * What cannot be settled so (the key is not the parent's key, a table outside the sync, refused
 * again) stays quarantined.
 */
import type { ConflictRecord } from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import { winnerOrder } from '../../conflict/strategy.js';
import { stampSql } from '../../targets/postgres/postgres-dialect.js';
import type { PostgresTarget } from '../../targets/postgres/postgres-target.js';
import type { TablePlan } from '../plan.js';
import {
  childrenSql, deleteByKeySql, foreignKeySql, localChangeSql, pendingVersionSql, touchByKeySql, versionOrderSql,
} from '../sql/apply.js';
import { stampFor, type RunContext } from './context.js';
import { ownerDo } from './owner.js';
import type { RunState } from './state.js';
import { parseExactJson, stringifyExactJson } from '../../db/json.js';

interface Version { which: 'child' | 'parent'; ibex_src: string; ibex_ts: string; k: string }
type Row = Record<string, unknown>;

interface Fk { child: TablePlan; parent: TablePlan; childCols: string[]; parentCols: string[] }

const DECIDES = ['latest', 'list', 'random'];

/** Settle the foreign-key refusals the apply quarantined; settled ones leave st.quarantined. */
export async function settleOrphans(ctx: RunContext, st: RunState): Promise<void> {
  const keep: ConflictRecord[] = [];
  const settled: ConflictRecord[] = [];
  for (const q of st.quarantined) {
    const d = ctx.all.find((x) => x.name === q.losers[0]?.db);
    const p = ctx.plans.find((x) => x.rel.schema === q.schema && x.rel.name === q.table);
    if (q.kind !== 'foreign_key' || q.strategy !== 'quarantine' || !d || !p || !DECIDES.includes(ctx.strategy(p).kind)) {
      keep.push(q);
      continue;
    }
    const s = ctx.pg(d);
    await s.query('SAVEPOINT ibex_orphan');
    try {
      const out = await settleOne(ctx, s, d, p, q);
      if (out === undefined) {
        await s.query('ROLLBACK TO SAVEPOINT ibex_orphan');
        keep.push(q);
      } else {
        await s.query('RELEASE SAVEPOINT ibex_orphan');
        settled.push(...out);
      }
    } catch (err) {
      await s.query('ROLLBACK TO SAVEPOINT ibex_orphan');
      ctx.log.debug({ table: p.label, db: d.name, err: String(err) }, 'a foreign key conflict could not be settled');
      keep.push(q);
    }
  }
  st.quarantined.splice(0, st.quarantined.length, ...keep);
  st.conflicts.push(...settled);
}

async function foreignKey(ctx: RunContext, s: PostgresTarget, p: TablePlan, constraint: string): Promise<Fk | undefined> {
  const r = (await s.query(foreignKeySql(), [constraint, p.q])).rows[0];
  if (!r) return undefined;
  const child = ctx.plans.find((x) => x.rel.schema === r.child_schema && x.rel.name === r.child_table);
  const parent = ctx.plans.find((x) => x.rel.schema === r.parent_schema && x.rel.name === r.parent_table);
  const parentCols = JSON.parse(String(r.parent_cols)) as string[];
  // Only a reference to the parent's key names the parent's pending version.
  if (!child || !parent || parentCols.length !== parent.keys.length || !parent.keys.every((k) => parentCols.includes(k))) return undefined;
  return { child, parent, childCols: JSON.parse(String(r.child_cols)) as string[], parentCols };
}

/** Every source's pending version of one key. */
async function versions(ctx: RunContext, p: TablePlan, key: Row, which: Version['which']): Promise<Version[]> {
  const out: Version[] = [];
  const k = stringifyExactJson(key);
  for (const src of ctx.sources) {
    const s = ctx.pg(src);
    await s.query('SAVEPOINT ibex_version');
    try {
      for (const r of (await s.query(pendingVersionSql(p), [k])).rows) out.push({ which, ibex_src: src.name, ibex_ts: String(r.ts), k });
      await s.query('RELEASE SAVEPOINT ibex_version');
    } catch {
      // No ibex_pend for this table on that source (it had nothing to gather): no version there.
      await s.query('ROLLBACK TO SAVEPOINT ibex_version');
    }
  }
  return out;
}

async function firstOf(ctx: RunContext, s: PostgresTarget, p: TablePlan, vs: Version[]): Promise<{ which: string; src: string; ts: string } | undefined> {
  if (vs.length === 0) return undefined;
  const priority = new Map(ctx.cfg.dbs.map((d) => [d.name, d.priority]));
  const r = (await s.query(versionOrderSql(winnerOrder(ctx.strategy(p), priority, 'k')), [stringifyExactJson(vs)])).rows[0];
  return { which: String(r.which), src: String(r.ibex_src), ts: String(r.ts) };
}

async function settleOne(ctx: RunContext, s: PostgresTarget, d: SyncDb, p: TablePlan, q: ConflictRecord): Promise<ConflictRecord[] | undefined> {
  const constraint = q.losers[0]?.constraint;
  if (!constraint) return undefined;
  const fk = await foreignKey(ctx, s, p, constraint);
  if (!fk) return undefined;
  const strategy = ctx.strategy(p).kind;
  const record = (t: TablePlan, key: Row, rest: Pick<ConflictRecord, 'winner' | 'winnerRow' | 'winnerTime' | 'losers'>): ConflictRecord =>
    ({ schema: t.rel.schema, table: t.rel.name, key, kind: 'foreign_key', strategy, ...rest });
  if (q.winnerRow !== null) {
    // A child refused here: its parent is gone on this db.
    if (p !== fk.child) return undefined;
    const row = q.winnerRow as Row;
    const parentKey = Object.fromEntries(fk.parentCols.map((c, i) => [c, row[fk.childCols[i]!]]));
    if (Object.values(parentKey).some((v) => v === null || v === undefined)) return undefined;
    const vs = [...await versions(ctx, fk.child, q.key, 'child'), ...await versions(ctx, fk.parent, parentKey, 'parent')];
    const first = await firstOf(ctx, s, p, vs);
    if (!first) return undefined;
    const childSrc = vs.find((v) => v.which === 'child')?.ibex_src ?? null;
    if (first.which === 'child') {
      // The db that still holds the parent restores it (below); the child comes with it.
      ctx.log.info({ table: p.label, db: d.name, key: stringifyExactJson(q.key) }, 'a child waits for its parent, restored by a later change');
      return [];
    }
    // The child's own source deletes it when the parent's delete reaches it, and logs it there.
    if (childSrc !== null && childSrc !== d.name) return [];
    return [record(p, q.key, { winner: first.src, winnerRow: null, winnerTime: first.ts, losers: [{ db: d.name, row, changed_at: null, constraint }] })];
  }
  // A parent's delete refused here: children on this db reference it.
  if (p !== fk.parent) return undefined;
  const ref = Object.fromEntries(fk.childCols.map((c, i) => [c, q.key[fk.parentCols[i]!]]));
  const children = (await s.query(childrenSql(fk.child, fk.childCols), [stringifyExactJson(ref)])).rows
    .map((r) => ({ key: parseExactJson<Row>(String(r.key)), row: parseExactJson<Row>(String(r.row)) }));
  const vs = await versions(ctx, fk.parent, q.key, 'parent');
  for (const c of children) vs.push(...await versions(ctx, fk.child, c.key, 'child'));
  const first = await firstOf(ctx, s, p, vs);
  if (!first) return undefined;
  const deleteSrc = vs.find((v) => v.which === 'parent')?.ibex_src ?? null;
  await s.query(localChangeSql);
  // Rows are written as their table's owner where ibex may (see owner.ts); an error rolls back to
  // the caller's savepoint, role included.
  const asOwner = <T>(t: TablePlan, work: () => Promise<T>): Promise<T> => ownerDo(ctx, d, t, [], work);
  if (first.which === 'parent') {
    await asOwner(fk.child, async () => {
      for (const c of children) await s.query(deleteByKeySql(fk.child), [stringifyExactJson(c.key)]);
    });
    await s.query(stampSql(stampFor(ctx, p, d, deleteSrc)));
    await asOwner(p, () => s.query(deleteByKeySql(p), [stringifyExactJson(q.key)]));
    ctx.log.info({ table: p.label, db: d.name, key: stringifyExactJson(q.key), children: children.length }, 'a later delete of a parent removed its children here');
    return children.map((c) => record(fk.child, c.key, { winner: first.src, winnerRow: null, winnerTime: first.ts, losers: [{ db: d.name, row: c.row, changed_at: null, constraint }] }));
  }
  const restored = (await asOwner(p, () => s.query(touchByKeySql(p), [stringifyExactJson(q.key)]))).rows[0];
  await asOwner(fk.child, async () => {
    for (const c of children) await s.query(touchByKeySql(fk.child), [stringifyExactJson(c.key)]);
  });
  await s.query(stampSql(stampFor(ctx, p, d, null)));
  ctx.log.info({ table: p.label, db: d.name, key: stringifyExactJson(q.key) }, 'a parent deleted elsewhere is restored: a child of it is later');
  return [record(p, q.key, {
    winner: first.src, winnerRow: restored ? parseExactJson(String(restored.row)) : null, winnerTime: first.ts,
    losers: [{ db: deleteSrc ?? d.name, row: null, changed_at: null, constraint }],
  })];
}
