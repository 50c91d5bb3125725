/**
 * Keys that cannot collide on several masters (issue "Multi-master done right", keys).
 *
 * Two masters whose key defaults to the same sequence hand out the same values: every insert on
 * one node then overwrites the other's as an insert_insert conflict. ibex finds such keys
 * (`findKeySequences` + `keyRisks`) and can make each node hand out its own residue class
 * (`interleave`): node i of N gets INCREMENT BY N and a restart ≡ i (mod N) above every value any
 * node has handed out. It is safe while writes go on: on every node the sequences are locked first
 * (an ALTER SEQUENCE takes a lock that nextval() waits for, and waits itself for the transactions
 * that already called nextval()), the highest value is read under those locks, and only then are
 * the sequences restarted, all in one transaction per node.
 *
 * The alternative is a snowflake-style id (`snowflakeSql`): time, node and a counter in a bigint.
 */
import type pg from 'pg';
import { ident, literal, qualified } from '../db/ident.js';
import { IbexError } from '../errors.js';

/** A key column whose default comes from a sequence (serial, identity, or DEFAULT nextval(…)). */
export interface KeySequence {
  /** `schema.table`. */
  table: string;
  column: string;
  /** The sequence, qualified and quoted. */
  sequence: string;
  /** The sequence as shown (`schema.name`). */
  label: string;
  increment: bigint;
  min: bigint;
  max: bigint;
  /** The value the next nextval() returns. */
  next: bigint;
  /** The highest key value in the table (null when empty). */
  highest: bigint | null;
}

/** The key sequences of some tables on one db. */
export async function findKeySequences(c: pg.Client, tables: readonly { schema: string; name: string; keys: readonly string[] }[]): Promise<KeySequence[]> {
  const out: KeySequence[] = [];
  for (const t of tables) {
    const r = await c.query(
      `SELECT a.attname AS col, sn.nspname AS seq_schema, sc.relname AS seq_name, s.seqincrement::text AS inc,
              s.seqmin::text AS min, s.seqmax::text AS max
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($3::text[])
         JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid AND dep.refclassid = 'pg_class'::regclass
         JOIN pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
         JOIN pg_namespace sn ON sn.oid = sc.relnamespace
         JOIN pg_sequence s ON s.seqrelid = sc.oid
        WHERE n.nspname = $1 AND c.relname = $2
       UNION
       SELECT a.attname, sn.nspname, sc.relname, s.seqincrement::text, s.seqmin::text, s.seqmax::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attidentity <> '' AND a.attname = ANY($3::text[])
         JOIN pg_depend dep ON dep.refclassid = 'pg_class'::regclass AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum
                           AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'i'
         JOIN pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S'
         JOIN pg_namespace sn ON sn.oid = sc.relnamespace
         JOIN pg_sequence s ON s.seqrelid = sc.oid
        WHERE n.nspname = $1 AND c.relname = $2`,
      [t.schema, t.name, [...t.keys]]);
    for (const row of r.rows) {
      const seq = qualified(String(row.seq_schema), String(row.seq_name)).text;
      const state = await c.query(`SELECT last_value::text AS v, is_called FROM ${seq}`);
      const inc = BigInt(String(row.inc));
      const last = BigInt(String(state.rows[0].v));
      const called = state.rows[0].is_called === true || state.rows[0].is_called === 't';
      const hi = await c.query(`SELECT max(${ident(String(row.col)).text})::text AS m FROM ${qualified(t.schema, t.name).text}`);
      out.push({
        table: `${t.schema}.${t.name}`, column: String(row.col), sequence: seq, label: `${row.seq_schema}.${row.seq_name}`,
        increment: inc, min: BigInt(String(row.min)), max: BigInt(String(row.max)),
        next: called ? last + inc : last,
        highest: hi.rows[0].m === null ? null : BigInt(String(hi.rows[0].m)),
      });
    }
  }
  return out;
}

/** A key that several nodes may hand out alike, with the fix. */
export interface KeyRisk {
  table: string;
  column: string;
  sequence: string;
  /** One line: what collides and what to do. */
  message: string;
}

