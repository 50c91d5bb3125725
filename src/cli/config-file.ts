/**
 * Configuration as a file: `ibex export [--format=yaml|json]` prints the whole configuration,
 * `ibex apply -f <file> [--dry-run] [--prune]` makes the control database match one.
 */
import { usage } from '../errors.js';
import { applyDocument } from '../config/apply.js';
import { formatDocument, readConfigFile } from '../config/document-file.js';
import { exportConfig } from '../config/export.js';
import { controlError } from '../control/config-store.js';
import type { VerbHandler } from './context.js';

/** `ibex export [--format=yaml|json] [--full]` */
export const exportVerb: VerbHandler = async (ctx, args) => {
  let format: 'yaml' | 'json' = ctx.flags.json ? 'json' : 'yaml';
  let full = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--format(?:=(.*))?$/.exec(a);
    if (m) {
      const v = (m[1] ?? args[++i] ?? '').toLowerCase();
      if (v !== 'yaml' && v !== 'json') throw usage(`bad value "${v}" for --format: use yaml or json`);
      format = v;
    } else if (a === '--full') full = true;
    else throw usage(`unexpected "${a}" for export: ibex export [--format=yaml|json] [--full]`);
  }
  const doc = await ctx.withControl((c) => exportConfig(c, { full }));
  ctx.say(formatDocument(doc, format).replace(/\n$/, ''), true);
};

/** `ibex apply -f <file> [--prune]` (with the global --dry-run) */
export const apply: VerbHandler = async (ctx, args) => {
  let file: string | undefined;
  let prune = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^(?:-f|--file)(?:=(.*))?$/.exec(a);
    if (m) file = m[1] ?? args[++i];
    else if (a === '--prune') prune = true;
    else throw usage(`unexpected "${a}" for apply: ibex apply -f <file> [--dry-run] [--prune]`);
  }
  if (!file) throw usage('apply needs a file: ibex apply -f ibex.yaml [--dry-run] [--prune]');
  const doc = readConfigFile(file);
  await ctx.withControl(async (c) => {
    try {
      await applyDocument({ flags: ctx.flags, say: (l) => ctx.say(l) }, c, doc, { prune });
    } catch (err) {
      throw controlError(err);
    }
  });
};
