/**
 * `ibex validate`: compare every table of a sync across its PostgreSQL
 * databases without moving whole tables (DESIGN, "What must always hold" 1).
 *
 *  pass 1  per db one REPEATABLE READ READ ONLY transaction; per table, per
 *          hash bucket of the key, count(*) and the sum of the rows' text
 *          hashes. Only buckets that differ are narrowed: key and row hash of
 *          their rows, diffed in Node. Keys with delta rows the sync has not
 *          consumed yet (read in the same snapshot, after the cursors were
 *          read) are *in flight*, not different.
 *  pass 2  the keys that differ are read again in fresh snapshots (cursors
 *          first): the snapshots of two databases are not taken at the same
 *          instant, so a change applied between them looks like a difference
 *          once; a real difference is there twice. The listed keys get every
 *          db's row.
 *  wait    optionally, in-flight keys are read again until they drained.
 *
 * Reading the cursors before the snapshots matters: a cursor read later could
 * already have passed a change that one db's snapshot has not seen applied.
 */
import { together } from '../engine/together.js';
import type pg from 'pg';
import { connect, errorText } from '../db/connect.js';
import { qualified } from '../db/ident.js';
import { IbexError } from '../errors.js';
import { loadSyncConfig, type SyncConfig, type SyncDb } from '../control/sync-config.js';
import * as store from '../control/run-store.js';
import { buildPlans, fingerprintParams, fingerprintQuery, type TablePlan } from '../engine/plan.js';
import * as q from './queries.js';
import { compareForeignTable, rowDigest, type ForeignDiff } from './foreign.js';
import { connectTarget } from '../targets/registry.js';
import { tableSpec } from '../targets/spec.js';
import { tableInfo } from '../db/catalog.js';
import type { Target, TableSpec } from '../targets/target.js';
import {
  agrees, bucketBatches, bucketCount, DEFAULT_LISTED, differingBuckets, differingKeys, keyColumnsOf, keyObject,
  sequenceReport, sequenceValue, summarize,
  type BucketSum, type InFlightKey, type KeyHashes, type ListedKey, type SequenceReport, type SyncReport, type TableReport,
} from './compare.js';

/** Options of one validation. */
export interface ValidateOptions {
  /** Only these relations (`schema.table` labels); all when undefined. */
  only?: (schema: string, name: string) => boolean;
  /** How many differing and in-flight keys to list per table. */
  listed?: number;
  /** Re-read in-flight keys until they drained, for at most this long. */
  waitMs?: number;
  /** Progress lines (the CLI shows them on a terminal). */
  progress?: (line: string) => void;
}

/** At most this many key hashes held in memory while narrowing one batch of buckets. */
const NARROW_BATCH_ROWS = 500_000;
/** Keys per statement when reading keys back, checking delta rows, repairing. */
const KEY_BATCH = 20_000;
/** Stop collecting a table's differing keys beyond this (it is too far apart: copy it). */
const MAX_DIFFERING_KEYS = 1_000_000;

/** What pass 1 and 2 know about a table between passes. */
interface TableState {
  plan: TablePlan;
  report: TableReport;
  /** Keys that differ and are not in flight (all of them, for repair). */
  different: KeyHashes[];
  /** Keys in flight: identity → sources holding pending changes. */
  inFlight: Map<string, string[]>;
}

/** A validation of one sync: its sessions, plans and findings. Close it. */
export class Validator {
  private cfg: SyncConfig | undefined;
  private plans: TablePlan[] = [];
  private dbs: SyncDb[] = [];
  private skipped: { db: string; reason: string }[] = [];
  private readonly conns = new Map<string, pg.Client>();
  private states: TableState[] = [];
  private sequences: SequenceReport[] = [];
  /** Active targets of other kinds (compared row by row against one source, see foreign.ts). */
  private foreign: SyncDb[] = [];
  private readonly targets = new Map<string, Target>();
  /** Per foreign db, per table label, the keys that differ there with both versions (for repairForeign). */
  private foreignDiffs = new Map<string, Map<string, ForeignDiff[]>>();

  constructor(private readonly control: pg.Client, readonly sync: string, private readonly opts: ValidateOptions = {}) {}

  /** The sync's configuration (after `load`). */
  config(): SyncConfig {
    if (!this.cfg) throw new IbexError('internal', `validate: sync ${this.sync} is not loaded`);
    return this.cfg;
  }

