//! The hub: subscribers, topics, unicast, stats and shutdown (the publish path
//! itself is in `publish.rs`).
//!
//! # Publishing
//!
//! A publish allocates its [`Message`] (one allocation), loads the snapshot of
//! the target set (the hub's shards for a broadcast, the topic's set for a
//! topic), and offers the message to each member's inbox: no lock, no
//! allocation per delivery. Each offer's outcome goes into the
//! [`PublishReport`], which is added to the striped counters once at the end. A
//! member whose policy is `Evict` and whose ring is full is closed on the spot
//! (`SlowConsumer`) and handed to the cleanup worker (see `reaper.rs`); the
//! publish goes on with the next member.
//!
//! # Shutdown
//!
//! [`Hub::shutdown`] (or dropping the last [`Hub`] and [`Topic`] handle) refuses
//! later publishes and subscribes, closes every subscriber with
//! [`CloseReason::Shutdown`] (each drains its ring first), and stops and joins
//! the cleanup worker, which empties every set on its way out so that queued
//! messages are freed as soon as their subscribers are dropped.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use dashmap::DashMap;

use crate::builder::HubBuilder;
use crate::config::{ConfigError, HubConfig, Overflow, SubscribeOptions};
use crate::error::{CloseReason, PublishError, SendError, SubscribeError};
use crate::inbox::{Inbox, Offer};
use crate::members::Members;
use crate::message::{Message, Meta, Origin, Priority};
use crate::publish::Target;
use crate::reaper::{self, Request};
use crate::recovery::{JoinFrom, Joined};
use crate::repair::Repair;
use crate::sequencer::Sequencer;
use crate::stats::{Counters, PublishReport, Stats};
use crate::subscriber::Subscriber;
use crate::topic::HistoryPage;
use crate::topic::{Topic, TopicInner};
use crate::SubscriberId;

/// The fan-out hub. Cheap to clone (an `Arc`); the hub shuts down when the last
/// `Hub` and [`Topic`] handle is dropped.
///
/// ```
/// use fanout_core::{Hub, RecvError, CloseReason};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let hub = Hub::<String>::new();
/// let mut alice = hub.subscribe().unwrap();
/// alice.join("chat").unwrap();
///
/// let report = hub.publish("chat", "hello".to_string()).unwrap();
/// assert_eq!(report.delivered, 1);
///
/// let msg = alice.recv().await.unwrap();
/// assert_eq!((msg.topic(), msg.seq(), msg.payload().as_str()), (Some("chat"), 1, "hello"));
///
/// hub.shutdown();
/// assert_eq!(alice.recv().await.unwrap_err(), RecvError::Closed(CloseReason::Shutdown));
/// # });
/// ```
pub struct Hub<T: Clone + Send + Sync + 'static> {
    shared: Arc<Shared<T>>,
}

/// What the `Hub` handles share; dropping it shuts the hub down.
struct Shared<T: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<T>>,
    worker: std::sync::Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Inner<T: Clone + Send + Sync + 'static> {
    pub(crate) config: HubConfig,
    /// Every open subscriber (and closing ones until the cleanup worker runs).
    pub(crate) all: Members<T>,
    /// Subscriber id → inbox, for unicast, join by id and shutdown.
    pub(crate) by_id: DashMap<SubscriberId, Arc<Inbox<T>>>,
    /// Topic name → topic; entries exist while the topic has members or handles.
    pub(crate) topics: DashMap<Arc<str>, Arc<TopicInner<T>>>,
    next_id: AtomicU64,
    /// Topics created so far: hashed with `epoch_keys` into each new epoch.
    next_epoch: AtomicU64,
    /// Random keys, drawn per hub: epochs differ across hubs and restarts.
    epoch_keys: std::collections::hash_map::RandomState,
    /// Numbers and orders broadcasts: their own stream, epoch 0.
    pub(crate) broadcasts: Sequencer<T>,
    shut: AtomicBool,
    pub(crate) counters: Counters,
    reaper_tx: Sender<Request<T>>,
    /// A removal request found the channel full: the worker sweeps on its next tick.
    pub(crate) needs_sweep: AtomicBool,
    /// Settle requests being sent by a thread that found the hub open: the
    /// stopping worker waits for none to be in flight before its last look
    /// at the channel ([`Inner::request_settle`]).
    pub(crate) settles_in_flight: AtomicUsize,
    /// Settles that could not go now: the worker's channel was full, or
    /// the settling thread holds the log's walk further up its stack (its
    /// payload drop is dropping a subscriber of the same log). The worker
    /// takes them on its next tick and before it stops, an inline settle
    /// when it is done with its own, shutdown after the worker has
    /// stopped. A rare path, so a mutex.
    held_settles: std::sync::Mutex<Vec<crate::cursors::Left<T>>>,
}

