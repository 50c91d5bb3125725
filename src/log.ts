/**
 * The one logger: pino, one JSON object per line to stderr (or to the
 * daemon's log file), levels by name. Context goes through
 * `log.child({ sync, db, table, run })`; the message is a constant and the
 * facts are fields. Passwords and DSNs are redacted by path, and every
 * message is passed through `redact()` where it may carry a driver's text.
 * On a terminal, stderr gets a short human line instead of JSON
 * (IBEX_LOG_FORMAT=json keeps JSON).
 */
import pino from 'pino';

/** The file destination of the last logger made with one, for reopenLogFile(). */
let fileDestination: pino.DestinationStream & { reopen?: (file?: string) => void } | undefined;

const LEVEL_COLOURS: Record<string, string> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31', fatal: '35' };

/** Format one JSON log line for a person: `12:00:01 WARN  run failed sync=a run=3 err="..."`. */
export function prettyLine(line: string, colour: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, pid: _pid, ...rest } = o;
  const t = typeof time === 'string' ? time.slice(11, 19) : '';
  const lvl = String(level ?? '').toUpperCase().padEnd(5);
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`).join(' ');
  const head = colour ? `\x1b[${LEVEL_COLOURS[String(level)] ?? '0'}m${lvl}\x1b[0m` : lvl;
  return `${t} ${head} ${String(msg ?? '')}${fields ? ' ' + fields : ''}\n`;
}

/** Log level from IBEX_LOG_LEVEL (default info; `--debug` sets debug). */
export function createLogger(opts: { level?: string; destination?: string | number } = {}): pino.Logger {
  const level = opts.level ?? process.env.IBEX_LOG_LEVEL ?? 'info';
  const toStderr = opts.destination === undefined || opts.destination === 2;
  const dest = pino.destination({ dest: opts.destination ?? 2, sync: toStderr });
  if (typeof opts.destination === 'string') fileDestination = dest;
  const pretty = toStderr && process.stderr.isTTY === true && process.env.IBEX_LOG_FORMAT !== 'json';
  const stream: pino.DestinationStream = pretty ? { write: (line: string) => void dest.write(prettyLine(line, true)) } : dest;
  return pino(
    {
      level,
      base: { pid: process.pid },
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'dbpass', '*.dbpass', 'params.password', 'dsn', '*.dsn'], censor: '********' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
}

/**
 * Reopen the log file (after logrotate moved it away: SIGHUP). Returns false when no logger
 * writes to a file.
 */
export function reopenLogFile(): boolean {
  if (!fileDestination?.reopen) return false;
  fileDestination.reopen();
  return true;
}

/** The process-wide logger (stderr); the daemon replaces it with one writing to its log file. */
export let log: pino.Logger = createLogger({ level: process.env.IBEX_LOG_LEVEL ?? 'warn' });

/** Replace the process-wide logger. */
export function setLogger(l: pino.Logger): void {
  log = l;
}
