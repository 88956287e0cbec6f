//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

/// A waker that counts how often it was woken.
pub struct CountingWaker(pub AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// Polls a future once with `waker`.
pub fn poll_once<F: std::future::Future + Unpin>(f: &mut F, waker: &Waker) -> std::task::Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    std::pin::Pin::new(f).poll(&mut cx)
}

/// A payload that counts how many of its values are alive.
#[derive(Debug)]
pub struct Tracked {
    pub n: u64,
    live: Arc<AtomicUsize>,
}

impl Tracked {
    pub fn new(n: u64, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked { n, live: live.clone() }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked::new(self.n, &self.live)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}
