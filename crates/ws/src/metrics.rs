//! Transport counters: connections, rejections and closes by reason, frames,
//! write batch sizes, publish latency.
//!
//! Counters touched per frame or per batch are striped like the engine's: each
//! thread adds to one of several cache-padded stripes and a snapshot sums them,
//! so two cores writing batches never share a counter's cache line. Rejections
//! and closes happen once per connection and use plain atomics.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Why an upgrade was refused before it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Not a valid WebSocket upgrade request (HTTP 400).
    BadRequest,
    /// `Origin` not allowed (HTTP 403).
    Origin,
    /// Missing or bad token (HTTP 401).
    Unauthorized,
    /// Per-IP connection cap (HTTP 429).
    PerIpCap,
    /// Global connection cap (HTTP 503).
    GlobalCap,
    /// The server is draining (HTTP 503).
    Draining,
    /// The upgrade request did not arrive in time (connection dropped).
    HandshakeTimeout,
    /// Per-subject connection cap (HTTP 429).
    SubjectCap,
    /// Too many un-upgraded sockets from one address (closed at accept).
    PendingCap,
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Rejection; 9] = [
        Rejection::BadRequest,
        Rejection::Origin,
        Rejection::Unauthorized,
        Rejection::PerIpCap,
        Rejection::GlobalCap,
        Rejection::Draining,
        Rejection::HandshakeTimeout,
        Rejection::SubjectCap,
        Rejection::PendingCap,
    ];

    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad_request",
            Rejection::Origin => "origin",
            Rejection::Unauthorized => "unauthorized",
            Rejection::PerIpCap => "per_ip_cap",
            Rejection::GlobalCap => "global_cap",
            Rejection::Draining => "draining",
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::SubjectCap => "subject_cap",
            Rejection::PendingCap => "pending_cap",
        }
    }
}

/// Why a WebSocket connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseKind {
    /// The client closed it (or went away).
    Client,
    /// Evicted by the engine: its queue overflowed (close 4001).
    SlowConsumer,
    /// A write or flush took longer than the write timeout (dropped).
    WriteTimeout,
    /// No pong within the pong timeout of a ping (close 4000).
    Heartbeat,
    /// Kept exceeding the rate limit (close 4100).
    RateLimit,
    /// Sent a message over the size limit (close 1009).
    TooBig,
    /// Sent invalid UTF-8 in a text frame (close 1007).
    InvalidUtf8,
    /// Broke the WebSocket protocol (close 1002).
    Protocol,
    /// Server shutdown (close 1001).
    Shutdown,
    /// Kicked through the engine (close 4200).
    Kicked,
    /// An I/O error.
    Error,
    /// The TCP connection ended without a WebSocket close (a reset, or an EOF
    /// with no close frame: 1006 in the client's terms), apart from `Client`,
    /// a clean close by the client.
    Reset,
    /// The token reached its `exp` without a `refresh` (close 4002).
    TokenExpired,
}

impl CloseKind {
    /// Every reason, in label order.
    pub const ALL: [CloseKind; 13] = [
        CloseKind::Client,
        CloseKind::SlowConsumer,
        CloseKind::WriteTimeout,
        CloseKind::Heartbeat,
        CloseKind::RateLimit,
        CloseKind::TooBig,
        CloseKind::InvalidUtf8,
        CloseKind::Protocol,
        CloseKind::Shutdown,
        CloseKind::Kicked,
        CloseKind::Error,
        CloseKind::Reset,
        CloseKind::TokenExpired,
    ];

    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseKind::Client => "client",
            CloseKind::SlowConsumer => "slow_consumer",
            CloseKind::WriteTimeout => "write_timeout",
            CloseKind::Heartbeat => "heartbeat",
            CloseKind::RateLimit => "rate_limit",
            CloseKind::TooBig => "message_too_big",
            CloseKind::InvalidUtf8 => "invalid_utf8",
            CloseKind::Protocol => "protocol",
            CloseKind::Shutdown => "shutdown",
            CloseKind::Kicked => "kicked",
            CloseKind::Error => "error",
            CloseKind::Reset => "reset",
            CloseKind::TokenExpired => "token_expired",
        }
    }
}

/// Upper bounds of the write-batch histogram (messages per batch).
pub const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Upper bounds of the publish-latency histogram (seconds): the time a publish
/// call takes, encoding and fan-out into every recipient's queue.
pub const LATENCY_BUCKETS: [f64; 14] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 1e-1];

const NB: usize = BATCH_BUCKETS.len() + 1;
const NL: usize = LATENCY_BUCKETS.len() + 1;

