/**
 * ibex's version: the one in its package.json, found next to this module whether it runs from
 * src/ (a checkout, through tsx) or from dist/src/ (the compiled package).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function readVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', join('..', '..')]) {
    try {
      const pkg = JSON.parse(readFileSync(join(here, up, 'package.json'), 'utf8')) as { version?: string; bin?: Record<string, string> };
      // Only ibex's own package.json names the `ibex` command.
      if (pkg.version && pkg.bin && 'ibex' in pkg.bin) return pkg.version;
    } catch {
      // not there: try the next folder up
    }
  }
  return '0.0.0';
}

/** The version of this ibex. */
export const VERSION = readVersion();