impl<T: Clone + Send + Sync + 'static> Hub<T> {
    /// A hub with the default settings (capacity 256, `Evict`, high water 80 %).
    pub fn new() -> Self {
        Self::with_config(HubConfig::default()).expect("default config is valid")
    }

    /// A builder for the settings.
    pub fn builder() -> HubBuilder<T> {
        HubBuilder { config: HubConfig::default(), _payload: std::marker::PhantomData }
    }

    /// A hub with these settings.
    pub fn with_config(config: HubConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(config.cleanup_capacity);
        let inner = Arc::new(Inner {
            all: Members::new(config.shards, config.chunk_size),
            by_id: DashMap::new(),
            topics: DashMap::new(),
            next_id: AtomicU64::new(0),
            next_epoch: AtomicU64::new(0),
            epoch_keys: std::collections::hash_map::RandomState::new(),
            broadcasts: Sequencer::new(0, std::time::Duration::ZERO)
                .with_shared_log_from(config.log_room(config.broadcast_log), config.broadcast_log_from)
                .for_everyone(),
            shut: AtomicBool::new(false),
            counters: Counters::new(),
            reaper_tx: tx,
            needs_sweep: AtomicBool::new(false),
            settles_in_flight: AtomicUsize::new(0),
            held_settles: std::sync::Mutex::new(Vec::new()),
            config,
        });
        let worker = reaper::spawn(inner.clone(), rx);
        Ok(Hub { shared: Arc::new(Shared { inner, worker: std::sync::Mutex::new(Some(worker)) }) })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner<T>> {
        &self.shared.inner
    }

    /// The settings the hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.inner().config
    }

    /// A new subscriber with the hub's settings. It receives broadcasts at once,
    /// and topics once it joins them; dropping it unsubscribes it everywhere.
    pub fn subscribe(&self) -> Result<Subscriber<T>, SubscribeError> {
        self.inner().subscribe(&SubscribeOptions::default())
    }

    /// A new subscriber with its own capacity, policy or high-water mark.
    pub fn subscribe_with(&self, options: SubscribeOptions) -> Result<Subscriber<T>, SubscribeError> {
        self.inner().subscribe(&options)
    }

    /// Adds subscriber `id` to `topic` (creating the topic). `Ok(false)` if it was
    /// already a member. Every publish to `topic` that starts after this returns
    /// reaches it.
    pub fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let inbox = self.inner().inbox(id)?;
        self.inner().join_inbox(&inbox, topic)
    }

    /// Removes subscriber `id` from `topic`. `Ok(false)` if it was not a member.
    pub fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let inbox = self.inner().inbox(id)?;
        Ok(self.inner().leave_inbox(&inbox, topic))
    }

    /// A handle on `topic` (created if needed) that publishes without a lookup
    /// and keeps the topic alive while held.
    pub fn topic(&self, name: &str) -> Topic<T> {
        let inner = self.inner().topic_inner(name);
        Topic { inner, hub: self.clone() }
    }

    /// Publishes one `Normal` message to `topic`'s members.
    pub fn publish(&self, topic: &str, payload: T) -> Result<PublishReport, PublishError> {
        self.publish_with(topic, Priority::Normal, |_| payload)
    }

    /// Publishes one message with a priority, its payload built from the numbering
    /// it gets (`make` is not called when the topic has no members).
    pub fn publish_with(
        &self,
        topic: &str,
        priority: Priority,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        self.publish_inner(topic, priority, None, make)
    }

    /// Publishes one `Normal` message with a conflation key: a subscriber
    /// under [`Overflow::Conflate`](crate::Overflow::Conflate) that falls
    /// behind gets, of the messages it missed, the newest per key (see
    /// [`SubscribeOptions::repair`](crate::SubscribeOptions::repair)).
    ///
    /// ```
    /// use fanout_core::Hub;
    ///
    /// let hub = Hub::<f64>::new();
    /// let mut sub = hub.subscribe().unwrap();
    /// sub.join("prices").unwrap();
    /// hub.publish_keyed("prices", "EURUSD", 1.0842).unwrap();
    /// let m = sub.try_recv().unwrap();
    /// assert_eq!(m.key().map(|k| &**k), Some("EURUSD"));
    /// ```
    pub fn publish_keyed(&self, topic: &str, key: &str, payload: T) -> Result<PublishReport, PublishError> {
        self.publish_inner(topic, Priority::Normal, Some(key), |_| payload)
    }

    /// [`Hub::publish_with`] with an optional conflation key.
    pub fn publish_keyed_with(
        &self,
        topic: &str,
        priority: Priority,
        key: Option<&str>,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        self.publish_inner(topic, priority, key, make)
    }

    fn publish_inner(
        &self,
        topic: &str,
        priority: Priority,
        key: Option<&str>,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        match inner.topics.get(topic).map(|t| t.clone()) {
            Some(t) if !t.seq.keeps_history() => inner.publish_topic(&t, priority, key, make),
            None if inner.config.options_for(topic).history_size == 0 => Ok(inner.count_empty(1)),
            _ => inner.with_topic(topic, |t| inner.publish_topic(t, priority, key, make)),
        }
    }

    /// Publishes a run of `Normal` messages to `topic`: each member gets the whole
    /// run in one pass, and one wake at most.
    pub fn publish_many<I: IntoIterator<Item = T>>(
        &self,
        topic: &str,
        payloads: I,
    ) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        match inner.topics.get(topic).map(|t| t.clone()) {
            Some(t) if !t.seq.keeps_history() => inner.publish_topic_many(&t, Priority::Normal, payloads),
            None if inner.config.options_for(topic).history_size == 0 => {
                Ok(inner.count_empty(payloads.into_iter().count() as u64))
            }
            _ => inner.with_topic(topic, |t| inner.publish_topic_many(t, Priority::Normal, payloads)),
        }
    }

    /// Joins subscriber `id` to `topic` from a position, or with its latest
    /// message (see [`JoinFrom`]): the missed messages are queued in order
    /// before any live one, with no gap and no duplicate at the hand-off, or
    /// the answer says why not ([`Joined::recovered`], [`Joined::reason`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fanout_core::{Hub, JoinFrom, Position};
    ///
    /// let hub = Hub::<u32>::builder().history(100, Duration::from_secs(60)).build().unwrap();
    /// let mut s = hub.subscribe().unwrap();
    /// s.join("t").unwrap();
    /// hub.publish_many("t", [1, 2]).unwrap();
    /// let seen = Position { epoch: s.try_recv().unwrap().epoch(), seq: 1 }; // then it goes away
    /// drop(s);
    /// hub.publish_many("t", [3, 4]).unwrap();
    ///
    /// let mut back = hub.subscribe().unwrap();
    /// let j = hub.join_from(back.id(), "t", JoinFrom::After(seen)).unwrap();
    /// assert!(j.recovered);
    /// let got: Vec<u32> = std::iter::from_fn(|| back.try_recv().ok()).map(|m| *m.payload()).collect();
    /// assert_eq!(got, [2, 3, 4]);
    /// ```
    pub fn join_from(&self, id: SubscriberId, topic: &str, from: JoinFrom) -> Result<Joined, SubscribeError> {
        let inner = self.inner();
        let inbox = inner.inbox(id)?;
        inner.with_topic(topic, |t| inner.join_topic_from(&inbox, t, from))
    }

    /// Reads `topic`'s history (see [`Topic::history`]); `None` when the
    /// topic does not exist.
    pub fn history(&self, topic: &str, limit: usize, since: Option<u64>) -> Option<HistoryPage<T>> {
        let inner = self.inner();
        let t = inner.topics.get(topic).map(|t| t.clone())?;
        Some(inner.history(&t, limit, since))
    }

    /// Publishes one `Normal` message to every subscriber of the hub.
    pub fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError> {
        self.broadcast_with(Priority::Normal, |_| payload)
    }

    /// Broadcasts one message with a priority, built from its numbering.
    pub fn broadcast_with(
        &self,
        priority: Priority,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        Ok(inner.publish_one(&inner.broadcast_target(), priority, None, make))
    }

    /// Broadcasts a run of `Normal` messages, one pass over the subscribers.
    pub fn broadcast_many<I: IntoIterator<Item = T>>(
        &self,
        payloads: I,
    ) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        Ok(inner.publish_run(&inner.broadcast_target(), Priority::Normal, payloads))
    }

    /// Sends one `Normal` message to subscriber `id` alone.
    pub fn send_to(&self, id: SubscriberId, payload: T) -> Result<(), SendError<T>> {
        self.send_to_with(id, Priority::Normal, payload)
    }

    /// Sends one message with a priority to subscriber `id` alone. Reaches it, or
    /// says why not and hands the payload back.
    pub fn send_to_with(&self, id: SubscriberId, priority: Priority, payload: T) -> Result<(), SendError<T>> {
        let inner = self.inner();
        if inner.is_shut() {
            return Err(SendError::Shutdown(payload));
        }
        let Some(inbox) = inner.by_id.get(&id).map(|e| e.clone()) else {
            return Err(SendError::NoSuchSubscriber(payload));
        };
        if !inbox.is_open() {
            return Err(SendError::Closed(payload));
        }
        let msg = Message::new(None, Origin::Direct, Meta { seq: 0, epoch: 0 }, priority, payload);
        let mut r = PublishReport { messages: 1, ..PublishReport::default() };
        let offer = inbox.offer(&msg, priority, &mut r.depth);
        r.count(offer);
        if matches!(offer, Offer::Delivered | Offer::Displaced(_)) {
            r.wakes += u64::from(inbox.notify());
        }
        inner.counters.publish(&r);
        match offer {
            Offer::Delivered | Offer::Displaced(_) => Ok(()),
            Offer::Skipped | Offer::SkippedAfterDisplacing(_) => Err(SendError::Closed(msg.into_payload())),
            Offer::Evict => {
                inner.close_inbox(&inbox, CloseReason::SlowConsumer);
                Err(SendError::Full(msg.into_payload()))
            }
            Offer::Dropped(_) | Offer::DroppedAfterDisplacing(..) | Offer::Outranked(_) => {
                Err(SendError::Full(msg.into_payload()))
            }
        }
    }

    /// Closes subscriber `id` with [`CloseReason::Kicked`]; it drains what it has
    /// queued, then sees the close. False if it was not open.
    pub fn kick(&self, id: SubscriberId) -> bool {
        match self.inner().by_id.get(&id).map(|e| e.clone()) {
            Some(inbox) => self.inner().close_inbox(&inbox, CloseReason::Kicked),
            None => false,
        }
    }

    /// Blocks until the cleanup worker has removed every subscriber closed before
    /// this call (including those left to its sweep), and every topic whose
    /// history has expired. Returns at once after shutdown. Useful in tests and before reading membership counts.
    pub fn flush_cleanup(&self) {
        let inner = self.inner();
        if inner.is_shut() {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if inner.reaper_tx.send(Request::Flush(tx)).is_ok() {
            // Err: the worker stopped meanwhile (shutdown), which also cleared.
            let _ = rx.recv();
        }
    }

    /// Open subscribers right now.
    pub fn subscriber_count(&self) -> usize {
        self.inner().counters.snapshot(0).subscribers as usize
    }

    /// Topics right now.
    pub fn topic_count(&self) -> usize {
        self.inner().topics.len()
    }

    /// The hub's totals.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// Shuts the hub down: later publishes fail with [`PublishError::Shutdown`],
    /// every subscriber drains its ring then sees `Closed(Shutdown)`, and the
    /// cleanup thread is stopped and joined. Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Whether [`Hub::shutdown`] has run.
    pub fn is_shutdown(&self) -> bool {
        self.inner().is_shut()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Hub<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub { shared: self.shared.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static> fmt::Debug for Hub<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.subscriber_count())
            .field("topics", &self.topic_count())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Shared<T> {
    fn shutdown(&self) {
        self.inner.shutdown();
        let handle = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            // The worker holds no `Hub`, but a payload may: the last handle can
            // be dropped on the worker itself (freeing a message). It must not
            // join itself; it has been sent `Stop` and ends its loop.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        // What was held for a worker that has stopped (see `held_settles`).
        self.inner.settle_held();
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Shared<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    /// Broadcasts: every subscriber, numbered by the hub's own sequencer.
    fn broadcast_target(&self) -> Target<'_, T> {
        Target { seq: &self.broadcasts, set: &self.all, topic: None, origin: Origin::Broadcast, epoch: 0 }
    }

    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    #[inline]
    pub(crate) fn check_open(&self) -> Result<(), PublishError> {
        if self.shut.load(Ordering::Acquire) {
            Err(PublishError::Shutdown)
        } else {
            Ok(())
        }
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot(self.topics.len() as u64)
    }

    pub(crate) fn inbox(&self, id: SubscriberId) -> Result<Arc<Inbox<T>>, SubscribeError> {
        if self.is_shut() {
            return Err(SubscribeError::Shutdown);
        }
        self.by_id.get(&id).map(|e| e.clone()).ok_or(SubscribeError::NoSuchSubscriber)
    }

    pub(crate) fn subscribe(
        self: &Arc<Self>,
        options: &SubscribeOptions,
    ) -> Result<Subscriber<T>, SubscribeError> {
        if self.is_shut() {
            return Err(SubscribeError::Shutdown);
        }
        let r = options.resolve(&self.config).map_err(|e| SubscribeError::InvalidOptions(e.field()))?;
        let id = SubscriberId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let inbox = Arc::new(Inbox::new(id, r.capacity, r.high_water, r.overflow, self.config.lazy_rings));
        self.insert_new(&inbox);
        // The broadcasts may be switching to their log (`Walk::switch`):
        // the insert, this fence, then the look for the log.
        crate::loom::fence(Ordering::SeqCst);
        if let Some(log) = self.broadcasts.shared_log() {
            inbox.join_log(log);
        }
        self.counters.subscribed();
        self.settle_new(&inbox);
        let repair = r.repair.then(|| Box::new(Repair::new(r.overflow == Overflow::Conflate)));
        Ok(Subscriber::new(inbox, self.clone(), repair))
    }

    /// A new subscriber's two inserts. Between them it is already reachable
    /// (by id: `kick`; through `all`: a broadcast that evicts it), so it can be
    /// closed, and its removal applied, before the second insert lands: see
    /// [`Inner::settle_new`].
    pub(crate) fn insert_new(&self, inbox: &Arc<Inbox<T>>) {
        self.by_id.insert(inbox.id, inbox.clone());
        self.all.insert(inbox.clone());
    }

    /// After both inserts: a subscriber closed meanwhile is removed again, so
    /// that no closed inbox stays in a set.
    pub(crate) fn settle_new(&self, inbox: &Arc<Inbox<T>>) {
        // Shutdown sets the flag, then closes what `by_id` holds; one of the two
        // sides sees the other (both go through the map's shard lock).
        if self.is_shut() {
            self.close_inbox(inbox, CloseReason::Shutdown);
            // The worker may have emptied every set already (`clear_all`) and
            // stopped: take it out here. Removing twice is harmless.
            self.all.remove(inbox.id);
            self.by_id.remove_if(&inbox.id, |_, v| Arc::ptr_eq(v, inbox));
            inbox.finish();
        } else if !inbox.is_open() {
            // Closed between the inserts (kicked, evicted): its removal may
            // have been applied before the second insert. Ask again; the
            // worker's removal is idempotent and counts a subscriber once.
            self.request_removal(inbox);
        }
    }

    pub(crate) fn topic_inner(&self, name: &str) -> Arc<TopicInner<T>> {
        // The handle count changes under the map's shard lock, like reclaim.
        if let Some(t) = self.topics.get(name) {
            t.handles.fetch_add(1, Ordering::AcqRel);
            return t.clone();
        }
        let t = self.topics.entry(Arc::from(name)).or_insert_with(|| self.new_topic(name));
        t.handles.fetch_add(1, Ordering::AcqRel);
        t.clone()
    }

    fn new_topic(&self, name: &str) -> Arc<TopicInner<T>> {
        Arc::new(TopicInner::new(
            Arc::from(name),
            self.fresh_epoch(),
            self.config.chunk_size,
            self.config.options_for(name),
        ))
    }

    /// A new epoch: random (keyed per hub, hashed with a counter), at most
    /// 2^53 − 1 so that a JavaScript number holds it exactly, never 0. Two
    /// epochs of one hub never repeat while the counter does not; across
    /// restarts, a repeat has a chance of 2^-53 per pair.
    fn fresh_epoch(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let n = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let mut h = self.epoch_keys.build_hasher();
        h.write_u64(n);
        (h.finish() & ((1 << 53) - 1)).max(1)
    }

    /// Runs `f` on topic `name` (created if needed) while holding a handle on
    /// it, so that no reclaim removes it meanwhile.
    pub(crate) fn with_topic<R>(&self, name: &str, f: impl FnOnce(&Arc<TopicInner<T>>) -> R) -> R {
        let t = self.topic_inner(name);
        let out = f(&t);
        self.release_topic(&t);
        out
    }

    /// Gives back a handle taken by [`Inner::topic_inner`].
    pub(crate) fn release_topic(&self, topic: &Arc<TopicInner<T>>) {
        if topic.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.maybe_reclaim(topic);
        }
    }

    pub(crate) fn join_inbox(&self, inbox: &Arc<Inbox<T>>, name: &str) -> Result<bool, SubscribeError> {
        if self.is_shut() {
            return Err(SubscribeError::Shutdown);
        }
        // The member is added while a guard on the topic's map shard is held, so
        // a concurrent reclaim (which needs that shard's write lock) cannot
        // remove the topic between the lookup and the insert.
        inbox.join_with(name, |inbox| match self.topics.get(name) {
            Some(t) => {
                t.members.insert(inbox.clone());
                t.clone()
            }
            None => {
                let t = self.topics.entry(Arc::from(name)).or_insert_with(|| self.new_topic(name));
                t.members.insert(inbox.clone());
                t.clone()
            }
        })
    }

    pub(crate) fn leave_inbox(&self, inbox: &Arc<Inbox<T>>, name: &str) -> bool {
        match inbox.leave(name) {
            Some(topic) => {
                self.settle_leavers(&topic);
                self.maybe_reclaim(&topic);
                true
            }
            None => false,
        }
    }

    /// Whether any topic may keep a history (then the cleanup worker sweeps
    /// for expired ones).
    pub(crate) fn keeps_histories(&self) -> bool {
        self.config.topic_defaults.history_size > 0 || self.config.topic_options.is_some()
    }

    /// Removes every topic with no member, no handle and no history to keep.
    pub(crate) fn sweep_topics(&self) {
        self.topics.retain(|_, t| !t.reclaimable());
    }

    /// Settles the readers that left `topic`'s shared log, if it has one,
    /// counting what they never took as discarded: at once, not at the
    /// topic's next message, so that the count is whole when the topic
    /// goes quiet. Call after the leave (not under an inbox's `topics`
    /// lock: this takes the topic's walk).
    pub(crate) fn settle_leavers(&self, topic: &Arc<TopicInner<T>>) {
        if topic.seq.shared_log().is_some() {
            self.settle_log_of(&topic.seq, &topic.members);
        }
    }

    /// [`Inner::settle_leavers`] for each log a dropped subscriber left
    /// (`None`: the broadcasts').
    ///
    /// A log this thread is settling already, further up its stack (a
    /// payload dropped by that settle owned a subscriber of the same log),
    /// is held for later (`held_settles`): its walk is this thread's.
    pub(crate) fn settle_left(&self, left: impl IntoIterator<Item = crate::cursors::Left<T>>) {
        for l in left {
            let seq = l.as_ref().map_or(&self.broadcasts, |t| &t.seq);
            if settling::this_thread_settles(seq) {
                self.hold_settles(std::iter::once(l));
                continue;
            }
            match l {
                Some(topic) => self.settle_leavers(&topic),
                None => self.settle_log_of(&self.broadcasts, &self.all),
            }
        }
    }

    /// Settles what was held (see `held_settles`), unless this thread is
    /// inside a settle (the outermost one does it, after its own).
    pub(crate) fn settle_held(&self) {
        if settling::any() {
            return;
        }
        loop {
            let held = self.take_held_settles();
            if held.is_empty() {
                return;
            }
            self.settle_left(held);
        }
    }

    /// Takes `seq`'s walk (delivering what is ready to `set` first, and
    /// after, as every holder of a walk does) to settle its log's leavers.
    fn settle_log_of(&self, seq: &Sequencer<T>, set: &Members<T>) {
        // Marked before the walk is taken: nothing this thread does before
        // it can start a settle.
        let _mark = settling::Mark::new(seq);
        let mut r = PublishReport::default();
        let evict = |i: &Arc<Inbox<T>>| {
            self.close_inbox(i, CloseReason::SlowConsumer);
        };
        let start = crate::stats::thread_index();
        let n = crate::recovery::with_walk_on(seq, set, start, &mut r, &evict, |w, _| w.settle_log());
        self.counters.publish(&r);
        self.counters.discarded(n);
    }

    fn hold_settles(&self, left: impl IntoIterator<Item = crate::cursors::Left<T>>) {
        self.held_settles.lock().unwrap_or_else(|p| p.into_inner()).extend(left);
    }

    /// The settles kept for later (see `held_settles`).
    pub(crate) fn take_held_settles(&self) -> Vec<crate::cursors::Left<T>> {
        std::mem::take(&mut *self.held_settles.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Removes `topic` from the map if it has no members and no handles, and is
    /// still the instance the map holds.
    pub(crate) fn maybe_reclaim(&self, topic: &Arc<TopicInner<T>>) {
        if !topic.reclaimable() {
            return;
        }
        self.topics.remove_if(&*topic.name, |_, t| Arc::ptr_eq(t, topic) && t.reclaimable());
    }

    /// Closes `inbox` (open → closing) and asks the cleanup worker to remove it.
    /// True for the one caller that closed it.
    pub(crate) fn close_inbox(&self, inbox: &Arc<Inbox<T>>, reason: CloseReason) -> bool {
        if !inbox.close(reason) {
            return false;
        }
        self.after_close(inbox, reason);
        true
    }

    /// What follows the one close of an inbox, by [`Inner::close_inbox`]:
    /// the close counted, the inbox removed from every set.
    fn after_close(&self, inbox: &Arc<Inbox<T>>, reason: CloseReason) {
        self.counters.closed(reason);
        if self.is_shut() {
            // The worker empties every set as it stops.
            return;
        }
        self.request_removal(inbox);
    }

    /// Has the cleanup worker settle the logs a dropped subscriber left (see
    /// [`Request::Settle`]). With its channel full, the next append to each
    /// log settles them (and counts what they left then); after shutdown
    /// (when nothing publishes), here (waiting for the log's walk, unless
    /// this thread holds it: see [`Inner::settle_left`]).
    ///
    /// A request must not be left in the channel of a worker that stopped:
    /// what the leaver never took would go uncounted. A sender counts itself
    /// in `settles_in_flight` before it looks at `shut` (both `SeqCst`);
    /// the stopping worker, which received `Stop` after `shut` was set,
    /// waits until none is in flight, then empties the channel and
    /// `held_settles`. A sender either saw `shut` (and settles here), or
    /// was counted before the worker's look, and its request is in the
    /// channel or held by then. With the channel full the request is held
    /// for the worker's next tick.
    pub(crate) fn request_settle(&self, left: Vec<crate::cursors::Left<T>>) {
        if left.is_empty() {
            return;
        }
        self.settles_in_flight.fetch_add(1, Ordering::SeqCst);
        let left = if self.is_shut() {
            Some(left)
        } else {
            match self.reaper_tx.try_send(Request::Settle(left)) {
                Err(TrySendError::Full(Request::Settle(left))) => {
                    self.hold_settles(left);
                    None
                }
                Err(TrySendError::Disconnected(Request::Settle(left))) => Some(left),
                _ => None,
            }
        };
        self.settles_in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(left) = left {
            self.settle_left(left);
            self.settle_held();
        }
    }

    /// Asks the cleanup worker to remove a closing inbox from every set (or,
    /// when its channel is full, to sweep).
    fn request_removal(&self, inbox: &Arc<Inbox<T>>) {
        match self.reaper_tx.try_send(Request::Remove(inbox.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Publishers already skip it; the sweep will remove it.
                self.counters.cleanup_overflow();
                self.needs_sweep.store(true, Ordering::Release);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn shutdown(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        let subs: Vec<Arc<Inbox<T>>> = self.by_id.iter().map(|e| e.value().clone()).collect();
        for inbox in &subs {
            self.close_inbox(inbox, CloseReason::Shutdown);
        }
        // Blocks only while the worker drains its channel; fails at once if the
        // worker is gone.
        let _ = self.reaper_tx.send(Request::Stop);
    }

    /// The worker's last act: empty every set, breaking the inbox ↔ topic links,
    /// so that queued messages are freed with their subscribers.
    pub(crate) fn clear_all(&self) {
        let subs: Vec<Arc<Inbox<T>>> = self.by_id.iter().map(|e| e.value().clone()).collect();
        for inbox in &subs {
            for t in inbox.take_topics() {
                t.members.clear();
            }
            inbox.finish();
        }
        self.all.clear();
        self.by_id.clear();
        self.topics.clear();
    }
}

/// Which logs this thread is settling (their sequencers' addresses): a
/// settle that a settle's payload drop starts must not wait for the walk
/// its own thread holds.
mod settling {
    use std::cell::RefCell;

    thread_local! {
        static SETTLING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    fn key<S>(seq: &S) -> usize {
        seq as *const S as usize
    }

    /// True while this thread settles `seq`'s log.
    pub(super) fn this_thread_settles<S>(seq: &S) -> bool {
        SETTLING.with(|s| s.borrow().contains(&key(seq)))
    }

    /// True while this thread settles any log.
    pub(super) fn any() -> bool {
        SETTLING.with(|s| !s.borrow().is_empty())
    }

    /// Marks `seq` as settled by this thread until dropped (a panic too).
    pub(super) struct Mark(usize);

    impl Mark {
        pub(super) fn new<S>(seq: &S) -> Mark {
            let k = key(seq);
            SETTLING.with(|s| s.borrow_mut().push(k));
            Mark(k)
        }
    }

    impl Drop for Mark {
        fn drop(&mut self) {
            SETTLING.with(|s| {
                let mut s = s.borrow_mut();
                if let Some(i) = s.iter().rposition(|&k| k == self.0) {
                    s.remove(i);
                }
            });
        }
    }
}
