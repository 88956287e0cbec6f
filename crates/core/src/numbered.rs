//! Topics numbered elsewhere: publishing at a `(epoch, seq)` that a broker
//! gave, so that every node of a cluster shows one numbering.
//!
//! # Who numbers
//!
//! A hub numbers its own topics (`sequencer.rs`). In a cluster the broker
//! does, and each node that has subscribers of a topic receives the broker's
//! ordered stream for it and pushes each message into its local topic at
//! exactly the broker's position, with [`Topic::publish_at`]. The local
//! topic's history, joins from a position and history reads then work as in
//! a single process, in the broker's numbering.
//!
//! # One publisher
//!
//! Such a topic has one publisher: the node's task that applies the
//! broker's stream. Local publishes go to the broker, never to the topic
//! itself. (A local publish racing [`Topic::publish_at`] breaks no memory
//! safety but numbers the two messages wrongly.)
//!
//! # Moving the numbering
//!
//! [`Topic::advance`] moves the topic to a position, under the topic's walk
//! (so no join or history read sees it half done), once what the log holds is
//! delivered:
//!
//! - **another epoch**: the broker's stream for the topic is not the one the
//!   topic shows (the node just took an interest in it, or the broker lost
//!   the stream and started a new one). The topic takes the epoch and the
//!   `seq`, and its history is emptied. Subscribers see the epoch change on
//!   the next message, which is how the protocol says "a new stream".
//! - **the same epoch, further on**: messages were numbered that this node
//!   never got and could not fetch (the broker no longer holds them). Each
//!   member is told that it lost them: a lag at its place in its ring,
//!   before the next message, as for any drop. The history is emptied (it
//!   would no longer lead to the position without a gap), so a join from an
//!   older position says "too old" rather than replaying across the gap.
//! - **the same epoch, not further on**: nothing changes.
//!
//! [`Topic::publish_at`] is an `advance` to the message's `seq - 1` when that
//! is not where the topic is (the fast path reads the last number given,
//! without the walk), then an ordinary publish, which the single publisher
//! makes take exactly that `seq`. A message at or before the last number
//! given is a duplicate or a replay, and is ignored ([`Placed::Stale`]).
//!
//! # Reaching further back
//!
//! [`Topic::backfill`] puts messages older than the history holds (read from
//! the broker) in front of it, under the walk, if they end exactly where the
//! history begins (or at the position, when it holds nothing): a join from
//! an older position then replays from the local history as usual.

use crate::error::PublishError;
use crate::message::{Message, Meta, Origin, Priority};
use crate::recovery::with_walk_counted;
use crate::stats::PublishReport;
use crate::topic::{Position, Topic};

/// What [`Topic::publish_at`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Published at the given position.
    Published(PublishReport),
    /// The topic was already at or past that position (a duplicate or a
    /// replay): nothing published.
    Stale,
}

/// What [`Topic::advance`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advanced {
    /// The topic took another epoch (its history was emptied).
    pub new_epoch: bool,
    /// Numbers skipped in the same epoch: each member was told it lost them.
    pub lost: u64,
}

