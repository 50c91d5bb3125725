/**
 * What the configuration service needs of its caller: the flags that change what a command
 * does (a dry run writes in a transaction it rolls back; --force skips safety checks) and where
 * its report lines go. The CLI's Context is one; so is anything else that drives these steps.
 */
import type pg from 'pg';
import { inTransaction } from '../control/config-store.js';

/** The caller of a configuration step. */
export interface ConfigContext {
  flags: { dryRun: boolean; force: boolean };
  /** One line of the report. */
  say(line: string): void;
  /** Told when a write committed: the caller tells running daemons once it is done (src/cli/context.ts). */
  changed?(): void;
}

/**
 * Run the writes of one command in one control transaction; in a dry run the
 * transaction is rolled back (the writes still run, so every constraint is
 * checked) and the report says nothing changed.
 */
export async function write<T>(ctx: ConfigContext, c: pg.Client, fn: () => Promise<T>): Promise<T> {
  const out = await inTransaction(c, fn, { rollback: ctx.flags.dryRun });
  if (!ctx.flags.dryRun) ctx.changed?.();
  return out;
}

const PAST: Record<string, string> = {
  add: 'added', create: 'created', remove: 'removed', change: 'changed', register: 'registered', update: 'updated',
  reuse: 'reusing', skip: 'skipped', delete: 'deleted', set: 'set',
};

/** One line of a writing command's report: "added db A …", or "would add db A …" in a dry run. */
export function report(ctx: ConfigContext, verb: keyof typeof PAST, rest: string): void {
  if (verb === 'reuse' || verb === 'skip') {
    ctx.say(`${PAST[verb]} ${rest}`);
    return;
  }
  ctx.say(ctx.flags.dryRun ? `would ${verb} ${rest}` : `${PAST[verb]} ${rest}`);
}

/** The last line of a dry run. */
export function dryRunDone(ctx: ConfigContext): void {
  if (ctx.flags.dryRun) ctx.say('dry run: nothing was changed');
}
