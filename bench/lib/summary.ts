/**
 * The markdown summary of result lines: per scenario and variant, each
 * metric's median (min .. max) per system, and ibex/bucardo of the same rep.
 */
import { fmtSpread, pick, spread } from './stats.js';
import type { Line, Scenario } from './context.js';

/** Rows every scenario with a system gets, after its own metrics, so a CPU regression shows in every table. */
const CPU_METRICS: [string, string][] = [['cpu_daemon_s', 'daemon CPU s'], ['cpu_daemon_ms_per_change', 'daemon CPU ms / change']];

/** The markdown table: per scenario and variant, each metric's median (min .. max) per system, and ibex/bucardo of the same rep. */
export function summarize(lines: Line[], order: string[], scenarios: Record<string, Scenario>): string {
  const ok = lines.filter((l) => !l.error);
  const rows: string[] = [];
  const systems = [...new Set(ok.map((l) => String(l.system)))];
  const header = ['scenario', 'metric', ...systems.map((s) => `${s} median (min .. max)`)];
  const both = systems.includes('ibex') && systems.includes('bucardo');
  if (both) header.push('ibex / bucardo (per rep)');
  rows.push(`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`);
  for (const name of order) {
    const scen = scenarios[name];
    if (!scen) continue;
    const mine = ok.filter((l) => l.scenario === name);
    const variants = [...new Set(mine.map((l) => variantKey(l)))];
    for (const v of variants) {
      const group = mine.filter((l) => variantKey(l) === v);
      const metrics = [...scen.metrics, ...CPU_METRICS.filter(([k]) => !scen.metrics.some(([m]) => m === k))];
      for (const [key, label] of metrics) {
        const cells = systems.map((s) => fmtSpread(spread(group.filter((l) => l.system === s).map((l) => pick(l, key)))));
        if (cells.every((c) => c === '–')) continue;
        const row = [`${name}${v ? ` (${v})` : ''}`, label, ...cells];
        if (both) {
          const ratios: number[] = [];
          for (const a of group.filter((l) => l.system === 'ibex')) {
            const b = group.find((l) => l.system === 'bucardo' && l.rep === a.rep);
            const x = pick(a, key);
            const y = b ? pick(b, key) : null;
            if (x !== null && y !== null && y !== 0) ratios.push(x / y);
          }
          row.push(ratios.length ? fmtSpread(spread(ratios)) : '–');
        }
        rows.push(`| ${row.join(' | ')} |`);
      }
    }
  }
  const failed = lines.filter((l) => l.error);
  if (failed.length) rows.push('', `${failed.length} run(s) failed: ${failed.map((l) => `${l.scenario}/${l.system}/rep ${l.rep}`).join(', ')}`);
  return rows.join('\n');
}

function variantKey(l: Line): string {
  const parts: string[] = [];
  if (l.variant) parts.push(String(l.variant));
  if (l.scenario === 'bulk' || l.scenario === 'limit') parts.push(`${Number(l.rows).toLocaleString('en-US')} rows`);
  if (l.scenario === 'bulk' && l.topology) parts.push(l.topology === 'fanout' ? `fan-out A→${Number(l.nodes) - 1}` : `${l.nodes} masters`);
  return parts.join(', ');
}

