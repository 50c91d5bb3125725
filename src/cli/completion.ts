/**
 * `ibex completion bash|zsh`: print a shell completion script built from the
 * command table (verbs, nouns, options), so it cannot drift from the CLI.
 */
import { usage } from '../errors.js';
import type { VerbHandler } from './context.js';
import { bashCompletion, zshCompletion } from './program.js';

export const completion: VerbHandler = async (ctx, args) => {
  const [shell, ...extra] = args;
  if (extra.length || (shell !== 'bash' && shell !== 'zsh')) throw usage('write: ibex completion bash (or zsh), then source its output: source <(ibex completion bash)');
  ctx.say(shell === 'bash' ? bashCompletion() : zshCompletion(), true);
};
