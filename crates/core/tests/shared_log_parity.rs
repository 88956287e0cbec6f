//! A subscriber of a shared-log topic (`TopicOptions::shared_log`) sees
//! what a ring-fed one sees: each test runs one scenario on a ring-fed hub
//! and on a log-fed hub (`mode(log)`) and expects the same, or the
//! difference `TopicOptions::shared_log` documents (leaving gives up what
//! the log still held; a closed reader is counted until it is dropped;
//! overflow policies other than `Evict` lose the oldest). Stats balance
//! (`delivered == received + displaced + discarded`) in both.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fanout_core::{CloseReason, Hub, Overflow, Priority, Stats, Subscriber, TopicOptions, TryRecvError};

fn mode_with(log: bool, overflow: Overflow, topic_overflow: Option<Overflow>) -> Hub<u64> {
    Hub::builder()
        .overflow(overflow)
        .topic_options(move |_| TopicOptions {
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            shared_log: if log { 512 } else { 0 },
            overflow: topic_overflow,
            shared_log_from: 0,
        })
        .build()
        .unwrap()
}

fn mode(log: bool) -> Hub<u64> {
    mode_with(log, Overflow::DropOldest, None)
}

/// Everything `try_recv` hands out until it has nothing: `Ok(seq)` of
/// topic messages / payload of others, `Err(Lagged)`, and the final error.
#[derive(Debug, PartialEq)]
enum Ev {
    M(u64),
    Lag(u64),
    Closed(CloseReason),
}

fn drain(s: &mut Subscriber<u64>) -> Vec<Ev> {
    let mut out = Vec::new();
    loop {
        match s.try_recv() {
            Ok(m) => out.push(Ev::M(*m.payload())),
            Err(TryRecvError::Lagged(n)) => out.push(Ev::Lag(n)),
            Err(TryRecvError::Closed(r)) => {
                out.push(Ev::Closed(r));
                return out;
            }
            Err(TryRecvError::Empty) => return out,
        }
    }
}

/// A hub whose topics keep `history` messages, on a log of room 64 or
/// the rings (of `capacity`, or the default).
fn with_history(log: bool, history: usize, capacity: Option<usize>) -> Hub<u64> {
    let b = Hub::<u64>::builder().topic_options(move |_| TopicOptions {
        history_size: history,
        history_ttl: Duration::from_secs(600),
        shared_log: if log { 64 } else { 0 },
        shared_log_from: 0,
        ..TopicOptions::default()
    });
    match capacity {
        Some(c) => b.capacity(c),
        None => b,
    }
    .build()
    .unwrap()
}

/// A subscriber of `t` with a ring of 64 (or a log of room 64) under
/// `overflow`, after 300 single messages it did not read.
fn overflowing(log: bool, overflow: Overflow) -> (Hub<u64>, Subscriber<u64>) {
    let hub = Hub::<u64>::builder()
        .capacity(64)
        .high_water(1.0)
        .overflow(overflow)
        .topic_options(move |_| TopicOptions {
            shared_log: if log { 64 } else { 0 },
            shared_log_from: 0,
            ..TopicOptions::default()
        })
        .build()
        .unwrap();
    let s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    for i in 0..300 {
        hub.publish("t", i).unwrap();
    }
    (hub, s)
}

fn balance(st: &Stats, received: u64) -> (u64, u64) {
    (st.delivered, received + st.displaced + st.discarded)
}

// ---------------------------------------------------------------- len

#[test]
fn len_and_is_empty_count_unread_log_messages() {
    for log in [false, true] {
        let hub = mode(log);
        let s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..3).unwrap();
        assert_eq!((s.len(), s.is_empty()), (3, false), "log={log}");
    }
}

// ---------------------------------------------------------------- leave

#[test]
fn leaving_a_topic_keeps_what_its_ring_holds_and_counts_what_its_log_held_as_discarded() {
    // A documented difference (`TopicOptions::shared_log`): the ring keeps
    // what was queued; the log's cursor goes with the membership, and what
    // it had not taken is counted as discarded at once.
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..5).unwrap();
        assert!(s.leave("t"));
        hub.flush_cleanup();
        let got = drain(&mut s);
        if log {
            assert_eq!(got, vec![]);
            assert_eq!(hub.stats().discarded, 5);
        } else {
            assert_eq!(got, (0..5).map(Ev::M).collect::<Vec<_>>());
        }
        let st = hub.stats();
        assert_eq!(balance(&st, if log { 0 } else { 5 }), (5, 5), "log={log}");
    }
}

