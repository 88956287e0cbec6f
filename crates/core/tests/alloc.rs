//! The hot path allocates nothing per delivery and at most once per publish:
//! a counting global allocator proves it for 1,000 subscribers.
//!
//! One test per binary, so that no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
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
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (r, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn publish_to_1000_allocates_at_most_once() {
    let hub = fanout_core::Hub::<u64>::builder().capacity(1024).build().unwrap();
    let mut subs: Vec<_> = (0..1000).map(|_| hub.subscribe().unwrap()).collect();
    for s in &subs {
        s.join("t").unwrap();
    }
    let topic = hub.topic("t");
    // Warm up: thread-locals, arc-swap's per-thread debt slots.
    hub.publish("t", 0).unwrap();
    hub.broadcast(0).unwrap();
    topic.publish(0).unwrap();

    let (r, n) = counted(|| hub.publish("t", 1).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, 1, "publish by name: one allocation (the message)");

    let (r, n) = counted(|| topic.publish(2).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, 1, "publish by handle");

    let (r, n) = counted(|| hub.broadcast(3).unwrap());
    assert_eq!(r.delivered, 1000);
    assert_eq!(n, 1, "broadcast");

    let (r, n) = counted(|| hub.publish_many("t", 0..64).unwrap());
    assert_eq!(r.delivered, 64_000);
    assert_eq!(n, 64, "publish_many: one per message, none per delivery");

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
    assert_eq!(got, 1000 * 67 + 1000 * 3);
    assert_eq!(n, 0, "receiving");
}
