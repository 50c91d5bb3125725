/**
 * A private redis-server for one test file: its own free port, its own temp dir, nothing kept on
 * disk. Stopped by its PID; never touches the machine's shared Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cluster/ports.js';


/** A running private server. */
export interface RedisServer {
  port: number;
  dir: string;
  /** Start (or start again, on the same port) a server; resolves when it accepts connections. */
  start(extraArgs?: string[]): Promise<void>;
  /** SIGKILL the server and wait for it to exit. */
  kill(): Promise<void>;
  /** Stop it and remove its directory. */
  destroy(): Promise<void>;
}


async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ port, host: '127.0.0.1' });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Make (not start) a private server on a free port. */
export async function privateRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'ibex-redis-'));
  let proc: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    dir,
    async start(extraArgs = []) {
      const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], {
        stdio: 'ignore',
      });
      proc = p;
      const deadline = Date.now() + 10_000;
      while (!(await accepts(port))) {
        if (p.exitCode !== null) throw new Error(`redis-server on ${port} exited with ${p.exitCode}`);
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill() {
      const p = proc;
      proc = undefined;
      if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGKILL');
      });
    },
    async destroy() {
      await server.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}
