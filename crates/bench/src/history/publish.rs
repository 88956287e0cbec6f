//! Publishing with history on vs off: one topic, N subscribers, runs of 64,
//! rounds alternating off / on in one process (see the module docs of
//! `history`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use fanout_core::Hub;
use serde::Serialize;

use super::{median, Settings, BATCH, HISTORY_SIZE, HISTORY_TTL};
use crate::hub::tasks::{self, Pace, Progress, Target, Tick};
use crate::hub::{hist, ns};

/// The topic every subscriber joins.
const TOPIC: &str = "history-cost";
/// A run gives up waiting for deliveries after this long without progress.
const STALL: Duration = Duration::from_secs(2);

/// One side (history off, or on): medians over rounds.
#[derive(Serialize, Clone, Debug)]
pub struct Side {
    /// `off` or `on`.
    pub history: &'static str,
    pub history_size: usize,
    /// Median over rounds of wall ns per delivery.
    pub ns_per_delivery: f64,
    /// Each round's ns per delivery, in order.
    pub ns_per_delivery_rounds: Vec<f64>,
    pub deliveries_per_sec: f64,
    /// Deliveries per run (every subscriber × messages).
    pub deliveries: u64,
    pub deliveries_per_wake: f64,
    /// publish_many call (64 messages) latency, median over rounds of each round's p50 / p99.
    pub publish_p50_ns: u64,
    pub publish_p99_ns: u64,
    /// Messages a subscriber did not receive, summed over rounds.
    pub lost: u64,
    pub evicted: u64,
}

/// The comparison.
#[derive(Serialize, Clone, Debug)]
pub struct PublishCost {
    pub subscribers: usize,
    pub batch: u64,
    pub messages_per_subscriber: u64,
    pub rounds: usize,
    pub off: Side,
    pub on: Side,
    /// on ÷ off of the median ns per delivery (1.05 = 5 % slower with history).
    pub ratio_on_over_off: f64,
    /// on ÷ off per round (the two runs of a round are neighbours: off then
    /// on in rounds 1, 3, …, on then off in rounds 2, 4, …).
    pub ratio_rounds: Vec<f64>,
    /// (ratio − 1) × 100.
    pub slower_percent: f64,
    pub target: &'static str,
    pub target_met: bool,
    /// The history's own cost, measured on one thread (see [`Probe`]).
    pub probe: Probe,
}

/// The history's own cost per run, without the noise of two busy cores: one
/// thread publishes a run of 64 to a topic with one subscriber and drains it
/// (`try_recv`), `runs_per_block` times, on a hub without history and on one
/// with the default, blocks alternating in ABBA order. The difference is what
/// keeping the history adds per run (appending the run, dropping the oldest
/// 64, the lookup that keeps the topic alive); `implied_percent` sets it
/// against the off side's median wall time per run of the main comparison
/// (ns per delivery × 64 × subscribers).
#[derive(Serialize, Clone, Debug)]
pub struct Probe {
    pub blocks: usize,
    pub runs_per_block: usize,
    /// Median over blocks, ns per run of 64 (publish + drain).
    pub off_ns_per_run: f64,
    pub on_ns_per_run: f64,
    /// on − off, ns per run.
    pub history_ns_per_run: f64,
    /// on − off per block (neighbouring blocks paired).
    pub history_ns_per_run_blocks: Vec<f64>,
    /// history_ns_per_run ÷ (off ns per delivery × 64 × subscribers) × 100.
    pub implied_percent: f64,
}

struct Run {
    elapsed: Duration,
    deliveries: u64,
    expected: u64,
    wakes: u64,
    evicted: u64,
    publish: hdrhistogram::Histogram<u64>,
}

/// Runs the comparison.
pub fn run(s: &Settings, say: &dyn Fn(&str)) -> PublishCost {
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..s.publish_rounds {
        // ABBA: off, on in odd rounds, on, off in even ones, so that a drift
        // in the machine within a round tilts neither side.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for history in order {
            let r = one(s.publish_subscribers, s.publish_messages_per_subscriber, history);
            say(&format!(
                "publish N={} batch {BATCH} history {:<3} round {}: {:.2} ns/delivery, {:.1}/wake, lost {}",
                s.publish_subscribers,
                if history { "on" } else { "off" },
                round + 1,
                ns(r.elapsed) as f64 / r.deliveries.max(1) as f64,
                r.deliveries as f64 / r.wakes.max(1) as f64,
                r.expected - r.deliveries
            ));
            if history {
                on.push(r)
            } else {
                off.push(r)
            }
        }
    }
    let off = side("off", 0, &off);
    let on = side("on", HISTORY_SIZE, &on);
    let ratio = on.ns_per_delivery / off.ns_per_delivery;
    let ratio_rounds =
        on.ns_per_delivery_rounds.iter().zip(&off.ns_per_delivery_rounds).map(|(a, b)| a / b).collect();
    let (blocks, runs) = if s.publish_subscribers < 10_000 { (5, 200) } else { (21, 2000) };
    let mut pr = probe(blocks, runs);
    pr.implied_percent =
        pr.history_ns_per_run / (off.ns_per_delivery * (BATCH as f64) * s.publish_subscribers as f64) * 100.0;
    say(&format!(
        "publish probe (one thread, 1 subscriber): history adds {:.0} ns per run of 64 ({:.0} off, {:.0} on): {:.3} % of a run to {} subscribers",
        pr.history_ns_per_run, pr.off_ns_per_run, pr.on_ns_per_run, pr.implied_percent, s.publish_subscribers
    ));
    PublishCost {
        probe: pr,
        subscribers: s.publish_subscribers,
        batch: BATCH,
        messages_per_subscriber: s.publish_messages_per_subscriber,
        rounds: s.publish_rounds,
        off,
        on,
        ratio_on_over_off: ratio,
        ratio_rounds,
        slower_percent: (ratio - 1.0) * 100.0,
        target: "history on <= 5 % slower than off (ns per delivery, medians, same run)",
        target_met: ratio <= 1.05,
    }
}

