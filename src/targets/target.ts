/**
 * The seam between a run and the databases it writes (DESIGN, "Targets of other kinds").
 *
 * Sources are PostgreSQL; gather and resolve run there and produce, per table, the keys to
 * delete and the winning rows. Apply and confirm talk to a `Target`. Rows reach every target as
 * PostgreSQL's text output of each column (what COPY's text format carries, decoded once), in
 * the column order of the table's `TableSpec`; a target that needs typed values decodes them with
 * the one shared codec (`codec.ts`), keyed by the column's PostgreSQL type.
 *
 * A run on a target is: begin → readProgress → (deleteKeys | upsertRows | truncate)* →
 * writeProgress → commit, or rollback on any failure. Where the target has transactions the
 * progress record is written inside the data's transaction, so a crash after the target
 * committed is recognised by the next run; where it has none (Redis, MongoDB without a replica
 * set) it is written last, and a replay is harmless because every write is a keyed upsert or
 * delete of the current winner.
 *
 * Fencing (several daemons, docs/operations.md): entries carrying a lease epoch are written only
 * if no progress record of the sync on this target holds a newer one, checked and written
 * atomically with the data where the target has transactions (see each kind's writeProgress and
 * docs/targets.md, "Fencing"). Copies, which have no snapshot to record, write the sync's fence
 * record (`fenceEntry`) instead.
 *
 * This module is types and constants only: no driver is loaded by importing it.
 */

/** The kinds of database ibex can write to. Only `postgres` may also be a source. */
export type TargetKind = 'postgres' | 'mariadb' | 'mysql' | 'sqlite' | 'redis' | 'mongo' | 'oracle';

/** Every kind, in the order docs list them. */
export const TARGET_KINDS: readonly TargetKind[] = ['postgres', 'mariadb', 'mysql', 'sqlite', 'redis', 'mongo', 'oracle'];

/** Bucardo's `type=` spellings and ours, to the kind. */
export const TARGET_KIND_ALIASES: Readonly<Record<string, TargetKind>> = {
  postgres: 'postgres', postgresql: 'postgres', pg: 'postgres',
  mariadb: 'mariadb', mysql: 'mysql',
  sqlite: 'sqlite', sqlite3: 'sqlite',
  redis: 'redis',
  mongo: 'mongo', mongodb: 'mongo',
  oracle: 'oracle',
};

/**
 * `check()`'s line for a unique key or index of a target table besides its key, which the
 * upsert keyed on the key does not handle as `risk` says: one wording for every kind.
 */
export function otherUniqueProblem(table: string, what: 'unique key' | 'unique index', name: string, columns: readonly string[], risk: string): string {
  return `table ${table} has ${what} ${name} (${columns.join(', ')}) besides the key; ${risk}: drop it or make it a plain index`;
}

/**
 * Why a table without a key cannot go to a db of another kind (each keeps a row by its key: a
 * Redis key, a MongoDB _id, a PRIMARY KEY). One wording for `add sync` and for a run of a sync
 * configured before the check; `leaveOut` names what to leave the db out of.
 */
export function keylessTargetProblem(table: string, db: { name: string; dbtype: string }, reAdd: boolean, leaveOut: string): string {
  return `table ${table} has no primary key (nor a unique index on NOT NULL columns), and db ${db.name} is a ${db.dbtype} db, which keeps each row by its key: give the table a primary key${reAdd ? ' (then remove and add the table again)' : ''}, or leave db ${db.name} out of ${leaveOut}`;
}

/** Where and how to reach a target (the `ibex.db` row; the password is never printed). */
export interface TargetParams {
  /** The db's name in ibex (for messages). */
  name: string;
  kind: TargetKind;
  host?: string | undefined;
  port?: number | undefined;
  /** Database name; the file for SQLite; the logical db number for Redis; the service for Oracle. */
  dbname?: string | undefined;
  user?: string | undefined;
  password?: string | undefined;
  /** A connection string (mongodb://…, an Oracle connect string) or extra parameters. */
  conn?: string | undefined;
  /**
   * Open only a database that exists and create nothing: how `add db` / `update db` test a
   * connection, so that a mistyped SQLite path is refused instead of becoming a new empty file.
   */
  mustExist?: boolean | undefined;
}

/** A column as the source describes it. */
export interface ColumnSpec {
  name: string;
  /** `format_type()` on the source: `integer`, `numeric(10,2)`, `timestamp with time zone`, `text[]` … */
  type: string;
  notNull: boolean;
}

/** One table as a target sees it. */
export interface TableSpec {
  /** `schema.table` on the source, as users see it. */
  label: string;
  schema: string;
  name: string;
  /** The table's name on this target: `customname` for this db, else the source table's bare name. */
  targetName: string;
  /** The writable (non-generated) columns, in source order: every row arrives in this order. */
  columns: ColumnSpec[];
  /** The key columns, in key order; each is one of `columns`. */
  keys: string[];
}

