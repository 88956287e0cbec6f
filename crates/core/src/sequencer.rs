//! Per-topic order under concurrent publishers, and publish combining: a log
//! of numbered messages that one publisher at a time delivers.
//!
//! # The problem
//!
//! A publish used to take its `seq` and then walk the subscribers on its own.
//! Two publishers of one topic walk at once, so a later message overtook an
//! earlier one at any subscriber: `seq` could not tell a gap from a reorder.
//!
//! # The log
//!
//! Each topic (and the hub's broadcast stream) has a [`Sequencer`]: a bounded
//! ring of messages (`ring.rs`, the same code as a subscriber's ring) in which
//! **position `p` holds the message numbered `seq = p + 1`**. A publisher
//! reserves its positions with one CAS on the log's `tail`: the reservation
//! *is* the numbering, so the log's order and `seq` order are one order. It
//! builds the message with that number (the transport encodes `seq` into the
//! payload once) and writes it into its slot.
//!
//! # The walk (combining)
//!
//! Delivering is done by whichever publisher holds the topic's *walk*, a flag
//! taken with one CAS ([`Sequencer::try_walk`]). The walker takes the log's
//! ready prefix in order, up to [`RUN`] messages at a time, and pushes each
//! run into every subscriber's ring in one pass (`offer_run`: one reservation
//! per ring per run), exactly as `publish_many` does. A publisher that finds
//! the walk taken returns at once: its message is delivered by the walker, in
//! its place in the order. Under load, single-message publishes therefore
//! combine into runs, and a pass over 10,000 subscribers carries many
//! messages instead of one; idle, the publisher is its own walker and a
//! publish costs what it did plus two uncontended atomics and a fence.
//!
//! The walker stops at the first position that is reserved but not written
//! yet (its publisher is still building the payload): it never waits for
//! another publisher. The hand-over that makes this safe is a Dekker pair:
//!
//! ```text
//! publisher: write slot (stamp, Release) ; fence(SeqCst) ; load walking
//! walker:    walking = false (Release)   ; fence(SeqCst) ; load stamp at head
//! ```
//!
//! With both fences sequentially consistent, at least one side sees the
//! other's store: either the publisher sees the walk free and takes it, or
//! the ending walker sees the new message and takes the walk again
//! ([`Sequencer::end_walk`] answers whether to). No message is left in the log
//! with nobody walking.
//!
//! # Progress
//!
//! - Publishers never wait for a lock or for another publisher, with one
//!   exception: when [`LOG`] messages of one topic are numbered and not yet
//!   delivered (the log is full), a publisher waits for room, delivering the
//!   log itself whenever the walk is free (backpressure, as a full channel
//!   would give; with single-message publishes this takes more than `LOG`
//!   publishers racing one walk).
//! - A message waits for delivery behind (a) the walk in progress, for at most
//!   the rest of that walk plus the preemption of the walker's thread, and (b)
//!   a publisher that reserved an earlier number and has not written it yet,
//!   for the time it takes to build its payload (its `make` closure), plus its
//!   thread's preemption. Neither stops any other publisher from returning.
//!
//! # History, and joins from a position
//!
//! The walker appends each run it delivered to the topic's history
//! (`history.rs`), moving its own handles there (no clone). The history is a
//! plain buffer inside an `UnsafeCell` whose exclusion is the walk itself: only
//! a [`Walk`] guard reaches it, and only one exists at a time. A join from a
//! position (`recovery.rs`) waits for the walk ([`Sequencer::walk_blocking`]),
//! delivers what is ready to the current members, adds its subscriber,
//! replays the history after its position into that subscriber's ring, and
//! ends the walk: every message up to the log's `head` was delivered before
//! the subscriber joined and is in the replay, every later one reaches it
//! live, in order, with no gap and no duplicate at the hand-off.
//!
//! # Joins go first
//!
//! A join waiting for the walk (`walk_blocking`) could lose every race for
//! it to publishers under steady publishing, and wait through walk after
//! walk. So it counts itself in `waiting` first, and a publisher that sees
//! the count up does not take the walk: it leaves its message in the log.
//! The join takes the walk when the walker in progress ends, delivers what
//! is ready (that message included), and its own end re-checks the log as
//! every walker's does. The count goes down when the join has the walk,
//! before that walk's end and its fence: a publisher whose load (after its
//! fence) saw the count up is ordered before that decrement, so the join's
//! end sees its message; one that sees it down sees `walking` as the join
//! left it, and walks itself. The loom models of joins racing publishers
//! (`loom_join_from_a_position_racing_a_publisher`,
//! `loom_join_racing_two_publishers`) check that no message is left behind;
//! that a join no longer waits through walk after walk is a liveness gain,
//! measured with `fanout-bench history` (docs/benchmarks.md).
//!
//! # Holes
//!
//! A publish whose `make` panics has reserved a number it cannot fill. Its
//! guard writes a *hole* (a slot with no message) in that position, which the
//! walker skips, so the topic goes on; subscribers see that number missing
//! with no lag notice, since no message was ever published under it.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::config::Overflow;
use crate::history::HistoryBuf;
use crate::inbox::Inbox;
use crate::loom::{fence, AtomicBool, AtomicPtr, AtomicUsize, Backoff, Ordering, UnsafeCell};
use crate::members::Members;
use crate::message::{Envelope, Message, Priority};
use crate::ring::{Ring, Run};
use crate::shared::Prepaid;
use crate::stats::PublishReport;
use crate::topic_log::TopicLog;

