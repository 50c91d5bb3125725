/**
 * The SQL of capture objects (pure: text only, no I/O).
 *
 * Per replicated table, on each source db, in schema `ibex`:
 * - a delta table: the key columns in their own types, the operation, the
 *   origin db and applying sync (NULL = a local change), the change time and
 *   the top-level transaction id (`pg_current_xact_id()`, never xmin);
 * - statement-level AFTER INSERT / UPDATE / DELETE triggers with transition
 *   tables: one INSERT … SELECT per statement, which also sends the wake-up
 *   NOTIFY, only while the daemon is idle (see wakeup.ts). Partitioned tables
 *   get a row-level trigger instead (see tableDdl for why and the figures);
 * - a statement-level trigger that records TRUNCATE.
 */
import { ident, identList, keyedName, literal, qualified } from '../db/ident.js';

/** Bump when the generated objects change: install upgrades older ones in place. */
export const CAPTURE_VERSION = 3;

/** Metadata columns of a delta table (key columns may not use these names). */
export const META_COLUMNS = ['ibex_op', 'ibex_origin', 'ibex_by', 'ibex_ts', 'ibex_txid',
  // names of the trigger function's variables: a key column named like one would be ambiguous
  'ibex_v_origin', 'ibex_v_by', 'ibex_v_ts', 'ibex_new', 'ibex_old',
  // columns of the runner's temp tables
  'ibex_src', 'ibex_insonly'] as const;

/** Column names no replicated table may have at all (the runner's staging tables add them). */
export const RESERVED_COLUMNS = ['ibex_origin'] as const;

/** A table to capture. */
export interface CaptureTable {
  schema: string;
  name: string;
  keyColumns: string[];
  keyTypes: string[];
  partitioned: boolean;
  /**
   * Every column in attnum order (bit i of ibex_cols is column i), and whether its type has an
   * `=` operator (else it is compared as text). Without it, updates record no column mask.
   */
  columns?: { name: string; eq: boolean }[];
  /** Counter columns: an update records new − old of each in ibex_delta (see docs/design.md). */
  deltaColumns?: string[];
}

/** Names of the per-table capture objects, all in schema `ibex`. */
export interface CaptureNames {
  /** The delta table. */
  delta: string;
  /** The trigger function. */
  fn: string;
  /** The delta table's index on ibex_txid. */
  index: string;
}

/**
 * Names of the per-table objects: distinct for distinct (schema, table) pairs
 * (see keyedName), each within 63 bytes. Older ibex joined schema and table
 * with `_`, so `a_b.c` and `a.b_c` shared one delta table; objects installed
 * under those names are renamed by install (see upgradeCaptureNames).
 */
export function captureNames(schema: string, name: string): CaptureNames {
  const key = [schema, name];
  return { delta: keyedName('delta', key), fn: keyedName('capture', key), index: keyedName('dtxid', key) };
}

/**
 * The first two tables whose capture objects would share a name, or null.
 * Distinct tables clash only if their name hashes collide; `names` is a
 * parameter so tests can check the check with a naming that does clash.
 */
export function findNameClash(tables: readonly { schema: string; name: string }[],
  names: (schema: string, name: string) => CaptureNames = captureNames): { a: string; b: string; name: string } | null {
  const seen = new Map<string, string>();
  for (const t of tables) {
    const label = `${t.schema}.${t.name}`;
    const n = names(t.schema, t.name);
    for (const obj of new Set([n.delta, n.fn, n.index])) {
      const other = seen.get(obj);
      if (other !== undefined && other !== label) return { a: other, b: label, name: obj };
      seen.set(obj, label);
    }
  }
  return null;
}

/** The objects every ibex-managed PostgreSQL db has (sources and targets). */
export function baseDdl(): string {
  return `
CREATE SCHEMA IF NOT EXISTS ibex;
CREATE TABLE IF NOT EXISTS ibex.meta (key text PRIMARY KEY, value text NOT NULL);
-- How far each sync has applied each source here, written inside the apply transaction:
-- a run repeated after a crash recognises what already landed (DESIGN step 7).
CREATE TABLE IF NOT EXISTS ibex.progress (
  sync text NOT NULL, source text NOT NULL, snapshot text NOT NULL, run bigint NOT NULL,
  applied timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sync, source));
-- The lease epoch of the daemon that wrote the row: the fencing token (see writeProgressSql).
ALTER TABLE ibex.progress ADD COLUMN IF NOT EXISTS epoch bigint;
`;
}

