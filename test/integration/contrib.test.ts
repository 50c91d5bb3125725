/**
 * The files that run ibex as a service: contrib/ibex.service must pass
 * `systemd-analyze verify` without a warning (skipped, with the reason, where
 * that tool is missing), and say what the operations guide promises. The
 * Dockerfile cannot be built here (no container engine on this machine), so
 * only what it promises is checked: the base image, the daemon, no tsx.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/env.js';

const unit = join(ROOT, 'contrib', 'ibex.service');

describe('contrib/ibex.service', () => {
  it('passes systemd-analyze verify without a warning', (t) => {
    const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (probe.error) {
      t.skip(`systemd-analyze is not installed (${(probe.error as NodeJS.ErrnoException).code})`);
      return;
    }
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', r.stderr);
  });

  it('runs ibex run in the foreground as its own user, restarting on failure, configured by an environment file', () => {
    const text = readFileSync(unit, 'utf8');
    const key = (k: string): string[] => [...text.matchAll(new RegExp(`^${k}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
    assert.deepEqual(key('Type'), ['simple']);
    assert.match(key('ExecStart')[0]!, /(^|\/| )ibex run$/);
    assert.deepEqual(key('Restart'), ['on-failure']);
    assert.deepEqual(key('User'), ['ibex']);
    assert.deepEqual(key('EnvironmentFile'), ['/etc/ibex/ibex.env']);
    for (const k of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp']) assert.ok(key(k).length === 1, k);
  });
});

describe('Dockerfile', () => {
  it('builds on node:20-slim and runs the daemon from the compiled package', () => {
    const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    assert.deepEqual([...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]), ['node:20-slim', 'node:20-slim']);
    assert.match(text, /^CMD \["ibex", "run"\]$/m);
    assert.match(text, /^USER node$/m);
    assert.match(text, /npm install -g \/tmp\/ibex\.tgz/);
  });
});
