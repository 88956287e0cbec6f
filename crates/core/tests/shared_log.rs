//! Topics that deliver through a shared log (`TopicOptions::shared_log`):
//! what a subscriber sees is what it would see through its ring (every
//! message once, in `seq` order, every gap announced by exactly its size),
//! alongside what its ring still carries (broadcasts, direct sends).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fanout_core::{CloseReason, Hub, JoinFrom, Overflow, Position, RecvError, TopicOptions, TryRecvError};

fn logged<T: Clone + Send + Sync + 'static>(history: usize) -> Hub<T> {
    logged_with(history, Overflow::DropOldest)
}

fn logged_with<T: Clone + Send + Sync + 'static>(history: usize, overflow: Overflow) -> Hub<T> {
    Hub::builder()
        .overflow(overflow)
        .topic_options(move |_| TopicOptions {
            history_size: history,
            history_ttl: Duration::from_secs(600),
            shared_log: 512,
            shared_log_from: 0,
            ..TopicOptions::default()
        })
        .build()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn concurrent_publishers_reach_every_member_once_in_seq_order_with_gaps_announced() {
    let hub = logged::<u64>(0);
    let mut subs: Vec<_> = (0..3).map(|_| hub.subscribe().unwrap()).collect();
    for s in &subs {
        assert!(s.join("t").unwrap());
    }
    let per = 3_000u64;
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    hub.publish("t", p * per + i).unwrap();
                }
            })
        })
        .collect();
    let rt = rt();
    let mut buf = Vec::new();
    for s in &mut subs {
        let (mut next, mut got) = (1, 0);
        while next <= 2 * per {
            buf.clear();
            match rt.block_on(s.recv_many(&mut buf, 64)) {
                Ok(n) => {
                    for m in &buf[..n] {
                        assert_eq!(m.seq(), next, "in order, no gap without its notice");
                        next += 1;
                        got += 1;
                    }
                }
                Err(RecvError::Lagged(k)) => next += k,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(next, 2 * per + 1);
        assert!(got > 0);
    }
    for p in publishers {
        p.join().unwrap();
    }
}

#[test]
fn a_subscriber_that_falls_behind_hears_the_exact_loss_then_the_newest() {
    let hub = logged::<u64>(0);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish_many("t", 0..2_000).unwrap();
    let lost = match s.try_recv() {
        Err(TryRecvError::Lagged(n)) => n,
        other => panic!("a lag notice first, got {other:?}"),
    };
    let rest: Vec<u64> = std::iter::from_fn(|| s.try_recv().ok()).map(|m| m.seq()).collect();
    assert_eq!(rest.first(), Some(&(lost + 1)), "taken from just after the gap");
    assert_eq!(rest.len() as u64 + lost, 2_000);
    assert!(rest.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(rest.len() >= 512, "at least the room kept: {}", rest.len());
}

#[test]
fn the_ring_still_carries_broadcasts_and_direct_sends() {
    let hub = logged::<u32>(0);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    hub.broadcast(2).unwrap();
    hub.send_to(s.id(), 3).unwrap();
    hub.publish("t", 4).unwrap();
    assert_eq!(s.len(), 4, "two in the ring, two still to take in the log");
    let mut got: Vec<u32> = std::iter::from_fn(|| s.try_recv().ok()).map(|m| *m.payload()).collect();
    let topic: Vec<u32> = got.iter().copied().filter(|p| *p == 1 || *p == 4).collect();
    assert_eq!(topic, [1, 4], "the topic's own order");
    got.sort();
    assert_eq!(got, [1, 2, 3, 4]);
}

struct CountWakes(AtomicUsize);
impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_parked_receiver_is_woken_by_a_publish() {
    let hub = logged::<u32>(0);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut buf = Vec::new();
    {
        let mut fut = std::pin::pin!(s.recv_many(&mut buf, 8));
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "nothing yet: parked");
        hub.publish("t", 7).unwrap();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "the publish woke it");
        assert!(matches!(fut.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(1))));
    }
    assert_eq!(*buf[0].payload(), 7);
}

