//! Memory and thread life: every message is freed after eviction and after the
//! hub is dropped, a never-reading subscriber holds at most `capacity`
//! messages, and the cleanup thread ends with the hub.
//!
//! The thread check reads /proc/self/task, so this binary keeps its tests
//! serial (one lock) to see only its own hubs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::Tracked;
use fanout_core::{Hub, Overflow};

static SERIAL: Mutex<()> = Mutex::new(());

fn reaper_threads() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .map(|c| c.trim() == "fanout-reaper")
                .unwrap_or(false)
        })
        .count()
}

/// The cleanup threads alive, once the count settles on `want`: `join`
/// returns when the thread has finished, but the kernel lists it under
/// /proc/self/task until it is reaped, a moment later. Gives up after 10 s
/// and returns what it sees (then the assertion fails).
fn reapers_settled_at(want: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = reaper_threads();
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::yield_now();
    }
}

#[test]
fn cleanup_thread_ends_with_the_hub() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Every test here holds SERIAL: no other hub lives now, though an
    // earlier test's finished thread may still be listed for a moment.
    let before = 0;
    assert_eq!(reapers_settled_at(before), before);
    let hub = Hub::<u64>::new();
    let sub = hub.subscribe().unwrap();
    assert_eq!(reaper_threads(), before + 1);
    drop(hub);
    assert_eq!(reapers_settled_at(before), before, "last hub handle dropped: thread joined");
    drop(sub);

    let hub = Hub::<u64>::new();
    let topic = hub.topic("t");
    hub.shutdown();
    assert_eq!(reapers_settled_at(before), before, "shutdown joins the thread");
    drop(topic);
    drop(hub);

    // A topic handle keeps the hub (and its thread) alive.
    let hub = Hub::<u64>::new();
    let topic = hub.topic("t");
    drop(hub);
    assert_eq!(reaper_threads(), before + 1);
    drop(topic);
    assert_eq!(reapers_settled_at(before), before);
}

#[test]
fn messages_are_freed_after_eviction_and_hub_drop() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let live = Arc::new(AtomicUsize::new(0));
    let hub = Hub::<Tracked>::builder().capacity(8).build().unwrap();
    let slow = hub.subscribe().unwrap();
    let mut fast = hub.subscribe().unwrap();
    slow.join("t").unwrap();
    fast.join("t").unwrap();
    for i in 0..100 {
        hub.publish("t", Tracked::new(i, &live)).unwrap();
        while fast.try_recv().is_ok() {}
    }
    assert!(slow.is_closed(), "evicted");
    assert!(live.load(Ordering::SeqCst) <= 8, "the evicted one holds at most its capacity");
    drop(slow);
    hub.flush_cleanup();
    assert_eq!(live.load(Ordering::SeqCst), 0, "freed once the evicted subscriber is dropped");

    for i in 0..5 {
        hub.broadcast(Tracked::new(i, &live)).unwrap();
    }
    assert_eq!(live.load(Ordering::SeqCst), 5);
    drop(hub);
    assert_eq!(live.load(Ordering::SeqCst), 5, "a live subscriber still holds its queue");
    let mut n = 0;
    while fast.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 5, "and drains it after the hub is gone");
    drop(fast);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn never_reading_subscriber_is_bounded_under_every_policy() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for overflow in [Overflow::Evict, Overflow::DropNewest, Overflow::DropOldest] {
        let live = Arc::new(AtomicUsize::new(0));
        let hub = Hub::<Tracked>::builder().capacity(16).overflow(overflow).build().unwrap();
        let idle = hub.subscribe().unwrap();
        for i in 0..1000 {
            hub.broadcast(Tracked::new(i, &live)).unwrap();
            assert!(live.load(Ordering::SeqCst) <= 16, "{overflow:?}: at most capacity held");
        }
        drop(idle);
        drop(hub);
        assert_eq!(live.load(Ordering::SeqCst), 0, "{overflow:?}: all freed");
    }
}

#[test]
fn subscribers_in_topics_are_freed_when_hub_shuts_down() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let live = Arc::new(AtomicUsize::new(0));
    let hub = Hub::<Tracked>::new();
    let subs: Vec<_> = (0..10).map(|_| hub.subscribe().unwrap()).collect();
    for s in &subs {
        s.join("a").unwrap();
        s.join("b").unwrap();
    }
    hub.publish("a", Tracked::new(1, &live)).unwrap();
    hub.publish("b", Tracked::new(2, &live)).unwrap();
    hub.shutdown();
    drop(subs);
    assert_eq!(live.load(Ordering::SeqCst), 0, "no inbox <-> topic cycle survives");
    drop(hub);
}

/// A `next()` on the stream that parked and was then dropped (a `select!`
/// that took another branch) leaves no waker behind: the next receive takes
/// it back, and later publishes do not wake the task that gave up.
#[test]
fn a_cancelled_stream_next_leaves_no_waker_behind() {
    use futures_util::StreamExt;

    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let hub = Hub::<u64>::new();
    let mut s = hub.subscribe().unwrap();
    let (woken, waker) = common::counting_waker();
    {
        let mut next = s.next();
        assert!(common::poll_once(&mut next, &waker).is_pending());
    }
    assert_eq!(Arc::strong_count(&woken), 3, "registered: the test's two handles and the inbox's");
    assert_eq!(s.try_recv().unwrap_err(), fanout_core::TryRecvError::Empty);
    assert_eq!(Arc::strong_count(&woken), 2, "taken back by the next receive");
    hub.broadcast(1).unwrap();
    assert_eq!(woken.0.load(Ordering::SeqCst), 0, "the cancelled next() is not woken");
    assert_eq!(*s.try_recv().unwrap().payload(), 1);

    // The same when the subscriber is dropped instead.
    {
        let mut next = s.next();
        assert!(common::poll_once(&mut next, &waker).is_pending());
    }
    assert_eq!(Arc::strong_count(&woken), 3);
    drop(s);
    assert_eq!(Arc::strong_count(&woken), 2, "released by the drop");
}
