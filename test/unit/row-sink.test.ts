import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { RowSink } from '../../src/engine/run/typed.js';
import type { TextRow } from '../../src/targets/target.js';

describe('RowSink', () => {
  it('hands on whole batches in order, the rest of a chunk starting the next one, and what is left at the end', async () => {
    const calls: TextRow[][] = [];
    const sink = new RowSink(async (rows) => {
      calls.push(rows);
      await new Promise((r) => setTimeout(r, 1));
    }, 5);
    // Chunks of 7, 3, 9 and 4 rows: batches of exactly 5 until the end.
    const line = (i: number): string => `${i}\tv${i}\n`;
    let i = 0;
    const chunks = [7, 3, 9, 4].map((n) => Buffer.from(Array.from({ length: n }, () => line(i++)).join('')));
    await pipeline(Readable.from(chunks), sink);
    assert.deepEqual(calls.map((c) => c.length), [5, 5, 5, 5, 3]);
    assert.deepEqual(calls.flat().map((r) => r[0]), Array.from({ length: 23 }, (_, k) => String(k)));
    assert.equal(sink.rowCount, 23);
  });
});
