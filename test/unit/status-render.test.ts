import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renderSyncTable, watchLoop, type SyncStatusDoc } from '../../src/cli/status.js';

function sync(name: string, error?: string): SyncStatusDoc {
  return {
    name, status: 'active', statusReason: null, relgroup: 'g', dbgroup: 'd', autokick: true,
    state: 'stalled', stateSince: new Date(Date.now() - 3_725_000).toISOString(),
    running: null,
    lastGood: { run: 123456, ended: '2026-01-01T00:00:00.000Z', ageS: 93_784 },
    lastRun: {
      run: 1234567, kind: 'onetimecopy', status: 'failed', started: '2026-01-01T00:00:00.000Z', ended: '2026-01-01T00:00:01.000Z', ms: 123456,
      inserted: 1_000_000, deleted: 2, conflicts: 3, truncates: 0, tables: {}, error: error ?? null, applyAs: {},
    },
    backlog: [{ db: 'A', keys: 12_345_678, oldest: null, lagS: 99_999 }],
    lagS: 99_999, clockSkewMs: 12.5, attempts: 7, backlogLive: true, warnings: [], setAside: 0, owner: null,
    lastError: error ? { message: error, at: null, ageS: 3600 } : null,
  };
}

const doc = {
  syncs: [
    sync('a_sync_with_a_rather_long_name_indeed', 'cannot connect to 10.0.0.1:5432 dbname=shop user=ibex: connection refused, and then some more words to make it long'),
    sync('short'),
  ],
};
const width = (text: string): number => Math.max(...text.split('\n').map((l) => [...l].length));

describe('ibex status rendering', () => {
  it('fits 100 columns however long the names and errors', () => {
    const text = renderSyncTable(doc, { wide: false, width: 100, color: false });
    assert.ok(width(text) <= 100, `${width(text)} columns:\n${text}`);
    assert.match(text, /a_sync_with/);
    assert.match(text, /cannot/);
    assert.match(text, /ibex status --wide/);
    // The longest status and a long name together still fit.
    const worst = renderSyncTable({ syncs: [{ ...sync('x'.repeat(63), 'e'.repeat(300)), status: 'installing' }] }, { wide: false, width: 100, color: false });
    assert.ok(width(worst) <= 100, `${width(worst)} columns:\n${worst}`);
  });

  it('keeps short names and statuses in columns of their own width', () => {
    const text = renderSyncTable({ syncs: [{ ...sync('demo'), status: 'active' }] }, { wide: false, width: 100, color: false });
    assert.match(text, /│ demo │ active │ stalled/);
  });

  it('--wide shows the counts, clock skew and whole errors', () => {
    const text = renderSyncTable(doc, { wide: true, width: 100, color: false });
    assert.ok(width(text) > 100);
    assert.match(text, /I\/D\/C\/T/);
    assert.match(text, /1000000\/2\/3\/0/);
    assert.match(text, /13ms|12ms/);
    assert.match(text, /to make it long/);
  });
});

describe('ibex status --watch', () => {
  it('redraws in place on a terminal', async () => {
    const frames: string[] = [];
    const stop = new AbortController();
    let n = 0;
    const count = await watchLoop({
      tty: true, write: (t) => frames.push(t), signal: stop.signal, intervalMs: 1,
      render: async () => {
        if (++n === 3) stop.abort();
        return `frame ${n}\n`;
      },
    });
    assert.equal(count, 3);
    assert.deepEqual(frames, ['\x1b[H\x1b[2Jframe 1', '\x1b[H\x1b[2Jframe 2', '\x1b[H\x1b[2Jframe 3']);
  });

  it('prints snapshots one after another without a terminal', async () => {
    const frames: string[] = [];
    const stop = new AbortController();
    let n = 0;
    await watchLoop({ tty: false, write: (t) => frames.push(t), signal: stop.signal, intervalMs: 1, render: async () => (++n === 2 && stop.abort(), `frame ${n}`) });
    assert.deepEqual(frames, ['frame 1', '\nframe 2']);
  });
});
