/**
 * Daemon control: `ibex run` (foreground), `ibex start` (detached, returns
 * once the daemon is ready), `ibex stop`, `ibex restart`, `ibex reload`.
 *
 * A detached daemon has a pid file and a log file in its directory
 * (`--piddir`, else IBEX_PIDDIR, else ~/.ibex), both named after a hash of
 * the control URL, so each control database can have its own daemon. The
 * control URL reaches the daemon through its environment, never its command
 * line (passwords must not show in `ps`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { homedir, hostname } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { liveDaemons, notifyControl, processAlive, type DaemonRow } from '../control/daemon-store.js';
import { redact, errorText } from '../db/connect.js';
import { Daemon } from '../engine/daemon.js';
import { IbexError, usage } from '../errors.js';
import { createLogger, reopenLogFile, setLogger } from '../log.js';
import { readSetting } from '../control/settings-store.js';
import type { RunKind, RunResult } from '../model.js';
import { Observer } from '../observe/observer.js';
import { parseListen, startHttp, type HttpServer } from '../observe/server.js';
import { isEntryPoint } from '../version.js';
import { didYouMean } from './suggest.js';
import type { Context, VerbHandler } from './context.js';

/** How long `start` waits for the daemon to be ready. */
const START_TIMEOUT_MS = 30_000;
/** How long `stop` waits by default for the runs in progress to end. */
const STOP_TIMEOUT_S = 60;

/** Where a detached daemon keeps its pid file and log. */
export interface DaemonPaths {
  dir: string;
  pidFile: string;
  logFile: string;
}

/** The pid file and log of the daemon of a control database. */
export function daemonPaths(controlUrl: string, piddir?: string): DaemonPaths {
  const dir = resolve(piddir || process.env.IBEX_PIDDIR || join(homedir(), '.ibex'));
  const tag = createHash('sha256').update(controlUrl).digest('hex').slice(0, 12);
  return { dir, pidFile: join(dir, `ibex-${tag}.pid`), logFile: join(dir, `ibex-${tag}.log`) };
}

/** The pid recorded in a pid file, if the file exists and holds one. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n', 1)[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Is this pid a live ibex daemon? (On Linux, checks its command line, so a reused pid is not mistaken for one.) */
export function isIbexDaemon(pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.some((a) => /main\.[tj]s$|(^|\/)ibex$/.test(a)) && args.includes('run');
  } catch {
    // No /proc (or not ours to read): trust the pid file.
    return true;
  }
}

/** Options of the daemon verbs: `--name=value`, `--name value` or `name=value`. */
function daemonOptions(args: readonly string[], allowed: readonly string[], verb: string): Map<string, string> {
  const out = new Map<string, string>();
  const hint = allowed.length ? `: use ${allowed.map((k) => `--${k}=…`).join(' ')}` : ': it takes no arguments';
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^(?:--)?([a-z]+)=(.*)$/.exec(a);
    let key: string;
    let value: string;
    if (m) {
      key = m[1]!;
      value = m[2]!;
    } else if (/^--[a-z]+$/.test(a) && i + 1 < args.length) {
      key = a.slice(2);
      value = args[++i]!;
    } else throw usage(`unexpected argument "${a}" for "ibex ${verb}"${hint}`);
    if (!allowed.includes(key)) throw usage(`unknown option "${key}" for "ibex ${verb}"${hint}${didYouMean(key, allowed)}`);
    if (value === '') throw usage(`--${key} needs a value`);
    out.set(key, value);
  }
  return out;
}

function seconds(key: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw usage(`bad value "${value}" for ${key}: give a whole number of seconds`);
  return Number(value);
}

/** The command that runs this very ibex (through tsx when running from sources). */
function selfCommand(args: string[]): { command: string; args: string[] } {
  const self = fileURLToPath(import.meta.url);
  const ext = extname(self);
  const main = join(dirname(self), `main${ext}`);
  const nodeArgs = ['--no-warnings=ExperimentalWarning'];
  if (ext === '.ts') {
    const loader = join(dirname(self), '..', '..', 'node_modules', 'tsx', 'dist', 'loader.mjs');
    nodeArgs.push('--import', existsSync(loader) ? pathToFileURL(loader).href : 'tsx');
  }
  return { command: process.execPath, args: [...nodeArgs, main, ...args] };
}

/** Is this process the `ibex` command (not a test importing the CLI)? */
function isCliProcess(): boolean {
  return isEntryPoint(new URL('./main.js', import.meta.url).href) || isEntryPoint(new URL('./main.ts', import.meta.url).href);
}

// ---- ibex run -----------------------------------------------------------------------------

