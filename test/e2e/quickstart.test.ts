import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCliProcess } from '../helpers/env.js';

describe('ibex quickstart --exit', () => {
  it('builds three clusters, replicates live, resolves a conflict, converges and cleans up', async () => {
    const r = await runCliProcess(['quickstart', '--exit']);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /all 4 tables are identical on A, B and C/);
    assert.match(r.out, /winner B, the version overwritten on A/);
    assert.match(r.out, /│ demo │ active/);
    const root = /-h (\/tmp\/ibex-quickstart-pg-[^/]+)\//.exec(r.out)?.[1];
    assert.ok(root, 'the psql hints name the cluster directory');
    assert.equal(existsSync(root), false, 'the clusters were removed');
  });
});
