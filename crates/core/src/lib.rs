//! # fanout-core: one message in, delivered to many subscribers
//!
//! The engine of [fanout]: a [`Hub`] delivers each published message to its
//! subscribers (10 or 1,000,000) at the lowest cost per delivery, with bounded
//! memory, and no slow subscriber able to hold back the others. It does no I/O
//! and needs no async runtime: receivers are futures driven by any executor.
//!
//! ## Motivation
//!
//! The classic WebSocket hub keeps its clients in a map behind a read-write
//! lock, gives each a channel, and evicts a full one from inside the broadcast
//! loop:
//!
//! ```text
//! broadcast(msg):
//!     clients.read_lock()              // every subscribe/unsubscribe waits
//!     for c in clients:
//!         if !c.send.try_push(msg):    // full
//!             clients.read_unlock(); clients.write_lock()   // O(n²), races
//!             close(c.send); delete(clients, c)              // double close panics
//!             ...
//! ```
//!
//! fanout keeps the same shape (a bounded queue per subscriber; for a topic
//! of 256 members or more, one shared log its members read with cursors of
//! their own, see [`TopicOptions::shared_log`]) and removes the lock and its
//! faults:
//!
//! - publishers load an immutable snapshot of the subscriber set (`arc-swap`)
//!   and never lock; membership changes copy-on-write one chunk of it;
//! - a full subscriber is only *flagged* by the publisher (one CAS on its state
//!   word); a cleanup thread removes flagged subscribers in batches;
//! - the message is allocated once and shared by reference count;
//! - every loss is counted, per reason, and the subscriber is told how many it
//!   missed ([`RecvError::Lagged`]);
//! - receivers are woken only when parked, and drain in batches
//!   ([`Subscriber::recv_many`]).
//!
//! ## Example
//!
//! ```
//! use fanout_core::{Hub, Overflow, RecvError, CloseReason};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let hub = Hub::<String>::builder().capacity(4).overflow(Overflow::Evict).build().unwrap();
//!
//! let mut fast = hub.subscribe().unwrap();
//! let slow = hub.subscribe().unwrap(); // never reads
//! fast.join("ticks").unwrap();
//! slow.join("ticks").unwrap();
//!
//! for i in 0..8 {
//!     hub.publish("ticks", format!("tick {i}")).unwrap();
//!     let m = fast.recv().await.unwrap();
//!     assert_eq!(m.seq(), i + 1);
//! }
//! // The slow subscriber overflowed and was evicted; the fast one never noticed.
//! assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
//! assert_eq!(hub.stats().evicted.slow_consumer, 1);
//! # });
//! ```
//!
//! See `docs/architecture.md` in the repository for the design, its memory
//! orderings and the measurements that chose it.
//!
//! [fanout]: https://example.invalid/fanout

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)] // allowed in ring.rs, shared.rs, sequencer.rs and topic_log.rs alone

mod builder;
mod config;
mod cursors;
mod engine;
mod error;
mod history;
mod hub;
mod inbox;
mod log_engine;
mod loom;
mod members;
mod message;
mod numbered;
mod publish;
mod reaper;
mod recovery;
mod repair;
mod ring;
mod sequencer;
mod shared;
mod stats;
mod subscriber;
mod topic;
mod topic_log;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use builder::HubBuilder;
pub use config::{
    ConfigError, HubConfig, Overflow, SubscribeOptions, TopicOptions, TopicOptionsFn, DEFAULT_SHARED_LOG,
    DEFAULT_SHARED_LOG_FROM, MAX_CAPACITY, MAX_HISTORY, MAX_SHARED_LOG,
};
pub use engine::{add as add_report, Engine, PublishItem, Receiver};
pub use error::{CloseReason, PublishError, RecvError, SendError, SubscribeError, TryRecvError};
pub use hub::Hub;
pub use log_engine::{LogEngine, LogSubscriber};
pub use message::{Message, Meta, Origin, Priority};
pub use numbered::{Advanced, Placed};
pub use recovery::{JoinFrom, Joined, NotRecovered};
pub use stats::{Closes, Drops, PublishReport, Stats};
pub use subscriber::{Lagged, Recv, RecvMany, Subscriber};
pub use topic::{HistoryPage, Position, Topic};

use std::fmt;

/// A subscriber's id, unique within its hub (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub(crate) u64);

impl SubscriberId {
    /// An id from its number (for engines other than [`Hub`], and for transports
    /// that carry ids over the wire).
    pub const fn new(n: u64) -> Self {
        SubscriberId(n)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
