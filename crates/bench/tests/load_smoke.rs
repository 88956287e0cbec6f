//! CI smoke test of `fanout-bench load`: 50 clients for 2 seconds against a
//! server started in this test process (the `fanout-server` library's
//! `start`, on `127.0.0.1:0`), sampled through `--server-pid`. The report files
//! must exist and parse, show deliveries, and no loss. It checks that the load
//! tester works end to end, never how fast anything is: no timing thresholds.
//!
//! It publishes with one publisher (`--publishers 1`), whose messages the
//! server must deliver in order: the order counters must be there, and zero.
//! (With several publishers the order is the engine's promise under test, which
//! the hub harness's `same_topic` checks; this test checks the load tester.)

use std::path::PathBuf;
use std::process::Command;

use clap::Parser as _;

/// Starts a server in this process (`server_args` after the common ones),
/// runs `fanout-bench load` against it (`load_args` after the URL, the API
/// key, `--progress never` and the output directory), drains the server, and
/// returns the report directory and its parsed `report.json`.
async fn run_load(name: &str, server_args: &[&str], load_args: &[String]) -> (PathBuf, serde_json::Value) {
    let mut cli =
        vec!["fanout-server", "--listen", "127.0.0.1:0", "--api-key", "smoke", "--log-level", "warn"];
    cli.extend_from_slice(server_args);
    let settings = fanout_server::Settings::from_cli(fanout_server::Cli::parse_from(cli)).expect("settings");
    let server = fanout_server::start(settings).await.expect("server starts");
    let url = format!("ws://{}/ws", server.addr());
    let out = std::env::temp_dir().join(format!("fanout-load-smoke-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut args: Vec<String> = ["load", "--url", &url, "--api-key", "smoke", "--progress", "never", "--out"]
        .map(String::from)
        .to_vec();
    args.push(out.to_str().expect("utf-8 temp dir").to_string());
    args.extend_from_slice(load_args);
    let status = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fanout-bench")).args(args).status()
    })
    .await
    .expect("join")
    .expect("run fanout-bench load");
    assert!(status.success(), "fanout-bench load failed: {status}");
    server.shutdown().await.expect("server drains");
    let v = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
        .expect("parses");
    (out, v)
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_for_two_seconds_write_a_report_without_loss() {
    let pid = std::process::id().to_string();
    let mut load = args(&["--clients", "50", "--topics", "2", "--per-client", "1", "--rate", "20"]);
    load.extend(args(&["--publishers", "1", "--duration", "2s", "--server-pid", &pid]));
    let (out, v) = run_load("one", &[], &load).await;

    for f in [
        "report.json",
        "report.md",
        "latency.svg",
        "deliveries.svg",
        "order.svg",
        "server.svg",
        "histogram.svg",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("latency.svg");
    assert!(svg.starts_with("<svg") && svg.contains("<text"), "latency.svg is not an SVG with text");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## Results") && md.contains("## Reading"));

    assert_eq!(v["schema"], "fanout-bench/load/2");
    assert_eq!(v["setup"]["publishers"], 1);
    assert!(v["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["connected"], 50, "{r}");
    assert!(r["published"].as_u64().unwrap_or(0) > 0, "nothing published: {r}");
    assert!(r["deliveries"].as_u64().unwrap_or(0) > 0, "no deliveries: {r}");
    assert_eq!(r["deliveries"], r["expected_deliveries"], "every published message reaches every subscriber");
    assert_eq!(r["gaps"], 0);
    assert_eq!(r["gap_messages"], 0);
    assert_eq!(r["missing"], 0);
    assert_eq!(r["errors"], 0, "{:?}", r["first_errors"]);
    assert_eq!(r["publishers"], 1);
    for counter in ["out_of_order", "duplicates", "seq_missing", "unexplained_gaps", "clients_disordered"] {
        assert_eq!(r[counter], 0, "{counter} must be present and zero: {r}");
    }
    assert!(r["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .all(|p| p["out_of_order"] == 0 && p["duplicates"] == 0));
    assert!(md.contains("out of order") && md.contains("Order held"), "report.md shows the order counters");
    assert!(r["latency"]["count"].as_u64().unwrap_or(0) > 0);
    assert!(r["server"]["rss_before_bytes"].as_u64().unwrap_or(0) > 0, "server sampled");
    assert!(!r["timeline"].as_array().expect("timeline").is_empty());
    let _ = std::fs::remove_dir_all(&out);
}

/// Four publishers on one topic against the mutex engine, which keeps a
/// topic's order under concurrent publishers (it numbers and delivers under the
/// topic's mutex): the run must say it had four publishers, and every client
/// must see every push in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_publishers_on_one_topic_keep_the_mutex_engines_order() {
    let load = args(&["--clients", "20", "--rate", "200", "--publishers", "4", "--duration", "2s"]);
    let (out, v) = run_load("4p", &["--engine", "mutex"], &load).await;
    let r = &v["runs"][0];
    assert_eq!(r["publishers"], 4);
    assert!(r["published"].as_u64().unwrap_or(0) > 0, "nothing published: {r}");
    assert_eq!(r["deliveries"], r["expected_deliveries"], "{r}");
    for counter in ["out_of_order", "duplicates", "seq_missing", "unexplained_gaps", "clients_disordered"] {
        assert_eq!(r[counter], 0, "{counter}: {r}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The recovery scenario against the fanout engine (history on, the server's
/// default): half the clients drop their connection every 400 ms and
/// resubscribe with `since`, under four concurrent publishers. Every
/// resubscription must recover, and no message may be lost or received twice
/// across a reconnection, nor out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reconnect_with_since_lose_nothing() {
    let mut load = args(&["--clients", "20", "--topics", "2", "--per-client", "1", "--rate", "100"]);
    load.extend(args(&["--publishers", "4", "--reconnect-fraction", "0.5", "--reconnect-every", "400ms"]));
    load.extend(args(&["--duration", "2s"]));
    let (out, v) = run_load("rc", &[], &load).await;
    assert_eq!(v["setup"]["reconnect_fraction"], 0.5);
    let r = &v["runs"][0];
    let reconnects = r["reconnects"].as_u64().expect("reconnects");
    assert!(reconnects > 0, "clients reconnected: {r}");
    assert_eq!(
        r["recovered"].as_u64(),
        Some(reconnects),
        "one topic each, every resubscription recovered: {r}"
    );
    assert_eq!(r["not_recovered"], 0, "{r}");
    for counter in
        ["out_of_order", "duplicates", "seq_missing", "unexplained_gaps", "clients_disordered", "errors"]
    {
        assert_eq!(r[counter], 0, "{counter}: {r}");
    }
    assert_eq!(
        r["deliveries"], r["expected_deliveries"],
        "each message once per subscriber, live or replayed: {r}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("recovery"), "the reading names the recovery figures");
    let _ = std::fs::remove_dir_all(&out);
}
