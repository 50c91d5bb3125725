/**
 * The one value codec every non-PostgreSQL target shares (DESIGN, "Targets of other kinds").
 *
 * Rows reach targets as PostgreSQL's text output of each column under ibex's pinned session
 * settings (DateStyle ISO, TimeZone UTC, IntervalStyle postgres, extra_float_digits 3, bytea hex).
 * `decode` turns one such text into a typed value, keyed by the column's `format_type()` text;
 * `canonicalText` gives the one text a target's read-back must reproduce for `validate`, so the
 * source's row and the target's row compare equal exactly when the data is equal.
 *
 * Pure: no driver, no I/O. Malformed input throws CodecError (the source never sends it; a
 * target's read-back might).
 */

/** How a column's values are decoded; everything ibex does not know is `text`. */
export type TypeClass =
  | 'int'
  | 'decimal'
  | 'float'
  | 'bool'
  | 'bytes'
  | 'json'
  | 'timestamptz'
  | 'timestamp'
  | 'date'
  | 'time'
  | 'interval'
  | 'uuid'
  | 'text'
  | 'array';

/** A PostgreSQL column type as the codec understands it. */
export interface PgType {
  cls: TypeClass;
  /** The base type's name, lower case, without modifiers or `[]` (`numeric`, `character varying`, `public.mood`). */
  base: string;
  /** numeric(p,s) precision; varchar/char length; timestamp/time fractional precision. */
  precision?: number | undefined;
  /** numeric(p,s) scale. */
  scale?: number | undefined;
  /** `int`: the byte width (2, 4, 8); `float`: 4 or 8. */
  width?: number | undefined;
  /** character(n): values are blank-padded by PostgreSQL, and trailing blanks carry no meaning. */
  padded?: boolean | undefined;
  /** json (text kept as sent) vs jsonb (normalized by PostgreSQL). */
  binaryJson?: boolean | undefined;
  /** For arrays: the element type. */
  element?: PgType | undefined;
}

/** A value the codec could not parse as its column's type. */
export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

/** Calendar parts of a date or timestamp; `year` is astronomical (1 BC is 0, 2 BC is -1). */
export interface DateParts {
  year: number;
  month: number;
  day: number;
}

/** Clock parts of a time or timestamp; `micro` is 0..999999; `hour` may be 24 only in `time` ('24:00:00'). */
export interface TimeParts {
  hour: number;
  minute: number;
  second: number;
  micro: number;
}

/** A JSON-able value (what arrays decode to). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** One element of a parsed PostgreSQL array literal: its text, NULL, or a nested array. */
export type ArrayItem = string | null | ArrayItem[];

/** A decoded (non-NULL) value. */
export type Value =
  | { kind: 'int'; value: bigint }
  /** Exact decimal in canonical form (see `canonicalNumeric`), or a special value PostgreSQL's numeric allows. */
  | { kind: 'decimal'; value: string; special: 'NaN' | 'Infinity' | '-Infinity' | null }
  | { kind: 'float'; value: number; special: 'NaN' | 'Infinity' | '-Infinity' | null; width: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'bytes'; value: Buffer }
  /** `value` is JSON.parse of the text (numbers beyond 2^53 lose digits there); `text` is canonical and exact. */
  | { kind: 'json'; value: unknown; text: string }
  /** `micros` since 1970-01-01 UTC; `iso` is `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `special` for ±infinity (then micros/iso are not meaningful). */
  | { kind: 'timestamptz'; micros: bigint; iso: string; parts: DateParts & TimeParts; special: 'infinity' | '-infinity' | null }
  | { kind: 'timestamp'; parts: DateParts & TimeParts; iso: string; special: 'infinity' | '-infinity' | null }
  | { kind: 'date'; parts: DateParts; iso: string; special: 'infinity' | '-infinity' | null }
  /** `time with time zone` keeps its offset in `offset` (e.g. '+02'); plain time has none. */
  | { kind: 'time'; parts: TimeParts; iso: string; offset: string | null }
  /** `iso` is ISO 8601 as PostgreSQL's iso_8601 IntervalStyle writes it ('P1Y2M3DT4H5M6.5S'). */
  | { kind: 'interval'; months: number; days: number; micros: bigint; iso: string }
  | { kind: 'uuid'; value: string }
  | { kind: 'text'; value: string }
  /** `items`: the literal parsed (element texts, NULLs, nesting); `json`: canonical JSON text of the decoded elements. */
  | { kind: 'array'; items: ArrayItem[]; value: JsonValue[]; json: string };

const INT_TYPES: Record<string, number> = {
  smallint: 2, int2: 2, integer: 4, int: 4, int4: 4, bigint: 8, int8: 8,
  smallserial: 2, serial: 4, bigserial: 8,
};

