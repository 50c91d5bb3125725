/**
 * This ibex's version and "is this module the process's entry point", both
 * the same whether ibex runs from its TypeScript sources or from the compiled
 * package (dist/), where an npm bin is a symlink to the module.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package names this project has been published under (the repository's own, the npm one). */
const PACKAGE_NAMES = ['ibex', 'ibex-replication'];

let cached: string | undefined;

/** This ibex's version, from its package.json (src/ and dist/ both sit one level below it). */
export function ibexVersion(): string {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, '..', 'package.json'), join(here, '..', '..', 'package.json')]) {
    try {
      const v = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (v.name && PACKAGE_NAMES.includes(v.name) && v.version) return (cached = v.version);
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

/**
 * Is the module at `moduleUrl` the script this process was started with? argv[1]
 * may be a symlink (npm's bin links, `npx ibex`), so both sides are resolved.
 */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
