//! Gap repair: a subscriber that lost messages takes them back from its
//! topics' histories, so that a consumer that falls behind for a moment loses
//! nothing that is still kept.
//!
//! # Where it runs: on the receiver's side, never a publisher's
//!
//! A message that does not fit a subscriber's ring is lost to it at the
//! publisher (displaced under `DropOldest`, not admitted under `DropNewest` or
//! the high-water mark). A publisher cannot put it aside for later without
//! touching the receiver's side of the ring, and it must not wait. But the
//! topic keeps the same shared message in its history (`history.rs`), in
//! `seq` order. So the repair is the receiver's: it finds what it lost by
//! `seq` and copies the handles back from the history. Publishers do exactly
//! what they did; a subscriber that never lags pays a check of each
//! message's `seq` against its topic's last (a pointer comparison while the
//! topic does not change, see [`Streams`]), and only when it asked for
//! repair ([`SubscribeOptions::repair`](crate::SubscribeOptions::repair)).
//!
//! # Finding what was lost, exactly
//!
//! Per topic, the receiver keeps the `(epoch, seq)` it handed out last. A
//! topic's messages reach a subscriber in `seq` order (`sequencer.rs`), so:
//!
//! - **A gap seen in the stream.** A message numbered `s` after `l` with
//!   `s > l + 1`: every message in `(l, s)` was sent to this subscriber before
//!   `s` and did not arrive, so each was lost. The receiver reads the history
//!   after `l` and hands out what it holds of `(l, s)` before `s`.
//! - **A loss at the tail.** The lost messages may be a topic's latest, with
//!   nothing after them yet. The engine's lag notice (a count, at its
//!   position) starts a *round*: for every topic joined, the receiver reads
//!   the history after `l` (which takes the topic's walk: every message up to
//!   the topic's position `p` has then been sent to every member, or lost);
//!   then it claims everything ready in its ring. A message of the topic in
//!   `(l, p]` that is in neither the ring nor the stream seen is lost, and
//!   repaired from the history page just read. A loss counted while claiming
//!   starts the round again (a bounded number of times), so that every loss
//!   the engine counted before the round's end is found by `seq`.
//! - **What has no `seq` to find it by.** Direct sends carry none. The engine
//!   counts every loss; the receiver counts those it found by `seq`. The
//!   difference, at the end of a round, is reported as lost (a lag notice).
//!
//! Only messages owed to the subscriber are repaired: those after the
//! topic's position when it joined ([`Inbox::memberships`]), so a subscriber
//! that left a topic and joined it again is not handed what was published
//! while it was away.
//!
//! # What the receiver sees
//!
//! Repaired messages arrive in their place, in `seq` order, as ordinary
//! messages; [`Subscriber::repaired`](crate::Subscriber::repaired) counts
//! them. What could not be repaired (older than the history, or from a topic
//! without one) is reported as `Lagged(n)` before the messages that follow
//! the gap, as without repair. Broadcasts are numbered per hub and kept in no
//! history: a gap in them is reported lost at its place.
//!
//! # Conflation
//!
//! With [`Overflow::Conflate`](crate::Overflow::Conflate) (the subscriber's
//! policy, or the topic's: [`TopicOptions::overflow`](crate::TopicOptions)),
//! messages published with a key ([`Hub::publish_keyed`](crate::Hub::publish_keyed)) are
//! repaired conflated: of the messages recovered for one gap, only the newest
//! per key is handed out; the older ones are counted as conflated
//! ([`Subscriber::conflated`](crate::Subscriber::conflated)), not lost. A
//! slow dashboard gets the newest price of every instrument that moved, not a
//! gap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::task::Poll;

use crate::config::Overflow;
use crate::error::{RecvError, TryRecvError};
use crate::hub::Inner;
use crate::inbox::{Inbox, Sink};
use crate::message::{Message, Origin};
use crate::topic::HistoryPage;
use crate::topic::TopicInner;

