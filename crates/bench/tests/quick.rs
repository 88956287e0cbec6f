//! CI smoke test: the quick hub harness runs on every engine and scenario, and
//! writes a `hub.json` that parses and has the fields the issue lists. It checks
//! that the harness works, never how fast anything is.
//!
//! Under `cargo test` (an unoptimised build) it shrinks the runs further with
//! `--deliveries`; `fanout-bench hub --quick` itself is what users run.

use std::process::Command;

#[test]
fn quick_harness_writes_a_parsable_report() {
    let out = std::env::temp_dir().join(format!("fanout-bench-quick-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_fanout-bench"))
        .args(["hub", "--quick", "--subscribers", "100,1000", "--deliveries", "100000", "--out"])
        .arg(&out)
        .status()
        .expect("run fanout-bench");
    assert!(status.success(), "fanout-bench hub --quick failed: {status}");

    let json = std::fs::read_to_string(out.join("hub.json")).expect("hub.json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("hub.json parses");
    assert!(v["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(v["machine"]["memory"].as_u64().unwrap_or(0) > 0);
    let records = v["records"].as_array().expect("records");
    // 5 scenarios × 2 N × 3 engines, minus tokio broadcast under churn.
    assert_eq!(records.len(), 28);
    for r in records {
        for field in [
            "scenario",
            "engine",
            "subscribers",
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
    let _ = std::fs::remove_dir_all(&out);
}
