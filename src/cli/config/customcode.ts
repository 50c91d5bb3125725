/**
 * `add | list | update | remove customcode`: TypeScript or JavaScript hooks,
 * stored as text in the control database so every daemon runs the same code.
 */
import { readFileSync, statSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import type pg from 'pg';
import {
  WHENRUN, deleteCustomcode, getCustomcode, getSync, insertCustomcode, listCustomcodes, mapCustomcode, relationsById,
  updateCustomcode, type CustomcodeRecord,
} from '../../control/config-store.js';
import { configError, notFound, usage } from '../../errors.js';
import { checkSource } from '../../customcode/loader.js';
import { allowOnly } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, parseSignedInt, printRows } from './common.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { listHint } from '../../config/dbs.js';
import { checkObjectName, displayRelation, matchesFilter } from '../../config/names.js';
import { registeredRelations } from '../../config/relations.js';

const KEYS = ['whenrun', 'src_code', 'sync', 'relation', 'table', 'db', 'priority', 'status', 'about'];

/** Read a hook's source file; the language comes from its extension. */
export function readSource(path: string): { code: string; path: string; language: 'typescript' | 'javascript' } {
  const full = resolve(path);
  const ext = extname(full).toLowerCase();
  const language = ['.ts', '.mts', '.cts'].includes(ext) ? 'typescript' : ['.js', '.mjs', '.cjs'].includes(ext) ? 'javascript' : undefined;
  if (!language) throw usage(`src_code=${path} has an unknown extension: give a .ts (TypeScript) or .js/.mjs (JavaScript) file`);
  let code: string;
  try {
    if (!statSync(full).isFile()) throw new Error('not a file');
    code = readFileSync(full, 'utf8');
  } catch {
    throw usage(`cannot read src_code=${path}: give the path of an existing, readable .ts or .js file`);
  }
  if (code.trim() === '') throw usage(`src_code=${path} is empty: write the hook first`);
  return { code, path: full, language };
}

function parseWhenrun(v: string): CustomcodeRecord['whenrun'] {
  const w = v.toLowerCase();
  if (!(WHENRUN as readonly string[]).includes(w)) throw usage(`bad value "${v}" for whenrun: use one of ${WHENRUN.join(', ')}`);
  return w as CustomcodeRecord['whenrun'];
}

function parseStatus(v: string): 'active' | 'inactive' {
  const s = v.toLowerCase();
  if (s !== 'active' && s !== 'inactive') throw usage(`bad value "${v}" for status: use active or inactive`);
  return s;
}

/** Resolve sync= / relation= into a mapping target. */
async function target(c: pg.Client, o: Map<string, string>): Promise<{ sync?: string; relation?: number; label?: string }> {
  const rel = o.get('relation') ?? o.get('table');
  if (o.has('sync') && rel !== undefined) throw usage('give sync= or relation=, not both: a customcode maps to a sync or to one table');
  if (o.has('sync')) {
    const s = await getSync(c, o.get('sync')!);
    if (!s) throw notFound('sync', o.get('sync')!, listHint('sync'));
    return { sync: s.name, label: `sync ${s.name}` };
  }
  if (rel !== undefined) {
    const [r] = await registeredRelations(c, 'table', [rel], o.get('db'));
    if (!r) throw notFound('table', rel, listHint('table'));
    return { relation: r.id, label: `table ${displayRelation(r.schemaname, r.relname)} of db ${r.db}` };
  }
  return {};
}

