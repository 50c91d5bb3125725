import { test } from 'node:test';
import assert from 'node:assert/strict';
import { together } from '../../src/engine/together.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('together returns every result in order', async () => {
  assert.deepEqual(await together([3, 1, 2], async (n) => { await sleep(n); return n * 10; }), [30, 10, 20]);
});

test('together reports a failure only after every branch finished', async () => {
  // A branch that fails at once must not let the caller go on (and roll sessions back) while
  // another branch is still sending statements: that is what Promise.all would do.
  const done: string[] = [];
  await assert.rejects(together(['fails', 'slow'], async (name) => {
    if (name === 'fails') throw new Error('db A refused');
    await sleep(30);
    done.push(name);
  }), /db A refused/);
  assert.deepEqual(done, ['slow']);
});
