//! The report: `hub.json` (machine, records, ratios) and `hub.md` (tables).
//!
//! One record per scenario × batch × engine × N (`batch`: messages per publish
//! call, 1 or 64). Each figure is the median over the
//! rounds (so one noisy round cannot make a headline); per-round deliveries/s
//! are kept in `deliveries_per_sec_rounds` to show the spread. Losses are
//! summed over rounds, and so are evictions; peak heap and RSS are the highest seen.
//! Ratios compare medians measured in the same process run, at the same batch.
//! `order_violations` is the order checker's verdict (`null` where the
//! scenario does not check order), summed over rounds. The machine section
//! (`machine.rs`) is measured, never typed in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use fanout_bench::order::OrderCounts;

use crate::hub::{EngineKind, Plan, RunResult};
use crate::machine::Machine;

/// One scenario × engine × N, medians over rounds.
#[derive(Serialize, Clone)]
pub struct Record {
    pub scenario: &'static str,
    pub engine: &'static str,
    pub subscribers: usize,
    pub publishers: usize,
    /// Messages per publish call: 1 (`broadcast`/`publish`) or 64 (`*_many`).
    pub batch: u64,
    pub rounds: usize,
    /// Messages published per run.
    pub messages: u64,
    /// Deliveries per run (healthy subscribers only).
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub deliveries_per_sec_rounds: Vec<f64>,
    pub ns_per_delivery: f64,
    pub deliveries_per_wake: f64,
    pub publish_p50_ns: u64,
    pub publish_p99_ns: u64,
    pub publish_p999_ns: u64,
    pub e2e_p50_ns: u64,
    pub e2e_p99_ns: u64,
    pub allocations_per_publish: f64,
    pub allocations_per_delivery: f64,
    /// Messages a healthy subscriber did not receive, summed over rounds.
    pub lost: u64,
    /// Of which reported to the subscriber as lag.
    pub lagged: u64,
    /// Subscribers evicted as slow consumers, summed over rounds.
    pub evictions: u64,
    pub subscribe_p99_ns: Option<u64>,
    /// Process RSS peak during the run; includes memory freed by earlier runs
    /// and kept by the C allocator, so compare `peak_heap_bytes` instead.
    pub peak_rss_bytes: u64,
    /// Peak live heap during the publish window, above the level before the
    /// run's subscribers were created (highest over rounds).
    pub peak_heap_bytes: u64,
    pub setup_ms: f64,
    /// Pushes that broke per-topic order (out of order, duplicated, or after a
    /// gap no lag explains), summed over rounds; `null` where not checked.
    pub order_violations: Option<u64>,
    /// The order checker's counts, summed over subscribers and rounds.
    pub order: Option<OrderCounts>,
    /// The first violation seen (round, subscriber, what it saw).
    pub first_order_violation: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_u(v: impl Iterator<Item = u64>) -> u64 {
    median(v.map(|x| x as f64).collect()) as u64
}

impl Record {
    pub fn from_runs(plan: &Plan, engine: EngineKind, runs: &[RunResult]) -> Record {
        let scenario = plan.scenario();
        let rate = |r: &RunResult| r.deliveries as f64 / r.elapsed.as_secs_f64();
        let rounds: Vec<f64> = runs.iter().map(rate).collect();
        let q = |f: &dyn Fn(&RunResult) -> u64| median_u(runs.iter().map(f));
        Record {
            scenario: scenario.name(),
            engine: engine.name(),
            subscribers: plan.subscribers(),
            publishers: scenario.publishers(),
            batch: plan.batch(),
            rounds: runs.len(),
            messages: q(&|r| r.messages),
            deliveries: q(&|r| r.deliveries),
            deliveries_per_sec: median(rounds.clone()),
            deliveries_per_sec_rounds: rounds,
            ns_per_delivery: median(
                runs.iter().map(|r| r.elapsed.as_nanos() as f64 / r.deliveries.max(1) as f64).collect(),
            ),
            deliveries_per_wake: median(
                runs.iter().map(|r| r.deliveries as f64 / r.wakes.max(1) as f64).collect(),
            ),
            publish_p50_ns: q(&|r| r.publish.value_at_quantile(0.5)),
            publish_p99_ns: q(&|r| r.publish.value_at_quantile(0.99)),
            publish_p999_ns: q(&|r| r.publish.value_at_quantile(0.999)),
            e2e_p50_ns: q(&|r| r.e2e.value_at_quantile(0.5)),
            e2e_p99_ns: q(&|r| r.e2e.value_at_quantile(0.99)),
            allocations_per_publish: median(
                runs.iter().map(|r| r.allocations as f64 / r.messages.max(1) as f64).collect(),
            ),
            allocations_per_delivery: median(
                runs.iter().map(|r| r.allocations as f64 / r.deliveries.max(1) as f64).collect(),
            ),
            lost: runs.iter().map(|r| r.expected - r.deliveries).sum(),
            lagged: runs.iter().map(|r| r.lagged).sum(),
            evictions: runs.iter().map(|r| r.evictions).sum(),
            subscribe_p99_ns: runs
                .iter()
                .all(|r| r.subscribe.is_some())
                .then(|| q(&|r| r.subscribe.as_ref().map_or(0, |h| h.value_at_quantile(0.99)))),
            peak_rss_bytes: runs.iter().map(|r| r.peak_rss).max().unwrap_or(0),
            peak_heap_bytes: runs.iter().map(|r| r.peak_heap).max().unwrap_or(0),
            setup_ms: median(runs.iter().map(|r| r.setup.as_secs_f64() * 1e3).collect()),
            order: runs.iter().all(|r| r.order.is_some()).then(|| {
                let mut total = OrderCounts::default();
                runs.iter().filter_map(|r| r.order.as_ref()).for_each(|o| total.add(o));
                total
            }),
            order_violations: None,
            first_order_violation: runs
                .iter()
                .enumerate()
                .find_map(|(i, r)| r.first_violation.as_ref().map(|v| format!("round {}, {v}", i + 1))),
        }
        .with_verdict()
    }