/// How many times a round starts again when losses keep being counted while
/// it claims the ring (a ring overflowing faster than it is read). Past it,
/// the losses not found by `seq` yet are found later, at their gap.
const ROUNDS: usize = 4;

/// Where the repair reads a topic's history: the hub (counting what the
/// read delivers into its stats), or a bare topic in the loom models.
pub(crate) trait Histories<T> {
    /// Up to `limit` messages after `since`, and the position, read under the
    /// topic's walk (see `recovery::read_history`).
    fn read(&self, topic: &TopicInner<T>, limit: usize, since: u64) -> HistoryPage<T>;
}

impl<T: Clone + Send + Sync + 'static> Histories<T> for Inner<T> {
    fn read(&self, topic: &TopicInner<T>, limit: usize, since: u64) -> HistoryPage<T> {
        self.history(topic, limit, Some(since))
    }
}

/// A topic as a round read it: its position once every message up to it
/// was sent, and what its history holds after what was handed out.
struct Tail<T> {
    topic: Arc<TopicInner<T>>,
    /// Messages after this `seq` are owed (the join's position).
    owed: u64,
    at: u64,
    held: Vec<Message<T>>,
}

/// Per topic, the epoch and `seq` handed out last. The topic of the last
/// message is kept aside: a run of one topic's messages (the common case)
/// costs a pointer comparison per message, not a hash (callgrind,
/// `hot_path 10000 5 repair`: the hash was 170 of 350 instructions a
/// repaired subscriber added per delivery).
#[derive(Default)]
struct Streams {
    hot: Option<(Arc<str>, (u64, u64))>,
    rest: HashMap<Arc<str>, (u64, u64)>,
}

impl Streams {
    fn is_hot(&self, name: &Arc<str>) -> bool {
        matches!(&self.hot, Some((n, _)) if Arc::ptr_eq(n, name) || **n == **name)
    }

    fn get(&self, name: &str) -> Option<(u64, u64)> {
        match &self.hot {
            Some((n, v)) if **n == *name => Some(*v),
            _ => self.rest.get(name).copied(),
        }
    }

    /// The entry of `name`, made the hot one.
    fn get_mut(&mut self, name: &Arc<str>) -> Option<&mut (u64, u64)> {
        if !self.is_hot(name) {
            let v = self.rest.remove(&**name)?;
            if let Some((n, old)) = self.hot.replace((name.clone(), v)) {
                self.rest.insert(n, old);
            }
        }
        self.hot.as_mut().map(|(_, v)| v)
    }

    fn insert(&mut self, name: Arc<str>, v: (u64, u64)) {
        if self.is_hot(&name) {
            if let Some((_, old)) = &mut self.hot {
                *old = v;
            }
            return;
        }
        self.rest.remove(&*name);
        if let Some((n, old)) = self.hot.replace((name, v)) {
            self.rest.insert(n, old);
        }
    }

    fn get_or_insert(&mut self, name: &Arc<str>, v: (u64, u64)) -> &mut (u64, u64) {
        if self.get_mut(name).is_none() {
            self.insert(name.clone(), v);
        }
        self.get_mut(name).expect("just inserted")
    }
}

/// Where a message stands in its stream.
enum Place {
    /// Next in order: hand it out.
    Next,
    /// Handed out already (from a history): drop it.
    Again,
    /// After a gap in a topic: repair `(before, seq)` first.
    GapAfter(u64),
    /// After this many broadcasts lost (no history to repair from).
    LostBefore(u64),
}

/// One thing the receiver hands out next.
enum Item<T> {
    Msg(Message<T>),
    Lost(u64),
}

