/**
 * The options of a sync, one schema each (src/config/options.ts): `add sync` and
 * `update sync` parse them, `list syncs` compares against their defaults, help,
 * completion and the docs check list them. DESIGN and bucardo.md §c.1 give the
 * meaning; docs/cli.md "Sync options" the long form.
 */
import { boolOption, enumOption, intOption, intervalOption, textOption, type OptionSpec } from './options.js';

/** The stored sync options with a schema (conflict_strategy and onetimecopy_from are checked against the control db). */
export const SYNC_OPTIONS = {
  clock: enumOption(['change', 'commit'], 'change', 'the clock of "latest": when the trigger saw the change, or the commit time (needs track_commit_timestamp)'),
  onetimecopy: intOption(0, 2, 0, 'the next run copies whole tables from onetimecopy_from: 1 empties targets first, 2 fills only empty tables'),
  autokick: boolOption(true, 'run on changes and every checktime; 0: only when kicked'),
  checktime: intervalOption('the periodic check: run this long after the last run even without a change (none: 60 s)'),
  fullcopy_interval: intervalOption('refresh fullcopy targets this often (none: only on kick)'),
  stayalive: boolOption(true, 'accepted for Bucardo compatibility; no effect'),
  kidsalive: boolOption(true, 'accepted for Bucardo compatibility; no effect'),
  deletemethod: enumOption(['delete', 'truncate', 'truncate_cascade'], 'delete', 'how a fullcopy empties a target table'),
  isolation_level: enumOption(['repeatable read', 'serializable'], 'repeatable read', 'the isolation level of each run\'s transactions', (v) => v.toLowerCase().replace(/_/g, ' ')),
  apply_mode: enumOption(['upsert', 'replica'], 'upsert', 'upsert with triggers and foreign keys active, or replica (session_replication_role = replica)'),
  rebuild_index: intOption(0, 2, 0, 'stored; no effect yet'),
  analyze_after_copy: boolOption(true, 'stored; ibex always analyzes a table after copying into it'),
  vacuum_after_copy: boolOption(false, 'stored; no effect yet'),
  strict_checking: boolOption(true, 'stored; the column and key checks always run'),
  lifetime: intervalOption('stored; no effect yet'),
  maxkicks: intOption(0, 2_147_483_647, null, 'stored; no effect yet'),
  about: textOption('a free comment'),
  on_row_error: enumOption(['stall', 'quarantine'], 'quarantine', 'a row a db refuses (a CHECK, a trigger, a lock held too long): set it aside and let the rest flow (quarantine), or fail the run (stall)'),
} satisfies Record<string, OptionSpec>;

/** The name of a sync option that has a schema. */
export type SyncOptionName = keyof typeof SYNC_OPTIONS;

/** The options of add/update sync that are not schema-typed values, with their help text. */
export const SYNC_OTHER_OPTIONS: Readonly<Record<string, string>> = {
  relgroup: 'the relgroup (tables and sequences) the sync replicates (add: this or tables=)',
  tables: 'tables=t1,t2: make a relgroup named after the sync from these tables',
  dbs: 'dbs=A:source,B:source,C:target: the dbs and their roles (first without a role: source, the rest: target)',
  dbgroup: 'the dbgroup the sync replicates between (add: this or dbs=)',
  conflict_strategy: 'who wins a key changed on several sources: latest | source | target | skip | random | abort | custom | an ordered db list A,B (default: the default_conflict_strategy setting)',
  onetimecopy_from: 'the db onetimecopy and fullcopy read from (default: the first source)',
  status: 'active or inactive',
};

/** Bucardo's aliases of sync option names. */
export const SYNC_ALIASES: Readonly<Record<string, string>> = {
  conflict: 'conflict_strategy',
  standard_conflict: 'conflict_strategy',
  ping: 'autokick',
  txnmode: 'isolation_level',
  herd: 'relgroup',
};
