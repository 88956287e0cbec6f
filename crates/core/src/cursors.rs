//! A subscriber's cursors into the shared logs of the topics it joined that
//! deliver through one ([`TopicOptions::shared_log`](crate::TopicOptions);
//! the log is `topic_log.rs`).
//!
//! # Who touches it
//!
//! Joins, leaves and the cleanup worker change the set, under the inbox's
//! `topics` lock (so a change never races another), copying it and
//! storing the copy in a [`Snapshot`]; the receiver reads the snapshot on
//! each receive that gets that far, and nobody else reads it. Publishers
//! never see it: a topic's walker reaches its readers through the log.
//!
//! # Receiving
//!
//! A receive takes from one source per call: the ring or one log, so that a
//! lag notice (which a log reports by returning it, having seen it) is
//! never stuck behind messages already taken from elsewhere. Which source
//! goes first alternates per call, and the logs take turns, so that steady
//! traffic in one starves none of the others. A topic's messages are in
//! its log, in `seq` order, with one exception: a join from a position
//! replays what it missed into the ring (`recovery.rs`), and the log
//! goes on after it. So a link keeps the ring position it waits for
//! (`after`): its log is not read until the receiver has taken the ring
//! up to there, and the replay and the log come out in `seq` order. The
//! link is stored held (`HELD`) before its cursor can be admitted and
//! given its position after the replay, both while the replay holds the
//! topic's walk, so no append reaches a reader that could see it early.
//! Everything else the ring holds (broadcasts, direct sends, other
//! topics) has no order with the log, as between any two topics.
//!
//! # Parking
//!
//! A receiver that found nothing parks on its ring (inbox.rs, "Waking") and
//! on each log (`TopicLog::park`), with the same waker, then looks again;
//! either a log's writer sees it parked, or its second look sees the new
//! message.

use std::sync::Arc;
use std::task::Waker;

use crate::inbox::Sink;
use crate::loom::{AtomicBool, AtomicUsize, Ordering, Snapshot};
use crate::topic::TopicInner;
use crate::topic_log::{Cursor, TopicLog};

/// One shared log (a joined topic's, or the broadcasts') and this
/// subscriber's cursor in it.
struct Link<T> {
    log: Arc<TopicLog<T>>,
    cursor: Arc<Cursor>,
    /// The ring position the receiver must have taken up to before this
    /// log is read (see the module docs); 0 for a join from now.
    after: usize,
    /// The topic whose log this is (`None`: the broadcasts'), for the
    /// settle when the subscriber leaves it.
    topic: Option<Arc<TopicInner<T>>>,
}

impl<T> Clone for Link<T> {
    fn clone(&self) -> Self {
        Link {
            log: self.log.clone(),
            cursor: self.cursor.clone(),
            after: self.after,
            topic: self.topic.clone(),
        }
    }
}

/// A log a subscriber left, to be settled by the topic's walk (see
/// `Inner::settle_left`): the topic, or `None` for the broadcasts.
pub(crate) type Left<T> = Option<Arc<TopicInner<T>>>;

/// A link's `after` until the replay before it is in the ring.
pub(crate) const HELD: usize = usize::MAX;

/// The cursors of one subscriber (see the module docs).
pub(crate) struct Cursors<T> {
    links: Snapshot<Vec<Link<T>>>,
    /// Whether `links` is not empty: a subscriber of ring topics only never
    /// loads the snapshot.
    any: AtomicBool,
    /// The receiver handed out `Closed`: nothing is taken from the logs
    /// after it (set under the `topics` lock, so no join that raced the
    /// close can set `any` again).
    done: AtomicBool,
    /// The receiver has sealed the cursors itself (once, in its final drain).
    receiver_sealed: AtomicBool,
    /// The receiver's own: which log goes first next time, and whether the
    /// logs go before the ring (`Relaxed`: only the receiver uses them).
    turn: AtomicUsize,
}

impl<T> Cursors<T> {
    pub(crate) fn new() -> Self {
        Cursors {
            links: Snapshot::new(Vec::new()),
            any: AtomicBool::new(false),
            done: AtomicBool::new(false),
            receiver_sealed: AtomicBool::new(false),
            turn: AtomicUsize::new(0),
        }
    }

    /// Adds a cursor in `topic`'s log, if it has one, read once the ring
    /// is taken up to `after` (0, or [`HELD`] until [`Cursors::release`]).
    /// Call under the inbox's `topics` lock, once per join.
    /// `evict`: the subscriber's policy is `Evict` (the topic's, if it
    /// has one, decides).
    pub(crate) fn join(&self, topic: &Arc<TopicInner<T>>, after: usize, evict: bool) -> bool {
        match topic.seq.shared_log() {
            Some(log) => {
                let evict = topic.seq.overflow().map_or(evict, |o| o == crate::Overflow::Evict);
                self.join_log_after(log, after, evict, Some(topic.clone()))
            }
            None => false,
        }
    }

    /// Adds a cursor in `log` (the broadcasts'). Call under the inbox's
    /// `topics` lock.
    pub(crate) fn join_log(&self, log: &Arc<TopicLog<T>>, after: usize, evict: bool) -> bool {
        self.join_log_after(log, after, evict, None)
    }

