/**
 * The ibex benchmark: throwaway clusters, one scenario at a time, against
 * ibex and — when Debian's `bucardo` package is installed — Bucardo 5.6 on
 * identically configured clusters in the same invocation (interleaved per
 * repetition, so both see the same machine noise).
 *
 *   npm run bench -- <scenario>[,<scenario>…] [--reps N] [--rows N] [--nodes N]
 *                    [--system ibex|bucardo|both] [--out FILE] [--keep-logs DIR]
 *
 * Scenarios: limit bulk stream overhead conflict mesh scale hotkeys; `all` = every one but scale and hotkeys.
 * Prints a markdown table (median (min .. max) of the repetitions, and
 * ibex/bucardo ratios of the same repetition) and appends one JSON line per
 * scenario run to bench/results/<system>.jsonl (or --out FILE).
 */
import { appendFileSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findBinDir } from '../src/cluster/clusters.js';
import { PG_SETTINGS_TEXT, RUN_ROOT, type BenchEnv } from './lib/env.js';
import { loadavg, mustRun } from './lib/proc.js';
import { round } from './lib/stats.js';
import { summarize } from './lib/summary.js';
import type { Knobs, Line, Scenario, ScenarioContext } from './lib/context.js';
import type { ReplSystem } from './systems/system.js';
import { IbexSystem } from './systems/ibex.js';
import { BucardoSystem, bucardoAvailable } from './systems/bucardo.js';
import { limit } from './scenarios/limit.js';
import { bulk } from './scenarios/bulk.js';
import { stream } from './scenarios/stream.js';
import { overhead } from './scenarios/overhead.js';
import { conflict } from './scenarios/conflict.js';
import { mesh } from './scenarios/mesh.js';
import { scale } from './scenarios/scale.js';
import { targets, targetsStream } from './scenarios/targets.js';
import { hotkeys } from './scenarios/hotkeys.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const SCENARIOS: Record<string, Scenario> = { limit, bulk, stream, overhead, conflict, mesh, scale, targets, 'targets-stream': targetsStream, hotkeys };
const ALL = ['limit', 'bulk', 'stream', 'overhead', 'conflict', 'mesh'];

function usage(msg?: string): never {
  if (msg) console.error(`bench: ${msg}`);
  console.error(`usage: npm run bench -- <scenario>[,<scenario>…] [--reps N] [--rows N] [--nodes N] [--system ibex|bucardo|both] [--out FILE] [--keep-logs DIR]
scenarios: ${Object.keys(SCENARIOS).join(', ')}, all (= ${ALL.join(',')})`);
  process.exit(2);
}

const envInt = (name: string, def: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v)) usage(`${name}=${v} is not a whole number`);
  return Number(v);
};

function parseArgs(argv: string[]): { scenarios: string[]; system: string; out: string | undefined; knobs: Knobs } {
  let scen: string | undefined;
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') usage();
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m) {
      const v = m[2] ?? argv[++i];
      if (v === undefined) usage(`--${m[1]} needs a value`);
      o[m[1]!] = v;
    } else if (!scen) scen = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!scen) usage('name a scenario');
  for (const k of Object.keys(o)) if (!['reps', 'rows', 'nodes', 'system', 'out', 'keep-logs'].includes(k)) usage(`unknown option --${k}`);
  const int = (k: string): number | undefined => {
    if (o[k] === undefined) return undefined;
    if (!/^\d+$/.test(o[k]!) || Number(o[k]) < 1) usage(`--${k} needs a positive whole number`);
    return Number(o[k]);
  };
  const scenarios = scen.split(',').flatMap((s) => (s === 'all' ? ALL : [s]));
  for (const s of scenarios) if (!SCENARIOS[s]) usage(`unknown scenario ${s}`);
  const system = o.system ?? 'default';
  if (!['ibex', 'bucardo', 'both', 'default'].includes(system)) usage(`--system must be ibex, bucardo or both`);
  const nodes = int('nodes');
  if (nodes !== undefined && (nodes < 2 || nodes > 8)) usage('--nodes must be 2..8');
  return {
    scenarios: [...new Set(scenarios)], system, out: o.out,
    knobs: {
      reps: int('reps') ?? 1, rows: int('rows'), nodes,
      seedRows: envInt('SEED_ROWS', 10_000),
      streamTxns: envInt('STREAM_TXNS', 3000), streamRate: envInt('STREAM_RATE', 100), streamWriters: envInt('STREAM_WRITERS', 2),
      conflictRows: envInt('CONFLICT_ROWS', 1000),
      overheadRows: envInt('OVERHEAD_ROWS', 100_000), overheadSecs: envInt('OVERHEAD_SECS', 20),
      overheadClients: envInt('OVERHEAD_CLIENTS', 4), overheadJobs: envInt('OVERHEAD_JOBS', 2),
      drainTimeoutS: envInt('DRAIN_TIMEOUT_S', 600),
      meshTxns: envInt('MESH_TXNS', 1000), meshRate: envInt('MESH_RATE', 50),
      stableS: envInt('STABLE_S', 2),
      scaleParts: (process.env.SCALE_PARTS ?? 'backlog,masters,tables').split(','),
      scaleBacklogs: (process.env.SCALE_BACKLOGS ?? '10000,100000,1000000').split(',').map(Number),
      hotkeysSecs: envInt('HOTKEYS_SECS', 90), hotkeysRate: envInt('HOTKEYS_RATE', 200),
      hotkeysKeys: (process.env.HOTKEYS_KEYS ?? '10,1000').split(',').map(Number),
      keepLogs: o['keep-logs'],
    },
  };
}

