/**
 * The one way a source table becomes a TableSpec (what every target kind is told about a table):
 * writable columns in source order with their types, the key, and its name on the target.
 */
import type { TableInfo } from '../db/catalog.js';
import type { TableSpec } from './target.js';

/** A TableSpec from the source's catalog facts; `targetName` defaults to the bare table name. */
export function tableSpec(info: TableInfo, keys: readonly string[], targetName?: string): TableSpec {
  return {
    label: `${info.schema}.${info.name}`,
    schema: info.schema,
    name: info.name,
    targetName: targetName ?? info.name,
    columns: info.columns.filter((c) => !c.generated).map((c) => ({ name: c.name, type: c.type, notNull: c.notNull })),
    keys: [...keys],
  };
}
