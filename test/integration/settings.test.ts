/**
 * Global settings (`ibex set`, `ibex show`), the purge of run history and
 * conflict log (`purgeHistory`), and the filters of `ibex conflicts`, against
 * a real control database. Rows are written straight into ibex.conflict and
 * ibex.run with times in the past, so nothing waits on the clock.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { useClusters, ok, fails } from '../helpers/env.js';
import { openControl } from '../../src/control/connection.js';
import { purgeHistory } from '../../src/control/retention.js';
import { IbexError } from '../../src/errors.js';

const env = useClusters(1);

async function ctl(text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return env.query(0, text, values, 'ibexctl');
}

async function settings(): Promise<Record<string, string>> {
  const rows = await ctl(`SELECT name, value FROM ibex.config ORDER BY name`);
  return Object.fromEntries(rows.map((r) => [String(r.name), String(r.value)]));
}

const DEFAULTS = {
  conflict_log_retention: '30 days',
  default_conflict_strategy: 'latest',
  http_listen: 'off',
  lease_seconds: '30',
  lock_timeout_ms: '2000',
  ready_max_age_s: '300',
  row_lock_timeout_ms: '10000',
  run_history_retention: '30 days',
  run_pause_max_ms: '100',
  statement_timeout_ms: '0',
};

/** Log one conflict directly; `ago` is an interval before now. Returns its id. */
async function logConflict(sync: string, schema: string, table: string, status: string, ago: string, id = 1): Promise<number> {
  const rows = await ctl(
    `INSERT INTO ibex.conflict (sync, schemaname, relname, key, kind, strategy, winner, winner_row, losers, status, created)
     VALUES ($1, $2, $3, jsonb_build_object('id', $6::int), 'update_update', 'latest', 'A', jsonb_build_object('id', $6::int, 'v', 'won'),
             jsonb_build_array(jsonb_build_object('db', 'B', 'row', jsonb_build_object('id', $6::int, 'v', 'lost'), 'changed_at', null)),
             $4, now() - $5::interval)
     RETURNING id`,
    [sync, schema, table, status, ago, id]);
  return Number(rows[0]!.id);
}

/** Record one run directly; `ended` false leaves it running. Returns its id. */
async function logRun(sync: string, status: string, ago: string): Promise<number> {
  const rows = await ctl(
    `INSERT INTO ibex.run (sync, kind, started, ended, status)
     VALUES ($1, 'delta', now() - $3::interval, CASE WHEN $2 = 'running' THEN NULL ELSE now() - $3::interval + interval '1 second' END, $2)
     RETURNING id`,
    [sync, status, ago]);
  return Number(rows[0]!.id);
}

