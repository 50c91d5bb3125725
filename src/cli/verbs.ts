/**
 * The verbs of the command line and the module that implements each. Modules
 * are loaded lazily so `ibex list db` does not load the engine.
 */
import type { VerbHandler } from './context.js';
import { VERB_SUMMARIES } from './commands.js';

export interface VerbEntry {
  summary: string;
  load: () => Promise<VerbHandler>;
}

/** Every verb and the module that implements it (loaded on use); its summary is in commands.ts. */
const LOADERS: Record<string, () => Promise<VerbHandler>> = {
  install: async () => (await import('./install.js')).install,
  add: async () => (await import('./config/verbs.js')).add,
  list: async () => (await import('./config/verbs.js')).list,
  update: async () => (await import('./config/verbs.js')).update,
  remove: async () => (await import('./config/verbs.js')).remove,
  start: async () => (await import('./daemon.js')).start,
  run: async () => (await import('./daemon.js')).run,
  stop: async () => (await import('./daemon.js')).stop,
  restart: async () => (await import('./daemon.js')).restart,
  reload: async () => (await import('./daemon.js')).reload,
  status: async () => (await import('./status.js')).status,
  kick: async () => (await import('./status.js')).kick,
  pause: async () => (await import('./status.js')).pause,
  resume: async () => (await import('./status.js')).resume,
  conflicts: async () => (await import('./conflicts.js')).conflicts,
  quarantine: async () => (await import('./quarantine.js')).quarantine,
  set: async () => (await import('./settings.js')).set,
  show: async () => (await import('./settings.js')).show,
  schema: async () => (await import('./schema.js')).schema,
  validate: async () => (await import('./validate.js')).validate,
  sequences: async () => (await import('./sequences.js')).sequences,
  export: async () => (await import('./config-file.js')).exportVerb,
  apply: async () => (await import('./config-file.js')).apply,
  'import-bucardo': async () => (await import('./import-bucardo.js')).importBucardo,
  completion: async () => (await import('./completion.js')).completion,
  quickstart: async () => (await import('./quickstart.js')).quickstart,
};

/** Every verb, with its one-line summary for `ibex help`. */
export const VERBS: Record<string, VerbEntry> = Object.fromEntries(
  Object.entries(LOADERS).map(([verb, load]) => [verb, { summary: VERB_SUMMARIES[verb] ?? '', load }]),
);
