//! The WebSocket upgrade and its checks (the gateway's first job; see
//! `gateway.rs`).
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

use std::net::SocketAddr;

use bytes::Bytes;
use fanout_core::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::auth::{AuthError, Permissions};
use crate::frame::{now_ms, Frame};
use crate::gateway::{Gateway, CLIENT_ID_HEADER};
use crate::limits::Slot;
use crate::metrics::Rejection;

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
}
