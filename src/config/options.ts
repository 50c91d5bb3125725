/**
 * The option sets of the configuration commands, one zod schema per option:
 * its name, type, range, default and meaning, written once. `add sync` and
 * `update sync` parse Bucardo's `key=value` text through them, `ibex help add
 * sync` and `ibex completion` list them, and docs/cli.md is checked against
 * them (test/unit/cli-docs.test.ts). Pure: no I/O.
 */
import { z } from 'zod';
import { usage } from '../errors.js';

/** One option: how its text becomes a candidate value, and the schema that candidate must pass. */
export interface OptionSpec {
  /** The stored value's schema, with `.default()` and `.describe()` (its help text). */
  schema: z.ZodType;
  /** Bucardo's text for the option → the candidate the schema checks (may throw a usage error of its own). */
  fromText: (key: string, text: string) => unknown;
  /** The accepted values, for the "bad value" message. */
  accepts: string;
  /** The value as help shows it: `change|commit`, `0|1`, `N`, `DURATION`, `TEXT`. */
  hint: string;
}

const TRUE = ['1', 't', 'true', 'on', 'yes', 'y'];
const FALSE = ['0', 'f', 'false', 'off', 'no', 'n'];

/** A boolean: Bucardo accepts 1/0, t/f, true/false, on/off, yes/no. */
export function boolOption(def: boolean, help: string): OptionSpec {
  return {
    schema: z.boolean().default(def).describe(help),
    fromText: (_k, v) => (TRUE.includes(v.toLowerCase()) ? true : FALSE.includes(v.toLowerCase()) ? false : v),
    accepts: 'use 1/0, true/false, on/off or yes/no',
    hint: '1|0',
  };
}

/** A whole number in a range; `nullable`: empty text means "none". */
export function intOption(min: number, max: number, def: number | null, help: string): OptionSpec {
  const n = z.number().int().min(min).max(max);
  return {
    schema: (def === null ? n.nullable() : n).default(def as number).describe(help),
    fromText: (_k, v) => (v === '' && def === null ? null : /^\d+$/.test(v) ? Number(v) : v),
    accepts: `give a whole number ${max === 2_147_483_647 || max === Number.MAX_SAFE_INTEGER ? `of ${min} or more` : `from ${min} to ${max}`}`,
    hint: max - min <= 3 ? Array.from({ length: max - min + 1 }, (_, i) => String(min + i)).join('|') : 'N',
  };
}

/** One of a list of words (case-insensitive; `normalize` maps Bucardo's spellings). */
export function enumOption<const T extends readonly [string, ...string[]]>(values: T, def: T[number], help: string, normalize: (v: string) => string = (v) => v.toLowerCase()): OptionSpec {
  return {
    schema: z.enum(values).default(def as never).describe(help),
    fromText: (_k, v) => normalize(v),
    accepts: `use one of ${values.join(', ')}`,
    hint: values.map((v) => v.replace(/ /g, '_')).join('|'),
  };
}

/** A duration, stored as a PostgreSQL interval text; empty or 0 means none. */
export function intervalOption(help: string): OptionSpec {
  return {
    schema: z.string().nullable().default(null).describe(help),
    fromText: (k, v) => (v === '' || v === '0' ? null : parseInterval(k, v)),
    accepts: 'give seconds (30) or a number with a unit (500ms, 30s, 5m, 1h, 7d); 0 for none',
    hint: 'DURATION',
  };
}

/** Free text; empty means none. */
export function textOption(help: string): OptionSpec {
  return { schema: z.string().nullable().default(null).describe(help), fromText: (_k, v) => (v === '' ? null : v), accepts: 'any text', hint: 'TEXT' };
}

/** Parse one option's text through its schema; a value the schema refuses is a usage error naming what it accepts. */
export function parseOption(key: string, spec: OptionSpec, text: string): unknown {
  const r = spec.schema.safeParse(spec.fromText(key, text));
  if (!r.success) throw usage(`bad value "${text}" for ${key}: ${spec.accepts}`);
  return r.data;
}

/** The default of an option (what its schema yields for "not given"). */
export function optionDefault(spec: OptionSpec): unknown {
  return spec.schema.parse(undefined);
}

/** The help text of an option (its schema's description). */
export function optionHelp(spec: OptionSpec): string {
  return spec.schema.description ?? '';
}

/** The longest duration accepted (100 years): far below PostgreSQL's interval limit. */
const MAX_DURATION_S = 36_500 * 86_400;

/**
 * Parse a duration: a number of seconds, or a number with a unit (ms, s, m, h, d),
 * or a PostgreSQL interval such as "5 minutes". Returns a PostgreSQL interval text.
 */
export function parseInterval(key: string, value: string): string {
  const v = value.trim();
  const hint = 'give seconds (30) or a number with a unit (500ms, 30s, 5m, 1h, 7d)';
  if (/^-\s*\d/.test(v)) throw usage(`bad duration "${value}" for ${key}: it cannot be negative; ${hint}`);
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?$/i.exec(v);
  if (!m) throw usage(`bad duration "${value}" for ${key}: ${hint}`);
  const n = Number(m[1]);
  if (n <= 0) throw usage(`bad duration "${value}" for ${key}: it must be more than zero; ${hint}`);
  const unit = (m[2] ?? 's').toLowerCase();
  const seconds = unit === 'ms' ? n / 1000 : unit.startsWith('s') ? n : unit.startsWith('m') ? n * 60 : unit.startsWith('h') ? n * 3600 : n * 86400;
  if (!(seconds <= MAX_DURATION_S)) throw usage(`bad duration "${value}" for ${key}: it is too long; give at most 100 years (36500d)`);
  return `${seconds} seconds`;
}
