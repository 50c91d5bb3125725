/**
 * PACKAGING TEST (slow: about a minute; needs the npm registry or its cache).
 * The npm package as a user gets it: `npm pack` (which builds dist/), then
 * `npm install <tarball>` + `npx ibex --version` in an empty project, and
 * `npm install -g <tarball>` into a private prefix + `ibex --version`. The
 * installed command must run compiled JavaScript: no tsx, no src/.
 * Install scripts are skipped (better-sqlite3 would fetch a binary from
 * GitHub, which this machine cannot reach; --version does not load it).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/env.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const NPM_FLAGS = ['--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'];
let dir: string;
let tarball: string;
let files: string[] = [];

const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): string =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ibex-package-'));
  const out = run('npm', ['pack', '--pack-destination', dir, '--json', '--loglevel=error'], ROOT);
  const packed = JSON.parse(out.slice(out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, packed[0]!.filename);
  files = packed[0]!.files.map((f) => f.path);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('the npm package (slow packaging test)', () => {
  it('holds the compiled code, its SQL, the docs and the unit file, and no tests or sources', () => {
    assert.ok(files.includes('dist/cli/main.js'));
    assert.ok(files.includes('dist/customcode/api.js') && files.includes('dist/customcode/api.d.ts'));
    assert.ok(files.some((f) => /^dist\/control\/sql\/0001_.*\.sql$/.test(f)), 'the control schema SQL');
    assert.ok(files.includes('README.md') && files.includes('docs/cli.md') && files.includes('contrib/ibex.service'));
    assert.deepEqual(files.filter((f) => /^(test|bench|src|scripts)\//.test(f)), []);
  });

  it('npm install <tarball> && npx ibex --version, in an empty project', () => {
    const project = join(dir, 'project');
    mkdirSync(project);
    run('npm', ['init', '-y', '--loglevel=error'], project);
    run('npm', ['install', tarball, ...NPM_FLAGS], project);
    assert.equal(run('npx', ['--no-install', 'ibex', '--version'], project).trim(), `ibex ${pkg.version}`);
    const bin = realpathSync(join(project, 'node_modules', '.bin', 'ibex'));
    assert.match(bin, /dist\/cli\/main\.js$/);
    assert.ok(!existsSync(join(project, 'node_modules', pkg.name, 'src')));
    // The custom-code API resolves to the compiled module.
    const api = run('node', ['--input-type=module', '-e', `import('${pkg.name}/customcode').then((m) => console.log(typeof m))`], project);
    assert.equal(api.trim(), 'object');
  });

  it('npm install -g <tarball> puts a working ibex on the PATH of that prefix', () => {
    const prefix = join(dir, 'global');
    run('npm', ['install', '-g', '--prefix', prefix, tarball, ...NPM_FLAGS], dir);
    assert.ok(readdirSync(join(prefix, 'bin')).includes('ibex'));
    assert.equal(run(join(prefix, 'bin', 'ibex'), ['--version'], dir).trim(), `ibex ${pkg.version}`);
    const help = run(join(prefix, 'bin', 'ibex'), ['help', 'add', 'sync'], dir);
    assert.match(help, /onetimecopy=0\|1\|2/);
  });
});
