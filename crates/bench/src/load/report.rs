//! The load-test report: `report.json`, `report.md` and the SVG plots.
//!
//! # `report.json`, schema `fanout-bench/load/2`
//!
//! Fields are only ever added within a schema version; a rename or a change of
//! meaning bumps the version. Version 2 (issue 11): latency is measured from
//! each message's *due* time by the publishing schedule, not from when its
//! request was written (no coordinated omission); several publishers share the
//! schedule (`publishers`); a seq going backwards is no longer an `error` but
//! `out_of_order` or `duplicates`; new: `unexplained_gaps`, `seq_missing`,
//! `clients_disordered`, and per second `out_of_order`, `duplicates`. Added
//! since (issue 15): `setup.nodes`, `setup.kill_node_after_secs`, per run
//! `failovers`, `killed_node {node, pid, at_secs, clients}`, `server.pids`,
//! `server.rss_total_per_connection_bytes`; with several nodes the server
//! figures are sums over them. Times are microseconds (`_us`), milliseconds
//! (`_ms`) or seconds (`_secs`) as their suffix says; sizes are bytes; CPU is a
//! percentage of one core.
//!
//! ```text
//! schema            "fanout-bench/load/2"
//! command           the command line that produced the report
//! started_unix      start time, seconds since the Unix epoch
//! machine           {cores, memory_bytes, cpu, os, open_files_limit, commit, dirty, loadavg}
//! setup             {url (comma-separated with several nodes), nodes, kill_node_after_secs, clients, topics, topics_per_client, payload_size, zipf, publishers, duration_secs,
//!                    idle, stalled_fraction, stall_flood_rate, stall_flood_size, workers, clients_per_worker, source_addresses,
//!                    mode: "single"|"compare"|"search", engines, rates, p99_bound_ms}
//! runs[]            one per run, in the order they ran (see run::RunResult):
//!   label, engine, target_rate, achieved_rate, publishers, clients, connected, connect_failures,
//!   stalled_clients, ramp_secs, steady_secs, published, publish_requests, publish_errors,
//!   server_delivered, server_dropped, expected_deliveries, deliveries, deliveries_per_sec,
//!   missing (expected − received: every lost message), gaps (seq jumps),
//!   gap_messages (messages those jumps skipped), lag_notices, lagged_messages,
//!   unexplained_gaps (jumps with no lag notice just before), out_of_order (pushes
//!   overtaken by a later one), duplicates (pushes received twice), seq_missing (gaps
//!   never filled when each client ended), clients_disordered (clients with at least one
//!   push out of order or duplicated), reconnects, failovers, killed_node, recovered,
//!   not_recovered, replayed, errors, closed_by_server,
//!   latency {count, p50_us, p90_us, p99_us, p999_us, max_us, mean_us} (from the due time),
//!   broadcast_reach_ms (idle runs), server {pid, pids, rss_before_bytes, rss_after_ramp_bytes,
//!   rss_end_bytes, rss_peak_bytes, rss_per_connection_bytes, rss_total_per_connection_bytes, cpu_percent_mean,
//!   metrics {messages_per_write, evicted, dropped, delivered, lag_notices}},
//!   loadgen_cpu_percent_mean, loadgen_rss_after_ramp_bytes, loadgen_cpu_us_per_delivery, first_errors[], flood_published, held,
//!   timeline[] {t, deliveries_per_sec, published_per_sec, p50_us, p99_us, p999_us, max_us,
//!               connections, gaps, out_of_order, duplicates, errors, server_rss_bytes, server_cpu_percent,
//!               loadgen_cpu_percent, loadavg_1m},
//!   histogram[] [value_us, count], 2 significant digits (the percentiles above come
//!               from the full 3-digit histogram)
//! capacity[]        search only, per engine: {engine, highest_rate_held,
//!                    deliveries_per_sec, p99_us, first_failed_rate, failed_because}
//! plots[]           the SVG files written
//! ```
//!
//! # `report.md`
//!
//! The setup, the machine, one table row per run, the capacity result, a
//! reading generated from the figures (what held, ratios between engines at the
//! same rate), and the plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::procstat::Machine;
use super::run::RunResult;

