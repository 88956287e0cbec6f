//! `fanout-bench hub`: the in-process scenarios, one code path for every engine.
//!
//! # What a run is
//!
//! One run = one scenario × one engine × one subscriber count N × one batch
//! size, on a fresh tokio runtime with 2 worker threads and a fresh engine made
//! inside it (so that the mutex hub's run loop is a task on that runtime, as
//! Go's run loop is a goroutine on Go's scheduler). N subscribers are created
//! (and, in `topics` and `same_topic`, joined to their topics) before the clock
//! starts; every *healthy* subscriber is drained by its own task, which calls
//! `recv_many(&mut buf, 256)` in a loop. The publisher(s) are tasks on the same
//! runtime. Everything goes through [`fanout_core::Engine`] (`run.rs`).
//!
//! The clock runs from the first publish to the moment every healthy subscriber
//! has received every message (or no progress was made for 2 s, which is then
//! reported as lost messages).
//!
//! # One message per call, and 64
//!
//! Every scenario runs at both batch sizes (`--batches 1,64`); each record says
//! which (`"batch"`). Batch 1 is one `broadcast` / `publish` call per message.
//! Batch 64 is one `broadcast_many` / `publish_many` call of 64 messages: the
//! fanout engine's batch path (a run of messages pushed into each ring per
//! pass), and for the baselines their natural equivalent, the trait's default,
//! which publishes the 64 one by one (the Go hub has no batch; a tokio
//! broadcast channel sends one value at a time).
//!
//! # Pacing: nobody loses a message
//!
//! A publisher that outruns its subscribers only measures drops. Before each
//! publish call, a publisher waits until every healthy subscriber has received
//! enough that, after the call, none is more than [`WINDOW`] = 192 messages (3/4
//! of the capacity of 256) behind what was published or reserved (`tasks.rs`).
//! That keeps fanout's rings under their high-water mark (80 %), the mutex hub's
//! channels and its 256-slot broadcast channel below full, and tokio
//! broadcast's ring from overwriting unread slots. Losses are still counted and
//! reported.
//!
//! # Order
//!
//! In `same_topic` every subscriber checks, as it receives, that the topic's
//! `seq`s strictly increase with gaps only where a lag was reported
//! ([`fanout_bench::order`]). The record carries the verdict
//! (`order_violations`, with the first violation); any violation makes
//! `fanout-bench hub` fail (non-zero exit) after writing the report.
//!
//! # Figures
//!
//! - deliveries/s and ns per delivery (wall time, both cores busy);
//! - deliveries per wake: messages received / receive calls that had to park
//!   (the task returned `Pending` and was woken later);
//! - publish-call latency (one call) p50, p99, p99.9; publish-to-receive
//!   latency p50/p99, from a sample of up to 128 subscribers (one clock read per
//!   received batch);
//! - allocations per publish (a counting global allocator, over the window);
//! - churn: subscribe-call latency p99; slow subscribers: evictions and peak RSS.
//!
//! # Scenarios
//!
//! See [`Scenario`]. Every engine runs every scenario; `tokio_broadcast` uses
//! one channel per topic in `topics` and `same_topic`, and its subscribers there
//! hold no receiver of the idle hub-wide channel.

mod run;
pub(crate) mod tasks;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use fanout_bench::order::OrderCounts;
use hdrhistogram::Histogram;

use crate::report::{self, Record};

/// Messages a healthy subscriber may be behind, at most (3/4 of 256).
pub const WINDOW: u64 = 192;
/// Batch sizes run by default: one message per call, and 64.
const BATCHES: [u64; 2] = [1, 64];
/// Most messages a receiver takes per `recv_many`.
const RECV_MAX: usize = 256;
/// Topics in the `topics` scenario, and topics per subscriber. Subscriber i
/// joins the topics ≡ i (mod 100), so every aligned slice of 100 topics holds
/// each subscriber exactly once.
const TOPICS: usize = 1000;
const TOPICS_PER_SUB: usize = 10;
/// Topics per slice (see [`TOPICS`]).
const TOPIC_SLICE: usize = TOPICS / TOPICS_PER_SUB;
/// The topic of `same_topic`.
const SAME_TOPIC: &str = "same";
/// Subscribers sampled for publish-to-receive latency.
const E2E_SAMPLES: usize = 128;
/// Churn: subscribe + unsubscribe per second, and churned subscribers alive at once.
const CHURN_PER_SEC: u64 = 1000;
const CHURN_LIVE: usize = 20;
/// A run gives up waiting for deliveries after this long without progress.
const STALL: Duration = Duration::from_secs(2);

