/**
 * `ibex quarantine [list|retry|drop] [sync] [--id=N]`: rows a db refused for their values or their
 * lock (on_row_error=quarantine), set aside while the rest flowed. list shows them with table,
 * key, db, error and when they were first and last seen; retry makes their keys pending again on
 * their source (the next run sends them again); drop forgets them, each logged first.
 */
import Table from 'cli-table3';
import { dropAside, listAside, markRequeued, type AsideRow } from '../control/aside-store.js';
import { getDb } from '../control/config-store.js';
import { dbParams } from '../control/sync-config.js';
import { connect } from '../db/connect.js';
import { requeue } from '../engine/run/aside.js';
import { usage } from '../errors.js';
import { allowOnly, parseArgs, parseIntOption } from './args.js';
import type { Context } from './context.js';
import { parseExactJson } from '../db/json.js';

const SYNOPSIS = 'ibex quarantine [list|retry|drop] [sync] [--id=N]';
const ACTIONS = ['list', 'retry', 'drop'];

/** `ibex quarantine` */
export async function quarantine(ctx: Context, args: string[]): Promise<number> {
  const { words, options } = parseArgs(args, { flags: ['id'], what: '"ibex quarantine"' });
  allowOnly(options, ['id'], '"ibex quarantine"');
  const action = words[0] && ACTIONS.includes(words[0]) ? words.shift()! : 'list';
  if (words.length > 1) throw usage(`unexpected "${words.slice(1).join(' ')}": write ${SYNOPSIS}`);
  const sync = words[0];
  const id = options.has('id') ? parseIntOption('id', options.get('id')!, 1, Number.MAX_SAFE_INTEGER) : undefined;
  if (action !== 'list' && sync === undefined && id === undefined) throw usage(`name a sync or --id=N to ${action}: ${SYNOPSIS}`);
  return ctx.withControl(async (c) => {
    if (sync !== undefined && (await c.query(`SELECT 1 FROM ibex.sync WHERE name = $1`, [sync])).rowCount === 0) {
      throw usage(`no sync named "${sync}": list them with "ibex list syncs"`);
    }
    const rows = await listAside(c, sync, id);
    if (action === 'list') return list(ctx, rows, sync);
    if (rows.length === 0) {
      ctx.say(`no rows set aside${sync ? ` for sync ${sync}` : ''}${id ? ` with id ${id}` : ''}`);
      return 0;
    }
    if (action === 'drop') {
      for (const r of rows) ctx.say(`dropped ${r.id}: sync ${r.sync} ${r.op} ${r.schemaname}.${r.relname} ${r.key} on db ${r.db} (${r.error})`, true);
      await dropAside(c, rows.map((r) => r.id));
      return 0;
    }
    const open = new Map<string, Awaited<ReturnType<typeof connect>>>();
    try {
      const done = await requeue(rows, async (db) => {
        if (!open.has(db)) {
          const rec = await getDb(c, db);
          if (!rec || (rec.dbtype ?? 'postgres') !== 'postgres') return undefined;
          open.set(db, await connect(dbParams(rec as unknown as Record<string, unknown>)));
        }
        return open.get(db);
      });
      await markRequeued(c, done);
      ctx.say(`${done.length} row(s) re-queued: the next run of their sync applies them again${done.length < rows.length ? ` (${rows.length - done.length} without a PostgreSQL source to re-queue on)` : ''}`);
    } finally {
      for (const client of open.values()) await client.end().catch(() => {});
    }
    return 0;
  });
}

function list(ctx: Context, rows: AsideRow[], sync: string | undefined): number {
  if (ctx.flags.json) {
    ctx.json(rows.map((r) => ({ ...r, key: parseExactJson(r.key) })));
    return 0;
  }
  if (rows.length === 0) {
    ctx.say('no rows set aside' + (sync ? ` for sync ${sync}` : ''));
    return 0;
  }
  const t = new Table({ head: ['Id', 'Sync', 'Table', 'Key', 'Db', 'Op', 'Error', 'First seen', 'Last seen', 'Seen', 'Re-queued'], style: { head: [], border: [] } });
  for (const r of rows) {
    t.push([r.id, r.sync, `${r.schemaname}.${r.relname}`, r.key, r.db, r.op, r.error, r.first_seen, r.last_seen, r.seen, r.requeued ? 'yes' : 'no']);
  }
  ctx.say(t.toString(), true);
  return 0;
}
