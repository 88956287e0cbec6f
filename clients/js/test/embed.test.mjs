// The client build fanout-server embeds for its dashboard is this build
// (`npm run embed` copies it; a change under src/ without it fails here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modules, dist, embedded } from '../scripts/embed.mjs';

test('crates/server/assets/client is the current build of src/ (run `npm run embed`)', () => {
  const built = modules(dist);
  const copy = modules(embedded);
  assert.deepEqual([...copy.keys()], [...built.keys()], 'the same modules');
  for (const [name, text] of built) assert.equal(copy.get(name), text, `${name} differs: run \`npm run embed\``);
});
