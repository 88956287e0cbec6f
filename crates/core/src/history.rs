//! A topic's recent past: the last `size` messages delivered, none older than
//! `ttl`, kept as the same shared messages (no copy), in `seq` order.
//!
//! # Who touches it
//!
//! Only the holder of the topic's walk (`sequencer.rs`): the walker appends
//! each run after delivering it, and a join from a position or a history read
//! takes the walk to copy from it. The walk is the exclusion, so the buffer
//! needs no lock and no atomics of its own; publishers never wait for it (a
//! publisher that finds the walk taken returns, as always).
//!
//! # What it holds
//!
//! A deque of `(message, time delivered)`, oldest first. Appending past `size`
//! drops the oldest; entries older than `ttl` are dropped when the buffer is
//! next written or read. The `seq`s it holds are consecutive, except for the
//! numbers of publishes that panicked (holes, never published). The storage
//! (a deque of `size` entries, 24 bytes each) is allocated at the first
//! append.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::Message;

pub(crate) struct HistoryBuf<T> {
    /// Delivered messages, oldest first; `seq` increasing.
    entries: VecDeque<(Message<T>, Instant)>,
    size: usize,
    ttl: Duration,
}

impl<T> HistoryBuf<T> {
    pub(crate) fn new(size: usize, ttl: Duration) -> Self {
        HistoryBuf { entries: VecDeque::new(), size, ttl }
    }

    /// Appends a delivered message (the walker's own handle: no clone).
    pub(crate) fn push(&mut self, m: Message<T>, now: Instant) {
        if self.size == 0 {
            return;
        }
        if self.entries.len() == self.size {
            self.entries.pop_front();
        }
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(self.size);
        }
        self.entries.push_back((m, now));
    }

    /// Drops what is older than the TTL.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((_, at)) = self.entries.front() {
            if now.saturating_duration_since(*at) <= self.ttl {
                break;
            }
            self.entries.pop_front();
        }
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            // An idle topic gives its memory back.
            self.entries = VecDeque::new();
        }
    }

    /// Drops everything (the numbering moved: see `Walk::jump`).
    pub(crate) fn clear(&mut self) {
        self.entries = VecDeque::new();
    }

    /// Puts `older` (oldest first, consecutive, ending just before the
    /// oldest held) in front, as far as the size allows (the newest of them
    /// first), dated like the oldest held so that age order holds. Returns
    /// how many went in.
    pub(crate) fn prepend(&mut self, older: Vec<Message<T>>, now: Instant) -> usize {
        let at = self.entries.front().map_or(now, |(_, at)| *at);
        let room = self.size.saturating_sub(self.entries.len()).min(older.len());
        if self.entries.capacity() == 0 && room > 0 {
            self.entries.reserve_exact(self.size);
        }
        for m in older.into_iter().rev().take(room) {
            self.entries.push_front((m, at));
        }
        room
    }

    /// The oldest `seq` held, if any.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|(m, _)| m.seq())
    }

    /// Up to `limit` messages after `seq` `after`, oldest first (clones of the
    /// shared handles).
    pub(crate) fn after(&self, after: u64, limit: usize) -> Vec<Message<T>> {
        // `seq`s increase: skip the older ones by binary search.
        let start = self.entries.partition_point(|(m, _)| m.seq() <= after);
        self.entries.range(start..).take(limit).map(|(m, _)| m.clone()).collect()
    }

    /// The newest `limit` messages, oldest first.
    pub(crate) fn latest(&self, limit: usize) -> Vec<Message<T>> {
        let start = self.entries.len().saturating_sub(limit);
        self.entries.range(start..).map(|(m, _)| m.clone()).collect()
    }

    /// Messages held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::message::{Meta, Origin, Priority};

    fn m(seq: u64) -> Message<u64> {
        Message::new(None, Origin::Topic, Meta { seq, epoch: 1 }, Priority::Normal, seq)
    }

    fn seqs(v: &[Message<u64>]) -> Vec<u64> {
        v.iter().map(|m| m.seq()).collect()
    }

    #[test]
    fn keeps_the_last_size_in_order() {
        let now = Instant::now();
        let mut h = HistoryBuf::new(3, Duration::from_secs(60));
        for s in 1..=5 {
            h.push(m(s), now);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.oldest(), Some(3));
        assert_eq!(seqs(&h.after(0, 10)), vec![3, 4, 5]);
        assert_eq!(seqs(&h.after(3, 10)), vec![4, 5]);
        assert_eq!(seqs(&h.after(3, 1)), vec![4]);
        assert_eq!(seqs(&h.after(5, 10)), Vec::<u64>::new());
        assert_eq!(seqs(&h.latest(2)), vec![4, 5]);
        assert_eq!(seqs(&h.latest(9)), vec![3, 4, 5]);
    }

    #[test]
    fn expires_by_age_and_gives_memory_back() {
        let t0 = Instant::now();
        let mut h = HistoryBuf::new(8, Duration::from_secs(10));
        h.push(m(1), t0);
        h.push(m(2), t0 + Duration::from_secs(5));
        h.expire(t0 + Duration::from_secs(12));
        assert_eq!(seqs(&h.after(0, 10)), vec![2], "1 is 12 s old, 2 is 7 s old");
        h.expire(t0 + Duration::from_secs(16));
        assert_eq!(h.len(), 0);
        assert_eq!(h.entries.capacity(), 0, "an empty history holds no storage");
    }

    #[test]
    fn size_zero_keeps_nothing() {
        let mut h = HistoryBuf::new(0, Duration::from_secs(10));
        h.push(m(1), Instant::now());
        assert_eq!(h.len(), 0);
    }
}
