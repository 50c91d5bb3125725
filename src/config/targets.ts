/**
 * Dbs that are not PostgreSQL, in the configuration: which connection options each kind takes,
 * testing the connection at `add db` / `update db`, describing a sync's tables as each target
 * sees them (TableSpecs), and checking them against every such target before a sync is written.
 */
import type pg from 'pg';
import { tableInfo, type TableInfo } from '../db/catalog.js';
import { endQuietly, errorText, redact } from '../db/connect.js';
import { customnamesOn, getSync, type DbRecord, type DbRoleName } from '../control/config-store.js';
import { ExitCode, IbexError, configError, usage } from '../errors.js';
import { createTarget } from '../targets/registry.js';
import { tableSpec } from '../targets/spec.js';
import { dbNumber } from '../targets/redis/redis-dialect.js';
import { keylessTargetProblem, type Problem, type TableSpec, type Target, type TargetKind, type TargetParams } from '../targets/target.js';
import { resolvePassword } from '../control/password.js';
import { openDb, requireDb } from './dbs.js';
import { displayRelation } from './names.js';

/** How a Target is made from its parameters (the registry; tests give a fake). */
export type OpenTarget = (params: TargetParams) => Promise<Target>;

/** What a target needs of a relation of the sync. */
export interface TargetRelation {
  id?: number;
  db: string;
  schemaname: string;
  relname: string;
  reltype: 'table' | 'sequence';
  key_columns: string[] | null;
}

/** The parameters of a non-PostgreSQL db, for its Target. */
export function targetParams(db: DbRecord): TargetParams {
  return {
    name: db.name, kind: db.dbtype, host: db.host ?? undefined, port: db.port ?? undefined, dbname: db.dbname ?? undefined,
    user: db.dbuser ?? undefined, password: resolvePassword(db), conn: db.conn ?? undefined,
  };
}

/** The connection options of a db, by the names `add db` takes. */
const OPTION_OF: Record<string, keyof DbRecord> = { host: 'host', port: 'port', dbname: 'dbname', user: 'dbuser', pass: 'dbpass', conn: 'conn', service: 'service' };

/** Per kind: the synopsis of its options, and the options it has no use for. */
const KIND_OPTIONS: Record<Exclude<TargetKind, 'postgres'>, { synopsis: string; unused: string[] }> = {
  mariadb: { synopsis: 'dbname= host= [port=] user= [pass=]', unused: ['conn', 'service'] },
  mysql: { synopsis: 'dbname= host= [port=] user= [pass=]', unused: ['conn', 'service'] },
  sqlite: { synopsis: 'dbname=<file>', unused: ['host', 'port', 'user', 'pass', 'conn', 'service'] },
  redis: { synopsis: 'host= [port=] [dbname=<number>] [user=] [pass=]', unused: ['conn', 'service'] },
  mongo: { synopsis: '(conn=mongodb://… | host= [port=]) dbname= [user= pass=]', unused: ['service'] },
  oracle: { synopsis: '(conn=<connect string> | host= [port=] dbname=<service>) user= [pass=]', unused: ['service'] },
};

/**
 * Check the connection options of a db against its kind (pure): what is missing, what has no
 * meaning there. PostgreSQL dbs are checked where they are parsed (dsn=, service=, conn=).
 */
