/**
 * What a deployment would need, from the costs the `scale` scenario measured (docs/scaling.md).
 *
 *   node --import tsx bench/tools/scale-model.ts [--masters N] [--syncs S] [--tables T] [--writes W] [--daemons D]
 *
 * Without a configuration it prints the table of docs/scaling.md (the measured points, then 20
 * masters and 10,000 tables).
 *
 * The model (a fixed point, computed by iteration): a sync is idle until a write wakes it, then
 * runs back to back while it has changes. One run costs a fixed time that grows with the number of
 * masters (each source gathered, each db opened and committed, one after the other), a time per
 * table the run touches and per other master (the per-table statements of gather, resolve and
 * apply), and a time per row and other master. A sync carrying w writes/s over T tables cycles
 * through an idle wait (1/w) and a run of R ms carrying 1 + w·R rows, which touch
 * T·(1 − (1 − 1/T)^rows) tables. A change waits for the run in progress, if any, then a whole run:
 * lag ≈ R when the sync is mostly idle, up to 1.5 R when it is always busy. Daemon CPU, control-db
 * commits and sessions follow from the run rate. Contention is not modelled: the costs were
 * measured on 2 shared cores, where every cluster and daemon compete (docs/scaling.md).
 */

/** Measured costs (ms); docs/scaling.md ("A model of larger setups") says where each comes from. */
export interface Costs {
  /** Wall time of a run, fixed part: a + b·masters. */
  runFixedMs: { a: number; b: number };
  /** Wall time per table a run touches, per other master. */
  runPerTableMs: number;
  /** Wall time per row, per other master. */
  runPerRowMs: number;
  /** Daemon CPU per run (fixed), per touched table and other master, per row and other master. */
  cpuPerRunMs: number;
  cpuPerTableMs: number;
  cpuPerRowMs: number;
  /** Commits a run makes on the control database (INSERT ibex.run, the cursors, UPDATE ibex.run; plus 2 reads). */
  controlCommitsPerRun: number;
  /** Control-db CPU per run. */
  controlCpuPerRunMs: number;
}

export const MEASURED: Costs = {
  runFixedMs: { a: -30, b: 35 },
  runPerTableMs: 5.3,
  runPerRowMs: 0.01,
  cpuPerRunMs: 2,
  cpuPerTableMs: 1.0,
  cpuPerRowMs: 0.0014,
  controlCommitsPerRun: 3,
  controlCpuPerRunMs: 2.3,
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
  lagS: number | null;
  runsPerS: number;
  daemonCores: number;
  coresPerDaemon: number;
  controlCommitsPerS: number;
  controlCores: number;
  /** Sessions on each master: one per sync (its runner) and one LISTEN per daemon. */
  sessionsPerMaster: number;
  /** Sessions on the control database: one per sync and one per daemon. */
  controlSessions: number;
  /** Row applies per second over the mesh: every write goes to every other master. */
  appliesPerS: number;
}

export function need(c: Costs, d: Deployment): Need {
  const w = d.writes / d.syncs / 1000; // writes per ms, per sync
  const tables = d.tables / d.syncs;
  const others = d.masters - 1;
  const fixed = Math.max(1, c.runFixedMs.a + c.runFixedMs.b * d.masters);
  let runMs = fixed;
  let converged = false;
  for (let i = 0; i < 200; i++) {
    const rows = 1 + w * runMs;
    const touched = tables * (1 - (1 - 1 / tables) ** rows);
    const next = fixed + c.runPerTableMs * touched * others + c.runPerRowMs * rows * others;
    if (Math.abs(next - runMs) < 0.01) {
      converged = true;
      runMs = next;
      break;
    }
    runMs = next;
    if (runMs > 3_600_000) break;
  }
  const rows = 1 + w * runMs;
  const touched = tables * (1 - (1 - 1 / tables) ** rows);
  const runsPerS = converged ? d.syncs / (runMs / 1000 + 1 / (w * 1000)) : 0;
  const busy = (w * runMs) / (1 + w * runMs);
  const cpuMsPerRun = c.cpuPerRunMs + c.cpuPerTableMs * touched * others + c.cpuPerRowMs * rows * others;
  const daemonCores = (runsPerS * cpuMsPerRun) / 1000;
  return {
    runMs: converged ? runMs : null, lagS: converged ? ((1 + 0.5 * busy) * runMs) / 1000 : null, runsPerS,
    daemonCores, coresPerDaemon: daemonCores / d.daemons,
    controlCommitsPerS: runsPerS * c.controlCommitsPerRun, controlCores: (runsPerS * c.controlCpuPerRunMs) / 1000,
    sessionsPerMaster: d.syncs + d.daemons, controlSessions: d.syncs + d.daemons, appliesPerS: d.writes * others,
  };
}

const r = (x: number | null, d = 2): string => (x === null ? 'cannot keep up' : x.toFixed(d));

function row(label: string, c: Costs, d: Deployment): string {
  const n = need(c, d);
  return `| ${label} | ${d.masters} | ${d.syncs} | ${d.tables} | ${d.writes} | ${d.daemons} | ${r(n.runMs, 0)} | ${r(n.lagS)} | ${n.daemonCores.toFixed(2)} | ${n.coresPerDaemon.toFixed(2)} | ${n.controlCommitsPerS.toFixed(0)} | ${n.controlCores.toFixed(2)} | ${n.sessionsPerMaster} | ${n.appliesPerS} |`;
}

function main(argv: string[]): void {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!.replace(/^--/, '');
    if (!['masters', 'syncs', 'tables', 'writes', 'daemons'].includes(k) || !/^\d+$/.test(argv[i + 1] ?? '')) {
      console.error(`scale-model: unknown option or not a whole number: ${argv[i]} ${argv[i + 1] ?? ''}`);
      process.exit(2);
    }
    o[k] = argv[i + 1]!;
  }
  const c = MEASURED;
  console.log('| case | masters | syncs | tables | writes/s | daemons | run ms | lag s | daemon cores | cores/daemon | control commits/s | control cores | sessions/master | applies/s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  if (Object.keys(o).length) {
    console.log(row('asked', c, { masters: Number(o.masters ?? 2), syncs: Number(o.syncs ?? 1), tables: Number(o.tables ?? 100), writes: Number(o.writes ?? 1000), daemons: Number(o.daemons ?? 1) }));
    return;
  }
  for (const [m, s] of [[2, 1], [2, 10], [2, 50], [5, 10]] as const) console.log(row('measured point', c, { masters: m, syncs: s, tables: 100, writes: 1000, daemons: 1 }));
  for (const [s, d] of [[1, 1], [10, 1], [10, 3], [100, 3]] as const) console.log(row('20 masters', c, { masters: 20, syncs: s, tables: 100, writes: 1000, daemons: d }));
  for (const [s, d] of [[1, 1], [100, 1], [100, 3], [1000, 10]] as const) console.log(row('10,000 tables', c, { masters: 2, syncs: s, tables: 10_000, writes: 1000, daemons: d }));
  console.log(row('10,000 tables, 20 masters', c, { masters: 20, syncs: 1000, tables: 10_000, writes: 1000, daemons: 10 }));
}

if (process.argv[1]?.endsWith('scale-model.ts')) main(process.argv.slice(2));
