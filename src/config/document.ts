/**
 * The configuration as a file (`ibex export`, `ibex apply -f`): one document holding every db,
 * table, sequence, relgroup, dbgroup, sync, customcode and customname. The zod schema below is
 * the only definition of its shape; docs/ibex.schema.json is generated from it
 * (scripts/json-schema.ts) so editors can complete the file.
 */
import { z } from 'zod';
import { DB_TYPES, WHENRUN } from '../control/config-store.js';

const objectName = z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'a name starts with a letter and holds only letters, digits and _').max(63);

/**
 * Where a db's password comes from: `env:NAME` (an environment variable of the process that
 * connects), `file:/absolute/path` (its first line), or `pgpass` (libpq's ~/.pgpass or PGPASSFILE).
 * The file never holds a password itself.
 */
export const PASS_REF = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+|pgpass)$/;
const passRef = z.string().regex(PASS_REF, 'pass is a reference, never a password: env:NAME, file:/path or pgpass');

const db = z.strictObject({
  type: z.enum(DB_TYPES).default('postgres').describe('the kind of database; only postgres dbs can be sources'),
  host: z.string().optional(),
  port: z.number().int().min(1).max(65535).optional(),
  dbname: z.string().optional(),
  user: z.string().optional(),
  pass: passRef.optional().describe('env:NAME, file:/path or pgpass; a password stored with "ibex add db pass=" shows as "stored"').or(z.literal('stored')),
  conn: z.string().optional().describe('extra connection options, or the whole connect string of an Oracle or MongoDB target'),
  service: z.string().optional(),
  status: z.enum(['active', 'inactive']).default('active'),
  about: z.string().optional(),
});

const relation = z.strictObject({
  db: objectName.describe('the db the table is read from (a source)'),
  name: z.string().min(1).describe('schema.name; quote parts that need it: public."Order"'),
  conflict_strategy: z.string().optional().describe('overrides the sync\'s strategy for this table'),
  delta_columns: z.array(z.string().min(1)).optional()
    .describe('counter columns: concurrent changes on several masters add up (numeric, not key columns; tables only)'),
});

const relgroupMember = z.union([
  z.string().min(1),
  z.strictObject({ name: z.string().min(1), priority: z.number().int().default(0) }),
]);

const relgroup = z.strictObject({
  db: objectName.optional().describe('the db of every member (a relgroup holds the tables of one db); needed when it has members'),
  members: z.array(relgroupMember).describe('tables and sequences, schema.name, higher priority first'),
  about: z.string().optional(),
});

const dbgroupMember = z.strictObject({
  db: objectName,
  role: z.enum(['source', 'target', 'fullcopy']).default('target'),
  priority: z.number().int().default(0),
});

const dbgroup = z.strictObject({
  members: z.array(dbgroupMember).min(1),
  about: z.string().optional(),
});

const interval = z.string().describe('a PostgreSQL interval: 30 seconds, 5 minutes');

/** One sync: its groups, status and options (defaults as `ibex add sync` has them). */
export const SYNC = z.strictObject({
  relgroup: objectName,
  dbgroup: objectName,
  status: z.enum(['active', 'inactive', 'paused']).default('active'),
  conflict_strategy: z.string().optional().describe('latest | source | target | skip | random | abort | custom | an ordered db list A,B'),
  clock: z.enum(['change', 'commit']).default('change'),
  onetimecopy: z.number().int().min(0).max(2).default(0),
  onetimecopy_from: objectName.nullable().default(null),
  autokick: z.boolean().default(true),
  checktime: interval.nullable().default(null),
  fullcopy_interval: interval.nullable().default(null),
  stayalive: z.boolean().default(true),
  kidsalive: z.boolean().default(true),
  deletemethod: z.enum(['delete', 'truncate', 'truncate_cascade']).default('delete'),
  isolation_level: z.enum(['repeatable read', 'serializable']).default('repeatable read'),
  apply_mode: z.enum(['upsert', 'replica']).default('upsert'),
  rebuild_index: z.number().int().min(0).max(2).default(0),
  analyze_after_copy: z.boolean().default(true),
  vacuum_after_copy: z.boolean().default(false),
  strict_checking: z.boolean().default(true),
  lifetime: interval.nullable().default(null),
  maxkicks: z.number().int().min(0).nullable().default(null),
  about: z.string().nullable().default(null),
  on_row_error: z.enum(['stall', 'quarantine']).default('quarantine').describe('a row a db refuses: set it aside and let the rest flow, or fail the run'),
});

const customcodeMap = z.union([
  z.strictObject({ sync: objectName, active: z.boolean().default(true), priority: z.number().int().default(0) }),
  z.strictObject({ table: z.string().min(1), db: objectName, active: z.boolean().default(true), priority: z.number().int().default(0) }),
]);

const customcode = z.strictObject({
  whenrun: z.enum(WHENRUN),
  language: z.enum(['typescript', 'javascript']).default('typescript'),
  src_code: z.string().describe('the module\'s source text'),
  src_path: z.string().nullable().default(null),
  status: z.enum(['active', 'inactive']).default('active'),
  priority: z.number().int().default(0),
  about: z.string().nullable().default(null),
  maps: z.array(customcodeMap).default([]),
});

const customname = z.strictObject({
  table: z.string().min(1).describe('schema.name of the registered table'),
  source: objectName.describe('the db the table is registered on'),
  db: objectName.describe('the target db where it has another name'),
  name: z.string().min(1),
});

/** The whole configuration document. */
export const DOCUMENT = z.strictObject({
  version: z.literal(1).describe('the version of this file format'),
  dbs: z.record(objectName, db).default({}),
  tables: z.array(relation).default([]),
  sequences: z.array(relation).default([]),
  relgroups: z.record(objectName, relgroup).default({}),
  dbgroups: z.record(objectName, dbgroup).default({}),
  syncs: z.record(objectName, SYNC).default({}),
  customcodes: z.record(objectName, customcode).default({}),
  customnames: z.array(customname).default([]),
}).describe('ibex configuration: ibex export prints it, ibex apply -f makes the control database match it');

/** A parsed configuration document (defaults filled in). */
export type ConfigDocument = z.infer<typeof DOCUMENT>;
/** One db of a document. */
export type DocDb = ConfigDocument['dbs'][string];
/** One sync of a document. */
export type DocSync = ConfigDocument['syncs'][string];
/** One customcode of a document. */
export type DocCustomcode = ConfigDocument['customcodes'][string];

/** The sync option keys of a document, in display order (the ones after relgroup, dbgroup, status). */
export const DOC_SYNC_OPTIONS = [
  'conflict_strategy', 'clock', 'onetimecopy', 'onetimecopy_from', 'autokick', 'checktime', 'fullcopy_interval',
  'stayalive', 'kidsalive', 'deletemethod', 'isolation_level', 'apply_mode', 'rebuild_index', 'analyze_after_copy',
  'vacuum_after_copy', 'strict_checking', 'lifetime', 'maxkicks', 'about', 'on_row_error',
] as const;

/** The JSON Schema of the document, as docs/ibex.schema.json holds it. */
export function jsonSchemaText(): string {
  const schema = z.toJSONSchema(DOCUMENT, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
  return JSON.stringify({ ...schema, title: 'ibex configuration' }, null, 2) + '\n';
}