/// Messages a walker takes from the log, and pushes into each ring, per pass.
pub(crate) const RUN: usize = 64;

/// Messages that may be numbered and not yet delivered, per topic. The log's
/// storage (12 bytes a slot: 3 KiB) is allocated at the topic's first
/// publish with subscribers.
pub(crate) const LOG: usize = 256;

/// A topic's (or the broadcast stream's) numbering and delivery order.
pub(crate) struct Sequencer<T> {
    /// Numbered messages not yet delivered: position `p` holds
    /// `seq = p + 1 + base`. Written by publishers (reserve, then write);
    /// read by the walker alone.
    log: Ring<T>,
    /// What to add to a log position + 1 to get its `seq` (wrapping): 0
    /// unless the topic is numbered elsewhere and was moved to a position
    /// ([`Walk::jump`], see `numbered.rs`). Written under the walk with the
    /// log empty; read by publishers (`Relaxed`: a publisher of such a topic
    /// is the walker's own thread, see `numbered.rs`).
    base: std::sync::atomic::AtomicU64,
    /// True while one publisher walks. Taken by CAS (`Acquire`: the walker
    /// sees the log and the history as the last walker left them), released
    /// by a `Release` store.
    walking: CachePadded<AtomicBool>,
    /// Joins and history reads waiting for the walk. While it is not zero,
    /// publishers leave the walk to them (see "Joins go first").
    waiting: AtomicUsize,
    /// The topic's recent past. Reached only through a [`Walk`]: `walking`
    /// is its exclusion.
    history: UnsafeCell<HistoryBuf<T>>,
    /// Whether `history` keeps anything (fixed at creation): read without
    /// the walk.
    keeps_history: bool,
    /// The history's TTL (fixed at creation).
    ttl: Duration,
    /// When a walk last appended to the history, as nanoseconds since
    /// [`clock_base`]: how a reclaim check sees that a topic's history has
    /// expired without taking the walk. Orders nothing (`Relaxed`).
    last_append: std::sync::atomic::AtomicU64,
    /// The topic's overflow policy, in place of each subscriber's (fixed at
    /// creation; see [`TopicOptions::overflow`](crate::TopicOptions)).
    overflow: Option<Overflow>,
    /// The shared log the walk appends to instead of pushing into the
    /// members' rings, once the topic has one (see
    /// [`TopicOptions::shared_log`](crate::TopicOptions)): null until then,
    /// then a `Box<Arc<TopicLog>>` set once and freed by `Drop`. Made at
    /// creation, or by the walk that first finds `log_from` members
    /// (`Walk::switch`). Written only through a [`Walk`]: the walk is its
    /// writer's exclusion.
    shared: AtomicPtr<Arc<TopicLog<T>>>,
    /// The room of that log (0: the topic never has one).
    log_room: usize,
    /// Members from which the walk delivers through a log.
    log_from: usize,
    /// The hub's broadcasts: every subscriber is a member, and none lists
    /// them among its topics (how `Walk::switch` links a member).
    everyone: bool,
}

