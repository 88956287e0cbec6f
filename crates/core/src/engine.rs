//! The engine trait: what a transport needs from a fan-out engine.
//!
//! [`Hub`] implements it; so does the mutex-hub baseline (`fanout-baseline`), so
//! that the WebSocket server and the load tester run on either with everything
//! else equal.

use std::future::Future;

use crate::error::{PublishError, RecvError, SendError, SubscribeError, TryRecvError};
use crate::hub::Hub;
use crate::message::{Message, Meta, Priority};
use crate::recovery::{JoinFrom, Joined, NotRecovered};
use crate::stats::{PublishReport, Stats};
use crate::subscriber::Subscriber;
use crate::topic::{HistoryPage, Position};
use crate::SubscriberId;

/// One message of [`Engine::publish_batch_async`]: its topic, priority and
/// conflation key, and how to build its payload from its numbering.
#[derive(Clone, Debug)]
pub struct PublishItem<'a, F> {
    /// The topic.
    pub topic: &'a str,
    /// Its priority (see [`Priority`]).
    pub priority: Priority,
    /// A conflation key (see [`Hub::publish_keyed`]); engines without
    /// conflation ignore it.
    pub key: Option<&'a str>,
    /// Builds the payload once the message is numbered.
    pub make: F,
}

/// A fan-out engine, as a transport sees it.
///
/// ```
/// use fanout_core::{Engine, Hub, Receiver};
///
/// // A transport generic over the engine:
/// async fn first_message<E: Engine<String>>(engine: &E) -> String {
///     let mut sub = engine.subscribe().unwrap();
///     engine.join(sub.id(), "news").unwrap();
///     engine.publish("news", "hello".into()).unwrap();
///     let mut batch = Vec::new();
///     sub.recv_many(&mut batch, 16).await.unwrap();
///     batch[0].payload().clone()
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(first_message(&Hub::new()).await, "hello");
/// # });
/// ```
pub trait Engine<T: Clone + Send + Sync + 'static>: Clone + Send + Sync + 'static {
    /// The receiving half it hands out.
    type Subscriber: Receiver<T>;

    /// A short name for reports (`"fanout"`, `"mutex"`).
    fn name(&self) -> &'static str;

    /// A new subscriber.
    fn subscribe(&self) -> Result<Self::Subscriber, SubscribeError>;

    /// Adds subscriber `id` to `topic`; `Ok(false)` if already a member.
    fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError>;

    /// Removes subscriber `id` from `topic`; `Ok(false)` if it was not a member.
    fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError>;

    /// Joins `topic` from a position, or with its latest message (see
    /// [`Hub::join_from`]). Engines that keep no history join live and say so
    /// (`recovered: false`, [`NotRecovered::NoHistory`] when a position was
    /// given).
    fn join_from(&self, id: SubscriberId, topic: &str, from: JoinFrom) -> Result<Joined, SubscribeError> {
        let joined = self.join(id, topic)?;
        Ok(Joined {
            joined,
            recovered: false,
            reason: matches!(from, JoinFrom::After(_)).then_some(NotRecovered::NoHistory),
            position: Position::default(),
            replayed: 0,
        })
    }

    /// Topics that exist now (a transport's cap on client-created topics
    /// counts them: a topic with a history outlives its last subscriber).
    fn topic_count(&self) -> usize {
        self.stats().topics as usize
    }

    /// Whether `topic` exists now (joining or publishing to it creates
    /// nothing). The default says no, which a cap then counts as a new topic:
    /// right for engines whose topics live exactly as long as their members.
    fn topic_exists(&self, _topic: &str) -> bool {
        false
    }

    /// Reads `topic`'s history (see [`Topic::history`](crate::Topic::history)):
    /// `None` when the topic does not exist or the engine keeps no history.
    fn history(&self, _topic: &str, _limit: usize, _since: Option<u64>) -> Option<HistoryPage<T>> {
        None
    }

    /// Publishes one message to `topic`, its payload built once from its numbering.
    fn publish_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError>;

