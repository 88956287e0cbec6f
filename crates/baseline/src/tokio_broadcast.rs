//! `tokio::sync::broadcast` behind fanout's engine trait, for the benchmarks.
//!
//! # Design
//!
//! One `broadcast` channel of capacity 256 for the hub-wide broadcast, and one
//! per topic (created on first join, in a `DashMap`). A publish builds its
//! [`Message`] once and `send`s it; every receiver clones the handle out of the
//! channel's shared ring, as it would clone a `Bytes`.
//!
//! tokio broadcast has no per-receiver queue: a slow receiver is never evicted
//! and never slows the sender; it *lags*, and its next receive reports how many
//! messages it lost ([`RecvError::Lagged`]). The benchmark harness paces
//! publishers so that no receiver lags, and counts the losses if one does.
//!
//! # Order under concurrent publishers
//!
//! A channel delivers in the order of its `send`s, but the `seq` a message
//! carries is taken before its `send`: two publishers on one topic could send
//! seq 6 before seq 5. So a topic's number is taken and its message sent under
//! that topic's mutex (the hub-wide channel's likewise), which is what a Rust
//! engineer who promises ordered `seq`s over `tokio::sync::broadcast` would
//! write; `send` takes the channel's own tail lock anyway.
//!
//! # Subscribers with several topics
//!
//! A subscriber holds one `broadcast::Receiver` per channel it listens to. A
//! join creates the receiver at once (so every publish that starts after the join
//! reaches it) and posts it to the subscriber's mailbox, which the subscriber
//! moves into its own list on its next receive (one atomic load when the mailbox
//! is empty). A receive first takes what is ready from each receiver with
//! `try_recv`; when none has anything it waits on all of them at once with
//! `futures::future::select_all`, which boxes one future per receiver (tokio
//! offers no wait on several broadcast receivers without `tokio-stream`). With a
//! single receiver it awaits `recv()` directly, with no allocation. A join made
//! while the subscriber is parked on its channels takes effect when it next
//! wakes; a subscriber that listens to nothing yet waits on its mailbox, which
//! joins and shutdown wake.
//!
//! [`TokioBroadcast::topics_only`] builds an engine whose subscribers do not
//! listen to the hub-wide channel, for services (and benchmarks) that use topics
//! only.
//!
//! # What it does not do
//!
//! Unicast (`send_to`) is not a broadcast-channel operation: it reports
//! `NoSuchSubscriber`. Priorities are carried but ignored. Stats count
//! publishes and subscribers only, since the channel does not report deliveries.
//!
//! # Shutdown
//!
//! [`Engine::shutdown`] refuses later publishes and drops every sender; each
//! receiver then drains what it has not yet seen, and sees `Closed(Shutdown)`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use fanout_core::{
    CloseReason, Engine, Message, Meta, Origin, Priority, PublishError, PublishReport, Receiver, RecvError,
    SendError, Stats, SubscribeError, SubscriberId, TryRecvError,
};
use futures_util::task::AtomicWaker;
use tokio::sync::broadcast;

/// Slots in each channel, like the other engines' per-subscriber capacity.
pub const CAPACITY: usize = 256;

/// `tokio::sync::broadcast` as an engine. Cheap to clone.
///
/// ```
/// use fanout_baseline::TokioBroadcast;
/// use fanout_core::{Engine, Receiver};
///
/// let hub = TokioBroadcast::<u32>::new();
/// let mut sub = hub.subscribe().unwrap();
/// hub.broadcast(7).unwrap();
/// assert_eq!(*sub.try_recv().unwrap().payload(), 7);
/// ```
pub struct TokioBroadcast<T: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The hub-wide channel; `None` after shutdown.
    all: ArcSwapOption<broadcast::Sender<Message<T>>>,
    /// Subscribers listen to the hub-wide channel (see [`TokioBroadcast::topics_only`]).
    hub_wide: bool,
    /// Last hub-wide seq; held while a broadcast is numbered and sent.
    broadcast_seq: Mutex<u64>,
    topics: DashMap<Arc<str>, Arc<TopicChan<T>>>,
    /// Subscriber id → its mailbox, for joins by id.
    mailboxes: DashMap<SubscriberId, Arc<Mailbox<T>>>,
    shut: AtomicBool,
    next_id: AtomicU64,
    next_epoch: AtomicU64,
    published: AtomicU64,
    subscribed: AtomicU64,
    unsubscribed: AtomicU64,
}