/** `ibex add customcode <name> whenrun=<hook> src_code=<file> [sync=<s>|relation=<schema.table> [db=]] [priority= status= about=]` */
export async function addCustomcode(ctx: Context, args: string[]): Promise<void> {
  const { words, options: o } = parseNounArgs(args, 'add customcode');
  allowOnly(o, KEYS, 'add customcode');
  const [name, ...extra] = words;
  if (!name) throw usage('add customcode needs a name: ibex add customcode <name> whenrun=<hook> src_code=<file>');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for add customcode: give one name, then key=value options`);
  checkObjectName('customcode', name);
  if (!o.get('whenrun')) throw usage(`add customcode ${name} needs whenrun=<hook>: one of ${WHENRUN.join(', ')}`);
  if (!o.get('src_code')) throw usage(`add customcode ${name} needs src_code=<file>: the .ts or .js file of the hook`);
  const whenrun = parseWhenrun(o.get('whenrun')!);
  const src = readSource(o.get('src_code')!);
  await checkSource(name, whenrun, src.code, src.language, src.path);
  const priority = o.has('priority') ? parseSignedInt('priority', o.get('priority')!) : 0;
  const status = o.has('status') ? parseStatus(o.get('status')!) : 'active';
  await ctx.withControl(async (c) => {
    if (await getCustomcode(c, name)) throw configError(`a customcode named ${name} already exists: choose another name or change it with "ibex update customcode ${name}"`);
    const to = await target(c, o);
    await write(ctx, c, async () => {
      const id = await insertCustomcode(c, {
        name, whenrun, src_code: src.code, src_path: src.path, language: src.language, status, priority, about: o.get('about') || null,
      });
      if (to.label) await mapCustomcode(c, id, to, priority);
    });
    report(ctx, 'add', `customcode ${name} (${src.language}, ${whenrun}${to.label ? `, for ${to.label}` : ', not mapped yet: give sync= or relation='})`);
    dryRunDone(ctx);
  });
}

/** `ibex list customcodes [name|pattern …] [--json]` */
export async function listCustomcode(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list customcodes');
  allowOnly(options, [], 'list customcodes');
  await ctx.withControl(async (c) => {
    const codes = (await listCustomcodes(c)).filter((x) => matchesFilter(x.name, words));
    const rels = await relationsById(c, codes.flatMap((x) => x.maps.flatMap((m) => (m.relation === null ? [] : [m.relation]))));
    const rows = codes.map((x) => ({
      name: x.name, whenrun: x.whenrun, language: x.language, src_path: x.src_path, status: x.status, priority: x.priority,
      syncs: x.maps.flatMap((m) => (m.sync ? [m.sync] : [])),
      tables: x.maps.flatMap((m) => {
        const r = rels.find((y) => y.id === m.relation);
        return r ? [{ table: displayRelation(r.schemaname, r.relname), db: r.db }] : [];
      }),
      about: x.about,
    }));
    printRows(ctx, ['customcode', 'whenrun', 'language', 'status', 'for', 'source'],
      rows.map((r) => [r.name, r.whenrun, r.language, r.status, [...r.syncs.map((s) => `sync ${s}`), ...r.tables.map((t) => `${t.table} (${t.db})`)].join('\n'), r.src_path ?? '']),
      rows, words.length ? `no customcode matches ${words.join(' ')}` : 'no customcode: add one with "ibex add customcode <name> whenrun=<hook> src_code=<file>"');
  });
}

/** `ibex update customcode <name> [whenrun= src_code= priority= status= about= sync= relation=]` (sync=/relation= add a mapping) */
export async function updateCustomcodeVerb(ctx: Context, args: string[]): Promise<void> {
  const { words, options: o } = parseNounArgs(args, 'update customcode');
  allowOnly(o, KEYS, 'update customcode');
  const [name, ...extra] = words;
  if (!name) throw usage('update customcode needs a name: ibex update customcode <name> key=value …');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for update customcode: give one name, then key=value options`);
  if (o.size === 0) throw usage(`update customcode ${name} needs something to change: e.g. src_code=<file> or status=inactive`);
  const changes: Parameters<typeof updateCustomcode>[2] = {};
  if (o.has('whenrun')) changes.whenrun = parseWhenrun(o.get('whenrun')!);
  if (o.has('src_code')) {
    const src = readSource(o.get('src_code')!);
    await checkSource(name, changes.whenrun ?? 'conflict', src.code, src.language, src.path);
    Object.assign(changes, { src_code: src.code, src_path: src.path, language: src.language });
  }
  if (o.has('priority')) changes.priority = parseSignedInt('priority', o.get('priority')!);
  if (o.has('status')) changes.status = parseStatus(o.get('status')!);
  if (o.has('about')) changes.about = o.get('about') || null;
  await ctx.withControl(async (c) => {
    const code = await getCustomcode(c, name);
    if (!code) throw notFound('customcode', name, listHint('customcode'));
    const to = await target(c, o);
    await write(ctx, c, async () => {
      await updateCustomcode(c, code.id, changes);
      if (to.label) await mapCustomcode(c, code.id, to, changes.priority ?? code.priority);
    });
    const shown = Object.keys(changes).filter((k) => k !== 'src_code').map((k) => `${k}=${String((changes as Record<string, unknown>)[k] ?? '(none)')}`);
    if (changes.src_code !== undefined) shown.unshift('src_code');
    if (to.label) shown.push(`mapped to ${to.label}`);
    report(ctx, 'change', `customcode ${name}: ${shown.join(' ')}`);
    dryRunDone(ctx);
  });
}

/** `ibex remove customcode <name …>` */
export async function removeCustomcode(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove customcode');
  allowOnly(options, [], 'remove customcode');
  if (words.length === 0) throw usage('remove customcode needs a name: ibex remove customcode <name …>');
  await ctx.withControl(async (c) => {
    for (const n of new Set(words)) if (!(await getCustomcode(c, n))) throw notFound('customcode', n, listHint('customcode'));
    await write(ctx, c, async () => {
      for (const n of new Set(words)) {
        await deleteCustomcode(c, n);
        report(ctx, 'remove', `customcode ${n}`);
      }
    });
    dryRunDone(ctx);
  });
}
