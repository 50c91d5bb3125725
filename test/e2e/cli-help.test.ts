/**
 * Help, suggestions and completion through the real command (bin/ibex), and
 * docs/cli.md checked against the command table the CLI is built from: every
 * verb, noun and option the CLI accepts must be documented there.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCliProcess } from '../helpers/env.js';
import { buildProgram } from '../../src/cli/program.js';
import { ADD_ALL, GLOBAL_FLAGS, NOUN_COMMANDS, VERB_COMMANDS } from '../../src/cli/commands.js';

describe('help and suggestions (bin/ibex)', () => {
  it('ibex add sync --help and ibex help add sync print the same option list', async () => {
    const a = await runCliProcess(['add', 'sync', '--help']);
    const b = await runCliProcess(['help', 'add', 'sync']);
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, b.out);
    assert.match(a.out, /^ {2}onetimecopy=0\|1\|2\s+the next run copies whole tables.*\(default: 0\)$/m);
  });

  it('a mistyped verb or option gets "did you mean"', async () => {
    const r = await runCliProcess(['stauts']);
    assert.equal(r.code, 2);
    assert.match(r.err, /^ibex: unknown verb "stauts": run "ibex help" for the list of verbs \(did you mean "status"\?\)$/m);
    const o = await runCliProcess(['--control', 'postgresql:///nonexistent_ibex_db', 'add', 'sync', 'x', 'relgroup=g', 'dbs=A,B', 'onetimecpy=1']);
    assert.equal(o.code, 2);
    assert.match(o.err, /unknown option "onetimecpy" for add sync: .*\(did you mean "onetimecopy"\?\)/);
  });

  for (const shell of ['bash', 'zsh'] as const) {
    it(`ibex completion ${shell} prints a script the shell accepts, listing the verbs`, async (t) => {
      const r = await runCliProcess(['completion', shell]);
      assert.equal(r.code, 0, r.err);
      for (const v of Object.keys(VERB_COMMANDS).filter((v) => v !== 'help')) assert.ok(r.out.includes(v), v);
      const dir = mkdtempSync(join(tmpdir(), 'ibex-completion-'));
      try {
        const file = join(dir, `ibex.${shell}`);
        writeFileSync(file, r.out);
        if (shell === 'zsh') {
          try {
            execFileSync('zsh', ['--version']);
          } catch {
            t.skip('zsh is not installed');
            return;
          }
        }
        execFileSync(shell, ['-n', file]);
        if (shell === 'bash') {
          // Complete `ibex add sync x onetime` and `ibex sta` for real.
          const probe = `source ${file}\nCOMP_WORDS=(ibex add sync x onetime); COMP_CWORD=4; _ibex; printf '%s\\n' "\${COMPREPLY[@]}"\nCOMP_WORDS=(ibex sta); COMP_CWORD=1; _ibex; printf '%s\\n' "\${COMPREPLY[@]}"`;
          const out = execFileSync('bash', ['-c', probe], { encoding: 'utf8' });
          assert.match(out, /^onetimecopy=$/m);
          assert.match(out, /^onetimecopy_from=$/m);
          assert.match(out, /^start $/m);
          assert.match(out, /^status $/m);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('docs/cli.md', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8');
  const program = buildProgram();

  it('documents every verb and noun of the commander program', () => {
    const missing: string[] = [];
    for (const cmd of program.commands) {
      if (!doc.includes(`ibex ${cmd.name()}`)) missing.push(`ibex ${cmd.name()}`);
      for (const sub of cmd.commands) {
        const noun = sub.name();
        if (!new RegExp(`ibex ${cmd.name()} (\\S+\\|)*${noun}`).test(doc)) missing.push(`ibex ${cmd.name()} ${noun}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('documents every option and flag each command accepts', () => {
    const missing: string[] = [];
    const check = (where: string, name: string, flag: boolean): void => {
      const written = flag ? new RegExp(`--${name}\\b`) : new RegExp(`(^|[^\\w])${name}(=|\`)`, 'm');
      if (!written.test(doc)) missing.push(`${where}: ${flag ? `--${name}` : `${name}=`}`);
    };
    for (const o of GLOBAL_FLAGS) check('global', o.name, true);
    for (const [verb, nouns] of Object.entries(NOUN_COMMANDS)) {
      for (const [noun, c] of Object.entries(nouns)) for (const o of c.options) check(`${verb} ${noun}`, o.name, !!o.flag);
    }
    for (const o of ADD_ALL.options) check('add all', o.name, !!o.flag);
    for (const [verb, c] of Object.entries(VERB_COMMANDS)) for (const o of c.options) check(verb, o.name, !!o.flag);
    assert.deepEqual(missing, []);
  });
});
