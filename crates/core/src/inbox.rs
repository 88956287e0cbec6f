//! A subscriber's shared half: its ring, its life-cycle word, its waker and its
//! lag counter. Publishers hold it through the snapshots; the [`Subscriber`]
//! handle owns the receiving side.
//!
//! # Delivering
//!
//! [`Inbox::offer`] tries to queue one message. It never blocks and never
//! allocates: it checks the state word (a closing inbox is skipped), the ring's
//! length against the room the message's [`Priority`] may use, and pushes a clone
//! of the message handle. When the message does not fit, the inbox's [`Overflow`]
//! policy decides, and every message lost to this subscriber is added to its lag
//! counter, which the receiver reports as [`RecvError::Lagged`] before anything
//! else.
//!
//! # Lag at its position
//!
//! A loss is reported where it happened in the stream, so that a subscriber
//! checking `seq` sees every gap announced, never a gap first and its notice
//! after:
//!
//! - A message that does not enter (`DropNewest`, the high-water mark,
//!   `Evict`) would have gone to the ring's `tail` position `t`: the
//!   publisher adds it to `lagged` and lowers `lag_at` to `t` (both `SeqCst`),
//!   before it pushes anything later. The receiver takes no position at or
//!   past `lag_at` (read *after* it saw those positions' stamps, so a later
//!   message that it can see brings the `lag_at` written before it), and at
//!   `lag_at` reports `Lagged(n)`. Drops at several positions before the
//!   receiver reaches the first are reported together at the first (early,
//!   never late).
//! - A message displaced from the ring (`DropOldest`, `Urgent`) leaves a jump
//!   in `head`: the receiver keeps the position it expects next (`next`), and
//!   when `head` has moved past it, reports the difference before it takes
//!   anything. No counter is needed, and the report is exactly at the gap.
//!
//! # Waking (coalesced)
//!
//! After pushing its run of messages into a ring, a publisher calls
//! [`Inbox::notify`], which wakes the receiver *only if it is parked*. A receiver
//! parks by registering its waker, setting `parked`, and checking the ring again.
//! The two sides form a Dekker pair:
//!
//! ```text
//! publisher: push (store)       ; fence(SeqCst) ; load parked
//! receiver:  parked.swap(true)  ; fence(SeqCst) ; pop (load)
//! ```
//!
//! With both fences sequentially consistent, at least one side sees the other's
//! store: either the publisher sees `parked` and wakes, or the receiver's second
//! look finds the message. The walk issues the publisher's fence once for a
//! group of inboxes ([`Inbox::wake_if_parked`] after the fence,
//! `Members::offer_each_from`): each push still precedes the fence, and the
//! fence the load of that inbox's `parked`. A receiver that is busy draining is never woken, so
//! under load one wake drains many messages.
//!
//! # Closing
//!
//! The state word holds the stage in its low two bits and the [`CloseReason`]
//! above them, so stage and reason change together in one CAS:
//! open → closing (by whoever closes first: eviction, kick, unsubscribe, shutdown;
//! the others see the CAS fail and do nothing) → closed (by the cleanup worker,
//! once the inbox is out of every snapshot). Each step happens once, so closing
//! twice, evicting during a publish, or unsubscribing during an eviction are
//! harmless. A closing inbox keeps its ring: the receiver drains what is queued,
//! then sees `Closed(reason)`.
//!
//! A publisher that read "open" just before a close may still push a run after
//! it. The close is made terminal by the ring's seal (`ring.rs`, "Sealing"):
//! the receiver that sees the close seals the ring, drains everything reserved
//! before the seal (waiting for a slot still being written), reports a lag
//! counted meanwhile, and only then returns `Closed`; a push after the seal
//! finds nothing to reserve and is not counted as a delivery. A subscriber
//! dropped with messages still queued takes them out the same way and counts
//! them as discarded ([`Inbox::discard`]). The shared logs it reads
//! (`cursors.rs`) follow: the close seals each cursor at its log's head,
//! the receiver drains them up to there after its ring, and the drop
//! leaves them, the log's writer counting what was not taken as
//! discarded. So every message counted as
//! delivered (queued) is received, displaced by a later one (`DropOldest`,
//! `Urgent`), or discarded with its subscriber: `delivered == received +
//! displaced + discarded`, exactly.

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::config::Overflow;
use crate::cursors::Cursors;
use crate::error::{CloseReason, RecvError};
use crate::loom::{
    fence, lock, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, AtomicWaker, Backoff, Mutex, Ordering,
};
use crate::message::{Envelope, Message, Priority};
use crate::ring::{Displace, Forced, Ring};
use crate::shared::Prepaid;
use crate::topic::TopicInner;
use crate::SubscriberId;

