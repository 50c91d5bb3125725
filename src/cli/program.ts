/**
 * The command line as a commander program: every verb, the nouns of the
 * configuration verbs (plurals as aliases), and their options (from
 * commands.ts). It parses every command line (`parseLine`): the global flags
 * anywhere, the verb and noun, each command's `--flags` with their values; an
 * unknown flag, a flag without its value or a value given to a flag that takes
 * none is refused here, in one line with a "did you mean". Bucardo's
 * `key=value` words and names are the commands' arguments, read and checked
 * (against the option schemas of src/config/) by each verb. The same program
 * renders help (`ibex help add sync`, `ibex add sync --help`) and the shell
 * completion scripts.
 */
import { Command, Option } from 'commander';
import { NOUNS, nounAliases, type Noun } from '../config/names.js';
import { usage } from '../errors.js';
import { ADD_ALL, GLOBAL_FLAGS, NOUN_COMMANDS, VERB_COMMANDS, VERB_SUMMARIES, optionTerm, optionUsage, type CommandDoc, type OptionDoc } from './commands.js';
import type { GlobalFlags } from './context.js';
import { didYouMean } from './suggest.js';
import { ibexVersion } from '../version.js';

const CONFIG_VERBS = ['add', 'list', 'update', 'remove'] as const;
type ConfigVerb = (typeof CONFIG_VERBS)[number];

const EXIT_CODES = 'exit codes: 0 ok · 1 runtime failure · 2 usage/configuration · 3 conflict abort · 4 kick timeout · 5 kicked run failed · 6 validate differences';

/** The `key=value` options of a command as help lines (commander lists only `--flags`). */
function keyValueSection(options: readonly OptionDoc[]): string {
  const kv = options.filter((o) => !o.flag);
  if (kv.length === 0) return '';
  const width = Math.min(30, Math.max(...kv.map((o) => optionUsage(o).length)));
  const lines = kv.map((o) => {
    const term = optionUsage(o);
    const text = o.default === undefined ? o.help : `${o.help} (default: ${o.default})`;
    return term.length > width ? `  ${term}\n  ${''.padEnd(width)}  ${text}` : `  ${term.padEnd(width)}  ${text}`;
  });
  return `\nOptions (Bucardo's key=value words):\n${lines.join('\n')}\n`;
}

/** Short spellings of some flags, by command (pg_dump's -n/-N/-t/-T for `add all`, -f, -y). */
const SHORT: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  all: { schema: 'n', 'exclude-schema': 'N', table: 't', 'exclude-table': 'T' },
  apply: { file: 'f' }, sequences: { yes: 'y' }, 'import-bucardo': { yes: 'y' },
};
/** Flags a command takes beyond its table's (the `--key=value` spelling of some key=value options; apply's file). */
const MORE_FLAGS: Readonly<Record<string, OptionDoc[]>> = {
  validate: [
    { name: 'table', help: 'the same as table=', flag: true, value: 'SCHEMA.TABLE' },
    { name: 'wait', help: 'the same as wait=', flag: true, value: 'DURATION' },
  ],
  apply: [{ name: 'file', help: 'the configuration file (- reads stdin)', flag: true, value: 'FILE' }],
};
/** Flags that may be given several times. */
const REPEATABLE = new Set(['schema', 'exclude-schema', 'table', 'exclude-table']);
const GLOBAL_WORDS = '--json --dry-run --force --quiet --debug --control';

/**
 * A command of the ibex program: commander's own refusals become ibex's
 * one-line usage errors, naming the command and its flags.
 */
class IbexCommand extends Command {
  /** How messages name the command: `"ibex conflicts"`, `list dbs`. */
  what = '';
  /** The flags this command takes (for messages and suggestions). */
  flags: OptionDoc[] = [];

  override createCommand(name?: string): IbexCommand {
    return new IbexCommand(name);
  }

  /** commander: an option this command does not declare. */
  unknownOption(flag: string): never {
    const eq = flag.indexOf('=');
    const name = eq > 0 ? flag.slice(0, eq) : flag;
    const known = [...this.flags, ...GLOBAL_FLAGS].find((o) => `--${o.name}` === name);
    if (known && !known.value) throw usage(`${name} takes no value: write ${name}`);
    if (this.parent === null || this.what === '') {
      throw usage(`unknown flag "${name}": global flags are --control URL, --json, --quiet, --debug, --dry-run, --force, --help, --version; see "ibex help"${didYouMean(name, GLOBAL_FLAGS.map((o) => `--${o.name}`))}`);
    }
    const own = this.flags.length ? `: use ${this.flags.map((o) => (o.value ? `--${o.name}=…` : `--${o.name}`)).join(' ')}` : '';
    throw usage(`unknown flag "${name}" for ${this.what}${own} (global flags: ${GLOBAL_WORDS})${didYouMean(name, [...this.flags, ...GLOBAL_FLAGS].map((o) => `--${o.name}`))}`);
  }