/** The objects a source db needs once (wake-up flag, truncate log, registry of captured tables). */
export function sourceBaseDdl(ibexRole: string): string {
  return `
-- Starts busy: until a daemon says it waits, nobody listens, and notifying commits would only
-- serialize the application (measured: about half the TPS of single-row updates).
CREATE TABLE IF NOT EXISTS ibex.wakeup (
  id int PRIMARY KEY DEFAULT 1 CHECK (id = 1), idle boolean NOT NULL DEFAULT false, changed timestamptz NOT NULL DEFAULT now());
INSERT INTO ibex.wakeup (id, idle) VALUES (1, false) ON CONFLICT DO NOTHING;
-- One row per daemon's LISTEN session (by backend pid): ibex.wakeup.idle is true while any of them waits.
CREATE TABLE IF NOT EXISTS ibex.wakeup_listener (
  pid int PRIMARY KEY, idle boolean NOT NULL, changed timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS ibex.captured (
  schemaname text NOT NULL, relname text NOT NULL, delta text NOT NULL, fn text NOT NULL,
  syncs text[] NOT NULL DEFAULT '{}', version int NOT NULL, PRIMARY KEY (schemaname, relname));
CREATE TABLE IF NOT EXISTS ibex.truncates (
  schemaname text NOT NULL, relname text NOT NULL,
  ibex_origin text, ibex_by text,
  ibex_ts timestamptz NOT NULL DEFAULT clock_timestamp(),
  ibex_txid xid8 NOT NULL DEFAULT pg_current_xact_id());
CREATE INDEX IF NOT EXISTS truncates_txid ON ibex.truncates (ibex_txid);
-- The columns of each table in the order of its ibex_cols bits, as at install.
ALTER TABLE ibex.captured ADD COLUMN IF NOT EXISTS cols text[];

CREATE OR REPLACE FUNCTION ibex.wake() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF (SELECT idle FROM ibex.wakeup WHERE id = 1) THEN
    PERFORM pg_notify('ibex_wake', '');
  END IF;
  RETURN NULL;
END $fn$;

CREATE OR REPLACE FUNCTION ibex.note_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE o text; b text;
BEGIN
  IF session_user = ${literal(ibexRole)} THEN
    o := nullif(current_setting('ibex.origin', true), '');
    b := nullif(current_setting('ibex.by', true), '');
  END IF;
  INSERT INTO ibex.truncates (schemaname, relname, ibex_origin, ibex_by) VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, o, b);
  IF (SELECT idle FROM ibex.wakeup WHERE id = 1) THEN PERFORM pg_notify('ibex_wake', ''); END IF;
  RETURN NULL;
END $fn$;
`;
}

/**
 * Tests skew one node's clock with `ALTER DATABASE … SET ibex.clock_offset`. The hook is compiled
 * into the trigger only when IBEX_TEST_CLOCK_OFFSET=1 at install time: in production no session
 * could make its own changes win `latest` by setting it.
 */
function clockOffsetHook(): string {
  if (process.env.IBEX_TEST_CLOCK_OFFSET !== '1') return '';
  return `IF current_setting('ibex.clock_offset', true) <> '' THEN
    ibex_v_ts := ibex_v_ts + current_setting('ibex.clock_offset')::interval;
  END IF;`;
}

/**
 * SQL of an update's column mask over aliases `o` (old row) and `n` (new row): a varbit whose bit
 * i is 1 when the i-th column (attnum order) changed; NULL without the column list. Types without
 * an `=` operator (json, point, …) are compared as text. concat takes at most 100 arguments.
 */
export function maskSql(t: CaptureTable, o: string, n: string): string {
  if (!t.columns?.length) return 'NULL::varbit';
  const bits = t.columns.map((c) => {
    const q = ident(c.name).text;
    return c.eq ? `CASE WHEN ${o}.${q} IS DISTINCT FROM ${n}.${q} THEN '1' ELSE '0' END`
      : `CASE WHEN ${o}.${q}::text IS DISTINCT FROM ${n}.${q}::text THEN '1' ELSE '0' END`;
  });
  const parts: string[] = [];
  for (let i = 0; i < bits.length; i += 90) parts.push(`concat(${bits.slice(i, i + 90).join(', ')})`);
  return `(${parts.join(' || ')})::varbit`;
}

/** SQL of an update's counter differences (`{col: new − old}`, null when either is NULL), or NULL. */
export function deltaSql(t: CaptureTable, o: string, n: string): string {
  if (!t.deltaColumns?.length) return 'NULL::jsonb';
  return `jsonb_build_object(${t.deltaColumns.map((c) => `${literal(c)}, ${n}.${ident(c).text}::numeric - ${o}.${ident(c).text}::numeric`).join(', ')})`;
}

