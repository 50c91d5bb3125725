import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTarget } from '../../src/targets/registry.js';

describe('registry: redis, mongo and oracle', () => {
  it('opens each kind through its module, unconnected, with its capabilities', async () => {
    const redis = await createTarget({ name: 'r', kind: 'redis', port: 6390, dbname: '2' });
    assert.equal(redis.kind, 'redis');
    assert.deepEqual(redis.caps, { transactional: false, progressInTxn: false, copyText: false });
    const mongo = await createTarget({ name: 'm', kind: 'mongo', host: 'h', dbname: 'app' });
    assert.equal(mongo.kind, 'mongo');
    assert.deepEqual(mongo.caps, { transactional: false, progressInTxn: false, copyText: false });
    const oracle = await createTarget({ name: 'o', kind: 'oracle', host: 'h', dbname: 'svc', user: 'u' });
    assert.equal(oracle.kind, 'oracle');
    assert.deepEqual(oracle.caps, { transactional: true, progressInTxn: true, copyText: false });
  });
});
