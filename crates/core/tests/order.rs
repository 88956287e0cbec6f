//! Per-topic order under concurrent publishers (the sequencer, `sequencer.rs`).
//!
//! Four publisher threads publish to one topic through every path
//! (`Topic::publish`, `Hub::publish`, `Topic::publish_many`, `publish_with`)
//! while subscribers drain it on a tokio runtime. Every subscriber checks,
//! message by message, that `seq` strictly increases and that every gap was
//! announced by a lag notice no later than the gap (a budget: `Lagged(n)`
//! adds `n`, a gap of `k` spends `k`). The same runs for broadcasts.
//!
//! Then the accounting, exactly: every message was delivered by exactly one
//! walk (`sum(walked) == sum(messages)` over the reports: none left in a log
//! with nobody walking), and every delivery was received, displaced or
//! discarded (`delivered == received + displaced + discarded`).
//!
//! Before the sequencer, a publish walked the subscribers on its own and a
//! later message overtook an earlier one: this test failed on its first
//! reorder (`seq went from 5 to 4`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use fanout_core::{Hub, Message, Overflow, Priority, PublishReport, RecvError, SubscribeOptions, Subscriber};

const PUBLISHERS: usize = 4;

fn per_publisher() -> u64 {
    let scale: u64 = std::env::var("FANOUT_STRESS_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    10_000 * scale
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
}

/// Drains `sub` to its close, checking order and gap accounting.
async fn checked_reader(mut sub: Subscriber<u64>, totals: Arc<Totals>) {
    let mut last = 0u64;
    let mut credit = 0u64;
    let mut buf: Vec<Message<u64>> = Vec::with_capacity(64);
    loop {
        match sub.recv_many(&mut buf, 64).await {
            Ok(n) => {
                for m in buf.drain(..) {
                    let s = m.seq();
                    assert!(s > last, "subscriber {}: seq went from {last} to {s}", sub.id());
                    let gap = s - last - 1;
                    assert!(
                        gap <= credit,
                        "subscriber {}: {gap} missing before seq {s}, only {credit} announced",
                        sub.id()
                    );
                    credit -= gap;
                    last = s;
                }
                totals.received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(RecvError::Lagged(n)) => credit += n,
            Err(RecvError::Closed(_)) => return,
        }
    }
}

/// What the publishers did, summed.
#[derive(Default)]
struct Published {
    messages: u64,
    walked: u64,
    delivered: u64,
}

impl Published {
    fn add(&mut self, r: &PublishReport) {
        assert_eq!(r.recipients, r.delivered + r.dropped.total(), "{r:?}");
        self.messages += r.messages;
        self.walked += r.walked;
        self.delivered += r.delivered;
    }
}

/// Runs `PUBLISHERS` threads, each calling `publish(k, i)` for its own `i`s
/// (`k` the thread), after a barrier; sums their reports.
fn publishers(publish: impl Fn(usize, u64) -> PublishReport + Send + Sync + 'static) -> Published {
    let publish = Arc::new(publish);
    let go = Arc::new(Barrier::new(PUBLISHERS));
    let threads: Vec<_> = (0..PUBLISHERS)
        .map(|k| {
            let (publish, go) = (publish.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let mut p = Published::default();
                for i in 0..per_publisher() {
                    p.add(&publish(k, i));
                }
                p
            })
        })
        .collect();
    let mut total = Published::default();
    for t in threads {
        let p = t.join().unwrap();
        total.messages += p.messages;
        total.walked += p.walked;
        total.delivered += p.delivered;
    }
    total
}

fn subscribers(hub: &Hub<u64>, topic: Option<&str>, n: usize) -> Vec<Subscriber<u64>> {
    (0..n)
        .map(|i| {
            // Small rings, some dropping the newest and some the oldest, so
            // that gaps (and their notices) happen too.
            let overflow = if i % 2 == 0 { Overflow::DropNewest } else { Overflow::DropOldest };
            let capacity = if i % 3 == 0 { 8 } else { 1024 };
            let s =
                hub.subscribe_with(SubscribeOptions::new().capacity(capacity).overflow(overflow)).unwrap();
            if let Some(t) = topic {
                s.join(t).unwrap();
            }
            s
        })
        .collect()
}

fn run(topic: Option<&'static str>) {
    let hub = Hub::<u64>::builder().build().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let totals = Arc::new(Totals::default());
    let readers: Vec<_> = subscribers(&hub, topic, 16)
        .into_iter()
        .map(|s| rt.spawn(checked_reader(s, totals.clone())))
        .collect();

    let h = hub.clone();
    let handle = topic.map(|t| hub.topic(t));
    let published = publishers(move |k, i| {
        let v = (k as u64) << 32 | i;
        match (topic, &handle, k) {
            (None, _, 0 | 1) => h.broadcast(v).unwrap(),
            (None, _, _) => h.broadcast_with(Priority::Normal, |_| v).unwrap(),
            (Some(_), Some(t), 0) => t.publish(v).unwrap(),
            (Some(name), _, 1) => h.publish(name, v).unwrap(),
            (Some(_), Some(t), 2) => {
                // Runs of 3: one call, three numbers.
                if i % 3 == 0 {
                    t.publish_many([v, v + 1, v + 2]).unwrap()
                } else {
                    PublishReport::default()
                }
            }
            (Some(_), Some(t), _) => t.publish_with(Priority::Normal, |_| v).unwrap(),
            (Some(_), None, _) => unreachable!(),
        }
    });
    assert_eq!(published.walked, published.messages, "every message delivered by exactly one walk");

    hub.shutdown();
    for r in readers {
        rt.block_on(r).unwrap();
    }
    let st = hub.stats();
    assert_eq!(st.published, published.messages);
    assert_eq!(st.delivered, published.delivered);
    assert_eq!(
        st.delivered,
        totals.received.load(Ordering::Relaxed) + st.displaced + st.discarded,
        "every delivery received, displaced or discarded: {st:?}"
    );
}

#[test]
fn a_topic_keeps_its_order_under_four_publishers() {
    run(Some("ticks"));
}

#[test]
fn broadcasts_keep_their_order_under_four_publishers() {
    run(None);
}
