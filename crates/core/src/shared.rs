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
//! with one atomic when the [`Prepaid`] is dropped. Receivers still decrement
//! once per handle they drop.
//!
//! # Orderings
//!
//! As in `Arc`: increments are `Relaxed` (a new reference can only be made from
//! an existing one, which keeps the value alive); decrements are `Release`, and
//! the one that reaches zero issues an `Acquire` fence before freeing, so every
//! use of the value through other handles happens before it is freed.
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

use crate::loom::{fence, AtomicUsize, Ordering};

/// Refuse counts that could overflow (as `Arc` does).
const MAX_REFS: usize = isize::MAX as usize;

struct Inner<T> {
    refs: AtomicUsize,
    value: T,
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
        let inner = Box::new(Inner { refs: AtomicUsize::new(1), value });
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

    /// The value, if this is the only reference; the handle back otherwise.
    pub(crate) fn try_unwrap(self) -> Result<T, Self> {
        if self.inner().refs.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(self);
        }
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: the count went from 1 (this handle) to 0, so no other handle
        // or credit exists; the allocation came from `Box` in `new`.
        let inner = unsafe { Box::from_raw(ptr.as_ptr()) };
        Ok(inner.value)
    }

    /// Adds `n` references, to be handed out by the returned [`Prepaid`]
    /// without further atomics. One `fetch_add`.
    pub(crate) fn prepay(&self, n: usize) -> Prepaid<'_, T> {
        if n > 0 {
            self.add(n);
        }
        Prepaid { of: self, credit: Cell::new(n) }
    }

    fn add(&self, n: usize) {
        // Relaxed: see "Orderings".
        if self.inner().refs.fetch_add(n, Ordering::Relaxed) > MAX_REFS - n {
            std::process::abort();
        }
    }

    /// Gives `n` references back; frees the value if they were the last.
    fn release(&self, n: usize) {
        // SAFETY: the caller owns `n` references to give back (a handle being
        // dropped, or a `Prepaid`'s unused credit).
        unsafe { release(self.ptr, n) }
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

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.inner().refs.load(Ordering::Acquire)
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
    drop(unsafe { Box::from_raw(ptr.as_ptr()) });
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
        self.release(1);
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
            self.of.release(unused);
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
