/**
 * The per-table plan of a sync, computed once when a runner loads: quoted
 * names, writable columns, the delta table, FK order, and a fingerprint of
 * each table's columns and key to detect schema changes at every run.
 */
import type pg from 'pg';
import { ident, identList, qualified } from '../db/ident.js';
import { tableInfo, foreignKeys, rowSecurityFix } from '../db/catalog.js';
import { captureNames } from '../capture/objects.js';
import { IbexError } from '../errors.js';
import type { SyncRelation } from '../control/sync-config.js';

/** Everything the runner needs to move one table. */
export interface TablePlan {
  rel: SyncRelation;
  /** `schema.table` as shown to users. */
  label: string;
  /** Position in FK order (parents first); temp tables are named by it. */
  idx: number;
  oid: number;
  /** Quoted `"schema"."table"`. */
  q: string;
  /** Quoted delta table. */
  delta: string;
  keys: string[];
  /** Quoted, comma-separated key columns. */
  keyList: string;
  /** Writable (non-generated) columns, in table order. */
  cols: string[];
  colList: string;
  nonKeyCols: string[];
  /** `t.k1 = x.k1 AND …` for aliases t and x. */
  keyJoin: (a: string, b: string) => string;
  /** Fingerprint of columns and key, compared on every db at every run. */
  fingerprint: string;
  /**
   * The table has INSERT or UPDATE rules: PostgreSQL refuses INSERT … ON CONFLICT on it, so
   * rows are applied by UPDATE … FROM then INSERT … WHERE NOT EXISTS (`applyStatements`), and
   * never by COPY in upsert mode (COPY skips rules; the statements fire them like triggers).
   */
  hasRules: boolean;
  /**
   * The table references another or is referenced (a foreign key, on the reference db): a key a
   * local write raced is not left out of its run, since its parent or children still go ahead.
   */
  inForeignKey: boolean;
}

/**
 * Goes after the column list of every INSERT that writes a replicated table: a GENERATED ALWAYS
 * identity column (on any db: the plan comes from one) takes the replicated value only with it,
 * and it changes nothing on a table without one. COPY needs none: it writes identity columns as given.
 */
export const OVERRIDING = ' OVERRIDING SYSTEM VALUE';

/**
 * The statements that write rows of a staging table (alias `s`) into the table, filtered by
 * `where` (a condition on `s`): an upsert on the key. A table with rules takes no ON CONFLICT, so
 * there: an UPDATE of the keys the table has; then those staged rows are deleted (they are
 * applied; a statement that returns no row, so it adds nothing to the counts); then an INSERT of
 * the rest. The INSERT filters on the staging table alone because a DO ALSO rule's action runs
 * after the INSERT and would otherwise see the new rows as already there. Run them in order, in
 * one transaction (under a savepoint, which restores the staged rows on failure); their row
 * counts add up to the rows applied.
 */
export function applyStatements(p: TablePlan, stage: string, where: string): string[] {
  const s = p.cols.map((c) => `s.${ident(c).text}`).join(', ');
  const insert = `INSERT INTO ${p.q} (${p.colList})${OVERRIDING} SELECT ${s} FROM ${stage} s`;
  if (!p.hasRules) {
    const update = p.nonKeyCols.length
      ? `DO UPDATE SET ${p.nonKeyCols.map((c) => `${ident(c).text} = EXCLUDED.${ident(c).text}`).join(', ')}`
      : 'DO NOTHING';
    return [`${insert} WHERE ${where} ON CONFLICT (${p.keyList}) ${update}`];
  }
  const update = p.nonKeyCols.length
    ? [`UPDATE ${p.q} t SET ${p.nonKeyCols.map((c) => `${ident(c).text} = s.${ident(c).text}`).join(', ')} FROM ${stage} s WHERE (${where}) AND ${p.keyJoin('t', 's')}`]
    : [];
  return [
    ...update,
    `WITH applied AS (DELETE FROM ${stage} s USING ${p.q} t WHERE (${where}) AND ${p.keyJoin('t', 's')}) SELECT WHERE false`,
    `${insert} WHERE ${where}`,
  ];
}

/**
 * SQL that returns (label, fingerprint) for the given tables on one db; `arrays` are three text[]
 * expressions (parameters by default): schemas, names, and each table's key columns joined by
 * commas in name order (see fingerprintParams). The fingerprint lists
 * the columns by name with their types, and says whether a usable unique index on exactly the
 * key columns exists, so a dropped or changed key on one db shows as a difference too.
 */
export function fingerprintQuery(arrays: readonly [string, string, string] = ['$1::text[]', '$2::text[]', '$3::text[]']): string {
  return `SELECT n.nspname || '.' || c.relname AS label,
                 string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END, ', ' ORDER BY a.attname)
                 || CASE WHEN EXISTS (
                      SELECT 1 FROM pg_index i
                       WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
                         AND (SELECT string_agg(ka.attname, ',' ORDER BY ka.attname) FROM pg_attribute ka
                               WHERE ka.attrelid = c.oid AND ka.attnum = ANY(i.indkey[0:i.indnkeyatts - 1])) = w.k)
                    THEN '' ELSE ', (no unique index on the key)' END AS fp
            FROM unnest(${arrays[0]}, ${arrays[1]}, ${arrays[2]}) AS w(s, t, k)
            JOIN pg_namespace n ON n.nspname = w.s
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           GROUP BY n.nspname, c.relname, c.oid, w.k`;
}

