/**
 * What every command accepts, with its meaning: the options (Bucardo's
 * `key=value` words, and `--flags`) of each verb and of each noun of the
 * configuration verbs. The commander program (program.ts) is built from this
 * table for help, suggestions and completion, and docs/cli.md is checked
 * against it. Sync and db options come from their schemas in src/config/.
 */
import { optionDefault, optionHelp } from '../config/options.js';
import { SYNC_OPTIONS, SYNC_OTHER_OPTIONS } from '../config/sync-options.js';
import { DB_OPTIONS } from '../config/db-options.js';
import type { Noun } from '../config/names.js';

/** One option of a command. */
export interface OptionDoc {
  name: string;
  help: string;
  /** Written as `--name` (a flag, with `=value` when `value` is set) rather than `name=value`. */
  flag?: boolean;
  /** What the value looks like (`<db>`, `SECONDS`); a flag without one takes no value. */
  value?: string;
  /** The default, as text. */
  default?: string;
}

/** One command: its arguments and options. */
export interface CommandDoc {
  /** The arguments after the verb (and noun): `<sync> [timeout]`. */
  args: string;
  options: OptionDoc[];
}

function defaultText(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'boolean') return v ? '1' : '0';
  return String(v);
}

const opt = (name: string, help: string, extra: Partial<OptionDoc> = {}): OptionDoc => ({ name, help, ...extra });
const flag = (name: string, help: string, value?: string): OptionDoc => ({ name, help, flag: true, ...(value ? { value } : {}) });

/** What the values of options without a schema look like, for help. */
const HINTS: Record<string, string> = {
  relgroup: 'RELGROUP', tables: 'T1,T2', dbs: 'A:source,B:target', dbgroup: 'DBGROUP', conflict_strategy: 'STRATEGY', onetimecopy_from: 'DB',
  status: 'active|inactive', dbname: 'NAME', host: 'HOST', port: 'PORT', user: 'ROLE', pass: 'PASSWORD|-', conn: '"k=v …"', service: 'NAME',
  dsn: 'URL', type: 'KIND', about: 'TEXT', db: 'DB', name: 'NAME', whenrun: 'HOOK', src_code: 'FILE', sync: 'SYNC', relation: 'SCHEMA.TABLE',
  table: 'SCHEMA.TABLE', priority: 'N', reason: 'TEXT', wait: 'DURATION', source: 'DB',
};

const syncOptions: OptionDoc[] = [
  ...Object.entries(SYNC_OTHER_OPTIONS).map(([name, help]) => opt(name, help)),
  ...Object.entries(SYNC_OPTIONS).map(([name, spec]) => {
    const d = defaultText(optionDefault(spec));
    return opt(name, optionHelp(spec), { value: spec.hint, ...(d === undefined ? {} : { default: d }) });
  }),
];
const dbOptions: OptionDoc[] = Object.entries(DB_OPTIONS).map(([name, help]) => opt(name, help));
const force = flag('force', 'register without connecting to the db (its server facts stay empty)');
const filters: OptionDoc[] = [
  flag('schema', 'only tables of this schema (-n; repeatable)', 'SCHEMA'),
  flag('exclude-schema', 'leave out this schema (-N; repeatable)', 'SCHEMA'),
  flag('table', 'only tables matching this name (-t; repeatable)', 'NAME'),
  flag('exclude-table', 'leave out tables matching this name (-T; repeatable)', 'NAME'),
];
const relOpts = (kind: 'table' | 'sequence'): OptionDoc[] => [
  opt('db', `the source db the ${kind} is on (needed when several dbs have it)`),
  opt('relgroup', `add the ${kind}s to this relgroup (created when missing; Bucardo: herd=)`),
  ...(kind === 'table' ? [opt('conflict_strategy', 'the strategy of this table, overriding its syncs\'')] : []),
];
const customcodeOpts: OptionDoc[] = [
  opt('whenrun', 'the hook: before_txn, before_check_rows, before_trigger_disable, after_trigger_disable, conflict, exception, after_txn, before_sync, after_sync …'),
  opt('src_code', 'the file holding the module (TypeScript or JavaScript)'),
  opt('sync', 'run it for this sync only'),
  opt('relation', 'run it for this table only (schema.table; Bucardo: table=)'),
  opt('table', 'Bucardo\'s spelling of relation='),
  opt('db', 'the db of relation='),
  opt('priority', 'order among hooks of the same kind (higher first)', { default: '0' }),
  opt('status', 'active or inactive', { default: 'active' }),
  opt('about', 'a free comment'),
];

