/**
 * A local write that races the apply costs the run that key, not the whole run.
 *
 * An apply statement on a db fails with a serialization failure (40001) when a row it must change
 * was changed there after the run's snapshot. Then (under the apply's savepoint, already rolled
 * back) the run compares, for the keys of that staged work, the row version its snapshot sees
 * with the version committed now (read on a second session, outside the run): a key whose row was
 * written, inserted or deleted by a transaction the run's snapshot does not see is raced. Only
 * those keys are left out of the db's staged work and the statement is tried again; when no key's
 * own row raced (say, a foreign-key check met a parent changed after the snapshot), the failure
 * stands and the run is repeated as a whole, so a child is never dropped for its parent's sake.
 *
 * A key left out is not dropped: before the commits, every source that had a pending change of it
 * in this run queues that change again (sql/raced.ts requeueSql), with its original time and
 * origin, inside its own run transaction, past the cursor the run sets. The raced db's own write
 * is past its cursor too (its transaction was not in the run's snapshot). So the next run sees the
 * same competing changes plus the newer local one and picks the winner under the sync's strategy.
 */
import type pg from 'pg';
import type { SyncDb } from '../../control/sync-config.js';
import type { TablePlan } from '../plan.js';
import { committedVersionsSql, leaveOutSql, requeueSql, seenVersionsSql } from '../sql/raced.js';
import type { RunContext } from './context.js';

/** One key left out on one db. */
interface RacedKey {
  p: TablePlan;
  db: SyncDb;
  /** The key's columns as text. */
  key: string[];
}

/** Is 32-bit transaction id `xid` visible in the pg_snapshot text `snap` ("xmin:xmax:xip,…")? */
export function visibleIn(snap: string, xid: string): boolean {
  const [xminS, xmaxS, xipS] = snap.split(':');
  const xmin = BigInt(xminS!);
  const xmax = BigInt(xmaxS!);
  const x32 = BigInt(xid);
  // Bootstrap and frozen ids: always visible.
  if (x32 < 3n) return true;
  // Place the 32-bit id in the epoch nearest the snapshot (ids live within 2^31 of each other).
  const wrap = 1n << 32n;
  let x = (xmax & ~(wrap - 1n)) | x32;
  if (x > xmax + (wrap >> 1n)) x -= wrap;
  else if (x < xmax - (wrap >> 1n)) x += wrap;
  if (x < xmin) return true;
  if (x >= xmax) return false;
  return !(xipS ? xipS.split(',').map((v) => BigInt(v)) : []).includes(x);
}

/**
 * The keys whose own row raced: `seen` the versions in the run (its snapshot and own writes),
 * `now` the committed versions, `snap` the run's snapshot on that db.
 */
export function racedKeys(seen: [...string[], string | null][], now: [...string[], string | null][], snap: string): string[][] {
  const committed = new Map(now.map((r) => [JSON.stringify(r.slice(0, -1)), r.at(-1) as string]));
  const out: string[][] = [];
  for (const r of seen) {
    const key = r.slice(0, -1) as string[];
    const mine = r.at(-1) as string | null;
    const latest = committed.get(JSON.stringify(key));
    // Committed by a transaction the snapshot does not see: written or inserted after it.
    if (latest !== undefined && !visibleIn(snap, latest)) out.push(key);
    // Gone now, though the snapshot saw it (not a row this run wrote): deleted after it.
    else if (latest === undefined && mine !== null && visibleIn(snap, mine)) out.push(key);
  }
  return out;
}

/** The keys left out in one run, and how to find them. */
export class Races {
  private readonly keys: RacedKey[] = [];
  private snaps: ReadonlyMap<SyncDb, string> = new Map();

  /** `peek`: a session outside the run on a db (the latest committed rows). */
  constructor(private readonly peek: (d: SyncDb) => Promise<pg.Client>) {}

  /** The run's snapshots, by db (set once the dbs are open). */
  use(snaps: ReadonlyMap<SyncDb, string>): void {
    this.snaps = snaps;
  }

  /** Keys left out on some db in this run. */
  get count(): number {
    return this.keys.length;
  }

  /**
   * After a serialization failure of staged work on db `d` (rolled back to its savepoint): leave
   * out the keys whose own row raced. Returns false when none did (the failure stands).
   */
  async leaveOut(ctx: RunContext, p: TablePlan, d: SyncDb, from: 'stage' | 'del'): Promise<boolean> {
    // Counter columns and merges need what each source changed (masks, differences), which a
    // re-queued change does not carry, and a merged row applied on the other dbs would leave the
    // raced db on another base: the failure stands and the whole run is repeated.
    if ((p.rel.deltaColumns ?? []).length > 0 || ctx.strategy(p).kind === 'merge') return false;
    // Leaving out a parent's key while its children go ahead (or a child's while its parent is
    // deleted) turns the race into foreign-key refusals the settle step then resolves one db at a
    // time; the whole run is repeated instead, as before hot keys were left out.
    if (p.inForeignKey) return false;
    const snap = this.snaps.get(d);
    if (!snap) return false;
    const s = ctx.pg(d);
    const seen = JSON.parse(String((await s.query(seenVersionsSql(p, from))).rows[0].v)) as [...string[], string | null][];
    if (seen.length === 0) return false;
    const types = p.keys.map((k) => ctx.columnTypes(p).find((c) => c.name === k)?.type);
    const keysJson = JSON.stringify(seen.map((r) => r.slice(0, -1)));
    const peek = await this.peek(d);
    const now = JSON.parse(String((await peek.query(committedVersionsSql(p, types), [keysJson])).rows[0].v)) as [...string[], string | null][];
    const raced = racedKeys(seen, now, snap);
    if (raced.length === 0) return false;
    await s.query(leaveOutSql(p, from), [JSON.stringify(raced)]);
    const known = new Set(this.keys.filter((k) => k.p === p && k.db === d).map((k) => JSON.stringify(k.key)));
    for (const key of raced) if (!known.has(JSON.stringify(key))) this.keys.push({ p, db: d, key });
    ctx.log.info({ sync: ctx.sync, table: p.label, db: d.name, keys: raced.length },
      'a local write raced the apply: its keys are left out on that db and reconsidered at the next run');
    return true;
  }

  /**
   * A staged row left out on db `d` because a local write raced a row the apply had to change
   * for it there (a unique claim's holder, see quarantine.ts): reconsidered at the next run, as a
   * key left out by leaveOut is. `key`: its columns as text.
   */
  raced(p: TablePlan, d: SyncDb, key: string[]): void {
    if (!this.keys.some((k) => k.p === p && k.db === d && JSON.stringify(k.key) === JSON.stringify(key))) this.keys.push({ p, db: d, key });
  }

  /** Queue again, on every source, its pending changes of the keys left out (inside the run transactions). */
  async requeue(ctx: RunContext): Promise<void> {
    const byTable = new Map<TablePlan, Map<string, string[]>>();
    for (const k of this.keys) {
      const m = byTable.get(k.p) ?? new Map<string, string[]>();
      byTable.set(k.p, m);
      m.set(JSON.stringify(k.key), k.key);
    }
    // A raced db's own older change is queued again too: harmless, its newer write is the one
    // the next gather takes (the latest change of a key on a source).
    for (const [p, keys] of byTable) {
      const json = JSON.stringify([...keys.values()]);
      for (const src of ctx.sources) await ctx.pg(src).query(requeueSql(p), [json, src.name]);
    }
  }
}