/** Parse a `format_type()` text into what the codec needs. Unknown types (domains, enums, ranges …) are text. */
export function parseType(typeText: string): PgType {
  const t = typeText.trim().toLowerCase();
  if (t.endsWith('[]')) {
    let inner = t;
    while (inner.endsWith('[]')) inner = inner.slice(0, -2).trimEnd();
    return { cls: 'array', base: inner, element: parseType(inner) };
  }
  const m = /^([a-z_ ."0-9]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\))?(\s+with(?:out)? time zone)?$/.exec(t);
  const name = m ? (m[1] ?? t) + (m[4] ?? '') : t;
  const p = m?.[2] === undefined ? undefined : Number(m[2]);
  const s = m?.[3] === undefined ? undefined : Number(m[3]);
  const width = INT_TYPES[name];
  if (width !== undefined) return { cls: 'int', base: name, width };
  switch (name) {
    case 'numeric':
    case 'decimal':
      return { cls: 'decimal', base: 'numeric', precision: p, scale: p === undefined ? undefined : (s ?? 0) };
    case 'real':
    case 'float4':
      return { cls: 'float', base: 'real', width: 4 };
    case 'double precision':
    case 'float8':
      return { cls: 'float', base: 'double precision', width: 8 };
    case 'boolean':
    case 'bool':
      return { cls: 'bool', base: 'boolean' };
    case 'bytea':
      return { cls: 'bytes', base: 'bytea' };
    case 'json':
      return { cls: 'json', base: 'json', binaryJson: false };
    case 'jsonb':
      return { cls: 'json', base: 'jsonb', binaryJson: true };
    case 'uuid':
      return { cls: 'uuid', base: 'uuid' };
    case 'date':
      return { cls: 'date', base: 'date' };
    case 'timestamp with time zone':
    case 'timestamptz':
      return { cls: 'timestamptz', base: 'timestamp with time zone', precision: p };
    case 'timestamp':
    case 'timestamp without time zone':
      return { cls: 'timestamp', base: 'timestamp without time zone', precision: p };
    case 'time':
    case 'time without time zone':
      return { cls: 'time', base: 'time without time zone', precision: p };
    case 'time with time zone':
    case 'timetz':
      return { cls: 'time', base: 'time with time zone', precision: p };
    case 'interval':
      return { cls: 'interval', base: 'interval' };
    case 'character varying':
    case 'varchar':
      return { cls: 'text', base: 'character varying', precision: p };
    case 'character':
    case 'char':
    case 'bpchar':
      return { cls: 'text', base: 'character', precision: p ?? 1, padded: true };
    default:
      return { cls: 'text', base: name };
  }
}

const typeCache = new Map<string, PgType>();
function typeOf(typeText: string): PgType {
  let t = typeCache.get(typeText);
  if (t === undefined) {
    t = parseType(typeText);
    typeCache.set(typeText, t);
  }
  return t;
}

// ---------------------------------------------------------------- numbers

/** The parts of an exact decimal: sign, integer digits without leading zeros, fraction digits without trailing zeros. */
export interface DecimalParts {
  negative: boolean;
  int: string;
  frac: string;
}

/** Split a plain decimal text (no exponent) into normalized parts; throws CodecError if it is not one. */
export function decimalParts(text: string): DecimalParts {
  const m = /^\s*([+-])?(\d*)(?:\.(\d*))?\s*$/.exec(text);
  if (m === null || ((m[2] ?? '') === '' && (m[3] ?? '') === '')) throw new CodecError(`not a decimal number: ${JSON.stringify(clip(text))}`);
  const int = (m[2] ?? '').replace(/^0+/, '');
  const frac = (m[3] ?? '').replace(/0+$/, '');
  const negative = m[1] === '-' && (int !== '' || frac !== '');
  return { negative, int, frac };
}

/**
 * The canonical text of a numeric: no leading zeros, no trailing fraction zeros, no '.' when
 * integral, '0' for zero ('1.50' → '1.5', '-0.0' → '0'); 'NaN', 'Infinity', '-Infinity' kept.
 * Scale is not kept: a target's DECIMAL(p,s) pads with zeros, so equality is by value.
 */
export function canonicalNumeric(text: string): string {
  const special = numericSpecial(text);
  if (special !== null) return special;
  const p = decimalParts(text);
  const body = (p.int === '' ? '0' : p.int) + (p.frac === '' ? '' : '.' + p.frac);
  return (p.negative ? '-' : '') + body;
}

function numericSpecial(text: string): 'NaN' | 'Infinity' | '-Infinity' | null {
  const t = text.trim().toLowerCase();
  if (t === 'nan') return 'NaN';
  if (t === 'infinity' || t === '+infinity' || t === 'inf') return 'Infinity';
  if (t === '-infinity' || t === '-inf') return '-Infinity';
  return null;
}

/** The canonical text of a float: the shortest text that reads back as the same value at the column's width. */
export function canonicalFloat(text: string, width = 8): string {
  const v = floatValue(text);
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (Object.is(v, -0)) return '-0';
  if (width === 4) {
    const f = Math.fround(v);
    for (let digits = 1; digits <= 9; digits++) {
      const s = String(Number(f.toPrecision(digits)));
      if (Math.fround(Number(s)) === f) return s;
    }
    return String(f);
  }
  return String(v);
}

function floatValue(text: string): number {
  const t = text.trim();
  const special = numericSpecial(t);
  if (special === 'NaN') return NaN;
  if (special === 'Infinity') return Infinity;
  if (special === '-Infinity') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) throw new CodecError(`not a floating-point number: ${JSON.stringify(clip(text))}`);
  return Number(t);
}

function intValue(text: string): bigint {
  const t = text.trim();
  if (!/^[+-]?\d+$/.test(t)) throw new CodecError(`not an integer: ${JSON.stringify(clip(text))}`);
  return BigInt(t);
}

// ---------------------------------------------------------------- booleans, bytes, uuid

function boolValue(text: string): boolean {
  switch (text.trim().toLowerCase()) {
    case 't': case 'true': case '1': case 'y': case 'yes': case 'on':
      return true;
    case 'f': case 'false': case '0': case 'n': case 'no': case 'off':
      return false;
    default:
      throw new CodecError(`not a boolean: ${JSON.stringify(clip(text))}`);
  }
}

/** bytea's hex output (`\x0a1b…`) to bytes. The legacy escape format is refused: ibex pins bytea_output hex. */
export function byteaValue(text: string): Buffer {
  if (!text.startsWith('\\x')) throw new CodecError(`bytea is not in hex format (\\x…): ${JSON.stringify(clip(text))}; ibex sets bytea_output=hex`);
  const hex = text.slice(2);
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new CodecError(`bytea hex is malformed: ${JSON.stringify(clip(text))}`);
  return Buffer.from(hex, 'hex');
}

/** Bytes to the canonical text: bytea hex, lower case. */
export function byteaText(bytes: Uint8Array): string {
  return '\\x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function uuidValue(text: string): string {
  const t = text.trim().toLowerCase().replace(/[{}-]/g, '');
  if (!/^[0-9a-f]{32}$/.test(t)) throw new CodecError(`not a uuid: ${JSON.stringify(clip(text))}`);
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-${t.slice(12, 16)}-${t.slice(16, 20)}-${t.slice(20)}`;
}

// ---------------------------------------------------------------- dates and times

const MICROS_PER_DAY = 86_400_000_000n;

/** Days from 1970-01-01 to a proleptic Gregorian date (astronomical year). */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The date `days` after 1970-01-01 (astronomical year). */
export function civilFromDays(days: number): DateParts {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** ISO 8601 year: four digits for 0..9999, else a sign and at least four digits (year 0 is 1 BC). */
function isoYear(y: number): string {
  if (y >= 0 && y <= 9999) return pad(y, 4);
  return (y < 0 ? '-' : '+') + pad(Math.abs(y), 4);
}

/** `YYYY-MM-DD` (ISO 8601, extended years signed). */
export function isoDate(p: DateParts): string {
  return `${isoYear(p.year)}-${pad(p.month, 2)}-${pad(p.day, 2)}`;
}

/** `HH:MM:SS.ffffff`, always six fraction digits. */
export function isoTime(p: TimeParts): string {
  return `${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}.${pad(p.micro, 6)}`;
}

function fracMicros(frac: string | undefined): number {
  if (frac === undefined || frac === '') return 0;
  if (frac.length > 6) throw new CodecError(`more than microsecond precision: .${frac}`);
  return Number(frac.padEnd(6, '0'));
}

const DATE_RE = /^([+-])?(\d{4,})-(\d{2})-(\d{2})/;
const TIME_RE = /(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?/;

function parseDateText(text: string): { parts: DateParts; rest: string } {
  let t = text.trim();
  let bc = false;
  if (/ BC$/i.test(t)) {
    bc = true;
    t = t.slice(0, -3);
  }
  const m = DATE_RE.exec(t);
  if (m === null) throw new CodecError(`not an ISO date: ${JSON.stringify(clip(text))}`);
  const year = Number(m[2]) * (m[1] === '-' ? -1 : 1);
  if (bc && m[1] !== undefined) throw new CodecError(`a signed year cannot also be BC: ${JSON.stringify(clip(text))}`);
  const parts = { year: bc ? 1 - year : year, month: Number(m[3]), day: Number(m[4]) };
  checkDate(parts, text);
  return { parts, rest: t.slice(m[0].length) };
}

function checkDate(p: DateParts, text: string): void {
  if (p.month < 1 || p.month > 12 || p.day < 1 || p.day > 31) throw new CodecError(`not a valid date: ${JSON.stringify(clip(text))}`);
  const back = civilFromDays(daysFromCivil(p.year, p.month, p.day));
  if (back.month !== p.month || back.day !== p.day) throw new CodecError(`not a valid date: ${JSON.stringify(clip(text))}`);
}

const CLOCK_RE = new RegExp('^' + TIME_RE.source);

function parseClock(text: string, whole: string, allow24: boolean): { parts: TimeParts; rest: string } {
  const m = CLOCK_RE.exec(text);
  if (m === null) throw new CodecError(`not an ISO time: ${JSON.stringify(clip(whole))}`);
  const parts = { hour: Number(m[1]), minute: Number(m[2]), second: Number(m[3]), micro: fracMicros(m[4]) };
  const over = parts.hour > 24 || (parts.hour === 24 && (!allow24 || parts.minute + parts.second + parts.micro > 0));
  if (over || parts.minute > 59 || parts.second > 60) throw new CodecError(`not a valid time: ${JSON.stringify(clip(whole))}`);
  return { parts, rest: text.slice(m[0].length) };
}

/** An offset like '+00', '-05:30', '+05:30:15' to seconds east of UTC. */
function offsetSeconds(text: string, whole: string): number {
  const m = /^([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$/.exec(text);
  if (m === null) throw new CodecError(`not a time zone offset in ${JSON.stringify(clip(whole))}`);
  const s = Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  return m[1] === '-' ? -s : s;
}

function specialTime(text: string): 'infinity' | '-infinity' | null {
  const t = text.trim().toLowerCase();
  if (t === 'infinity' || t === '+infinity') return 'infinity';
  if (t === '-infinity') return '-infinity';
  return null;
}

const ZERO_PARTS = { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0, micro: 0 };

/**
 * What PostgreSQL prints for a timestamptz under ibex's pinned session (DateStyle ISO, TimeZone
 * UTC), years 1000-9999: `YYYY-MM-DD HH:MM:SS[.f…]+00`. Its parts are the value's UTC parts as
 * they stand, so no epoch arithmetic is needed to split them (the general path below does it).
 * Scanned by character code, without a regular expression's captures: this is the one form a
 * target meets per row, and the scan fills `UTC_FIELDS` (year, month, day, hour, minute, second,
 * micro) instead of allocating.
 */
const UTC_FIELDS = new Int32Array(7);
/** Days from 1970 whose microseconds a double holds exactly (years 1685 to 2255). */
const SAFE_DAYS = Math.floor(Number.MAX_SAFE_INTEGER / 86_400_000_000) - 1;

/** The value of `n` ASCII digits of `s` from `at`, or -1 if one is not a digit. */
function digitsAt(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * Fill UTC_FIELDS from a timestamptz in the pinned session's form; false when the text is not in
 * that form or a field is out of range (24:00:00, a leap second, Feb 30 go the general way, which
 * refuses or normalizes them).
 */
function scanUtcTimestamptz(s: string): boolean {
  const len = s.length;
  if (len < 22 || len > 29 || s.charCodeAt(len - 3) !== 43 /* + */ || s.charCodeAt(len - 2) !== 48 || s.charCodeAt(len - 1) !== 48) return false;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 32 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return false;
  const f = UTC_FIELDS;
  f[0] = digitsAt(s, 0, 4);
  f[1] = digitsAt(s, 5, 2);
  f[2] = digitsAt(s, 8, 2);
  f[3] = digitsAt(s, 11, 2);
  f[4] = digitsAt(s, 14, 2);
  f[5] = digitsAt(s, 17, 2);
  let micro = 0;
  const fracLen = len - 23;
  if (fracLen > 0) {
    if (s.charCodeAt(19) !== 46 /* . */ || fracLen > 6) return false;
    micro = digitsAt(s, 20, fracLen);
    if (micro < 0) return false;
    for (let i = fracLen; i < 6; i++) micro *= 10;
  } else if (fracLen === 0) {
    return false; // a '.' with no digits
  }
  f[6] = micro;
  const year = f[0]!;
  const month = f[1]!;
  const day = f[2]!;
  if (year < 0 || month < 1 || month > 12 || day < 1 || f[3]! < 0 || f[3]! > 23 || f[4]! < 0 || f[4]! > 59 || f[5]! < 0 || f[5]! > 59) return false;
  return day <= 28 || civilFromDays(daysFromCivil(year, month, day)).day === day;
}

function decodeUtcTimestamptz(text: string): Extract<Value, { kind: 'timestamptz' }> | null {
  if (!scanUtcTimestamptz(text)) return null;
  const f = UTC_FIELDS;
  const parts = { year: f[0]!, month: f[1]!, day: f[2]!, hour: f[3]!, minute: f[4]!, second: f[5]!, micro: f[6]! };
  const days = daysFromCivil(parts.year, parts.month, parts.day);
  const secOfDay = parts.hour * 3600 + parts.minute * 60 + parts.second;
  const micros = Math.abs(days) <= SAFE_DAYS
    ? BigInt(days * 86_400_000_000 + secOfDay * 1_000_000 + parts.micro)
    : BigInt(days) * MICROS_PER_DAY + BigInt(secOfDay * 1_000_000 + parts.micro);
  return { kind: 'timestamptz', micros, iso: utcIso(text), parts, special: null };
}

/** The ISO text of a timestamptz UTC_FIELDS was just filled from (the same digits, six fraction digits). */
function utcIso(text: string): string {
  return text.slice(0, 10) + 'T' + text.slice(11, 19) + '.' + pad(UTC_FIELDS[6]!, 6) + 'Z';
}

/**
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a timestamptz in the pinned session's form (the `iso` that
 * `decode` gives), or null for any other text (then decode it). Allocates only the result.
 */
export function utcTimestamptzIso(text: string): string | null {
  return scanUtcTimestamptz(text) ? utcIso(text) : null;
}

/**
 * The text itself when it is an integer as PostgreSQL prints one (an optional '-', no leading
 * zeros, '0' unsigned), which is its canonical text; null for any other text (then decode it).
 */
export function canonicalIntText(text: string): string | null {
  const len = text.length;
  const start = text.charCodeAt(0) === 45 /* - */ ? 1 : 0;
  if (len === start) return null;
  const first = text.charCodeAt(start);
  if (first === 48 /* 0 */) return len === 1 ? text : null;
  for (let i = start; i < len; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return null;
  }
  return text;
}

/**
 * `canonicalNumeric` of a plain decimal text (an optional '-', digits, an optional '.' and
 * digits; at least one digit), scanned without regular expressions; null for any other text
 * (signs '+', blanks, specials, exponents: then call canonicalNumeric).
 */
export function plainNumericCanonical(text: string): string | null {
  const len = text.length;
  const neg = text.charCodeAt(0) === 45;
  let i = neg ? 1 : 0;
  const intStart = i;
  while (i < len && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  const intEnd = i;
  let fracEnd = i;
  if (i < len) {
    if (text.charCodeAt(i) !== 46) return null;
    i++;
    while (i < len && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    if (i !== len) return null;
    fracEnd = len;
    if (intEnd === intStart && fracEnd === intEnd + 1) return null; // '.' alone
  } else if (intEnd === intStart) {
    return null;
  }
  let a = intStart;
  while (a < intEnd && text.charCodeAt(a) === 48) a++;
  const fracStart = intEnd + 1;
  let b = fracEnd;
  while (b > fracStart && text.charCodeAt(b - 1) === 48) b--;
  const hasFrac = b > fracStart;
  if (a === intEnd && !hasFrac) return '0';
  // Already canonical (the common case of an integral numeric): no new string.
  const intCanonical = a === intStart ? a < intEnd : hasFrac && intEnd - intStart === 1;
  if (intCanonical && (hasFrac ? b === len : intEnd === len)) return text;
  return (neg ? '-' : '') + (a === intEnd ? '0' : text.slice(a, intEnd)) + (hasFrac ? '.' + text.slice(fracStart, b) : '');
}

function decodeTimestamptz(text: string): Extract<Value, { kind: 'timestamptz' }> {
  const fast = decodeUtcTimestamptz(text);
  if (fast !== null) return fast;
  const special = specialTime(text);
  if (special !== null) return { kind: 'timestamptz', micros: 0n, iso: special, parts: ZERO_PARTS, special };
  const d = parseDateText(text);
  const rest = d.rest.replace(/^[ T]/, '');
  const c = parseClock(rest, text, false);
  const off = c.rest.trim() === '' || c.rest.trim().toUpperCase() === 'Z' ? 0 : offsetSeconds(c.rest.trim(), text);
  const secs = BigInt(daysFromCivil(d.parts.year, d.parts.month, d.parts.day)) * 86400n
    + BigInt(c.parts.hour * 3600 + c.parts.minute * 60 + c.parts.second - off);
  const micros = secs * 1_000_000n + BigInt(c.parts.micro);
  const parts = partsFromMicros(micros);
  return { kind: 'timestamptz', micros, iso: `${isoDate(parts)}T${isoTime(parts)}Z`, parts, special: null };
}

/** Epoch microseconds that a double holds exactly (years 1685 to 2255): split without BigInt division, which is slow. */
const SAFE_MICROS = BigInt(Number.MAX_SAFE_INTEGER);
const DAY_MICROS = 86_400_000_000;

function partsFromMicros(micros: bigint): DateParts & TimeParts {
  let dayNumber: number;
  let r: number;
  if (micros <= SAFE_MICROS && micros >= -SAFE_MICROS) {
    const m = Number(micros);
    dayNumber = Math.floor(m / DAY_MICROS);
    r = m - dayNumber * DAY_MICROS;
    // The quotient was rounded: put the remainder back in [0, one day).
    if (r < 0) {
      r += DAY_MICROS;
      dayNumber -= 1;
    } else if (r >= DAY_MICROS) {
      r -= DAY_MICROS;
      dayNumber += 1;
    }
  } else {
    let days = micros / MICROS_PER_DAY;
    let rem = micros % MICROS_PER_DAY;
    if (rem < 0n) {
      rem += MICROS_PER_DAY;
      days -= 1n;
    }
    dayNumber = Number(days);
    r = Number(rem);
  }
  const date = civilFromDays(dayNumber);
  const secs = Math.floor(r / 1_000_000);
  return { ...date, hour: Math.floor(secs / 3600), minute: Math.floor((secs % 3600) / 60), second: secs % 60, micro: r % 1_000_000 };
}

/** Epoch microseconds to `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function isoFromMicros(micros: bigint): string {
  const p = partsFromMicros(micros);
  return `${isoDate(p)}T${isoTime(p)}Z`;
}

function decodeTimestamp(text: string): Extract<Value, { kind: 'timestamp' }> {
  const special = specialTime(text);
  if (special !== null) return { kind: 'timestamp', parts: ZERO_PARTS, iso: special, special };
  const d = parseDateText(text);
  const c = parseClock(d.rest.replace(/^[ T]/, ''), text, false);
  if (c.rest.trim() !== '') throw new CodecError(`timestamp without time zone has trailing text: ${JSON.stringify(clip(text))}`);
  const parts = { ...d.parts, ...c.parts };
  return { kind: 'timestamp', parts, iso: `${isoDate(parts)}T${isoTime(parts)}`, special: null };
}

function decodeDate(text: string): Extract<Value, { kind: 'date' }> {
  const special = specialTime(text);
  if (special !== null) return { kind: 'date', parts: ZERO_PARTS, iso: special, special };
  const d = parseDateText(text);
  if (d.rest.trim() !== '') throw new CodecError(`date has trailing text: ${JSON.stringify(clip(text))}`);
  return { kind: 'date', parts: d.parts, iso: isoDate(d.parts), special: null };
}

function decodeTime(text: string, withZone: boolean): Extract<Value, { kind: 'time' }> {
  const c = parseClock(text.trim(), text, true);
  const rest = c.rest.trim();
  let offset: string | null = null;
  if (withZone) {
    const s = offsetSeconds(rest === '' ? '+00' : rest, text);
    const a = Math.abs(s);
    offset = (s < 0 ? '-' : '+') + pad(Math.floor(a / 3600), 2) + ':' + pad(Math.floor((a % 3600) / 60), 2) + (a % 60 ? ':' + pad(a % 60, 2) : '');
  } else if (rest !== '') {
    throw new CodecError(`time without time zone has trailing text: ${JSON.stringify(clip(text))}`);
  }
  return { kind: 'time', parts: c.parts, iso: isoTime(c.parts) + (offset ?? ''), offset };
}

// ---------------------------------------------------------------- intervals

/**
 * An interval in IntervalStyle postgres ('1 year 2 mons -3 days +04:05:06.5', '00:00:00') or in
 * ISO 8601 ('P1Y2M-3DT4H5M6.5S', as a target stores it) to its three fields.
 */
export function intervalFields(text: string): { months: number; days: number; micros: bigint } {
  const t = text.trim();
  if (/^-?P/i.test(t)) return isoIntervalFields(t);
  let months = 0;
  let days = 0;
  let micros = 0n;
  let rest = t;
  const unit = /^([+-]?\d+) (years?|mons?|days?)\s*/;
  for (let m = unit.exec(rest); m !== null; m = unit.exec(rest)) {
    const n = Number(m[1]);
    const u = m[2] ?? '';
    if (u.startsWith('year')) months += n * 12;
    else if (u.startsWith('mon')) months += n;
    else days += n;
    rest = rest.slice(m[0].length);
  }
  if (rest !== '') {
    const m = /^([+-])?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/.exec(rest);
    if (m === null) throw new CodecError(`not an interval: ${JSON.stringify(clip(text))}`);
    const v = (BigInt(m[2] ?? '0') * 3600n + BigInt(Number(m[3]) * 60 + Number(m[4]))) * 1_000_000n + BigInt(fracMicros(m[5]));
    micros = m[1] === '-' ? -v : v;
  } else if (t === '') {
    throw new CodecError('not an interval: ""');
  }
  return { months, days, micros };
}

function isoIntervalFields(t: string): { months: number; days: number; micros: bigint } {
  const m = /^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)W)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+)(?:\.(\d{1,6}))?S)?)?$/i.exec(t);
  if (m === null || t.toUpperCase() === 'P' || t.toUpperCase().endsWith('T')) throw new CodecError(`not an ISO 8601 interval: ${JSON.stringify(clip(t))}`);
  const num = (s: string | undefined): number => (s === undefined ? 0 : Number(s));
  const secText = m[7];
  let secMicros = BigInt(num(secText)) * 1_000_000n;
  if (m[8] !== undefined) {
    const f = BigInt(fracMicros(m[8]));
    secMicros += secText !== undefined && secText.startsWith('-') ? -f : f;
  }
  return {
    months: num(m[1]) * 12 + num(m[2]),
    days: num(m[3]) * 7 + num(m[4]),
    micros: (BigInt(num(m[5])) * 3600n + BigInt(num(m[6])) * 60n) * 1_000_000n + secMicros,
  };
}

