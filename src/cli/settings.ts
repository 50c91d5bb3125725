/**
 * `ibex set <name>=<value> …` and `ibex show [all | name …]`: the global
 * settings in ibex.config (Bucardo's `set`/`show` over bucardo_config).
 * Each known setting has a parser that checks its value and returns the text
 * stored; what the engine reads back is therefore always well-formed.
 */
import { parseStrategy as engineStrategy } from '../conflict/strategy.js';
import { RETENTION_DEFAULTS } from '../control/retention.js';
import { readSettings, writeSettings } from '../control/settings-store.js';
import { RUN_PAUSE_MAX_MS_DEFAULT } from '../engine/scheduler.js';
import { READY_MAX_AGE_S_DEFAULT } from '../observe/observer.js';
import { parseListen } from '../observe/server.js';
import { usage, type IbexError } from '../errors.js';
import { allowOnly, parseArgs, parseIntOption, parseInterval } from './args.js';
import { printRows } from './config/common.js';
import { dryRunDone, report, write } from '../config/context.js';
import { readStrategy } from '../config/strategies.js';
import type { Context } from './context.js';

/** A global setting ibex knows: its default, what it means, and how its value is checked. */
interface Setting {
  /** The value the control schema is installed with. */
  default: string;
  about: string;
  /** Check a value given on the command line; returns the text to store. Throws a usage error. */
  parse: (name: string, value: string) => string;
  /** When a running daemon starts using a new value, if not at once. */
  takesEffect?: string;
}

/** PostgreSQL's largest timeout, in milliseconds (INT_MAX). */
const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * A duration, through `parseInterval` (30, 90s, 15m, 12h, 7d, "30 days"),
 * stored as interval text in the largest whole unit ("7 days", "90 seconds").
 */
function interval(name: string, value: string): string {
  const seconds = Number(parseInterval(name, value).split(' ')[0]);
  for (const [unit, size] of [['days', 86_400], ['hours', 3_600], ['minutes', 60]] as const) {
    if (seconds % size === 0) return `${seconds / size} ${unit}`;
  }
  return `${seconds} seconds`;
}

function milliseconds(name: string, value: string): string {
  return String(parseIntOption(name, value.trim(), 0, MAX_TIMEOUT_MS));
}

/**
 * A strategy by name (ours or Bucardo's alias), stored in the same form as a
 * sync's `conflict_strategy=`. An ordered db list names the dbs of one sync,
 * so it cannot be a global default.
 */
function strategy(name: string, value: string): string {
  const hint = 'use latest, skip, abort, random, source, target or custom (or a bucardo_* alias)';
  const parsed = readStrategy(value);
  if ('error' in parsed) throw usage(`bad value "${value}" for ${name}: ${hint}`);
  if (parsed.dbs) {
    throw usage(parsed.dbs.length > 1
      ? `bad value "${value}" for ${name}: a list of dbs belongs to one sync ("ibex update sync <name> conflict_strategy=${parsed.dbs.join(',')}"); ${hint}`
      : `unknown strategy "${value}" for ${name}: ${hint}`);
  }
  // What is stored must be readable by the engine.
  engineStrategy(parsed.strategy, []);
  return parsed.strategy;
}

