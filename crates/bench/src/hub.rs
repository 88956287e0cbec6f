//! `fanout-bench hub`: the in-process scenarios, one code path for every engine.
//!
//! # What a run is
//!
//! One run = one scenario × one engine × one subscriber count N, on a fresh
//! engine and a fresh tokio runtime with 2 worker threads. N subscribers are
//! created (and, in `topics`, joined to their topics) before the clock starts;
//! every *healthy* subscriber is drained by its own task, which calls
//! `recv_many(&mut buf, 256)` in a loop. The publisher(s) are tasks on the same
//! runtime. Everything goes through [`fanout_core::Engine`]: fanout's batch path
//! (`broadcast_many` / `publish_many`: a run of messages pushed into each ring
//! per pass) and the baselines' default one-message-at-a-time path (which is
//! what the Go hub does) are reached by the same call.
//!
//! The clock runs from the first publish to the moment every healthy subscriber
//! has received every message (or no progress was made for 2 s, which is then
//! reported as lost messages).
//!
//! # Pacing: nobody loses a message
//!
//! A publisher that outruns its subscribers only measures drops. Before each
//! publish call, a publisher waits until every healthy subscriber has received
//! enough that, after the call, none is more than [`WINDOW`] = 192 messages (3/4
//! of the capacity of 256) behind what was published or reserved. That keeps
//! fanout's rings under their high-water mark (80 %), the mutex hub's channels
//! and its 256-slot broadcast channel below full, and tokio broadcast's ring
//! from overwriting unread slots. Losses are still counted and reported.
//!
//! # Figures
//!
//! - deliveries/s and ns per delivery (wall time, both cores busy);
//! - deliveries per wake: messages received / receive calls that had to park
//!   (the task returned `Pending` and was woken later);
//! - publish-call latency (one `broadcast_many` or `publish_many` call) p50,
//!   p99, p99.9; publish-to-receive latency p50/p99, from a sample of up to 128
//!   subscribers (one clock read per received batch);
//! - allocations per publish (a counting global allocator, over the window);
//! - churn: subscribe-call latency p99; slow subscribers: evictions and peak RSS.
//!
//! # Scenarios
//!
//! See [`Scenario`]. `tokio_broadcast` runs where it applies: fanout,
//! multi_publisher, slow_subscribers and topics (one channel per topic).

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use crossbeam_utils::CachePadded;
use fanout_baseline::{MutexHub, TokioBroadcast};
use fanout_core::{Engine, Hub, Receiver, RecvError};
use hdrhistogram::Histogram;

use crate::report::{self, Record};

/// Messages a healthy subscriber may be behind, at most (3/4 of 256).
pub const WINDOW: u64 = 192;
/// Messages per `broadcast_many` call with one publisher.
const BATCH: u64 = 64;
/// Messages per call with four publishers (4 × 32 in flight per window step).
const MULTI_BATCH: u64 = 32;
/// Most messages a receiver takes per `recv_many`.
const RECV_MAX: usize = 256;
/// Topics in the `topics` scenario, topics per subscriber, messages per
/// `publish_many` to one topic.
const TOPICS: usize = 1000;
const TOPICS_PER_SUB: usize = 10;
const TOPIC_RUN: u64 = 4;
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
    /// A reduced set (N in {100, 1k, 10k}, one round, 2M deliveries per run) that finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Directory for hub.json and hub.md.
    #[arg(long)]
    pub out: PathBuf,
    /// Rounds per scenario × N (engines alternate within each round); default 3, quick 1.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Target deliveries per run (default 8,000,000, quick 2,000,000).
    #[arg(long)]
    pub deliveries: Option<u64>,
    /// Subscriber counts to run (default 100,1000,10000,100000; quick 100,1000,10000).
    #[arg(long, value_delimiter = ',')]
    pub subscribers: Option<Vec<usize>>,
    /// Scenarios to run (default all).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Option<Vec<Scenario>>,
    /// Engines to run (default all that apply).
    #[arg(long, value_delimiter = ',')]
    pub engines: Option<Vec<EngineKind>>,
}

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
    /// 1,000 topics, each subscriber in 10; 1 publisher sends runs of 4 messages
    /// to each topic in turn.
    Topics,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Fanout,
        Scenario::MultiPublisher,
        Scenario::Churn,
        Scenario::SlowSubscribers,
        Scenario::Topics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::MultiPublisher => "multi_publisher",
            Scenario::Churn => "churn",
            Scenario::SlowSubscribers => "slow_subscribers",
            Scenario::Topics => "topics",
        }
    }

    fn publishers(self) -> usize {
        if self == Scenario::MultiPublisher {
            4
        } else {
            1
        }
    }

    /// Engines it applies to.
    fn applies(self, e: EngineKind) -> bool {
        !(e == EngineKind::TokioBroadcast && self == Scenario::Churn)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// `fanout_core::Hub`, default settings.
    Fanout,
    /// `fanout_baseline::MutexHub`.
    Mutex,
    /// `fanout_baseline::TokioBroadcast`.
    TokioBroadcast,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Fanout, EngineKind::Mutex, EngineKind::TokioBroadcast];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fanout => "fanout",
            EngineKind::Mutex => "mutex",
            EngineKind::TokioBroadcast => "tokio_broadcast",
        }
    }
}

