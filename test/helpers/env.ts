/**
 * Shared test environment: throwaway clusters for one test file, a control
 * database, replicated databases, and the CLI run in-process or as a process.
 */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { createClusters, type Cluster, type ClusterOptions, type ClusterSet } from '../../src/cluster/clusters.js';
import { connect, type PgParams } from '../../src/db/connect.js';
import { main } from '../../src/cli/main.js';

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** What a test file gets from `useClusters`. */
export interface TestEnv {
  set: ClusterSet;
  clusters: Cluster[];
  /** The control database URL (database `ibexctl` on the first cluster). */
  controlUrl: string;
  /** Connect to a database of cluster i (identity text values, like ibex). */
  client(i: number, dbname?: string): Promise<pg.Client>;
  /** Run SQL on cluster i, database dbname (default `app`); returns rows. */
  query(i: number, text: string, values?: unknown[], dbname?: string): Promise<Record<string, unknown>[]>;
  /** Run the CLI in-process against this control database. */
  cli(...args: string[]): Promise<CliResult>;
  /** Connection parameters of cluster i's database. */
  params(i: number, dbname?: string): PgParams;
}

/** Output of one CLI run. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/**
 * Create `count` clusters before the file's tests and remove them after.
 * Each cluster gets a database `app`; the first also `ibexctl` (control).
 */
export function useClusters(count: number, opts: Omit<ClusterOptions, 'count'> = {}): TestEnv {
  const env = {} as TestEnv;
  const open: pg.Client[] = [];
  before(async () => {
    const set = await createClusters({ count, ...opts });
    await Promise.all(set.clusters.map((c) => c.createDatabase('app')));
    await set.clusters[0]!.createDatabase('ibexctl');
    env.set = set;
    env.clusters = set.clusters;
    env.controlUrl = set.clusters[0]!.url('ibexctl');
    env.params = (i, dbname = 'app') => set.clusters[i]!.params(dbname);
    env.client = async (i, dbname = 'app') => {
      const c = await connect(set.clusters[i]!.params(dbname), { applicationName: 'ibex-test' });
      open.push(c);
      return c;
    };
    const pooled = new Map<string, pg.Client>();
    env.query = async (i, text, values = [], dbname = 'app') => {
      const k = `${i}/${dbname}`;
      let c = pooled.get(k);
      if (!c) {
        c = await env.client(i, dbname);
        pooled.set(k, c);
      }
      try {
        const r = await c.query(text, values);
        return r.rows;
      } catch (err) {
        // A pooled session lost with its server (a test stopped a cluster): retry once on a new one.
        if (!/not queryable|Connection terminated|terminating connection/i.test(String(err))) throw err;
        pooled.delete(k);
        c.end().catch(() => {});
        const fresh = await env.client(i, dbname);
        pooled.set(k, fresh);
        return (await fresh.query(text, values)).rows;
      }
    };
    env.cli = (...args) => runCliInProcess(env.controlUrl, args);
  });
  after(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => {})));
    await env.set?.destroy();
  });
  return env;
}

/** Run `ibex <args>` in this process, capturing output. */
export async function runCliInProcess(controlUrl: string, args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await main(['--control', controlUrl, ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** Run `bin/ibex <args>` as a subprocess. */
export function runCliProcess(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(join(ROOT, 'bin', 'ibex'), args, { env: { ...process.env, ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, out: String(stdout), err: String(stderr) });
    });
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/** Wait until `check` returns a truthy value, or fail after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false | null>, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Assert a CLI run succeeded; returns it. */
export function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, `expected success, got ${r.code}: ${r.err}${r.out}`);
  return r;
}

/** Assert a CLI run failed with this exit code and exactly one stderr line matching `re`. */
export function fails(r: CliResult, code: number, re: RegExp): void {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}: ${r.err}${r.out}`);
  const lines = r.err.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${r.err}`);
  assert.match(lines[0]!, re);
}
