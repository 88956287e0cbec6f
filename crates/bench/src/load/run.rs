//! One run: server up, clients ramped, steady load, drain, figures.
//!
//! # Phases
//!
//! 1. **Server.** Spawned (and sampled), or given by `--server-pid` (sampled),
//!    or neither (no server figures). Its RSS is read before any client exists.
//!    With `--nodes N`, N processes are spawned (each on its own port, all on
//!    the run's broker); with `--urls`, the clients spread over running ones.
//!    Server figures are then sums over the nodes (RSS, CPU, `/metrics`).
//! 2. **Ramp.** Workers connect and subscribe every client; the bar shows how
//!    many are in. RSS is read again when all are in.
//! 3. **Steady.** The publisher runs for `duration`. With `--kill-node-after`,
//!    the last node gets SIGKILL that far into the phase (the first tick
//!    after it); its clients fail over to the other nodes (`client.rs`), and
//!    from then on only the survivors are sampled. Every second the parent
//!    asks each worker for its interval (`tick`), merges them into one point of
//!    the timeline, and samples the server's RSS and CPU and the load
//!    generator's CPU (parent + workers). With `--idle`, nothing is published
//!    during the hold; one message per topic is sent at its end.
//! 4. **Drain.** Publishing stopped; messages still in flight are counted until
//!    the clients have received what was expected, or nothing arrived for 2 s.
//!    *Expected* is exact: for each topic, messages the server accepted ×
//!    reading clients subscribed to it. `missing = expected − received`
//!    counts every loss, including one at the very end that no later seq could
//!    reveal as a gap.
//! 5. **Teardown.** `/metrics` is scraped (frames per write, evictions), the
//!    workers stop, the server is stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use super::live::Live;
use super::procstat::{rss_bytes, CpuMeter};
use super::proto::{buckets, merge_buckets, new_histogram, Event, Interval};
use super::publisher::{self, PublishPlan, Published, ServerMetrics};
use super::server;
use super::worker::{WorkerArgs, Workers};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The nodes' URLs when none are spawned (`--url` or `--urls`).
    pub urls: Vec<String>,
    /// Server processes to spawn per run (with `spawn`).
    pub nodes: usize,
    /// SIGKILL the last node this far into the steady phase.
    pub kill_node_after: Option<Duration>,
    pub clients: usize,
    pub topics: u32,
    pub per_client: u32,
    pub payload_size: usize,
    pub zipf: f64,
    pub duration: Duration,
    pub idle: bool,
    pub stalled_fraction: f64,
    /// Share of reading clients that reconnect with `since` every `reconnect_every`.
    pub reconnect_fraction: f64,
    pub reconnect_every: Duration,
    /// Messages/s on the flood topic (stalled clients only); 0 = none.
    pub flood_rate: f64,
    pub flood_size: usize,
    pub per_worker: Vec<usize>,
    pub concurrency: usize,
    /// Publishers sharing the rate, each on its own connection.
    pub publishers: u32,
    pub api_key: String,
    /// `--spawn-server` command with placeholders, if we start the server.
    pub spawn: Option<String>,
    pub server_pid: Vec<u32>,
    pub out_dir: PathBuf,
}

/// The node `--kill-node-after` killed.
#[derive(Serialize, Clone, Debug, Default)]
pub struct KilledNode {
    /// Its index (the last node).
    pub node: usize,
    pub pid: u32,
    /// Seconds into the steady phase when it got SIGKILL.
    pub at_secs: f64,
    /// Reading clients that started on it (and had to fail over).
    pub clients: u64,
}

/// One point of the timeline (one second of the steady phase).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Point {
    /// Seconds since the steady phase began.
    pub t: f64,
    pub deliveries_per_sec: f64,
    pub published_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub connections: u64,
    pub gaps: u64,
    /// Pushes received out of order this second (all clients).
    pub out_of_order: u64,
    /// Pushes received twice this second (all clients).
    pub duplicates: u64,
    pub errors: u64,
    pub server_rss_bytes: Option<u64>,
    /// Server CPU, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// Load generator (parent + workers) CPU, % of one core.
    pub loadgen_cpu_percent: Option<f64>,
    /// The machine's 1-minute load average (other users' work included).
    pub loadavg_1m: Option<f64>,
}

