//! Black-box tests of the hub: membership, topics, policies, priorities,
//! unicast, state machine, accounting and shutdown.

mod common;

use std::task::Poll;

use fanout_core::{
    CloseReason, Hub, Overflow, Priority, PublishError, RecvError, SendError, SubscribeError,
    SubscribeOptions, TryRecvError,
};

fn hub(capacity: usize, overflow: Overflow) -> Hub<u64> {
    Hub::builder().capacity(capacity).overflow(overflow).high_water(1.0).build().unwrap()
}

/// Messages up to the next lag notice, empty ring or close, and that.
fn upto_gap(sub: &mut fanout_core::Subscriber<u64>) -> (Vec<u64>, TryRecvError) {
    let mut out = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(m) => out.push(*m.payload()),
            Err(e) => return (out, e),
        }
    }
}

fn drain(sub: &mut fanout_core::Subscriber<u64>) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(m) => out.push(*m.payload()),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => return out,
        }
    }
}

#[test]
fn ids_are_unique_and_count_is_exact() {
    let hub = Hub::<u64>::new();
    let subs: Vec<_> = (0..100).map(|_| hub.subscribe().unwrap()).collect();
    let mut ids: Vec<_> = subs.iter().map(|s| s.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    assert_eq!(hub.subscriber_count(), 100);
    assert_eq!(hub.stats().subscribers, 100);
    drop(subs);
    assert_eq!(hub.subscriber_count(), 0);
}

#[test]
fn broadcast_reaches_everyone_in_order() {
    let hub = hub(64, Overflow::Evict);
    let mut subs: Vec<_> = (0..10).map(|_| hub.subscribe().unwrap()).collect();
    for i in 0..20 {
        let r = hub.broadcast(i).unwrap();
        assert_eq!((r.recipients, r.delivered, r.seq), (10, 10, i + 1));
    }
    for s in &mut subs {
        assert_eq!(drain(s), (0..20).collect::<Vec<_>>());
    }
}

#[test]
fn topic_publish_reaches_members_only_with_consecutive_seqs() {
    let hub = hub(64, Overflow::Evict);
    let mut a = hub.subscribe().unwrap();
    let mut b = hub.subscribe().unwrap();
    assert!(a.join("x").unwrap());
    assert!(!a.join("x").unwrap(), "second join is a no-op");
    b.join("y").unwrap();
    for i in 0..5 {
        hub.publish("x", i).unwrap();
    }
    hub.publish("y", 100).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| a.try_recv().ok()).collect();
    assert_eq!(got.iter().map(|m| m.seq()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(got.iter().all(|m| m.topic() == Some("x")));
    let m = b.try_recv().unwrap();
    assert_eq!((m.topic(), m.seq(), *m.payload()), (Some("y"), 1, 100));
    assert_eq!(b.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn join_by_id_and_leave() {
    let hub = hub(64, Overflow::Evict);
    let mut a = hub.subscribe().unwrap();
    assert!(hub.join(a.id(), "t").unwrap());
    hub.publish("t", 1).unwrap();
    assert!(hub.leave(a.id(), "t").unwrap());
    assert!(!hub.leave(a.id(), "t").unwrap());
    hub.publish("t", 2).unwrap();
    assert_eq!(drain(&mut a), vec![1]);
    assert_eq!(hub.join(fanout_core::SubscriberId::new(999_999), "t"), Err(SubscribeError::NoSuchSubscriber));
}

#[test]
fn empty_topics_are_reclaimed_and_epoch_changes() {
    let hub = hub(64, Overflow::Evict);
    let mut a = hub.subscribe().unwrap();
    a.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    let first = a.try_recv().unwrap();
    assert_eq!(hub.topic_count(), 1);
    a.leave("t");
    assert_eq!(hub.topic_count(), 0, "the empty topic is gone");
    a.join("t").unwrap();
    hub.publish("t", 2).unwrap();
    let second = a.try_recv().unwrap();
    assert_eq!(second.seq(), 1, "a new topic numbers from 1");
    assert_ne!(first.epoch(), second.epoch(), "and has a new epoch");
}

#[test]
fn topic_handle_keeps_topic_and_publishes() {
    let hub = hub(64, Overflow::Evict);
    let t = hub.topic("h");
    assert_eq!(hub.topic_count(), 1);
    let mut a = hub.subscribe().unwrap();
    a.join("h").unwrap();
    a.leave("h");
    assert_eq!(hub.topic_count(), 1, "a handled topic survives losing its members");
    a.join("h").unwrap();
    let r = t.publish(5).unwrap();
    assert_eq!((r.delivered, r.seq), (1, 1));
    assert_eq!(*a.try_recv().unwrap().payload(), 5);
    drop(a);
    hub.flush_cleanup();
    assert_eq!(hub.topic_count(), 1);
    drop(t);
    assert_eq!(hub.topic_count(), 0, "reclaimed when the last handle drops");
}

#[test]
fn dropped_subscriber_leaves_every_topic() {
    let hub = hub(64, Overflow::Evict);
    let a = hub.subscribe().unwrap();
    let mut b = hub.subscribe().unwrap();
    for t in ["p", "q", "r"] {
        a.join(t).unwrap();
    }
    b.join("p").unwrap();
    drop(a);
    hub.flush_cleanup();
    assert_eq!(hub.topic_count(), 1, "q and r are reclaimed, p keeps b");
    let r = hub.publish("p", 9).unwrap();
    assert_eq!(r.recipients, 1);
    assert_eq!(drain(&mut b), vec![9]);
    assert_eq!(hub.stats().evicted.unsubscribed, 1);
}

#[test]
fn unicast_reaches_exactly_one_or_says_why_not() {
    let hub = hub(2, Overflow::DropNewest);
    let mut a = hub.subscribe().unwrap();
    let mut b = hub.subscribe().unwrap();
    hub.send_to(a.id(), 7).unwrap();
    let m = a.try_recv().unwrap();
    assert_eq!((*m.payload(), m.origin(), m.topic()), (7, fanout_core::Origin::Direct, None));
    assert_eq!(b.try_recv().unwrap_err(), TryRecvError::Empty);

    hub.send_to(b.id(), 1).unwrap();
    hub.send_to(b.id(), 2).unwrap();
    assert_eq!(hub.send_to(b.id(), 3), Err(SendError::Full(3)));
    assert_eq!(hub.send_to(fanout_core::SubscriberId::new(12345), 4), Err(SendError::NoSuchSubscriber(4)));
    b.close();
    assert_eq!(hub.send_to(b.id(), 5).map_err(|e| e.into_inner()), Err(5));
}

#[test]
fn evict_policy_closes_slow_subscriber_after_it_drains() {
    let hub = hub(4, Overflow::Evict);
    let mut slow = hub.subscribe().unwrap();
    let mut fast = hub.subscribe().unwrap();
    for i in 0..6 {
        let r = hub.broadcast(i).unwrap();
        assert_eq!(r.recipients, r.delivered + r.dropped.total());
        assert_eq!(drain(&mut fast), vec![i]);
    }
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
    // It drains what it holds, hears about the loss (where it happened:
    // after message 3), then the close.
    assert_eq!(upto_gap(&mut slow), (vec![0, 1, 2, 3], TryRecvError::Lagged(1)));
    assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Closed(CloseReason::SlowConsumer));
    hub.flush_cleanup();
    let st = hub.stats();
    assert_eq!(st.evicted.slow_consumer, 1);
    assert_eq!(st.subscribers, 1);
    assert_eq!(st.dropped.evicted, 1);
    assert_eq!(st.cleanup_removed, 1);
    assert_eq!(hub.broadcast(99).unwrap().recipients, 1, "only the fast one is left");
}

#[test]
fn drop_newest_keeps_old_messages_and_reports_lag() {
    let hub = hub(3, Overflow::DropNewest);
    let mut s = hub.subscribe().unwrap();
    for i in 0..5 {
        hub.broadcast(i).unwrap();
    }
    // The loss is reported where it is in the stream: after 0, 1, 2.
    assert_eq!(upto_gap(&mut s), (vec![0, 1, 2], TryRecvError::Lagged(2)));
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Empty);
    hub.broadcast(5).unwrap();
    assert_eq!(drain(&mut s), vec![5]);
    assert!(!s.is_closed(), "lag is never a close");
    assert_eq!(hub.stats().dropped.full, 2);
}

#[test]
fn drop_oldest_keeps_freshest_messages_and_reports_lag() {
    let hub = hub(3, Overflow::DropOldest);
    let mut s = hub.subscribe().unwrap();
    for i in 0..5 {
        let r = hub.broadcast(i).unwrap();
        assert_eq!(r.delivered, 1);
    }
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Lagged(2));
    assert_eq!(drain(&mut s), vec![2, 3, 4]);
    assert_eq!(hub.stats().displaced, 2);
}

#[test]
fn per_subscriber_policy_overrides_hub() {
    let hub = hub(2, Overflow::Evict);
    let mut keep = hub.subscribe_with(SubscribeOptions::new().overflow(Overflow::DropOldest)).unwrap();
    let evicted = hub.subscribe().unwrap();
    for i in 0..3 {
        hub.broadcast(i).unwrap();
    }
    assert!(!keep.is_closed());
    assert!(evicted.is_closed());
    assert_eq!(drain(&mut keep), vec![1, 2]);
    assert!(hub.subscribe_with(SubscribeOptions::new().capacity(0)).is_err());
    assert!(hub.subscribe_with(SubscribeOptions::new().high_water(1.5)).is_err());
}

#[test]
fn priorities_use_headroom_above_high_water() {
    // capacity 10, high water 50 %: Normal fills 5 slots, High the rest.
    let hub =
        Hub::<u64>::builder().capacity(10).high_water(0.5).overflow(Overflow::DropNewest).build().unwrap();
    let mut s = hub.subscribe().unwrap();
    for i in 0..8 {
        hub.broadcast(i).unwrap();
    }
    assert_eq!(s.len(), 5, "normal messages stop at the high-water mark");
    assert_eq!(hub.stats().dropped.high_water, 3);
    for i in 100..106 {
        hub.broadcast_with(Priority::High, |_| i).unwrap();
    }
    assert_eq!(s.len(), 10, "high messages use the headroom");
    assert_eq!(hub.stats().dropped.full, 1);
    let r = hub.broadcast_with(Priority::Urgent, |_| 999).unwrap();
    assert_eq!((r.delivered, r.displaced), (1, 1), "urgent always enters, displacing the oldest");
    // Each loss at its place in the stream: message 0 displaced (before
    // anything else), then 1-4, then the drops from position 5 on (5, 6, 7
    // at the mark and 105 when full, reported together at the first), then
    // the rest.
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Lagged(1));
    assert_eq!(upto_gap(&mut s), (vec![1, 2, 3, 4], TryRecvError::Lagged(4)));
    assert_eq!(drain(&mut s), vec![100, 101, 102, 103, 104, 999]);
}

