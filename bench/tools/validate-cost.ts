/**
 * Measure `ibex validate` on two identical 1M-row tables (two throwaway clusters).
 * Run: cd /work/main && node --no-warnings --import tsx bench/tools/validate-cost.ts [rows]
 */
import { createClusters } from '../../src/cluster/clusters.js';
import { connect } from '../../src/db/connect.js';
import { main } from '../../src/cli/main.js';

const ROWS = Number(process.argv[2] ?? 1_000_000);
const set = await createClusters({ count: 2, label: 'ibex-validate-bench' });
const cli = async (...args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> => {
  let out = '';
  let err = '';
  const t0 = performance.now();
  const code = await main(['--control', set.clusters[0]!.url('ibexctl'), ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err, ms: Math.round(performance.now() - t0) };
};
try {
  await set.clusters[0]!.createDatabase('ibexctl');
  for (const c of set.clusters) {
    await c.createDatabase('app');
    const s = await connect(c.params('app'));
    await s.query(`CREATE TABLE big (id bigint PRIMARY KEY, name text, price numeric(12,2), at timestamptz, note text)`);
    const t0 = performance.now();
    await s.query(`INSERT INTO big SELECT g, 'name ' || g, g * 0.01, '2024-01-01'::timestamptz + g * interval '1 second', md5(g::text) FROM generate_series(1, $1) g`, [ROWS]);
    await s.query(`VACUUM ANALYZE big`);
    console.log(`loaded ${ROWS} rows on ${c.name} in ${Math.round(performance.now() - t0)} ms`);
    await s.end();
  }
  const must = async (...a: string[]): Promise<void> => {
    const r = await cli(...a);
    if (r.code !== 0) throw new Error(`ibex ${a.join(' ')}: ${r.code} ${r.out} ${r.err}`);
  };
  await must('install');
  for (const c of set.clusters) {
    const p = c.params('app');
    await must('add', 'db', c.name, `dbname=app`, `host=${p.host}`, `port=${p.port}`, `user=${p.user}`);
  }
  await must('add', 'table', 'public.big', `db=${set.clusters[0]!.name}`, 'relgroup=g');
  await must('add', 'sync', 's', 'relgroup=g', `dbs=${set.clusters.map((c) => `${c.name}:source`).join(',')}`);
  for (let i = 0; i < 3; i++) {
    const r = await cli('validate', 's', '--json');
    const doc = JSON.parse(r.out);
    const t = doc.syncs[0].tables[0];
    console.log(`identical: exit ${r.code} in ${r.ms} ms (table ${t.ms} ms, ${t.buckets} buckets, rows ${JSON.stringify(t.rows)})`);
  }
  const b = await connect(set.clusters[1]!.params('app'));
  await b.query(`BEGIN; SET LOCAL session_replication_role = replica; UPDATE big SET note = 'drift' WHERE id % 100000 = 7; DELETE FROM big WHERE id = 500000; COMMIT`);
  await b.end();
  const r = await cli('validate', 's', '--json');
  const doc = JSON.parse(r.out);
  const t = doc.syncs[0].tables[0];
  console.log(`11 differences: exit ${r.code} in ${r.ms} ms (table ${t.ms} ms, ${t.differingBuckets} differing buckets, ${t.differences} differences)`);
  const rep = await cli('validate', 's', '--repair', `--from=${set.clusters[0]!.name}`);
  console.log(`repair: exit ${rep.code} in ${rep.ms} ms\n${rep.out}`);
} finally {
  await set.destroy();
}