const STAGE_MASK: u8 = 0b11;
const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;
const REASON_SHIFT: u8 = 2;

/// Why a message did not enter a subscriber's ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// A `Normal` message found the ring at or above its high-water mark.
    HighWater,
    /// The ring was full.
    Full,
}

/// The outcome of one [`Inbox::offer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued.
    Delivered,
    /// Queued, after displacing this many older messages (lost, and counted as lag).
    Displaced(u32),
    /// Not queued.
    Dropped(DropReason),
    /// Not queued, and the subscriber must be evicted (`Overflow::Evict`): the
    /// caller closes it with `SlowConsumer` and asks the cleanup worker to remove it.
    Evict,
    /// The inbox is closing or closed: not a recipient.
    Skipped,
    /// The ring was sealed while this message was making room for itself: not
    /// a recipient, but this many older messages were displaced first.
    SkippedAfterDisplacing(u32),
    /// Not queued: the oldest queued message outranks it (a `DropOldest`
    /// message does not displace a higher priority); dropped, after
    /// displacing this many of lower or equal priority. Internal to
    /// [`Inbox::apply_overflow`], which turns it into a drop.
    Outranked(u32),
    /// Not queued (dropped, for this reason), after displacing this many
    /// older messages of lower or equal priority.
    DroppedAfterDisplacing(DropReason, u32),
}

/// An inbox's fields that every push reads, kept on the ring's publishers'
/// line (`ring.rs`, "Two lines").
struct PutFields {
    /// `Normal` messages enter only while the ring holds fewer than this many;
    /// `1 ..= capacity`.
    high_water: usize,
    overflow: Overflow,
    /// Stage (bits 0-1: open, closing, closed) and close reason (bits 2-3, valid
    /// once the stage is not open). Only ever moves forward.
    state: AtomicU8,
    /// True while the receiver has registered its waker and found the ring empty.
    /// Set by the receiver (`AcqRel` swap: a publisher that sees it also sees
    /// the waker registered before it), cleared by whoever wakes it.
    parked: AtomicBool,
}

/// An inbox's fields that every take reads, kept on the ring's taker's line.
struct TakeFields {
    /// The receiver's own: the position after the last one it took or
    /// reported. `head` past it means publishers displaced the difference.
    next: AtomicUsize,
    /// The ring position of the earliest message not reported yet that did
    /// not enter (`usize::MAX`: none). Written by publishers only on a drop.
    lag_at: AtomicUsize,
    /// Messages that did not enter this subscriber's ring and have not been
    /// reported yet (see "Lag at its position").
    lagged: AtomicU64,
}

pub(crate) struct Inbox<T> {
    pub(crate) id: SubscriberId,
    ring: Ring<T, PutFields, TakeFields>,
    waker: AtomicWaker,
    /// Topics joined. Locked by join, leave and the cleanup worker, never by a
    /// publisher. A join checks the state under this lock, so once the inbox is
    /// closing no topic can be added behind the cleanup worker's back. Each
    /// with the topic's `seq` read right after the join: every message after
    /// it is owed to this subscriber (gap repair, `repair.rs`, owes nothing
    /// older after a leave and a join again).
    topics: Mutex<Vec<(Arc<TopicInner<T>>, u64)>>,
    /// Cursors into the shared logs of joined topics that have one
    /// (`cursors.rs`); changed under `topics`.
    cursors: Cursors<T>,
}

impl<T> Inbox<T> {
    pub(crate) fn new(
        id: SubscriberId,
        capacity: usize,
        high_water: usize,
        overflow: Overflow,
        lazy_ring: bool,
    ) -> Self {
        let put = PutFields {
            high_water: high_water.clamp(1, capacity),
            overflow,
            state: AtomicU8::new(OPEN),
            parked: AtomicBool::new(false),
        };
        let take = TakeFields {
            next: AtomicUsize::new(0),
            lag_at: AtomicUsize::new(usize::MAX),
            lagged: AtomicU64::new(0),
        };
        let ring = Ring::with(capacity, put, take);
        if !lazy_ring {
            ring.allocate();
        }
        Inbox { id, ring, waker: AtomicWaker::new(), topics: Mutex::new(Vec::new()), cursors: Cursors::new() }
    }

    /// The fields on the publishers' line.
    #[inline]
    fn p(&self) -> &PutFields {
        self.ring.put_extra()
    }

    /// The fields on the taker's line.
    #[inline]
    fn q(&self) -> &TakeFields {
        self.ring.take_extra()
    }

    /// Brings the lines a push into this inbox reads into the cache: its
    /// publishers' line now, and (`slot`) the stamp and slot of the next
    /// position, which needs that line (a hint; see `members.rs`).
    #[inline]
    pub(crate) fn prefetch(&self, slot: bool) {
        // Not under loom: hints order nothing, and a model need not explore
        // the loads of `tail` they make.
        #[cfg(not(loom))]
        if slot {
            self.ring.prefetch_next_slot();
        } else {
            self.ring.prefetch_put();
        }
        #[cfg(loom)]
        let _ = slot;
    }