#[test]
fn high_priority_subscriber_ignores_high_water() {
    let hub =
        Hub::<u64>::builder().capacity(4).high_water(0.5).overflow(Overflow::DropNewest).build().unwrap();
    let vip = hub.subscribe_with(SubscribeOptions::new().high_water(1.0)).unwrap();
    let normal = hub.subscribe().unwrap();
    for i in 0..4 {
        hub.broadcast(i).unwrap();
    }
    assert_eq!((vip.len(), normal.len()), (4, 2));
}

#[test]
fn evict_at_high_water_for_normal_messages() {
    let hub = Hub::<u64>::builder().capacity(10).high_water(0.5).build().unwrap();
    let s = hub.subscribe().unwrap();
    for i in 0..5 {
        hub.broadcast(i).unwrap();
    }
    assert!(!s.is_closed());
    hub.broadcast(5).unwrap();
    assert_eq!(s.close_reason(), Some(CloseReason::SlowConsumer));
}

#[test]
fn closing_twice_and_kick_after_close_are_harmless() {
    let hub = hub(4, Overflow::Evict);
    let s = hub.subscribe().unwrap();
    s.close();
    s.close();
    assert!(!hub.kick(s.id()));
    assert_eq!(s.close_reason(), Some(CloseReason::Unsubscribed));
    hub.flush_cleanup();
    let st = hub.stats();
    assert_eq!(st.evicted.total(), 1, "closed once");
    assert_eq!(st.cleanup_removed, 1, "removed once");
    drop(s);
    hub.flush_cleanup();
    assert_eq!(hub.stats().cleanup_removed, 1);
}

