/**
 * What the bench needs of a replication system. A system is set up on the
 * data nodes of one environment (capture installed, nothing applied yet),
 * then started, measured, stopped and removed. Every process it starts is
 * stopped by PID.
 */
import type { BenchEnv } from '../lib/env.js';

/** Which nodes are sources and which are targets (node indices, 1 = A). */
export interface Topology {
  sources: number[];
  targets: number[];
}

/** One run of the system that moved rows, with where its time went (ibex only). */
export interface RunDetail {
  run: number;
  ms: number;
  inserted: number;
  deleted: number;
  conflicts: number;
  phases: Record<string, number> | null;
}

export interface ReplSystem {
  readonly name: 'ibex' | 'bucardo';
  /** Name and version, recorded in every result line. */
  version(): Promise<string>;
  /** Install capture for `tables` and one sync over the topology; do not start applying. */
  setup(env: BenchEnv, topo: Topology, tables: string[]): Promise<void>;
  /** Start the daemon(s) in the background and return. */
  start(): Promise<void>;
  /** PIDs of the running daemon processes (CPU is summed over their sessions). */
  pids(): number[];
  /** Stop gracefully; returns when every process start() launched has exited. */
  stop(): Promise<void>;
  /** Remove what setup installed on the nodes; the nodes stay up. */
  teardown(): Promise<void>;
  /** What exactly ran (ibex: a hash of src/ when the sync was set up and when the daemon started), for the result line. */
  provenance?(): Record<string, unknown>;
  /** Log files worth keeping. */
  logs(): string[];
  /** A mark in the system's run history (ibex: the last run id). */
  mark?(): Promise<number>;
  /** Runs after a mark that moved rows, with per-phase timings. */
  runsSince?(mark: number): Promise<RunDetail[]>;
  /** Every run since a mark, good or not, with its status and times (epoch seconds), in start order. */
  runTimeline?(mark: number): Promise<{ status: string; started: number; ended: number | null }[]>;
  /** Per-row conflict records the system logged since a mark. */
  conflictsLogged?(mark: number): Promise<number>;
  /**
   * Before setup: one more target db of another kind (`add db <name> <words>`), joined to the
   * sync as a one-way target. Systems without non-PostgreSQL targets in this harness lack it.
   */
  addForeignTarget?(name: string, addDbArgs: string[]): void;
  /** Why this system cannot write a target given by these `add db` words here (undefined: it can). */
  foreignUnsupported?(addDbArgs: string[]): Promise<string | undefined>;
}

export function topologyOf(nodes: number, kind: 'mesh' | 'fanout'): Topology {
  const all = Array.from({ length: nodes }, (_, i) => i + 1);
  return kind === 'mesh' ? { sources: all, targets: [] } : { sources: [1], targets: all.slice(1) };
}
