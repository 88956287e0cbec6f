//! Gap repair and conflation (`repair.rs`): a subscriber whose ring overflowed
//! takes what it lost back from the topics' histories; only what the history
//! no longer holds is reported lost, and the accounting is exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fanout_core::{Hub, Overflow, SubscribeOptions, Subscriber, TryRecvError};

fn hub(history: usize) -> Hub<u64> {
    Hub::builder().history(history, Duration::from_secs(600)).build().unwrap()
}

fn sub(hub: &Hub<u64>, overflow: Overflow, capacity: usize) -> Subscriber<u64> {
    let opts = SubscribeOptions::new().overflow(overflow).capacity(capacity).high_water(1.0).repair(true);
    hub.subscribe_with(opts).unwrap()
}

/// What a non-blocking drain hands out: `Ok(seq)` per message, `Err(n)` per
/// lag notice.
fn drain(s: &mut Subscriber<u64>) -> Vec<Result<u64, u64>> {
    let mut out = Vec::new();
    loop {
        match s.try_recv() {
            Ok(m) => out.push(Ok(m.seq())),
            Err(TryRecvError::Lagged(n)) => out.push(Err(n)),
            Err(_) => return out,
        }
    }
}

fn seqs(r: std::ops::RangeInclusive<u64>) -> Vec<Result<u64, u64>> {
    r.map(Ok).collect()
}

#[test]
fn displaced_messages_come_back_from_the_history() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropOldest, 4);
    s.join("t").unwrap();
    for i in 1..=10 {
        hub.publish("t", i).unwrap();
    }
    assert_eq!(drain(&mut s), seqs(1..=10), "without repair: Lagged(6), then 7..=10");
    assert_eq!(s.repaired(), 6);
}

#[test]
fn what_the_history_no_longer_holds_is_reported_lost_at_its_place() {
    let hub = hub(8);
    let mut s = sub(&hub, Overflow::DropOldest, 4);
    s.join("t").unwrap();
    for i in 1..=20 {
        hub.publish("t", i).unwrap();
    }
    // The ring holds 17..=20, the history 13..=20: 13..=16 come back.
    let mut want = vec![Err(12)];
    want.extend(seqs(13..=20));
    assert_eq!(drain(&mut s), want);
    assert_eq!(s.repaired(), 4);
}

#[test]
fn messages_refused_by_a_full_ring_are_repaired_too() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropNewest, 4);
    s.join("t").unwrap();
    for i in 1..=10 {
        hub.publish("t", i).unwrap();
    }
    assert_eq!(drain(&mut s), seqs(1..=10), "5..=10 did not enter; they come from the history");
    assert_eq!(s.repaired(), 6);
}

#[test]
fn a_gap_in_the_middle_is_repaired_before_what_follows_it() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropNewest, 4);
    s.join("t").unwrap();
    for i in 1..=6 {
        hub.publish("t", i).unwrap();
    }
    let mut first = Vec::new();
    // Two out: room for two more, and 5, 6 were refused.
    first.push(s.try_recv().unwrap().seq());
    first.push(s.try_recv().unwrap().seq());
    for i in 7..=8 {
        hub.publish("t", i).unwrap();
    }
    first.extend(drain(&mut s).into_iter().map(|r| r.unwrap()));
    assert_eq!(first, (1..=8).collect::<Vec<_>>());
    assert_eq!(s.repaired(), 2);
}

