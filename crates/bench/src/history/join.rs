//! Joins from a position into a topic with many subscribers, each timed on
//! its own (see the module docs of `history`).
//!
//! # The scenario
//!
//! One hub with the default history (128, 300 s), one topic, N subscribers
//! (default 100,000) joined before anything is timed, each drained by a task
//! on a 2-worker tokio runtime. Two runs of 64 are published first so that the
//! history is full. Then, per case, J joins (default 2,000), one due every
//! `join_interval_us` on the main thread: a fresh subscriber, the topic's
//! position read, and the timed call
//! `hub.join_from(id, topic, JoinFrom::After(position − back))` with `back`
//! from [`BACK_MIN`] to [`BACK_MAX`] (a fixed spread over the joins). After
//! the clock stops, the join is checked: `recovered`, and the `replayed`
//! messages are the first in its ring, consecutive, ending at the hand-off
//! position. The subscriber is then dropped (the cleanup worker removes it
//! from the topic in the background, as when a client leaves).
//!
//! - `idle`: nobody publishes while the joins run.
//! - `publishing`: a thread publishes a run of 64 (`publish_many`) every
//!   1/rate s, each only once every subscriber is within 128 messages of what
//!   was published (so that nobody loses one). Its publish calls are timed:
//!   a publisher that finds the walk free walks every subscriber itself, so
//!   this is the walk's duration.
//!
//! The joins run open loop: join i is due at i × `join_interval_us` from the
//! start, and a join held up by a walk makes the ones after it late; each
//! sample keeps the call's own time (`ns`) and the time from when it was due
//! (`ns_from_due`: the measured calls as a single-server queue with arrivals
//! on schedule, so the call plus the wait for the joins before it), which is
//! what a client arriving on schedule would see and what the target is judged
//! on. Timing only the calls of one joining thread would hide that wait (one
//! join per walk would meet it, however long the walk: coordinated omission).
//!
//! A join waits for the walk in progress; and a run that becomes ready while a
//! join holds the walk is delivered by the join as it ends the walk. Each join
//! is therefore marked `overlapped_publish` when its interval met a publish
//! call's, and the percentiles are given for all joins, for those, and for
//! the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_core::{Hub, JoinFrom, Position, Subscriber, Topic};
use serde::Serialize;

use super::publish::wait_all;
use super::{Percentiles, Settings, BATCH, HISTORY_SIZE, HISTORY_TTL};
use crate::hub::tasks::{self, Progress, Tick};
use crate::hub::{hist, ns};

/// The topic.
const TOPIC: &str = "history-join";
/// Joins start from 10 to 50 messages back.
pub const BACK_MIN: u64 = 10;
pub const BACK_MAX: u64 = 50;
/// Messages a subscriber may be behind when the next run is published.
const PACE: u64 = 128;

/// One timed join.
#[derive(Serialize, Clone, Debug)]
pub struct JoinSample {
    /// The `join_from` call, nanoseconds.
    pub ns: u64,
    /// The call plus the time it would have waited for the joins before it,
    /// arriving on schedule (one every `interval`): the measured calls as a
    /// queue, each starting when due or when the one before it ends. When
    /// one is held up by a walk, the joins due meanwhile wait for it. What
    /// a client arriving on schedule would see (no coordinated omission).
    pub ns_from_due: u64,
    /// Messages back from the position read just before the call.
    pub back: u64,
    pub replayed: usize,
    pub recovered: bool,
    /// `NotRecovered::code()`, when not recovered.
    pub reason: Option<&'static str>,
    /// The replayed messages were the first in the ring, consecutive from the
    /// position, ending at the hand-off position.
    pub replay_ok: bool,
    /// The call's interval met a publish call's (a walk in progress, or a
    /// run that the join delivered as it ended the walk).
    pub overlapped_publish: bool,
    /// Publish calls whose interval met this join's: more than one means the
    /// join waited through several walks.
    pub publishes_overlapped: usize,
    /// A publish call that started during this join left its run to the walk
    /// in progress (`PublishReport::walked == 0`): the join, holding the
    /// walk, delivered that run to every subscriber as it ended the walk.
    pub delivered_a_run: bool,
}

