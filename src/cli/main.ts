#!/usr/bin/env node
/**
 * Executable entry of the `ibex` command line: bin/ibex runs this file through tsx,
 * the npm package's bin is its compiled dist/cli/main.js.
 */
import { main } from './cli.js';
import { isEntryPoint } from '../version.js';

export { main, parseGlobal } from './cli.js';
export type { CliIo } from './context.js';

// Run when executed directly (bin/ibex), not when imported by tests.
if (isEntryPoint(import.meta.url)) {
  // `ibex status | head -1`: a closed pipe ends the output, it is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  process.exitCode = await main(process.argv.slice(2));
}