/** `--syncs=a,b*`: the syncs a daemon may run (patterns; `*` any characters). */
function syncPatterns(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const list = value.split(',').map((p) => p.trim()).filter((p) => p);
  const bad = list.find((p) => !/^[A-Za-z0-9_*]+$/.test(p));
  if (bad !== undefined || list.length === 0) throw usage(`bad --syncs value "${value}": give sync names or patterns with *, separated by commas (e.g. --syncs=orders,eu_*)`);
  return list;
}

/**
 * `ibex run [--logfile=PATH] [--http=ADDR:PORT] [--syncs=PATTERNS]`: the daemon in the foreground;
 * SIGTERM or SIGINT stop it gracefully, SIGHUP reopens the log file and reloads the configuration.
 * Any number of daemons may share one control database.
 */
export const run: VerbHandler = async (ctx, args) => {
  const o = daemonOptions(args, ['logfile', 'http', 'syncs'], 'run');
  const syncs = syncPatterns(o.get('syncs'));
  const logfile = o.get('logfile');
  const httpOption = o.get('http');
  if (httpOption !== undefined && httpOption !== 'off') parseListen(httpOption);
  const logger = createLogger({
    level: ctx.flags.debug ? 'debug' : (process.env.IBEX_LOG_LEVEL ?? 'info'),
    ...(logfile ? { destination: resolve(logfile) } : {}),
  });
  setLogger(logger);
  const checktime = process.env.IBEX_CHECKTIME_MS;
  if (checktime !== undefined && !/^\d+$/.test(checktime)) throw usage(`IBEX_CHECKTIME_MS="${checktime}" is not a number of milliseconds: unset it or give one`);
  const listen = await httpListen(ctx, httpOption);
  const observer = listen ? new Observer({ controlUrl: ctx.controlUrl, log: logger }) : undefined;
  const daemon = new Daemon({
    controlUrl: ctx.controlUrl,
    log: logger,
    ...(syncs ? { syncs } : {}),
    ...(checktime ? { checktimeMs: Math.max(1, Number(checktime)) } : {}),
    ...(observer ? { onRunEnded: (sync: string, end: { kind: RunKind; result: RunResult }) => observer.runEnded(sync, end) } : {}),
  });
  let signals = 0;
  const onStop = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      void daemon.stop(`signal ${signal}`);
      return;
    }
    // A second signal: the operator will not wait. Nothing is lost (runs are crash-safe).
    logger.warn({ signal }, 'second signal: exiting now, without waiting for the runs in progress');
    logger.flush();
    process.exit(1);
  };
  const onReload = (): void => {
    // logrotate moved the file away (no copytruncate): write to a new one at the old path.
    if (reopenLogFile()) logger.info({ file: logfile }, 'log file reopened');
    void daemon.reload();
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onReload);
  const unhook = (): void => {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onReload);
  };
  let http: HttpServer | undefined;
  try {
    await daemon.start();
    if (observer && listen) {
      observer.start();
      http = await startHttp(observer, listen, logger);
    }
  } catch (err) {
    unhook();
    await observer?.close();
    if (!daemon.isStopping) await daemon.stop('the http server could not start');
    logger.error({ err: redact(errorText(err)) }, 'the daemon could not start');
    logger.flush();
    throw err;
  }
  // Tell `ibex start` (our parent, when detached) that we are ready, then let it go.
  if (process.send) process.send({ type: 'ready', pid: process.pid }, () => process.disconnect?.());
  await daemon.done;
  await http?.close();
  await observer?.close();
  unhook();
  logger.flush();
  if (isCliProcess()) {
    // Every session is closed; should a stray handle keep the loop alive, do not linger as a zombie daemon.
    setTimeout(() => process.exit(process.exitCode ?? 0), 5000).unref();
  }
  return 0;
};

/** Where to serve HTTP: --http (off: nowhere), else the http_listen setting, else nowhere. */
async function httpListen(ctx: Context, option: string | undefined): Promise<{ host: string; port: number } | undefined> {
  let value = option;
  if (value === undefined) {
    // An unreachable control database fails the start just after, with its own message.
    value = await ctx.withControl((c) => readSetting(c, 'http_listen')).catch(() => undefined);
  }
  if (value === undefined || value === '' || value === 'off') return undefined;
  return parseListen(value);
}

// ---- ibex start ---------------------------------------------------------------------------

/** `ibex start [--logfile=PATH] [--piddir=DIR] [--http=ADDR:PORT] [--syncs=PATTERNS]`: the daemon, detached; returns once it is ready. */
export const start: VerbHandler = async (ctx, args) => {
  const o = daemonOptions(args, ['logfile', 'piddir', 'http', 'syncs'], 'start');
  const http = o.get('http');
  if (http !== undefined && http !== 'off') parseListen(http);
  return startDaemon(ctx, daemonPaths(ctx.controlUrl, o.get('piddir')), o.get('logfile'), http, syncPatterns(o.get('syncs')));
};