/// A subscriber joined to `t` after seq 3, with 1..=10 published: 4..=10
/// replayed into its ring.
fn joined_after_3() -> (Hub<u32>, fanout_core::Subscriber<u32>, fanout_core::Joined) {
    let hub = logged::<u32>(100);
    let mut first = hub.subscribe().unwrap();
    first.join("t").unwrap();
    hub.publish_many("t", 1..=10).unwrap();
    let epoch = first.try_recv().unwrap().epoch();
    let back = hub.subscribe().unwrap();
    let j = back.join_from("t", JoinFrom::After(Position { epoch, seq: 3 })).unwrap();
    (hub, back, j)
}

#[test]
fn a_join_from_a_position_replays_then_goes_on_in_the_log_without_gap_or_duplicate() {
    let (hub, mut back, j) = joined_after_3();
    assert!(j.recovered);
    hub.publish_many("t", 11..=15).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| back.try_recv().ok()).map(|m| m.seq()).collect();
    assert_eq!(got, (4..=15).collect::<Vec<u64>>());
}

struct Tracked(Arc<AtomicUsize>);
impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked(self.0.clone())
    }
}
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn what_a_leaving_subscriber_did_not_take_is_freed() {
    let drops = Arc::new(AtomicUsize::new(0));
    let hub = logged::<Tracked>(0);
    let keep = hub.subscribe().unwrap();
    keep.join("t").unwrap();
    let s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish_many("t", (0..100).map(|_| Tracked(drops.clone()))).unwrap();
    assert!(s.leave("t"));
    drop(s);
    // `keep` holds every message still; once it leaves too and the topic
    // goes, all 101 are freed, the ones `s` never took included.
    hub.publish("t", Tracked(drops.clone())).unwrap();
    assert!(keep.leave("t"));
    drop(keep);
    hub.shutdown();
    drop(hub);
    assert_eq!(drops.load(Ordering::Relaxed), 101);
}

#[test]
fn shutdown_ends_a_reader_of_a_shared_log() {
    let hub = logged::<u32>(0);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    assert_eq!(*s.try_recv().unwrap().payload(), 1);
    hub.shutdown();
    let r = rt().block_on(async { s.recv().await });
    assert!(matches!(r, Err(RecvError::Closed(_))), "{r:?}");
}

#[test]
fn broadcasts_through_a_shared_log_reach_every_subscriber_in_order_from_when_it_subscribed() {
    let hub = Hub::<u64>::builder().shared_log(512).shared_log_from(0).build().unwrap();
    let mut early = hub.subscribe().unwrap();
    hub.broadcast_many(0..10).unwrap();
    let mut late = hub.subscribe().unwrap();
    hub.broadcast_many(10..20).unwrap();
    assert_eq!(early.len(), 20, "what it has to take in the log counts as queued");
    let e: Vec<u64> = std::iter::from_fn(|| early.try_recv().ok()).map(|m| *m.payload()).collect();
    let l: Vec<u64> = std::iter::from_fn(|| late.try_recv().ok()).map(|m| *m.payload()).collect();
    assert_eq!(e, (0..20).collect::<Vec<_>>());
    assert_eq!(l, (10..20).collect::<Vec<_>>(), "only what was broadcast after it subscribed");
}

#[test]
fn a_room_beyond_the_limit_is_refused_with_the_setting_named() {
    let e = Hub::<u32>::builder().shared_log(fanout_core::MAX_SHARED_LOG + 1).build().unwrap_err();
    assert_eq!(e.field(), "broadcast_log");
}

