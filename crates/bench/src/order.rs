//! The order checker: does one topic's stream, as one subscriber saw it, keep
//! the engine's promise?
//!
//! # The promise
//!
//! Per topic, every subscriber receives messages in strictly increasing `seq`;
//! a gap appears only where the engine reported a drop (a lag notice, or
//! `RecvError::Lagged(n)`), *at the position of the gap*: the notice comes
//! after the last message before the gap and before the first one after it.
//!
//! # What is counted
//!
//! [`OrderChecker::push`] takes each received `seq` in arrival order and
//! [`OrderChecker::lagged`] each reported loss. With `highest` the largest
//! `seq` seen so far:
//!
//! - `seq == highest + 1`: in order.
//! - `seq > highest + 1`: a **gap** of `seq - highest - 1` messages. The lag
//!   reported since the previous push explains up to that many; whatever it
//!   does not explain makes the gap **unexplained** (a violation). The skipped
//!   seqs are remembered as *holes*. Lag reported before one push never carries
//!   over to a later one: it must sit at the gap.
//! - `seq < highest` and `seq` is a hole: **out of order** (a violation): it
//!   was overtaken by a later message. The hole is filled.
//! - otherwise (`seq == highest`, or below `highest` and not a hole): a
//!   **duplicate** (a violation).
//!
//! So one message overtaken by the next shows as one unexplained gap plus one
//! out-of-order push: two violations, and nothing missing.
//! [`OrderChecker::finish`] counts the holes never filled as **missing**
//! (lost messages that a seq could reveal; a loss after the last push received
//! cannot be seen here, which is why the harness and the load test also count
//! deliveries against what was published).
//!
//! # Where the stream starts
//!
//! [`OrderChecker::from_start`] knows the first seq (the hub harness: a fresh
//! topic starts at 1), so a loss before the first push is a gap too.
//! [`OrderChecker::new`] takes the first push as the start (the load test,
//! whose server may have numbered the topic before). The first push may itself
//! have overtaken earlier ones: a later push below the lowest seq received is
//! then **out of order** too (one violation), it becomes the start, and the
//! seqs between it and the old start become holes.
//!
//! # Memory
//!
//! Holes are kept as ranges, at most [`MAX_HOLE_RANGES`] of them; when more
//! open, the oldest range is given up and counted missing at once (a message
//! that arrives even later counts as a duplicate). Reorders under concurrent
//! publishers are a few messages deep, far inside that window.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Ranges of holes remembered per stream.
pub const MAX_HOLE_RANGES: usize = 1024;

/// What one stream (or many, added up) showed.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCounts {
    /// Pushes received.
    pub received: u64,
    /// Pushes below the highest seq seen that filled a hole (overtaken).
    pub out_of_order: u64,
    /// Pushes whose seq was received before (or given up as missing).
    pub duplicates: u64,
    /// Forward jumps, explained by a reported lag or not.
    pub gaps: u64,
    /// Messages those jumps skipped.
    pub gap_messages: u64,
    /// Forward jumps larger than the lag reported at their position.
    pub unexplained_gaps: u64,
    /// Messages reported lost (lag notices).
    pub lagged: u64,
    /// Holes never filled (counted by [`OrderChecker::finish`]).
    pub missing: u64,
}

impl OrderCounts {
    /// Pushes that broke the promise: out of order, duplicated, or after an
    /// unexplained gap.
    pub fn violations(&self) -> u64 {
        self.out_of_order + self.duplicates + self.unexplained_gaps
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &OrderCounts) {
        self.received += o.received;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.gaps += o.gaps;
        self.gap_messages += o.gap_messages;
        self.unexplained_gaps += o.unexplained_gaps;
        self.lagged += o.lagged;
        self.missing += o.missing;
    }
}

/// One broken promise, for an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `seq` arrived after `highest`, which it should have preceded.
    OutOfOrder {
        /// The late push.
        seq: u64,
        /// The highest seq received before it.
        highest: u64,
    },
    /// `seq` arrived a second time.
    Duplicate {
        /// The repeated push.
        seq: u64,
        /// The highest seq received before it.
        highest: u64,
    },
    /// `seq` followed `highest`, skipping more messages than the `lagged`
    /// reported at that position.
    Gap {
        /// The push after the gap.
        seq: u64,
        /// The push before it.
        highest: u64,
        /// Messages reported lost between the two.
        lagged: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::OutOfOrder { seq, highest } => write!(f, "seq {seq} arrived after seq {highest}"),
            Violation::Duplicate { seq, highest } => {
                write!(f, "seq {seq} arrived again (highest seen {highest})")
            }
            Violation::Gap { seq, highest, lagged } => write!(
                f,
                "seq {seq} followed seq {highest}: {} skipped, {lagged} reported lost there",
                seq - highest - 1
            ),
        }
    }
}