/** The configuration verbs' commands, by verb and noun. */
export const NOUN_COMMANDS: Record<'add' | 'list' | 'update' | 'remove', Record<Noun, CommandDoc>> = {
  add: {
    db: { args: '<name>', options: [...dbOptions, force] },
    table: { args: '<name|pattern …>', options: relOpts('table') },
    sequence: { args: '<name|pattern …>', options: relOpts('sequence') },
    relgroup: { args: '<name> [table …]', options: [opt('db', 'the db of the members'), opt('about', 'a free comment')] },
    dbgroup: { args: '<name> [db:role …]', options: [opt('dbs', 'dbs=A:source,B:target: the members and their roles'), opt('about', 'a free comment')] },
    sync: { args: '<name>', options: [...syncOptions, opt('keys', 'after adding a multi-master sync: check (warn about keys two sources hand out alike; the default) or interleave (give each source its own residue class at once)')] },
    customcode: { args: '<name>', options: customcodeOpts },
    customname: { args: '<schema.table>', options: [opt('db', 'the target db where the table has another name'), opt('name', 'its name there (schema.name)')] },
  },
  list: {
    db: { args: '[name|pattern …]', options: [] },
    table: { args: '[name|pattern …]', options: [opt('db', 'only tables of this db')] },
    sequence: { args: '[name|pattern …]', options: [opt('db', 'only sequences of this db')] },
    relgroup: { args: '[name|pattern …]', options: [] },
    dbgroup: { args: '[name|pattern …]', options: [] },
    sync: { args: '[name|pattern …]', options: [] },
    customcode: { args: '[name|pattern …]', options: [] },
    customname: { args: '[table|pattern …]', options: [opt('db', 'only names on this db')] },
  },
  update: {
    db: { args: '<name> key=value …', options: [...dbOptions, force] },
    table: { args: '<name …>', options: relOpts('table') },
    sequence: { args: '<name …>', options: relOpts('sequence') },
    relgroup: { args: '<name> add|remove <table …>', options: [opt('db', 'the db of the members'), opt('about', 'a free comment')] },
    dbgroup: { args: '<name> add|remove|role … ', options: [opt('about', 'a free comment')] },
    sync: { args: '<name> key=value …', options: syncOptions.filter((o) => o.name !== 'tables' && o.name !== 'dbs') },
    customcode: { args: '<name> key=value …', options: customcodeOpts },
    customname: { args: '<schema.table>', options: [opt('db', 'the target db'), opt('name', 'the new name there')] },
  },
  remove: {
    db: { args: '<name …>', options: [] },
    table: { args: '<name|pattern …>', options: [opt('db', 'the db the tables are on')] },
    sequence: { args: '<name|pattern …>', options: [opt('db', 'the db the sequences are on')] },
    relgroup: { args: '<name …>', options: [] },
    dbgroup: { args: '<name …>', options: [] },
    sync: { args: '<name …>', options: [] },
    customcode: { args: '<name …>', options: [] },
    customname: { args: '<schema.table>', options: [opt('db', 'the target db')] },
  },
};

/** `ibex add all tables|sequences`. */
export const ADD_ALL: CommandDoc = { args: 'tables|sequences', options: [opt('db', 'the source db to read the catalog of'), opt('relgroup', 'add them to this relgroup'), ...filters] };

