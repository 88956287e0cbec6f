//! Mounting the gateway inside an axum application (feature `axum`).
//!
//! ```no_run
//! use fanout_core::Hub;
//! use fanout_ws::{Frame, Gateway, WsConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let gateway = Gateway::new(Hub::<Frame>::new(), WsConfig::default()).unwrap();
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // The gateway's paths beside `app`, until Ctrl-C; then drain.
//! fanout_ws::axum::serve(listener, gateway.clone(), app, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! gateway.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! The adapter takes hyper's upgrade from the request itself, as axum's own
//! `WebSocketUpgrade` does, so it needs no axum `ws` feature; the tree keeps one
//! tokio-tungstenite (0.29, the version axum 0.8 uses).
//!
//! # What the gateway needs from the server
//!
//! Two things that [`crate::serve`] does itself and axum's server does not:
//!
//! - **The client's address**, for the per-IP cap and the logs. axum hands it
//!   to a handler only as `ConnectInfo`, when the app is served with
//!   `into_make_service_with_connect_info::<SocketAddr>()`. Without it every
//!   client is counted under one address, `0.0.0.0`, so the per-IP cap
//!   (default 1,000) becomes a cap on the whole server; the adapter logs an
//!   error the first time it sees such a request.
//! - **The socket setup**: `TCP_NODELAY` and the send-buffer cap
//!   (`tcp_nodelay`, `send_buffer_size`), without which a client that stops
//!   reading parks megabytes in the kernel before the engine's queue, and so
//!   eviction, sees it. [`listener`] sets them on each accepted socket.
//!
//! [`serve`] does both. To call `axum::serve` yourself, give it
//! [`listener`]`(tcp, &gateway)` and
//! `app.into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! What [`crate::serve`] also does and this adapter does not: the cap on
//! sockets not yet upgraded per address (`max_pending_per_ip`) and the
//! request-head size and time limits, which belong to the HTTP server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use fanout_core::Engine;
use tokio::net::{TcpListener, TcpStream};

use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::serve::SocketSetup;

/// A TCP listener whose accepted sockets are set up as [`crate::serve`] sets
/// them up (see [`listener`]). It gives axum the client's address for
/// `ConnectInfo<SocketAddr>`.
pub type Listener = axum::serve::TapIo<TcpListener, Box<dyn FnMut(&mut TcpStream) + Send>>;

/// A router serving the gateway's WebSocket path (and echo path, if set).
/// Serve it with the client's address (see the module docs): [`serve`] does.
pub fn router<E: Engine<Frame>>(gateway: Gateway<E>) -> Router {
    let cfg = gateway.config().clone();
    let mut r = Router::new().route(&cfg.path, get(upgrade::<E>));
    if let Some(echo) = &cfg.echo_path {
        r = r.route(echo, get(echo_upgrade::<E>));
    }
    r.with_state(gateway)
}

/// `listener`, with each accepted socket given the gateway's socket settings
/// (`tcp_nodelay`, `send_buffer_size`), as [`crate::serve`] gives them.
pub fn listener<E: Engine<Frame>>(listener: TcpListener, gateway: &Gateway<E>) -> Listener {
    let setup = SocketSetup::from_config(gateway.config());
    listener.tap_io(Box::new(move |tcp: &mut TcpStream| setup.apply(tcp)))
}

/// Serves `app` and the gateway's paths ([`router`]) on `listener` until
/// `shutdown` resolves, with what the gateway needs from the server (the
/// client's address, the socket settings: see the module docs), then waits
/// for the requests in flight, as [`crate::serve`] does. Drain the WebSocket
/// connections afterwards with [`Gateway::shutdown`].
pub async fn serve<E: Engine<Frame>>(
    listener: TcpListener,
    gateway: Gateway<E>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = self::listener(listener, &gateway);
    let app = app.merge(router(gateway));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Set once the missing `ConnectInfo` has been logged (once per process).
static WARNED_NO_PEER: AtomicBool = AtomicBool::new(false);

/// The client's address from `ConnectInfo`, or `0.0.0.0` (and an error in
/// the log, once) when the app is served without it.
fn peer(req: &Request) -> SocketAddr {
    if let Some(c) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        return c.0;
    }
    if !WARNED_NO_PEER.swap(true, Ordering::Relaxed) {
        tracing::error!(
            "fanout_ws::axum: no ConnectInfo<SocketAddr> on the request, so every client counts as \
             0.0.0.0 for the per-IP cap; serve with fanout_ws::axum::serve, or with \
             into_make_service_with_connect_info::<SocketAddr>()"
        );
    }
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// The handler for the WebSocket path.
pub async fn upgrade<E: Engine<Frame>>(State(gateway): State<Gateway<E>>, req: Request) -> Response {
    let peer = peer(&req);
    gateway.handle_upgrade(req, peer).map(axum::body::Body::new)
}

/// The handler for the echo path.
pub async fn echo_upgrade<E: Engine<Frame>>(State(gateway): State<Gateway<E>>, req: Request) -> Response {
    let peer = peer(&req);
    gateway.handle_echo(req, peer).map(axum::body::Body::new)
}
