//! The publish path: one message or a run, to a topic's members or to every
//! subscriber of the hub.
//!
//! A publish allocates its message(s), prepays every recipient's reference to
//! each message with one atomic (`shared.rs`), loads the target set's snapshot,
//! and for each member offers the message or the run in one call (`offer_run`:
//! one reservation on the member's ring for as much of the run as fits), then
//! evicts the member or wakes it if it was parked. `publish_many` builds runs of
//! up to 64 messages on the stack, so a run costs no allocation beyond its
//! messages. Concurrent publishers start their walk at a per-thread shard and
//! chunk (`Members::for_each_from`) so that they do not contend for the same
//! rings at the same moment.

use std::sync::Arc;

use crate::error::{CloseReason, PublishError};
use crate::hub::Inner;
use crate::inbox::Inbox;
use crate::members::Members;
use crate::message::{Envelope, Message, Meta, Origin, Priority};
use crate::shared::Prepaid;
use crate::stats::{thread_index, PublishReport};
use crate::topic::TopicInner;

/// Messages built on the stack per pass of `publish_many`.
const RUN: usize = 64;

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
        make: impl FnOnce(Meta) -> T,
    ) -> Result<PublishReport, PublishError> {
        self.check_open()?;
        if topic.members.is_empty() {
            return Ok(self.count_empty(1));
        }
        let meta = topic.next_meta();
        let msg = Message::new(Some(topic.name.clone()), Origin::Topic, meta, priority, make(meta));
        let mut r = PublishReport { seq: meta.seq, messages: 1, ..PublishReport::default() };
        self.deliver(&topic.members, &msg, &mut r);
        self.counters.publish(&r);
        Ok(r)
    }

    pub(crate) fn publish_topic_many<I: IntoIterator<Item = T>>(
        &self,
        topic: &TopicInner<T>,
        priority: Priority,
        payloads: I,
    ) -> Result<PublishReport, PublishError> {
        self.check_open()?;
        if topic.members.is_empty() {
            return Ok(self.count_empty(payloads.into_iter().count() as u64));
        }
        Ok(self.publish_run(&topic.members, Some(&topic.name), Origin::Topic, priority, payloads, |n| {
            topic.next_metas(n)
        }))
    }

    /// Offers one message to every member of `set`.
    #[inline]
    pub(crate) fn deliver(&self, set: &Members<T>, msg: &Message<T>, r: &mut PublishReport) {
        let priority = msg.priority();
        // One atomic for every recipient's reference (see `shared.rs`).
        let run = [Some(msg.inner.prepay(set.len()))];
        set.for_each_from(thread_index(), |inbox| self.offer_and_wake(inbox, &run, priority, r));
    }

    /// One member's share of a publish: offer the run, evict or wake.
    #[inline]
    fn offer_and_wake(
        &self,
        inbox: &Arc<Inbox<T>>,
        run: &[Option<Prepaid<'_, Envelope<T>>>],
        priority: Priority,
        r: &mut PublishReport,
    ) {
        let (queued, evict) = inbox.offer_run(run, priority, r);
        if evict {
            self.close_inbox(inbox, CloseReason::SlowConsumer);
        }
        if queued {
            r.wakes += u64::from(inbox.notify());
        }
    }

    /// `publish_many`: runs of up to [`RUN`] messages, each run pushed whole into
    /// each ring. `number(n)` reserves `n` sequence numbers and returns the first.
    pub(crate) fn publish_run<I: IntoIterator<Item = T>>(
        &self,
        set: &Members<T>,
        topic: Option<&Arc<str>>,
        origin: Origin,
        priority: Priority,
        payloads: I,
        number: impl Fn(u64) -> Meta,
    ) -> PublishReport {
        let mut r = PublishReport::default();
        let mut it = payloads.into_iter().peekable();
        let mut run: [Option<Message<T>>; RUN] = [const { None }; RUN];
        while it.peek().is_some() {
            let mut n = 0;
            let mut staged: [Option<T>; RUN] = [const { None }; RUN];
            while n < RUN {
                match it.next() {
                    Some(p) => {
                        staged[n] = Some(p);
                        n += 1;
                    }
                    None => break,
                }
            }
            let first = number(n as u64);
            if r.seq == 0 {
                r.seq = first.seq;
            }
            for (i, p) in staged.iter_mut().take(n).enumerate() {
                let meta = Meta { seq: first.seq + i as u64, epoch: first.epoch };
                let payload = p.take().expect("staged");
                run[i] = Some(Message::new(topic.cloned(), origin, meta, priority, payload));
            }
            r.messages += n as u64;
            {
                // One atomic per message for all its recipients (see `shared.rs`).
                let members = set.len();
                let mut pres: [Option<Prepaid<'_, Envelope<T>>>; RUN] = [const { None }; RUN];
                for (pre, msg) in pres.iter_mut().zip(run.iter().take(n)) {
                    *pre = msg.as_ref().map(|m| m.inner.prepay(members));
                }
                let pres = &pres[..n];
                set.for_each_from(thread_index(), |inbox| self.offer_and_wake(inbox, pres, priority, &mut r));
            }
            for slot in run.iter_mut().take(n) {
                *slot = None;
            }
        }
        self.counters.publish(&r);
        r
    }
}
