//! Accounting: what each publish reports, and the hub's running totals.
//!
//! The totals are striped: each thread adds to one of several cache-padded
//! stripes (picked once per thread), and [`Hub::stats`](crate::Hub::stats) sums
//! them. A publish adds its counts once, not once per delivery, so four
//! publishers never fight over one counter's cache line. Stats are exact once the
//! operations they count have returned.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::error::CloseReason;
use crate::inbox::{DropReason, Offer};

/// Messages that did not enter a subscriber's ring, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// A `Normal` message found the ring at its high-water mark.
    pub high_water: u64,
    /// The ring was full (`DropNewest`, or a `High` message with no room).
    pub full: u64,
    /// The subscriber was evicted instead (`Evict`).
    pub evicted: u64,
}

impl Drops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.high_water + self.full + self.evicted
    }
}

/// Subscribers closed, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closes {
    /// By hub shutdown.
    pub shutdown: u64,
    /// Evicted as slow consumers.
    pub slow_consumer: u64,
    /// Kicked by id.
    pub kicked: u64,
    /// Closed or dropped by their owner.
    pub unsubscribed: u64,
}

impl Closes {
    /// All closes.
    pub fn total(&self) -> u64 {
        self.shutdown + self.slow_consumer + self.kicked + self.unsubscribed
    }
}

/// What one publish call did.
///
/// A publish numbers its messages (`seq`) and hands them to its topic's
/// sequencer; the deliveries are made by whichever publisher holds the
/// topic's walk at the time (see `sequencer.rs`). When no other publisher is
/// delivering to the topic, that is the caller itself, and the report
/// describes its own messages, as a plain loop would. Under concurrent
/// publishers, one call may deliver several callers' messages in one pass
/// (`walked > messages`), and a call whose messages were left to the walk in
/// progress returns at once with `walked == 0` and no delivery counts: their
/// outcomes are in the report of the call that delivered them, and in the
/// hub's [`Stats`] (only there when the walk was held by a subscriber
/// leaving a shared log or joining from a position, which delivers what is
/// ready on the way). In every report, the delivery counts describe the
/// `walked` messages, and `recipients == delivered + dropped.total()`.
///
/// ```
/// use fanout_core::Hub;
///
/// let hub = Hub::<u32>::new();
/// let _a = hub.subscribe().unwrap();
/// let _b = hub.subscribe().unwrap();
/// let report = hub.broadcast(7).unwrap();
/// // Nobody else was publishing: this call delivered its own message.
/// assert_eq!((report.messages, report.walked), (1, 1));
/// assert_eq!(report.recipients, 2);
/// assert_eq!(report.delivered + report.dropped.total(), report.recipients);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Deliveries attempted for the `walked` messages: open subscribers each
    /// was offered to (closing ones are skipped), summed over the messages.
    pub recipients: u64,
    /// Of those, queued in a ring.
    pub delivered: u64,
    /// Of those, not queued, by reason.
    pub dropped: Drops,
    /// Older messages displaced to make room (`DropOldest`, `Urgent`): earlier
    /// deliveries lost, not these.
    pub displaced: u64,
    /// Deliveries that subscribers reading a shared log
    /// ([`TopicOptions::shared_log`](crate::TopicOptions)) had left unread
    /// when they left it, counted when this call's walk settled them.
    pub discarded: u64,
    /// Sequence number given to this call's (first) message; 0 when nobody
    /// was subscribed to the topic, so no number was spent. The messages of a
    /// `publish_many` take increasing numbers, consecutive within each run of
    /// 64 (another publisher's message may fall between two runs).
    pub seq: u64,
    /// Messages published by this call (`publish_many` publishes several).
    pub messages: u64,
    /// Messages this call delivered, its own and other publishers' (in `seq`
    /// order); 0 when it left its messages to a walk already in progress.
    pub walked: u64,
    /// Parked receivers this publish woke (the rest were busy draining).
    pub wakes: u64,
    /// Deepest ring seen by a high-water check during this publish.
    pub depth: usize,
}

impl PublishReport {
    #[inline]
    pub(crate) fn count(&mut self, offer: Offer) {
        match offer {
            Offer::Skipped => return,
            Offer::SkippedAfterDisplacing(n) => {
                self.displaced += u64::from(n);
                return;
            }
            Offer::Delivered => self.delivered += 1,
            Offer::Displaced(n) => {
                self.delivered += 1;
                self.displaced += u64::from(n);
            }
            Offer::DroppedAfterDisplacing(reason, n) => {
                self.displaced += u64::from(n);
                self.count(Offer::Dropped(reason));
                return;
            }
            Offer::Outranked(_) => unreachable!("apply_overflow turns Outranked into a drop"),
            Offer::Dropped(DropReason::HighWater) => self.dropped.high_water += 1,
            Offer::Dropped(DropReason::Full) => self.dropped.full += 1,
            Offer::Evict => self.dropped.evicted += 1,
        }
        self.recipients += 1;
    }
}