#[test]
fn leave_then_rejoin_gets_only_what_comes_after_the_rejoin() {
    for log in [false, true] {
        let hub = mode(log);
        let keep = hub.subscribe().unwrap();
        keep.join("t").unwrap();
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..3).unwrap();
        assert_eq!(drain(&mut s), (0..3).map(Ev::M).collect::<Vec<_>>());
        s.leave("t");
        hub.publish_many("t", 3..5).unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 5..7).unwrap();
        assert_eq!(drain(&mut s), (5..7).map(Ev::M).collect::<Vec<_>>(), "log={log}");
    }
}

// ---------------------------------------------------------------- stats

#[test]
fn stats_balance_when_a_subscriber_is_dropped_with_unread_messages() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..10).unwrap();
        assert_eq!(drain(&mut s).len(), 10);
        hub.publish_many("t", 10..17).unwrap();
        drop(s);
        hub.flush_cleanup();
        let st = hub.stats();
        assert_eq!(balance(&st, 10), (17, 17), "log={log}: {st:?}");
    }
}

#[test]
fn stats_balance_when_a_subscriber_leaves_with_unread_messages() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..10).unwrap();
        s.leave("t");
        let got = drain(&mut s).len() as u64;
        drop(s);
        hub.flush_cleanup();
        let st = hub.stats();
        let (d, r) = balance(&st, got);
        assert_eq!(d, r, "log={log}: received {got}, {st:?}");
    }
}

#[test]
fn stats_balance_after_a_lag() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..2_000).unwrap();
        let ev = drain(&mut s);
        let got = ev.iter().filter(|e| matches!(e, Ev::M(_))).count() as u64;
        let lost: u64 = ev.iter().map(|e| if let Ev::Lag(n) = e { *n } else { 0 }).sum();
        assert_eq!(got + lost, 2_000, "log={log}");
        let st = hub.stats();
        assert_eq!(balance(&st, got), (2_000, 2_000), "log={log}: {st:?}");
    }
}

// ---------------------------------------------------------------- closes

/// Publishes 5 to a subscriber of `t`, closes it with `close`, waits for
/// the cleanup worker: it must drain the 5, then see `Closed(reason)`.
fn drains_what_it_had_then_sees(reason: CloseReason, close: impl Fn(&Hub<u64>, &Subscriber<u64>)) {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..5).unwrap();
        close(&hub, &s);
        hub.flush_cleanup();
        let mut want: Vec<Ev> = (0..5).map(Ev::M).collect();
        want.push(Ev::Closed(reason));
        assert_eq!(drain(&mut s), want, "log={log}");
    }
}

#[test]
fn a_kicked_subscriber_drains_what_it_had_then_sees_kicked() {
    drains_what_it_had_then_sees(CloseReason::Kicked, |hub, s| assert!(hub.kick(s.id())));
}

#[test]
fn a_closed_subscriber_drains_what_it_had_then_sees_unsubscribed() {
    drains_what_it_had_then_sees(CloseReason::Unsubscribed, |_, s| s.close());
}

#[test]
fn shutdown_lets_a_subscriber_drain_what_it_had() {
    drains_what_it_had_then_sees(CloseReason::Shutdown, |hub, _| hub.shutdown());
}

