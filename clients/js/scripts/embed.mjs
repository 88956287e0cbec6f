// Copies the compiled ESM build (dist/*.js) into crates/server/assets/client/,
// where fanout-server embeds it for the dashboard (`include_bytes!`): the
// binary builds with no Node on the machine. Run `npm run embed` after a
// change under src/; `npm test` fails while the embedded copy differs.
import { readdirSync, readFileSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { packageRoot, repoRoot } from '../test/support/paths.mjs';

export const dist = path.join(packageRoot, 'dist');
export const embedded = path.join(repoRoot, 'crates/server/assets/client');

/** The build's modules: name -> text. */
export function modules(dir) {
  const out = new Map();
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.js')) out.set(f, readFileSync(path.join(dir, f), 'utf8'));
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  rmSync(embedded, { recursive: true, force: true });
  mkdirSync(embedded, { recursive: true });
  for (const [f, text] of modules(dist)) writeFileSync(path.join(embedded, f), text);
  console.log(`embedded ${modules(dist).size} modules in ${path.relative(repoRoot, embedded)}`);
}
