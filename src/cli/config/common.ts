/**
 * What the configuration verbs share: the arguments after the noun, dry runs,
 * the calls into capture (and the test-only IBEX_SKIP_CAPTURE switch),
 * connections to registered dbs, and output.
 */
import Table from 'cli-table3';
import type pg from 'pg';
import { installCapture, removeCapture, type CaptureOptions } from '../../capture/install.js';
import { connect, endQuietly, errorText } from '../../db/connect.js';
import { dbParams, getDb, inTransaction, updateSync, type DbRecord, type SyncStatus } from '../../control/config-store.js';
import { ExitCode, IbexError, notFound, usage } from '../../errors.js';
import { parseArgs } from '../args.js';
import type { Context } from '../context.js';
import type { Noun } from './names.js';

/** The `-n/-N/-t/-T` filters of `add all tables` (each may repeat). */
export interface RelationFilters {
  schemas: string[];
  excludeSchemas: string[];
  tables: string[];
  excludeTables: string[];
}

/** Arguments after the noun: names, key=value options, and the relation filters. */
export interface NounArgs {
  words: string[];
  options: Map<string, string>;
  filters: RelationFilters;
}

const FILTER_FLAGS: Record<string, keyof RelationFilters> = {
  '-n': 'schemas', '--schema': 'schemas',
  '-N': 'excludeSchemas', '--exclude-schema': 'excludeSchemas',
  '-t': 'tables', '--table': 'tables',
  '-T': 'excludeTables', '--exclude-table': 'excludeTables',
};

/**
 * Split the arguments after the noun. `-n X`, `--schema=X` and the like are
 * collected only where `allowFilters`; any other word starting with `-` is an
 * unknown flag (quote a name that starts with `-`: `public."-x"`).
 */
export function parseNounArgs(args: readonly string[], what: string, allowFilters = false): NounArgs {
  const filters: RelationFilters = { schemas: [], excludeSchemas: [], tables: [], excludeTables: [] };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-') || a === '-') {
      rest.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const key = FILTER_FLAGS[flag];
    if (!key || !allowFilters) {
      throw usage(`unknown flag "${flag}" for ${what}${allowFilters ? ': use -n/-N/-t/-T' : ''} (global flags: --json --dry-run --force --quiet --debug --control)`);
    }
    const value = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '') throw usage(`${flag} needs a value: ${flag} <name>`);
    filters[key].push(value);
  }
  const { words, options } = parseArgs(rest);
  return { words, options, filters };
}

/** Refuse words where a command takes none. */
export function noWords(words: readonly string[], what: string, hint: string): void {
  if (words.length) throw usage(`unexpected "${words.join(' ')}" for ${what}: ${hint}`);
}

/** The hint of every "no such name" error. */
export function listHint(noun: Noun): string {
  return `list them with "ibex list ${noun}s"`;
}

/** A registered db, or a not_found error. */
export async function requireDb(c: pg.Client, name: string): Promise<DbRecord> {
  const db = await getDb(c, name);
  if (!db) throw notFound('db', name, listHint('db'));
  return db;
}

/** Open a session on a registered PostgreSQL db; a failure names the db and keeps the libpq reason. */
export async function openDb(db: DbRecord, timeoutS = 10): Promise<pg.Client> {
  try {
    return await connect(dbParams(db), { applicationName: 'ibex/cli', connectTimeoutS: timeoutS, statementTimeoutMs: 60_000 });
  } catch (err) {
    // A configuration mistake (an unknown service, a bad conn= option) is not an outage: exit 2 as it is.
    if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw err;
    const reason = err instanceof IbexError ? err.message : errorText(err);
    throw new IbexError('unreachable', `db "${db.name}": ${reason}: start it or fix it with "ibex update db ${db.name} …"`, { cause: err });
  }
}

/** Open sessions on several dbs at once; all or none (the opened ones are closed on failure). */
export async function openDbs(dbs: readonly DbRecord[]): Promise<Map<string, pg.Client>> {
  const results = await Promise.allSettled(dbs.map((d) => openDb(d)));
  const out = new Map<string, pg.Client>();
  let failure: unknown;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') out.set(dbs[i]!.name, r.value);
    else failure ??= r.reason;
  });
  if (failure !== undefined) {
    await closeAll(out);
    throw failure;
  }
  return out;
}

/** Close sessions opened by `openDbs`. */
export async function closeAll(clients: Map<string, pg.Client>): Promise<void> {
  await Promise.all([...clients.values()].map((c) => endQuietly(c)));
}

