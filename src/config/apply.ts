/**
 * Making the control database match a configuration document (`ibex apply`, and
 * `ibex import-bucardo`, which builds a document from Bucardo's control database).
 *
 * First a plan: every add, update and remove, compared object by object with what the control
 * database holds; new tables and sequences are looked up on their db (their key, as
 * `ibex add table` finds it). Then one control transaction writes the whole plan and checks
 * every sync it touches (validateSync: the rules, the two-writers rule, columns and keys on the
 * live dbs) before committing, and notifies the daemon, which reloads at once. Capture is
 * installed after the commit for the syncs that need it, as `ibex add sync` does.
 * Objects that are in the control database but not in the file are only removed with `prune`.
 */
import type pg from 'pg';
import {
  addRelgroupMembers, deleteCustomcode, deleteCustomname, deleteDb, deleteDbgroup, deleteRelations, deleteRelgroup,
  deleteSync, getCustomcode, insertCustomcode, insertDb, insertDbgroup, insertRelation, insertRelgroup, insertSync,
  listRelations, mapCustomcode, removeDbgroupMembers, setCustomname, setDbgroupAbout,
  setDbgroupMember, setRelationDeltaColumns, setRelationStrategy, setRelgroupAbout, syncsUsing, updateCustomcode, updateDb, updateSync,
  type DbRecord, type NewRelation, type RelationRecord, type SyncStatus,
} from '../control/config-store.js';
import { notifyControl } from '../control/daemon-store.js';
import { serverInfo } from '../db/catalog.js';
import { endQuietly } from '../db/connect.js';
import { configError } from '../errors.js';
import { runInstallCapture, runRemoveCapture, runUpgradeCapture, skipCapture } from './capture.js';
import type { ConfigContext } from './context.js';
import { DOC_SYNC_OPTIONS, type ConfigDocument, type DocDb } from './document.js';
import { openDb } from './dbs.js';
import { currentDocument, intervalText } from './export.js';
import { displayRelation, parseRelationTerm } from './names.js';
import { discover } from './relations.js';
import { readStrategy } from './strategies.js';
import { planOf, validateSync } from './sync-check.js';

/** One line of the plan. */
export interface PlanStep {
  action: 'add' | 'update' | 'remove' | 'keep';
  noun: 'db' | 'table' | 'sequence' | 'relgroup' | 'dbgroup' | 'sync' | 'customcode' | 'customname';
  name: string;
  /** What changes (update), or a note. */
  detail: string;
}

/** The result of planning: the steps, and what the writes need. */
export interface ApplyPlan {
  steps: PlanStep[];
  /** Nothing to add, update or remove. */
  empty: boolean;
}

/** Options of an apply. */
export interface ApplyOptions {
  prune: boolean;
  /** Passwords to store for dbs whose pass is "stored" (an import's; never printed). */
  passwords?: ReadonlyMap<string, string>;
  /** Install capture for the syncs added or regrouped (default true); false: they keep the file's status, uncaptured. */
  installCapture?: boolean;
}

/** JSON with sorted keys and no undefined values: equal configurations give equal text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

const same = (a: unknown, b: unknown): boolean => canonical(a) === canonical(b);

/** Write every interval of the file's syncs as the control database would print it back. */
async function normalizeIntervals(c: pg.Client, doc: ConfigDocument): Promise<void> {
  for (const [name, s] of Object.entries(doc.syncs)) {
    for (const k of ['checktime', 'fullcopy_interval', 'lifetime'] as const) {
      const v = s[k];
      if (v === null) continue;
      try {
        const r = await c.query(`SELECT $1::interval::text AS t, $1::interval > '0'::interval AS positive`, [v]);
        s[k] = r.rows[0].positive === true || r.rows[0].positive === 't' ? intervalText(r.rows[0].t as string) : null;
      } catch {
        throw configError(`sync ${name}: ${k} "${v}" is not an interval: write e.g. 30 seconds or 5 minutes`);
      }
    }
  }
}

/** The keys whose values differ, as "key: old → new" (passwords never shown). */
function diffText(before: Record<string, unknown>, after: Record<string, unknown>): string {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const show = (k: string, v: unknown): string => (v === undefined || v === null ? '(none)' : k === 'src_code' ? `(${String(v).length} chars)` : typeof v === 'object' ? JSON.stringify(v) : String(v));
  return keys.filter((k) => !same(before[k], after[k])).map((k) => `${k}: ${show(k, before[k])} → ${show(k, after[k])}`).join(', ');
}

