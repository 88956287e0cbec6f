#!/usr/bin/env bash
# Autobahn testsuite (fuzzingclient mode) against fanout-server's echo route.
#
#   scripts/autobahn.sh [case pattern, default "*"]
#
# The suite (autobahntestsuite 0.8.2) runs on Python 2.7 only. The script looks
# for it in $PYTHON27, then in pyenv (2.7.18), then on PATH; it makes a
# virtualenv in $AUTOBAHN_DIR (default target/autobahn) the first time,
# installs the suite from PyPI, builds and starts the server (release) on
# 127.0.0.1 with `--echo-path /echo`, runs every case, and prints the summary
# (also written to $AUTOBAHN_DIR/summary.md). The HTML report is in
# $AUTOBAHN_DIR/reports/index.html. Exit status 1 if any case FAILED.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cases=${1:-*}
dir=${AUTOBAHN_DIR:-$root/target/autobahn}
mkdir -p "$dir"

# --- Python 2.7 ---------------------------------------------------------------
py27=${PYTHON27:-}
if [ -z "$py27" ]; then
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for c in "$pyenv_root"/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then py27=$c; break; fi
    done
fi
if [ -z "$py27" ] || ! "$py27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    cat >&2 <<'MSG'
autobahn.sh: Python 2.7 not found; the Autobahn testsuite runs on Python 2.7 only.
  Get it with pyenv:   pyenv install 2.7.18      (then re-run this script)
  or point to one:     PYTHON27=/path/to/python2.7 scripts/autobahn.sh
  or use the suite's Docker image (crossbario/autobahn-testsuite) by hand.
MSG
    exit 2
fi
echo "autobahn.sh: Python 2.7 at $py27"

# --- virtualenv with the suite ------------------------------------------------
venv=$dir/venv
if [ ! -x "$venv/bin/wstest" ]; then
    if ! "$py27" -m virtualenv --version >/dev/null 2>&1; then
        # virtualenv < 20.22 still runs on (and creates) Python 2.7 environments.
        "$py27" -m pip install -q --target "$dir/bootstrap" 'virtualenv<20.22'
        export PYTHONPATH=$dir/bootstrap
    fi
    "$py27" -m virtualenv -q "$venv"
    unset PYTHONPATH
    "$venv/bin/pip" install -q autobahntestsuite==0.8.2
fi

# --- the server -----------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release -q -p fanout-server)
port=$("$py27" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Autobahn's case 9 sends messages up to 16 MiB; the echo route is for this
# test only and is never enabled in production.
"$CARGO_TARGET_DIR/release/fanout-server" --listen "127.0.0.1:$port" --echo-path /echo \
    --max-message-size 20000000 --stats-interval 0s --log-level warn >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

cat >"$dir/fuzzingclient.json" <<JSON
{
  "outdir": "$dir/reports",
  "servers": [{"agent": "fanout", "url": "ws://127.0.0.1:$port/echo"}],
  "cases": ["$cases"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$dir" && "$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json) >"$dir/wstest.log" 2>&1

# --- summary ----------------------------------------------------------------------
"$py27" - "$dir/reports/index.json" "$dir/summary.md" <<'PY'
import json, sys
from collections import Counter
idx = json.load(open(sys.argv[1]))["fanout"]
def key(c):
    return [int(x) for x in c.split(".")]
beh, close, bad = Counter(), Counter(), []
groups = {}
for case in sorted(idx, key=key):
    r = idx[case]
    beh[r["behavior"]] += 1
    close[r["behaviorClose"]] += 1
    g = groups.setdefault(case.split(".")[0], Counter())
    g[r["behavior"]] += 1
    if r["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED") or \
       r["behaviorClose"] not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED"):
        bad.append((case, r["behavior"], r["behaviorClose"]))
order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE", "UNCLEAN", "FAILED"]
lines = ["%d cases" % len(idx), "",
         "| behaviour | cases |", "| --- | --- |"]
lines += ["| %s | %d |" % (b, beh[b]) for b in order + sorted(set(beh) - set(order)) if beh[b]]
lines += ["", "| section | " + " | ".join(b for b in order if beh[b]) + " |",
          "| --- |" + " --- |" * len([b for b in order if beh[b]])]
for g in sorted(groups, key=int):
    lines.append("| %s | " % g + " | ".join(str(groups[g][b]) for b in order if beh[b]) + " |")
lines += ["", "close behaviour: " + ", ".join("%s %d" % kv for kv in sorted(close.items()))]
if bad:
    lines += ["", "not passing:"] + ["- %s: %s / close %s" % b for b in bad]
out = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(out)
sys.stdout.write(out)
sys.exit(1 if any(b[1] == "FAILED" or b[2] == "FAILED" for b in bad) else 0)
PY