/// The setup shared by every run of a report.
#[derive(Serialize, Clone, Debug)]
pub struct Setup {
    pub url: String,
    /// Server processes per run (spawned, or named by `--urls`).
    pub nodes: usize,
    /// `--kill-node-after`, seconds into the steady phase.
    pub kill_node_after_secs: Option<f64>,
    pub clients: usize,
    pub topics: u32,
    pub topics_per_client: u32,
    pub payload_size: usize,
    pub zipf: f64,
    /// Concurrent publishers sharing the rate.
    pub publishers: u32,
    pub duration_secs: f64,
    pub idle: bool,
    pub stalled_fraction: f64,
    /// Share of reading clients that reconnect with `since`, and how often.
    pub reconnect_fraction: f64,
    pub reconnect_every_secs: f64,
    pub stall_flood_rate: f64,
    pub stall_flood_size: usize,
    pub workers: usize,
    pub clients_per_worker: Vec<usize>,
    pub source_addresses: String,
    pub mode: &'static str,
    pub engines: Vec<String>,
    pub rates: Vec<f64>,
    pub p99_bound_ms: f64,
    pub server_command: Option<String>,
}

/// The result of a capacity search for one engine.
#[derive(Serialize, Clone, Debug)]
pub struct Capacity {
    pub engine: String,
    pub highest_rate_held: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub p99_us: Option<u64>,
    pub first_failed_rate: Option<f64>,
    pub failed_because: Option<String>,
}

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub command: String,
    pub started_unix: u64,
    pub machine: Machine,
    pub setup: Setup,
    pub runs: Vec<RunResult>,
    pub capacity: Vec<Capacity>,
    pub plots: Vec<String>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1048576.0)
}

/// Writes `report.json` and `report.md` into `dir`.
pub fn write(dir: &Path, r: &Report) -> Result<(), String> {
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.json"), json).map_err(|e| format!("report.json: {e}"))?;
    std::fs::write(dir.join("report.md"), markdown(r)).map_err(|e| format!("report.md: {e}"))
}

