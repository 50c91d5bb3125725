/**
 * `add | list | update | remove sync`. A sync is written only after every
 * check passed (sync-check.ts); its rows are committed with status
 * `installing`, then capture is installed; if that fails every row this
 * command added is deleted again.
 */
import {
  SYNC_OPTION_COLUMNS, defaultConflictStrategy, deleteSync, getDbgroup, getRelgroup, getSync, listDbgroups, listRelgroups, listSyncs, relationsById, updateSync, type RelationRecord, type SyncOptions, type SyncRecord, type SyncStatus,
} from '../../control/config-store.js';
import type pg from 'pg';
import { errorText } from '../../db/connect.js';
import { configError, notFound, usage } from '../../errors.js';
import { allowOnly, parseDbRoles } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, printRows } from './common.js';
import { runInstallCapture, runRemoveCapture } from '../../config/capture.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { listHint } from '../../config/dbs.js';
import { createSync, type NewSync } from '../../config/sync.js';
import { checkObjectName, displayRelation, matchesFilter, parseRelationTerm, splitList } from '../../config/names.js';
import { strategyOption } from '../../config/strategies.js';
import { SYNC_ALIASES, SYNC_OPTIONS, dealias, parseSyncOption } from './options.js';
import { optionDefault } from '../../config/options.js';
import { checkRules, planOf, validateSync } from '../../config/sync-check.js';
import { notifyConfigChanged } from '../../control/daemon-store.js';
import { keyRisks } from '../../keys/sequences.js';
import { keySequencesOf, withSources } from '../../keys/sources.js';
import { interleave } from '../sequences.js';

const GROUP_KEYS = ['relgroup', 'tables', 'dbs', 'dbgroup'];
/** Words of add sync that act once and are not stored. */
const ACTION_KEYS = ['keys'];
const OPTION_KEYS = ['conflict_strategy', 'onetimecopy_from', 'status', ...Object.keys(SYNC_OPTIONS)];

/** Parsed option values of add/update sync (only those given). */
type OptionValues = Partial<SyncOptions> & { status?: 'active' | 'inactive' };

/** Parse the sync options given on the command line (no I/O). */
function parseOptions(o: Map<string, string>): OptionValues {
  const out: Record<string, unknown> = {};
  for (const [k, v] of o) {
    if (GROUP_KEYS.includes(k) || ACTION_KEYS.includes(k)) continue;
    if (k === 'conflict_strategy') out.conflict_strategy = strategyOption(v).strategy;
    else if (k === 'onetimecopy_from') {
      if (v !== '') checkObjectName('db', v);
      out.onetimecopy_from = v === '' ? null : v;
    } else if (k === 'status') {
      const s = v.toLowerCase();
      if (s !== 'active' && s !== 'inactive') throw usage(`bad value "${v}" for status: use active or inactive (pause and resume a sync with "ibex pause" / "ibex resume")`);
      out.status = s;
    } else out[k] = parseSyncOption(k as keyof typeof SYNC_OPTIONS, v);
  }
  return out as OptionValues;
}