impl<T> Drop for Sequencer<T> {
    fn drop(&mut self) {
        let p = self.shared.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: set once from `Box::into_raw` (`set_shared`), and
            // `&mut self` leaves no reader of it.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// The instant that `last_append` counts from.
fn clock_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn since_base(t: Instant) -> u64 {
    t.saturating_duration_since(clock_base()).as_nanos() as u64
}

// SAFETY: the log and the flag are atomics; `history` is reached only
// through a `Walk`, of which one exists at a time (the CAS on `walking`), and
// the flag's Release/Acquire pair orders one walker's accesses before the
// next one's, so sharing a `Sequencer` shares no unsynchronised access. The
// history holds messages (`Counted` handles), which are `Send` and `Sync`
// when `T` is.
unsafe impl<T: Send + Sync> Sync for Sequencer<T> {}
// SAFETY: as above; moving the sequencer moves the messages it holds.
unsafe impl<T: Send + Sync> Send for Sequencer<T> {}

impl<T> Sequencer<T> {
    /// A sequencer keeping `history` messages for `ttl` (0: none).
    pub(crate) fn new(history: usize, ttl: Duration) -> Self {
        Sequencer {
            log: Ring::new(LOG),
            base: std::sync::atomic::AtomicU64::new(0),
            walking: CachePadded::new(AtomicBool::new(false)),
            waiting: AtomicUsize::new(0),
            history: UnsafeCell::new(HistoryBuf::new(history, ttl)),
            keeps_history: history > 0,
            ttl,
            last_append: std::sync::atomic::AtomicU64::new(since_base(Instant::now())),
            overflow: None,
            shared: AtomicPtr::new(std::ptr::null_mut()),
            log_room: 0,
            log_from: 0,
            everyone: false,
        }
    }

    /// The same, numbering the hub's broadcasts (see `everyone`).
    pub(crate) fn for_everyone(mut self) -> Self {
        self.everyone = true;
        self
    }

    /// The same, delivering through a shared log with `room` per reader
    /// (0: through the members' rings).
    pub(crate) fn with_shared_log(self, room: usize) -> Self {
        self.with_shared_log_from(room, 0)
    }

    /// The same, delivering through a shared log with `room` per reader
    /// once the topic has `from` members (0: from its creation).
    pub(crate) fn with_shared_log_from(mut self, room: usize, from: usize) -> Self {
        self.log_room = room;
        self.log_from = from;
        if room > 0 && from == 0 {
            self.set_shared();
        }
        self
    }

    /// Makes the log (once; the walk's, or the constructor's).
    fn set_shared(&self) -> &Arc<TopicLog<T>> {
        let p = Box::into_raw(Box::new(Arc::new(TopicLog::new(self.log_room))));
        // Release: whoever finds the pointer finds the log it points to.
        self.shared.store(p, Ordering::Release);
        // SAFETY: just made, freed only by `Drop`.
        unsafe { &*p }
    }

    /// The topic's shared log, if it delivers through one (its readers'
    /// side: join, take, park, leave).
    pub(crate) fn shared_log(&self) -> Option<&Arc<TopicLog<T>>> {
        let p = self.shared.load(Ordering::Acquire);
        // SAFETY: non-null only once set (from a live `Box`), and freed
        // only by `Drop`, so it lives as long as `&self`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The same, with the topic's overflow policy in place of each
    /// subscriber's.
    pub(crate) fn with_overflow(mut self, overflow: Option<Overflow>) -> Self {
        self.overflow = overflow;
        self
    }

    /// The topic's overflow policy, if it has its own.
    pub(crate) fn overflow(&self) -> Option<Overflow> {
        self.overflow
    }

    /// Whether the history (if any) has expired by `now`: nothing appended
    /// for a TTL. A topic without history has nothing to keep.
    pub(crate) fn history_expired(&self, now: Instant) -> bool {
        if !self.keeps_history {
            return true;
        }
        let last = self.last_append.load(std::sync::atomic::Ordering::Relaxed);
        since_base(now).saturating_sub(last) > self.ttl.as_nanos() as u64
    }

    /// Whether the topic keeps a history.
    pub(crate) fn keeps_history(&self) -> bool {
        self.keeps_history
    }

    /// The last number delivered (or skipped as a hole): every message up to
    /// it has left the log. Exact under a [`Walk`]; a snapshot otherwise.
    pub(crate) fn delivered(&self) -> u64 {
        self.number(self.log.head()).wrapping_sub(1)
    }

    /// The last number given to a publish (delivered or not).
    pub(crate) fn numbered(&self) -> u64 {
        self.number(self.log.tail()).wrapping_sub(1)
    }

    /// The `seq` of log position `pos`.
    #[inline]
    pub(crate) fn number(&self, pos: usize) -> u64 {
        (pos as u64 + 1).wrapping_add(self.base.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Reserves up to `want` consecutive numbers (`seq = run.pos + 1 + i`);
    /// `n == 0` when the log is full.
    #[inline]
    pub(crate) fn reserve(&self, want: usize) -> Run<'_, T> {
        self.log.reserve(want)
    }

    /// Takes the walk if nobody holds it. Call after writing to the log: the
    /// fence is the publisher's half of the hand-over (see the module docs).
    #[inline]
    pub(crate) fn try_walk(&self) -> Option<Walk<'_, T>> {
        fence(Ordering::SeqCst);
        // A join is waiting: it takes the walk next and delivers what is
        // ready, this message included (see "Joins go first").
        if self.waiting.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.take_walk()
    }

    /// The CAS that takes the walk.
    #[inline]
    fn take_walk(&self) -> Option<Walk<'_, T>> {
        let free = !self.walking.load(Ordering::Relaxed)
            && self.walking.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok();
        // Not `then_some`: its argument is built (and dropped, releasing the
        // walk someone else holds) whether or not the CAS succeeded.
        if free {
            Some(Walk { seq: self, ended: false })
        } else {
            None
        }
    }

    /// Waits for the walk (a join or a history read: never a publisher). The
    /// wait lasts at most the walk in progress, plus its thread's preemption:
    /// while it waits, publishers leave the walk to it ("Joins go first").
    pub(crate) fn walk_blocking(&self) -> Walk<'_, T> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let backoff = Backoff::new();
        loop {
            if let Some(w) = self.take_walk() {
                // Before this walk ends (its fence): a publisher that sees
                // the count still up leaves its message to this walk, whose
                // end then sees it.
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return w;
            }
            backoff.snooze();
        }
    }

    /// Releases the walk. True when a message became ready that the caller
    /// must deliver by taking the walk again (the walker's half of the
    /// hand-over).
    #[inline]
    fn end_walk(&self) -> bool {
        self.walking.store(false, Ordering::Release);
        fence(Ordering::SeqCst);
        self.log.has_ready()
    }
}

/// The walk, held: delivers the log, and is the only way to the history.
/// Dropping it releases the walk (without the hand-over check: use
/// [`Walk::end`] on every path but a panic).
pub(crate) struct Walk<'s, T> {
    seq: &'s Sequencer<T>,
    ended: bool,
}

