//! Topics: named subscriber sets with their own sequence numbers.
//!
//! The hub maps names to topics in a `DashMap`. A [`Topic`] handle keeps the
//! topic's state (`Arc<TopicInner>`), so a publisher that holds one publishes
//! without touching the map.
//!
//! # Life and reclaim
//!
//! A topic exists while it has members or handles. When the last member leaves
//! (or is removed by the cleanup worker) or the last handle drops, the topic is
//! removed from the map, under the map's shard lock, and only if it is still
//! empty and unhandled. Joins add their member while holding a guard on that
//! same shard, so a join and a reclaim never interleave: the join either lands
//! in the old topic before the reclaim looks (which then keeps it), or creates a
//! new one after it.
//!
//! # Sequence numbers and epochs
//!
//! Every publish to a topic with members takes the next `seq` (from 1), from
//! the topic's [`Sequencer`], which also delivers the topic's messages in
//! that order, whatever the number of concurrent publishers (`sequencer.rs`).
//! So each subscriber receives a topic's messages in strictly increasing
//! `seq`, and a hole means messages it lost (it also gets `Lagged(n)` for
//! them). A topic created anew after a reclaim gets a new `epoch` from the
//! hub, so a subscriber that sees `seq` restart also sees the epoch change and
//! knows it is not a gap.

use std::fmt;
use std::sync::Arc;

use crate::config::TopicOptions;
use crate::error::PublishError;
use crate::hub::Hub;
use crate::members::Members;
use crate::message::{Message, Meta, Priority};
use crate::sequencer::Sequencer;
use crate::stats::PublishReport;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub(crate) struct TopicInner<T> {
    pub(crate) name: Arc<str>,
    /// Fixed at creation, unless the topic is numbered elsewhere: then
    /// written under the walk (`numbered.rs`). Orders nothing (`Relaxed`).
    epoch: AtomicU64,
    /// Numbers the topic's messages and delivers them in that order.
    pub(crate) seq: Sequencer<T>,
    pub(crate) members: Members<T>,
    /// Live [`Topic`] handles: a handled topic is never reclaimed. Changed only
    /// while holding the topic's map shard (creation) or before a reclaim check.
    pub(crate) handles: AtomicUsize,
}

impl<T> TopicInner<T> {
    pub(crate) fn new(name: Arc<str>, epoch: u64, chunk_size: usize, options: TopicOptions) -> Self {
        TopicInner {
            name,
            epoch: AtomicU64::new(epoch),
            seq: Sequencer::new(options.history_size, options.history_ttl)
                .with_overflow(options.overflow)
                .with_shared_log_from(options.shared_log, options.shared_log_from),
            members: Members::new(1, chunk_size),
            handles: AtomicUsize::new(0),
        }
    }

    /// No members, no handles, and no history still to keep.
    pub(crate) fn reclaimable(&self) -> bool {
        self.handles.load(Ordering::Acquire) == 0
            && self.members.is_empty()
            && self.seq.history_expired(std::time::Instant::now())
    }

    /// Where the topic's stream is: its epoch and the last `seq` delivered.
    pub(crate) fn position(&self) -> Position {
        Position { epoch: self.epoch(), seq: self.seq.delivered() }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }
}

/// A place in a topic's stream: the topic's epoch and a `seq` in it.
///
/// `epoch` names one continuous life of the topic's numbering: it changes
/// only when the stream is truly lost (the topic expired, or the process
/// restarted), and a new one is drawn at random (53 bits, so that it is
/// exact in a JavaScript number), so a restarted server never claims to
/// continue a stream it lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic's epoch.
    pub epoch: u64,
    /// A sequence number in it (0: before the first message).
    pub seq: u64,
}

/// A page of a topic's history (see [`Topic::history`]).
#[derive(Clone, Debug)]
pub struct HistoryPage<T> {
    /// The topic's position now: its epoch and the last `seq` delivered.
    pub position: Position,
    /// The messages, oldest first.
    pub messages: Vec<Message<T>>,
}

/// A handle on one topic: publishes without a map lookup, and keeps the topic
/// (and its sequence) alive while held.
///
/// ```
/// use fanout_core::Hub;
///
/// let hub = Hub::<&'static str>::new();
/// let scores = hub.topic("scores");
/// let mut fan = hub.subscribe().unwrap();
/// fan.join("scores").unwrap();
/// let report = scores.publish("2-1").unwrap();
/// assert_eq!((report.recipients, report.seq), (1, 1));
/// assert_eq!(*fan.try_recv().unwrap().payload(), "2-1");
/// ```
pub struct Topic<T: Clone + Send + Sync + 'static> {
    pub(crate) inner: Arc<TopicInner<T>>,
    pub(crate) hub: Hub<T>,
}

impl<T: Clone + Send + Sync + 'static> Topic<T> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The topic's epoch (see the module docs).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// Members right now.
    pub fn subscriber_count(&self) -> usize {
        self.inner.members.len()
    }

    /// Publishes one `Normal` message to the topic's members.
    pub fn publish(&self, payload: T) -> Result<PublishReport, PublishError> {
        self.hub.inner().publish_topic(&self.inner, Priority::Normal, None, |_| payload)
    }

    /// Publishes one message built from its numbering (so that a transport can
    /// encode `seq` into the payload once, for every recipient).
    pub fn publish_with(
        &self,
        priority: Priority,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        self.hub.inner().publish_topic(&self.inner, priority, None, make)
    }

    /// Where the topic's stream is now: its epoch and the last `seq` delivered.
    pub fn position(&self) -> Position {
        self.inner.position()
    }

    /// Reads the topic's history: with `since`, up to `limit` messages after
    /// that `seq`, oldest first (the next page); without, the newest `limit`,
    /// oldest first. Empty when the topic keeps no history (see
    /// [`TopicOptions`]). Pauses the topic's delivery while it copies the
    /// handles (it takes the topic's walk).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fanout_core::Hub;
    ///
    /// let hub = Hub::<u32>::builder().history(100, Duration::from_secs(60)).build().unwrap();
    /// let t = hub.topic("scores");
    /// t.publish_many([1, 2, 3, 4]).unwrap();
    /// let page = t.history(2, Some(1));
    /// assert_eq!(page.messages.iter().map(|m| m.seq()).collect::<Vec<_>>(), [2, 3]);
    /// assert_eq!(page.position.seq, 4);
    /// ```
    pub fn history(&self, limit: usize, since: Option<u64>) -> HistoryPage<T> {
        self.hub.inner().history(&self.inner, limit, since)
    }

    /// Publishes a run of `Normal` messages, pushing the whole run into each ring
    /// in one pass over the members (one wake per subscriber at most).
    pub fn publish_many<I>(&self, payloads: I) -> Result<PublishReport, PublishError>
    where
        I: IntoIterator<Item = T>,
    {
        self.hub.inner().publish_topic_many(&self.inner, Priority::Normal, payloads)
    }
}

impl<T: Clone + Send + Sync + 'static> Clone for Topic<T> {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::AcqRel);
        Topic { inner: self.inner.clone(), hub: self.hub.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Topic<T> {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.hub.inner().maybe_reclaim(&self.inner);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name())
            .field("epoch", &self.epoch())
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}
