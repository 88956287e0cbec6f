//! The fanout engine in one screen: a publisher, 1,000 subscribers draining on
//! a tokio runtime, and 10 subscribers that never read. The slow ones are
//! evicted; nobody else loses a message.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example demo
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fanout::{CloseReason, Hub, RecvError};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hub = Hub::<u64>::builder().capacity(256).build().expect("valid config");
    let messages: u64 = 100_000;

    // 1,000 healthy subscribers, each drained by its own task, each telling the
    // publisher how far it got.
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..1000).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for i in 0..1000 {
        let progress = progress.clone();
        let mut sub = hub.subscribe().unwrap();
        sub.join("ticks").unwrap();
        readers.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64);
            let (mut got, mut last_seq) = (0u64, 0u64);
            loop {
                match sub.recv_many(&mut buf, 64).await {
                    Ok(_) => {
                        for m in buf.drain(..) {
                            assert!(m.seq() > last_seq, "in order");
                            last_seq = m.seq();
                            got += 1;
                        }
                        progress[i].store(got, Ordering::Relaxed);
                    }
                    Err(RecvError::Lagged(n)) => panic!("a healthy reader lost {n}"),
                    Err(RecvError::Closed(reason)) => return (got, reason),
                }
            }
        }));
    }
    // 10 subscribers that never read.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let s = hub.subscribe().unwrap();
            s.join("ticks").unwrap();
            s
        })
        .collect();

    let ticks = hub.topic("ticks");
    let start = Instant::now();
    let mut published = 0;
    while published < messages {
        ticks.publish_many(published..published + 64).unwrap();
        published += 64;
        // Pace the publisher to the healthy readers: wait while any is more than
        // half a ring behind (a real feed is paced by the world).
        while progress.iter().any(|p| p.load(Ordering::Relaxed) + 128 < published) {
            tokio::task::yield_now().await;
        }
    }
    let publish_time = start.elapsed();
    hub.flush_cleanup();
    let stats = hub.stats();
    hub.shutdown();

    let mut total = 0;
    for r in readers {
        let (got, reason) = r.await.unwrap();
        assert_eq!(reason, CloseReason::Shutdown);
        assert_eq!(got, published, "every healthy reader got every message");
        total += got;
    }
    for s in &slow {
        assert_eq!(s.close_reason(), Some(CloseReason::SlowConsumer));
    }
    println!("published        {published} messages to 1,010 subscribers in {publish_time:.2?}");
    println!("delivered        {total} to the 1,000 healthy readers (all of them, in order)");
    println!("evicted          {} slow subscribers (never read)", stats.evicted.slow_consumer);
    println!(
        "throughput       {:.1} M deliveries/s, {:.1} deliveries per wake",
        stats.delivered as f64 / publish_time.as_secs_f64() / 1e6,
        stats.delivered as f64 / stats.wakes.max(1) as f64
    );
    println!("dropped          {:?}", stats.dropped);
}