const timeout = flag('timeout', 'seconds to wait for the runs in progress', 'SECONDS');
const logfile = flag('logfile', 'write the daemon\'s JSON log here (run: default stdout; start: default <piddir>/ibex-<hash>.log)', 'PATH');
const http = flag('http', 'serve /metrics, /healthz, /readyz and the dashboard here (HOST:PORT, a bare port is localhost; off: nowhere; default: the http_listen setting)', 'ADDR:PORT');
const syncs = flag('syncs', 'run only these syncs (names or patterns with *, separated by commas)', 'PATTERNS');
const piddir = flag('piddir', 'where the pid and log files live (default: IBEX_PIDDIR, else ~/.ibex)', 'DIR');

/** The other verbs' commands. */
export const VERB_COMMANDS: Record<string, CommandDoc> = {
  install: { args: '', options: [] },
  run: { args: '', options: [logfile, http, syncs] },
  start: { args: '', options: [logfile, piddir, http, syncs] },
  stop: { args: '', options: [timeout, piddir, flag('all', 'ask every daemon on this control db to finish its run and stop')] },
  restart: { args: '', options: [timeout, logfile, piddir, http] },
  reload: { args: '', options: [] },
  status: { args: '[sync]', options: [flag('wide', 'every column, however wide the terminal'), flag('watch', 'refresh in place every 2 s until Ctrl-C')] },
  kick: { args: '<sync> [timeout]', options: [] },
  pause: { args: '<sync …>', options: [opt('reason', 'why, shown by status')] },
  resume: { args: '<sync …>', options: [] },
  conflicts: {
    args: '[sync] | restore <id>',
    options: [
      flag('table', 'only conflicts of this table', 'schema.table'), flag('since', 'a duration back from now (2h) or an ISO 8601 time', 'WHEN'),
      flag('status', 'applied, quarantined, skipped, aborted or pending', 'STATUS'), flag('limit', 'at most this many', 'N'),
    ],
  },
  set: { args: 'name=value …', options: [] },
  show: { args: '[all | name …]', options: [] },
  schema: {
    args: '<sync>',
    options: [flag('db', 'the db to create the tables on', 'DB'), opt('relgroup', 'the tables of this relgroup instead of a sync'), opt('tables', 'these tables instead of a sync'), opt('source', 'the db tables= are read from')],
  },
  validate: {
    args: '<sync|all>',
    options: [opt('table', 'only this table (schema.table)'), opt('wait', 'wait this long for a run in progress (duration)'), flag('repair', 'make the other dbs match one'), flag('from', 'the db a repair copies from', 'DB')],
  },
  sequences: {
    args: '<sync>',
    options: [flag('interleave', 'node i of N hands out values ≡ i (mod N)'), flag('modulus', 'N for --interleave (default: the number of sources)', 'N'), flag('yes', 'apply without asking'), flag('snowflake', 'install ibex_keys.snowflake_id() on every source')],
  },
  quarantine: { args: '[list|retry|drop] [sync]', options: [flag('id', 'only this set-aside row', 'N')] },
  export: { args: '', options: [flag('format', 'yaml (default) or json', 'FORMAT'), flag('full', 'every option, defaults included')] },
  apply: { args: '-f <file>', options: [flag('prune', 'also remove syncs the file does not name')] },
  'import-bucardo': {
    args: '',
    options: [flag('from', 'the URL of the Bucardo control database (or IBEX_BUCARDO_URL)', 'URL'), flag('cutover', 'move the writes over: install capture, drop Bucardo\'s triggers, drain, validate'), flag('yes', 'do not ask before stopping Bucardo\'s syncs')],
  },
  quickstart: { args: '', options: [flag('keep', 'keep the clusters at the end'), flag('exit', 'run the demo to its end and exit')] },
  completion: { args: 'bash|zsh', options: [] },
  help: { args: '[verb [noun]]', options: [] },
};

