//! The long stress test (ignored by default; `scripts/stress.sh` runs it for
//! minutes): cycle after cycle, a hub with a random configuration takes random
//! traffic from many threads — publishes of every priority, runs, broadcasts,
//! unicast, subscribers joining, leaving, dropping, being kicked — and is shut
//! down in the middle of it. Throughout and at the end of each cycle it checks:
//!
//! - every publish report: recipients = delivered + dropped;
//! - per subscriber and per (topic, epoch): seqs strictly increase;
//! - counters equal the sum of the reports;
//! - exact accounting: every delivery was received, displaced (`DropOldest`,
//!   `Urgent`) or discarded with a subscriber dropped unread:
//!   `delivered == received + displaced + discarded`;
//! - every payload is freed once the hub and its subscribers are gone.
//!
//! `FANOUT_STRESS_SECS` (default 30) bounds the run.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Tracked;
use fanout_core::{Hub, Overflow, Priority, PublishError, RecvError, SubscribeOptions, Subscriber};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PUBLISHERS: u64 = 4;
const TOPICS_PER_PUBLISHER: u64 = 3;

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    delivered: AtomicU64,
}

async fn reader(mut sub: Subscriber<Tracked>, totals: Arc<Totals>, mut quit_after: Option<u64>) {
    let mut last: HashMap<(Option<Arc<str>>, u64), u64> = HashMap::new();
    let mut buf = Vec::with_capacity(64);
    let mut got = 0u64;
    loop {
        match sub.recv_many(&mut buf, 64).await {
            Ok(n) => {
                for m in buf.drain(..) {
                    if m.origin() != fanout_core::Origin::Direct {
                        let key = (m.topic_arc().cloned(), m.epoch());
                        let prev = last.insert(key, m.seq()).unwrap_or(0);
                        assert!(m.seq() > prev, "seq {} after {prev} on {:?}", m.seq(), m.topic());
                    }
                }
                got += n as u64;
                totals.received.fetch_add(n as u64, Ordering::Relaxed);
                if quit_after.is_some_and(|q| got >= q) {
                    sub.close();
                    quit_after = None;
                }
            }
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed(_)) => return,
        }
    }
}

fn cycle(seed: u64, live: &Arc<AtomicUsize>) {
    let mut rng = Rng(seed | 1);
    let capacity = [4usize, 16, 64, 256][rng.below(4) as usize];
    let overflow = [Overflow::Evict, Overflow::DropNewest, Overflow::DropOldest][rng.below(3) as usize];
    let high_water = [0.5, 0.8, 1.0][rng.below(3) as usize];
    let hub = Hub::<Tracked>::builder()
        .capacity(capacity)
        .overflow(overflow)
        .high_water(high_water)
        .cleanup_capacity(1 + rng.below(64) as usize)
        .chunk_size(16)
        .shards(1 + rng.below(4) as usize)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let totals = Arc::new(Totals::default());
    let topic = |k: u64, j: u64| format!("p{k}-{j}");

    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let o = [Overflow::Evict, Overflow::DropNewest, Overflow::DropOldest][(i % 3) as usize];
        let s = hub.subscribe_with(SubscribeOptions::new().overflow(o)).unwrap();
        for _ in 0..3 {
            s.join(&topic(rng.below(PUBLISHERS), rng.below(TOPICS_PER_PUBLISHER))).unwrap();
        }
        tasks.push(rt.spawn(reader(s, totals.clone(), None)));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for k in 0..PUBLISHERS {
        let (hub, totals, stop, live) = (hub.clone(), totals.clone(), stop.clone(), live.clone());
        let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(k) | 1);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = topic(k, rng.below(TOPICS_PER_PUBLISHER));
                let p = [Priority::Normal, Priority::Normal, Priority::High, Priority::Urgent]
                    [rng.below(4) as usize];
                let r = match rng.below(10) {
                    0..=4 => hub.publish_with(&t, p, |_| Tracked::new(n, &live)),
                    5..=7 => hub.publish_many(&t, (0..1 + rng.below(64)).map(|i| Tracked::new(i, &live))),
                    8 if k == 0 => hub.broadcast_with(p, |_| Tracked::new(n, &live)),
                    _ => {
                        let id = fanout_core::SubscriberId::new(1 + rng.below(80));
                        let _ = hub.send_to(id, Tracked::new(n, &live)).map(|_| {
                            totals.delivered.fetch_add(1, Ordering::Relaxed);
                        });
                        continue;
                    }
                };
                match r {
                    Ok(r) => {
                        assert_eq!(r.recipients, r.delivered + r.dropped.total());
                        totals.delivered.fetch_add(r.delivered, Ordering::Relaxed);
                    }
                    Err(PublishError::Shutdown) => return,
                    Err(e) => panic!("a hub has no broker: {e}"),
                }
            }
        }));
    }
    // Churn: subscribers that come, join, read a little and go; kicks.
    let churn = {
        let (hub, totals, stop, handle) = (hub.clone(), totals.clone(), stop.clone(), rt.handle().clone());
        let mut rng = Rng(seed.wrapping_add(99) | 1);
        std::thread::spawn(move || {
            let mut spawned = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = hub.subscribe() else { break };
                let _ = s.join(&topic(rng.below(PUBLISHERS), rng.below(TOPICS_PER_PUBLISHER)));
                if rng.below(4) == 0 {
                    hub.kick(fanout_core::SubscriberId::new(1 + rng.below(80)));
                }
                spawned.push(handle.spawn(reader(s, totals.clone(), Some(1 + rng.below(100)))));
                std::thread::yield_now();
            }
            spawned
        })
    };

    // Let it run, then shut down in the middle of the traffic.
    let until = Instant::now() + Duration::from_millis(200 + rng.below(300));
    while Instant::now() < until {
        std::thread::yield_now();
    }
    hub.shutdown();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let churned = churn.join().unwrap();
    rt.block_on(async {
        for t in tasks.into_iter().chain(churned) {
            t.await.unwrap();
        }
    });
    let st = hub.stats();
    let delivered = totals.delivered.load(Ordering::Relaxed);
    assert_eq!(st.delivered, delivered, "counters = sum of reports");
    let received = totals.received.load(Ordering::Relaxed);
    assert_eq!(
        delivered,
        received + st.displaced + st.discarded,
        "every delivery received ({received}), displaced ({}) or discarded ({})",
        st.displaced,
        st.discarded
    );
    drop(rt);
    drop(hub);
}

#[test]
#[ignore = "minutes; run by scripts/stress.sh"]
fn long_random_traffic_with_shutdowns() {
    let secs: u64 = std::env::var("FANOUT_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let live = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut cycles = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        cycle(0x9E37_79B9_7F4A_7C15 ^ cycles.wrapping_mul(0x2545_F491_4F6C_DD1D), &live);
        assert_eq!(live.load(Ordering::SeqCst), 0, "cycle {cycles}: every payload freed");
        cycles += 1;
    }
    eprintln!("{cycles} cycles in {:?}", start.elapsed());
}
