//! One hub run: a fresh runtime and engine, subscribers created and drained,
//! the publish window timed, everything torn down (see the module docs of
//! `hub`).
//!
//! The runtime is built first and the engine inside it (`Runtime::enter`), so
//! that an engine with a run loop (the mutex hub) spawns it as a task on the
//! runtime the publishers and subscribers share.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use fanout_baseline::{MutexHub, TokioBroadcast};
use fanout_bench::order::{OrderChecker, OrderCounts};
use fanout_core::{Engine, Hub, Receiver as _};
use tokio::runtime::Runtime;

use super::tasks::{self, Pace, Progress, Target, Tick};
use super::{
    healthy_count, hist, is_slow, EngineKind, Plan, RunResult, Scenario, E2E_SAMPLES, SAME_TOPIC, STALL,
    TOPICS, TOPICS_PER_SUB, TOPIC_SLICE,
};

fn topic_name(t: usize) -> String {
    format!("topic-{t}")
}

/// One run of `plan` on a fresh engine of `kind`.
pub fn run_kind(kind: EngineKind, plan: &Plan) -> RunResult {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let topic_only = matches!(plan.scenario, Scenario::Topics | Scenario::SameTopic);
    match kind {
        EngineKind::Fanout => {
            let e = inside(&rt, || match plan.log_from {
                Some(n) => Hub::<Tick>::builder().shared_log_from(n).build().expect("valid settings"),
                None => Hub::<Tick>::new(),
            });
            run(rt, e, plan)
        }
        EngineKind::Mutex => {
            let e = inside(&rt, MutexHub::<Tick>::new);
            run(rt, e, plan)
        }
        // Topic subscribers of tokio broadcast hold no idle hub-wide receiver.
        EngineKind::TokioBroadcast if topic_only => {
            let e = inside(&rt, TokioBroadcast::<Tick>::topics_only);
            run(rt, e, plan)
        }
        EngineKind::TokioBroadcast => {
            let e = inside(&rt, TokioBroadcast::<Tick>::new);
            run(rt, e, plan)
        }
        EngineKind::FanoutRings => {
            let e = inside(&rt, || Hub::<Tick>::builder().shared_log(0).build().expect("valid settings"));
            run(rt, e, plan)
        }
        EngineKind::FanoutLog => {
            let e = inside(&rt, || {
                Hub::<Tick>::builder().shared_log(512).shared_log_from(0).build().expect("valid settings")
            });
            run(rt, e, plan)
        }
        EngineKind::Log => {
            let e = inside(&rt, fanout_core::LogEngine::<Tick>::new);
            run(rt, e, plan)
        }
    }
}

/// Makes an engine inside `rt`'s context (a run loop becomes a task on it).
fn inside<E>(rt: &Runtime, make: impl FnOnce() -> E) -> E {
    let _in_rt = rt.enter();
    make()
}

/// One run of `plan` on `engine`.
fn run<E: Engine<Tick>>(rt: Runtime, engine: E, plan: &Plan) -> RunResult {
    let scenario = plan.scenario;
    let base = Instant::now();
    let setup_start = Instant::now();
    let heap0 = crate::alloc::live_bytes();

    // Subscribers: healthy ones get a drain task; slow ones are kept, unread.
    let healthy = healthy_count(scenario, plan.n);
    let progress: Progress = Arc::new((0..healthy).map(|_| CachePadded::new(Default::default())).collect());
    let stride = (healthy / E2E_SAMPLES).max(1);
    let mut slow = Vec::new();
    let mut drains = Vec::with_capacity(healthy);
    let mut h_idx = 0;
    for i in 0..plan.n {
        let sub = engine.subscribe().expect("subscribe");
        match scenario {
            Scenario::Topics => {
                for j in 0..TOPICS_PER_SUB {
                    // Subscriber i joins topics i, i+100, i+200, ... (mod 1000): each
                    // topic gets N/100 members.
                    let t = (i + j * TOPIC_SLICE) % TOPICS;
                    engine.join(sub.id(), &topic_name(t)).expect("join");
                }
            }
            Scenario::SameTopic => {
                engine.join(sub.id(), SAME_TOPIC).expect("join");
            }
            _ => {}
        }
        if is_slow(scenario, i) {
            slow.push(sub);
            continue;
        }
        let e2e = (h_idx % stride == 0).then(|| hist(2));
        // A fresh topic numbers from 1: a loss before the first push is a gap too.
        let order = scenario.checks_order().then(|| OrderChecker::from_start(1));
        drains.push(rt.spawn(tasks::drain(sub, progress.clone(), h_idx, e2e, order, base)));
        h_idx += 1;
    }
    let setup = setup_start.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let memory = tasks::memory_monitor(stop.clone());
    let churn = (scenario == Scenario::Churn)
        .then(|| tasks::churner(engine.clone(), rt.handle().clone(), stop.clone()));

    // The publish window.
    let pace = Arc::new(Pace::new(plan.per_sub, progress.clone()));
    let allocs0 = crate::alloc::allocations();
    let t0 = Instant::now();
    let target = if scenario == Scenario::SameTopic { Target::Topic(SAME_TOPIC) } else { Target::All };
    let publishers: Vec<_> = match scenario {
        Scenario::Topics => {
            let names: Vec<String> = (0..TOPICS).map(topic_name).collect();
            vec![rt.spawn(tasks::topic_publisher(engine.clone(), pace.clone(), plan.batch, names, base))]
        }
        _ => (0..scenario.publishers())
            .map(|_| rt.spawn(tasks::publisher(engine.clone(), pace.clone(), plan.batch, target, base)))
            .collect(),
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
        messages: plan.per_sub * if scenario == Scenario::Topics { TOPIC_SLICE as u64 } else { 1 },
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
        order: scenario.checks_order().then(OrderCounts::default),
        first_violation: None,
    };
    for t in drains {
        let d = rt.block_on(t).expect("drain task");
        out.deliveries += d.received.min(plan.per_sub);
        out.lagged += d.lagged;
        out.wakes += d.wakes;
        if let Some(h) = d.e2e {
            out.e2e.add(&h).expect("same bounds");
        }
        if let (Some(total), Some((counts, first))) = (out.order.as_mut(), d.order) {
            total.add(&counts);
            if out.first_violation.is_none() {
                out.first_violation = first;
            }
        }
    }
    drop(slow);
    drop(engine);
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}
