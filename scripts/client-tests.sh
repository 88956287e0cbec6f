#!/usr/bin/env bash
# The JavaScript client's tests (clients/js) and the dashboard's, against the
# real fanout-server: installs Chromium when it is missing
# (scripts/install-chromium.sh), builds the server binary, then
# `npm ci && npm test` in clients/js. Needs Node >= 18 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  echo "client-tests.sh: npm is missing (the client tests need Node >= 18 and npm)" >&2
  exit 1
fi
bash scripts/install-chromium.sh
cargo build -p fanout-server --bin fanout-server
cd clients/js
npm ci --no-audit --no-fund
npm test
