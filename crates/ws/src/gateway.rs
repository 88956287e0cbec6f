//! The gateway: upgrade checks, publishing, and the drain.
//!
//! # Upgrade
//!
//! [`Gateway::handle_upgrade`] answers an HTTP request on the WebSocket path.
//! The checks run in this order, each answered before any upgrade happens:
//!
//! | check | answer |
//! | --- | --- |
//! | the server is draining | `503` |
//! | not a WebSocket upgrade (method, `Upgrade`, `Connection`, key, version 13) | `400` (`426` for another version) |
//! | global connection cap | `503` |
//! | per-IP connection cap | `429` |
//! | `Origin` not in the allowed list | `403` |
//! | token missing or bad while a secret is set | `401` |
//!
//! Then the engine subscriber is created (its id goes out in the
//! `X-Fanout-Client-Id` header of the `101`, for unicast), and a task waits for
//! hyper to hand over the upgraded socket (bounded by the handshake timeout)
//! and runs the connection (see `conn.rs`).
//!
//! # Drain
//!
//! [`Gateway::shutdown`] refuses new upgrades, tells every connection to flush
//! what its queue holds and close with 1001, and waits until all are gone or the
//! drain timeout passes; past it, the remaining connections are dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanout_core::{Engine, Meta, Priority, PublishError, PublishReport, SendError, SubscriberId};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::auth::{AuthError, Permissions};
use crate::config::{WsConfig, WsConfigError};
use crate::frame::{encode_binary, encode_json, now_ms, Frame};
use crate::keyed_limit::KeyedLimiter;
use crate::limits::{Limiter, Slot};
use crate::metrics::{Metrics, MetricsSnapshot, Rejection};
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
    tasks: AtomicUsize,
    idle: Notify,
    /// Publishes in progress through the gateway. With `closing`, a Dekker-style
    /// gate (both sides `SeqCst`: each stores, then loads the other's word): a
    /// publish counts itself in, then checks `closing`; the drain sets
    /// `closing`, then waits for this to reach 0 before the writers empty their
    /// queues. So every publish that returned `Ok` had queued its message before
    /// any writer began its final drain, and reaches the client before the 1001.
    publishing: AtomicUsize,
    /// Set once the drain began: publishes are refused from then on.
    closing: AtomicBool,
}

/// Counts one publish in progress (see `Inner::publishing`).
struct PublishGuard<'a>(&'a AtomicUsize);