/// `fanout-bench hub` options.
#[derive(Args, Debug, Clone)]
pub struct HubArgs {
    /// A reduced set (N in {100, 1k, 10k}, one round, 2M deliveries per run) that finishes in about a minute.
    #[arg(long)]
    pub quick: bool,
    /// Directory for hub.json and hub.md.
    #[arg(long)]
    pub out: PathBuf,
    /// Rounds per scenario × N × batch (engines alternate within each round); default 3, quick 1.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Target deliveries per run (default 8,000,000, quick 2,000,000).
    #[arg(long)]
    pub deliveries: Option<u64>,
    /// Subscriber counts to run (default 100,1000,10000,100000; quick 100,1000,10000).
    #[arg(long, value_delimiter = ',')]
    pub subscribers: Option<Vec<usize>>,
    /// Scenarios to run, by their report names (default all).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Option<Vec<Scenario>>,
    /// Engines to run (default all).
    #[arg(long, value_delimiter = ',')]
    pub engines: Option<Vec<EngineKind>>,
    /// Messages per publish call to run (default 1,64).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batches: Option<Vec<u64>>,
    /// Members from which the `fanout` engine's topics (and subscribers from
    /// which its broadcasts) go through their shared logs (default: the
    /// hub's, `fanout_core::DEFAULT_SHARED_LOG_FROM`).
    #[arg(long)]
    pub shared_log_from: Option<usize>,
}

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// 1 publisher broadcasting to all N subscribers.
    Fanout,
    /// 4 publishers broadcasting to all N subscribers.
    MultiPublisher,
    /// As `fanout`, while 1,000 subscribe and 1,000 unsubscribe per second run
    /// alongside (on their own thread, each churned subscriber drained by a task).
    Churn,
    /// As `fanout`, with 1 % of subscribers that never read (evicted, or lagging).
    SlowSubscribers,
    /// 1,000 topics, each subscriber in 10; 1 publisher sends a batch to each
    /// topic in turn.
    Topics,
    /// 4 publishers publishing to one topic of N subscribers; every subscriber
    /// checks the topic's order as it receives.
    SameTopic,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Fanout,
        Scenario::MultiPublisher,
        Scenario::Churn,
        Scenario::SlowSubscribers,
        Scenario::Topics,
        Scenario::SameTopic,
    ];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::MultiPublisher => "multi_publisher",
            Scenario::Churn => "churn",
            Scenario::SlowSubscribers => "slow_subscribers",
            Scenario::Topics => "topics",
            Scenario::SameTopic => "same_topic",
        }
    }

    /// Concurrent publishers.
    pub fn publishers(self) -> usize {
        match self {
            Scenario::MultiPublisher | Scenario::SameTopic => 4,
            _ => 1,
        }
    }

    /// Whether subscribers check the order of what they receive.
    fn checks_order(self) -> bool {
        self == Scenario::SameTopic
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EngineKind {
    /// `fanout_core::Hub`, default settings: rings, and a shared log for a
    /// topic (and the broadcasts) from 256 members.
    Fanout,
    /// `fanout_core::Hub` on the rings alone (`HubBuilder::shared_log(0)`),
    /// the default before shared logs (not in the default list).
    FanoutRings,
    /// `fanout_baseline::MutexHub`.
    Mutex,
    /// `fanout_baseline::TokioBroadcast`.
    TokioBroadcast,
    /// `fanout_core::Hub` with shared logs from the first member
    /// (`HubBuilder::shared_log(512).shared_log_from(0)`): broadcasts and
    /// topics delivered through one log each, read by every member with its
    /// own cursor (not in the default list).
    FanoutLog,
    /// `fanout_core::LogEngine`: every subscriber reads one shared log, the
    /// first stage of the shared-log design (not in the default list, and
    /// not for `topics`: every subscriber of it reads every topic).
    Log,
}

impl EngineKind {
    /// Every engine, in the order runs alternate.
    pub const ALL: [EngineKind; 3] = [EngineKind::Fanout, EngineKind::Mutex, EngineKind::TokioBroadcast];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fanout => "fanout",
            EngineKind::FanoutRings => "fanout_rings",
            EngineKind::Mutex => "mutex",
            EngineKind::TokioBroadcast => "tokio_broadcast",
            EngineKind::Log => "log",
            EngineKind::FanoutLog => "fanout_log",
        }
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct RunResult {
    pub messages: u64,
    pub expected: u64,
    pub deliveries: u64,
    pub lagged: u64,
    pub elapsed: Duration,
    pub wakes: u64,
    pub publish: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub subscribe: Option<Histogram<u64>>,
    pub allocations: u64,
    pub evictions: u64,
    pub peak_rss: u64,
    /// Peak live heap during the publish window, above what it was before setup.
    pub peak_heap: u64,
    pub setup: Duration,
    /// The order every subscriber saw, added up (scenarios that check it).
    pub order: Option<OrderCounts>,
    /// The first violation: which subscriber, what it saw.
    pub first_violation: Option<String>,
}

/// One run's parameters.
pub struct Plan {
    scenario: Scenario,
    n: usize,
    /// Messages per publish call.
    batch: u64,
    /// Messages each healthy subscriber must receive.
    per_sub: u64,
    /// `--shared-log-from` for the `fanout` engine.
    log_from: Option<usize>,
}

impl Plan {
    /// The scenario.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// Subscribers.
    pub fn subscribers(&self) -> usize {
        self.n
    }

    /// Messages per publish call.
    pub fn batch(&self) -> u64 {
        self.batch
    }
}

pub(crate) fn hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, sigfig).expect("histogram bounds")
}