    /// True when it added a link: the receiver, if parked, must be woken
    /// to park on the new log too (it parked on the logs it had).
    fn join_log_after(&self, log: &Arc<TopicLog<T>>, after: usize, evict: bool, topic: Left<T>) -> bool {
        let mut links = (*self.links.load_full()).clone();
        if links.iter().any(|l| Arc::ptr_eq(&l.log, log)) {
            // Linked already (a join that raced the topic's switch).
            return false;
        }
        // The link is stored before the cursor is offered to the writer,
        // so a held link is held from the cursor's first message.
        let cursor = Arc::new(Cursor::new());
        cursor.set_evict(evict);
        links.push(Link { log: log.clone(), cursor: cursor.clone(), after, topic });
        self.links.store(Arc::new(links));
        self.any.store(!self.done.load(Ordering::Relaxed), Ordering::Release);
        log.join_cursor(cursor);
        true
    }

    /// Gives a link held by [`Cursors::join`] the ring position it waits
    /// for. Call under the inbox's `topics` lock, before the topic's walk
    /// that replayed into the ring is released.
    pub(crate) fn release(&self, topic: &Arc<TopicInner<T>>, after: usize) {
        let Some(log) = topic.seq.shared_log() else { return };
        let mut links = (*self.links.load_full()).clone();
        if let Some(l) = links.iter_mut().find(|l| Arc::ptr_eq(&l.log, log)) {
            l.after = after;
            self.links.store(Arc::new(links));
        }
    }

    /// Gives up the cursor in `topic`'s log, if any. Call under the inbox's
    /// `topics` lock.
    pub(crate) fn leave(&self, topic: &Arc<TopicInner<T>>) {
        let Some(log) = topic.seq.shared_log() else { return };
        let mut links = (*self.links.load_full()).clone();
        if let Some(i) = links.iter().position(|l| Arc::ptr_eq(&l.log, log)) {
            let gone = links.swap_remove(i);
            gone.log.leave(&gone.cursor);
            self.any.store(!links.is_empty() && !self.done.load(Ordering::Relaxed), Ordering::Release);
            self.links.store(Arc::new(links));
        }
    }

    /// Gives up every cursor (the subscriber is gone); returns the logs
    /// left, for their settle. Call under the inbox's `topics` lock.
    pub(crate) fn leave_all(&self) -> Vec<Left<T>> {
        let links = self.links.load_full();
        for l in links.iter() {
            l.log.leave(&l.cursor);
        }
        self.any.store(false, Ordering::Release);
        self.links.store(Arc::new(Vec::new()));
        links.iter().map(|l| l.topic.clone()).collect()
    }

    /// Whether the receiver sealed its cursors already; marks it done (the
    /// receiver's own, `Relaxed`).
    pub(crate) fn sealed_by_receiver(&self) -> bool {
        self.receiver_sealed.swap(true, Ordering::Relaxed)
    }

    /// Whether the receiver has not yet handed out `Closed`.
    pub(crate) fn is_open(&self) -> bool {
        !self.done.load(Ordering::Relaxed)
    }

    /// The receiver handed out `Closed`: the logs give nothing more (see
    /// `done`). Call under the inbox's `topics` lock.
    pub(crate) fn close(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.any.store(false, Ordering::Release);
    }

    /// The subscriber closed: each cursor takes nothing appended from now
    /// on (`TopicLog::seal`). Any thread; a link added after this is sealed
    /// by the cleanup worker's call.
    pub(crate) fn seal(&self) {
        if self.any.load(Ordering::Acquire) {
            self.links.with(|links| links.iter().for_each(|l| l.log.seal(&l.cursor)));
        }
    }

    /// Messages in the logs still to take.
    pub(crate) fn unread(&self) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        self.links.with(|links| links.iter().map(|l| l.log.unread(&l.cursor) as usize).sum())
    }

    /// A parked receive was cancelled: no log keeps its waker.
    pub(crate) fn unpark(&self) {
        if self.any.load(Ordering::Acquire) {
            self.links.with(|links| links.iter().for_each(|l| l.log.unpark(&l.cursor)));
        }
    }

    /// Whether the logs go before the ring this time (alternates, per
    /// receive of a subscriber with logs).
    pub(crate) fn logs_first(&self) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let turn = self.turn.load(Ordering::Relaxed);
        self.turn.store(turn.wrapping_add(1), Ordering::Relaxed);
        turn & 1 == 1
    }

    /// Takes up to `max` messages from one log (the first, in turn, that has
    /// any and is not waiting for the ring, whose taken position is
    /// `ring_at()`), or `Err(lost)`: that log's next item is a loss.
    pub(crate) fn take(
        &self,
        buf: &mut impl Sink<T>,
        max: usize,
        ring_at: impl Fn() -> usize,
    ) -> Result<usize, u64> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(0);
        }
        let turn = self.turn.load(Ordering::Relaxed);
        self.links.with(|links| {
            let k = links.len();
            for i in 0..k {
                let l = &links[(turn / 2 + i) % k];
                if l.after != 0 && l.after > ring_at() {
                    continue;
                }
                match l.log.take(&l.cursor, buf, max) {
                    Ok(0) => continue,
                    Ok(n) => return Ok(n),
                    Err(lost) => return Err(lost),
                }
            }
            Ok(0)
        })
    }

    /// True once after the writer of `log` moved this subscriber's `Evict`
    /// reader there (see `Cursor::take_evicted`).
    pub(crate) fn evicted_from(&self, log: &Arc<TopicLog<T>>) -> bool {
        self.links.with(|links| links.iter().any(|l| Arc::ptr_eq(&l.log, log) && l.cursor.take_evicted()))
    }

    /// Parks on every log; true if one has something already (take again).
    pub(crate) fn park(&self, waker: &Waker) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.links.with(|links| {
            let mut ready = false;
            for l in links.iter() {
                ready |= l.log.park(&l.cursor, waker);
            }
            ready
        })
    }
}