impl<T: Clone + Send + Sync + 'static> Topic<T> {
    /// Moves the topic to position `to` (see the module docs): another epoch
    /// is taken as it is, a later `seq` of the same epoch is reported to the
    /// members as lost, an earlier or equal one changes nothing.
    ///
    /// ```
    /// use fanout_core::{Hub, Position};
    ///
    /// let hub = Hub::<u32>::new();
    /// let t = hub.topic("prices");
    /// let a = t.advance(Position { epoch: 9, seq: 40 });
    /// assert!(a.new_epoch);
    /// assert_eq!(t.position(), Position { epoch: 9, seq: 40 });
    /// assert_eq!(t.advance(Position { epoch: 9, seq: 43 }).lost, 3);
    /// assert_eq!(t.advance(Position { epoch: 9, seq: 41 }).lost, 0);
    /// ```
    pub fn advance(&self, to: Position) -> Advanced {
        let topic = &self.inner;
        let inner = self.hub.inner();
        with_walk_counted(inner, topic, |w| {
            let now = topic.position();
            if to.epoch != now.epoch {
                topic.set_epoch(to.epoch);
                w.jump(to.seq);
                return Advanced { new_epoch: true, lost: 0 };
            }
            if to.seq <= now.seq {
                return Advanced::default();
            }
            let lost = to.seq - now.seq;
            let mut r = crate::PublishReport::default();
            if w.skip_log(lost, &mut r) {
                inner.counters.publish(&r);
            } else {
                topic.members.for_each(|inbox| inbox.record_loss(lost));
            }
            w.jump(to.seq);
            Advanced { new_epoch: false, lost }
        })
    }

    /// Publishes one message at `at` (its epoch and `seq`, given by a broker),
    /// moving the topic there first if it is elsewhere (see
    /// [`advance`](Self::advance)); [`Placed::Stale`] if the topic is already
    /// at or past it. The topic must have no other publisher (module docs).
    ///
    /// ```
    /// use fanout_core::{Hub, Meta, Placed, Priority};
    ///
    /// let hub = Hub::<&str>::new();
    /// let mut s = hub.subscribe().unwrap();
    /// s.join("news").unwrap();
    /// let t = hub.topic("news");
    /// let at = Meta { epoch: 5, seq: 7 };
    /// assert!(matches!(t.publish_at(at, Priority::Normal, |_| "a").unwrap(), Placed::Published(_)));
    /// assert_eq!(t.publish_at(at, Priority::Normal, |_| "again").unwrap(), Placed::Stale);
    /// let m = s.try_recv().unwrap();
    /// assert_eq!((m.epoch(), m.seq(), *m.payload()), (5, 7, "a"));
    /// ```
    pub fn publish_at(
        &self,
        at: Meta,
        priority: Priority,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<Placed, PublishError> {
        self.publish_at_keyed(at, priority, None, make)
    }

    /// [`publish_at`](Self::publish_at) with a conflation key (see
    /// [`Hub::publish_keyed`](crate::Hub::publish_keyed)): a cluster node
    /// places a keyed message where the broker numbered it, key included.
    ///
    /// ```
    /// use fanout_core::{Hub, Meta, Priority};
    ///
    /// let hub = Hub::<u32>::new();
    /// let mut s = hub.subscribe().unwrap();
    /// s.join("px").unwrap();
    /// let t = hub.topic("px");
    /// t.publish_at_keyed(Meta { epoch: 2, seq: 1 }, Priority::High, Some("EURUSD"), |_| 7).unwrap();
    /// let m = s.try_recv().unwrap();
    /// assert_eq!((m.key().map(|k| &**k), m.priority(), *m.payload()), (Some("EURUSD"), Priority::High, 7));
    /// ```
    pub fn publish_at_keyed(
        &self,
        at: Meta,
        priority: Priority,
        key: Option<&str>,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<Placed, PublishError> {
        let inner = self.hub.inner();
        inner.check_open()?;
        let topic = &self.inner;
        let last = topic.seq.numbered();
        if at.seq == 0 {
            return Ok(Placed::Stale);
        }
        if topic.epoch() != at.epoch || last.wrapping_add(1) != at.seq {
            if topic.epoch() == at.epoch && at.seq <= last {
                return Ok(Placed::Stale);
            }
            self.advance(Position { epoch: at.epoch, seq: at.seq - 1 });
        }
        let r = inner.publish_one(&crate::publish::Target::topic(topic), priority, key, make);
        debug_assert_eq!(r.seq, at.seq, "a topic numbered elsewhere had another publisher");
        Ok(Placed::Published(r))
    }

    /// Puts `older` (messages read from a broker, oldest first, consecutive
    /// `seq`s of the topic's epoch) in front of the topic's history, if they
    /// end exactly where it begins (or at the topic's position, when it holds
    /// nothing); returns how many went in (0 when they do not fit there; at
    /// most the history's free room, the newest first).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fanout_core::{Hub, Meta, Position, Priority};
    ///
    /// let hub = Hub::<u64>::builder().history(10, Duration::from_secs(60)).build().unwrap();
    /// let t = hub.topic("t");
    /// t.advance(Position { epoch: 3, seq: 4 });
    /// t.publish_at(Meta { epoch: 3, seq: 5 }, Priority::Normal, |m| m.seq).unwrap();
    /// let older = (2..=4).map(|seq| (Meta { epoch: 3, seq }, seq));
    /// assert_eq!(t.backfill(older), 3);
    /// let page = t.history(10, Some(1));
    /// assert_eq!(page.messages.iter().map(|m| *m.payload()).collect::<Vec<_>>(), [2, 3, 4, 5]);
    /// ```
    pub fn backfill(&self, older: impl IntoIterator<Item = (Meta, T)>) -> usize {
        let name = self.inner.name.clone();
        self.backfill_messages(
            older
                .into_iter()
                .map(|(meta, p)| Message::new(Some(name.clone()), Origin::Topic, meta, Priority::Normal, p)),
        )
    }

    /// [`backfill`](Self::backfill) with whole messages, keeping each one's
    /// priority and conflation key (their topic and origin are taken as
    /// given).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fanout_core::{Hub, Message, Meta, Position, Priority};
    ///
    /// let hub = Hub::<u64>::builder().history(10, Duration::from_secs(60)).build().unwrap();
    /// let t = hub.topic("t");
    /// t.advance(Position { epoch: 3, seq: 2 });
    /// let old = Message::keyed(Some(Arc::from("t")), Meta { epoch: 3, seq: 2 }, Priority::High, Some(Arc::from("k")), 2);
    /// assert_eq!(t.backfill_messages([old]), 1);
    /// let page = t.history(10, Some(1));
    /// assert_eq!(page.messages[0].key().map(|k| &**k), Some("k"));
    /// ```
    pub fn backfill_messages(&self, older: impl IntoIterator<Item = Message<T>>) -> usize {
        let topic = &self.inner;
        let msgs: Vec<Message<T>> = older.into_iter().collect();
        let Some(last) = msgs.last().map(Message::seq) else {
            return 0;
        };
        let inner = self.hub.inner();
        with_walk_counted(inner, topic, |w| {
            let now = topic.position();
            let consecutive = msgs.windows(2).all(|p| p[1].seq() == p[0].seq() + 1);
            if !consecutive || msgs.iter().any(|m| m.epoch() != now.epoch) {
                return 0;
            }
            w.history(|h| {
                let ends_at = h.oldest().map_or(now.seq, |o| o - 1);
                if last != ends_at {
                    return 0;
                }
                h.prepend(msgs, std::time::Instant::now())
            })
        })
    }
}
