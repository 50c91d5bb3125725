/**
 * Catalog introspection of replicated databases: tables, columns, keys,
 * foreign keys, server facts. The CLI (add table, add sync), capture and the
 * engine all read the catalog through here.
 */
import type pg from 'pg';

/** One column of a table. */
export interface ColumnInfo {
  name: string;
  /** format_type() of the column, e.g. `numeric(12,2)`, `"My Type"`. */
  type: string;
  notNull: boolean;
  /** Generated columns are never written (DESIGN, "Values"). */
  generated: boolean;
  /** Identity column: `always` (GENERATED ALWAYS: an INSERT needs OVERRIDING SYSTEM VALUE, an UPDATE cannot set it), `default`, or ''. */
  identity: 'always' | 'default' | '';
  attnum: number;
}

/** The key ibex uses for a table. */
export interface KeyInfo {
  kind: 'primary' | 'unique';
  index: string;
  columns: string[];
  types: string[];
}

/** What ibex needs to know about one table. */
export interface TableInfo {
  oid: number;
  schema: string;
  name: string;
  /** r = table, p = partitioned table. */
  relkind: 'r' | 'p';
  /** True when this table inherits from another (inheritance children are refused). */
  inheritanceChild: boolean;
  /** True when this is a partition of a partitioned table. */
  partition: boolean;
  columns: ColumnInfo[];
  key: KeyInfo | undefined;
  /** The table has INSERT or UPDATE rules (PostgreSQL refuses INSERT … ON CONFLICT on it). */
  hasRules: boolean;
  /** Row-level security is enabled (and forced on the owner too). */
  rowSecurity: boolean;
  forceRowSecurity: boolean;
  /**
   * This session's role would be subject to the table's row-level security: ibex pins
   * row_security=off, so its reads and writes would fail (they never see a filtered table).
   */
  rowSecurityBlocks: boolean;
}

/** A foreign key between two tables (by oid). */
export interface ForeignKey {
  child: number;
  parent: number;
  name: string;
}

/** Facts about a server and this session's role. */
export interface ServerInfo {
  version: string;
  versionNum: number;
  encoding: string;
  superuser: boolean;
  /** May this role SET session_replication_role (superuser or PG15+ GRANT SET ON PARAMETER)? */
  canReplica: boolean;
  user: string;
  trackCommitTimestamp: boolean;
}

/**
 * What to do when a table's row-level security applies to ibex's role (`rowSecurityBlocks`),
 * as the end of a one-line error.
 */
export function rowSecurityFix(role: string, forced: boolean): string {
  const r = /^[a-z_][a-z0-9_$]*$/.test(role) ? role : `"${role.replaceAll('"', '""')}"`;
  return `ALTER ROLE ${r} BYPASSRLS there${forced ? '' : `, make ${r} the table's owner`}, or connect as a superuser`;
}

const t = (v: unknown): boolean => v === true || v === 't' || v === 'true';

/** Server version, encoding, and what this role may do. */
export async function serverInfo(c: pg.Client): Promise<ServerInfo> {
  const r = await c.query(`SELECT current_setting('server_version') AS version,
      current_setting('server_version_num')::int AS num,
      pg_encoding_to_char(d.encoding) AS encoding,
      r.rolsuper AS superuser, current_user AS usr,
      current_setting('track_commit_timestamp') AS tct
    FROM pg_database d, pg_roles r WHERE d.datname = current_database() AND r.rolname = current_user`);
  const row = r.rows[0];
  const superuser = t(row.superuser);
  let canReplica = superuser;
  if (!canReplica && Number(row.num) >= 150000) {
    const g = await c.query(`SELECT has_parameter_privilege('session_replication_role', 'SET') AS ok`);
    canReplica = t(g.rows[0].ok);
  }
  return {
    version: String(row.version), versionNum: Number(row.num), encoding: String(row.encoding), superuser, canReplica,
    user: String(row.usr), trackCommitTimestamp: row.tct === 'on',
  };
}

/** Tables and/or sequences whose schema and name match LIKE patterns (`%`, `_`), system schemas excluded. */
export async function findRelations(
  c: pg.Client,
  opts: { schemaLike?: string; nameLike?: string; kind: 'table' | 'sequence'; schemas?: string[]; excludeSchemas?: string[]; names?: string[]; excludeNames?: string[] },
): Promise<{ schema: string; name: string }[]> {
  const kinds = opts.kind === 'table' ? ['r', 'p'] : ['S'];
  const r = await c.query(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = ANY($1) AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'ibex') AND n.nspname NOT LIKE 'pg\\_%'
        AND ($2::text IS NULL OR n.nspname LIKE $2) AND ($3::text IS NULL OR c.relname LIKE $3)
        AND ($4::text[] IS NULL OR n.nspname = ANY($4)) AND ($5::text[] IS NULL OR NOT n.nspname = ANY($5))
        AND ($6::text[] IS NULL OR c.relname = ANY($6)) AND ($7::text[] IS NULL OR NOT c.relname = ANY($7))
      ORDER BY 1, 2`,
    [kinds, opts.schemaLike ?? null, opts.nameLike ?? null, opts.schemas ?? null, opts.excludeSchemas ?? null, opts.names ?? null, opts.excludeNames ?? null],
  );
  return r.rows.map((row) => ({ schema: String(row.schema), name: String(row.name) }));
}

/** The oid of a relation, or undefined when it does not exist. */
export async function relationOid(c: pg.Client, schema: string, name: string): Promise<{ oid: number; relkind: string } | undefined> {
  const r = await c.query(
    `SELECT c.oid::int AS oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  );
  return r.rows[0] ? { oid: Number(r.rows[0].oid), relkind: String(r.rows[0].relkind) } : undefined;
}

