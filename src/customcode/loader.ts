/**
 * Loading and calling custom code. A sync's codes (mapped to the sync, or to
 * one of its tables by schema and name) are read from the control database,
 * written once to a private cache directory under a content hash and
 * imported: the same source is one module for the life of the process, so a
 * handler is loaded once per configuration, never per run or per row.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { activeCustomcodes } from '../control/config-store.js';
import { IbexError } from '../errors.js';
import type { Whenrun } from './api.js';

/** A failure of custom code: names the code and its hook; fails the run cleanly. */
export class CustomCodeError extends IbexError {
  constructor(readonly codeName: string, readonly whenrun: string, message: string, cause?: unknown) {
    super('config', `custom code "${codeName}" (whenrun=${whenrun}) ${message}`, cause === undefined ? undefined : { cause });
  }
}

/** One loaded customcode. */
export interface LoadedCode {
  name: string;
  whenrun: Whenrun;
  /** `schema.table` for a table-level mapping; null for the whole sync. */
  table: string | null;
  fn: (input: never) => unknown;
}

/** How long one hook call may take before the run fails (it keeps running in the background). */
export const HOOK_TIMEOUT_MS = 60_000;

function cacheDir(): string {
  const dir = join(tmpdir(), `ibex-customcode-${process.getuid?.() ?? 'user'}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Write the source under its content hash (once) and import it. */
async function importSource(name: string, whenrun: string, src: string, language: string,
  fix = `fix it with "ibex update customcode ${name} src_code=<file>"`): Promise<(input: never) => unknown> {
  const hash = createHash('sha256').update(language).update('\0').update(src).digest('hex').slice(0, 20);
  const file = join(cacheDir(), `${name}-${hash}.${language === 'typescript' ? 'ts' : 'mjs'}`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, src, { mode: 0o600 });
    renameSync(tmp, file);
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new CustomCodeError(name, whenrun, `could not be loaded: ${loadError(err, file)}; ${fix}`, err);
  }
  if (typeof mod.default !== 'function') {
    throw new CustomCodeError(name, whenrun, `has no default export: export the hook as "export default function (input) { … }", ${fix}`);
  }
  return mod.default as (input: never) => unknown;
}

/** Load a source once to check it (at add/update time): it must import and export a default function. */
export async function checkSource(name: string, whenrun: string, src: string, language: string, path: string): Promise<void> {
  await importSource(name, whenrun, src, language, `fix ${path} and give it again`);
}

/**
 * The active codes of a sync, in the order they run: mapping priority, table-level before
 * sync-level, then name (Bucardo's order).
 */
export async function loadCustomcode(control: pg.Client, sync: string, tables: { schema: string; name: string }[]): Promise<LoadedCode[]> {
  const rows = await activeCustomcodes(control, sync, tables);
  const out: LoadedCode[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    const table = row.schemaname === null ? null : `${row.schemaname}.${row.relname}`;
    const id = `${row.name}/${table}`;
    if (seen.has(id)) continue; // the same table registered on several dbs
    seen.add(id);
    out.push({ name: String(row.name), whenrun: row.whenrun as Whenrun, table, fn: await importSource(String(row.name), String(row.whenrun), String(row.src_code), String(row.language)) });
  }
  return out;
}

/** The codes of one hook; for a table, its own codes come first, then the sync's. */
export function codesFor(codes: readonly LoadedCode[], whenrun: Whenrun, table?: string): LoadedCode[] {
  return codes.filter((c) => c.whenrun === whenrun && (c.table === null || c.table === table));
}

/** Call one code with a timeout; any throw or rejection becomes a CustomCodeError naming the code. */
export async function callCode<T>(code: LoadedCode, input: unknown): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(() => (code.fn as (i: unknown) => unknown)(input)) as Promise<T>,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CustomCodeError(code.name, code.whenrun, `did not return within ${HOOK_TIMEOUT_MS / 1000} s`)), HOOK_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    if (err instanceof CustomCodeError) throw err;
    throw new CustomCodeError(code.name, code.whenrun, `threw: ${firstLine(err)}`, err);
  } finally {
    clearTimeout(timer);
  }
}

/** A compile error's useful line (esbuild puts it second), with the cache path shown as "line L:C". */
function loadError(err: unknown, file: string): string {
  const lines = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines.length > 1 && lines[0]!.endsWith(':') ? lines[1]! : (lines[0] ?? 'unknown error');
  return line.replace(new RegExp(`(?:file://)?${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+):(\\d+):?`), 'line $1:$2').replace(/ERROR: /, '').slice(0, 500);
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.slice(0, 500);
}
