//! A subscriber's bounded ring: many publishers push runs, one receiver takes
//! batches, and publishers may displace the oldest entry.
//!
//! # Layout
//!
//! Dmitry Vyukov's bounded MPMC queue (as in crossbeam's `ArrayQueue`): a
//! power-of-two array of slots, each a *stamp* and a pointer (a [`Message`] is
//! one reference-counted pointer), and two positions that only grow:
//!
//! - `tail`: the next position a publisher reserves;
//! - `head`: the next position to take.
//!
//! Position `p` lives in slot `p & mask`. The slot's stamp says what the slot
//! is waiting for: `stamp == p` means "free for position `p`" (a writer may
//! fill it), `stamp == p + 1` means "holds position `p`" (a taker may take
//! it). Taking position `p` sets the stamp to `p + size`: free for the next
//! lap. Stamps only grow, so there is no ABA and a reader can never mistake a
//! value from one lap for another. At most `capacity` positions are reserved
//! and not taken (`tail - head ≤ cap`).
//!
//! # What is different from `ArrayQueue`: runs and batches
//!
//! `ArrayQueue` moves `tail` and `head` one position per CAS. Here:
//!
//! - a publisher **reserves a run** of up to `k` positions with one CAS on
//!   `tail` (bounded by the room it computes from `head`), then fills each slot
//!   (pointer, then `Release` store of the stamp);
//! - the receiver **claims a batch**: it counts the ready slots from `head`
//!   (stamp `== p + 1`), claims them with one CAS on `head`, then takes each
//!   pointer and frees each slot.
//!
//! A run of 64 messages costs one CAS per side instead of 64. A writer whose
//! slot is still held by a taker that claimed it but has not freed it yet
//! waits for the stamp: a few instructions, never a lock.
//!
//! # Displacing the oldest (`DropOldest`, `Urgent`)
//!
//! A publisher that must make room takes the oldest position like a batch of
//! one: it checks that the slot at `head` is ready, claims it with a CAS on
//! `head`, takes the pointer and frees the slot. A receiver that counted that
//! slot sees its own CAS fail and counts again.
//!
//! # Safety
//!
//! The `unsafe` here turns a slot's pointer back into the message handle it
//! came from. A pointer enters a slot once (`Counted::into_raw`, before the
//! stamp says "ready") and leaves it once (after the one CAS on `head` that
//! claims its position); a slot's pointer is meaningful only while its stamp
//! says the slot holds a position. loom models the ring through the shim's atomics
//! (`loom_tests.rs`); miri runs its unit tests.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr;

use crossbeam_utils::CachePadded;

