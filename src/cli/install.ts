/**
 * `ibex install`: create or upgrade the control schema (idempotent, safe to run twice at once).
 */
import { openOrCreateControl } from '../control/connection.js';
import { migrate, codeVersion, installedVersion } from '../control/migrate.js';
import { usage } from '../errors.js';
import type { Context } from './context.js';

/** `ibex install` */
export async function install(ctx: Context, args: string[]): Promise<number> {
  if (args.length) throw usage(`"ibex install" takes no arguments (got "${args.join(' ')}"): use --control URL to choose the database`);
  const { client, created } = await openOrCreateControl(ctx.controlUrl);
  try {
    if (ctx.flags.dryRun) {
      const have = await installedVersion(client);
      ctx.say(`would upgrade the control schema from version ${have} to ${codeVersion()}${created ? ' (database created)' : ''}`);
      return 0;
    }
    const applied = await migrate(client);
    const version = codeVersion();
    if (ctx.flags.json) ctx.json({ version, applied, createdDatabase: created });
    else if (applied.length) ctx.say(`installed the control schema version ${version} (applied ${applied.join(', ')})${created ? ' in a new database' : ''}`);
    else ctx.say(`the control schema is up to date (version ${version})`);
    return 0;
  } finally {
    await client.end().catch(() => {});
  }
}
