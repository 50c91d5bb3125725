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
 */
import type pg from 'pg';

/** The channel capture triggers notify on. The payload is empty. */
export const WAKE_CHANNEL = 'ibex_wake';

/** Tell the triggers of this db whether the daemon is waiting (true) or busy (false). */
export async function setIdle(client: pg.Client, idle: boolean): Promise<void> {
  await client.query(`UPDATE ibex.wakeup SET idle = $1, changed = now() WHERE idle IS DISTINCT FROM $1`, [idle]);
}

/** LISTEN for wake-ups on a session dedicated to listening. */
export async function listenWake(client: pg.Client, onWake: () => void): Promise<void> {
  client.on('notification', (msg) => {
    if (msg.channel === WAKE_CHANNEL) onWake();
  });
  await client.query(`LISTEN ${WAKE_CHANNEL}`);
}