/// The checker for one topic as one subscriber sees it.
#[derive(Clone, Debug, Default)]
pub struct OrderChecker {
    /// Largest seq received (or, before the first push of a stream with a known
    /// start, the seq before it).
    highest: u64,
    /// Whether `highest` means anything yet.
    started: bool,
    /// Whether the stream's first seq was given ([`OrderChecker::from_start`]).
    known_start: bool,
    /// Lowest seq received (or the known start).
    lowest: u64,
    /// Lag reported since the last push; consumed (or forgotten) by the next one.
    pending_lag: u64,
    /// Seqs skipped and not received since: disjoint inclusive ranges, in
    /// increasing order, all below `highest`.
    holes: VecDeque<(u64, u64)>,
    counts: OrderCounts,
    first: Option<Violation>,
}

impl OrderChecker {
    /// A checker that takes the first push as the start of the stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A checker for a stream whose first seq is `first` (≥ 1).
    pub fn from_start(first: u64) -> Self {
        OrderChecker {
            highest: first.saturating_sub(1),
            started: true,
            known_start: true,
            lowest: first,
            ..Self::default()
        }
    }

    /// The largest seq received so far (`None` before the first push): the
    /// position a client gives when it resubscribes with `since`.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }

    /// `n` messages were reported lost at this position.
    pub fn lagged(&mut self, n: u64) {
        self.counts.lagged += n;
        self.pending_lag += n;
    }

    /// Takes one push; returns the violation it is, if any.
    pub fn push(&mut self, seq: u64) -> Option<Violation> {
        self.counts.received += 1;
        let lag = std::mem::take(&mut self.pending_lag);
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.lowest = seq;
            return None;
        }
        let highest = self.highest;
        let v = if seq > highest {
            self.highest = seq;
            let skipped = seq - highest - 1;
            if skipped == 0 {
                return None;
            }
            self.counts.gaps += 1;
            self.counts.gap_messages += skipped;
            self.open_hole(highest + 1, seq - 1);
            if skipped <= lag {
                return None;
            }
            self.counts.unexplained_gaps += 1;
            Violation::Gap { seq, highest, lagged: lag }
        } else if self.fill_hole(seq) {
            self.counts.out_of_order += 1;
            Violation::OutOfOrder { seq, highest }
        } else if !self.known_start && seq < self.lowest {
            // Overtaken before the first push we took as the start.
            if seq + 1 < self.lowest {
                if self.holes.len() == MAX_HOLE_RANGES {
                    // Give up the lowest range already kept, as `open_hole` does.
                    let (a, b) = self.holes.pop_front().expect("full");
                    self.counts.missing += b - a + 1;
                }
                self.holes.push_front((seq + 1, self.lowest - 1));
            }
            self.lowest = seq;
            self.counts.out_of_order += 1;
            Violation::OutOfOrder { seq, highest }
        } else {
            self.counts.duplicates += 1;
            Violation::Duplicate { seq, highest }
        };
        self.first.get_or_insert(v);
        Some(v)
    }

    /// The counts so far (holes not yet counted missing).
    pub fn counts(&self) -> OrderCounts {
        self.counts
    }

    /// The first violation seen.
    pub fn first_violation(&self) -> Option<Violation> {
        self.first
    }

    /// Ends the stream: holes still open are counted missing. Returns the counts.
    pub fn finish(&mut self) -> OrderCounts {
        for (lo, hi) in self.holes.drain(..) {
            self.counts.missing += hi - lo + 1;
        }
        self.counts
    }

    fn open_hole(&mut self, lo: u64, hi: u64) {
        if self.holes.len() == MAX_HOLE_RANGES {
            let (a, b) = self.holes.pop_front().expect("full");
            self.counts.missing += b - a + 1;
        }
        self.holes.push_back((lo, hi));
    }

    /// Removes `seq` from the holes; false if it was not in one.
    fn fill_hole(&mut self, seq: u64) -> bool {
        // The first range whose end is at or above seq.
        let i = self.holes.partition_point(|&(_, hi)| hi < seq);
        let Some(&(lo, hi)) = self.holes.get(i) else { return false };
        if seq < lo {
            return false;
        }
        match (seq == lo, seq == hi) {
            (true, true) => {
                self.holes.remove(i);
            }
            (true, false) => self.holes[i].0 = seq + 1,
            (false, true) => self.holes[i].1 = seq - 1,
            (false, false) => {
                self.holes[i].1 = seq - 1;
                self.holes.insert(i + 1, (seq + 1, hi));
                if self.holes.len() > MAX_HOLE_RANGES {
                    let (a, b) = self.holes.pop_front().expect("non-empty");
                    self.counts.missing += b - a + 1;
                }
            }
        }
        true
    }
}