/// The payload: when it was published, and a 64-byte body (shared, never copied).
#[derive(Clone, Debug)]
pub struct Tick {
    sent_ns: u64,
    _body: Bytes,
}

static BODY: [u8; 64] = [b'x'; 64];

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
}

struct Plan {
    scenario: Scenario,
    n: usize,
    /// Messages each healthy subscriber must receive.
    per_sub: u64,
}

/// Per healthy subscriber: messages received so far (written by its task only).
type Progress = Arc<Vec<CachePadded<AtomicU64>>>;

fn hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, sigfig).expect("histogram bounds")
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Runs the harness and writes the report; returns the two paths.
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
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;

    let started = Instant::now();
    let mut records = Vec::new();
    for &scenario in &scenarios {
        for &n in &ns_list {
            let plan = plan(scenario, n, budget);
            let kinds: Vec<EngineKind> = engines.iter().copied().filter(|e| scenario.applies(*e)).collect();
            let mut results: Vec<Vec<RunResult>> = kinds.iter().map(|_| Vec::new()).collect();
            for round in 0..rounds {
                // A B C, A B C, ...: drift in the machine hits every engine alike.
                for (k, &kind) in kinds.iter().enumerate() {
                    let r = run_kind(kind, &plan);
                    eprintln!(
                        "[{:>6.1}s] {:<16} N={:<6} {:<15} round {}: {:>6.1} M deliveries/s, {:>6.1} ns/delivery, \
                         {:>5.1}/wake, lost {}",
                        started.elapsed().as_secs_f64(),
                        scenario.name(),
                        n,
                        kind.name(),
                        round + 1,
                        r.deliveries as f64 / r.elapsed.as_secs_f64() / 1e6,
                        ns(r.elapsed) as f64 / r.deliveries.max(1) as f64,
                        r.deliveries as f64 / r.wakes.max(1) as f64,
                        r.expected - r.deliveries,
                    );
                    results[k].push(r);
                }
            }
            for (k, kind) in kinds.iter().enumerate() {
                records.push(Record::from_runs(scenario, *kind, n, scenario.publishers(), &results[k]));
            }
        }
    }
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    report::write(&args.out, &cmd, args.quick, rounds, budget, started.elapsed(), records)
}

/// How many messages each subscriber receives in a run of `scenario` with `n`
/// subscribers: about `budget` deliveries, at least 128 messages each.
fn plan(scenario: Scenario, n: usize, budget: u64) -> Plan {
    let healthy = healthy_count(scenario, n) as u64;
    let per_sub = match scenario {
        Scenario::Topics => {
            // One pass = TOPIC_RUN messages to each topic = 40 per subscriber.
            let per_pass = TOPICS_PER_SUB as u64 * TOPIC_RUN;
            let passes = (budget / (healthy * per_pass)).max(4);
            passes * per_pass
        }
        _ => {
            let step = BATCH.max(MULTI_BATCH * 4);
            let m = (budget / healthy).clamp(128, 1_000_000);
            m.div_ceil(step) * step
        }
    };
    Plan { scenario, n, per_sub }
}