    fn with_verdict(mut self) -> Record {
        self.order_violations = self.order.map(|o| o.violations());
        self
    }
}

/// fanout against the others, for one scenario and N.
#[derive(Serialize)]
pub struct Ratio {
    pub scenario: &'static str,
    pub subscribers: usize,
    pub batch: u64,
    /// fanout deliveries/s ÷ mutex deliveries/s.
    pub fanout_over_mutex: Option<f64>,
    /// fanout deliveries/s ÷ tokio broadcast deliveries/s.
    pub fanout_over_tokio: Option<f64>,
    /// mutex publish p99 ÷ fanout publish p99.
    pub mutex_publish_p99_over_fanout: Option<f64>,
    /// mutex e2e p99 ÷ fanout e2e p99.
    pub mutex_e2e_p99_over_fanout: Option<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    command: &'a str,
    quick: bool,
    rounds: usize,
    target_deliveries_per_run: u64,
    wall_seconds: f64,
    machine: Machine,
    records: &'a [Record],
    ratios: Vec<Ratio>,
}

fn ratios(records: &[Record]) -> Vec<Ratio> {
    let find = |s: &str, e: &str, n: usize, b: u64| {
        records.iter().find(|r| r.scenario == s && r.engine == e && r.subscribers == n && r.batch == b)
    };
    let div = |a: f64, b: f64| (b > 0.0).then_some(a / b);
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.engine == "fanout") {
        let m = find(r.scenario, "mutex", r.subscribers, r.batch);
        let t = find(r.scenario, "tokio_broadcast", r.subscribers, r.batch);
        out.push(Ratio {
            scenario: r.scenario,
            subscribers: r.subscribers,
            batch: r.batch,
            fanout_over_mutex: m.and_then(|m| div(r.deliveries_per_sec, m.deliveries_per_sec)),
            fanout_over_tokio: t.and_then(|t| div(r.deliveries_per_sec, t.deliveries_per_sec)),
            mutex_publish_p99_over_fanout: m
                .and_then(|m| div(m.publish_p99_ns as f64, r.publish_p99_ns as f64)),
            mutex_e2e_p99_over_fanout: m.and_then(|m| div(m.e2e_p99_ns as f64, r.e2e_p99_ns as f64)),
        });
    }
    out
}

fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

pub fn dur(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.0} ms", ns as f64 / 1e6)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// The lowest and highest of a record's rounds (`–` for a single round):
/// on a shared machine a median alone hides how far its rounds spread.
fn spread(rounds: &[f64]) -> String {
    if rounds.len() < 2 {
        return "–".into();
    }
    let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} – {}", si(lo), si(hi))
}

fn x(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}x"))
}

/// The machine, build and quiet lines of a Markdown report (shared by
/// `hub.md` and `history.md`).
pub fn machine_lines(m: &Machine) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {} cores, {:.1} GiB, {}, {}  ",
        m.cores,
        m.memory as f64 / (1u64 << 30) as f64,
        m.cpu,
        m.os
    );
    let _ = writeln!(
        s,
        "Build: commit {}{}, {}, {} profile  ",
        m.commit.as_deref().unwrap_or("unknown"),
        if m.dirty == Some(true) { " (with uncommitted changes to its sources)" } else { "" },
        m.rustc,
        m.profile
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    let _ = writeln!(
        s,
        "Quiet: **{}** (load average before {}, during max {} / mean {}; other processes' CPU {} % of the machine; rule: {})  ",
        if m.quiet { "yes" } else { "no" },
        m.loadavg_before.map_or("–".to_string(), |l| format!("{:.2} / {:.2} / {:.2}", l[0], l[1], l[2])),
        f(m.loadavg_1m_max_during),
        f(m.loadavg_1m_mean_during),
        f(m.other_cpu_percent),
        m.quiet_rule
    );
    s
}