/// Latency summary, microseconds.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The server's figures over a run.
#[derive(Serialize, Clone, Debug, Default)]
pub struct ServerFigures {
    /// The first node's process id.
    pub pid: Option<u32>,
    /// Every node's process id (one unless `--nodes`/`--urls` gave several).
    pub pids: Vec<u32>,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_ramp_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
    /// (RSS after the ramp − RSS before) / connected clients.
    pub rss_per_connection_bytes: Option<f64>,
    /// RSS after the ramp / connected clients (baseline included).
    pub rss_total_per_connection_bytes: Option<f64>,
    /// Mean over the steady phase, % of one core.
    pub cpu_percent_mean: Option<f64>,
    pub metrics: Option<ServerMetrics>,
}

/// One run's result (see `report.rs` for the schema).
#[derive(Serialize, Clone, Debug, Default)]
pub struct RunResult {
    pub label: String,
    pub engine: Option<String>,
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// Publishers sharing the rate, each on its own keep-alive connection.
    pub publishers: u32,
    pub clients: usize,
    pub connected: u64,
    pub connect_failures: u64,
    pub stalled_clients: u64,
    pub ramp_secs: f64,
    pub steady_secs: f64,
    pub published: u64,
    pub publish_requests: u64,
    pub publish_errors: u64,
    pub server_delivered: u64,
    pub server_dropped: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub missing: i64,
    pub gaps: u64,
    pub gap_messages: u64,
    pub lag_notices: u64,
    pub lagged_messages: u64,
    /// Seq jumps that no lag notice just before them explains.
    pub unexplained_gaps: u64,
    /// Pushes received below the highest seq of their topic, filling a gap
    /// (overtaken by a later message), summed over clients.
    pub out_of_order: u64,
    /// Pushes whose seq the client had already received, summed over clients.
    pub duplicates: u64,
    /// Seq gaps never filled by the time each client ended, summed over clients.
    pub seq_missing: u64,
    /// Clients that received at least one push out of order or twice.
    pub clients_disordered: u64,
    /// `--reconnect-fraction`: reconnections made, resubscriptions answered
    /// recovered / not recovered, and messages the recovered ones replayed.
    /// Lost and duplicated messages across a reconnection show in
    /// `seq_missing` and `duplicates`.
    pub reconnects: u64,
    /// Reconnections to another node after a node dropped the connection.
    pub failovers: u64,
    /// `--kill-node-after`: the node killed.
    pub killed_node: Option<KilledNode>,
    pub recovered: u64,
    pub not_recovered: u64,
    pub replayed: u64,
    pub errors: u64,
    pub closed_by_server: u64,
    /// Latency from each message's due time (see `publisher.rs`) to receipt.
    pub latency: Latency,
    /// With `--idle`: the broadcast's time to reach every client (max latency), ms.
    pub broadcast_reach_ms: Option<f64>,
    pub server: ServerFigures,
    pub loadgen_cpu_percent_mean: Option<f64>,
    /// RSS of the load-worker processes once every client was in, added up.
    pub loadgen_rss_after_ramp_bytes: Option<u64>,
    /// Load-generator CPU per delivery (all its processes), µs.
    pub loadgen_cpu_us_per_delivery: Option<f64>,
    pub first_errors: Vec<String>,
    /// Messages published on the flood topic (stalled clients only).
    pub flood_published: u64,
    /// Capacity search: whether this step held (set by the caller).
    pub held: Option<bool>,
    pub timeline: Vec<Point>,
    /// Latency histogram buckets `[value_us, count]`.
    pub histogram: Vec<(u64, u64)>,
}