#[test]
fn every_topic_is_repaired_even_one_whose_first_messages_were_lost() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropOldest, 4);
    s.join("a").unwrap();
    s.join("b").unwrap();
    for i in 1..=6 {
        hub.publish("a", i).unwrap();
        hub.publish("b", i).unwrap();
    }
    // The ring holds a5 b5 a6 b6; a1..a4 and b1..b4 come back.
    let mut got: Vec<(String, u64)> = Vec::new();
    loop {
        match s.try_recv() {
            Ok(m) => got.push((m.topic().unwrap().to_string(), m.seq())),
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    for t in ["a", "b"] {
        let mine: Vec<u64> = got.iter().filter(|(n, _)| n == t).map(|(_, s)| *s).collect();
        assert_eq!(mine, (1..=6).collect::<Vec<_>>(), "topic {t}");
    }
    assert_eq!(s.repaired(), 8);
}

#[test]
fn a_loss_at_the_tail_is_repaired_with_nothing_after_it() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropOldest, 2);
    s.join("a").unwrap();
    s.join("b").unwrap();
    hub.publish("a", 1).unwrap();
    hub.publish("b", 1).unwrap();
    hub.publish("b", 2).unwrap();
    hub.publish("b", 3).unwrap();
    // a1 and b1 were displaced; nothing of `a` follows a1.
    let got: Vec<(String, u64)> =
        std::iter::from_fn(|| s.try_recv().ok()).map(|m| (m.topic().unwrap().to_string(), m.seq())).collect();
    assert!(got.contains(&("a".into(), 1)), "a1 came back: {got:?}");
    let b: Vec<u64> = got.iter().filter(|(t, _)| t == "b").map(|(_, s)| *s).collect();
    assert_eq!(b, vec![1, 2, 3]);
    assert_eq!(s.repaired(), 2);
}

#[test]
fn direct_sends_have_no_history_and_are_reported_lost() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropOldest, 2);
    for i in 1..=5 {
        hub.send_to(s.id(), i).unwrap();
    }
    let got: Vec<Result<u64, u64>> = {
        let mut out = Vec::new();
        loop {
            match s.try_recv() {
                Ok(m) => out.push(Ok(*m.payload())),
                Err(TryRecvError::Lagged(n)) => out.push(Err(n)),
                Err(_) => break out,
            }
        }
    };
    assert_eq!(got, vec![Err(3), Ok(4), Ok(5)]);
    assert_eq!(s.repaired(), 0);
}

#[test]
fn nothing_published_while_away_is_handed_out_after_joining_again() {
    let hub = hub(128);
    let mut s = sub(&hub, Overflow::DropOldest, 4);
    s.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    assert_eq!(drain(&mut s), seqs(1..=1));
    s.leave("t");
    for i in 2..=10 {
        hub.publish("t", i).unwrap();
    }
    s.join("t").unwrap();
    hub.publish("t", 11).unwrap();
    assert_eq!(drain(&mut s), seqs(11..=11), "2..=10 were published while it was away");
    assert_eq!(s.repaired(), 0);
}

