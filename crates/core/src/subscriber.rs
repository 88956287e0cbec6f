//! The receiving half: [`Subscriber`], its futures and its `Stream`.
//!
//! A subscriber has one reader (receiving takes `&mut self`), so the ring's
//! consumer side is never contended by other readers; publishers only contend
//! with it when they displace the oldest message.
//!
//! A receive that finds the ring empty parks (see `inbox.rs`, "Waking"); a
//! receive future dropped while parked clears the flag and takes its waker back,
//! so a cancelled `recv` leaves nothing behind. The `Stream` has no future of
//! its own to drop (`StreamExt::next` borrows the subscriber): a `poll_next`
//! that parked is remembered, and the next receive of another kind, or the
//! subscriber's drop, clears the flag and takes the waker back, so a cancelled
//! `next()` leaves no stale waker to be woken by later publishes.
//!
//! Dropping the subscriber closes it with [`CloseReason::Unsubscribed`], takes
//! out what is still queued (counted in [`Stats::discarded`](crate::Stats)),
//! and hands it to the cleanup worker, which removes it from the hub and from
//! every topic it joined.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};

use crate::config::Overflow;
use crate::error::{CloseReason, RecvError, SubscribeError, TryRecvError};
use crate::hub::Inner;
use crate::inbox::{Inbox, Sink};
use crate::message::Message;
use crate::repair::Repair;
use crate::SubscriberId;

/// One subscriber: receives broadcasts, the topics it joined, and direct sends.
///
/// ```
/// use fanout_core::{Hub, RecvError};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let hub = Hub::<u32>::new();
/// let mut sub = hub.subscribe().unwrap();
/// hub.broadcast_many(0..10).unwrap();
///
/// let mut batch = Vec::new();
/// let n = sub.recv_many(&mut batch, 64).await.unwrap();
/// assert_eq!(n, 10);
/// assert_eq!(batch.iter().map(|m| *m.payload()).sum::<u32>(), 45);
/// # });
/// ```
pub struct Subscriber<T: Clone + Send + Sync + 'static> {
    inbox: Arc<Inbox<T>>,
    hub: Arc<Inner<T>>,
    /// The stream returned `None` (closed and drained): it stays ended.
    terminated: bool,
    /// The last `poll_next` parked: its waker is still registered.
    stream_parked: bool,
    /// Gap repair, when asked for (`repair.rs`).
    repair: Option<Box<Repair<T>>>,
}

/// `Stream` item error: this many messages were lost (the stream goes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lagged(pub u64);

impl fmt::Display for Lagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lagged, {} messages dropped", self.0)
    }
}

impl std::error::Error for Lagged {}

