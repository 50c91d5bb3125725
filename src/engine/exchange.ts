/**
 * Moving rows between databases as raw COPY text: one COPY TO on the source is
 * piped, unparsed, into COPY FROM on every target at once, with backpressure
 * (the slowest target paces the source). Nothing per row is parsed in Node.
 */
import type pg from 'pg';
import { to as copyTo, from as copyFrom } from 'pg-copy-streams';
import type { Readable, Writable } from 'node:stream';
import { tagDb } from '../db/tag.js';

/** Where a COPY stream goes: a PostgreSQL session's COPY FROM, or a stream of our own (a typed target's row sink). */
export type CopySink = {
  client: pg.Client;
  /** A COPY … FROM STDIN statement. */
  sql: string;
} | {
  /** Takes the COPY text; `rowCount` once finished. Its errors are tagged with `name`. */
  stream: Writable & { rowCount?: number };
  name: string;
};

/** Mark an error with the db it came from (first one wins). */
function tagSink(err: unknown, sink: CopySink): void {
  if ('client' in sink) tagDb(err, sink.client);
  else if (err && typeof err === 'object' && !(err as { ibexDb?: string }).ibexDb) (err as { ibexDb?: string }).ibexDb = sink.name;
}

/**
 * Run `COPY (…) TO STDOUT` on `source` and feed the bytes to every sink's
 * `COPY … FROM STDIN`. Resolves to the row count of each sink (in order).
 * On any error every stream is destroyed and the first error is thrown; the
 * caller must then discard the sessions' transactions.
 */
export async function copyFanOut(source: pg.Client, copyOutSql: string, sinks: CopySink[]): Promise<number[]> {
  if (sinks.length === 0) return [];
  const outs = sinks.map((s) => ('client' in s ? s.client.query(copyFrom(s.sql)) as unknown as Writable & { rowCount?: number } : s.stream));
  const input = source.query(copyTo(copyOutSql)) as unknown as Readable;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    let ended = false;
    let pendingDrains = 0;
    let finishedCount = 0;
    const fail = (err: unknown, tag: (e: unknown) => void): void => {
      if (failed) return;
      failed = true;
      tag(err);
      // The sessions of a broken COPY may be left mid-protocol: the runner discards them.
      if (err && typeof err === 'object') (err as { ibexCopyStream?: boolean }).ibexCopyStream = true;
      input.destroy();
      // A COPY TO stream has no destroy of its own: a source still sending would stay wedged
      // (its next query never answered), so its connection is cut; the server rolls it back.
      if (!ended) (source as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      for (const o of outs) o.destroy();
      reject(err);
    };
    input.on('error', (err) => fail(err, (e) => tagDb(e, source)));
    for (const [i, o] of outs.entries()) {
      o.on('error', (err) => fail(err, (e) => tagSink(e, sinks[i]!)));
      o.on('finish', () => {
        finishedCount++;
        if (finishedCount === outs.length && !failed) resolve();
      });
      o.on('drain', () => {
        pendingDrains--;
        if (pendingDrains === 0) input.resume();
      });
    }
    input.on('data', (chunk: Buffer) => {
      for (const o of outs) {
        if (!o.write(chunk)) pendingDrains++;
      }
      if (pendingDrains > 0) input.pause();
    });
    input.on('end', () => {
      ended = true;
      for (const o of outs) o.end();
    });
  });
  return outs.map((o) => Number(o.rowCount ?? 0));
}

/** Run `COPY (…) TO STDOUT` and collect the text (for small key lists). */
export async function copyOutText(source: pg.Client, copyOutSql: string): Promise<string> {
  const input = source.query(copyTo(copyOutSql)) as unknown as Readable;
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
