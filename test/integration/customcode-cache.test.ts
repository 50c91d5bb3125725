/**
 * The custom code cache runs what it holds with ibex's privileges, so a cache
 * another local user could prepare is refused or bypassed, and the code they
 * planted never runs: each planted module writes a marker file, which must
 * stay absent. (File-system only; no database.)
 */
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkSource, cacheDirPath } from '../../src/customcode/loader.js';

const NOBODY = 65534;
const saved = { TMPDIR: process.env.TMPDIR, HOME: process.env.HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };
const realTmp = tmpdir();
const roots: string[] = [];
let base = '';
let marker = '';
let n = 0;

/** A legitimate hook, different in every test so no module is cached from an earlier one. */
function legit(): string {
  n += 1;
  return `export default function hook() { return ${n}; }\n`;
}

/** Where the loader will look for `src` in `dir` (computed here, independently of the loader). */
function expectedFile(dir: string, name: string, src: string): string {
  const hash = createHash('sha256').update('javascript').update('\0').update(src).digest('hex').slice(0, 20);
  return join(dir, `${name}-${hash}.mjs`);
}

/** Code an attacker plants: it leaves the marker file when it runs. */
function evil(): string {
  return `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'ran');\nexport default function hook() { return 'owned'; }\n`;
}

function check(src: string): Promise<void> {
  return checkSource('cc', 'conflict', src, 'javascript', '/hooks/cc.mjs');
}

const uid = process.getuid!();
if (uid !== 0) throw new Error('these tests chown a directory to another user and must run as root');

describe('custom code cache', () => {
  before(() => {
    delete process.env.XDG_CACHE_HOME;
    delete process.env.HOME;
  });
  beforeEach(() => {
    base = mkdtempSync(join(realTmp, 'ibex-cc-cache-'));
    roots.push(base);
    marker = join(base, 'MARKER');
    process.env.TMPDIR = base;
    delete process.env.XDG_CACHE_HOME;
  });
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });

  it('creates its own directory with mode 0700 and files with mode 0600', async () => {
    await check(legit());
    const dir = cacheDirPath();
    assert.equal(dir, join(base, `ibex-customcode-${uid}`));
    const st = lstatSync(dir);
    assert.ok(st.isDirectory() && !st.isSymbolicLink());
    assert.equal(st.mode & 0o7777, 0o700);
    const files = readdirSync(dir);
    assert.equal(files.length, 1, files.join(' '));
    assert.equal(lstatSync(join(dir, files[0]!)).mode & 0o7777, 0o600);
  });

  it('refuses a directory another user could write to, and never runs what is in it', async () => {
    const dir = join(base, `ibex-customcode-${uid}`);
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const src = legit();
    writeFileSync(expectedFile(dir, 'cc', src), evil(), { mode: 0o666 });
    await assert.rejects(check(src), /custom code cache .* is not safe to run code from: it has mode 0777, not 0700; remove it/);
    assert.equal(existsSync(marker), false, 'the planted code ran');
  });

  it('refuses a symbolic link in place of the directory', async () => {
    const theirs = join(base, 'theirs');
    mkdirSync(theirs, { mode: 0o700 });
    symlinkSync(theirs, join(base, `ibex-customcode-${uid}`));
    const src = legit();
    writeFileSync(expectedFile(theirs, 'cc', src), evil(), { mode: 0o600 });
    await assert.rejects(check(src), /is not safe to run code from: it is a symbolic link/);
    assert.equal(existsSync(marker), false, 'the planted code ran');
  });

  it('refuses a directory owned by another user', async () => {
    const dir = join(base, `ibex-customcode-${uid}`);
    mkdirSync(dir, { mode: 0o700 });
    const src = legit();
    const file = expectedFile(dir, 'cc', src);
    writeFileSync(file, evil(), { mode: 0o600 });
    chownSync(file, NOBODY, NOBODY);
    chownSync(dir, NOBODY, NOBODY);
    await assert.rejects(check(src), new RegExp(`it is owned by uid ${NOBODY}, not by uid ${uid}`));
    assert.equal(existsSync(marker), false, 'the planted code ran');
  });

  it('writes a tampered cached file again before importing it', async () => {
    const dir = join(base, `ibex-customcode-${uid}`);
    mkdirSync(dir, { mode: 0o700 });
    const src = legit();
    const file = expectedFile(dir, 'cc', src);
    // Right name, right owner and mode, wrong bytes.
    writeFileSync(file, evil(), { mode: 0o600 });
    await check(src);
    assert.equal(existsSync(marker), false, 'the planted code ran');
    assert.equal(readFileSync(file, 'utf8'), src);
    assert.equal(lstatSync(file).mode & 0o7777, 0o600);
  });

  it('replaces a symbolic link planted under a cached file name instead of following it', async () => {
    const dir = join(base, `ibex-customcode-${uid}`);
    mkdirSync(dir, { mode: 0o700 });
    const src = legit();
    const target = join(base, 'evil.mjs');
    writeFileSync(target, evil(), { mode: 0o600 });
    const file = expectedFile(dir, 'cc', src);
    symlinkSync(target, file);
    await check(src);
    assert.equal(existsSync(marker), false, 'the planted code ran');
    assert.equal(lstatSync(file).isSymbolicLink(), false);
    assert.equal(readFileSync(file, 'utf8'), src);
    assert.notEqual(readFileSync(target, 'utf8'), src, 'the link target was written through');
  });

  it('keeps the cache in XDG_CACHE_HOME when set, out of reach of a directory planted in TMPDIR', async () => {
    const planted = join(base, `ibex-customcode-${uid}`);
    mkdirSync(planted);
    chmodSync(planted, 0o777);
    const src = legit();
    writeFileSync(expectedFile(planted, 'cc', src), evil(), { mode: 0o666 });
    const xdg = join(base, 'xdg');
    mkdirSync(xdg, { mode: 0o700 });
    process.env.XDG_CACHE_HOME = xdg;
    await check(src);
    assert.equal(existsSync(marker), false, 'the planted code ran');
    assert.equal(cacheDirPath(), join(xdg, 'ibex', 'customcode'));
    assert.equal(readFileSync(expectedFile(cacheDirPath(), 'cc', src), 'utf8'), src);
  });

  it('refuses a cache whose parent other users may write to (not sticky)', async () => {
    const xdg = join(base, 'xdg-open');
    mkdirSync(join(xdg, 'ibex'), { recursive: true });
    chmodSync(join(xdg, 'ibex'), 0o777);
    process.env.XDG_CACHE_HOME = xdg;
    await assert.rejects(check(legit()), /the parent .*xdg-open\/ibex of the custom code cache can be written by other users: set XDG_CACHE_HOME/);
  });

  it('falls back to TMPDIR, checked the same way, when the home cache cannot be made', async () => {
    const notADir = join(base, 'home-is-a-file');
    writeFileSync(notADir, '');
    process.env.HOME = notADir;
    try {
      const src = legit();
      await check(src);
      const dir = join(base, `ibex-customcode-${uid}`);
      assert.equal(lstatSync(dir).mode & 0o7777, 0o700);
      assert.equal(readFileSync(expectedFile(dir, 'cc', src), 'utf8'), src);
    } finally {
      delete process.env.HOME;
    }
  });
});
