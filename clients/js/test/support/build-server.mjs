// Builds the fanout-server binary the tests run (`npm test` runs this first).
// FANOUT_SERVER_BIN names a binary to use instead (nothing is built then).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { serverBinary, repoRoot } from './paths.mjs';

if (process.env.FANOUT_SERVER_BIN) {
  if (!existsSync(process.env.FANOUT_SERVER_BIN)) {
    console.error(`FANOUT_SERVER_BIN=${process.env.FANOUT_SERVER_BIN} does not exist`);
    process.exit(1);
  }
  process.exit(0);
}
console.error('building fanout-server (cargo build -p fanout-server)');
const r = spawnSync('cargo', ['build', '-p', 'fanout-server', '--bin', 'fanout-server'], {
  cwd: repoRoot,
  stdio: 'inherit',
});
if (r.status !== 0) {
  console.error('cargo build -p fanout-server failed');
  process.exit(r.status ?? 1);
}
if (!existsSync(serverBinary())) {
  console.error(`built, but ${serverBinary()} is missing`);
  process.exit(1);
}
