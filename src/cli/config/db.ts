/**
 * `add | list | update | remove db`. Passwords are stored only when given and
 * never printed: list shows `pass=********`, errors are redacted.
 */
import type pg from 'pg';
import { checkConnOptions, endQuietly, parseUrl, redact, type PgParams } from '../../db/connect.js';
import { checkDbParams, probeTarget } from '../../config/targets.js';
import { serverInfo } from '../../db/catalog.js';
import { sqlstate } from '../../db/sqlstate.js';
import {
  deleteDb, deleteRelations, deleteSync, getDb, insertDb, listDbgroups, listDbs, listRelations,
  listRelgroups, removeDbFromDbgroups, syncsUsing, updateDb, type DbRecord, type DbType,
} from '../../control/config-store.js';
import { ExitCode, IbexError, configError, notFound, usage } from '../../errors.js';
import { allowOnly, parseIntOption } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, printRows } from './common.js';
import { runRemoveCapture } from '../../config/capture.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { listHint, openDb } from '../../config/dbs.js';
import { checkObjectName, displayRelation, matchesFilter } from '../../config/names.js';
import { dealias, parseDbType } from './options.js';

const DB_KEYS = ['dbname', 'host', 'port', 'user', 'pass', 'conn', 'service', 'dsn', 'type', 'status', 'about'];
const DB_ALIASES: Record<string, string> = {
  dbhost: 'host', dbport: 'port', dbuser: 'user', dbpass: 'pass', password: 'pass', dbconn: 'conn', dbservice: 'service',
  dbtype: 'type', dbdsn: 'dsn', db: 'dbname', database: 'dbname',
};

/** The options a dsn= URL sets; giving one of them next to dsn= is refused (which would win is a guess). */
const DSN_PARTS = ['dbname', 'host', 'port', 'user', 'pass', 'conn', 'service'];

/** The masked password, as every output shows it. */
export const MASK = '********';

/**
 * Read `pass=-`: IBEX_PASSWORD, else a prompt without echo when stdin is a
 * terminal; otherwise a clear error.
 */
