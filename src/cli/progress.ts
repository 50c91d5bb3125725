/**
 * Progress of long work on stderr: on a terminal one line redrawn in place;
 * elsewhere (a log, a pipe) the same facts as plain lines, at most one every
 * `plainEveryMs`, so a cron job's mail or a CI log is not flooded. Never with
 * --quiet, never on stdout (which belongs to the command's result).
 */

/** Where progress goes. */
export interface ProgressSink {
  tty: boolean;
  columns?: number | undefined;
  write: (text: string) => void;
}

/** A progress reporter: `show` a line now and then, `clear` before printing the result. */
export interface Progress {
  show: (line: string) => void;
  clear: () => void;
}

/** The process's stderr as a sink. */
export function stderrSink(): ProgressSink {
  return { tty: process.stderr.isTTY === true, columns: process.stderr.columns, write: (t) => process.stderr.write(t) };
}

export function progressReporter(sink: ProgressSink, opts: { quiet?: boolean; plainEveryMs?: number; now?: () => number } = {}): Progress {
  const every = opts.plainEveryMs ?? 10_000;
  const now = opts.now ?? Date.now;
  let shown = false;
  // Plain lines start after the first interval: short work prints none.
  let lastPlain = now();
  let lastText = '';
  return {
    show: (line) => {
      if (opts.quiet) return;
      if (sink.tty) {
        const width = sink.columns || 80;
        sink.write(`\r\x1b[K${line.length >= width ? line.slice(0, width - 1) : line}`);
        shown = true;
        return;
      }
      if (line === lastText || now() - lastPlain < every) return;
      lastPlain = now();
      lastText = line;
      sink.write(`${new Date(now()).toISOString()} ${line}\n`);
    },
    clear: () => {
      if (sink.tty && shown) sink.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** "1,234,567". */
const grouped = (n: number): string => Math.round(n).toLocaleString('en-US');

/** How long, for an ETA: "45s", "12m 5s", "3h 20m". */
function duration(s: number): string {
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${t % 60}s`;
  return `${Math.floor(t / 3600)}h ${Math.floor((t % 3600) / 60)}m`;
}

/** One sample of a copy's progress. */
export interface CopySample {
  atMs: number;
  rows: number;
}

/**
 * The line for a copy in progress: rows done of the estimated total, the rate
 * over the samples given (oldest first) and the time left at that rate.
 */
export function copyProgressText(kind: string, samples: readonly CopySample[], estimated: number | null, tables: { done: number; total: number }): string {
  const last = samples[samples.length - 1];
  if (!last) return `${kind}: starting`;
  const first = samples[0]!;
  const seconds = (last.atMs - first.atMs) / 1000;
  const rate = seconds > 0 ? (last.rows - first.rows) / seconds : 0;
  const pct = estimated && estimated > 0 ? ` (${Math.min(100, Math.floor((last.rows / estimated) * 100))}%)` : '';
  const of = estimated && estimated > 0 ? ` of ~${grouped(estimated)}` : '';
  const eta = estimated && rate > 0 && estimated > last.rows ? `, ETA ${duration((estimated - last.rows) / rate)}` : '';
  return `${kind}: ${grouped(last.rows)}${of} rows${pct}, ${grouped(rate)} rows/s${eta}; tables ${tables.done}/${tables.total} done`;
}
