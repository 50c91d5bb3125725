/**
 * A Target held in memory, for tests of the seam against real PostgreSQL sources: rows are kept
 * exactly as they arrive (PostgreSQL text output per column), transactions are copies swapped in at
 * commit. Tests may make it refuse rows, fail its next commit, or act without transactions.
 */
import type {
  KeyRow, Problem, ProgressEntry, TableSpec, Target, TargetCaps, TargetParams, TextRow, UpsertOutcome,
} from '../../src/targets/target.js';

type Tables = Map<string, Map<string, TextRow>>;

function clone(t: Tables): Tables {
  return new Map([...t].map(([k, v]) => [k, new Map(v)]));
}

/** A test Target whose state lives in this process. */
export class MemoryTarget implements Target {
  readonly kind = 'sqlite' as const;
  readonly caps: TargetCaps;
  /** Committed rows, per table label, by key (JSON of the key texts). */
  committed: Tables = new Map();
  /** Committed progress, per sync. */
  progress = new Map<string, ProgressEntry[]>();
  /** Refuse rows for which this returns a reason. */
  refuse: ((spec: TableSpec, row: TextRow) => string | undefined) | undefined;
  /** Make the next commit fail (once). */
  failNextCommit = false;
  commits = 0;
  private work: Tables | undefined;
  private workProgress: Map<string, ProgressEntry[]> | undefined;

  constructor(readonly name: string, caps: Partial<TargetCaps> = {}) {
    this.caps = { transactional: true, progressInTxn: true, copyText: false, ...caps };
  }

  /** The rows of a table (label), sorted by key, as committed. */
  rows(label: string): TextRow[] {
    return [...(this.committed.get(label)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
  }

  private tables(): Tables {
    return this.caps.transactional && this.work ? this.work : this.committed;
  }

  private table(spec: TableSpec): Map<string, TextRow> {
    const t = this.tables();
    let m = t.get(spec.label);
    if (!m) t.set(spec.label, (m = new Map()));
    return m;
  }

  private keyOf(spec: TableSpec, row: TextRow): string {
    return JSON.stringify(spec.keys.map((k) => row[spec.columns.findIndex((c) => c.name === k)] ?? null));
  }

  async connect(): Promise<void> {}
  async probe(): Promise<{ version: string }> {
    return { version: 'memory' };
  }
  async check(): Promise<Problem[]> {
    return [];
  }
  createTableSql(): string[] {
    return [];
  }
  async begin(): Promise<void> {
    if (!this.caps.transactional) return;
    this.work = clone(this.committed);
    this.workProgress = new Map(this.progress);
  }
  async readProgress(sync: string): Promise<ProgressEntry[]> {
    return [...(this.progress.get(sync) ?? [])];
  }
  async deleteKeys(spec: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    const t = this.table(spec);
    let n = 0;
    for (const k of keys) if (t.delete(JSON.stringify(k))) n++;
    return n;
  }
  async upsertRows(spec: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    const t = this.table(spec);
    const out: UpsertOutcome = { applied: 0, refused: [] };
    for (const row of rows) {
      if (row.length !== spec.columns.length) throw new Error(`row of ${row.length} values for ${spec.columns.length} columns`);
      const reason = this.refuse?.(spec, row);
      if (reason) {
        out.refused.push({ key: JSON.parse(this.keyOf(spec, row)) as KeyRow, reason });
        continue;
      }
      t.set(this.keyOf(spec, row), [...row]);
      out.applied++;
    }
    return out;
  }
  async truncate(spec: TableSpec): Promise<void> {
    this.table(spec).clear();
  }
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    const p = this.caps.transactional && this.workProgress ? this.workProgress : this.progress;
    const kept = (p.get(sync) ?? []).filter((e) => !entries.some((x) => x.source === e.source));
    p.set(sync, [...kept, ...entries]);
  }
  async commit(): Promise<void> {
    if (this.failNextCommit) {
      this.failNextCommit = false;
      throw Object.assign(new Error(`db ${this.name}: commit failed (test)`), { code: '08006' });
    }
    if (this.work) this.committed = this.work;
    if (this.workProgress) this.progress = this.workProgress;
    this.work = undefined;
    this.workProgress = undefined;
    this.commits++;
  }
  async rollback(): Promise<void> {
    this.work = undefined;
    this.workProgress = undefined;
  }
  async close(): Promise<void> {}
  async *scan(spec: TableSpec): AsyncIterable<TextRow> {
    for (const r of this.rows(spec.label)) yield r;
  }
}

/** An openTarget for RunnerOptions that hands out one MemoryTarget per db name. */
export function memoryTargets(targets: Record<string, MemoryTarget>): (params: TargetParams) => Promise<MemoryTarget> {
  return async (params) => {
    const t = targets[params.name];
    if (!t) throw new Error(`no memory target for db ${params.name}`);
    return t;
  };
}