/** The global flags, accepted anywhere on the line. */
export const GLOBAL_FLAGS: OptionDoc[] = [
  flag('control', 'the control database (or IBEX_CONTROL_URL; default postgresql:///ibex)', 'URL'),
  flag('json', 'print JSON instead of tables'),
  flag('quiet', 'print only what was asked for (-q)'),
  flag('debug', 'stack traces on errors, debug logs'),
  flag('dry-run', 'show what would change, change nothing'),
  flag('force', 'go on where ibex would refuse (see each verb)'),
  flag('help', 'this help; for a verb: ibex help <verb> [noun] (-h)'),
  flag('version', 'print the version (-V)'),
];

/** How an option is shown in help: `clock=change|commit`, `--timeout=SECONDS`. */
export function optionUsage(o: OptionDoc): string {
  return o.flag ? (o.value ? `--${o.name}=${o.value}` : `--${o.name}`) : `${o.name}=${o.value ?? HINTS[o.name] ?? '…'}`;
}

/** How an option is written on the command line. */
export function optionTerm(o: OptionDoc): string {
  if (!o.flag) return `${o.name}=`;
  return o.value ? `--${o.name}=${o.value}` : `--${o.name}`;
}

/** Every verb's one-line summary for `ibex help` (the verbs' modules: verbs.ts). */
export const VERB_SUMMARIES: Readonly<Record<string, string>> = {
  install: 'create or upgrade the control schema (idempotent)',
  add: 'add db | table | all tables | sequence | all sequences | relgroup | dbgroup | sync | customcode | customname',
  list: 'list dbs | tables | sequences | relgroups | dbgroups | syncs | customcodes | customnames',
  update: 'update db | table | relgroup | dbgroup | sync | customcode | customname <name> key=value …',
  remove: 'remove db | table | sequence | relgroup | dbgroup | sync | customcode | customname <name …>',
  start: 'start the daemon in the background; returns when it is ready',
  run: 'run the daemon in the foreground (SIGTERM stops it gracefully)',
  stop: 'stop the local daemon after its runs in progress (--all: every daemon of the control database)',
  restart: 'stop, then start the daemon',
  reload: 'make the daemon re-read the configuration',
  status: 'state of every sync (or one): last runs, backlog, lag, errors',
  kick: 'kick <sync> [timeout]: run a sync now, optionally wait for that run',
  pause: 'pause <sync …>: stop running these syncs',
  resume: 'resume <sync …>: run these syncs again',
  conflicts: 'conflicts [sync] [--table=] [--since=] [--status=] [--limit=]: the conflict log, every overwritten version; conflicts restore <id> puts one back',
  quarantine: 'quarantine [list|retry|drop] [sync] [--id=]: rows a db refused and that were set aside, their errors; retry or forget them',
  set: 'set name=value …: change global settings (retention, timeouts, default strategy)',
  show: 'show [all | name …]: global settings, their values, defaults and meaning',
  schema: 'schema <sync> --db=<db>: print the DDL that creates the sync\'s tables on that db, in its dialect',
  validate: 'validate <sync|all> [table=] [--repair [--from=db]]: compare a sync\'s tables across its dbs (exit 6 on differences)',
  sequences: 'sequences <sync> [--interleave [--modulus=N] [--yes]] [--snowflake]: keys that cannot collide on several masters',
  export: 'export [--format=yaml|json] [--full]: print the whole configuration as a file (no passwords)',
  apply: 'apply -f <file> [--dry-run] [--prune]: make the configuration match a file; prints the plan first',
  'import-bucardo': 'import-bucardo --from=<url> [--dry-run] | --cutover [--yes]: take over a Bucardo setup',
  completion: 'completion bash|zsh: print a shell completion script (source <(ibex completion bash))',
  quickstart: 'throwaway local clusters replicating live (--exit runs the demo to its end)',
};
