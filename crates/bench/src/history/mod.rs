//! `fanout-bench history`: what a topic's history and joins from a position
//! cost (issue 13, "Cost:"), measured in one process run.
//!
//! # Three measurements
//!
//! 1. **Publishing with history on vs off** (`publish.rs`): one topic of N
//!    subscribers (default 10,000), each drained by its own task
//!    (`recv_many`, up to 256) on a 2-worker tokio runtime, one publisher task
//!    publishing runs of 64 (`publish_many`), paced as in `fanout-bench hub`
//!    so that nobody loses a message. The same run on a hub without history
//!    and on one with the server's default (128 messages, 300 s TTL), both
//!    in every round, in ABBA order (off, on; on, off; …); figures are
//!    medians over rounds, as wall nanoseconds per delivery.
//!    A single-thread probe adds the history's own cost per run of 64 (one
//!    subscriber, publish and drain on one thread, on vs off), which the
//!    noise of two busy cores cannot hide.
//! 2. **Joins from a position** (`join.rs`): one topic with 100,000
//!    subscribers (joined before the clock starts, each drained by a task), a
//!    history of 128. A new subscriber joins with
//!    `Hub::join_from(id, topic, JoinFrom::After(position))` from 10 to 50
//!    messages back, one due every 2 ms (open loop); each `join_from` call
//!    is timed on its own, and from when it was due. Two cases:
//!    `idle` (nobody publishes) and `publishing R/s` (a thread publishes runs
//!    of 64 at a steady rate R; one case per rate, default 2 and 0.5). A join waits for the walk in progress, and a
//!    publish that arrives while a join holds the walk is delivered by the
//!    join itself when it ends the walk; so each join is also classified by
//!    whether its interval overlapped a publish call, and the publish calls
//!    (each one a walk over every subscriber) are timed too.
//!    Every join is checked after its timing: `recovered`, and the replayed
//!    messages are in its ring, consecutive, ending at the hand-off position.
//! 3. **Memory per topic** (`memory.rs`): 10,000 topics, each holding a
//!    handle and 128 published messages of a 32-byte payload, on a hub with
//!    the default history and on one without; the live heap (the counting
//!    allocator: bytes requested, without the C allocator's overhead) and the
//!    RSS, each as a difference over the hub's creation.
//!
//! The report (`report.rs`) is `DIR/history.json`, `DIR/history.md` and
//! `DIR/history-joins.csv` (every timed join), written by the tool with the
//! machine section `hub.json` has.

mod join;
mod memory;
mod publish;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

/// The server's default history: messages kept per topic.
pub const HISTORY_SIZE: usize = 128;
/// The server's default history TTL.
pub const HISTORY_TTL: Duration = Duration::from_secs(300);
/// Messages per publish call.
pub const BATCH: u64 = 64;

/// `fanout-bench history` options.
#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Directory for history.json and history.md.
    #[arg(long)]
    pub out: PathBuf,
    /// A tiny run (for tests): 1,000 subscribers, 2 rounds, 500 at the joins, 60 joins (5 ms apart, 5 runs/s), 200 topics.
    #[arg(long)]
    pub quick: bool,
    /// Publish cost: subscribers of the topic (default 10,000).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Publish cost: rounds, each one run with history off and one with it on, in ABBA order (default 9).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Publish cost: messages each subscriber receives per run (default 4,096).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Joins: subscribers already in the topic (default 100,000).
    #[arg(long)]
    pub join_subscribers: Option<usize>,
    /// Joins: timed joins per case (default 2,000).
    #[arg(long)]
    pub joins: Option<usize>,
    /// Joins: pause between two joins, microseconds (default 2,000; quick 5,000).
    #[arg(long)]
    pub join_interval_us: Option<u64>,
    /// Joins: one `publishing` case per rate, runs of 64 published per second (default 2,0.5; quick 5).
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Joins: join with `JoinFrom::Now` instead of from a position (a plain
    /// subscribe through `Engine::join_from`, as the WebSocket server's is):
    /// nothing is replayed, `recovered` is false.
    #[arg(long)]
    pub join_now: bool,
    /// Memory: topics (default 10,000).
    #[arg(long)]
    pub topics: Option<usize>,
    /// Parts to run (default all); the report leaves the others empty.
    #[arg(long, value_delimiter = ',')]
    pub parts: Option<Vec<Part>>,
}

