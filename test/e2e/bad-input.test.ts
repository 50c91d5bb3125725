/**
 * Bad input, catalogued (DESIGN invariant 7): every case below gets exactly one
 * line on stderr that says what is wrong and what to do, nothing on stdout,
 * the documented exit code, no password anywhere, and leaves the control
 * database and both replicated databases exactly as they were. Adding a case
 * is one line in CASES. docs/errors.md lists the same catalogue for users.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cluster/ports.js';
import type { ExitCode } from '../../src/errors.js';
import { runCliInProcess, runCliProcess, useClusters, type CliResult } from '../helpers/env.js';

const env = useClusters(2);

/** Passwords used below: none may ever show in any output. */
const SECRETS = ['RightPw-1x', 'WrongPw-93xq', 'DsnSecret-77', 'CtlSecret-5'] as const;

/** What the cases may refer to, known once the clusters run. */
interface Known {
  /** `host= port= dbname=app user=postgres` of cluster i. */
  db(i: number): string[];
  /** The TCP port of cluster B (for password logins). */
  portB: number;
  /** A port nobody listens on. */
  dead: number;
  /** A directory with hook files: empty.ts, hook.txt, hook.ts. */
  dir: string;
  /** A URL of database `name` on cluster i. */
  url(i: number, name: string): string;
}

/** One bad input: arguments (after `--control`), the exit code and the message expected. */
interface Case {
  name: string;
  args: (k: Known) => string[];
  exit: ExitCode;
  err: RegExp;
  /** Another control URL than the test's control database. */
  control?: (k: Known) => string;
  /** Run bin/ibex as a real process (else in-process). */
  process?: boolean;
  /** Change something before the case (and before its first fingerprint); `teardown` undoes it. */
  setup?: () => Promise<void>;
  teardown?: () => Promise<void>;
}

const w = (...args: string[]) => (): string[] => args;

const newerSchema = {
  setup: async () => void (await env.query(0, `INSERT INTO ibex.schema_version (version, purpose) VALUES (9999, 'from the future')`, [], 'ibexctl')),
  teardown: async () => void (await env.query(0, `DELETE FROM ibex.schema_version WHERE version = 9999`, [], 'ibexctl')),
};

