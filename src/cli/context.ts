/**
 * What every CLI verb receives: the global flags and the output channel.
 */
import type pg from 'pg';
import { endQuietly, isMissingPassword } from '../db/connect.js';
import { openControl, controlUrl, controlParams } from '../control/connection.js';
import { notifyConfigChanged } from '../control/daemon-store.js';
import { sqlstate } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { stringifyExactJson } from '../db/json.js';

/** Global flags, parsed once in main.ts. */
export interface GlobalFlags {
  control?: string | undefined;
  json: boolean;
  quiet: boolean;
  debug: boolean;
  dryRun: boolean;
  force: boolean;
}

/** The context of one CLI invocation. */
export interface Context {
  flags: GlobalFlags;
  /** The control URL in force (flag, env, default). */
  controlUrl: string;
  /** Print one line to stdout (suppressed by --quiet unless `always`). */
  say(line: string, always?: boolean): void;
  /** Print a JSON document to stdout (for --json). */
  json(value: unknown): void;
  /** Open the control database (schema checked); the verb must end it, `withControl` does. */
  withControl<T>(fn: (c: pg.Client) => Promise<T>): Promise<T>;
  /** Is the output a terminal (progress, colours, redrawing in place)? Absent: no. */
  tty?: boolean;
  /** A configuration write committed: `withControl` tells running daemons when it ends. */
  changed(): void;
  /** Run another ibex command line in this process (quickstart drives the CLI this way); resolves to its exit code. */
  runCli(argv: readonly string[], io: CliIo): Promise<number>;
}

/** Where the CLI writes (tests and quickstart capture it in-process). */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** A verb implementation: returns the exit code (0 when it returns nothing). */
export type VerbHandler = (ctx: Context, args: string[]) => Promise<number | void>;

/** Build the context for these flags. */
export function makeContext(flags: GlobalFlags, out: (s: string) => void, runCli: Context['runCli'], tty = false): Context {
  const url = controlUrl(flags.control);
  let changed = false;
  return {
    flags,
    controlUrl: url,
    runCli,
    tty,
    say(line, always = false) {
      if (!flags.quiet || always) out(line + '\n');
    },
    json(value) {
      out(stringifyExactJson(value, 2) + '\n');
    },
    changed() {
      changed = true;
    },
    async withControl(fn) {
      const c = await openControl(url).catch((err: unknown) => {
        throw controlFailure(url, err);
      });
      try {
        return await fn(c);
      } finally {
        // Told once the whole command is done (capture installed too), even when a later step
        // failed: a daemon re-reads the configuration and reloads only the syncs whose
        // configuration digest changed (src/control/daemon-store.ts).
        if (changed) {
          changed = false;
          await notifyConfigChanged(c).catch(() => {}); // best effort: daemons also re-read it every 30 s
        }
        await endQuietly(c);
      }
    },
  };
}

/**
 * Say which database failed and what to do when the control database cannot
 * be opened: it does not exist (run "ibex install", which creates it), or it
 * cannot be reached (start it, or fix --control). Schema errors pass unchanged.
 */
function controlFailure(url: string, err: unknown): unknown {
  if (!(err instanceof IbexError) || err.code !== 'unreachable') return err;
  const where = '--control (or IBEX_CONTROL_URL)';
  if (isMissingPassword(err.cause)) {
    return new IbexError('unreachable', `the control database needs a password and none was given: put it in ~/.pgpass (or PGPASSFILE), a pg_service.conf service (?service=), PGPASSWORD, or the ${where} URL`, { cause: err });
  }
  if (sqlstate(err.cause) === '3D000') {
    const name = controlParams(url).dbname ?? 'ibex';
    return new IbexError('schema', `the control database "${name}" does not exist: run "ibex install" to create it, or point ${where} at an existing one`, { cause: err });
  }
  const fix = sqlstate(err.cause)?.startsWith('28')
    ? 'fix the user or password in --control, IBEX_CONTROL_URL, ~/.pgpass or PGPASSWORD'
    : `check that its server is running, or fix ${where}`;
  return new IbexError('unreachable', `the control database cannot be reached: ${err.message}: ${fix}`, { cause: err });
}