#[test]
fn under_evict_a_subscriber_that_fell_behind_is_closed_as_a_slow_consumer_at_once() {
    // As a full ring's subscriber is: closed when the writer moves it, not
    // when it next looks (before, a subscriber that never looked again was
    // never closed: `examples/demo.rs`'s slow readers, on a log by default).
    let hub = logged_with::<u64>(0, Overflow::Evict);
    let mut slow = hub.subscribe().unwrap();
    slow.join("t").unwrap();
    let mut fine = hub.subscribe().unwrap();
    fine.join("t").unwrap();
    hub.publish("t", 0).unwrap();
    assert_eq!(fine.try_recv().unwrap().seq(), 1);
    assert_eq!(slow.try_recv().unwrap().seq(), 1);
    for i in 1..2_000 {
        hub.publish("t", i).unwrap();
        assert_eq!(fine.try_recv().unwrap().seq(), i + 1, "one that keeps up is never moved");
    }
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer), "closed before it looks");
    hub.flush_cleanup();
    assert_eq!(hub.stats().evicted.slow_consumer, 1, "counted as an eviction");
    // The loss first, exactly; then what the log still held of what was
    // appended before the close (a closed reader keeps the room, and the
    // writer went on: maybe nothing), in order; then the close.
    let lost = match slow.try_recv() {
        Err(TryRecvError::Lagged(n)) => n,
        other => panic!("{other:?}"),
    };
    let mut rest = Vec::new();
    let end = loop {
        match slow.try_recv() {
            Ok(m) => rest.push(m.seq()),
            Err(e) => break e,
        }
    };
    assert_eq!(end, TryRecvError::Closed(CloseReason::SlowConsumer));
    assert_eq!(rest, (lost + 2..lost + 2 + rest.len() as u64).collect::<Vec<u64>>(), "from the gap on");
    assert!(lost + 1 + (rest.len() as u64) < 2_000, "nothing appended after the close");
    hub.publish("t", 0).unwrap();
    let after = slow.try_recv().map(|m| m.seq());
    assert_eq!(after, Err(TryRecvError::Closed(CloseReason::SlowConsumer)), "nothing after the close");
}

#[test]
fn a_join_from_a_position_keeps_the_topic_order_across_batches() {
    let (hub, mut back, _) = joined_after_3();
    hub.publish_many("t", 11..=15).unwrap();
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while let Ok(1..) = back.try_recv_many(&mut buf, 3) {
        got.extend(buf.drain(..).map(|m| m.seq()));
    }
    assert_eq!(got, (4..=15).collect::<Vec<u64>>());
}

#[test]
fn a_repairing_reader_moved_by_the_writer_takes_back_what_the_history_holds() {
    let hub: Hub<u64> = Hub::builder()
        .capacity(64)
        .topic_options(|_| TopicOptions {
            history_size: 128,
            history_ttl: Duration::from_secs(600),
            shared_log: 64,
            shared_log_from: 0,
            ..TopicOptions::default()
        })
        .build()
        .unwrap();
    let opts = fanout_core::SubscribeOptions::new().overflow(Overflow::DropOldest).repair(true);
    let mut s = hub.subscribe_with(opts).unwrap();
    s.join("t").unwrap();
    hub.publish_many("t", 1..=300).unwrap();
    let mut got = Vec::new();
    loop {
        match s.try_recv() {
            Ok(m) => got.push(Ok(m.seq())),
            Err(TryRecvError::Lagged(n)) => got.push(Err(n)),
            Err(_) => break,
        }
    }
    let mut want = vec![Err(172)];
    want.extend((173..=300).map(Ok));
    assert_eq!(got, want);
}

/// A hub whose topics switch to a log of `room` at `from` members, with
/// rings of 4 (so that a log-fed subscriber is told apart: it keeps what a
/// ring of 4 would lose).
fn switching(room: usize, from: usize) -> Hub<u64> {
    Hub::builder()
        .capacity(4)
        .high_water(1.0)
        .overflow(Overflow::DropOldest)
        .topic_options(move |_| TopicOptions {
            shared_log: room,
            shared_log_from: from,
            ..TopicOptions::default()
        })
        .build()
        .unwrap()
}

