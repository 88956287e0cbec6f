// Where the repository and the server binary are.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const packageRoot = path.join(repoRoot, 'clients/js');

/** The fanout-server binary: FANOUT_SERVER_BIN, else target/debug/fanout-server. */
export function serverBinary() {
  if (process.env.FANOUT_SERVER_BIN) return process.env.FANOUT_SERVER_BIN;
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target');
  return path.join(target, 'debug', 'fanout-server');
}
