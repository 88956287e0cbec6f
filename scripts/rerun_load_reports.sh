#!/usr/bin/env bash
# Re-runs committed load reports with today's load tester, each with the
# command its report.json recorded (the binaries' paths replaced by this
# checkout's release builds), so that every report is written by the tool
# from the current code and none is edited by hand.
#
#   scripts/rerun_load_reports.sh                 # every load report but the soak
#   scripts/rerun_load_reports.sh load-1k-topics  # the named ones
#   ALL=1 scripts/rerun_load_reports.sh           # the 10-minute soak too
#
# Run it on a quiet machine: each report records the load average it saw.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p fanout-server -p fanout-bench

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in docs/reports/load-*/report.json docs/reports/soak-*/report.json; do
    n=$(basename "$(dirname "$f")")
    if [[ $n == soak-* && -z ${ALL:-} ]]; then continue; fi
    names+=("$n")
  done
fi

for n in "${names[@]}"; do
  f="docs/reports/$n/report.json"
  [ -f "$f" ] || { echo "no report $f" >&2; exit 1; }
  cmd=$(python3 -c '
import json, shlex, sys
argv = shlex.split(json.load(open(sys.argv[1]))["command"])
argv[0] = "target/release/fanout-bench"
for i, a in enumerate(argv):
    if a == "--server-bin":
        argv[i + 1] = "target/release/fanout-server"
    elif a.startswith("--server-bin="):
        argv[i] = "--server-bin=target/release/fanout-server"
if "--progress" not in argv:
    argv += ["--progress", "never"]
print(shlex.join(argv))
' "$f")
  echo "== $n: $cmd"
  eval "$cmd"
done
