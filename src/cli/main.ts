/**
 * Executable entry of the `ibex` command line (bin/ibex runs this file).
 */
import { main } from './cli.js';

export { main, parseGlobal } from './cli.js';
export type { CliIo } from './context.js';

// Run when executed directly (bin/ibex), not when imported by tests.
if (process.argv[1] && /main\.[tj]s$/.test(process.argv[1])) {
  // `ibex status | head -1`: a closed pipe ends the output, it is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  process.exitCode = await main(process.argv.slice(2));
}