/// Collects one event per worker (`want` picks which), waiting at most `wait`.
async fn gather<T>(
    workers: &mut Workers,
    wait: Duration,
    mut want: impl FnMut(usize, Event) -> Option<T>,
) -> Vec<T> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while got.len() < workers.len() {
        match tokio::time::timeout_at(deadline, workers.events.recv()).await {
            Ok(Some((w, ev))) => got.extend(want(w, ev)),
            _ => break,
        }
    }
    got
}

/// `h` at 2 significant digits (≤ 1 % error): the report keeps the shape of the
/// distribution without tens of thousands of buckets; percentiles are taken
/// from the full histogram.
fn coarse(h: &Histogram<u64>) -> Histogram<u64> {
    let mut c = Histogram::new_with_bounds(1, 100_000_000, 2).expect("valid histogram bounds");
    for v in h.iter_recorded() {
        c.saturating_record_n(v.value_iterated_to(), v.count_at_value());
    }
    c
}

/// The RSS of the processes still there, added up (`None`: none is).
fn rss_sum(pids: &[u32]) -> Option<u64> {
    pids.iter().filter_map(|&p| rss_bytes(p)).fold(None, |a, b| Some(a.unwrap_or(0) + b))
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// Runs once at `rate` messages/s against `engine` (a label for spawned servers).
pub async fn run_one(
    cfg: &RunConfig,
    engine: Option<&str>,
    rate: f64,
    live: &Live,
) -> Result<RunResult, String> {
    let load = if cfg.idle { "idle, then 1 broadcast".to_string() } else { format!("{rate} msg/s") };
    let label = match engine {
        Some(e) => format!("{e} @ {load}"),
        None => load,
    };
    // 1. Server.
    let mut spawned = Vec::new();
    let urls = match &cfg.spawn {
        Some(tpl) => {
            let mut urls = Vec::new();
            for i in 0..cfg.nodes {
                let port = server::free_port()?;
                let cmd = server::fill(tpl, port, engine.unwrap_or("fanout"), &cfg.api_key);
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                let name = engine.unwrap_or("server");
                let log = cfg.out_dir.join(if cfg.nodes == 1 {
                    format!("server-{name}.log")
                } else {
                    format!("server-{name}-{i}.log")
                });
                spawned.push(server::spawn(&cmd, addr, &log).await?);
                urls.push(if tpl.contains("{port}") {
                    format!("ws://127.0.0.1:{port}/ws")
                } else {
                    cfg.urls[0].clone()
                });
            }
            urls
        }
        None => cfg.urls.clone(),
    };
    let mut server_pids: Vec<u32> =
        if spawned.is_empty() { cfg.server_pid.clone() } else { spawned.iter().map(|s| s.pid).collect() };
    let https = urls.iter().map(|u| publisher::http_addr(u)).collect::<Result<Vec<_>, _>>()?;
    // Publishers stay off the node that is going to be killed.
    let kill = cfg.kill_node_after.filter(|_| spawned.len() > 1);
    let publish_to = if kill.is_some() { &https[..https.len() - 1] } else { &https[..] };
    let mut sf =
        ServerFigures { pid: server_pids.first().copied(), pids: server_pids.clone(), ..Default::default() };
    sf.rss_before_bytes = rss_sum(&server_pids);

    // 2. Ramp.
    let base = WorkerArgs {
        url: urls.clone(),
        first_id: 0,
        clients: cfg.clients,
        topics: cfg.topics,
        per_client: cfg.per_client,
        stalled_fraction: cfg.stalled_fraction,
        concurrency: cfg.concurrency,
        flood: cfg.flood_rate > 0.0 && cfg.stalled_fraction > 0.0,
        spread_sources: true,
        reconnect_fraction: cfg.reconnect_fraction,
        reconnect_every_ms: cfg.reconnect_every.as_millis() as u64,
    };
    let ramp_start = Instant::now();
    let mut workers = Workers::spawn(&base, &cfg.per_worker)?;
    let bar = live.ramp(&label, cfg.clients as u64);
    let mut progress = vec![(0u64, 0u64); workers.len()];
    let mut ready = vec![false; workers.len()];
    let mut subs_per_topic = vec![0u64; cfg.topics as usize];
    let mut first_errors = Vec::new();
    while !ready.iter().all(|&r| r) {
        let Some((w, ev)) = workers.events.recv().await else {
            return Err("a load worker died during the ramp".into());
        };
        match ev {
            Event::Progress { connected, failed } => progress[w] = (connected, failed),
            Event::Ready { connected, failed, subscribers_per_topic, errors } => {
                progress[w] = (connected, failed);
                ready[w] = true;
                for (t, n) in subscribers_per_topic.iter().enumerate() {
                    subs_per_topic[t] += n;
                }
                first_errors.extend(errors);
            }
            _ => {}
        }
        let (c, f) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        bar.set_position(c + f);
        bar.set_message(if f > 0 { format!("{f} failed") } else { String::new() });
    }
    bar.finish_and_clear();
    let (connected, failed) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    sf.rss_after_ramp_bytes = rss_sum(&server_pids);
    let loadgen_rss_after_ramp_bytes = rss_sum(&workers.pids());
    if let (Some(a), Some(b)) = (sf.rss_after_ramp_bytes, sf.rss_before_bytes) {
        if connected > 0 {
            sf.rss_per_connection_bytes = Some((a as f64 - b as f64) / connected as f64);
            sf.rss_total_per_connection_bytes = Some(a as f64 / connected as f64);
        }
    }
    if connected == 0 {
        workers.tell("stop").await;
        workers.wait().await;
        server::stop_all(spawned).await;
        return Err(format!("no client connected: {}", first_errors.first().cloned().unwrap_or_default()));
    }

    // 3. Steady.
    let plan = PublishPlan {
        rate: if cfg.idle { 0.0 } else { rate },
        payload_size: cfg.payload_size,
        topics: cfg.topics,
        api_key: cfg.api_key.clone(),
        zipf: cfg.zipf,
        only_topic: None,
        publishers: cfg.publishers,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let accepted = Arc::new(AtomicU64::new(0));
    let flood_task = (cfg.flood_rate > 0.0 && cfg.stalled_fraction > 0.0).then(|| {
        let flood = PublishPlan {
            rate: cfg.flood_rate,
            payload_size: cfg.flood_size,
            topics: 1,
            only_topic: Some(super::client::FLOOD_TOPIC.to_string()),
            zipf: 0.0,
            api_key: cfg.api_key.clone(),
            publishers: 1,
        };
        let (to, stop_rx) = (publish_to.to_vec(), stop_rx.clone());
        tokio::spawn(
            async move { publisher::run_all(&to, flood, stop_rx, Arc::new(AtomicU64::new(0))).await },
        )
    });
    let pub_task = {
        let (to, plan, stop_rx, accepted) = (publish_to.to_vec(), plan.clone(), stop_rx, accepted.clone());
        tokio::spawn(async move { publisher::run_all(&to, plan, stop_rx, accepted).await })
    };
    let mut server_cpu = (!server_pids.is_empty()).then(|| CpuMeter::new(server_pids.clone()));
    let mut killed_node = None;
    let mut gen_pids = workers.pids();
    gen_pids.push(std::process::id());
    let mut gen_cpu = CpuMeter::new(gen_pids);
    let gen_cpu_start = gen_cpu.seconds();
    let line = live.steady(&label);
    let steady_start = Instant::now();
    let mut total = Interval::default();
    let mut hist = new_histogram();
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last_pub = 0u64;
    let mut last_t = 0.0;
    while steady_start.elapsed() < cfg.duration {
        tick.tick().await;
        workers.tell("tick").await;
        let ticks = gather(&mut workers, Duration::from_secs(5), |_, ev| match ev {
            Event::Tick(i) => Some(i),
            _ => None,
        })
        .await;
        let t = steady_start.elapsed().as_secs_f64();
        let dt = (t - last_t).max(1e-3);
        last_t = t;
        let mut iv = Interval::default();
        let mut h = new_histogram();
        for i in &ticks {
            iv.add(i);
            merge_buckets(&mut h, &i.latency_us);
        }
        total.add(&iv);
        let _ = hist.add(&h);
        if kill.is_some_and(|a| killed_node.is_none() && steady_start.elapsed() >= a) {
            let node = spawned.len() - 1;
            let pid = spawned[node].pid;
            spawned[node].kill().await;
            let at_secs = steady_start.elapsed().as_secs_f64();
            let clients = (0..cfg.clients)
                .filter(|&i| i % spawned.len() == node && !super::worker::is_stalled(i, cfg.stalled_fraction))
                .count() as u64;
            live.say(&format!(
                "{label}: killed node {node} (pid {pid}, {clients} clients) at {at_secs:.1} s"
            ));
            killed_node = Some(KilledNode { node, pid, at_secs, clients });
            server_pids.retain(|&p| p != pid);
            server_cpu = (!server_pids.is_empty()).then(|| CpuMeter::new(server_pids.clone()));
        }
        let pubs = accepted.load(Relaxed);
        let rss = rss_sum(&server_pids);
        sf.rss_peak_bytes = sf.rss_peak_bytes.max(rss);
        let p = Point {
            t,
            deliveries_per_sec: iv.deliveries as f64 / dt,
            published_per_sec: (pubs - last_pub) as f64 / dt,
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            connections: iv.connections,
            gaps: iv.gaps,
            out_of_order: iv.out_of_order,
            duplicates: iv.duplicates,
            errors: iv.errors,
            server_rss_bytes: rss,
            server_cpu_percent: server_cpu.as_mut().and_then(|m| m.sample()),
            loadgen_cpu_percent: gen_cpu.sample(),
            loadavg_1m: super::procstat::loadavg().map(|l| l[0]),
        };
        last_pub = pubs;
        line.set_message(format!(
            "conns {} | {:.0} deliveries/s | p99 {:.1} ms | gaps {} | out of order {} | duplicated {} | errors {}",
            p.connections,
            p.deliveries_per_sec,
            p.p99_us as f64 / 1000.0,
            total.gap_messages,
            total.out_of_order,
            total.duplicates,
            total.errors
        ));
        timeline.push(p);
    }
    let _ = stop_tx.send(true);
    let mut published: Published = pub_task.await.unwrap_or_default();
    let flood_published = match flood_task {
        Some(t) => t.await.map(|p| p.messages).unwrap_or(0),
        None => 0,
    };
    let steady_secs = steady_start.elapsed().as_secs_f64();
    sf.rss_end_bytes = rss_sum(&server_pids);
    let mut broadcast_reach_ms = None;
    let mut reach_hist = new_histogram();
    if cfg.idle {
        published = publisher::broadcast_once(publish_to[0], &plan).await;
    }
    line.finish_and_clear();

    // 4. Drain.
    let expected: u64 = published.per_topic.iter().zip(&subs_per_topic).map(|(m, s)| m * s).sum();
    let mut quiet_since = Instant::now();
    let drain_start = Instant::now();
    while total.deliveries < expected
        && quiet_since.elapsed() < Duration::from_secs(2)
        && drain_start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        workers.tell("tick").await;
        let ticks = gather(&mut workers, Duration::from_secs(5), |_, ev| match ev {
            Event::Tick(i) => Some(i),
            _ => None,
        })
        .await;
        for i in &ticks {
            if i.deliveries > 0 {
                quiet_since = Instant::now();
            }
            total.add(i);
            merge_buckets(&mut hist, &i.latency_us);
            merge_buckets(&mut reach_hist, &i.latency_us);
        }
    }
    if cfg.idle && !reach_hist.is_empty() {
        broadcast_reach_ms = Some(reach_hist.max() as f64 / 1000.0);
    }
    let gen_cpu_secs = match (gen_cpu.seconds(), gen_cpu_start) {
        (Some(b), Some(a)) => Some(b - a),
        _ => None,
    };

    // 5. Teardown.
    let alive: Vec<SocketAddr> = match &killed_node {
        Some(k) => https.iter().enumerate().filter(|&(i, _)| i != k.node).map(|(_, a)| *a).collect(),
        None => https.clone(),
    };
    sf.metrics = publisher::scrape(&alive).await;
    workers.tell("stop").await;
    let mut closed_by_server = 0;
    let finals = gather(&mut workers, Duration::from_secs(10), |_, ev| match ev {
        Event::Done { closed_by_server } => Some(closed_by_server),
        Event::Tick(i) => {
            total.add(&Interval { connections: 0, closed_by_server: 0, ..i.clone() });
            merge_buckets(&mut hist, &i.latency_us);
            None
        }
        _ => None,
    })
    .await;
    closed_by_server += finals.iter().sum::<u64>();
    workers.wait().await;
    server::stop_all(spawned).await;
    sf.cpu_percent_mean = mean(timeline.iter().filter_map(|p| p.server_cpu_percent));
    let stalled =
        (0..cfg.clients).filter(|&i| super::worker::is_stalled(i, cfg.stalled_fraction)).count() as u64;
    let r = RunResult {
        label,
        engine: engine.map(str::to_string),
        target_rate: rate,
        achieved_rate: if cfg.idle {
            0.0
        } else {
            published.messages as f64 / published.elapsed.as_secs_f64().max(1e-9)
        },
        publishers: if cfg.idle { 1 } else { cfg.publishers },
        clients: cfg.clients,
        connected,
        connect_failures: failed,
        stalled_clients: stalled,
        ramp_secs,
        steady_secs,
        published: published.messages,
        publish_requests: published.requests,
        publish_errors: published.errors,
        server_delivered: published.delivered,
        server_dropped: published.dropped,
        expected_deliveries: expected,
        deliveries: total.deliveries,
        deliveries_per_sec: total.deliveries as f64 / steady_secs.max(1e-9),
        missing: expected as i64 - total.deliveries as i64,
        gaps: total.gaps,
        gap_messages: total.gap_messages,
        lag_notices: total.lag_notices,
        lagged_messages: total.lagged_messages,
        unexplained_gaps: total.unexplained_gaps,
        out_of_order: total.out_of_order,
        duplicates: total.duplicates,
        seq_missing: total.seq_missing,
        clients_disordered: total.clients_disordered,
        reconnects: total.reconnects,
        failovers: total.failovers,
        killed_node,
        recovered: total.recovered,
        not_recovered: total.not_recovered,
        replayed: total.replayed,
        errors: total.errors + published.errors,
        closed_by_server,
        latency: Latency::of(&hist),
        broadcast_reach_ms,
        server: sf,
        loadgen_rss_after_ramp_bytes,
        loadgen_cpu_percent_mean: mean(timeline.iter().filter_map(|p| p.loadgen_cpu_percent)),
        loadgen_cpu_us_per_delivery: gen_cpu_secs
            .filter(|_| total.deliveries > 0)
            .map(|s| s * 1e6 / total.deliveries as f64),
        first_errors: first_errors.into_iter().chain(published.first_error).collect(),
        held: None,
        flood_published,
        timeline,
        histogram: buckets(&coarse(&hist)),
    };
    live.say(&format!(
        "{}: {} clients ({} failed), {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, missing {}, gaps {}, lag notices {}, out of order {}, duplicated {}, errors {}{}",
        r.label,
        r.connected,
        r.connect_failures,
        r.deliveries_per_sec,
        r.latency.p50_us as f64 / 1e3,
        r.latency.p99_us as f64 / 1e3,
        r.latency.max_us as f64 / 1e3,
        r.missing,
        r.gap_messages,
        r.lag_notices,
        r.out_of_order,
        r.duplicates,
        r.errors,
        r.broadcast_reach_ms.map(|m| format!(", broadcast reached all in {m:.1} ms")).unwrap_or_default()
    ));
    Ok(r)
}
