/**
 * What a scenario gets: its knobs, the system under test (none for `limit`),
 * and helpers shared by the scenarios (bring a system up and prove it ready,
 * CPU accounting, per-run phase summaries).
 */
import { cpuOf, statusKb } from './proc.js';
import { round } from './stats.js';
import type { BenchEnv } from './env.js';
import type { ReplSystem, RunDetail, Topology } from '../systems/system.js';

/** Knobs of one invocation (command line, then environment variables). */
export interface Knobs {
  reps: number;
  rows: number | undefined;
  nodes: number | undefined;
  /** Environment knobs, with their defaults applied. */
  seedRows: number;
  streamTxns: number;
  streamRate: number;
  streamWriters: number;
  conflictRows: number;
  overheadRows: number;
  overheadSecs: number;
  overheadClients: number;
  overheadJobs: number;
  drainTimeoutS: number;
  meshTxns: number;
  meshRate: number;
  stableS: number;
  scaleParts: string[];
  scaleBacklogs: number[];
  /** hotkeys: seconds of writing, TPS per node, and the hot key counts measured. */
  hotkeysSecs: number;
  hotkeysRate: number;
  hotkeysKeys: number[];
  keepLogs: string | undefined;
}

export interface ScenarioContext {
  knobs: Knobs;
  /** The system under test; null for scenarios without one (limit). */
  system: ReplSystem | null;
  rep: number;
  log(msg: string): void;
  /** Keep the logs of an environment (server logs and the system's). */
  saveLogs(env: BenchEnv, label: string): void;
}

/** A result line of a scenario run (common fields are added by run.ts). */
export type Line = Record<string, unknown>;

export interface Scenario {
  name: string;
  /** Does it run against a replication system? (limit does not.) */
  needsSystem: boolean;
  /** One or more result lines (e.g. mesh with 3 and 5 nodes). */
  run(ctx: ScenarioContext): Promise<Line[]>;
  /** Metrics shown in the summary table: [key, label]; the first is the headline. */
  metrics: [string, string][];
}

/** Timings of bringing a system up. */
export interface UpTimes {
  setup_s: number;
  start_s: number;
  ready_s: number | null;
}

/**
 * Set up and start the system, then prove it replicates: a canary row written on every source must
 * become visible on every node, and its delete too. ready_s = seconds from start until then.
 */
export async function systemUp(env: BenchEnv, sys: ReplSystem, topo: Topology, opts: { ready?: boolean } = {}): Promise<UpTimes> {
  const t0 = performance.now();
  await sys.setup(env, topo, env.tables());
  const t1 = performance.now();
  await sys.start();
  const t2 = performance.now();
  let ready: number | null = null;
  if (opts.ready !== false) {
    await waitCanaries(env, topo);
    ready = (performance.now() - t1) / 1000;
  }
  return { setup_s: round((t1 - t0) / 1000, 3)!, start_s: round((t2 - t1) / 1000, 3)!, ready_s: round(ready, 3) };
}

/** Canary round trip through bench_pair from every source to every node. */
export async function waitCanaries(env: BenchEnv, topo: Topology, timeoutMs = 120_000): Promise<void> {
  const all = [...topo.sources, ...topo.targets];
  for (const i of topo.sources) await env.q(i, `INSERT INTO bench_pair (a, b, val) VALUES ($1, $1, 'canary')`, [-i]);
  const count = async (i: number): Promise<number> => Number(await env.one(i, 'SELECT count(*)::int FROM bench_pair WHERE a < 0'));
  await env.waitFor(async () => (await Promise.all(all.map(count))).every((n) => n === topo.sources.length), 'canary rows', timeoutMs);
  for (const i of topo.sources) await env.q(i, `DELETE FROM bench_pair WHERE a = $1 AND b = $1`, [-i]);
  await env.waitFor(async () => (await Promise.all(all.map(count))).every((n) => n === 0), 'canary deletes', timeoutMs);
}

/** CPU seconds so far: the system's daemon processes and every cluster. */
export interface CpuMark {
  daemon: number;
  clusters: Record<string, number>;
}

export function cpuMark(env: BenchEnv, sys: ReplSystem | null): CpuMark {
  return { daemon: sys ? sys.pids().reduce((t, p) => t + cpuOf(p, true), 0) : 0, clusters: env.clusterCpu() };
}

/** What cpuSince reports: the daemon's CPU seconds, per change when the scenario knows its changes, and each cluster's. */
export interface CpuUsed {
  cpu_daemon_s: number | null;
  /** Daemon CPU milliseconds per change the load wrote (each origin change once, however many nodes receive it). */
  cpu_daemon_ms_per_change?: number | null;
  cpu_pg_s: Record<string, number>;
}

/**
 * CPU used since a mark: `cpu_daemon_s` (user+sys of the daemon and its reaped children) and `cpu_pg_s` per
 * cluster; with `changes`, also `cpu_daemon_ms_per_change`.
 */
export function cpuSince(env: BenchEnv, sys: ReplSystem | null, m: CpuMark, changes?: number): CpuUsed {
  const now = cpuMark(env, sys);
  const pgs: Record<string, number> = {};
  for (const [k, v] of Object.entries(now.clusters)) pgs[k] = round(v - (m.clusters[k] ?? 0), 2)!;
  const daemon = sys ? now.daemon - m.daemon : null;
  const out: CpuUsed = { cpu_daemon_s: round(daemon, 2), cpu_pg_s: pgs };
  if (changes !== undefined) out.cpu_daemon_ms_per_change = daemon === null || changes <= 0 ? null : round((daemon * 1000) / changes, 4);
  return out;
}

/** Peak resident memory (VmHWM, MB) of the daemon's largest process. */
export function daemonPeakRssMb(sys: ReplSystem | null): number | null {
  if (!sys) return null;
  const v = sys.pids().map((p) => statusKb(p, 'VmHWM') ?? 0);
  return v.length ? round(Math.max(...v) / 1024, 1) : null;
}

/** Sum of each phase over runs, plus how many runs and their total time (ibex's ibex.run.details.phases). */
export function phaseSummary(runs: RunDetail[]): { runs: number; run_ms_total: number; run_ms_max: number; phases_ms: Record<string, number> } | null {
  if (runs.length === 0) return null;
  const phases: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.phases ?? {})) phases[k] = (phases[k] ?? 0) + v;
  return {
    runs: runs.length,
    run_ms_total: Math.round(runs.reduce((t, r) => t + r.ms, 0)),
    run_ms_max: Math.round(Math.max(...runs.map((r) => r.ms))),
    phases_ms: phases,
  };
}

/** Runs of the system since a mark (empty for systems without run history). */
export async function runsSince(sys: ReplSystem | null, mark: number | undefined): Promise<RunDetail[]> {
  if (!sys?.runsSince || mark === undefined) return [];
  return sys.runsSince(mark);
}

/** Run something; on any failure still tear the system and the environment down. */
export async function withEnv<T>(ctx: ScenarioContext, env: BenchEnv, label: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } finally {
    try {
      await ctx.system?.stop();
    } catch (err) {
      ctx.log(`stopping ${ctx.system?.name} failed: ${String(err)}`);
    }
    ctx.saveLogs(env, label);
    await ctx.system?.teardown().catch(() => {});
    await env.destroy();
  }
}