async function startDaemon(ctx: Context, paths: DaemonPaths, logfileOption: string | undefined, http?: string, syncs?: string[]): Promise<number> {
  const known = readPidFile(paths.pidFile);
  if (known !== undefined && isIbexDaemon(known)) {
    throw new IbexError('daemon', `an ibex daemon is already running for this control database (pid ${known}, pid file ${paths.pidFile}): stop it first with "ibex stop", or give another --piddir to run a second one beside it`);
  }
  // Checks the control database: reachable, schema installed and current (daemons on other hosts may share it).
  await ctx.withControl(async () => {});
  const logFile = resolve(logfileOption ?? paths.logFile);
  // Private: the log names databases and hosts.
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const fd = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    const cmd = selfCommand(['run', '--logfile', logFile, ...(http !== undefined ? ['--http', http] : []), ...(syncs ? [`--syncs=${syncs.join(',')}`] : []), ...(ctx.flags.debug ? ['--debug'] : [])]);
    child = spawn(cmd.command, cmd.args, {
      detached: true,
      stdio: ['ignore', fd, fd, 'ipc'],
      env: { ...process.env, IBEX_CONTROL_URL: ctx.controlUrl },
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new IbexError('daemon', `could not start the daemon process: see ${logFile}`);
  writeFileSync(paths.pidFile, `${pid}\nstarted=${new Date().toISOString()}\nlog=${logFile}\n`);
  const outcome = await waitReady(child, START_TIMEOUT_MS);
  if (child.connected) child.disconnect();
  child.unref();
  if (outcome === 'ready') {
    if (ctx.flags.json) ctx.json({ started: true, pid, pidFile: paths.pidFile, logFile });
    else ctx.say(`ibex daemon started (pid ${pid}); log: ${logFile}`);
    return 0;
  }
  if (outcome === 'timeout') {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  rmSync(paths.pidFile, { force: true });
  const tail = logTail(logFile, logStart, 15);
  for (const line of tail) ctx.say(`  | ${line}`, true);
  const why = outcome === 'timeout' ? `it was not ready after ${START_TIMEOUT_MS / 1000} s and was stopped` : reasonFrom(tail) ?? `it exited with ${outcome.signal ? `signal ${outcome.signal}` : `code ${outcome.code}`}`;
  throw new IbexError('daemon', `the ibex daemon could not start: ${why} (log: ${logFile})`);
}

type StartOutcome = 'ready' | 'timeout' | { code: number | null; signal: NodeJS.Signals | null };

function waitReady(child: ChildProcess, timeoutMs: number): Promise<StartOutcome> {
  return new Promise((resolveOutcome) => {
    let settled = false;
    const done = (o: StartOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolveOutcome(o);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    child.on('message', (m) => {
      if (m && typeof m === 'object' && (m as { type?: unknown }).type === 'ready') done('ready');
    });
    child.on('exit', (code, signal) => done({ code, signal }));
    child.on('error', () => done({ code: null, signal: null }));
  });
}

/** The last lines a daemon wrote to its log since `from` (bytes), passwords removed. */
function logTail(file: string, from: number, lines: number): string[] {
  try {
    const size = statSync(file).size;
    const start = Math.max(from, size - 64 * 1024);
    const buf = Buffer.alloc(size - start);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, buf.length, start);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8').split('\n').filter((l) => l.trim()).slice(-lines).map((l) => redact(l));
  } catch {
    return [];
  }
}

/** The reason a daemon gave for not starting: the CLI's own error line, else the last error logged. */
function reasonFrom(tail: string[]): string | undefined {
  for (const line of [...tail].reverse()) {
    if (line.startsWith('ibex: ')) return line.slice('ibex: '.length);
  }
  for (const line of [...tail].reverse()) {
    try {
      const j = JSON.parse(line) as { level?: number | string; msg?: string; err?: string };
      if (j.level === 'error' || j.level === 'fatal' || (typeof j.level === 'number' && j.level >= 50)) return j.err ? `${j.msg}: ${j.err}` : j.msg;
    } catch {
      // not a log line
    }
  }
  return undefined;
}

// ---- ibex stop / restart / reload ---------------------------------------------------------

/**
 * `ibex stop [--all] [--timeout=SECONDS] [--piddir=DIR]`: stop the local daemon (that of the pid
 * file, else those registered from this host) after its runs in progress; `--all`: every daemon
 * of the control database, wherever it runs.
 */
export const stop: VerbHandler = async (ctx, args) => {
  const all = args.includes('--all');
  const o = daemonOptions(args.filter((a) => a !== '--all'), ['timeout', 'piddir'], 'stop');
  await stopDaemon(ctx, daemonPaths(ctx.controlUrl, o.get('piddir')), seconds('timeout', o.get('timeout'), STOP_TIMEOUT_S), { report: true, all });
  return 0;
};

/** `ibex restart [--timeout=SECONDS] [--logfile=PATH] [--piddir=DIR]`: stop (if running), then start. */
export const restart: VerbHandler = async (ctx, args) => {
  const o = daemonOptions(args, ['timeout', 'logfile', 'piddir', 'http'], 'restart');
  const paths = daemonPaths(ctx.controlUrl, o.get('piddir'));
  const http = o.get('http');
  if (http !== undefined && http !== 'off') parseListen(http);
  await stopDaemon(ctx, paths, seconds('timeout', o.get('timeout'), STOP_TIMEOUT_S), { report: !ctx.flags.json, all: false });
  return startDaemon(ctx, paths, o.get('logfile'), http);
};

/** `ibex reload`: make the running daemon re-read the configuration. */
export const reload: VerbHandler = async (ctx, args) => {
  daemonOptions(args, [], 'reload');
  await ctx.withControl(async (c) => {
    if ((await liveDaemons(c)).length === 0) throw new IbexError('daemon', 'no ibex daemon is running for this control database: start it with "ibex start"');
    await notifyControl(c, 'reload');
  });
  ctx.say('asked the ibex daemon to reload its configuration');
  return 0;
};

/**
 * Stop daemons of this control database: SIGTERM to the pid of the pid file,
 * and a `stop:<id>` message to the live daemon registered with that pid on
 * this host (or, without a pid file, to those registered from this host);
 * with `all`, the `stop` message to every live daemon, wherever it runs.
 * Returns whether one was running.
 */
async function stopDaemon(ctx: Context, paths: DaemonPaths, timeoutS: number, opts: { report: boolean; all: boolean }): Promise<boolean> {
  const known = readPidFile(paths.pidFile);
  const localPid = known !== undefined && isIbexDaemon(known) ? known : undefined;
  if (known !== undefined && localPid === undefined) rmSync(paths.pidFile, { force: true });
  let registered: DaemonRow[] = [];
  let controlError: unknown;
  try {
    registered = await ctx.withControl(async (c) => {
      const here = hostname();
      const live = (await liveDaemons(c)).filter((d) => opts.all || (d.host === here && (localPid === undefined || d.pid === localPid)));
      if (opts.all && live.length) await notifyControl(c, 'stop');
      else for (const d of live) await notifyControl(c, `stop:${d.id}`);
      return live;
    });
  } catch (err) {
    // The pid file is enough to stop a local daemon while the control database is away.
    if (localPid === undefined) throw err;
    controlError = err;
  }
  if (localPid === undefined && registered.length === 0) {
    if (opts.report && ctx.flags.json) ctx.json({ stopped: false, pids: [] });
    else if (opts.report) ctx.say('no ibex daemon is running for this control database', true);
    return false;
  }
  if (localPid !== undefined) {
    try {
      process.kill(localPid, 'SIGTERM');
    } catch {
      // it ended meanwhile
    }
  }
  const pids = [...new Set([...(localPid !== undefined ? [localPid] : []), ...registered.map((d) => d.pid)])];
  const ids = new Set(registered.map((d) => d.id));
  const deadline = Date.now() + timeoutS * 1000;
  const waitGone = async (registeredGone: () => Promise<boolean>): Promise<void> => {
    for (;;) {
      const localGone = localPid === undefined || !processAlive(localPid);
      // A control database that cannot answer now proves nothing either way: ask again until the deadline.
      if (localGone && (await registeredGone().catch(() => false))) return;
      if (Date.now() > deadline) {
        throw new IbexError('daemon', `the ibex daemon (pid ${pids.join(', ')}) has not stopped after ${timeoutS} s: it finishes the runs in progress first; wait and run "ibex stop" again, or end it with "kill ${pids.join(' ')}" (a killed daemon loses nothing)`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  if (ids.size && controlError === undefined) {
    await ctx.withControl((c) => waitGone(async () => (await liveDaemons(c)).every((d) => !ids.has(d.id))));
  } else {
    await waitGone(async () => true);
  }
  rmSync(paths.pidFile, { force: true });
  if (!opts.report) return true;
  if (ctx.flags.json) ctx.json({ stopped: true, pids });
  else ctx.say(`ibex daemon stopped (pid ${pids.join(', ')})`);
  return true;
}
