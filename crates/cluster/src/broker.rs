//! What a node needs from a broker: number a message, say where a topic's
//! stream is, read back what it retains, and route one copy of each message
//! to the nodes that asked for its topic.
//!
//! # The contract
//!
//! - [`Broker::publish`] appends one message to a topic's stream and answers
//!   the `(epoch, seq)` it got. `seq` counts from 1 per topic and epoch, with
//!   no gap and no repeat; every node that reads the stream sees the message
//!   at that number. The epoch changes only when the broker lost the stream
//!   (it expired after its TTL, or the broker restarted without it).
//! - [`Broker::position`] is where the stream is now (creating its epoch if
//!   it has none, so that a node taking an interest and a later publish
//!   agree on it).
//! - [`Broker::read`] returns the retained messages after a `seq` of an
//!   epoch, consecutive and in order, or fewer (none when the epoch is not
//!   the stream's or the first one asked for is no longer retained).
//! - [`Broker::subscribe`] routes the topic's messages, in `seq` order, to
//!   the node's [`Event`] channel until [`Broker::unsubscribe`]. Routing may
//!   lose messages (a disconnect, a slow node): the node finds each loss by
//!   `seq` and repairs it with `read`. A reconnect is announced
//!   ([`Event::Reconnected`]) because messages published while the node was
//!   away reach it only through `read`.
//!
//! The body is opaque to the broker: a push encoded once by the publishing
//! node with a placeholder numbering (see `wire.rs`).

use std::sync::Arc;

use bytes::Bytes;
use fanout_core::Position;
use futures_util::future::BoxFuture;

/// One message as the broker routes it to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its topic.
    pub topic: Arc<str>,
    /// The stream's epoch.
    pub epoch: u64,
    /// Its number in the stream.
    pub seq: u64,
    /// What the publisher handed the broker.
    pub body: Bytes,
}

/// One retained message, read back (see [`Broker::read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its number in the stream.
    pub seq: u64,
    /// What the publisher handed the broker.
    pub body: Bytes,
}

/// What the broker tells a node, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message of a topic the node subscribed to.
    Message(Delivery),
    /// The node lost its connection for routed messages: until
    /// [`Event::Reconnected`], messages may be missed.
    Disconnected,
    /// The routing is back (every subscription renewed): what was missed
    /// meanwhile must be read.
    Reconnected,
}

/// A broker call that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerError(pub String);

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker: {}", self.0)
    }
}

impl std::error::Error for BrokerError {}

/// A broker (see the module docs). Calls are made from many tasks at once.
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and metrics (`"redis"`, `"nats"`).
    fn name(&self) -> &'static str;

    /// Appends `body` to `topic`'s stream: the position it got.
    fn publish<'a>(&'a self, topic: &'a str, body: Bytes) -> BoxFuture<'a, Result<Position, BrokerError>>;

    /// Appends each `(topic, body)` in order, as [`Broker::publish`] would:
    /// the positions they got, in that order. An error leaves it unknown
    /// which of them were appended. The default publishes one after
    /// another; a broker that can send them in one round trip does.
    fn publish_many<'a>(
        &'a self,
        items: &'a [(&'a str, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<Position>, BrokerError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for (topic, body) in items {
                out.push(self.publish(topic, body.clone()).await?);
            }
            Ok(out)
        })
    }

    /// Where `topic`'s stream is (its epoch made if it had none).
    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Position, BrokerError>>;

    /// Up to `limit` retained messages of `epoch` after `after`, consecutive
    /// from `after + 1` (see the module docs).
    fn read<'a>(
        &'a self,
        topic: &'a str,
        epoch: u64,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Stored>, BrokerError>>;

    /// Routes `topic`'s messages to this node from now on (confirmed by the
    /// broker when this returns).
    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Stops routing `topic` to this node.
    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;
}

/// A fresh epoch: random, below 2^53 (exact in a JavaScript number), never 0.
pub(crate) fn fresh_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    (h.finish() & ((1 << 53) - 1)).max(1)
}
