/**
 * The cut-over from Bucardo to ibex (`ibex import-bucardo --cutover`), after an import:
 *
 * 1. per imported sync and per source db, in one transaction: install ibex's capture and drop
 *    Bucardo's triggers from the replicated tables; the cursor is that transaction's snapshot.
 *    Every write committed before it was captured by Bucardo, every later one is captured by ibex.
 * 2. Bucardo delivers what it captured: each of its syncs is kicked once more and its run waited for
 *    (a run that started after step 1, so it reads every delta Bucardo holds).
 * 3. Bucardo's syncs are stopped (deactivated), then ibex's syncs are activated.
 * The caller then runs `ibex validate`.
 */
import type pg from 'pg';
import { installCapture } from '../capture/install.js';
import { getSync, updateSync } from '../control/config-store.js';
import { notifyControl } from '../control/daemon-store.js';
import { ident, qualified } from '../db/ident.js';
import { IbexError } from '../errors.js';
import type { ConfigContext } from './context.js';

/** Bucardo's triggers on a table: those whose function lives in schema bucardo. */
async function dropBucardoTriggers(client: pg.Client, db: string, tables: readonly { schema: string; name: string }[], say: (l: string) => void): Promise<void> {
  for (const t of tables) {
    const r = await client.query(
      `SELECT tg.tgname FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE tg.tgrelid = to_regclass($1) AND NOT tg.tgisinternal AND n.nspname = 'bucardo' ORDER BY tg.tgname`,
      [qualified(t.schema, t.name).text]);
    for (const row of r.rows) {
      await client.query(`DROP TRIGGER ${ident(String(row.tgname)).text} ON ${qualified(t.schema, t.name).text}`);
      say(`db ${db}: dropped Bucardo's trigger ${String(row.tgname)} on ${t.schema}.${t.name}`);
    }
  }
}

/** Wait until a Bucardo sync finished a run that started at or after `since` (Bucardo's clock). */
async function waitForBucardoRun(b: pg.Client, sync: string, since: Date, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const r = await b.query(`SELECT status, lastbad FROM bucardo.syncrun WHERE sync = $1 AND started >= $2 AND ended IS NOT NULL ORDER BY started DESC LIMIT 1`, [sync, since]);
    const run = r.rows[0];
    if (run) {
      if (run.lastbad === true || run.lastbad === 't') throw new IbexError('config', `Bucardo's last run of sync ${sync} failed (${String(run.status)}): fix it so Bucardo delivers what it captured, then kick it ("bucardo kick ${sync} 0"); ibex's capture is already in place`);
      return;
    }
    if (Date.now() - t0 > timeoutMs) throw new IbexError('unreachable', `Bucardo did not finish a run of sync ${sync} within ${Math.round(timeoutMs / 1000)} s: is Bucardo running ("bucardo status")? Kick it yourself ("bucardo kick ${sync} 0"), then stop it ("bucardo deactivate ${sync}") and "ibex update sync ${sync} status=active"`);
    await b.query(`SELECT pg_notify('bucardo', $1)`, [`kick_sync_${sync}`]);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Run the cut-over for these syncs (imported, inactive, without capture). */
export async function cutover(ctx: ConfigContext, c: pg.Client, b: pg.Client, syncs: readonly string[], opts: { drainTimeoutMs?: number } = {}): Promise<string[]> {
  const say = (l: string): void => ctx.say(l);
  const ready: string[] = [];
  for (const name of syncs) {
    const s = await getSync(c, name);
    if (!s) throw new IbexError('not_found', `sync ${name} of Bucardo is not in ibex: run "ibex import-bucardo --from=…" first`);
    const cursors = await c.query(`SELECT count(*)::int AS n FROM ibex.cursor WHERE sync = $1`, [name]);
    if (cursors.rows[0].n > 0) {
      say(`sync ${name}: ibex's capture is already installed; skipped`);
      continue;
    }
    ready.push(name);
  }
  const wasActive = new Set<string>();
  for (const name of ready) {
    const row = await b.query(`SELECT status FROM bucardo.sync WHERE name = $1`, [name]);
    if (row.rows[0]?.status === 'active') wasActive.add(name);
  }
  // 1. capture in, Bucardo's triggers out, one transaction per db.
  for (const name of ready) {
    await updateSync(c, name, { status: 'installing' });
    try {
      await installCapture(c, name, {
        say,
        inSourceTransaction: (client, db, tables) => dropBucardoTriggers(client, db, tables, say),
      });
    } catch (err) {
      await updateSync(c, name, { status: 'inactive' });
      throw err;
    }
    // Captured from now on, but not run before Bucardo delivered what it holds (no old value may land after a new one).
    await updateSync(c, name, { status: 'inactive', status_reason: 'cut-over from Bucardo under way' });
    say(`sync ${name}: ibex captures every write from now on`);
  }
  // 2. Bucardo drains.
  const since = (await b.query(`SELECT now() AS t`)).rows[0].t as Date;
  for (const name of ready) {
    if (!wasActive.has(name)) continue;
    say(`sync ${name}: kicking Bucardo to deliver what it captured before the cut-over …`);
    await b.query(`SELECT pg_notify('bucardo', $1)`, [`kick_sync_${name}`]);
    await waitForBucardoRun(b, name, since, opts.drainTimeoutMs ?? 300_000);
    say(`sync ${name}: Bucardo delivered its last changes`);
  }
  // 3. Bucardo stops; ibex starts.
  for (const name of ready) {
    await b.query(`UPDATE bucardo.sync SET status = 'inactive' WHERE name = $1`, [name]);
    await b.query(`SELECT pg_notify('bucardo', $1)`, [`deactivate_sync_${name}`]);
    say(`sync ${name}: stopped in Bucardo (bucardo.sync status inactive)`);
  }
  await c.query('BEGIN');
  for (const name of ready) await updateSync(c, name, wasActive.has(name) ? { status: 'active', status_reason: null } : { status: 'inactive', status_reason: null });
  await notifyControl(c, 'reload');
  await c.query('COMMIT');
  for (const name of ready) say(`sync ${name}: ${wasActive.has(name) ? 'active in ibex' : 'inactive in Bucardo, so left inactive in ibex'}`);
  return ready;
}