/** An interval's fields as ISO 8601 the way PostgreSQL's iso_8601 IntervalStyle writes it ('PT0S' for zero). */
export function isoInterval(f: { months: number; days: number; micros: bigint }): string {
  const y = Math.trunc(f.months / 12);
  const mo = f.months % 12;
  let out = 'P';
  if (y !== 0) out += `${y}Y`;
  if (mo !== 0) out += `${mo}M`;
  if (f.days !== 0) out += `${f.days}D`;
  if (f.micros !== 0n) {
    const neg = f.micros < 0n;
    const a = neg ? -f.micros : f.micros;
    const sign = neg ? '-' : '';
    const h = a / 3_600_000_000n;
    const mi = (a % 3_600_000_000n) / 60_000_000n;
    const s = (a % 60_000_000n) / 1_000_000n;
    const us = a % 1_000_000n;
    out += 'T';
    if (h !== 0n) out += `${sign}${h}H`;
    if (mi !== 0n) out += `${sign}${mi}M`;
    if (s !== 0n || us !== 0n) out += `${sign}${s}${us === 0n ? '' : '.' + String(us).padStart(6, '0').replace(/0+$/, '')}S`;
  }
  return out === 'P' ? 'PT0S' : out;
}

// ---------------------------------------------------------------- JSON