impl<T: Clone + Send + Sync + 'static> Subscriber<T> {
    pub(crate) fn new(inbox: Arc<Inbox<T>>, hub: Arc<Inner<T>>, repair: Option<Box<Repair<T>>>) -> Self {
        Subscriber { inbox, hub, terminated: false, stream_parked: false, repair }
    }

    /// Messages lost to this subscriber and handed out again from a topic's
    /// history (gap repair: [`SubscribeOptions::repair`](crate::SubscribeOptions::repair));
    /// 0 without repair.
    pub fn repaired(&self) -> u64 {
        self.repair.as_ref().map_or(0, |r| r.repaired())
    }

    /// Missed messages left out because a newer one with the same key was
    /// handed out ([`Overflow::Conflate`]); 0 otherwise.
    pub fn conflated(&self) -> u64 {
        self.repair.as_ref().map_or(0, |r| r.conflated())
    }

    /// `(repaired, conflated)` since the last call, if either moved: what a
    /// transport announces to its client (a notice before the messages).
    pub fn take_repairs(&mut self) -> Option<(u64, u64)> {
        self.repair.as_mut().and_then(|r| r.take_news())
    }

    /// The receive step every future and the stream share: through the
    /// repair when there is one.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut impl Sink<T>,
        max: usize,
    ) -> Poll<Result<usize, RecvError>> {
        let inbox = &self.inbox;
        match &mut self.repair {
            None => inbox.poll_recv_many(cx, sink, max),
            Some(rep) => {
                rep.recv(inbox, &*self.hub, sink, max, |buf, max| inbox.poll_recv_many(cx, buf, max))
            }
        }
    }

    /// The non-blocking receive step, through the repair when there is one.
    fn try_take(&mut self, sink: &mut impl Sink<T>, max: usize) -> Result<usize, TryRecvError> {
        let inbox = &self.inbox;
        let Some(rep) = &mut self.repair else {
            return inbox.try_pop_into(sink, max);
        };
        let polled = rep.recv(inbox, &*self.hub, sink, max, |buf, max| {
            Poll::Ready(match inbox.try_pop_into(buf, max) {
                Ok(n) => Ok(n),
                Err(TryRecvError::Empty) => Ok(0),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed(r)) => Err(RecvError::Closed(r)),
            })
        });
        match polled {
            Poll::Ready(Ok(n)) => Ok(n),
            Poll::Ready(Err(RecvError::Lagged(n))) => Err(TryRecvError::Lagged(n)),
            Poll::Ready(Err(RecvError::Closed(r))) => Err(TryRecvError::Closed(r)),
            Poll::Pending => Ok(0),
        }
    }

    /// Its id, for [`Hub::send_to`](crate::Hub::send_to), `join` and `kick`.
    pub fn id(&self) -> SubscriberId {
        self.inbox.id
    }

    /// Ring slots.
    pub fn capacity(&self) -> usize {
        self.inbox.capacity()
    }

    /// Messages queued right now: in its ring, and still to take in the
    /// shared logs it reads ([`TopicOptions::shared_log`](crate::TopicOptions)).
    pub fn len(&self) -> usize {
        self.inbox.queued()
    }

    /// Nothing queued right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.inbox.overflow()
    }

    /// Closing or closed: nothing new will arrive (queued messages still can be
    /// received).
    pub fn is_closed(&self) -> bool {
        !self.inbox.is_open()
    }

    /// Why it was closed, once it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inbox.close_reason()
    }

    /// Joins `topic`; `Ok(false)` if already a member. Every publish to the topic
    /// that starts after this returns reaches this subscriber.
    pub fn join(&self, topic: &str) -> Result<bool, SubscribeError> {
        self.hub.join_inbox(&self.inbox, topic)
    }

    /// Leaves `topic`; false if it was not a member.
    pub fn leave(&self, topic: &str) -> bool {
        self.hub.leave_inbox(&self.inbox, topic)
    }

    /// Topics joined.
    pub fn topics(&self) -> Vec<Arc<str>> {
        self.inbox.topic_names()
    }

    /// Joins `topic` from a position or with its latest message (see
    /// [`Hub::join_from`](crate::Hub::join_from)).
    pub fn join_from(&self, topic: &str, from: crate::JoinFrom) -> Result<crate::Joined, SubscribeError> {
        if self.hub.is_shut() {
            return Err(SubscribeError::Shutdown);
        }
        self.hub.with_topic(topic, |t| self.hub.join_topic_from(&self.inbox, t, from))
    }

    /// Stops receiving new messages (reason `Unsubscribed`); what is queued can
    /// still be received.
    pub fn close(&self) {
        self.hub.close_inbox(&self.inbox, CloseReason::Unsubscribed);
    }

    /// Receives the next message; lost messages are reported first, as
    /// `Err(Lagged(n))`. Cancel-safe.
    pub fn recv(&mut self) -> Recv<'_, T> {
        self.leave_stream_wait();
        Recv { sub: self, parked: false }
    }

    /// Receives up to `max` messages into `buf` (appending); waits only if none is
    /// queued. Returns how many. Cancel-safe: a message is in `buf` once popped.
    pub fn recv_many<'a>(&'a mut self, buf: &'a mut Vec<Message<T>>, max: usize) -> RecvMany<'a, T> {
        self.leave_stream_wait();
        RecvMany { sub: self, buf, max, parked: false }
    }

    /// Receives without waiting.
    pub fn try_recv(&mut self) -> Result<Message<T>, TryRecvError> {
        self.leave_stream_wait();
        if self.repair.is_none() {
            return self.inbox.try_pop();
        }
        let mut slot = None;
        self.try_take(&mut slot, 1)?;
        slot.ok_or(TryRecvError::Empty)
    }

    /// Receives up to `max` queued messages into `buf` without waiting (a
    /// batch is taken with one atomic claim). `Ok(0)` when nothing is queued;
    /// lag and close are reported as by [`Subscriber::try_recv`].
    pub fn try_recv_many(&mut self, buf: &mut Vec<Message<T>>, max: usize) -> Result<usize, TryRecvError> {
        self.leave_stream_wait();
        if max == 0 {
            return Ok(0);
        }
        self.try_take(buf, max)
    }

    /// A `poll_next` parked and its `next()` was dropped: take its waker back.
    fn leave_stream_wait(&mut self) {
        if self.stream_parked {
            self.stream_parked = false;
            self.inbox.unpark();
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn inbox(&self) -> &Arc<Inbox<T>> {
        &self.inbox
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.hub.close_inbox(&self.inbox, CloseReason::Unsubscribed);
        self.leave_stream_wait();
        // Sealed: nothing enters after this, and what is queued is counted.
        self.hub.counters.discarded(self.inbox.discard());
        // The shared logs it read: what it never took there is counted
        // when each log's writer settles it (the cleanup worker asks).
        self.hub.request_settle(self.inbox.leave_logs());
    }
}

impl<T: Clone + Send + Sync + 'static> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id())
            .field("queued", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.close_reason())
            .finish()
    }
}