#[test]
fn kick_closes_with_reason() {
    let hub = hub(4, Overflow::Evict);
    let mut s = hub.subscribe().unwrap();
    hub.broadcast(1).unwrap();
    assert!(hub.kick(s.id()));
    assert_eq!(drain(&mut s), vec![1]);
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Closed(CloseReason::Kicked));
}

#[test]
fn unsubscribe_during_eviction_is_harmless() {
    let hub = hub(1, Overflow::Evict);
    let s = hub.subscribe().unwrap();
    hub.broadcast(1).unwrap();
    hub.broadcast(2).unwrap(); // evicts; removal request queued
    drop(s); // unsubscribe while the eviction is pending
    hub.flush_cleanup();
    let st = hub.stats();
    assert_eq!(st.evicted.slow_consumer, 1);
    assert_eq!(st.evicted.unsubscribed, 0);
    assert_eq!(st.cleanup_removed, 1);
    assert_eq!(st.subscribers, 0);
}

#[test]
fn full_cleanup_channel_falls_back_to_sweep() {
    let hub = Hub::<u64>::builder().capacity(1).cleanup_capacity(1).build().unwrap();
    let subs: Vec<_> = (0..50).map(|_| hub.subscribe().unwrap()).collect();
    hub.broadcast(1).unwrap();
    let r = hub.broadcast(2).unwrap(); // evicts all 50 at once
    assert_eq!(r.dropped.evicted, 50);
    assert!(subs.iter().all(|s| s.is_closed()), "flagged at once even when not queued");
    assert_eq!(hub.broadcast(3).unwrap().recipients, 0, "publishers skip them");
    hub.flush_cleanup();
    let st = hub.stats();
    assert!(st.cleanup_overflows > 0, "some requests found the channel full");
    assert_eq!(st.cleanup_removed, 50, "the sweep removed the rest");
}