/** The parameters of `fingerprintQuery` for some plans or relations. */
export function fingerprintParams(rels: { schema: string; name: string; keyColumns: string[] }[]): string[][] {
  return [rels.map((r) => r.schema), rels.map((r) => r.name), rels.map((r) => [...r.keyColumns].sort().join(','))];
}

function rowSecurityRefusal(label: string, db: string, role: string, forced: boolean): IbexError {
  return new IbexError('config', `table ${label} on db ${db} has row-level security that applies to role ${role}, and ibex reads and writes with row_security=off: ${rowSecurityFix(role, forced)}`);
}

/**
 * Build the plans of a sync's tables from one reference db, in FK order (parents first). `others`
 * are sessions on the sync's other postgres dbs: a table with rules on any of them is applied
 * the rules' way everywhere (rules may differ between dbs; columns and keys may not). A table
 * whose row-level security applies to ibex's role on any of them is refused in one line: ibex
 * pins row_security=off, so every statement on it would fail.
 */
export async function buildPlans(
  client: pg.Client, rels: SyncRelation[], refDb: string, others: readonly { db: string; client: pg.Client }[] = [],
): Promise<TablePlan[]> {
  const infos = [];
  for (const rel of rels.filter((r) => r.reltype === 'table')) {
    const info = await tableInfo(client, rel.schema, rel.name);
    if (!info) throw new IbexError('config', `table ${rel.schema}.${rel.name} is missing on db ${refDb}: create it, or remove it from the sync`);
    infos.push({ rel, info });
  }
  const fks = await foreignKeys(client, infos.map((x) => x.info.oid));
  // Topological order, parents first; a cycle keeps the configured order.
  const order: typeof infos = [];
  const placed = new Set<number>();
  let progress = true;
  while (order.length < infos.length && progress) {
    progress = false;
    for (const x of infos) {
      if (placed.has(x.info.oid)) continue;
      const parents = fks.filter((f) => f.child === x.info.oid && f.parent !== x.info.oid).map((f) => f.parent);
      if (parents.every((p) => placed.has(p))) {
        order.push(x);
        placed.add(x.info.oid);
        progress = true;
      }
    }
  }
  for (const x of infos) if (!placed.has(x.info.oid)) order.push(x);
  const fp = await client.query(fingerprintQuery(), fingerprintParams(order.map((x) => x.rel)));
  const ruled = new Set(order.filter((x) => x.info.hasRules).map((x) => `${x.rel.schema}.${x.rel.name}`));
  for (const x of order) {
    if (x.info.rowSecurityBlocks) throw rowSecurityRefusal(`${x.rel.schema}.${x.rel.name}`, refDb, (await client.query('SELECT current_user AS u')).rows[0].u, x.info.forceRowSecurity);
  }
  for (const o of others) {
    const r = await o.client.query(
      `SELECT w.s || '.' || w.t AS label, current_user AS role, c.relforcerowsecurity AS forced,
              EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.ev_type IN ('3', '2')) AS rules,
              c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
                AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS rls_blocks
         FROM unnest($1::text[], $2::text[]) AS w(s, t)
         JOIN pg_namespace n ON n.nspname = w.s JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t
         JOIN pg_roles r ON r.rolname = current_user`,
      [order.map((x) => x.rel.schema), order.map((x) => x.rel.name)]);
    for (const row of r.rows) {
      if (row.rls_blocks === true || row.rls_blocks === 't') throw rowSecurityRefusal(String(row.label), o.db, String(row.role), row.forced === true || row.forced === 't');
      if (row.rules === true || row.rules === 't') ruled.add(String(row.label));
    }
  }
  const fps = new Map(fp.rows.map((r) => [String(r.label), String(r.fp)]));
  const linked = await client.query(
    `SELECT DISTINCT unnest(ARRAY[conrelid, confrelid])::int AS oid FROM pg_constraint WHERE contype = 'f' AND (conrelid = ANY($1) OR confrelid = ANY($1))`,
    [order.map((x) => x.info.oid)]);
  const withFk = new Set(linked.rows.map((r) => Number(r.oid)));
  return order.map(({ rel, info }, idx) => {
    const keys = rel.keyColumns;
    const cols = info.columns.filter((c) => !c.generated).map((c) => c.name);
    const label = `${rel.schema}.${rel.name}`;
    return {
      rel, label, idx, oid: info.oid,
      q: qualified(rel.schema, rel.name).text,
      delta: qualified('ibex', captureNames(rel.schema, rel.name).delta).text,
      keys, keyList: identList(keys).text,
      cols, colList: identList(cols).text,
      nonKeyCols: cols.filter((c) => !keys.includes(c)),
      keyJoin: (a, b) => keys.map((k) => `${a}.${ident(k).text} = ${b}.${ident(k).text}`).join(' AND '),
      fingerprint: fps.get(label) ?? '',
      hasRules: ruled.has(label),
      inForeignKey: withFk.has(info.oid),
    };
  });
}
