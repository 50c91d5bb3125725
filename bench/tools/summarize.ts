/**
 * The summary table of any set of result files (e.g. a run's ibex and bucardo lines side by side):
 *   node --import tsx bench/tools/summarize.ts bench/results/copy.jsonl bench/results/ibex.jsonl bench/results/bucardo.jsonl
 * Lines of every invocation in the files are pooled; SINCE=ISO-time keeps only newer lines.
 */
import { readFileSync } from 'node:fs';
import { summarize } from '../lib/summary.js';
import type { Line } from '../lib/context.js';
import { limit } from '../scenarios/limit.js';
import { bulk } from '../scenarios/bulk.js';
import { stream } from '../scenarios/stream.js';
import { overhead } from '../scenarios/overhead.js';
import { conflict } from '../scenarios/conflict.js';
import { mesh } from '../scenarios/mesh.js';
import { scale } from '../scenarios/scale.js';

const scenarios = { limit, bulk, stream, overhead, conflict, mesh, scale };
const since = process.env.SINCE ?? '';
const lines: Line[] = process.argv.slice(2).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line))
  .filter((l) => String(l.ts) >= since);
console.log(summarize(lines, Object.keys(scenarios), scenarios));
