/**
 * `ibex conflicts [sync] [table=schema.table] [since=…] [status=…] [limit=N] [--json]`:
 * the conflict log — per resolved key the winner, the row written, and every
 * losing version with its change time — so any overwritten version can be
 * recovered. Each option may also be written as a flag: `--table=…`, `--since=…`.
 * `ibex conflicts restore <id>` puts a logged version back (see engine/restore.ts).
 */
import Table from 'cli-table3';
import { listConflicts, syncHasConflictLog } from '../control/conflict-store.js';
import { restoreConflict } from '../engine/restore.js';
import { usage } from '../errors.js';
import { allowOnly, parseArgs, parseIntOption, parseInterval } from './args.js';
import { displayRelation, likeOf, parseRelationTerm } from '../config/names.js';
import type { Context } from './context.js';
import { stringifyExactJson } from '../db/json.js';

const OPTIONS = ['table', 'since', 'status', 'limit'];
const STATUSES = ['pending', 'applied', 'skipped', 'aborted', 'quarantined'];
const SYNOPSIS = 'ibex conflicts [sync] [--table=schema.table] [--since=1h|2024-05-01T10:00Z] [--status=applied|quarantined|skipped|aborted|pending] [--limit=N] [--json]';

/** An ISO 8601 date or date-time, with an optional zone (`Z`, `+02`, `+02:00`, `+0200`). */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * `since=`: a duration back from now (`30`, `15m`, `2h`, `7d`), or a point in
 * time in ISO 8601 (`2024-05-01`, `2024-05-01T10:00:00Z`, `2024-05-01 10:00+02:00`).
 * A time without a zone is local time, as `date` prints it.
 */
export function parseSince(value: string): { interval: string } | { at: string } {
  const v = value.trim();
  const m = ISO_TIME.exec(v);
  const bad = (): never => {
    throw usage(`bad value "${value}" for since: give a duration (30s, 15m, 2h, 7d) or an ISO 8601 time (2024-05-01, 2024-05-01T10:00:00Z)`);
  };
  if (!m) {
    if (/^\d{4}-/.test(v)) bad();
    try {
      return { interval: parseInterval('since', v) };
    } catch {
      return bad();
    }
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as [number, number, number, number, number, number];
  const ms = m[7] ? Math.floor(Number(m[7]) * 1000) : 0;
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) bad();
  let t: number;
  if (m[8]) {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(m[8]);
    const offset = z ? (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? 0)) : 0; // else Z
    if (Math.abs(offset) > 18 * 60 || Number(z?.[3] ?? 0) > 59) bad();
    t = Date.UTC(y, mo - 1, d, h, mi, s, ms) - offset * 60_000;
    if (new Date(Date.UTC(y, mo - 1, d)).getUTCDate() !== d) bad();
  } else {
    const local = new Date(y, mo - 1, d, h, mi, s, ms);
    if (local.getDate() !== d || local.getMonth() !== mo - 1) bad();
    t = local.getTime();
  }
  return { at: new Date(t).toISOString() };
}

/** `ibex conflicts` (and `ibex conflicts restore <id>`) */
export async function conflicts(ctx: Context, args: string[]): Promise<number> {
  if (args[0] === 'restore') return restore(ctx, args.slice(1));
  const { words, options } = parseArgs(args, { flags: OPTIONS, what: '"ibex conflicts"' });
  allowOnly(options, OPTIONS, '"ibex conflicts"');
  if (words.length > 1) throw usage(`unexpected "${words.slice(1).join(' ')}": write ${SYNOPSIS}`);
  const sync = words[0] ?? null;
  const table = options.get('table') ? parseRelationTerm(options.get('table')!) : null;
  const since = options.has('since') ? parseSince(options.get('since')!) : null;
  const status = options.get('status') ?? null;
  if (status && !STATUSES.includes(status)) {
    throw usage(`bad value "${status}" for status: use pending, applied, skipped, aborted or quarantined`);
  }
  const limit = options.has('limit') ? parseIntOption('limit', options.get('limit')!, 1, 1_000_000) : 100;
  const [schema, rel] = table ? [likeOf(table.schema), likeOf(table.name)] : [null, null];
  const sinceInterval = since && 'interval' in since ? since.interval : null;
  const sinceTime = since && 'at' in since ? since.at : null;
  return ctx.withControl(async (c) => {
    if (sync && !(await syncHasConflictLog(c, sync))) throw usage(`no sync named "${sync}": list them with "ibex list syncs"`);
    const found = await listConflicts(c, { sync, schemaLike: schema, relLike: rel, sinceInterval, sinceTime, status, limit });
    const rows = found.map((x) => ({
      id: x.id, sync: x.sync, run: x.run, table: displayRelation(x.schemaname, x.relname), schema: x.schemaname, relname: x.relname,
      key: x.key, kind: x.kind, strategy: x.strategy, winner: x.winner, winnerRow: x.winner_row, winnerTime: x.winner_time,
      losers: x.losers, status: x.status, created: x.created,
    }));
    if (ctx.flags.json) {
      ctx.json(rows);
      return 0;
    }
    if (rows.length === 0) {
      ctx.say('no conflicts logged' + (sync ? ` for sync ${sync}` : ''));
      return 0;
    }
    const t = new Table({ head: ['Id', 'Sync', 'Table', 'Key', 'Kind', 'Winner', 'Losers (db: version overwritten)', 'Status', 'When'], style: { head: [], border: [] } });
    for (const x of rows) {
      const losers = x.losers.map((l) => `${l.db}: ${l.row === null ? '(deleted)' : stringifyExactJson(l.row)}${l.constraint ? ` [${l.constraint}]` : ''}`).join('\n');
      t.push([x.id, x.sync, x.table, stringifyExactJson(x.key), x.kind, x.winner ?? '-', losers, x.status, new Date(x.created).toISOString()]);
    }
    ctx.say(t.toString(), true);
    return 0;
  });
}

/** `ibex conflicts restore <id>`: write the version a conflict removed back on a source of its sync. */
async function restore(ctx: Context, args: string[]): Promise<number> {
  const { words, options } = parseArgs(args);
  allowOnly(options, [], '"ibex conflicts restore"');
  if (words.length !== 1) throw usage('write: ibex conflicts restore <id> (the id shown by "ibex conflicts")');
  const id = parseIntOption('id', words[0]!, 1, Number.MAX_SAFE_INTEGER);
  return ctx.withControl(async (c) => {
    const r = await restoreConflict(c, id);
    if (ctx.flags.json) ctx.json(r);
    else ctx.say(`restored conflict ${r.id} on db ${r.db} (${r.table} ${stringifyExactJson(r.key)}): the next run of sync ${r.sync} replicates it ("ibex kick ${r.sync}")`);
    return 0;
  });
}
