//! `fanout-bench load`: real WebSocket clients against a real server, and a report.
//!
//! ```text
//! fanout-bench load --url ws://127.0.0.1:8080/ws --api-key KEY --clients 1000 --rate 100
//! fanout-bench load --spawn-server 'fanout-server --listen 127.0.0.1:{port} --api-key {api_key}' …
//! fanout-bench load --compare fanout,mutex --search 100,200,500,1000 --p99-bound 50ms …
//! fanout-bench load --compare redis,nats --nodes 3 --kill-node-after 5s …
//! fanout-bench load --urls ws://127.0.0.1:8080/ws,ws://127.0.0.1:8081/ws --server-pid 11,12 …
//! ```
//!
//! # Design
//!
//! The parent process plans and measures; clients live in `load-worker`
//! processes (this binary again, hidden subcommand; `worker.rs`), as many as the
//! open-files limit needs (`limits.rs`). One *run* (`run.rs`) is: server up,
//! ramp, steady phase at one rate, drain, teardown. A session is one or more
//! runs:
//!
//! - **single:** one run at `--rate`;
//! - **compare** (`--compare fanout,mutex`, or `fanout,redis,nats` for the
//!   cost of a broker): the same run against each engine,
//!   each on a freshly spawned server, engines alternating;
//! - **search** (`--search r1,r2,…`): runs at increasing rates until a step
//!   fails (a push out of order or duplicated, p99 above `--p99-bound`, any
//!   message lost, or the publishers short of their target by more than 5 %);
//!   with `--compare`, engines alternate at each step and each stops at its own
//!   first failure.
//!
//! **Several nodes.** `--nodes N` spawns N server processes per run (with
//! `--compare redis,nats` each is a cluster node over that broker), `--urls`
//! names running ones; client `id` connects to node `id mod N` and publisher
//! `p` to node `p mod N`, and the server figures are sums over the nodes.
//! `--kill-node-after T` kills the last node with SIGKILL `T` into the steady
//! phase: its clients fail over to the others with `since` (`client.rs`), and
//! the report counts what they recovered, lost and received twice. The
//! clients themselves are spread over `load-worker` processes as always.
//!
//! Every run publishes with `--publishers` (default 4) concurrent publishers on
//! one schedule, stamps each message with the time it was due, and has every
//! client check each topic's order (`publisher.rs`, `client.rs`).
//!
//! Then the report (`report.rs`, `plots.rs`) goes to `--out`.

mod client;
mod limits;
mod live;
mod plots;
pub(crate) mod procstat;
mod proto;
mod publisher;
mod report;
mod run;
mod server;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub use worker::WorkerArgs;

use live::{Live, ProgressMode};
use report::{Capacity, Report, Setup};
use run::{RunConfig, RunResult};

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("bad duration `{s}` (e.g. 500ms, 10s, 2m)"))?;
    Ok(Duration::from_secs_f64(n * mul))
}

/// `fanout-bench load`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// WebSocket URL of the server (ignored when a spawned command has `{port}`).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Several running nodes of one cluster, comma-separated (instead of `--url`):
    /// client `id` connects to node `id mod N`, publisher `p` to node `p mod N`.
    #[arg(long, value_delimiter = ',', conflicts_with = "url")]
    pub urls: Vec<String>,
    /// Server processes to spawn per run (with `--compare` or `--spawn-server`
    /// and `{port}`), e.g. 3 nodes over `--compare redis,nats`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Kill (SIGKILL) the last spawned node this far into the steady phase;
    /// its clients fail over to the other nodes with `since`. Needs `--nodes` ≥ 2.
    #[arg(long, value_parser = parse_duration)]
    pub kill_node_after: Option<Duration>,
    /// WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Topics `t0`…`t{T-1}`.
    #[arg(long, default_value_t = 1)]
    pub topics: u32,
    /// Topics each client subscribes to (K of T, spread evenly).
    #[arg(long, default_value_t = 1)]
    pub per_client: u32,
    /// Messages per second, over all topics and publishers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Concurrent publishers sharing the rate, each on its own keep-alive
    /// connection with one request in flight (see `publisher.rs`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub publishers: u32,
    /// Mixed rates: topic i gets a share of the rate ∝ 1/(i+1)^zipf (0 = equal).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Payload bytes (JSON, send time included).
    #[arg(long, default_value_t = 256)]
    pub payload_size: usize,
    /// Steady phase per run (e.g. 10s, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Publish nothing during the steady phase, then one message per topic
    /// (memory per idle connection and the time a broadcast takes to reach all).
    #[arg(long)]
    pub idle: bool,
    /// Share of clients that stop reading after they subscribed (e.g. 0.02).
    #[arg(long, default_value_t = 0.0)]
    pub stalled_fraction: f64,
    /// Share of reading clients that drop their connection every
    /// `--reconnect-every` and resubscribe with `since` (recovery), e.g. 0.1.
    #[arg(long, default_value_t = 0.0)]
    pub reconnect_fraction: f64,
    /// How often a reconnecting client reconnects.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub reconnect_every: Duration,
    /// With --stalled-fraction: messages/s on a `flood` topic only stalled
    /// clients subscribe to, so that their queues fill and eviction runs.
    #[arg(long, default_value_t = 0.0)]
    pub stall_flood: f64,
    /// Payload bytes of the flood messages.
    #[arg(long, default_value_t = 16384)]
    pub stall_flood_size: usize,
    /// Worker processes for the clients (at least what the open-files limit needs).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Handshakes in flight per worker during the ramp.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Key for `POST /api/publish` (passed to spawned servers as `{api_key}`).
    #[arg(long, env = "FANOUT_API_KEY", default_value = "fanout-load")]
    pub api_key: String,
    /// Start the server: a shell command; `{port}`, `{engine}`, `{api_key}` are filled in.
    #[arg(long)]
    pub spawn_server: Option<String>,
    /// Sample already running servers' RSS and CPU (comma-separated pids).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Run against each engine on a spawned server, e.g. `fanout,mutex`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// The `fanout-server` binary for `--compare` [default: next to this binary].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Capacity search: rates to try in order, e.g. `100,200,500,1000`.
    #[arg(long, value_delimiter = ',')]
    pub search: Vec<f64>,
    /// Capacity search: the p99 bound a step must hold.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub p99_bound: Duration,
    /// Report folder.
    #[arg(long, default_value = "load-report")]
    pub out: PathBuf,
    /// Progress bars: auto (when stderr is a terminal), always, never.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// Why a search step failed, if it did.
