/**
 * Rows are applied as the owner of their table, as PostgreSQL's logical replication does by
 * default (run_as_owner = false): a trigger or a rule the table's owner wrote then runs with the
 * owner's rights, not ibex's (which may write ibex's schema: progress rows, deltas). ibex switches
 * role (SET LOCAL ROLE) only around the statements that write the user's table, and only where its
 * role may (a member of the owner role, or a superuser); elsewhere it applies as itself and says
 * so in the run's details ("ibex status"). The staging tables are ibex's temp tables: the
 * session's temp schema is usable by any role it switches to, and each table read by an apply
 * statement is granted SELECT to the owner.
 */
import { ident } from '../../db/ident.js';
import { textArraySql } from '../sql/open.js';
import type { SyncDb } from '../../control/sync-config.js';
import type { TablePlan } from '../plan.js';
import type { RunContext } from './context.js';

interface Owner { owner: string; self: boolean; may: boolean }

/** A session that can query (a run's db session, a copy's PostgresTarget). */
interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/** SQL to switch a session to a table's owner and back, or '' when ibex goes on as itself. */
export interface OwnerSwitch { before: string; after: string; again: string }

const OWNER_COLUMNS = `pg_get_userbyid(c.relowner) AS owner, c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS self,
              pg_has_role(current_user, c.relowner, 'MEMBER') AS may`;

const flag = (v: unknown): boolean => v === true || v === 't';

const owners = new WeakMap<RunContext, Map<SyncDb, Promise<Map<string, Owner>>>>();
/** The dbs a run applied to as someone (asOwner asked): the ones its details report. */
const applied = new WeakMap<RunContext, Set<SyncDb>>();

/**
 * The owners of the sync's tables, read in the run's snapshot (a statement of the open round trip,
 * see run/open.ts; the values are inlined because that text takes no parameters).
 */
export function ownersSql(plans: readonly Pick<TablePlan, 'label' | 'q'>[]): string {
  return `SELECT x.label, ${OWNER_COLUMNS}
         FROM unnest(${textArraySql(plans.map((x) => x.label))}, ${textArraySql(plans.map((x) => x.q))}) AS x(label, q) JOIN pg_class c ON c.oid = to_regclass(x.q)`;
}

function byDbOf(ctx: RunContext): Map<SyncDb, Promise<Map<string, Owner>>> {
  let byDb = owners.get(ctx);
  if (!byDb) owners.set(ctx, (byDb = new Map()));
  return byDb;
}

/** Keep the owners the open round trip read on db `d` (the rows of ownersSql). */
export function noteOwners(ctx: RunContext, d: SyncDb, rows: readonly Record<string, unknown>[]): void {
  byDbOf(ctx).set(d, Promise.resolve(new Map(rows.map((x) => [String(x.label), { owner: String(x.owner), self: flag(x.self), may: flag(x.may) }]))));
}

/** The owners of the sync's tables on one db (read once per run: at open, or here when open did not). */
function ownersOn(ctx: RunContext, d: SyncDb): Promise<Map<string, Owner>> {
  const byDb = byDbOf(ctx);
  let p = byDb.get(d);
  if (!p) {
    p = ctx.pg(d).query(ownersSql(ctx.plans)).then((r) => {
      noteOwners(ctx, d, r.rows);
      return byDb.get(d)!;
    });
    byDb.set(d, p);
  }
  return p;
}

function switchSql(o: Owner | undefined, reads: readonly string[], privileges = 'SELECT'): OwnerSwitch {
  if (!o || o.self || !o.may) return { before: '', after: '', again: '' };
  const role = ident(o.owner).text;
  return { before: `${reads.length ? `GRANT ${privileges} ON ${reads.join(', ')} TO ${role}; ` : ''}SET LOCAL ROLE ${role}`, after: 'RESET ROLE', again: `SET LOCAL ROLE ${role}` };
}