/// A snapshot of the hub's totals, from [`Hub::stats`](crate::Hub::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open subscribers.
    pub subscribers: u64,
    /// Topics that exist (with members or handles).
    pub topics: u64,
    /// Messages published (each message of a `publish_many` counts).
    pub published: u64,
    /// Deliveries queued.
    pub delivered: u64,
    /// Deliveries not queued, by reason.
    pub dropped: Drops,
    /// Queued messages displaced by newer ones.
    pub displaced: u64,
    /// Queued messages taken out unread when their subscriber was dropped.
    /// Every delivery is received, displaced or discarded: once the
    /// subscribers are gone, `delivered == received + displaced + discarded`.
    pub discarded: u64,
    /// Subscribers closed, by reason.
    pub evicted: Closes,
    /// Batches the cleanup worker applied.
    pub cleanup_batches: u64,
    /// Subscribers the cleanup worker removed.
    pub cleanup_removed: u64,
    /// Removal requests that found the cleanup channel full (left to the sweep).
    pub cleanup_overflows: u64,
    /// Panics the cleanup worker caught (a payload's `Drop` that panicked while
    /// the worker freed it); the worker logs nothing and goes on.
    pub cleanup_panics: u64,
    /// Deepest ring any publish has seen while checking a high-water mark.
    pub queue_high_water: u64,
    /// Parked receivers woken by publishes: `delivered / wakes` is the mean
    /// number of messages a receiver drains per wake.
    pub wakes: u64,
}

#[derive(Default)]
struct Stripe {
    subscribed: AtomicU64,
    closed: [AtomicU64; 4],
    published: AtomicU64,
    delivered: AtomicU64,
    drop_high_water: AtomicU64,
    drop_full: AtomicU64,
    drop_evicted: AtomicU64,
    displaced: AtomicU64,
    discarded: AtomicU64,
    cleanup_panics: AtomicU64,
    cleanup_batches: AtomicU64,
    cleanup_removed: AtomicU64,
    cleanup_overflows: AtomicU64,
    depth: AtomicU64,
    wakes: AtomicU64,
}

pub(crate) struct Counters {
    stripes: Box<[CachePadded<Stripe>]>,
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number per thread, handed out in order of first use: picks a
/// counter stripe, and where a publisher starts its walk over the members.
#[inline]
pub(crate) fn thread_index() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT_STRIPE.fetch_add(1, Relaxed);
            s.set(i);
        }
        i
    })
}

impl Counters {
    pub(crate) fn new() -> Self {
        let n = (std::thread::available_parallelism().map_or(4, |n| n.get()) * 2).next_power_of_two().max(4);
        Counters { stripes: (0..n).map(|_| CachePadded::new(Stripe::default())).collect() }
    }

    #[inline]
    fn mine(&self) -> &Stripe {
        &self.stripes[thread_index() & (self.stripes.len() - 1)]
    }

    pub(crate) fn subscribed(&self) {
        self.mine().subscribed.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        self.mine().closed[reason as usize].fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn publish(&self, r: &PublishReport) {
        let s = self.mine();
        s.published.fetch_add(r.messages, Relaxed);
        if r.delivered != 0 {
            s.delivered.fetch_add(r.delivered, Relaxed);
        }
        if r.dropped.total() != 0 || r.displaced != 0 {
            s.drop_high_water.fetch_add(r.dropped.high_water, Relaxed);
            s.drop_full.fetch_add(r.dropped.full, Relaxed);
            s.drop_evicted.fetch_add(r.dropped.evicted, Relaxed);
            s.displaced.fetch_add(r.displaced, Relaxed);
        }
        if r.discarded != 0 {
            s.discarded.fetch_add(r.discarded, Relaxed);
        }
        if r.wakes != 0 {
            s.wakes.fetch_add(r.wakes, Relaxed);
        }
        if r.depth as u64 > s.depth.load(Relaxed) {
            s.depth.fetch_max(r.depth as u64, Relaxed);
        }
    }

    pub(crate) fn cleanup(&self, removed: usize) {
        let s = self.mine();
        s.cleanup_batches.fetch_add(1, Relaxed);
        s.cleanup_removed.fetch_add(removed as u64, Relaxed);
    }

    pub(crate) fn discarded(&self, n: u64) {
        if n != 0 {
            self.mine().discarded.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn cleanup_panic(&self) {
        self.mine().cleanup_panics.fetch_add(1, Relaxed);
    }

    pub(crate) fn cleanup_overflow(&self) {
        self.mine().cleanup_overflows.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, topics: u64) -> Stats {
        let mut st = Stats { topics, ..Stats::default() };
        let mut subscribed = 0u64;
        for s in self.stripes.iter() {
            subscribed += s.subscribed.load(Relaxed);
            st.evicted.shutdown += s.closed[CloseReason::Shutdown as usize].load(Relaxed);
            st.evicted.slow_consumer += s.closed[CloseReason::SlowConsumer as usize].load(Relaxed);
            st.evicted.kicked += s.closed[CloseReason::Kicked as usize].load(Relaxed);
            st.evicted.unsubscribed += s.closed[CloseReason::Unsubscribed as usize].load(Relaxed);
            st.published += s.published.load(Relaxed);
            st.delivered += s.delivered.load(Relaxed);
            st.dropped.high_water += s.drop_high_water.load(Relaxed);
            st.dropped.full += s.drop_full.load(Relaxed);
            st.dropped.evicted += s.drop_evicted.load(Relaxed);
            st.displaced += s.displaced.load(Relaxed);
            st.discarded += s.discarded.load(Relaxed);
            st.cleanup_panics += s.cleanup_panics.load(Relaxed);
            st.cleanup_batches += s.cleanup_batches.load(Relaxed);
            st.cleanup_removed += s.cleanup_removed.load(Relaxed);
            st.cleanup_overflows += s.cleanup_overflows.load(Relaxed);
            st.queue_high_water = st.queue_high_water.max(s.depth.load(Relaxed));
            st.wakes += s.wakes.load(Relaxed);
        }
        st.subscribers = subscribed.saturating_sub(st.evicted.total());
        st
    }
}