  /** The compared dbs (after `load`). */
  compared(): SyncDb[] {
    return this.dbs;
  }

  /** The plans of the compared tables (after `load`). */
  tablePlans(): TablePlan[] {
    return this.plans;
  }

  /** A session on a compared db, opened once. */
  async session(d: SyncDb): Promise<pg.Client> {
    let c = this.conns.get(d.name);
    if (c) return c;
    try {
      c = await connect(d.params, { applicationName: 'ibex/validate', lockTimeoutMs: 10_000 });
    } catch (err) {
      throw new IbexError('unreachable', `db ${d.name} of sync ${this.sync} is unreachable: ${errorText(err)}`, { cause: err });
    }
    this.conns.set(d.name, c);
    return c;
  }

  /** Read the configuration and build the table plans (from the first compared source). */
  async load(): Promise<void> {
    const cfg = await loadSyncConfig(this.control, this.sync);
    this.cfg = cfg;
    this.skipped = [];
    this.dbs = [];
    this.foreign = [];
    for (const d of cfg.dbs) {
      if (d.status !== 'active') this.skipped.push({ db: d.name, reason: 'inactive' });
      else if (d.role === 'fullcopy') this.skipped.push({ db: d.name, reason: 'fullcopy target (refreshed only on kick or interval)' });
      else if (d.dbtype !== 'postgres') this.foreign.push(d);
      else this.dbs.push(d);
    }
    const only = this.opts.only;
    const rels = cfg.relations.filter((r) => r.reltype === 'table' && (!only || only(r.schema, r.name)));
    const ref = this.dbs.find((d) => d.role === 'source') ?? this.dbs[0];
    const others = ref && rels.length ? await Promise.all(this.dbs.filter((d) => d !== ref).map(async (d) => ({ db: d.name, client: await this.session(d) }))) : [];
    this.plans = ref && rels.length ? await buildPlans(await this.session(ref), rels, ref.name, others) : [];
  }

  /** The compared targets of other kinds (after `load`). */
  comparedForeign(): SyncDb[] {
    return this.foreign;
  }

  /** A connected Target for a compared db of another kind, opened once. */
  async target(d: SyncDb): Promise<Target> {
    let t = this.targets.get(d.name);
    if (!t) {
      t = await connectTarget(d);
      this.targets.set(d.name, t);
    }
    return t;
  }

  /** The TableSpec of a plan as target `on` sees it (columns as the reference source has them, its customname there). */
  async spec(p: TablePlan, ref: SyncDb, on: SyncDb): Promise<TableSpec> {
    const info = await tableInfo(await this.session(ref), p.rel.schema, p.rel.name);
    if (!info) throw new IbexError('config', `table ${p.label} is missing on db ${ref.name}: create it, or remove it from the sync`);
    return tableSpec(info, p.keys, p.rel.customnames?.[on.name]);
  }

  /** Per foreign db, the keys that differ there per table label (with both versions), after `compare`: what a repair re-applies. */
  foreignDifferences(): Map<string, Map<string, ForeignDiff[]>> {
    return this.foreignDiffs;
  }

  /** The keys that differ (not in flight) per table label, after `compare`: what `repair` re-applies. */
  differences(): Map<string, string[]> {
    return new Map(this.states.filter((s) => s.different.length).map((s) => [s.plan.label, s.different.map((k) => k.key)]));
  }

  /** Pass 1, pass 2 (and the wait for in-flight keys); returns the report. */
  async compare(): Promise<SyncReport> {
    const started = Date.now();
    const cfg = this.config();
    this.states = [];
    this.sequences = [];
    const pgCompared = this.dbs.length >= 2;
    if (pgCompared) {
      await this.firstPass();
      const recheck = this.states.filter((s) => s.different.length);
      if (recheck.length) await this.recheck(recheck, 'different');
      const deadline = Date.now() + (this.opts.waitMs ?? 0);
      for (;;) {
        const waiting = this.states.filter((s) => s.inFlight.size);
        if (waiting.length === 0 || Date.now() >= deadline) break;
        this.opts.progress?.(`sync ${this.sync}: waiting for ${waiting.reduce((n, s) => n + s.inFlight.size, 0)} in-flight key(s) to drain`);
        await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
        await this.recheck(waiting, 'inflight');
      }
      for (const s of this.states) this.finishReport(s);
    }
    if (this.foreign.length && this.dbs.length) await this.compareForeign(pgCompared);
    const relsShown = cfg.relations.filter((r) => !this.opts.only || this.opts.only(r.schema, r.name));
    const seqs = relsShown.filter((r) => r.reltype === 'sequence');
    if (seqs.length && this.dbs.length >= 2) this.sequences = await this.compareSequences(seqs.map((r) => ({ schema: r.schema, name: r.name })));
    return summarize(this.sync, this.comparedNames(), this.skipped, this.states.map((s) => s.report), this.sequences, Date.now() - started);
  }

