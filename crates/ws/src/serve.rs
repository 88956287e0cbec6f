//! A complete HTTP/1.1 accept loop on hyper: the WebSocket path (and the echo
//! path) go to the gateway, everything else to the caller's routes.
//!
//! A TCP connection that has not sent a complete request head within the
//! handshake timeout is dropped (slow or silent clients hold no slot and no
//! file for long). When `shutdown` resolves, the listener is closed and idle
//! HTTP connections are told to finish; the caller then drains the gateway.
//!
//! # Sockets before the upgrade
//!
//! The WebSocket caps count connections from their upgrade on; before it, a
//! socket is an HTTP connection, which a client could hold with a request
//! every few seconds (`GET /healthz` on keep-alive), each with a buffered
//! head. So, from accept until the upgrade (or the close):
//!
//! - each socket takes a place under `max_pending_per_ip` for its client
//!   address (IPv6 by /64; trusted proxies are exempt, their clients are
//!   counted after the upgrade): past it, the socket is closed at accept,
//!   before any read (counted as `pending_cap`);
//! - a request head is at most `max_request_head` bytes (hyper's read
//!   buffer; past it, `431`), and must arrive within `handshake_timeout`,
//!   for the first request and for every later one on a keep-alive
//!   connection (hyper restarts its header timer for each head), so an idle
//!   keep-alive socket is closed after `handshake_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanout_core::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::metrics::Rejection;

/// Response body of every route.
pub type Body = Full<Bytes>;

/// A route handler that answers 404 to everything.
pub async fn not_found(_req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// Serves `listener` until `shutdown` resolves: the gateway's paths upgrade,
/// the rest goes to `routes`. Then it closes the listener, tells every HTTP
/// connection to finish (idle keep-alive ones close at once), and returns
/// once the requests in flight are answered (each bounded by the handshake
/// timeout from then on), so that a publish answered `200` was applied
/// before the caller drains the WebSocket connections with
/// [`Gateway::shutdown`]. Upgraded connections are not waited for here: their
/// HTTP part ended at the upgrade.
pub async fn serve<E, H, Fut>(
    listener: TcpListener,
    gateway: Gateway<E>,
    routes: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    E: Engine<Frame>,
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each HTTP connection task holds a clone; `recv` returns `None` once
    // every one has ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let trusted = gateway.config().trusted_proxies.iter().any(|c| c.contains(peer.ip()));
                    let pending = if trusted {
                        None
                    } else {
                        match gateway.inner.pending.try_acquire(peer.ip()) {
                            Ok(p) => Some(p),
                            Err(_) => {
                                gateway.inner.metrics.rejected(Rejection::PendingCap);
                                continue;
                            }
                        }
                    };
                    if gateway.config().tcp_nodelay {
                        let _ = tcp.set_nodelay(true);
                    }
                    if let Some(n) = gateway.config().send_buffer_size {
                        // Bounds what a stalled client can park in the kernel, so
                        // that the engine's queue fills and eviction works.
                        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(n);
                    }
                    let conn = serve_conn(tcp, peer, gateway.clone(), routes.clone(), stop_rx.clone());
                    // The place is held until the HTTP connection ends, which
                    // is at the upgrade for a WebSocket.
                    let alive = alive_tx.clone();
                    tokio::spawn(async move {
                        conn.await;
                        drop(pending);
                        drop(alive);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

async fn serve_conn<E, H, Fut>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    gateway: Gateway<E>,
    routes: H,
    mut stop: watch::Receiver<bool>,
) where
    E: Engine<Frame>,
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handshake_timeout = gateway.config().handshake_timeout;
    let got_request = Arc::new(AtomicBool::new(false));
    let seen = got_request.clone();
    let gw = gateway.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let gw = gw.clone();
        let routes = routes.clone();
        async move {
            let cfg = gw.config();
            let path = req.uri().path();
            let resp = if path == cfg.path {
                gw.handle_upgrade(req, peer)
            } else if cfg.echo_path.as_deref() == Some(path) {
                gw.handle_echo(req, peer)
            } else {
                routes(req, peer).await
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(gateway.config().max_request_head);
    let conn = builder.serve_connection(TokioIo::new(tcp), svc).with_upgrades();
    tokio::pin!(conn);
    let first = tokio::time::sleep(handshake_timeout);
    tokio::pin!(first);
    let mut first_armed = true;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        // hyper's header read timeout: a slow request head.
                        gateway.inner.metrics.rejected(Rejection::HandshakeTimeout);
                    }
                    tracing::trace!(%peer, error = %e, "http connection error");
                }
                return;
            }
            () = &mut first, if first_armed => {
                if got_request.load(Ordering::Relaxed) {
                    first_armed = false;
                } else {
                    // Silent client: no request head in time.
                    gateway.inner.metrics.rejected(Rejection::HandshakeTimeout);
                    return;
                }
            }
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(handshake_timeout, conn.as_mut()).await;
                return;
            }
        }
    }
}
