/**
 * The typed state of one delta run: what each phase learned, per table and per source, keyed by
 * the plan and the db objects themselves (never by strings built from them).
 */
import type { AsideRecord } from '../../control/aside-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import type { ConflictRecord } from '../../control/run-store.js';
import type { KeyRow, ProgressEntry, Target, TextRow } from '../../targets/target.js';
import type { TablePlan } from '../plan.js';
import type { RunResult, TableCounts } from '../types.js';

/** What one source has of one table in this run. */
export interface SourceTable {
  /** Pending keys (gathered), or pending delta rows (lazy). */
  pending: number;
  /** Read straight from the delta table at apply time, never gathered (no temp tables). */
  lazy: boolean;
  /** Every pending key is a plain insert with this one origin (the insert-only fast path). */
  insertOrigin?: string | undefined;
  /** A few pending keys as JSON text (gatherSql keys_json), to send inline to the other sources. */
  keysJson?: string | undefined;
  /** Keys it won that are absent from its table (deletes to apply); undefined: not known. */
  absent?: number | undefined;
  /** Keys it won (filed in its ibex_mine); undefined: not known. */
  won?: number | undefined;
  /** The origins of the keys it won; undefined: not known. */
  origins?: Set<string | null> | undefined;
}

/** What a source's classification found for one table (before the gather). */
export interface TableClass {
  n: number;
  insonly: boolean;
  origin: string | null;
}

/** One table's facts in this run. */
export class TableRun {
  readonly sources = new Map<SyncDb, SourceTable>();
  readonly classes = new Map<SyncDb, TableClass>();
  /** The latest truncate of the table among the sources. */
  truncate: { src: SyncDb; ts: string } | undefined;
  /** Its temp tables exist and were emptied for this run on every session. */
  active = false;
  /** Each source filled its ibex_all while gathering. */
  allFilled = false;
  /** Rows custom conflict code merged (staged on every PostgreSQL db; upserted on typed targets). */
  readonly merged: TextRow[] = [];

  constructor(readonly plan: TablePlan) {}

  /** The source's facts, created empty on first use. */
  at(src: SyncDb): SourceTable {
    let s = this.sources.get(src);
    if (!s) this.sources.set(src, (s = { pending: 0, lazy: false }));
    return s;
  }

  /** Has this source pending changes of the table? */
  pendingAt(src: SyncDb): boolean {
    return (this.sources.get(src)?.pending ?? 0) > 0;
  }
}

/** Everything a delta run knows, phase after phase. */
export class RunState {
  private readonly tables = new Map<TablePlan, TableRun>();
  /** The snapshot each db's run transaction reads. */
  readonly snaps = new Map<SyncDb, string>();
  /** The cursor of each source (after Recover). */
  readonly cursors = new Map<SyncDb, string>();
  /** The progress rows of this sync on each db (read at open; see Recover). */
  readonly progress = new Map<SyncDb, ProgressEntry[]>();
  /**
   * A source's classification (gather.ts classify) read in the open round trip, when its cursor
   * was known before the open; used only while the cursor is still the one it read from.
   */
  readonly preclassified = new Map<SyncDb, { cursor: string; truncates: Record<string, unknown>[]; classes: Record<string, unknown>[] }>();
  /** Clock of each db minus ours, in ms (measured at open). */
  readonly clocks: number[] = [];
  /** Conflicts resolved by a strategy (and skipped ones). */
  readonly conflicts: ConflictRecord[] = [];
  /** Rows or deletes a db refused (another unique index, a foreign key): logged, not retried. */
  readonly quarantined: ConflictRecord[] = [];
  /** Rows a db refused for their values or their lock (on_row_error=quarantine): set aside, retried later. */
  readonly aside: AsideRecord[] = [];
  /** Milliseconds per phase. */
  readonly phases: Record<string, number> = {};
  private phaseStart = Date.now();
  /** Per typed target and table, the keys to delete there (buffered from the COPY fan-outs). */
  private readonly deletes = new Map<Target, Map<TablePlan, KeyRow[]>>();

  constructor(readonly result: RunResult, readonly sources: readonly SyncDb[]) {}

  /** A table's facts, created on first use. */
  table(p: TablePlan): TableRun {
    let t = this.tables.get(p);
    if (!t) this.tables.set(p, (t = new TableRun(p)));
    return t;
  }

  /** The sources with pending changes of a table, in source order. */
  pendingOn(p: TablePlan): SyncDb[] {
    const t = this.tables.get(p);
    return t ? this.sources.filter((s) => t.pendingAt(s)) : [];
  }

  /** Anything to apply at all. */
  hasWork(): boolean {
    return [...this.tables.values()].some((t) => t.truncate !== undefined || this.sources.some((s) => t.pendingAt(s)));
  }

  /** The cursor a source reads from (its run snapshot when it has none yet). */
  cursorOf(src: SyncDb): string {
    return this.cursors.get(src) ?? this.snaps.get(src)!;
  }

  /** The run's counts of one table. */
  counts(p: TablePlan): TableCounts {
    return tableCounts(this.result, p.label);
  }

  /** The delete keys buffered for a typed target's table (a live array: push to add, splice to take). */
  typedDeletes(target: Target, p: TablePlan): KeyRow[] {
    let byTable = this.deletes.get(target);
    if (!byTable) this.deletes.set(target, (byTable = new Map()));
    let keys = byTable.get(p);
    if (!keys) byTable.set(p, (keys = []));
    return keys;
  }

  /** Record how long the phase that just ended took. */
  phase(name: string): void {
    this.phases[name] = Date.now() - this.phaseStart;
    this.phaseStart = Date.now();
  }
}

/** The counts of one table in a run result, created at zero. */
export function tableCounts(result: RunResult, label: string): TableCounts {
  return (result.tables[label] ??= { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 });
}
