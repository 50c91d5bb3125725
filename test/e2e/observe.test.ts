/**
 * The daemon can be watched: a real daemon (`ibex start`, HTTP from the
 * http_listen setting) serves /metrics, /healthz, /readyz and the dashboard;
 * configuration changes reach it at once; SIGHUP reopens its log file. The
 * dashboard is checked in headless Chromium (playwright-core).
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { useDaemonProcess } from '../helpers/daemon.js';
import { ROOT, ok, useClusters, waitFor } from '../helpers/env.js';
import { addSync, setupControl } from '../helpers/sync.js';
import { freePort } from '../../src/cluster/ports.js';

const env = useClusters(2);
const daemon = useDaemonProcess(env, {}, 'observe');
const SECRET = 'Sup3r-Secret-Pw';
let base = '';


async function get(path: string): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(base + path);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
}

/** The value of one sample of /metrics (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

async function metrics(): Promise<string> {
  const r = await get('/metrics');
  assert.equal(r.status, 200);
  return r.body;
}

async function setup(): Promise<void> {
  for (const i of [0, 1]) {
    await env.query(i, `CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await env.query(i, `CREATE TABLE c (id bigint PRIMARY KEY, v text)`);
    await env.query(i, `CREATE TABLE o (id int PRIMARY KEY, v text)`);
    await env.query(i, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
  }
  await env.query(0, `INSERT INTO o SELECT g, 'copied' FROM generate_series(1, 200) g`);
  await setupControl(env, { A: 0, B: 1 });
  // Trust authentication ignores it; it is here to prove no page shows it.
  const c = await env.client(0, 'ibexctl');
  await c.query(`UPDATE ibex.db SET dbpass = $1 WHERE name = 'A'`, [SECRET]);
  await addSync(env, 'rep', { dbs: { A: 'source', B: 'target' }, tables: ['public.t'] });
  await addSync(env, 'mm', { dbs: { A: 'source', B: 'source' }, tables: ['public.c'], options: { autokick: false, conflict_strategy: 'latest' } });
  const port = await freePort();
  ok(await daemon.ibex('set', `http_listen=127.0.0.1:${port}`));
  base = `http://127.0.0.1:${port}`;
  await daemon.start();
}

describe('the daemon, watched over HTTP', () => {
  before(setup);

  it('answers /healthz, and /metrics counts the runs, rows and lag of a replicating sync', async () => {
    const h = await get('/healthz');
    assert.equal(h.status, 200);
    await env.query(0, `INSERT INTO t SELECT g, 'r' || g FROM generate_series(1, 50) g`);
    await waitFor('B to have the 50 rows', async () => Number((await env.query(1, `SELECT count(*) AS n FROM t`))[0]!.n) === 50);
    const m = await waitFor('the rows counted in /metrics', async () => {
      const text = await metrics();
      return (sample(text, 'ibex_rows_applied_total', { sync: 'rep', table: 'public.t', op: 'insert' }) ?? 0) >= 50 ? text : undefined;
    });
    assert.equal(sample(m, 'ibex_rows_applied_total', { sync: 'rep', table: 'public.t', op: 'insert' }), 50);
    assert.ok((sample(m, 'ibex_runs_total', { sync: 'rep', result: 'good' }) ?? 0) >= 1, 'a good run counted');
    assert.ok((sample(m, 'ibex_run_duration_seconds_count', { sync: 'rep', kind: 'delta' }) ?? 0) >= 1, 'its duration observed');
    assert.ok(sample(m, 'ibex_run_duration_seconds_bucket', { sync: 'rep', kind: 'delta', le: '+Inf' }) !== undefined);
    // Measured live (at most every 5 s): nothing waits once the run is done.
    await waitFor('lag and backlog back to 0', async () => {
      const text = await metrics();
      return sample(text, 'ibex_sync_lag_seconds', { sync: 'rep' }) === 0 && sample(text, 'ibex_sync_backlog_keys', { sync: 'rep', db: 'A' }) === 0;
    }, 15_000, 200);
    const lastGood = sample(m, 'ibex_sync_last_good_run_timestamp_seconds', { sync: 'rep' });
    assert.ok(lastGood && Math.abs(lastGood - Date.now() / 1000) < 120, `last good run is recent: ${lastGood}`);
    assert.equal(sample(m, 'ibex_sync_state', { sync: 'rep', state: 'stalled' }), 0);
    assert.equal(sample(m, 'ibex_control_up'), 1);
    assert.ok((sample(m, 'ibex_process_resident_memory_bytes') ?? 0) > 0, 'process metrics are collected');
    const up = await waitFor('the dbs probed', async () => sample(await metrics(), 'ibex_db_up', { db: 'B' }) === 1);
    assert.ok(up);
    assert.ok(sample(await metrics(), 'ibex_db_clock_skew_seconds', { db: 'A' }) !== undefined);
    // The naming contract: every ibex series starts with ibex_, counters end in _total.
    for (const line of m.split('\n').filter((l) => l.startsWith('# TYPE'))) {
      const [, , name, type] = line.split(' ');
      assert.match(name!, /^ibex_/);
      if (type === 'counter') assert.match(name!, /_total$/);
    }
  });

  it('counts a conflict by kind and strategy', async () => {
    // A key past 2^53 (a snowflake id): the dashboard must show it as itself (below).
    await env.query(0, `INSERT INTO c VALUES (9007199254740993, 'first')`);
    ok(await daemon.ibex('kick', 'mm', '60'));
    await env.query(1, `UPDATE c SET v = 'from B <b>bold</b>' WHERE id = 9007199254740993`);
    await env.query(0, `UPDATE c SET v = 'from A <img src=x onerror=window.__xss=1>' WHERE id = 9007199254740993`);
    ok(await daemon.ibex('kick', 'mm', '60'));
    const m = await waitFor('the conflict counted', async () => {
      const text = await metrics();
      return text.includes('ibex_conflicts_total{sync="mm"') ? text : undefined;
    });
    const line = m.split('\n').find((l) => l.startsWith('ibex_conflicts_total{sync="mm"'))!;
    assert.match(line, /strategy="latest"/);
    assert.match(line, /kind="[a-z_]+"/);
    assert.match(line, / 1$/);
  });

  it('shows the dashboard in a browser: a sync replicating while rows are written, and a conflict with both versions', async () => {
    const out = join(ROOT, 'test-output');
    mkdirSync(out, { recursive: true });
    const profile = mkdtempSync(join(tmpdir(), 'ibex-chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1280, height: 1100 },
    });
    try {
      const page = browser.pages()[0] ?? (await browser.newPage());
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(base + '/');
      await page.waitForSelector('#syncs tr[data-sync="rep"]', { timeout: 15_000 });
      const runsBefore = await page.locator('#runs tr[data-run]').count();
      const topBefore = await page.locator('#runs tr[data-run]').first().getAttribute('data-run');
      // Write rows while the page watches: a new run with its count shows up without a reload.
      for (let i = 0; i < 5; i++) {
        await env.query(0, `INSERT INTO t SELECT g, 'live' FROM generate_series(${1000 + i * 10}, ${1009 + i * 10}) g`);
        await new Promise((r) => setTimeout(r, 300));
      }
      // Runs in the page (this file is typed without the DOM; the page's CSP forbids evaluating strings).
      await page.waitForFunction((top) => {
        type El = { getAttribute(n: string): string | null; textContent: string | null };
        const doc = (globalThis as unknown as { document: { querySelector(s: string): El | null } }).document;
        const first = doc.querySelector('#runs tr[data-run]');
        return first !== null && first.getAttribute('data-run') !== top && (first.textContent ?? '').includes('rep');
      }, topBefore, { timeout: 20_000 });
      assert.ok((await page.locator('#runs tr[data-run]').count()) >= runsBefore);
      // The chart of each sync is there, with at least one line drawn.
      await page.waitForSelector('#charts .chart[data-sync="rep"] svg path[stroke="#a15c00"]', { state: 'attached', timeout: 15_000 });
      // The conflict, both versions side by side, shown as text.
      const conflict = page.locator('#conflicts tr.conflict').first();
      await conflict.waitFor({ timeout: 15_000 });
      const text = (await conflict.textContent()) ?? '';
      assert.match(text, /winner: [AB]/);
      assert.match(text, /loser: [AB]/);
      assert.ok(text.includes('from A <img src=x onerror=window.__xss=1>'), `winning version shown as text: ${text}`);
      assert.ok(text.includes('from B <b>bold</b>'), `losing version shown as text: ${text}`);
      assert.ok(text.includes('{"id":9007199254740993}') && text.includes('"id": 9007199254740993') && !text.includes('9007199254740992'), `the key as itself: ${text}`);
      assert.equal(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss), undefined, 'no user data ran as HTML');
      assert.equal(await page.locator('#conflicts b').count(), 0, 'no user data became markup');
      await page.screenshot({ path: join(out, 'dashboard.png'), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });

  it('shows no password and no connection string on any page', async () => {
    for (const path of ['/', '/metrics', '/healthz', '/readyz', '/api/state', '/nope']) {
      const r = await get(path);
      assert.ok(!r.body.includes(SECRET), `${path} shows the password`);
      assert.ok(!/postgres(?:ql)?:\/\//.test(r.body), `${path} shows a connection URL`);
      assert.ok(!r.body.includes(env.controlUrl), `${path} shows the control URL`);
    }
  });

  it('is ready while every sync ran lately, and answers 503 with the reasons when one has not', async () => {
    ok(await daemon.ibex('kick', 'mm', '60'));
    ok(await daemon.ibex('kick', 'rep', '60'));
    const ready = await get('/readyz');
    assert.equal(ready.status, 200, ready.body);
    assert.deepEqual(JSON.parse(ready.body), { ready: true, reasons: [] });
    // mm runs only when kicked: with a 1 s allowance it soon counts as stalled.
    ok(await daemon.ibex('set', 'ready_max_age_s=1'));
    const r = await waitFor('/readyz to answer 503', async () => {
      const x = await get('/readyz');
      return x.status === 503 ? x : undefined;
    }, 15_000, 200);
    const doc = JSON.parse(r.body) as { ready: boolean; reasons: string[] };
    assert.equal(doc.ready, false);
    assert.ok(doc.reasons.some((x) => /^sync mm: last good run \d+ s ago, more than ready_max_age_s \(1\)$/.test(x)), doc.reasons.join('; '));
    ok(await daemon.ibex('set', 'ready_max_age_s=300'));
    assert.equal((await get('/readyz')).status, 200);
  });

  it('measures lag and backlog live while a sync does not run (paused)', async () => {
    ok(await daemon.ibex('pause', 'rep'));
    await env.query(0, `INSERT INTO t SELECT g, 'waiting' FROM generate_series(7000, 7004) g`);
    const m = await waitFor('the waiting keys in /metrics', async () => {
      const text = await metrics();
      return sample(text, 'ibex_sync_backlog_keys', { sync: 'rep', db: 'A' }) === 5 ? text : undefined;
    }, 20_000, 200);
    assert.equal(sample(m, 'ibex_sync_paused', { sync: 'rep' }), 1);
    // The lag is the age of the oldest waiting change: it grows while nothing runs.
    await waitFor('the lag to grow past 1 s', async () => (sample(await metrics(), 'ibex_sync_lag_seconds', { sync: 'rep' }) ?? 0) >= 1, 20_000, 200);
    ok(await daemon.ibex('resume', 'rep'));
    await waitFor('the backlog to drain', async () => sample(await metrics(), 'ibex_sync_backlog_keys', { sync: 'rep', db: 'A' }) === 0, 30_000, 200);
  });

  it('adopts a sync added while it runs at once (its onetimecopy starts), and a kick waits for the adoption', async () => {
    ok(await daemon.ibex('add', 'sync', 'late', 'tables=public.o', 'dbs=A:source,B:target', 'onetimecopy=1'));
    const added = Date.now();
    const ctl = await env.client(0, 'ibexctl');
    await waitFor('the daemon to run the new sync', async () => (await ctl.query(`SELECT 1 FROM ibex.run WHERE sync = 'late'`)).rowCount, 3000, 20);
    const adoptedMs = Date.now() - added;
    await waitFor('the onetimecopy to fill B', async () => Number((await env.query(1, `SELECT count(*) AS n FROM o`))[0]!.n) === 200, 30_000, 50);
    assert.ok(adoptedMs < 3000, `adopted after ${adoptedMs} ms`);
    // Kicked right after it is added: the kick is answered once the daemon has adopted it.
    ok(await daemon.ibex('add', 'sync', 'kicked', 'tables=public.k', 'dbs=A:source,B:target', 'autokick=0'));
    await env.query(0, `INSERT INTO k VALUES (1, 'x')`);
    ok(await daemon.ibex('kick', 'kicked', '30'));
    assert.equal(Number((await env.query(1, `SELECT count(*) AS n FROM k`))[0]!.n), 1);
    // Removed: retired at once (its state row goes with it, and it leaves /metrics).
    ok(await daemon.ibex('remove', 'sync', 'kicked'));
    await waitFor('the removed sync to leave /metrics', async () => !(await metrics()).includes('sync="kicked",state='), 3000, 50);
  });

  it('logs one JSON object per line with level names, and reopens its log file on SIGHUP', async () => {
    const pid = daemon.pid()!;
    const file = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const logFile = file[file.indexOf('--logfile') + 1]!;
    const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 0);
    for (const l of lines) {
      const o = JSON.parse(l) as Record<string, unknown>;
      assert.match(String(o.level), /^(trace|debug|info|warn|error|fatal)$/);
      assert.equal(typeof o.msg, 'string');
    }
    const rotated = logFile + '.1';
    renameSync(logFile, rotated);
    process.kill(pid, 'SIGHUP');
    await waitFor('a new log file at the old path', async () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('log file reopened'), 10_000, 50);
    // Later lines go to the new file, not the rotated one.
    const before = readFileSync(rotated, 'utf8').length;
    await env.query(0, `INSERT INTO t VALUES (5000, 'after rotation')`);
    // Woken by the write itself, after pause, resume, add, remove and SIGHUP above (test/e2e/wakeup.test.ts).
    await waitFor('the write after the SIGHUP on B', async () => (await env.query(1, `SELECT 1 FROM t WHERE id = 5000`)).length === 1, 3000, 20);
    assert.equal(readFileSync(rotated, 'utf8').length, before, 'nothing more written to the rotated file');
    rmSync(rotated, { force: true });
    assert.ok(daemon.alive());
  });
});
