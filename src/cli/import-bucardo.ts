/**
 * `ibex import-bucardo --from=<url> [--dry-run]`: take Bucardo's configuration over.
 * `ibex import-bucardo --cutover --from=<url> [--yes]`: move the replication from Bucardo to ibex.
 * See docs/bucardo.md.
 */
import { createInterface } from 'node:readline/promises';
import { applyDocument } from '../config/apply.js';
import { readBucardo } from '../config/bucardo-import.js';
import { cutover } from '../config/bucardo-cutover.js';
import { controlError } from '../control/config-store.js';
import { connect, endQuietly, parseUrl } from '../db/connect.js';
import { IbexError, usage } from '../errors.js';
import type { Context, VerbHandler } from './context.js';

const SYNTAX = 'ibex import-bucardo --from=<url of the Bucardo control database> [--dry-run] | --cutover --from=<url> [--yes]';

async function confirm(ctx: Context, question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw usage(`${question} — no terminal to ask: add --yes to go ahead`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** `ibex import-bucardo …` */
export const importBucardo: VerbHandler = async (ctx, args) => {
  let from = process.env.IBEX_BUCARDO_URL;
  let doCutover = false;
  let yes = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--from(?:=(.*))?$/.exec(a);
    if (m) from = m[1] ?? args[++i];
    else if (a === '--cutover') doCutover = true;
    else if (a === '--yes' || a === '-y') yes = true;
    else throw usage(`unexpected "${a}" for import-bucardo: ${SYNTAX}`);
  }
  if (!from) throw usage(`import-bucardo needs the Bucardo control database: ${SYNTAX} (or set IBEX_BUCARDO_URL)`);
  let b;
  try {
    b = await connect(parseUrl(from), { applicationName: 'ibex/import-bucardo' });
  } catch (err) {
    throw new IbexError('unreachable', `the Bucardo control database cannot be reached: ${(err as Error).message}: check --from (postgresql://bucardo@host:port/bucardo)`, { cause: err });
  }
  try {
    const imported = await readBucardo(b);
    if (!doCutover) {
      for (const n of imported.notes) ctx.say(n);
      await ctx.withControl(async (c) => {
        try {
          await applyDocument({ flags: ctx.flags, say: (l) => ctx.say(l) }, c, imported.doc, { prune: false, passwords: imported.passwords, installCapture: false });
        } catch (err) {
          throw controlError(err);
        }
      });
      if (!ctx.flags.dryRun) ctx.say(`imported; Bucardo still replicates. Rewrite the customcode if any, then: ibex import-bucardo --cutover --from=…`);
      return 0;
    }
    if (ctx.flags.dryRun) throw usage('--cutover has no dry run: "ibex import-bucardo --from=… --dry-run" shows the import; docs/bucardo.md describes each cut-over step');
    const syncs = imported.syncs;
    if (syncs.length === 0) throw usage('Bucardo has no sync ibex can take over: nothing to cut over');
    const question = `The cut-over installs ibex's capture and drops Bucardo's triggers on the tables of ${syncs.join(', ')}, lets Bucardo deliver what it captured, then stops these syncs in Bucardo. Go ahead?`;
    if (!yes && !(await confirm(ctx, question))) {
      ctx.say('nothing was changed');
      return 0;
    }
    const done = await ctx.withControl((c) => cutover({ flags: ctx.flags, say: (l) => ctx.say(l) }, c, b, syncs));
    let code = 0;
    for (const s of done) {
      ctx.say(`validating sync ${s} …`);
      const rc = await ctx.runCli(['validate', s, 'wait=120', ...(ctx.flags.control ? ['--control', ctx.flags.control] : [])], { out: (t) => ctx.say(t.replace(/\n$/, ''), true), err: (t) => process.stderr.write(t) });
      if (rc !== 0) code = rc;
    }
    ctx.say(code === 0 ? 'cut-over done: ibex replicates; Bucardo can be uninstalled (docs/bucardo.md)' : 'cut-over done, but validate found differences: see above and docs/bucardo.md (going back)');
    return code;
  } finally {
    await endQuietly(b);
  }
};
