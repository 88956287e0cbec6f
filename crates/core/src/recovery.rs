//! Joining a topic from a position (recovery), or with its latest message,
//! and reading its history.
//!
//! # The hand-off, without gap or duplicate
//!
//! A subscriber that comes back says where it was: `(epoch, seq)`. It must
//! receive every message after `seq` in order, then the live ones, with none
//! missing and none twice at the point where replay ends and live begins. The
//! join takes the topic's walk (`sequencer.rs`), which stops delivery for the
//! topic while it is held, and then:
//!
//! 1. delivers what is ready in the log to the current members (so that every
//!    message up to the log's `head` is delivered, and in the history);
//! 2. decides from the history what to replay: the messages after `seq`, all
//!    of them or none ("not recovered": the epoch changed, they are older
//!    than the history reaches, or more than the subscriber's ring has room
//!    for);
//! 3. adds the subscriber to the topic's members;
//! 4. pushes the replay into the subscriber's ring (one reservation, the
//!    ring's normal path);
//! 5. ends the walk, walking again if a message became ready meanwhile.
//!
//! Every message numbered up to `head` was delivered before step 3 and is in
//! the replay (if after `seq`); every later one is delivered by a walk that
//! starts after step 5 and loads a snapshot that holds the subscriber. So the
//! replay and the live stream meet exactly at `head`.
//!
//! # What it costs
//!
//! The topic's delivery pauses while a join holds the walk: the time to copy
//! the replay's handles (one reference count each) and to push them into one
//! ring. A join waits for the walk in progress, if any, to end.
//!
//! # Exact, or a clear "not recovered"
//!
//! `recovered: true` means every message after the position is in the
//! subscriber's ring, in order, before any live one. Anything else is
//! `recovered: false` with the reason and the topic's current position, and
//! the subscriber joins live from there: never a partial replay presented as
//! complete. If the replay meets a full ring (other topics filled it between
//! the room check and the push), the messages that did not enter are reported
//! to the subscriber as a lag at their position, and the answer says
//! `Overflowed`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{CloseReason, SubscribeError};
use crate::history::HistoryBuf;
use crate::hub::Inner;
use crate::inbox::Inbox;
use crate::message::{Message, Priority};
use crate::sequencer::{self, Walk};
use crate::stats::{thread_index, PublishReport};
use crate::topic::{HistoryPage, Position, TopicInner};

/// Where a join starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoinFrom {
    /// With the next message published.
    #[default]
    Now,
    /// With the topic's latest message (if it keeps a history and has one),
    /// then the live ones.
    Latest,
    /// With every message after this position (recovery), then the live ones.
    After(Position),
}

/// Why a join from a position did not recover the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRecovered {
    /// The topic's epoch is not the one given: the stream it named is gone
    /// (the topic expired, or the server restarted).
    EpochChanged,
    /// Messages after the position are older than the history reaches.
    TooOld,
    /// The position is ahead of the stream (not a position of this stream).
    Ahead,
    /// The topic keeps no history.
    NoHistory,
    /// More messages to replay than the subscriber's ring has room for.
    TooMany,
    /// The replay met a full ring; the subscriber was told of the loss at its
    /// place.
    Overflowed,
    /// The subscriber was already a member: nothing was replayed.
    AlreadyJoined,
}

impl NotRecovered {
    /// A stable, lowercase code (for wire protocols).
    pub fn code(self) -> &'static str {
        match self {
            NotRecovered::EpochChanged => "epoch_changed",
            NotRecovered::TooOld => "too_old",
            NotRecovered::Ahead => "ahead_of_stream",
            NotRecovered::NoHistory => "no_history",
            NotRecovered::TooMany => "too_many",
            NotRecovered::Overflowed => "overflowed",
            NotRecovered::AlreadyJoined => "already_joined",
        }
    }
}

impl fmt::Display for NotRecovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotRecovered::EpochChanged => "the topic's epoch changed: its stream was lost",
            NotRecovered::TooOld => "the missed messages are older than the history",
            NotRecovered::Ahead => "the position is ahead of the stream",
            NotRecovered::NoHistory => "the topic keeps no history",
            NotRecovered::TooMany => "more missed messages than the subscriber's queue holds",
            NotRecovered::Overflowed => "the subscriber's queue overflowed during the replay",
            NotRecovered::AlreadyJoined => "already a member of the topic",
        })
    }
}

/// What a join did.
///
/// For a join from a position or with the latest message, `position` is the
/// exact hand-off: the replay ends there and the live stream starts after it.
/// For [`JoinFrom::Now`] (which waits for nothing), every message after
/// `position` reaches the subscriber; one just before it may too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// False when the subscriber was already a member (nothing replayed).
    pub joined: bool,
    /// For [`JoinFrom::After`]: every message after the position was
    /// replayed, in order, before the live ones. False otherwise.
    pub recovered: bool,
    /// Why not, when a position was given and not recovered.
    pub reason: Option<NotRecovered>,
    /// The topic's position at the hand-off: the last `seq` before the live
    /// stream (the replay ends there).
    pub position: Position,
    /// Messages pushed as replay.
    pub replayed: usize,
}

