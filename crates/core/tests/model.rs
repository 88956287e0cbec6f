//! Random operation sequences against the real engine and a plain model
//! (`VecDeque` per subscriber), compared after every step: per-subscriber FIFO
//! order, no duplicates, the exact outcome of every publish (recipients,
//! delivered, dropped by reason, displaced), and lag reports.

use std::collections::{BTreeSet, HashMap, VecDeque};

use fanout_core::{
    CloseReason, Hub, Overflow, Priority, PublishReport, SubscribeError, SubscribeOptions, Subscriber,
    TryRecvError,
};
use proptest::prelude::*;

const TOPICS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Subscribe { cap: usize, hw: f64, overflow: Overflow },
    Drop(usize),
    Close(usize),
    Kick(usize),
    Join(usize, usize),
    Leave(usize, usize),
    Publish(usize, Priority),
    PublishMany(usize, usize),
    Broadcast(Priority),
    SendTo(usize, Priority),
    Recv(usize, usize),
    Flush,
}

fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![Just(Overflow::Evict), Just(Overflow::DropNewest), Just(Overflow::DropOldest)]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![6 => Just(Priority::Normal), 2 => Just(Priority::High), 1 => Just(Priority::Urgent)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..6, prop_oneof![Just(1.0), Just(0.5), Just(0.8)], overflow())
            .prop_map(|(cap, hw, overflow)| Op::Subscribe { cap, hw, overflow }),
        1 => (0usize..8).prop_map(Op::Drop),
        1 => (0usize..8).prop_map(Op::Close),
        1 => (0usize..8).prop_map(Op::Kick),
        4 => (0usize..8, 0usize..3).prop_map(|(s, t)| Op::Join(s, t)),
        1 => (0usize..8, 0usize..3).prop_map(|(s, t)| Op::Leave(s, t)),
        6 => (0usize..3, priority()).prop_map(|(t, p)| Op::Publish(t, p)),
        2 => (0usize..3, 1usize..8).prop_map(|(t, n)| Op::PublishMany(t, n)),
        3 => priority().prop_map(Op::Broadcast),
        2 => (0usize..8, priority()).prop_map(|(s, p)| Op::SendTo(s, p)),
        6 => (0usize..8, 1usize..6).prop_map(|(s, n)| Op::Recv(s, n)),
        1 => Just(Op::Flush),
    ]
}

/// What the model says a subscriber holds.
struct ModelSub {
    /// Queued messages and the priority each entered with.
    queue: VecDeque<(u64, Priority)>,
    cap: usize,
    hw: usize,
    overflow: Overflow,
    closed: Option<CloseReason>,
    /// Messages taken or displaced so far: the stream position of `queue[0]`.
    head: usize,
    /// Displaced and not yet reported: reported before anything else.
    displaced: u64,
    /// Dropped at the tail and not yet reported, and the position of the
    /// earliest such drop: reported when the receiver gets there.
    lagged: u64,
    lag_at: usize,
    topics: BTreeSet<usize>,
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Outcome {
    recipients: u64,
    delivered: u64,
    high_water: u64,
    full: u64,
    evicted: u64,
    displaced: u64,
}

impl From<&PublishReport> for Outcome {
    fn from(r: &PublishReport) -> Self {
        Outcome {
            recipients: r.recipients,
            delivered: r.delivered,
            high_water: r.dropped.high_water,
            full: r.dropped.full,
            evicted: r.dropped.evicted,
            displaced: r.displaced,
        }
    }
}

impl ModelSub {
    fn offer(&mut self, v: u64, p: Priority, out: &mut Outcome) {
        if self.closed.is_some() {
            return;
        }
        out.recipients += 1;
        if p == Priority::Urgent {
            if self.queue.len() == self.cap {
                self.displace();
                out.displaced += 1;
            }
            self.queue.push_back((v, p));
            out.delivered += 1;
            return;
        }
        let at_hw = p == Priority::Normal && self.hw < self.cap && self.queue.len() >= self.hw;
        if !at_hw && self.queue.len() < self.cap {
            self.queue.push_back((v, p));
            out.delivered += 1;
            return;
        }
        match self.overflow {
            Overflow::Evict => {
                self.drop_at_tail();
                self.closed = Some(CloseReason::SlowConsumer);
                out.evicted += 1;
            }
            Overflow::DropNewest => {
                self.drop_at_tail();
                if at_hw {
                    out.high_water += 1;
                } else {
                    out.full += 1;
                }
            }
            Overflow::DropOldest | Overflow::Conflate => {
                // A message displaces only what it outranks or equals; when
                // the oldest outranks it, it is dropped instead.
                let outranked = |q: &VecDeque<(u64, Priority)>| q.front().is_some_and(|&(_, fp)| fp > p);
                let mut lost = 0;
                if at_hw && !self.queue.is_empty() {
                    if outranked(&self.queue) {
                        self.drop_at_tail();
                        out.high_water += 1;
                        return;
                    }
                    self.displace();
                    lost += 1;
                }
                if self.queue.len() == self.cap {
                    if outranked(&self.queue) {
                        self.drop_at_tail();
                        out.displaced += lost;
                        if at_hw {
                            out.high_water += 1;
                        } else {
                            out.full += 1;
                        }
                        return;
                    }
                    self.displace();
                    lost += 1;
                }
                self.queue.push_back((v, p));
                out.displaced += lost;
                out.delivered += 1;
            }
        }
    }

