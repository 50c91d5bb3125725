/**
 * The `ibex` command line: help and version, parsing (commander, program.ts),
 * verb dispatch, and the one place where errors become a one-line message and
 * an exit code. main.ts is the
 * executable entry; verbs that drive the CLI themselves (quickstart) get
 * `main` through their Context, so no verb imports this module.
 */
import { IbexError, ExitCode } from '../errors.js';
import { errorText, redact } from '../db/connect.js';
import { makeContext, type CliIo, type GlobalFlags } from './context.js';
import { VERBS } from './verbs.js';
import { ibexVersion } from '../version.js';
import { didYouMean } from './suggest.js';

const GLOBAL_FLAG_WORDS = ['--control', '--json', '--quiet', '--debug', '--dry-run', '--force', '--help', '--version'];

const VERSION = ibexVersion();

/**
 * A first look at the line, before commander parses it (program.ts): --help and --version
 * anywhere, the verb (so an unknown one is named as such), and a NUL byte in any word.
 */
export function parseGlobal(argv: readonly string[]): { flags: GlobalFlags; verb: string | undefined; rest: string[]; help: boolean; version: boolean } {
  const flags: GlobalFlags = { json: false, quiet: false, debug: false, dryRun: false, force: false };
  const rest: string[] = [];
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.includes('\0')) {
      const key = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(a)?.[1];
      const what = key ? `the value of ${key}=` : `the argument "${printable(a)}"`;
      throw new IbexError('usage', `${what} holds a NUL byte, which no name or value may contain: remove it`);
    }
    if (a === '--control') {
      const v = argv[++i];
      if (v === undefined) throw new IbexError('usage', '--control needs a URL: --control postgresql://user@host/ibex');
      flags.control = v;
    } else if (a.startsWith('--control=')) flags.control = a.slice('--control='.length);
    else if (a === '--json') flags.json = true;
    else if (a === '--quiet' || a === '-q') flags.quiet = true;
    else if (a === '--debug') flags.debug = true;
    else if (a === '--dry-run' || a === '--dryrun') flags.dryRun = true;
    else if (a === '--force') flags.force = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version' || a === '-V') version = true;
    else rest.push(a);
  }
  const verb = rest.shift();
  return { flags, verb, rest, help, version };
}

/** A text as one printable line: line breaks and other control characters shown as escapes. */
export function printable(text: string): string {
  let out = '';
  for (const ch of text.replace(/\r?\n/g, '\n')) {
    const code = ch.charCodeAt(0);
    if (ch === '\n') out += '\\n';
    else if (ch === '\0') out += '\\0';
    else if ((code < 0x20 && ch !== '\t') || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out;
}

/** The one line an error becomes: names given by the user may hold line breaks and control characters. */
function oneLineMessage(text: string): string {
  return printable(text.trim());
}

const processIo: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** Run the CLI; resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let debug = argv.includes('--debug');
  try {
    const { flags, verb, rest, help, version } = parseGlobal(argv);
    debug = flags.debug;
    if (version) {
      io.out(`ibex ${VERSION}\n`);
      return ExitCode.ok;
    }
    if (!verb || verb === 'help' || (help && !verb)) {
      const { helpText } = await import('./program.js');
      io.out(helpText(verb === 'help' ? rest[0] : undefined, verb === 'help' ? rest[1] : undefined));
      return verb || help ? ExitCode.ok : ExitCode.usage;
    }
    const entry = VERBS[verb];
    if (!entry && verb.startsWith('-') && verb.length > 1) {
      throw new IbexError('usage', `unknown flag "${verb}": global flags are --control URL, --json, --quiet, --debug, --dry-run, --force, --help, --version; see "ibex help"${didYouMean(verb, GLOBAL_FLAG_WORDS)}`);
    }
    if (!entry) throw new IbexError('usage', `unknown verb "${verb}": run "ibex help" for the list of verbs${didYouMean(verb, [...Object.keys(VERBS), 'help'])}`);
    if (help) {
      const { helpText } = await import('./program.js');
      io.out(helpText(verb, rest[0]));
      return ExitCode.ok;
    }
    if (flags.dryRun && ['kick', 'start', 'stop', 'restart', 'run', 'reload', 'quickstart'].includes(verb)) {
      throw new IbexError('usage', `--dry-run has no meaning for "ibex ${verb}": leave it out`);
    }
    // commander parses the line: the verb's flags and their values, the noun, the words.
    const { parseLine } = await import('./program.js');
    const line = parseLine(argv);
    const handler = await entry.load();
    const code = await handler(makeContext(line.flags, io.out, main, io === processIo && process.stdout.isTTY === true), line.args);
    return code ?? ExitCode.ok;
  } catch (err) {
    const ibex = err instanceof IbexError ? err : undefined;
    const message = oneLineMessage(redact(ibex ? ibex.message : `internal error: ${errorText(err).replace(/\s*\n\s*/g, ' ')}`));
    io.err(`ibex: ${message}\n`);
    // Errors that stand for several findings (the tables a target lacks) list them, one a line.
    const problems = ibex?.details?.problems;
    if (Array.isArray(problems)) for (const p of problems) io.err(`  ${oneLineMessage(redact(String(p)))}\n`);
    if (debug && err instanceof Error && err.stack) io.err(redact(err.stack) + '\n');
    return ibex ? ibex.exitCode : ExitCode.runtime;
  }
}
