/**
 * The verbs of the command line and the module that implements each. Modules
 * are loaded lazily so `ibex list db` does not load the engine.
 */
import type { VerbHandler } from './context.js';

export interface VerbEntry {
  summary: string;
  load: () => Promise<VerbHandler>;
}

/** Every verb, with a one-line summary for `ibex help`. */
export const VERBS: Record<string, VerbEntry> = {
  install: { summary: 'create or upgrade the control schema (idempotent)', load: async () => (await import('./install.js')).install },
  add: { summary: 'add db | table | all tables | sequence | all sequences | relgroup | dbgroup | sync | customcode | customname', load: async () => (await import('./config/verbs.js')).add },
  list: { summary: 'list dbs | tables | sequences | relgroups | dbgroups | syncs | customcodes | customnames', load: async () => (await import('./config/verbs.js')).list },
  update: { summary: 'update db | table | relgroup | dbgroup | sync | customcode | customname <name> key=value …', load: async () => (await import('./config/verbs.js')).update },
  remove: { summary: 'remove db | table | sequence | relgroup | dbgroup | sync | customcode | customname <name …>', load: async () => (await import('./config/verbs.js')).remove },
  start: { summary: 'start the daemon in the background; returns when it is ready', load: async () => (await import('./daemon.js')).start },
  run: { summary: 'run the daemon in the foreground (SIGTERM stops it gracefully)', load: async () => (await import('./daemon.js')).run },
  stop: { summary: 'stop the local daemon after its runs in progress (--all: every daemon of the control database)', load: async () => (await import('./daemon.js')).stop },
  restart: { summary: 'stop, then start the daemon', load: async () => (await import('./daemon.js')).restart },
  reload: { summary: 'make the daemon re-read the configuration', load: async () => (await import('./daemon.js')).reload },
  status: { summary: 'state of every sync (or one): last runs, backlog, lag, errors', load: async () => (await import('./status.js')).status },
  kick: { summary: 'kick <sync> [timeout]: run a sync now, optionally wait for that run', load: async () => (await import('./status.js')).kick },
  pause: { summary: 'pause <sync …>: stop running these syncs', load: async () => (await import('./status.js')).pause },
  resume: { summary: 'resume <sync …>: run these syncs again', load: async () => (await import('./status.js')).resume },
  conflicts: { summary: 'conflicts [sync] [--table=] [--since=] [--status=] [--limit=]: the conflict log, every overwritten version; conflicts restore <id> puts one back', load: async () => (await import('./conflicts.js')).conflicts },
  quarantine: { summary: 'quarantine [list|retry|drop] [sync] [--id=]: rows a db refused and that were set aside, their errors; retry or forget them', load: async () => (await import('./quarantine.js')).quarantine },
  set: { summary: 'set name=value …: change global settings (retention, timeouts, default strategy)', load: async () => (await import('./settings.js')).set },
  show: { summary: 'show [all | name …]: global settings, their values, defaults and meaning', load: async () => (await import('./settings.js')).show },
  schema: { summary: 'schema <sync> --db=<db>: print the DDL that creates the sync\'s tables on that db, in its dialect', load: async () => (await import('./schema.js')).schema },
  validate: { summary: 'validate <sync|all> [table=] [--repair [--from=db]]: compare a sync\'s tables across its dbs (exit 6 on differences)', load: async () => (await import('./validate.js')).validate },
  sequences: { summary: 'sequences <sync> [--interleave [--modulus=N] [--yes]] [--snowflake]: keys that cannot collide on several masters', load: async () => (await import('./sequences.js')).sequences },
  export: { summary: 'export [--format=yaml|json] [--full]: print the whole configuration as a file (no passwords)', load: async () => (await import('./config-file.js')).exportVerb },
  apply: { summary: 'apply -f <file> [--dry-run] [--prune]: make the configuration match a file; prints the plan first', load: async () => (await import('./config-file.js')).apply },
  'import-bucardo': { summary: 'import-bucardo --from=<url> [--dry-run] | --cutover [--yes]: take over a Bucardo setup', load: async () => (await import('./import-bucardo.js')).importBucardo },
  completion: { summary: 'completion bash|zsh: print a shell completion script (source <(ibex completion bash))', load: async () => (await import('./completion.js')).completion },
  quickstart: { summary: 'throwaway local clusters replicating live (--exit runs the demo to its end)', load: async () => (await import('./quickstart.js')).quickstart },
};
