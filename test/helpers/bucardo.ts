/**
 * A real Bucardo 5 (Debian's `bucardo` package) on a test file's clusters, the way the bench
 * drives it (bench/systems/bucardo.ts): a control database `bucardo` made by `bucardo install
 * --batch` on one cluster, a superuser role `bucardo` on every node, every file it writes in a
 * private lower-case directory (Bucardo lower-cases some settings), started and stopped by PID.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { TestEnv } from './env.js';

/** Why Bucardo cannot run here, or undefined when it can. */
export function bucardoMissing(): string | undefined {
  const onPath = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'bucardo')));
  if (!onPath) return 'bucardo is not installed (apt-get install bucardo postgresql-plperl-15)';
  const plperl = existsSync('/usr/lib/postgresql') && readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/lib/plperl.so`));
  return plperl ? undefined : 'postgresql-plperl is not installed (apt-get install postgresql-plperl-15)';
}

function run(cmd: string, args: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: `${String(stdout)}${String(stderr)}` });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The processes of a session (Bucardo's MCP, CTL, KID and VAC share the MCP's). */
function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[3]) === sid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** One Bucardo for a test file. */
export class TestBucardo {
  readonly dir: string;
  private readonly real: string;
  private sid: number | undefined;

  constructor(private readonly env: TestEnv, private readonly control = 0) {
    // mkdtemp's suffix has capitals: the directory Bucardo sees is a lower-case one.
    const real = mkdtempSync('/tmp/ibex-bucardo-');
    this.real = real;
    // The control database's PL/Perl connects from the server's OS user through the socket links here.
    chmodSync(real, 0o755);
    this.dir = `/tmp/ibexbucardo${process.pid}x${Math.floor(Math.random() * 1e9)}`;
    symlinkSync(real, this.dir);
    for (const d of ['run', 'log', 'home']) mkdirSync(join(this.dir, d), { recursive: true });
  }

  /** A lower-case path to cluster i's socket directory. */
  socket(i: number): string {
    const link = join(this.dir, `sock${i}`);
    if (!existsSync(link)) symlinkSync(this.env.clusters[i]!.socketDir, link);
    return link;
  }

  /** The URL of Bucardo's control database (what `ibex import-bucardo --from` takes). */
  url(): string {
    const c = this.env.clusters[this.control]!;
    return `postgresql://bucardo@localhost:${c.port}/bucardo?host=${encodeURIComponent(c.socketDir)}`;
  }

  private runEnv(): { cwd: string; env: NodeJS.ProcessEnv } {
    return { cwd: this.dir, env: { ...process.env, HOME: join(this.dir, 'home') } };
  }

  /** Run the bucardo CLI against this control database; throws with its output on failure. */
  async bc(...args: string[]): Promise<string> {
    const r = await run('bucardo', [`--bucardorc=${join(this.dir, 'bucardorc')}`, ...args], this.runEnv());
    appendFileSync(join(this.dir, 'log', 'cli.log'), `$ bucardo ${args.join(' ')}\n${r.out}`);
    if (r.code !== 0) throw new Error(`bucardo ${args.join(' ')} exited ${r.code}: ${r.out.trim().split('\n').slice(-10).join('\n')}`);
    return r.out;
  }

  /** Install the control database and the role bucardo on every cluster. */
  async install(): Promise<void> {
    const c = this.env.clusters[this.control]!;
    appendFileSync(join(this.dir, 'bucardorc'),
      `dbhost = ${this.socket(this.control)}\ndbport = ${c.port}\ndbname = bucardo\ndbuser = bucardo\npiddir = ${join(this.dir, 'run')}\nlogdest = ${join(this.dir, 'log')}\n`);
    for (let i = 0; i < this.env.clusters.length; i++) {
      await this.env.query(i, `DO $$BEGIN CREATE ROLE bucardo SUPERUSER LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$`, [], 'postgres');
    }
    const r = await run('bucardo', ['install', '--batch', '--no-bucardorc', '--quiet', `--dbhost=${this.socket(this.control)}`, `--dbport=${c.port}`,
      '--dbuser=postgres', '--dbname=postgres', `--piddir=${join(this.dir, 'run')}`], this.runEnv());
    appendFileSync(join(this.dir, 'log', 'cli.log'), `$ bucardo install\n${r.out}`);
    if (r.code !== 0) throw new Error(`bucardo install failed: ${r.out.trim().split('\n').slice(-10).join('\n')}`);
    await this.bc('set', `piddir=${join(this.dir, 'run')}`, `reason_file=${join(this.dir, 'log', 'restart.reason')}`,
      `log_conflict_file=${join(this.dir, 'log', 'conflict.log')}`, `warning_file=${join(this.dir, 'log', 'warning.log')}`, 'log_level=verbose');
  }

  /** `bucardo add db` for cluster i's database as user bucardo. */
  async addDb(name: string, i: number, dbname = 'app', ...more: string[]): Promise<void> {
    await this.bc('add', 'db', name, `dbname=${dbname}`, `host=${this.socket(i)}`, `port=${this.env.clusters[i]!.port}`, 'user=bucardo', ...more);
  }

  /** Start Bucardo; resolves once its MCP runs. */
  async start(): Promise<void> {
    const pidFile = join(this.dir, 'run', 'bucardo.mcp.pid');
    await this.bc('start', 'ibex test');
    const t0 = Date.now();
    while (!existsSync(pidFile) || readFileSync(pidFile, 'utf8').trim() === '') {
      if (Date.now() - t0 > 60_000) throw new Error(`the Bucardo MCP pid file never appeared: see ${join(this.dir, 'log')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const mcp = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    const stat = readFileSync(`/proc/${mcp}/stat`, 'utf8');
    this.sid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
  }

  /** Stop Bucardo (`bucardo stop`, then its processes by PID). */
  async stop(): Promise<void> {
    if (this.sid === undefined) return;
    let pids = sessionPids(this.sid);
    await this.bc('stop').catch(() => '');
    const t0 = Date.now();
    while (pids.some(alive) && Date.now() - t0 < 20_000) {
      await new Promise((r) => setTimeout(r, 200));
      pids = pids.filter(alive);
    }
    for (const p of pids.filter(alive)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    this.sid = undefined;
  }

  /** Stop Bucardo and remove its directory (its log is kept when `keepLog`, for post-mortems). */
  async remove(keepLog = false): Promise<void> {
    await this.stop();
    rmSync(this.dir, { force: true });
    if (!keepLog) rmSync(this.real, { recursive: true, force: true });
  }

  /** The end of Bucardo's log, for failure messages. */
  logTail(lines = 40): string {
    const f = join(this.dir, 'log', 'log.bucardo');
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n') : '(no log.bucardo)';
  }
}