fn seqs_of(s: &mut fanout_core::Subscriber<u64>) -> Vec<Result<u64, u64>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match s.try_recv_many(&mut buf, 3) {
            Ok(0) => return out,
            Ok(_) => out.extend(buf.drain(..).map(|m| Ok(m.seq()))),
            Err(TryRecvError::Lagged(n)) => out.push(Err(n)),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn a_topic_switches_to_its_log_at_its_member_count_and_loses_nothing() {
    let hub = switching(64, 2);
    let mut a = hub.subscribe().unwrap();
    a.join("t").unwrap();
    hub.publish_many("t", 1..=3).unwrap(); // one member: a's ring (3 of 4)
    let mut b = hub.subscribe().unwrap();
    b.join("t").unwrap();
    // Two members: the next walk switches. 40 messages would overflow a
    // ring of 4 by far; the log's room keeps them all.
    hub.publish_many("t", 4..=43).unwrap();
    assert_eq!(seqs_of(&mut a), (1..=43).map(Ok).collect::<Vec<_>>(), "ring first, then the log, in order");
    assert_eq!(seqs_of(&mut b), (4..=43).map(Ok).collect::<Vec<_>>(), "from its join on");
    // A later member reads the log from its join.
    let mut c = hub.subscribe().unwrap();
    c.join("t").unwrap();
    hub.publish_many("t", 44..=50).unwrap();
    assert_eq!(seqs_of(&mut c), (44..=50).map(Ok).collect::<Vec<_>>());
}

#[test]
fn below_its_member_count_a_topic_stays_on_the_rings() {
    let hub = switching(64, 3);
    let mut a = hub.subscribe().unwrap();
    a.join("t").unwrap();
    let b = hub.subscribe().unwrap();
    b.join("t").unwrap();
    hub.publish_many("t", 1..=10).unwrap();
    // A ring of 4 keeps the last 4: the loss of 6, then 7..=10.
    let mut want = vec![Err(6)];
    want.extend((7..=10).map(Ok));
    assert_eq!(seqs_of(&mut a), want);
}

#[test]
fn concurrent_publishers_and_joiners_across_the_switch_lose_double_and_reorder_nothing() {
    let hub: Hub<u64> = Hub::builder()
        .capacity(4096)
        .overflow(Overflow::DropOldest)
        .topic_options(|_| TopicOptions { shared_log: 4096, shared_log_from: 4, ..TopicOptions::default() })
        .build()
        .unwrap();
    let first = hub.subscribe().unwrap();
    first.join("t").unwrap();
    let subs: Vec<_> = std::thread::scope(|sc| {
        for p in 0..2 {
            let hub = &hub;
            sc.spawn(move || {
                for i in 0..500 {
                    hub.publish("t", p * 1000 + i).unwrap();
                }
            });
        }
        let joiners: Vec<_> = (0..6)
            .map(|_| {
                let hub = &hub;
                sc.spawn(move || {
                    let s = hub.subscribe().unwrap();
                    s.join("t").unwrap();
                    s
                })
            })
            .collect();
        joiners.into_iter().map(|j| j.join().unwrap()).collect()
    });
    hub.publish("t", 9_999).unwrap(); // after every join: each must see it
    for mut s in subs.into_iter().chain(std::iter::once(first)) {
        let got = seqs_of(&mut s);
        let seqs: Vec<u64> = got.iter().map(|r| *r.as_ref().expect("nothing lost")).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous, in order, once: {seqs:?}");
        assert_eq!(seqs.last(), Some(&1_001), "the last message reached every subscriber");
    }
}

#[test]
fn numbers_a_log_topic_skipped_are_announced_in_their_place() {
    use fanout_core::{Meta, Priority};
    let at = |seq| Meta { epoch: 7, seq };
    let hub = logged::<u64>(100);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let mut other = hub.subscribe().unwrap();
    other.join("t").unwrap();
    let t = hub.topic("t");
    t.publish_at(at(1), Priority::Normal, |_| 1).unwrap();
    t.publish_at(at(2), Priority::Normal, |_| 2).unwrap();
    // 3..=5 never arrive; the log says so between 2 and 6.
    t.publish_at(at(6), Priority::Normal, |_| 6).unwrap();
    assert_eq!(s.try_recv().unwrap().seq(), 1);
    assert_eq!(s.try_recv().unwrap().seq(), 2);
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Lagged(3), "the gap is announced before 6");
    assert_eq!(s.try_recv().unwrap().seq(), 6);
    // In one batch: what comes before the gap, then the gap, then the rest.
    let mut buf = Vec::new();
    assert_eq!(other.try_recv_many(&mut buf, 64), Ok(2));
    assert_eq!(other.try_recv_many(&mut buf, 64), Err(TryRecvError::Lagged(3)));
    assert_eq!(other.try_recv_many(&mut buf, 64), Ok(1));
    assert_eq!(buf.iter().map(|m| m.seq()).collect::<Vec<_>>(), [1, 2, 6]);
    // A skip past the room: the readers are moved, and told the whole loss.
    t.publish_at(at(10_000), Priority::Normal, |_| 10_000).unwrap();
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Lagged(9_993));
    assert_eq!(s.try_recv().unwrap().seq(), 10_000);
    drop(s);
    drop(other);
    hub.flush_cleanup();
    let st = hub.stats();
    assert_eq!((st.delivered, st.displaced), (8, 0), "holes are no deliveries: {st:?}");
}