fn is_slow(scenario: Scenario, i: usize) -> bool {
    scenario == Scenario::SlowSubscribers && i % 100 == 99
}

fn healthy_count(scenario: Scenario, n: usize) -> usize {
    (0..n).filter(|&i| !is_slow(scenario, i)).count()
}

fn run_kind(kind: EngineKind, plan: &Plan) -> RunResult {
    match kind {
        EngineKind::Fanout => run(Hub::<Tick>::new(), plan),
        EngineKind::Mutex => run(MutexHub::<Tick>::new(), plan),
        // Topic subscribers of tokio broadcast hold no idle hub-wide receiver.
        EngineKind::TokioBroadcast if plan.scenario == Scenario::Topics => {
            run(TokioBroadcast::<Tick>::topics_only(), plan)
        }
        EngineKind::TokioBroadcast => run(TokioBroadcast::<Tick>::new(), plan),
    }
}

/// What a drain task hands back.
struct Drained {
    received: u64,
    lagged: u64,
    wakes: u64,
    e2e: Option<Histogram<u64>>,
}

/// Awaits `fut`, saying whether it had to park (returned `Pending` once).
async fn parked<F: std::future::Future>(fut: F) -> (F::Output, bool) {
    let mut fut = pin!(fut);
    let mut parked = false;
    let out = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => {
            parked = true;
            Poll::Pending
        }
    })
    .await;
    (out, parked)
}

/// A healthy subscriber's task: drain in batches until closed.
async fn drain<R: Receiver<Tick>>(
    mut rx: R,
    progress: Progress,
    idx: usize,
    mut e2e: Option<Histogram<u64>>,
    base: Instant,
) -> Drained {
    let mut buf = Vec::with_capacity(RECV_MAX);
    let (mut received, mut lagged, mut wakes) = (0u64, 0u64, 0u64);
    loop {
        buf.clear();
        let (res, did_park) = parked(rx.recv_many(&mut buf, RECV_MAX)).await;
        wakes += u64::from(did_park);
        match res {
            Ok(n) => {
                received += n as u64;
                if let Some(h) = e2e.as_mut() {
                    let now = ns(base.elapsed());
                    for m in &buf {
                        h.saturating_record(now.saturating_sub(m.payload().sent_ns).max(1));
                    }
                }
                progress[idx].store(received, Relaxed);
            }
            Err(RecvError::Lagged(k)) => lagged += k,
            Err(RecvError::Closed(_)) => break,
        }
    }
    Drained { received, lagged, wakes, e2e }
}

/// Shared by the publishers: the next message number to reserve, and the
/// subscribers' progress to pace against.
struct Pace {
    next: AtomicU64,
    total: u64,
    progress: Progress,
}

impl Pace {
    /// Waits until every healthy subscriber has received at least
    /// `upto - WINDOW` messages.
    async fn wait(&self, upto: u64) {
        let need = upto.saturating_sub(WINDOW);
        if need == 0 {
            return;
        }
        for p in self.progress.iter() {
            let mut spins = 0u32;
            while p.load(Relaxed) < need {
                spins += 1;
                tokio::task::yield_now().await;
                if spins % 16 == 0 {
                    // Let the other threads (the mutex hub's run loop, the churn
                    // thread) have this core too.
                    std::thread::yield_now();
                }
            }
        }
    }
}

fn ticks(k: u64, base: Instant) -> Vec<Tick> {
    let sent_ns = ns(base.elapsed());
    let body = Bytes::from_static(&BODY);
    (0..k).map(|_| Tick { sent_ns, _body: body.clone() }).collect()
}

