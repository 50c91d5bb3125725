/**
 * Reading a live Bucardo 5.x control database into an ibex configuration document
 * (`ibex import-bucardo`). Every Bucardo setting is either mapped or named in one line of the
 * report as not supported; nothing is dropped silently. The document is then applied like a
 * file (apply.ts), its syncs inactive and without capture: `--cutover` moves the writes over.
 */
import type pg from 'pg';
import { IbexError } from '../errors.js';
import { DB_TYPES, type WHENRUN } from '../control/config-store.js';
import { DOCUMENT, type ConfigDocument } from './document.js';
import { intervalText } from './export.js';
import { displayRelation } from './names.js';
import { readStrategy } from './strategies.js';

/** What an import found: the document, the passwords (kept apart: never printed), and the report. */
export interface BucardoImport {
  doc: ConfigDocument;
  passwords: Map<string, string>;
  /** One line per mapping worth telling and per setting ibex does not support. */
  notes: string[];
  /** Bucardo's syncs, for the cut-over. */
  syncs: string[];
}

type Row = Record<string, unknown>;

/** A boolean column as the session returns it (ibex's sessions read every value as text). */
function flag(v: unknown): boolean | null {
  if (v === null || v === undefined) return null;
  return v === true || v === 't' || v === 'true';
}

async function rows(c: pg.Client, text: string): Promise<Row[]> {
  return (await c.query(text)).rows as Row[];
}

/** Bucardo's whenrun values and the ibex hook that runs at the same point (undefined: Bucardo never runs it). */
const WHENRUN_OF: Record<string, (typeof WHENRUN)[number] | undefined> = {
  before_sync: 'before_sync', before_txn: 'before_txn', before_check_rows: 'before_check_rows', conflict: 'conflict',
  exception: 'exception', before_trigger_enable: 'before_commit', after_txn: 'after_txn', after_sync: 'after_sync',
  before_trigger_disable: undefined, after_trigger_disable: undefined, after_table_sync: undefined, after_trigger_enable: undefined,
};

/**
 * A Bucardo conflict_strategy as ibex stores it, with the line that says how the two differ.
 * Bucardo decides per table (the db whose delta table holds the latest transaction wins every
 * conflicting row of that table); ibex decides per row.
 */
export function mapStrategy(sync: string, value: string): { strategy: string; note?: string } {
  const v = value.trim();
  switch (v.toLowerCase()) {
    case 'bucardo_latest':
      return { strategy: 'latest', note: `sync ${sync}: conflict_strategy bucardo_latest → latest: Bucardo lets the db with the most recent change to the table win every conflicting row of that table; ibex compares the change times of each row` };
    case 'bucardo_latest_all_tables':
      return { strategy: 'latest', note: `sync ${sync}: conflict_strategy bucardo_latest_all_tables → latest: Bucardo picks one winning db for all tables of a run; ibex compares the change times of each row` };
    case 'bucardo_abort':
      return { strategy: 'abort', note: `sync ${sync}: conflict_strategy bucardo_abort → abort: both stop the sync on a conflict; ibex logs the conflicting rows first` };
    case 'bucardo_custom':
      return { strategy: 'custom', note: `sync ${sync}: conflict_strategy bucardo_custom → custom: ibex asks the sync's conflict customcode per row (its Perl code is imported inactive: rewrite it, docs/customcode.md)` };
    case 'bucardo_source': case 'bucardo_target': case 'bucardo_skip': case 'bucardo_random':
      return { strategy: v.toLowerCase().slice(8), note: `sync ${sync}: conflict_strategy ${v} → ${v.toLowerCase().slice(8)}: Bucardo 5 documents it but pauses the sync on it; ibex implements it, per row` };
    default: {
      const r = readStrategy(v.replace(/\s+/g, ','));
      if ('error' in r) throw new IbexError('config', `sync ${sync}: Bucardo conflict_strategy "${v}" is neither a strategy nor a db list: fix it in Bucardo (bucardo update sync ${sync} conflict_strategy=…) and import again`);
      return { strategy: r.strategy, note: `sync ${sync}: conflict_strategy "${v}" → ${r.strategy}: the first db in the list that changed a row wins it, in both (Bucardo per table batch, ibex per row)` };
    }
  }
}

