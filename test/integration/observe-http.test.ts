/**
 * The HTTP endpoints when the control database cannot be reached: the
 * process still answers /healthz, /readyz says why it is not ready, and
 * /metrics still serves (ibex_control_up 0).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import pino from 'pino';
import { Observer } from '../../src/observe/observer.js';
import { startHttp, type HttpServer } from '../../src/observe/server.js';

const log = pino({ level: 'silent' });
let observer: Observer;
let http: HttpServer;
let base = '';

/** A port nothing listens on (taken, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

before(async () => {
  const port = await closedPort();
  observer = new Observer({ controlUrl: `postgresql://ibex:hunter2pw@127.0.0.1:${port}/ibexctl?connect_timeout=2`, log, processMetrics: false });
  http = await startHttp(observer, { host: '127.0.0.1', port: 0 }, log);
  base = `http://127.0.0.1:${http.address.port}`;
});

after(async () => {
  await http.close();
  await observer.close();
});

describe('the HTTP endpoints without a control database', () => {
  it('answers /healthz 200 and /readyz 503 with the reason', async () => {
    assert.equal((await fetch(base + '/healthz')).status, 200);
    const r = await fetch(base + '/readyz');
    assert.equal(r.status, 503);
    const doc = (await r.json()) as { ready: boolean; reasons: string[] };
    assert.equal(doc.ready, false);
    assert.equal(doc.reasons.length, 1);
    assert.match(doc.reasons[0]!, /^the control database is unreachable: /);
    assert.ok(!doc.reasons[0]!.includes('hunter2pw'));
  });

  it('still serves /metrics, with ibex_control_up 0', async () => {
    const r = await fetch(base + '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await r.text(), /^ibex_control_up 0$/m);
  });

  it('says so on /api/state, refuses other methods, and answers 404 elsewhere', async () => {
    const s = (await (await fetch(base + '/api/state')).json()) as { control: { reachable: boolean; error: string } };
    assert.equal(s.control.reachable, false);
    assert.ok(!s.control.error.includes('hunter2pw'));
    assert.equal((await fetch(base + '/metrics', { method: 'POST' })).status, 405);
    assert.equal((await fetch(base + '/nope')).status, 404);
    const page = await fetch(base + '/');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
  });
});