  private comparedNames(): string[] {
    return [...this.dbs, ...this.foreign].map((d) => d.name);
  }

  /**
   * Compare every target of another kind with the reference source, table by table: twice when
   * the first read finds differences (a run may have been applying between the two reads), a key
   * counting only if it differs both times and has no change in flight.
   */
  private async compareForeign(pgCompared: boolean): Promise<void> {
    const ref = this.dbs.find((d) => d.role === 'source') ?? this.dbs[0]!;
    this.foreignDiffs = new Map();
    if (!pgCompared) {
      this.states = this.plans.map((plan) => ({
        plan, different: [], inFlight: new Map(),
        report: { table: plan.label, status: 'equal', rows: {}, buckets: 0, differingBuckets: 0, differences: 0, keys: [], inFlight: 0, inFlightKeys: [], ms: 0 },
      }));
    }
    for (const d of this.foreign) {
      const target = await this.target(d);
      const perTable = new Map<string, ForeignDiff[]>();
      this.foreignDiffs.set(d.name, perTable);
      for (const s of this.states) {
        if (s.report.status === 'schema') continue;
        const t0 = Date.now();
        this.opts.progress?.(`sync ${this.sync}: table ${s.plan.label} on ${d.name} (${d.dbtype})`);
        const spec = await this.spec(s.plan, ref, d);
        let first = await this.readForeign(ref, s.plan, spec, target);
        s.report.rows[ref.name] ??= first.sourceRows;
        if (first.diffs.length) {
          const again = await this.readForeign(ref, s.plan, spec, target);
          const twice = new Set(again.diffs.map((x) => x.key));
          first = { ...again, diffs: again.diffs.filter((x) => twice.has(x.key) && first.diffs.some((y) => y.key === x.key)), inFlight: again.inFlight };
        }
        s.report.rows[d.name] = first.targetRows;
        const different = first.diffs.filter((x) => !first.inFlight.has(x.key));
        perTable.set(s.plan.label, different);
        s.report.differences += different.length;
        s.report.inFlight += first.inFlight.size;
        if (different.length) s.report.status = 'different';
        const listed = this.opts.listed ?? DEFAULT_LISTED;
        for (const x of different.slice(0, Math.max(0, listed - s.report.keys.length))) s.report.keys.push(this.foreignListed(s.plan, spec, ref, d, x));
        for (const [k, on] of [...first.inFlight].slice(0, Math.max(0, listed - s.report.inFlightKeys.length))) {
          s.report.inFlightKeys.push({ key: keyObject(s.plan.keys, k), pendingOn: [...on].sort() });
        }
        s.report.ms += Date.now() - t0;
      }
    }
  }

