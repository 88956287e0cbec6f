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
//! # Holes
//!
//! A publish whose `make` panics has reserved a number it cannot fill. Its
//! guard writes a *hole* (a slot with no message) in that position, which the
//! walker skips, so the topic goes on; subscribers see that number missing
//! with no lag notice, since no message was ever published under it.

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::inbox::Inbox;
use crate::loom::{fence, AtomicBool, Ordering};
use crate::members::Members;
use crate::message::{Envelope, Message, Priority};
use crate::ring::{Ring, Run};
use crate::shared::Prepaid;
use crate::stats::PublishReport;

/// Messages a walker takes from the log, and pushes into each ring, per pass.
pub(crate) const RUN: usize = 64;

/// Messages that may be numbered and not yet delivered, per topic. The log's
/// storage (12 bytes a slot: 3 KiB) is allocated at the topic's first
/// publish with subscribers.
pub(crate) const LOG: usize = 256;

/// A topic's (or the broadcast stream's) numbering and delivery order.
pub(crate) struct Sequencer<T> {
    /// Numbered messages not yet delivered: position `p` holds `seq = p + 1`.
    /// Written by publishers (reserve, then write); read by the walker alone.
    log: Ring<T>,
    /// True while one publisher walks. Taken by CAS (`Acquire`: the walker
    /// sees the log as the last walker left it), released by a `Release`
    /// store.
    walking: CachePadded<AtomicBool>,
}

impl<T> Sequencer<T> {
    pub(crate) fn new() -> Self {
        Sequencer { log: Ring::new(LOG), walking: CachePadded::new(AtomicBool::new(false)) }
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
    pub(crate) fn try_walk(&self) -> bool {
        fence(Ordering::SeqCst);
        !self.walking.load(Ordering::Relaxed)
            && self.walking.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Ends the walk. True when a message became ready that the caller must
    /// deliver by taking the walk again (the walker's half of the hand-over).
    #[inline]
    pub(crate) fn end_walk(&self) -> bool {
        self.walking.store(false, Ordering::Release);
        fence(Ordering::SeqCst);
        self.log.has_ready()
    }
}

/// Delivers the log's ready messages to `set` while this thread can hold the
/// walk: runs of up to [`RUN`] in `seq` order, each pushed into every ring in
/// one pass, starting at shard and chunk `start`. `evict` closes a member whose
/// ring overflowed under `Overflow::Evict`. Counts every outcome into `r`.
pub(crate) fn walk<T>(
    seq: &Sequencer<T>,
    set: &Members<T>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) {
    while seq.try_walk() {
        loop {
            let mut batch: [Option<Message<T>>; RUN] = [const { None }; RUN];
            let mut n = 0;
            let taken = seq.log.take_entries(RUN, |m| {
                if let Some(m) = m {
                    batch[n] = Some(m);
                    n += 1;
                }
            });
            if taken == 0 {
                break;
            }
            r.walked += n as u64;
            // Runs of one priority, in order.
            let mut i = 0;
            while i < n {
                let priority = batch[i].as_ref().map_or(Priority::Normal, Message::priority);
                let mut j = i + 1;
                while j < n && batch[j].as_ref().map(Message::priority) == Some(priority) {
                    j += 1;
                }
                deliver(set, &batch[i..j], priority, start, r, evict);
                i = j;
            }
        }
        if !seq.end_walk() {
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
        let (queued, evicted) = inbox.offer_run(pres, priority, r);
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
