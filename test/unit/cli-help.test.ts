import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { helpText, bashCompletion, zshCompletion } from '../../src/cli/program.js';
import { closest, editDistance } from '../../src/cli/suggest.js';
import { SYNC_OPTIONS } from '../../src/config/sync-options.js';
import { DB_OPTIONS } from '../../src/config/db-options.js';
import { optionDefault, parseOption } from '../../src/config/options.js';
import { VERBS } from '../../src/cli/verbs.js';
import { resolveParams } from '../../src/db/connect.js';
import { userInfo } from 'node:os';

describe('help', () => {
  it('ibex help add sync lists every sync option with its meaning and default', () => {
    const text = helpText('add', 'sync');
    assert.match(text, /^Usage: ibex add sync <name> \[key=value …\]/);
    for (const [name, spec] of Object.entries(SYNC_OPTIONS)) {
      const at = text.split('\n').findIndex((l) => l.startsWith(`  ${name}=`));
      // A long term puts its text on the next line.
      const line = at < 0 ? undefined : text.split('\n').slice(at, at + 2).join(' ');
      assert.ok(line, `${name} is missing:\n${text}`);
      assert.ok(line.includes(spec.schema.description!.slice(0, 20)), `${name}'s help is missing: ${line}`);
      const d = optionDefault(spec);
      if (d !== null) assert.ok(line.includes(`(default: ${typeof d === 'boolean' ? (d ? '1' : '0') : String(d)})`), `${name}'s default is missing: ${line}`);
    }
    for (const k of ['relgroup', 'dbs', 'dbgroup', 'tables', 'conflict_strategy']) assert.match(text, new RegExp(`^ {2}${k}=\\S+ +\\S`, 'm'));
    assert.match(text, /^ {2}clock=change\|commit +the clock of "latest".*\(default: change\)$/m);
  });

  it('ibex help add db lists every db option; plurals name the same noun', () => {
    const text = helpText('add', 'db');
    for (const name of Object.keys(DB_OPTIONS)) assert.match(text, new RegExp(`^ {2}${name}=\\S+\\s+\\S`, 'm'));
    assert.match(text, /--force/);
    assert.equal(helpText('add', 'dbs'), text);
  });

  it('each verb has its own help, not one line for all', () => {
    const texts = Object.keys(VERBS).map((v) => helpText(v));
    assert.equal(new Set(texts).size, texts.length);
    assert.match(helpText('stop'), /--timeout <SECONDS>/);
    assert.match(helpText('validate'), /--repair/);
    assert.match(helpText('add'), /sync\s+add sync/);
  });

  it('the overview lists every verb and the global flags', () => {
    const text = helpText();
    for (const v of Object.keys(VERBS)) assert.match(text, new RegExp(`^  ${v}\\b`, 'm'), v);
    assert.match(text, /--control <URL>/);
    assert.match(text, /exit codes:/);
  });

  it('an unknown verb or noun in help suggests the closest', () => {
    assert.throws(() => helpText('stauts'), /unknown verb "stauts".*did you mean "status"\?/);
    assert.throws(() => helpText('add', 'snyc'), /unknown noun "snyc" for add.*did you mean "sync"\?/);
  });
});

describe('did you mean', () => {
  it('finds typos and swaps, not unrelated words', () => {
    assert.equal(editDistance('kick', 'kcik'), 1);
    assert.equal(closest('stauts', Object.keys(VERBS)), 'status');
    assert.equal(closest('--jsno', ['--json', '--quiet']), '--json');
    assert.equal(closest('frobnicate', Object.keys(VERBS)), undefined);
  });
});

describe('completion scripts', () => {
  it('name every verb, noun and sync option', () => {
    for (const script of [bashCompletion(), zshCompletion()]) {
      for (const v of Object.keys(VERBS)) assert.ok(script.includes(v), v);
      for (const o of Object.keys(SYNC_OPTIONS)) assert.ok(script.includes(`${o}=`), o);
      assert.ok(script.includes('relgroup'));
    }
  });
});

describe('option schemas', () => {
  it('parse Bucardo\'s spellings and refuse bad values with what they accept', () => {
    assert.equal(parseOption('autokick', SYNC_OPTIONS.autokick, 'off'), false);
    assert.equal(parseOption('isolation_level', SYNC_OPTIONS.isolation_level, 'REPEATABLE_READ'), 'repeatable read');
    assert.equal(parseOption('maxkicks', SYNC_OPTIONS.maxkicks, ''), null);
    assert.equal(parseOption('checktime', SYNC_OPTIONS.checktime, '5m'), '300 seconds');
    assert.throws(() => parseOption('onetimecopy', SYNC_OPTIONS.onetimecopy, '3'), /^.*bad value "3" for onetimecopy: give a whole number from 0 to 2$/);
    assert.throws(() => parseOption('onetimecopy', SYNC_OPTIONS.onetimecopy, '1.5'), /bad value "1.5" for onetimecopy/);
    assert.throws(() => parseOption('clock', SYNC_OPTIONS.clock, 'wall'), /bad value "wall" for clock: use one of change, commit/);
    assert.throws(() => parseOption('autokick', SYNC_OPTIONS.autokick, 'maybe'), /use 1\/0, true\/false, on\/off or yes\/no/);
  });
});

describe('the default user', () => {
  it('is the operating system user without PGUSER, as libpq does ($USER is not read)', () => {
    const saved = { PGUSER: process.env.PGUSER, USER: process.env.USER };
    try {
      delete process.env.PGUSER;
      process.env.USER = 'not-the-os-user';
      assert.equal(resolveParams({ dbname: 'x' }).user, userInfo().username);
      delete process.env.USER;
      assert.equal(resolveParams({ dbname: 'x' }).user, userInfo().username);
      process.env.PGUSER = 'someone';
      assert.equal(resolveParams({ dbname: 'x' }).user, 'someone');
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
});