fn probe(blocks: usize, runs: usize) -> Probe {
    let base = Instant::now();
    let make = |history: bool| {
        let b = Hub::<Tick>::builder();
        let hub = if history { b.history(HISTORY_SIZE, HISTORY_TTL) } else { b }.build().expect("hub");
        let sub = hub.subscribe().expect("subscribe");
        sub.join(TOPIC).expect("join");
        (hub, sub)
    };
    let mut hubs = [make(false), make(true)];
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for b in 0..blocks {
        let order = if b % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let (hub, sub) = &mut hubs[k];
            let t = Instant::now();
            for _ in 0..runs {
                hub.publish_many(TOPIC, tasks::ticks(BATCH, base)).expect("open");
                for _ in 0..BATCH {
                    std::hint::black_box(sub.try_recv().expect("delivered"));
                }
            }
            times[k].push(ns(t.elapsed()) as f64 / runs as f64);
        }
    }
    for (hub, _) in &hubs {
        hub.shutdown();
    }
    let blocks_diff: Vec<f64> = times[1].iter().zip(&times[0]).map(|(on, off)| on - off).collect();
    let (off, on) = (median(times[0].clone()), median(times[1].clone()));
    Probe {
        blocks,
        runs_per_block: runs,
        off_ns_per_run: off,
        on_ns_per_run: on,
        history_ns_per_run: median(blocks_diff.clone()),
        history_ns_per_run_blocks: blocks_diff,
        implied_percent: 0.0,
    }
}

fn side(history: &'static str, size: usize, runs: &[Run]) -> Side {
    let nspd: Vec<f64> = runs.iter().map(|r| ns(r.elapsed) as f64 / r.deliveries.max(1) as f64).collect();
    let med = median(nspd.clone());
    let p = |q: f64| median(runs.iter().map(|r| r.publish.value_at_quantile(q) as f64).collect()) as u64;
    Side {
        history,
        history_size: size,
        ns_per_delivery: med,
        ns_per_delivery_rounds: nspd,
        deliveries_per_sec: 1e9 / med,
        deliveries: runs.first().map_or(0, |r| r.expected),
        deliveries_per_wake: median(
            runs.iter().map(|r| r.deliveries as f64 / r.wakes.max(1) as f64).collect(),
        ),
        publish_p50_ns: p(0.5),
        publish_p99_ns: p(0.99),
        lost: runs.iter().map(|r| r.expected - r.deliveries).sum(),
        evicted: runs.iter().map(|r| r.evicted).sum(),
    }
}

/// One run: a fresh runtime and hub, `n` subscribers in the topic drained by
/// tasks, one paced publisher of runs of 64; the clock runs from the first
/// publish until every subscriber has every message.
fn one(n: usize, per_sub: u64, history: bool) -> Run {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let hub = {
        let _in = rt.enter();
        let b = Hub::<Tick>::builder();
        if history { b.history(HISTORY_SIZE, HISTORY_TTL) } else { b }.build().expect("hub")
    };
    let base = Instant::now();
    let (progress, drains) = drained_subscribers(&rt, &hub, TOPIC, n, base);
    let pace = Arc::new(Pace::new(per_sub, progress.clone()));
    let t0 = Instant::now();
    let publisher = rt.spawn(tasks::publisher(hub.clone(), pace, BATCH, Target::Topic(TOPIC), base));
    let publish = rt.block_on(publisher).expect("publisher task");
    wait_all(&progress, per_sub);
    let elapsed = t0.elapsed();
    let stats = hub.stats();
    hub.shutdown();
    let mut out = Run {
        elapsed,
        deliveries: 0,
        expected: per_sub * n as u64,
        wakes: 0,
        evicted: stats.evicted.slow_consumer,
        publish: hist(3),
    };
    out.publish.add(&publish).expect("same bounds");
    for d in drains {
        let d = rt.block_on(d).expect("drain task");
        out.deliveries += d.received.min(per_sub);
        out.wakes += d.wakes;
    }
    drop(hub);
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}

/// Waits until every subscriber has `total` messages, or nobody made progress
/// for [`STALL`].
pub(super) fn wait_all(progress: &Progress, total: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut last_sum, mut last_progress, mut i) = (0, Instant::now(), 0);
    while i < progress.len() {
        if progress[i].load(Relaxed) >= total {
            i += 1;
            continue;
        }
        std::thread::sleep(Duration::from_micros(100));
        if last_progress.elapsed() > Duration::from_millis(200) {
            let sum: u64 = progress.iter().map(|p| p.load(Relaxed)).sum();
            if sum != last_sum {
                last_sum = sum;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > STALL {
                break;
            }
        }
    }
}

/// `n` fresh subscribers of `topic`, each drained by a task on `rt` (the
/// harness's `drain`), and the progress they report.
pub(super) fn drained_subscribers(
    rt: &tokio::runtime::Runtime,
    hub: &Hub<Tick>,
    topic: &str,
    n: usize,
    base: Instant,
) -> (Progress, Vec<tokio::task::JoinHandle<tasks::Drained>>) {
    let progress: Progress = Arc::new((0..n).map(|_| CachePadded::new(Default::default())).collect());
    let drains = (0..n)
        .map(|i| {
            let sub = hub.subscribe().expect("subscribe");
            sub.join(topic).expect("join");
            rt.spawn(tasks::drain(sub, progress.clone(), i, None, None, base))
        })
        .collect();
    (progress, drains)
}
