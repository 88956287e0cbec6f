//! # fanout-baseline: what fanout is measured against
//!
//! Two engines behind [`fanout_core::Engine`], so that the benchmark harness,
//! the WebSocket server and the load tester run the same code on each:
//!
//! - [`MutexHub`]: a faithful Rust port of the Go WebSocket hub that many
//!   services copied (clients in a map behind a read-write lock, a bounded
//!   channel per client, a run loop fed by register/unregister/broadcast
//!   channels, a full client evicted). Its module docs list the Go design line by
//!   line and every place where the port must differ, and why.
//! - [`TokioBroadcast`]: `tokio::sync::broadcast`, one channel for the hub and
//!   one per topic.
//!
//! Neither is tuned to lose: a reviewer who knows Go and tokio should find each
//! one written the way they would write it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod mutex;
mod tokio_broadcast;

pub use mutex::{MutexHub, MutexSubscriber, BROADCAST_CAPACITY, CLIENT_CAPACITY};
pub use tokio_broadcast::{TokioBroadcast, TokioSubscriber, CAPACITY as TOKIO_CAPACITY};
