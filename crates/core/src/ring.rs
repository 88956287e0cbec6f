//! A subscriber's bounded ring.
//!
//! The ring is crossbeam's [`ArrayQueue`]: Dmitry Vyukov's bounded MPMC queue,
//! each slot stamped with the lap it belongs to. Publishers on any thread push;
//! the one receiver pops; a publisher applying `DropOldest` or an `Urgent`
//! message also pops (through [`Ring::force_push`]), which is why the queue must
//! be multi-consumer even though a subscriber has one reader.
//!
//! # When the ring is full
//!
//! `push` hands the value back (`Err(value)`): the caller applies the overflow
//! policy. `force_push` displaces the oldest value and returns it, so the caller
//! can count the loss. Neither blocks, neither allocates: the slots are allocated
//! once, when the subscriber is created (`capacity` × one pointer, since the
//! engine stores [`Message`](crate::Message) handles, which are one `Arc`).
//!
//! # Why not a ring of our own
//!
//! A multi-producer ring that reserves `k` slots with one CAS would cut the cost
//! of `publish_many`; the prototype measured ~23 ns per push and per pop on
//! `ArrayQueue`. A custom ring needs `unsafe` and its own loom and miri coverage,
//! and must still let publishers displace the oldest entry. It is the next step
//! if profiles show the ring dominating (see docs/architecture.md).
//!
//! Under `--cfg loom` the ring is a `loom::sync::Mutex<VecDeque<T>>` with the same
//! contract, so that models see every hand-over between publisher and receiver.

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue as Ring;

#[cfg(loom)]
pub(crate) use loom_ring::Ring;

#[cfg(loom)]
mod loom_ring {
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Mutex;
    use std::collections::VecDeque;

    /// A mutex around a `VecDeque`, plus an atomic length that `pop` reads before
    /// locking. The length stands for `ArrayQueue`'s slot stamps and tail: it is
    /// what a receiver's "is anything there?" check reads, so that loom applies
    /// the SeqCst fences of the parking handshake to it (loom does not order
    /// mutex hand-overs by fences).
    pub(crate) struct Ring<T> {
        cap: usize,
        q: Mutex<VecDeque<T>>,
        len: AtomicUsize,
    }

    impl<T> Ring<T> {
        pub(crate) fn new(cap: usize) -> Self {
            Ring { cap, q: Mutex::new(VecDeque::with_capacity(cap)), len: AtomicUsize::new(0) }
        }
        pub(crate) fn push(&self, v: T) -> Result<(), T> {
            let mut q = self.q.lock().unwrap();
            if q.len() == self.cap {
                return Err(v);
            }
            q.push_back(v);
            self.len.store(q.len(), Ordering::SeqCst);
            Ok(())
        }
        pub(crate) fn force_push(&self, v: T) -> Option<T> {
            let mut q = self.q.lock().unwrap();
            let old = if q.len() == self.cap { q.pop_front() } else { None };
            q.push_back(v);
            self.len.store(q.len(), Ordering::SeqCst);
            old
        }
        pub(crate) fn pop(&self) -> Option<T> {
            if self.len.load(Ordering::SeqCst) == 0 {
                return None;
            }
            let mut q = self.q.lock().unwrap();
            let v = q.pop_front();
            self.len.store(q.len(), Ordering::SeqCst);
            v
        }
        pub(crate) fn len(&self) -> usize {
            self.len.load(Ordering::SeqCst)
        }
        pub(crate) fn capacity(&self) -> usize {
            self.cap
        }
    }
}