#[derive(Default)]
struct Stripe {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    batches: [AtomicU64; NB],
    batch_sum: AtomicU64,
    publishes: [AtomicU64; NL],
    publish_ns: AtomicU64,
    lag_notices: AtomicU64,
    lagged: AtomicU64,
    repaired: AtomicU64,
    conflated: AtomicU64,
    rpc_errors: AtomicU64,
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

pub(crate) struct Metrics {
    stripes: Box<[CachePadded<Stripe>]>,
    accepted: AtomicU64,
    open: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    closed: [AtomicU64; CloseKind::ALL.len()],
}

/// A histogram: cumulative counts per upper bound, as Prometheus wants them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, observations <= bound)`; the last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The transport's totals, from [`Gateway::metrics`](crate::Gateway::metrics).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// WebSocket connections open now.
    pub connections: u64,
    /// WebSocket connections accepted since start.
    pub accepted: u64,
    /// Upgrades refused, by reason.
    pub rejected: Vec<(Rejection, u64)>,
    /// Connections ended, by reason.
    pub closed: Vec<(CloseKind, u64)>,
    /// Text and binary frames received from clients.
    pub frames_in: u64,
    /// Frames sent to clients (pushes, replies, notices).
    pub frames_out: u64,
    /// Payload bytes sent to clients.
    pub bytes_out: u64,
    /// Messages per write batch (one flush each).
    pub write_batch: Histogram,
    /// Time per publish call.
    pub publish_latency: Histogram,
    /// Lag notices sent.
    pub lag_notices: u64,
    /// Messages reported lost in lag notices.
    pub lagged_messages: u64,
    /// Lost messages pushed again from a topic's history (gap repair).
    pub repaired_messages: u64,
    /// Missed messages left out for a newer one with the same key.
    pub conflated_messages: u64,
    /// JSON-RPC error responses sent.
    pub rpc_errors: u64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let n = (std::thread::available_parallelism().map_or(4, |n| n.get()) * 2).next_power_of_two().max(4);
        Metrics {
            stripes: (0..n).map(|_| CachePadded::new(Stripe::default())).collect(),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            rejected: Default::default(),
            closed: Default::default(),
        }
    }

    #[inline]
    fn mine(&self) -> &Stripe {
        let i = STRIPE.with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_STRIPE.fetch_add(1, Relaxed);
                s.set(i);
            }
            i
        });
        &self.stripes[i & (self.stripes.len() - 1)]
    }

    pub(crate) fn opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
    }

    /// Counts why a connection ends; called when the server decides it (before
    /// the close frame goes out), so a client that sees the close sees the count.
    pub(crate) fn closed(&self, kind: CloseKind) {
        self.closed[kind as usize].fetch_add(1, Relaxed);
    }

    /// A connection task finished.
    pub(crate) fn ended(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn rejected(&self, r: Rejection) {
        self.rejected[r as usize].fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn frame_in(&self) {
        self.mine().frames_in.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn batch(&self, frames: usize, bytes: usize) {
        let s = self.mine();
        s.frames_out.fetch_add(frames as u64, Relaxed);
        s.bytes_out.fetch_add(bytes as u64, Relaxed);
        let i = BATCH_BUCKETS.iter().position(|&b| frames as f64 <= b).unwrap_or(NB - 1);
        s.batches[i].fetch_add(1, Relaxed);
        s.batch_sum.fetch_add(frames as u64, Relaxed);
    }

    #[inline]
    pub(crate) fn publish(&self, ns: u64) {
        let s = self.mine();
        let secs = ns as f64 * 1e-9;
        let i = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(NL - 1);
        s.publishes[i].fetch_add(1, Relaxed);
        s.publish_ns.fetch_add(ns, Relaxed);
    }

    pub(crate) fn lag(&self, n: u64) {
        let s = self.mine();
        s.lag_notices.fetch_add(1, Relaxed);
        s.lagged.fetch_add(n, Relaxed);
    }

    pub(crate) fn repair(&self, repaired: u64, conflated: u64) {
        let s = self.mine();
        s.repaired.fetch_add(repaired, Relaxed);
        s.conflated.fetch_add(conflated, Relaxed);
    }

    pub(crate) fn rpc_error(&self) {
        self.mine().rpc_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            connections: self.open.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: Rejection::ALL.iter().map(|&r| (r, self.rejected[r as usize].load(Relaxed))).collect(),
            closed: CloseKind::ALL.iter().map(|&c| (c, self.closed[c as usize].load(Relaxed))).collect(),
            ..MetricsSnapshot::default()
        };
        let mut batches = [0u64; NB];
        let mut pubs = [0u64; NL];
        let (mut batch_sum, mut publish_ns) = (0u64, 0u64);
        for s in self.stripes.iter() {
            m.frames_in += s.frames_in.load(Relaxed);
            m.frames_out += s.frames_out.load(Relaxed);
            m.bytes_out += s.bytes_out.load(Relaxed);
            m.lag_notices += s.lag_notices.load(Relaxed);
            m.lagged_messages += s.lagged.load(Relaxed);
            m.repaired_messages += s.repaired.load(Relaxed);
            m.conflated_messages += s.conflated.load(Relaxed);
            m.rpc_errors += s.rpc_errors.load(Relaxed);
            batch_sum += s.batch_sum.load(Relaxed);
            publish_ns += s.publish_ns.load(Relaxed);
            for (acc, c) in batches.iter_mut().zip(&s.batches) {
                *acc += c.load(Relaxed);
            }
            for (acc, c) in pubs.iter_mut().zip(&s.publishes) {
                *acc += c.load(Relaxed);
            }
        }
        m.write_batch = cumulative(&BATCH_BUCKETS, &batches, batch_sum as f64);
        m.publish_latency = cumulative(&LATENCY_BUCKETS, &pubs, publish_ns as f64 * 1e-9);
        m
    }
}

fn cumulative(bounds: &[f64], counts: &[u64], sum: f64) -> Histogram {
    let mut acc = 0;
    let mut buckets = Vec::with_capacity(counts.len());
    for (i, c) in counts.iter().enumerate() {
        acc += c;
        buckets.push((bounds.get(i).copied().unwrap_or(f64::INFINITY), acc));
    }
    Histogram { buckets, sum, count: acc }
}