fn failure(r: &RunResult, bound: Duration) -> Option<String> {
    if r.connect_failures > 0 {
        return Some(format!("{} clients failed to connect", r.connect_failures));
    }
    if r.out_of_order > 0 || r.duplicates > 0 {
        return Some(format!(
            "order broken: {} pushes out of order, {} duplicated, in {} clients",
            r.out_of_order, r.duplicates, r.clients_disordered
        ));
    }
    if r.missing > 0 || r.seq_missing > 0 {
        return Some(format!(
            "{} messages lost ({} in seq gaps never filled)",
            r.missing.max(0),
            r.seq_missing
        ));
    }
    if r.latency.p99_us as u128 > bound.as_micros() {
        return Some(format!("p99 {:.1} ms > {} ms", r.latency.p99_us as f64 / 1e3, bound.as_millis()));
    }
    if r.achieved_rate < 0.95 * r.target_rate || r.publish_errors > 0 {
        return Some(format!(
            "publisher reached {:.0} of {} msg/s ({} errors)",
            r.achieved_rate, r.target_rate, r.publish_errors
        ));
    }
    None
}

/// The distinct rates that were run, in order.
fn rates_run(runs: &[RunResult]) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::new();
    for r in runs {
        if !v.contains(&r.target_rate) {
            v.push(r.target_rate);
        }
    }
    v
}

/// The `load` subcommand's main; returns the report folder.
pub fn main(args: LoadArgs) -> Result<PathBuf, String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(session(args))
}

/// The `load-worker` subcommand's main.
pub fn worker_main(args: WorkerArgs) -> Result<(), String> {
    worker::main(args)
}

