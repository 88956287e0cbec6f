//! Mounting the gateway inside an axum application (feature `axum`).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use fanout_core::Hub;
//! use fanout_ws::{Frame, Gateway, WsConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let gateway = Gateway::new(Hub::<Frame>::new(), WsConfig::default()).unwrap();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .merge(fanout_ws::axum::router(gateway.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // ConnectInfo gives the gateway the client address (per-IP caps).
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! The adapter takes hyper's upgrade from the request itself, as axum's own
//! `WebSocketUpgrade` does, so it needs no axum `ws` feature; the tree keeps one
//! tokio-tungstenite (0.29, the version axum 0.8 uses). Serve the router with
//! `into_make_service_with_connect_info::<SocketAddr>()`: without it every
//! client is counted under the address `0.0.0.0` for the per-IP cap.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use fanout_core::Engine;

use crate::frame::Frame;
use crate::gateway::Gateway;

/// A router serving the gateway's WebSocket path (and echo path, if set).
pub fn router<E: Engine<Frame>>(gateway: Gateway<E>) -> Router {
    let cfg = gateway.config().clone();
    let mut r = Router::new().route(&cfg.path, get(upgrade::<E>));
    if let Some(echo) = &cfg.echo_path {
        r = r.route(echo, get(echo_upgrade::<E>));
    }
    r.with_state(gateway)
}

fn peer(req: &Request) -> SocketAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
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