  /** commander: a flag that needs a value came last, or with an empty one. */
  optionMissingArgument(option: Option): never {
    const name = option.long ?? option.flags;
    throw usage(`${name} needs a value: ${name}=${option.flags.match(/<(.*)>/)?.[1] ?? '…'}`);
  }
}

function addFlags(cmd: IbexCommand, options: readonly OptionDoc[]): void {
  const more = MORE_FLAGS[cmd.name()] ?? [];
  for (const o of [...options.filter((x) => x.flag), ...more]) {
    const letter = SHORT[cmd.name()]?.[o.name];
    const opt = new Option(`${letter ? `-${letter}, ` : ''}--${o.name}${o.value ? ` <${o.value}>` : ''}`, o.help);
    if (more.includes(o)) opt.hideHelp();
    if (REPEATABLE.has(o.name) && cmd.name() === 'all') opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    cmd.addOption(opt);
    cmd.flags.push(o);
  }
}

function leaf(parent: Command, name: string, summary: string, doc: CommandDoc, what: string, description?: string): IbexCommand {
  const cmd = (parent.command(name) as IbexCommand).summary(summary).description(description ?? summary)
    .usage(`${doc.args}${doc.options.some((o) => !o.flag) ? ' [key=value …]' : ''}`.trim())
    .argument('[args...]');
  cmd.what = what;
  addFlags(cmd, doc.options);
  cmd.helpOption(false);
  cmd.addHelpText('after', keyValueSection(doc.options));
  return cmd;
}

/** The whole command line as a commander program: parsing, help and completion. */
export function buildProgram(): Command {
  const program = new IbexCommand('ibex')
    .description('asynchronous multi-master and fan-out replication for PostgreSQL')
    .usage('<verb> [noun] [name …] [key=value …] [--flags]')
    .version(ibexVersion(), '-V, --version', 'print the version')
    // Errors are ibex's (IbexCommand); nothing is printed by commander, and it never exits.
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .helpCommand(false)
    // Plurals are aliases for parsing; help names each noun once.
    .configureHelp({
      subcommandTerm: (cmd) => `${cmd.name()}${cmd.options.length ? ' [options]' : ''}`,
      commandUsage: (cmd) => {
        const names: string[] = [];
        for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
        return `${names.join(' ')} ${cmd.usage()}`;
      },
    });
  for (const o of GLOBAL_FLAGS) {
    if (o.name === 'version') continue;
    const help = o.help.replace(/ \(-\w\)$/, '');
    if (o.name === 'help') program.helpOption('-h, --help', help);
    else program.addOption(new Option(`${o.name === 'quiet' ? '-q, ' : ''}--${o.name}${o.value ? ` <${o.value}>` : ''}`, help));
  }
  program.addOption(new Option('--dryrun', 'Bucardo\'s spelling of --dry-run').hideHelp());
  program.addHelpText('after', `\n${EXIT_CODES}\nhelp on one command: ibex help <verb> [noun]; full reference: docs/cli.md`);
  for (const [verb, summary] of Object.entries(VERB_SUMMARIES)) {
    if ((CONFIG_VERBS as readonly string[]).includes(verb)) {
      // A noun that is not one of its subcommands (or none) reaches the verb's handler, which says so.
      const cmd = (program.command(verb) as IbexCommand).summary(summary).description(summary).usage('<noun> …').argument('[args...]');
      cmd.what = verb;
      cmd.helpOption(false);
      for (const noun of NOUNS) {
        leaf(cmd, noun, `${verb} ${noun}`, NOUN_COMMANDS[verb as ConfigVerb][noun], `${verb} ${verb === 'list' ? `${noun}s` : noun}`, `ibex ${verb} ${noun} (the long form with examples: docs/cli.md)`)
          .aliases(nounAliases(noun));
      }
      if (verb === 'add') leaf(cmd, 'all', 'add all tables or sequences of a db', ADD_ALL, 'add all');
      continue;
    }
    const doc = VERB_COMMANDS[verb] ?? { args: '', options: [] };
    leaf(program, verb, summary, doc, `"ibex ${verb}"`);
  }
  leaf(program, 'help', 'help on a verb: ibex help <verb> [noun]', VERB_COMMANDS.help!, '"ibex help"');
  return program;
}

