/**
 * `ibex install`: create or upgrade the control schema (idempotent, safe to run twice at once).
 */
import type pg from 'pg';
import { endQuietly } from '../db/connect.js';
import { controlParams, openControl, openOrCreateControl } from '../control/connection.js';
import { migrate, codeVersion, installedVersion } from '../control/migrate.js';
import { sqlstate } from '../db/sqlstate.js';
import { IbexError, usage } from '../errors.js';
import type { Context } from './context.js';

/** `ibex install` */
export async function install(ctx: Context, args: string[]): Promise<number> {
  if (args.length) throw usage(`"ibex install" takes no arguments (got "${args.join(' ')}"): use --control URL to choose the database`);
  if (ctx.flags.dryRun) return dryRun(ctx);
  const { client, created } = await openOrCreateControl(ctx.controlUrl);
  try {
    const applied = await migrate(client);
    const version = codeVersion();
    if (ctx.flags.json) ctx.json({ version, applied, createdDatabase: created });
    else if (applied.length) ctx.say(`installed the control schema version ${version} (applied ${applied.join(', ')})${created ? ' in a new database' : ''}`);
    else ctx.say(`the control schema is up to date (version ${version})`);
    return 0;
  } finally {
    await endQuietly(client);
  }
}

/** `ibex install --dry-run`: say what install would do; create nothing, not even the database. */
async function dryRun(ctx: Context): Promise<number> {
  const know = codeVersion();
  let client: pg.Client;
  try {
    client = await openControl(ctx.controlUrl, { check: false, applicationName: 'ibex/install' });
  } catch (err) {
    if (!(err instanceof IbexError) || sqlstate(err.cause) !== '3D000') throw err;
    const name = controlParams(ctx.controlUrl).dbname ?? 'ibex';
    if (ctx.flags.json) ctx.json({ version: know, applied: [], createdDatabase: false, dryRun: true, wouldCreateDatabase: true });
    else {
      ctx.say(`would create the control database "${name}" and install the control schema version ${know}`);
      ctx.say('dry run: nothing was changed');
    }
    return 0;
  }
  try {
    const have = await installedVersion(client);
    if (have > know) throw new IbexError('schema', `the control schema is version ${have}, newer than this ibex (${know}): upgrade ibex`);
    if (ctx.flags.json) ctx.json({ version: know, applied: [], createdDatabase: false, dryRun: true, from: have });
    else {
      ctx.say(have === know ? `the control schema is up to date (version ${know})` : have === 0
        ? `would install the control schema version ${know}` : `would upgrade the control schema from version ${have} to ${know}`);
      ctx.say('dry run: nothing was changed');
    }
    return 0;
  } finally {
    await endQuietly(client);
  }
}