/// What to replay for `from`, given the history and the position at the
/// hand-off.
fn plan<T>(
    h: &HistoryBuf<T>,
    keeps_history: bool,
    from: JoinFrom,
    now: Position,
) -> (Vec<Message<T>>, Option<NotRecovered>) {
    match from {
        JoinFrom::Now => (Vec::new(), None),
        JoinFrom::Latest => (h.latest(1), None),
        JoinFrom::After(p) if p.epoch != now.epoch => (Vec::new(), Some(NotRecovered::EpochChanged)),
        JoinFrom::After(p) if p.seq > now.seq => (Vec::new(), Some(NotRecovered::Ahead)),
        JoinFrom::After(p) if p.seq == now.seq => (Vec::new(), None),
        JoinFrom::After(_) if !keeps_history => (Vec::new(), Some(NotRecovered::NoHistory)),
        JoinFrom::After(p) => match h.oldest() {
            // Consecutive from the oldest held up to `now.seq`.
            Some(oldest) if oldest <= p.seq + 1 => (h.after(p.seq, usize::MAX), None),
            _ => (Vec::new(), Some(NotRecovered::TooOld)),
        },
    }
}

/// Joins `inbox` to `topic` from `from` (see the module docs): the walk, the
/// plan, the member insert, the replay. Deliveries (the ready log, the
/// replay) are counted into `r`; `evict` closes a member whose ring
/// overflowed under `Overflow::Evict`.
pub(crate) fn join_at<T>(
    topic: &Arc<TopicInner<T>>,
    inbox: &Arc<Inbox<T>>,
    from: JoinFrom,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) -> Result<Joined, SubscribeError> {
    if from == JoinFrom::Now {
        // Nothing to replay: no walk to wait for. The position is read after
        // the insert, so every message after it reaches the subscriber (a
        // run taken after the read loads its snapshot after the insert).
        let joined = inbox.join_with(&topic.name, |me| {
            topic.members.insert(me.clone());
            topic.clone()
        })?;
        return Ok(Joined {
            joined,
            recovered: false,
            reason: None,
            position: topic.position(),
            replayed: 0,
        });
    }
    with_walk(topic, start, r, evict, |w, r| {
        let now = topic.position();
        let (mut replay, mut reason) = w.history(|h| {
            h.expire(Instant::now());
            plan(h, topic.seq.keeps_history(), from, now)
        });
        // Room for the whole replay, or none of it.
        if replay.len() > inbox.capacity().saturating_sub(inbox.len()) {
            replay.clear();
            reason = Some(NotRecovered::TooMany);
        }
        let joined = inbox.join_before_replay(&topic.name, |me| {
            topic.members.insert(me.clone());
            topic.clone()
        })?;
        if !joined {
            return Ok(Joined {
                joined,
                recovered: false,
                reason: matches!(from, JoinFrom::After(_)).then_some(NotRecovered::AlreadyJoined),
                position: now,
                replayed: 0,
            });
        }
        let replayed = push_replay(inbox, &replay, r, evict);
        inbox.replayed(topic);
        if replayed < replay.len() {
            reason = Some(NotRecovered::Overflowed);
        }
        Ok(Joined {
            joined,
            recovered: matches!(from, JoinFrom::After(_)) && reason.is_none(),
            reason,
            position: now,
            replayed,
        })
    })
}

/// Reads `topic`'s history (see [`Topic::history`](crate::Topic::history)).
pub(crate) fn read_history<T>(
    topic: &TopicInner<T>,
    limit: usize,
    since: Option<u64>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) -> HistoryPage<T> {
    with_walk(topic, start, r, evict, |w, _| {
        let messages = w.history(|h| {
            h.expire(Instant::now());
            match since {
                Some(s) => h.after(s, limit),
                None => h.latest(limit),
            }
        });
        HistoryPage { position: topic.position(), messages }
    })
}