    pub(crate) fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Messages queued for the receiver: in the ring, and still to take in
    /// the shared logs it reads.
    pub(crate) fn queued(&self) -> usize {
        self.ring.len() + self.cursors.unread()
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.p().overflow
    }

    /// Queues `msg` if the subscriber is open and the message may enter. The
    /// receiver is not woken: call [`Inbox::notify`] after the run of offers.
    ///
    /// `depth` is raised to the ring length seen, when one was read.
    #[inline]
    pub(crate) fn offer(&self, msg: &Message<T>, priority: Priority, depth: &mut usize) -> Offer {
        self.offer_with(|| msg.clone(), priority, depth)
    }

    /// [`Inbox::offer`] with the handle made by `make` (a clone, or a draw on
    /// prepaid references), called once per message that enters.
    #[inline]
    fn offer_with(&self, make: impl Fn() -> Message<T>, priority: Priority, depth: &mut usize) -> Offer {
        // Relaxed: only a hint. A close racing this check is covered by the
        // receiver draining the ring before it reports `Closed`.
        if self.p().state.load(Ordering::Relaxed) & STAGE_MASK != OPEN {
            return Offer::Skipped;
        }
        match priority {
            Priority::Normal if self.p().high_water < self.ring.capacity() => {
                let len = self.ring.len();
                if len > *depth {
                    *depth = len;
                }
                if len >= self.p().high_water {
                    return self.apply_overflow(
                        self.p().overflow,
                        &make,
                        DropReason::HighWater,
                        self.ring.tail(),
                        priority,
                    );
                }
            }
            Priority::Urgent => return self.force(make(), Priority::Urgent),
            _ => {}
        }
        let run = self.ring.reserve(1);
        if run.n == 1 {
            run.write_as(0, make(), priority);
            return Offer::Delivered;
        }
        if run.sealed {
            return Offer::Skipped;
        }
        self.apply_overflow(self.p().overflow, &make, DropReason::Full, run.pos, priority)
    }

    /// Queues `m` (of `priority`), displacing the oldest messages of at most
    /// its priority until it fits (`Urgent`: any). `None` when the oldest
    /// message outranks it: it stays out, and the caller drops it. Displaced
    /// messages are announced by the jump in `head` they leave (see "Lag at
    /// its position").
    fn force(&self, m: Message<T>, priority: Priority) -> Offer {
        match self.ring.force_push_as(m, priority) {
            Forced::In(0) => Offer::Delivered,
            Forced::In(n) => Offer::Displaced(n as u32),
            Forced::Sealed(0) => Offer::Skipped,
            Forced::Sealed(n) => Offer::SkippedAfterDisplacing(n as u32),
            Forced::Outranked(n) => Offer::Outranked(n as u32),
        }
    }