use crate::loom::{spin, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// A position as a stamp (see `Ring::stamps`).
#[inline]
fn stamp(pos: usize) -> u32 {
    pos as u32
}
use crate::message::{Envelope, Message};
use crate::shared::Counted;

/// A slot's pointer. Owned by the slot while its stamp (kept apart, in
/// `stamps`) says it holds a position; stale otherwise (never cleared).
/// Written before the stamp's `Release` store and read after its `Acquire`
/// load, so `Relaxed` suffices here.
struct Slot {
    ptr: AtomicPtr<()>,
}

pub(crate) struct Ring<T> {
    /// Next position to reserve. Only grows; moved by CAS (publishers).
    tail: CachePadded<AtomicUsize>,
    /// Next position to take; `head ≤ tail`. Only grows; moved by CAS (the
    /// receiver by a batch, displacing publishers by one).
    head: CachePadded<AtomicUsize>,
    slots: Box<[Slot]>,
    /// Per slot: `p` (free for position `p`) or `p + 1` (holds position `p`),
    /// truncated to 32 bits. Kept apart from the pointers so that a run of 64
    /// touches 4 lines of stamps and 8 of pointers instead of 16 of both, and a
    /// 256-slot ring costs 3 KiB instead of 4. Truncation is safe: stamps are
    /// only compared for equality with positions within one lap of the slot's
    /// own (a lap is at most 2^24 positions, `MAX_CAPACITY`), never 2^32 apart.
    stamps: Box<[AtomicU32]>,
    mask: usize,
    /// Positions that may be reserved and not yet taken.
    cap: usize,
    /// The ring owns message references (as raw pointers): it is `Send` and
    /// `Sync` exactly when the handles are.
    _owns: PhantomData<Counted<Envelope<T>>>,
}

impl<T> Ring<T> {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let size = cap.next_power_of_two();
        Ring {
            tail: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..size).map(|_| Slot { ptr: AtomicPtr::new(ptr::null_mut()) }).collect(),
            stamps: (0..size).map(|i| AtomicU32::new(stamp(i))).collect(),
            mask: size - 1,
            cap,
            _owns: PhantomData,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// A ring whose positions start at `start` (a multiple of the size), to
    /// test stamps across the 32-bit wrap.
    #[cfg(all(test, not(loom)))]
    fn starting_at(cap: usize, start: usize) -> Self {
        let r = Ring::new(cap);
        assert_eq!(start & r.mask, 0);
        r.head.store(start, Ordering::Relaxed);
        r.tail.store(start, Ordering::Relaxed);
        for (i, st) in r.stamps.iter().enumerate() {
            st.store(stamp(start + i), Ordering::Relaxed);
        }
        r
    }

    fn size(&self) -> usize {
        self.mask + 1
    }

    /// Reserved and not yet taken (may count a message still being written).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        let t = self.tail.load(Ordering::Acquire);
        let h = self.head.load(Ordering::Acquire);
        t.saturating_sub(h).min(self.cap)
    }

    /// Reserves up to `want` positions with one CAS; returns the first and how
    /// many (0 when the ring is full).
    #[inline]
    pub(crate) fn reserve(&self, want: usize) -> (usize, usize) {
        let mut t = self.tail.load(Ordering::Relaxed);
        loop {
            let h = self.head.load(Ordering::Acquire);
            if h > t {
                // `t` is stale: others reserved and took meanwhile.
                t = self.tail.load(Ordering::Relaxed);
                continue;
            }
            let free = self.cap.saturating_sub(t - h);
            if free == 0 {
                // `tail` only grows, so the ring was full when `head` was read.
                return (t, 0);
            }
            let n = free.min(want);
            match self.tail.compare_exchange_weak(t, t + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return (t, n),
                Err(cur) => t = cur,
            }
        }
    }

    /// Fills reserved position `pos` with `m`.
    #[inline]
    pub(crate) fn write(&self, pos: usize, m: Message<T>) {
        let i = pos & self.mask;
        let slot = &self.slots[i];
        // The lap before was taken (`head` passed it), but its taker may not
        // have freed the slot yet. Acquire: pairs with the taker's Release.
        while self.stamps[i].load(Ordering::Acquire) != stamp(pos) {
            spin();
        }
        slot.ptr.store(m.inner.into_raw(), Ordering::Relaxed);
        // Release: a taker that sees the stamp sees the pointer and the
        // envelope behind it.
        self.stamps[i].store(stamp(pos + 1), Ordering::Release);
    }

    /// Pushes one message; hands it back when the ring is full.
    #[inline]
    pub(crate) fn push(&self, m: Message<T>) -> Result<(), Message<T>> {
        let (pos, n) = self.reserve(1);
        if n == 0 {
            return Err(m);
        }
        self.write(pos, m);
        Ok(())
    }

    /// Takes the claimed position `pos` out of its slot and frees the slot.
    #[inline]
    fn take_claimed(&self, pos: usize) -> Message<T> {
        let i = pos & self.mask;
        let slot = &self.slots[i];
        // A plain load: the stamp, not the pointer, says whether the slot is
        // full, and the claim made this thread its only reader.
        let p = slot.ptr.load(Ordering::Relaxed);
        // Release: the next lap's writer, which waits for this stamp, writes
        // only after the pointer was read.
        self.stamps[i].store(stamp(pos + self.size()), Ordering::Release);
        // SAFETY: the stamp said the slot held position `pos` (a pointer from
        // `Counted::into_raw` in `write`), and the CAS on `head` that claimed
        // `pos` made this thread the only one to take it.
        Message { inner: unsafe { Counted::from_raw(p) } }
    }

    /// Takes the oldest message to make room. `None` when the ring is empty.
    pub(crate) fn displace(&self) -> Option<Message<T>> {
        loop {
            let h = self.head.load(Ordering::Acquire);
            if h >= self.tail.load(Ordering::Acquire) {
                return None;
            }
            if self.stamps[h & self.mask].load(Ordering::Acquire) != stamp(h + 1) {
                // Reserved but not written yet, or already taken (then `head`
                // has moved): look again.
                spin();
                continue;
            }
            if self.head.compare_exchange(h, h + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Some(self.take_claimed(h));
            }
        }
    }

    /// Pushes `m`, displacing the oldest messages until it fits; returns how
    /// many were displaced (dropped here).
    pub(crate) fn force_push(&self, m: Message<T>) -> usize {
        let mut displaced = 0;
        loop {
            let (pos, n) = self.reserve(1);
            if n == 1 {
                self.write(pos, m);
                return displaced;
            }
            if self.displace().is_some() {
                displaced += 1;
            }
        }
    }

    /// Takes up to `max` ready messages in order, handing each to `out`;
    /// returns how many. Called by the subscriber's one receiver.
    #[inline]
    pub(crate) fn take(&self, max: usize, mut out: impl FnMut(Message<T>)) -> usize {
        let max = max.min(self.cap);
        loop {
            let h = self.head.load(Ordering::Acquire);
            let mut n = 0;
            // Acquire: pairs with the writer's Release of the stamp.
            while n < max && self.stamps[(h + n) & self.mask].load(Ordering::Acquire) == stamp(h + n + 1) {
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            if self.head.compare_exchange(h, h + n, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                // A displacer took the oldest: count again.
                continue;
            }
            for pos in h..h + n {
                out(self.take_claimed(pos));
            }
            return n;
        }
    }

    /// Takes one message.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Message<T>> {
        let mut got = None;
        self.take(1, |m| got = Some(m));
        got
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        for pos in head..tail {
            let slot = &self.slots[pos & self.mask];
            if self.stamps[pos & self.mask].load(Ordering::Acquire) == stamp(pos + 1) {
                let p = slot.ptr.load(Ordering::Relaxed);
                // SAFETY: `&mut self`: no other thread holds the ring, so no
                // write is in flight; the stamp says the slot holds position
                // `pos`, put there by `write` and not taken since.
                drop(unsafe { Counted::<Envelope<T>>::from_raw(p) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single- and multi-thread checks of the ring alone; small enough for miri
    //! (`cargo +nightly miri test -p fanout-core --lib ring`).

    use super::*;
    use crate::message::{Meta, Origin, Priority};

    fn m(v: u64) -> Message<u64> {
        Message::new(None, Origin::Broadcast, Meta { seq: v, epoch: 0 }, Priority::Normal, v)
    }

    fn take_all(r: &Ring<u64>) -> Vec<u64> {
        let mut v = Vec::new();
        while r.take(usize::MAX, |x| v.push(*x.payload())) > 0 {}
        v
    }

    #[test]
    fn fifo_capacity_and_wrap() {
        for cap in [1usize, 2, 3, 4, 7, 8] {
            let r = Ring::new(cap);
            let mut next = 0;
            let mut expect = 0;
            for _round in 0..5 {
                while r.push(m(next)).is_ok() {
                    next += 1;
                }
                assert_eq!(r.len(), cap);
                for v in take_all(&r) {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                assert_eq!(r.len(), 0);
            }
            assert_eq!(expect, next);
        }
    }

    #[test]
    fn stamps_survive_the_32_bit_wrap() {
        let r = Ring::starting_at(4, (1usize << 32) - 8);
        let mut next = 0;
        let mut expect = 0;
        for _ in 0..6 {
            while r.push(m(next)).is_ok() {
                next += 1;
            }
            assert_eq!(r.force_push(m(next)), 1);
            next += 1;
            expect += 1; // the oldest was displaced
            for v in take_all(&r) {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn reserve_is_bounded_by_room() {
        let r = Ring::<u64>::new(5);
        assert_eq!(r.reserve(3).1, 3);
        assert_eq!(r.reserve(3).1, 2);
        assert_eq!(r.reserve(3).1, 0);
        for pos in 0..5 {
            r.write(pos, m(pos as u64));
        }
        assert_eq!(take_all(&r), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn displace_and_force_push_keep_the_freshest() {
        let r = Ring::new(3);
        for v in 0..3 {
            r.push(m(v)).unwrap();
        }
        assert_eq!(r.force_push(m(3)), 1);
        assert_eq!(*r.displace().unwrap().payload(), 1);
        assert_eq!(take_all(&r), vec![2, 3]);
        assert!(r.displace().is_none());
        assert_eq!(r.force_push(m(9)), 0);
        assert_eq!(take_all(&r), vec![9]);
    }

    #[test]
    fn a_batch_takes_what_is_ready() {
        let r = Ring::new(4);
        let (pos, n) = r.reserve(4);
        assert_eq!(n, 4);
        r.write(pos, m(0));
        r.write(pos + 2, m(2)); // position 1 reserved, not written yet
        assert_eq!(r.take(100, drop), 1, "stops at the first slot still being written");
        r.write(pos + 1, m(1));
        r.write(pos + 3, m(3));
        let mut got = Vec::new();
        assert_eq!(r.take(100, |x| got.push(*x.payload())), 3);
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn drop_frees_what_is_left() {
        let msg = m(1);
        let r = Ring::new(4);
        r.push(msg.clone()).unwrap();
        r.push(msg.clone()).unwrap();
        drop(r);
        assert_eq!(msg.inner.count(), 1);
    }

    #[test]
    fn producers_displacers_and_a_receiver() {
        let n: u64 = if cfg!(miri) { 40 } else { 20_000 };
        let r = std::sync::Arc::new(Ring::new(8));
        let producers: Vec<_> = (0..2u64)
            .map(|k| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut displaced = 0;
                    for i in 0..n {
                        let v = k << 32 | i;
                        if i % 3 == 0 {
                            displaced += r.force_push(m(v));
                        } else {
                            while r.push(m(v)).is_err() {
                                std::thread::yield_now();
                            }
                        }
                    }
                    displaced
                })
            })
            .collect();
        let mut last = [None::<u64>; 2];
        let mut got = 0usize;
        let mut done = false;
        while !done {
            done = producers.iter().all(|p| p.is_finished());
            r.take(64, |x| {
                let v = *x.payload();
                let k = (v >> 32) as usize;
                let i = v & 0xffff_ffff;
                assert!(last[k].is_none_or(|l| i > l), "per-producer order");
                last[k] = Some(i);
                got += 1;
            });
        }
        got += take_all(&r).len();
        let displaced: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(got + displaced, 2 * n as usize, "every message taken or displaced, once");
    }
}