struct TopicChan<T> {
    name: Arc<str>,
    epoch: u64,
    /// Last seq; held while a message is numbered and sent (see the module docs).
    seq: Mutex<u64>,
    tx: broadcast::Sender<Message<T>>,
}

/// Receivers (and leaves) posted by `join`/`leave` for the subscriber to pick up.
struct Mailbox<T> {
    /// True while `posted` holds something; checked on every receive.
    pending: AtomicBool,
    posted: Mutex<Posts<T>>,
    /// Woken by joins and by shutdown, for a subscriber that listens to nothing yet.
    waker: AtomicWaker,
}

struct Posts<T> {
    /// Not yet picked up by the subscriber.
    posted: Vec<Posted<T>>,
    /// Topics joined (as of the last join or leave).
    joined: Vec<Arc<str>>,
}

enum Posted<T> {
    Join(Arc<str>, broadcast::Receiver<Message<T>>),
    Leave(Arc<str>),
}

impl<T: Clone + Send + Sync + 'static> TokioBroadcast<T> {
    /// An engine with no topics yet.
    pub fn new() -> Self {
        Self::build(true)
    }

    /// An engine whose subscribers listen to the topics they join only, not to
    /// the hub-wide channel (broadcasts reach nobody). A receiver of an idle
    /// channel is not free in tokio broadcast: checking it takes the channel's
    /// tail lock, which every subscriber would share; a service that only uses
    /// topics would not hold one, so the topic benchmark does not either.
    pub fn topics_only() -> Self {
        Self::build(false)
    }

    fn build(hub_wide: bool) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        TokioBroadcast {
            inner: Arc::new(Inner {
                all: ArcSwapOption::from_pointee(tx),
                hub_wide,
                broadcast_seq: Mutex::new(0),
                topics: DashMap::new(),
                mailboxes: DashMap::new(),
                shut: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                next_epoch: AtomicU64::new(0),
                published: AtomicU64::new(0),
                subscribed: AtomicU64::new(0),
                unsubscribed: AtomicU64::new(0),
            }),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Default for TokioBroadcast<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> Clone for TokioBroadcast<T> {
    fn clone(&self) -> Self {
        TokioBroadcast { inner: self.inner.clone() }
    }
}

fn report(sent: Result<usize, impl Sized>, seq: u64) -> PublishReport {
    let n = sent.unwrap_or(0) as u64;
    PublishReport { recipients: n, delivered: n, messages: 1, seq, ..PublishReport::default() }
}

impl<T: Clone + Send + Sync + 'static> Engine<T> for TokioBroadcast<T> {
    type Subscriber = TokioSubscriber<T>;

    fn name(&self) -> &'static str {
        "tokio_broadcast"
    }

    fn subscribe(&self) -> Result<TokioSubscriber<T>, SubscribeError> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let Some(all) = inner.all.load_full() else { return Err(SubscribeError::Shutdown) };
        let id = SubscriberId::new(inner.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let mailbox = Arc::new(Mailbox {
            pending: AtomicBool::new(false),
            posted: Mutex::new(Posts { posted: Vec::new(), joined: Vec::new() }),
            waker: AtomicWaker::new(),
        });
        inner.mailboxes.insert(id, mailbox.clone());
        inner.subscribed.fetch_add(1, Ordering::Relaxed);
        Ok(TokioSubscriber {
            id,
            rxs: if inner.hub_wide { vec![(None, all.subscribe())] } else { Vec::new() },
            mailbox,
            engine: inner.clone(),
            closed: false,
        })
    }

    fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let Some(mb) = inner.mailboxes.get(&id).map(|m| m.clone()) else {
            return Err(SubscribeError::NoSuchSubscriber);
        };
        let mut posts = mb.posted.lock().unwrap_or_else(PoisonError::into_inner);
        if posts.joined.iter().any(|t| &**t == topic) {
            return Ok(false);
        }
        let chan = inner
            .topics
            .entry(Arc::from(topic))
            .or_insert_with(|| {
                Arc::new(TopicChan {
                    name: Arc::from(topic),
                    epoch: inner.next_epoch.fetch_add(1, Ordering::Relaxed) + 1,
                    seq: Mutex::new(0),
                    tx: broadcast::channel(CAPACITY).0,
                })
            })
            .clone();
        posts.joined.push(chan.name.clone());
        posts.posted.push(Posted::Join(chan.name.clone(), chan.tx.subscribe()));
        mb.pending.store(true, Ordering::Release);
        mb.waker.wake();
        Ok(true)
    }

    fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let Some(mb) = self.inner.mailboxes.get(&id).map(|m| m.clone()) else {
            return Err(SubscribeError::NoSuchSubscriber);
        };
        let mut posts = mb.posted.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pos) = posts.joined.iter().position(|t| &**t == topic) else { return Ok(false) };
        let name = posts.joined.swap_remove(pos);
        posts.posted.push(Posted::Leave(name));
        mb.pending.store(true, Ordering::Release);
        Ok(true)
    }

    fn publish_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::Acquire) {
            return Err(PublishError::Shutdown);
        }
        inner.published.fetch_add(1, Ordering::Relaxed);
        let Some(chan) = inner.topics.get(topic).map(|c| c.clone()) else {
            return Ok(PublishReport { messages: 1, ..PublishReport::default() });
        };
        let mut seq = chan.seq.lock().unwrap_or_else(PoisonError::into_inner);
        *seq += 1;
        let meta = Meta { seq: *seq, epoch: chan.epoch };
        let msg = Message::new(Some(chan.name.clone()), Origin::Topic, meta, priority, make(meta));
        Ok(report(chan.tx.send(msg), meta.seq))
    }

    fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError> {
        let inner = &self.inner;
        let guard = inner.all.load();
        let Some(tx) = guard.as_ref() else { return Err(PublishError::Shutdown) };
        inner.published.fetch_add(1, Ordering::Relaxed);
        let mut seq = inner.broadcast_seq.lock().unwrap_or_else(PoisonError::into_inner);
        *seq += 1;
        let meta = Meta { seq: *seq, epoch: 0 };
        let msg = Message::new(None, Origin::Broadcast, meta, Priority::Normal, payload);
        Ok(report(tx.send(msg), meta.seq))
    }

    fn send_to(&self, _id: SubscriberId, payload: T) -> Result<(), SendError<T>> {
        Err(SendError::NoSuchSubscriber(payload))
    }

    fn stats(&self) -> Stats {
        let inner = &self.inner;
        let unsubscribed = inner.unsubscribed.load(Ordering::Relaxed);
        Stats {
            subscribers: inner.subscribed.load(Ordering::Relaxed).saturating_sub(unsubscribed),
            topics: inner.topics.len() as u64,
            published: inner.published.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }

    fn shutdown(&self) {
        let inner = &self.inner;
        inner.shut.store(true, Ordering::SeqCst);
        inner.all.store(None);
        inner.topics.clear();
        // Receivers posted by joins hold no sender; nothing else keeps one. A
        // subscriber that listens to no channel waits on its mailbox: wake it.
        for mb in inner.mailboxes.iter() {
            mb.waker.wake();
        }
    }
}