/** `ibex add sync <name> relgroup=<g>|tables=<t,…> dbs=<A:source,…>|dbgroup=<g> [options]` */
export async function addSync(ctx: Context, args: string[]): Promise<void> {
  const { words, options: raw } = parseNounArgs(args, 'add sync');
  const o = dealias(raw, SYNC_ALIASES);
  allowOnly(o, [...GROUP_KEYS, ...ACTION_KEYS, ...OPTION_KEYS], 'add sync');
  const keys = o.get('keys');
  if (keys !== undefined && keys !== 'interleave' && keys !== 'check') throw usage(`bad value "${keys}" for keys: use interleave (each source hands out its own residue class) or check (only warn)`);
  const [name, ...extra] = words;
  if (!name) throw usage('add sync needs a name: ibex add sync <name> relgroup=<g> dbs=A:source,B:source');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for add sync: give one name, then key=value options`);
  checkObjectName('sync', name);
  if (o.has('relgroup') === o.has('tables')) throw usage(`add sync ${name} needs ${o.has('relgroup') ? 'only one of ' : ''}relgroup=<relgroup> or tables=<t1,t2>`);
  if (o.has('dbs') === o.has('dbgroup')) throw usage(`add sync ${name} needs ${o.has('dbs') ? 'only one of ' : ''}dbs=<A:source,B:source,C:target> or dbgroup=<dbgroup>`);
  const values = parseOptions(o);
  const requested: SyncStatus = values.status ?? 'active';
  delete values.status;

  const spec = o.get('dbs');
  const dbs: NewSync['dbs'] = spec === undefined
    ? { dbgroup: o.get('dbgroup')! }
    : { members: parseDbRoles(spec).map((m) => ({ db: m.db, role: m.role, priority: 0 })), ...(spec.includes(':') || spec.includes(',') ? {} : { orDbgroup: spec.trim() }) };
  const relations: NewSync['relations'] = o.has('relgroup') ? { relgroup: o.get('relgroup')! } : { tables: splitList(o.get('tables')!).map(parseRelationTerm) };
  await ctx.withControl(async (c) => {
    await createSync(ctx, c, { name, options: values, status: requested, dbs, relations });
    if (ctx.flags.dryRun) return;
    // Told now, before the key check, so the daemon adopts the sync (and starts its onetimecopy) at once.
    await notifyConfigChanged(c);
    await checkKeys(ctx, c, name, keys === 'interleave');
  });
}

/**
 * After a multi-master sync is added: warn about keys two sources can hand out alike, or (keys=interleave)
 * interleave them at once. The sync stands either way: a failure here is reported, not undone.
 */
async function checkKeys(ctx: Context, c: pg.Client, sync: string, interleaveNow: boolean): Promise<void> {
  try {
    await withSources(c, sync, async (sessions, tables) => {
      if (sessions.size < 2) {
        if (interleaveNow) ctx.say(`keys=interleave: sync ${sync} has fewer than two sources; nothing to interleave`);
        return;
      }
      if (interleaveNow) await interleave(ctx, sessions, tables, { sync, yes: true, modulus: undefined });
      else for (const r of keyRisks(sync, await keySequencesOf(sessions, tables))) ctx.say(`warning: ${r.message}`, true);
    });
  } catch (err) {
    ctx.say(`warning: sync ${sync} was added, but its keys could not be checked: ${errorText(err)}; run "ibex sequences ${sync}"`, true);
  }
}

/** The default of each option (conflict_strategy: the configured default). */
function defaults(defaultStrategy: string): Record<string, unknown> {
  const out: Record<string, unknown> = { conflict_strategy: defaultStrategy, onetimecopy_from: null };
  for (const [k, spec] of Object.entries(SYNC_OPTIONS)) out[k] = optionDefault(spec);
  return out;
}

function optionText(v: unknown): string {
  if (typeof v === 'boolean') return v ? '1' : '0';
  return String(v);
}

/** `ibex list syncs [name|pattern …] [--json]` */
export async function listSync(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list syncs');
  allowOnly(options, [], 'list syncs');
  await ctx.withControl(async (c) => {
    const syncs = (await listSyncs(c)).filter((s) => matchesFilter(s.name, words));
    const def = defaults(await defaultConflictStrategy(c));
    const dbgroups = await listDbgroups(c);
    const relgroups = await listRelgroups(c);
    const rels = await relationsById(c, relgroups.flatMap((g) => g.members.map((m) => m.relation)));
    const rows = syncs.map((s) => {
      const members = dbgroups.find((g) => g.name === s.dbgroup)?.members ?? [];
      const relIds = relgroups.find((g) => g.name === s.relgroup)?.members.map((m) => m.relation) ?? [];
      const mine = relIds.map((id) => rels.find((r) => r.id === id)).filter((r): r is RelationRecord => !!r);
      const opts: Record<string, unknown> = {};
      const changed: Record<string, unknown> = {};
      for (const k of SYNC_OPTION_COLUMNS) {
        if (k === 'about') continue;
        opts[k] = s[k];
        if (s[k] !== def[k]) changed[k] = s[k];
      }
      return {
        name: s.name, status: s.status, status_reason: s.status_reason, relgroup: s.relgroup, dbgroup: s.dbgroup,
        dbs: members.map((m) => ({ db: m.db, role: m.role })),
        tables: mine.filter((r) => r.reltype === 'table').map((r) => displayRelation(r.schemaname, r.relname)),
        sequences: mine.filter((r) => r.reltype === 'sequence').map((r) => displayRelation(r.schemaname, r.relname)),
        conflict_strategy: s.conflict_strategy, clock: s.clock, options: opts, changed_options: changed, about: s.about,
      };
    });
    printRows(ctx, ['sync', 'status', 'relgroup', 'dbs', 'strategy', 'options'],
      rows.map((r) => [
        r.name, r.status + (r.status_reason ? ` (${r.status_reason})` : ''), `${r.relgroup} (${r.tables.length + r.sequences.length})`,
        r.dbs.map((d) => `${d.db}:${d.role}`).join(' '), r.conflict_strategy,
        Object.entries(r.changed_options).filter(([k]) => k !== 'conflict_strategy').map(([k, v]) => `${k}=${optionText(v)}`).join(' '),
      ]),
      rows, words.length ? `no sync matches ${words.join(' ')}` : 'no syncs: add one with "ibex add sync <name> relgroup=<g> dbs=A:source,B:source"');
  });
}

/**
 * `ibex update sync <name> key=value …`: options, status=active|inactive, and
 * relgroup=/dbgroup= (another existing group: validated like add sync, the
 * two-writers rule included, then capture is brought up to date).
 */
export async function updateSyncVerb(ctx: Context, args: string[]): Promise<void> {
  const { words, options: raw } = parseNounArgs(args, 'update sync');
  const o = dealias(raw, SYNC_ALIASES);
  allowOnly(o, ['relgroup', 'dbgroup', ...OPTION_KEYS], 'update sync');
  const [name, ...extra] = words;
  if (!name) throw usage('update sync needs a name: ibex update sync <name> key=value …');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for update sync: give one name, then key=value options`);
  if (o.size === 0) throw usage(`update sync ${name} needs something to change: e.g. autokick=0`);
  const values = parseOptions(o);
  await ctx.withControl(async (c) => {
    const s = await getSync(c, name);
    if (!s) throw notFound('sync', name, listHint('sync'));
    const relgroup = o.get('relgroup');
    const dbgroup = o.get('dbgroup');
    if (relgroup !== undefined && !(await getRelgroup(c, relgroup))) throw notFound('relgroup', relgroup, listHint('relgroup'));
    if (dbgroup !== undefined && !(await getDbgroup(c, dbgroup))) throw notFound('dbgroup', dbgroup, listHint('dbgroup'));
    const groupsChanged = (relgroup !== undefined && relgroup !== s.relgroup) || (dbgroup !== undefined && dbgroup !== s.dbgroup);
    const plan = await planOf(c, s, {
      ...(relgroup !== undefined ? { relgroup } : {}), ...(dbgroup !== undefined ? { dbgroup } : {}),
      ...(values.conflict_strategy !== undefined ? { conflict_strategy: values.conflict_strategy } : {}),
      ...(values.clock !== undefined ? { clock: values.clock } : {}),
      ...(values.onetimecopy_from !== undefined ? { onetimecopy_from: values.onetimecopy_from } : {}),
    });
    if (groupsChanged || (values.clock === 'commit' && s.clock !== 'commit')) await validateSync(c, plan);
    else await checkRules(c, plan);

    const changes: Record<string, unknown> = {};
    const shown: string[] = [];
    const record = s as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries({ ...values, ...(relgroup !== undefined ? { relgroup } : {}), ...(dbgroup !== undefined ? { dbgroup } : {}) })) {
      if (k === 'status') continue;
      if (record[k] === v || (typeof v === 'string' && k.match(/checktime|interval|lifetime/) && record[k] !== null && intervalEq(record[k], v))) continue;
      changes[k] = v;
      shown.push(`${k}=${v === null ? '(none)' : optionText(v)}`);
    }
    let status: SyncStatus | undefined;
    if (values.status && values.status !== s.status) {
      if (s.status === 'installing') throw configError(`sync ${name} is still being installed: remove it and add it again`);
      status = values.status;
      changes.status = status;
      shown.push(`status=${status}`);
    }
    if (shown.length === 0) {
      ctx.say(`no change needed for sync ${name}`);
      return;
    }
    const keepStatus = (status ?? s.status) as SyncStatus;
    await write(ctx, c, async () => {
      await updateSync(c, name, changes as Parameters<typeof updateSync>[2]);
      report(ctx, 'change', `sync ${name}: ${shown.join(' ')}`);
      if (groupsChanged && ctx.flags.dryRun) await runInstallCapture(ctx, c, name, keepStatus);
    });
    if (groupsChanged && !ctx.flags.dryRun) {
      await runInstallCapture(ctx, c, name, keepStatus, async () => {
        await write(ctx, c, async () => updateSync(c, name, { relgroup: s.relgroup, dbgroup: s.dbgroup, status: s.status }));
      });
    }
    dryRunDone(ctx);
  });
}