/** A Perl customcode as an inactive ibex module that keeps the original source for its rewrite. */
function customcodeModule(name: string, perl: string): string {
  const kept = perl.replace(/\*\//g, '* /');
  return [
    `// Imported from Bucardo customcode "${name}": Bucardo's custom code is Perl and cannot run in ibex.`,
    `// Rewrite it as a TypeScript hook (docs/customcode.md), then: ibex update customcode ${name} status=active`,
    '/* The original Perl source:',
    kept,
    '*/',
    `export default function notRewritten(): never {`,
    `  throw new Error('customcode ${name} is Bucardo Perl that was not rewritten yet');`,
    '}',
    '',
  ].join('\n');
}

/** Read Bucardo's configuration (schema `bucardo` of the database `c` is connected to). */
export async function readBucardo(c: pg.Client): Promise<BucardoImport> {
  const has = await c.query(`SELECT to_regclass('bucardo.sync') IS NOT NULL AS ok`);
  if (!flag(has.rows[0].ok)) throw new IbexError('config', 'this database holds no Bucardo control schema (bucardo.sync): point --from at the database "bucardo install" created');
  const notes: string[] = [];
  const passwords = new Map<string, string>();
  const doc: Record<string, unknown> = { version: 1 };
  const unsupported = (what: string, why: string): void => void notes.push(`not supported: ${what}: ${why}`);

  // dbs
  const dbs: Record<string, unknown> = {};
  const skippedDbs = new Set<string>();
  for (const d of await rows(c, `SELECT * FROM bucardo.db ORDER BY name`)) {
    const name = String(d.name);
    const type = String(d.dbtype ?? 'postgres');
    if (!(DB_TYPES as readonly string[]).includes(type)) {
      skippedDbs.add(name);
      unsupported(`db ${name}`, `dbtype ${type} has no ibex target (ibex has ${DB_TYPES.join(', ')}); it is left out, with every sync that uses it`);
      continue;
    }
    const entry: Record<string, unknown> = { type };
    if (d.dbhost) entry.host = String(d.dbhost);
    if (d.dbport) entry.port = Number(d.dbport);
    if (d.dbname) entry.dbname = String(d.dbname);
    if (d.dbuser) entry.user = String(d.dbuser);
    if (d.dbconn) entry.conn = String(d.dbconn);
    if (d.dbservice) entry.service = String(d.dbservice);
    if (d.dbpass) {
      passwords.set(name, String(d.dbpass));
      entry.pass = 'stored';
      notes.push(`db ${name}: its password is imported into the control database (replace it with a reference: pass: env:NAME in "ibex apply")`);
    } else if (d.pgpass) {
      entry.pass = 'pgpass';
      notes.push(`db ${name}: Bucardo read its password from the pgpass file ${String(d.pgpass)}; ibex uses libpq's: set PGPASSFILE=${String(d.pgpass)} for ibex, or copy the line to ~/.pgpass`);
    }
    if (d.dbdsn) unsupported(`db ${name} dbdsn`, 'a DBI DSN is Perl\'s: give the connection as host/port/dbname/conn (ibex update db)');
    const status = String(d.status ?? 'active');
    entry.status = status === 'inactive' ? 'inactive' : 'active';
    if (status === 'stalled') notes.push(`db ${name}: Bucardo marked it stalled; imported as active`);
    if (flag(d.server_side_prepares) === false) notes.push(`db ${name}: server_side_prepares=off needs nothing in ibex: it prepares no named statements (pgbouncer in transaction mode works as is)`);
    if (flag(d.makedelta) === true) unsupported(`db ${name} makedelta`, 'ibex does not cascade changes it applied to further syncs');
    dbs[name] = entry;
  }
  doc.dbs = dbs;

  // tables and sequences
  const goats = await rows(c, `SELECT * FROM bucardo.goat ORDER BY schemaname, tablename, db`);
  const goatById = new Map<number, Row>(goats.map((g) => [Number(g.id), g]));
  const goatName = (g: Row): string => displayRelation(String(g.schemaname), String(g.tablename));
  const tables: unknown[] = [];
  const sequences: unknown[] = [];
  for (const g of goats) {
    if (skippedDbs.has(String(g.db))) continue;
    const label = `${g.reltype} ${goatName(g)} (db ${g.db})`;
    (g.reltype === 'sequence' ? sequences : tables).push({ db: String(g.db), name: goatName(g) });
    if (g.reltype !== 'table') continue;
    if (g.conflict_strategy) notes.push(`${label}: its conflict_strategy ${String(g.conflict_strategy)} is ignored by Bucardo (the sync's applies); not imported`);
    if (g.makedelta && g.makedelta !== 'off') unsupported(`${label} makedelta=${String(g.makedelta)}`, 'ibex does not cascade changes it applied to further syncs');
    if (flag(g.ghost) === true) unsupported(`${label} ghost`, 'every table of a sync is copied in a fullcopy');
    if (g.rebuild_index !== null && g.rebuild_index !== undefined && Number(g.rebuild_index) !== 0) unsupported(`${label} rebuild_index=${String(g.rebuild_index)}`, 'ibex sets rebuild_index per sync');
    if (flag(g.analyze_after_copy) === false) unsupported(`${label} analyze_after_copy=off`, 'ibex sets analyze_after_copy per sync');
    if (flag(g.vacuum_after_copy) === false) notes.push(`${label}: vacuum_after_copy=off per table; ibex sets it per sync`);
    if (flag(g.strict_checking) === false) unsupported(`${label} strict_checking=off`, 'ibex sets strict_checking per sync');
    if (flag(g.autokick) === false) notes.push(`${label}: autokick=off per table is ignored by Bucardo; not imported`);
  }
  doc.tables = tables;
  doc.sequences = sequences;

  // relgroups (herds)
  const relgroups: Record<string, unknown> = {};
  const herdmap = await rows(c, `SELECT herd, goat, priority FROM bucardo.herdmap ORDER BY herd, priority DESC, goat`);
  for (const h of await rows(c, `SELECT * FROM bucardo.herd ORDER BY name`)) {
    const name = String(h.name);
    const members = herdmap.filter((m) => m.herd === name).map((m) => goatById.get(Number(m.goat))!).filter((g) => !skippedDbs.has(String(g.db)));
    const prio = new Map(herdmap.filter((m) => m.herd === name).map((m) => [Number(m.goat), Number(m.priority ?? 0)]));
    relgroups[name] = {
      ...(members[0] ? { db: String(members[0].db) } : {}),
      members: members.map((g) => (prio.get(Number(g.id)) ? { name: goatName(g), priority: prio.get(Number(g.id)) } : goatName(g))),
      ...(h.about ? { about: String(h.about) } : {}),
    };
  }
  doc.relgroups = relgroups;

  // dbgroups
  const dbgroups: Record<string, unknown> = {};
  const dbmap = await rows(c, `SELECT db, dbgroup, priority, role FROM bucardo.dbmap ORDER BY dbgroup, db`);
  for (const g of await rows(c, `SELECT * FROM bucardo.dbgroup ORDER BY name`)) {
    const name = String(g.name);
    const members = dbmap.filter((m) => m.dbgroup === name && !skippedDbs.has(String(m.db))).map((m) => ({
      db: String(m.db), role: String(m.role ?? 'target'), ...(Number(m.priority ?? 0) ? { priority: Number(m.priority) } : {}),
    }));
    if (members.length === 0) {
      unsupported(`dbgroup ${name}`, 'it has no db ibex can use; left out');
      continue;
    }
    dbgroups[name] = { members, ...(g.about ? { about: String(g.about) } : {}) };
  }
  doc.dbgroups = dbgroups;

  // syncs
  const syncs: Record<string, unknown> = {};
  const syncNames: string[] = [];
  const syncRows = await rows(c, `SELECT *, checktime::text AS checktime_t, lifetime::text AS lifetime_t, overdue::text AS overdue_t,
      expired::text AS expired_t FROM bucardo.sync ORDER BY name`);
  const perSyncConfig = await rows(c, `SELECT name, setting, item FROM bucardo.bucardo_config WHERE type = 'sync' ORDER BY item, name`).catch(() => []);
  for (const s of syncRows) {
    const name = String(s.name);
    syncNames.push(name);
    if (!s.herd || !s.dbs || !dbgroups[String(s.dbs)]) {
      unsupported(`sync ${name}`, `it has ${!s.herd ? 'no relgroup' : !s.dbs ? 'no dbgroup' : `no usable dbgroup (${String(s.dbs)})`}; left out`);
      continue;
    }
    const mapped = mapStrategy(name, String(s.conflict_strategy ?? 'bucardo_latest'));
    if (mapped.note) notes.push(mapped.note);
    const onetimecopy = Number(s.onetimecopy ?? 0);
    const entry: Record<string, unknown> = {
      relgroup: String(s.herd), dbgroup: String(s.dbs),
      // Bucardo keeps replicating until the cut-over: ibex's sync waits, inactive and without capture.
      status: 'inactive',
      conflict_strategy: mapped.strategy,
      onetimecopy: onetimecopy === 1 || onetimecopy === 2 ? onetimecopy : 0,
      autokick: flag(s.autokick) !== false,
      checktime: intervalText(s.checktime_t === null ? null : String(s.checktime_t)),
      stayalive: flag(s.stayalive) !== false,
      kidsalive: flag(s.kidsalive) !== false,
      deletemethod: String(s.deletemethod ?? 'delete'),
      isolation_level: s.isolation_level ? String(s.isolation_level).toLowerCase().replace(/_/g, ' ') : 'repeatable read',
      rebuild_index: Math.min(2, Math.max(0, Number(s.rebuild_index ?? 0))),
      analyze_after_copy: flag(s.analyze_after_copy) !== false,
      vacuum_after_copy: flag(s.vacuum_after_copy) === true,
      strict_checking: flag(s.strict_checking) !== false,
      lifetime: intervalText(s.lifetime_t === null ? null : String(s.lifetime_t)),
      maxkicks: Number(s.maxkicks ?? 0) === 0 ? null : Number(s.maxkicks),
    };
    if (s.status === 'inactive') notes.push(`sync ${name}: inactive in Bucardo; the cut-over leaves it inactive in ibex`);
    if (onetimecopy !== 0) notes.push(`sync ${name}: onetimecopy=${onetimecopy} → onetimecopy=${String(entry.onetimecopy)}: the first run after the cut-over copies the tables (${onetimecopy === 1 ? 'every target' : 'targets that are empty'})`);
    if (entry.isolation_level !== 'repeatable read' && entry.isolation_level !== 'serializable') {
      unsupported(`sync ${name} isolation_level=${String(s.isolation_level)}`, 'ibex runs repeatable read or serializable; imported as repeatable read');
      entry.isolation_level = 'repeatable read';
    }
    if (s.copyextra) unsupported(`sync ${name} copyextra=${String(s.copyextra)}`, 'ibex builds its own COPY statements');
    if (Number(s.priority ?? 0) !== 0) unsupported(`sync ${name} priority=${String(s.priority)}`, 'Bucardo only displays it; ibex has no sync priority');
    if (s.overdue_t && s.overdue_t !== '00:00:00') unsupported(`sync ${name} overdue=${String(s.overdue_t)}`, 'a check_bucardo_sync (Nagios) threshold: alert on "ibex status --json" lag instead');
    if (s.expired_t && s.expired_t !== '00:00:00') unsupported(`sync ${name} expired=${String(s.expired_t)}`, 'a check_bucardo_sync (Nagios) threshold: alert on "ibex status --json" lag instead');
    if (flag(s.track_rates) === true) unsupported(`sync ${name} track_rates=on`, 'dead code in Bucardo; ibex records every run (ibex status)');
    for (const [k, v] of Object.entries(entry)) {
      if (['relgroup', 'dbgroup', 'status', 'conflict_strategy', 'onetimecopy'].includes(k)) continue;
      const raw = k === 'maxkicks' ? s.maxkicks : k === 'checktime' ? s.checktime_t : k === 'lifetime' ? s.lifetime_t : s[k];
      const bucardoValue = typeof v === 'boolean' ? (flag(raw) ? 'on' : 'off') : raw;
      const defaults: Record<string, unknown> = { autokick: true, checktime: null, stayalive: true, kidsalive: true, deletemethod: 'delete', isolation_level: 'repeatable read', rebuild_index: 0, analyze_after_copy: true, vacuum_after_copy: false, strict_checking: true, lifetime: null, maxkicks: null };
      if (JSON.stringify(defaults[k]) !== JSON.stringify(v)) notes.push(`sync ${name}: ${k}=${String(bucardoValue)} → ${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v)}`);
    }
    for (const p of perSyncConfig.filter((r) => r.item === name)) unsupported(`sync ${name} bucardo_config ${String(p.name)}=${String(p.setting)}`, 'ibex has no per-sync global settings; see "ibex show all"');
    syncs[name] = entry;
  }
  doc.syncs = syncs;

  // customcode: Perl cannot run in ibex; each one is kept, inactive, for its rewrite.
  const codes: Record<string, unknown> = {};
  const maps = await rows(c, `SELECT code, sync, goat, active, priority FROM bucardo.customcode_map ORDER BY code, sync, goat`);
  for (const code of await rows(c, `SELECT * FROM bucardo.customcode ORDER BY name`)) {
    const name = String(code.name);
    const whenrun = WHENRUN_OF[String(code.whenrun)];
    if (!whenrun) {
      unsupported(`customcode ${name}`, `whenrun ${String(code.whenrun)} is never run by Bucardo; left out`);
      continue;
    }
    const myMaps: unknown[] = [];
    for (const m of maps.filter((x) => Number(x.code) === Number(code.id))) {
      const extra = { ...(flag(m.active) === false ? { active: false } : {}), ...(Number(m.priority ?? 0) ? { priority: Number(m.priority) } : {}) };
      if (m.sync) {
        if (syncs[String(m.sync)]) myMaps.push({ sync: String(m.sync), ...extra });
      } else if (m.goat !== null) {
        const g = goatById.get(Number(m.goat));
        if (g && !skippedDbs.has(String(g.db))) myMaps.push({ table: goatName(g), db: String(g.db), ...extra });
      }
    }
    codes[name] = {
      whenrun, language: 'typescript', src_code: customcodeModule(name, String(code.src_code ?? '')), status: 'inactive',
      priority: Number(code.priority ?? 0), about: `imported from Bucardo (Perl, ${String(code.whenrun)}); rewrite it: docs/customcode.md`, maps: myMaps,
    };
    notes.push(`customcode ${name}: Perl cannot run in ibex: imported inactive with its source kept as a comment; rewrite it in TypeScript (docs/customcode.md), then "ibex update customcode ${name} status=active"`);
    if (flag(code.getdbh) === false) notes.push(`customcode ${name}: getdbh=off: an ibex hook gets ctx.query only where its hook allows it`);
  }
  doc.customcodes = codes;

  // customname: per (table, db); Bucardo's db-less or sync-scoped ones become one per target db.
  const customnames: unknown[] = [];
  for (const n of await rows(c, `SELECT * FROM bucardo.customname ORDER BY id`).catch(() => [])) {
    const g = goatById.get(Number(n.goat));
    if (!g || skippedDbs.has(String(g.db))) continue;
    const label = `customname ${String(n.newname)} of ${goatName(g)}`;
    const herds = herdmap.filter((m) => Number(m.goat) === Number(g.id)).map((m) => String(m.herd));
    const targetDbs = new Set<string>();
    for (const s of syncRows) {
      if (!herds.includes(String(s.herd)) || (n.sync && n.sync !== s.name)) continue;
      for (const m of dbmap) if (m.dbgroup === s.dbs && m.db !== g.db && !skippedDbs.has(String(m.db))) targetDbs.add(String(m.db));
    }
    const dbsFor = n.db ? [String(n.db)] : [...targetDbs];
    if (n.sync) notes.push(`${label}: Bucardo scopes it to sync ${String(n.sync)}; ibex names a table per db, for every sync`);
    for (const db of dbsFor) customnames.push({ table: goatName(g), source: String(g.db), db, name: String(n.newname) });
  }
  for (const cc of await rows(c, `SELECT * FROM bucardo.customcols ORDER BY id`).catch(() => [])) {
    const g = goatById.get(Number(cc.goat));
    unsupported(`customcols of ${g ? goatName(g) : `goat ${String(cc.goat)}`}`, 'ibex replicates whole rows; a target that needs other columns can use a view or a trigger there');
  }
  doc.customnames = customnames;

  const cs = await rows(c, `SELECT setting FROM bucardo.bucardo_config WHERE name = 'default_conflict_strategy' AND item IS NULL`).catch(() => []);
  if (cs[0] && cs[0].setting !== 'bucardo_latest') notes.push(`bucardo_config default_conflict_strategy=${String(cs[0].setting)}: every imported sync names its strategy, so it is not needed`);

  const parsed = DOCUMENT.safeParse(doc);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new IbexError('config', `Bucardo's ${i.path.join('.')} cannot be imported: ${i.message}`);
  }
  return { doc: parsed.data, passwords, notes, syncs: syncNames.filter((s) => syncs[s]) };
}
