//! History, joins from a position (recovery) and with the latest message.
//!
//! Each test states one promise of `recovery.rs` / `history.rs`: an exact
//! replay, or a clear "not recovered" with its reason; a history that
//! outlives the last subscriber for its TTL and no longer; epochs that a
//! JavaScript number holds and a restart changes. The last test races
//! publishers against joins from a position and checks, for every join, that
//! the stream it received has no gap and no duplicate at the hand-off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fanout_core::{
    Hub, JoinFrom, NotRecovered, Overflow, Position, SubscribeOptions, Subscriber, TopicOptions, TryRecvError,
};

const HOUR: Duration = Duration::from_secs(3600);

fn hub(size: usize, ttl: Duration) -> Hub<u64> {
    Hub::builder().history(size, ttl).build().unwrap()
}

/// Everything queued now, as (seq, payload); stops at a lag notice or empty.
fn queued(s: &mut Subscriber<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while let Ok(m) = s.try_recv() {
        out.push((m.seq(), *m.payload()));
    }
    out
}

fn seqs(s: &mut Subscriber<u64>) -> Vec<u64> {
    queued(s).into_iter().map(|(seq, _)| seq).collect()
}

#[test]
fn every_publish_is_numbered_and_kept_without_subscribers() {
    let hub = hub(10, HOUR);
    for v in 0..3 {
        let r = hub.publish("t", v).unwrap();
        assert_eq!(r.seq, v + 1, "a number even with nobody subscribed");
    }
    let page = hub.history("t", 10, None).unwrap();
    assert_eq!(page.position.seq, 3);
    assert_eq!(page.messages.iter().map(|m| *m.payload()).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(page.position.epoch > 0 && page.position.epoch < 1 << 53, "exact in a JavaScript number");
    // Without a history, nothing is numbered for nobody (as before).
    let plain = Hub::<u64>::new();
    assert_eq!(plain.publish("t", 1).unwrap().seq, 0);
    assert!(plain.history("t", 10, None).is_none());
}

#[test]
fn history_pages_forward_and_keeps_the_newest() {
    let hub = hub(5, HOUR);
    hub.publish_many("t", 1..=8).unwrap();
    let t = hub.topic("t");
    let latest = t.history(3, None);
    assert_eq!(latest.messages.iter().map(|m| m.seq()).collect::<Vec<_>>(), vec![6, 7, 8]);
    let page = t.history(2, Some(4));
    assert_eq!(page.messages.iter().map(|m| m.seq()).collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(t.history(10, Some(0)).messages.len(), 5, "only the last 5 are kept");
    assert_eq!(page.position, t.position());
}

#[test]
fn a_subscriber_that_comes_back_gets_exactly_what_it_missed() {
    let hub = hub(100, HOUR);
    let mut a = hub.subscribe().unwrap();
    a.join("t").unwrap();
    hub.publish_many("t", 1..=3).unwrap();
    let got = queued(&mut a);
    assert_eq!(got, vec![(1, 1), (2, 2), (3, 3)]);
    let epoch = hub.topic("t").position().epoch;
    drop(a); // gone; the topic keeps its stream
    hub.publish_many("t", 4..=6).unwrap();

    let mut b = hub.subscribe().unwrap();
    let j = b.join_from("t", JoinFrom::After(Position { epoch, seq: 3 })).unwrap();
    assert!(j.recovered, "{j:?}");
    assert_eq!((j.reason, j.replayed, j.position.seq), (None, 3, 6));
    hub.publish_many("t", 7..=8).unwrap();
    assert_eq!(seqs(&mut b), vec![4, 5, 6, 7, 8], "replay then live, no gap, no duplicate");
}

#[test]
fn not_recovered_says_why_and_joins_live() {
    let hub = hub(3, HOUR);
    hub.publish_many("t", 1..=6).unwrap();
    let epoch = hub.topic("t").position().epoch;
    let at = |seq| JoinFrom::After(Position { epoch, seq });
    let cases = [
        (at(1), NotRecovered::TooOld), // 2 and 3 are gone (history of 3)
        (JoinFrom::After(Position { epoch: epoch ^ 1, seq: 5 }), NotRecovered::EpochChanged),
        (at(99), NotRecovered::Ahead),
    ];
    for (k, (from, why)) in cases.into_iter().enumerate() {
        let mut s = hub.subscribe().unwrap();
        let j = s.join_from("t", from).unwrap();
        assert_eq!((j.recovered, j.reason, j.replayed), (false, Some(why), 0), "{from:?}");
        let now = 6 + k as u64; // one more publish per case, below
        assert_eq!(j.position, Position { epoch, seq: now }, "the current position, to reload from");
        hub.publish("t", 0).unwrap();
        assert_eq!(seqs(&mut s), vec![now + 1], "joined live: only what came after");
    }
    // No history at all.
    let plain = Hub::<u64>::new();
    let s = plain.subscribe().unwrap();
    let j = s.join_from("t", JoinFrom::After(Position { epoch: 1, seq: 0 })).unwrap();
    assert!(j.joined);
    assert_eq!(j.reason, Some(NotRecovered::EpochChanged), "a topic created anew has a new epoch");
}

#[test]
fn more_missed_than_the_ring_holds_is_not_recovered() {
    let hub = hub(100, HOUR);
    hub.publish_many("t", 1..=10).unwrap();
    let epoch = hub.topic("t").position().epoch;
    let mut s =
        hub.subscribe_with(SubscribeOptions::new().capacity(4).overflow(Overflow::DropNewest)).unwrap();
    let j = s.join_from("t", JoinFrom::After(Position { epoch, seq: 2 })).unwrap();
    assert_eq!((j.recovered, j.reason), (false, Some(NotRecovered::TooMany)));
    assert!(seqs(&mut s).is_empty(), "nothing partial");
    // Within the ring's room, it is.
    let mut s = hub.subscribe_with(SubscribeOptions::new().capacity(4)).unwrap();
    let j = s.join_from("t", JoinFrom::After(Position { epoch, seq: 7 })).unwrap();
    assert!(j.recovered);
    assert_eq!(seqs(&mut s), vec![8, 9, 10]);
}

#[test]
fn latest_gives_the_last_message_then_live() {
    let hub = hub(10, HOUR);
    let s0 = hub.subscribe().unwrap();
    let j = s0.join_from("t", JoinFrom::Latest).unwrap();
    assert_eq!((j.replayed, j.recovered), (0, false), "nothing published yet");
    hub.publish_many("t", [10, 20]).unwrap();
    let mut s = hub.subscribe().unwrap();
    let j = s.join_from("t", JoinFrom::Latest).unwrap();
    assert_eq!(j.replayed, 1);
    hub.publish("t", 30).unwrap();
    assert_eq!(queued(&mut s), vec![(2, 20), (3, 30)]);
    // Joining twice replays nothing the second time.
    let again = s.join_from("t", JoinFrom::After(Position { epoch: j.position.epoch, seq: 0 })).unwrap();
    assert_eq!((again.joined, again.reason), (false, Some(NotRecovered::AlreadyJoined)));
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn a_topic_outlives_its_last_subscriber_for_the_ttl_only() {
    // Kept: a TTL of an hour.
    let hub = hub(10, HOUR);
    let s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    let before = hub.topic("t").position();
    drop(s);
    hub.flush_cleanup();
    assert_eq!(hub.topic_count(), 1, "its stream is kept for a subscriber that comes back");
    assert_eq!(hub.topic("t").position(), before, "same epoch, same seq");

    // Gone once the TTL has passed: by the publisher's own reclaim check, or
    // by the worker's sweep (a flush sweeps), whichever looks later. No
    // signal says "100 ms have passed": poll, flushing, up to 10 s.
    let hub = hub_ttl(Duration::from_millis(100));
    hub.publish("t", 1).unwrap();
    let seen = hub.topic("t").position();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hub.topic_count() > 0 && std::time::Instant::now() < deadline {
        hub.flush_cleanup();
        std::thread::yield_now();
    }
    assert_eq!(hub.topic_count(), 0, "expired and removed");
    let j = hub.subscribe().unwrap().join_from("t", JoinFrom::After(seen)).unwrap();
    assert_eq!(j.reason, Some(NotRecovered::EpochChanged), "a new life of the topic");
}

fn hub_ttl(ttl: Duration) -> Hub<u64> {
    Hub::builder()
        .topic_options(move |_| TopicOptions {
            history_size: 10,
            history_ttl: ttl,
            ..TopicOptions::default()
        })
        .build()
        .unwrap()
}

#[test]
fn a_restarted_hub_never_continues_a_lost_stream() {
    let first = hub(10, HOUR);
    first.publish_many("t", 1..=5).unwrap();
    let seen = first.topic("t").position();
    drop(first);
    // "Restart": a new hub; same topic name, same traffic.
    let second = hub(10, HOUR);
    second.publish_many("t", 1..=5).unwrap();
    let j = second.subscribe().unwrap().join_from("t", JoinFrom::After(Position { seq: 3, ..seen })).unwrap();
    assert_eq!((j.recovered, j.reason), (false, Some(NotRecovered::EpochChanged)));
    assert_ne!(j.position.epoch, seen.epoch);
}

/// Two publishers publish single messages as fast as they can while a
/// joiner, again and again, takes a position from a witness subscriber,
/// joins from it with a fresh subscriber, and checks what it receives: every
/// `seq` after the position, consecutive, no duplicate, through the hand-off
/// between replay and live.
#[test]
fn joins_from_a_position_race_publishers_without_gap_or_duplicate() {
    let rounds = if cfg!(miri) { 2 } else { 100 };
    let hub = Hub::<u64>::builder().history(4096, HOUR).capacity(8192).build().unwrap();
    let topic = hub.topic("t");
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..2)
        .map(|k| {
            let (t, stop) = (topic.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    t.publish(k << 32 | i).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut witness = hub.subscribe_with(SubscribeOptions::new().overflow(Overflow::DropOldest)).unwrap();
    witness.join("t").unwrap();
    let mut recovered = 0;
    for _ in 0..rounds {
        // A recent position: the witness's latest message.
        let mut pos = None;
        while pos.is_none() {
            while let Ok(m) = witness.try_recv() {
                pos = Some(Position { epoch: m.epoch(), seq: m.seq() });
            }
        }
        let pos = pos.unwrap();
        let mut s = hub.subscribe_with(SubscribeOptions::new().capacity(8192)).unwrap();
        let j = s.join_from("t", JoinFrom::After(pos)).unwrap();
        if !j.recovered {
            // Only if the position fell out of the history meanwhile.
            assert_eq!(j.reason, Some(NotRecovered::TooOld), "{j:?}");
            continue;
        }
        recovered += 1;
        // Read past the hand-off: at least 32 messages after it.
        let mut expect = pos.seq + 1;
        while expect <= j.position.seq + 32 {
            match s.try_recv() {
                Ok(m) => {
                    assert_eq!(m.seq(), expect, "join from {} (hand-off at {})", pos.seq, j.position.seq);
                    expect += 1;
                }
                Err(TryRecvError::Empty) => std::thread::yield_now(),
                Err(e) => panic!("{e:?} after seq {}", expect - 1),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
    assert!(recovered > 0, "some joins recovered");
}
