//! The hot path allocates nothing per delivery, and per message at most the
//! message and, for 256 or more recipients on a machine of several cores, its
//! reference-count lanes (`shared.rs`, "Lanes"): a counting global allocator
//! proves it for 1,000 subscribers. With
//! `lazy_rings`, a subscriber's ring storage is allocated by the first delivery
//! to it, not by `subscribe` (without, by `subscribe`): the allocator also
//! counts allocations of exactly the storage's size.
//!
//! One test per binary, so that no other test's allocations are counted;
//! and only the test thread's allocations count (a thread-local flag), so
//! that the hub's cleanup thread, allocating on its first wait whenever the
//! scheduler first runs it, cannot change the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

thread_local! {
    /// Set on the test thread while it counts.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Allocations of `STORAGE_BYTES`: ring storages.
static STORAGES: AtomicU64 = AtomicU64::new(0);

/// The test's ring capacity, and the size of one ring's storage (one
/// allocation: a 4-byte stamp and an 8-byte pointer per slot).
const CAPACITY: usize = 1024;
const STORAGE_BYTES: usize = CAPACITY * (4 + 8);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: a thread being torn down has no thread-locals left.
        if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            if layout.size() == STORAGE_BYTES {
                STORAGES.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (r, n, _) = counted_storages(f);
    (r, n)
}

/// `f`'s result, its allocations, and how many of them were ring storages.
fn counted_storages<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCS.store(0, Ordering::SeqCst);
    STORAGES.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::SeqCst), STORAGES.load(Ordering::SeqCst))
}

/// Allocations per message to 1,000 recipients: the message, and its lanes
/// where there is more than one core.
fn per_message() -> u64 {
    1 + u64::from(std::thread::available_parallelism().map_or(1, |n| n.get()) > 1)
}

#[test]
fn publish_to_1000_allocates_only_the_message() {
    let m = per_message();
    // The default: the ring is allocated by `subscribe`.
    let eager = fanout_core::Hub::<u64>::builder().capacity(CAPACITY).build().unwrap();
    let (sub, _, storages) = counted_storages(|| eager.subscribe().unwrap());
    assert_eq!(storages, 1, "subscribe allocates the ring storage by default");
    let (_, _, storages) = counted_storages(|| eager.broadcast(0).unwrap());
    assert_eq!(storages, 0, "and the first delivery does not");
    drop(sub);
    eager.shutdown();

    // Through the rings (a shared log off), then through the default: the
    // topic and the broadcasts switch to their logs at 64 members.
    publish_to_1000(m, 0);
    publish_to_1000(m, fanout_core::DEFAULT_SHARED_LOG);
}

/// Publishes to 1,000 subscribers of a hub with lazy rings and shared logs
/// of `log` room (0: the rings), counting allocations.
fn publish_to_1000(m: u64, log: usize) {
    let hub = fanout_core::Hub::<u64>::builder()
        .capacity(CAPACITY)
        .lazy_rings(true)
        .shared_log(log)
        .build()
        .unwrap();
    // With lazy rings, subscribing and joining allocate no ring storage: an
    // idle subscriber holds none.
    let ((mut subs, idle), _, storages) = counted_storages(|| {
        let subs: Vec<_> = (0..1000).map(|_| hub.subscribe().unwrap()).collect();
        for s in &subs {
            s.join("t").unwrap();
        }
        let idle = hub.subscribe().unwrap();
        idle.join("quiet").unwrap();
        (subs, idle)
    });
    assert_eq!(storages, 0, "subscribe allocates no ring storage");
    let topic = hub.topic("t");
    // The first delivery to each member allocates its storage, once; the idle
    // subscriber (not a member) still has none.
    let (r, n, storages) = counted_storages(|| hub.publish("t", 0).unwrap());
    assert_eq!(r.delivered, 1000);
    if log == 0 {
        assert_eq!(storages, 1000, "one storage per member, at its first delivery");
        assert!(n > storages, "and the message");
    } else {
        assert_eq!(storages, 0, "the log carries the topic: no ring storage");
        assert!(n > m, "the log's slots, once, and the message");
    }
    let (_, n, storages) = counted_storages(|| hub.publish("t", 0).unwrap());
    assert_eq!((n, storages), (m, 0), "the second publish: the message only");
    // Out of the way before counting again (its removal allocates, on the
    // cleanup worker's thread).
    drop(idle);
    hub.flush_cleanup();
    // The rest of the warm-up: thread-locals, arc-swap's per-thread debt slots.
    hub.broadcast(0).unwrap();
    topic.publish(0).unwrap();

    let (r, n) = counted(|| hub.publish("t", 1).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, m, "publish by name: the message (and its lanes)");

    let (r, n) = counted(|| topic.publish(2).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, m, "publish by handle");

    let (r, n) = counted(|| hub.broadcast(3).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, m, "broadcast");

    let (r, n) = counted(|| hub.publish_many("t", 0..64).unwrap());
    assert_eq!(r.delivered, 64_000);
    assert_eq!(n, 64 * m, "publish_many: per message, none per delivery");

    // Receiving allocates nothing either (into a buffer with room).
    let mut buf = Vec::with_capacity(1024);
    let (got, n) = counted(|| {
        let mut total = 0;
        for s in subs.iter_mut() {
            while let Ok(m) = s.try_recv() {
                buf.push(m);
                total += 1;
            }
            buf.clear();
        }
        total
    });
    assert_eq!(got, 1000 * 67 + 1000 * 4);
    assert_eq!(n, 0, "receiving");
}