/// Runs `f` while holding `topic`'s walk, after delivering what is ready (so
/// that the position is exact and the history complete); then ends the walk,
/// delivering again if needed.
fn with_walk<T, R>(
    topic: &TopicInner<T>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
    f: impl FnOnce(&mut Walk<'_, T>, &mut PublishReport) -> R,
) -> R {
    with_walk_on(&topic.seq, &topic.members, start, r, evict, f)
}

/// [`with_walk`] on any sequencer and the set it delivers to (a topic's,
/// or the hub's broadcasts and every subscriber).
pub(crate) fn with_walk_on<T, R>(
    seq: &sequencer::Sequencer<T>,
    set: &crate::members::Members<T>,
    start: usize,
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
    f: impl FnOnce(&mut Walk<'_, T>, &mut PublishReport) -> R,
) -> R {
    let mut walk = seq.walk_blocking();
    walk.deliver(set, start, r, evict);
    let out = f(&mut walk, r);
    if walk.end() {
        sequencer::walk(seq, set, start, r, evict);
    }
    out
}

/// Pushes `replay` into `inbox`'s ring in order (the headroom above the
/// high-water mark may be used); returns how many entered.
fn push_replay<T>(
    inbox: &Arc<Inbox<T>>,
    replay: &[Message<T>],
    r: &mut PublishReport,
    evict: &impl Fn(&Arc<Inbox<T>>),
) -> usize {
    if replay.is_empty() {
        return 0;
    }
    let pres: Vec<_> = replay.iter().map(|m| Some(m.inner.prepay(1))).collect();
    let before = r.delivered;
    let (queued, evicted) = inbox.offer_run(&pres, Priority::High, r);
    if evicted {
        evict(inbox);
    }
    if queued {
        r.wakes += u64::from(inbox.notify());
    }
    (r.delivered - before) as usize
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    /// [`join_at`], counted into the hub's stats.
    pub(crate) fn join_topic_from(
        &self,
        inbox: &Arc<Inbox<T>>,
        topic: &Arc<TopicInner<T>>,
        from: JoinFrom,
    ) -> Result<Joined, SubscribeError> {
        let mut r = PublishReport::default();
        let out = join_at(topic, inbox, from, thread_index(), &mut r, &|i| {
            self.close_inbox(i, CloseReason::SlowConsumer);
        });
        self.counters.publish(&r);
        out
    }

    /// [`read_history`], counted into the hub's stats.
    pub(crate) fn history(&self, topic: &TopicInner<T>, limit: usize, since: Option<u64>) -> HistoryPage<T> {
        let mut r = PublishReport::default();
        let page = read_history(topic, limit, since, thread_index(), &mut r, &|i| {
            self.close_inbox(i, CloseReason::SlowConsumer);
        });
        self.counters.publish(&r);
        page
    }
}

/// Runs `f` while holding `topic`'s walk (see [`with_walk`]), the
/// deliveries counted into the hub's stats.
pub(crate) fn with_walk_counted<T: Clone + Send + Sync + 'static, R>(
    inner: &Inner<T>,
    topic: &TopicInner<T>,
    f: impl FnOnce(&mut Walk<'_, T>) -> R,
) -> R {
    let mut r = PublishReport::default();
    let evict = |i: &Arc<Inbox<T>>| {
        inner.close_inbox(i, CloseReason::SlowConsumer);
    };
    let out = with_walk(topic, thread_index(), &mut r, &evict, |w, _| f(w));
    inner.counters.publish(&r);
    out
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::message::{Meta, Origin};
    use std::time::Duration;

    fn history(seqs: std::ops::RangeInclusive<u64>) -> HistoryBuf<u64> {
        let mut h = HistoryBuf::new(100, Duration::from_secs(60));
        for s in seqs {
            h.push(
                Message::new(None, Origin::Topic, Meta { seq: s, epoch: 7 }, Priority::Normal, s),
                Instant::now(),
            );
        }
        h
    }

    fn seqs(v: &[Message<u64>]) -> Vec<u64> {
        v.iter().map(|m| m.seq()).collect()
    }

    #[test]
    fn plans_every_case() {
        let h = history(5..=9);
        let now = Position { epoch: 7, seq: 9 };
        let at = |seq| JoinFrom::After(Position { epoch: 7, seq });
        let (r, why) = plan(&h, true, at(6), now);
        assert_eq!((seqs(&r), why), (vec![7, 8, 9], None));
        let (r, why) = plan(&h, true, at(4), now);
        assert_eq!((seqs(&r), why), (vec![5, 6, 7, 8, 9], None), "the oldest held is the next one");
        assert_eq!(plan(&h, true, at(3), now).1, Some(NotRecovered::TooOld));
        let (r, why) = plan(&h, true, at(9), now);
        assert_eq!((seqs(&r), why), (vec![], None), "nothing missed");
        assert_eq!(plan(&h, true, at(10), now).1, Some(NotRecovered::Ahead));
        let other = JoinFrom::After(Position { epoch: 8, seq: 6 });
        assert_eq!(plan(&h, true, other, now).1, Some(NotRecovered::EpochChanged));
        assert_eq!(
            plan(&HistoryBuf::<u64>::new(0, Duration::ZERO), false, at(6), now).1,
            Some(NotRecovered::NoHistory)
        );
        assert_eq!(seqs(&plan(&h, true, JoinFrom::Latest, now).0), vec![9]);
        let (r, why) = plan(&h, true, JoinFrom::Now, now);
        assert_eq!((seqs(&r), why), (vec![], None));
        let empty = HistoryBuf::<u64>::new(100, Duration::from_secs(60));
        assert_eq!(plan(&empty, true, at(6), now).1, Some(NotRecovered::TooOld), "expired");
    }
}