    fn displace(&mut self) {
        self.queue.pop_front();
        self.head += 1;
        self.displaced += 1;
    }

    fn drop_at_tail(&mut self) {
        self.lagged += 1;
        self.lag_at = self.lag_at.min(self.head + self.queue.len());
    }

    /// Each loss at its place in the stream (inbox.rs, "Lag at its position").
    fn try_recv(&mut self) -> Result<u64, TryRecvError> {
        if self.displaced > 0 {
            return Err(TryRecvError::Lagged(std::mem::take(&mut self.displaced)));
        }
        if self.lag_at <= self.head {
            self.lag_at = usize::MAX;
            if self.lagged > 0 {
                return Err(TryRecvError::Lagged(std::mem::take(&mut self.lagged)));
            }
        }
        match (self.queue.pop_front(), self.closed) {
            (Some((v, _)), _) => {
                self.head += 1;
                Ok(v)
            }
            (None, Some(_)) if self.lagged > 0 => Err(TryRecvError::Lagged(std::mem::take(&mut self.lagged))),
            (None, Some(r)) => Err(TryRecvError::Closed(r)),
            (None, None) => Err(TryRecvError::Empty),
        }
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let hub = Hub::<u64>::builder().cleanup_capacity(4).chunk_size(16).shards(2).build().unwrap();
    let mut real: Vec<Subscriber<u64>> = Vec::new();
    let mut model: Vec<ModelSub> = Vec::new();
    let mut next = 0u64;
    let mut total_delivered = 0u64;

    for op in ops {
        match op {
            Op::Subscribe { cap, hw, overflow } => {
                let s = hub
                    .subscribe_with(SubscribeOptions::new().capacity(cap).high_water(hw).overflow(overflow))
                    .unwrap();
                let hw_slots = ((cap as f64 * hw).ceil() as usize).clamp(1, cap);
                real.push(s);
                model.push(ModelSub {
                    queue: VecDeque::new(),
                    cap,
                    hw: hw_slots,
                    overflow,
                    closed: None,
                    head: 0,
                    displaced: 0,
                    lagged: 0,
                    lag_at: usize::MAX,
                    topics: BTreeSet::new(),
                });
            }
            Op::Drop(i) if i < real.len() => {
                real.remove(i);
                model.remove(i);
            }
            Op::Close(i) if i < real.len() => {
                real[i].close();
                model[i].closed.get_or_insert(CloseReason::Unsubscribed);
            }
            Op::Kick(i) if i < real.len() => {
                let was_open = model[i].closed.is_none();
                prop_assert_eq!(hub.kick(real[i].id()), was_open);
                model[i].closed.get_or_insert(CloseReason::Kicked);
            }
            Op::Join(i, t) if i < real.len() => {
                let r = real[i].join(TOPICS[t]);
                if model[i].closed.is_some() {
                    prop_assert_eq!(r, Err(SubscribeError::Closed));
                } else {
                    prop_assert_eq!(r, Ok(model[i].topics.insert(t)));
                }
            }
            Op::Leave(i, t) if i < real.len() => {
                // A closed subscriber's topics are dropped by the cleanup
                // worker; leave answers for what is still recorded.
                let r = real[i].leave(TOPICS[t]);
                let was = model[i].topics.remove(&t);
                if model[i].closed.is_none() {
                    prop_assert_eq!(r, was);
                }
            }
            Op::Publish(t, p) => {
                next += 1;
                let v = next;
                let mut want = Outcome::default();
                for m in model.iter_mut().filter(|m| m.topics.contains(&t)) {
                    m.offer(v, p, &mut want);
                }
                let got = hub.publish_with(TOPICS[t], p, |_| v).unwrap();
                prop_assert_eq!(Outcome::from(&got), want);
                total_delivered += got.delivered;
            }
            Op::PublishMany(t, n) => {
                let vals: Vec<u64> = (0..n as u64).map(|k| next + 1 + k).collect();
                next += n as u64;
                let mut want = Outcome::default();
                // Each member gets the whole run before the next member.
                for m in model.iter_mut().filter(|m| m.topics.contains(&t)) {
                    for &v in &vals {
                        m.offer(v, Priority::Normal, &mut want);
                    }
                }
                let got = hub.publish_many(TOPICS[t], vals).unwrap();
                prop_assert_eq!(Outcome::from(&got), want);
                total_delivered += got.delivered;
            }
            Op::Broadcast(p) => {
                next += 1;
                let v = next;
                let mut want = Outcome::default();
                for m in model.iter_mut() {
                    m.offer(v, p, &mut want);
                }
                let got = hub.broadcast_with(p, |_| v).unwrap();
                prop_assert_eq!(Outcome::from(&got), want);
                total_delivered += got.delivered;
            }
            Op::SendTo(i, p) if i < real.len() => {
                next += 1;
                let v = next;
                let mut want = Outcome::default();
                let was_open = model[i].closed.is_none();
                model[i].offer(v, p, &mut want);
                let got = hub.send_to_with(real[i].id(), p, v);
                prop_assert_eq!(got.is_ok(), want.delivered == 1, "send_to {:?} vs {:?}", got, want);
                if !was_open {
                    prop_assert!(got.is_err());
                }
                total_delivered += want.delivered;
            }
            Op::Recv(i, n) if i < real.len() => {
                for _ in 0..n {
                    let want = model[i].try_recv();
                    let got = real[i].try_recv().map(|m| *m.payload());
                    prop_assert_eq!(got, want);
                }
            }
            Op::Flush => hub.flush_cleanup(),
            _ => {}
        }
        let st = hub.stats();
        prop_assert_eq!(st.delivered, total_delivered);
        let open = model.iter().filter(|m| m.closed.is_none()).count() as u64;
        prop_assert_eq!(st.subscribers, open);
    }
    // Drain: every subscriber ends with exactly the model's queue.
    for (s, m) in real.iter_mut().zip(model.iter_mut()) {
        loop {
            let want = m.try_recv();
            let got = s.try_recv().map(|m| *m.payload());
            prop_assert_eq!(got, want);
            if matches!(want, Err(TryRecvError::Empty) | Err(TryRecvError::Closed(_))) {
                break;
            }
        }
    }
    // Everything the model considers open is still reached.
    let open_members: HashMap<usize, usize> = (0..3)
        .map(|t| (t, model.iter().filter(|m| m.closed.is_none() && m.topics.contains(&t)).count()))
        .collect();
    for (t, n) in open_members {
        let r = hub.publish(TOPICS[t], 0).unwrap();
        prop_assert_eq!(r.recipients, n as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 8 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