/// One channel a subscriber listens to: its topic (none for the hub-wide one)
/// and its receiver.
type Listening<T> = (Option<Arc<str>>, broadcast::Receiver<Message<T>>);

/// A subscriber of [`TokioBroadcast`]: one broadcast receiver per channel.
pub struct TokioSubscriber<T> {
    id: SubscriberId,
    /// (topic, receiver); the hub-wide channel has no topic.
    rxs: Vec<Listening<T>>,
    mailbox: Arc<Mailbox<T>>,
    engine: Arc<Inner<T>>,
    /// Every receiver reported closed.
    closed: bool,
}

impl<T: Clone> TokioSubscriber<T> {
    /// Picks up receivers posted by joins.
    fn absorb(&mut self) {
        if !self.mailbox.pending.load(Ordering::Acquire) {
            return;
        }
        let posted = {
            let mut p = self.mailbox.posted.lock().unwrap_or_else(PoisonError::into_inner);
            self.mailbox.pending.store(false, Ordering::Relaxed);
            std::mem::take(&mut p.posted)
        };
        for p in posted {
            match p {
                Posted::Join(name, rx) => {
                    if !self.rxs.iter().any(|(t, _)| t.as_deref() == Some(&*name)) {
                        self.rxs.push((Some(name), rx));
                    }
                }
                Posted::Leave(name) => self.rxs.retain(|(t, _)| t.as_deref() != Some(&*name)),
            }
        }
    }

