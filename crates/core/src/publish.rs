//! The publish path: one message or a run, to a topic's members or to every
//! subscriber of the hub, numbered and delivered in order.
//!
//! A publish reserves its numbers in the target's sequencer log, builds its
//! message(s) with them, writes them into the log, and then delivers the log
//! if no other publisher is doing so (see `sequencer.rs`: the walk). The
//! walker prepays every recipient's reference to each message with one atomic
//! (`shared.rs`), loads the target set's snapshot, and for each member offers
//! the run in one call (`offer_run`: one reservation on the member's ring for
//! as much of the run as fits), then evicts the member or wakes it if it was
//! parked. Walkers start at a per-thread shard and chunk
//! (`Members::for_each_from`) so that walkers of different topics do not
//! contend for the same rings at the same moment.

use std::sync::Arc;

use crate::error::{CloseReason, PublishError};
use crate::hub::Inner;
use crate::loom::Backoff;
use crate::members::Members;
use crate::message::{Message, Meta, Origin, Priority};
use crate::ring::Run;
use crate::sequencer::{self, Reserved, Sequencer, RUN};
use crate::stats::{thread_index, PublishReport};
use crate::topic::TopicInner;

/// Where a publish goes: the sequencer that numbers it, the members it
/// reaches, and what its messages say of their origin.
pub(crate) struct Target<'a, T> {
    pub(crate) seq: &'a Sequencer<T>,
    pub(crate) set: &'a Members<T>,
    pub(crate) topic: Option<&'a Arc<str>>,
    pub(crate) origin: Origin,
    pub(crate) epoch: u64,
}

impl<'a, T> Target<'a, T> {
    pub(crate) fn topic(t: &'a TopicInner<T>) -> Self {
        Target { seq: &t.seq, set: &t.members, topic: Some(&t.name), origin: Origin::Topic, epoch: t.epoch() }
    }
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    /// A publish to a topic with no members: counted, nothing allocated.
    pub(crate) fn count_empty(&self, messages: u64) -> PublishReport {
        let r = PublishReport { messages, ..PublishReport::default() };
        self.counters.publish(&r);
        r
    }

    pub(crate) fn publish_topic(
        &self,
        topic: &TopicInner<T>,
        priority: Priority,
        key: Option<&str>,
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        self.check_open()?;
        // With a history, every publish takes a number (a subscriber that
        // comes back will want it); without, nobody is there to number for.
        if topic.members.is_empty() && !topic.seq.keeps_history() {
            return Ok(self.count_empty(1));
        }
        Ok(self.publish_one(&Target::topic(topic), priority, key, make))
    }

    pub(crate) fn publish_topic_many<I: IntoIterator<Item = T>>(
        &self,
        topic: &TopicInner<T>,
        priority: Priority,
        payloads: I,
    ) -> Result<PublishReport, PublishError> {
        self.check_open()?;
        if topic.members.is_empty() && !topic.seq.keeps_history() {
            return Ok(self.count_empty(payloads.into_iter().count() as u64));
        }
        Ok(self.publish_run(&Target::topic(topic), priority, payloads))
    }

    /// One message: numbered, built, logged, then delivered (by this call or
    /// by the walk in progress).
    pub(crate) fn publish_one(
        &self,
        to: &Target<'_, T>,
        priority: Priority,
        key: Option<&str>,
        make: impl FnOnce(Meta) -> T,
    ) -> PublishReport {
        let mut r = PublishReport { messages: 1, ..PublishReport::default() };
        let mut slot = Reserved { run: self.reserve(to, 1, &mut r), filled: 0 };
        let meta = Meta { seq: to.seq.number(slot.run.pos), epoch: to.epoch };
        r.seq = meta.seq;
        // If `make` panics, the guard fills the number with a hole.
        let msg = match key {
            None => Message::new(to.topic.cloned(), to.origin, meta, priority, make(meta)),
            Some(k) => Message::keyed(to.topic.cloned(), meta, priority, Some(Arc::from(k)), make(meta)),
        };
        slot.run.write(0, msg);
        slot.filled = 1;
        drop(slot);
        self.walk(to, &mut r);
        self.counters.publish(&r);
        r
    }

    /// `publish_many`: runs of up to [`RUN`] messages, each numbered with one
    /// reservation, logged, and delivered as one run into each ring.
    pub(crate) fn publish_run<I: IntoIterator<Item = T>>(
        &self,
        to: &Target<'_, T>,
        priority: Priority,
        payloads: I,
    ) -> PublishReport {
        let mut r = PublishReport::default();
        let mut it = payloads.into_iter().peekable();
        while it.peek().is_some() {
            let mut staged: [Option<T>; RUN] = [const { None }; RUN];
            let mut n = 0;
            for (slot, p) in staged.iter_mut().zip(&mut it) {
                *slot = Some(p);
                n += 1;
            }
            let mut done = 0;
            while done < n {
                let run = self.reserve(to, n - done, &mut r);
                for i in 0..run.n {
                    let meta = Meta { seq: to.seq.number(run.pos + i), epoch: to.epoch };
                    if r.seq == 0 {
                        r.seq = meta.seq;
                    }
                    let payload = staged[done + i].take().expect("staged");
                    run.write(i, Message::new(to.topic.cloned(), to.origin, meta, priority, payload));
                }
                done += run.n;
            }
            r.messages += n as u64;
            self.walk(to, &mut r);
        }
        self.counters.publish(&r);
        r
    }

    /// Reserves up to `want` numbers in the target's log. While the log is
    /// full, delivers it if the walk is free, else waits for the walker
    /// (see `sequencer.rs`, "Progress").
    fn reserve<'s>(&self, to: &Target<'s, T>, want: usize, r: &mut PublishReport) -> Run<'s, T> {
        let backoff = Backoff::new();
        loop {
            let run = to.seq.reserve(want);
            if run.n > 0 {
                return run;
            }
            self.walk(to, r);
            backoff.snooze();
        }
    }

    /// Delivers the target's log while this thread can hold its walk.
    fn walk(&self, to: &Target<'_, T>, r: &mut PublishReport) {
        sequencer::walk(to.seq, to.set, thread_index(), r, &|inbox| {
            self.close_inbox(inbox, CloseReason::SlowConsumer);
        });
    }
}
