#!/usr/bin/env bash
# Same-session A/B of the criterion publish bench across engine builds:
#   scripts/bench_ab.sh [rounds] COMMIT...      (default: 3 rounds)
# Builds `benches/publish.rs` at each commit (git worktrees, one shared target
# dir), then runs the builds alternately round by round and prints criterion's
# middle estimate and deliveries per wake for 100 and 10,000 subscribers.
# docs/benchmarks.md's engine table: scripts/bench_ab.sh 3 dd99358 0857668 HEAD
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
if [[ ${1:-} =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
[ $# -gt 0 ] || { echo "usage: $0 [rounds] COMMIT..." >&2; exit 2; }
work=$(mktemp -d)
trap 'for c in "$@"; do git worktree remove --force "$work/wt-$c" 2>/dev/null || true; done' EXIT
for c in "$@"; do
  git worktree add -q --detach "$work/wt-$c" "$c"
  (cd "$work/wt-$c" && CARGO_TARGET_DIR="$work/target" cargo bench --bench publish --no-run 2>/dev/null)
  bin=$(ls -t "$work"/target/release/deps/publish-* | grep -v '\.d$' | head -1)
  cp "$bin" "$work/publish-$c"
done
mkdir -p "$work/run" && cd "$work/run"
for round in $(seq "$rounds"); do
  for c in "$@"; do
    out=$("$work/publish-$c" --bench publish_many --noplot 2>&1)
    for n in 100 10000; do
      t=$(echo "$out" | grep -A3 "^publish/${n}_subscribers/publish_many_64$" | grep thrpt | head -1 | awk '{print $4, $5}')
      w=$(echo "$out" | grep "publish/${n}_subscribers/publish_many_64:" | sed 's/.*deliveries, //')
      echo "round $round $c N=$n $t | $w"
    done
  done
done
