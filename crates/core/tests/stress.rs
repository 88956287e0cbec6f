//! Multi-thread stress: 4 publishers (one topic each, plus broadcasts),
//! subscribers draining on a 2-worker tokio runtime, subscribers joining and
//! leaving throughout, 1 % never reading. Checks, throughout and at the end:
//!
//! - every publish report: recipients = delivered + dropped;
//! - per subscriber, per topic: seqs strictly increase (FIFO, no duplicates);
//! - a never-reading subscriber holds at most `capacity` messages (counted by
//!   draining it at the end, not by `len`, which clamps), and with shared
//!   logs at most their slots (twice the room) from each;
//! - exact accounting: every delivery was received or displaced
//!   (`delivered == received + displaced + discarded`, with nothing
//!   discarded since every subscriber drains to its close), and every loss
//!   was announced (`lag reported == dropped + displaced`).
//!
//! Lost wake-ups are loom's to find (`loom_two_publishers_wake_a_parked_receiver`):
//! here every reader is woken by the shutdown at the end anyway.
//!
//! Sized by `FANOUT_STRESS_SCALE` (default 1; `scripts/stress.sh` runs 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fanout_core::{Hub, Message, Overflow, RecvError, SubscribeOptions, Subscriber};

const PUBLISHERS: u64 = 4;
const CAPACITY: usize = 64;

