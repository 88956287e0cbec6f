//! `fanout-bench history --quick` runs and writes a `history.json` with the
//! fields the cost targets need, and every timed join recovered its
//! stream (the replay checked message by message). It checks that the tool
//! works and that the joins it times are real recoveries, never how fast
//! anything is.

use std::process::Command;

use serde_json::Value;

fn has_percentiles(v: &Value, what: &str) {
    for f in ["count", "p50_ns", "p90_ns", "p99_ns", "max_ns", "mean_ns"] {
        assert!(!v[f].is_null(), "{what} lacks {f}: {v}");
    }
}

#[test]
fn quick_history_run_writes_the_report_and_every_join_recovers() {
    let out = std::env::temp_dir().join(format!("fanout-bench-history-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_fanout-bench"))
        .args(["history", "--quick", "--out"])
        .arg(&out)
        .status()
        .expect("run fanout-bench");
    assert!(status.success(), "fanout-bench history --quick failed: {status}");

    let json = std::fs::read_to_string(out.join("history.json")).expect("history.json");
    let v: Value = serde_json::from_str(&json).expect("history.json parses");
    assert_eq!(v["quick"], true);
    assert_eq!(v["parts"], serde_json::json!(["memory", "publish", "join"]));
    let m = &v["machine"];
    for field in ["cpu", "kernel", "rustc", "profile", "quiet_rule"] {
        assert!(m[field].as_str().is_some_and(|s| !s.is_empty()), "machine lacks {field}: {m}");
    }
    assert!(m["cores"].as_u64().unwrap_or(0) >= 1 && m["quiet"].is_boolean(), "{m}");
    assert!(m.get("commit").is_some() && m.get("loadavg_before").is_some(), "{m}");
    assert!(m.get("loadavg_1m_max_during").is_some() && m.get("other_cpu_percent").is_some(), "{m}");
    assert_eq!(v["settings"]["history_size"], 128);
    assert_eq!(v["settings"]["history_ttl_s"], 300);

    // 1. Publishing with history on vs off.
    let p = &v["publish_cost"];
    assert_eq!(p["batch"], 64);
    let rounds = p["rounds"].as_u64().expect("rounds") as usize;
    for side in ["off", "on"] {
        let s = &p[side];
        assert!(s["ns_per_delivery"].as_f64().is_some_and(|x| x > 0.0), "{side}: {s}");
        assert_eq!(s["ns_per_delivery_rounds"].as_array().map(Vec::len), Some(rounds), "{side}: {s}");
        for f in ["deliveries_per_wake", "publish_p50_ns", "publish_p99_ns", "lost", "evicted"] {
            assert!(!s[f].is_null(), "{side} lacks {f}: {s}");
        }
    }
    assert_eq!(p["off"]["history_size"], 0);
    assert_eq!(p["on"]["history_size"], 128);
    assert!(p["ratio_on_over_off"].as_f64().is_some_and(|x| x > 0.0), "{p}");
    assert_eq!(p["ratio_rounds"].as_array().map(Vec::len), Some(rounds));
    assert!(p["target_met"].is_boolean() && p["slower_percent"].is_number());
    for f in ["off_ns_per_run", "on_ns_per_run", "history_ns_per_run", "implied_percent"] {
        assert!(p["probe"][f].is_number(), "probe lacks {f}: {p}");
    }

    // 2. Joins: both cases, every join recovered, its replay checked.
    let j = &v["join"];
    assert!(j["target_met_idle"].is_boolean() && j["target_met_publishing"].is_boolean());
    let cases = j["cases"].as_array().expect("cases");
    let names: Vec<&str> = cases.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["idle", "publishing 5/s"]);
    let joins = v["settings"]["joins_per_case"].as_u64().unwrap() as usize;
    let csv = std::fs::read_to_string(out.join("history-joins.csv")).expect("history-joins.csv");
    let mut lines = csv.lines().map(|l| l.split(',').collect::<Vec<_>>());
    let header = lines.next().expect("header");
    let rows: Vec<Vec<&str>> = lines.collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "ragged csv");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        has_percentiles(&c["join"], name);
        has_percentiles(&c["join_from_due"], name);
        has_percentiles(&c["join_clear"], name);
        has_percentiles(&c["join_overlapped_publish"], name);
        has_percentiles(&c["publish_calls"], name);
        assert_eq!(c["join"]["count"].as_u64(), Some(joins as u64), "{name}");
        let samples: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == name).collect();
        assert_eq!(samples.len(), joins, "{name}: one line per timed join in history-joins.csv");
        for s in samples {
            let col =
                |f: &str| s[header.iter().position(|h| *h == f).unwrap_or_else(|| panic!("no column {f}"))];
            assert_eq!(col("recovered"), "true", "{name}: a timed join did not recover: {s:?}");
            assert_eq!(col("replay_ok"), "true", "{name}: replay not as promised: {s:?}");
            let back: u64 = col("back").parse().unwrap();
            assert!((10..=50).contains(&back), "{s:?}");
            assert!(
                col("replayed").parse::<u64>().unwrap() >= back,
                "{name}: replayed less than missed: {s:?}"
            );
            let (call, due): (u64, u64) = (col("ns").parse().unwrap(), col("ns_from_due").parse().unwrap());
            assert!(call > 0 && due >= call, "{s:?}");
        }
        assert_eq!(c["recovered"].as_u64(), Some(joins as u64), "{name}");
        assert_eq!(c["replay_ok"].as_u64(), Some(joins as u64), "{name}");
        assert_eq!(c["lost"], 0, "{name}: a subscriber of the topic lost messages");
    }
    let publishing = &cases[1];
    // A publish call that finds the walk held by a join leaves its run to the
    // join ("joins go first") and is counted apart from the calls that walked.
    let calls = publishing["publish_calls"]["count"].as_u64().unwrap()
        + publishing["publish_calls_left_to_a_join"].as_u64().unwrap();
    assert!(calls > 0, "nothing published: {publishing}");
    assert!(
        publishing["achieved_rate_runs_per_s"].is_number() && publishing["publish_busy_fraction"].is_number()
    );

    // 3. Memory: the history is held, and costs something.
    let mem = &v["memory"];
    assert_eq!(mem["with_history"]["held_in_first_topic"], 128, "{mem}");
    assert_eq!(mem["without_history"]["held_in_first_topic"], 0, "{mem}");
    assert!(mem["history_heap_bytes_per_topic"].as_f64().is_some_and(|b| b > 0.0), "{mem}");
    for f in ["history_heap_bytes_per_message", "history_rss_bytes_per_topic", "topics", "payload_bytes"] {
        assert!(!mem[f].is_null(), "memory lacks {f}: {mem}");
    }

    let md = std::fs::read_to_string(out.join("history.md")).expect("history.md");
    for heading in ["## Publishing with history on vs off", "## Joins from a position", "## Memory per topic"]
    {
        assert!(md.contains(heading), "history.md lacks {heading}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
