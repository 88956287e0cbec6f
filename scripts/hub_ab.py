#!/usr/bin/env python3
"""Same-session A/B of `fanout-bench hub` across builds.

Runs each given fanout-bench binary for one round at a time, alternating
the builds (and reversing their order every other round), so that a noisy
machine weighs on all of them alike; then writes the medians and every
round's figure as JSON (and a Markdown table beside it). Each build's
commit and dirtiness come from the hub.json it wrote (see
crates/bench/src/machine.rs), so the report says what was compared.

    cargo build --release -p fanout-bench && cp target/release/fanout-bench /tmp/fb-new
    scripts/hub_ab.py --out docs/reports/ab-NAME/ab.json --rounds 8 \\
        --build before=/tmp/fb-old --build after=/tmp/fb-new

Only talks to 127.0.0.1 (the hub bench is in-process).
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run(binary, out, args):
    cmd = [
        binary, "hub", "--rounds", "1",
        "--subscribers", args.subscribers,
        "--deliveries", str(args.deliveries),
        "--scenarios", args.scenarios,
        "--engines", args.engines,
        "--batches", args.batches,
        "--out", out,
    ]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    with open(os.path.join(out, "hub.json")) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the JSON report to write (ab.md goes beside it)")
    p.add_argument("--build", action="append", required=True, metavar="NAME=BIN",
                   help="a fanout-bench binary and its name in the report (two or more)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--subscribers", default="10000")
    p.add_argument("--deliveries", type=int, default=40_000_000,
                   help="target deliveries per run (longer than the hub default, for steadier rounds)")
    p.add_argument("--scenarios", default="fanout,multi_publisher,same_topic")
    p.add_argument("--engines", default="fanout,tokio_broadcast,mutex")
    p.add_argument("--batches", default="1,64")
    args = p.parse_args()
    builds = []
    for b in args.build:
        name, sep, binary = b.partition("=")
        if not sep or not name or not os.access(binary, os.X_OK):
            sys.exit(f"--build {b!r}: want NAME=BIN, BIN an executable fanout-bench")
        builds.append((name, binary))
    if len({n for n, _ in builds}) != len(builds) or len(builds) < 2:
        sys.exit("give two or more builds with distinct names")

    figures = collections.defaultdict(list)  # (build, scenario, n, batch, engine) -> [M/s]
    machine = {}  # per build, from its first round's report
    lost = collections.Counter()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            for name, binary in order:
                report = run(binary, os.path.join(tmp, f"{name}-{r}"), args)
                machine.setdefault(name, report["machine"])
                for rec in report["records"]:
                    key = (name, rec["scenario"], rec["subscribers"], rec["batch"], rec["engine"])
                    figures[key].append(rec["deliveries_per_sec"] / 1e6)
                    lost[name] += (rec.get("lost") or 0) + (rec.get("order_violations") or 0)
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)

    cases = []
    for key in sorted(figures, key=lambda k: (k[1], k[2], k[3], k[4], [n for n, _ in builds].index(k[0]))):
        name, scenario, n, batch, engine = key
        v = figures[key]
        cases.append({
            "build": name, "scenario": scenario, "subscribers": n, "batch": batch, "engine": engine,
            "median_million_deliveries_per_sec": round(statistics.median(v), 2),
            "rounds_million_deliveries_per_sec": [round(x, 2) for x in v],
        })
    report = {
        "command": " ".join(sys.argv),
        "rounds": args.rounds,
        "wall_seconds": round(time.time() - started, 1),
        "builds": {n: {k: machine[n].get(k) for k in ("commit", "dirty", "cpu", "rustc", "quiet", "loadavg_before")}
                   for n, _ in builds},
        "lost_or_out_of_order": dict(lost),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")

    names = [n for n, _ in builds]
    med = {(c["build"], c["scenario"], c["subscribers"], c["batch"], c["engine"]):
           c["median_million_deliveries_per_sec"] for c in cases}
    rows = sorted({k[1:] for k in med})
    lines = [
        f"# hub A/B, {args.rounds} rounds, median million deliveries/s",
        "",
        f"`{report['command']}`",
        "",
        "| scenario | N | batch | engine | " + " | ".join(names) + f" | {names[-1]} / {names[0]} |",
        "| --- | ---: | ---: | --- | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for scenario, n, batch, engine in rows:
        vals = [med.get((b, scenario, n, batch, engine)) for b in names]
        ratio = f"{vals[-1] / vals[0]:.2f}" if vals[0] and vals[-1] else ""
        lines.append(f"| {scenario} | {n} | {batch} | {engine} | "
                     + " | ".join(f"{v:.1f}" if v is not None else "" for v in vals) + f" | {ratio} |")
    lines += ["", "Builds: " + "; ".join(
        f"{n} = {report['builds'][n]['commit'] or 'unknown commit'}{' (dirty)' if report['builds'][n]['dirty'] else ''}"
        for n in names)
        + f"; CPU {report['builds'][names[0]]['cpu']}.", ""]
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