/** Create or upgrade the capture objects of one table. */
export function tableDdl(t: CaptureTable, ibexRole: string): string {
  const { delta, fn, index } = captureNames(t.schema, t.name);
  const table = qualified(t.schema, t.name).text;
  const d = qualified('ibex', delta).text;
  const f = qualified('ibex', fn).text;
  const keyDefs = t.keyColumns.map((c, i) => `${ident(c).text} ${t.keyTypes[i]}`).join(', ');
  const keys = identList(t.keyColumns).text;
  const role = literal(ibexRole);
  const cols = `${keys}, ibex_op, ibex_origin, ibex_by, ibex_ts`;
  const deltaTable = `
CREATE TABLE IF NOT EXISTS ${d} (${keyDefs},
  ibex_op "char" NOT NULL, ibex_origin text, ibex_by text,
  ibex_ts timestamptz NOT NULL DEFAULT clock_timestamp(),
  ibex_txid xid8 NOT NULL DEFAULT pg_current_xact_id())
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX IF NOT EXISTS ${ident(index).text} ON ${d} (ibex_txid);
ALTER TABLE ${d} ADD COLUMN IF NOT EXISTS ibex_cols varbit, ADD COLUMN IF NOT EXISTS ibex_delta jsonb;
CREATE OR REPLACE TRIGGER ibex_truncate AFTER TRUNCATE ON ${table}
  FOR EACH STATEMENT EXECUTE FUNCTION ibex.note_truncate();
`;
  const markers = `
  IF session_user = ${role} THEN
    ibex_v_origin := nullif(current_setting('ibex.origin', true), '');
    ibex_v_by := nullif(current_setting('ibex.by', true), '');
  END IF;
${clockOffsetHook()}`;
  if (!t.partitioned) {
    // Statement level with transition tables: one INSERT … SELECT per statement. Measured on this
    // machine against the row-level trigger below: pgbench single-row updates at 0.95–1.05 of the
    // TPS without capture (row level: 0.70), and a 100k-row insert 1.5× the time without capture
    // (row level: 4×). ibex's own apply returns at once when nothing downstream needs its rows.
    const notIn = t.keyColumns.map((c) => `n.${ident(c).text} = x.${ident(c).text}`).join(' AND ');
    // Which columns changed (and counter differences) need the old row: a join of the transition
    // tables on the key, paid only when the table has a column list (see docs/performance.md).
    const tracked = t.keyColumns.length > 0 && Boolean(t.columns?.length || t.deltaColumns?.length);
    const oldOn = t.keyColumns.map((c) => `o.${ident(c).text} = n.${ident(c).text}`).join(' AND ');
    // A new key (the update changed it) is an insert for a merge: no mask, no difference.
    const keyChanged = `WHEN o.${ident(t.keyColumns[0] ?? '').text} IS NULL`;
    const updateInsert = tracked
      ? `INSERT INTO ${d} (${cols}, ibex_cols, ibex_delta) SELECT ${t.keyColumns.map((c) => `n.${ident(c).text}`).join(', ')}, 'U', ibex_v_origin, ibex_v_by, ibex_v_ts,
      CASE ${keyChanged} THEN NULL ELSE ${maskSql(t, 'o', 'n')} END, CASE ${keyChanged} THEN NULL ELSE ${deltaSql(t, 'o', 'n')} END
      FROM ibex_new n LEFT JOIN ibex_old o ON ${oldOn};`
      : `INSERT INTO ${d} (${cols}) SELECT ${keys}, 'U', ibex_v_origin, ibex_v_by, ibex_v_ts FROM ibex_new;`;
    return `${deltaTable}
DROP TRIGGER IF EXISTS ibex_capture ON ${table};
DROP TRIGGER IF EXISTS ibex_wake ON ${table};
CREATE OR REPLACE FUNCTION ${f}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE ibex_v_origin text; ibex_v_by text; ibex_v_ts timestamptz := clock_timestamp();
BEGIN
  IF session_user = ${role} AND current_setting('ibex.nocapture', true) = 'on' THEN RETURN NULL; END IF;${markers}
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ${d} (${cols}) SELECT ${keys}, 'I', ibex_v_origin, ibex_v_by, ibex_v_ts FROM ibex_new;
  ELSIF TG_OP = 'UPDATE' THEN
    ${updateInsert}
    -- An update that changed the key also deletes the old key.
    INSERT INTO ${d} (${cols}) SELECT ${t.keyColumns.map((c) => `x.${ident(c).text}`).join(', ')}, 'D', ibex_v_origin, ibex_v_by, ibex_v_ts
      FROM ibex_old x WHERE NOT EXISTS (SELECT 1 FROM ibex_new n WHERE ${notIn});
  ELSE
    INSERT INTO ${d} (${cols}) SELECT ${keys}, 'D', ibex_v_origin, ibex_v_by, ibex_v_ts FROM ibex_old;
  END IF;
  IF (SELECT idle FROM ibex.wakeup WHERE id = 1) THEN PERFORM pg_notify('ibex_wake', ''); END IF;
  RETURN NULL;
END $fn$;
CREATE OR REPLACE TRIGGER ibex_capture_ins AFTER INSERT ON ${table}
  REFERENCING NEW TABLE AS ibex_new FOR EACH STATEMENT EXECUTE FUNCTION ${f}();
CREATE OR REPLACE TRIGGER ibex_capture_upd AFTER UPDATE ON ${table}
  REFERENCING OLD TABLE AS ibex_old NEW TABLE AS ibex_new FOR EACH STATEMENT EXECUTE FUNCTION ${f}();
CREATE OR REPLACE TRIGGER ibex_capture_del AFTER DELETE ON ${table}
  REFERENCING OLD TABLE AS ibex_old FOR EACH STATEMENT EXECUTE FUNCTION ${f}();
`;
  }
  // Partitioned tables: row level, because PostgreSQL clones row triggers of the parent onto every
  // current and future partition (statement triggers on the parent miss writes made straight into a
  // partition), and a WHEN clause skips ibex's own apply without calling the function at all.
  const newKeys = t.keyColumns.map((c) => `NEW.${ident(c).text}`).join(', ');
  const oldKeys = t.keyColumns.map((c) => `OLD.${ident(c).text}`).join(', ');
  const when = `(session_user <> ${role} OR pg_catalog.current_setting('ibex.nocapture', true) IS DISTINCT FROM 'on')`;
  return `${deltaTable}
CREATE OR REPLACE FUNCTION ${f}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE ibex_v_origin text; ibex_v_by text; ibex_v_ts timestamptz := clock_timestamp();
BEGIN${markers}
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ${d} (${cols}) VALUES (${newKeys}, 'I', ibex_v_origin, ibex_v_by, ibex_v_ts);
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO ${d} (${cols}, ibex_cols, ibex_delta) VALUES (${newKeys}, 'U', ibex_v_origin, ibex_v_by, ibex_v_ts, ${maskSql(t, 'OLD', 'NEW')}, ${deltaSql(t, 'OLD', 'NEW')});
    IF ROW(${oldKeys}) IS DISTINCT FROM ROW(${newKeys}) THEN
      INSERT INTO ${d} (${cols}) VALUES (${oldKeys}, 'D', ibex_v_origin, ibex_v_by, ibex_v_ts);
    END IF;
  ELSE
    INSERT INTO ${d} (${cols}) VALUES (${oldKeys}, 'D', ibex_v_origin, ibex_v_by, ibex_v_ts);
  END IF;
  IF (SELECT idle FROM ibex.wakeup WHERE id = 1) THEN PERFORM pg_notify('ibex_wake', ''); END IF;
  RETURN NULL;
END $fn$;
CREATE OR REPLACE TRIGGER ibex_capture AFTER INSERT OR UPDATE OR DELETE ON ${table}
  FOR EACH ROW WHEN ${when} EXECUTE FUNCTION ${f}();
CREATE OR REPLACE TRIGGER ibex_wake AFTER INSERT OR UPDATE OR DELETE ON ${table}
  FOR EACH STATEMENT EXECUTE FUNCTION ibex.wake();
`;
}

/**
 * Drop the capture objects of one table. `names` are the ones recorded in
 * ibex.captured at install (older installs used other names); one left out
 * is kept (another table still uses it).
 */
export function dropTableDdl(schema: string, name: string, exists: boolean, names: { delta?: string; fn?: string }): string {
  const { delta, fn } = names;
  const table = qualified(schema, name).text;
  return `
${exists ? ['ibex_capture', 'ibex_capture_ins', 'ibex_capture_upd', 'ibex_capture_del', 'ibex_wake', 'ibex_truncate']
    .map((tg) => `DROP TRIGGER IF EXISTS ${tg} ON ${table};`).join('\n') : ''}
${fn ? `DROP FUNCTION IF EXISTS ${qualified('ibex', fn).text}();` : ''}
${delta ? `DROP TABLE IF EXISTS ${qualified('ibex', delta).text};` : ''}
`;
}