function relKey(db: string, name: string): string {
  const t = parseRelationTerm(name);
  return `${db}\u0000${t.schema.text}\u0000${t.name.text}`;
}

function relParts(name: string): { schema: string; rel: string } {
  const t = parseRelationTerm(name);
  if (t.schema.pattern || t.name.pattern) throw configError(`"${name}" is a pattern: the file names each table exactly (schema.name; quote a name holding % or _ as "…")`);
  return { schema: t.schema.text, rel: t.name.text };
}

function dbColumns(d: DocDb): Partial<DbRecord> {
  return {
    dbtype: d.type, host: d.host ?? null, port: d.port ?? null, dbname: d.dbname ?? null, dbuser: d.user ?? null, conn: d.conn ?? null,
    service: d.service ?? null, status: d.status, about: d.about ?? null,
    ...(d.pass === 'stored' ? {} : { dbpass: null, dbpass_ref: d.pass ?? null }),
  };
}

/** Check the references inside a document (no I/O): every name it uses is defined in it. */
export function checkReferences(doc: ConfigDocument): void {
  const dbs = new Set(Object.keys(doc.dbs));
  const needDb = (db: string, where: string): void => {
    if (!dbs.has(db)) throw configError(`${where} names db ${db}, which is not under dbs: add it there or fix the name`);
  };
  const rels = new Set<string>();
  for (const [kind, list] of [['table', doc.tables], ['sequence', doc.sequences]] as const) {
    for (const r of list) {
      needDb(r.db, `${kind} ${r.name}`);
      relParts(r.name);
      const k = relKey(r.db, r.name);
      if (rels.has(k)) throw configError(`${kind} ${r.name} of db ${r.db} is listed twice: list it once`);
      rels.add(k);
      if (r.conflict_strategy !== undefined) {
        const s = readStrategy(r.conflict_strategy);
        if ('error' in s) throw configError(`${kind} ${r.name}: ${s.error}`);
      }
      if (r.delta_columns?.length && kind === 'sequence') throw configError(`sequence ${r.name} has delta_columns: only tables have counter columns; remove it`);
      if (r.delta_columns && new Set(r.delta_columns).size !== r.delta_columns.length) throw configError(`${kind} ${r.name}: delta_columns names a column twice: name each once`);
    }
  }
  for (const [name, g] of Object.entries(doc.relgroups)) {
    if (g.members.length && !g.db) throw configError(`relgroup ${name} has members but no db: say which db its tables are on (db: A)`);
    if (g.db) needDb(g.db, `relgroup ${name}`);
    for (const m of g.members) {
      const member = typeof m === 'string' ? m : m.name;
      if (!rels.has(relKey(g.db!, member))) throw configError(`relgroup ${name} holds ${member}, which is not under tables or sequences for db ${g.db}: list it there`);
    }
  }
  for (const [name, g] of Object.entries(doc.dbgroups)) {
    const seen = new Set<string>();
    for (const m of g.members) {
      needDb(m.db, `dbgroup ${name}`);
      if (seen.has(m.db)) throw configError(`dbgroup ${name} lists db ${m.db} twice: list each db once`);
      seen.add(m.db);
    }
  }
  for (const [name, s] of Object.entries(doc.syncs)) {
    if (!doc.relgroups[s.relgroup]) throw configError(`sync ${name} uses relgroup ${s.relgroup}, which is not under relgroups: add it there`);
    if (!doc.dbgroups[s.dbgroup]) throw configError(`sync ${name} uses dbgroup ${s.dbgroup}, which is not under dbgroups: add it there`);
    if (s.onetimecopy_from) needDb(s.onetimecopy_from, `sync ${name} onetimecopy_from`);
    if (s.conflict_strategy !== undefined) {
      const r = readStrategy(s.conflict_strategy);
      if ('error' in r) throw configError(`sync ${name}: ${r.error}`);
    }
  }
  for (const [name, code] of Object.entries(doc.customcodes)) {
    for (const m of code.maps) {
      if ('sync' in m) {
        if (!doc.syncs[m.sync]) throw configError(`customcode ${name} is mapped to sync ${m.sync}, which is not under syncs: add it there`);
      } else if (!rels.has(relKey(m.db, m.table))) throw configError(`customcode ${name} is mapped to table ${m.table} of db ${m.db}, which is not under tables: list it there`);
    }
  }
  for (const n of doc.customnames) {
    needDb(n.db, `customname of ${n.table}`);
    if (!rels.has(relKey(n.source, n.table))) throw configError(`customname of ${n.table} on db ${n.source}: that table is not under tables`);
  }
}

