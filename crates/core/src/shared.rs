//! The message's reference count, paid in advance by the publisher.
//!
//! A [`Message`](crate::Message) is shared by every recipient of a publish. With
//! `std::sync::Arc`, each delivery increments the count on the publisher's core
//! while receivers on the other core decrement it: the count's cache line
//! bounces once per delivery. perf on the 2-core bench (10k subscribers,
//! `publish_many` of 64) put 46 % of the publisher's samples on that one
//! `lock inc`.
//!
//! [`Counted`] is a minimal `Arc` (a count and the value in one allocation)
//! with one more operation: [`Counted::prepay`] adds `n` to the count with one
//! atomic, and [`Prepaid::take`] then hands out a handle per delivery with no
//! atomic at all. What a publish prepaid and did not hand out is given back
//! with one atomic when the [`Prepaid`] is dropped.
//!
//! # Lanes: receivers release on their own core
//!
//! Receivers give one reference back per handle they drop, from every core.
//! With one count, that line bounced between the cores once per delivery:
//! perf on `fanout-bench hub` (`same_topic`, 10,000 subscribers, Intel Xeon,
//! 2 cores) put a third of all samples on the `lock decq` of the bench's
//! receivers dropping their messages. So a prepay of at least [`LANES_FROM`]
//! references (one message to many recipients) puts them into *lanes*
//! instead: one count per core-sized slice of the threads, each on its own
//! cache line, allocated with the message's first large prepay. A handle
//! dropped on a thread takes its reference from that thread's lane (a CAS
//! on a line its core already holds), or, when that lane is empty, from the
//! next one, and from the main count when every lane is empty. References
//! are interchangeable: what matters is that the counts together hold the
//! number of live handles (and unused credit), and that the value is freed
//! when they all reach zero.
//!
//! Lanes only go down once filled (clones and top-ups go to the main
//! count), so each lane reaches zero once. While any lane holds references
//! the main count holds one more, for the lanes; the release that empties
//! the last lane (the `live` count of non-empty lanes reaches zero) gives it
//! back. So the main count reaches zero exactly when every count has.
//!
//! # Orderings
//!
//! As in `Arc`: increments are `Relaxed` (a new reference can only be made from
//! an existing one, which keeps the value alive); decrements are `Release`, and
//! the one that reaches zero issues an `Acquire` fence before freeing, so every
//! use of the value through other handles happens before it is freed. A lane
//! is taken from with `AcqRel` CASes and `live` goes down with `AcqRel`: the
//! release that empties a lane acquires every earlier release into it (one
//! read-modify-write chain per lane), the one that empties the last lane
//! acquires those of the others through `live`, and its `Release` decrement of
//! the main count passes all of them on to whoever frees.
//!
//! # Safety
//!
//! The count is always at least the number of live handles plus the credit of
//! live `Prepaid`s, so the value outlives both. `into_raw`/`from_raw` move a
//! handle's reference through a ring slot (see `ring.rs`). miri runs the unit
//! tests below; loom sees the count through the shim's atomics.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::loom::{fence, AtomicPtr, AtomicUsize, Ordering};

/// Refuse counts that could overflow (as `Arc` does).
const MAX_REFS: usize = isize::MAX as usize;

/// Prepays of at least this many references go into lanes (see "Lanes");
/// 2 under loom, so that a model stays small. A message keeps its lanes
/// (128 bytes a core) as long as it lives, in a topic's history too, so
/// they are for fan-outs large enough that the receivers' contention costs
/// more than that.
pub(crate) const LANES_FROM: usize = if cfg!(loom) { 2 } else { 256 };

/// Most lanes a message gets, whatever the core count (each costs a line).
#[cfg_attr(loom, allow(dead_code))]
const MAX_LANES: usize = 8;

