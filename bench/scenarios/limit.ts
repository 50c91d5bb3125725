/**
 * limit: the floor nothing can beat — the rows COPYed straight out of A into
 * B (`psql \copy … TO STDOUT | psql \copy … FROM STDIN`, one transaction on
 * B), with no replication system.
 */
import { BenchEnv, bulkSql } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { withEnv, type Scenario } from '../lib/context.js';

export const limit: Scenario = {
  name: 'limit',
  needsSystem: false,
  metrics: [['rows_per_s', 'rows/s (plain COPY A→B)'], ['copy_s', 'copy s']],
  async run(ctx) {
    const rows = ctx.knobs.rows ?? 100_000;
    const env = await BenchEnv.create({ nodes: 2, label: `limit-${ctx.rep}` });
    return withEnv(ctx, env, `limit-${ctx.rep}`, async () => {
      await env.q(1, bulkSql(1, rows));
      await env.q(1, 'VACUUM ANALYZE bench_item');
      const copyS = await env.psqlCopy(1, 2, 'SELECT * FROM bench_item', 'bench_item');
      const ok = (await env.checksumsEqual()) !== null;
      return [{ rows, copy_s: round(copyS), rows_per_s: Math.round(rows / copyS), checksum_ok: ok }];
    });
  },
};