/** Normalize a document's sync for comparison: the strategy as stored. */
function syncValues(s: ConfigDocument['syncs'][string], defaultStrategy: string): Record<string, unknown> {
  const out: Record<string, unknown> = { relgroup: s.relgroup, dbgroup: s.dbgroup, status: s.status };
  for (const k of DOC_SYNC_OPTIONS) out[k] = s[k];
  const r = readStrategy(s.conflict_strategy ?? defaultStrategy);
  out.conflict_strategy = 'error' in r ? s.conflict_strategy : r.strategy;
  return out;
}

function relgroupMembers(g: ConfigDocument['relgroups'][string]): { name: string; priority: number }[] {
  return g.members.map((m) => {
    const name = typeof m === 'string' ? m : m.name;
    const p = relParts(name);
    return { name: displayRelation(p.schema, p.rel), priority: typeof m === 'string' ? 0 : m.priority };
  });
}

function codeValues(code: ConfigDocument['customcodes'][string]): Record<string, unknown> {
  return {
    whenrun: code.whenrun, language: code.language, src_code: code.src_code, src_path: code.src_path, status: code.status,
    priority: code.priority, about: code.about,
    maps: code.maps.map((m) => ('sync' in m ? { sync: m.sync, active: m.active, priority: m.priority } : { table: displayRelation(relParts(m.table).schema, relParts(m.table).rel), db: m.db, active: m.active, priority: m.priority })),
  };
}

/**
 * Plan and apply a document. In a dry run (`ctx.flags.dryRun`) the plan is printed and the writes
 * run in a transaction that is rolled back (every constraint is still checked); no capture is
 * installed or removed. Returns the plan.
 */