/// The Markdown report.
pub fn markdown(
    cmd: &str,
    m: &Machine,
    rounds: usize,
    wall: Duration,
    records: &[Record],
    ratios: &[Ratio],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# fanout-bench hub\n");
    let _ = writeln!(s, "Command: `{cmd}`  ");
    s.push_str(&machine_lines(m));
    let _ = writeln!(
        s,
        "Rounds: {rounds} (engines alternate within each round; figures are medians); wall time {:.0} s\n",
        wall.as_secs_f64()
    );
    let _ = writeln!(s, "## Ratios (deliveries/s, same run)\n");
    let _ = writeln!(s, "| scenario | batch | N | fanout ÷ mutex | fanout ÷ tokio broadcast | mutex ÷ fanout publish p99 | mutex ÷ fanout e2e p99 |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in ratios {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.batch,
            r.subscribers,
            x(r.fanout_over_mutex),
            x(r.fanout_over_tokio),
            x(r.mutex_publish_p99_over_fanout),
            x(r.mutex_e2e_p99_over_fanout)
        );
    }
    let mut scenarios: Vec<&str> = records.iter().map(|r| r.scenario).collect();
    scenarios.dedup();
    for sc in scenarios {
        let _ = writeln!(s, "\n## {sc}\n");
        let _ = writeln!(
            s,
            "| batch | N | engine | deliveries/s | rounds, lowest – highest | ns/delivery | deliveries/wake | publish p50 / p99 / p99.9 | e2e p50 / p99 | allocs/publish | lost | evicted | subscribe p99 | peak heap | order violations |"
        );
        let _ = writeln!(
            s,
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in records.iter().filter(|r| r.scenario == sc) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} / {} / {} | {} / {} | {:.2} | {} | {} | {} | {:.0} MiB | {} |",
                r.batch,
                r.subscribers,
                r.engine,
                si(r.deliveries_per_sec),
                spread(&r.deliveries_per_sec_rounds),
                r.ns_per_delivery,
                r.deliveries_per_wake,
                dur(r.publish_p50_ns),
                dur(r.publish_p99_ns),
                dur(r.publish_p999_ns),
                dur(r.e2e_p50_ns),
                dur(r.e2e_p99_ns),
                r.allocations_per_publish,
                r.lost,
                r.evictions,
                r.subscribe_p99_ns.map_or("–".into(), dur),
                r.peak_heap_bytes as f64 / (1u64 << 20) as f64,
                r.order_violations.map_or("–".into(), |v| if v == 0 { "0".into() } else { format!("**{v}**") }),
            );
        }
    }
    let broken: Vec<&Record> = records.iter().filter(|r| r.order_violations.is_some_and(|v| v > 0)).collect();
    if !broken.is_empty() {
        let _ = writeln!(s, "\n## Order violations\n");
        for r in broken {
            let _ = writeln!(
                s,
                "- {} batch {} N={} on {}: {} (out of order {}, duplicated {}, unexplained gaps {}); first: {}",
                r.scenario,
                r.batch,
                r.subscribers,
                r.engine,
                r.order_violations.unwrap_or(0),
                r.order.map_or(0, |o| o.out_of_order),
                r.order.map_or(0, |o| o.duplicates),
                r.order.map_or(0, |o| o.unexplained_gaps),
                r.first_order_violation.as_deref().unwrap_or("?")
            );
        }
    }
    s
}

/// What a session of the harness was, for the report's header.
pub struct Session {
    /// The command line.
    pub command: String,
    /// Whether `--quick` chose the defaults.
    pub quick: bool,
    /// Rounds per scenario × batch × N.
    pub rounds: usize,
    /// Target deliveries per run.
    pub budget: u64,
    /// Wall time of the whole session.
    pub wall: Duration,
    /// Where the figures come from (measured, see `machine.rs`).
    pub machine: Machine,
}

/// Writes `out/hub.json` and `out/hub.md`.
pub fn write(out: &Path, session: Session, records: &[Record]) -> Result<(PathBuf, PathBuf), String> {
    let ratios = ratios(records);
    let md = markdown(&session.command, &session.machine, session.rounds, session.wall, records, &ratios);
    let report = Report {
        command: &session.command,
        quick: session.quick,
        rounds: session.rounds,
        target_deliveries_per_run: session.budget,
        wall_seconds: session.wall.as_secs_f64(),
        machine: session.machine,
        records,
        ratios,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let (jp, mp) = (out.join("hub.json"), out.join("hub.md"));
    std::fs::write(&jp, json + "\n").map_err(|e| format!("{}: {e}", jp.display()))?;
    std::fs::write(&mp, md).map_err(|e| format!("{}: {e}", mp.display()))?;
    Ok((jp, mp))
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_shows_the_lowest_and_highest_round() {
        assert_eq!(spread(&[2.0e6, 3.5e6, 1.0e6]), "1.00 M – 3.50 M");
        assert_eq!(spread(&[2.0e6]), "–");
        assert_eq!(spread(&[]), "–");
    }
}