  /** One read of a table on a foreign target against the source, in a fresh source snapshot; keys in flight found in it. */
  private async readForeign(ref: SyncDb, plan: TablePlan, spec: TableSpec, target: Target):
    Promise<{ diffs: ForeignDiff[]; sourceRows: number; targetRows: number; inFlight: Map<string, string[]> }> {
    const cursors = await store.readCursors(this.control, this.sync);
    const c = await this.session(ref);
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const out = await compareForeignTable(c, plan, spec, target);
      const inFlight = await this.pendingKeys(plan, out.diffs.map((x) => x.key), cursors);
      await c.query('COMMIT');
      return { ...out, inFlight };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined); // the session is discarded with the validator
      throw err;
    }
  }

  private foreignListed(plan: TablePlan, spec: TableSpec, ref: SyncDb, d: SyncDb, x: ForeignDiff): ListedKey {
    const row = (r: (string | null)[] | null): Record<string, string | null> | null => (r ? Object.fromEntries(spec.columns.map((c, i) => [c.name, r[i] ?? null])) : null);
    return {
      key: keyObject(plan.keys, x.key),
      versions: [
        { db: ref.name, row: row(x.source), hash: x.source ? rowDigest(x.source) : null },
        { db: d.name, row: row(x.target), hash: x.target ? rowDigest(x.target) : null },
      ],
    };
  }

  /**
   * Re-read keys after a repair and report them again (fresh snapshots).
   * `netRows` (table → db → rows added) keeps the row counts of the report current.
   */
  async verify(keys: Map<string, string[]>, netRows: Map<string, Record<string, number>> = new Map()): Promise<SyncReport> {
    const started = Date.now();
    const states = this.states.filter((s) => keys.has(s.plan.label));
    for (const s of this.states) {
      for (const [db, n] of Object.entries(netRows.get(s.plan.label) ?? {})) {
        if (s.report.rows[db] !== undefined) s.report.rows[db] += n;
      }
    }
    for (const s of states) {
      s.different = (keys.get(s.plan.label) ?? []).map((key) => ({ key, hashes: [] }));
    }
    await this.recheck(states, 'different');
    for (const s of this.states) this.finishReport(s);
    if (this.foreign.length && this.dbs.length) await this.compareForeign(this.dbs.length >= 2);
    return summarize(this.sync, this.comparedNames(), this.skipped, this.states.map((s) => s.report), this.sequences, Date.now() - started);
  }

  /** Open one REPEATABLE READ transaction per compared db (cursors read first); returns the cursors. */
  async begin(readOnly: boolean): Promise<Map<string, string>> {
    const cursors = await store.readCursors(this.control, this.sync);
    await together(this.dbs, async (d) => {
      const c = await this.session(d);
      await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ${readOnly ? ' READ ONLY' : ''}`);
      // The first statement fixes the snapshot.
      await c.query(`SELECT set_config('work_mem', '64MB', true), pg_current_snapshot()`);
    });
    return cursors;
  }

  private async end(): Promise<void> {
    await Promise.all(this.dbs.map(async (d) => (await this.session(d)).query('COMMIT')));
  }

  /** Roll back whatever is open (after a failure). */
  async rollback(): Promise<void> {
    await Promise.all([...this.conns.values()].map((c) => c.query('ROLLBACK').catch(() => {})));
  }

  private async firstPass(): Promise<void> {
    const cursors = await this.begin(true);
    try {
      const mismatched = await this.schemaCheck();
      for (const [i, p] of this.plans.entries()) {
        const t0 = Date.now();
        const report: TableReport = {
          table: p.label, status: 'equal', rows: {}, buckets: 0, differingBuckets: 0, differences: 0, keys: [], inFlight: 0, inFlightKeys: [], ms: 0,
        };
        const state: TableState = { plan: p, report, different: [], inFlight: new Map() };
        this.states.push(state);
        const schema = mismatched.get(p.label);
        if (schema) {
          report.status = 'schema';
          report.schema = schema;
          continue;
        }
        this.opts.progress?.(`sync ${this.sync}: table ${p.label} (${i + 1}/${this.plans.length})`);
        await this.compareTable(state, cursors);
        report.ms = Date.now() - t0;
      }
      await this.end();
    } catch (err) {
      await this.rollback();
      throw err;
    }
  }

  /** Tables whose columns or key differ from the plan's on some db: they are not compared row by row. */
  private async schemaCheck(): Promise<Map<string, { db: string; problem: string }[]>> {
    const out = new Map<string, { db: string; problem: string }[]>();
    await Promise.all(this.dbs.map(async (d) => {
      const r = await (await this.session(d)).query(fingerprintQuery(), fingerprintParams(this.plans.map((p) => p.rel)));
      const got = new Map(r.rows.map((row) => [String(row.label), String(row.fp)]));
      for (const p of this.plans) {
        const fp = got.get(p.label);
        if (fp === p.fingerprint) continue;
        const list = out.get(p.label) ?? [];
        list.push({ db: d.name, problem: fp === undefined ? 'the table is missing' : `columns or key differ: expected ${p.fingerprint}; found ${fp}` });
        out.set(p.label, list);
      }
    }));
    return out;
  }

  private async compareTable(state: TableState, cursors: Map<string, string>): Promise<void> {
    const p = state.plan;
    const clients = await Promise.all(this.dbs.map((d) => this.session(d)));
    // The same number of buckets on every db: from the largest estimate.
    const est = await Promise.all(clients.map(async (c) => Number((await c.query(q.estimateSql(), [p.q])).rows[0].est)));
    const n = bucketCount(Math.max(0, ...est));
    const mask = String(n - 1);
    state.report.buckets = n;
    const sums = await Promise.all(clients.map(async (c) => {
      const r = await c.query(q.bucketSql(p), [mask]);
      return new Map<number, BucketSum>(r.rows.map((row) => [Number(row.b), { n: Number(row.n), h: String(row.h) }]));
    }));
    this.dbs.forEach((d, i) => (state.report.rows[d.name] = [...sums[i]!.values()].reduce((a, b) => a + b.n, 0)));
    const buckets = differingBuckets(sums);
    state.report.differingBuckets = buckets.length;
    if (buckets.length === 0) return;
    let found: KeyHashes[] = [];
    for (const batch of bucketBatches(buckets, sums, NARROW_BATCH_ROWS)) {
      const perDb = await Promise.all(clients.map(async (c) => {
        const r = await c.query(q.narrowSql(p), [mask, batch.map(String)]);
        return new Map<string, string>(r.rows.map((row) => [String(row.k), String(row.h)]));
      }));
      found = found.concat(differingKeys(perDb));
      if (found.length >= MAX_DIFFERING_KEYS) {
        state.report.truncated = true;
        found = found.slice(0, MAX_DIFFERING_KEYS);
        break;
      }
    }
    const pending = await this.pendingKeys(p, found.map((k) => k.key), cursors);
    for (const k of found) {
      const on = pending.get(k.key);
      if (on) state.inFlight.set(k.key, on);
      else state.different.push(k);
    }
  }

  /**
   * The keys (of a list) with changes the sync has not consumed on some source,
   * in the open snapshots: identity → the sources ("db" or "db (truncate)").
   */
  async pendingKeys(p: TablePlan, keys: string[], cursors: Map<string, string>): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (keys.length === 0) return out;
    // The runner's sources: the active PostgreSQL ones (SyncRunner.pgDbs), which are exactly the compared sources.
    const sources = this.dbs.filter((d) => d.role === 'source');
    const sourceNames = sources.map((s) => s.name);
    const add = (k: string, db: string): void => {
      const l = out.get(k);
      if (l) {
        if (!l.includes(db)) l.push(db);
      } else out.set(k, [db]);
    };
    for (const src of sources) {
      const c = await this.session(src);
      const cur = cursors.get(src.name) ?? null;
      // Before a runner has moved an older install to today's names, the delta table has the name
      // recorded in ibex.captured (validate itself changes nothing on the dbs).
      const found = await c.query(`SELECT to_regclass($1)::text AS d, to_regclass('ibex.captured') IS NOT NULL AS c`, [p.delta]);
      let delta: unknown = found.rows[0].d;
      if (delta === null && (found.rows[0].c === 't' || found.rows[0].c === true)) {
        const rec = await c.query(`SELECT to_regclass(format('ibex.%I', delta))::text AS d FROM ibex.captured WHERE schemaname = $1 AND relname = $2`,
          [p.rel.schema, p.rel.name]);
        delta = rec.rows[0]?.d ?? null;
      }
      if (delta === null) continue; // capture not installed here: nothing can be pending
      const on: TablePlan = { ...p, delta: String(delta) };
      const tr = await c.query(q.pendingTruncateSql(this.sync, sourceNames), [cur, p.rel.schema, p.rel.name]);
      if (tr.rows[0].p === 't' || tr.rows[0].p === true) {
        for (const k of keys) add(k, `${src.name} (truncate)`);
        continue;
      }
      for (let i = 0; i < keys.length; i += KEY_BATCH) {
        const r = await c.query(q.pendingSql(on, this.sync, sourceNames), [cur, keys.slice(i, i + KEY_BATCH)]);
        for (const row of r.rows) add(String(row.k), src.name);
      }
    }
    return out;
  }

  /** Per db, the row hash (and row) of some keys, in the open snapshots. */
  private async readKeys(p: TablePlan, keys: string[], withRows: boolean): Promise<Map<string, { h: string; r?: string }>[]> {
    return Promise.all(this.dbs.map(async (d) => {
      const c = await this.session(d);
      const m = new Map<string, { h: string; r?: string }>();
      for (let i = 0; i < keys.length; i += KEY_BATCH) {
        const r = await c.query(q.byKeySql(p, withRows), keyColumnsOf(keys.slice(i, i + KEY_BATCH), p.keys.length));
        for (const row of r.rows) m.set(String(row.k), withRows ? { h: String(row.h), r: String(row.r) } : { h: String(row.h) });
      }
      return m;
    }));
  }

  /**
   * Read some keys again in fresh snapshots: `different` re-checks the keys
   * that differed, `inflight` the keys that were in flight. A key that now
   * agrees everywhere is dropped; one with pending changes is in flight; the
   * rest differ.
   */
  private async recheck(states: TableState[], which: 'different' | 'inflight'): Promise<void> {
    const cursors = await this.begin(true);
    try {
      for (const s of states) {
        const keys = which === 'different' ? s.different.map((k) => k.key) : [...s.inFlight.keys()];
        if (which === 'different') s.different = [];
        else for (const k of keys) s.inFlight.delete(k);
        const perDb = await this.readKeys(s.plan, keys, false);
        const hashesOf = (k: string): (string | null)[] => perDb.map((m) => m.get(k)?.h ?? null);
        const still = keys.filter((k) => !agrees(hashesOf(k)));
        const pending = await this.pendingKeys(s.plan, still, cursors);
        for (const k of still) {
          const on = pending.get(k);
          if (on) s.inFlight.set(k, on);
          else s.different.push({ key: k, hashes: hashesOf(k) });
        }
        s.different.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
        await this.listRows(s);
      }
      await this.end();
    } catch (err) {
      await this.rollback();
      throw err;
    }
  }

  /** Fill the listed keys of a table with every db's row (in the open snapshots). */
  private async listRows(s: TableState): Promise<void> {
    const listed = s.different.slice(0, this.opts.listed ?? DEFAULT_LISTED);
    const perDb = await this.readKeys(s.plan, listed.map((k) => k.key), true);
    s.report.keys = listed.map((k): ListedKey => ({
      key: keyObject(s.plan.keys, k.key),
      versions: this.dbs.map((d, i) => {
        const v = perDb[i]!.get(k.key);
        const values = v?.r ? (JSON.parse(v.r) as (string | null)[]) : null;
        return { db: d.name, row: values ? Object.fromEntries(s.plan.cols.map((c, j) => [c, values[j] ?? null])) : null, hash: v?.h ?? null };
      }),
    }));
  }

  private finishReport(s: TableState): void {
    const r = s.report;
    if (r.status === 'schema') return;
    r.differences = s.different.length;
    r.inFlight = s.inFlight.size;
    r.status = s.different.length ? 'different' : 'equal';
    if (!s.different.length) r.keys = [];
    const listed = this.opts.listed ?? DEFAULT_LISTED;
    r.inFlightKeys = [...s.inFlight.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).slice(0, listed)
      .map(([k, on]): InFlightKey => ({ key: keyObject(s.plan.keys, k), pendingOn: [...on].sort() }));
  }

  private async compareSequences(seqs: { schema: string; name: string }[]): Promise<SequenceReport[]> {
    const out: SequenceReport[] = [];
    for (const s of seqs) {
      const label = `${s.schema}.${s.name}`;
      const values: Record<string, bigint | null> = {};
      await Promise.all(this.dbs.map(async (d) => {
        const c = await this.session(d);
        const qn = qualified(s.schema, s.name).text;
        const exists = await c.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [qn]);
        if (exists.rows[0].e !== 't' && exists.rows[0].e !== true) {
          values[d.name] = null;
          return;
        }
        const r = await c.query(`SELECT last_value::text AS v, is_called FROM ${qn}`);
        values[d.name] = sequenceValue(String(r.rows[0].v), r.rows[0].is_called === 't' || r.rows[0].is_called === true);
      }));
      out.push(sequenceReport(label, Object.fromEntries(this.dbs.map((d) => [d.name, values[d.name] ?? null]))));
    }
    return out;
  }

  /** Close every session. */
  async close(): Promise<void> {
    await Promise.all([...this.conns.values()].map((c) => c.end().catch(() => {})));
    this.conns.clear();
    await Promise.all([...this.targets.values()].map((t) => t.close()));
    this.targets.clear();
  }
}