/**
 * Canonical JSON text: no whitespace, object keys sorted by UTF-16 code units (the last of
 * duplicate keys wins, as jsonb keeps it), numbers as canonical numerics (exact, no float round
 * trip), strings re-escaped minimally. Equal for json and jsonb texts of the same value, and for
 * any target's re-formatting of it.
 */
export function canonicalJson(text: string): string {
  const p = new JsonReader(text);
  const out = p.value();
  p.ws();
  if (p.i !== text.length) throw new CodecError(`JSON has trailing text at ${p.i}: ${JSON.stringify(clip(text))}`);
  return out;
}

class JsonReader {
  i = 0;
  constructor(private readonly s: string) {}
  ws(): void {
    while (this.i < this.s.length && ' \t\n\r'.includes(this.s[this.i] as string)) this.i++;
  }
  fail(what: string): never {
    throw new CodecError(`malformed JSON (${what} at ${this.i}): ${JSON.stringify(clip(this.s))}`);
  }
  value(): string {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') {
      this.i++;
      const entries = new Map<string, string>();
      this.ws();
      if (this.s[this.i] === '}') {
        this.i++;
        return '{}';
      }
      for (;;) {
        this.ws();
        if (this.s[this.i] !== '"') this.fail('expected a key');
        const key = this.string();
        this.ws();
        if (this.s[this.i] !== ':') this.fail("expected ':'");
        this.i++;
        entries.delete(key);
        entries.set(key, this.value());
        this.ws();
        if (this.s[this.i] === ',') {
          this.i++;
          continue;
        }
        if (this.s[this.i] === '}') {
          this.i++;
          break;
        }
        this.fail("expected ',' or '}'");
      }
      const keys = [...entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + (entries.get(k) as string)).join(',') + '}';
    }
    if (c === '[') {
      this.i++;
      const items: string[] = [];
      this.ws();
      if (this.s[this.i] === ']') {
        this.i++;
        return '[]';
      }
      for (;;) {
        items.push(this.value());
        this.ws();
        if (this.s[this.i] === ',') {
          this.i++;
          continue;
        }
        if (this.s[this.i] === ']') {
          this.i++;
          break;
        }
        this.fail("expected ',' or ']'");
      }
      return '[' + items.join(',') + ']';
    }
    if (c === '"') return JSON.stringify(this.string());
    for (const lit of ['true', 'false', 'null']) {
      if (this.s.startsWith(lit, this.i)) {
        this.i += lit.length;
        return lit;
      }
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 4096));
    if (m === null) this.fail('unexpected character');
    this.i += m[0].length;
    return jsonNumber(m[0]);
  }
  string(): string {
    const start = this.i;
    this.i++;
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined) this.fail('unterminated string');
      if (c === '\\') this.i += 2;
      else if (c === '"') break;
      else this.i++;
    }
    this.i++;
    try {
      return JSON.parse(this.s.slice(start, this.i)) as string;
    } catch {
      return this.fail('bad string escape');
    }
  }
}

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