#[test]
fn accounting_invariant_holds_per_publish() {
    let hub =
        Hub::<u64>::builder().capacity(8).high_water(0.5).overflow(Overflow::DropNewest).build().unwrap();
    let _subs: Vec<_> = (0..20)
        .map(|i| {
            let o = [Overflow::Evict, Overflow::DropNewest, Overflow::DropOldest][i % 3];
            hub.subscribe_with(SubscribeOptions::new().overflow(o)).unwrap()
        })
        .collect();
    let mut delivered = 0;
    for i in 0..50 {
        let p = [Priority::Normal, Priority::High, Priority::Urgent][i % 3];
        let r = hub.broadcast_with(p, |_| i as u64).unwrap();
        assert_eq!(r.recipients, r.delivered + r.dropped.total());
        delivered += r.delivered;
    }
    let r = hub.broadcast_many(0..100).unwrap();
    assert_eq!(r.recipients, r.delivered + r.dropped.total());
    assert_eq!(r.messages, 100);
    delivered += r.delivered;
    let st = hub.stats();
    assert_eq!(st.delivered, delivered);
    assert_eq!(st.published, 150);
}

#[test]
fn publish_many_numbers_a_run_and_delivers_it_whole() {
    let hub = hub(256, Overflow::Evict);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let r = hub.publish_many("t", 0..150).unwrap();
    assert_eq!((r.messages, r.delivered, r.seq), (150, 150, 1));
    let got: Vec<_> = std::iter::from_fn(|| s.try_recv().ok()).collect();
    assert_eq!(got.iter().map(|m| m.seq()).collect::<Vec<_>>(), (1..=150).collect::<Vec<_>>());
    let r = hub.publish_many("nobody", 0..3).unwrap();
    assert_eq!((r.messages, r.recipients), (3, 0));
}

