/**
 * The pure part of `ibex validate`: how many hash buckets a table gets, which
 * buckets differ between databases, which keys differ inside them, how a key
 * is classified, and the shape of the report. No I/O here (see validate.ts).
 *
 * Vocabulary: a *bucket* is `hashtextextended(key text, seed) & (N - 1)`; per
 * bucket and db the summary is `count(*)` and the sum of the 64-bit hashes of
 * the rows' canonical text (`ROW(columns)::text` under the pinned session
 * settings), an order-independent digest. A *key* is identified by the JSON
 * array of its columns' text values (`to_json(ARRAY[k1::text, …])::text`),
 * which every database prints identically.
 */

/** Rows per bucket we aim for: small enough that narrowing a bucket moves little, large enough to keep N small. */
export const ROWS_PER_BUCKET = 128;
/** Never more buckets than this (the per-db aggregate stays a few MB). */
export const MAX_BUCKETS = 1 << 18;
/** How many differing (and in-flight) keys a report lists per table. */
export const DEFAULT_LISTED = 20;

/** The number of buckets (a power of two) for a table of about `rows` rows. */
export function bucketCount(rows: number): number {
  const want = Math.max(1, Math.ceil((Number.isFinite(rows) && rows > 0 ? rows : 0) / ROWS_PER_BUCKET));
  let n = 1;
  while (n < want && n < MAX_BUCKETS) n *= 2;
  return n;
}

/** One bucket's summary on one db: row count and the sum of row hashes (decimal text). */
export interface BucketSum {
  n: number;
  h: string;
}

