/**
 * Column-level merge of one conflicting key (pure: no I/O). Each db's version of the row comes
 * with what that db changed since the last run: the columns its updates touched (null when it
 * inserted or deleted the key, or the capture recorded no mask) and, for counter columns, the sum
 * of its differences (null when one of them was not a plain number change).
 *
 * Rules (docs/design.md "Merge and counter columns"):
 * - a row some db deleted or inserted in the window is not merged: the whole row follows the
 *   fallback winner (rank 1), exactly as without merge;
 * - a counter column whose every version has a difference becomes base + the sum of every db's
 *   difference, base being the winner's value less its own difference;
 * - under merge, every other column comes from the best-ranked db that changed it (only one db
 *   changed it: from that db; several: the fallback decides between them; none: the winner's);
 * - without merge (a table with counter columns under latest, a list, random), every other column
 *   comes from the winner.
 */

/** One db's version of a key. */
export interface MergeVersion {
  db: string;
  /** Column -> text; null when the key is deleted on this db. */
  row: Record<string, string | null> | null;
  /** Its rank under the fallback order (1 = the winner). */
  rank: number;
  /** Columns this db changed; null = the whole row (insert, delete, no mask). */
  changed: readonly string[] | null;
  /** Counter column -> the sum of this db's differences as decimal text; null = not additive. */
  sums: Record<string, string | null>;
}

/** What a merge decided. */
export type MergeOutcome =
  /** The whole row follows one db (deleted or inserted somewhere, or nothing to combine). */
  | { winner: string }
  /** A row built column by column, with the db each column came from ('sum': a counter). */
  | { row: Record<string, string | null>; columns: Record<string, string> };

/** Merge the versions of one key; `merge` false keeps every non-counter column from the winner. */
export function mergeKey(versions: readonly MergeVersion[], counters: readonly string[], merge: boolean): MergeOutcome {
  const ranked = [...versions].sort((a, b) => a.rank - b.rank);
  const winner = ranked[0]!;
  if (ranked.some((v) => v.row === null || v.changed === null)) return { winner: winner.db };
  const row: Record<string, string | null> = { ...winner.row! };
  const columns: Record<string, string> = {};
  for (const col of Object.keys(row)) {
    if (counters.includes(col)) {
      const sum = counterValue(ranked, col);
      if (sum !== undefined) {
        row[col] = sum;
        columns[col] = 'sum';
        continue;
      }
    }
    const from = merge ? (ranked.find((v) => v.changed!.includes(col)) ?? winner) : winner;
    row[col] = from.row![col] ?? null;
    columns[col] = from.db;
  }
  // The winner's row as it is: copied from the winner like any won row.
  if (Object.keys(row).every((c) => winner.row![c] === row[c])) return { winner: winner.db };
  return { row, columns };
}

/** base + Σ differences, base = the winner's value less its own difference; undefined when not additive. */
function counterValue(ranked: readonly MergeVersion[], col: string): string | undefined {
  const w = ranked[0]!;
  const cur = w.row![col];
  if (cur === null || cur === undefined) return undefined;
  let total = parseDecimal(cur);
  if (total === undefined) return undefined;
  for (const v of ranked) {
    const s = v.sums[col];
    const d = s === null || s === undefined ? undefined : parseDecimal(s);
    if (d === undefined) return undefined;
    if (v !== w) total = add(total, d);
  }
  return formatDecimal(total);
}

/** A decimal as an integer and a scale (digits after the point). */
interface Decimal { n: bigint; scale: number }

/** Exact decimal text (no exponent) as a Decimal; undefined for anything else (NaN, 1e+20). */
export function parseDecimal(text: string): Decimal | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (!m) return undefined;
  const frac = m[3] ?? '';
  const n = BigInt(`${m[2]}${frac}`);
  return { n: m[1] ? -n : n, scale: frac.length };
}

function add(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return { n: a.n * 10n ** BigInt(scale - a.scale) + b.n * 10n ** BigInt(scale - b.scale), scale };
}

/** A Decimal as text, in its own scale (PostgreSQL casts it to the column's type). */
export function formatDecimal(d: Decimal): string {
  const neg = d.n < 0n;
  const digits = (neg ? -d.n : d.n).toString().padStart(d.scale + 1, '0');
  const int = digits.slice(0, digits.length - d.scale);
  const frac = digits.slice(digits.length - d.scale);
  return `${neg ? '-' : ''}${int}${d.scale ? `.${frac}` : ''}`;
}