/**
 * SQL to run before a table's apply statements on db `d` (grants on the temp tables they read,
 * then SET LOCAL ROLE), or '' when ibex applies as itself; `after` goes back to ibex's role,
 * `again` switches back to the owner.
 */
export async function asOwner(ctx: RunContext, d: SyncDb, p: TablePlan, reads: readonly string[]): Promise<OwnerSwitch> {
  let used = applied.get(ctx);
  if (!used) applied.set(ctx, (used = new Set()));
  used.add(d);
  return switchSql((await ownersOn(ctx, d)).get(p.label), reads);
}

/**
 * Run `work` (statements that write table `p` on db `d`) as the table's owner where ibex may.
 * ibex's role is back afterwards, after an error too (see switchBack).
 */
export async function ownerDo<T>(ctx: RunContext, d: SyncDb, p: TablePlan, reads: readonly string[], work: () => Promise<T>): Promise<T> {
  return withSwitch(ctx.pg(d), await asOwner(ctx, d, p, reads), work);
}

async function withSwitch<T>(s: Queryable, sw: OwnerSwitch, work: () => Promise<T>): Promise<T> {
  if (sw.before) await s.query(sw.before);
  let out: T;
  try {
    out = await work();
  } catch (err) {
    await switchBack(s, sw);
    throw err;
  }
  if (sw.after) await s.query(sw.after);
  return out;
}

/**
 * After `work` failed as the owner: back to ibex's role while the transaction still takes
 * statements (a caller that goes on with the session, after a savepoint taken inside the work or
 * an error that was not the database's, must not write ibex's tables as the owner). In an aborted
 * transaction this fails, and needs not succeed: the rollback that must follow undoes the SET
 * LOCAL ROLE. The error that matters is the work's, which the caller rethrows.
 */
export async function switchBack(s: Queryable, sw: OwnerSwitch): Promise<void> {
  if (sw.after) await s.query(sw.after).catch(() => undefined);
}

/**
 * Owner mode outside a delta run (onetimecopy, fullcopy): the switch to the owner of table `q` on
 * session `s`, read once per `cache` (one copy, `key` naming the db and table); `reads` (temp
 * tables) are granted `privileges` first.
 */
export async function copyOwnerSwitch(s: Queryable, cache: OwnerCache, key: string, q: string, reads: readonly string[] = [], privileges = 'SELECT'): Promise<OwnerSwitch> {
  let o = cache.get(key);
  if (!o) {
    o = s.query(`SELECT ${OWNER_COLUMNS} FROM pg_class c WHERE c.oid = to_regclass($1)`, [q])
      .then((r) => (r.rows[0] ? { owner: String(r.rows[0].owner), self: flag(r.rows[0].self), may: flag(r.rows[0].may) } : undefined));
    cache.set(key, o);
  }
  return switchSql(await o, reads, privileges);
}

/** `work` on session `s` as the owner of table `q` where ibex may (see copyOwnerSwitch). */
export async function copyAsOwner<T>(s: Queryable, cache: OwnerCache, key: string, q: string, reads: readonly string[], work: () => Promise<T>, privileges = 'SELECT'): Promise<T> {
  return withSwitch(s, await copyOwnerSwitch(s, cache, key, q, reads, privileges), work);
}

/** Owners read by copyAsOwner during one copy. */
export type OwnerCache = Map<string, Promise<Owner | undefined>>;
/** How the run applied on each db, for "ibex status": as the tables' owners, or as ibex's role and why. */
export async function applyAsText(ctx: RunContext): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const d of ctx.all) {
    const byDb = owners.get(ctx)?.get(d);
    if (!byDb || !applied.get(ctx)?.has(d)) continue;
    const all = [...(await byDb).values()];
    const not = [...new Set(all.filter((o) => !o.self && !o.may).map((o) => o.owner))];
    const switched = all.some((o) => !o.self && o.may);
    out[d.name] = not.length ? `ibex's role (not a member of owner ${not.join(', ')})` : switched ? 'table owners' : "ibex's role (owns the tables)";
  }
  return out;
}