#[test]
fn conflation_hands_out_the_newest_per_key_of_what_was_missed() {
    let hub = hub(128);
    let opts = SubscribeOptions::new().overflow(Overflow::Conflate).capacity(4).high_water(1.0);
    let mut s = hub.subscribe_with(opts).unwrap();
    s.join("prices").unwrap();
    let keys = ["A", "B", "C"];
    for i in 1..=30u64 {
        hub.publish_keyed("prices", keys[(i as usize - 1) % 3], i).unwrap();
    }
    // The ring holds 27..=30; of 1..=26 the newest per key: C 24, A 25, B 26.
    let mut want = vec![24, 25, 26];
    want.extend(27..=30);
    assert_eq!(drain(&mut s), want.into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!((s.repaired(), s.conflated()), (3, 23));
}

#[test]
fn without_repair_the_loss_is_reported_as_before() {
    let hub = hub(128);
    let opts = SubscribeOptions::new().overflow(Overflow::DropOldest).capacity(4);
    let mut s = hub.subscribe_with(opts).unwrap();
    s.join("t").unwrap();
    for i in 1..=10 {
        hub.publish("t", i).unwrap();
    }
    let mut want = vec![Err(6)];
    want.extend(seqs(7..=10));
    assert_eq!(drain(&mut s), want);
}

/// Two publishers on two topics race a receiver whose ring keeps
/// overflowing. With a history that holds everything, every message of each
/// topic arrives once, in order, and nothing is reported lost; with a short
/// one, what arrives is in order and what arrives plus what is reported lost
/// is exactly what was published.
#[test]
fn racing_publishers_lose_nothing_the_history_holds() {
    for history in [1 << 16, 16] {
        const N: u64 = 20_000;
        let hub = hub(history);
        let mut s = sub(&hub, Overflow::DropOldest, 8);
        s.join("a").unwrap();
        s.join("b").unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let pubs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|t| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    for i in 1..=N {
                        hub.publish(t, i).unwrap();
                    }
                })
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (mut last_a, mut last_b, mut lost, mut received) = (0u64, 0u64, 0u64, 0u64);
        let finish = {
            let done = done.clone();
            std::thread::spawn(move || {
                for p in pubs {
                    p.join().unwrap();
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        rt.block_on(async {
            let mut buf = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                buf.clear();
                match s.try_recv_many(&mut buf, 16) {
                    Ok(0) if finished => break,
                    Ok(0) => tokio::task::yield_now().await,
                    Ok(_) => {}
                    Err(TryRecvError::Lagged(n)) => lost += n,
                    Err(e) => panic!("unexpected {e:?}"),
                }
                for m in &buf {
                    let last = if m.topic() == Some("a") { &mut last_a } else { &mut last_b };
                    assert!(m.seq() > *last, "in order: {} after {}", m.seq(), *last);
                    if history > N as usize {
                        assert_eq!(m.seq(), *last + 1, "no gap with a history that holds all");
                    }
                    *last = m.seq();
                    received += 1;
                }
            }
        });
        finish.join().unwrap();
        assert_eq!((last_a, last_b), (N, N), "history {history}: the last of each arrived");
        assert_eq!(received + lost, 2 * N, "history {history}: received + lost = published");
        if history > N as usize {
            assert_eq!(lost, 0);
        }
    }
}

#[test]
fn a_conflated_topic_never_evicts_and_hands_out_the_newest_per_key() {
    use fanout_core::{RecvError, TopicOptions};
    // The subscriber's own policy is `Evict`; the topic's, `Conflate`.
    let hub = Hub::<u64>::builder()
        .capacity(4)
        .high_water(1.0)
        .repair(true)
        .topic_options(|name| TopicOptions {
            history_size: 128,
            history_ttl: Duration::from_secs(600),
            overflow: name.starts_with("prices.").then_some(Overflow::Conflate),
            shared_log: 0,
            shared_log_from: 0,
        })
        .build()
        .unwrap();
    let mut s = hub.subscribe().unwrap();
    s.join("prices.fx").unwrap();
    for i in 1..=12u64 {
        hub.publish_keyed("prices.fx", ["A", "B"][(i as usize - 1) % 2], i).unwrap();
    }
    assert!(!s.is_closed(), "not evicted: the topic's messages are conflated instead");
    // 1..=4 entered; of 5..=12 the newest per key: A 11, B 12.
    assert_eq!(drain(&mut s), [1, 2, 3, 4, 11, 12].into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!((s.repaired(), s.conflated()), (2, 6));

    // Another topic keeps the subscriber's policy.
    s.join("orders").unwrap();
    for i in 1..=5 {
        hub.publish("orders", i).unwrap();
    }
    assert!(s.is_closed(), "evicted on `orders`, whose policy is the subscriber's");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut got = Vec::new();
    rt.block_on(async {
        loop {
            match s.recv().await {
                Ok(m) => got.push(Ok(m.seq())),
                Err(RecvError::Lagged(n)) => got.push(Err(n)),
                Err(RecvError::Closed(_)) => break,
            }
        }
    });
    assert_eq!(got, vec![Ok(1), Ok(2), Ok(3), Ok(4), Err(1)], "closing: nothing is repaired");
}