/// The receiver's repair state (see the module docs).
pub(crate) struct Repair<T> {
    /// Per topic: the epoch and `seq` handed out last.
    last: Streams,
    /// The broadcast stream's epoch and `seq` handed out last.
    broadcast: Option<(u64, u64)>,
    /// What is handed out next, in order.
    out: VecDeque<Item<T>>,
    /// Reused for what is taken from the ring.
    scratch: Vec<Message<T>>,
    /// Losses the engine reported.
    counted: u64,
    /// Losses found by `seq` (repaired, conflated or reported).
    found: u64,
    /// Losses reported without a `seq` (see the module docs).
    unnumbered: u64,
    /// Messages handed out from a history.
    repaired: u64,
    /// Messages left out as older than a newer one with the same key.
    conflated: u64,
    /// Repair conflated by key ([`Overflow::Conflate`](crate::Overflow)).
    conflate: bool,
    /// The last round stopped with losses still being counted: the next
    /// receive runs another before taking more.
    unsettled: bool,
    /// `repaired` and `conflated` as last announced ([`Repair::take_news`]).
    told: (u64, u64),
}

impl<T: Clone + Send + Sync + 'static> Repair<T> {
    pub(crate) fn new(conflate: bool) -> Self {
        Repair {
            last: Streams::default(),
            broadcast: None,
            out: VecDeque::new(),
            scratch: Vec::new(),
            counted: 0,
            found: 0,
            unnumbered: 0,
            repaired: 0,
            conflated: 0,
            conflate,
            unsettled: false,
            told: (0, 0),
        }
    }

    pub(crate) fn repaired(&self) -> u64 {
        self.repaired
    }

    pub(crate) fn conflated(&self) -> u64 {
        self.conflated
    }

    /// What was repaired and conflated since the last call, if anything.
    pub(crate) fn take_news(&mut self) -> Option<(u64, u64)> {
        let now = (self.repaired, self.conflated);
        let news = (now.0 - self.told.0, now.1 - self.told.1);
        self.told = now;
        (news != (0, 0)).then_some(news)
    }

    /// One receive: hands out what is pending, else takes from the ring
    /// through `take` (the async or the non-blocking receive) and repairs.
    /// `Ok(0)` only when `take` found nothing (non-blocking).
    pub(crate) fn recv(
        &mut self,
        inbox: &Arc<Inbox<T>>,
        hub: &impl Histories<T>,
        sink: &mut impl Sink<T>,
        max: usize,
        mut take: impl FnMut(&mut Vec<Message<T>>, usize) -> Poll<Result<usize, RecvError>>,
    ) -> Poll<Result<usize, RecvError>> {
        loop {
            if let Some(r) = self.hand_out(sink, max) {
                return Poll::Ready(r);
            }
            if self.unsettled {
                self.round(0, inbox, hub);
                continue;
            }
            let mut got = std::mem::take(&mut self.scratch);
            let polled = take(&mut got, max);
            match polled {
                Poll::Ready(Ok(0)) | Poll::Pending | Poll::Ready(Err(RecvError::Closed(_))) => {
                    self.scratch = got;
                    return polled;
                }
                Poll::Ready(Ok(_)) => {
                    // Straight into `sink` while nothing is pending and
                    // nothing is missing (the common case: no queue, no
                    // copy); from the first gap on, through the queue.
                    let (mut direct, mut k) = (self.out.is_empty(), 0);
                    for m in got.drain(..) {
                        let place = self.place(&m, inbox);
                        if direct && matches!(place, Place::Next) {
                            sink.put(m);
                            k += 1;
                        } else if !matches!(place, Place::Again) {
                            direct = false;
                            self.queue(place, m, inbox, hub);
                        }
                    }
                    self.scratch = got;
                    if k > 0 {
                        return Poll::Ready(Ok(k));
                    }
                }
                Poll::Ready(Err(RecvError::Lagged(n))) => {
                    self.scratch = got;
                    self.round(n, inbox, hub);
                }
            }
        }
    }

    /// Moves pending messages into `sink` (up to `max`, stopping before a
    /// loss), or reports the loss at the front.
    fn hand_out(&mut self, sink: &mut impl Sink<T>, max: usize) -> Option<Result<usize, RecvError>> {
        if let Some(Item::Lost(n)) = self.out.front() {
            let n = *n;
            self.out.pop_front();
            return Some(Err(RecvError::Lagged(n)));
        }
        let mut k = 0;
        while k < max {
            match self.out.front() {
                Some(Item::Msg(_)) => {
                    if let Some(Item::Msg(m)) = self.out.pop_front() {
                        sink.put(m);
                        k += 1;
                    }
                }
                _ => break,
            }
        }
        (k > 0).then_some(Ok(k))
    }

    fn lost(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(Item::Lost(m)) = self.out.back_mut() {
            *m += n;
        } else {
            self.out.push_back(Item::Lost(n));
        }
    }

    /// Where one message from the ring stands in its stream (and the
    /// stream's last `seq` moved to it).
    fn place(&mut self, m: &Message<T>, inbox: &Arc<Inbox<T>>) -> Place {
        let (epoch, seq) = (m.epoch(), m.seq());
        match m.origin() {
            Origin::Direct => Place::Next,
            Origin::Broadcast => {
                let gap = match self.broadcast {
                    Some((e, l)) if e == epoch && seq > l + 1 => seq - l - 1,
                    _ => 0,
                };
                self.broadcast = Some((epoch, seq));
                if gap > 0 {
                    Place::LostBefore(gap)
                } else {
                    Place::Next
                }
            }
            Origin::Topic => {
                let name = m.topic_arc().expect("a topic message names its topic");
                match self.last.get_mut(name) {
                    Some(last) if last.0 == epoch => {
                        if seq <= last.1 {
                            // Handed out already, from the history (a round
                            // read past what the ring still held).
                            return Place::Again;
                        }
                        let before = last.1;
                        last.1 = seq;
                        if seq > before + 1 {
                            Place::GapAfter(before)
                        } else {
                            Place::Next
                        }
                    }
                    _ => {
                        // The first of this topic: owed is what came after
                        // the join (a message just before may come too).
                        let owed = inbox.membership(name).map_or(seq - 1, |(_, after)| after.min(seq - 1));
                        self.last.insert(name.clone(), (epoch, seq));
                        if seq > owed + 1 {
                            Place::GapAfter(owed)
                        } else {
                            Place::Next
                        }
                    }
                }
            }
        }
    }

    /// One message from the ring into the queue handed out next, after the
    /// repair of the gap before it, if any.
    fn observe(&mut self, m: Message<T>, inbox: &Arc<Inbox<T>>, hub: &impl Histories<T>) {
        let place = self.place(&m, inbox);
        self.queue(place, m, inbox, hub);
    }

    fn queue(&mut self, place: Place, m: Message<T>, inbox: &Arc<Inbox<T>>, hub: &impl Histories<T>) {
        match place {
            Place::Again => return,
            Place::Next => {}
            Place::LostBefore(n) => {
                self.found += n;
                self.lost(n);
            }
            Place::GapAfter(before) => {
                let name = m.topic_arc().expect("a topic message names its topic").clone();
                self.fill(&name, m.epoch(), before, m.seq() - 1, None, inbox, hub);
            }
        }
        self.out.push_back(Item::Msg(m));
    }

    /// Repairs `(after, upto]` of topic `name`: from `page` when given (read
    /// by a round), else from a history read now.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        name: &str,
        epoch: u64,
        after: u64,
        upto: u64,
        page: Option<Vec<Message<T>>>,
        inbox: &Arc<Inbox<T>>,
        hub: &impl Histories<T>,
    ) {
        let membership = inbox.membership(name).filter(|_| inbox.is_open());
        let Some((topic, owed_after)) = membership else {
            // Left meanwhile, or closing: nothing is owed any more; the loss
            // is reported as counted.
            return;
        };
        let after = after.max(owed_after);
        if after >= upto {
            return;
        }
        let held = match page {
            Some(p) => p,
            None => hub.read(&topic, (upto - after) as usize, after).messages,
        };
        let mut got: Vec<Message<T>> =
            held.into_iter().filter(|m| m.epoch() == epoch && m.seq() > after && m.seq() <= upto).collect();
        let missing = upto - after;
        self.found += missing;
        self.lost(missing - got.len() as u64);
        if self.conflate || topic.seq.overflow() == Some(Overflow::Conflate) {
            self.conflated += conflate(&mut got);
        }
        self.repaired += got.len() as u64;
        self.out.extend(got.into_iter().map(Item::Msg));
    }

    /// The engine reported `n` lost: find them by `seq` (see "A loss at the
    /// tail").
    fn round(&mut self, n: u64, inbox: &Arc<Inbox<T>>, hub: &impl Histories<T>) {
        self.counted += n;
        self.unsettled = false;
        if !inbox.is_open() {
            // Closing: its topics are being taken away, so nothing is owed
            // any more. The losses are reported as counted.
            let lost = self.counted.saturating_sub(self.found + self.unnumbered);
            self.unnumbered += lost;
            self.lost(lost);
            return;
        }
        // Where the losses counted so far stand in the stream: before
        // anything the round claims.
        let at = self.out.len();
        for _ in 0..ROUNDS {
            // Per topic: its position once every message up to it was sent
            // (the history read takes the walk), and what the history holds
            // after what was handed out (or after the join, if nothing was).
            let pages: Vec<Tail<T>> = inbox
                .memberships()
                .into_iter()
                .filter_map(|(topic, owed)| {
                    let (epoch, last) = self.last.get(&topic.name).unwrap_or((topic.epoch(), owed));
                    let page = hub.read(&topic, usize::MAX, last);
                    (page.position.epoch == epoch).then_some(Tail {
                        topic,
                        owed,
                        at: page.position.seq,
                        held: page.messages,
                    })
                })
                .collect();
            let mut more = 0;
            let mut claimed = std::mem::take(&mut self.scratch);
            loop {
                match inbox.try_pop_into(&mut claimed, usize::MAX) {
                    Ok(0) | Err(TryRecvError::Empty) => break,
                    Ok(_) => {}
                    Err(TryRecvError::Lagged(k)) => more += k,
                    Err(TryRecvError::Closed(_)) => break,
                }
            }
            for m in claimed.drain(..) {
                self.observe(m, inbox, hub);
            }
            self.scratch = claimed;
            for Tail { topic, owed, at, held } in pages {
                let last = self.last.get_or_insert(&topic.name, (topic.epoch(), owed));
                let epoch = last.0;
                if epoch != topic.epoch() || last.1 >= at {
                    continue;
                }
                let before = last.1;
                last.1 = at;
                self.fill(&topic.name, epoch, before, at, Some(held), inbox, hub);
            }
            self.counted += more;
            self.unsettled = more > 0;
            if !self.unsettled {
                break;
            }
        }
        if self.unsettled {
            // Losses counted in the last claim may be of messages the round
            // has not found by `seq` yet: settle before reporting any as
            // unnumbered.
            return;
        }
        // Losses the engine counted that no `seq` accounts for.
        let unnumbered = self.counted.saturating_sub(self.found + self.unnumbered);
        if unnumbered > 0 {
            self.unnumbered += unnumbered;
            self.out.insert(at, Item::Lost(unnumbered));
        }
    }
}

/// Keeps, of `msgs` (one topic, `seq` order), only the newest per key;
/// messages without a key all stay. Returns how many were left out.
fn conflate<T>(msgs: &mut Vec<Message<T>>) -> u64 {
    let before = msgs.len();
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    let mut keep = vec![true; msgs.len()];
    for (i, m) in msgs.iter().enumerate().rev() {
        if let Some(k) = m.key() {
            if !seen.insert(k.clone()) {
                keep[i] = false;
            }
        }
    }
    let mut i = 0;
    msgs.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    (before - msgs.len()) as u64
}
