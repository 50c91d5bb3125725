/**
 * The bench environment of one scenario run: fresh throwaway clusters (a
 * control cluster `ctl` for the system's own database, data nodes A, B, …),
 * all with the same durable postgresql.conf, the bench schema, and helpers to
 * query, compare and load them.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { createClusters, findBinDir, type Cluster, type ClusterSet } from '../../src/cluster/clusters.js';
import { mustRun, postmasterCpu, sleep } from './proc.js';

/** postgresql.conf of every cluster, identical for every system (durable: fsync and synchronous_commit on). */
export const PG_SETTINGS: Record<string, string> = {
  shared_buffers: '256MB',
  work_mem: '16MB',
  maintenance_work_mem: '256MB',
  wal_level: 'logical',
  max_wal_senders: '16',
  max_replication_slots: '16',
  track_commit_timestamp: 'on',
  max_wal_size: '4GB',
  min_wal_size: '512MB',
  checkpoint_timeout: '30min',
  checkpoint_completion_target: '0.9',
  autovacuum: 'on',
  jit: 'off',
  log_timezone: 'UTC',
};

/** BENCH_PG_EXTRA="name=value,name=value": extra settings for diagnostics (recorded as +extra in results). */
export function extraSettings(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (process.env.BENCH_PG_EXTRA ?? '').split(',')) {
    const m = /^\s*([a-z_.]+)\s*=\s*(.*?)\s*$/.exec(part);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** What `durable: true` adds in createClusters (recorded in every result line). */
export const PG_SETTINGS_TEXT = 'fsync=on synchronous_commit=on full_page_writes=on ' +
  Object.entries(PG_SETTINGS).map(([k, v]) => `${k}=${v}`).join(' ') + (process.env.BENCH_PG_EXTRA ? ` +extra(${process.env.BENCH_PG_EXTRA})` : '');

/** Marks written into bench_item.grp by the load generators: node i (1 = A) writes 1000 + i. */
export const ORIGIN_BASE = 1000;

export const BENCH_DB = 'bench';
export const CORE_TABLES = ['public.bench_item', 'public.bench_pair'];

/** Where the bench keeps scratch files (lower case on purpose: Bucardo lower-cases paths). */
export const RUN_ROOT = `/tmp/ibexbench.${process.pid}`;

/** SQL: the commit time (epoch seconds) of the row version, exact (track_commit_timestamp). */
export const COMMIT_TS = `extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8`;

export const nodeName = (i: number): string => String.fromCharCode(64 + i); // 1 -> A

let envSeq = 0;

/** Options of an environment. */
export interface EnvOptions {
  nodes: number;
  /** Rows 1..seedRows preloaded identically on every node (before any system is installed). */
  seedRows?: number;
  /** Extra tables bench_t1..bench_tN (same shape as bench_item), for the many-tables measurement. */
  extraTables?: number;
  label: string;
}

export class BenchEnv {
  readonly dir: string;
  private readonly clients = new Map<number, pg.Client>();

  private constructor(readonly set: ClusterSet, readonly opts: EnvOptions) {
    this.dir = join(RUN_ROOT, `${opts.label}-${++envSeq}`.toLowerCase().replace(/[^a-z0-9.-]/g, '-'));
    mkdirSync(this.dir, { recursive: true });
  }

  /** Fresh clusters with schema (and seed rows). */
  static async create(opts: EnvOptions): Promise<BenchEnv> {
    const names = ['ctl', ...Array.from({ length: opts.nodes }, (_, i) => nodeName(i + 1))];
    const set = await createClusters({ count: names.length, names, durable: true, settings: { ...PG_SETTINGS, ...extraSettings() }, label: 'ibexbench' });
    const env = new BenchEnv(set, opts);
    try {
      await Promise.all(env.nodeIdx().map(async (i) => {
        await env.cluster(i).createDatabase(BENCH_DB);
        await env.cluster(i).psql(schemaSql(opts.extraTables ?? 0), BENCH_DB);
        if (opts.seedRows) {
          await env.cluster(i).psql(seedSql(opts.seedRows), BENCH_DB);
          await env.cluster(i).psql('VACUUM ANALYZE', BENCH_DB);
        }
      }));
    } catch (err) {
      await env.destroy();
      throw err;
    }
    return env;
  }

  get nodes(): number {
    return this.opts.nodes;
  }

  /** 1..nodes */
  nodeIdx(): number[] {
    return Array.from({ length: this.nodes }, (_, i) => i + 1);
  }

  /** The cluster of node i (1 = A), or 0 = the control cluster. */
  cluster(i: number): Cluster {
    return this.set.clusters[i]!;
  }

  /** Replicated tables of this environment. */
  tables(): string[] {
    const extra = Array.from({ length: this.opts.extraTables ?? 0 }, (_, k) => `public.bench_t${k + 1}`);
    return [...CORE_TABLES, ...extra];
  }

  /** A lower-case path that leads to node i's socket directory (for Bucardo). */
  lowerSocketDir(i: number): string {
    const link = join(this.dir, `sock-${i}`);
    if (!existsSync(link)) symlinkSync(this.cluster(i).socketDir, link);
    return link;
  }

  /** A session on node i's bench database (kept for the whole run). */
  async client(i: number): Promise<pg.Client> {
    let c = this.clients.get(i);
    if (c) return c;
    const p = this.cluster(i).params(BENCH_DB);
    c = new pg.Client({ host: p.host, port: p.port, database: BENCH_DB, user: 'postgres', application_name: 'ibexbench' });
    await c.connect();
    c.on('error', () => this.clients.delete(i));
    this.clients.set(i, c);
    return c;
  }

  async q<T extends Record<string, unknown> = Record<string, unknown>>(i: number, text: string, values: unknown[] = []): Promise<T[]> {
    const r = await (await this.client(i)).query(text, values);
    return r.rows as T[];
  }

  async one<T = unknown>(i: number, text: string, values: unknown[] = []): Promise<T> {
    const rows = await this.q(i, text, values);
    const row = rows[0];
    if (!row) throw new Error(`no row from: ${text}`);
    return Object.values(row)[0] as T;
  }

  /** Content checksum of the replicated tables on node i: "rows:md5" (ordered by key). */
  async checksum(i: number): Promise<string> {
    const parts = this.tables().map((t) => {
      const order = t === 'public.bench_pair' ? 't.a, t.b' : 't.id';
      return `(SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY ${order})), '') FROM ${t} t)`;
    });
    return this.one<string>(i, `SELECT ${parts.join(` || '#' || `)}`);
  }

  /** Are all nodes' checksums equal? Returns the checksum when they are. */
  async checksumsEqual(nodes = this.nodeIdx()): Promise<string | null> {
    const sums = await Promise.all(nodes.map((i) => this.checksum(i)));
    return sums.every((s) => s === sums[0]) ? sums[0]! : null;
  }

  /** Poll until `cond` holds; throws after timeoutMs. */
  async waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 600_000, pollMs = 50): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await cond()) return (Date.now() - t0) / 1000;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
      await sleep(pollMs);
    }
  }

  /** Wait until every node has the same checksum; returns seconds waited, or null on timeout. */
  async waitConverged(timeoutMs = 600_000, nodes = this.nodeIdx()): Promise<number | null> {
    try {
      return await this.waitFor(async () => (await this.checksumsEqual(nodes)) !== null, 'identical checksums', timeoutMs, 100);
    } catch {
      return null;
    }
  }

  /** The postmaster pid of a cluster. */
  postmasterPid(i: number): number | undefined {
    try {
      return Number(readFileSync(join(this.cluster(i).dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
    } catch {
      return undefined;
    }
  }

  /** CPU seconds so far of every cluster (postmaster tree), by name. */
  clusterCpu(): Record<string, number> {
    const out: Record<string, number> = {};
    this.set.clusters.forEach((c, i) => (out[c.name] = postmasterCpu(this.postmasterPid(i))));
    return out;
  }

  /** Write a pgbench script into the run directory; returns its path. */
  script(name: string): string {
    const src = new URL(`../pgbench/${name}`, import.meta.url);
    const dst = join(this.dir, name);
    if (!existsSync(dst)) writeFileSync(dst, readFileSync(src));
    return dst;
  }

  /**
   * Run pgbench against node i's bench database; returns its tps (excluding connection time)
   * and the number of transactions processed. Throws when pgbench fails.
   */
  async pgbench(i: number, args: string[], label: string): Promise<{ tps: number; txns: number }> {
    const c = this.cluster(i);
    const log = join(this.dir, `pgbench-${label}.log`);
    const out = await mustRun('pgbench', ['-n', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', ...args, BENCH_DB]);
    writeFileSync(log, out);
    const tps = /^tps = ([\d.]+) \(without initial connection time\)/m.exec(out) ?? /^tps = ([\d.]+)/m.exec(out);
    const txns = /number of transactions actually processed: (\d+)/.exec(out);
    return { tps: tps ? Number(tps[1]) : NaN, txns: txns ? Number(txns[1]) : NaN };
  }

  /**
   * Plain COPY of a table from node `from` into node `to` (psql \copy TO STDOUT piped into
   * \copy FROM STDIN: one transaction on the target). Returns seconds.
   */
  async psqlCopy(from: number, to: number, selectSql: string, target: string): Promise<number> {
    const bin = findBinDir();
    const psql = join(bin, 'psql');
    const args = (i: number, cmd: string): string[] => {
      const c = this.cluster(i);
      return ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', '-d', BENCH_DB, '-c', cmd];
    };
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const out = spawn(existsSync(psql) ? psql : 'psql', args(from, `\\copy (${selectSql}) TO STDOUT`), { stdio: ['ignore', 'pipe', 'pipe'] });
      const inp = spawn(existsSync(psql) ? psql : 'psql', args(to, `\\copy ${target} FROM STDIN`), { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      out.stderr.on('data', (d: Buffer) => (err += d.toString()));
      inp.stderr.on('data', (d: Buffer) => (err += d.toString()));
      out.stdout.pipe(inp.stdin);
      let exits = 0;
      const done = (code: number | null): void => {
        if (code !== 0) reject(new Error(`psql copy failed: ${err}`));
        else if (++exits === 2) resolve();
      };
      out.on('close', done);
      inp.on('close', done);
    });
    return (performance.now() - t0) / 1000;
  }

  /** Keep the logs of this run (server logs and the files the system wrote) under dst. */
  saveLogs(dst: string, extra: string[] = []): void {
    try {
      mkdirSync(dst, { recursive: true });
      this.set.clusters.forEach((c) => {
        const f = join(c.dataDir, 'server.log');
        if (existsSync(f)) copyFileSync(f, join(dst, `pg-${c.name}.log`));
      });
      for (const f of readdirSync(this.dir)) if (f.endsWith('.log')) copyFileSync(join(this.dir, f), join(dst, f));
      for (const f of extra) if (existsSync(f)) copyFileSync(f, join(dst, f.split('/').pop()!));
    } catch {
      // logs are a convenience
    }
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.end().catch(() => {})));
    this.clients.clear();
    await this.set.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The bench schema: replicated tables, plus bench_local (never replicated) for the load generators. */
function schemaSql(extraTables: number): string {
  const item = (name: string): string => `CREATE TABLE public.${name} (
    id bigint PRIMARY KEY, grp int, payload text, amount numeric(12,2), updated_at timestamptz DEFAULT now());`;
  const extra = Array.from({ length: extraTables }, (_, k) => item(`bench_t${k + 1}`)).join('\n');
  return `${item('bench_item')}
CREATE TABLE public.bench_pair (a int, b int, val text, updated_at timestamptz DEFAULT now(), PRIMARY KEY (a, b));
${extra}
CREATE SCHEMA bench_local;
CREATE TABLE bench_local.wlog (id bigint, ts timestamptz, xid xid8 DEFAULT pg_current_xact_id());`;
}

/** Deterministic seed rows 1..n (and 1,000 pairs), identical on every node. */
function seedSql(n: number): string {
  return `INSERT INTO bench_item (id, grp, payload, amount, updated_at)
  SELECT g, g % 100, 'seed:' || md5(g::text), (g % 100000) / 100.0, '2000-01-01 00:00:00+00' FROM generate_series(1, ${n}) g;
INSERT INTO bench_pair (a, b, val, updated_at)
  SELECT g / 100, g % 100, 'seed:' || g, '2000-01-01 00:00:00+00' FROM generate_series(1, 1000) g;`;
}

/** Rows [from, from+n) of ~100-byte payload, in one statement (one transaction). */
export function bulkSql(from: number, n: number, table = 'bench_item'): string {
  return `INSERT INTO ${table} (id, grp, payload, amount, updated_at)
  SELECT g, g % 100, repeat(md5(g::text), 3), (g % 100000) / 100.0, now() FROM generate_series(${from}, ${from + n - 1}) g`;
}

/** Per-node sequences handing out disjoint ids to the load generators. */
export function sequencesSql(updStart: number, insStart: number, confStart = 1, confIncr = 1): string {
  return `CREATE SEQUENCE bench_local.seq_upd START ${updStart};
CREATE SEQUENCE bench_local.seq_ins START ${insStart};
CREATE SEQUENCE bench_local.seq_conf START ${confStart} INCREMENT ${confIncr} MINVALUE -1000000000 MAXVALUE 1000000000;`;
}

export { sleep };
