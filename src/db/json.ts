/**
 * JSON that PostgreSQL wrote from table values (`to_jsonb(row)`, `jsonb_build_object` of key
 * columns), read and written back without changing a value. JavaScript's JSON.parse reads every
 * number as a double, which holds 15 significant digits exactly: a bigint key past 2^53 (a
 * snowflake id) or a long numeric would come back as another value, and a key written back from
 * it would name another row. Such numbers are kept as their text (ExactNumber) and written back as
 * the same JSON number.
 */

/** A JSON number with more significant digits than a double holds exactly, as PostgreSQL wrote it. */
export class ExactNumber {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }
}

/** A JSON string or number token (strings whole, so digits inside them are never touched). */
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
/** Marks an ExactNumber inside a JSON string: PostgreSQL's jsonb and text never hold U+0000, so no value starts so. */
const MARK = '\u0000exact:';
const MARKED = /"\\u0000exact:(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"/g;

/** Would this number token read as another value: more significant digits than a double keeps, or outside its range? */
function tooPrecise(tok: string): boolean {
  const mantissa = tok.replace(/[eE].*$/, '').replace(/[-.]/g, '').replace(/^0+/, '');
  if (mantissa.length > 15) return true;
  const n = Math.abs(Number(tok));
  // A numeric below the smallest normal double reads as 0 or loses digits; beyond the largest, as Infinity.
  return !Number.isFinite(n) || (mantissa.length > 0 && n < 2.2250738585072014e-308);
}

/** JSON.parse, with numbers a double cannot hold exactly as ExactNumber. */
export function parseExactJson<T = unknown>(text: string): T {
  const marked = text.replace(TOKEN, (tok) => (tok.startsWith('"') || !tooPrecise(tok) ? tok : `"\\u0000exact:${tok}"`));
  return JSON.parse(marked, (_k, v: unknown) => (typeof v === 'string' && v.startsWith(MARK) ? new ExactNumber(v.slice(MARK.length)) : v)) as T;
}

/** JSON.stringify, writing every ExactNumber back as the number it was read from. */
export function stringifyExactJson(value: unknown, space?: number): string {
  return JSON.stringify(value, (_k, v: unknown) => (v instanceof ExactNumber ? MARK + v.text : v), space).replace(MARKED, '$1');
}