    /// [`Engine::publish_with`] with a conflation key (see
    /// [`Hub::publish_keyed`]). Engines without conflation ignore the key.
    fn publish_keyed_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        key: Option<&str>,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        let _ = key;
        self.publish_with(topic, priority, make)
    }

    /// [`publish_with`](Self::publish_with) for engines that must wait for
    /// something (a cluster waits for its broker to number the message); the
    /// default is the synchronous call, done before the future is polled.
    /// Transports await this one.
    fn publish_async<'a, F>(
        &'a self,
        topic: &'a str,
        priority: Priority,
        key: Option<&'a str>,
        make: F,
    ) -> impl Future<Output = Result<PublishReport, PublishError>> + Send + 'a
    where
        F: FnOnce(Meta) -> T + Send + 'a,
    {
        std::future::ready(self.publish_keyed_with(topic, priority, key, make))
    }

    /// Publishes `items` in the order given, each as
    /// [`publish_async`](Self::publish_async) would, and answers each one's
    /// outcome in that order: messages to one topic are numbered in the order
    /// given. It stops at the first error, which is the last answer: the
    /// items after it were not published (or, by an engine that sent a run
    /// of them in one call that failed, not confirmed). The default
    /// publishes one after another; an engine that waits on something per
    /// message (a cluster waits for its broker) may wait once for a whole
    /// run of them.
    ///
    /// ```
    /// use fanout_core::{Engine, Hub, PublishItem, Priority};
    ///
    /// let hub: Hub<String> = Hub::new();
    /// let sub = hub.subscribe().unwrap();
    /// hub.join(sub.id(), "news").unwrap();
    /// let items = ["a", "b"].map(|s| PublishItem {
    ///     topic: "news",
    ///     priority: Priority::Normal,
    ///     key: None,
    ///     make: move |_meta| s.to_string(),
    /// });
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let done = hub.publish_batch_async(items.into()).await;
    /// let seqs: Vec<u64> = done.into_iter().map(|r| r.unwrap().seq).collect();
    /// assert_eq!(seqs, [1, 2]);
    /// # });
    /// ```
    fn publish_batch_async<'a, F>(
        &'a self,
        items: Vec<PublishItem<'a, F>>,
    ) -> impl Future<Output = Vec<Result<PublishReport, PublishError>>> + Send + 'a
    where
        F: FnOnce(Meta) -> T + Send + 'a,
    {
        async move {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let r = self.publish_async(item.topic, item.priority, item.key, item.make).await;
                let failed = r.is_err();
                out.push(r);
                if failed {
                    break;
                }
            }
            out
        }
    }

    /// [`join_from`](Self::join_from) for engines that must wait for
    /// something (a cluster node subscribes at its broker before the join
    /// returns); the default is the synchronous call.
    fn join_from_async<'a>(
        &'a self,
        id: SubscriberId,
        topic: &'a str,
        from: JoinFrom,
    ) -> impl Future<Output = Result<Joined, SubscribeError>> + Send + 'a {
        std::future::ready(self.join_from(id, topic, from))
    }

    /// [`history`](Self::history) for engines that may read it from
    /// elsewhere (a cluster reads its broker when the local history does not
    /// reach back far enough); the default is the synchronous call.
    fn history_async<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        since: Option<u64>,
    ) -> impl Future<Output = Option<HistoryPage<T>>> + Send + 'a {
        std::future::ready(self.history(topic, limit, since))
    }

    /// Publishes one `Normal` message to `topic`.
    fn publish(&self, topic: &str, payload: T) -> Result<PublishReport, PublishError> {
        self.publish_with(topic, Priority::Normal, |_| payload)
    }

    /// Publishes a run of messages to `topic` (engines without a batch path
    /// publish them one by one).
    fn publish_many(&self, topic: &str, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        let mut total = PublishReport::default();
        for p in payloads {
            add(&mut total, &self.publish(topic, p)?);
        }
        Ok(total)
    }

    /// Sends one message to every subscriber.
    fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError>;

    /// Broadcasts a run of messages.
    fn broadcast_many(&self, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        let mut total = PublishReport::default();
        for p in payloads {
            add(&mut total, &self.broadcast(p)?);
        }
        Ok(total)
    }

    /// Sends one message to subscriber `id` alone.
    fn send_to(&self, id: SubscriberId, payload: T) -> Result<(), SendError<T>>;

    /// Totals.
    fn stats(&self) -> Stats;

    /// Closes every subscriber (after they drain) and refuses later publishes.
    fn shutdown(&self);
}

