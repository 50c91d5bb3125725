/**
 * The DDL that creates a sync's tables on one db (`ibex schema`): in the target's own dialect
 * for dbs of other types, and a CREATE TABLE from the source for a PostgreSQL db.
 */
import type pg from 'pg';
import { ident, qualified } from '../db/ident.js';
import type { DbRecord } from '../control/config-store.js';
import { createTarget } from '../targets/registry.js';
import type { TableSpec } from '../targets/target.js';
import { readSourceTables, refuseKeyless, targetParams, type OpenTarget, type TargetRelation } from './targets.js';

/** A PostgreSQL CREATE TABLE for a table as the source has it (the columns ibex writes, the key). */
export function postgresCreateTable(t: TableSpec): string {
  const cols = t.columns.map((col) => `  ${ident(col.name).text} ${col.type}${col.notNull ? ' NOT NULL' : ''}`);
  if (t.keys.length) cols.push(`  PRIMARY KEY (${t.keys.map((k) => ident(k).text).join(', ')})`);
  return `CREATE TABLE ${qualified(t.schema, t.name).text} (\n${cols.join(',\n')}\n)`;
}

/** The statements that create these relations' tables on `db`, each ending with a semicolon. */
export async function schemaStatements(
  c: pg.Client, relations: readonly TargetRelation[], db: DbRecord, open: OpenTarget = createTarget,
): Promise<string[]> {
  // Not a `PRIMARY KEY ()` that the db would refuse: the same refusal as add sync's.
  refuseKeyless(relations, [db], { reAdd: false, leaveOut: 'the sync' });
  const specs = await (await readSourceTables(c, relations)).specsFor(db.name);
  const end = (s: string): string => (/;\s*$/.test(s) ? s.trimEnd() : `${s.trimEnd()};`);
  if (db.dbtype === 'postgres') return specs.map((t) => end(postgresCreateTable(t)));
  // Only the dialect is used: nothing connects to the db.
  const target = await open(targetParams(db));
  return specs.flatMap((t) => target.createTableSql(t)).map(end);
}
