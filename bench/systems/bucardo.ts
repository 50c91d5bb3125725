/**
 * Bucardo 5.6 (Debian's `bucardo` package), the reference. Its control
 * database `bucardo` lives on the bench's control cluster (not on a measured
 * node); it connects to every node as a superuser role `bucardo` over the unix
 * socket. Every file it writes (rc file, pid files, logs) stays in the run
 * directory, a lower-case path because Bucardo lower-cases some settings.
 * Stock settings otherwise: conflict strategy bucardo_latest, autokick, the
 * default sleeps. The daemon forks MCP, VAC, CTL and KID processes in one
 * session; CPU is summed over that session and it is stopped by PID.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { alive, haveCommand, pidsInSession, runCmd, sessionOf, sleep } from '../lib/proc.js';
import { BENCH_DB, nodeName, type BenchEnv } from '../lib/env.js';
import type { ReplSystem, Topology } from './system.js';

const SYNC = 'benchsync';
const RELGROUP = 'benchrg';

/** Is Bucardo usable here? (The package, and plperl for its control database.) */
export function bucardoAvailable(): { ok: boolean; why?: string } {
  if (!haveCommand('bucardo')) return { ok: false, why: 'bucardo is not installed (apt-get install bucardo postgresql-plperl-15)' };
  const plperl = readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/lib/plperl.so`));
  if (!plperl) return { ok: false, why: 'postgresql-plperl is not installed (apt-get install postgresql-plperl-15)' };
  return { ok: true };
}

/**
 * Why Bucardo cannot write a target of this `type=` on this machine, or undefined when it can.
 * Bucardo 5.6 reaches type=mariadb (and mysql) only through `dbi:mysql`, i.e. DBD::mysql; its
 * `dsn=` override cannot name DBD::MariaDB instead, because the daemon prefixes a stored dsn with
 * `TEST` (Bucardo.pm, db_getconn). Redis needs the Redis module, SQLite DBD::SQLite.
 */
export async function bucardoForeignUnsupported(type: string): Promise<string | undefined> {
  const module = type === 'mariadb' || type === 'mysql' ? 'DBD::mysql' : type === 'sqlite' ? 'DBD::SQLite' : type === 'redis' ? 'Redis' : undefined;
  if (module === undefined) return `Bucardo type ${type} is not set up in this harness`;
  const r = await runCmd('perl', [`-M${module}`, '-e', '1']);
  if (r.code === 0) return undefined;
  const why = `Bucardo 5.6 writes type=${type} through the Perl module ${module}, which is not installed here`;
  return module === 'DBD::mysql'
    ? `${why} (only DBD::MariaDB is: Bucardo hard-codes dbi:mysql for mariadb, and its dsn= override is unusable because the daemon prefixes it with TEST)`
    : why;
}

export class BucardoSystem implements ReplSystem {
  readonly name = 'bucardo' as const;
  private env: BenchEnv | undefined;
  private dir = '';
  private sid: number | undefined;
  private control: pg.Client | undefined;
  /** Targets of other kinds for the next setup (name → `add db` words, which Bucardo spells as ibex does). */
  private foreign = new Map<string, string[]>();

  addForeignTarget(name: string, addDbArgs: string[]): void {
    const get = (k: string): string | undefined => addDbArgs.find((a) => a.startsWith(`${k}=`))?.slice(k.length + 1);
    if (get('type') === 'redis' && get('port') !== undefined) {
      // Bucardo drops the host of a Redis db when a port is given (server ":6380", which Redis.pm
      // cannot connect to); a host of "host:port" and no port reaches the private server.
      const hostPort = `host=${get('host') ?? '127.0.0.1'}:${get('port')}`;
      this.foreign.set(name, [...addDbArgs.filter((a) => !a.startsWith('host=') && !a.startsWith('port=')), hostPort]);
      return;
    }
    this.foreign.set(name, addDbArgs);
  }

  async foreignUnsupported(addDbArgs: string[]): Promise<string | undefined> {
    const type = addDbArgs.find((a) => a.startsWith('type='))?.slice(5) ?? 'postgres';
    return bucardoForeignUnsupported(type);
  }

  async version(): Promise<string> {
    const v = await runCmd('bucardo', ['--version']);
    const dbd = await runCmd('perl', ['-MDBD::Pg', '-e', 'print $DBD::Pg::VERSION']);
    return `bucardo ${v.stdout.trim().split(/\s+/).pop()} (DBD::Pg ${dbd.stdout.trim()})`;
  }

  /** The bucardo CLI against the private control database, rc file and HOME. */
  private async bc(...args: string[]): Promise<string> {
    const r = await runCmd('bucardo', [`--bucardorc=${join(this.dir, 'bucardorc')}`, ...args], {
      cwd: this.dir, env: { ...process.env, HOME: join(this.dir, 'home') },
    });
    appendFileSync(join(this.dir, 'log', 'cli.log'), `$ bucardo ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    if (r.code !== 0) throw new Error(`bucardo ${args.join(' ')} exited ${r.code}: ${(r.stderr + r.stdout).trim().split('\n').slice(-10).join('\n')}`);
    return r.stdout;
  }

  async setup(env: BenchEnv, topo: Topology, tables: string[]): Promise<void> {
    this.env = env;
    this.dir = join(env.dir, 'bucardo');
    for (const d of ['run', 'log', 'home']) mkdirSync(join(this.dir, d), { recursive: true });
    const ctl = env.cluster(0);
    const ctlSock = env.lowerSocketDir(0);
    appendFileSync(join(this.dir, 'bucardorc'),
      `dbhost = ${ctlSock}\ndbport = ${ctl.port}\ndbname = bucardo\ndbuser = bucardo\npiddir = ${join(this.dir, 'run')}\nlogdest = ${join(this.dir, 'log')}\n`);
    appendFileSync(join(this.dir, 'log', 'cli.log'), '');
    // 1. the control database: a superuser role, then `bucardo install` (creates database bucardo, plperlu).
    await ctl.psql('CREATE ROLE bucardo SUPERUSER LOGIN');
    const inst = await runCmd('bucardo', ['install', '--batch', '--no-bucardorc', '--quiet', `--dbhost=${ctlSock}`, `--dbport=${ctl.port}`,
      '--dbuser=postgres', '--dbname=postgres', `--piddir=${join(this.dir, 'run')}`], { cwd: this.dir, env: { ...process.env, HOME: join(this.dir, 'home') } });
    appendFileSync(join(this.dir, 'log', 'cli.log'), `$ bucardo install\n${inst.stdout}${inst.stderr}`);
    if (inst.code !== 0) throw new Error(`bucardo install failed: ${(inst.stderr + inst.stdout).trim().split('\n').slice(-10).join('\n')}`);
    // 2. every file Bucardo writes stays in the run directory.
    await this.bc('set', `piddir=${join(this.dir, 'run')}`, `reason_file=${join(this.dir, 'log', 'restart.reason')}`,
      `log_conflict_file=${join(this.dir, 'log', 'conflict.log')}`, `warning_file=${join(this.dir, 'log', 'warning.log')}`,
      'log_level=normal', 'log_microsecond=1');
    // 3. a superuser role on every node, and the dbs.
    const nodes = [...topo.sources, ...topo.targets];
    for (const i of nodes) {
      await env.q(i, `DO $$BEGIN CREATE ROLE bucardo SUPERUSER LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$`);
      await this.bc('add', 'db', nodeName(i), `dbname=${BENCH_DB}`, `host=${env.lowerSocketDir(i)}`, `port=${env.cluster(i).port}`, 'user=bucardo');
    }
    // Targets of other kinds: Bucardo's own type= words; it writes the tables the store created.
    for (const [name, args] of this.foreign) await this.bc('add', 'db', name, ...args);
    // 4. the relgroup and one sync.
    await this.bc('add', 'table', ...tables, `db=${nodeName(topo.sources[0]!)}`, `relgroup=${RELGROUP}`);
    const dbs = [...topo.sources.map((i) => `${nodeName(i)}:source`), ...topo.targets.map((i) => `${nodeName(i)}:target`),
      ...[...this.foreign.keys()].map((name) => `${name}:target`)].join(',');
    this.foreign.clear();
    await this.bc('add', 'sync', SYNC, `relgroup=${RELGROUP}`, `dbs=${dbs}`);
  }

  async start(): Promise<void> {
    const pidFile = join(this.dir, 'run', 'bucardo.mcp.pid');
    await this.bc('start', 'bench');
    // `bucardo start` forks, setsid()s and forks again: wait for the MCP's pid file.
    const t0 = Date.now();
    while (!existsSync(pidFile) || readFileSync(pidFile, 'utf8').trim() === '') {
      if (Date.now() - t0 > 30_000) throw new Error('bucardo MCP pid file never appeared');
      await sleep(50);
    }
    const mcp = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    this.sid = sessionOf(mcp);
    if (this.sid === undefined) throw new Error(`bucardo MCP (pid ${mcp}) is not running: see ${join(this.dir, 'log')}`);
  }

  pids(): number[] {
    return this.sid ? pidsInSession(this.sid) : [];
  }

  async stop(): Promise<void> {
    if (this.sid === undefined) return;
    let pids = this.pids();
    await this.bc('stop', 'bench').catch(() => {});
    const t0 = Date.now();
    while (pids.some(alive) && Date.now() - t0 < 30_000) {
      await sleep(100);
      pids = pids.filter(alive);
    }
    pids = pids.filter(alive);
    if (pids.length) {
      for (const p of pids) {
        try {
          process.kill(p, 'SIGTERM');
        } catch {
          // gone
        }
      }
      await sleep(3000);
      for (const p of pids.filter(alive)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    this.sid = undefined;
  }

  private async ctl(): Promise<pg.Client> {
    if (!this.control) {
      const p = this.env!.cluster(0).params('bucardo');
      this.control = new pg.Client({ host: p.host, port: p.port, database: 'bucardo', user: 'postgres', application_name: 'ibexbench' });
      await this.control.connect();
    }
    return this.control;
  }

  /** A mark in Bucardo's run history: the control database's clock (epoch s); syncrun has no id. */
  async mark(): Promise<number> {
    const r = await (await this.ctl()).query(`SELECT extract(epoch FROM clock_timestamp())::float8 AS t`);
    return Number(r.rows[0].t);
  }

  /**
   * Every syncrun row started after the mark. A KID ends each run with status `Complete (KID n)`
   * (a good or empty run) or `Failed : … (KID n)` (a serialization failure or deadlock it retries,
   * or any other error); a row without `ended` is still running.
   */
  async runTimeline(mark: number): Promise<{ status: string; started: number; ended: number | null }[]> {
    const r = await (await this.ctl()).query(
      `SELECT CASE WHEN ended IS NULL THEN 'running' WHEN status LIKE 'Complete%' THEN 'good' WHEN status LIKE 'Failed%' THEN 'failed' ELSE status END AS status,
              extract(epoch FROM started)::float8 AS started, extract(epoch FROM ended)::float8 AS ended
         FROM bucardo.syncrun WHERE sync = $1 AND started > to_timestamp($2) ORDER BY started`, [SYNC, mark]);
    return r.rows.map((x) => ({ status: String(x.status), started: Number(x.started), ended: x.ended === null ? null : Number(x.ended) }));
  }

  /** Conflicts Bucardo counted in its runs since the mark (it keeps a count per run, not the rows). */
  async conflictsLogged(mark: number): Promise<number> {
    const r = await (await this.ctl()).query(
      `SELECT coalesce(sum(conflicts), 0)::int AS n FROM bucardo.syncrun WHERE sync = $1 AND started > to_timestamp($2)`, [SYNC, mark]);
    return Number(r.rows[0].n);
  }

  async teardown(): Promise<void> {
    await this.control?.end().catch(() => {});
    this.control = undefined;
    await this.stop().catch(() => {});
    if (!this.env) return;
    for (const i of this.env.nodeIdx()) await this.env.q(i, 'DROP SCHEMA IF EXISTS bucardo CASCADE').catch(() => {});
  }

  logs(): string[] {
    try {
      return readdirSync(join(this.dir, 'log')).map((f) => join(this.dir, 'log', f));
    } catch {
      return [];
    }
  }
}