fn markdown(r: &Report) -> String {
    let s = &r.setup;
    let m = &r.machine;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Load test: {} clients, {} topic(s), {}-byte payloads\n",
        s.clients, s.topics, s.payload_size
    );
    let _ = writeln!(o, "```sh\n{}\n```\n", r.command);
    let _ = writeln!(o, "## Setup\n");
    let _ = writeln!(
        o,
        "- **Machine:** {} cores ({}), {:.1} GiB memory, {}; open-files limit {} per process; load average at the end {} (the machine is shared).",
        m.cores,
        m.cpu,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.os,
        opt(m.open_files_limit, |v| v.to_string()),
        opt(m.loadavg, |l| format!("{:.1} / {:.1} / {:.1}", l[0], l[1], l[2]))
    );
    let _ = writeln!(
        o,
        "- **Build:** `fanout-bench` from commit {}{}.",
        m.commit.as_deref().unwrap_or("unknown"),
        if m.dirty == Some(true) { " (with uncommitted changes to its sources)" } else { "" },
    );
    let _ = writeln!(
        o,
        "- **Clients:** {} WebSocket clients in {} worker process(es) ({:?}), from source addresses {}; each subscribed to {} of {} topic(s){}.",
        s.clients,
        s.workers,
        s.clients_per_worker,
        s.source_addresses,
        s.topics_per_client,
        s.topics,
        if s.stalled_fraction > 0.0 {
            format!(
                "; {:.1} % of them stop reading after subscribing{}",
                s.stalled_fraction * 100.0,
                if s.stall_flood_rate > 0.0 {
                    format!(
                        " and also subscribe to a `flood` topic fed {} × {}-byte messages/s, so that the server's buffers for them fill and eviction runs",
                        s.stall_flood_rate, s.stall_flood_size
                    )
                } else {
                    String::new()
                }
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "- **Load:** {}{} over `POST /api/publish` by {} concurrent publisher(s) on one schedule, each on its own keep-alive connection (one request per due message, batched when several are due), {}-byte JSON payloads stamped with the time each message was due; {} s per run.",
        if s.idle { "idle hold, then one message per topic".to_string() } else { format!("target rates {:?} messages/s", s.rates) },
        if s.zipf > 0.0 { format!(" (mixed: topic i gets a share ∝ 1/(i+1)^{})", s.zipf) } else { String::new() },
        s.publishers,
        s.payload_size,
        s.duration_secs
    );
    let _ = writeln!(
        o,
        "- **Server:** {}{} (mode: {}).",
        opt(s.server_command.clone(), |c| format!("`{c}`")),
        if s.nodes > 1 {
            format!(
                ", {} processes (nodes) per run, each on its own port: client `id` on node `id mod {}`, publisher `p` on node `p mod {}`{}; server figures are sums over the nodes",
                s.nodes,
                s.nodes,
                s.nodes - usize::from(s.kill_node_after_secs.is_some()),
                s.kill_node_after_secs.map_or(String::new(), |k| format!(
                    " (publishers only on the nodes that stay up); the last node is killed with SIGKILL {k} s into the steady phase and its clients fail over to the next node with `since`"
                ))
            )
        } else {
            String::new()
        },
        s.mode
    );
    let _ = writeln!(
        o,
        "- **Latency** is from the time each message was due by the publishing schedule (so a publisher held up by the server does not hide the wait) to the client's clock when the frame is parsed, same machine. Client and server share the {} cores.\n- **Order:** every client checks each topic's `seq`: *out of order* = a push overtaken by a later one, *duplicated* = received twice, *seq missing* = gaps never filled; each summed over clients.\n",
        m.cores
    );
    let _ = writeln!(o, "## Results\n");
    let _ = writeln!(
        o,
        "| run | connected | msg/s sent | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | missing | gaps | lag notices | out of order | duplicated | seq missing | clients disordered | evicted | server RSS/conn | server CPU | loadgen CPU | loadgen µs/delivery | msgs/write | held |"
    );
    let _ = writeln!(o, "|{}", " --- |".repeat(22));
    for x in &r.runs {
        let met = x.server.metrics.as_ref();
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.label,
            x.connected,
            x.achieved_rate,
            x.deliveries_per_sec,
            ms(x.latency.p50_us),
            ms(x.latency.p99_us),
            ms(x.latency.p999_us),
            ms(x.latency.max_us),
            x.missing,
            x.gap_messages,
            x.lag_notices,
            x.out_of_order,
            x.duplicates,
            x.seq_missing,
            x.clients_disordered,
            opt(met.and_then(|m| m.evicted), |v| format!("{v:.0}")),
            opt(x.server.rss_per_connection_bytes, kib),
            opt(x.server.cpu_percent_mean, |v| format!("{v:.0} %")),
            opt(x.loadgen_cpu_percent_mean, |v| format!("{v:.0} %")),
            opt(x.loadgen_cpu_us_per_delivery, |v| format!("{v:.2}")),
            opt(met.and_then(|m| m.messages_per_write), |v| format!("{v:.1}")),
            opt(x.held, |h| if h { "yes".into() } else { "**no**".into() }),
        );
    }
    let idle: Vec<&RunResult> = r.runs.iter().filter(|x| x.broadcast_reach_ms.is_some() || s.idle).collect();
    if !idle.is_empty() {
        let _ = writeln!(o, "\n### Idle connections\n");
        let _ = writeln!(o, "| run | connected | RSS before | RSS after ramp | RSS end of hold | RSS per connection | broadcast reached all in |");
        let _ = writeln!(o, "|{}", " --- |".repeat(7));
        for x in idle {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                x.label,
                x.connected,
                opt(x.server.rss_before_bytes, mib),
                opt(x.server.rss_after_ramp_bytes, mib),
                opt(x.server.rss_end_bytes, mib),
                opt(x.server.rss_per_connection_bytes, kib),
                opt(x.broadcast_reach_ms, |v| format!("{v:.1} ms")),
            );
        }
    }
    if !r.capacity.is_empty() {
        let _ =
            writeln!(o, "\n## Capacity (p99 ≤ {} ms, nothing lost, publisher on target)\n", s.p99_bound_ms);
        let _ = writeln!(o, "| engine | highest rate held, msg/s | deliveries/s there | p99 there, ms | first failed rate | why |");
        let _ = writeln!(o, "|{}", " --- |".repeat(6));
        for c in &r.capacity {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                c.engine,
                opt(c.highest_rate_held, |v| format!("{v:.0}")),
                opt(c.deliveries_per_sec, |v| format!("{v:.0}")),
                opt(c.p99_us, ms),
                opt(c.first_failed_rate, |v| format!("{v:.0}")),
                c.failed_because.clone().unwrap_or_else(|| "— (every step held)".into()),
            );
        }
    }
    let _ = writeln!(o, "\n## Reading\n");
    o.push_str(&reading(r));
    let _ = writeln!(o, "\n## Plots\n");
    for p in &r.plots {
        let _ = writeln!(o, "![{p}]({p})\n");
    }
    let errs: Vec<&String> = r.runs.iter().flat_map(|x| x.first_errors.iter()).take(10).collect();
    if !errs.is_empty() {
        let _ = writeln!(o, "## First errors\n");
        for e in errs {
            let _ = writeln!(o, "- `{e}`");
        }
    }
    o
}