/** Non-negative residue of a modulo n. */
function mod(a: bigint, n: bigint): bigint {
  return ((a % n) + n) % n;
}

/**
 * The key sequences that can hand out the same values on two nodes: safe only when every node
 * steps by the same increment, at least the number of nodes, and the nodes' next values fall in
 * distinct residue classes of it. `perNode` maps a node name to its key sequences.
 */
export function keyRisks(sync: string, perNode: ReadonlyMap<string, readonly KeySequence[]>): KeyRisk[] {
  const nodes = [...perNode.keys()];
  if (nodes.length < 2) return [];
  const risks: KeyRisk[] = [];
  const byColumn = new Map<string, Map<string, KeySequence>>();
  for (const [node, seqs] of perNode) {
    for (const s of seqs) {
      const k = `${s.table}\u0000${s.column}`;
      const m = byColumn.get(k) ?? new Map<string, KeySequence>();
      m.set(node, s);
      byColumn.set(k, m);
    }
  }
  for (const m of byColumn.values()) {
    const seqs = [...m.values()];
    const first = seqs[0]!;
    const n = BigInt(nodes.length);
    const sameStep = seqs.every((s) => s.increment === first.increment) && first.increment >= n;
    const residues = new Set(seqs.map((s) => mod(s.next, first.increment)));
    if (sameStep && residues.size === seqs.length && seqs.length === nodes.length) continue;
    risks.push({
      table: first.table, column: first.column, sequence: first.label,
      message: `table ${first.table}: key ${first.column} comes from sequence ${first.label}, which can hand out the same values on ${[...m.keys()].sort().join(', ')}: `
        + `run "ibex sequences ${sync} --interleave" (each node its own residue class), or use uuid or ibex.snowflake_id() keys (docs/keys.md)`,
    });
  }
  return risks;
}

/** What interleave will do on one node. */
export interface InterleaveStep {
  node: string;
  /** 1-based slot: this node's values are ≡ slot (mod modulus). */
  slot: number;
  sequence: string;
  label: string;
  increment: bigint;
  restart: bigint;
}

/** The plan of `interleave`: per node and sequence the new increment and restart value. */
export interface InterleavePlan {
  modulus: bigint;
  /** The highest value any node had handed out or holds when the plan was made. */
  highest: bigint;
  steps: InterleaveStep[];
}

/**
 * The smallest value above `floor` that is ≡ slot (mod modulus).
 */
export function restartAbove(floor: bigint, slot: number, modulus: bigint): bigint {
  const want = mod(BigInt(slot), modulus);
  let v = floor + 1n;
  v += mod(want - mod(v, modulus), modulus);
  return v;
}

/**
 * The plan from what each node holds: slots in the order of `nodes`, a restart above the highest
 * value handed out or held anywhere. `modulus` defaults to the number of nodes; give a larger one
 * to leave room for nodes added later.
 */
export function planInterleave(perNode: ReadonlyMap<string, readonly KeySequence[]>, nodes: readonly string[], modulus?: number): InterleavePlan {
  const m = BigInt(modulus ?? nodes.length);
  if (m < BigInt(nodes.length)) throw new IbexError('usage', `--modulus=${modulus} is smaller than the ${nodes.length} nodes of the sync: give at least ${nodes.length}`);
  let highest = 0n;
  for (const seqs of perNode.values()) {
    for (const s of seqs) {
      const handed = s.next - s.increment;
      if (handed > highest) highest = handed;
      if (s.highest !== null && s.highest > highest) highest = s.highest;
    }
  }
  const steps: InterleaveStep[] = [];
  nodes.forEach((node, i) => {
    for (const s of perNode.get(node) ?? []) {
      const restart = restartAbove(highest, i + 1, m);
      if (restart > s.max) {
        throw new IbexError('config', `sequence ${s.label} on ${node} would restart at ${restart}, beyond its MAXVALUE ${s.max}: make it bigint (ALTER SEQUENCE … AS bigint MAXVALUE 9223372036854775807) first`);
      }
      steps.push({ node, slot: i + 1, sequence: s.sequence, label: s.label, increment: m, restart });
    }
  });
  return { modulus: m, highest, steps };
}

