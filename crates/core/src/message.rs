//! What a subscriber receives: one [`Message`] per publish, shared by every recipient.
//!
//! A publish allocates exactly one reference-counted envelope (the payload with its
//! topic, sequence number, epoch and priority); each delivery is one more reference,
//! paid for in advance by the publisher (see `shared.rs`), so a delivery costs no
//! atomic on the publisher's side. Nothing is copied or serialised per recipient, and a ring slot is
//! one pointer wide (plus a 32-bit stamp), so 256 slots cost 3 KiB per subscriber, allocated at its
//! first delivery with `lazy_rings`.

use std::fmt;
use std::sync::Arc;

use crate::shared::{Counted, Prepaid};

/// How urgently a message must reach a subscriber whose ring is filling up.
///
/// A ring holds `capacity` messages; its *high-water mark* (default 80 % of the
/// capacity) splits it into room for normal traffic and headroom for priority
/// traffic:
///
/// | priority | enters while the ring holds fewer than | when it does not fit |
/// | --- | --- | --- |
/// | `Normal` | the high-water mark | the overflow policy applies |
/// | `High` | the capacity | the overflow policy applies |
/// | `Urgent` | always | it displaces the oldest message (counted as lost) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Ordinary traffic: the first to be shed for a slow subscriber.
    #[default]
    Normal,
    /// Uses the headroom above the high-water mark.
    High,
    /// Always enters, displacing the oldest message when the ring is full.
    Urgent,
}

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// [`Hub::broadcast`](crate::Hub::broadcast): every subscriber of the hub.
    Broadcast,
    /// A topic publish: the topic's subscribers.
    Topic,
    /// [`Hub::send_to`](crate::Hub::send_to): one subscriber.
    Direct,
}

/// The numbering a publish is given before its payload is built: see
/// [`Hub::publish_with`](crate::Hub::publish_with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Per-topic sequence number, starting at 1 (per hub for broadcasts, 0 for
    /// direct sends).
    pub seq: u64,
    /// Changes whenever the topic is created anew, so that a subscriber can tell a
    /// restarted sequence from a gap.
    pub epoch: u64,
}

pub(crate) struct Envelope<T> {
    pub(crate) topic: Option<Arc<str>>,
    pub(crate) origin: Origin,
    pub(crate) meta: Meta,
    pub(crate) priority: Priority,
    /// The conflation key given at publish, if any (see `repair.rs`).
    pub(crate) key: Option<Arc<str>>,
    pub(crate) payload: T,
}

/// One delivered message: a cheap, cloneable handle to the payload and its
/// numbering, shared by every recipient of the same publish.
///
/// ```
/// use fanout_core::Hub;
///
/// let hub = Hub::<String>::new();
/// let mut sub = hub.subscribe().unwrap();
/// sub.join("prices").unwrap();
/// hub.publish("prices", "EURUSD 1.0842".to_string()).unwrap();
/// let msg = sub.try_recv().unwrap();
/// assert_eq!(msg.topic(), Some("prices"));
/// assert_eq!(msg.seq(), 1);
/// assert_eq!(msg.payload(), "EURUSD 1.0842");
/// ```
pub struct Message<T> {
    pub(crate) inner: Counted<Envelope<T>>,
}

impl<T> Message<T> {
    /// A message (one allocation). Engines call this once per publish; the
    /// handle is then cloned per recipient.
    pub fn new(topic: Option<Arc<str>>, origin: Origin, meta: Meta, priority: Priority, payload: T) -> Self {
        Message { inner: Counted::new(Envelope { topic, origin, meta, priority, key: None, payload }) }
    }

    /// A topic's message with a conflation key (see
    /// [`Hub::publish_keyed`](crate::Hub::publish_keyed)): what a cluster
    /// node builds from a message read back from its broker.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fanout_core::{Message, Meta, Priority};
    ///
    /// let m = Message::keyed(Some(Arc::from("px")), Meta { seq: 3, epoch: 1 }, Priority::High, Some(Arc::from("EURUSD")), 1.08);
    /// assert_eq!((m.key().map(|k| &**k), m.priority()), (Some("EURUSD"), Priority::High));
    /// ```
    pub fn keyed(
        topic: Option<Arc<str>>,
        meta: Meta,
        priority: Priority,
        key: Option<Arc<str>>,
        payload: T,
    ) -> Self {
        Message {
            inner: Counted::new(Envelope { topic, origin: Origin::Topic, meta, priority, key, payload }),
        }
    }

    /// A handle drawn on a publish's prepaid references (no atomic).
    #[inline]
    pub(crate) fn from_prepaid(pre: &Prepaid<'_, Envelope<T>>) -> Self {
        Message { inner: pre.take() }
    }

    fn env(&self) -> &Envelope<T> {
        self.inner.get()
    }

    /// The topic it was published to; `None` for broadcasts and direct sends.
    pub fn topic(&self) -> Option<&str> {
        self.env().topic.as_deref()
    }

    /// The topic name as a shared string (no copy).
    pub fn topic_arc(&self) -> Option<&Arc<str>> {
        self.env().topic.as_ref()
    }

    /// The conflation key it was published with, if any.
    pub fn key(&self) -> Option<&Arc<str>> {
        self.env().key.as_ref()
    }

    /// Broadcast, topic publish or direct send.
    pub fn origin(&self) -> Origin {
        self.env().origin
    }

    /// Sequence number within its topic (or within the hub's broadcasts), from 1.
    pub fn seq(&self) -> u64 {
        self.env().meta.seq
    }

    /// The topic's epoch: it changes when a topic is reclaimed and created again.
    pub fn epoch(&self) -> u64 {
        self.env().meta.epoch
    }

    /// The numbering as one value.
    pub fn meta(&self) -> Meta {
        self.env().meta
    }

    /// The priority it was published with.
    pub fn priority(&self) -> Priority {
        self.env().priority
    }

    /// The payload, shared with every other recipient.
    pub fn payload(&self) -> &T {
        &self.env().payload
    }

    /// The payload by value: moved out if this is the last handle, cloned otherwise.
    pub fn into_payload(self) -> T
    where
        T: Clone,
    {
        match self.inner.try_unwrap() {
            Ok(env) => env.payload,
            Err(shared) => shared.get().payload.clone(),
        }
    }

    /// Whether two handles share one publish.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Counted::ptr_eq(&a.inner, &b.inner)
    }
}

impl<T> Clone for Message<T> {
    #[inline]
    fn clone(&self) -> Self {
        Message { inner: self.inner.clone() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("origin", &self.origin())
            .field("seq", &self.seq())
            .field("epoch", &self.epoch())
            .field("priority", &self.priority())
            .field("payload", self.payload())
            .finish()
    }
}