fn scale() -> u64 {
    std::env::var("FANOUT_STRESS_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    lagged: AtomicU64,
}

/// Drains `sub` until it is closed, checking seq order per topic.
async fn reader(mut sub: Subscriber<u64>, totals: Arc<Totals>, quit_after: Option<u64>) {
    let mut last: HashMap<Option<Arc<str>>, u64> = HashMap::new();
    let mut buf: Vec<Message<u64>> = Vec::with_capacity(64);
    let mut got = 0u64;
    loop {
        match sub.recv_many(&mut buf, 64).await {
            Ok(n) => {
                for m in buf.drain(..) {
                    let key = m.topic_arc().cloned();
                    let prev = last.insert(key, m.seq()).unwrap_or(0);
                    assert!(m.seq() > prev, "seq went from {prev} to {} on {:?}", m.seq(), m.topic());
                }
                got += n as u64;
                totals.received.fetch_add(n as u64, Ordering::Relaxed);
                if quit_after.is_some_and(|q| got >= q) {
                    // Churn: leave while publishers run. What is still queued
                    // is drained first, so that nothing delivered is unaccounted.
                    sub.close();
                    quit_after_drain(&mut sub, &totals).await;
                    return;
                }
            }
            Err(RecvError::Lagged(n)) => {
                totals.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed(_)) => return,
        }
    }
}

async fn quit_after_drain(sub: &mut Subscriber<u64>, totals: &Totals) {
    let mut buf = Vec::new();
    loop {
        match sub.recv_many(&mut buf, 64).await {
            Ok(n) => {
                totals.received.fetch_add(n as u64, Ordering::Relaxed);
                buf.clear();
            }
            Err(RecvError::Lagged(n)) => {
                totals.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed(_)) => return,
        }
    }
}

#[test]
fn publishers_churn_and_slow_subscribers_on_the_rings() {
    publishers_churn_and_slow_subscribers(false);
}

/// The same through shared logs of room `CAPACITY` for the topics and the
/// broadcasts, from their first member.
#[test]
fn publishers_churn_and_slow_subscribers_on_shared_logs() {
    publishers_churn_and_slow_subscribers(true);
}

fn publishers_churn_and_slow_subscribers(logs: bool) {
    let rounds = 400 * scale();
    let readers = 99u64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    // Lazy rings, as the server runs: subscribers joining mid-publish have
    // their rings installed by racing publishers.
    let hub = Hub::<u64>::builder()
        .capacity(CAPACITY)
        .lazy_rings(true)
        .shared_log(if logs { CAPACITY } else { 0 })
        .shared_log_from(0)
        .build()
        .unwrap();
    let totals = Arc::new(Totals::default());
    let topics: Vec<String> = (0..PUBLISHERS).map(|k| format!("t{k}")).collect();

    // 1 % never read.
    let idle = hub.subscribe().unwrap();
    for t in &topics {
        idle.join(t).unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..readers {
        // A third each: evicted when slow, drop newest, drop oldest.
        let overflow = [Overflow::Evict, Overflow::DropNewest, Overflow::DropOldest][(i % 3) as usize];
        let s = hub.subscribe_with(SubscribeOptions::new().overflow(overflow)).unwrap();
        s.join(&topics[(i % PUBLISHERS) as usize]).unwrap();
        s.join(&topics[((i + 1) % PUBLISHERS) as usize]).unwrap();
        tasks.push(rt.spawn(reader(s, totals.clone(), None)));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for k in 0..PUBLISHERS {
        let topic = hub.topic(&topics[k as usize]);
        let hub = hub.clone();
        let delivered = delivered.clone();
        publishers.push(std::thread::spawn(move || {
            for r in 0..rounds {
                let rep = topic.publish_many((0..16).map(|j| r * 16 + j)).unwrap();
                assert_eq!(rep.recipients, rep.delivered + rep.dropped.total());
                delivered.fetch_add(rep.delivered, Ordering::Relaxed);
                if k == 0 && r % 8 == 0 {
                    let rep = hub.broadcast(r).unwrap();
                    assert_eq!(rep.recipients, rep.delivered + rep.dropped.total());
                    delivered.fetch_add(rep.delivered, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        }));
    }

    // Churn: subscribers that join, read a little, and leave, while publishing.
    let churn = {
        let hub = hub.clone();
        let totals = totals.clone();
        let stop = stop.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut spawned = Vec::new();
            loop {
                let s = hub.subscribe().unwrap();
                s.join(&format!("t{}", n % PUBLISHERS)).unwrap();
                if n % 5 == 0 {
                    // Leaves at once (from the first turn on, so that churn
                    // happens whatever the scheduling), and drains.
                    s.close();
                    spawned.push(handle.spawn(reader(s, totals.clone(), None)));
                } else {
                    spawned.push(handle.spawn(reader(s, totals.clone(), Some(1 + n % 50))));
                }
                n += 1;
                if spawned.len() > 20 {
                    spawned.retain(|h| !h.is_finished());
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::yield_now();
            }
            (spawned, idle)
        })
    };

    for p in publishers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (spawned, mut idle) = churn.join().unwrap();
    hub.shutdown();
    // The never-reading subscriber, read at last: what it held from each
    // source (its ring; with logs, each topic's log and the broadcasts'),
    // its losses.
    let mut idle_held = 0u64;
    let mut held: HashMap<Option<Arc<str>>, u64> = HashMap::new();
    loop {
        match idle.try_recv() {
            Ok(m) => {
                idle_held += 1;
                *held.entry(m.topic_arc().cloned()).or_default() += 1;
            }
            Err(fanout_core::TryRecvError::Lagged(n)) => {
                totals.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    if logs {
        // A log of room `CAPACITY` has twice as many slots, and moves a
        // reader back to `CAPACITY` behind when it needs a slot the reader
        // still holds (topic_log.rs, "Lag"): it holds at most the slots.
        for (source, n) in &held {
            assert!(
                *n <= 2 * CAPACITY as u64,
                "a never-reading reader held {n} of {source:?}: more than the slots"
            );
        }
    } else {
        assert!(idle_held <= CAPACITY as u64, "a never-reading subscriber held {idle_held} > {CAPACITY}");
    }
    rt.block_on(async {
        for t in tasks.into_iter().chain(spawned) {
            t.await.unwrap();
        }
    });

    // Dropped before the count: a log counts a closed reader in what it
    // delivers until the reader is dropped (a walk after the shutdown, a
    // leaver's settle, may still append what was published before it), and
    // what it never took as discarded then (`TopicOptions::shared_log`).
    drop(idle);
    let st = hub.stats();
    eprintln!("{st:#?}");
    let reported = delivered.load(Ordering::Relaxed);
    if logs {
        // A leaver's settle takes the log's walk and delivers what is ready
        // on the way: counted in the hub's stats, in no publish report.
        assert!(reported <= st.delivered, "reports counted {reported} > {} delivered", st.delivered);
    } else {
        assert_eq!(st.delivered, reported, "counters agree with the reports");
    }
    let received = totals.received.load(Ordering::Relaxed) + idle_held;
    if logs {
        // A log counts a closed reader in what it delivers until the reader
        // is dropped, and what it never took as discarded (documented on
        // `TopicOptions::shared_log`).
        assert_eq!(
            st.delivered,
            received + st.displaced + st.discarded,
            "every delivery received, displaced or discarded"
        );
    } else {
        assert_eq!(st.discarded, 0, "every subscriber drained to its close");
        assert_eq!(st.delivered, received + st.displaced, "every delivery received or displaced");
    }
    assert_eq!(
        totals.lagged.load(Ordering::Relaxed),
        st.dropped.total() + st.displaced,
        "every loss announced to its subscriber"
    );
    assert!(st.evicted.unsubscribed > 0, "churn happened");
}
