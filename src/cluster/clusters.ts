/**
 * Throwaway local PostgreSQL clusters, for `ibex quickstart`, the tests and
 * bench/. Each cluster listens on loopback and on a unix socket in a private
 * temp dir, runs as a non-root OS user, and is always removed: by `destroy()`,
 * and as a last resort when the process exits or is interrupted.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, appendFileSync, mkdirSync, cpSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PgParams } from '../db/connect.js';
import { IbexError } from '../errors.js';
import { freePort } from './ports.js';

const run = promisify(execFile);

/** Options for a set of clusters. */
export interface ClusterOptions {
  /** How many clusters. */
  count: number;
  /** Extra postgresql.conf settings, e.g. `{ track_commit_timestamp: 'on' }`. */
  settings?: Record<string, string>;
  /** Durable settings (fsync on); default off: throwaway clusters favour speed. */
  durable?: boolean;
  /** Names of the clusters (default A, B, C …). */
  names?: string[];
  /** A prefix for the temp dir, to recognise it. */
  label?: string;
  /** Ports to try first, one per cluster (default: free ones picked here); a taken one is replaced. */
  ports?: number[];
}

/** One running throwaway cluster. */
export interface Cluster {
  readonly name: string;
  readonly port: number;
  readonly socketDir: string;
  readonly dataDir: string;
  /** Connection parameters for a database of this cluster (superuser `postgres`, trust). */
  params(dbname?: string): PgParams;
  /** A libpq URL for a database of this cluster. */
  url(dbname?: string): string;
  /** Stop the server (fast shutdown), keeping its data. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Start it again after `stop()`. */
  start(): Promise<void>;
  /** Create a database (no error if it exists). */
  createDatabase(dbname: string): Promise<void>;
  /** Run SQL through psql (for set-up scripts); returns stdout. */
  psql(sql: string, dbname?: string): Promise<string>;
}

/** A set of clusters and the way to remove them. */
export interface ClusterSet {
  readonly clusters: Cluster[];
  readonly root: string;
  destroy(): Promise<void>;
  /** Keep the clusters running after this process exits (quickstart --keep). */
  detach(): void;
}

/** Find the PostgreSQL server binaries: pg_config, PATH, then /usr/lib/postgresql/<newest>/bin. */
export function findBinDir(): string {
  if (process.env.IBEX_PG_BINDIR && existsSync(join(process.env.IBEX_PG_BINDIR, 'initdb'))) return process.env.IBEX_PG_BINDIR;
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // pg_config is optional
  }
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(dir);
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  for (const dir of candidates) {
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  throw new IbexError('internal', 'PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql, or set IBEX_PG_BINDIR');
}

/** PostgreSQL refuses to run as root: pick an unprivileged OS user to own the clusters. */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  for (const name of [process.env.IBEX_PG_OS_USER, 'postgres'].filter((n): n is string => !!n)) {
    const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    if (r.status === 0) {
      const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim();
      return { name, uid: Number(r.stdout.trim()), gid: Number(gid) };
    }
  }
  throw new IbexError('internal', 'running as root and no "postgres" OS user exists: create one (useradd postgres) or set IBEX_PG_OS_USER');
}