export function checkDbParams(db: DbRecord): void {
  if (db.dbtype === 'postgres') return;
  const kind = db.dbtype;
  const rule = KIND_OPTIONS[kind];
  const fix = `ibex add db ${db.name} type=${kind} ${rule.synopsis}`;
  for (const opt of rule.unused) {
    if (db[OPTION_OF[opt]!] === null || db[OPTION_OF[opt]!] === undefined) continue;
    if (opt === 'service') throw usage(`service= is for postgres dbs only: give ${rule.synopsis} for a ${kind} db`);
    throw usage(`${opt}= has no meaning for a ${kind} db${kind === 'sqlite' ? ' (a local file)' : ''}: leave it out (${fix})`);
  }
  const need = (opt: string, what: string): void => {
    if (db[OPTION_OF[opt]!] === null || db[OPTION_OF[opt]!] === undefined) throw usage(`${kind === 'oracle' ? 'an' : 'a'} ${kind} db needs ${opt}=${what}: ${fix}`);
  };
  switch (kind) {
    case 'mariadb':
    case 'mysql':
      need('dbname', '<database>');
      need('host', '<host>');
      need('user', '<user>');
      return;
    case 'sqlite':
      need('dbname', '<file>, the path of the SQLite database file');
      return;
    case 'redis':
      need('host', '<host>');
      // Any number Redis's `databases` setting (an int) can reach: a server has 16 unless set
      // higher, and it refuses a number it lacks at the connection test (SELECT), which says so.
      if (db.dbname !== null && dbNumber(db.dbname) === undefined) {
        throw usage(`dbname= of a redis db is its logical database number (0 or more; the server refuses one past its databases setting, 16 by default), not "${db.dbname}": ${fix}`);
      }
      return;
    case 'mongo':
      need('dbname', '<database>');
      if (db.conn !== null && (db.host !== null || db.port !== null)) throw usage(`conn= and host=/port= given together for mongo db ${db.name}: give the server once, as conn=mongodb://host:port or as host= port=`);
      if (db.conn !== null && !/^mongodb(\+srv)?:\/\//.test(db.conn)) throw usage(`conn= of a mongo db is a mongodb:// (or mongodb+srv://) URL: ${fix}`);
      if (db.conn === null) need('host', '<host> (or conn=mongodb://…)');
      return;
    case 'oracle':
      need('user', '<user>');
      if (db.conn !== null && (db.host !== null || db.port !== null || db.dbname !== null)) {
        throw usage(`conn= and host=/port=/dbname= given together for oracle db ${db.name}: give the connect string once, as conn= or as host= port= dbname=<service>`);
      }
      if (db.conn === null) {
        need('host', '<host> (or conn=<connect string>)');
        need('dbname', '<service name> (or conn=<connect string>)');
      }
      return;
  }
}

/**
 * Refuse a table without a key on any db that is not PostgreSQL, fullcopy or not: every other
 * kind keeps a row by its key (a Redis key, a MongoDB _id, a PRIMARY KEY), so it would fail every
 * run there or keep one row for the whole table. `leaveOut` says how to leave the db out.
 */
export function refuseKeyless(relations: readonly TargetRelation[], dbs: readonly DbRecord[], fix: { reAdd: boolean; leaveOut: string }): void {
  const keyless = relations.find((r) => r.reltype === 'table' && !r.key_columns?.length);
  const db = dbs.find((d) => d.dbtype !== 'postgres');
  if (!keyless || !db) return;
  throw configError(keylessTargetProblem(displayRelation(keyless.schemaname, keyless.relname), db, fix.reAdd, fix.leaveOut));
}

/** A driver's or a target's message as one line, without the db's password. */
function reasonOf(err: unknown, db: DbRecord): string {
  return redact(errorText(err), db.dbpass ?? undefined).replace(/\s*\n\s*/g, ' ').replace(/[.:]\s*$/, '');
}

/** A new Target for a db, with a one-line error when its kind is not in this build. */
async function openTarget(db: DbRecord, open: OpenTarget, fix: string, extra: Partial<TargetParams> = {}): Promise<Target> {
  try {
    return await open({ ...targetParams(db), ...extra });
  } catch (err) {
    if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw new IbexError(err.code, `db ${db.name}: ${err.message}: ${fix}`, { cause: err });
    throw err;
  }
}

/**
 * Test a non-PostgreSQL db as `add db` / `update db` do: connect, ask the server what it is,
 * close. Returns the product and version to record.
 */
export async function probeTarget(db: DbRecord, verb: 'add' | 'update', open: OpenTarget = createTarget): Promise<string> {
  const t = await openTarget(db, open, `${verb} it anyway with --force`, { mustExist: true });
  try {
    await t.connect();
    return (await t.probe()).version;
  } catch (err) {
    if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw err;
    throw new IbexError('unreachable', `db ${db.name} (${db.dbtype}): ${reasonOf(err, db)}: fix the connection options, or ${verb} it anyway with --force`, { cause: err });
  } finally {
    // Best effort: the outcome above is what the user needs; a close that fails has nothing left to close.
    await t.close().catch(() => undefined);
  }
}

/** A sync's tables as the source's catalog has them, to be told to each target (with its own names). */
export interface SourceTables {
  tables: { relation: TargetRelation; info: TableInfo }[];
  /** The TableSpecs for one target db: each table under its customname there, else its own name. */
  specsFor(target: string): Promise<TableSpec[]>;
}

/** Read the tables among these relations from their source db's catalog, once for every target. */
export async function readSourceTables(c: pg.Client, relations: readonly TargetRelation[]): Promise<SourceTables> {
  const tables: SourceTables['tables'] = [];
  const wanted = relations.filter((r) => r.reltype === 'table');
  if (wanted.length) {
    const client = await openDb(await requireDb(c, wanted[0]!.db));
    try {
      for (const r of wanted) {
        const info = await tableInfo(client, r.schemaname, r.relname);
        if (!info) throw configError(`table ${displayRelation(r.schemaname, r.relname)} is missing on db ${r.db}: create it there or leave it out of the sync`);
        tables.push({ relation: r, info });
      }
    } finally {
      await endQuietly(client);
    }
  }
  return {
    tables,
    async specsFor(target) {
      const names = await customnamesOn(c, target, tables.flatMap((t) => (t.relation.id !== undefined ? [t.relation.id] : [])));
      return tables.map((t) => tableSpec(t.info, t.relation.key_columns ?? [], t.relation.id !== undefined ? names.get(t.relation.id) : undefined));
    },
  };
}

/** How to print the DDL of these tables for a db, before or after the sync exists. */
async function schemaHint(c: pg.Client, syncName: string, relations: readonly TargetRelation[], db: string): Promise<string> {
  if (await getSync(c, syncName)) return `ibex schema ${syncName} --db=${db}`;
  const tables = relations.filter((r) => r.reltype === 'table');
  return `ibex schema --db=${db} tables=${tables.map((r) => displayRelation(r.schemaname, r.relname)).join(',')} source=${tables[0]?.db ?? '<db>'}`;
}

/**
 * Check every non-PostgreSQL target of a sync: its tables must exist there with what the sync
 * writes (the target's `check`). Any problem refuses the sync; the error lists every problem
 * (details.problems, one line each) and how to print the DDL that creates the tables.
 */
export async function checkTargets(
  c: pg.Client, plan: { name: string; members: readonly { db: string; role: DbRoleName }[]; relations: readonly TargetRelation[] },
  dbs: readonly DbRecord[], open: OpenTarget = createTarget,
): Promise<void> {
  const targets = dbs.filter((d) => d.dbtype !== 'postgres' && plan.members.some((m) => m.db === d.name && m.role !== 'source'));
  if (targets.length === 0) return;
  const source = await readSourceTables(c, plan.relations);
  const lines: string[] = [];
  const hints: string[] = [];
  for (const db of targets) {
    const specs = await source.specsFor(db.name);
    if (specs.length === 0) continue;
    const t = await openTarget(db, open, `remove db ${db.name} from sync ${plan.name}, or use a build with ${db.dbtype} targets`);
    let problems: Problem[];
    try {
      await t.connect();
      problems = await t.check(specs);
    } catch (err) {
      if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw err;
      throw new IbexError('unreachable', `db ${db.name} (${db.dbtype}): ${reasonOf(err, db)}: start it or fix it with "ibex update db ${db.name} …"`, { cause: err });
    } finally {
      // Best effort: a check that failed reports its own error; a close that fails has nothing left to close.
      await t.close().catch(() => undefined);
    }
    if (problems.length === 0) continue;
    for (const p of problems) lines.push(`db ${db.name}: ${p.table}: ${p.message}`);
    hints.push(`"${await schemaHint(c, plan.name, plan.relations, db.name)}"`);
  }
  if (lines.length === 0) return;
  throw new IbexError('config',
    `sync ${plan.name} cannot write its tables to ${hints.length === 1 ? 'its target' : 'its targets'} (${lines.length} problem${lines.length === 1 ? '' : 's'}: ${lines[0]}${lines.length > 1 ? ' …' : ''}): create or fix the tables there (${hints.join(' and ')} print${hints.length === 1 ? 's' : ''} the DDL), then try again`,
    { details: { problems: lines } });
}
