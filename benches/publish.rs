//! Publish to 100 and 10,000 subscribers, each drained by its own task on a
//! 2-worker tokio runtime (both cores busy, as in production): wall time per
//! delivery, and deliveries per wake printed after each group.
//!
//! The publisher is paced so that nobody loses a message: after each run of 64
//! it waits until every reader is within 3/4 of the ring capacity. A fast
//! publisher that only measured drops would prove nothing.
//!
//! ```text
//! cargo bench --bench publish
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use fanout::{Hub, RecvError};

const CAPACITY: usize = 256;
const RUN: u64 = 64;

struct Setup {
    hub: Hub<u64>,
    rt: tokio::runtime::Runtime,
    /// Messages each reader has received; written by the reader only.
    progress: Arc<Vec<CachePadded<AtomicU64>>>,
    published: u64,
}

impl Setup {
    fn new(n: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let hub = Hub::<u64>::builder().capacity(CAPACITY).build().unwrap();
        let progress: Arc<Vec<_>> = Arc::new((0..n).map(|_| CachePadded::new(AtomicU64::new(0))).collect());
        for i in 0..n {
            let mut sub = hub.subscribe().unwrap();
            let progress = progress.clone();
            rt.spawn(async move {
                let mut buf = Vec::with_capacity(CAPACITY);
                let mut got = 0u64;
                loop {
                    match sub.recv_many(&mut buf, CAPACITY).await {
                        Ok(k) => {
                            got += k as u64;
                            buf.clear();
                            progress[i].store(got, Ordering::Release);
                        }
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed(_)) => return,
                    }
                }
            });
        }
        Setup { hub, rt, progress, published: 0 }
    }

    /// `runs` runs of 64 messages, paced, published by a task on the same
    /// runtime as the readers (two threads on two cores); returns the wall time.
    fn publish_runs(&mut self, runs: u64, batched: bool) -> Duration {
        let hub = self.hub.clone();
        let progress = self.progress.clone();
        let first = self.published;
        self.published += runs * RUN;
        let task = self.rt.spawn(async move {
            let start = Instant::now();
            let slack = (CAPACITY as u64 * 3 / 4).saturating_sub(RUN);
            let mut published = first;
            for _ in 0..runs {
                if batched {
                    hub.broadcast_many(published..published + RUN).unwrap();
                } else {
                    for v in published..published + RUN {
                        hub.broadcast(v).unwrap();
                    }
                }
                published += RUN;
                wait_for(&progress, published.saturating_sub(slack)).await;
            }
            wait_for(&progress, published).await;
            start.elapsed()
        });
        self.rt.block_on(task).unwrap()
    }
}

/// Waits until every reader has received at least `upto` messages.
async fn wait_for(progress: &[CachePadded<AtomicU64>], upto: u64) {
    for p in progress {
        while p.load(Ordering::Acquire) < upto {
            tokio::task::yield_now().await;
        }
    }
}

fn publish(c: &mut Criterion) {
    for n in [100usize, 10_000] {
        let mut g = c.benchmark_group(format!("publish/{n}_subscribers"));
        g.throughput(Throughput::Elements(RUN * n as u64));
        g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        for batched in [true, false] {
            let name = if batched { "publish_many_64" } else { "publish_x64" };
            let mut s = Setup::new(n);
            let before = s.hub.stats();
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| s.publish_runs(iters, batched));
            });
            let after = s.hub.stats();
            let delivered = after.delivered - before.delivered;
            let wakes = (after.wakes - before.wakes).max(1);
            let lost = after.dropped.total() - before.dropped.total();
            eprintln!(
                "publish/{n}_subscribers/{name}: {delivered} deliveries, {:.1} deliveries per wake, {lost} lost",
                delivered as f64 / wakes as f64
            );
            s.hub.shutdown();
            drop(s.rt);
        }
        g.finish();
    }
}

criterion_group!(benches, publish);
criterion_main!(benches);