/**
 * The first number of a JSON text that a double does not hold exactly (it reads back as another
 * number, or overflows), or undefined when every number survives the trip: what JSON.parse, a
 * BSON double and MySQL's JSON type do to them. With `int64`, an integer written without fraction
 * or exponent that fits 64 bits, signed or unsigned, counts as exact: MySQL's JSON type keeps
 * those as integers. Numbers inside strings are not numbers.
 */
export function jsonNumberLostAsDouble(json: string, opts: { int64?: boolean } = {}): string | undefined {
  for (const [tok] of json.matchAll(/"(?:[^"\\]|\\.)*"|[^\s"{}[\],:]+/g)) {
    if (tok.startsWith('"') || tok === 'true' || tok === 'false' || tok === 'null') continue;
    if (opts.int64 === true && /^-?\d+$/.test(tok)) {
      const n = BigInt(tok);
      if (n >= INT64_MIN && n <= UINT64_MAX) continue;
    }
    const d = Number(tok);
    if (!Number.isFinite(d) || jsonNumber(String(d)) !== jsonNumber(tok)) return tok;
  }
  return undefined;
}

/** A JSON number token to canonical exact decimal text (exponents expanded: 1E2 → 100). */
function jsonNumber(tok: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(tok);
  if (m === null) throw new CodecError(`bad JSON number ${tok}`);
  const exp = Number(m[4] ?? 0);
  if (Math.abs(exp) > 400) return canonicalFloat(tok);
  const digits = (m[2] ?? '') + (m[3] ?? '');
  const point = (m[2] ?? '').length + exp;
  let plain: string;
  if (point <= 0) plain = '0.' + '0'.repeat(-point) + digits;
  else if (point >= digits.length) plain = digits + '0'.repeat(point - digits.length);
  else plain = digits.slice(0, point) + '.' + digits.slice(point);
  return canonicalNumeric((m[1] ?? '') + plain);
}