async function readPassword(dbName: string): Promise<string> {
  const env = process.env.IBEX_PASSWORD;
  if (env !== undefined && env !== '') return env;
  const stdin = process.stdin;
  if (!stdin.isTTY) throw usage(`pass=- needs the password of db "${dbName}" from IBEX_PASSWORD or a terminal: set IBEX_PASSWORD, or run ibex on a terminal`);
  process.stderr.write(`password for db "${dbName}": `);
  return new Promise((resolve, reject) => {
    let text = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(usage('password prompt interrupted: nothing was changed'));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** Turn `key=value` options into db columns (shared by add and update). */
async function dbColumns(name: string, options: Map<string, string>, what: string, currentType: DbType = 'postgres'): Promise<Partial<DbRecord>> {
  const o = dealias(options, DB_ALIASES);
  allowOnly(o, DB_KEYS, what);
  const out: Partial<DbRecord> = {};
  const kind = o.has('type') ? parseDbType(o.get('type')!) : currentType;
  if (kind !== 'postgres' && o.has('dsn') && o.get('dsn') !== '') {
    throw usage(`dsn= is a postgresql:// URL, for postgres dbs only: give the options of a ${kind} db one by one (see "ibex help" and docs/cli.md)`);
  }
  const textOrNull = (v: string): string | null => (v === '' ? null : v);
  if (o.has('dsn')) {
    const both = DSN_PARTS.filter((k) => o.has(k));
    if (both.length && o.get('dsn') !== '') {
      throw usage(`dsn= and ${both.map((k) => `${k}=`).join(' ')} given together for ${what}: give the whole connection as dsn=postgresql://user@host:port/dbname?sslmode=…, or as separate options without dsn=`);
    }
    const dsn = o.get('dsn')!;
    if (dsn !== '') {
      const p: PgParams = parseUrl(dsn);
      out.host = p.host ?? null;
      out.port = p.port ?? null;
      out.dbname = p.dbname ?? null;
      out.dbuser = p.user ?? null;
      if (p.password !== undefined) out.dbpass = p.password;
      out.conn = p.conn ?? null;
      out.service = p.service ?? null;
    }
  }
  if (o.has('dbname')) out.dbname = textOrNull(o.get('dbname')!);
  if (o.has('host')) out.host = textOrNull(o.get('host')!);
  if (o.has('port')) out.port = o.get('port') === '' ? null : parseIntOption('port', o.get('port')!, 1, 65535);
  if (o.has('user')) out.dbuser = textOrNull(o.get('user')!);
  if (o.has('conn')) {
    // conn= of a postgres db is extra libpq options; of other kinds, a connection string checked with the kind.
    if (kind === 'postgres') checkConnOptions(o.get('conn'));
    out.conn = textOrNull(o.get('conn')!);
  }
  if (o.has('service')) out.service = textOrNull(o.get('service')!);
  if (o.has('type')) out.dbtype = kind;
  if (o.has('status')) {
    const s = o.get('status')!.toLowerCase();
    if (s !== 'active' && s !== 'inactive') throw usage(`bad value "${o.get('status')}" for status: use active or inactive`);
    out.status = s;
  }
  if (o.has('about')) out.about = textOrNull(o.get('about')!);
  if (o.has('pass')) {
    const v = o.get('pass')!;
    out.dbpass = v === '-' ? await readPassword(name) : textOrNull(v);
  }
  return out;
}

/** Did the server refuse the login (SQLSTATE class 28), anywhere down the chain of causes? */
function authFailure(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if (sqlstate(e)?.startsWith('28')) return true;
    if (!(e instanceof Error)) break;
  }
  return false;
}

/** Test a postgres db and return what ibex records about its server. */
async function probe(db: DbRecord, verb: 'add' | 'update'): Promise<Pick<DbRecord, 'server_version' | 'encoding' | 'is_superuser' | 'can_replica'>> {
  let c: pg.Client;
  try {
    c = await openDb(db);
  } catch (err) {
    if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw err;
    const fix = authFailure(err) ? 'fix user= or pass= (or the password in ~/.pgpass or the service file)' : 'fix the connection options';
    throw new IbexError('unreachable', `${(err as Error).message.replace(/: start it or fix it.*$/, '')}: ${fix}, or ${verb} it anyway with --force`, { cause: err });
  }
  try {
    const info = await serverInfo(c);
    return { server_version: info.version, encoding: info.encoding, is_superuser: info.superuser, can_replica: info.canReplica };
  } finally {
    await endQuietly(c);
  }
}

function emptyDb(name: string): DbRecord {
  return {
    name, dbtype: 'postgres', host: null, port: null, dbname: null, dbuser: null, dbpass: null, dbpass_ref: null, conn: null, service: null,
    status: 'active', server_version: null, encoding: null, is_superuser: null, can_replica: null, about: null,
  };
}

/** `ibex add db <name> dbname=… [host= port= user= pass= conn= service= dsn= type= status= about=] [--force]` */
export async function addDb(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'add db');
  const [name, ...extra] = words;
  if (!name) throw usage('add db needs a name: ibex add db <name> dbname=<database> [host= port= user=]');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for add db: give one name, then key=value options`);
  checkObjectName('db', name);
  const cols = await dbColumns(name, options, 'add db');
  const db: DbRecord = { ...emptyDb(name), ...cols };
  if (db.dbtype === 'postgres' && !db.dbname && !db.service) {
    throw usage(`add db ${name} needs dbname= (or service= or dsn=): ibex add db ${name} dbname=<database> [host= port= user=]`);
  }
  checkDbParams(db);
  await ctx.withControl(async (c) => {
    if (await getDb(c, name)) throw configError(`a db named ${name} already exists: choose another name or change it with "ibex update db ${name}"`);
    if (!ctx.flags.force) Object.assign(db, db.dbtype === 'postgres' ? await probe(db, 'add') : { server_version: await probeTarget(db, 'add') });
    await write(ctx, c, async () => {
      await insertDb(c, db);
    });
    const facts = !db.server_version ? ` (${db.dbtype === 'postgres' ? '' : `type ${db.dbtype}, `}connection not tested: --force)`
      : db.dbtype === 'postgres' ? ` (PostgreSQL ${db.server_version}, ${db.encoding}${db.is_superuser ? ', superuser' : ''})`
        : ` (${db.dbtype}: ${db.server_version})`;
    report(ctx, 'add', `db ${name}${facts}`);
    dryRunDone(ctx);
  });
}

/** A db as `list` shows it: never the password itself. */
function dbJson(d: DbRecord, groups: { dbgroup: string; role: string }[]): Record<string, unknown> {
  return {
    name: d.name, type: d.dbtype, status: d.status, host: d.host, port: d.port, dbname: d.dbname, user: d.dbuser,
    pass: d.dbpass ? MASK : d.dbpass_ref, conn: d.conn === null ? null : redact(d.conn, d.dbpass ?? undefined), service: d.service, server_version: d.server_version, encoding: d.encoding,
    is_superuser: d.is_superuser, can_replica: d.can_replica, dbgroups: groups, about: d.about,
  };
}

function connText(d: DbRecord): string {
  const parts: string[] = [];
  if (d.service) parts.push(`service=${d.service}`);
  if (d.dbname) parts.push(`dbname=${d.dbname}`);
  if (d.host) parts.push(`host=${d.host}`);
  if (d.port) parts.push(`port=${d.port}`);
  if (d.dbuser) parts.push(`user=${d.dbuser}`);
  if (d.dbpass) parts.push(`pass=${MASK}`);
  else if (d.dbpass_ref) parts.push(`pass=${d.dbpass_ref}`);
  if (d.conn) parts.push(`conn=${redact(d.conn, d.dbpass ?? undefined)}`);
  return parts.join(' ');
}

/** `ibex list dbs [name|pattern …] [--json]` */
export async function listDb(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list dbs');
  allowOnly(options, [], 'list dbs');
  await ctx.withControl(async (c) => {
    const dbs = (await listDbs(c)).filter((d) => matchesFilter(d.name, words));
    const groups = await listDbgroups(c);
    const rows = dbs.map((d) => ({
      d, groups: groups.flatMap((g) => g.members.filter((m) => m.db === d.name).map((m) => ({ dbgroup: g.name, role: m.role }))),
    }));
    printRows(
      ctx, ['db', 'type', 'status', 'connection', 'server', 'dbgroups'],
      rows.map(({ d, groups: gs }) => [
        d.name, d.dbtype, d.status, connText(d),
        d.server_version ? `${d.server_version} ${d.encoding ?? ''}${d.is_superuser ? ' superuser' : ''}${d.can_replica ? ' replica-mode' : ''}` : '',
        gs.map((g) => `${g.dbgroup}:${g.role}`).join(' '),
      ]),
      rows.map(({ d, groups: gs }) => dbJson(d, gs)),
      words.length ? `no db matches ${words.join(' ')}: list them all with "ibex list dbs"` : 'no dbs: add one with "ibex add db <name> dbname=…"',
    );
  });
}

/** `ibex update db <name> key=value … [--force]`: a changed connection is tested again unless --force. */
export async function updateDbVerb(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'update db');
  const [name, ...extra] = words;
  if (!name) throw usage('update db needs a name: ibex update db <name> key=value …');
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for update db: give one name, then key=value options`);
  if (options.size === 0) throw usage(`update db ${name} needs something to change: e.g. ibex update db ${name} port=5433`);
  await ctx.withControl(async (c) => {
    const old = await getDb(c, name);
    if (!old) throw notFound('db', name, listHint('db'));
    const changes = await dbColumns(name, options, 'update db', old.dbtype);
    const next: DbRecord = { ...old, ...changes };
    if (next.dbtype === 'postgres' && !next.dbname && !next.service) throw usage(`db ${name} needs dbname= or service=: give one of them a value`);
    checkDbParams(next);
    if (next.dbtype !== 'postgres') {
      const users = await syncsUsing(c, { db: name });
      const sources = [];
      for (const g of await listDbgroups(c)) for (const m of g.members) if (m.db === name && m.role === 'source') sources.push(g.name);
      if (sources.length) throw configError(`db ${name} is a source in dbgroup ${sources.join(', ')}: only postgres dbs can be sources (syncs: ${users.join(', ') || 'none'})`);
    }
    const connKeys: (keyof DbRecord)[] = ['host', 'port', 'dbname', 'dbuser', 'dbpass', 'conn', 'service', 'dbtype'];
    const connChanged = connKeys.some((k) => changes[k] !== undefined && changes[k] !== old[k]);
    if (connChanged && !ctx.flags.force) {
      Object.assign(changes, next.dbtype === 'postgres' ? await probe(next, 'update')
        : { server_version: await probeTarget(next, 'update'), encoding: null, is_superuser: null, can_replica: null });
    }
    const shown: string[] = [];
    for (const [k, v] of Object.entries(changes) as [keyof DbRecord, unknown][]) {
      if (old[k] === v || ['server_version', 'encoding', 'is_superuser', 'can_replica'].includes(k)) continue;
      shown.push(k === 'dbpass' ? `pass=${v ? MASK : '(none)'}` : `${k}=${v ?? '(none)'}`);
    }
    if (shown.length === 0 && !connChanged) {
      ctx.say(`no change needed for db ${name}`);
      return;
    }
    await write(ctx, c, async () => {
      await updateDb(c, name, changes);
    });
    report(ctx, 'change', `db ${name}: ${shown.join(' ') || 'server facts refreshed'}`);
    dryRunDone(ctx);
  });
}

