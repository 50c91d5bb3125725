/**
 * What a deployment would need, from the costs the `scale` scenario measured (docs/scaling.md).
 *
 *   node --import tsx bench/tools/scale-model.ts [--from FILE.jsonl] [--masters N] [--syncs S] [--tables T] [--writes W] [--daemons D]
 *
 * With --from, the costs are fitted from the JSON lines of `SCALE_PARTS=syncs npm run bench -- scale`
 * (each line: masters, syncs, daemons, writes_per_s, good_runs, cpu_daemon_s, run_phases); without
 * it, the costs measured for docs/scaling.md are used. Without a configuration it prints the
 * table of docs/scaling.md (today's measured points, then 20 masters and 10,000 tables).
 *
 * The model: a sync is idle until a write wakes it, then runs back to back while it has changes.
 * One run costs a fixed time per master (each source is gathered and each db opened, applied and
 * committed in turn), a time per table in the sync (the schema fingerprint and the per-table
 * statements), and a time per row it applies to each other master. A sync carrying w writes/s
 * cycles through an idle wait (1/w on average) and a run of R that carries the waking write plus
 * those that arrived during the run (1 + w·R rows), so R = fixed + perTable·tables +
 * perRow·(1 + w·R)·(masters−1), i.e. R = (fixed + perTable·tables + perRow·(masters−1)) /
 * (1 − perRow·w·(masters−1)); a denominator at or below zero means it cannot keep up. It runs
 * 1/(R + 1/w) times a second. A change waits for the run in progress, if any, then a whole run:
 * lag p50 between R (an idle sync) and 1.5 R (one always busy). Daemon CPU, control-db commits and
 * sessions follow from the run rate.
 */
import { readFileSync } from 'node:fs';

/** Measured costs (ms), see docs/scaling.md for where each comes from. */
export interface Costs {
  /** Wall time of a run that carries nothing: a + b·masters. */
  runFixedMs: { a: number; b: number };
  /** Wall time per table in the sync, per run. */
  runPerTableMs: number;
  /** Wall time per row applied to one other master. */
  runPerRowMs: number;
  /** Daemon CPU per run: a + b·masters; and per row applied to one other master. */
  cpuPerRunMs: { a: number; b: number };
  cpuPerRowMs: number;
  /** Commits a run makes on the control database. */
  controlCommitsPerRun: number;
}

/** Costs measured on this machine (2 cores, loaded; docs/scaling.md "Measured costs"). */
export const MEASURED: Costs = {
  runFixedMs: { a: 4, b: 9 },
  runPerTableMs: 0.35,
  runPerRowMs: 0.02,
  cpuPerRunMs: { a: 2, b: 5 },
  cpuPerRowMs: 0.003,
  controlCommitsPerRun: 4,
};

export interface Deployment {
  masters: number;
  syncs: number;
  tables: number;
  /** Writes per second over all masters and tables. */
  writes: number;
  daemons: number;
}

export interface Need {
  runMs: number | null;
  lagP50S: number | null;
  runsPerS: number;
  daemonCores: number;
  coresPerDaemon: number;
  controlCommitsPerS: number;
  /** Sessions on each master: one per sync (its runner), plus one LISTEN per daemon. */
  sessionsPerMaster: number;
  /** Sessions on the control database: one per sync and one per daemon. */
  controlSessions: number;
  /** Row applies per second over the mesh: every write goes to every other master. */
  appliesPerS: number;
  keepsUp: boolean;
}

export function need(c: Costs, d: Deployment): Need {
  const w = d.writes / d.syncs;
  const tables = d.tables / d.syncs;
  const fixed = c.runFixedMs.a + c.runFixedMs.b * d.masters + c.runPerTableMs * tables + c.runPerRowMs * (d.masters - 1);
  const denom = 1 - c.runPerRowMs * (w / 1000) * (d.masters - 1);
  const keepsUp = denom > 0;
  const runMs = keepsUp ? fixed / denom : null;
  const runsPerS = runMs ? d.syncs / (runMs / 1000 + 1 / w) : 0;
  const rowsPerRun = runMs ? 1 + (w * runMs) / 1000 : 0;
  const busy = runMs ? (w * runMs) / 1000 / (1 + (w * runMs) / 1000) : 0;
  const cpuMsPerRun = c.cpuPerRunMs.a + c.cpuPerRunMs.b * d.masters + c.cpuPerRowMs * rowsPerRun * (d.masters - 1);
  const daemonCores = (runsPerS * cpuMsPerRun) / 1000;
  return {
    runMs, lagP50S: runMs ? ((1 + 0.5 * busy) * runMs) / 1000 : null, runsPerS, daemonCores, coresPerDaemon: daemonCores / d.daemons,
    controlCommitsPerS: runsPerS * c.controlCommitsPerRun,
    sessionsPerMaster: d.syncs + d.daemons, controlSessions: d.syncs + d.daemons,
    appliesPerS: d.writes * (d.masters - 1), keepsUp,
  };
}

