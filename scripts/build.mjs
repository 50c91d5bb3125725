/* global process, console */
// `npm run build`: compile src/ to dist/ (tsconfig.build.json) and copy the
// files the compiled code reads at run time (the control schema's SQL) next
// to it. A fresh dist/ each time, so a removed source leaves no stale module.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

/** Every file under src/ that is not TypeScript is an asset the code reads beside itself. */
function assets(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return assets(p);
    return name.endsWith('.ts') ? [] : [p];
  });
}
const copied = assets(src);
for (const file of copied) cpSync(file, join(dist, relative(src, file)));
console.log(`dist/: compiled, ${copied.length} assets copied`);
