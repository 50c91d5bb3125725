/**
 * Statistics for the bench: percentiles, medians and spreads, and the
 * markdown summary of result lines.
 */

/** Quantile q (0..1) of sorted values, linear interpolation (R type 7). */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (pos - lo);
}

/** The median of some values (unsorted), null when empty. */
export function median(values: readonly number[]): number | null {
  return quantile([...values].sort((x, y) => x - y), 0.5);
}

/** Lag distribution of a set of per-change lags, in seconds. */
export interface LagStats {
  n: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  min: number | null;
  mean: number | null;
}

export function lagStats(values: readonly number[]): LagStats {
  const s = [...values].sort((x, y) => x - y);
  return {
    n: s.length,
    p50: round(quantile(s, 0.5)),
    p95: round(quantile(s, 0.95)),
    p99: round(quantile(s, 0.99)),
    max: round(s.length ? s[s.length - 1]! : null),
    min: round(s.length ? s[0]! : null),
    mean: round(s.length ? s.reduce((a, b) => a + b, 0) / s.length : null),
  };
}

/** Round to `digits` decimals (null stays null). */
export function round(v: number | null | undefined, digits = 4): number | null {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** median (min .. max) of a metric over result lines. */
export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function spread(values: readonly (number | null | undefined)[]): Spread | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  return { n: v.length, median: median(v)!, min: Math.min(...v), max: Math.max(...v) };
}

/** A number for a table cell: thousands separators for big values, 3 significant-ish decimals for small ones. */
export function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

export function fmtSpread(s: Spread | null): string {
  if (!s) return '–';
  if (s.n === 1) return fmt(s.median);
  return `${fmt(s.median)} (${fmt(s.min)} .. ${fmt(s.max)})`;
}

/** Read a dotted path (`lag.p50`) out of a result line. */
export function pick(line: Record<string, unknown>, path: string): number | null {
  let cur: unknown = line;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return null;
    cur = (cur as Record<string, unknown>)[part];
  }
  return typeof cur === 'number' && Number.isFinite(cur) ? cur : null;
}