/** The buckets whose summaries are not the same on every db (a bucket absent on a db counts as empty). */
export function differingBuckets(perDb: readonly Map<number, BucketSum>[]): number[] {
  const all = new Set<number>();
  for (const m of perDb) for (const b of m.keys()) all.add(b);
  const out: number[] = [];
  for (const b of all) {
    const first = perDb[0]?.get(b);
    if (perDb.some((m) => {
      const x = m.get(b);
      return (x?.n ?? 0) !== (first?.n ?? 0) || (x?.h ?? '0') !== (first?.h ?? '0');
    })) out.push(b);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Split buckets into batches whose rows (the largest count over the dbs) stay
 * under `maxRows`, so narrowing a table that differs almost everywhere never
 * holds more than that many key hashes at once.
 */
export function bucketBatches(buckets: readonly number[], perDb: readonly Map<number, BucketSum>[], maxRows: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let rows = 0;
  for (const b of buckets) {
    const n = Math.max(0, ...perDb.map((m) => m.get(b)?.n ?? 0));
    if (cur.length && rows + n > maxRows) {
      out.push(cur);
      cur = [];
      rows = 0;
    }
    cur.push(b);
    rows += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** A key whose row is not the same on every db: per db the row hash, or null where the row is missing. */
export interface KeyHashes {
  /** The key's identity: JSON array of the key columns' text values. */
  key: string;
  hashes: (string | null)[];
}

/**
 * The keys whose row hash is not the same on every db (missing on some, or
 * different). `perDb[i]` maps key identity to row hash on db i.
 */
export function differingKeys(perDb: readonly Map<string, string>[]): KeyHashes[] {
  const all = new Set<string>();
  for (const m of perDb) for (const k of m.keys()) all.add(k);
  const out: KeyHashes[] = [];
  for (const key of all) {
    const hashes = perDb.map((m) => m.get(key) ?? null);
    if (hashes.some((h) => h !== hashes[0])) out.push({ key, hashes });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Do the versions of a key agree on every db (all the same row, or missing everywhere)? */
export function agrees(hashes: readonly (string | null)[]): boolean {
  return hashes.every((h) => h === hashes[0]);
}

/** A key as shown to users: column name → text value. */
export function keyObject(keyColumns: readonly string[], key: string): Record<string, string | null> {
  const values = JSON.parse(key) as (string | null)[];
  return Object.fromEntries(keyColumns.map((c, i) => [c, values[i] ?? null]));
}

/** The key columns' text values of a key identity, one array per key column (query parameters). */
export function keyColumnsOf(keys: readonly string[], width: number): (string | null)[][] {
  const cols: (string | null)[][] = Array.from({ length: width }, () => []);
  for (const k of keys) {
    const values = JSON.parse(k) as (string | null)[];
    for (let i = 0; i < width; i++) cols[i]!.push(values[i] ?? null);
  }
  return cols;
}

/** A row as shown to users: column name → text value (NULL as null). */
export type RowText = Record<string, string | null>;

/** One version of a differing key on one db: the row, or null where it is missing. */
export interface KeyVersion {
  db: string;
  /** The row's columns as text, null when the db has no row with this key. */
  row: RowText | null;
  /** The 64-bit hash of the row's canonical text (decimal), null when missing. */
  hash: string | null;
}

/** A key listed in a report. */
export interface ListedKey {
  key: Record<string, string | null>;
  versions: KeyVersion[];
}

/** A key with changes not yet consumed by the sync. */
export interface InFlightKey {
  key: Record<string, string | null>;
  /** The sources holding changes of this key the sync has not consumed yet ("truncate": a pending truncate). */
  pendingOn: string[];
}

/** The outcome for one table. */
export interface TableReport {
  table: string;
  /** equal: identical everywhere (in-flight keys aside); different: rows differ; schema: columns or key differ, rows not compared. */
  status: 'equal' | 'different' | 'schema';
  /** Rows per db (in the first pass's snapshot). */
  rows: Record<string, number>;
  buckets: number;
  differingBuckets: number;
  /** Keys that differ and have no pending change: what exit 6 is about. */
  differences: number;
  /** The first differing keys, with every db's version. */
  keys: ListedKey[];
  /** Keys that differ but have changes the sync has not consumed yet. */
  inFlight: number;
  inFlightKeys: InFlightKey[];
  /** Schema differences (status schema): per db, what is wrong. */
  schema?: { db: string; problem: string }[];
  /** Set when listing stopped (too many differences to hold). */
  truncated?: boolean;
  ms: number;
}

/** The outcome for one sequence. */
export interface SequenceReport {
  sequence: string;
  /** Per db the value the next nextval() follows (last_value, less one when not yet called); null where missing. */
  values: Record<string, string | null>;
  /** equal; behind: some db is lower (the sync raises it at its next run, not a difference); missing: absent on a db (a difference). */
  status: 'equal' | 'behind' | 'missing';
  behind: string[];
}

/** The outcome for one sync. */
export interface SyncReport {
  sync: string;
  /** The dbs compared (active PostgreSQL sources and targets). */
  dbs: string[];
  /** Dbs of the sync that were not compared, with the reason. */
  skipped: { db: string; reason: string }[];
  tables: TableReport[];
  sequences: SequenceReport[];
  /** True when nothing differs (in-flight keys aside). */
  equal: boolean;
  differences: number;
  inFlight: number;
  ms: number;
}

/** Is a sequence report a difference (exit 6)? */
export function sequenceDiffers(s: SequenceReport): boolean {
  return s.status === 'missing';
}

/** Sum up a sync's tables and sequences. */
export function summarize(sync: string, dbs: string[], skipped: SyncReport['skipped'], tables: TableReport[], sequences: SequenceReport[], ms: number): SyncReport {
  const differences = tables.reduce((n, t) => n + t.differences + (t.status === 'schema' ? 1 : 0), 0) + sequences.filter(sequenceDiffers).length;
  return {
    sync, dbs, skipped, tables, sequences, equal: differences === 0, differences,
    inFlight: tables.reduce((n, t) => n + t.inFlight, 0), ms,
  };
}

/** The effective value of a sequence: last_value, less one when nextval() was not called yet. */
export function sequenceValue(lastValue: string, isCalled: boolean): bigint {
  return BigInt(lastValue) - (isCalled ? 0n : 1n);
}

/** Classify sequence values across dbs. */
export function sequenceReport(sequence: string, values: Record<string, bigint | null>): SequenceReport {
  const present = Object.values(values).filter((v): v is bigint => v !== null);
  const shown = Object.fromEntries(Object.entries(values).map(([db, v]) => [db, v === null ? null : v.toString()]));
  if (present.length < Object.keys(values).length) {
    return { sequence, values: shown, status: 'missing', behind: [] };
  }
  const max = present.reduce((a, b) => (b > a ? b : a), present[0] ?? 0n);
  const behind = Object.entries(values).filter(([, v]) => v !== null && v < max).map(([db]) => db);
  return { sequence, values: shown, status: behind.length ? 'behind' : 'equal', behind };
}

/** The conflict-log kind of a repaired key (the runner's rule: winner = the repair's source, loser = a target). */
export function repairKind(fromHasRow: boolean, targetHadRow: boolean): 'update_update' | 'update_delete' | 'delete_update' | 'delete_delete' {
  if (!fromHasRow && !targetHadRow) return 'delete_delete';
  if (!fromHasRow) return 'delete_update';
  if (!targetHadRow) return 'update_delete';
  return 'update_update';
}

/** A db as a candidate repair source. */
export interface RepairCandidate {
  name: string;
  role: string;
  priority: number;
}

/**
 * The db a repair copies from when none is named: the highest dbgroup
 * priority; ties go to a source over a target, then to the first name.
 */
export function defaultRepairSource(dbs: readonly RepairCandidate[]): string | undefined {
  const sorted = [...dbs].sort((a, b) => b.priority - a.priority || (a.role === 'source' ? 0 : 1) - (b.role === 'source' ? 0 : 1) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return sorted[0]?.name;
}

/** The columns that differ between the versions present (to show a compact difference). */
export function differingColumns(versions: readonly KeyVersion[]): string[] {
  const rows = versions.map((v) => v.row).filter((r): r is RowText => r !== null);
  if (rows.length < 2) return [];
  const cols = Object.keys(rows[0]!);
  return cols.filter((c) => rows.some((r) => r[c] !== rows[0]![c]));
}