pub(crate) fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Runs the harness and writes the report; returns the two paths, or an error
/// (after the report is written) if any run saw its order violated.
pub fn main(args: &HubArgs) -> Result<(PathBuf, PathBuf), String> {
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let budget = args.deliveries.unwrap_or(if args.quick { 2_000_000 } else { 8_000_000 });
    let ns_list = args.subscribers.clone().unwrap_or(if args.quick {
        vec![100, 1000, 10_000]
    } else {
        vec![100, 1000, 10_000, 100_000]
    });
    let scenarios = args.scenarios.clone().unwrap_or(Scenario::ALL.to_vec());
    let engines = args.engines.clone().unwrap_or(EngineKind::ALL.to_vec());
    let batches = args.batches.clone().unwrap_or(BATCHES.to_vec());
    if engines.contains(&EngineKind::Log) && scenarios.contains(&Scenario::Topics) {
        return Err(
            "engine `log` cannot run scenario `topics`: every subscriber of it reads every topic".into()
        );
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;

    let started = Instant::now();
    let watch = crate::machine::Watch::start();
    let mut records = Vec::new();
    for &scenario in &scenarios {
        for &batch in &batches {
            for &n in &ns_list {
                let plan = Plan { log_from: args.shared_log_from, ..plan(scenario, n, batch, budget) };
                let mut results: Vec<Vec<RunResult>> = engines.iter().map(|_| Vec::new()).collect();
                for round in 0..rounds {
                    // A B C, A B C, ...: drift in the machine hits every engine alike.
                    for (k, &kind) in engines.iter().enumerate() {
                        let r = run::run_kind(kind, &plan);
                        say(started, &plan, kind, round, &r);
                        results[k].push(r);
                    }
                }
                for (k, kind) in engines.iter().enumerate() {
                    records.push(Record::from_runs(&plan, *kind, &results[k]));
                }
            }
        }
    }
    let machine = watch.finish(started);
    let session = report::Session {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        rounds,
        budget,
        wall: started.elapsed(),
        machine,
    };
    let paths = report::write(&args.out, session, &records)?;
    let broken: Vec<String> = records
        .iter()
        .filter(|r| r.order_violations.is_some_and(|v| v > 0))
        .map(|r| {
            format!(
                "{} N={} batch {} on {}: {} violations; first: {}",
                r.scenario,
                r.subscribers,
                r.batch,
                r.engine,
                r.order_violations.unwrap_or(0),
                r.first_order_violation.as_deref().unwrap_or("?")
            )
        })
        .collect();
    if broken.is_empty() {
        Ok(paths)
    } else {
        Err(format!(
            "per-topic order violated (report written to {}):\n  {}",
            paths.0.display(),
            broken.join("\n  ")
        ))
    }
}

fn say(started: Instant, plan: &Plan, kind: EngineKind, round: usize, r: &RunResult) {
    eprintln!(
        "[{:>6.1}s] {:<16} N={:<6} batch {:<2} {:<15} round {}: {:>6.1} M deliveries/s, {:>6.1} ns/delivery, \
         {:>5.1}/wake, lost {}{}",
        started.elapsed().as_secs_f64(),
        plan.scenario.name(),
        plan.n,
        plan.batch,
        kind.name(),
        round + 1,
        r.deliveries as f64 / r.elapsed.as_secs_f64() / 1e6,
        ns(r.elapsed) as f64 / r.deliveries.max(1) as f64,
        r.deliveries as f64 / r.wakes.max(1) as f64,
        r.expected - r.deliveries,
        match (&r.order, &r.first_violation) {
            (Some(o), Some(first)) => format!(", ORDER VIOLATED {} times (first: {first})", o.violations()),
            (Some(_), None) => ", order held".to_string(),
            _ => String::new(),
        }
    );
}

/// How many messages each subscriber receives in a run of `scenario` with `n`
/// subscribers: about `budget` deliveries, at least 128 messages each, a
/// multiple of 64.
fn plan(scenario: Scenario, n: usize, batch: u64, budget: u64) -> Plan {
    let healthy = healthy_count(scenario, n) as u64;
    let m = (budget / healthy).clamp(128, 1_000_000);
    Plan { scenario, n, batch, per_sub: m.div_ceil(64) * 64, log_from: None }
}

fn is_slow(scenario: Scenario, i: usize) -> bool {
    scenario == Scenario::SlowSubscribers && i % 100 == 99
}

fn healthy_count(scenario: Scenario, n: usize) -> usize {
    (0..n).filter(|&i| !is_slow(scenario, i)).count()
}
