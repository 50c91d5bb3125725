/**
 * The configuration of a control database as a document (`ibex export`). Passwords never
 * leave: a db shows the reference it connects with (env:, file:, pgpass), or "stored" when a
 * password was given to "ibex add db pass=". Values equal to their defaults are left out so
 * the file says what was chosen.
 */
import type pg from 'pg';
import {
  SYNC_OPTION_COLUMNS, listCustomcodes, listCustomnames, listDbgroups, listDbs, listRelations, listRelgroups, listSyncs,
  type RelationRecord,
} from '../control/config-store.js';
import { DOCUMENT, SYNC, type ConfigDocument } from './document.js';
import { displayRelation } from './names.js';

/** Drop keys whose value is undefined, null where null is the default, or equal to the schema's default. */
function compact(value: Record<string, unknown>, defaults: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (k in defaults && JSON.stringify(defaults[k]) === JSON.stringify(v)) continue;
    out[k] = v;
  }
  return out;
}

/** A stored interval in the form the file uses ("00:00:30" → "30 seconds"). */
export function intervalText(v: string | null): string | null {
  if (v === null) return null;
  const m = /^(?:(\d+) days? ?)?(\d+):(\d\d):(\d\d(?:\.\d+)?)$/.exec(v);
  if (!m) return v;
  const secs = Number(m[1] ?? 0) * 86400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
  return `${secs} seconds`;
}

/** Read the whole configuration. `full` keeps values equal to their defaults. */
export async function exportConfig(c: pg.Client, opts: { full?: boolean } = {}): Promise<Record<string, unknown>> {
  const syncDefaults = opts.full ? {} : (SYNC.parse({ relgroup: 'x', dbgroup: 'x' }) as Record<string, unknown>);
  const dbDefaults: Record<string, unknown> = opts.full ? {} : { type: 'postgres', status: 'active' };
  const doc: Record<string, unknown> = { version: 1 };

  const dbs: Record<string, unknown> = {};
  for (const d of await listDbs(c)) {
    dbs[d.name] = compact({
      type: d.dbtype, host: d.host ?? undefined, port: d.port ?? undefined, dbname: d.dbname ?? undefined, user: d.dbuser ?? undefined,
      pass: d.dbpass !== null ? 'stored' : (d.dbpass_ref ?? undefined), conn: d.conn ?? undefined, service: d.service ?? undefined,
      status: d.status, about: d.about ?? undefined,
    }, dbDefaults);
  }
  doc.dbs = dbs;

  const rels = await listRelations(c);
  const byId = new Map<number, RelationRecord>(rels.map((r) => [r.id, r]));
  const relDoc = (r: RelationRecord): Record<string, unknown> => ({
    db: r.db, name: displayRelation(r.schemaname, r.relname), ...(r.conflict_strategy ? { conflict_strategy: r.conflict_strategy } : {}),
    ...(r.delta_columns?.length ? { delta_columns: r.delta_columns } : {}),
  });
  doc.tables = rels.filter((r) => r.reltype === 'table').map(relDoc);
  doc.sequences = rels.filter((r) => r.reltype === 'sequence').map(relDoc);

  const relgroups: Record<string, unknown> = {};
  for (const g of await listRelgroups(c)) {
    const members = g.members.map((m) => {
      const r = byId.get(m.relation)!;
      const name = displayRelation(r.schemaname, r.relname);
      return m.priority === 0 ? name : { name, priority: m.priority };
    });
    const first = byId.get(g.members[0]?.relation ?? -1);
    relgroups[g.name] = { ...(first ? { db: first.db } : {}), members, ...(g.about ? { about: g.about } : {}) };
  }
  doc.relgroups = relgroups;

  const dbgroups: Record<string, unknown> = {};
  for (const g of await listDbgroups(c)) {
    dbgroups[g.name] = {
      members: g.members.map((m) => ({ db: m.db, role: m.role, ...(m.priority ? { priority: m.priority } : {}) })),
      ...(g.about ? { about: g.about } : {}),
    };
  }
  doc.dbgroups = dbgroups;

  const syncs: Record<string, unknown> = {};
  for (const s of await listSyncs(c)) {
    const v: Record<string, unknown> = { relgroup: s.relgroup, dbgroup: s.dbgroup, status: s.status === 'installing' ? 'active' : s.status };
    for (const k of SYNC_OPTION_COLUMNS) {
      const raw = s[k];
      v[k] = k === 'checktime' || k === 'fullcopy_interval' || k === 'lifetime' ? intervalText(raw as string | null) : raw;
    }
    syncs[s.name] = compact(v, { ...syncDefaults, relgroup: undefined, dbgroup: undefined });
  }
  doc.syncs = syncs;

  const codes: Record<string, unknown> = {};
  for (const code of await listCustomcodes(c)) {
    const maps = code.maps.map((m) => {
      const extra = { ...(m.active ? {} : { active: false }), ...(m.priority ? { priority: m.priority } : {}) };
      if (m.sync) return { sync: m.sync, ...extra };
      const r = byId.get(m.relation!)!;
      return { table: displayRelation(r.schemaname, r.relname), db: r.db, ...extra };
    });
    codes[code.name] = compact({
      whenrun: code.whenrun, language: code.language, src_code: code.src_code, src_path: code.src_path, status: code.status,
      priority: code.priority, about: code.about, maps,
    }, opts.full ? {} : { language: 'typescript', src_path: null, status: 'active', priority: 0, about: null, maps: [] });
  }
  doc.customcodes = codes;

  doc.customnames = (await listCustomnames(c)).map((n) => ({ table: displayRelation(n.schemaname, n.relname), source: n.source, db: n.db, name: n.name }));
  return doc;
}

/** The document parsed back (defaults filled in): what apply compares with. */
export async function currentDocument(c: pg.Client): Promise<ConfigDocument> {
  return DOCUMENT.parse(await exportConfig(c));
}