impl<'s, T> Walk<'s, T> {
    /// Runs `f` on the history.
    pub(crate) fn history<R>(&mut self, f: impl FnOnce(&mut HistoryBuf<T>) -> R) -> R {
        self.seq.history.with_mut(|h| {
            // SAFETY: this `Walk` is the only one (the CAS on `walking`), and
            // `&mut self` makes this the only access through it; the flag's
            // Release/Acquire orders the previous holder's accesses before.
            f(unsafe { &mut *h })
        })
    }

    /// Delivers the log's ready messages to `set`, in runs of up to [`RUN`]
    /// in `seq` order, each pushed into every ring in one pass starting at
    /// shard and chunk `start`, and appends them to the history. `evict`
    /// closes a member whose ring overflowed under `Overflow::Evict`. Counts
    /// every outcome into `r`.
    pub(crate) fn deliver(
        &mut self,
        set: &Members<T>,
        start: usize,
        r: &mut PublishReport,
        evict: &impl Fn(&Arc<Inbox<T>>),
    ) {
        let keep = self.seq.keeps_history;
        let seq: &'s Sequencer<T> = self.seq;
        let mut shared = seq.shared_log();
        loop {
            let mut batch: [Option<Message<T>>; RUN] = [const { None }; RUN];
            let mut n = 0;
            let taken = self.seq.log.take_entries(RUN, |m| {
                if let Some(m) = m {
                    batch[n] = Some(m);
                    n += 1;
                }
            });
            if taken == 0 {
                break;
            }
            r.walked += n as u64;
            if shared.is_none() && seq.log_room > 0 && set.len() >= seq.log_from {
                shared = Some(self.switch(set));
            }
            if let Some(log) = shared {
                let now = keep.then(Instant::now);
                // The log takes the walker's handles, or clones of them when
                // the history takes the handles (one count each per message).
                let run = batch.iter_mut().take(n).map(|m| {
                    if keep {
                        m.as_ref().expect("taken").clone()
                    } else {
                        m.take().expect("taken")
                    }
                });
                // SAFETY: this `Walk` is the only one (the CAS on
                // `walking`), and every append and settle of this log goes
                // through a `Walk`; the flag's Release/Acquire orders one
                // walker's accesses before the next one's.
                let a = unsafe { log.append(run) };
                let delivered = a.readers * a.messages;
                r.recipients += delivered;
                r.delivered += delivered;
                r.displaced += a.skipped;
                r.discarded += a.discarded;
                r.wakes += a.wakes;
                if a.evicted > 0 {
                    // Readers under `Evict` fell a room behind: their
                    // subscribers are closed now, as a full ring's are (a
                    // scan of the members, on a slow consumer's lag only).
                    set.for_each(|inbox| {
                        if inbox.evicted_from(log) {
                            evict(inbox);
                        }
                    });
                }
                if let Some(now) = now {
                    self.seq.last_append.store(since_base(now), std::sync::atomic::Ordering::Relaxed);
                    self.history(|h| {
                        for m in batch.iter_mut().take(n) {
                            h.push(m.take().expect("taken"), now);
                        }
                        h.expire(now);
                    });
                }
                continue;
            }
            // Runs of one priority, in order.
            let mut i = 0;
            while i < n {
                let priority = batch[i].as_ref().map_or(Priority::Normal, Message::priority);
                let mut j = i + 1;
                while j < n && batch[j].as_ref().map(Message::priority) == Some(priority) {
                    j += 1;
                }
                deliver(set, &batch[i..j], priority, self.seq.overflow, start, r, evict);
                i = j;
            }
            if keep {
                // One clock read per run; the walker's handles move in.
                let now = Instant::now();
                self.seq.last_append.store(since_base(now), std::sync::atomic::Ordering::Relaxed);
                self.history(|h| {
                    for m in batch.iter_mut().take(n) {
                        h.push(m.take().expect("taken"), now);
                    }
                    h.expire(now);
                });
            }
        }
    }