#[test]
fn publish_with_builds_payload_from_its_seq() {
    let hub = Hub::<String>::new();
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish_with("t", Priority::Normal, |m| format!("seq={}", m.seq)).unwrap();
    hub.publish_with("t", Priority::Normal, |m| format!("seq={}", m.seq)).unwrap();
    assert_eq!(s.try_recv().unwrap().payload(), "seq=1");
    assert_eq!(s.try_recv().unwrap().payload(), "seq=2");
    let mut called = false;
    hub.publish_with("empty", Priority::Normal, |_| {
        called = true;
        String::new()
    })
    .unwrap();
    assert!(!called, "no payload is built for a topic nobody is in");
}

#[test]
fn shutdown_drains_then_closes_and_refuses() {
    let hub = hub(8, Overflow::Evict);
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    hub.publish("t", 1).unwrap();
    hub.broadcast(2).unwrap();
    hub.shutdown();
    hub.shutdown();
    assert!(hub.is_shutdown());
    assert_eq!(drain(&mut s), vec![1, 2]);
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Closed(CloseReason::Shutdown));
    assert_eq!(hub.publish("t", 3), Err(PublishError::Shutdown));
    assert_eq!(hub.broadcast(3), Err(PublishError::Shutdown));
    assert_eq!(hub.send_to(s.id(), 3), Err(SendError::Shutdown(3)));
    assert_eq!(hub.subscribe().unwrap_err(), SubscribeError::Shutdown);
    assert_eq!(s.join("u"), Err(SubscribeError::Shutdown));
    assert_eq!(hub.stats().evicted.shutdown, 1);
}