    /// Offers a run of messages of one priority, in order, counting each
    /// outcome into `r`; wakes nobody (call [`Inbox::notify`] when it returns
    /// `queued`). Returns `(queued, evict)`: whether anything entered the ring,
    /// and whether the subscriber must be evicted (`Overflow::Evict`); after an
    /// eviction the rest of the run is not offered (the subscriber is closing).
    ///
    /// Same outcomes as calling [`Inbox::offer`] per message, with the state
    /// word read once per run, and the room (the high-water mark for `Normal`
    /// messages) checked by the reservation itself: one CAS reserves as much
    /// of the rest of the run as the limit allows. A single message costs one
    /// reservation and no separate length read; `r.depth` is raised to the
    /// ring length whenever a reservation read `head` (see `Run::depth`).
    #[inline]
    pub(crate) fn offer_run(
        &self,
        run: &[Option<Prepaid<'_, Envelope<T>>>],
        priority: Priority,
        r: &mut crate::stats::PublishReport,
    ) -> (bool, bool) {
        self.offer_run_as(run, priority, None, r)
    }

    /// [`Inbox::offer_run`] with the topic's overflow policy, when it has
    /// its own, in place of the subscriber's.
    #[inline]
    pub(crate) fn offer_run_as(
        &self,
        run: &[Option<Prepaid<'_, Envelope<T>>>],
        priority: Priority,
        overflow: Option<Overflow>,
        r: &mut crate::stats::PublishReport,
    ) -> (bool, bool) {
        // Every slot of a run holds a message (the `Option` only lets the
        // caller build the run on the stack); a hole would be a caller bug.
        let msg = |i: usize| run[i].as_ref().expect("a run has no holes");
        let p = self.p();
        if p.state.load(Ordering::Relaxed) & STAGE_MASK != OPEN {
            return (false, false);
        }
        let cap = self.ring.capacity();
        if priority == Priority::Urgent {
            let mut queued = false;
            for i in 0..run.len() {
                let pre = msg(i);
                let offer = self.offer_with(|| Message::from_prepaid(pre), priority, &mut r.depth);
                r.count(offer);
                queued = true;
            }
            return (queued, false);
        }
        let limit = if priority == Priority::Normal { p.high_water } else { cap };
        if run.len() == 1 && self.ring.try_push_one(limit, priority, || Message::from_prepaid(msg(0))) {
            r.delivered += 1;
            r.recipients += 1;
            return (true, false);
        }
        let checked = limit < cap;
        let mut queued = false;
        let mut next = 0;
        while next < run.len() {
            // One CAS reserves as much of the rest of the run as fits below
            // the limit, checked inside the reservation (another publisher,
            // of another topic, may be filling the same ring).
            let reserved = self.ring.reserve_within(limit, run.len() - next);
            if reserved.sealed {
                // The receiver has seen the close: the rest is not offered.
                return (queued, false);
            }
            if checked && reserved.depth > r.depth {
                r.depth = reserved.depth;
            }
            let n = reserved.n;
            if n > 0 {
                for i in 0..n {
                    reserved.write_as(i, Message::from_prepaid(msg(next + i)), priority);
                }
                next += n;
                r.delivered += n as u64;
                r.recipients += n as u64;
                queued = true;
                continue;
            }
            // No room for the next message: the policy decides, one message.
            // It would have gone to the tail the reservation saw.
            let pre = msg(next);
            next += 1;
            let reason = if checked { DropReason::HighWater } else { DropReason::Full };
            let policy = match (overflow, p.overflow) {
                (None, own) => own,
                // A conflated topic's message is dropped (and repaired from
                // the history), never a reason to evict; a subscriber that
                // sheds its oldest keeps doing so.
                (Some(Overflow::Conflate), own @ (Overflow::DropOldest | Overflow::Conflate)) => own,
                (Some(Overflow::Conflate), _) => Overflow::DropNewest,
                (Some(topic), _) => topic,
            };
            let offer =
                self.apply_overflow(policy, &|| Message::from_prepaid(pre), reason, reserved.pos, priority);
            r.count(offer);
            match offer {
                Offer::Evict => return (queued, true),
                Offer::Displaced(_) | Offer::Delivered => queued = true,
                Offer::Skipped | Offer::SkippedAfterDisplacing(_) => return (queued, false),
                Offer::Dropped(_) | Offer::DroppedAfterDisplacing(..) | Offer::Outranked(_) => {}
            }
        }
        (queued, false)
    }

    /// The message did not fit; it would have gone to position `at`: apply
    /// the policy.
    #[cold]
    fn apply_overflow(
        &self,
        policy: Overflow,
        make: &impl Fn() -> Message<T>,
        reason: DropReason,
        at: usize,
        priority: Priority,
    ) -> Offer {
        match policy {
            Overflow::Evict => {
                self.record_drop(at);
                Offer::Evict
            }
            Overflow::DropNewest => {
                self.record_drop(at);
                Offer::Dropped(reason)
            }
            Overflow::DropOldest | Overflow::Conflate => {
                // At the high-water mark, take one out to stay below it; when
                // full, force displaces one. Either loss is counted. Only a
                // message of at most this one's priority is displaced: when
                // the oldest outranks it, this one is dropped instead (as
                // `DropNewest` would), so priorities hold on both sides.
                let mut lost = 0u32;
                if reason == DropReason::HighWater {
                    match self.ring.displace_up_to(priority) {
                        Displace::Taken(old) => {
                            drop(old);
                            lost += 1;
                        }
                        Displace::Outranked => {
                            self.record_drop(at);
                            return Offer::Dropped(reason);
                        }
                        Displace::Empty => {}
                    }
                }
                match (self.force(make(), priority), lost) {
                    (Offer::Outranked(n), l) => {
                        self.record_drop(at);
                        match n + l {
                            0 => Offer::Dropped(reason),
                            k => Offer::DroppedAfterDisplacing(reason, k),
                        }
                    }
                    (offer, 0) => offer,
                    (Offer::Delivered, l) => Offer::Displaced(l),
                    (Offer::Displaced(n), l) => Offer::Displaced(n + l),
                    (Offer::Skipped, l) => Offer::SkippedAfterDisplacing(l),
                    (Offer::SkippedAfterDisplacing(n), l) => Offer::SkippedAfterDisplacing(n + l),
                    (other, _) => unreachable!("force gives {other:?}"),
                }
            }
        }
    }

    /// A message that would have gone to position `at` did not enter: count
    /// it, and mark its place (see "Lag at its position"). `SeqCst`, with the
    /// receiver's reset in `take_lag`: a drop counted after the receiver took
    /// the count also lowers `lag_at` after the receiver cleared it.
    fn record_drop(&self, at: usize) {
        self.q().lagged.fetch_add(1, Ordering::SeqCst);
        self.q().lag_at.fetch_min(at, Ordering::SeqCst);
    }

    /// `n` messages of a topic never reached this ring (its numbering moved
    /// past them: `numbered.rs`): reported as a lag before whatever is
    /// pushed next, as drops are.
    pub(crate) fn record_loss(&self, n: u64) {
        self.q().lagged.fetch_add(n, Ordering::SeqCst);
        self.q().lag_at.fetch_min(self.ring.tail(), Ordering::SeqCst);
    }

    /// Wakes the receiver if, and only if, it is parked; true if it woke it.
    #[inline]
    pub(crate) fn notify(&self) -> bool {
        // Pairs with the fence in `poll_*`: see "Waking" in the module docs.
        fence(Ordering::SeqCst);
        self.wake_if_parked()
    }

    /// [`Inbox::notify`] without its fence: the caller issued a `SeqCst`
    /// fence after its pushes into this inbox and before this call (one fence
    /// for a group of inboxes: `Members::offer_each_from`).
    #[inline]
    pub(crate) fn wake_if_parked(&self) -> bool {
        let parked = &self.p().parked;
        // Relaxed load: ordered after the caller's fence, which is what the
        // Dekker pair needs; the swap's Acquire pairs with the receiver's
        // AcqRel swap that set it, so the waker it registered is visible.
        if parked.load(Ordering::Relaxed) && parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
            return true;
        }
        false
    }

    pub(crate) fn is_open(&self) -> bool {
        self.p().state.load(Ordering::Acquire) & STAGE_MASK == OPEN
    }

    /// Closing, not yet removed by the cleanup worker.
    pub(crate) fn is_closing(&self) -> bool {
        self.p().state.load(Ordering::Acquire) & STAGE_MASK == CLOSING
    }

    /// The reason, once closing or closed.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        let s = self.p().state.load(Ordering::Acquire);
        if s & STAGE_MASK == OPEN {
            None
        } else {
            Some(CloseReason::from_u8(s >> REASON_SHIFT))
        }
    }

