/**
 * What the phases of a delta run share: the sync's configuration and plans, the sessions of its
 * PostgreSQL dbs, the control session, custom code, and the rules every phase applies the same way.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { SyncConfig, SyncDb } from '../../control/sync-config.js';
import type { Strategy } from '../../conflict/strategy.js';
import type { PostgresTarget } from '../../targets/postgres/postgres-target.js';
import type { Stamp } from '../../targets/postgres/postgres-dialect.js';
import type { TablePlan } from '../plan.js';
import { windowSql, type SnapshotRef } from '../sql/gather.js';
import type { Hooks } from './hooks.js';
import type { TempTables } from './temp.js';
import type { Housekeeping } from './housekeeping.js';
import type { Target, TableSpec } from '../../targets/target.js';

/** A few rows won on a source travel inline in the apply round trip (see sql/apply.ts inlineReadSql)… */
export const INLINE_ROWS = 200;
/** …and at most this many bytes of them (their text, see inlineReadSql). */
export const INLINE_BYTES = 256 * 1024;
/** Batches up to this many keys are read and deleted by one index probe per key (see absentSql). */
export const SMALL_BATCH = 1_000;

/** A batch small enough for one index probe per key. */
export function fewKeys(n: number | undefined): boolean {
  return n !== undefined && n <= SMALL_BATCH;
}

/** A target of another kind in a run: the db and its open session (it takes rows as text, see typed.ts). */
export interface TypedDb {
  db: SyncDb;
  target: Target;
}

/** What the runner knows of a table (by source) that met a row too large to COPY (run/toolarge.ts). */
export interface TooLargeSeen {
  /** A COPY of it failed in the attempt before this one. */
  failed: boolean;
  /** Keys (their columns' text) left out in this run's attempts so far: each failure leaves out one more. */
  picked: string[][];
}

/** The shared surroundings of one delta run. */
export interface RunContext {
  sync: string;
  cfg: SyncConfig;
  plans: readonly TablePlan[];
  log: Logger;
  control: pg.Client;
  /** The sync's active PostgreSQL dbs (sources and targets), and its sources. */
  all: readonly SyncDb[];
  sources: readonly SyncDb[];
  /** The sync's active targets of other kinds, open (they take rows as text, see typed.ts). */
  typed: readonly TypedDb[];
  /** A table as the target `db` (by name) sees it. */
  spec: (p: TablePlan, db: string) => TableSpec;
  /** The open session of a PostgreSQL db of the run. */
  pg: (d: SyncDb) => PostgresTarget;
  temps: TempTables;
  /** Keys a local write raced on some db in this run: left out there, queued again before the commits (run/raced.ts). */
  races: {
    use(snaps: ReadonlyMap<SyncDb, string>): void;
    leaveOut(ctx: RunContext, p: TablePlan, d: SyncDb, from: 'stage' | 'del'): Promise<boolean>;
    raced(p: TablePlan, d: SyncDb, key: string[]): void;
    claimRaced(ctx: RunContext, p: TablePlan, d: SyncDb, claim: { cols: string[]; nullsEqual: boolean; key: string[]; vals: (string | null)[] }): Promise<boolean>;
    requeue(ctx: RunContext): Promise<void>;
  };
  /** Tables (by source, see toolarge.ts) that met a row too large to COPY. Kept across runs, until a run finds none over the limit. */
  tooLarge: Map<string, TooLargeSeen>;
  /** What is due after a run's commits (backlog, purges; run/housekeeping.ts). */
  housekeeping: Housekeeping;
  hooks: Hooks;
  /** db → tables another sync reads there (capture must record what ibex applies to them). */
  downstream: Map<string, Set<string>>;
  /** The strategy of a table (a conflict customcode mapped to it takes over). */
  strategy: (p: TablePlan) => Strategy;
  /** The writable columns of a table and their types (read at load). */
  columnTypes: (p: TablePlan) => { name: string; type: string }[];
  /** The insert-only fast path and replica-direct copies are allowed (not after a fast-path conflict). */
  fastPathAllowed: boolean;
  /** apply_mode=replica: rows may be deleted and copied back with triggers silenced. */
  replica: boolean;
  /** Test hook: after resolve, before apply. */
  afterGather?: (() => Promise<void>) | undefined;
  /** The lease epoch of the daemon running the sync (the fencing token of every commit); absent: none. */
  epoch?: number | undefined;
  /** Added to each db's measured clock (ms): how tests skew a node's clock. */
  clockOffsetMs?: ((db: string) => number) | undefined;
}

/** The dbs of the run other than `d`. */
export function others(ctx: RunContext, d: SyncDb): SyncDb[] {
  return ctx.all.filter((x) => x !== d);
}

/** How ibex stamps what it applies to table `p` on db `d` (capture stays on where another sync reads it). */
export function stampFor(ctx: RunContext, p: TablePlan, d: SyncDb, origin: string | null): Stamp {
  return { origin, sync: ctx.sync, capture: ctx.downstream.get(d.name)?.has(p.label) ?? false };
}

/** This sync's delta window on its sources past `cursor`. */
export function deltaWindow(ctx: RunContext, cursor: SnapshotRef): string {
  return windowSql(ctx.sync, ctx.sources.map((s) => s.name), cursor);
}