/// Sentences computed from the figures.
fn reading(r: &Report) -> String {
    let mut o = String::new();
    let lost: u64 = r.runs.iter().map(|x| x.missing.max(0) as u64).sum();
    let _ = writeln!(
        o,
        "- Messages lost over all runs: {lost} (counted as expected − received; seq gaps never filled: {}; lag notices: {}).",
        r.runs.iter().map(|x| x.seq_missing).sum::<u64>(),
        r.runs.iter().map(|x| x.lag_notices).sum::<u64>()
    );
    for x in &r.runs {
        if x.out_of_order + x.duplicates > 0 {
            let _ = writeln!(
                o,
                "- **{}: order broken** with {} publisher(s): {} pushes out of order and {} duplicated, in {} of {} clients.",
                x.label, x.publishers, x.out_of_order, x.duplicates, x.clients_disordered, x.connected
            );
        }
    }
    for x in r.runs.iter().filter(|x| x.reconnects > 0) {
        let _ = writeln!(
            o,
            "- **{}: recovery** — {} reconnections with `since`: {} resubscriptions recovered ({} messages replayed), {} not recovered; across them {} messages never received and {} received twice.",
            x.label, x.reconnects, x.recovered, x.replayed, x.not_recovered, x.seq_missing, x.duplicates
        );
    }
    for x in &r.runs {
        if let Some(k) = &x.killed_node {
            let _ = writeln!(
                o,
                "- **{}: node {} killed** (SIGKILL, pid {}) at {:.1} s with {} reading clients on it: {} failovers to another node with `since`, {} resubscriptions recovered ({} messages replayed), {} not recovered; messages lost {} (expected − received), seq gaps never filled {}, received twice {}.",
                x.label,
                k.node,
                k.pid,
                k.at_secs,
                k.clients,
                x.failovers,
                x.recovered,
                x.replayed,
                x.not_recovered,
                x.missing,
                x.seq_missing,
                x.duplicates
            );
        }
    }
    for x in r.runs.iter().filter(|x| x.server.pids.len() > 1) {
        let _ = writeln!(
            o,
            "- **{}:** {} connections over {} nodes: server RSS {} after the ramp in all, {} per connection ({} above the nodes' RSS before the ramp); the load generator's workers {} in all. Ramp {:.1} s.",
            x.label,
            x.connected,
            x.server.pids.len(),
            opt(x.server.rss_after_ramp_bytes, mib),
            opt(x.server.rss_total_per_connection_bytes, kib),
            opt(x.server.rss_per_connection_bytes, kib),
            opt(x.loadgen_rss_after_ramp_bytes, mib),
            x.ramp_secs
        );
    }
    let ordered = r.runs.iter().filter(|x| x.out_of_order + x.duplicates == 0).count();
    let _ = writeln!(
        o,
        "- Order held (no push out of order or duplicated) in {ordered} of {} run(s).",
        r.runs.len()
    );
    // Engines at the same rate: ratios of p99 and server CPU.
    let mut rates: Vec<f64> = r.runs.iter().map(|x| x.target_rate).collect();
    rates.dedup();
    for rate in rates {
        let at: Vec<&RunResult> =
            r.runs.iter().filter(|x| x.target_rate == rate && x.engine.is_some()).collect();
        if let (Some(f), Some(m)) = (
            at.iter().find(|x| x.engine.as_deref() == Some("fanout")),
            at.iter().find(|x| x.engine.as_deref() == Some("mutex")),
        ) {
            let _ = writeln!(
                o,
                "- At {rate} msg/s: p99 fanout {} ms vs mutex {} ms ({:.2}x); server CPU {} vs {}.",
                ms(f.latency.p99_us),
                ms(m.latency.p99_us),
                m.latency.p99_us as f64 / f.latency.p99_us.max(1) as f64,
                opt(f.server.cpu_percent_mean, |v| format!("{v:.0} %")),
                opt(m.server.cpu_percent_mean, |v| format!("{v:.0} %")),
            );
        }
    }
    for c in &r.capacity {
        let _ = writeln!(
            o,
            "- {}: held up to {} msg/s ({} deliveries/s){}.",
            c.engine,
            opt(c.highest_rate_held, |v| format!("{v:.0}")),
            opt(c.deliveries_per_sec, |v| format!("{v:.0}")),
            c.failed_because.as_ref().map(|w| format!("; the next step failed: {w}")).unwrap_or_default()
        );
    }
    if let Some(x) = r.runs.iter().filter_map(|x| x.loadgen_cpu_us_per_delivery).reduce(f64::min) {
        let _ = writeln!(
            o,
            "- The load generator spent at least {x:.2} µs of CPU per delivery; on a shared 2-core machine every µs it spends is taken from the server."
        );
    }
    o
}