/// Future of [`Subscriber::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T: Clone + Send + Sync + 'static> {
    sub: &'a mut Subscriber<T>,
    parked: bool,
}

impl<T: Clone + Send + Sync + 'static> Future for Recv<'_, T> {
    type Output = Result<Message<T>, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slot = None;
        match this.sub.poll_take(cx, &mut slot, 1) {
            Poll::Ready(r) => {
                this.parked = false;
                Poll::Ready(r.map(|_| slot.expect("one message popped")))
            }
            Poll::Pending => {
                this.parked = true;
                Poll::Pending
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        if self.parked {
            self.sub.inbox.unpark();
        }
    }
}

/// Future of [`Subscriber::recv_many`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvMany<'a, T: Clone + Send + Sync + 'static> {
    sub: &'a mut Subscriber<T>,
    buf: &'a mut Vec<Message<T>>,
    max: usize,
    parked: bool,
}

impl<T: Clone + Send + Sync + 'static> Future for RecvMany<'_, T> {
    type Output = Result<usize, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.max == 0 {
            return Poll::Ready(Ok(0));
        }
        match this.sub.poll_take(cx, this.buf, this.max) {
            Poll::Ready(r) => {
                this.parked = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.parked = true;
                Poll::Pending
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for RecvMany<'_, T> {
    fn drop(&mut self) {
        if self.parked {
            self.sub.inbox.unpark();
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Stream for Subscriber<T> {
    type Item = Result<Message<T>, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        let mut slot = None;
        let polled = this.poll_take(cx, &mut slot, 1);
        this.stream_parked = polled.is_pending();
        match polled {
            Poll::Ready(Ok(_)) => Poll::Ready(slot.map(Ok)),
            Poll::Ready(Err(RecvError::Lagged(n))) => Poll::Ready(Some(Err(Lagged(n)))),
            Poll::Ready(Err(RecvError::Closed(_))) => {
                this.terminated = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> FusedStream for Subscriber<T> {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}
