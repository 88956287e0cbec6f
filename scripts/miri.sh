#!/usr/bin/env bash
# Runs fanout-core's unit tests (the ring, the snapshots, parking) under miri,
# sized down by cfg!(miri). Installs the nightly miri component if it can.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
  rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 || true
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri: not available on this machine (nightly miri could not be installed); skipped"
  exit 0
fi
cargo +nightly miri test -p fanout-core --lib -- ring tests::
