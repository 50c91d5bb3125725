/**
 * `ibex conflicts [sync] [table=schema.table] [since=…] [status=…] [limit=N] [--json]`:
 * the conflict log — per resolved key the winner, the row written, and every
 * losing version with its change time — so any overwritten version can be
 * recovered.
 */
import Table from 'cli-table3';
import { usage } from '../errors.js';
import { allowOnly, parseArgs, parseIntOption, parseInterval } from './args.js';
import type { Context } from './context.js';

/** `ibex conflicts` */
export async function conflicts(ctx: Context, args: string[]): Promise<number> {
  const { words, options } = parseArgs(args);
  allowOnly(options, ['table', 'since', 'status', 'limit'], '"ibex conflicts"');
  if (words.length > 1) throw usage('write: ibex conflicts [sync] [table=schema.table] [since=1h] [status=applied|quarantined|skipped|aborted|pending] [limit=N]');
  const sync = words[0] ?? null;
  const table = options.get('table') ?? null;
  const since = options.has('since') ? parseInterval('since', options.get('since')!) : null;
  const status = options.get('status') ?? null;
  if (status && !['pending', 'applied', 'skipped', 'aborted', 'quarantined'].includes(status)) {
    throw usage(`bad value "${status}" for status: use pending, applied, skipped, aborted or quarantined`);
  }
  const limit = options.has('limit') ? parseIntOption('limit', options.get('limit')!, 1, 1_000_000) : 100;
  const [schema, rel] = table ? (table.includes('.') ? [table.slice(0, table.indexOf('.')), table.slice(table.indexOf('.') + 1)] : ['public', table]) : [null, null];
  return ctx.withControl(async (c) => {
    if (sync) {
      const s = await c.query(`SELECT 1 FROM ibex.sync WHERE name = $1`, [sync]);
      const logged = await c.query(`SELECT 1 FROM ibex.conflict WHERE sync = $1 LIMIT 1`, [sync]);
      if (s.rows.length === 0 && logged.rows.length === 0) throw usage(`no sync named "${sync}": list them with "ibex list syncs"`);
    }
    const r = await c.query(
      `SELECT id, sync, run, schemaname, relname, key, kind, strategy, winner, winner_row, winner_time, losers, status, created
         FROM ibex.conflict
        WHERE ($1::text IS NULL OR sync = $1) AND ($2::text IS NULL OR (schemaname = $2 AND relname = $3))
          AND ($4::interval IS NULL OR created > now() - $4::interval) AND ($5::text IS NULL OR status = $5)
        ORDER BY id DESC LIMIT $6`,
      [sync, schema, rel, since, status, limit]);
    const rows = r.rows.map((x) => ({
      id: Number(x.id), sync: x.sync, run: x.run === null ? null : Number(x.run), table: `${x.schemaname}.${x.relname}`, key: x.key,
      kind: x.kind, strategy: x.strategy, winner: x.winner, winnerRow: x.winner_row, winnerTime: x.winner_time, losers: x.losers,
      status: x.status, created: x.created,
    }));
    if (ctx.flags.json) {
      ctx.json(rows);
      return 0;
    }
    if (rows.length === 0) {
      ctx.say('no conflicts logged' + (sync ? ` for sync ${sync}` : ''));
      return 0;
    }
    const t = new Table({ head: ['Id', 'Sync', 'Table', 'Key', 'Kind', 'Winner', 'Losers (db: version overwritten)', 'Status', 'When'] });
    for (const x of rows) {
      const losers = (x.losers as { db: string; row: unknown; constraint?: string }[])
        .map((l) => `${l.db}: ${l.row === null ? '(deleted)' : JSON.stringify(l.row)}${l.constraint ? ` [${l.constraint}]` : ''}`).join('\n');
      t.push([x.id, x.sync, x.table, JSON.stringify(x.key), x.kind, x.winner ?? '-', losers, x.status, new Date(x.created).toISOString()]);
    }
    ctx.say(t.toString());
    return 0;
  });
}