/// Adds `r` into `total` (for engines that publish a run one message at a time).
pub fn add(total: &mut PublishReport, r: &PublishReport) {
    total.recipients += r.recipients;
    total.delivered += r.delivered;
    total.dropped.high_water += r.dropped.high_water;
    total.dropped.full += r.dropped.full;
    total.dropped.evicted += r.dropped.evicted;
    total.displaced += r.displaced;
    total.discarded += r.discarded;
    total.messages += r.messages;
    total.walked += r.walked;
    total.wakes += r.wakes;
    total.depth = total.depth.max(r.depth);
    if total.seq == 0 {
        total.seq = r.seq;
    }
}

/// The receiving half of an [`Engine`].
pub trait Receiver<T>: Send + 'static {
    /// Its id.
    fn id(&self) -> SubscriberId;

    /// Receives without waiting.
    fn try_recv(&mut self) -> Result<Message<T>, TryRecvError>;

    /// Receives up to `max` messages into `buf`, waiting only if none is queued.
    fn recv_many<'a>(
        &'a mut self,
        buf: &'a mut Vec<Message<T>>,
        max: usize,
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a;

    /// `(repaired, conflated)` since the last call, if either moved (for a
    /// transport's notice); `None` for engines without repair.
    fn take_repairs(&mut self) -> Option<(u64, u64)> {
        None
    }
}

impl<T: Clone + Send + Sync + 'static> Engine<T> for Hub<T> {
    type Subscriber = Subscriber<T>;

    fn name(&self) -> &'static str {
        "fanout"
    }
    fn subscribe(&self) -> Result<Subscriber<T>, SubscribeError> {
        Hub::subscribe(self)
    }
    fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        Hub::join(self, id, topic)
    }
    fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        Hub::leave(self, id, topic)
    }
    fn join_from(&self, id: SubscriberId, topic: &str, from: JoinFrom) -> Result<Joined, SubscribeError> {
        Hub::join_from(self, id, topic, from)
    }
    fn history(&self, topic: &str, limit: usize, since: Option<u64>) -> Option<HistoryPage<T>> {
        Hub::history(self, topic, limit, since)
    }
    fn topic_count(&self) -> usize {
        Hub::topic_count(self)
    }
    fn topic_exists(&self, topic: &str) -> bool {
        self.inner().topics.contains_key(topic)
    }
    fn publish_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        Hub::publish_with(self, topic, priority, make)
    }
    fn publish_keyed_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        key: Option<&str>,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        Hub::publish_keyed_with(self, topic, priority, key, make)
    }
    fn publish_many(&self, topic: &str, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        Hub::publish_many(self, topic, payloads)
    }
    fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError> {
        Hub::broadcast(self, payload)
    }
    fn broadcast_many(&self, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        Hub::broadcast_many(self, payloads)
    }
    fn send_to(&self, id: SubscriberId, payload: T) -> Result<(), SendError<T>> {
        Hub::send_to(self, id, payload)
    }
    fn stats(&self) -> Stats {
        Hub::stats(self)
    }
    fn shutdown(&self) {
        Hub::shutdown(self)
    }
}

impl<T: Clone + Send + Sync + 'static> Receiver<T> for Subscriber<T> {
    fn id(&self) -> SubscriberId {
        Subscriber::id(self)
    }
    fn try_recv(&mut self) -> Result<Message<T>, TryRecvError> {
        Subscriber::try_recv(self)
    }
    fn recv_many<'a>(
        &'a mut self,
        buf: &'a mut Vec<Message<T>>,
        max: usize,
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        Subscriber::recv_many(self, buf, max)
    }
    fn take_repairs(&mut self) -> Option<(u64, u64)> {
        Subscriber::take_repairs(self)
    }
}