    /// Takes what is ready, up to `max`, dropping receivers whose channel is
    /// closed. `Err` on lag; `Ok((n, every channel closed))`.
    fn sweep(&mut self, buf: &mut Vec<Message<T>>, max: usize) -> Result<(usize, bool), RecvError> {
        let mut n = 0;
        let mut closed = Vec::new();
        for (i, (_, rx)) in self.rxs.iter_mut().enumerate() {
            while n < max {
                match rx.try_recv() {
                    Ok(m) => {
                        buf.push(m);
                        n += 1;
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => {
                        closed.push(i);
                        break;
                    }
                    Err(broadcast::error::TryRecvError::Lagged(k)) => return Err(RecvError::Lagged(k)),
                }
            }
        }
        // A closed channel is drained: nothing more will come from it.
        for i in closed.into_iter().rev() {
            self.rxs.swap_remove(i);
        }
        Ok((n, self.rxs.is_empty()))
    }
}

fn map_recv<T>(r: Result<Message<T>, broadcast::error::RecvError>) -> Result<Option<Message<T>>, RecvError> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(broadcast::error::RecvError::Closed) => Ok(None),
        Err(broadcast::error::RecvError::Lagged(k)) => Err(RecvError::Lagged(k)),
    }
}

impl<T: Clone + Send + Sync + 'static> Receiver<T> for TokioSubscriber<T> {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn try_recv(&mut self) -> Result<Message<T>, TryRecvError> {
        self.absorb();
        let mut closed = 0;
        for (_, rx) in self.rxs.iter_mut() {
            match rx.try_recv() {
                Ok(m) => return Ok(m),
                Err(broadcast::error::TryRecvError::Empty) => {}
                Err(broadcast::error::TryRecvError::Closed) => closed += 1,
                Err(broadcast::error::TryRecvError::Lagged(k)) => return Err(TryRecvError::Lagged(k)),
            }
        }
        if closed == self.rxs.len() && self.engine.shut.load(Ordering::Acquire) {
            Err(TryRecvError::Closed(CloseReason::Shutdown))
        } else {
            Err(TryRecvError::Empty)
        }
    }

    async fn recv_many(&mut self, buf: &mut Vec<Message<T>>, max: usize) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        loop {
            self.absorb();
            if self.closed {
                return Err(RecvError::Closed(CloseReason::Shutdown));
            }
            if self.rxs.is_empty() {
                // Listening to nothing (yet): wait for a join or the shutdown.
                let (mb, engine) = (&self.mailbox, &self.engine);
                std::future::poll_fn(|cx| {
                    mb.waker.register(cx.waker());
                    if mb.pending.load(Ordering::Acquire) || engine.shut.load(Ordering::Acquire) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                if self.engine.shut.load(Ordering::Acquire) && !self.mailbox.pending.load(Ordering::Acquire) {
                    self.closed = true;
                }
                continue;
            }
            if self.rxs.len() == 1 {
                // The common case: await one message, then take what is ready.
                let Some(first) = map_recv(self.rxs[0].1.recv().await)? else {
                    self.rxs.clear();
                    self.closed = true;
                    continue;
                };
                buf.push(first);
                let (n, _) = self.sweep(buf, max - 1)?;
                return Ok(n + 1);
            }
            let (n, all_closed) = self.sweep(buf, max)?;
            if n > 0 {
                return Ok(n);
            }
            if all_closed {
                self.closed = true;
                continue;
            }
            let waits = self.rxs.iter_mut().map(|(_, rx)| Box::pin(rx.recv()));
            let (r, i, _) = futures_util::future::select_all(waits).await;
            match map_recv(r)? {
                Some(m) => {
                    buf.push(m);
                    let (n, _) = self.sweep(buf, max - 1)?;
                    return Ok(n + 1);
                }
                None => {
                    self.rxs.swap_remove(i);
                    if self.rxs.is_empty() {
                        self.closed = true;
                    }
                }
            }
        }
    }
}

impl<T> Drop for TokioSubscriber<T> {
    fn drop(&mut self) {
        self.engine.mailboxes.remove(&self.id);
        self.engine.unsubscribed.fetch_add(1, Ordering::Relaxed);
    }
}