#[test]
fn what_is_published_past_a_kicked_subscribers_seal_is_discarded_and_only_what_it_had_is_lost() {
    // The kicked subscriber's handle lives on while the topic goes on (a
    // second member keeps it alive): its log cursor is moved again and
    // again past its seal, which is nothing it lost.
    for log in [false, true] {
        let hub = mode(log);
        let mut keep = hub.subscribe().unwrap();
        keep.join("t").unwrap();
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..5).unwrap();
        assert!(hub.kick(s.id()));
        hub.flush_cleanup();
        let mut kept = drain(&mut keep).len() as u64;
        for from in (5..3_005).step_by(100) {
            // In steps the other member keeps up with: it loses nothing.
            hub.publish_many("t", from..from + 100).unwrap();
            kept += drain(&mut keep).len() as u64;
        }
        assert_eq!(kept, 3_005);
        // The ring keeps what it queued before the kick; the log keeps
        // its room only, so the five are lost, and said to be, exactly.
        let mut want: Vec<Ev> = if log { vec![Ev::Lag(5)] } else { (0..5).map(Ev::M).collect() };
        want.push(Ev::Closed(CloseReason::Kicked));
        assert_eq!(drain(&mut s), want, "log={log}");
        drop(s);
        drop(keep);
        hub.flush_cleanup();
        let st = hub.stats();
        // Only the five before the seal count as lost; the rest as discarded.
        assert_eq!(st.displaced, if log { 5 } else { 0 }, "log={log}: {st:?}");
        let received = kept + if log { 0 } else { 5 };
        assert_eq!(balance(&st, received), (st.delivered, st.delivered), "log={log}: {st:?}");
    }
}

#[test]
fn nothing_published_after_a_close_is_delivered_and_what_a_log_counted_is_discarded() {
    // The close is the subscriber's own, so every publish after it is after
    // it; the cleanup worker, which removes it (and settles what a dropped
    // reader left), is waited for after each round (`flush_cleanup`), so
    // that no walk of its holds the next round's publish.
    for log in [false, true] {
        let hub = mode(log);
        let mut bad = Vec::new();
        for _ in 0..200 {
            let mut s = hub.subscribe().unwrap();
            s.join("t").unwrap();
            hub.publish("t", 0).unwrap(); // admits the cursor
            assert_eq!(drain(&mut s), vec![Ev::M(0)]);
            s.close();
            let r = hub.publish("t", 1).unwrap();
            let got = drain(&mut s);
            // A ring-fed subscriber is skipped once closing; a log's writer
            // counts every reader of the log until its subscriber is dropped
            // (documented on `TopicOptions::shared_log`; 0 when the cleanup
            // worker already reclaimed the topic, whose only member it was),
            // and the drop counts what it did not take as discarded.
            let counted_ok = if log { r.recipients <= 1 } else { r.recipients == 0 };
            if !counted_ok || got != vec![Ev::Closed(CloseReason::Unsubscribed)] {
                bad.push((r.recipients, got));
            }
            drop(s);
            hub.flush_cleanup();
        }
        assert!(
            bad.is_empty(),
            "log={log}: {} of 200 closes delivered after the close, e.g. {:?}",
            bad.len(),
            bad[0]
        );
        hub.flush_cleanup();
        let st = hub.stats();
        assert_eq!(balance(&st, 200), (st.delivered, st.delivered), "log={log}: {st:?}");
        assert!(st.delivered >= 200, "log={log}");
        assert!(log || st.delivered == 200, "ring: nothing counted after a close");
    }
}

#[test]
fn stats_balance_after_a_self_eviction_from_a_log() {
    let hub = mode_with(true, Overflow::Evict, None);
    let mut slow = hub.subscribe().unwrap();
    slow.join("t").unwrap();
    hub.publish_many("t", 0..2_000).unwrap();
    let mut got = 0;
    loop {
        match slow.try_recv() {
            Ok(_) => got += 1,
            Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Closed(_)) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(slow);
    hub.flush_cleanup();
    let st = hub.stats();
    assert_eq!(balance(&st, got), (2_000, 2_000), "received {got}: {st:?}");
}

#[test]
fn nothing_after_closed_for_a_subscriber_evicted_from_a_log() {
    let hub = mode_with(true, Overflow::Evict, None);
    let mut slow = hub.subscribe().unwrap();
    slow.join("t").unwrap();
    let keep = hub.subscribe().unwrap();
    keep.join("t").unwrap();
    hub.publish_many("t", 0..2_000).unwrap();
    let ev = drain(&mut slow);
    assert_eq!(ev.last(), Some(&Ev::Closed(CloseReason::SlowConsumer)), "{ev:?}");
    // Closed is terminal.
    let after = drain(&mut slow);
    assert_eq!(
        after,
        vec![Ev::Closed(CloseReason::SlowConsumer)],
        "after Closed: {:?}",
        &after[..after.len().min(4)]
    );
}

#[test]
fn an_evicted_subscriber_is_told_its_loss_before_closed() {
    // Overflow docs: "Whatever the policy, a subscriber that lost messages
    // learns how many through RecvError::Lagged: a loss is never silent".
    for log in [false, true] {
        let (_hub, mut s) = overflowing(log, Overflow::Evict);
        let ev = drain(&mut s);
        let got = ev.iter().filter(|e| matches!(e, Ev::M(_))).count() as u64;
        let lost: u64 = ev.iter().map(|e| if let Ev::Lag(n) = e { *n } else { 0 }).sum();
        assert_eq!(ev.last(), Some(&Ev::Closed(CloseReason::SlowConsumer)), "log={log}");
        assert!(
            lost > 0,
            "log={log}: the loss is announced: got {got}, events {:?}",
            &ev[ev.len().saturating_sub(3)..]
        );
    }
}

#[test]
fn a_topics_own_overflow_policy_applies_to_a_lag_in_its_log() {
    // Subscriber default Evict, topic says DropOldest: a ring-fed member
    // sheds its oldest and is told (never evicted); so should a log reader.
    for log in [false, true] {
        let hub = mode_with(log, Overflow::Evict, Some(Overflow::DropOldest));
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..2_000).unwrap();
        let ev = drain(&mut s);
        assert!(matches!(ev.first(), Some(Ev::Lag(_))), "log={log}: {:?}", &ev[..ev.len().min(3)]);
        assert!(!s.is_closed(), "log={log}: {:?}", s.close_reason());
    }
}