/**
 * Lock the key sequences of every node (each in its own transaction, left open), so no node hands
 * out another value until `finish` commits the restarts. Returns what each node holds under the locks.
 */
export async function lockAndRead(sessions: ReadonlyMap<string, pg.Client>, tables: readonly { schema: string; name: string; keys: readonly string[] }[]):
  Promise<Map<string, KeySequence[]>> {
  const out = new Map<string, KeySequence[]>();
  for (const [node, c] of sessions) {
    await c.query(`BEGIN; SET LOCAL lock_timeout = '5s'`);
    const seqs = await findKeySequences(c, tables);
    // ALTER SEQUENCE … INCREMENT BY <same> changes nothing but takes the lock nextval() waits on,
    // and waits for every transaction that already called nextval(): values read after it are final.
    for (const s of seqs) await c.query(`ALTER SEQUENCE ${s.sequence} INCREMENT BY ${s.increment}`);
    out.set(node, await findKeySequences(c, tables));
  }
  return out;
}

/** Restart the sequences as planned and commit on every node (or roll back everything on a failure). */
export async function applyInterleave(sessions: ReadonlyMap<string, pg.Client>, plan: InterleavePlan): Promise<void> {
  try {
    for (const st of plan.steps) {
      await sessions.get(st.node)!.query(`ALTER SEQUENCE ${st.sequence} INCREMENT BY ${st.increment} RESTART WITH ${st.restart}`);
    }
  } catch (err) {
    await Promise.all([...sessions.values()].map((c) => c.query('ROLLBACK')));
    throw err;
  }
  for (const c of sessions.values()) await c.query('COMMIT');
}

/** Roll back the open locking transactions (when the user said no). */
export async function releaseLocks(sessions: ReadonlyMap<string, pg.Client>): Promise<void> {
  await Promise.all([...sessions.values()].map((c) => c.query('ROLLBACK')));
}

/** Bits of a snowflake id: 41 of milliseconds since SNOWFLAKE_EPOCH, 10 of node, 12 of counter. */
export const SNOWFLAKE_EPOCH = '2025-01-01 00:00:00+00';

/** The schema of the id functions users call (kept apart from ibex's own schema, which holds capture). */
export const ID_SCHEMA = 'ibex_keys';

/**
 * SQL that installs `ibex_keys.snowflake_id()` on one node: a bigint of (milliseconds since
 * 2025-01-01) << 22 | node << 12 | counter, the counter a per-node cycling sequence. Ids grow with
 * time; two nodes never hand out the same one; one node hands out at most 4,096 per millisecond
 * before its counter wraps (two ids could then meet within one millisecond). The function runs as
 * its owner (SECURITY DEFINER, fixed search_path), so callers need no grant on the counter.
 */
export function snowflakeSql(node: number): string {
  if (!Number.isInteger(node) || node < 0 || node > 1023) throw new IbexError('usage', `snowflake node ids are 0..1023, not ${node}`);
  return `CREATE SCHEMA IF NOT EXISTS ${ID_SCHEMA};
CREATE SEQUENCE IF NOT EXISTS ${ID_SCHEMA}.snowflake_counter MINVALUE 0 MAXVALUE 4095 CYCLE;
CREATE OR REPLACE FUNCTION ${ID_SCHEMA}.snowflake_id() RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $f$
  SELECT ((floor(extract(epoch FROM clock_timestamp() - ${literal(SNOWFLAKE_EPOCH)}::timestamptz) * 1000)::bigint) << 22)
       | (${node}::bigint << 12)
       | nextval('${ID_SCHEMA}.snowflake_counter')
$f$;
COMMENT ON FUNCTION ${ID_SCHEMA}.snowflake_id() IS 'ibex: node ${node}';
GRANT USAGE ON SCHEMA ${ID_SCHEMA} TO PUBLIC;
GRANT EXECUTE ON FUNCTION ${ID_SCHEMA}.snowflake_id() TO PUBLIC;`;
}