/// Lanes per message: the cores, up to [`MAX_LANES`]; 1 (no lanes) on one
/// core. Two under loom and miri.
#[inline]
fn lane_count() -> usize {
    #[cfg(loom)]
    {
        2
    }
    #[cfg(not(loom))]
    {
        static LANES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        // miri sees one core: give it two lanes, so that it checks them.
        let cores =
            || if cfg!(miri) { 2 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
        *LANES.get_or_init(|| cores().min(MAX_LANES))
    }
}

/// The lane this thread takes from first. Threads get lanes in the order in
/// which they first give back a reference to a laned message, not by the
/// hub's thread index (which every thread that ever published or counted
/// takes): the threads that release messages are mostly the receivers' (an
/// async runtime's workers), and consecutive ones get different lanes. With
/// the thread index, two workers of a 2-core runtime shared a lane in about
/// half the runs, and the bench's lone publisher lost a third of its rate.
#[inline]
fn home_lane(lanes: usize) -> usize {
    #[cfg(not(loom))]
    {
        // The lane itself is kept (`lanes` is the same on every call: it is
        // `lane_count()`), so a drop pays no division for it.
        let i = MINE.with(Cell::get);
        if i < lanes {
            i
        } else {
            first_home_lane(lanes)
        }
    }
    #[cfg(loom)]
    {
        HOME.with(|h| h.get()) % lanes
    }
}

#[cfg(not(loom))]
thread_local! {
    /// This thread's lane, or `usize::MAX` before its first release.
    static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Gives this thread the next lane in turn (see [`home_lane`]).
#[cfg(not(loom))]
#[cold]
fn first_home_lane(lanes: usize) -> usize {
    use std::sync::atomic::{AtomicUsize as Counter, Ordering::Relaxed};
    static NEXT: Counter = Counter::new(0);
    let i = NEXT.fetch_add(1, Relaxed) % lanes;
    MINE.with(|m| m.set(i));
    i
}

#[cfg(loom)]
loom::thread_local! {
    /// Under loom, each model thread says which lane is its own.
    static HOME: Cell<usize> = Cell::new(0);
}

/// Under loom: makes `lane` this model thread's own.
#[cfg(loom)]
pub(crate) fn set_home_lane(lane: usize) {
    HOME.with(|h| h.set(lane));
}

/// One count per lane, each on its own line (lane 0's with `live`);
/// `lane_count()` of them, allocated as one boxed slice.
struct LaneSlot {
    /// References this lane holds.
    count: AtomicUsize,
    /// Lane 0's only: lanes not yet emptied (on lane 0's line, which has
    /// room for it: a third line per message would cost 128 bytes more for
    /// a counter touched once per lane).
    live: AtomicUsize,
}

type Lane = CachePadded<LaneSlot>;

struct Inner<T> {
    refs: AtomicUsize,
    /// Null, or the lanes (set once, by the first large prepay; freed with
    /// the value).
    lanes: AtomicPtr<Lane>,
    value: T,
}

impl<T> Inner<T> {
    /// Frees the lanes, if any. Only on the way to freeing the value: the
    /// count reached zero, nobody else reaches it.
    fn free_lanes(&self) {
        let p = self.lanes.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: set once from a leaked `Box<[Lane]>` of `lane_count()`
            // entries (`Counted::fill_lanes`); the caller's is the last access.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, lane_count())) });
        }
    }
}

/// A reference-counted pointer to an immutable `T`.
pub(crate) struct Counted<T> {
    ptr: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: like `Arc<T>`: handles on several threads share `&T` and the last one
// drops `T`, which needs `T: Send + Sync`.
unsafe impl<T: Send + Sync> Send for Counted<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Counted<T> {}

impl<T> Counted<T> {
    pub(crate) fn new(value: T) -> Self {
        let inner =
            Box::new(Inner { refs: AtomicUsize::new(1), lanes: AtomicPtr::new(std::ptr::null_mut()), value });
        Counted { ptr: NonNull::from(Box::leak(inner)), _owns: PhantomData }
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: this handle holds a reference, so the allocation is alive.
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn get(&self) -> &T {
        &self.inner().value
    }

    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// The lanes, if the value has them: `lane_count()` entries.
    fn lanes(&self) -> Option<&[Lane]> {
        // Acquire: pairs with the Release that installed them (their counts
        // are set before).
        let p = self.inner().lanes.load(Ordering::Acquire);
        // SAFETY: non-null means installed by `fill_lanes` from a boxed slice
        // of `lane_count()` entries, freed only with the value, which this
        // handle keeps alive.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p, lane_count()) })
    }

    /// The value, if this is the only reference; the handle back otherwise.
    pub(crate) fn try_unwrap(self) -> Result<T, Self> {
        // References left in a lane are other handles (or credit).
        if self.lanes().is_some_and(|l| l[0].live.load(Ordering::Acquire) != 0) {
            return Err(self);
        }
        if self.inner().refs.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(self);
        }
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: the count went from 1 (this handle) to 0, so no other handle
        // or credit exists; the allocation came from `Box` in `new`.
        let inner = unsafe { Box::from_raw(ptr.as_ptr()) };
        inner.free_lanes();
        Ok(inner.value)
    }

    /// Adds `n` references, to be handed out by the returned [`Prepaid`]
    /// without further atomics. One `fetch_add`.
    pub(crate) fn prepay(&self, n: usize) -> Prepaid<'_, T> {
        if !(n >= LANES_FROM && lane_count() > 1 && self.fill_lanes(n)) && n > 0 {
            self.add(n);
        }
        Prepaid { of: self, credit: Cell::new(n) }
    }

    /// Puts `n` references into new lanes (see "Lanes"); false if the value
    /// already has lanes (the references then go to the main count).
    #[cold]
    fn fill_lanes(&self, n: usize) -> bool {
        let k = lane_count();
        if !self.inner().lanes.load(Ordering::Relaxed).is_null() {
            return false;
        }
        // n >= LANES_FROM >= k (256 >= MAX_LANES; 2 = k under loom): every
        // lane gets at least one.
        let block: Box<[Lane]> = (0..k)
            .map(|i| {
                let count = AtomicUsize::new(n / k + usize::from(i < n % k));
                CachePadded::new(LaneSlot { count, live: AtomicUsize::new(if i == 0 { k } else { 0 }) })
            })
            .collect();
        let p = Box::into_raw(block).cast::<Lane>();
        // One reference for the lanes, while any holds some.
        self.add(1);
        // Release: whoever sees the pointer sees the counts above.
        match self.inner().lanes.compare_exchange(
            std::ptr::null_mut(),
            p,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => true,
            Err(_) => {
                // SAFETY: `p` came from the box above and was never shared.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, k)) });
                self.release(1);
                false
            }
        }
    }

    fn add(&self, n: usize) {
        // Relaxed: see "Orderings".
        if self.inner().refs.fetch_add(n, Ordering::Relaxed) > MAX_REFS - n {
            std::process::abort();
        }
    }

    /// Gives `n` references back to the main count; frees the value if
    /// they were the last.
    fn release(&self, n: usize) {
        // SAFETY: the caller owns `n` references to give back (a handle being
        // dropped, or a `Prepaid`'s unused credit).
        unsafe { release(self.ptr, n) }
    }

    /// Gives `n` references back: from this thread's lane first, then the
    /// other lanes, then the main count (see "Lanes").
    #[inline]
    fn give_back(&self, mut n: usize) {
        if let Some(l) = self.lanes() {
            let k = l.len();
            // This thread's lane, then the others in turn (no division).
            let mut at = home_lane(k);
            for _ in 0..k {
                let lane = &l[at].count;
                at = if at + 1 == k { 0 } else { at + 1 };
                let mut have = lane.load(Ordering::Relaxed);
                while have > 0 && n > 0 {
                    let take = have.min(n);
                    // AcqRel: see "Orderings".
                    match lane.compare_exchange_weak(have, have - take, Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => {
                            n -= take;
                            // Emptying a lane leaves `live` up until this
                            // decrement, so the lanes' reference keeps the
                            // value (and lanes) alive until then.
                            if have == take && l[0].live.fetch_sub(1, Ordering::AcqRel) == 1 {
                                // The last lane emptied: its reference goes
                                // back with what is left.
                                self.release(n + 1);
                                return;
                            }
                            break;
                        }
                        Err(now) => have = now,
                    }
                }
                if n == 0 {
                    return;
                }
            }
        }
        self.release(n);
    }

    /// The handle's reference as a raw pointer (for a ring slot).
    pub(crate) fn into_raw(self) -> *mut () {
        let p = self.ptr.as_ptr().cast::<()>();
        std::mem::forget(self);
        p
    }

    /// # Safety
    ///
    /// `p` must come from [`Counted::into_raw`] on a `Counted<T>`, and each such
    /// pointer may be turned back into a handle once.
    pub(crate) unsafe fn from_raw(p: *mut ()) -> Self {
        // SAFETY: per the contract, `p` is a non-null `Inner<T>` pointer whose
        // reference the caller now owns.
        Counted { ptr: unsafe { NonNull::new_unchecked(p.cast::<Inner<T>>()) }, _owns: PhantomData }
    }

    /// References held, in every count (the lanes' own one left out).
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        let main = self.inner().refs.load(Ordering::Acquire);
        match self.lanes() {
            None => main,
            Some(l) => {
                let held: usize = l.iter().map(|c| c.count.load(Ordering::Acquire)).sum();
                main + held - usize::from(l[0].live.load(Ordering::Acquire) != 0)
            }
        }
    }
}

