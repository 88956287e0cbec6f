//! [`LogEngine`]: every subscriber reads one shared log (`topic_log.rs`),
//! numbered and combined by the same sequencer as the hub's topics
//! (`sequencer.rs`).
//!
//! # Why it exists
//!
//! It is the first stage of "subscribers that read the topic's log"
//! (docs/architecture.md, "What would come next"): the log the hub's topics
//! would deliver into, measured in `fanout-bench hub` (engine `log`) beside
//! the hub that pushes into rings, before the hub's topics take it up. It
//! is not a hub: one log takes every publish, whatever the topic, and every
//! subscriber reads all of it; there are no rings, so no direct sends, no
//! priorities and no overflow policy but dropping the oldest (a reader more
//! than the log's room behind loses the oldest, and is told how many).
//!
//! # The path of a message
//!
//! A publish reserves its number in the sequencer's log (one CAS, as a
//! hub topic's publish does), writes its message there, and delivers if it
//! can take the walk; the walker takes runs of up to 64 ready messages and
//! appends each to the shared log with one prepay per message, whatever
//! the number of readers, and wakes the readers that parked. A reader
//! takes from its cursor, claiming each batch with one CAS on a line of its
//! own.
//!
//! # Leaving
//!
//! A dropped subscriber leaves the log without waiting; the references it
//! was counted in and did not draw are given back at the next append (or
//! when the engine is dropped).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use crate::members::Members;
use crate::message::Message;
use crate::sequencer::{self, Reserved, Sequencer, RUN};
use crate::topic_log::{Cursor, TopicLog};
use crate::{
    CloseReason, Engine, Meta, Origin, Priority, PublishError, PublishReport, Receiver, RecvError, SendError,
    Stats, SubscribeError, SubscriberId, TryRecvError,
};

/// Positions a reader may fall behind without losing one.
const ROOM: usize = 512;

struct Inner<T> {
    /// Numbers and combines; its walk appends to its shared log, as a hub
    /// topic's does (`Walk::deliver`).
    seq: Sequencer<T>,
    /// Nobody: every reader is the shared log's (the walk needs a set).
    members: Members<T>,
    closed: AtomicBool,
    subscribers: AtomicUsize,
    next_id: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    wakes: AtomicU64,
}

/// An engine whose subscribers all read one shared log (see the module
/// docs: the first stage of the shared-log design, for measuring).
///
/// ```
/// use fanout_core::{Engine, LogEngine, Receiver};
///
/// let engine = LogEngine::<u32>::new();
/// let mut sub = engine.subscribe().unwrap();
/// engine.publish("any", 7).unwrap();
/// let m = sub.try_recv().unwrap();
/// assert_eq!((m.seq(), *m.payload()), (1, 7));
/// ```
pub struct LogEngine<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for LogEngine<T> {
    fn clone(&self) -> Self {
        LogEngine { inner: self.inner.clone() }
    }
}

impl<T> Default for LogEngine<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LogEngine<T> {
    /// An engine with no subscribers.
    pub fn new() -> Self {
        LogEngine {
            inner: Arc::new(Inner {
                seq: Sequencer::new(0, std::time::Duration::ZERO).with_shared_log(ROOM),
                members: Members::new(1, 512),
                closed: AtomicBool::new(false),
                subscribers: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                wakes: AtomicU64::new(0),
            }),
        }
    }
}

impl<T> Inner<T> {
    /// Publishes `payloads` (at most [`RUN`]) under consecutive numbers.
    fn publish(
        &self,
        topic: Option<Arc<str>>,
        origin: Origin,
        make: impl FnMut(Meta) -> T,
        k: usize,
    ) -> PublishReport {
        let mut make = make;
        let mut r = PublishReport { messages: k as u64, ..PublishReport::default() };
        let mut done = 0;
        while done < k {
            let run = self.seq.reserve(k - done);
            if run.n == 0 {
                // The log is full: deliver it, or let the walker do it.
                self.walk(&mut r);
                std::thread::yield_now();
                continue;
            }
            let mut slot = Reserved { run, filled: 0 };
            for i in 0..slot.run.n {
                let meta = Meta { seq: self.seq.number(slot.run.pos + i), epoch: 1 };
                if r.seq == 0 {
                    r.seq = meta.seq;
                }
                slot.run.write(i, Message::new(topic.clone(), origin, meta, Priority::Normal, make(meta)));
                slot.filled = i + 1;
            }
            done += slot.run.n;
            drop(slot);
        }
        self.walk(&mut r);
        self.published.fetch_add(k as u64, Ordering::Relaxed);
        r
    }

    /// Delivers the sequencer's log into the shared one while this thread
    /// can hold the walk (the hub's own walk, `sequencer::walk`).
    fn walk(&self, r: &mut PublishReport) {
        let (delivered, wakes) = (r.delivered, r.wakes);
        sequencer::walk(&self.seq, &self.members, 0, r, &|_| {});
        self.delivered.fetch_add(r.delivered - delivered, Ordering::Relaxed);
        self.wakes.fetch_add(r.wakes - wakes, Ordering::Relaxed);
    }

    /// The shared log the walk appends to.
    fn log(&self) -> &TopicLog<T> {
        self.seq.shared_log().expect("made with a shared log")
    }
}

/// A reader of a [`LogEngine`].
pub struct LogSubscriber<T> {
    inner: Arc<Inner<T>>,
    reader: Arc<Cursor>,
    id: SubscriberId,
}

