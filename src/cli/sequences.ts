/**
 * `ibex sequences <sync> [--interleave [--modulus=N] [--yes]] [--snowflake]`: keys that cannot
 * collide on several masters (docs/keys.md).
 *
 *  (no flag)      every key that defaults to a sequence, per source node, and which can collide;
 *  --interleave   node i of N hands out values ≡ i (mod N), above every value any node handed out
 *                 (shows the plan, then asks, or applies with --yes; --dry-run shows it only);
 *  --snowflake    installs ibex_keys.snowflake_id() on every source node (a node keeps its id; new ones take free ids).
 */
import type pg from 'pg';
import { createInterface } from 'node:readline/promises';
import type { Context } from './context.js';
import { IbexError, usage } from '../errors.js';
import { applyInterleave, keyRisks, lockAndRead, planInterleave, releaseLocks, snowflakeSql, ID_SCHEMA } from '../keys/sequences.js';
import { keySequencesOf, withSources, type KeyedTable } from '../keys/sources.js';

const SYNTAX = 'ibex sequences <sync> [--interleave [--modulus=N] [--yes]] [--snowflake]';

interface Args {
  sync: string;
  interleave: boolean;
  snowflake: boolean;
  yes: boolean;
  modulus: number | undefined;
}

function parse(args: string[]): Args {
  const words: string[] = [];
  const out: Args = { sync: '', interleave: false, snowflake: false, yes: false, modulus: undefined };
  for (const a of args) {
    if (a === '--interleave') out.interleave = true;
    else if (a === '--snowflake') out.snowflake = true;
    else if (a === '--yes' || a === '-y') out.yes = true;
    else if (a.startsWith('--modulus=')) {
      const n = Number(a.slice('--modulus='.length));
      if (!Number.isInteger(n) || n < 2 || n > 1_000_000) throw usage(`--modulus must be a whole number from 2 to 1000000, not "${a.slice(10)}"`);
      out.modulus = n;
    } else if (a.startsWith('-')) throw usage(`unknown option "${a}": ${SYNTAX}`);
    else words.push(a);
  }
  if (words.length !== 1) throw usage(`name one sync: ${SYNTAX}`);
  if (out.interleave && out.snowflake) throw usage('choose --interleave or --snowflake, not both');
  if (out.modulus !== undefined && !out.interleave) throw usage('--modulus goes with --interleave');
  out.sync = words[0]!;
  return out;
}

/** The verb. */
export async function sequences(ctx: Context, args: string[]): Promise<number> {
  const a = parse(args);
  return ctx.withControl((control) => withSources(control, a.sync, async (sessions, tables) => {
    if (a.snowflake) return installSnowflake(ctx, sessions, a.sync);
    if (a.interleave) return interleave(ctx, sessions, tables, a);
    const perNode = await keySequencesOf(sessions, tables);
    const risks = keyRisks(a.sync, perNode);
    if (ctx.flags.json) {
      ctx.json({
        sync: a.sync, nodes: [...perNode.keys()], risks,
        sequences: [...perNode].flatMap(([node, seqs]) => seqs.map((s) => ({ node, table: s.table, column: s.column, sequence: s.label, increment: s.increment.toString(), next: s.next.toString() }))),
      });
    } else {
      for (const [node, seqs] of perNode) {
        for (const s of seqs) ctx.say(`${node}: ${s.table}.${s.column} ← ${s.label} (increment ${s.increment}, next ${s.next})`);
      }
      if (risks.length === 0) ctx.say(`sync ${a.sync}: no key can be handed out alike on two nodes`);
      for (const r of risks) ctx.say(`warning: ${r.message}`, true);
    }
    return 0;
  }));
}

/** Interleave the key sequences of a sync's sources (also `add sync … keys=interleave`, with yes). */
export async function interleave(ctx: Context, sessions: Map<string, pg.Client>, tables: KeyedTable[], a: Pick<Args, 'sync' | 'yes' | 'modulus'>): Promise<number> {
  if (sessions.size < 2) throw new IbexError('config', `sync ${a.sync} has fewer than two active sources: interleaving is for multi-master syncs`);
  if (!a.yes && !ctx.flags.dryRun && !process.stdin.isTTY) {
    throw usage(`--interleave changes sequences on every node: add --yes to apply without asking, or --dry-run to see the plan`);
  }
  // Every node's key sequences stay locked from the reading to the restart, so no value is handed
  // out in between; writers that need a key wait for those few moments.
  const perNode = await lockAndRead(sessions, tables);
  let plan;
  try {
    plan = planInterleave(perNode, [...sessions.keys()], a.modulus);
  } catch (err) {
    await releaseLocks(sessions);
    throw err;
  }
  if (plan.steps.length === 0) {
    await releaseLocks(sessions);
    ctx.say(`sync ${a.sync}: no key defaults to a sequence; nothing to do`);
    return 0;
  }
  ctx.say(`plan: every node steps by ${plan.modulus}; the highest value handed out or held anywhere is ${plan.highest}`);
  for (const st of plan.steps) ctx.say(`  ${st.node}: ${st.label} INCREMENT BY ${st.increment} RESTART WITH ${st.restart} (values ≡ ${st.slot} mod ${plan.modulus})`);
  if (ctx.flags.dryRun) {
    await releaseLocks(sessions);
    ctx.say('dry run: nothing was changed');
    return 0;
  }
  if (!a.yes && !(await ask('apply this plan? [y/N] '))) {
    await releaseLocks(sessions);
    ctx.say('nothing was changed');
    return 0;
  }
  await applyInterleave(sessions, plan);
  ctx.say(`sync ${a.sync}: ${plan.steps.length} sequence(s) interleaved over ${sessions.size} node(s); a node added later needs a new plan (docs/keys.md)`);
  return 0;
}

async function ask(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

async function installSnowflake(ctx: Context, sessions: Map<string, pg.Client>, sync: string): Promise<number> {
  // A node keeps the id it was given before (so its ids never move); new nodes take free ids.
  const ids = new Map<string, number>();
  for (const [node, c] of sessions) {
    const r = await c.query(`SELECT CASE WHEN to_regprocedure($1) IS NOT NULL THEN obj_description(to_regprocedure($1), 'pg_proc') END AS d`, [`${ID_SCHEMA}.snowflake_id()`]);
    const m = /^ibex: node (\d+)$/.exec(String(r.rows[0].d ?? ''));
    if (m) ids.set(node, Number(m[1]));
  }
  let next = 1;
  for (const node of sessions.keys()) {
    if (ids.has(node)) continue;
    while ([...ids.values()].includes(next)) next++;
    ids.set(node, next);
  }
  for (const [node, c] of sessions) {
    const id = ids.get(node)!;
    if (ctx.flags.dryRun) {
      ctx.say(`${node}: would install ${ID_SCHEMA}.snowflake_id() as node ${id}`);
      continue;
    }
    await c.query(snowflakeSql(id));
    ctx.say(`${node}: ${ID_SCHEMA}.snowflake_id() installed as node ${id}`);
  }
  if (!ctx.flags.dryRun) ctx.say(`sync ${sync}: use it as a key default, e.g. ALTER TABLE … ALTER COLUMN id SET DEFAULT ${ID_SCHEMA}.snowflake_id() on every node`);
  return 0;
}