/// # Safety
///
/// The caller owns `n` references to the allocation at `ptr`.
unsafe fn release<T>(ptr: NonNull<Inner<T>>, n: usize) {
    // SAFETY: the caller's `n` references keep the allocation alive here.
    let refs = unsafe { &ptr.as_ref().refs };
    // Release: this handle's uses of the value happen before the free below.
    if refs.fetch_sub(n, Ordering::Release) != n {
        return;
    }
    // Acquire: pairs with every other handle's Release decrement.
    fence(Ordering::Acquire);
    // SAFETY: the count reached zero: no handle or credit is left, and the
    // allocation came from `Box` in `new`.
    let inner = unsafe { Box::from_raw(ptr.as_ptr()) };
    inner.free_lanes();
    drop(inner);
}

impl<T> Clone for Counted<T> {
    #[inline]
    fn clone(&self) -> Self {
        self.add(1);
        Counted { ptr: self.ptr, _owns: PhantomData }
    }
}

impl<T> Drop for Counted<T> {
    #[inline]
    fn drop(&mut self) {
        self.give_back(1);
    }
}

/// References paid for in advance: [`Prepaid::take`] makes a handle with no
/// atomic; dropping the `Prepaid` gives back what was not taken. Not `Sync`:
/// one publisher uses it.
pub(crate) struct Prepaid<'a, T> {
    of: &'a Counted<T>,
    /// References added and not yet handed out.
    credit: Cell<usize>,
}