// ---------------------------------------------------------------- arrays

/**
 * Parse a PostgreSQL array literal ('{1,2,NULL}', '{{"a b","c\\"d"},{e,NULL}}', '[0:1]={1,2}')
 * into nested items: element text, null for an unquoted NULL, or a nested array. Bounds
 * decorations are dropped (JSON arrays start at 0). Only ',' is a delimiter (box[] uses ';').
 */
export function parseArrayLiteral(text: string): ArrayItem[] {
  let s = text.trim();
  const dec = /^(\[[-\d:]+\])+=/.exec(s);
  if (dec !== null) s = s.slice(dec[0].length);
  let i = 0;
  const fail = (what: string): never => {
    throw new CodecError(`malformed array literal (${what} at ${i}): ${JSON.stringify(clip(text))}`);
  };
  const list = (): ArrayItem[] => {
    if (s[i] !== '{') fail("expected '{'");
    i++;
    const items: ArrayItem[] = [];
    while (s[i] === ' ') i++;
    if (s[i] === '}') {
      i++;
      return items;
    }
    for (;;) {
      while (s[i] === ' ') i++;
      const c = s[i];
      if (c === '{') items.push(list());
      else if (c === '"') {
        i++;
        let v = '';
        for (;;) {
          const ch = s[i];
          if (ch === undefined) fail('unterminated quoted element');
          if (ch === '\\') {
            const next = s[i + 1];
            if (next === undefined) fail('dangling backslash');
            v += next;
            i += 2;
          } else if (ch === '"') {
            i++;
            break;
          } else {
            v += ch;
            i++;
          }
        }
        items.push(v);
      } else {
        let v = '';
        for (;;) {
          const ch = s[i];
          if (ch === undefined) fail('unterminated array');
          if (ch === ',' || ch === '}') break;
          if (ch === '\\') {
            const next = s[i + 1];
            if (next === undefined) fail('dangling backslash');
            v += next;
            i += 2;
          } else {
            v += ch;
            i++;
          }
        }
        v = v.trim();
        if (v === '') fail('empty element');
        items.push(v.toUpperCase() === 'NULL' ? null : v);
      }
      while (s[i] === ' ') i++;
      if (s[i] === ',') {
        i++;
        continue;
      }
      if (s[i] === '}') {
        i++;
        return items;
      }
      fail("expected ',' or '}'");
    }
  };
  const out = list();
  if (s.slice(i).trim() !== '') fail('trailing text');
  return out;
}

