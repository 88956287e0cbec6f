//! fanout against the mutex hub and tokio broadcast, over the engine trait.
//!
//! ```text
//! cargo bench --bench compare
//! ```
//!
//! Single-threaded micro-benchmarks, grouped by subscriber count:
//!
//! - `publish/<engine>/<N>`: one topic publish to N subscribers, then every
//!   subscriber takes its copy with `try_recv` (so no ring ever fills). The
//!   throughput is in deliveries; it measures the cost of one push and one pop
//!   per subscriber plus the per-publish overhead, with no thread switching.
//!   (The in-process scenarios with tasks on two cores are in
//!   `fanout-bench hub`.)
//! - `subscribe_unsubscribe/<engine>`: a subscribe and a drop, next to 10,000
//!   subscribers. For the mutex hub the drop only queues the unregister (its run
//!   loop applies it); for fanout it hands the subscriber to the cleanup worker.
//!
//! The three engines run the same generic functions.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout::{Engine, Hub, Receiver};
use fanout_baseline::{MutexHub, TokioBroadcast};
use std::time::Duration;

fn publish_to<E: Engine<u64>>(c: &mut Criterion, engine: E, n: usize) {
    let name = engine.name();
    let mut subs: Vec<E::Subscriber> = (0..n)
        .map(|_| {
            let s = engine.subscribe().expect("subscribe");
            engine.join(s.id(), "t").expect("join");
            s
        })
        .collect();
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter(|| {
            engine.publish("t", 1).expect("publish");
            for s in subs.iter_mut() {
                std::hint::black_box(s.try_recv().expect("delivered"));
            }
        })
    });
    g.finish();
    engine.shutdown();
}

fn subscribe_unsubscribe<E: Engine<u64>>(c: &mut Criterion, engine: E) {
    let name = engine.name();
    let _others: Vec<E::Subscriber> = (0..10_000).map(|_| engine.subscribe().expect("subscribe")).collect();
    c.bench_function(&format!("subscribe_unsubscribe/{name}"), |b| {
        b.iter(|| drop(std::hint::black_box(engine.subscribe().expect("subscribe"))))
    });
    engine.shutdown();
}

fn publish(c: &mut Criterion) {
    for n in [100, 10_000] {
        publish_to(c, Hub::<u64>::new(), n);
        publish_to(c, MutexHub::<u64>::new(), n);
        publish_to(c, TokioBroadcast::<u64>::topics_only(), n);
    }
}

fn churn(c: &mut Criterion) {
    subscribe_unsubscribe(c, Hub::<u64>::new());
    subscribe_unsubscribe(c, MutexHub::<u64>::new());
    subscribe_unsubscribe(c, TokioBroadcast::<u64>::new());
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = publish, churn
}
criterion_main!(benches);
