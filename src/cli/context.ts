/**
 * What every CLI verb receives: the global flags and the output channel.
 */
import type pg from 'pg';
import { openControl, controlUrl } from '../control/connection.js';

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
}

/** Build the context for these flags. */
export function makeContext(flags: GlobalFlags, out: (s: string) => void = (s) => process.stdout.write(s)): Context {
  const url = controlUrl(flags.control);
  return {
    flags,
    controlUrl: url,
    say(line, always = false) {
      if (!flags.quiet || always) out(line + '\n');
    },
    json(value) {
      out(JSON.stringify(value, null, 2) + '\n');
    },
    async withControl(fn) {
      const c = await openControl(url);
      try {
        return await fn(c);
      } finally {
        await c.end().catch(() => {});
      }
    },
  };
}