/// A broadcasting publisher: reserve a batch, wait for room, publish it.
async fn broadcaster<E: Engine<Tick>>(
    engine: E,
    pace: Arc<Pace>,
    batch: u64,
    base: Instant,
) -> Histogram<u64> {
    let mut h = hist(3);
    loop {
        let start = pace.next.fetch_add(batch, Relaxed);
        if start >= pace.total {
            return h;
        }
        let k = batch.min(pace.total - start);
        pace.wait(start + k).await;
        let payloads = ticks(k, base);
        let t = Instant::now();
        engine.broadcast_many(payloads).expect("engine is open");
        h.saturating_record(ns(t.elapsed()).max(1));
    }
}

fn topic_name(t: usize) -> String {
    format!("topic-{t}")
}

/// The topics publisher: passes over every topic, TOPIC_RUN messages each.
async fn topic_publisher<E: Engine<Tick>>(engine: E, pace: Arc<Pace>, base: Instant) -> Histogram<u64> {
    let mut h = hist(3);
    let names: Vec<String> = (0..TOPICS).map(topic_name).collect();
    let per_pass = TOPICS_PER_SUB as u64 * TOPIC_RUN;
    let mut done = 0;
    while done < pace.total {
        pace.wait(done + per_pass).await;
        for name in &names {
            let payloads = ticks(TOPIC_RUN, base);
            let t = Instant::now();
            engine.publish_many(name, payloads).expect("engine is open");
            h.saturating_record(ns(t.elapsed()).max(1));
        }
        done += per_pass;
    }
    h
}

/// Resident set size of the process, from /proc/self/statm, without
/// allocating (the sampler runs inside the allocation-counting window).
pub fn rss_bytes() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(mut f) = std::fs::File::open("/proc/self/statm") else { return 0 };
    let n = f.read(&mut buf).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(1))
        .and_then(|p| p.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Samples RSS and the live heap every 5 ms until stopped; returns both peaks.
fn memory_monitor(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, i64)> {
    std::thread::spawn(move || {
        let (mut rss, mut heap) = (rss_bytes(), crate::alloc::live_bytes());
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            rss = rss.max(rss_bytes());
            heap = heap.max(crate::alloc::live_bytes());
        }
        (rss, heap)
    })
}

/// Subscribes and unsubscribes CHURN_PER_SEC times a second until stopped;
/// each churned subscriber is drained by a task while it lives. Returns the
/// subscribe-call latencies.
fn churner<E: Engine<Tick>>(
    engine: E,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Histogram<u64>> {
    std::thread::spawn(move || {
        let mut h = hist(3);
        let mut live: VecDeque<tokio::sync::oneshot::Sender<()>> = VecDeque::new();
        let period = Duration::from_nanos(1_000_000_000 / CHURN_PER_SEC);
        let mut next = Instant::now();
        while !stop.load(Relaxed) {
            let t = Instant::now();
            let Ok(mut sub) = engine.subscribe() else { break };
            h.saturating_record(ns(t.elapsed()).max(1));
            let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
            rt.spawn(async move {
                let mut buf = Vec::with_capacity(RECV_MAX);
                loop {
                    buf.clear();
                    tokio::select! {
                        _ = &mut rx => break,
                        r = sub.recv_many(&mut buf, RECV_MAX) => if let Err(RecvError::Closed(_)) = r { break },
                    }
                }
                drop(sub); // unsubscribes
            });
            live.push_back(tx);
            if live.len() > CHURN_LIVE {
                let _ = live.pop_front().expect("non-empty").send(());
            }
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now; // behind: do not burst to catch up
            }
        }
        for tx in live {
            let _ = tx.send(());
        }
        h
    })
}