// ---------------------------------------------------------------- wakers

#[test]
fn a_cancelled_stream_next_on_a_log_topic_leaves_no_waker_behind() {
    use futures_util::StreamExt;
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish("t", 0).unwrap(); // first append: admits the cursor
        assert_eq!(drain(&mut s), vec![Ev::M(0)]);
        let (woken, waker) = common::counting_waker();
        {
            let mut next = s.next();
            assert!(common::poll_once(&mut next, &waker).is_pending());
        }
        assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Empty);
        hub.publish("t", 1).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "log={log}: the cancelled next() is not woken");
        assert_eq!(Arc::strong_count(&woken), 2, "log={log}: no waker kept");
    }
}

#[test]
fn a_cancelled_recv_on_a_log_topic_leaves_no_waker_behind() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish("t", 0).unwrap();
        assert_eq!(drain(&mut s), vec![Ev::M(0)]);
        let (woken, waker) = common::counting_waker();
        {
            let mut f = Box::pin(s.recv());
            assert!(common::poll_once(&mut f, &waker).is_pending());
        }
        hub.publish("t", 1).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "log={log}: the cancelled recv is not woken");
    }
}

#[test]
fn stream_and_recv_many_wake_on_a_publish_to_either_of_two_logs_or_a_broadcast() {
    use futures_util::StreamExt;
    let hub = Hub::<u64>::builder().shared_log(64).overflow(Overflow::DropOldest).build().unwrap();
    let mut s = hub.subscribe().unwrap();
    s.join("a").unwrap();
    s.join("b").unwrap();
    for (i, target) in ["a", "b", "*", "a", "b", "*"].into_iter().enumerate() {
        let (woken, waker) = common::counting_waker();
        let i = i as u64;
        if i % 2 == 0 {
            let mut next = s.next();
            assert!(common::poll_once(&mut next, &waker).is_pending());
            if target == "*" {
                hub.broadcast(i).unwrap()
            } else {
                hub.publish(target, i).unwrap()
            };
            assert_eq!(woken.0.load(Ordering::SeqCst), 1, "{target} woke the stream");
            let got = common::poll_once(&mut next, &waker);
            assert!(matches!(got, std::task::Poll::Ready(Some(Ok(ref m))) if *m.payload() == i), "{target}");
        } else {
            let mut buf = Vec::new();
            let mut f = Box::pin(s.recv_many(&mut buf, 8));
            assert!(common::poll_once(&mut f, &waker).is_pending());
            if target == "*" {
                hub.broadcast(i).unwrap()
            } else {
                hub.publish(target, i).unwrap()
            };
            assert_eq!(woken.0.load(Ordering::SeqCst), 1, "{target} woke recv_many");
            assert!(matches!(common::poll_once(&mut f, &waker), std::task::Poll::Ready(Ok(1))));
            drop(f);
            assert_eq!(*buf[0].payload(), i);
        }
    }
}