impl Drop for PublishGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The bearer token from `Authorization` or the `token` query parameter.
fn token<B>(req: &Request<B>) -> Option<&str> {
    if let Some(t) = crate::bearer::from_headers(req.headers()) {
        return Some(t);
    }
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("token=")).filter(|t| !t.is_empty())
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

    /// Whether [`Gateway::shutdown`] has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.closing.load(Ordering::Relaxed) || *self.inner.phase.borrow() != Phase::Running
    }

    /// Runs one publish through the drain gate (`None`: refused, the drain
    /// began), timing it.
    fn timed<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        self.inner.publishing.fetch_add(1, Ordering::SeqCst);
        let _guard = PublishGuard(&self.inner.publishing);
        if self.inner.closing.load(Ordering::SeqCst) {
            return None;
        }
        let t0 = Instant::now();
        let r = f();
        self.inner.metrics.publish(t0.elapsed().as_nanos() as u64);
        Some(r)
    }

    /// Publishes a JSON payload to `topic`: the envelope (with the topic's next
    /// seq) is encoded once and shared by every recipient. No topic-name or
    /// permission check: callers facing clients do those. Refused with
    /// `PublishError::Shutdown` once the drain began: a publish that returns
    /// `Ok` reaches every recipient that is not evicted, even during a drain.
    pub fn publish_json(&self, topic: &str, payload: &RawValue) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        self.timed(|| {
            self.inner
                .engine
                .publish_with(topic, Priority::Normal, |meta| encode_json(Some(topic), meta, ts, payload))
        })
        .unwrap_or(Err(PublishError::Shutdown))
    }

    /// Publishes a JSON value (serialised once).
    pub fn publish_value(
        &self,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<PublishReport, PublishError> {
        let raw = serde_json::value::to_raw_value(payload).expect("a Value serialises");
        self.publish_json(topic, &raw)
    }

    /// Publishes a binary payload to `topic` (a binary frame; see [`crate::frame`]).
    pub fn publish_binary(&self, topic: &str, payload: &[u8]) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        self.timed(|| {
            self.inner
                .engine
                .publish_with(topic, Priority::Normal, |meta| encode_binary(Some(topic), meta, ts, payload))
        })
        .unwrap_or(Err(PublishError::Shutdown))
    }

    /// Sends a JSON payload to one connection, by the id it got in the
    /// `X-Fanout-Client-Id` header (`"topic":null`, `"seq":0`).
    pub fn send_json_to(&self, id: SubscriberId, payload: &RawValue) -> Result<(), SendError<Frame>> {
        let frame = encode_json(None, Meta { seq: 0, epoch: 0 }, now_ms(), payload);
        let slot = std::cell::Cell::new(Some(frame));
        let take = || slot.take().expect("the frame is taken once");
        self.timed(|| self.inner.engine.send_to(id, take()))
            .unwrap_or_else(|| Err(SendError::Shutdown(take())))
    }

    /// Sends a JSON payload to every open connection of token subject
    /// `subject` (`"topic":null`, `"seq":0`; see `subjects.rs`): recipients
    /// is how many it has (0 when none is open), dropped those whose queue was
    /// full or that closed meanwhile.
    pub fn send_json_to_subject(
        &self,
        subject: &str,
        payload: &RawValue,
    ) -> Result<PublishReport, PublishError> {
        let ids = self.inner.subjects.connections(subject);
        let frame = encode_json(None, Meta { seq: 0, epoch: 0 }, now_ms(), payload);
        let mut report = PublishReport::default();
        for id in ids {
            report.recipients += 1;
            match self.timed(|| self.inner.engine.send_to(id, frame.clone())) {
                None | Some(Err(SendError::Shutdown(_))) => return Err(PublishError::Shutdown),
                Some(Ok(())) => report.delivered += 1,
                Some(Err(_)) => report.dropped.full += 1,
            }
        }
        Ok(report)
    }

    /// Answers a request on the WebSocket path: `101` and a spawned connection,
    /// or the refusal. Needs a tokio runtime, and a request served by hyper with
    /// upgrades enabled (so that it carries hyper's `OnUpgrade`).
    pub fn handle_upgrade<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        self.upgrade(req, peer, false)
    }

    /// Answers a request on the echo path (same checks; every data frame is sent
    /// back as it came).
    pub fn handle_echo<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        self.upgrade(req, peer, true)
    }

    fn reject(&self, r: Rejection, status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
        self.inner.metrics.rejected(r);
        tracing::debug!(reason = r.as_str(), status = status.as_u16(), "upgrade refused");
        plain(status, body)
    }

    fn upgrade<B>(&self, mut req: Request<B>, peer: SocketAddr, echo: bool) -> Response<Full<Bytes>> {
        let cfg = &self.inner.config;
        if self.is_draining() {
            return self.reject(
                Rejection::Draining,
                StatusCode::SERVICE_UNAVAILABLE,
                "server is shutting down\n",
            );
        }
        let h = req.headers();
        let is_upgrade = req.method() == Method::GET
            && header_has_token(h, header::UPGRADE, "websocket")
            && header_has_token(h, header::CONNECTION, "upgrade");
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_upgrade) else {
            return self.reject(
                Rejection::BadRequest,
                StatusCode::BAD_REQUEST,
                "expected a WebSocket upgrade\n",
            );
        };
        if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
            let mut r = self.reject(
                Rejection::BadRequest,
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket version 13 only\n",
            );
            r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return r;
        }
        let accept = derive_accept_key(key.as_bytes());
        // The client behind a trusted proxy, for the caps and the logs.
        let peer =
            SocketAddr::new(crate::client_ip::client_ip(peer.ip(), h, &cfg.trusted_proxies), peer.port());
        let slot = match self.inner.limiter.try_acquire(peer.ip()) {
            Ok(s) => s,
            Err(Rejection::PerIpCap) => {
                return self.reject(
                    Rejection::PerIpCap,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address\n",
                )
            }
            Err(r) => return self.reject(r, StatusCode::SERVICE_UNAVAILABLE, "connection limit reached\n"),
        };
        if !cfg.allowed_origins.is_empty() {
            if let Some(origin) = h.get(header::ORIGIN) {
                let ok = cfg.allowed_origins.iter().any(|a| a == "*" || a.as_bytes() == origin.as_bytes());
                if !ok {
                    return self.reject(Rejection::Origin, StatusCode::FORBIDDEN, "origin not allowed\n");
                }
            }
        }
        let perms = match &self.inner.verifier {
            None => Permissions::anonymous(),
            Some(verifier) => {
                let now = now_ms() / 1000;
                match token(&req).ok_or(AuthError::Missing).and_then(|t| verifier.verify(t, now)) {
                    Ok(claims) => claims.permissions(),
                    Err(e) => {
                        let mut r =
                            self.reject(Rejection::Unauthorized, StatusCode::UNAUTHORIZED, "unauthorized\n");
                        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                        tracing::debug!(%peer, error = %e, "token refused");
                        return r;
                    }
                }
            }
        };
        let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            tracing::error!("upgrade request without hyper's OnUpgrade: serve with `.with_upgrades()`");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "server cannot upgrade this connection\n");
        };
        let sub = if echo {
            None
        } else {
            match self.inner.engine.subscribe() {
                Ok(s) => Some(s),
                Err(_) => {
                    return self.reject(
                        Rejection::Draining,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server is shutting down\n",
                    )
                }
            }
        };
        let mut slot = slot;
        if let (Some(s), Some(subject)) = (&sub, &perms.subject) {
            use fanout_core::Receiver;
            match self.inner.subjects.acquire(subject, s.id()) {
                Ok(held) => slot.subject = Some(Box::new(held)),
                Err(_) => {
                    return self.reject(
                        Rejection::SubjectCap,
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many connections for this user\n",
                    )
                }
            }
        }
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let hm = resp.headers_mut();
        hm.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        hm.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        hm.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header"),
        );
        if let Some(s) = &sub {
            use fanout_core::Receiver;
            hm.insert(CLIENT_ID_HEADER, HeaderValue::from(s.id().get()));
        }
        let guard = self.task_guard();
        let gw = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let upgraded = match tokio::time::timeout(gw.inner.config.handshake_timeout, on_upgrade).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "upgrade failed");
                    return;
                }
                Err(_) => {
                    gw.inner.metrics.rejected(Rejection::HandshakeTimeout);
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(gw.inner.ws_config),
            )
            .await;
            match sub {
                // A task of its own, so that this one's state (the upgrade)
                // is freed now rather than held for the connection's life.
                Some(sub) => drop(tokio::spawn(crate::conn::run(gw, ws, sub, perms, peer, slot, _guard))),
                None => crate::echo::run_echo(gw, ws, peer, slot).await,
            }
        });
        resp
    }

    pub(crate) fn task_guard(&self) -> TaskGuard<E> {
        self.inner.tasks.fetch_add(1, Ordering::AcqRel);
        TaskGuard { gateway: self.clone() }
    }

    /// Runs a connection on a stream that already completed the WebSocket
    /// handshake (for transports other than hyper). Counts against the caps like
    /// an upgrade; refused connections are closed with 1013.
    pub async fn run_stream<S>(&self, ws: WebSocketStream<S>, peer: SocketAddr, perms: Permissions)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use futures_util::SinkExt;
        let mut ws = ws;
        let mut slot: Option<Slot> = self.inner.limiter.try_acquire(peer.ip()).ok();
        let sub = self.inner.engine.subscribe().ok();
        if let (Some(slot), Some(s), Some(subject)) = (&mut slot, &sub, &perms.subject) {
            use fanout_core::Receiver;
            slot.subject = self.inner.subjects.acquire(subject, s.id()).ok().map(Box::new);
        }
        let subject_full = perms.subject.is_some() && slot.as_ref().is_some_and(|s| s.subject.is_none());
        let (Some(slot), Some(sub), false, false) = (slot, sub, self.is_draining(), subject_full) else {
            let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: 1013u16.into(),
                reason: "try again later".into(),
            };
            let _ = ws.close(Some(frame)).await;
            let _ = ws.flush().await;
            return;
        };
        crate::conn::run(self.clone(), ws, sub, perms, peer, slot, self.task_guard()).await
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