/** Compare a stored interval text with a parsed one ("30 seconds" vs "00:00:30"). */
function intervalEq(stored: unknown, given: string): boolean {
  const secs = (t: string): number | undefined => {
    const m = /^(\d+(?:\.\d+)?) seconds$/.exec(t);
    if (m) return Number(m[1]);
    const h = /^(?:(\d+) days? ?)?(\d+):(\d\d):(\d\d(?:\.\d+)?)$/.exec(t);
    if (h) return Number(h[1] ?? 0) * 86400 + Number(h[2]) * 3600 + Number(h[3]) * 60 + Number(h[4]);
    return undefined;
  };
  const a = secs(String(stored));
  return a !== undefined && a === secs(given);
}

/** `ibex remove sync <name …>`: capture first (what it installed), then the rows (cursors etc cascade). */
export async function removeSync(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove sync');
  allowOnly(options, [], 'remove sync');
  if (words.length === 0) throw usage('remove sync needs a name: ibex remove sync <name …>');
  await ctx.withControl(async (c) => {
    const names = [...new Set(words)];
    const found: SyncRecord[] = [];
    for (const n of names) {
      const s = await getSync(c, n);
      if (!s) throw notFound('sync', n, listHint('sync'));
      found.push(s);
    }
    for (const s of found) await runRemoveCapture(ctx, c, s.name);
    await write(ctx, c, async () => {
      for (const s of found) {
        await deleteSync(c, s.name);
        report(ctx, 'remove', `sync ${s.name} (relgroup ${s.relgroup} and dbgroup ${s.dbgroup} stay)`);
      }
    });
    dryRunDone(ctx);
  });
}
