/**
 * ibex, driven through its real command line: `bin/ibex … install | add db |
 * add table | add sync | start | stop | remove sync`. The daemon runs detached
 * (`ibex start`), exactly as users run it; its pid comes from the pid file and
 * is checked against `ibex status --json`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { mustRun } from '../lib/proc.js';
import { BENCH_DB, nodeName, type BenchEnv } from '../lib/env.js';
import type { ReplSystem, RunDetail, Topology } from './system.js';
import { freePort } from '../../src/cluster/ports.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'ibex');
export const SYNC = 'bench';

/**
 * A hash of every file under src/: each CLI call and the daemon load the sources afresh, so this
 * says which engine a result measured (it changes with any edit, committed or not).
 */
export function srcFingerprint(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else {
        h.update(p.slice(ROOT.length));
        h.update(readFileSync(p));
      }
    }
  };
  walk(join(ROOT, 'src'));
  return h.digest('hex').slice(0, 12);
}


export class IbexSystem implements ReplSystem {
  readonly name = 'ibex' as const;
  private env: BenchEnv | undefined;
  private controlUrl = '';
  private piddir = '';
  private pid: number | undefined;
  /** Daemons beyond the first (scale `syncs`: several daemons on one control db), by pid dir. */
  private more: { piddir: string; pid: number }[] = [];
  /** How many daemons start() launches (each with its own pid dir, all on one control db). */
  daemons = 1;
  /** The syncs setup made (one, or one per table group: setupSyncs). */
  private syncs: string[] = [SYNC];
  private control: pg.Client | undefined;
  private srcAtSetup = '';
  private srcAtStart = '';
  /** Non-PostgreSQL targets to add at the next setup (name → `add db` words). */
  private foreign = new Map<string, string[]>();
  private scraper: NodeJS.Timeout | undefined;
  private readonly scrapeErrors: string[] = [];

  async version(): Promise<string> {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    return `ibex ${pkg.version} (node ${process.version})`;
  }

  private async cli(...args: string[]): Promise<string> {
    return mustRun(BIN, ['--control', this.controlUrl, ...args], { env: { ...process.env, IBEX_PIDDIR: this.piddir }, cwd: ROOT });
  }

  async setup(env: BenchEnv, topo: Topology, tables: string[], sync = SYNC): Promise<void> {
    this.syncs = [sync];
    await this.prepare(env);
    const nodes = [...topo.sources, ...topo.targets];
    for (const i of nodes) {
      const c = env.cluster(i);
      await this.cli('add', 'db', nodeName(i), `dbname=${BENCH_DB}`, `host=${c.socketDir}`, `port=${c.port}`, 'user=postgres');
    }
    for (const [name, args] of this.foreign) await this.cli('add', 'db', name, ...args);
    await this.cli('add', 'table', ...tables, `db=${nodeName(topo.sources[0]!)}`, `relgroup=${sync}`);
    const dbs = [this.dbsWord(topo), ...[...this.foreign.keys()].map((name) => `${name}:target`)].join(',');
    this.foreign.clear();
    await this.cli('add', 'sync', sync, `relgroup=${sync}`, `dbs=${dbs}`);
  }

  /**
   * As setup, but one sync per group of tables (`bench_1`, `bench_2`, …), every one over the same
   * topology: the many-syncs measurement of the scale scenario.
   */
  async setupSyncs(env: BenchEnv, topo: Topology, groups: string[][]): Promise<void> {
    // One `ibex apply -f` for every sync (50 syncs by `add` would be 100 CLI starts).
    await this.prepare(env);
    const nodes = [...topo.sources, ...topo.targets];
    const first = nodeName(topo.sources[0]!);
    const doc = {
      version: 1,
      dbs: Object.fromEntries(nodes.map((i) => [nodeName(i), { host: env.cluster(i).socketDir, port: env.cluster(i).port, dbname: BENCH_DB, user: 'postgres' }])),
      tables: groups.flat().map((name) => ({ db: first, name })),
      relgroups: Object.fromEntries(groups.map((g, k) => [`bench_${k + 1}`, { db: first, members: g }])),
      dbgroups: { bench: { members: [...topo.sources.map((i) => ({ db: nodeName(i), role: 'source' })), ...topo.targets.map((i) => ({ db: nodeName(i), role: 'target' }))] } },
      syncs: Object.fromEntries(groups.map((_, k) => [`bench_${k + 1}`, { relgroup: `bench_${k + 1}`, dbgroup: 'bench' }])),
    };
    const file = join(env.dir, 'ibex-syncs.json');
    writeFileSync(file, JSON.stringify(doc, null, 1));
    await this.cli('apply', '-f', file);
    this.syncs = groups.map((_, k) => `bench_${k + 1}`);
  }

  /** A control database with ibex installed, for this environment. */
  private async prepare(env: BenchEnv): Promise<void> {
    this.env = env;
    this.srcAtSetup = srcFingerprint();
    this.srcAtStart = '';
    this.piddir = join(env.dir, 'ibex');
    await env.cluster(0).createDatabase('ibexctl');
    this.controlUrl = env.cluster(0).url('ibexctl');
    await this.cli('install');
  }

  private dbsWord(topo: Topology): string {
    return [...topo.sources.map((i) => `${nodeName(i)}:source`), ...topo.targets.map((i) => `${nodeName(i)}:target`)].join(',');
  }

  addForeignTarget(name: string, addDbArgs: string[]): void {
    this.foreign.set(name, addDbArgs);
  }