/// One case (idle, or publishing).
#[derive(Serialize, Clone, Debug)]
pub struct Case {
    /// `idle`, or `publishing R/s`.
    pub name: String,
    pub publishing: bool,
    /// Runs of 64 per second asked for (publishing case).
    pub rate_runs_per_s: Option<f64>,
    pub subscribers: usize,
    pub joins: usize,
    pub recovered: usize,
    pub replay_ok: usize,
    pub not_recovered: BTreeMap<&'static str, usize>,
    /// Every join: the `join_from` call.
    pub join: Percentiles,
    /// Every join, from when it was due (see `JoinSample::ns_from_due`):
    /// the figure the target is judged on.
    pub join_from_due: Percentiles,
    /// Joins whose interval met a publish call.
    pub join_overlapped_publish: Percentiles,
    /// The other joins.
    pub join_clear: Percentiles,
    /// Publish calls that walked (delivered a run of 64 to every subscriber
    /// themselves) while the joins ran: the walk's duration.
    pub publish_calls: Percentiles,
    /// Publish calls that found the walk taken (by a join) and left their run
    /// to it.
    pub publish_calls_left_to_a_join: usize,
    /// Joins that waited through more than one walk.
    pub joins_through_several_walks: usize,
    /// Joins that delivered a run (see `JoinSample::delivered_a_run`).
    pub joins_that_delivered_a_run: usize,
    /// Runs per second actually published while the joins ran.
    pub achieved_rate_runs_per_s: Option<f64>,
    /// Share of the joins' wall time spent inside publish calls.
    pub publish_busy_fraction: Option<f64>,
    pub wall_seconds: f64,
    /// Subscribers (of the N) evicted, and deliveries they missed.
    pub evicted: u64,
    pub lost: u64,
    /// Every join (written to `history-joins.csv`, not to the JSON).
    #[serde(skip)]
    pub samples: Vec<JoinSample>,
}

/// Both cases.
#[derive(Serialize, Clone, Debug)]
pub struct JoinCost {
    pub subscribers: usize,
    /// Time to subscribe and join the N subscribers, before anything is timed.
    pub setup_seconds: f64,
    /// The two publish calls that fill the history before the joins (each a
    /// run of 64 walked to every subscriber, nothing else running but the
    /// subscribers' tasks), ns.
    pub fill_publish_calls_ns: Vec<u64>,
    pub cases: Vec<Case>,
    pub target: String,
    pub target_met_idle: bool,
    pub target_met_publishing: bool,
}

const TARGET_NS: u64 = 50_000;