const log = (msg: string): void => console.error(`[${new Date().toISOString().slice(11, 23)}] ${msg}`);

async function main(): Promise<number> {
  const { scenarios, system, out, knobs } = parseArgs(process.argv.slice(2));
  const systems: ReplSystem[] = [];
  if (system !== 'bucardo') systems.push(new IbexSystem());
  if (system !== 'ibex') {
    const b = bucardoAvailable();
    if (b.ok) systems.push(new BucardoSystem());
    else if (system === 'bucardo') {
      console.error(`bench: Bucardo cannot run here: ${b.why}`);
      return 2;
    } else log(`Bucardo skipped: ${b.why}`);
  }
  const versions = new Map<string, string>();
  for (const s of systems) versions.set(s.name, await s.version());
  const pgVersion = /\d+\.\d+/.exec(await mustRun(join(findBinDir(), 'postgres'), ['--version']))?.[0] ?? '?';
  const stamp = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15);
  const resultsDir = join(HERE, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const lines: Line[] = [];
  let failures = 0;

  // Stop the daemon of the run in progress on Ctrl-C (the clusters' exit hook removes the clusters).
  let active: ReplSystem | null = null;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${sig}: stopping`);
    const stopping = active ? active.stop().catch(() => {}) : Promise.resolve();
    void Promise.race([stopping, new Promise((r) => setTimeout(r, 20_000))]).finally(() => {
      rmSync(RUN_ROOT, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  for (const name of scenarios) {
    const scen = SCENARIOS[name]!;
    for (let rep = 1; rep <= knobs.reps; rep++) {
      for (const sys of scen.needsSystem ? systems : [null]) {
        const sysName = sys?.name ?? 'copy';
        log(`${name} rep ${rep}/${knobs.reps} ${sysName}`);
        active = sys;
        const ctx: ScenarioContext = {
          knobs, system: sys, rep, log,
          saveLogs: (env: BenchEnv, label: string) => {
            if (knobs.keepLogs) env.saveLogs(join(knobs.keepLogs, stamp, label), sys?.logs() ?? []);
          },
        };
        const la = loadavg();
        const t0 = performance.now();
        let produced: Line[];
        try {
          produced = await scen.run(ctx);
        } catch (err) {
          failures++;
          log(`${name} rep ${rep} ${sysName} FAILED: ${err instanceof Error ? err.message : String(err)}`);
          produced = [{ error: err instanceof Error ? err.message.slice(0, 2000) : String(err) }];
        }
        active = null;
        const wall = round((performance.now() - t0) / 1000, 1);
        for (const p of produced) {
          const line: Line = {
            ts: new Date().toISOString(), system: sysName, system_version: sys ? versions.get(sys.name) : 'psql \\copy',
            scenario: name, variant: '', nodes: knobs.nodes ?? 2, rep, pg_version: pgVersion, cores: cpus().length,
            loadavg_start: la, pg_settings: PG_SETTINGS_TEXT, wall_s: wall, ...(sys?.provenance?.() ?? {}), ...p,
          };
          lines.push(line);
          const file = out ?? join(resultsDir, `${sysName}.jsonl`);
          mkdirSync(dirname(file), { recursive: true });
          appendFileSync(file, JSON.stringify(line) + '\n');
          console.log(JSON.stringify(line));
        }
        if (interrupted) return 130;
      }
    }
  }
  console.log('\n' + summarize(lines, scenarios, SCENARIOS));
  return failures ? 1 : 0;
}

main().then((code) => {
  rmSync(RUN_ROOT, { recursive: true, force: true });
  process.exit(code);
}, (err) => {
  console.error(err);
  rmSync(RUN_ROOT, { recursive: true, force: true });
  process.exit(1);
});