/**
 * Columns and key of a table; undefined when it does not exist. The key is the
 * primary key, else the unique index with the fewest columns that has no
 * predicate, no expressions and only NOT NULL columns (ties: oldest index).
 */
export async function tableInfo(c: pg.Client, schema: string, name: string): Promise<TableInfo | undefined> {
  const rel = await c.query(
    `SELECT c.oid::int AS oid, c.relkind, c.relispartition AS partition,
            EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                    WHERE i.inhrelid = c.oid AND p.relkind <> 'p') AS inh,
            EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.ev_type IN ('3', '2')) AS rules,
            c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
            c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
              AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS rls_blocks
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_roles r ON r.rolname = current_user
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, name],
  );
  const row = rel.rows[0];
  if (!row) return undefined;
  const oid = Number(row.oid);
  const cols = await c.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            a.attgenerated <> '' AS generated, a.attidentity AS identity, a.attnum::int AS attnum
       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid],
  );
  const columns: ColumnInfo[] = cols.rows.map((r) => ({
    name: String(r.name), type: String(r.type), notNull: t(r.notnull), generated: t(r.generated),
    identity: r.identity === 'a' ? 'always' : r.identity === 'd' ? 'default' : '', attnum: Number(r.attnum),
  }));
  const usable = (await uniqueIndexes(c, oid)).find((u) => u.usable);
  const key: KeyInfo | undefined = usable
    ? { kind: usable.primary ? 'primary' : 'unique', index: usable.index, columns: usable.columns, types: usable.types }
    : undefined;
  return {
    oid, schema, name, relkind: row.relkind === 'p' ? 'p' : 'r', partition: t(row.partition), inheritanceChild: t(row.inh), columns, key,
    hasRules: t(row.rules), rowSecurity: t(row.rls), forceRowSecurity: t(row.force_rls), rowSecurityBlocks: t(row.rls_blocks),
  };
}

/** Every unique index of a table other than the given key index: secondary keys that can conflict. */
export async function secondaryUniqueIndexes(c: pg.Client, oid: number, keyIndex: string): Promise<string[]> {
  const r = await c.query(
    `SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1 AND indisunique AND indexrelid::regclass::text <> $2`,
    [oid, keyIndex],
  );
  return r.rows.map((x) => String(x.name));
}

/** Foreign keys among a set of tables. */
export async function foreignKeys(c: pg.Client, oids: number[]): Promise<ForeignKey[]> {
  const r = await c.query(
    `SELECT conrelid::int AS child, confrelid::int AS parent, conname AS name
       FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY($1) AND confrelid = ANY($1)`,
    [oids],
  );
  return r.rows.map((x) => ({ child: Number(x.child), parent: Number(x.parent), name: String(x.name) }));
}

/** The last value of a sequence and whether it was called. */
export async function sequenceState(c: pg.Client, schema: string, name: string): Promise<{ lastValue: string; isCalled: boolean } | undefined> {
  const r = await c.query(`SELECT last_value::text AS lv, is_called FROM pg_sequences s WHERE schemaname = $1 AND sequencename = $2`, [schema, name]);
  const row = r.rows[0];
  if (!row) return undefined;
  return { lastValue: row.lv === null ? '0' : String(row.lv), isCalled: row.lv !== null };
}

/** Decode a PostgreSQL text array (as returned with identity type parsers) or pass a JS array through. */
export function pgArray(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  const s = String(v);
  if (s === '{}') return [];
  const out: string[] = [];
  let i = 1;
  while (i < s.length - 1) {
    let item = '';
    if (s[i] === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\') i++;
        item += s[i];
        i++;
      }
      i++;
    } else {
      while (i < s.length - 1 && s[i] !== ',') {
        item += s[i];
        i++;
      }
    }
    out.push(item);
    i++; // the comma
  }
  return out;
}

/** A unique index of a table, as `add sync` compares keys across dbs. */
export interface UniqueIndexInfo {
  index: string;
  primary: boolean;
  columns: string[];
  /** format_type() of each key column. */
  types: string[];
  /** Primary key, or every column NOT NULL: it can serve as ibex's key. */
  usable: boolean;
}

/**
 * Every valid unique index of a table without predicate or expressions (key
 * columns only, INCLUDE columns left out), primary key first.
 */
export async function uniqueIndexes(c: pg.Client, oid: number): Promise<UniqueIndexInfo[]> {
  const r = await c.query(
    `SELECT i.indexrelid::regclass::text AS index, i.indisprimary AS primary,
            array_agg(a.attname ORDER BY k.ord) AS cols,
            array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types,
            bool_and(a.attnotnull) AS allnotnull
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
        AND k.ord <= i.indnkeyatts
      GROUP BY i.indexrelid, i.indisprimary
      ORDER BY i.indisprimary DESC, count(*), i.indexrelid`,
    [oid],
  );
  return r.rows.map((row) => ({
    index: String(row.index), primary: t(row.primary), columns: pgArray(row.cols), types: pgArray(row.types),
    usable: t(row.primary) || t(row.allnotnull),
  }));
}
