/**
 * The one error class of ibex. Every failure a user can see carries a stable
 * string `code`, a message that says what happened and what to do, and the
 * exit code the CLI maps it to (DESIGN.md, "Exit codes").
 */

/** Exit codes, the same for every command (DESIGN.md). */
export const ExitCode = {
  ok: 0,
  runtime: 1,
  usage: 2,
  conflictAbort: 3,
  kickTimeout: 4,
  runFailed: 5,
  differences: 6,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Stable error codes. Tests and scripts may branch on these strings. */
export type ErrorCode =
  /** Bad arguments: unknown verb/noun/option, malformed value. */
  | 'usage'
  /** Valid syntax, but the configuration does not allow it (duplicate, in use, no source …). */
  | 'config'
  /** A named object (db, table, sync …) does not exist. */
  | 'not_found'
  /** A database could not be reached or refused the login. */
  | 'unreachable'
  /** The control schema is missing, or newer than this ibex. */
  | 'schema'
  /** A sync stopped on a conflict it was told to abort on. */
  | 'conflict_abort'
  /** `kick` timed out waiting for its run. */
  | 'kick_timeout'
  /** The run that `kick` waited for failed. */
  | 'run_failed'
  /** `validate` found differences. */
  | 'differences'
  /** The daemon is not running / already running. */
  | 'daemon'
  /** A bug or an unexpected failure. */
  | 'internal';

const exitOf: Record<ErrorCode, ExitCode> = {
  usage: ExitCode.usage,
  config: ExitCode.usage,
  not_found: ExitCode.usage,
  unreachable: ExitCode.runtime,
  schema: ExitCode.runtime,
  conflict_abort: ExitCode.conflictAbort,
  kick_timeout: ExitCode.kickTimeout,
  run_failed: ExitCode.runFailed,
  differences: ExitCode.differences,
  daemon: ExitCode.runtime,
  internal: ExitCode.runtime,
};

/** An error with a stable code, a one-line message and the exit code it maps to. */
export class IbexError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IbexError';
    this.code = code;
    this.details = options?.details;
  }
  /** The process exit code this error maps to. */
  get exitCode(): ExitCode {
    return exitOf[this.code];
  }
}

/** Shorthand for the most common case: bad input, exit 2. */
export function usage(message: string): IbexError {
  return new IbexError('usage', message);
}

/** Shorthand for a configuration problem, exit 2. */
export function configError(message: string): IbexError {
  return new IbexError('config', message);
}

/** Shorthand for an unknown name, exit 2. */
export function notFound(what: string, name: string, hint: string): IbexError {
  return new IbexError('not_found', `no ${what} named "${name}": ${hint}`);
}
