//! The `same_topic` scenario: four publishers on one topic, every subscriber
//! checking the order as it receives. A run with an order violation must fail
//! (non-zero exit) and say where; a run without one must pass and record
//! `order_violations: 0`.
//!
//! `fanout_keeps_order_under_four_publishers` fails on an engine that walks
//! the subscribers once per publisher without ordering the walks (the fanout
//! engine before issue 11's order work): that failure is the check working.

use std::process::{Command, Output};

fn same_topic(engines: &str, tag: &str) -> (Output, serde_json::Value) {
    let out = std::env::temp_dir().join(format!("fanout-bench-same-topic-{tag}-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_fanout-bench"))
        .args(["hub", "--quick", "--scenarios", "same_topic", "--engines", engines])
        .args(["--subscribers", "100,1000", "--deliveries", "200000", "--out"])
        .arg(&out)
        .output()
        .expect("run fanout-bench");
    let json = std::fs::read_to_string(out.join("hub.json")).expect("the report is written, pass or fail");
    let _ = std::fs::remove_dir_all(&out);
    (output, serde_json::from_str(&json).expect("hub.json parses"))
}

fn check_records(v: &serde_json::Value, engines: &[&str]) {
    let records = v["records"].as_array().expect("records");
    // 2 batches × 2 N × the engines.
    assert_eq!(records.len(), 4 * engines.len());
    for r in records {
        assert_eq!(r["scenario"], "same_topic");
        assert_eq!(r["publishers"], 4);
        assert!(engines.contains(&r["engine"].as_str().unwrap()), "{r}");
        assert_eq!(r["order"]["received"], r["deliveries"], "every delivery was checked: {r}");
        assert_eq!(r["order_violations"], 0, "{}", r["first_order_violation"]);
        assert_eq!(r["lost"], 0, "{r}");
    }
}

#[test]
fn baselines_keep_order_under_four_publishers() {
    let (output, v) = same_topic("mutex,tokio_broadcast", "baselines");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    check_records(&v, &["mutex", "tokio_broadcast"]);
}

#[test]
fn fanout_keeps_order_under_four_publishers() {
    let (output, v) = same_topic("fanout", "fanout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    check_records(&v, &["fanout"]);
}
