#!/usr/bin/env bash
# Same-session A/B of two fanout-server binaries under the load tester:
#
#   scripts/ab_load.sh A_SERVER B_SERVER [rounds] [sizes] [rates]
#       (defaults: 2 rounds, sizes "4096 256", rates "100 200")
#
# For each round, size and rate it runs A then B (alternating, so that other
# load on the machine hits both alike) with
#   fanout-bench load --server-bin X --compare fanout --clients 1000 \
#       --rate R --payload-size S --duration 10s
# and prints one line per run: server CPU per delivery (µs: mean server CPU
# over the steady phase / deliveries per second), deliveries/s, p50/p99,
# messages per write, losses, and the 1-minute load average (mean over the
# run). $BENCH is the fanout-bench binary (default target/release/fanout-bench);
# reports go to $OUT (default target/ab-load). Issue 12; docs/benchmarks.md.
set -euo pipefail
a=$1 b=$2 rounds=${3:-2} sizes=${4:-"4096 256"} rates=${5:-"100 200"}
bench=${BENCH:-target/release/fanout-bench}
out=${OUT:-target/ab-load}
mkdir -p "$out"
for round in $(seq "$rounds"); do
  for size in $sizes; do
    for rate in $rates; do
      for side in A B; do
        bin=$a; [ "$side" = B ] && bin=$b
        dir="$out/r$round-$size-$rate-$side"
        "$bench" load --server-bin "$bin" --compare fanout --clients 1000 --rate "$rate" \
          --payload-size "$size" --duration 10s --progress never --out "$dir" > "$dir.log" 2>&1
        python3 - "$dir/report.json" "$side" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); run = r["runs"][0]; s = run["server"]
dps = run["deliveries_per_sec"]; cpu = s["cpu_percent_mean"]
la = [t["loadavg_1m"] for t in run["timeline"] if t.get("loadavg_1m") is not None]
print(f"round {sys.argv[3]} {sys.argv[2]} size {r['setup']['payload_size']:>5} rate {run['target_rate']:>4.0f}: "
      f"server {cpu / 100 / dps * 1e6:5.2f} µs/delivery ({cpu:5.1f} % CPU, {dps:8.0f} deliveries/s), "
      f"p50 {run['latency']['p50_us'] / 1000:6.1f} ms p99 {run['latency']['p99_us'] / 1000:6.1f} ms, "
      f"{s['metrics']['messages_per_write']:.1f} msg/write, missing {run['missing']}, "
      f"load {sum(la) / max(len(la), 1):.2f}")
PY
      done
    done
  done
done
