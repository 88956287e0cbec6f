//! CI smoke test: the quick hub harness runs on every engine and scenario, and
//! writes a `hub.json` that parses and has the fields the issue lists. It checks
//! that the harness works, never how fast anything is.
//!
//! Under `cargo test` (an unoptimised build) it shrinks the runs further with
//! `--deliveries`; `fanout-bench hub --quick` itself is what users run.
//! `same_topic`, whose verdict depends on the engine keeping order, has its own
//! test (`same_topic.rs`).

use std::process::Command;

#[test]
fn quick_harness_writes_a_parsable_report() {
    let out = std::env::temp_dir().join(format!("fanout-bench-quick-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_fanout-bench"))
        .args([
            "hub",
            "--quick",
            "--scenarios",
            "fanout,multi_publisher,churn,slow_subscribers,topics",
            "--subscribers",
            "100,1000",
            "--deliveries",
            "100000",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("run fanout-bench");
    assert!(status.success(), "fanout-bench hub --quick failed: {status}");

    let json = std::fs::read_to_string(out.join("hub.json")).expect("hub.json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("hub.json parses");
    assert!(v["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(v["machine"]["memory"].as_u64().unwrap_or(0) > 0);
    let m = &v["machine"];
    for field in ["cpu", "kernel", "rustc", "profile", "quiet_rule"] {
        assert!(m[field].as_str().is_some_and(|s| !s.is_empty()), "machine lacks {field}: {m}");
    }
    assert!(m["rustc"].as_str().unwrap().starts_with("rustc "), "{m}");
    assert!(m["quiet"].is_boolean(), "{m}");
    assert!(m.get("commit").is_some() && m.get("loadavg_before").is_some(), "{m}");
    // The build's stamp (build.rs) names the checkout's commit and whether
    // its sources differ from it: cargo rebuilt the binary for this test, so
    // they must agree with git now.
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(head) = git(&["rev-parse", "HEAD"]) {
        assert_eq!(m["commit"].as_str(), Some(head.as_str()), "{m}");
        let changed = git(&[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
        ])
        .expect("git status");
        assert_eq!(m["dirty"].as_bool(), Some(!changed.is_empty()), "{m}; git status: {changed}");
    }
    let records = v["records"].as_array().expect("records");
    // 5 scenarios × 2 batches × 2 N × 3 engines (tokio broadcast under churn too).
    assert_eq!(records.len(), 60);
    for r in records {
        for field in [
            "scenario",
            "engine",
            "subscribers",
            "batch",
            "deliveries_per_sec",
            "ns_per_delivery",
            "publish_p99_ns",
            "e2e_p99_ns",
            "allocations_per_publish",
            "deliveries_per_wake",
            "lost",
        ] {
            assert!(!r[field].is_null(), "record lacks {field}: {r}");
        }
        assert!(r["deliveries"].as_u64().unwrap() > 0, "no deliveries: {r}");
        assert!(r["order_violations"].is_null(), "these scenarios do not check order: {r}");
    }
    for s in ["fanout", "multi_publisher", "churn", "slow_subscribers", "topics"] {
        for e in ["fanout", "mutex", "tokio_broadcast"] {
            for b in [1, 64] {
                assert!(
                    records.iter().any(|r| r["scenario"] == s && r["engine"] == e && r["batch"] == b),
                    "no {s} record for {e} at batch {b}"
                );
            }
        }
    }
    for s in ["fanout", "multi_publisher", "churn", "slow_subscribers", "topics"] {
        assert!(records.iter().any(|r| r["scenario"] == s), "no {s} record");
    }
    for e in ["fanout", "mutex", "tokio_broadcast"] {
        assert!(records.iter().any(|r| r["engine"] == e), "no {e} record");
    }
    assert!(records
        .iter()
        .filter(|r| r["scenario"] == "churn")
        .all(|r| r["subscribe_p99_ns"].as_u64().is_some()));
    let md = std::fs::read_to_string(out.join("hub.md")).expect("hub.md");
    assert!(md.contains("| fanout |"));
    // Each figure's spread over its rounds beside its median.
    assert!(md.contains("| deliveries/s | rounds, lowest – highest |"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}
