/**
 * The real daemon as a child process (`bin/ibex start`), for end-to-end tests
 * that kill it, restart its databases under it, or watch it recover by itself.
 */
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { daemonPaths, readPidFile } from '../../src/cli/daemon.js';
import { processAlive } from '../../src/control/daemon-store.js';
import { runCliProcess, waitFor, type CliResult, type TestEnv } from './env.js';

/** A detached daemon of a test file's control database. */
export interface DaemonProcess {
  /** `ibex start`; resolves with the pid once the daemon said it is ready. */
  start(): Promise<number>;
  /** `ibex stop` (graceful), then SIGKILL should it still run. */
  stop(): Promise<void>;
  /** SIGKILL the daemon and wait until the process is gone. */
  kill(): Promise<void>;
  /** The pid of the pid file, if any. */
  pid(): number | undefined;
  /** Is the daemon of the pid file alive? */
  alive(): boolean;
  /** Run `bin/ibex --control <url> <args>` as a process, with the daemon's environment. */
  ibex(...args: string[]): Promise<CliResult>;
  /** The last lines of the daemon's log (for failure messages). */
  logTail(lines?: number): string;
}

/**
 * A daemon for this file: pid file and log in a private directory, removed
 * (and the daemon stopped or killed) after the file's tests. `extraEnv` is
 * passed to every `bin/ibex` run (e.g. IBEX_CHECKTIME_MS). The daemon's log
 * is kept as `<tmpdir>/ibex-daemon-<label>.log` after the tests, for post-mortems.
 * `controlUrl` replaces the environment's (e.g. a service-file URL a test repoints).
 */
export function useDaemonProcess(env: TestEnv, extraEnv: Record<string, string> = {}, label = 'test', opts: { controlUrl?: string } = {}): DaemonProcess {
  const piddir = mkdtempSync(join(tmpdir(), 'ibex-daemon-'));
  const daemonEnv = { IBEX_PIDDIR: piddir, IBEX_CONTROL_URL: '', ...extraEnv };
  const url = (): string => opts.controlUrl ?? env.controlUrl;
  const paths = (): ReturnType<typeof daemonPaths> => daemonPaths(url(), piddir);
  const pid = (): number | undefined => readPidFile(paths().pidFile);
  const ibex = (...args: string[]): Promise<CliResult> => runCliProcess(['--control', url(), ...args], daemonEnv);
  const gone = async (p: number): Promise<void> => {
    await waitFor(`daemon pid ${p} to exit`, async () => !processAlive(p), 30_000, 20);
  };
  const kill = async (): Promise<void> => {
    const p = pid();
    if (p === undefined || !processAlive(p)) return;
    process.kill(p, 'SIGKILL');
    await gone(p);
  };
  const logTail = (lines = 40): string => {
    try {
      return readFileSync(paths().logFile, 'utf8').split('\n').filter((l) => l.trim()).slice(-lines).join('\n');
    } catch {
      return '(no daemon log)';
    }
  };
  after(async () => {
    const p = pid();
    if (p !== undefined && processAlive(p)) {
      await ibex('stop', '--timeout=20').catch(() => undefined);
      if (processAlive(p)) {
        process.kill(p, 'SIGKILL');
        await gone(p).catch(() => undefined);
      }
    }
    const log = paths().logFile;
    if (existsSync(log)) copyFileSync(log, join(tmpdir(), `ibex-daemon-${label}.log`));
    rmSync(piddir, { recursive: true, force: true });
  });
  return {
    async start() {
      const r = await ibex('start');
      assert.equal(r.code, 0, `ibex start: ${r.err}${r.out}`);
      const p = pid();
      assert.ok(p, 'start wrote a pid file');
      return p;
    },
    async stop() {
      const p = pid();
      await ibex('stop', '--timeout=60');
      if (p !== undefined && processAlive(p)) {
        process.kill(p, 'SIGKILL');
        await gone(p);
      }
    },
    kill,
    pid,
    alive: () => {
      const p = pid();
      return p !== undefined && processAlive(p);
    },
    ibex,
    logTail,
  };
}