impl<T> Prepaid<'_, T> {
    /// A new handle, from the credit (topped up by 64 at a time if it ran out,
    /// e.g. when members joined after the count was taken).
    #[inline]
    pub(crate) fn take(&self) -> Counted<T> {
        let mut credit = self.credit.get();
        if credit == 0 {
            self.of.add(64);
            credit = 64;
        }
        self.credit.set(credit - 1);
        Counted { ptr: self.of.ptr, _owns: PhantomData }
    }
}

impl<T> Drop for Prepaid<'_, T> {
    fn drop(&mut self) {
        let unused = self.credit.get();
        if unused > 0 {
            // `self.of` still holds its own reference, so this never frees.
            self.of.give_back(unused);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdCounter;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Noisy(Arc<StdCounter>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn prepaid_handles_and_credit_balance() {
        let drops = Arc::new(StdCounter::new(0));
        let c = Counted::new(Noisy(drops.clone()));
        let handles: Vec<_> = {
            let pre = c.prepay(10);
            assert_eq!(c.count(), 11);
            let hs: Vec<_> = (0..4).map(|_| pre.take()).collect();
            assert_eq!(c.count(), 11, "taking costs no atomic");
            hs
        };
        assert_eq!(c.count(), 5, "unused credit given back");
        {
            let pre = c.prepay(0);
            let extra = pre.take();
            assert_eq!(c.count(), 5 + 64, "topped up when the credit runs out");
            drop(extra);
        }
        assert_eq!(c.count(), 5);
        drop(handles);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 0);
        let c2 = c.clone();
        assert!(Counted::ptr_eq(&c, &c2));
        let c = c.try_unwrap().unwrap_err();
        drop(c2);
        let value = c.try_unwrap().ok().unwrap();
        drop(value);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1, "freed exactly once");
    }

    #[test]
    fn lanes_balance_across_threads_and_free_once() {
        if lane_count() < 2 {
            return; // one core: no lanes to test
        }
        let drops = Arc::new(StdCounter::new(0));
        let c = Counted::new(Noisy(drops.clone()));
        let n = LANES_FROM + 3;
        let handles: Vec<std::sync::atomic::AtomicPtr<()>> = {
            let pre = c.prepay(n + 2);
            assert!(c.lanes().is_some(), "a large prepay fills lanes");
            assert_eq!(c.count(), n + 3, "the owner, and the credit");
            let hs = (0..n).map(|_| std::sync::atomic::AtomicPtr::new(pre.take().into_raw())).collect();
            assert_eq!(c.count(), n + 3, "taking costs no atomic");
            hs
        };
        assert_eq!(c.count(), n + 1, "unused credit given back through the lanes");
        {
            // A second large prepay finds lanes there: the main count takes it.
            let pre = c.prepay(LANES_FROM);
            assert_eq!(c.count(), n + 1 + LANES_FROM);
            drop(pre.take());
        }
        assert_eq!(c.count(), n + 1);
        let clone = c.clone();
        assert_eq!(c.count(), n + 2);
        // Every thread drops a share, more than its lane holds for some.
        let mut handles = handles.into_iter();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let ps: Vec<_> = handles.by_ref().take(n / 3 + 1).collect();
                std::thread::spawn(move || {
                    for p in ps {
                        // SAFETY (test): each pointer came from `into_raw` once.
                        drop(unsafe { Counted::<Noisy>::from_raw(p.into_inner()) });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.count(), 2, "the owner and its clone");
        let l = c.lanes().unwrap();
        assert_eq!(l[0].live.load(Ordering::Acquire), 0, "every lane emptied");
        let c = c.try_unwrap().unwrap_err();
        drop(clone);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 0);
        let value = c.try_unwrap().ok().expect("the last reference");
        drop(value);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1, "freed exactly once");
    }

    #[test]
    fn try_unwrap_refuses_while_lanes_hold_references() {
        if lane_count() < 2 {
            return;
        }
        let c = Counted::new(5u32);
        let pre = c.prepay(LANES_FROM);
        let hs: Vec<_> = (0..LANES_FROM).map(|_| pre.take()).collect();
        drop(pre);
        let c = c.try_unwrap().unwrap_err();
        drop(hs);
        assert_eq!(c.try_unwrap().ok(), Some(5));
    }

    #[test]
    fn raw_round_trip_and_threads() {
        let drops = Arc::new(StdCounter::new(0));
        let c = Counted::new(Noisy(drops.clone()));
        let n = if cfg!(miri) { 4 } else { 64 };
        // Each raw pointer crosses to its thread inside an `AtomicPtr` (which
        // is `Send`), keeping its provenance: miri checks the round trip.
        let raws: Vec<std::sync::atomic::AtomicPtr<()>> = {
            let pre = c.prepay(n);
            (0..n).map(|_| std::sync::atomic::AtomicPtr::new(pre.take().into_raw())).collect()
        };
        let threads: Vec<_> = raws
            .into_iter()
            .map(|p| {
                std::thread::spawn(move || {
                    // SAFETY (test): each pointer came from `into_raw` once.
                    let h = unsafe { Counted::<Noisy>::from_raw(p.into_inner()) };
                    drop(h);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.count(), 1);
        drop(c);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
