#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use fanout_core::*;

/// The WebSocket transport (`fanout-ws`): serve any [`Engine`] over
/// WebSocket, with the JSON-RPC protocol of `docs/protocol.md`. Enabled by the
/// default feature `ws`.
#[cfg(feature = "ws")]
pub use fanout_ws as ws;
