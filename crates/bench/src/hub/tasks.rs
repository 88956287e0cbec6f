//! The tasks and threads of one hub run: subscribers draining (and checking
//! order), publishers paced against them, the churner and the memory monitor.
//!
//! # Pacing
//!
//! [`Pace`] hands out message numbers (`next`) and makes a publisher wait until
//! every healthy subscriber has received at least `upto - WINDOW` messages
//! before it publishes messages up to `upto`. Progress only grows, so the
//! smallest value seen in one pass over the subscribers is a floor for all of
//! them; it is kept (`floor`) and a publisher whose need is under it goes on
//! without a pass. One message per call would otherwise pay a pass over N
//! counters per message, as much as the publish it paces.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_utils::CachePadded;
use fanout_bench::order::{OrderChecker, OrderCounts};
use fanout_core::{Engine, Receiver, RecvError};
use hdrhistogram::Histogram;

use super::{hist, ns, CHURN_LIVE, CHURN_PER_SEC, RECV_MAX, TOPIC_SLICE, WINDOW};

/// The payload: when it was published, and a 64-byte body (shared, never copied).
#[derive(Clone, Debug)]
pub struct Tick {
    sent_ns: u64,
    _body: Bytes,
}

static BODY: [u8; 64] = [b'x'; 64];

/// Per healthy subscriber: messages received so far (written by its task only).
pub type Progress = Arc<Vec<CachePadded<AtomicU64>>>;

/// What a drain task hands back.
pub struct Drained {
    /// Messages received.
    pub received: u64,
    /// Messages reported lost (`RecvError::Lagged`).
    pub lagged: u64,
    /// Receive calls that had to park.
    pub wakes: u64,
    /// Publish-to-receive latencies, if this subscriber was sampled.
    pub e2e: Option<Histogram<u64>>,
    /// With an order check: what it saw, and its first violation.
    pub order: Option<(OrderCounts, Option<String>)>,
}

/// Awaits `fut`, saying whether it had to park (returned `Pending` once).
async fn parked<F: std::future::Future>(fut: F) -> (F::Output, bool) {
    let mut fut = pin!(fut);
    let mut parked = false;
    let out = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => {
            parked = true;
            Poll::Pending
        }
    })
    .await;
    (out, parked)
}

/// A healthy subscriber's task: drain in batches until closed, checking the
/// order of every message if `order` is given.
pub async fn drain<R: Receiver<Tick>>(
    mut rx: R,
    progress: Progress,
    idx: usize,
    mut e2e: Option<Histogram<u64>>,
    mut order: Option<OrderChecker>,
    base: Instant,
) -> Drained {
    let mut buf = Vec::with_capacity(RECV_MAX);
    let (mut received, mut lagged, mut wakes) = (0u64, 0u64, 0u64);
    loop {
        buf.clear();
        let (res, did_park) = parked(rx.recv_many(&mut buf, RECV_MAX)).await;
        wakes += u64::from(did_park);
        match res {
            Ok(n) => {
                received += n as u64;
                if let Some(c) = order.as_mut() {
                    for m in &buf {
                        c.push(m.seq());
                    }
                }
                if let Some(h) = e2e.as_mut() {
                    let now = ns(base.elapsed());
                    for m in &buf {
                        h.saturating_record(now.saturating_sub(m.payload().sent_ns).max(1));
                    }
                }
                progress[idx].store(received, Relaxed);
            }
            Err(RecvError::Lagged(k)) => {
                lagged += k;
                if let Some(c) = order.as_mut() {
                    c.lagged(k);
                }
            }
            Err(RecvError::Closed(_)) => break,
        }
    }
    let order = order.map(|mut c| {
        let counts = c.finish();
        (counts, c.first_violation().map(|v| format!("subscriber {idx}: {v}")))
    });
    Drained { received, lagged, wakes, e2e, order }
}

/// Shared by the publishers: the next message number to reserve, and the
/// subscribers' progress to pace against.
pub struct Pace {
    /// The next message number to reserve (per subscriber).
    pub next: AtomicU64,
    /// Messages each subscriber receives in the run.
    pub total: u64,
    /// What each healthy subscriber has received.
    pub progress: Progress,
    /// Every subscriber has received at least this many (see the module docs).
    pub floor: AtomicU64,
}

impl Pace {
    /// Pacing for `total` messages per subscriber.
    pub fn new(total: u64, progress: Progress) -> Pace {
        Pace { next: AtomicU64::new(0), total, progress, floor: AtomicU64::new(0) }
    }

    /// Waits until every healthy subscriber has received at least
    /// `upto - WINDOW` messages.
    pub async fn wait(&self, upto: u64) {
        let need = upto.saturating_sub(WINDOW);
        if need <= self.floor.load(Relaxed) {
            return;
        }
        let mut min = u64::MAX;
        for p in self.progress.iter() {
            let mut spins = 0u32;
            let mut seen = p.load(Relaxed);
            while seen < need {
                spins += 1;
                tokio::task::yield_now().await;
                if spins % 16 == 0 {
                    // Let the other threads (the churn thread) have this core too.
                    std::thread::yield_now();
                }
                seen = p.load(Relaxed);
            }
            min = min.min(seen);
        }
        self.floor.fetch_max(min, Relaxed);
    }
}

