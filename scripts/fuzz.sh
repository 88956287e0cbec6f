#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time each (default 60 s).
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Needs a nightly toolchain, pinned so that runs are comparable
# (FUZZ_TOOLCHAIN, default nightly-2026-10-28: `rustup toolchain install
# nightly-2026-10-28`) and
# cargo-fuzz (`cargo install cargo-fuzz`). The seed corpus in fuzz/corpus/<t>
# is only read; new inputs go to fuzz/corpus-work/<t> (git-ignored). Crashes
# land in fuzz/artifacts/<t>/; the script stops at the first failing target and
# prints how to reproduce. Build output goes to $FUZZ_TARGET_DIR (default
# fuzz/target). Runs one process per target: the run is sized for a shared
# 2-core machine.
set -euo pipefail

secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
tc=${FUZZ_TOOLCHAIN:-nightly-2026-10-28}
cd "$root/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(rpc topic jwt http_publish refresh)
fi
if ! cargo +"$tc" --version >/dev/null 2>&1; then
    echo "fuzz.sh: the toolchain $tc is missing: rustup toolchain install $tc" >&2
    exit 2
fi
if ! cargo +"$tc" fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}

for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t"
    echo "== $t: ${secs}s"
    log="corpus-work/$t.log"
    if ! cargo +"$tc" fuzz run --target-dir "$target_dir" "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz.sh: $t FAILED; reproduce with:" >&2
        echo "  cd fuzz && cargo +"$tc" fuzz run $t artifacts/$t/<crash-file>" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs" "$log" | sed "s/^/   /" || true
    echo "   corpus: $(ls "corpus-work/$t" | wc -l) inputs"
done
echo "fuzz.sh: all targets ran ${secs}s without a crash"