impl<T> LogSubscriber<T> {
    /// The engine and this subscriber's reader.
    fn parts(&self) -> (&Inner<T>, &Arc<Cursor>) {
        (&self.inner, &self.reader)
    }
}

impl<T> Drop for LogSubscriber<T> {
    fn drop(&mut self) {
        self.inner.log().leave(&self.reader);
        self.inner.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: Clone + Send + Sync + 'static> Engine<T> for LogEngine<T> {
    type Subscriber = LogSubscriber<T>;

    fn name(&self) -> &'static str {
        "log"
    }
    fn subscribe(&self) -> Result<LogSubscriber<T>, SubscribeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let reader = self.inner.log().join();
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        let id = SubscriberId::new(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        Ok(LogSubscriber { inner: self.inner.clone(), reader, id })
    }
    /// Every subscriber reads every topic: joining changes nothing.
    fn join(&self, _id: SubscriberId, _topic: &str) -> Result<bool, SubscribeError> {
        Ok(true)
    }
    fn leave(&self, _id: SubscriberId, _topic: &str) -> Result<bool, SubscribeError> {
        Ok(false)
    }
    fn publish_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        _priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Shutdown);
        }
        let mut make = Some(make);
        Ok(self.inner.publish(Some(Arc::from(topic)), Origin::Topic, |m| (make.take().expect("one"))(m), 1))
    }
    fn publish_many(&self, topic: &str, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        self.many(Some(Arc::from(topic)), Origin::Topic, payloads)
    }
    fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError> {
        self.many(None, Origin::Broadcast, vec![payload])
    }
    fn broadcast_many(&self, payloads: Vec<T>) -> Result<PublishReport, PublishError> {
        self.many(None, Origin::Broadcast, payloads)
    }
    fn send_to(&self, _id: SubscriberId, payload: T) -> Result<(), SendError<T>> {
        Err(SendError::NoSuchSubscriber(payload))
    }
    fn stats(&self) -> Stats {
        Stats {
            subscribers: self.inner.subscribers.load(Ordering::Relaxed) as u64,
            topics: 1,
            published: self.inner.published.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            wakes: self.inner.wakes.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }
    fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.log().wake_parked();
    }
}

impl<T> LogEngine<T> {
    fn many(
        &self,
        topic: Option<Arc<str>>,
        origin: Origin,
        payloads: Vec<T>,
    ) -> Result<PublishReport, PublishError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Shutdown);
        }
        let mut total = PublishReport::default();
        let mut it = payloads.into_iter();
        loop {
            let k = it.len().min(RUN);
            if k == 0 {
                return Ok(total);
            }
            let r = self.inner.publish(topic.clone(), origin, |_| it.next().expect("counted"), k);
            crate::engine::add(&mut total, &r);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Receiver<T> for LogSubscriber<T> {
    fn id(&self) -> SubscriberId {
        self.id
    }
    fn try_recv(&mut self) -> Result<Message<T>, TryRecvError> {
        let (inner, reader) = self.parts();
        let mut one = None;
        match inner.log().take(reader, &mut one, 1) {
            Err(lost) => Err(TryRecvError::Lagged(lost)),
            Ok(_) => match one {
                Some(m) => Ok(m),
                None if inner.closed.load(Ordering::Acquire) => {
                    Err(TryRecvError::Closed(CloseReason::Shutdown))
                }
                None => Err(TryRecvError::Empty),
            },
        }
    }
    fn recv_many<'a>(
        &'a mut self,
        buf: &'a mut Vec<Message<T>>,
        max: usize,
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        std::future::poll_fn(move |cx| {
            let (inner, reader) = self.parts();
            loop {
                match inner.log().take(reader, buf, max) {
                    Err(lost) => return Poll::Ready(Err(RecvError::Lagged(lost))),
                    Ok(0) => {}
                    Ok(n) => return Poll::Ready(Ok(n)),
                }
                if inner.closed.load(Ordering::SeqCst) {
                    return Poll::Ready(Err(RecvError::Closed(CloseReason::Shutdown)));
                }
                // After the park's fence: a shutdown that parked nobody is
                // seen here (its store is before its own fence).
                if !inner.log().park(reader, cx.waker()) && !inner.closed.load(Ordering::SeqCst) {
                    return Poll::Pending;
                }
            }
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Publishers racing for the walk, subscribers read one after another
    /// (so the later ones fall more than the room behind): each gets the
    /// messages numbered 1.. in order, and every gap is exactly the loss
    /// its lag notice reported, just before it.
    #[test]
    fn concurrent_publishers_deliver_in_seq_order_and_gaps_are_reported_exactly() {
        let engine = LogEngine::<u64>::new();
        let mut subs: Vec<_> = (0..3).map(|_| engine.subscribe().unwrap()).collect();
        let per = 2_000u64;
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let e = engine.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        e.publish("t", p * per + i).unwrap();
                    }
                })
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut buf = Vec::new();
        for sub in &mut subs {
            let mut next = 1;
            while next <= 2 * per {
                buf.clear();
                match rt.block_on(sub.recv_many(&mut buf, 64)) {
                    Ok(n) => {
                        for m in &buf[..n] {
                            assert_eq!(m.seq(), next, "in order, and no gap without a notice");
                            next += 1;
                        }
                    }
                    Err(RecvError::Lagged(k)) => next += k,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(next, 2 * per + 1);
        }
        for p in publishers {
            p.join().unwrap();
        }
        engine.shutdown();
        assert!(matches!(subs[0].try_recv(), Err(TryRecvError::Closed(CloseReason::Shutdown))));
    }
}