/** Least squares y = a + b·x. */
function fit(points: [number, number][]): { a: number; b: number } {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  const b = sxx === 0 ? 0 : points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0) / sxx;
  return { a: my - b * mx, b };
}

interface SyncsLine {
  part?: string; masters: number; syncs: number; daemons: number; writes_per_s: number; load_s: number; good_runs: number;
  cpu_daemon_s: number | null; run_phases: { runs: number; run_ms_total: number; phases_ms: Record<string, number> } | null;
}

/** Costs fitted from the syncs part's lines (one daemon): run time and CPU per run against masters and tables. */
export function fitCosts(lines: SyncsLine[]): Costs {
  const one = lines.filter((l) => l.part === 'syncs' && l.daemons === 1 && l.run_phases && l.run_phases.runs > 0);
  if (one.length < 2) throw new Error('need at least two lines of the syncs part with one daemon');
  const rows = (l: SyncsLine): number => (l.writes_per_s * l.load_s) / l.run_phases!.runs; // rows per run
  // Per row: the upsert phase per row applied to one other master, over every line.
  const perRow = one.reduce((s, l) => s + (l.run_phases!.phases_ms.upsert ?? 0) / (l.writes_per_s * l.load_s * (l.masters - 1)), 0) / one.length;
  // Per table: the open phase (fingerprint of every table of the sync) per run and table.
  const perTable = one.reduce((s, l) => s + (l.run_phases!.phases_ms.open ?? 0) / l.run_phases!.runs / (100 / l.syncs), 0) / one.length;
  const fixedPts = one.map((l): [number, number] => [l.masters, l.run_phases!.run_ms_total / l.run_phases!.runs - perTable * (100 / l.syncs) - perRow * rows(l) * (l.masters - 1)]);
  const cpuPts = one.filter((l) => l.cpu_daemon_s !== null).map((l): [number, number] => [l.masters, (l.cpu_daemon_s! * 1000) / l.run_phases!.runs]);
  const cpu = fit(cpuPts);
  return { ...MEASURED, runFixedMs: fit(fixedPts), runPerTableMs: perTable, runPerRowMs: perRow, cpuPerRunMs: cpu, cpuPerRowMs: MEASURED.cpuPerRowMs };
}

const r = (x: number | null, d = 2): string => (x === null ? 'cannot keep up' : x.toFixed(d));

function row(label: string, c: Costs, d: Deployment): string {
  const n = need(c, d);
  return `| ${label} | ${d.masters} | ${d.syncs} | ${d.tables} | ${d.writes} | ${d.daemons} | ${r(n.runMs, 0)} | ${r(n.lagP50S)} | ${n.daemonCores.toFixed(2)} | ${n.coresPerDaemon.toFixed(2)} | ${n.controlCommitsPerS.toFixed(0)} | ${n.sessionsPerMaster} | ${n.appliesPerS} |`;
}

function main(argv: string[]): void {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!.replace(/^--/, '');
    if (!['from', 'masters', 'syncs', 'tables', 'writes', 'daemons'].includes(k) || argv[i + 1] === undefined) {
      console.error(`scale-model: unknown or incomplete option ${argv[i]}`);
      process.exit(2);
    }
    o[k] = argv[i + 1]!;
  }
  const costs = o.from
    ? fitCosts(readFileSync(o.from, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as SyncsLine))
    : MEASURED;
  console.log(`costs: ${JSON.stringify(costs)}`);
  console.log('| case | masters | syncs | tables | writes/s | daemons | run ms | lag p50 s | daemon cores | cores/daemon | control commits/s | sessions/master | applies/s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  if (o.masters || o.syncs || o.tables || o.writes || o.daemons) {
    const d = { masters: Number(o.masters ?? 2), syncs: Number(o.syncs ?? 1), tables: Number(o.tables ?? 100), writes: Number(o.writes ?? 1000), daemons: Number(o.daemons ?? 1) };
    console.log(row('asked', costs, d));
    return;
  }
  for (const [m, s] of [[2, 1], [2, 10], [2, 50], [3, 10], [5, 10]] as const) console.log(row('measured point', costs, { masters: m, syncs: s, tables: 100, writes: 1000, daemons: 1 }));
  for (const d of [1, 3, 10]) console.log(row('20 masters', costs, { masters: 20, syncs: 10, tables: 100, writes: 1000, daemons: d }));
  console.log(row('20 masters, 1 sync', costs, { masters: 20, syncs: 1, tables: 100, writes: 1000, daemons: 1 }));
  console.log(row('20 masters, 5k writes/s', costs, { masters: 20, syncs: 10, tables: 100, writes: 5000, daemons: 3 }));
  for (const [s, d] of [[1, 1], [100, 1], [100, 3], [1000, 3]] as const) console.log(row('10,000 tables', costs, { masters: 2, syncs: s, tables: 10_000, writes: 1000, daemons: d }));
}

if (process.argv[1]?.endsWith('scale-model.ts')) main(process.argv.slice(2));