/** `ibex remove db <name …> [--force]`: refused while a dbgroup or relation uses it, unless --force removes those too. */
export async function removeDb(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove db');
  allowOnly(options, [], 'remove db');
  if (words.length === 0) throw usage('remove db needs a name: ibex remove db <name …>');
  await ctx.withControl(async (c) => {
    const plans: { name: string; groups: string[]; relations: { id: number; label: string }[]; syncs: string[] }[] = [];
    const allGroups = await listDbgroups(c);
    for (const name of new Set(words)) {
      if (!(await getDb(c, name))) throw notFound('db', name, listHint('db'));
      const groups = allGroups.filter((g) => g.members.some((m) => m.db === name)).map((g) => g.name);
      const relations = (await listRelations(c, { db: name })).map((r) => ({ id: r.id, label: displayRelation(r.schemaname, r.relname) }));
      const syncs = await syncsUsing(c, { db: name });
      if (!ctx.flags.force && (groups.length || relations.length || syncs.length)) {
        const uses = [
          syncs.length ? `sync ${syncs.join(', ')}` : '',
          groups.length ? `dbgroup ${groups.join(', ')}` : '',
          relations.length ? `${relations.length} registered table(s)/sequence(s)` : '',
        ].filter(Boolean).join(', ');
        throw configError(`db ${name} is still used by ${uses}: remove those first, or use --force to remove them with it`);
      }
      plans.push({ name, groups, relations, syncs });
    }
    const syncs = [...new Set(plans.flatMap((p) => p.syncs))];
    for (const s of syncs) await runRemoveCapture(ctx, c, s);
    const relgroups = await listRelgroups(c);
    await write(ctx, c, async () => {
      for (const s of syncs) {
        await deleteSync(c, s);
        report(ctx, 'remove', `sync ${s}`);
      }
      for (const p of plans) {
        await removeDbFromDbgroups(c, p.name);
        for (const g of p.groups) report(ctx, 'remove', `db ${p.name} from dbgroup ${g}`);
        const ids = p.relations.map((r) => r.id);
        const touched = relgroups.filter((g) => g.members.some((m) => ids.includes(m.relation))).map((g) => g.name);
        await deleteRelations(c, ids);
        if (p.relations.length) {
          report(ctx, 'remove', `${p.relations.length} table(s)/sequence(s) of db ${p.name}: ${p.relations.map((r) => r.label).join(', ')}${touched.length ? ` (also from relgroup ${touched.join(', ')})` : ''}`);
        }
        await deleteDb(c, p.name);
        report(ctx, 'remove', `db ${p.name}`);
      }
    });
    dryRunDone(ctx);
  });
}