/// The three measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Memory per topic.
    Memory,
    /// Publishing with history on vs off.
    Publish,
    /// Joins from a position.
    Join,
}

/// The settings a run used (after defaults).
#[derive(serde::Serialize, Clone, Debug)]
pub struct Settings {
    pub history_size: usize,
    pub history_ttl_s: u64,
    pub batch: u64,
    pub publish_subscribers: usize,
    pub publish_rounds: usize,
    pub publish_messages_per_subscriber: u64,
    pub join_subscribers: usize,
    pub joins_per_case: usize,
    pub join_interval_us: u64,
    pub join_back_min: u64,
    pub join_back_max: u64,
    pub publish_rates_runs_per_s: Vec<f64>,
    /// Joins with `JoinFrom::Now` (`--join-now`) instead of from a position.
    pub join_now: bool,
    pub memory_topics: usize,
    pub memory_payload_bytes: usize,
}

impl Settings {
    fn from_args(a: &HistoryArgs) -> Settings {
        let q = a.quick;
        Settings {
            history_size: HISTORY_SIZE,
            history_ttl_s: HISTORY_TTL.as_secs(),
            batch: BATCH,
            publish_subscribers: a.subscribers.unwrap_or(if q { 1000 } else { 10_000 }),
            publish_rounds: a.rounds.unwrap_or(if q { 2 } else { 9 }).max(1),
            publish_messages_per_subscriber: a.messages.unwrap_or(if q { 256 } else { 4096 }).div_ceil(BATCH)
                * BATCH,
            join_subscribers: a.join_subscribers.unwrap_or(if q { 500 } else { 100_000 }),
            joins_per_case: a.joins.unwrap_or(if q { 60 } else { 2000 }).max(1),
            join_interval_us: a.join_interval_us.unwrap_or(if q { 5000 } else { 2000 }),
            join_back_min: join::BACK_MIN,
            join_back_max: join::BACK_MAX,
            join_now: a.join_now,
            publish_rates_runs_per_s: a.rates.clone().unwrap_or(if q { vec![5.0] } else { vec![2.0, 0.5] }),
            memory_topics: a.topics.unwrap_or(if q { 200 } else { 10_000 }),
            memory_payload_bytes: memory::PAYLOAD,
        }
    }
}

/// Runs the three measurements and writes the report; returns its two paths.
pub fn main(args: &HistoryArgs) -> Result<(PathBuf, PathBuf), String> {
    let settings = Settings::from_args(args);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let started = Instant::now();
    let watch = crate::machine::Watch::start();
    let say = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());

    let parts = args.parts.clone().unwrap_or(vec![Part::Memory, Part::Publish, Part::Join]);
    // Memory first: the process's heap is smallest and least fragmented then.
    let memory = parts.contains(&Part::Memory).then(|| {
        say("memory per topic");
        let m = memory::run(settings.memory_topics);
        say(&format!(
            "memory: {:.0} heap bytes per topic for the history ({} topics)",
            m.history_heap_bytes_per_topic, m.topics
        ));
        m
    });
    let publish = parts.contains(&Part::Publish).then(|| publish::run(&settings, &say));
    let join = parts.contains(&Part::Join).then(|| join::run(&settings, &say));
    let machine = watch.finish(started);
    let report = report::Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        wall_seconds: started.elapsed().as_secs_f64(),
        machine,
        settings,
        parts,
        publish_cost: publish,
        join,
        memory,
    };
    report::write(&args.out, &report)
}

/// Percentiles of a histogram, in nanoseconds.
#[derive(serde::Serialize, Clone, Debug, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Percentiles {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
