/**
 * mesh: 3 and 5 masters writing at once (`--nodes N` for one size): every
 * node runs MESH_TXNS (1,000) single-row transactions at MESH_RATE (50/s),
 * half UPDATEs of its own seed rows, half INSERTs; lag per change to every
 * other node (p50/p95/p99), catch-up and convergence.
 */
import { BenchEnv } from '../lib/env.js';
import { withEnv, type Line, type Scenario } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';
import { sequencesFor, streamLoad } from './stream.js';

export const mesh: Scenario = {
  name: 'mesh',
  needsSystem: true,
  metrics: [['lag_p50_s', 'lag p50 s'], ['lag_p95_s', 'lag p95 s'], ['lag_p99_s', 'lag p99 s'], ['catchup_s', 'catch-up s'], ['cpu_daemon_s', 'daemon CPU s']],
  async run(ctx) {
    const k = ctx.knobs;
    const sizes = ctx.knobs.nodes ? [ctx.knobs.nodes] : [3, 5];
    const out: Line[] = [];
    for (const nodes of sizes) {
      const label = `mesh${nodes}-${ctx.system!.name}-${ctx.rep}`;
      const writers = Array.from({ length: nodes }, (_, i) => i + 1);
      if (k.meshTxns / 2 > k.seedRows / nodes) throw new Error('mesh: MESH_TXNS/2 must be <= SEED_ROWS / nodes');
      const env = await BenchEnv.create({ nodes, seedRows: k.seedRows, label });
      out.push(await withEnv(ctx, env, label, async () => {
        await sequencesFor(env, k.seedRows, nodes);
        return { variant: `${nodes} masters`, nodes, ...(await streamLoad(ctx, env, topologyOf(nodes, 'mesh'), writers, k.meshTxns, k.meshRate, label)) };
      }));
    }
    return out;
  },
};