/**
 * Test-only switch: `IBEX_SKIP_CAPTURE=1` skips installing and removing
 * capture objects (the sync is marked active directly). It exists so the
 * configuration commands can be tested without the capture component; never
 * set it in production: a sync without capture replicates nothing.
 */
export function skipCapture(): boolean {
  return process.env.IBEX_SKIP_CAPTURE === '1';
}

function captureFailure(action: string, sync: string, err: unknown, undone: string): IbexError {
  if (err instanceof IbexError) return err;
  return new IbexError('internal', `${action} capture for sync "${sync}" failed: ${errorText(err)}${undone}`, { cause: err });
}

/**
 * Install capture for a sync after its rows were committed (or, in a dry run,
 * inside the open transaction, with `dryRun`). With IBEX_SKIP_CAPTURE=1 the
 * sync is set to `status` directly. After a real install, a sync the user
 * wanted inactive or paused is set back to that status.
 */
export async function runInstallCapture(ctx: Context, c: pg.Client, sync: string, status: SyncStatus, undo?: () => Promise<void>): Promise<void> {
  const dryRun = ctx.flags.dryRun;
  if (skipCapture()) {
    await updateSync(c, sync, { status });
    return;
  }
  try {
    await installCapture(c, sync, { dryRun, say: (line) => ctx.say(line) });
    if (!dryRun && status !== 'active') await updateSync(c, sync, { status });
  } catch (err) {
    if (undo && !dryRun) {
      await undo();
      throw captureFailure('installing', sync, err, ': nothing was changed');
    }
    throw captureFailure('installing', sync, err, '');
  }
}

/** Remove the capture objects of a sync (honours IBEX_SKIP_CAPTURE=1 and dry runs). */
export async function runRemoveCapture(ctx: Context, c: pg.Client, sync: string): Promise<void> {
  if (skipCapture()) return;
  // With --force, dbs that cannot be reached are skipped (their objects stay; capture says so).
  const opts: CaptureOptions & { force?: boolean } = { dryRun: ctx.flags.dryRun, say: (line) => ctx.say(line), force: ctx.flags.force };
  try {
    await removeCapture(c, sync, opts);
  } catch (err) {
    throw captureFailure('removing', sync, err, ': the sync is still configured; fix the cause and run "ibex remove sync" again');
  }
}

/**
 * Run the writes of one command in one control transaction; in a dry run the
 * transaction is rolled back (the writes still run, so every constraint is
 * checked) and the report says nothing changed.
 */
export async function write<T>(ctx: Context, c: pg.Client, fn: () => Promise<T>): Promise<T> {
  return inTransaction(c, fn, { rollback: ctx.flags.dryRun });
}

const PAST: Record<string, string> = {
  add: 'added', create: 'created', remove: 'removed', change: 'changed', register: 'registered', update: 'updated',
  reuse: 'reusing', skip: 'skipped', delete: 'deleted', set: 'set',
};

/** One line of a writing command's report: "added db A …", or "would add db A …" in a dry run. */
export function report(ctx: Context, verb: keyof typeof PAST, rest: string): void {
  if (verb === 'reuse' || verb === 'skip') {
    ctx.say(`${PAST[verb]} ${rest}`);
    return;
  }
  ctx.say(ctx.flags.dryRun ? `would ${verb} ${rest}` : `${PAST[verb]} ${rest}`);
}

/** The last line of a dry run. */
export function dryRunDone(ctx: Context): void {
  if (ctx.flags.dryRun) ctx.say('dry run: nothing was changed');
}

/** Print rows as a table (cli-table3, no colours) or, with `--json`, as JSON. */
export function printRows(ctx: Context, head: string[], rows: (string | number)[][], jsonValue: unknown, empty: string): void {
  if (ctx.flags.json) {
    ctx.json(jsonValue);
    return;
  }
  if (rows.length === 0) {
    ctx.say(empty);
    return;
  }
  const table = new Table({ head, style: { head: [], border: [] }, wordWrap: true });
  for (const r of rows) table.push(r.map(String));
  ctx.say(table.toString(), true);
}

/** Parse a signed whole number (priority). */
export function parseSignedInt(key: string, value: string): number {
  if (!/^-?\d{1,9}$/.test(value)) throw usage(`bad value "${value}" for ${key}: give a whole number`);
  return Number(value);
}

/** Make an error's message one line (driver texts can hold newlines). */
export function oneLine(err: unknown): unknown {
  // An IbexError's line breaks come from names the user gave: the CLI shows them as \n instead.
  if (err instanceof Error && !(err instanceof IbexError) && /\n/.test(err.message)) err.message = err.message.replace(/\s*\n\s*/g, ' ').trim();
  return err;
}