/** A row as PostgreSQL's text output of each column (null for NULL), in `TableSpec.columns` order. */
export type TextRow = (string | null)[];

/** A key as the text output of each key column, in `TableSpec.keys` order. */
export type KeyRow = (string | null)[];

/** How far a target has applied one source of one sync. */
export interface ProgressEntry {
  source: string;
  /** The source's snapshot (pg_snapshot text) the run applied up to. */
  snapshot: string;
  /** The run that wrote it. */
  run: number;
  /**
   * The lease epoch of the daemon that ran it (absent: a run outside any daemon's lease).
   * A target that stores it refuses a commit carrying an older epoch than it holds.
   */
  epoch?: number;
}

/** The mark of a fencing failure in any target's error (engine/errors.ts isFenced recognises it). */
export const FENCED_MARK = 'ibex fencing:';

/**
 * The source name of a sync's fence record: a progress record that carries only the epoch of the
 * last daemon that wrote there (copies write it). No db can have this name; readProgress leaves it out.
 */
export const FENCE_SOURCE = '*';

/** The fence record of a sync, written by run `run` of the daemon holding the lease at `epoch`. */
export function fenceEntry(run: number, epoch: number): ProgressEntry {
  return { source: FENCE_SOURCE, snapshot: '', run, epoch };
}

/** The lease epoch a batch of progress entries carries (they all carry the same one); undefined for none. */
export function epochOf(entries: readonly ProgressEntry[]): number | undefined {
  return entries.find((e) => e.epoch !== undefined)?.epoch;
}

/** The one-line refusal of a stale commit on a target. */
export function fencedMessage(kind: TargetKind, db: string, sync: string, mine: number, newer: number): string {
  return `${FENCED_MARK} ${kind} target "${db}": a daemon with a newer lease of sync ${sync} (epoch ${newer}, this run's ${mine}) committed there: this run commits nothing`;
}

/** What a target can do; the engine plans around it. */
export interface TargetCaps {
  /** One transaction spans the whole run on this target: rollback undoes everything since begin. */
  transactional: boolean;
  /** The progress record is written inside the data's transaction (else last, after the data). */
  progressInTxn: boolean;
  /** Takes PostgreSQL COPY text unparsed (the PostgreSQL target); else rows come as TextRow. */
  copyText: boolean;
}

/** A row the target cannot hold (a value out of its range, a document too large): set aside, never truncated. */
export interface RefusedRow {
  key: KeyRow;
  /** One line: which column, why, and what would let it through. */
  reason: string;
}

/** What `upsertRows` did. */
export interface UpsertOutcome {
  applied: number;
  refused: RefusedRow[];
}

/** A mismatch between a source table and the target's, found by `check` (one line with the fix). */
export interface Problem {
  table: string;
  message: string;
}

/** One database ibex writes to. A Target is one session; it is not shared between runs at once. */
export interface Target {
  readonly kind: TargetKind;
  /** The db's name in ibex. */
  readonly name: string;
  readonly caps: TargetCaps;

  /** Connect (lazily loads the driver). Throws IbexError('unreachable') with a one-line reason. */
  connect(): Promise<void>;
  /** Server facts for `add db`: its product and version. */
  probe(): Promise<{ version: string }>;
  /** Compare the target's tables with the source's: missing tables or columns, keys, unsafe types or collations. */
  check(tables: readonly TableSpec[]): Promise<Problem[]>;
  /** CREATE TABLE statements in this target's dialect (what `ibex schema` prints); empty for schemaless kinds. */
  createTableSql(table: TableSpec): string[];

  begin(): Promise<void>;
  /** What this target has applied for a sync; 'missing' when its store lost everything (a Redis that restarted empty). */
  readProgress(sync: string): Promise<ProgressEntry[] | 'missing'>;
  /** Delete these keys (absent ones are no error). Returns how many rows went. */
  deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number>;
  /** Insert or replace these rows by key, batched under the server's limits. */
  upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome>;
  /** Remove every row of the table. */
  truncate(table: TableSpec): Promise<void>;
  /**
   * Record progress. Entries with an epoch are fenced: refused (an error whose message holds
   * FENCED_MARK) when a progress record of the sync here holds a newer epoch, else written with it.
   */
  writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void>;
  commit(): Promise<void>;
  /** Undo what can be undone since begin; never throws for a session that is already gone. */
  rollback(): Promise<void>;
  close(): Promise<void>;

  /**
   * Every row of a table for `validate`, each value in the codec's canonical text
   * (`canonicalText(type, pgText)`), so it compares equal to the source's row when the data is equal.
   */
  scan(table: TableSpec): AsyncIterable<TextRow>;
}