#[test]
fn broadcasts_switch_to_their_log_at_the_subscriber_count_and_lose_nothing() {
    let hub: Hub<u64> = Hub::builder()
        .capacity(4)
        .high_water(1.0)
        .overflow(Overflow::DropOldest)
        .shared_log(64)
        .shared_log_from(2)
        .build()
        .unwrap();
    let mut a = hub.subscribe().unwrap();
    // One subscriber: its ring of 4 keeps the last 4 of 10.
    hub.broadcast_many(1..=10).unwrap();
    let mut want = vec![Err(6)];
    want.extend((7..=10).map(Ok));
    assert_eq!(seqs_of(&mut a), want, "below the count: the rings");
    hub.broadcast_many(11..=12).unwrap(); // still a's ring, unread
    let mut b = hub.subscribe().unwrap();
    // Two: the next walk switches; 40 would overflow a ring of 4.
    hub.broadcast_many(13..=52).unwrap();
    assert_eq!(seqs_of(&mut a), (11..=52).map(Ok).collect::<Vec<_>>(), "the ring's first, then the log");
    assert_eq!(seqs_of(&mut b), (13..=52).map(Ok).collect::<Vec<_>>());
    let mut c = hub.subscribe().unwrap();
    hub.broadcast_many(53..=60).unwrap();
    assert_eq!(seqs_of(&mut c), (53..=60).map(Ok).collect::<Vec<_>>(), "a later subscriber reads the log");
}

#[test]
fn concurrent_broadcasters_and_subscribers_across_the_switch_lose_double_and_reorder_nothing() {
    let hub: Hub<u64> = Hub::builder()
        .capacity(4096)
        .overflow(Overflow::DropOldest)
        .shared_log(4096)
        .shared_log_from(4)
        .build()
        .unwrap();
    let first = hub.subscribe().unwrap();
    let subs: Vec<_> = std::thread::scope(|sc| {
        for p in 0..2 {
            let hub = &hub;
            sc.spawn(move || {
                for i in 0..500 {
                    hub.broadcast(p * 1000 + i).unwrap();
                }
            });
        }
        let joiners: Vec<_> = (0..6).map(|_| sc.spawn(|| hub.subscribe().unwrap())).collect();
        joiners.into_iter().map(|j| j.join().unwrap()).collect()
    });
    hub.broadcast(9_999).unwrap(); // after every subscribe: each must see it
    for mut s in subs.into_iter().chain(std::iter::once(first)) {
        let seqs: Vec<u64> = seqs_of(&mut s).into_iter().map(|r| r.expect("nothing lost")).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous, in order, once: {seqs:?}");
        assert_eq!(seqs.last(), Some(&1_001), "the last broadcast reached every subscriber");
    }
}

#[test]
fn a_skip_past_the_room_evicts_nobody() {
    // A skip (`Topic::advance`) is the topic's loss, not a reader's
    // slowness. It moves the readers as an append does, and used to flag
    // those under `Evict` as slow: the next append that moved a really slow
    // one closed them too.
    let hub = logged_with::<u64>(0, Overflow::Evict);
    let mut keeps_up = hub.subscribe().unwrap();
    keeps_up.join("t").unwrap();
    let slow = hub.subscribe().unwrap();
    slow.join("t").unwrap();
    let t = hub.topic("t");
    t.publish(0).unwrap();
    assert_eq!(keeps_up.try_recv().unwrap().seq(), 1);
    t.advance(Position { epoch: t.epoch(), seq: 10_000 });
    assert_eq!(keeps_up.try_recv().unwrap_err(), TryRecvError::Lagged(9_999));
    for i in 1..=2_000 {
        t.publish(i).unwrap();
        assert_eq!(keeps_up.try_recv().unwrap().seq(), 10_000 + i, "one that keeps up is never moved");
    }
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer), "the slow one is evicted");
    assert_eq!(keeps_up.close_reason(), None, "the skip evicted nobody");
}