/** What a server wrote to its log since `from` (a byte offset), at most its last 4 KB. */
function serverLogSince(logFile: string, from: number): string {
  try {
    const size = statSync(logFile).size;
    const start = Math.max(from, size - 4096);
    const buf = Buffer.alloc(Math.max(0, size - start));
    const fd = openSync(logFile, 'r');
    try {
      readSync(fd, buf, 0, buf.length, start);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8').trim();
  } catch {
    return '';
  }
}

/** A cluster that would not start, with what its server logged. */
class ServerStartError extends IbexError {
  /** Whether the server died because its port was taken. */
  readonly portTaken: boolean;
  constructor(name: string, port: number, log: string, cause: unknown) {
    super('internal', `cluster ${name} (port ${port}) did not start: ${log || (cause instanceof Error ? cause.message : String(cause))}`);
    this.portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(log);
  }
}

const liveRoots = new Set<{ root: string; stopAll: () => void }>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const cleanup = (): void => {
    for (const entry of liveRoots) {
      try {
        entry.stopAll();
      } catch {
        // best effort at exit
      }
    }
    liveRoots.clear();
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      // Another handler (e.g. quickstart's graceful stop) owns the signal; the exit hook stays the last resort.
      if (process.listenerCount(sig) > 1) return;
      cleanup();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/** Create, configure and start `count` clusters in parallel. */
export async function createClusters(opts: ClusterOptions): Promise<ClusterSet> {
  const bin = findBinDir();
  const user = serverUser();
  const root = mkdtempSync(join(tmpdir(), `${opts.label ?? 'ibex'}-pg-`));
  const asUser = (cmd: string, args: string[]): [string, string[]] =>
    user ? ['runuser', ['-u', user.name, '--', cmd, ...args]] : [cmd, args];
  const chown = (path: string): void => {
    if (user) chownSync(path, user.uid, user.gid);
  };
  chown(root);

  const names = opts.names ?? Array.from({ length: opts.count }, (_, i) => String.fromCharCode(65 + i));
  const dataDirs = names.map((_, i) => join(root, `n${i}`));
  const ports: number[] = [];
  for (let i = 0; i < names.length; i++) {
    let p = opts.ports?.[i] ?? await freePort();
    while (ports.includes(p)) p = await freePort();
    ports.push(p);
  }
  const started = new Set<string>();
  const stopAllSync = (): void => {
    for (const dir of started) spawnSync(...asUser(join(bin, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' });
    started.clear();
    rmSync(root, { recursive: true, force: true });
  };
  const entry = { root, stopAll: stopAllSync };
  liveRoots.add(entry);
  hookExit();

  try {
    // initdb once, copy the result: much faster than N initdb runs on 2 cores.
    const template = join(root, 'template');
    const [cmd, args] = asUser(join(bin, 'initdb'), [
      '-D', template, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions',
    ]);
    await run(cmd, args, { env: { ...process.env, LC_ALL: 'C' } });
    const settings: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      max_connections: '200',
      fsync: opts.durable ? 'on' : 'off',
      synchronous_commit: opts.durable ? 'on' : 'off',
      full_page_writes: opts.durable ? 'on' : 'off',
      shared_buffers: '64MB',
      max_wal_size: '1GB',
      timezone: "'UTC'",
      log_min_messages: 'warning',
      log_line_prefix: "'%m [%p] %a '",
      max_prepared_transactions: '20',
    };
    for (const [k, v] of Object.entries(opts.settings ?? {})) settings[k] = /^[\w.-]+$/.test(v) ? v : `'${v.replace(/'/g, "''")}'`;
    await Promise.all(names.map(async (_, i) => {
      const dir = dataDirs[i]!;
      cpSync(template, dir, { recursive: true });
      if (user) await run('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
      const sock = join(root, `s${i}`);
      mkdirSync(sock);
      chown(sock);
      const conf = { ...settings, port: String(ports[i]), unix_socket_directories: `'${sock}'` };
      appendFileSync(join(dir, 'postgresql.conf'), '\n' + Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    }));
    rmSync(template, { recursive: true, force: true });

    const firstStarts: (() => Promise<void>)[] = [];
    const clusters: Cluster[] = names.map((name, i) => {
      const dataDir = dataDirs[i]!;
      const socketDir = join(root, `s${i}`);
      const logFile = join(dataDir, 'server.log');
      let port = ports[i]!;
      const params = (dbname = 'postgres'): PgParams => ({ host: socketDir, port, dbname, user: 'postgres' });
      const startOnce = async (): Promise<void> => {
        const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
        const [c, a] = asUser(join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
        // Counted as started before pg_ctl returns: a server still starting when pg_ctl gives up must be stopped too.
        started.add(dataDir);
        try {
          await run(c, a);
        } catch (err) {
          throw new ServerStartError(name, port, serverLogSince(logFile, logStart), err);
        }
      };
      const cluster: Cluster = {
        name, socketDir, dataDir,
        get port() {
          return port;
        },
        params,
        url: (dbname = 'postgres') => `postgresql://postgres@localhost:${port}/${encodeURIComponent(dbname)}?host=${encodeURIComponent(socketDir)}`,
        start: startOnce,
        async stop(mode = 'fast') {
          const [c, a] = asUser(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', 'stop']);
          await run(c, a);
          started.delete(dataDir);
        },
        async createDatabase(dbname: string) {
          const out = await cluster.psql(`SELECT 1 FROM pg_database WHERE datname = '${dbname.replace(/'/g, "''")}'`);
          if (out.trim() !== '1') await cluster.psql(`CREATE DATABASE "${dbname.replace(/"/g, '""')}"`);
        },
        async psql(sqlText: string, dbname = 'postgres') {
          const { stdout } = await run(join(bin, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', socketDir, '-p', String(port), '-U', 'postgres', '-d', dbname, '-c', sqlText]);
          return stdout;
        },
      };
      firstStarts.push(async () => {
        // Nobody knows the port yet, so a port taken since it was picked is replaced by another.
        for (let attempt = 1; ; attempt++) {
          try {
            return await startOnce();
          } catch (err) {
            if (!(err instanceof ServerStartError) || !err.portTaken || attempt >= 5) throw err;
            port = await freePort();
            appendFileSync(join(dataDir, 'postgresql.conf'), `port = ${port}\n`);
          }
        }
      });
      return cluster;
    });
    // Every start settles before a failure is handled, so the clean-up below stops them all.
    const starts = await Promise.allSettled(firstStarts.map((f) => f()));
    const failed = starts.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return {
      clusters,
      root,
      async destroy() {
        await Promise.all([...started].map((dir) => {
          const [c, a] = asUser(join(bin, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop']);
          return run(c, a).catch(() => undefined);
        }));
        started.clear();
        rmSync(root, { recursive: true, force: true });
        liveRoots.delete(entry);
      },
      detach() {
        liveRoots.delete(entry);
      },
    };
  } catch (err) {
    stopAllSync();
    liveRoots.delete(entry);
    throw err;
  }
}