/// `Engine::publish_batch_async` (the default the hub uses): every item in
/// the order given, numbered per topic in that order; after an error it
/// stops, and the items after it are not published.
#[tokio::test]
async fn a_batch_goes_in_order_and_stops_at_its_first_error() {
    use fanout_core::{Engine, PublishItem};
    let hub = hub(8, Overflow::Evict);
    let mut s = hub.subscribe().unwrap();
    s.join("a").unwrap();
    s.join("b").unwrap();
    let batch = |items: &[(&'static str, u64)]| -> Vec<_> {
        items
            .iter()
            .map(|&(topic, v)| PublishItem { topic, priority: Priority::Normal, key: None, make: move |_| v })
            .collect()
    };
    let seqs: Vec<u64> = hub
        .publish_batch_async(batch(&[("a", 1), ("b", 2), ("a", 3)]))
        .await
        .into_iter()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(seqs, [1, 1, 2], "numbered per topic, in the order given");
    assert_eq!(drain(&mut s), vec![1, 2, 3], "delivered in the order given");
    hub.shutdown();
    let after = hub.publish_batch_async(batch(&[("a", 4), ("a", 5)])).await;
    assert_eq!(after, vec![Err(PublishError::Shutdown)], "stops at the first error");
}

#[tokio::test]
async fn shutdown_wakes_a_waiting_receiver() {
    let hub = Hub::<u64>::new();
    let mut s = hub.subscribe().unwrap();
    let waiter = tokio::spawn(async move {
        let first = s.recv().await;
        let second = s.recv().await;
        (first, second)
    });
    tokio::task::yield_now().await;
    hub.broadcast(5).unwrap();
    hub.shutdown();
    let (first, second) = waiter.await.unwrap();
    assert_eq!(*first.unwrap().payload(), 5);
    assert_eq!(second.unwrap_err(), RecvError::Closed(CloseReason::Shutdown));
}

#[test]
fn recv_parks_and_one_wake_covers_a_run() {
    let hub = Hub::<u64>::new();
    let mut s = hub.subscribe().unwrap();
    let (count, waker) = common::counting_waker();
    let mut buf = Vec::new();
    {
        let mut fut = s.recv_many(&mut buf, 1000);
        assert!(common::poll_once(&mut fut, &waker).is_pending());
        for i in 0..100 {
            hub.broadcast(i).unwrap();
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1, "woken once for 100 messages");
        assert_eq!(common::poll_once(&mut fut, &waker), Poll::Ready(Ok(100)));
    }
    // Not parked: publishes do not wake.
    hub.broadcast(1).unwrap();
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn cancelled_recv_leaves_no_waker_behind() {
    let hub = Hub::<u64>::new();
    let mut s = hub.subscribe().unwrap();
    let (count, waker) = common::counting_waker();
    {
        let mut fut = s.recv();
        assert!(common::poll_once(&mut fut, &waker).is_pending());
    } // dropped while parked
    hub.broadcast(1).unwrap();
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the dropped future's waker is gone");
    assert_eq!(*s.try_recv().unwrap().payload(), 1, "and the message is still there");
    drop(waker);
    assert_eq!(std::sync::Arc::strong_count(&count), 1, "the hub holds no clone of the waker");
}

#[tokio::test]
async fn stream_yields_lag_then_ends_and_stays_ended() {
    use futures_core::FusedStream;
    use futures_util::StreamExt;
    let hub = hub(2, Overflow::DropOldest);
    let mut s = hub.subscribe().unwrap();
    for i in 0..4 {
        hub.broadcast(i).unwrap();
    }
    hub.shutdown();
    assert_eq!(s.next().await.unwrap().unwrap_err(), fanout_core::Lagged(2));
    assert_eq!(*s.next().await.unwrap().unwrap().payload(), 2);
    assert_eq!(*s.next().await.unwrap().unwrap().payload(), 3);
    assert!(s.next().await.is_none());
    assert!(s.is_terminated());
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn recv_many_respects_max_and_zero() {
    let hub = Hub::<u64>::new();
    let mut s = hub.subscribe().unwrap();
    hub.broadcast_many(0..10).unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.recv_many(&mut buf, 0).await, Ok(0));
    assert_eq!(s.recv_many(&mut buf, 4).await, Ok(4));
    assert_eq!(s.recv_many(&mut buf, 100).await, Ok(6));
    assert_eq!(buf.iter().map(|m| *m.payload()).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

#[test]
fn bad_config_is_refused_with_the_field() {
    let e = Hub::<u64>::builder().high_water(0.0).build().unwrap_err();
    assert_eq!(e.field(), "high_water");
    assert!(e.to_string().contains("high_water"));
    assert_eq!(Hub::<u64>::builder().shards(0).build().unwrap_err().field(), "shards");
    assert_eq!(Hub::<u64>::builder().capacity(usize::MAX).build().unwrap_err().field(), "capacity");
    assert_eq!(Hub::<u64>::builder().chunk_size(usize::MAX).build().unwrap_err().field(), "chunk_size");
    let hub = Hub::<u64>::new();
    assert_eq!(
        hub.subscribe_with(SubscribeOptions::new().capacity(fanout_core::MAX_CAPACITY + 1)).unwrap_err(),
        SubscribeError::InvalidOptions("capacity")
    );
    assert_eq!(Hub::<u64>::builder().cleanup_capacity(0).build().unwrap_err().field(), "cleanup_capacity");
    assert_eq!(
        Hub::<u64>::builder().sweep_interval(std::time::Duration::ZERO).build().unwrap_err().field(),
        "sweep_interval"
    );
}

#[test]
fn many_subscribers_across_chunks_and_shards() {
    let hub = Hub::<u64>::builder().chunk_size(16).shards(3).build().unwrap();
    let mut subs: Vec<_> = (0..500).map(|_| hub.subscribe().unwrap()).collect();
    for s in subs.iter().step_by(2) {
        s.join("even").unwrap();
    }
    // Drop every third, in the middle of chunks.
    let mut kept = Vec::new();
    for (i, s) in subs.drain(..).enumerate() {
        if i % 3 != 0 {
            kept.push((i, s));
        }
    }
    hub.flush_cleanup();
    assert_eq!(hub.broadcast(1).unwrap().recipients, kept.len() as u64);
    let evens = kept.iter().filter(|(i, _)| i % 2 == 0).count() as u64;
    assert_eq!(hub.publish("even", 2).unwrap().recipients, evens);
    for (i, s) in &mut kept {
        let want = if *i % 2 == 0 { vec![1, 2] } else { vec![1] };
        // 333 subscribers: the broadcasts go through their log, the topic
        // (167 members) through the rings; two sources keep no order
        // between them (`TopicOptions::shared_log`).
        let mut got = drain(s);
        got.sort_unstable();
        assert_eq!(got, want, "subscriber {i}");
    }
}

#[test]
fn try_recv_many_takes_batches_then_reports_close() {
    let hub =
        Hub::<u64>::builder().capacity(8).high_water(1.0).overflow(Overflow::DropOldest).build().unwrap();
    let mut s = hub.subscribe().unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.try_recv_many(&mut buf, 4), Ok(0));
    hub.broadcast_many(0..10).unwrap();
    assert_eq!(s.try_recv_many(&mut buf, 4), Err(TryRecvError::Lagged(2)));
    assert_eq!(s.try_recv_many(&mut buf, 4), Ok(4));
    assert_eq!(s.try_recv_many(&mut buf, 0), Ok(0));
    hub.shutdown();
    assert_eq!(s.try_recv_many(&mut buf, 100), Ok(4));
    assert_eq!(s.try_recv_many(&mut buf, 100), Err(TryRecvError::Closed(CloseReason::Shutdown)));
    assert_eq!(buf.iter().map(|m| *m.payload()).collect::<Vec<_>>(), (2..10).collect::<Vec<_>>());
}

/// Issue 11, review item 10: under `DropOldest`, a message displaces only
/// what it outranks or equals. Normal traffic at the high-water mark used to
/// push a queued High message out; now the Normal one is dropped (and
/// announced), and the High one stays. Urgent still displaces anything; a
/// High message on a ring full of Urgent ones is dropped.
#[test]
fn drop_oldest_never_displaces_a_higher_priority() {
    let hub =
        Hub::<u64>::builder().capacity(4).high_water(0.5).overflow(Overflow::DropOldest).build().unwrap();
    let mut s = hub.subscribe().unwrap();
    hub.broadcast_with(Priority::High, |_| 100).unwrap();
    hub.broadcast(1).unwrap(); // at the mark now (2 of 4)
    let r = hub.broadcast(2).unwrap(); // the oldest is High: 2 is dropped
    assert_eq!((r.delivered, r.dropped.high_water, r.displaced), (0, 1, 0));
    assert_eq!(upto_gap(&mut s), (vec![100, 1], TryRecvError::Lagged(1)), "the High message kept");

    // Normal messages still displace Normal ones.
    hub.broadcast(3).unwrap();
    hub.broadcast(4).unwrap();
    let r = hub.broadcast(5).unwrap();
    assert_eq!((r.delivered, r.displaced), (1, 1));
    assert_eq!(upto_gap(&mut s), (vec![], TryRecvError::Lagged(1)), "3 displaced, announced first");
    assert_eq!(upto_gap(&mut s), (vec![4, 5], TryRecvError::Empty));

    // Urgent displaces anything; High does not displace Urgent.
    for v in 10..14 {
        hub.broadcast_with(Priority::Urgent, |_| v).unwrap();
    }
    let r = hub.broadcast_with(Priority::High, |_| 20).unwrap();
    assert_eq!((r.delivered, r.dropped.full, r.displaced), (0, 1, 0), "High outranked by the queued Urgent");
    let r = hub.broadcast_with(Priority::Urgent, |_| 14).unwrap();
    assert_eq!((r.delivered, r.displaced), (1, 1));
    assert_eq!(upto_gap(&mut s), (vec![], TryRecvError::Lagged(1)), "10 displaced by Urgent 14");
    assert_eq!(upto_gap(&mut s), (vec![11, 12, 13], TryRecvError::Lagged(1)), "20 dropped at its place");
    assert_eq!(upto_gap(&mut s), (vec![14], TryRecvError::Empty));
}
