//! fanout-cluster: many server processes and machines as one topic space.
//!
//! A [`Cluster`] is an [`Engine`](fanout_core::Engine) like the hub alone:
//! the transport (fanout-ws) and the server run on it unchanged. Behind it,
//! a broker ([`Broker`]: Redis, NATS JetStream) numbers every message of a
//! topic once for the whole cluster, keeps the last ones, and routes one
//! copy to each node that has local subscribers of the topic; the node fans
//! it out through its local hub at exactly the broker's `(epoch, seq)`.
//! docs/cluster.md says what a client sees in each failure.
//!
//! ```no_run
//! # async fn run() -> Result<(), fanout_cluster::BrokerError> {
//! use fanout_cluster::{BrokerSettings, Cluster};
//! use fanout_core::Hub;
//!
//! let node = Cluster::connect(Hub::new(), BrokerSettings::new("redis://127.0.0.1:6379")).await?;
//! // Hand `node` to a `fanout_ws::Gateway` like a hub.
//! # drop(node); Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod broker;
mod metrics;
mod nats;
mod node;
mod redis;
mod settings;
mod wire;

pub use broker::{Broker, BrokerError, Delivery, Event, Stored};
pub use nats::NatsBroker;
pub use node::Cluster;
pub use redis::RedisBroker;
pub use settings::{BrokerKind, BrokerSettings};