export async function applyDocument(ctx: ConfigContext, c: pg.Client, want: ConfigDocument, opts: ApplyOptions): Promise<ApplyPlan> {
  checkReferences(want);
  await normalizeIntervals(c, want);
  const have = await currentDocument(c);
  const defaultStrategy = 'latest';
  const steps: PlanStep[] = [];
  const writes: (() => Promise<void>)[] = [];
  const removals: (() => Promise<void>)[] = [];
  const step = (s: PlanStep): void => {
    steps.push(s);
  };
  const keep = (noun: PlanStep['noun'], name: string): void => step({ action: 'keep', noun, name, detail: 'not in the file: kept (--prune removes it)' });

  // dbs
  const newDbs = new Map<string, DbRecord>();
  for (const [name, d] of Object.entries(want.dbs)) {
    const cur = have.dbs[name];
    if (!cur) {
      if (d.pass === 'stored' && !opts.passwords?.has(name)) ctx.say(`note: db ${name} says pass: stored, but no password is stored for it: set one with "ibex update db ${name} pass=-", or use env:NAME`);
      const rec = { name, ...dbColumns(d) } as DbRecord;
      const pw = opts.passwords?.get(name);
      if (pw !== undefined) Object.assign(rec, { dbpass: pw, dbpass_ref: null });
      // What "ibex add db" records about the server (replica mode needs can_replica); --force skips it.
      if (rec.dbtype === 'postgres' && !ctx.flags.force) {
        const probe = await openDb(rec);
        try {
          const info = await serverInfo(probe);
          Object.assign(rec, { server_version: info.version, encoding: info.encoding, is_superuser: info.superuser, can_replica: info.canReplica });
        } finally {
          await endQuietly(probe);
        }
      }
      newDbs.set(name, rec);
      step({ action: 'add', noun: 'db', name, detail: `${d.type}${d.host ? ` host ${d.host}` : ''}${d.dbname ? ` dbname ${d.dbname}` : ''}${d.pass ? ` pass ${d.pass}` : ''}` });
      writes.push(async () => insertDb(c, rec));
    } else {
      const pw = opts.passwords?.get(name);
      const stored = pw === undefined ? undefined : ((await c.query(`SELECT dbpass FROM ibex.db WHERE name = $1`, [name])).rows[0]?.dbpass as string | null);
      const pwChanged = pw !== undefined && stored !== pw;
      if (!same(cur, d) || pwChanged) {
        step({ action: 'update', noun: 'db', name, detail: [diffText(cur, d), pwChanged ? 'pass: (changed)' : ''].filter(Boolean).join(', ') });
        writes.push(async () => updateDb(c, name, { ...dbColumns(d), ...(pwChanged ? { dbpass: pw, dbpass_ref: null } : {}) }));
      }
    }
  }

  // tables and sequences
  const registered = await listRelations(c);
  const regByKey = new Map(registered.map((r) => [`${r.db}\u0000${r.schemaname}\u0000${r.relname}`, r]));
  const wantRels = new Map<string, { kind: 'table' | 'sequence'; db: string; name: string; strategy: string | null; deltaColumns: string[] | null }>();
  for (const [kind, list] of [['table', want.tables], ['sequence', want.sequences]] as const) {
    for (const r of list) {
      const s = r.conflict_strategy === undefined ? null : (readStrategy(r.conflict_strategy) as { strategy: string }).strategy;
      wantRels.set(relKey(r.db, r.name), { kind, db: r.db, name: r.name, strategy: s, deltaColumns: r.delta_columns?.length ? r.delta_columns : null });
    }
  }
  // Tables whose counter columns change: the capture of their syncs is upgraded in the same transaction.
  const deltaChanged: number[] = [];
  const relIds = new Map<string, number>();
  for (const r of registered) relIds.set(`${r.db}\u0000${r.schemaname}\u0000${r.relname}`, r.id);
  const toDiscover = new Map<string, { kind: 'table' | 'sequence'; names: string[] }>();
  for (const [k, r] of wantRels) {
    const cur = regByKey.get(k);
    if (cur && cur.reltype !== r.kind) throw configError(`${r.name} of db ${r.db} is registered as a ${cur.reltype}, the file lists it as a ${r.kind}: move it to ${cur.reltype}s`);
    if (!cur) {
      const entry = toDiscover.get(`${r.db}\u0000${r.kind}`) ?? { kind: r.kind, names: [] };
      entry.names.push(r.name);
      toDiscover.set(`${r.db}\u0000${r.kind}`, entry);
    } else {
      if ((cur.conflict_strategy ?? null) !== r.strategy) {
        step({ action: 'update', noun: r.kind, name: `${r.name} (db ${r.db})`, detail: `conflict_strategy: ${cur.conflict_strategy ?? '(the sync\'s)'} → ${r.strategy ?? '(the sync\'s)'}` });
        writes.push(async () => setRelationStrategy(c, cur.id, r.strategy));
      }
      const curCols = cur.delta_columns?.length ? cur.delta_columns : null;
      if (!same(curCols, r.deltaColumns)) {
        const key = r.deltaColumns?.find((x) => cur.key_columns?.includes(x));
        if (key) throw configError(`table ${r.name} of db ${r.db}: delta_columns names its key column "${key}"; a counter must be a plain numeric column`);
        step({ action: 'update', noun: r.kind, name: `${r.name} (db ${r.db})`, detail: `delta_columns: ${curCols?.join(',') ?? '(none)'} → ${r.deltaColumns?.join(',') ?? '(none)'}` });
        writes.push(async () => setRelationDeltaColumns(c, cur.id, r.deltaColumns));
        deltaChanged.push(cur.id);
      }
    }
  }
  for (const [k, entry] of toDiscover) {
    const dbName = k.split('\u0000')[0]!;
    const db = newDbs.get(dbName) ?? (await c.query(`SELECT * FROM ibex.db WHERE name = $1`, [dbName])).rows[0] as DbRecord;
    if (db.dbtype !== 'postgres') throw configError(`db ${dbName} is a ${db.dbtype} db: tables are registered from a postgres db (a source)`);
    const client = await openDb(db);
    try {
      const found = await discover(c, db, client, entry.kind, { terms: entry.names.map(parseRelationTerm) }, ctx.flags.force);
      for (const rel of found.found) {
        const key = `${dbName}\u0000${rel.schemaname}\u0000${rel.relname}`;
        const w = wantRels.get(key)!;
        const keyCol = w.deltaColumns?.find((x) => rel.key_columns?.includes(x));
        if (keyCol) throw configError(`table ${w.name} of db ${dbName}: delta_columns names its key column "${keyCol}"; a counter must be a plain numeric column`);
        const row: NewRelation = { ...rel, conflict_strategy: w.strategy, delta_columns: w.deltaColumns };
        step({ action: 'add', noun: entry.kind, name: `${displayRelation(rel.schemaname, rel.relname)} (db ${dbName})`, detail: entry.kind === 'table' ? `key (${(rel.key_columns ?? []).join(', ')})` : '' });
        writes.push(async () => {
          relIds.set(key, await insertRelation(c, row));
        });
      }
    } finally {
      await endQuietly(client);
    }
  }
  const relId = (db: string, name: string): number => {
    const id = relIds.get(relKey(db, name));
    if (id === undefined) throw configError(`${name} of db ${db} is not registered`);
    return id;
  };

  // relgroups
  const touchedRelgroups = new Set<string>();
  for (const [name, g] of Object.entries(want.relgroups)) {
    const cur = have.relgroups[name];
    const members = relgroupMembers(g);
    if (!cur) {
      step({ action: 'add', noun: 'relgroup', name, detail: `${members.length} member(s)${g.db ? ` of db ${g.db}` : ''}` });
      writes.push(async () => {
        await insertRelgroup(c, name, g.about ?? null);
        for (const m of members) await addRelgroupMembers(c, name, [relId(g.db!, m.name)], m.priority);
      });
      continue;
    }
    const curMembers = relgroupMembers(cur);
    const byName = (l: { name: string; priority: number }[]): { name: string; priority: number }[] => [...l].sort((x, y) => x.name.localeCompare(y.name));
    if (!same(byName(curMembers), byName(members)) || cur.db !== g.db || (cur.about ?? null) !== (g.about ?? null)) {
      touchedRelgroups.add(name);
      const gone = curMembers.filter((m) => !members.some((x) => x.name === m.name));
      const added = members.filter((m) => !curMembers.some((x) => x.name === m.name));
      step({ action: 'update', noun: 'relgroup', name, detail: [added.length ? `add ${added.map((m) => m.name).join(' ')}` : '', gone.length ? `remove ${gone.map((m) => m.name).join(' ')}` : '', (cur.about ?? null) !== (g.about ?? null) ? 'about' : '', !gone.length && !added.length && cur.about === g.about ? 'priorities' : ''].filter(Boolean).join(', ') });
      writes.push(async () => {
        await c.query(`DELETE FROM ibex.relgroup_member WHERE relgroup = $1`, [name]);
        for (const m of members) await addRelgroupMembers(c, name, [relId(g.db!, m.name)], m.priority);
        await setRelgroupAbout(c, name, g.about ?? null);
      });
    }
  }

  // dbgroups
  const touchedDbgroups = new Set<string>();
  for (const [name, g] of Object.entries(want.dbgroups)) {
    const cur = have.dbgroups[name];
    const members = g.members.map((m) => ({ db: m.db, role: m.role, priority: m.priority }));
    const order = (l: typeof members): typeof members => [...l].sort((a, b) => a.db.localeCompare(b.db));
    if (!cur) {
      step({ action: 'add', noun: 'dbgroup', name, detail: members.map((m) => `${m.db}:${m.role}`).join(' ') });
      writes.push(async () => insertDbgroup(c, name, members, g.about ?? null));
      continue;
    }
    if (!same(order(cur.members), order(members)) || (cur.about ?? null) !== (g.about ?? null)) {
      touchedDbgroups.add(name);
      step({ action: 'update', noun: 'dbgroup', name, detail: `${cur.members.map((m) => `${m.db}:${m.role}`).join(' ')} → ${members.map((m) => `${m.db}:${m.role}`).join(' ')}` });
      writes.push(async () => {
        await removeDbgroupMembers(c, name, cur.members.filter((m) => !members.some((x) => x.db === m.db)).map((m) => m.db));
        for (const m of members) await setDbgroupMember(c, name, m);
        await setDbgroupAbout(c, name, g.about ?? null);
      });
    }
  }

  // syncs
  const install: { name: string; status: SyncStatus }[] = [];
  const validate: string[] = [];
  for (const [name, s] of Object.entries(want.syncs)) {
    const cur = have.syncs[name];
    const values = syncValues(s, defaultStrategy);
    const { relgroup, dbgroup, status, ...options } = values as { relgroup: string; dbgroup: string; status: SyncStatus } & Record<string, unknown>;
    if (!cur) {
      step({ action: 'add', noun: 'sync', name, detail: `relgroup ${relgroup}, dbgroup ${dbgroup}, conflict_strategy ${String(options.conflict_strategy)}${status !== 'active' ? `, ${status}` : ''}` });
      const capture = opts.installCapture !== false;
      writes.push(async () => insertSync(c, { name, relgroup, dbgroup, status: capture ? 'installing' : status, ...(options as object) }));
      if (capture) install.push({ name, status });
      validate.push(name);
      continue;
    }
    const before = syncValues(cur, defaultStrategy);
    const groupsChanged = cur.relgroup !== relgroup || cur.dbgroup !== dbgroup || touchedRelgroups.has(relgroup) || touchedDbgroups.has(dbgroup);
    if (!same(before, values)) {
      step({ action: 'update', noun: 'sync', name, detail: diffText(before, values) });
      const changes: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(values)) if (!same(before[k], v)) changes[k] = v;
      // A sync that never had capture (imported, inactive) gets it before it may run.
      const uncaptured = status !== 'inactive' && opts.installCapture !== false
        && Number((await c.query(`SELECT count(*) AS n FROM ibex.cursor WHERE sync = $1`, [name])).rows[0].n) === 0;
      if (uncaptured) {
        changes.status = 'installing';
        install.push({ name, status });
      }
      writes.push(async () => updateSync(c, name, changes));
      validate.push(name);
      if (uncaptured) continue;
    } else if (groupsChanged) validate.push(name);
    if (groupsChanged && opts.installCapture !== false) install.push({ name, status });
  }

  // customcodes
  for (const [name, code] of Object.entries(want.customcodes)) {
    const cur = have.customcodes[name];
    const values = codeValues(code);
    const write = async (): Promise<void> => {
      let id = (await getCustomcode(c, name))?.id;
      const cols = { whenrun: code.whenrun, src_code: code.src_code, src_path: code.src_path, language: code.language, status: code.status, priority: code.priority, about: code.about };
      if (id === undefined) id = await insertCustomcode(c, { name, ...cols });
      else {
        await updateCustomcode(c, id, cols);
        await c.query(`DELETE FROM ibex.customcode_map WHERE code = $1`, [id]);
      }
      for (const m of code.maps) {
        await mapCustomcode(c, id, 'sync' in m ? { sync: m.sync } : { relation: relId(m.db, m.table) }, m.priority);
        if (!m.active) await c.query(`UPDATE ibex.customcode_map SET active = false WHERE code = $1 AND sync IS NOT DISTINCT FROM $2 AND relation IS NOT DISTINCT FROM $3`, [id, 'sync' in m ? m.sync : null, 'sync' in m ? null : relId(m.db, m.table)]);
      }
    };
    if (!cur) {
      step({ action: 'add', noun: 'customcode', name, detail: `${code.whenrun}${code.status === 'inactive' ? ', inactive' : ''}, ${code.maps.length} mapping(s)` });
      writes.push(write);
    } else if (!same(codeValues(cur), values)) {
      step({ action: 'update', noun: 'customcode', name, detail: diffText(codeValues(cur), values) });
      writes.push(write);
    }
  }

  // customnames
  const cnKey = (n: ConfigDocument['customnames'][number]): string => `${relKey(n.source, n.table)}\u0000${n.db}`;
  const haveNames = new Map(have.customnames.map((n) => [cnKey(n), n]));
  const wantNames = new Map(want.customnames.map((n) => [cnKey(n), n]));
  for (const [k, n] of wantNames) {
    const cur = haveNames.get(k);
    if (cur?.name === n.name) continue;
    step({ action: cur ? 'update' : 'add', noun: 'customname', name: `${n.table} on db ${n.db}`, detail: cur ? `${cur.name} → ${n.name}` : n.name });
    writes.push(async () => setCustomname(c, relId(n.source, n.table), n.db, n.name));
  }

  // What is in the control database but not in the file: removed with prune, in dependency order.
  const removeStep = (noun: PlanStep['noun'], name: string, fn: () => Promise<void>, detail = ''): void => {
    if (!opts.prune) return keep(noun, name);
    step({ action: 'remove', noun, name, detail });
    removals.push(fn);
  };
  for (const [k, n] of haveNames) {
    if (!wantNames.has(k)) removeStep('customname', `${n.table} on db ${n.db}`, async () => void (await deleteCustomname(c, relIds.get(relKey(n.source, n.table))!, n.db)));
  }
  for (const name of Object.keys(have.customcodes)) if (!want.customcodes[name]) removeStep('customcode', name, async () => deleteCustomcode(c, name));
  const prunedSyncs: string[] = [];
  for (const name of Object.keys(have.syncs)) {
    if (want.syncs[name]) continue;
    removeStep('sync', name, async () => deleteSync(c, name), 'its capture is removed from its dbs first');
    if (opts.prune) prunedSyncs.push(name);
  }
  for (const name of Object.keys(have.dbgroups)) if (!want.dbgroups[name]) removeStep('dbgroup', name, async () => deleteDbgroup(c, name));
  for (const name of Object.keys(have.relgroups)) if (!want.relgroups[name]) removeStep('relgroup', name, async () => deleteRelgroup(c, name));
  for (const r of registered) {
    const k = `${r.db}\u0000${r.schemaname}\u0000${r.relname}`;
    if (!wantRels.has(k)) removeStep(r.reltype, `${displayRelation(r.schemaname, r.relname)} (db ${r.db})`, async () => deleteRelations(c, [r.id]));
  }
  for (const name of Object.keys(have.dbs)) if (!want.dbs[name]) removeStep('db', name, async () => deleteDb(c, name));

  const empty = steps.every((s) => s.action === 'keep');
  for (const s of steps) ctx.say(planLine(s, ctx.flags.dryRun));
  if (empty) {
    ctx.say('no changes: the control database already matches the file');
    return { steps, empty };
  }

  // Capture of pruned syncs goes first, as "ibex remove sync" does: the rows that name its objects are still there.
  if (!ctx.flags.dryRun) for (const s of prunedSyncs) await runRemoveCapture(ctx, c, s);

  await c.query('BEGIN');
  try {
    for (const r of removals) await r();
    for (const w of writes) await w();
    // Syncs that get capture installed below read the new counter columns then; the others upgrade now.
    if (deltaChanged.length) {
      const installing = new Set(install.map((s) => s.name));
      await runUpgradeCapture(ctx, c, (await syncsUsing(c, { relations: deltaChanged })).filter((s) => !installing.has(s)));
    }
    for (const s of validate) await validateSync(c, await planOf(c, s));
    if (ctx.flags.dryRun) {
      await c.query('ROLLBACK');
    } else {
      // The daemon re-reads the configuration when this commits (it LISTENs on the control channel).
      await notifyControl(c, 'reload');
      await c.query('COMMIT');
    }
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
  if (ctx.flags.dryRun) {
    for (const s of install) ctx.say(`would install capture for sync ${s.name}`);
    ctx.say('dry run: nothing was changed');
    return { steps, empty };
  }
  const counts = (a: PlanStep['action']): number => steps.filter((s) => s.action === a).length;
  ctx.say(`applied: ${counts('add')} added, ${counts('update')} changed, ${counts('remove')} removed`);
  for (const s of install) {
    await runInstallCapture(ctx, c, s.name, s.status);
    if (!skipCapture()) ctx.say(`capture installed for sync ${s.name}`);
  }
  return { steps, empty };
}

/** One plan line, terraform style: + add, ~ update, - remove, = kept. */
export function planLine(s: PlanStep, dryRun: boolean): string {
  const mark = { add: '+', update: '~', remove: '-', keep: '=' }[s.action];
  const verb = s.action === 'keep' ? 'keep' : dryRun ? `would ${s.action}` : s.action;
  return `${mark} ${verb} ${s.noun} ${s.name}${s.detail ? `: ${s.detail}` : ''}`;
}

export type { RelationRecord };