/// One run of `plan` on `engine`.
fn run<E: Engine<Tick>>(engine: E, plan: &Plan) -> RunResult {
    let scenario = plan.scenario;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let base = Instant::now();
    let setup_start = Instant::now();
    let heap0 = crate::alloc::live_bytes();

    // Subscribers: healthy ones get a drain task; slow ones are kept, unread.
    let healthy = healthy_count(scenario, plan.n);
    let progress: Progress = Arc::new((0..healthy).map(|_| CachePadded::new(AtomicU64::new(0))).collect());
    let stride = (healthy / E2E_SAMPLES).max(1);
    let mut slow = Vec::new();
    let mut tasks = Vec::with_capacity(healthy);
    let mut h_idx = 0;
    for i in 0..plan.n {
        let sub = engine.subscribe().expect("subscribe");
        if scenario == Scenario::Topics {
            for j in 0..TOPICS_PER_SUB {
                // Subscriber i joins topics i, i+100, i+200, ... (mod 1000): each
                // topic gets N/100 members.
                let t = (i + j * (TOPICS / TOPICS_PER_SUB)) % TOPICS;
                engine.join(sub.id(), &topic_name(t)).expect("join");
            }
        }
        if is_slow(scenario, i) {
            slow.push(sub);
            continue;
        }
        let e2e = (h_idx % stride == 0).then(|| hist(2));
        tasks.push(rt.spawn(drain(sub, progress.clone(), h_idx, e2e, base)));
        h_idx += 1;
    }
    let setup = setup_start.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let memory = memory_monitor(stop.clone());
    let churn =
        (scenario == Scenario::Churn).then(|| churner(engine.clone(), rt.handle().clone(), stop.clone()));

    // The publish window.
    let pace = Arc::new(Pace { next: AtomicU64::new(0), total: plan.per_sub, progress: progress.clone() });
    let allocs0 = crate::alloc::allocations();
    let t0 = Instant::now();
    let publishers: Vec<_> = match scenario {
        Scenario::Topics => vec![rt.spawn(topic_publisher(engine.clone(), pace.clone(), base))],
        Scenario::MultiPublisher => {
            (0..4).map(|_| rt.spawn(broadcaster(engine.clone(), pace.clone(), MULTI_BATCH, base))).collect()
        }
        _ => vec![rt.spawn(broadcaster(engine.clone(), pace.clone(), BATCH, base))],
    };
    let mut publish = hist(3);
    for p in publishers {
        let h = rt.block_on(p).expect("publisher task");
        publish.add(&h).expect("same bounds");
    }
    // Wait for every healthy subscriber to have everything (or to stall).
    let mut last_sum = 0;
    let mut last_progress = Instant::now();
    let mut i = 0;
    while i < healthy {
        if progress[i].load(Relaxed) >= plan.per_sub {
            i += 1;
            continue;
        }
        std::thread::sleep(Duration::from_micros(100));
        if last_progress.elapsed() > Duration::from_millis(200) {
            let sum: u64 = progress.iter().map(|p| p.load(Relaxed)).sum();
            if sum == last_sum && last_progress.elapsed() > STALL {
                break;
            }
            if sum != last_sum {
                last_sum = sum;
                last_progress = Instant::now();
            }
        }
    }
    let elapsed = t0.elapsed();
    let allocations = crate::alloc::allocations() - allocs0;
    stop.store(true, Relaxed);
    let subscribe = churn.map(|c| c.join().expect("churn thread"));
    let (peak_rss, peak_live) = memory.join().expect("memory thread");
    let peak_heap = (peak_live - heap0).max(0) as u64;

    let evictions = engine.stats().evicted.slow_consumer;
    engine.shutdown();
    let mut out = RunResult {
        messages: plan.per_sub
            * if scenario == Scenario::Topics { (TOPICS / TOPICS_PER_SUB) as u64 } else { 1 },
        expected: plan.per_sub * healthy as u64,
        deliveries: 0,
        lagged: 0,
        elapsed,
        wakes: 0,
        publish,
        e2e: hist(2),
        subscribe,
        allocations,
        evictions,
        peak_rss,
        peak_heap,
        setup,
    };
    for t in tasks {
        let d = rt.block_on(t).expect("drain task");
        out.deliveries += d.received.min(plan.per_sub);
        out.lagged += d.lagged;
        out.wakes += d.wakes;
        if let Some(h) = d.e2e {
            out.e2e.add(&h).expect("same bounds");
        }
    }
    drop(slow);
    drop(engine);
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}
