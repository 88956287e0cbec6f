//! `fanout-bench load` over several cluster nodes on the shared Redis and
//! NATS (which must be up: this project's machines and `.ci/run` start them):
//! 30 clients over 3 node processes, 2 publishers, and the last node killed
//! with SIGKILL one second into the run. Its 10 clients must fail over to the
//! other nodes with `since` and recover, and the counts must add up: every
//! message accepted reaches every subscriber once, in order, nothing lost.
//! No timing thresholds: only counts.
//!
//! The nodes are this test binary run again (the `node_process` entry below,
//! with the server's flags in an environment variable): real processes that a
//! SIGKILL can end, running the `fanout-server` library's `start`, without
//! depending on a `fanout-server` binary being built. Each test gets its own
//! broker prefix (and JetStream stream), so nothing else on the shared broker
//! reaches its clients.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser as _;

/// The environment variable that turns this binary into a node.
const NODE_ENV: &str = "FANOUT_LOAD_TEST_NODE";

/// Not a check, so ignored in a test run: the body of the node processes the
/// tests below spawn (this binary run again, with `--ignored`, and
/// [`NODE_ENV`] = the server's flags).
#[test]
#[ignore = "the body of a node process that the tests below start"]
fn node_process() {
    let flags = std::env::var(NODE_ENV).expect("run by the tests below, with the server's flags");
    let mut cli = vec!["fanout-server".to_string()];
    cli.extend(flags.split_whitespace().map(String::from));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let settings =
            fanout_server::Settings::from_cli(fanout_server::Cli::parse_from(cli)).expect("settings");
        let _server = fanout_server::start(settings).await.expect("node starts");
        // Until SIGTERM (the load tester's stop) or SIGKILL (the node it kills).
        std::future::pending::<()>().await;
    });
}

fn reachable(addr: &str) {
    assert!(
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok(),
        "no broker on {addr}: this test needs it (this project's machines and .ci/run start it)"
    );
}

/// A `[cluster]` file with a prefix and stream no one else uses.
fn cluster_file(dir: &Path, tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("ld{tag}{}{}", std::process::id(), n % 1_000_000_000_000);
    let path = dir.join("cluster.toml");
    let toml =
        format!("[cluster]\nprefix = \"{prefix}\"\nstream = \"{}\"\nttl = \"120s\"\n", prefix.to_uppercase());
    std::fs::write(&path, toml).expect("write cluster.toml");
    path
}

fn three_nodes_one_killed(broker: &str, addr: &str, tag: &str) {
    reachable(addr);
    let out = std::env::temp_dir().join(format!("fanout-load-cluster-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let config = cluster_file(&out, tag);
    let exe = std::env::current_exe().expect("test binary");
    let node = format!(
        "env {NODE_ENV}='--listen 127.0.0.1:{{port}} --api-key {{api_key}} --broker {broker} --config {} --log-level warn' {} node_process --exact --ignored --nocapture --test-threads 1",
        config.display(),
        exe.display()
    );
    let status = Command::new(env!("CARGO_BIN_EXE_fanout-bench"))
        .args(["load", "--spawn-server", &node, "--nodes", "3", "--kill-node-after", "1s"])
        .args(["--clients", "30", "--topics", "2", "--rate", "100", "--publishers", "2"])
        .args(["--duration", "3s", "--api-key", "k", "--progress", "never", "--out"])
        .arg(&out)
        .status()
        .expect("run fanout-bench load");
    assert!(status.success(), "fanout-bench load failed: {status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
            .unwrap();
    assert_eq!(v["setup"]["nodes"], 3);
    let r = &v["runs"][0];
    assert_eq!(r["server"]["pids"].as_array().map(Vec::len), Some(3), "{r}");
    assert_eq!(r["connected"], 30, "{r}");
    let k = &r["killed_node"];
    assert_eq!(k["node"], 2, "the last node is killed: {r}");
    assert_eq!(k["clients"], 10, "clients 2, 5, …, 29 were on it: {r}");
    assert_eq!(r["failovers"], 10, "each of them failed over once: {r}");
    assert_eq!(r["recovered"], 10, "one topic each, every resubscription recovered: {r}");
    assert_eq!(r["not_recovered"], 0, "{r}");
    assert!(r["published"].as_u64().unwrap_or(0) > 0, "nothing published: {r}");
    assert_eq!(r["publish_errors"], 0, "publishers stay off the killed node: {r}");
    assert_eq!(r["deliveries"], r["expected_deliveries"], "each message once per subscriber: {r}");
    assert_eq!(r["missing"], 0, "{r}");
    for counter in
        ["out_of_order", "duplicates", "seq_missing", "unexplained_gaps", "clients_disordered", "errors"]
    {
        assert_eq!(r[counter], 0, "{counter}: {r}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("node 2 killed"), "the reading names the kill");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_node_killed_over_redis_loses_its_clients_nothing() {
    three_nodes_one_killed("redis://127.0.0.1:6379", "127.0.0.1:6379", "r");
}

#[test]
fn a_node_killed_over_nats_loses_its_clients_nothing() {
    three_nodes_one_killed("nats://127.0.0.1:4222", "127.0.0.1:4222", "n");
}
