//! The gateway: what the transport's parts share, and its life (the drain).
//!
//! A [`Gateway`] holds the engine, the settings, the limiters and the metrics
//! that every connection and route uses. Its three jobs live in three files:
//! the upgrade and its checks (`upgrade.rs`), the publish gate that the drain
//! closes (`publish_gate.rs`), and the life cycle here: connection tasks
//! counted alive, the drain, and the wait for idle.
//!
//! # Drain
//!
//! [`Gateway::shutdown`] refuses new upgrades, tells every connection to flush
//! what its queue holds and close with 1001, and waits until all are gone or the
//! drain timeout passes; past it, the remaining connections are dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_core::Engine;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::{WsConfig, WsConfigError};
use crate::frame::Frame;
use crate::keyed_limit::KeyedLimiter;
use crate::limits::Limiter;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::subjects::Subjects;
use crate::token::Verifier;
use crate::topic_cap::TopicCap;

/// Header of the `101` response that carries the connection's subscriber id.
pub const CLIENT_ID_HEADER: &str = "x-fanout-client-id";

/// What the connections are told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Flush, close with 1001.
    Draining,
    /// Drop now.
    Forced,
}

/// The outcome of [`Gateway::shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when the drain began.
    pub connections: usize,
    /// Whether every connection closed within the drain timeout.
    pub graceful: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// The WebSocket front of an engine: upgrades, connections, publishing.
/// Cheap to clone.
pub struct Gateway<E: Engine<Frame>> {
    pub(crate) inner: Arc<Inner<E>>,
}

impl<E: Engine<Frame>> Clone for Gateway<E> {
    fn clone(&self) -> Self {
        Gateway { inner: self.inner.clone() }
    }
}

pub(crate) struct Inner<E: Engine<Frame>> {
    pub(crate) engine: E,
    pub(crate) config: WsConfig,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) metrics: Metrics,
    pub(crate) limiter: Arc<Limiter>,
    /// Costly calls per client address and per token subject.
    pub(crate) keyed: KeyedLimiter,
    /// Token checks; `None`: no key configured, anonymous connections.
    pub(crate) verifier: Option<Verifier>,
    /// Client-created topics, for `max_topics`.
    pub(crate) topic_cap: TopicCap,
    /// Open connections by token subject.
    pub(crate) subjects: Arc<Subjects>,
    /// Un-upgraded sockets per client address (`max_pending_per_ip`).
    pub(crate) pending: Arc<Limiter>,
    pub(crate) phase: watch::Sender<Phase>,
    /// Connection tasks alive (upgrading or connected); `idle` is notified at 0.
    pub(crate) tasks: AtomicUsize,
    pub(crate) idle: Notify,
    /// Publishes in progress through the gateway. With `closing`, a Dekker-style
    /// gate (both sides `SeqCst`: each stores, then loads the other's word): a
    /// publish counts itself in, then checks `closing`; the drain sets
    /// `closing`, then waits for this to reach 0 before the writers empty their
    /// queues. So every publish that returned `Ok` had queued its message before
    /// any writer began its final drain, and reaches the client before the 1001.
    pub(crate) publishing: AtomicUsize,
    /// Set once the drain began: publishes are refused from then on.
    pub(crate) closing: AtomicBool,
}

/// Held by each connection task: counts it alive.
pub(crate) struct TaskGuard<E: Engine<Frame>> {
    gateway: Gateway<E>,
}

impl<E: Engine<Frame>> Drop for TaskGuard<E> {
    fn drop(&mut self) {
        let inner = &self.gateway.inner;
        if inner.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.idle.notify_waiters();
        }
    }
}

impl<E: Engine<Frame>> Gateway<E> {
    /// A gateway in front of `engine`.
    pub fn new(engine: E, config: WsConfig) -> Result<Self, WsConfigError> {
        config.validate()?;
        let (phase, _) = watch::channel(Phase::Running);
        Ok(Gateway {
            inner: Arc::new(Inner {
                engine,
                ws_config: config.websocket_config(),
                limiter: Arc::new(Limiter::new(config.max_connections, config.max_connections_per_ip)),
                keyed: KeyedLimiter::new(config.costly_rate_limit),
                verifier: Verifier::from_config(&config),
                topic_cap: TopicCap::new(config.max_topics),
                subjects: Arc::new(Subjects::new(config.max_connections_per_subject)),
                pending: Arc::new(Limiter::new(0, config.max_pending_per_ip)),
                config,
                metrics: Metrics::new(),
                phase,
                tasks: AtomicUsize::new(0),
                idle: Notify::new(),
                publishing: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
            }),
        })
    }

    /// The engine behind it.
    pub fn engine(&self) -> &E {
        &self.inner.engine
    }

    /// Its settings.
    pub fn config(&self) -> &WsConfig {
        &self.inner.config
    }

    /// The transport's counters (the engine's are in `engine().stats()`).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// WebSocket connections open now.
    pub fn connections(&self) -> usize {
        self.inner.metrics.open() as usize
    }

    /// Client subscriptions open now: one per connection and topic.
    pub fn subscriptions(&self) -> u64 {
        self.inner.topic_cap.subscriptions()
    }

    /// Whether [`Gateway::shutdown`] has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.closing.load(Ordering::Relaxed) || *self.inner.phase.borrow() != Phase::Running
    }

    pub(crate) fn task_guard(&self) -> TaskGuard<E> {
        self.inner.tasks.fetch_add(1, Ordering::AcqRel);
        TaskGuard { gateway: self.clone() }
    }

    /// Waits until no connection task is alive.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Drains: refuses new upgrades, has every connection flush its queue and
    /// close with 1001, and waits for them, at most `drain_timeout`; then drops
    /// whatever is left. The engine is not shut down (it may be shared): do it
    /// after, if the gateway owns it.
    pub async fn shutdown(&self, drain_timeout: Duration) -> DrainReport {
        let t0 = Instant::now();
        let connections = self.inner.tasks.load(Ordering::Acquire);
        // Close the publish gate, and let the publishes already past it finish
        // (they are synchronous and short) before the writers take their last
        // messages.
        self.inner.closing.store(true, Ordering::SeqCst);
        while self.inner.publishing.load(Ordering::SeqCst) != 0 {
            tokio::task::yield_now().await;
        }
        self.inner.phase.send_replace(Phase::Draining);
        let graceful = tokio::time::timeout(drain_timeout, self.wait_idle()).await.is_ok();
        if !graceful {
            self.inner.phase.send_replace(Phase::Forced);
            // A connection waiting in its main loop returns at once; one in
            // the middle of its drain or close still finishes that write (each
            // bounded by the write and close timeouts), which may outlast this
            // grace period.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wait_idle()).await;
        }
        DrainReport { connections, graceful, elapsed: t0.elapsed() }
    }
}
