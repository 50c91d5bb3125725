/**
 * The throwaway clusters every test and `ibex quickstart` stand on: a port
 * taken between being picked and the server's bind is replaced by another,
 * and a server that will not start says why, with its own log lines.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createClusters } from '../../src/cluster/clusters.js';
import { freePort } from '../../src/cluster/ports.js';

const listen = (port: number): Promise<Server> => new Promise((resolve, reject) => {
  const srv = createServer();
  srv.once('error', reject);
  srv.listen(port, '127.0.0.1', () => resolve(srv));
});

describe('throwaway clusters', () => {
  it('picks ports below the range outgoing connections take theirs from', async () => {
    const [low] = (await import('node:fs')).readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      assert.ok(p >= 1024 && p < low!, `port ${p} is below ${low}`);
    }
  });

  it('starts on another port when the one it picked was taken before the server bound it', async () => {
    const taken = await freePort();
    const squatter = await listen(taken);
    try {
      const set = await createClusters({ count: 1, label: 'ibex-test-port', ports: [taken] });
      try {
        const c = set.clusters[0]!;
        assert.notEqual(c.port, taken);
        assert.equal((await c.psql('SHOW port')).trim(), String(c.port));
        assert.match(c.url(), new RegExp(`:${c.port}/`));
        assert.equal(c.params().port, c.port);
      } finally {
        await set.destroy();
      }
    } finally {
      squatter.close();
    }
  });

  it('says why a server would not start, with the lines of its log, and leaves nothing behind', async () => {
    const label = `ibex-test-bad-${process.pid}`;
    await assert.rejects(
      createClusters({ count: 2, label, settings: { shared_buffers: 'lots' } }),
      (err: Error) => {
        assert.match(err.message, /cluster [AB] \(port \d+\) did not start: .*shared_buffers/s);
        return true;
      },
    );
    assert.deepEqual(readdirSync(tmpdir()).filter((f) => f.startsWith(`${label}-pg-`)), [], 'its temp dir is removed');
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    assert.ok(!ps.includes(`${label}-pg-`), 'no server of it runs');
  });
});