/** One array element (its PostgreSQL text) as canonical JSON text. */
function elementJson(el: PgType, text: string): string {
  switch (el.cls) {
    case 'int':
      return intValue(text).toString();
    case 'decimal': {
      const c = canonicalNumeric(text);
      return numericSpecial(c) === null ? c : JSON.stringify(c);
    }
    case 'float': {
      const c = canonicalFloat(text, el.width);
      return c === 'NaN' || c.endsWith('Infinity') ? JSON.stringify(c) : c === '-0' ? '-0' : c.includes('e') ? jsonNumber(c) : c;
    }
    case 'bool':
      return boolValue(text) ? 'true' : 'false';
    case 'json':
      return canonicalJson(text);
    default:
      return JSON.stringify(canonicalText(el.base, text));
  }
}

function arrayJson(el: PgType, items: ArrayItem[]): string {
  return '[' + items.map((it) => (it === null ? 'null' : Array.isArray(it) ? arrayJson(el, it) : elementJson(el, it))).join(',') + ']';
}

// ---------------------------------------------------------------- entry points

/** Decode one non-NULL value of a column of PostgreSQL type `typeText` from its text output. */
export function decode(typeText: string, text: string): Value {
  const t = typeOf(typeText);
  switch (t.cls) {
    case 'int':
      return { kind: 'int', value: intValue(text) };
    case 'decimal': {
      const special = numericSpecial(text);
      return { kind: 'decimal', value: special ?? canonicalNumeric(text), special };
    }
    case 'float': {
      const v = floatValue(text);
      const special = Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : null;
      return { kind: 'float', value: t.width === 4 ? Math.fround(v) : v, special, width: t.width ?? 8 };
    }
    case 'bool':
      return { kind: 'bool', value: boolValue(text) };
    case 'bytes':
      return { kind: 'bytes', value: byteaValue(text) };
    case 'json': {
      const canon = canonicalJson(text);
      return { kind: 'json', value: JSON.parse(canon) as unknown, text: canon };
    }
    case 'uuid':
      return { kind: 'uuid', value: uuidValue(text) };
    case 'timestamptz':
      return decodeTimestamptz(text);
    case 'timestamp':
      return decodeTimestamp(text);
    case 'date':
      return decodeDate(text);
    case 'time':
      return decodeTime(text, t.base === 'time with time zone');
    case 'interval': {
      const f = intervalFields(text);
      return { kind: 'interval', ...f, iso: isoInterval(f) };
    }
    case 'array': {
      const items = parseArrayLiteral(text);
      const json = arrayJson(t.element ?? typeOf('text'), items);
      return { kind: 'array', items, value: JSON.parse(json) as JsonValue[], json };
    }
    case 'text':
      return { kind: 'text', value: text };
  }
}