#[test]
fn two_log_topics_broadcasts_and_sends_all_arrive_once_in_order() {
    let hub =
        Hub::<u64>::builder().shared_log(64).overflow(Overflow::DropOldest).capacity(1024).build().unwrap();
    let mut s = hub.subscribe().unwrap();
    s.join("a").unwrap();
    s.join("b").unwrap();
    let mut want = 0;
    for i in 0..50u64 {
        hub.publish("a", i).unwrap();
        hub.publish("b", 1000 + i).unwrap();
        hub.broadcast(2000 + i).unwrap();
        hub.send_to(s.id(), 3000 + i).unwrap();
        want += 4;
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < want {
        buf.clear();
        rt.block_on(s.recv_many(&mut buf, 7)).unwrap();
        got.extend(buf.iter().map(|m| (m.origin(), m.topic().map(str::to_owned), *m.payload(), m.seq())));
    }
    for stream in [0u64, 1000, 2000, 3000] {
        let p: Vec<u64> = got.iter().filter(|g| g.2 / 1000 * 1000 == stream).map(|g| g.2).collect();
        assert_eq!(p, (stream..stream + 50).collect::<Vec<_>>());
    }
    assert!(s.try_recv().is_err());
}

// ---------------------------------------------------------------- reclaim

#[test]
fn a_log_topic_is_reclaimed_when_its_last_member_leaves() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_many("t", 0..3).unwrap();
        drain(&mut s);
        s.leave("t");
        hub.flush_cleanup();
        assert_eq!(hub.topic_count(), 0, "log={log}");
        drop(s);
        hub.flush_cleanup();
        assert_eq!(hub.stats().subscribers, 0);
    }
}

// ---------------------------------------------------------------- overflow / priority

#[test]
fn drop_newest_on_a_log_topic_loses_the_oldest_as_documented() {
    // Ring: DropNewest keeps what was queued first. Log: it loses the oldest
    // (documented on TopicOptions::shared_log: "goes on from the oldest still there").
    for log in [false, true] {
        let (_hub, mut s) = overflowing(log, Overflow::DropNewest);
        let ev = drain(&mut s);
        if log {
            assert!(matches!(ev[..2], [Ev::Lag(n), Ev::M(m)] if n == m), "{:?}", &ev[..2]);
        } else {
            assert_eq!(ev[..2], [Ev::M(0), Ev::M(1)]);
        }
    }
}

#[test]
fn an_urgent_message_on_a_log_topic_is_delivered() {
    for log in [false, true] {
        let hub = mode(log);
        let mut s = hub.subscribe().unwrap();
        s.join("t").unwrap();
        hub.publish_with("t", Priority::Urgent, |_| 9).unwrap();
        hub.publish_with("t", Priority::High, |_| 10).unwrap();
        assert_eq!(drain(&mut s), vec![Ev::M(9), Ev::M(10)], "log={log}");
    }
}

// ---------------------------------------------------------------- repair / history

#[test]
fn a_conflating_subscriber_on_a_log_topic_gets_the_newest_per_key() {
    for log in [false, true] {
        let hub = with_history(log, 4096, Some(64));
        let mut s =
            hub.subscribe_with(fanout_core::SubscribeOptions::new().overflow(Overflow::Conflate)).unwrap();
        s.join("t").unwrap();
        for i in 0..1_000u64 {
            hub.publish_keyed("t", &format!("k{}", i % 4), i).unwrap();
        }
        let ev = drain(&mut s);
        let tail: Vec<&Ev> = ev.iter().rev().take(4).collect();
        assert!(!ev.iter().any(|e| matches!(e, Ev::Lag(_))), "log={log}: no loss reported: {:?}", &ev[..3]);
        assert!(tail.contains(&&Ev::M(999)), "log={log}");
        let mut seen: Vec<u64> =
            ev.iter().filter_map(|e| if let Ev::M(p) = e { Some(*p) } else { None }).collect();
        let n = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), n, "log={log}: no duplicates");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "log={log}: in order");
    }
}

