/**
 * The one logger: pino, JSON to stderr (or to the daemon's log file). Context
 * goes through `log.child({ sync, db, table, run })`. Passwords and DSNs are
 * redacted by path, and every message is passed through `redact()` where it
 * may carry a driver's text.
 */
import pino from 'pino';

/** Log level from IBEX_LOG_LEVEL (default info; `--debug` sets debug). */
export function createLogger(opts: { level?: string; destination?: string | number } = {}): pino.Logger {
  const level = opts.level ?? process.env.IBEX_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: ['password', '*.password', 'dbpass', '*.dbpass', 'params.password', 'dsn', '*.dsn'], censor: '********' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: opts.destination ?? 2, sync: opts.destination === undefined || opts.destination === 2 }),
  );
}

/** The process-wide logger (stderr); the daemon replaces it with one writing to its log file. */
export let log: pino.Logger = createLogger({ level: process.env.IBEX_LOG_LEVEL ?? 'warn' });

/** Replace the process-wide logger. */
export function setLogger(l: pino.Logger): void {
  log = l;
}