/**
 * The canonical text of a value of PostgreSQL type `typeText`, given its PostgreSQL text output
 * (or a target's stored text of it, which canonicalizes to the same). NULL stays NULL.
 *
 * int: decimal; numeric: `canonicalNumeric`; float: shortest round-trip at the column's width;
 * boolean: 't'/'f'; bytea: lower-case hex `\x…`; json/jsonb: `canonicalJson`; uuid: lower case;
 * timestamptz: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC); timestamp: the same without `Z`; date:
 * `YYYY-MM-DD`; time: `HH:MM:SS.ffffff` (+offset for timetz); interval: ISO 8601; character(n):
 * trailing blanks dropped; arrays: canonical JSON of the elements; ±infinity: 'infinity'/'-infinity';
 * everything else: the text itself.
 */
export function canonicalText(typeText: string, pgText: string | null): string | null {
  if (pgText === null) return null;
  const t = typeOf(typeText);
  switch (t.cls) {
    case 'int':
      return canonicalIntText(pgText) ?? intValue(pgText).toString();
    case 'decimal':
      return plainNumericCanonical(pgText) ?? canonicalNumeric(pgText);
    case 'timestamptz':
      return utcTimestamptzIso(pgText) ?? (decode(typeText, pgText) as { iso: string }).iso;
    case 'float':
      return canonicalFloat(pgText, t.width);
    case 'bool':
      return boolValue(pgText) ? 't' : 'f';
    case 'bytes':
      return byteaText(byteaValue(pgText));
    case 'json':
      return canonicalJson(pgText);
    case 'uuid':
      return uuidValue(pgText);
    case 'text':
      return t.padded ? pgText.replace(/ +$/, '') : pgText;
    case 'array': {
      const s = pgText.trim();
      // A target stores arrays as JSON text; the source sends array literals.
      if (s.startsWith('[') && !/^(\[[-\d:]+\])+=/.test(s)) return canonicalJson(s);
      return arrayJson(t.element ?? typeOf('text'), parseArrayLiteral(s));
    }
    default: {
      const v = decode(typeText, pgText);
      if ('iso' in v) return v.iso;
      throw new CodecError(`no canonical form for ${typeText}`);
    }
  }
}

/** The class of a column type (for a target's type mapping). */
export function typeClass(typeText: string): TypeClass {
  return typeOf(typeText).cls;
}

/** A column type parsed (cached). */
export function pgType(typeText: string): PgType {
  return typeOf(typeText);
}

function clip(s: string): string {
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** A decimal in scientific notation ('1.5E-7', '1E+40', '.5e3') as plain digits; plain text as is. */
export function plainDecimal(text: string): string {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?E([+-]?\d+)$/i.exec(text.trim());
  if (m === null) return text;
  const digits = (m[2] ?? '') + (m[3] ?? '');
  const point = (m[2] ?? '').length + Number(m[4]);
  let plain: string;
  if (point <= 0) plain = '0.' + '0'.repeat(-point) + digits;
  else if (point >= digits.length) plain = digits + '0'.repeat(point - digits.length);
  else plain = digits.slice(0, point) + '.' + digits.slice(point);
  return (m[1] === '-' ? '-' : '') + plain;
}