    /// Moves the numbering so that the last delivered `seq` reads `to`, and
    /// empties the history (its `seq`s no longer lead to `to` without a
    /// gap). Call after [`Walk::deliver`], with no other publisher: the log
    /// must be empty (see `numbered.rs`).
    pub(crate) fn jump(&mut self, to: u64) {
        debug_assert_eq!(self.seq.log.head(), self.seq.log.tail(), "jump with messages in the log");
        let head = self.seq.log.head() as u64;
        // delivered() = head + 1 + base - 1 = to
        self.seq.base.store(to.wrapping_sub(head), std::sync::atomic::Ordering::Relaxed);
        self.history(HistoryBuf::clear);
    }

    /// The topic found `log_from` members: from this run on it delivers
    /// through a shared log. Each member gets a cursor, read once its
    /// receiver has taken its ring up to where it is now (what the rings
    /// hold of the topic comes first). A join from now that races this
    /// (`Inbox::join_after`, which does not take the walk) inserts itself
    /// and then looks for the log, each side with a `SeqCst` fence between
    /// its store and its load: either this pass finds the member, or the
    /// join finds the log and links itself (both, and the second finds
    /// the link there). A join from a position holds the walk.
    fn switch(&mut self, set: &Members<T>) -> &'s Arc<TopicLog<T>> {
        let seq: &'s Sequencer<T> = self.seq;
        let log = seq.set_shared();
        fence(Ordering::SeqCst);
        if seq.everyone {
            set.for_each(|inbox| inbox.join_log(log));
        } else {
            set.for_each(|inbox| inbox.link_switched(seq));
        }
        log
    }

    /// Settles the readers that left the topic's shared log, if it has
    /// one; returns what they had been counted in and never took
    /// (`TopicLog::settle`).
    pub(crate) fn settle_log(&mut self) -> u64 {
        match self.seq.shared_log() {
            // SAFETY: as in `deliver`: this `Walk` is the only one.
            Some(log) => unsafe { log.settle() },
            None => 0,
        }
    }

    /// The topic skipped `n` numbers: if it delivers through a shared log,
    /// each reader is told in its place there (`TopicLog::skip`) and
    /// true; false for a topic on the rings (the caller tells each
    /// member's ring).
    pub(crate) fn skip_log(&mut self, n: u64, r: &mut PublishReport) -> bool {
        let Some(log) = self.seq.shared_log() else { return false };
        // SAFETY: as in `deliver`: this `Walk` is the only one.
        let a = unsafe { log.skip(n) };
        r.displaced += a.skipped;
        r.discarded += a.discarded;
        r.wakes += a.wakes;
        true
    }

    /// Releases the walk; true when the caller must walk again (see
    /// [`Sequencer::end_walk`]).
    pub(crate) fn end(mut self) -> bool {
        self.ended = true;
        self.seq.end_walk()
    }
}