  async start(): Promise<void> {
    this.srcAtStart = srcFingerprint();
    // IBEX_BENCH_HTTP=1: serve the HTTP endpoints and scrape /metrics every second, to measure what watching costs.
    const http = process.env.IBEX_BENCH_HTTP === '1' ? `127.0.0.1:${await freePort()}` : undefined;
    await this.cli('start', `--piddir=${this.piddir}`, ...(http ? [`--http=${http}`] : []));
    const file = readdirSync(this.piddir).find((f) => /^ibex-.*\.pid$/.test(f));
    if (!file) throw new Error(`ibex start left no pid file in ${this.piddir}`);
    this.pid = Number(readFileSync(join(this.piddir, file), 'utf8').split('\n')[0]);
    for (let k = 1; k < this.daemons; k++) {
      const dir = `${this.piddir}-${k + 1}`;
      await mustRun(BIN, ['--control', this.controlUrl, 'start', `--piddir=${dir}`], { env: { ...process.env, IBEX_PIDDIR: dir }, cwd: ROOT });
      const f = readdirSync(dir).find((x) => /^ibex-.*\.pid$/.test(x));
      if (!f) throw new Error(`ibex start left no pid file in ${dir}`);
      this.more.push({ piddir: dir, pid: Number(readFileSync(join(dir, f), 'utf8').split('\n')[0]) });
    }
    if (http) {
      const scrape = async (): Promise<void> => {
        const r = await fetch(`http://${http}/metrics`);
        if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
        await r.text();
      };
      await scrape();
      this.scraper = setInterval(() => void scrape().catch((err) => { this.scrapeErrors.push(String(err)); }), 1000);
    }
  }

  provenance(): Record<string, unknown> {
    return {
      src_sha: this.srcAtStart || this.srcAtSetup, ...(this.srcAtStart && this.srcAtStart !== this.srcAtSetup ? { src_sha_setup: this.srcAtSetup } : {}),
      ...(process.env.IBEX_BENCH_HTTP === '1' ? { http_scrape_s: 1 } : {}),
    };
  }

  pids(): number[] {
    return [...(this.pid ? [this.pid] : []), ...this.more.map((m) => m.pid)];
  }

  async stop(): Promise<void> {
    if (this.scraper) clearInterval(this.scraper);
    this.scraper = undefined;
    if (this.scrapeErrors.length) throw new Error(`scraping /metrics failed: ${this.scrapeErrors.splice(0).join('; ')}`);
    for (const m of this.more.splice(0)) {
      await mustRun(BIN, ['--control', this.controlUrl, 'stop', `--piddir=${m.piddir}`, '--timeout=60'], { env: { ...process.env, IBEX_PIDDIR: m.piddir }, cwd: ROOT });
    }
    if (this.pid === undefined) return;
    // The pid measured must be the daemon ibex itself reports (checked here, outside any timing).
    const status = JSON.parse(await this.cli('status', '--json')) as { daemon?: { pid?: number } };
    if (this.daemons === 1 && status.daemon?.pid !== undefined && status.daemon.pid !== this.pid) {
      throw new Error(`pid file says ${this.pid}, ibex status --json says ${status.daemon.pid}`);
    }
    await this.cli('stop', `--piddir=${this.piddir}`, '--timeout=60');
    this.pid = undefined;
  }

  async teardown(): Promise<void> {
    await this.stop().catch(() => {});
    if (!this.env) return;
    for (const sync of this.syncs) await this.cli('remove', 'sync', sync).catch(() => {});
    for (const i of this.env.nodeIdx()) await this.env.q(i, 'DROP SCHEMA IF EXISTS ibex CASCADE').catch(() => {});
    await this.control?.end().catch(() => {});
    this.control = undefined;
  }

  logs(): string[] {
    try {
      const dirs = [this.piddir, ...Array.from({ length: this.daemons - 1 }, (_, k) => `${this.piddir}-${k + 2}`)];
      return dirs.flatMap((d) => {
        try {
          return readdirSync(d).filter((f) => f.endsWith('.log')).map((f) => join(d, f));
        } catch {
          return [];
        }
      });
    } catch {
      return [];
    }
  }

  private async ctl(): Promise<pg.Client> {
    if (!this.control) {
      const p = this.env!.cluster(0).params('ibexctl');
      this.control = new pg.Client({ host: p.host, port: p.port, database: 'ibexctl', user: 'postgres', application_name: 'ibexbench' });
      await this.control.connect();
    }
    return this.control;
  }

  async mark(): Promise<number> {
    const r = await (await this.ctl()).query(`SELECT coalesce(max(id), 0)::int AS id FROM ibex.run`);
    return Number(r.rows[0].id);
  }

  async runsSince(mark: number): Promise<RunDetail[]> {
    const r = await (await this.ctl()).query(
      `SELECT id::int, (extract(epoch FROM ended - started) * 1000)::float8 AS ms, inserted::int, deleted::int, conflicts::int, details->'phases' AS phases
         FROM ibex.run WHERE id > $1 AND status = 'good' ORDER BY id`, [mark]);
    return r.rows.map((x) => ({ run: x.id, ms: x.ms, inserted: x.inserted, deleted: x.deleted, conflicts: x.conflicts, phases: x.phases ?? null }));
  }

  async runTimeline(mark: number): Promise<{ status: string; started: number; ended: number | null }[]> {
    const r = await (await this.ctl()).query(
      `SELECT status, extract(epoch FROM started)::float8 AS started, extract(epoch FROM ended)::float8 AS ended
         FROM ibex.run WHERE id > $1 AND kind = 'delta' ORDER BY started`, [mark]);
    return r.rows.map((x) => ({ status: String(x.status), started: Number(x.started), ended: x.ended === null ? null : Number(x.ended) }));
  }

  async conflictsLogged(mark: number): Promise<number> {
    const r = await (await this.ctl()).query(`SELECT count(*)::int AS n FROM ibex.conflict WHERE run > $1`, [mark]);
    return Number(r.rows[0].n);
  }
}
