/**
 * The global settings in ibex.config (Bucardo's bucardo_config): the only code that reads or
 * writes that table, apart from the migration that seeds it.
 */
import type pg from 'pg';

/** One row of ibex.config. */
export interface SettingRow {
  name: string;
  value: string;
  about: string | null;
}

/** Every stored setting, by name. */
export async function readSettings(c: pg.Client): Promise<SettingRow[]> {
  const r = await c.query(`SELECT name, value, about FROM ibex.config ORDER BY name`);
  return r.rows.map((x) => ({ name: String(x.name), value: String(x.value), about: x.about === null ? null : String(x.about) }));
}

/** The stored value of one setting; undefined when it has no row. */
export async function readSetting(c: pg.Client, name: string): Promise<string | undefined> {
  const r = await c.query(`SELECT value FROM ibex.config WHERE name = $1`, [name]);
  return r.rows.length ? String(r.rows[0].value) : undefined;
}

/**
 * Store these settings (insert or replace the value; a new row gets `about`). Runs inside the
 * caller's transaction and locks the rows first, so the returned previous values are the ones
 * this write replaced.
 */
export async function writeSettings(c: pg.Client, rows: readonly SettingRow[]): Promise<Map<string, string>> {
  const names = rows.map((r) => r.name);
  const old = await c.query(`SELECT name, value FROM ibex.config WHERE name = ANY($1) FOR UPDATE`, [names]);
  await c.query(
    `INSERT INTO ibex.config (name, value, about) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`,
    [names, rows.map((r) => r.value), rows.map((r) => r.about)]);
  return new Map(old.rows.map((r) => [String(r.name), String(r.value)]));
}