/// Runs both cases on one hub.
pub fn run(s: &Settings, say: &dyn Fn(&str)) -> JoinCost {
    let n = s.join_subscribers;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let hub = {
        let _in = rt.enter();
        Hub::<Tick>::builder().history(HISTORY_SIZE, HISTORY_TTL).build().expect("hub")
    };
    let topic = hub.topic(TOPIC);
    let base = Instant::now();
    let setup = Instant::now();
    let (progress, drains) = super::publish::drained_subscribers(&rt, &hub, TOPIC, n, base);
    let setup_seconds = setup.elapsed().as_secs_f64();
    say(&format!("joins: {n} subscribers in the topic after {setup_seconds:.1} s"));
    // Fill the history.
    let mut fill_publish_calls_ns = Vec::new();
    for _ in 0..HISTORY_SIZE as u64 / BATCH {
        let payloads = tasks::ticks(BATCH, base);
        let t = Instant::now();
        hub.publish_many(TOPIC, payloads).expect("open");
        fill_publish_calls_ns.push(ns(t.elapsed()));
        wait_all(&progress, fill_publish_calls_ns.len() as u64 * BATCH);
    }
    let published = Arc::new(AtomicU64::new(HISTORY_SIZE as u64));
    wait_all(&progress, HISTORY_SIZE as u64);

    let mut cases = Vec::new();
    let rates = std::iter::once(None).chain(s.publish_rates_runs_per_s.iter().map(|&r| Some(r)));
    for rate in rates {
        let c = case(s, &hub, &topic, &progress, &published, rate, base);
        say(&format!(
            "joins {:<16}: {} joins, {} recovered, call p50 {} p90 {} p99 {} max {}, from due p99 {} (clear of publishes: p99 {}; {} overlapped: p99 {}); publish calls p50 {} max {}",
            c.name,
            c.joins,
            c.recovered,
            crate::report::dur(c.join.p50_ns),
            crate::report::dur(c.join.p90_ns),
            crate::report::dur(c.join.p99_ns),
            crate::report::dur(c.join.max_ns),
            crate::report::dur(c.join_from_due.p99_ns),
            crate::report::dur(c.join_clear.p99_ns),
            c.join_overlapped_publish.count,
            crate::report::dur(c.join_overlapped_publish.p99_ns),
            crate::report::dur(c.publish_calls.p50_ns),
            crate::report::dur(c.publish_calls.max_ns),
        ));
        cases.push(c);
    }
    hub.shutdown();
    for d in drains {
        let _ = rt.block_on(d);
    }
    drop(topic);
    drop(hub);
    rt.shutdown_timeout(Duration::from_secs(5));
    let met = |c: &Case| c.join_from_due.p99_ns <= TARGET_NS && (s.join_now || c.recovered == c.joins);
    JoinCost {
        subscribers: n,
        setup_seconds,
        fill_publish_calls_ns,
        target_met_idle: cases.iter().filter(|c| !c.publishing).all(met),
        target_met_publishing: cases.iter().filter(|c| c.publishing).all(met),
        cases,
        target: format!(
            "join from a position <= 50 us at p99 (from when due) with every join recovered (issue 13: at 100,000 subscribers; \
             here {n})"
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn case(
    s: &Settings,
    hub: &Hub<Tick>,
    topic: &Topic<Tick>,
    progress: &Progress,
    published: &Arc<AtomicU64>,
    rate: Option<f64>,
    base: Instant,
) -> Case {
    let publishing = rate.is_some();
    let rate = rate.unwrap_or(1.0).max(0.01);
    let evicted0 = hub.stats().evicted.slow_consumer;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = publishing.then(|| {
        let (hub, progress, published, stop) =
            (hub.clone(), progress.clone(), published.clone(), stop.clone());
        std::thread::spawn(move || publisher(hub, progress, published, stop, rate, base))
    });
    if publishing {
        // Let the first run start before the first join.
        std::thread::sleep(Duration::from_millis(20));
    }
    let interval = Duration::from_micros(s.join_interval_us);
    let started = Instant::now();
    let span0 = ns(base.elapsed());
    let mut samples = Vec::with_capacity(s.joins_per_case);
    let mut intervals = Vec::with_capacity(s.joins_per_case);
    let spread = BACK_MAX - BACK_MIN + 1;
    let mut virtual_end: u64 = 0;
    for i in 0..s.joins_per_case {
        let mut sub = hub.subscribe().expect("subscribe");
        // Open loop: join i is due at started + i × interval, whether or not
        // the join before it was held up (no coordinated omission).
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let due_ns = ns(due.saturating_duration_since(base));
        let now = topic.position();
        let back = BACK_MIN + (i as u64 * 7919) % spread;
        let from = Position { epoch: now.epoch, seq: now.seq.saturating_sub(back) };
        let t0 = base.elapsed();
        let how = if s.join_now { JoinFrom::Now } else { JoinFrom::After(from) };
        let j = hub.join_from(sub.id(), TOPIC, how);
        let t1 = base.elapsed();
        let (js, je) = (ns(t0), ns(t1));
        // A queue of the measured calls, arrivals on schedule: this join
        // starts when it is due or when the one before it ends, whichever
        // is later (the harness's own delays between joins are not counted).
        let start = due_ns.max(virtual_end);
        virtual_end = start + (je - js).max(1);
        let from_due = virtual_end - due_ns;
        let (replayed, recovered, reason, replay_ok) = match j {
            Ok(j) => {
                let ok = j.joined
                    && if s.join_now {
                        j.replayed == 0
                    } else {
                        replay_ok(&mut sub, from, j.position, j.replayed)
                    };
                (j.replayed, j.recovered, j.reason.map(|r| r.code()), ok)
            }
            Err(_) => (0, false, Some("subscribe_error"), false),
        };
        drop(sub);
        samples.push(JoinSample {
            ns: (je - js).max(1),
            ns_from_due: from_due,
            back,
            replayed,
            recovered,
            reason,
            replay_ok,
            overlapped_publish: false,
            publishes_overlapped: 0,
            delivered_a_run: false,
        });
        intervals.push((js, je));
    }
    let span1 = ns(base.elapsed());
    let wall = started.elapsed();
    stop.store(true, Relaxed);
    let calls = publisher.map(|p| p.join().expect("publisher thread")).unwrap_or_default();
    // Every subscriber gets everything published (or the loss is counted).
    let total = published.load(Relaxed);
    wait_all(progress, total);
    let lost: u64 = progress.iter().map(|p| total.saturating_sub(p.load(Relaxed))).sum();
    let evicted = hub.stats().evicted.slow_consumer - evicted0;

    let (mut all, mut over, mut clear, mut pubs, mut due) = (hist(3), hist(3), hist(3), hist(3), hist(3));
    for (smp, &(js, je)) in samples.iter_mut().zip(&intervals) {
        smp.publishes_overlapped = calls.iter().filter(|c| c.start < je && js < c.end).count();
        smp.overlapped_publish = smp.publishes_overlapped > 0;
        smp.delivered_a_run = calls.iter().any(|c| c.walked == 0 && js <= c.start && c.start < je);
        all.saturating_record(smp.ns);
        due.saturating_record(smp.ns_from_due);
        if smp.overlapped_publish { &mut over } else { &mut clear }.saturating_record(smp.ns);
    }
    let during: Vec<&Call> = calls.iter().filter(|c| c.end > span0 && c.start < span1).collect();
    for c in during.iter().filter(|c| c.walked > 0) {
        pubs.saturating_record((c.end - c.start).max(1));
    }
    let busy: u64 = during.iter().map(|c| c.end.min(span1) - c.start.max(span0)).sum();
    let span = (span1 - span0).max(1) as f64;
    let mut not_recovered = BTreeMap::new();
    for smp in &samples {
        if let Some(r) = smp.reason {
            *not_recovered.entry(r).or_insert(0) += 1;
        }
    }
    Case {
        name: if publishing { format!("publishing {rate}/s") } else { "idle".to_string() },
        publishing,
        rate_runs_per_s: publishing.then_some(rate),
        subscribers: s.join_subscribers,
        joins: samples.len(),
        recovered: samples.iter().filter(|x| x.recovered).count(),
        replay_ok: samples.iter().filter(|x| x.replay_ok).count(),
        not_recovered,
        join: Percentiles::of(&all),
        join_from_due: Percentiles::of(&due),
        join_overlapped_publish: Percentiles::of(&over),
        join_clear: Percentiles::of(&clear),
        publish_calls: Percentiles::of(&pubs),
        publish_calls_left_to_a_join: during.iter().filter(|c| c.walked == 0).count(),
        joins_through_several_walks: samples.iter().filter(|x| x.publishes_overlapped > 1).count(),
        joins_that_delivered_a_run: samples.iter().filter(|x| x.delivered_a_run).count(),
        achieved_rate_runs_per_s: publishing.then(|| during.len() as f64 / (span / 1e9)),
        publish_busy_fraction: publishing.then(|| busy as f64 / span),
        wall_seconds: wall.as_secs_f64(),
        evicted,
        lost,
        samples,
    }
}

/// Whether the first `replayed` messages in `sub`'s ring are `from.seq + 1`
/// … `at.seq`, consecutive, of `from`'s epoch.
fn replay_ok(sub: &mut Subscriber<Tick>, from: Position, at: Position, replayed: usize) -> bool {
    if at.seq.checked_sub(from.seq) != Some(replayed as u64) {
        return false;
    }
    (1..=replayed as u64).all(|k| match sub.try_recv() {
        Ok(m) => m.seq() == from.seq + k && m.epoch() == from.epoch,
        Err(_) => false,
    })
}

/// One publish call: its interval (ns since the run's base) and how many
/// messages it walked itself (0: it left its run to the walk in progress).
#[derive(Clone, Copy, Debug)]
struct Call {
    start: u64,
    end: u64,
    walked: u64,
}

/// Publishes a run of 64 every 1/`rate` s until stopped, each once every
/// subscriber is within [`PACE`] of what was published; returns each call.
fn publisher(
    hub: Hub<Tick>,
    progress: Progress,
    published: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    rate: f64,
    base: Instant,
) -> Vec<Call> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut calls = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Relaxed) {
        let need = published.load(Relaxed).saturating_sub(PACE);
        let waited = Instant::now();
        while progress.iter().any(|p| p.load(Relaxed) < need) && waited.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let payloads = tasks::ticks(BATCH, base);
        let start = ns(base.elapsed());
        let r = hub.publish_many(TOPIC, payloads).expect("open");
        let end = ns(base.elapsed());
        published.fetch_add(BATCH, Relaxed);
        calls.push(Call { start, end, walked: r.walked });
        next += period;
        while !stop.load(Relaxed) {
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(5)));
        }
        if Instant::now() > next + period {
            next = Instant::now(); // behind: do not burst to catch up
        }
    }
    calls
}
