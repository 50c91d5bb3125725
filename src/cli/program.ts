/**
 * The command line as a commander program: every verb, the nouns of the
 * configuration verbs, and their options (from commands.ts). It renders help
 * (`ibex help add sync`, `ibex add sync --help`) and the shell completion
 * scripts. Arguments themselves are split by cli.ts and args.ts, which keep
 * Bucardo's `key=value` words; this module is loaded only for help and
 * completion, so ordinary commands do not pay for it.
 */
import { Command, Option } from 'commander';
import { NOUNS, type Noun } from '../config/names.js';
import { usage } from '../errors.js';
import { ADD_ALL, GLOBAL_FLAGS, NOUN_COMMANDS, VERB_COMMANDS, VERB_SUMMARIES, optionTerm, optionUsage, type CommandDoc, type OptionDoc } from './commands.js';
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

function addFlags(cmd: Command, options: readonly OptionDoc[]): void {
  for (const o of options.filter((x) => x.flag)) cmd.addOption(new Option(o.value ? `--${o.name} <${o.value}>` : `--${o.name}`, o.help));
}

function leaf(parent: Command, name: string, summary: string, doc: CommandDoc, description?: string): Command {
  const cmd = parent.command(name).summary(summary).description(description ?? summary).usage(`${doc.args}${doc.options.some((o) => !o.flag) ? ' [key=value …]' : ''}`.trim());
  addFlags(cmd, doc.options);
  cmd.helpOption(false);
  cmd.addHelpText('after', keyValueSection(doc.options));
  return cmd;
}

/** The whole command line as a commander program (for help and completion; not for parsing). */
export function buildProgram(): Command {
  const program = new Command('ibex')
    .description('asynchronous multi-master and fan-out replication for PostgreSQL')
    .usage('<verb> [noun] [name …] [key=value …] [--flags]')
    .version(ibexVersion(), '-V, --version', 'print the version');
  for (const o of GLOBAL_FLAGS) {
    if (o.name === 'version') continue;
    const help = o.help.replace(/ \(-\w\)$/, '');
    if (o.name === 'help') program.helpOption('-h, --help', help);
    else program.addOption(new Option(`${o.name === 'quiet' ? '-q, ' : ''}--${o.name}${o.value ? ` <${o.value}>` : ''}`, help));
  }
  program.addHelpText('after', `\n${EXIT_CODES}\nhelp on one command: ibex help <verb> [noun]; full reference: docs/cli.md`);
  for (const [verb, summary] of Object.entries(VERB_SUMMARIES)) {
    if ((CONFIG_VERBS as readonly string[]).includes(verb)) {
      const cmd = program.command(verb).summary(summary).description(summary).usage('<noun> …');
      cmd.helpOption(false);
      for (const noun of NOUNS) leaf(cmd, noun, `${verb} ${noun}`, NOUN_COMMANDS[verb as ConfigVerb][noun], `ibex ${verb} ${noun} (the long form with examples: docs/cli.md)`);
      if (verb === 'add') leaf(cmd, 'all', 'add all tables or sequences of a db', ADD_ALL);
      continue;
    }
    const doc = VERB_COMMANDS[verb] ?? { args: '', options: [] };
    leaf(program, verb, summary, doc);
  }
  leaf(program, 'help', 'help on a verb: ibex help <verb> [noun]', VERB_COMMANDS.help!);
  return program;
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
