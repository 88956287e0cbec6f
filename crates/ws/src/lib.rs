//! # fanout-ws: the WebSocket transport of fanout
//!
//! A thin layer over any engine that implements [`fanout_core::Engine`]: it
//! accepts WebSocket connections (hyper for the HTTP upgrade, tokio-tungstenite
//! for the frames), speaks JSON-RPC 2.0 to clients, and pushes each published
//! message, encoded once, to every subscribed connection.
//!
//! ```no_run
//! use fanout_core::Hub;
//! use fanout_ws::{serve, Frame, Gateway, WsConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::<Frame>::new();
//! let gateway = Gateway::new(hub, WsConfig::default()).unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Serve /ws until Ctrl-C, then drain.
//! serve(listener, gateway.clone(), fanout_ws::not_found, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! gateway.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! Per connection there is one task that reads and writes (see `conn.rs`);
//! every limit is in [`WsConfig`]; the protocol is in `docs/protocol.md`.
//!
//! With the `axum` feature, `axum::serve` serves an axum application beside
//! the gateway (with the client addresses and socket settings the gateway
//! needs), and `axum::router` mounts the gateway in one served otherwise.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
#[cfg(feature = "axum")]
pub mod axum;
pub mod bearer;
pub mod client_ip;
pub mod close_codes;
mod config;
mod conn;
#[cfg(test)]
mod conn_tests;
mod echo;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod keyed_limit;
mod limits;
mod metrics;
mod publish_gate;
pub mod recovery;
pub mod rpc;
mod serve;
mod subjects;
pub mod token;
pub mod topic;
mod topic_cap;
mod upgrade;
mod writer;

pub use auth::{sign_hs256, verify_hs256, Claims, Permissions};
pub use config::{RateLimit, WsConfig, WsConfigError, MAX_DURATION};
pub use frame::Frame;
pub use gateway::{DrainReport, Gateway, CLIENT_ID_HEADER};
pub use keyed_limit::KeyedRate;
pub use metrics::{CloseKind, Histogram, MetricsSnapshot, Rejection, BATCH_BUCKETS, LATENCY_BUCKETS};
pub use rpc::{codes, PublishResult, RpcError};
pub use serve::{not_found, serve, Body};
pub use topic::{validate_topic, TopicError};

pub use fanout_core;
pub use tokio_tungstenite;