impl<T> Drop for Walk<'_, T> {
    fn drop(&mut self) {
        if !self.ended {
            // A panic unwound through the walk: let the next publisher walk.
            self.seq.walking.store(false, Ordering::Release);
        }
    }
}

/// Delivers the log's ready messages to `set` while this thread can hold the
/// walk (see [`Walk::deliver`]).
pub(crate) fn walk<T>(
    seq: &Sequencer<T>,
    set: &Members<T>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) {
    while let Some(mut w) = seq.try_walk() {
        w.deliver(set, start, r, evict);
        if !w.end() {
            return;
        }
    }
}

/// Offers a run of messages of one priority to every member of `set`.
#[inline]
fn deliver<T>(
    set: &Members<T>,
    run: &[Option<Message<T>>],
    priority: Priority,
    overflow: Option<Overflow>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) {
    // One atomic per message for all its recipients (see `shared.rs`).
    let members = set.len();
    let mut pres: [Option<Prepaid<'_, Envelope<T>>>; RUN] = [const { None }; RUN];
    for (pre, msg) in pres.iter_mut().zip(run) {
        *pre = msg.as_ref().map(|m| m.inner.prepay(members));
    }
    let pres = &pres[..run.len()];
    // Wakes the members that queued, one fence per group (see `members.rs`).
    let wakes = set.offer_each_from(start, |inbox| {
        let (queued, evicted) = inbox.offer_run_as(pres, priority, overflow, r);
        if evicted {
            evict(inbox);
        }
        queued
    });
    r.wakes += wakes;
}

/// Writes a hole into a reserved position unless the publish filled it: the
/// guard of a `make` closure that may panic (see "Holes").
pub(crate) struct Reserved<'r, T> {
    pub(crate) run: Run<'r, T>,
    pub(crate) filled: usize,
}

impl<T> Drop for Reserved<'_, T> {
    fn drop(&mut self) {
        for i in self.filled..self.run.n {
            self.run.write_hole(i);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The walk and the history it guards, with two real threads: small
    //! enough for miri (`scripts/miri.sh`), which checks the `UnsafeCell`
    //! accesses through `Walk` for aliasing.

    use super::*;
    use crate::config::Overflow;
    use crate::message::{Meta, Origin};
    use crate::SubscriberId;

    fn publish(seq: &Sequencer<u64>, set: &Members<u64>, v: u64) -> PublishReport {
        let mut r = PublishReport { messages: 1, ..PublishReport::default() };
        // As `publish.rs` does: while the log is full, walk it, or wait.
        let run = loop {
            let run = seq.reserve(1);
            if run.n == 1 {
                break run;
            }
            walk(seq, set, 0, &mut r, &|_: &Arc<Inbox<u64>>| {});
            std::thread::yield_now();
        };
        let n = run.pos as u64 + 1;
        run.write(0, Message::new(None, Origin::Topic, Meta { seq: n, epoch: 1 }, Priority::Normal, v));
        walk(seq, set, 0, &mut r, &|_: &Arc<Inbox<u64>>| {});
        r
    }

    #[test]
    fn two_publishers_one_walk_and_a_history() {
        let per = if cfg!(miri) { 20 } else { 2_000 };
        let seq = Arc::new(Sequencer::<u64>::new(8, Duration::from_secs(60)));
        let set = Arc::new(Members::new(1, 16));
        let inbox = Arc::new(Inbox::new(SubscriberId(1), 4096, 4096, Overflow::DropNewest, false));
        set.insert(inbox.clone());
        let threads: Vec<_> = (0..2u64)
            .map(|k| {
                let (seq, set) = (seq.clone(), set.clone());
                std::thread::spawn(move || {
                    (0..per).map(|i| publish(&seq, &set, k << 32 | i).walked).sum::<u64>()
                })
            })
            .collect();
        let walked: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(walked, 2 * per, "every message walked once");
        let mut last = 0;
        let mut got = 0;
        while let Ok(m) = inbox.try_pop() {
            assert_eq!(m.seq(), last + 1, "in seq order, no gap");
            last = m.seq();
            got += 1;
        }
        assert_eq!(got, 2 * per);
        let mut w = seq.walk_blocking();
        let kept: Vec<u64> = w.history(|h| h.after(0, 100)).iter().map(|m| m.seq()).collect();
        assert!(!w.end(), "nothing left to walk");
        assert_eq!(kept, ((2 * per - 7)..=2 * per).collect::<Vec<_>>(), "the last 8, in order");
    }
}
