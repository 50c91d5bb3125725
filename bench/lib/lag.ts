/**
 * Per-change lag from commit timestamps. Each load generator marks the rows
 * it writes with grp = 1000 + its node index and touches each row once, so a
 * row's version on its origin and on every other node can be matched by key:
 * lag = commit time of the version on the destination − commit time on the
 * origin (pg_xact_commit_timestamp(xmin); all clusters share one clock).
 */
import { COMMIT_TS, nodeName, ORIGIN_BASE, type BenchEnv } from './env.js';
import { lagStats, round, type LagStats } from './stats.js';

interface Version {
  grp: number;
  text: string;
  ts: number;
}

export interface LagReport {
  all: LagStats;
  dirs: Record<string, LagStats>;
  /** Changes not (yet) on a destination, and changes whose content differs there. */
  missing: number;
  mismatched: number;
  /** Last destination commit − last origin commit of the measured changes. */
  catchup_s: number | null;
  changes: number;
}

async function dump(env: BenchEnv, i: number, tables: readonly string[]): Promise<Map<string, Version>> {
  const out = new Map<string, Version>();
  for (const table of tables) {
    const rows = await env.q<{ id: string; grp: number; t: string; ts: number }>(i,
      `SELECT id::text, grp, t::text AS t, ${COMMIT_TS} AS ts FROM ${table} t WHERE grp > ${ORIGIN_BASE}`);
    for (const r of rows) out.set(`${table}:${r.id}`, { grp: Number(r.grp), text: r.t, ts: Number(r.ts) });
  }
  return out;
}

/** Lag of every change written by `writers` (node indices) to every other node, in these tables (bench_item by default). */
export async function measureLag(env: BenchEnv, writers: number[], tables: readonly string[] = ['bench_item']): Promise<LagReport> {
  const nodes = env.nodeIdx();
  const dumps = new Map<number, Map<string, Version>>();
  for (const i of nodes) dumps.set(i, await dump(env, i, tables));
  const all: number[] = [];
  const dirs: Record<string, number[]> = {};
  let missing = 0;
  let mismatched = 0;
  let lastOrigin = 0;
  let lastDest = 0;
  let changes = 0;
  for (const w of writers) {
    const mine = [...dumps.get(w)!.entries()].filter(([, v]) => v.grp === ORIGIN_BASE + w);
    changes += mine.length;
    for (const [id, v] of mine) {
      lastOrigin = Math.max(lastOrigin, v.ts);
      for (const d of nodes) {
        if (d === w) continue;
        const there = dumps.get(d)!.get(id);
        if (!there) {
          missing++;
          continue;
        }
        if (there.text !== v.text) mismatched++;
        const lag = there.ts - v.ts;
        lastDest = Math.max(lastDest, there.ts);
        all.push(lag);
        (dirs[`${nodeName(w)}->${nodeName(d)}`] ??= []).push(lag);
      }
    }
  }
  return {
    all: lagStats(all),
    dirs: Object.fromEntries(Object.entries(dirs).map(([k, v]) => [k, lagStats(v)])),
    missing, mismatched, changes,
    catchup_s: lastDest && lastOrigin ? round(lastDest - lastOrigin) : null,
  };
}