/** What commander made of a command line. */
export interface ParsedLine {
  flags: GlobalFlags;
  verb: string;
  /** The verb's arguments as its handler reads them: the noun, the names and key=value words in order, then each flag as `--name=value`. */
  args: string[];
}

/**
 * Parse a command line (without the program name). Throws a usage error for
 * an unknown verb or flag, a flag missing its value, or a value given to a
 * flag that takes none. The caller has handled --help and --version.
 */
export function parseLine(argv: readonly string[]): ParsedLine {
  const program = buildProgram();
  let found: { cmd: Command; operands: string[] } | undefined;
  const visit = (cmd: Command): void => {
    for (const sub of cmd.commands) {
      sub.action((operands: string[] | undefined) => {
        found = { cmd: sub, operands: operands ?? [] };
      });
      visit(sub);
    }
  };
  visit(program);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    // Anything commander refuses that IbexCommand does not word itself (none known): its own line.
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('commander.')) {
      throw usage(`${err.message.replace(/^error: /, '')}: see "ibex help"`);
    }
    throw err;
  }
  if (!found) throw usage('a verb is needed: run "ibex help" for the list of verbs');
  const g = program.opts<{ control?: string; json?: boolean; quiet?: boolean; debug?: boolean; dryRun?: boolean; dryrun?: boolean; force?: boolean }>();
  const flags: GlobalFlags = {
    json: g.json === true, quiet: g.quiet === true, debug: g.debug === true, dryRun: g.dryRun === true || g.dryrun === true,
    // `add db --force` is the global flag, which those commands list among theirs.
    force: g.force === true || found.cmd.getOptionValue('force') === true,
    ...(g.control !== undefined ? { control: g.control } : {}),
  };
  const path: Command[] = [];
  for (let c: Command | null = found.cmd; c && c !== program; c = c.parent) path.unshift(c);
  const verb = path[0]!.name();
  const words = [...path.slice(1).map((c) => c.name()), ...found.operands];
  for (const o of found.cmd.options) {
    const key = o.attributeName();
    if (found.cmd.getOptionValueSource(key) !== 'cli' || !o.long || o.long === '--force') continue;
    const v: unknown = found.cmd.getOptionValue(key);
    if (o.isBoolean()) words.push(o.long);
    else for (const x of Array.isArray(v) ? v : [v]) words.push(`${o.long}=${String(x)}`);
  }
  return { flags, verb, args: words };
}

/** The noun a word names, plurals accepted (`syncs`). */
function nounOf(word: string): Noun | 'all' | undefined {
  const w = word.toLowerCase();
  if (w === 'all') return 'all';
  return NOUNS.find((n) => n === w || `${n}s` === w);
}

/** Help text for `ibex help [verb [noun]]` and `ibex <verb> [noun] --help`. */
export function helpText(verb?: string, noun?: string): string {
  const program = buildProgram();
  if (!verb) return program.helpInformation() + `\n${EXIT_CODES}\nhelp on one command: ibex help <verb> [noun]; full reference: docs/cli.md\n`;
  const cmd = program.commands.find((c) => c.name() === verb);
  if (!cmd) throw usage(`unknown verb "${verb}": run "ibex help" for the list of verbs${didYouMean(verb, program.commands.map((c) => c.name()))}`);
  let target = cmd;
  let doc: CommandDoc | undefined = VERB_COMMANDS[verb];
  if ((CONFIG_VERBS as readonly string[]).includes(verb) && noun !== undefined && !noun.includes('=') && !noun.startsWith('-')) {
    const n = nounOf(noun);
    const sub = n && cmd.commands.find((c) => c.name() === n);
    if (!n || !sub) throw usage(`unknown noun "${noun}" for ${verb}: use one of ${NOUNS.join(', ')}${didYouMean(noun, NOUNS)}`);
    target = sub;
    doc = n === 'all' ? ADD_ALL : NOUN_COMMANDS[verb as ConfigVerb][n];
  }
  return target.helpInformation().replace(/^Usage: ibex /, 'Usage: ibex ') + keyValueSection(doc?.options ?? []);
}

