/**
 * Where a target's apply time goes (a diagnostic, not a scenario): 100k bench_item rows as the
 * COPY text a source sends, decoded (CopyTextParser) and applied through a target's own
 * `upsertRows` in the engine's batches, in one transaction with the progress row, in-process,
 * with no PostgreSQL and no daemon. Prints seconds for decoding and for each kind's apply.
 *
 *   node --import tsx bench/tools/target-apply.ts [ROWS, default 100000] [KINDS, default mariadb,sqlite,redis] [BATCH, default 1000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cluster/ports.js';
import { CopyTextParser } from '../../src/targets/copy-text.js';
import { openTarget } from '../../src/targets/registry.js';
import type { TableSpec, TargetParams, TextRow } from '../../src/targets/target.js';
import { sleep } from '../lib/proc.js';

const rows = Number(process.argv[2] ?? 100_000);
const kinds = (process.argv[3] ?? 'mariadb,sqlite,redis').split(',');
const batch = Number(process.argv[4] ?? 1000);

const spec: TableSpec = {
  label: 'public.bench_item', schema: 'public', name: 'bench_item', targetName: 'bench_item', keys: ['id'],
  columns: [
    { name: 'id', type: 'bigint', notNull: true },
    { name: 'grp', type: 'integer', notNull: false },
    { name: 'payload', type: 'text', notNull: false },
    { name: 'amount', type: 'numeric(12,2)', notNull: false },
    { name: 'updated_at', type: 'timestamp with time zone', notNull: false },
  ],
};

// The COPY text PostgreSQL sends for bulkSql's rows (payload: three md5s; DateStyle ISO, UTC).
const lines: string[] = [];
for (let g = 1; g <= rows; g++) {
  const h = (g * 2654435761 % 2 ** 32).toString(16).padStart(8, '0').repeat(4);
  lines.push(`${g}\t${g % 100}\t${h}${h}${h}\t${((g % 100000) / 100).toFixed(2)}\t2026-12-04 23:30:00.${String(g % 1e6).padStart(6, '0')}+00\n`);
}
const copy = Buffer.from(lines.join(''));
const chunks: Buffer[] = [];
for (let i = 0; i < copy.length; i += 65_536) chunks.push(copy.subarray(i, i + 65_536));

let t0 = performance.now();
const parser = new CopyTextParser();
const decoded: TextRow[] = [];
for (const c of chunks) for (const r of parser.push(c)) decoded.push(r);
console.log(`decode ${decoded.length} rows: ${((performance.now() - t0) / 1000).toFixed(3)} s`);

const dir = mkdtempSync(join(tmpdir(), 'ibex-target-apply-'));
try {
  for (const kind of kinds) {
    const cleanup: (() => Promise<void>)[] = [];
    let params: TargetParams;
    if (kind === 'mariadb') {
      const mysql = (await import('mysql2/promise')).default;
      const db = `ibex_apply_${process.pid}`;
      const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
      await admin.query(`CREATE DATABASE \`${db}\``);
      await admin.query(`CREATE TABLE \`${db}\`.bench_item (id BIGINT PRIMARY KEY, grp INT, payload LONGTEXT, amount DECIMAL(12,2), updated_at DATETIME(6)) ENGINE=InnoDB`);
      cleanup.push(async () => {
        await admin.query(`DROP DATABASE \`${db}\``);
        await admin.end();
      });
      params = { name: 'M', kind: 'mariadb', host: '127.0.0.1', port: 3306, user: 'root', dbname: db };
    } else if (kind === 'sqlite') {
      const file = join(dir, 't.sqlite');
      const { default: Database } = await import('better-sqlite3');
      const d = new Database(file);
      d.exec('CREATE TABLE bench_item (id INTEGER PRIMARY KEY, grp INTEGER, payload TEXT, amount TEXT, updated_at TEXT)');
      d.close();
      params = { name: 'S', kind: 'sqlite', dbname: file };
    } else if (kind === 'redis') {
      const port = await freePort();
      const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
      cleanup.push(async () => {
        proc.kill('SIGTERM');
      });
      await sleep(300);
      params = { name: 'R', kind: 'redis', host: '127.0.0.1', port, dbname: '0' };
    } else {
      throw new Error(`unknown kind ${kind}`);
    }
    try {
      const target = await openTarget(params);
      const cpu0 = process.cpuUsage();
      t0 = performance.now();
      await target.begin();
      await target.readProgress('s');
      for (let i = 0; i < decoded.length; i += batch) await target.upsertRows(spec, decoded.slice(i, i + batch));
      if (target.caps.progressInTxn) {
        await target.writeProgress('s', [{ source: 'A', snapshot: '1:1:', run: 1 }]);
        await target.commit();
      } else {
        await target.commit();
        await target.writeProgress('s', [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      }
      const s = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      console.log(`${kind} upsert ${decoded.length} rows (batches of ${batch}): ${s.toFixed(3)} s, Node CPU ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s`);
      await target.close();
    } finally {
      for (const c of cleanup) await c();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
