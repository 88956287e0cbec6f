#!/usr/bin/env bash
# The engine's long stress runs (minutes; not in CI, whose quick forms are the
# un-ignored tests): random traffic with shutdowns on many threads, and the
# 4-publisher churn test at 20x its CI size.
#   scripts/stress.sh [seconds]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
FANOUT_STRESS_SECS=$secs cargo test -p fanout-core --release --test long_stress -- --ignored --nocapture
FANOUT_STRESS_SCALE=20 cargo test -p fanout-core --release --test stress -- --nocapture