/** Every setting `set` accepts, by name (the rows of ibex.config). */
export const SETTINGS: Readonly<Record<string, Setting>> = {
  conflict_log_retention: {
    default: RETENTION_DEFAULTS.conflict_log_retention, about: 'conflict log entries older than this are purged (pending ones never)', parse: interval,
  },
  default_conflict_strategy: {
    default: 'latest', about: 'strategy of a sync that names none', parse: strategy, takesEffect: 'syncs added from now on use it',
  },
  row_lock_timeout_ms: {
    default: '10000', about: 'how long an apply waits on one row\'s lock before setting that row aside (on_row_error=quarantine); 0 waits without limit', parse: milliseconds,
  },
  http_listen: {
    default: 'off', about: 'where the daemon serves /metrics, /healthz, /readyz and its dashboard (HOST:PORT; off: nowhere); --http overrides it',
    parse: (_name, value) => {
      const v = value.trim();
      if (v === 'off') return v;
      const l = parseListen(v);
      return `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
    },
    takesEffect: 'a daemon uses it when it starts',
  },
  lease_seconds: {
    default: '30',
    about: 'a sync whose daemon stopped renewing its lease this long (frozen, cut off) runs on another daemon; a killed daemon is replaced at once',
    parse: (name, value) => String(parseIntOption(name, value.trim(), 2, 3600)),
    takesEffect: 'running daemons use it after "ibex reload"',
  },
  lock_timeout_ms: {
    default: '2000', about: 'lock_timeout of DDL steps (install, remove), retried with backoff; 0 waits without limit', parse: milliseconds,
  },
  run_pause_max_ms: {
    default: String(RUN_PAUSE_MAX_MS_DEFAULT),
    about: 'after a run that moved 20 rows or more, the next waits as long as it took, at most this long (0: never; less lag, more load under heavy writes)',
    parse: (name, value) => String(parseIntOption(name, value.trim(), 0, 60_000)),
    takesEffect: 'a running daemon uses it after "ibex reload"',
  },
  ready_max_age_s: {
    default: String(READY_MAX_AGE_S_DEFAULT), about: '/readyz answers 503 when an unpaused sync has had no good run for longer than this (seconds)',
    parse: (name, value) => String(parseIntOption(name, value.trim(), 1, 86_400 * 7)),
  },
  run_history_retention: {
    default: RETENTION_DEFAULTS.run_history_retention, about: 'run history older than this is purged (runs in progress never)', parse: interval,
  },
  statement_timeout_ms: {
    default: '0', about: 'statement_timeout of replication sessions (0 = none)', parse: milliseconds,
    takesEffect: 'a running daemon uses it after "ibex reload"',
  },
};

const NAMES = Object.keys(SETTINGS).sort();

function unknownSetting(name: string, names: readonly string[]): IbexError {
  return usage(`unknown setting "${name}": use one of ${names.join(', ')}`);
}

/** `ibex set <name>=<value> …`: all or nothing, in one transaction. */
export async function set(ctx: Context, args: string[]): Promise<number> {
  const { words, options } = parseArgs(args, { flags: [], what: '"ibex set"' });
  if (words.length || options.size === 0) {
    throw usage(`${words.length ? `unexpected "${words.join(' ')}" for "ibex set"` : '"ibex set" needs a setting'}: write ibex set name=value … (settings: ${NAMES.join(', ')})`);
  }
  const values = new Map<string, string>();
  for (const [name, value] of options) {
    const s = SETTINGS[name];
    if (!s) throw unknownSetting(name, NAMES);
    values.set(name, s.parse(name, value));
  }
  await ctx.withControl(async (c) => {
    await write(ctx, c, async () => {
      const before = await writeSettings(c, [...values].map(([name, value]) => ({ name, value, about: SETTINGS[name]!.about })));
      for (const [name, value] of values) {
        const was = before.get(name);
        if (was === value) {
          ctx.say(`${name} is already ${value}`);
          continue;
        }
        report(ctx, 'set', `${name}=${value}${was === undefined ? '' : ` (was ${was})`}`);
        const when = SETTINGS[name]!.takesEffect;
        if (when && !ctx.flags.dryRun) ctx.say(`  ${when}`);
      }
    });
  });
  dryRunDone(ctx);
  return 0;
}

/** `ibex show [all | name …] [--json]`: the settings, their values and what they mean. */
export async function show(ctx: Context, args: string[]): Promise<number> {
  const { words, options } = parseArgs(args, { flags: [], what: '"ibex show"' });
  allowOnly(options, [], '"ibex show": write ibex show [all | name …]');
  const wanted = words.some((w) => w.toLowerCase() === 'all') ? [] : [...new Set(words.map((w) => w.toLowerCase()))];
  return ctx.withControl(async (c) => {
    // The table may hold settings a newer migration added; show those too.
    const rows = new Map<string, { name: string; value: string; default: string | null; about: string | null }>();
    for (const x of await readSettings(c)) rows.set(x.name, { ...x, default: SETTINGS[x.name]?.default ?? null });
    for (const [name, s] of Object.entries(SETTINGS)) {
      if (!rows.has(name)) rows.set(name, { name, value: s.default, default: s.default, about: s.about });
    }
    const names = [...rows.keys()].sort();
    for (const w of wanted) if (!rows.has(w)) throw unknownSetting(w, names);
    const shown = (wanted.length ? wanted : names).map((n) => rows.get(n)!);
    printRows(ctx, ['name', 'value', 'default', 'about'],
      shown.map((s) => [s.name, s.value, s.default ?? '', s.about ?? '']), shown, 'no settings');
    return 0;
  });
}