fn tick(base: Instant, body: &Bytes) -> Tick {
    Tick { sent_ns: ns(base.elapsed()), _body: body.clone() }
}

pub fn ticks(k: u64, base: Instant) -> Vec<Tick> {
    let body = Bytes::from_static(&BODY);
    let t = tick(base, &body);
    (0..k).map(|_| t.clone()).collect()
}

/// Where a publisher sends.
#[derive(Clone, Copy)]
pub enum Target {
    /// Every subscriber (`broadcast`, `broadcast_many`).
    All,
    /// One topic (`publish`, `publish_many`).
    Topic(&'static str),
}

/// A publisher: reserve `batch` messages, wait for room, publish them in one
/// call (`broadcast` / `publish` when `batch` is 1). Returns call latencies.
pub async fn publisher<E: Engine<Tick>>(
    engine: E,
    pace: Arc<Pace>,
    batch: u64,
    target: Target,
    base: Instant,
) -> Histogram<u64> {
    let mut h = hist(3);
    let body = Bytes::from_static(&BODY);
    loop {
        let start = pace.next.fetch_add(batch, Relaxed);
        if start >= pace.total {
            return h;
        }
        let k = batch.min(pace.total - start);
        pace.wait(start + k).await;
        let res = if k == 1 {
            let one = tick(base, &body);
            let t = Instant::now();
            let r = match target {
                Target::All => engine.broadcast(one),
                Target::Topic(name) => engine.publish(name, one),
            };
            h.saturating_record(ns(t.elapsed()).max(1));
            r
        } else {
            let payloads = ticks(k, base);
            let t = Instant::now();
            let r = match target {
                Target::All => engine.broadcast_many(payloads),
                Target::Topic(name) => engine.publish_many(name, payloads),
            };
            h.saturating_record(ns(t.elapsed()).max(1));
            r
        };
        res.expect("engine is open");
    }
}

/// The `topics` publisher: slice by slice of 100 topics (each subscriber in
/// exactly one topic of a slice), `batch` messages to each topic of the slice.
pub async fn topic_publisher<E: Engine<Tick>>(
    engine: E,
    pace: Arc<Pace>,
    batch: u64,
    names: Vec<String>,
    base: Instant,
) -> Histogram<u64> {
    let mut h = hist(3);
    let body = Bytes::from_static(&BODY);
    let mut done = 0;
    'passes: loop {
        for slice in names.chunks(TOPIC_SLICE) {
            if done >= pace.total {
                break 'passes;
            }
            let k = batch.min(pace.total - done);
            pace.wait(done + k).await;
            for name in slice {
                if k == 1 {
                    let one = tick(base, &body);
                    let t = Instant::now();
                    engine.publish(name, one).expect("engine is open");
                    h.saturating_record(ns(t.elapsed()).max(1));
                } else {
                    let payloads = ticks(k, base);
                    let t = Instant::now();
                    engine.publish_many(name, payloads).expect("engine is open");
                    h.saturating_record(ns(t.elapsed()).max(1));
                }
            }
            done += k;
        }
    }
    h
}

/// Resident set size of the process, from /proc/self/statm, without
/// allocating (the sampler runs inside the allocation-counting window).
pub fn rss_bytes() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(mut f) = std::fs::File::open("/proc/self/statm") else { return 0 };
    let n = f.read(&mut buf).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(1))
        .and_then(|p| p.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Samples RSS and the live heap every 5 ms until stopped; returns both peaks.
pub fn memory_monitor(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, i64)> {
    std::thread::spawn(move || {
        let (mut rss, mut heap) = (rss_bytes(), crate::alloc::live_bytes());
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            rss = rss.max(rss_bytes());
            heap = heap.max(crate::alloc::live_bytes());
        }
        (rss, heap)
    })
}

/// Subscribes and unsubscribes CHURN_PER_SEC times a second until stopped;
/// each churned subscriber is drained by a task while it lives. Returns the
/// subscribe-call latencies.
pub fn churner<E: Engine<Tick>>(
    engine: E,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Histogram<u64>> {
    std::thread::spawn(move || {
        let mut h = hist(3);
        let mut live: VecDeque<tokio::sync::oneshot::Sender<()>> = VecDeque::new();
        let period = Duration::from_nanos(1_000_000_000 / CHURN_PER_SEC);
        let mut next = Instant::now();
        while !stop.load(Relaxed) {
            let t = Instant::now();
            let Ok(mut sub) = engine.subscribe() else { break };
            h.saturating_record(ns(t.elapsed()).max(1));
            let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
            rt.spawn(async move {
                let mut buf = Vec::with_capacity(RECV_MAX);
                loop {
                    buf.clear();
                    tokio::select! {
                        _ = &mut rx => break,
                        r = sub.recv_many(&mut buf, RECV_MAX) => if let Err(RecvError::Closed(_)) = r { break },
                    }
                }
                drop(sub); // unsubscribes
            });
            live.push_back(tx);
            if live.len() > CHURN_LIVE {
                let _ = live.pop_front().expect("non-empty").send(());
            }
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now; // behind: do not burst to catch up
            }
        }
        for tx in live {
            let _ = tx.send(());
        }
        h
    })
}
