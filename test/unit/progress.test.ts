import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyProgressText, progressReporter } from '../../src/cli/progress.js';

describe('copy progress', () => {
  it('says rows done of the estimate, the rate and the ETA', () => {
    const text = copyProgressText('s onetimecopy', [{ atMs: 0, rows: 0 }, { atMs: 10_000, rows: 100_000 }], 1_000_000, { done: 1, total: 3 });
    assert.equal(text, 's onetimecopy: 100,000 of ~1,000,000 rows (10%), 10,000 rows/s, ETA 1m 30s; tables 1/3 done');
  });
  it('leaves out what it cannot know', () => {
    assert.equal(copyProgressText('s fullcopy', [{ atMs: 0, rows: 5 }], null, { done: 0, total: 1 }), 's fullcopy: 5 rows, 0 rows/s; tables 0/1 done');
  });
});

describe('the progress reporter', () => {
  it('redraws one line on a terminal and clears it', () => {
    let out = '';
    const p = progressReporter({ tty: true, columns: 20, write: (t) => (out += t) });
    p.show('a line that is longer than twenty');
    p.clear();
    assert.equal(out, '\r\x1b[Ka line that is long\r\x1b[K');
  });
  it('without a terminal prints plain timestamped lines, at most one per interval, none for short work', () => {
    let out = '';
    let now = 1_000_000;
    const p = progressReporter({ tty: false, write: (t) => (out += t) }, { plainEveryMs: 10_000, now: () => now });
    p.show('early');
    now += 10_000;
    p.show('ten seconds in');
    now += 5_000;
    p.show('too soon');
    p.clear();
    assert.equal(out, `${new Date(1_010_000).toISOString()} ten seconds in\n`);
  });
  it('prints nothing with --quiet', () => {
    let out = '';
    const p = progressReporter({ tty: true, write: (t) => (out += t) }, { quiet: true });
    p.show('x');
    assert.equal(out, '');
  });
});
