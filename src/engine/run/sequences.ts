/** Sequences: the highest value among the sources wins everywhere. */
import type { SyncDb } from '../../control/sync-config.js';
import { qualified } from '../../db/ident.js';
import type { PostgresTarget } from '../../targets/postgres/postgres-target.js';
import { sequenceValueSql, SET_SEQUENCE_SQL } from '../sql/sequences.js';
import type { RunContext } from './context.js';

async function lastValue(s: PostgresTarget, q: string): Promise<bigint> {
  const r = await s.query(sequenceValueSql(q));
  return BigInt(String(r.rows[0].v)) - (r.rows[0].is_called === 't' ? 0n : 1n);
}

/** Raise every db's sequences to the highest value among the sources. */
export async function syncSequences(ctx: RunContext): Promise<void> {
  for (const rel of ctx.cfg.relations.filter((r) => r.reltype === 'sequence')) {
    const q = qualified(rel.schema, rel.name).text;
    let best: bigint | undefined;
    for (const s of ctx.sources) {
      const v = await lastValue(ctx.pg(s), q);
      if (best === undefined || v > best) best = v;
    }
    if (best === undefined) continue;
    for (const d of ctx.all as SyncDb[]) {
      const s = ctx.pg(d);
      if ((await lastValue(s, q)) < best) await s.query(SET_SEQUENCE_SQL, [q, best.toString()]);
    }
  }
}
