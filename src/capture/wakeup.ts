/**
 * The wake-up protocol between capture triggers and the daemon.
 *
 * A notifying commit takes a cluster-wide lock until its notification is
 * queued, which would serialize the application's commits. So triggers notify
 * only while the daemon has said it is idle: the one-row table `ibex.wakeup`
 * holds that flag. The daemon clears it when it starts working on the db and
 * sets it just before it waits — and then checks once more for pending
 * changes, because a commit between its last run and setting the flag did not
 * notify. NOTIFY is a hint; the periodic check is the guarantee.
 *
 * Several daemons may listen on one db (each for the syncs it runs): each
 * LISTEN session has its own row in `ibex.wakeup_listener`, and the flag the
 * triggers read is true while any of them waits — so one daemon going busy
 * never silences the wake-ups another is waiting for.
 */
import type pg from 'pg';

/** The channel capture triggers notify on. The payload is empty. */
export const WAKE_CHANNEL = 'ibex_wake';

/**
 * Tell the triggers of this db whether the daemon listening on this session
 * is waiting (true) or busy (false). One implicit transaction: the flag row is
 * locked first, so listeners setting theirs at once are applied one after the
 * other and the flag ends as the OR of every live listener's. Rows of sessions
 * that ended are dropped. A db installed before the listener table existed
 * has the single flag only.
 */
export async function setIdle(client: pg.Client, idle: boolean): Promise<void> {
  const v = idle ? 'true' : 'false';
  try {
    await client.query(`SELECT 1 FROM ibex.wakeup WHERE id = 1 FOR UPDATE;
INSERT INTO ibex.wakeup_listener (pid, idle) VALUES (pg_backend_pid(), ${v})
  ON CONFLICT (pid) DO UPDATE SET idle = EXCLUDED.idle, changed = now() WHERE ibex.wakeup_listener.idle IS DISTINCT FROM EXCLUDED.idle;
DELETE FROM ibex.wakeup_listener l WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid);
UPDATE ibex.wakeup SET idle = x.any, changed = now() FROM (SELECT coalesce(bool_or(idle), false) AS any FROM ibex.wakeup_listener) x
 WHERE id = 1 AND ibex.wakeup.idle IS DISTINCT FROM x.any`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42P01') throw err;
    await client.query(`UPDATE ibex.wakeup SET idle = $1, changed = now() WHERE idle IS DISTINCT FROM $1`, [idle]);
  }
}

/** LISTEN for wake-ups on a session dedicated to listening. */
export async function listenWake(client: pg.Client, onWake: () => void): Promise<void> {
  client.on('notification', (msg) => {
    if (msg.channel === WAKE_CHANNEL) onWake();
  });
  await client.query(`LISTEN ${WAKE_CHANNEL}`);
}
