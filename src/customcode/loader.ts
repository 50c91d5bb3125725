/**
 * Loading and calling custom code. A sync's codes (mapped to the sync, or to
 * one of its tables by schema and name) are read from the control database,
 * written once to a private cache directory under a content hash and
 * imported: the same source is one module for the life of the process, so a
 * handler is loaded once per configuration, never per run or per row.
 *
 * Whatever sits in the cache runs with ibex's privileges (often root), so the
 * cache trusts nothing it did not make: the directory must be the current
 * user's own, mode 0700, not a symbolic link, in a parent other users cannot
 * rename it in; files are created exclusively with mode 0600, and each file's
 * bytes are hashed again right before import. A file that differs is written
 * again; a directory that fails a check is refused, never used.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync,
  statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
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

/**
 * Where compiled custom code is cached: `$XDG_CACHE_HOME/ibex/customcode`, else
 * `$HOME/.cache/ibex/customcode`, else `$TMPDIR/ibex-customcode-<uid>`. The
 * first two live in the user's own home, where no other user can create the
 * directory first; the last is shared, so a directory there that another user
 * made or opened up is refused.
 */
export function cacheDirPath(): string {
  return cacheDirCandidates()[0]!;
}

function cacheDirCandidates(): string[] {
  const out: string[] = [];
  const xdg = process.env.XDG_CACHE_HOME;
  const home = process.env.HOME;
  if (xdg && isAbsolute(xdg)) out.push(join(xdg, 'ibex', 'customcode'));
  else if (home && isAbsolute(home) && home !== '/') out.push(join(home, '.cache', 'ibex', 'customcode'));
  out.push(join(tmpdir(), `ibex-customcode-${process.getuid?.() ?? 'user'}`));
  return out;
}

/** One line saying the cache cannot be trusted and what to do. */
function unsafe(path: string, why: string): IbexError {
  return new IbexError('config', `the custom code cache ${path} is not safe to run code from: it ${why}; `
    + `remove it (ibex makes it again, yours with mode 0700), or set XDG_CACHE_HOME to a directory only you can write`);
}

/** Why `st` is not a directory (or file) only the current user controls, or null. */
function notPrivate(st: Stats, kind: 'directory' | 'file', mode: number): string | null {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) return `is not a ${kind}`;
  const uid = process.getuid?.();
  if (uid === undefined) return null; // no POSIX owners (Windows): nothing more to check
  if (st.uid !== uid) return `is owned by uid ${st.uid}, not by uid ${uid} that ibex runs as`;
  if ((st.mode & 0o7777) !== mode) return `has mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, not ${mode.toString(8).padStart(4, '0')}`;
  return null;
}

/** Make (if missing) and check the cache directory; throws one line if it cannot be trusted. */
function cacheDir(): string {
  const [first, last] = cacheDirCandidates();
  let dir = first!;
  try {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  } catch (err) {
    // A service user's home may not exist or be read-only: use the shared fallback, checked the same way.
    if (!last || !['EACCES', 'EPERM', 'EROFS', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    dir = last;
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  }
  const parent = dirname(dir);
  // Another user who may write to the parent could swap our directory for theirs after the
  // checks below, unless the parent is sticky (like /tmp), where only the owner may rename.
  const ps = statSync(parent);
  const uid = process.getuid?.();
  if (uid !== undefined && ((ps.uid !== uid && ps.uid !== 0) || ((ps.mode & 0o022) !== 0 && (ps.mode & 0o1000) === 0))) {
    throw new IbexError('config', `the parent ${parent} of the custom code cache can be written by other users: `
      + `set XDG_CACHE_HOME to a directory only you can write`);
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700); // we just made it: undo what the umask took away
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const why = notPrivate(lstatSync(dir), 'directory', 0o700);
  if (why) throw unsafe(dir, why);
  return dir;
}

/** The hash of a source as the cache names it (language, NUL, source bytes). */
function sourceHash(language: string, src: Buffer): string {
  return createHash('sha256').update(language).update('\0').update(src).digest('hex');
}

/** The cache file of a source (the name carries the first 20 hex digits of its hash). */
export function cacheFile(name: string, language: string, src: string): string {
  const hash = sourceHash(language, Buffer.from(src, 'utf8')).slice(0, 20);
  return join(cacheDir(), `${name.replace(/[^A-Za-z0-9_-]/g, '_')}-${hash}.${language === 'typescript' ? 'ts' : 'mjs'}`);
}

/** Whether `file` is a regular file of ours, mode 0600, whose bytes hash to `want` (never follows a link). */
function holds(file: string, language: string, want: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return false;
    throw err;
  }
  try {
    if (notPrivate(fstatSync(fd), 'file', 0o600)) return false;
    return sourceHash(language, readFileSync(fd)) === want;
  } finally {
    closeSync(fd);
  }
}

/** Write `src` to `file`: a new file only this process opened (O_EXCL, 0600), renamed over whatever was there. */
function writeCached(file: string, src: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, src);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
}

let tsxRegistered = false;

/**
 * TypeScript custom code needs a loader. From the sources (bin/ibex) tsx is
 * already in the process; the compiled package starts without it and
 * registers it only when it first loads TypeScript custom code, with tsx's
 * own transform cache off: that cache lives in a shared temp directory where
 * another user could plant code (ibex's cache of the sources is checked, tsx's
 * is not).
 */
async function typescriptLoader(): Promise<void> {
  if (tsxRegistered || import.meta.url.endsWith('.ts')) return;
  process.env.TSX_DISABLE_CACHE = '1';
  const { register } = await import('tsx/esm/api');
  register();
  tsxRegistered = true;
}

/** Write the source under its content hash (once, or again if the file differs), check its bytes, and import it. */
async function importSource(name: string, whenrun: string, src: string, language: string,
  fix = `fix it with "ibex update customcode ${name} src_code=<file>"`): Promise<(input: never) => unknown> {
  const want = sourceHash(language, Buffer.from(src, 'utf8'));
  const file = cacheFile(name, language, src);
  if (!holds(file, language, want)) {
    writeCached(file, src);
    if (!holds(file, language, want)) throw unsafe(file, 'changed while ibex wrote it');
  }
  let mod: { default?: unknown };
  try {
    if (language === 'typescript') await typescriptLoader();
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
