import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { prettyLine } from '../../src/log.js';
import { parseListen } from '../../src/observe/server.js';

describe('parseListen', () => {
  it('takes HOST:PORT, :PORT, PORT and [IPv6]:PORT, localhost by default', () => {
    assert.deepEqual(parseListen('127.0.0.1:9187'), { host: '127.0.0.1', port: 9187 });
    assert.deepEqual(parseListen(':9187'), { host: '127.0.0.1', port: 9187 });
    assert.deepEqual(parseListen('9187'), { host: '127.0.0.1', port: 9187 });
    assert.deepEqual(parseListen('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
    assert.deepEqual(parseListen('[::1]:9187'), { host: '::1', port: 9187 });
  });

  it('refuses what is not an address, saying how to write one', () => {
    for (const bad of ['', 'localhost', '1.2.3.4:70000', 'a:b', '1.2.3.4:']) {
      assert.throws(() => parseListen(bad), /^IbexError: bad listen address ".*": give HOST:PORT, e\.g\. --http=127\.0\.0\.1:9187/);
    }
  });
});

describe('prettyLine', () => {
  it('turns a JSON log line into a short human line with the fields after the message', () => {
    const line = JSON.stringify({ level: 'warn', time: '2026-12-04T21:00:01.123Z', pid: 7, sync: 's1', run: 3, err: 'no route to host', msg: 'run failed' });
    assert.equal(prettyLine(line, false), '21:00:01 WARN  run failed sync=s1 run=3 err="no route to host"\n');
    assert.equal(prettyLine('not json', false), 'not json');
  });
});