describe('global settings, history purge and the conflict log', () => {
  before(async () => {
    ok(await env.cli('install'));
    // Syncs for ibex.run's foreign key, made directly: this file tests no sync command.
    await ctl(`INSERT INTO ibex.db (name, dbname) VALUES ('A', 'app')`);
    await ctl(`INSERT INTO ibex.relgroup (name) VALUES ('g')`);
    await ctl(`INSERT INTO ibex.dbgroup (name) VALUES ('dg')`);
    await ctl(`INSERT INTO ibex.sync (name, relgroup, dbgroup, status) SELECT s, 'g', 'dg', 'active' FROM unnest(ARRAY['c1', 'p1', 'p2']) s`);
  });

  describe('ibex show', () => {
    it('shows every setting with its value, default and meaning', async () => {
      const all = JSON.parse(ok(await env.cli('show', '--json')).out) as { name: string; value: string; default: string; about: string }[];
      assert.deepEqual(Object.fromEntries(all.map((s) => [s.name, s.value])), DEFAULTS);
      assert.deepEqual(Object.fromEntries(all.map((s) => [s.name, s.default])), DEFAULTS);
      assert.ok(all.every((s) => s.about.length > 0));
      const same = JSON.parse(ok(await env.cli('show', 'all', '--json')).out) as unknown;
      assert.deepEqual(same, all);
      const text = ok(await env.cli('show')).out;
      assert.match(text, /conflict_log_retention\s*│\s*30 days/);
      assert.match(text, /statement_timeout_ms/);
    });

    it('shows the settings named, in the order given', async () => {
      const two = JSON.parse(ok(await env.cli('show', 'lock_timeout_ms', 'conflict_log_retention', '--json')).out) as { name: string; value: string }[];
      assert.deepEqual(two.map((s) => [s.name, s.value]), [['lock_timeout_ms', '2000'], ['conflict_log_retention', '30 days']]);
    });

    it('refuses an unknown name with the list of names, and unknown flags', async () => {
      fails(await env.cli('show', 'log_level'),
        2, /^ibex: unknown setting "log_level": use one of conflict_log_retention, default_conflict_strategy, http_listen, lease_seconds, lock_timeout_ms, ready_max_age_s, row_lock_timeout_ms, run_history_retention, run_pause_max_ms, statement_timeout_ms$/);
      fails(await env.cli('show', '--verbose'), 2, /unknown flag "--verbose" for "ibex show"/);
      fails(await env.cli('show', 'x=1'), 2, /unknown option "x"/);
    });
  });

  describe('ibex set', () => {
    it('sets the pause after busy runs, 0 to 60000 ms, and shows its default until then', async () => {
      const shown = JSON.parse(ok(await env.cli('show', 'run_pause_max_ms', '--json')).out) as { name: string; value: string; default: string }[];
      assert.deepEqual(shown.map((s) => [s.name, s.value, s.default]), [['run_pause_max_ms', '100', '100']]);
      fails(await env.cli('set', 'run_pause_max_ms=-5'), 2, /^ibex: bad value "-5" for run_pause_max_ms: give a whole number from 0 to 60000$/);
      fails(await env.cli('set', 'run_pause_max_ms=60001'), 2, /^ibex: bad value "60001" for run_pause_max_ms: give a whole number from 0 to 60000$/);
      fails(await env.cli('set', 'run_pause_max_ms=soon'), 2, /^ibex: bad value "soon" for run_pause_max_ms: give a whole number from 0 to 60000$/);
      assert.equal((await settings()).run_pause_max_ms, undefined, 'nothing written by a refused value');
      const r = ok(await env.cli('set', 'run_pause_max_ms=0'));
      assert.match(r.out, /^set run_pause_max_ms=0$/m);
      assert.match(r.out, /after "ibex reload"/);
      assert.equal((await settings()).run_pause_max_ms, '0');
      // Back to the installed state (no row: the default applies), which the tests below compare with.
      await ctl(`DELETE FROM ibex.config WHERE name = 'run_pause_max_ms'`);
    });

    it('stores valid values in their canonical form and says what changed', async () => {
      const r = ok(await env.cli('set', 'conflict_log_retention=7d', 'run_history_retention=36h', 'lock_timeout_ms=5000',
        'statement_timeout_ms=0', 'default_conflict_strategy=bucardo_skip'));
      assert.match(r.out, /^set conflict_log_retention=7 days \(was 30 days\)$/m);
      assert.match(r.out, /^set run_history_retention=36 hours \(was 30 days\)$/m);
      assert.match(r.out, /^set lock_timeout_ms=5000 \(was 2000\)$/m);
      assert.match(r.out, /^statement_timeout_ms is already 0$/m);
      assert.match(r.out, /^set default_conflict_strategy=skip \(was latest\)$/m);
      assert.deepEqual(await settings(), {
        conflict_log_retention: '7 days', default_conflict_strategy: 'skip', lock_timeout_ms: '5000',
        row_lock_timeout_ms: '10000', run_history_retention: '36 hours', statement_timeout_ms: '0',
      });
      ok(await env.cli('set', 'CONFLICT_LOG_RETENTION=90', 'run_history_retention=30 days', 'statement_timeout_ms=60000', 'default_conflict_strategy=Latest'));
      const s = await settings();
      assert.equal(s.conflict_log_retention, '90 seconds');
      assert.equal(s.run_history_retention, '30 days');
      assert.equal(s.statement_timeout_ms, '60000');
      assert.equal(s.default_conflict_strategy, 'latest');
      const shown = JSON.parse(ok(await env.cli('show', 'statement_timeout_ms', '--json')).out) as { value: string; default: string }[];
      assert.deepEqual(shown.map((x) => [x.value, x.default]), [['60000', '0']]);
    });

    it('refuses bad values, unknown names and bad syntax, and changes nothing', async () => {
      const before = await settings();
      const cases: [string[], RegExp][] = [
        [['conflict_log_retention=soon'], /bad duration "soon" for conflict_log_retention/],
        [['run_history_retention=0'], /bad duration "0" for run_history_retention: it must be more than zero/],
        [['run_history_retention=-1d'], /bad duration "-1d" for run_history_retention/],
        [['lock_timeout_ms=-1'], /bad value "-1" for lock_timeout_ms: give a whole number from 0 to 2147483647/],
        [['lock_timeout_ms=1.5'], /bad value "1.5" for lock_timeout_ms/],
        [['statement_timeout_ms=2147483648'], /bad value "2147483648" for statement_timeout_ms/],
        [['statement_timeout_ms='], /bad value "" for statement_timeout_ms/],
        [['default_conflict_strategy=A,B'], /bad value "A,B" for default_conflict_strategy: a list of dbs belongs to one sync/],
        [['default_conflict_strategy=newest'], /unknown strategy "newest" for default_conflict_strategy: use latest, skip/],
        [['log_level=verbose'], /^ibex: unknown setting "log_level": use one of conflict_log_retention, default_conflict_strategy, http_listen, lease_seconds, lock_timeout_ms, ready_max_age_s, row_lock_timeout_ms, run_history_retention, run_pause_max_ms, statement_timeout_ms$/],
        // All or nothing: a good value before a bad one is not stored either.
        [['lock_timeout_ms=100', 'conflict_log_retention=soon'], /bad duration "soon"/],
        [['lock_timeout_ms=100', 'lock_timeout_ms=200'], /option "lock_timeout_ms" is given twice/],
        [[], /"ibex set" needs a setting: write ibex set name=value/],
        [['lock_timeout_ms', '100'], /unexpected "lock_timeout_ms 100" for "ibex set"/],
        [['--lock_timeout_ms=100'], /unknown flag "--lock_timeout_ms" for "ibex set"/],
      ];
      for (const [args, re] of cases) fails(await env.cli('set', ...args), 2, re);
      assert.deepEqual(await settings(), before);
    });

    it('does everything but commit in a dry run', async () => {
      const before = await settings();
      const r = ok(await env.cli('set', 'lock_timeout_ms=42', 'run_history_retention=2d', '--dry-run'));
      assert.match(r.out, /^would set lock_timeout_ms=42 \(was 5000\)$/m);
      assert.match(r.out, /^would set run_history_retention=2 days \(was 30 days\)$/m);
      assert.match(r.out, /dry run: nothing was changed\n$/);
      assert.deepEqual(await settings(), before);
    });

    it('puts back a setting whose row is missing, and show falls back to its default', async () => {
      await ctl(`DELETE FROM ibex.config WHERE name = 'lock_timeout_ms'`);
      const shown = JSON.parse(ok(await env.cli('show', 'lock_timeout_ms', '--json')).out) as { value: string }[];
      assert.deepEqual(shown.map((x) => x.value), ['2000']);
      const r = ok(await env.cli('set', 'lock_timeout_ms=3000'));
      assert.match(r.out, /^set lock_timeout_ms=3000$/m);
      const rows = await ctl(`SELECT value, about FROM ibex.config WHERE name = 'lock_timeout_ms'`);
      assert.equal(rows[0]!.value, '3000');
      assert.match(String(rows[0]!.about), /lock_timeout/);
    });
  });

  describe('purgeHistory', () => {
    let control: pg.Client;
    before(async () => {
      control = await openControl(env.controlUrl);
    });
    after(async () => {
      await control?.end();
    });

    it('deletes exactly the finished history older than each retention, in batches', async () => {
      ok(await env.cli('set', 'conflict_log_retention=10d', 'run_history_retention=20d'));
      const deleted = {
        conflicts: [
          await logConflict('p1', 'public', 'purge_t', 'applied', '11 days'),
          await logConflict('p2', 'public', 'purge_t', 'skipped', '15 days'),
          // A conflict of a sync that was removed since (ibex.conflict.sync has no foreign key).
          await logConflict('gone', 'public', 'purge_t', 'quarantined', '30 days'),
          await logConflict('p1', 'public', 'purge_t', 'aborted', '400 days'),
          ...await Promise.all([1, 2, 3, 4, 5].map((i) => logConflict('p1', 'public', 'purge_t', 'applied', `${10 + i} days`, i))),
        ],
        runs: [
          await logRun('p1', 'good', '21 days'),
          await logRun('p2', 'failed', '100 days'),
          await logRun('p1', 'empty', '30 days'),
          await logRun('p2', 'aborted', '25 days'),
        ],
      };
      const kept = {
        conflicts: [
          // Pending: the outcome of that overwrite is unknown, so it stays whatever its age.
          await logConflict('p1', 'public', 'purge_t', 'pending', '40 days'),
          await logConflict('gone', 'public', 'purge_t', 'pending', '400 days'),
          await logConflict('p1', 'public', 'purge_t', 'applied', '9 days'),
          await logConflict('p2', 'public', 'purge_t', 'applied', '1 hour'),
        ],
        runs: [
          // Still in progress, however long ago it started.
          await logRun('p1', 'running', '50 days'),
          await logRun('p1', 'good', '19 days'),
          await logRun('p2', 'good', '1 minute'),
        ],
      };
      // A kick that names an old run: ibex.kick.run is a plain id, not a foreign key, so the run can go.
      await ctl(`INSERT INTO ibex.kick (sync, requested, taken, run) VALUES ('p2', now() - interval '25 days', now() - interval '25 days', $1)`, [deleted.runs[3]]);
      // Kicks: an answered one older than run_history_retention goes; a waiting one and a recent one stay.
      await ctl(`INSERT INTO ibex.kick (sync, requested, taken) VALUES ('p1', now() - interval '30 days', NULL), ('p1', now() - interval '1 day', now() - interval '1 day')`);
      const fks = await ctl(`SELECT conname FROM pg_constraint WHERE contype = 'f' AND confrelid IN ('ibex.run'::regclass, 'ibex.conflict'::regclass)`);
      assert.deepEqual(fks, [], 'a foreign key now references ibex.run or ibex.conflict: purgeHistory must keep the rows it references');

      const conflictsBefore = (await ctl(`SELECT id FROM ibex.conflict`)).map((r) => Number(r.id));
      const runsBefore = (await ctl(`SELECT id FROM ibex.run`)).map((r) => Number(r.id));
      const result = await purgeHistory(control, { batchSize: 2 });
      assert.deepEqual(result, { conflicts: deleted.conflicts.length, runs: deleted.runs.length, kicks: 1 });
      assert.deepEqual((await ctl(`SELECT taken IS NULL AS waiting FROM ibex.kick ORDER BY id`)).map((k) => k.waiting), ['t', 'f']);

      const conflictsAfter = (await ctl(`SELECT id FROM ibex.conflict ORDER BY id`)).map((r) => Number(r.id));
      const runsAfter = (await ctl(`SELECT id FROM ibex.run ORDER BY id`)).map((r) => Number(r.id));
      assert.deepEqual(conflictsAfter, conflictsBefore.filter((id) => !deleted.conflicts.includes(id)).sort((a, b) => a - b));
      assert.deepEqual(runsAfter, runsBefore.filter((id) => !deleted.runs.includes(id)).sort((a, b) => a - b));
      for (const id of kept.conflicts) assert.ok(conflictsAfter.includes(id), `conflict ${id} should be kept`);
      for (const id of kept.runs) assert.ok(runsAfter.includes(id), `run ${id} should be kept`);
      assert.equal(Number((await ctl(`SELECT count(*) AS n FROM ibex.kick`))[0]!.n), 2, 'the waiting kick and the recent one');

      assert.deepEqual(await purgeHistory(control), { conflicts: 0, runs: 0, kicks: 0 });
    });

    it('uses the defaults when a retention row is missing', async () => {
      const old = await logConflict('p1', 'public', 'purge_t', 'applied', '31 days');
      const young = await logConflict('p1', 'public', 'purge_t', 'applied', '29 days');
      await ctl(`DELETE FROM ibex.config WHERE name = 'conflict_log_retention'`);
      try {
        assert.deepEqual(await purgeHistory(control), { conflicts: 1, runs: 0, kicks: 0 });
        const left = (await ctl(`SELECT id FROM ibex.conflict WHERE id = ANY($1)`, [[old, young]])).map((r) => Number(r.id));
        assert.deepEqual(left, [young]);
      } finally {
        ok(await env.cli('set', 'conflict_log_retention=10d'));
      }
      await ctl(`DELETE FROM ibex.conflict WHERE id = $1`, [young]);
    });

    it('refuses a retention that is not a positive interval and deletes nothing', async () => {
      const victim = await logConflict('p1', 'public', 'purge_t', 'applied', '100 days');
      const run = await logRun('p1', 'good', '100 days');
      for (const [name, value, re] of [
        ['conflict_log_retention', 'soon', /bad conflict_log_retention "soon" in ibex.config \(not an interval\): fix it with "ibex set conflict_log_retention=30d"/],
        ['run_history_retention', '-1 day', /bad run_history_retention "-1 day" in ibex.config \(it must be more than zero\)/],
        ['conflict_log_retention', '0', /bad conflict_log_retention "0" in ibex.config \(it must be more than zero\)/],
      ] as const) {
        const was = (await ctl(`SELECT value FROM ibex.config WHERE name = $1`, [name]))[0]!.value;
        await ctl(`UPDATE ibex.config SET value = $2 WHERE name = $1`, [name, value]);
        try {
          await assert.rejects(purgeHistory(control), (e: unknown) => e instanceof IbexError && e.code === 'config' && re.test(e.message));
        } finally {
          await ctl(`UPDATE ibex.config SET value = $2 WHERE name = $1`, [name, was]);
        }
      }
      assert.equal(Number((await ctl(`SELECT count(*) AS n FROM ibex.conflict WHERE id = $1`, [victim]))[0]!.n), 1);
      assert.equal(Number((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE id = $1`, [run]))[0]!.n), 1);
      assert.deepEqual(await purgeHistory(control), { conflicts: 1, runs: 1, kicks: 0 });
    });
  });

  describe('ibex conflicts filters', () => {
    const ids = { item1h: 0, item5h: 0, itemPending: 0, dotted: 0, orders: 0, other: 0 };
    before(async () => {
      ids.item1h = await logConflict('c1', 'public', 'item', 'applied', '1 hour', 1);
      ids.item5h = await logConflict('c1', 'public', 'item', 'applied', '5 hours', 2);
      ids.itemPending = await logConflict('c1', 'public', 'item', 'pending', '10 minutes', 3);
      ids.dotted = await logConflict('c1', 'My Schema', 'a.b', 'quarantined', '2 days', 4);
      ids.orders = await logConflict('c1', 'shop', 'orders', 'skipped', '30 minutes', 5);
      ids.other = await logConflict('p2', 'public', 'item', 'applied', '1 minute', 6);
    });

    async function shown(...args: string[]): Promise<number[]> {
      const r = ok(await env.cli('conflicts', ...args, '--json'));
      return (JSON.parse(r.out) as { id: number }[]).map((x) => x.id);
    }

    it('filters by table with --table=, --table NAME and table=, quoted names included', async () => {
      const item = [ids.item1h, ids.item5h, ids.itemPending].sort((a, b) => b - a);
      assert.deepEqual(await shown('c1', '--table=public.item'), item);
      assert.deepEqual(await shown('c1', 'table=item'), item);
      assert.deepEqual(await shown('c1', '--table', 'public.item'), item);
      assert.deepEqual(await shown('--table="My Schema"."a.b"'), [ids.dotted]);
      assert.deepEqual(await shown('c1', 'table="My Schema"."a.b"'), [ids.dotted]);
      assert.deepEqual(await shown('c1', '--table=shop.%'), [ids.orders]);
      assert.deepEqual(await shown('c1', '--table=public.ite_'), [], '_ is literal in a name without a pattern');
      const r = ok(await env.cli('conflicts', 'c1', '--table="My Schema"."a.b"', '--json'));
      const [row] = JSON.parse(r.out) as { table: string; schema: string; relname: string; status: string; losers: { row: { v: string } }[] }[];
      assert.deepEqual([row!.table, row!.schema, row!.relname, row!.status, row!.losers[0]!.row.v], ['"My Schema"."a.b"', 'My Schema', 'a.b', 'quarantined', 'lost']);
      const text = ok(await env.cli('conflicts', 'c1', '--table="My Schema"."a.b"')).out;
      assert.match(text, /"My Schema"\."a\.b"/);
      assert.match(text, /B: \{"v":"lost","id":4\}/);
      assert.ok(!text.includes('\u001b['), 'no colours');
    });

    it('filters by --since as a duration', async () => {
      assert.deepEqual(await shown('c1', '--since=2h'), [ids.item1h, ids.itemPending, ids.orders].sort((a, b) => b - a));
      assert.deepEqual(await shown('c1', 'since=20m'), [ids.itemPending]);
      assert.deepEqual(await shown('c1', '--since', '3d'), [ids.item1h, ids.item5h, ids.itemPending, ids.dotted, ids.orders].sort((a, b) => b - a));
    });

    it('filters by --since as an ISO 8601 time, with or without a zone', async () => {
      // Three hours ago by the server's clock, the clock `created` comes from.
      const [t] = await ctl(`SELECT to_char((now() - interval '3 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') AS utc`);
      const utc = String(t!.utc);
      const want = [ids.item1h, ids.itemPending, ids.orders].sort((a, b) => b - a);
      assert.deepEqual(await shown('c1', `--since=${utc}Z`), want);
      assert.deepEqual(await shown('c1', `--since=${utc}.000000+00:00`), want);
      // The same instant written in another zone.
      const at = new Date(utc + 'Z');
      const plus2 = new Date(at.getTime() + 2 * 3600_000).toISOString().slice(0, 19);
      assert.deepEqual(await shown('c1', `--since=${plus2}+02:00`), want);
      assert.deepEqual(await shown('c1', `since=${plus2.replace('T', ' ')}+0200`), want);
      // Without a zone: local time, as `date` prints it.
      const p = (n: number): string => String(n).padStart(2, '0');
      const local = `${at.getFullYear()}-${p(at.getMonth() + 1)}-${p(at.getDate())}T${p(at.getHours())}:${p(at.getMinutes())}:${p(at.getSeconds())}`;
      assert.deepEqual(await shown('c1', `--since=${local}`), want);
      assert.deepEqual((await shown('c1', '--since=2000-01-01')).length, 5);
      assert.deepEqual(await shown('c1', '--since=2999-01-01T00:00Z'), []);
    });

    it('filters by status and limit, as options or flags', async () => {
      assert.deepEqual(await shown('c1', 'status=pending'), [ids.itemPending]);
      assert.deepEqual(await shown('c1', '--status=quarantined'), [ids.dotted]);
      assert.deepEqual(await shown('c1', '--table=public.item', '--status=applied', '--since=2h'), [ids.item1h]);
      const all = await shown('c1');
      assert.equal(all.length, 5);
      assert.deepEqual(await shown('c1', '--limit=2'), all.slice(0, 2));
      assert.deepEqual(await shown('c1', 'limit=1'), all.slice(0, 1));
      assert.deepEqual(await shown('p2', '--table=public.item'), [ids.other]);
    });

    it('refuses bad filters', async () => {
      const cases: [string[], RegExp][] = [
        [['--since=soon'], /bad value "soon" for since: give a duration .* or an ISO 8601 time/],
        [['--since=2024-13-01'], /bad value "2024-13-01" for since/],
        [['--since=2024-02-30T10:00Z'], /bad value "2024-02-30T10:00Z" for since/],
        [['--since=2024-05-01T25:00'], /bad value "2024-05-01T25:00" for since/],
        [['--status=maybe'], /bad value "maybe" for status/],
        [['--table=public.'], /bad table name "public\.": it ends with a dot/],
        [['--table='], /--table needs a value/],
        [['--table=public.item', 'table=public.item'], /option "table" is given twice/],
        [['--bogus=1'], /unknown flag "--bogus" for "ibex conflicts": use --table=… --since=… --status=… --limit=…/],
        [['-x'], /unknown flag "-x" for "ibex conflicts"/],
        [['c1', 'c2'], /unexpected "c2": write ibex conflicts \[sync\]/],
        [['nosync'], /no sync named "nosync"/],
      ];
      for (const [args, re] of cases) fails(await env.cli('conflicts', ...args), 2, re);
    });
  });
});