async fn session(a: LoadArgs) -> Result<PathBuf, String> {
    let live = Live::new(a.progress);
    if a.per_client > a.topics || a.topics == 0 {
        return Err(format!("--per-client {} must be between 1 and --topics {}", a.per_client, a.topics));
    }
    let limit = limits::open_files_limit();
    let plan = limits::plan(a.clients, a.workers, limit)?;
    live.say(&format!(
        "open-files limit {} per process: {} clients in {} worker process(es) of at most {} each {:?}",
        limit.map_or("unknown".into(), |l| l.to_string()),
        a.clients,
        plan.per_worker.len(),
        plan.per_worker_cap,
        plan.per_worker
    ));
    if a.clients > plan.per_worker_cap {
        live.say(&format!(
            "note: {} clients do not fit in one process under the limit; they are spread over {} workers. \
             A server process on this machine holds one descriptor per client too: one can serve at most ~{} \
             of them (--nodes N spreads them over N processes).",
            a.clients,
            plan.per_worker.len(),
            limit.unwrap_or(0).saturating_sub(100)
        ));
    }
    let nodes = usize::from(a.nodes);
    if nodes > 1 && a.spawn_server.as_deref().is_some_and(|c| !c.contains("{port}")) {
        return Err("--nodes needs `{port}` in --spawn-server: each node listens on its own port".into());
    }
    if nodes > 1 && a.compare.is_empty() && a.spawn_server.is_none() {
        return Err("--nodes spawns servers: use it with --compare or --spawn-server (or name running nodes with --urls)".into());
    }
    if a.kill_node_after.is_some() && nodes < 2 {
        return Err(
            "--kill-node-after needs --nodes 2 or more (the killed node's clients fail over to the others)"
                .into(),
        );
    }
    if a.kill_node_after.is_some_and(|k| k >= a.duration) {
        return Err("--kill-node-after must fall inside the steady phase (--duration)".into());
    }
    let urls = if a.urls.is_empty() { vec![a.url.clone()] } else { a.urls.clone() };
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let engines: Vec<Option<String>> =
        if a.compare.is_empty() { vec![None] } else { a.compare.iter().cloned().map(Some).collect() };
    let spawn = match (&a.spawn_server, a.compare.is_empty()) {
        (Some(c), _) => Some(c.clone()),
        (None, false) => {
            // Each node may take the clients of a killed one.
            let per_node =
                a.clients.div_ceil(nodes.saturating_sub(usize::from(a.kill_node_after.is_some())).max(1));
            Some(server::default_command(a.server_bin.as_deref(), (per_node + 100).clamp(10_000, 19_900))?)
        }
        (None, true) => None,
    };
    let cfg = RunConfig {
        urls: urls.clone(),
        nodes: if spawn.is_some() { nodes } else { 1 },
        kill_node_after: a.kill_node_after,
        clients: a.clients,
        topics: a.topics,
        per_client: a.per_client,
        payload_size: a.payload_size,
        zipf: a.zipf,
        duration: a.duration,
        idle: a.idle,
        stalled_fraction: a.stalled_fraction,
        reconnect_fraction: a.reconnect_fraction,
        reconnect_every: a.reconnect_every,
        flood_rate: a.stall_flood,
        flood_size: a.stall_flood_size,
        per_worker: plan.per_worker.clone(),
        concurrency: a.concurrency,
        publishers: a.publishers,
        api_key: a.api_key.clone(),
        spawn: spawn.clone(),
        server_pid: a.server_pid.clone(),
        out_dir: a.out.clone(),
    };
    let searching = !a.search.is_empty();
    let rates = if searching { a.search.clone() } else { vec![a.rate] };
    let mut runs: Vec<RunResult> = Vec::new();
    let mut capacity: Vec<Capacity> = engines
        .iter()
        .map(|e| Capacity {
            engine: e.clone().unwrap_or_else(|| "server".into()),
            highest_rate_held: None,
            deliveries_per_sec: None,
            p99_us: None,
            first_failed_rate: None,
            failed_because: None,
        })
        .collect();
    for &rate in &rates {
        for (i, e) in engines.iter().enumerate() {
            if searching && capacity[i].first_failed_rate.is_some() {
                continue;
            }
            let mut r = run::run_one(&cfg, e.as_deref(), rate, &live).await?;
            if searching {
                let why = failure(&r, a.p99_bound);
                r.held = Some(why.is_none());
                let c = &mut capacity[i];
                match why {
                    None => {
                        c.highest_rate_held = Some(rate);
                        c.deliveries_per_sec = Some(r.deliveries_per_sec);
                        c.p99_us = Some(r.latency.p99_us);
                    }
                    Some(w) => {
                        live.say(&format!("{}: step {rate} msg/s failed: {w}", c.engine));
                        c.first_failed_rate = Some(rate);
                        c.failed_because = Some(w);
                    }
                }
            }
            runs.push(r);
        }
    }
    // Timelines to plot: one run per engine, all at the same rate, so that the
    // plots compare like with like: the highest rate every engine held (a
    // search), else the first rate.
    let common = rates_run(&runs)
        .into_iter()
        .rfind(|&rate| {
            engines.iter().all(|e| {
                runs.iter().any(|r| &r.engine == e && r.target_rate == rate && r.held != Some(false))
            })
        })
        .unwrap_or(rates[0]);
    let shown: Vec<&RunResult> = engines
        .iter()
        .filter_map(|e| runs.iter().find(|r| &r.engine == e && r.target_rate == common))
        .collect();
    let plots = plots::write_all(&a.out, &shown, searching.then_some(runs.as_slice()))?;
    let report = Report {
        schema: "fanout-bench/load/2",
        command: std::env::args()
            .map(|s| if s.contains(' ') { format!("'{s}'") } else { s })
            .collect::<Vec<_>>()
            .join(" "),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: procstat::Machine::this(),
        setup: Setup {
            url: urls.join(","),
            nodes: if spawn.is_some() { nodes } else { urls.len() },
            kill_node_after_secs: a.kill_node_after.map(|d| d.as_secs_f64()),
            clients: a.clients,
            topics: a.topics,
            topics_per_client: a.per_client,
            payload_size: a.payload_size,
            zipf: a.zipf,
            publishers: a.publishers,
            duration_secs: a.duration.as_secs_f64(),
            idle: a.idle,
            stalled_fraction: a.stalled_fraction,
            reconnect_fraction: a.reconnect_fraction,
            reconnect_every_secs: a.reconnect_every.as_secs_f64(),
            stall_flood_rate: a.stall_flood,
            stall_flood_size: a.stall_flood_size,
            workers: plan.per_worker.len(),
            clients_per_worker: plan.per_worker.clone(),
            source_addresses: "127.0.0.2–127.0.0.255 (loopback servers only)".into(),
            mode: if searching {
                "search"
            } else if a.compare.is_empty() {
                "single"
            } else {
                "compare"
            },
            engines: a.compare.clone(),
            rates,
            p99_bound_ms: a.p99_bound.as_secs_f64() * 1e3,
            server_command: spawn,
        },
        capacity: if searching { capacity } else { vec![] },
        runs,
        plots,
    };
    report::write(&a.out, &report)?;
    Ok(a.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
    }
}