/** Every verb name (for suggestions). */
export function verbNames(): string[] {
  return [...Object.keys(VERB_SUMMARIES), 'help'];
}

interface CompletionTree {
  verbs: string[];
  /** words after `<verb>` (nouns or options), and after `<verb> <noun>`. */
  next: Record<string, string[]>;
}

function completionTree(): CompletionTree {
  const words = (doc: CommandDoc): string[] => doc.options.map(optionTerm);
  const next: Record<string, string[]> = {};
  for (const verb of Object.keys(VERB_SUMMARIES)) {
    if ((CONFIG_VERBS as readonly string[]).includes(verb)) {
      next[verb] = [...NOUNS, ...(verb === 'add' ? ['all'] : [])];
      for (const noun of NOUNS) next[`${verb} ${noun}`] = words(NOUN_COMMANDS[verb as ConfigVerb][noun]);
      if (verb === 'add') next['add all'] = ['tables', 'sequences', ...words(ADD_ALL)];
    } else next[verb] = words(VERB_COMMANDS[verb] ?? { args: '', options: [] });
  }
  next.help = [...Object.keys(VERB_SUMMARIES)];
  next.completion = ['bash', 'zsh'];
  return { verbs: [...Object.keys(VERB_SUMMARIES), 'help'], next };
}

const shellWord = (w: string): string => `'${w.replace(/'/g, `'\\''`)}'`;

/** A bash completion script: `source <(ibex completion bash)`. */
export function bashCompletion(): string {
  const t = completionTree();
  const globals = GLOBAL_FLAGS.map(optionTerm).map((w) => w.replace(/=.*$/, ''));
  const cases = Object.entries(t.next)
    .map(([key, words]) => `    ${shellWord(key)}) opts=${shellWord(words.join(' '))} ;;`)
    .join('\n');
  return `# bash completion for ibex: source <(ibex completion bash), or save it in
# /etc/bash_completion.d/ibex (or ~/.local/share/bash-completion/completions/ibex).
_ibex() {
  local cur words=() w i key opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*|*=*) ;; *) words+=("$w") ;; esac
  done
  if [ \${#words[@]} -eq 0 ]; then
    opts=${shellWord([...t.verbs, ...globals].join(' '))}
  else
    key="\${words[0]}"
    if [ \${#words[@]} -ge 2 ]; then
      case "\${words[1]}" in *s) w="\${words[1]%s}" ;; *) w="\${words[1]}" ;; esac
      case "$key $w" in ${Object.keys(t.next).filter((k) => k.includes(' ')).map(shellWord).join('|')}) key="$key $w" ;; esac
    fi
    case "$key" in
${cases}
      *) opts='' ;;
    esac
    opts="$opts ${globals.join(' ')}"
  fi
  compopt -o nospace 2>/dev/null
  COMPREPLY=()
  for w in $(compgen -W "$opts" -- "$cur"); do
    case "$w" in *=) COMPREPLY+=("$w") ;; *) COMPREPLY+=("$w ") ;; esac
  done
}
complete -F _ibex ibex
`;
}

/** A zsh completion script: `source <(ibex completion zsh)` (after compinit). */
export function zshCompletion(): string {
  const t = completionTree();
  const globals = GLOBAL_FLAGS.map(optionTerm).map((w) => w.replace(/=.*$/, ''));
  const cases = Object.entries(t.next).map(([key, words]) => `    ${shellWord(key)}) opts=(${words.map(shellWord).join(' ')}) ;;`).join('\n');
  return `#compdef ibex
# zsh completion for ibex: source <(ibex completion zsh) after compinit, or save it as _ibex in $fpath.
_ibex() {
  local -a words_ opts
  local w key
  for w in \${words[2,CURRENT-1]}; do
    case $w in -*|*=*) ;; *) words_+=($w) ;; esac
  done
  if (( \${#words_} == 0 )); then
    opts=(${[...t.verbs, ...globals].map(shellWord).join(' ')})
  else
    key=\${words_[1]}
    if (( \${#words_} >= 2 )); then
      w=\${words_[2]%s}
      case "$key $w" in ${Object.keys(t.next).filter((k) => k.includes(' ')).map(shellWord).join('|')}) key="$key $w" ;; esac
    fi
    case $key in
${cases}
      *) opts=() ;;
    esac
    opts+=(${globals.map(shellWord).join(' ')})
  fi
  compadd -S '' -- \${opts[@]}
}
compdef _ibex ibex
`;
}
