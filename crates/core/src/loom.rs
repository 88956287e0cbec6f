//! The concurrency shim: std (and arc-swap, crossbeam) normally, loom under `--cfg loom`.
//!
//! Every synchronising primitive the engine's delivery path relies on is imported
//! from here, so that a loom model explores the real code. Neither arc-swap nor
//! crossbeam's queues are loom-aware (their atomics are invisible to loom), so under
//! `cfg(loom)` they are replaced by loom-visible stand-ins with the same contract:
//!
//! | normal build | under loom | contract kept |
//! | --- | --- | --- |
//! | [`arc_swap::ArcSwap`] ([`Snapshot`]) | `loom::sync::RwLock<Arc<T>>` | a reader sees the whole old or the whole new value; `store` is visible to every later `with` |
//! | `futures_util::task::AtomicWaker` | `loom::future::AtomicWaker` | `wake` after `register` wakes the registered waker |
//!
//! The ring (`ring.rs`) is built from this module's atomics and allocates its
//! storage through `alloc`/`dealloc` here, so loom explores the real ring and
//! checks that a storage lost in the race to install it is freed. Counters that only feed statistics use std atomics in both
//! builds: they order nothing.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub(crate) use loom::alloc::{alloc, dealloc};
/// Raw allocation for the ring's storage: std's, or loom's, which tracks leaks
/// (a model fails if an allocation is still live when it ends).
#[cfg(not(loom))]
pub(crate) use std::alloc::{alloc, dealloc};

/// A wait on another thread's progress (a slot still being written, a walker
/// still delivering): crossbeam's `Backoff`, which spins a few times and then
/// yields the core, so that a waiter never burns its time slice on a thread
/// that was preempted; under loom, every turn is a yield, so that the model
/// lets the other thread run.
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    #[inline]
    pub(crate) fn new() -> Self {
        Backoff {
            #[cfg(not(loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    /// One turn of the wait.
    #[inline]
    pub(crate) fn snooze(&self) {
        #[cfg(not(loom))]
        self.inner.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// A cell whose exclusion the caller provides (the sequencer's walk guards a
/// topic's history with it). Under loom, loom's own, which fails a model in
/// which two threads reach the value at once.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// std's `UnsafeCell` with loom's `with_mut` interface.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` on a pointer to the value; the caller guarantees exclusion.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(not(loom))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(loom)]
pub(crate) use loom_waker::AtomicWaker;

#[cfg(loom)]
mod loom_waker {
    use std::task::Waker;

    /// `loom::future::AtomicWaker` with the `futures` names.
    pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

    impl AtomicWaker {
        pub(crate) fn new() -> Self {
            AtomicWaker(loom::future::AtomicWaker::new())
        }
        pub(crate) fn register(&self, waker: &Waker) {
            self.0.register_by_ref(waker)
        }
        pub(crate) fn wake(&self) {
            self.0.wake()
        }
        pub(crate) fn take(&self) -> Option<Waker> {
            self.0.take_waker()
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section in the engine leaves
/// its data consistent before anything in it can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub(crate) use snapshot::Snapshot;

#[cfg(not(loom))]
mod snapshot {
    use arc_swap::ArcSwap;
    use std::sync::Arc;

    /// An atomically replaceable `Arc<T>`: readers never lock.
    pub(crate) struct Snapshot<T>(ArcSwap<T>);

    impl<T> Snapshot<T> {
        pub(crate) fn new(value: T) -> Self {
            Snapshot(ArcSwap::from_pointee(value))
        }

        /// Runs `f` on the current value. The value stays alive while `f` runs even
        /// if a writer replaces it meanwhile.
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let guard = self.0.load();
            f(&guard)
        }

        /// The current value as an owned `Arc` (for writers, which copy it).
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }

        /// Publishes a new value; every `with` that starts afterwards sees it.
        pub(crate) fn store(&self, value: Arc<T>) {
            self.0.store(value)
        }
    }
}

#[cfg(loom)]
mod snapshot {
    use loom::sync::RwLock;
    use std::sync::Arc;

    /// Loom stand-in for `ArcSwap`: an `RwLock<Arc<T>>`, so that loom sees the
    /// hand-over of a new snapshot.
    pub(crate) struct Snapshot<T>(RwLock<Arc<T>>);

    impl<T> Snapshot<T> {
        pub(crate) fn new(value: T) -> Self {
            Snapshot(RwLock::new(Arc::new(value)))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let current = self.0.read().unwrap().clone();
            f(&current)
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.read().unwrap().clone()
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            *self.0.write().unwrap() = value;
        }
    }
}