#[test]
fn join_from_latest_on_a_log_topic_gives_the_latest_then_the_live_ones() {
    for log in [false, true] {
        let hub = with_history(log, 16, None);
        let keep = hub.subscribe().unwrap();
        keep.join("t").unwrap();
        hub.publish_many("t", 0..5).unwrap();
        let mut s = hub.subscribe().unwrap();
        hub.broadcast(100).unwrap();
        let j = s.join_from("t", fanout_core::JoinFrom::Latest).unwrap();
        assert_eq!(j.replayed, 1);
        hub.publish_many("t", 5..8).unwrap();
        hub.broadcast(101).unwrap();
        let ev = drain(&mut s);
        let t: Vec<&Ev> = ev.iter().filter(|e| !matches!(e, Ev::M(100 | 101))).collect();
        assert_eq!(t, vec![&Ev::M(4), &Ev::M(5), &Ev::M(6), &Ev::M(7)], "log={log}: {ev:?}");
    }
}

#[test]
fn a_repairing_subscriber_on_two_lagging_log_topics_loses_nothing_kept() {
    for log in [false, true] {
        let hub = with_history(log, 4096, Some(64));
        let opts = fanout_core::SubscribeOptions::new().overflow(Overflow::DropOldest).repair(true);
        let mut s = hub.subscribe_with(opts).unwrap();
        s.join("a").unwrap();
        s.join("b").unwrap();
        for i in 0..500u64 {
            hub.publish("a", i).unwrap();
            hub.publish("b", 10_000 + i).unwrap();
        }
        let ev = drain(&mut s);
        let a: Vec<u64> = ev
            .iter()
            .filter_map(|e| if let Ev::M(p) = e { (*p < 10_000).then_some(*p) } else { None })
            .collect();
        let b: Vec<u64> = ev
            .iter()
            .filter_map(|e| if let Ev::M(p) = e { (*p >= 10_000).then_some(*p) } else { None })
            .collect();
        assert!(!ev.iter().any(|e| matches!(e, Ev::Lag(_))), "log={log}");
        assert_eq!(a, (0..500).collect::<Vec<_>>(), "log={log}");
        assert_eq!(b, (10_000..10_500).collect::<Vec<_>>(), "log={log}");
    }
}

// ---------------------------------------------------------------- parked across a link

/// A receiver parked before its topic (or the broadcasts) switched to a log,
/// or before it joined a log topic, is woken by the next message: the link
/// wakes it, so that it parks on the log too. (Before, it slept on its ring
/// while the log filled: `fanout-bench history --quick` hung on it.)
/// Parks `a` in `recv`, runs `act`, then checks that `a` was woken and
/// gets 7.
fn parked_then_woken_for_7(a: &mut Subscriber<u64>, act: impl FnOnce()) {
    let (woken, waker) = common::counting_waker();
    let mut f = Box::pin(a.recv());
    assert!(common::poll_once(&mut f, &waker).is_pending());
    act();
    assert!(woken.0.load(Ordering::SeqCst) > 0, "the parked receiver is woken");
    match common::poll_once(&mut f, &waker) {
        std::task::Poll::Ready(Ok(m)) => assert_eq!(*m.payload(), 7),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_receiver_parked_before_the_switch_is_woken_by_the_log() {
    let hub = Hub::<u64>::builder().shared_log(64).shared_log_from(2).build().unwrap();
    let mut a = hub.subscribe().unwrap();
    a.join("t").unwrap();
    let b = hub.subscribe().unwrap();
    parked_then_woken_for_7(&mut a, || {
        b.join("t").unwrap();
        hub.publish("t", 7).unwrap(); // two members: the switch, then the log
    });
}

#[test]
fn a_receiver_parked_before_the_broadcasts_switch_is_woken_by_their_log() {
    let hub = Hub::<u64>::builder().shared_log(64).shared_log_from(2).build().unwrap();
    let mut a = hub.subscribe().unwrap();
    let mut b = None;
    parked_then_woken_for_7(&mut a, || {
        b = Some(hub.subscribe().unwrap());
        hub.broadcast(7).unwrap();
    });
}

#[test]
fn a_parked_receiver_that_joins_a_log_topic_is_woken_by_it() {
    let hub = Hub::<u64>::builder().shared_log(64).shared_log_from(0).build().unwrap();
    let mut a = hub.subscribe().unwrap();
    let id = a.id();
    parked_then_woken_for_7(&mut a, || {
        hub.join(id, "t").unwrap(); // by id, as the server's `subscribe` does
        hub.publish("t", 7).unwrap();
    });
}