const CASES: Case[] = [
  // --- the command line ---
  { name: 'unknown verb', args: w('frobnicate', 'db', 'A'), exit: 2, err: /^unknown verb "frobnicate": run "ibex help"/, process: true },
  { name: 'unknown noun', args: w('add', 'widget', 'x'), exit: 2, err: /^unknown noun "widget" for add: use one of db, table/ },
  { name: 'unknown option', args: w('add', 'db', 'Z', 'dbname=x', 'colour=blue'), exit: 2, err: /^unknown option "colour" for add db: use one of dbname, host/ },
  { name: 'an option where none is taken', args: w('list', 'dbs', 'colour=blue'), exit: 2, err: /^unknown option "colour" for list dbs: it takes no key=value options/ },
  { name: 'unknown flag after the verb', args: w('list', 'dbs', '--bogus'), exit: 2, err: /^unknown flag "--bogus" for list dbs \(global flags: / },
  { name: 'unknown flag before the verb', args: w('--bogus', 'list', 'dbs'), exit: 2, err: /^unknown flag "--bogus": global flags are --control URL/ },
  { name: '--control without a URL', args: w('list', 'dbs', '--control'), exit: 2, err: /^--control needs a URL: --control postgresql:/, process: true },
  { name: 'option given twice', args: w('add', 'db', 'Z', 'dbname=x', 'dbname=y'), exit: 2, err: /^option "dbname" is given twice: give it once/ },
  { name: 'option given twice through an alias', args: w('add', 'sync', 'z', 'relgroup=rg', 'dbs=A,B', 'conflict=latest', 'conflict_strategy=skip'), exit: 2, err: /^option "conflict_strategy" is given twice \(as "conflict_strategy" too\): give it once/ },
  { name: 'missing name', args: w('add', 'db', 'dbname=x'), exit: 2, err: /^add db needs a name: ibex add db <name>/ },
  { name: 'missing noun', args: w('remove'), exit: 2, err: /^"ibex remove" needs a noun: ibex remove <db\|table/ },
  { name: 'extra words', args: w('add', 'db', 'Z', 'Y', 'dbname=x'), exit: 2, err: /^unexpected "Y" for add db: give one name, then key=value options/ },
  { name: 'extra words to install', args: w('install', 'now'), exit: 2, err: /^"ibex install" takes no arguments \(got "now"\)/ },
  { name: 'bad object name', args: w('add', 'db', '1st', 'dbname=x'), exit: 2, err: /^bad db name "1st": use letters, digits and _, starting with a letter/ },
  { name: 'bad boolean', args: w('update', 'sync', 's1', 'autokick=maybe'), exit: 2, err: /^bad value "maybe" for autokick: use 1\/0, true\/false/ },
  { name: 'bad integer', args: w('add', 'db', 'Z', 'dbname=x', 'port=http'), exit: 2, err: /^bad value "http" for port: give a whole number from 1 to 65535/ },
  { name: 'negative number', args: w('add', 'db', 'Z', 'dbname=x', 'port=-5'), exit: 2, err: /^bad value "-5" for port: give a whole number from 1 to 65535/ },
  { name: 'overflowing number', args: w('add', 'db', 'Z', 'dbname=x', 'port=99999999999999999999'), exit: 2, err: /^bad value "99999999999999999999" for port/ },
  { name: 'negative kick timeout', args: w('kick', 's1', '-1'), exit: 2, err: /^bad value "-1" for timeout: give a whole number of 0 or more$/ },
  { name: 'bad duration', args: w('update', 'sync', 's1', 'checktime=soon'), exit: 2, err: /^bad duration "soon" for checktime: give seconds \(30\) or a number with a unit/ },
  { name: 'overflowing duration', args: w('update', 'sync', 's1', 'checktime=99999999999999999999d'), exit: 2, err: /^bad duration "99999999999999999999d" for checktime: it is too long; give at most 100 years/ },
  { name: '--dry-run on kick', args: w('kick', 's1', '--dry-run'), exit: 2, err: /^--dry-run has no meaning for "ibex kick": leave it out/ },
  { name: '--dry-run on reload', args: w('reload', '--dry-run'), exit: 2, err: /^--dry-run has no meaning for "ibex reload": leave it out/ },
  { name: 'unknown daemon option', args: w('stop', '--colour=red'), exit: 2, err: /^unknown flag "--colour" for "ibex stop": use --timeout=… --piddir=…/ },
  // Caught by the command line's parser (commander) for every verb; some verbs once took these as names.
  { name: 'an unknown flag on a verb that takes none', args: w('kick', 'rep', '--bogus'), exit: 2, err: /^unknown flag "--bogus" for "ibex kick" \(global flags: / },
  { name: 'an unknown flag on pause', args: w('pause', 'rep', '--now'), exit: 2, err: /^unknown flag "--now" for "ibex pause" \(global flags: / },
  { name: 'a value given to a flag that takes none', args: w('status', '--wide=1'), exit: 2, err: /^--wide takes no value: write --wide$/ },
  { name: 'a value given to a global flag that takes none', args: w('list', 'syncs', '--json=yes'), exit: 2, err: /^--json takes no value: write --json$/ },
  { name: 'a mistyped flag', args: w('status', '--wdie'), exit: 2, err: /^unknown flag "--wdie" for "ibex status": use --wide --watch .*\(did you mean "--wide"\?\)$/ },
  { name: 'a flag without its value', args: w('stop', '--piddir'), exit: 2, err: /^--piddir needs a value: --piddir=DIR$/ },
  { name: 'unknown daemon key=value option', args: w('stop', 'colour=red'), exit: 2, err: /^unknown option "colour" for "ibex stop": use --timeout=… --piddir=…/ },

  // --- connection strings ---
  { name: 'malformed dsn', args: w('add', 'db', 'Z', 'dsn=notaurl'), exit: 2, err: /^"notaurl" is not a valid postgresql:\/\/ URL: write postgresql:\/\/user@host:port\/dbname/ },
  { name: 'malformed dsn holding a password', args: w('add', 'db', 'Z', 'dsn=postgresql://u:DsnSecret-77@[::1'), exit: 2, err: /^"postgresql:\/\/u:\*{8}@\[::1" is not a valid postgresql:\/\/ URL/ },
  { name: 'port out of range in a dsn', args: w('add', 'db', 'Z', 'dsn=postgresql://u@localhost:99999/app'), exit: 2, err: /^bad port in "postgresql:\/\/u@localhost:99999\/app": give a number from 1 to 65535/ },
  { name: 'malformed control URL', args: w('list', 'dbs'), control: () => 'ibex-control', exit: 2, err: /^"ibex-control" is not a valid postgresql:\/\/ URL/ },
  { name: 'dsn= and host= together', args: (k) => ['add', 'db', 'Z', `dsn=${k.url(1, 'app')}`, 'host=elsewhere'], exit: 2, err: /^dsn= and host= given together for add db: give the whole connection as dsn=/ },
  { name: 'unreachable port', args: (k) => ['add', 'db', 'Z', 'host=127.0.0.1', `port=${k.dead}`, 'dbname=app'], exit: 1, err: /^db "Z": cannot connect to 127\.0\.0\.1:\d+ dbname=app .*ECONNREFUSED.*: fix the connection options, or add it anyway with --force$/ },
  { name: 'unknown host', args: w('add', 'db', 'Z', 'host=no-such-host.invalid', 'dbname=app'), exit: 1, err: /^db "Z": cannot connect to no-such-host\.invalid:5432 .*: fix the connection options, or add it anyway with --force$/ },
  { name: 'wrong password', args: (k) => ['add', 'db', 'Z', 'host=127.0.0.1', `port=${k.portB}`, 'dbname=app', 'user=pwuser', 'pass=WrongPw-93xq'], exit: 1, err: /^db "Z": cannot connect to 127\.0\.0\.1:\d+ dbname=app user=pwuser: password authentication failed for user "pwuser": fix user= or pass=/, process: true },
  { name: 'wrong password in a dsn', args: (k) => ['add', 'db', 'Z', `dsn=postgresql://pwuser:DsnSecret-77@127.0.0.1:${k.portB}/app`], exit: 1, err: /password authentication failed for user "pwuser": fix user= or pass=/ },
  { name: 'wrong password of the control database', args: w('list', 'dbs'), control: (k) => `postgresql://pwuser:CtlSecret-5@127.0.0.1:${k.portB}/app`, exit: 1, err: /^the control database cannot be reached: .*password authentication failed for user "pwuser": fix the user or password in --control/, process: true },
  { name: 'unreachable control database', args: w('status'), control: (k) => `postgresql://postgres:CtlSecret-5@127.0.0.1:${k.dead}/ibex`, exit: 1, err: /^the control database cannot be reached: cannot connect to 127\.0\.0\.1:\d+ .*: check that its server is running, or fix --control/ },
  { name: 'unknown service name', args: w('add', 'db', 'Z', 'service=no_such_service'), exit: 2, err: /^service "no_such_service" is not defined in any pg_service\.conf: define it, or give host= port= dbname= instead$/ },
  { name: 'unknown conn= key', args: w('add', 'db', 'Z', 'dbname=x', 'conn=sslmod=require'), exit: 2, err: /^unsupported connection option "sslmod" in conn=: use one of sslmode/ },
  { name: 'pass=- without a terminal', args: w('add', 'db', 'Z', 'dbname=x', 'pass=-'), exit: 2, err: /^pass=- needs the password of db "Z" from IBEX_PASSWORD or a terminal/ },

  // --- table and column names ---
  { name: 'table that does not exist', args: w('add', 'table', 'public.nope', 'db=A'), exit: 2, err: /^no table named "public\.nope": it does not exist on db A: create it there, or check the name/ },
  { name: 'table on one db only', args: w('add', 'table', 'public.only_a', 'db=A', 'relgroup=rg'), exit: 2, err: /^table public\.only_a is missing on db B: create it there \(same columns and key\) or leave it out of the sync$/ },
  { name: 'malformed quoted name', args: w('add', 'table', 'public."unclosed', 'db=A'), exit: 2, err: /^bad table name "public\."unclosed": a double quote is not closed; write schema\.table/ },
  { name: 'name over 63 bytes', args: w('add', 'table', `public.${'x'.repeat(64)}`, 'db=A'), exit: 2, err: /^bad table name "public\.x{64}": a part is 64 bytes long, but PostgreSQL names have at most 63/ },
  { name: 'name with a NUL byte', args: w('add', 'table', 'public.a\0b', 'db=A'), exit: 2, err: /^the argument "public\.a\\0b" holds a NUL byte, which no name or value may contain: remove it$/ },
  { name: 'value with a NUL byte', args: w('add', 'relgroup', 'g9', 'about=x\0y'), exit: 2, err: /^the value of about= holds a NUL byte/ },
  { name: 'name with a line break', args: w('add', 'table', 'public.a\nb', 'db=A'), exit: 2, err: /^no table named "public\."a\\nb"": it does not exist on db A/ },
  { name: 'pattern whose match is missing on another db', args: w('add', 'table', 'public.%', 'db=A', 'relgroup=rg'), exit: 2, err: /^table public\.only_a is missing on db B: create it there/ },
  { name: 'table without a primary key', args: w('add', 'table', 'public.nokey', 'db=A'), exit: 2, err: /^table public\.nokey on db A has no primary key and no unique index on NOT NULL columns: add a primary key/ },
  { name: 'table of ibex itself', args: w('add', 'table', 'ibex.anything', 'db=A'), exit: 2, err: /^ibex\.anything belongs to ibex itself and cannot be replicated: name your own tables/ },
  { name: 'unknown db', args: w('add', 'table', 'public.t1', 'db=Nope'), exit: 2, err: /^no db named "Nope": list them with "ibex list dbs"$/ },

  // --- option values ---
  { name: 'malformed conflict_strategy', args: w('update', 'sync', 's1', 'conflict_strategy=late-st'), exit: 2, err: /^bad conflict_strategy "late-st": use one of latest, source/ },
  { name: 'unknown conflict_strategy', args: w('update', 'sync', 's1', 'conflict_strategy=newest'), exit: 2, err: /^conflict_strategy=newest is neither a strategy \(latest, .*\) nor a db of sync s1: use a strategy, or list its dbs/ },
  { name: 'strategy list naming an unknown db', args: w('update', 'sync', 's1', 'conflict_strategy=B,C'), exit: 2, err: /^conflict_strategy lists C, which is not a db of sync s1: list its dbs in order of preference \(A,B\)$/ },
  { name: 'onetimecopy=7', args: w('update', 'sync', 's1', 'onetimecopy=7'), exit: 2, err: /^bad value "7" for onetimecopy: give a whole number from 0 to 2$/ },
  { name: 'checktime=-1', args: w('update', 'sync', 's1', 'checktime=-1'), exit: 2, err: /^bad duration "-1" for checktime: it cannot be negative/ },
  { name: 'bad dbs= role', args: w('add', 'sync', 'z', 'tables=public.t2', 'dbs=A:boss,B'), exit: 2, err: /^unknown role "boss" for db "A": use source, target or fullcopy$/ },
  { name: 'unknown db in dbs=', args: w('add', 'sync', 'z', 'tables=public.t2', 'dbs=A,Nope'), exit: 2, err: /^no db named "Nope": list them with "ibex list dbs"$/ },
  { name: 'sync with no source', args: w('add', 'sync', 'z', 'relgroup=rg', 'dbs=A:target,B:target'), exit: 2, err: /^sync z has no source db: mark at least one db as source, e.g\. dbs=A:source/ },
  { name: 'onetimecopy_from outside the sync', args: w('update', 'sync', 's1', 'onetimecopy_from=C'), exit: 2, err: /^onetimecopy_from=C is not a db of sync s1: name one of A, B$/ },
  { name: 'clock=commit without track_commit_timestamp', args: w('add', 'sync', 'z', 'tables=public.t2', 'dbs=A:source,B:source', 'clock=commit'), exit: 2, err: /^clock=commit needs track_commit_timestamp=on on every source, but db A has it off: turn it on there/ },
  { name: 'a second writer of a table', args: w('add', 'sync', 'z', 'relgroup=rg', 'dbs=A:source,B:source'), exit: 2, err: /^sync s1 already writes public\.t1 on db [AB]: two syncs cannot write one table on one db/ },
  { name: 'status=paused through update', args: w('update', 'sync', 's1', 'status=paused'), exit: 2, err: /^bad value "paused" for status: use active or inactive \(pause and resume a sync with "ibex pause"/ },

  // --- custom code ---
  { name: 'missing src_code file', args: (k) => ['add', 'customcode', 'cc', 'whenrun=conflict', `src_code=${join(k.dir, 'missing.ts')}`], exit: 2, err: /^cannot read src_code=.*missing\.ts: give the path of an existing, readable \.ts or \.js file$/ },
  { name: 'empty src_code file', args: (k) => ['add', 'customcode', 'cc', 'whenrun=conflict', `src_code=${join(k.dir, 'empty.ts')}`], exit: 2, err: /^src_code=.*empty\.ts is empty: write the hook first$/ },
  { name: 'src_code of the wrong extension', args: (k) => ['add', 'customcode', 'cc', 'whenrun=conflict', `src_code=${join(k.dir, 'hook.txt')}`], exit: 2, err: /^src_code=.*hook\.txt has an unknown extension: give a \.ts/ },
  { name: 'src_code that does not compile', args: (k) => ['add', 'customcode', 'cc', 'whenrun=conflict', `src_code=${join(k.dir, 'broken.ts')}`], exit: 2, err: /^custom code "cc" \(whenrun=conflict\) could not be loaded: line 1:\d+ Unexpected ";"; fix .*broken\.ts and give it again$/ },
  { name: 'src_code without a default export', args: (k) => ['add', 'customcode', 'cc', 'whenrun=conflict', `src_code=${join(k.dir, 'nodefault.mjs')}`], exit: 2, err: /^custom code "cc" \(whenrun=conflict\) has no default export: export the hook as .*, fix .*nodefault\.mjs and give it again$/ },
  { name: 'unknown whenrun', args: (k) => ['add', 'customcode', 'cc', 'whenrun=sometimes', `src_code=${join(k.dir, 'hook.ts')}`], exit: 2, err: /^bad value "sometimes" for whenrun: use one of before_sync/ },

  // --- the control database ---
  { name: 'control database that does not exist', args: w('list', 'dbs'), control: (k) => k.url(0, 'no_such_control'), exit: 1, err: /^the control database "no_such_control" does not exist: run "ibex install" to create it, or point --control/ },
  { name: 'control schema newer than this ibex', args: w('list', 'syncs'), exit: 1, err: /^the control schema is version 9999, newer than this ibex \(\d+\): upgrade ibex$/, process: true, ...newerSchema },
  { name: 'install over a newer control schema', args: w('install'), exit: 1, err: /^the control schema is version 9999, newer than this ibex \(\d+\): upgrade ibex$/, ...newerSchema },
  { name: 'install --dry-run over a newer control schema', args: w('install', '--dry-run'), exit: 1, err: /^the control schema is version 9999, newer than this ibex/, ...newerSchema },
  { name: 'database without the ibex schema', args: w('status'), control: (k) => k.url(1, 'app'), exit: 1, err: /^the control schema is not installed: run "ibex install" first$/ },

  // --- the daemon and the syncs ---
  { name: 'kick without a daemon', args: w('kick', 's1'), exit: 1, err: /^no ibex daemon is running: start it with "ibex start"$/, process: true },
  { name: 'reload without a daemon', args: w('reload'), exit: 1, err: /^no ibex daemon is running for this control database: start it with "ibex start"$/ },
  { name: 'kick of an unknown sync', args: w('kick', 'nosync', '5'), exit: 2, err: /^no sync named "nosync": list them with "ibex list syncs"$/ },
  { name: 'pause of an unknown sync', args: w('pause', 'nosync'), exit: 2, err: /^no sync named "nosync": list them with "ibex list syncs"$/ },
  { name: 'resume of an unknown sync', args: w('resume', 's1', 'nosync'), exit: 2, err: /^no sync named "nosync": list them with "ibex list syncs"$/ },
  { name: 'status of an unknown sync', args: w('status', 'nosync'), exit: 2, err: /^no sync named "nosync": list them with "ibex list syncs"$/ },
  { name: 'conflicts with a bad status=', args: w('conflicts', 'status=bogus'), exit: 2, err: /^bad value "bogus" for status: use pending, applied, skipped, aborted or quarantined$/ },
  { name: 'conflicts with a bad since=', args: w('conflicts', 'since=yesterday'), exit: 2, err: /^bad (duration|value) "yesterday" for since: give / },
  { name: 'conflicts with a negative since=', args: w('conflicts', 'since=-5m'), exit: 2, err: /^bad (duration|value) "-5m" for since: / },
  { name: 'conflicts with limit=0', args: w('conflicts', 'limit=0'), exit: 2, err: /^bad value "0" for limit: give a whole number from 1 to 1000000$/ },
  { name: 'conflicts of an unknown sync', args: w('conflicts', 'nosync'), exit: 2, err: /^no sync named "nosync": list them with "ibex list syncs"$/ },
];

const SCHEMA = `
  CREATE TABLE t1 (id int PRIMARY KEY, v text);
  CREATE TABLE t2 (id int PRIMARY KEY, v text);
  CREATE TABLE nokey (a int, b text);
  INSERT INTO t1 VALUES (1, 'one'), (2, 'two');
`;

/** Quote an identifier for the fingerprint queries (names come from the catalog). */
const q = (name: string): string => '"' + name.replaceAll('"', '""') + '"';

/**
 * Everything a bad input must leave alone: every row of every table of schema
 * ibex in the control database; on each cluster its databases; in each
 * replicated database its schemas, tables, triggers, functions and every row.
 */
async function fingerprint(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const ctl = await env.query(0, `SELECT relname FROM pg_class WHERE relnamespace = 'ibex'::regnamespace AND relkind IN ('r', 'p') ORDER BY relname`, [], 'ibexctl');
  for (const { relname } of ctl as { relname: string }[]) {
    const [r] = await env.query(0, `SELECT count(*) AS n, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS h FROM ibex.${q(relname)} t`, [], 'ibexctl');
    out[`control ibex.${relname}`] = `${String(r!.n)} rows ${String(r!.h)}`;
  }
  for (const i of [0, 1]) {
    const [d] = await env.query(i, `SELECT string_agg(datname, ',' ORDER BY datname) AS v FROM pg_database`);
    out[`cluster ${i} databases`] = String(d!.v);
    const [cat] = await env.query(i, `SELECT
        (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)') AS schemas,
        (SELECT string_agg(c.oid::regclass::text || ':' || c.relkind::text, ',' ORDER BY 1) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname !~ '^(pg_|information_schema)' AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')) AS tables,
        (SELECT string_agg(tgrelid::regclass::text || '.' || tgname || ':' || tgenabled::text, ',' ORDER BY 1) FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
        (SELECT string_agg(p.oid::regprocedure::text, ',' ORDER BY 1) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname !~ '^(pg_|information_schema)') AS functions`);
    for (const [k, v] of Object.entries(cat!)) out[`app ${i} ${k}`] = String(v);
    const tables = await env.query(i, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname !~ '^(pg_|information_schema)' AND c.relkind IN ('r', 'p') ORDER BY 1, 2`);
    for (const { nspname, relname } of tables as { nspname: string; relname: string }[]) {
      const [r] = await env.query(i, `SELECT count(*) AS n, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS h FROM ${q(nspname)}.${q(relname)} t`);
      out[`app ${i} rows ${nspname}.${relname}`] = `${String(r!.n)} rows ${String(r!.h)}`;
    }
  }
  return out;
}

function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.err}${r.out}`);
  return r;
}

/** Check one refusal: one line, no noise, the exit code, the message, no secret. */
function checkRefusal(c: Case, r: CliResult): void {
  const shown = `exit ${r.code}\nstdout: ${JSON.stringify(r.out)}\nstderr: ${JSON.stringify(r.err)}`;
  assert.equal(r.code, c.exit, `wrong exit code\n${shown}`);
  assert.equal(r.out, '', `something on stdout\n${shown}`);
  const lines = r.err.split('\n');
  assert.equal(lines.length, 2, `not exactly one line on stderr\n${shown}`);
  assert.equal(lines[1], '', `stderr does not end with a newline\n${shown}`);
  const line = lines[0]!;
  assert.ok(line.startsWith('ibex: '), `the line does not start with "ibex: "\n${shown}`);
  const message = line.slice('ibex: '.length);
  assert.match(message, c.err, shown);
  assert.doesNotMatch(line, /\bError\b|^\s+at |internal error|undefined|\[object /, `noise in the message\n${shown}`);
  // "what happened: what to do": a colon separates the problem from the fix.
  assert.match(message, /\S: \S/, `no fix after the problem\n${shown}`);
  for (const s of SECRETS) assert.ok(!(r.out + r.err).includes(s), `a password shows\n${shown}`);
}

describe('bad input, catalogued', () => {
  const known = {} as Known;
  let dir = '';
  let baseline: Record<string, string> = {};

  before(async () => {
    for (const i of [0, 1]) await env.clusters[i]!.psql(SCHEMA, 'app');
    await env.clusters[0]!.psql(`CREATE TABLE only_a (id int PRIMARY KEY)`, 'app');
    // A role that must log in with a password on cluster B (the clusters trust everyone else).
    await env.query(1, `CREATE ROLE pwuser LOGIN PASSWORD 'RightPw-1x'`);
    const [{ hba_file: hba }] = (await env.query(1, 'SHOW hba_file')) as [{ hba_file: string }];
    writeFileSync(hba, 'local all pwuser scram-sha-256\nhost all pwuser 127.0.0.1/32 scram-sha-256\n' + readFileSync(hba, 'utf8'));
    await env.query(1, 'SELECT pg_reload_conf()');

    dir = mkdtempSync(join(tmpdir(), 'ibex-bad-input-'));
    writeFileSync(join(dir, 'empty.ts'), '');
    writeFileSync(join(dir, 'hook.txt'), 'export default () => undefined;\n');
    writeFileSync(join(dir, 'hook.ts'), 'export default () => undefined;\n');
    writeFileSync(join(dir, 'broken.ts'), 'export default (input: { a: number }) => { return input.a +; };\n');
    writeFileSync(join(dir, 'nodefault.mjs'), 'export const hook = () => undefined;\n');
    Object.assign(known, {
      db: (i: number) => {
        const p = env.params(i);
        return [`host=${p.host}`, `port=${p.port}`, 'dbname=app', 'user=postgres'];
      },
      portB: env.clusters[1]!.port,
      dead: await freePort(),
      dir,
      url: (i: number, name: string) => env.clusters[i]!.url(name),
    } satisfies Known);

    ok(await env.cli('install'));
    ok(await env.cli('add', 'db', 'A', ...known.db(0)));
    ok(await env.cli('add', 'db', 'B', ...known.db(1)));
    ok(await env.cli('add', 'table', 'public.t1', 'db=A', 'relgroup=rg'));
    ok(await env.cli('add', 'sync', 's1', 'relgroup=rg', 'dbs=A:source,B:source'));
    baseline = await fingerprint();
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('has a catalogue of at least 35 distinct cases', () => {
    assert.ok(CASES.length >= 35, `only ${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'two cases share a name');
    assert.ok(CASES.filter((c) => c.process).length >= 5, 'too few cases run bin/ibex as a process');
  });

  it('notices a change in the control database and in a replicated database', async () => {
    ok(await env.cli('add', 'relgroup', 'fingerprint_probe'));
    assert.notDeepEqual(await fingerprint(), baseline);
    ok(await env.cli('remove', 'relgroup', 'fingerprint_probe'));
    // t2 is not replicated: changing it leaves no trace in the delta tables.
    await env.query(1, `INSERT INTO t2 VALUES (1, 'probe')`);
    assert.notDeepEqual(await fingerprint(), baseline);
    await env.query(1, `DELETE FROM t2`);
    assert.deepEqual(await fingerprint(), baseline);
  });

  for (const c of CASES) {
    it(`refuses ${c.name} in one line, exit ${c.exit}, changing nothing${c.process ? ' (bin/ibex)' : ''}`, async () => {
      await c.setup?.();
      try {
        const before = await fingerprint();
        const control = c.control ? c.control(known) : env.controlUrl;
        const args = c.args(known);
        const r = c.process ? await runCliProcess(['--control', control, ...args]) : await runCliInProcess(control, args);
        checkRefusal(c, r);
        assert.deepEqual(await fingerprint(), before, 'the command changed something');
      } finally {
        await c.teardown?.();
      }
      assert.deepEqual(await fingerprint(), baseline, 'the case left something behind');
    });
  }

  it('install --dry-run against a missing database says so and creates nothing', async () => {
    const r = await runCliInProcess(known.url(0, 'not_created'), ['install', '--dry-run']);
    ok(r);
    assert.match(r.out, /^would create the control database "not_created" and install the control schema version \d+\ndry run: nothing was changed\n$/);
    assert.deepEqual(await fingerprint(), baseline);
  });
});