    /// open → closing. True for the one caller that made the transition; it must
    /// then have the inbox removed. Wakes the receiver so that it sees the close.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let next = CLOSING | ((reason as u8) << REASON_SHIFT);
        // AcqRel: the receiver's Acquire load of the state sees the reason, and
        // the waker handshake below is ordered after the transition.
        if self.p().state.compare_exchange(OPEN, next, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        // Before the wake: a woken receiver finds its logs sealed here; one
        // that saw the close sooner seals them itself (`final_drain`).
        self.cursors.seal();
        self.p().parked.store(false, Ordering::Relaxed);
        self.waker.wake();
        true
    }

    /// closing → closed, by the cleanup worker once the inbox is in no snapshot.
    pub(crate) fn finish(&self) -> bool {
        let cur = self.p().state.load(Ordering::Acquire);
        if cur & STAGE_MASK != CLOSING {
            return false;
        }
        let next = (cur & !STAGE_MASK) | CLOSED;
        self.p().state.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Takes the count of messages that did not enter, if any, and clears
    /// their position (first: see `record_drop`).
    fn take_lag(&self) -> Option<u64> {
        self.q().lag_at.store(usize::MAX, Ordering::SeqCst);
        match self.q().lagged.swap(0, Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// The receiver's one step: up to `max` messages in order into `buf`,
    /// stopping at a gap; `Err(n)` when the next thing in the stream is the
    /// loss of `n` messages (see "Lag at its position"). `Ok(0)`: nothing
    /// ready.
    fn take_in_order(&self, buf: &mut impl Sink<T>, max: usize) -> Result<usize, u64> {
        loop {
            let h = self.ring.head();
            let expected = self.q().next.load(Ordering::Relaxed);
            if h > expected {
                // Displaced by publishers while queued.
                self.q().next.store(h, Ordering::Relaxed);
                return Err((h - expected) as u64);
            }
            if self.q().lag_at.load(Ordering::SeqCst) <= h {
                if let Some(n) = self.take_lag() {
                    return Err(n);
                }
            }
            match self.ring.take_from(h, max, || self.q().lag_at.load(Ordering::SeqCst), |m| buf.put(m)) {
                Some(n) => {
                    self.q().next.store(h + n, Ordering::Relaxed);
                    if n == 0 && self.q().lag_at.load(Ordering::SeqCst) <= h {
                        // A drop at this very position, seen only now.
                        continue;
                    }
                    return Ok(n);
                }
                // A displacer took the oldest: look again.
                None => continue,
            }
        }
    }

    /// One receive's worth from the ring or from one shared log, whichever
    /// has something, the logs first every other call (see `cursors.rs`).
    fn take_any(&self, buf: &mut impl Sink<T>, max: usize) -> Result<usize, u64> {
        if self.cursors.logs_first() {
            match self.take_logs(buf, max)? {
                0 => self.take_in_order(buf, max),
                n => Ok(n),
            }
        } else {
            match self.take_in_order(buf, max)? {
                0 => self.take_logs(buf, max),
                n => Ok(n),
            }
        }
    }

    /// From the shared logs. (Under `Overflow::Evict`, a reader the writer
    /// moves is closed by the walk that moved it: `Cursor::take_evicted`.)
    fn take_logs(&self, buf: &mut impl Sink<T>, max: usize) -> Result<usize, u64> {
        // The position the receiver has taken or reported up to (a
        // displaced replay is reported before the log goes on).
        self.cursors.take(buf, max, || self.q().next.load(Ordering::Relaxed))
    }

    /// The receiver's fast path for one message: the position it expects
    /// next is `head` (nothing displaced), written, and before any drop still
    /// to report (`lag_at`, read after the stamp as in `take_from`). `None`
    /// sends the caller to [`Inbox::take_in_order`], which sorts out every
    /// other case.
    #[inline]
    fn take_one(&self) -> Option<Message<T>> {
        let q = self.q();
        let h = self.ring.head();
        if q.next.load(Ordering::Relaxed) != h {
            return None;
        }
        let m = self.ring.take_one_at(h, || q.lag_at.load(Ordering::SeqCst))?;
        q.next.store(h + 1, Ordering::Relaxed);
        Some(m)
    }

    /// Non-blocking receive.
    #[inline]
    pub(crate) fn try_pop(&self) -> Result<Message<T>, crate::TryRecvError> {
        if let Some(m) = self.take_one() {
            return Ok(m);
        }
        let mut got = None;
        match self.try_pop_into(&mut got, 1) {
            Ok(_) => got.ok_or(crate::TryRecvError::Empty),
            Err(e) => Err(e),
        }
    }

    /// Non-blocking batch receive.
    #[cfg(all(loom, test))]
    pub(crate) fn try_pop_many(
        &self,
        buf: &mut Vec<Message<T>>,
        max: usize,
    ) -> Result<usize, crate::TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        self.try_pop_into(buf, max)
    }

    pub(crate) fn try_pop_into(
        &self,
        buf: &mut impl Sink<T>,
        max: usize,
    ) -> Result<usize, crate::TryRecvError> {
        let to_try = |e: RecvError| match e {
            RecvError::Lagged(n) => crate::TryRecvError::Lagged(n),
            RecvError::Closed(r) => crate::TryRecvError::Closed(r),
        };
        match self.take_any(buf, max) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            Err(n) => return Err(crate::TryRecvError::Lagged(n)),
        }
        match self.close_reason() {
            Some(reason) => self.final_drain(buf, max, reason).map_err(to_try),
            None => Ok(0),
        }
    }

    /// The receive future's poll: up to `max` messages into `buf` (`max` ≥ 1).
    pub(crate) fn poll_recv_many(
        &self,
        cx: &mut Context<'_>,
        buf: &mut impl Sink<T>,
        max: usize,
    ) -> Poll<Result<usize, RecvError>> {
        match self.take_any(buf, max) {
            Ok(0) => {}
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(n) => return Poll::Ready(Err(RecvError::Lagged(n))),
        }
        if let Some(reason) = self.close_reason() {
            return Poll::Ready(self.final_drain(buf, max, reason));
        }
        // Park: register, announce, look again (see "Waking").
        self.waker.register(cx.waker());
        // An RMW rather than a plain store: it places this write unambiguously
        // after any publisher's `swap(false)` in `parked`'s modification order.
        // With a plain store, loom 0.7 reports a lost wake-up for two racing
        // publishers (`loom_two_publishers_wake_a_parked_receiver`); the RMW
        // costs one atomic per park, not per delivery.
        self.p().parked.swap(true, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        // And on each shared log (its own fence; see `cursors.rs`).
        self.cursors.park(cx.waker());
        let again = self.take_any(buf, max);
        if again != Ok(0) {
            self.p().parked.store(false, Ordering::Relaxed);
            return Poll::Ready(again.map_err(RecvError::Lagged));
        }
        if let Some(reason) = self.close_reason() {
            self.p().parked.store(false, Ordering::Relaxed);
            return Poll::Ready(self.final_drain(buf, max, reason));
        }
        Poll::Pending
    }

    /// The receive side of a close: seal the ring, hand over in order what
    /// was reserved before the seal (waiting for a slot still being written),
    /// then the losses not yet reported, then `Closed` (and `Closed` from then
    /// on: nothing can enter a sealed ring).
    fn final_drain(
        &self,
        buf: &mut impl Sink<T>,
        max: usize,
        reason: CloseReason,
    ) -> Result<usize, RecvError> {
        let end = self.ring.seal();
        let backoff = Backoff::new();
        loop {
            match self.take_in_order(buf, max) {
                Ok(0) if self.ring.head() < end => backoff.snooze(),
                Ok(0) => break,
                Ok(n) => return Ok(n),
                Err(n) => return Err(RecvError::Lagged(n)),
            }
        }
        // The logs, up to their seals. `close` seals them, but a receiver
        // may see the close before that seal, or a join that raced the
        // close may have added a link after it: the receiver seals too,
        // under the lock joins take (the first seal of each cursor holds).
        if self.cursors.is_open() && !self.cursors.sealed_by_receiver() {
            let _mine = lock(&self.topics);
            self.cursors.seal();
        }
        match self.take_logs(buf, max) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            Err(n) => return Err(RecvError::Lagged(n)),
        }
        if let Some(n) = self.take_lag() {
            return Err(RecvError::Lagged(n));
        }
        // Terminal for the logs too: a log joined by a join that raced the
        // close gives nothing after this.
        if self.cursors.is_open() {
            let _mine = lock(&self.topics);
            self.cursors.close();
        }
        Err(RecvError::Closed(reason))
    }

    /// The subscriber is gone: seal the ring and take out what is still queued
    /// (it was counted as delivered, and nobody will receive it). Returns how
    /// many messages were discarded.
    pub(crate) fn discard(&self) -> u64 {
        let mut n = 0u64;
        while self.ring.take_sealed(usize::MAX, |m| {
            drop(m);
            n += 1;
        }) > 0
        {}
        n
    }

    /// A receive future was dropped while parked: leave no waker behind.
    pub(crate) fn unpark(&self) {
        self.p().parked.store(false, Ordering::Relaxed);
        drop(self.waker.take());
        self.cursors.unpark();
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_parked(&self) -> bool {
        self.p().parked.load(Ordering::Relaxed)
    }

    /// Joins topic `name`: `add` puts this inbox into the topic's members and
    /// returns the topic. Runs under `topics`, after checking the inbox is
    /// open: once it is closing, the cleanup worker takes the list
    /// ([`Inbox::take_topics`]) and no topic may be added behind its back.
    pub(crate) fn join_with(
        self: &Arc<Self>,
        name: &str,
        add: impl FnOnce(&Arc<Self>) -> Arc<TopicInner<T>>,
    ) -> Result<bool, crate::SubscribeError> {
        self.join_after(name, add, 0)
    }

    /// [`Inbox::join_with`] for a join that replays into the ring next: the
    /// topic's log, if it has one, is not read until
    /// [`Inbox::replayed`] says where the replay ends (see `cursors.rs`).
    /// Call while holding the topic's walk, and `replayed` before it is
    /// released.
    pub(crate) fn join_before_replay(
        self: &Arc<Self>,
        name: &str,
        add: impl FnOnce(&Arc<Self>) -> Arc<TopicInner<T>>,
    ) -> Result<bool, crate::SubscribeError> {
        self.join_after(name, add, crate::cursors::HELD)
    }

    /// The replay of a [`Inbox::join_before_replay`] is in the ring: the
    /// topic's log is read once the receiver has taken the ring up to here.
    pub(crate) fn replayed(&self, topic: &Arc<TopicInner<T>>) {
        let _mine = lock(&self.topics);
        self.cursors.release(topic, self.ring.tail());
    }

    fn join_after(
        self: &Arc<Self>,
        name: &str,
        add: impl FnOnce(&Arc<Self>) -> Arc<TopicInner<T>>,
        after: usize,
    ) -> Result<bool, crate::SubscribeError> {
        let mut mine = lock(&self.topics);
        if !self.is_open() {
            return Err(crate::SubscribeError::Closed);
        }
        if mine.iter().any(|(t, _)| &*t.name == name) {
            return Ok(false);
        }
        let topic = add(self);
        let owed = topic.position().seq;
        // The topic may be switching to a log (`Walk::switch`): the insert
        // (in `add`), then this fence, then the look for the log.
        fence(Ordering::SeqCst);
        // A join from now waits for what its ring already holds (a walk
        // before a switch may have pushed the topic's first messages there).
        let after = if after == 0 { self.ring.tail() } else { after };
        let linked = self.cursors.join(&topic, after, self.overflow() == Overflow::Evict);
        mine.push((topic, owed));
        drop(mine);
        if linked {
            // A receiver parked on its ring and its other logs: park again, on this one too.
            self.notify();
        }
        Ok(true)
    }

    /// The topic whose sequencer is `seq` switched to a shared log
    /// (`Walk::switch`): reads it from now on, once the ring is taken up to
    /// where it is now, if this inbox is open and still a member (and not
    /// already reading it: a join that raced the switch links itself).
    pub(crate) fn link_switched(&self, seq: &crate::sequencer::Sequencer<T>) {
        let mine = lock(&self.topics);
        if !self.is_open() {
            return;
        }
        let linked = match mine.iter().find(|(t, _)| std::ptr::eq(&t.seq, seq)) {
            Some((topic, _)) => {
                self.cursors.join(topic, self.ring.tail(), self.overflow() == Overflow::Evict)
            }
            None => false,
        };
        drop(mine);
        if linked {
            // A receiver parked before the switch parks again, on the log too.
            self.notify();
        }
    }

    /// Reads `log` (the hub's broadcasts', when they go through one), from
    /// the writer's next append, once the ring is taken up to where it is
    /// now; nothing if the inbox is already closing, or reads it already
    /// (a subscribe that raced the broadcasts' switch).
    pub(crate) fn join_log(&self, log: &Arc<crate::topic_log::TopicLog<T>>) {
        let mine = lock(&self.topics);
        // After what the ring holds (broadcasts that switched to their log
        // may have put their first ones there).
        let linked = self.is_open()
            && self.cursors.join_log(log, self.ring.tail(), self.overflow() == Overflow::Evict);
        drop(mine);
        if linked {
            // A receiver parked before the switch parks again, on the log too.
            self.notify();
        }
    }

    /// Leaves topic `name` (membership and list change together, under
    /// `topics`); the topic, if it was joined, for a reclaim check.
    pub(crate) fn leave(&self, name: &str) -> Option<Arc<TopicInner<T>>> {
        let mut mine = lock(&self.topics);
        let pos = mine.iter().position(|(t, _)| &*t.name == name)?;
        let (topic, _) = mine.swap_remove(pos);
        topic.members.remove(self.id);
        self.cursors.leave(&topic);
        Some(topic)
    }

    /// The cleanup worker's half of the join protocol: takes the joined topics.
    /// Called once the inbox is closing, so no join can add one afterwards.
    pub(crate) fn take_topics(&self) -> Vec<Arc<TopicInner<T>>> {
        let mut mine = lock(&self.topics);
        // The cursors stay, sealed (a join that raced the close added its
        // link after `close` sealed the others): the receiver drains them
        // as it drains its ring, and leaves them when it is dropped
        // (`Inbox::leave_logs`).
        self.cursors.seal();
        std::mem::take(&mut *mine).into_iter().map(|(t, _)| t).collect()
    }

    /// True once after the writer of `log` moved this subscriber's `Evict`
    /// reader (it lagged): close it as a slow consumer.
    pub(crate) fn evicted_from(&self, log: &Arc<crate::topic_log::TopicLog<T>>) -> bool {
        self.cursors.evicted_from(log)
    }

    /// The subscriber is gone: leaves every shared log it read; returns
    /// them, for their settle (`Inner::settle_left`).
    pub(crate) fn leave_logs(&self) -> Vec<crate::cursors::Left<T>> {
        let _mine = lock(&self.topics);
        self.cursors.leave_all()
    }

    /// Joined topics (a copy, for tests and stats).
    pub(crate) fn topic_names(&self) -> Vec<Arc<str>> {
        lock(&self.topics).iter().map(|(t, _)| t.name.clone()).collect()
    }

    /// Joined topics with the `seq` after which each one's messages are owed
    /// (a copy: for gap repair, on the receiver's side).
    pub(crate) fn memberships(&self) -> Vec<(Arc<TopicInner<T>>, u64)> {
        lock(&self.topics).clone()
    }

    /// The joined topic `name` and the `seq` after which its messages are
    /// owed, if joined.
    pub(crate) fn membership(&self, name: &str) -> Option<(Arc<TopicInner<T>>, u64)> {
        lock(&self.topics).iter().find(|(t, _)| &*t.name == name).cloned()
    }
}

/// Where a receive puts what it pops: a `Vec` (batches) or an `Option` (one).
pub(crate) trait Sink<T> {
    fn put(&mut self, m: Message<T>);
}

impl<T> Sink<T> for Vec<Message<T>> {
    #[inline]
    fn put(&mut self, m: Message<T>) {
        self.push(m);
    }
}

impl<T> Sink<T> for Option<Message<T>> {
    #[inline]
    fn put(&mut self, m: Message<T>) {
        *self = Some(m);
    }
}
