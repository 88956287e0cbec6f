//! loom models of the engine's races, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p fanout-core --release --lib loom_`.
//!
//! The models drive the real `Inbox` (state word, parking, lag, seal),
//! `Members` (copy-on-write snapshots), ring and sequencer code (`publish`
//! below reserves, writes and walks through `sequencer.rs` itself: only the
//! hub's counters and cleanup channel are left out); under `cfg(loom)` the ring's
//! atomics and storage allocation are loom's (leaks fail a model) and the
//! snapshot is a loom `RwLock<Arc<_>>` (see `loom.rs`), so every hand-over is
//! visible to the model checker. Each model is explored
//! exhaustively up to loom's default preemption bound (unless
//! `LOOM_MAX_PREEMPTIONS` says otherwise; `.ci/run` sets 3).

use std::sync::Arc;
use std::task::Poll;

use loom::thread;

use crate::config::Overflow;
use crate::error::{CloseReason, RecvError, TryRecvError};
use crate::inbox::{Inbox, Offer};
use crate::members::Members;
use crate::message::{Message, Meta, Origin, Priority};
use crate::sequencer::{self, Sequencer};
use crate::stats::PublishReport;
use crate::SubscriberId;

fn msg(v: u64) -> Message<u64> {
    Message::new(None, Origin::Broadcast, Meta { seq: v, epoch: 0 }, Priority::Normal, v)
}

fn inbox(id: u64, cap: usize, overflow: Overflow) -> Arc<Inbox<u64>> {
    Arc::new(Inbox::new(SubscriberId(id), cap, cap, overflow, true))
}

/// A publish (`publish.rs` `publish_one`) minus the hub's counters and
/// cleanup channel: reserve a number in the sequencer's log, write the
/// message with payload `v`, walk. An eviction only closes.
fn publish(seq: &Sequencer<u64>, set: &Members<u64>, v: u64) -> PublishReport {
    publish_named(seq, set, None, v)
}

/// [`publish`], the message naming its topic.
fn publish_named(seq: &Sequencer<u64>, set: &Members<u64>, topic: Option<Arc<str>>, v: u64) -> PublishReport {
    let mut r = PublishReport { messages: 1, ..PublishReport::default() };
    let run = seq.reserve(1);
    assert_eq!(run.n, 1, "the log has room");
    let n = run.pos as u64 + 1;
    run.write(0, Message::new(topic, Origin::Topic, Meta { seq: n, epoch: 1 }, Priority::Normal, v));
    r.seq = n;
    sequencer::walk(seq, set, 0, &mut r, &|i: &Arc<Inbox<u64>>| {
        i.close(CloseReason::SlowConsumer);
    });
    r
}

fn one(v: u64) -> [Option<crate::shared::Prepaid<'static, crate::message::Envelope<u64>>>; 1] {
    // Leaked: a model's message lives as long as the model (loom checks
    // allocations it makes itself, not this std one).
    let m: &'static Message<u64> = Box::leak(Box::new(msg(v)));
    [Some(m.inner.prepay(1))]
}

/// Drains an inbox to the end through the async receive path.
fn recv_all(i: &Inbox<u64>) -> (Vec<u64>, RecvError) {
    let mut got = Vec::new();
    loop {
        let mut buf = Vec::new();
        let r = loom::future::block_on(std::future::poll_fn(|cx| match i.poll_recv_many(cx, &mut buf, 8) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => Poll::Pending,
        }));
        got.extend(buf.iter().map(|m| *m.payload()));
        match r {
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
            Err(e) => return (got, e),
        }
    }
}

/// A publisher overflows a full subscriber while the cleanup worker removes it
/// (after a kick): one close wins, the publisher's report balances, the other
/// subscriber gets everything, and the removed one is in no snapshot.
#[test]
fn loom_publish_racing_eviction() {
    loom::model(|| {
        let set = Arc::new(Members::new(1, 16));
        let seq = Arc::new(Sequencer::new(0, std::time::Duration::ZERO));
        let slow = inbox(1, 1, Overflow::Evict);
        let fast = inbox(2, 4, Overflow::Evict);
        set.insert(slow.clone());
        set.insert(fast.clone());
        assert_eq!(slow.offer(&msg(0), Priority::Normal, &mut 0), Offer::Delivered);

        let p = {
            let (set, seq) = (set.clone(), seq.clone());
            thread::spawn(move || {
                let a = publish(&seq, &set, 1);
                let b = publish(&seq, &set, 2);
                (a, b)
            })
        };
        // The cleanup worker's part: kick, remove from the snapshot, finish.
        let kicked = slow.close(CloseReason::Kicked);
        set.remove(slow.id);
        assert!(slow.finish());

        let (a, b) = p.join().unwrap();
        for r in [a, b] {
            assert_eq!(r.recipients, r.delivered + r.dropped.total());
        }
        let reason = slow.close_reason().unwrap();
        assert_eq!(reason == CloseReason::Kicked, kicked, "exactly one close wins");
        assert!(slow.len() <= 1);
        assert_eq!(set.len(), 1);
        fast.close(CloseReason::Shutdown);
        assert_eq!(recv_all(&fast).0, vec![1, 2]);
        let (_, end) = recv_all(&slow);
        assert_eq!(end, RecvError::Closed(reason));
    });
}

/// A join and a leave copy-on-write the same snapshot while a publish walks it:
/// neither change is lost, no member is visited twice, and a publish that starts
/// after the join returned reaches the new member.
#[test]
fn loom_join_leave_racing_snapshot_swap() {
    loom::model(|| {
        let set = Arc::new(Members::new(1, 16));
        let old = inbox(1, 4, Overflow::DropNewest);
        let new = inbox(2, 4, Overflow::DropNewest);
        set.insert(old.clone());

        // Two publishers of two topics (one sequencer each) over one set.
        let joiner = {
            let (set, new) = (set.clone(), new.clone());
            thread::spawn(move || {
                assert!(set.insert(new));
                publish(&Sequencer::new(0, std::time::Duration::ZERO), &set, 2)
            })
        };
        let leaver = {
            let set = set.clone();
            thread::spawn(move || assert!(set.remove(SubscriberId(1))))
        };
        let r1 = publish(&Sequencer::new(0, std::time::Duration::ZERO), &set, 1);
        let r2 = joiner.join().unwrap();
        leaver.join().unwrap();

        assert!(r1.recipients <= 2);
        assert_eq!(set.len(), 1, "the join and the leave both landed");
        assert_eq!(set.chunk_count(), 1);
        new.close(CloseReason::Shutdown);
        old.close(CloseReason::Shutdown);
        let (got_new, _) = recv_all(&new);
        let (got_old, _) = recv_all(&old);
        assert!(got_new.contains(&2), "published after the join returned");
        assert_eq!(r2.delivered as usize, 1 + usize::from(got_old.contains(&2)));
        for got in [&got_new, &got_old] {
            let mut d = got.to_vec();
            d.dedup();
            assert_eq!(&d, got, "no duplicate delivery");
        }
    });
}

/// A receiver parks while a publisher pushes and then closes: it gets the
/// message, then the close, and is never left waiting (a lost wake-up is a loom
/// deadlock).
#[test]
fn loom_recv_racing_publish_and_close() {
    loom::model(|| {
        let i = inbox(1, 2, Overflow::Evict);
        let p = {
            let i = i.clone();
            thread::spawn(move || {
                assert_eq!(i.offer(&msg(7), Priority::Normal, &mut 0), Offer::Delivered);
                i.notify();
                i.close(CloseReason::Shutdown);
            })
        };
        let (got, end) = recv_all(&i);
        p.join().unwrap();
        assert_eq!(got, vec![7]);
        assert_eq!(end, RecvError::Closed(CloseReason::Shutdown));
    });
}

/// Wake coalescing does not lose a wake: a parked receiver is woken by the one
/// publisher that sees it parked, for two publishers racing.
#[test]
fn loom_two_publishers_wake_a_parked_receiver() {
    loom::model(|| {
        let i = inbox(1, 4, Overflow::Evict);
        let ps: Vec<_> = (0..2)
            .map(|k| {
                let i = i.clone();
                thread::spawn(move || {
                    i.offer(&msg(k), Priority::Normal, &mut 0);
                    i.notify();
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 2 {
            let mut buf = Vec::new();
            let r = loom::future::block_on(std::future::poll_fn(|cx| i.poll_recv_many(cx, &mut buf, 8)));
            assert!(r.is_ok());
            got.extend(buf.iter().map(|m| *m.payload()));
        }
        for p in ps {
            p.join().unwrap();
        }
        got.sort();
        assert_eq!(got, vec![0, 1]);
    });
}

/// The walk's grouped wake check (`Members::offer_each_from`: one SeqCst
/// fence after the pushes into a group of members, then each member's
/// `parked`): two receivers parking while one publish walks them are both
/// woken or both find their message (a lost wake-up is a loom deadlock).
#[test]
fn loom_walk_wakes_every_parked_receiver_of_a_group() {
    loom::model(|| {
        let set = Arc::new(Members::new(1, 16));
        let seq = Arc::new(Sequencer::new(0, std::time::Duration::ZERO));
        let (a, b) = (inbox(1, 4, Overflow::Evict), inbox(2, 4, Overflow::Evict));
        set.insert(a.clone());
        set.insert(b.clone());
        let p = {
            let (set, seq) = (set.clone(), seq.clone());
            thread::spawn(move || publish(&seq, &set, 5))
        };
        for i in [&a, &b] {
            let mut buf = Vec::new();
            let r = loom::future::block_on(std::future::poll_fn(|cx| i.poll_recv_many(cx, &mut buf, 8)));
            assert_eq!(r, Ok(1));
            assert_eq!(*buf[0].payload(), 5);
        }
        assert_eq!(p.join().unwrap().delivered, 2);
    });
}

/// The ring alone, full: a publisher displaces the oldest to push an urgent
/// message while the receiver takes a batch. Every message is taken or
/// displaced exactly once, in order.
#[test]
fn loom_ring_displace_racing_take() {
    use crate::ring::Ring;
    loom::model(|| {
        let r = Arc::new(Ring::<u64>::new(2));
        r.push(msg(0)).unwrap();
        r.push(msg(1)).unwrap();
        let displacer = {
            let r = r.clone();
            thread::spawn(move || r.force_push(msg(10)).ok().expect("not sealed"))
        };
        let mut got = Vec::new();
        r.take(2, |m| got.push(*m.payload()));
        let displaced = displacer.join().unwrap();
        while r.take(2, |m| got.push(*m.payload())) > 0 {}
        assert_eq!(got.len() + displaced, 3, "each message taken or displaced once: {got:?}");
        assert_eq!(got.last(), Some(&10), "the urgent message entered");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "FIFO, no duplicate: {got:?}");
        assert_eq!(r.len(), 0);
    });
}

/// The ring alone: a publisher reserves a run with one CAS and fills it while
/// the receiver takes what is ready; the receiver never takes a slot that is
/// reserved but not yet written, and gets the run whole and in order.
#[test]
fn loom_ring_run_racing_take() {
    use crate::ring::Ring;
    loom::model(|| {
        let r = Arc::new(Ring::<u64>::new(2));
        r.push(msg(0)).unwrap();
        let runner = {
            let r = r.clone();
            thread::spawn(move || {
                let run = r.reserve(2);
                for i in 0..run.n {
                    run.write(i, msg(1 + i as u64));
                }
                run.n
            })
        };
        let mut got = Vec::new();
        r.take(2, |m| got.push(*m.payload()));
        let pushed = runner.join().unwrap();
        while r.take(2, |m| got.push(*m.payload())) > 0 {}
        assert!(pushed >= 1);
        assert_eq!(got, (0..=pushed as u64).collect::<Vec<_>>());
    });
}

/// A subscriber is closed (and its removal taken up by the cleanup worker)
/// while its owner joins one topic and leaves another: whatever the order, it
/// ends up in neither topic's snapshot (no member left behind a closed inbox),
/// and the join either lands before the close or is refused.
#[test]
fn loom_close_racing_join_and_leave() {
    use crate::topic::TopicInner;
    loom::model(|| {
        let i = inbox(1, 4, Overflow::Evict);
        let a = Arc::new(TopicInner::<u64>::new("a".into(), 1, 16, Default::default()));
        let b = Arc::new(TopicInner::<u64>::new("b".into(), 2, 16, Default::default()));
        let joined_b = i.join_with("b", |me| {
            b.members.insert(me.clone());
            b.clone()
        });
        assert_eq!(joined_b, Ok(true));

        let joiner = {
            let (i, a) = (i.clone(), a.clone());
            thread::spawn(move || {
                i.join_with("a", |me| {
                    a.members.insert(me.clone());
                    a.clone()
                })
            })
        };
        let leaver = {
            let i = i.clone();
            thread::spawn(move || i.leave("b").is_some())
        };
        // The cleanup worker's part, after a kick.
        assert!(i.close(CloseReason::Kicked));
        for t in i.take_topics() {
            t.members.remove(i.id);
        }
        let joined = joiner.join().unwrap();
        leaver.join().unwrap();
        assert!(matches!(joined, Ok(true) | Err(crate::SubscribeError::Closed)));
        assert!(a.members.is_empty(), "no member left behind in the joined topic");
        assert!(b.members.is_empty(), "none in the left topic");
        assert!(i.take_topics().is_empty());
    });
}

/// Shutdown closes a subscriber while a publisher pushes a run and the
/// receiver drains: the receiver gets a prefix of the run in order, then
/// `Closed(Shutdown)`, and every message the publisher counted as delivered is
/// either received or still in the ring (nothing counted is lost unaccounted).
#[test]
fn loom_shutdown_racing_publish_and_recv() {
    loom::model(|| {
        let set = Arc::new(Members::new(1, 16));
        let i = inbox(1, 4, Overflow::Evict);
        set.insert(i.clone());
        let publisher = {
            let set = set.clone();
            thread::spawn(move || {
                let run = [msg(1), msg(2)];
                let pres: Vec<_> = run.iter().map(|m| Some(m.inner.prepay(1))).collect();
                let mut r = PublishReport::default();
                set.for_each(|i| {
                    let (queued, _) = i.offer_run(&pres, Priority::Normal, &mut r);
                    if queued {
                        i.notify();
                    }
                });
                r
            })
        };
        let closer = {
            let i = i.clone();
            thread::spawn(move || i.close(CloseReason::Shutdown))
        };
        let (got, end) = recv_all(&i);
        let r = publisher.join().unwrap();
        assert!(closer.join().unwrap());
        assert_eq!(end, RecvError::Closed(CloseReason::Shutdown));
        assert_eq!(r.recipients, r.delivered + r.dropped.total());
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        // The close is terminal: nothing entered after the receiver saw it
        // (before the seal, a run written after the final drain stayed in
        // the ring, counted delivered and never received).
        assert_eq!(i.len(), 0, "nothing queued after Closed");
        assert_eq!(got.len(), r.delivered as usize, "every delivery received");
        let mut buf = Vec::new();
        assert_eq!(i.try_pop_many(&mut buf, 8), Err(TryRecvError::Closed(CloseReason::Shutdown)));
    });
}

/// Two publishers race to install a fresh subscriber's ring storage (one
/// pushes a run of two with one reservation, the other two single messages) while
/// the receiver takes what is there: one storage is installed and the loser's
/// is freed (loom fails a model that leaks an allocation), and every message
/// arrives exactly once, in per-publisher order.
#[test]
fn loom_first_push_racing_install_and_recv() {
    loom::model(|| {
        let i = inbox(1, 4, Overflow::Evict);
        let runner = {
            let i = i.clone();
            thread::spawn(move || {
                let run = [msg(1), msg(2)];
                let pres: Vec<_> = run.iter().map(|m| Some(m.inner.prepay(1))).collect();
                let mut r = PublishReport::default();
                let (queued, evict) = i.offer_run(&pres, Priority::Normal, &mut r);
                assert!(queued && !evict);
                assert_eq!(r.delivered, 2);
            })
        };
        let single = {
            let i = i.clone();
            thread::spawn(move || {
                for v in [11, 12] {
                    assert_eq!(i.offer(&msg(v), Priority::Normal, &mut 0), Offer::Delivered);
                }
            })
        };
        // The receiver, racing both (twice): it may find no storage yet, part
        // of the run, or everything.
        let mut buf = Vec::new();
        for _ in 0..2 {
            assert!(i.try_pop_many(&mut buf, 8).is_ok());
        }
        runner.join().unwrap();
        single.join().unwrap();
        while i.try_pop_many(&mut buf, 8).unwrap() > 0 {}
        let got: Vec<u64> = buf.iter().map(|m| *m.payload()).collect();
        let from =
            |lo: u64, hi: u64| got.iter().copied().filter(|v| (lo..hi).contains(v)).collect::<Vec<_>>();
        assert_eq!(from(0, 10), vec![1, 2], "the run, once, in order: {got:?}");
        assert_eq!(from(10, 20), vec![11, 12], "the singles, once, in order: {got:?}");
        assert_eq!(i.len(), 0);
    });
}

/// Two publishers of one topic race through the sequencer: each message is
/// delivered by exactly one walk (none is left in the log with nobody
/// walking: the Dekker hand-over between a writer and an ending walker), and
/// the subscriber gets them in `seq` order.
#[test]
fn loom_two_publishers_keep_order_through_the_walk() {
    loom::model(|| {
        let set = Arc::new(Members::new(1, 16));
        let seq = Arc::new(Sequencer::new(0, std::time::Duration::ZERO));
        let i = inbox(1, 4, Overflow::DropNewest);
        set.insert(i.clone());
        let ps: Vec<_> = (0..2)
            .map(|_| {
                let (set, seq) = (set.clone(), seq.clone());
                thread::spawn(move || publish(&seq, &set, 0))
            })
            .collect();
        let walked: u64 = ps.into_iter().map(|p| p.join().unwrap().walked).sum();
        assert_eq!(walked, 2, "each message walked once");
        let mut got = Vec::new();
        while let Ok(m) = i.try_pop() {
            got.push(m.seq());
        }
        assert_eq!(got, vec![1, 2], "in seq order");
    });
}

/// A payload whose drop writes what readers read, through loom's cell: a
/// free not ordered after every reader's last use is a data race loom
/// reports.
struct Watched(loom::cell::UnsafeCell<u64>, Arc<std::sync::atomic::AtomicUsize>);

// SAFETY (test): readers only read the cell; the one write is in `Drop`,
// which runs once the last reference is gone: loom checks that ordering.
#[allow(unsafe_code)]
unsafe impl Sync for Watched {}

impl Watched {
    #[allow(unsafe_code)]
    fn read(&self) -> u64 {
        // SAFETY (test): see the `Sync` impl.
        self.0.with(|p| unsafe { *p })
    }
}

impl Drop for Watched {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        self.0.with_mut(|p| {
            // SAFETY (test): `&mut self`.
            unsafe { *p = 0 }
        });
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A message's references in lanes (`shared.rs`, "Lanes"): two threads on
/// different lanes drop handles (one more than its lane holds, so it takes
/// from the other's lane; one a clone too) while the owner drops its own
/// and a prepay gives back its unused credit. The value is freed exactly
/// once, after every use (loom's cell checks the order); a lane emptied
/// twice, a `live` count off by one, or a `Relaxed` lane CAS fails it.
#[test]
fn loom_lanes_free_once_after_every_use() {
    use crate::shared::{set_home_lane, Counted};
    loom::model(|| {
        let freed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let owner = Counted::new(Watched(loom::cell::UnsafeCell::new(7), freed.clone()));
        // Lanes of 2 and 2; the unused credit goes back through lane 0
        // (this thread's), so A's second drop takes from B's lane.
        let (a, b1, b2) = {
            let pre = owner.prepay(4);
            (pre.take(), pre.take(), pre.take())
        };
        let ta = thread::spawn(move || {
            set_home_lane(0);
            let extra = a.clone();
            assert_eq!(a.get().read(), 7);
            drop(a);
            assert_eq!(extra.get().read(), 7);
        });
        let tb = thread::spawn(move || {
            set_home_lane(1);
            assert_eq!(b1.get().read() + b2.get().read(), 14);
            drop(b1);
            drop(b2);
        });
        assert_eq!(owner.get().read(), 7);
        drop(owner);
        ta.join().unwrap();
        tb.join().unwrap();
        assert_eq!(freed.load(std::sync::atomic::Ordering::SeqCst), 1, "freed exactly once");
    });
}

/// The high-water mark holds between two publishers (of different topics)
/// filling one ring: it is checked inside the reservation, so they cannot
/// both take the last room below it (before, both read the length, then
/// both reserved, and the ring went past the mark).
#[test]
fn loom_high_water_holds_between_publishers() {
    loom::model(|| {
        let i = Arc::new(Inbox::new(SubscriberId(1), 4, 2, Overflow::DropNewest, true));
        assert_eq!(i.offer(&msg(0), Priority::Normal, &mut 0), Offer::Delivered);
        let ps: Vec<_> = (1..3)
            .map(|v| {
                let i = i.clone();
                thread::spawn(move || {
                    let mut r = PublishReport::default();
                    i.offer_run(&one(v), Priority::Normal, &mut r);
                    r
                })
            })
            .collect();
        let rs: Vec<PublishReport> = ps.into_iter().map(|p| p.join().unwrap()).collect();
        assert_eq!(i.len(), 2, "one more entered, up to the mark and no further");
        assert_eq!(rs.iter().map(|r| r.delivered).sum::<u64>(), 1);
        assert_eq!(rs.iter().map(|r| r.dropped.high_water).sum::<u64>(), 1);
        // High still enters above the mark.
        let mut r = PublishReport::default();
        i.offer_run(&one(9), Priority::High, &mut r);
        assert_eq!((r.delivered, i.len()), (1, 3));
    });
}

/// `DropOldest` on a full ring while the receiver takes: every message is
/// received or displaced exactly once, the receiver is told of every
/// displaced one, and the newest always enters.
#[test]
fn loom_drop_oldest_racing_recv_accounts_for_every_message() {
    loom::model(|| {
        let i = inbox(1, 2, Overflow::DropOldest);
        for v in 0..2 {
            assert_eq!(i.offer(&msg(v), Priority::Normal, &mut 0), Offer::Delivered);
        }
        let p = {
            let i = i.clone();
            thread::spawn(move || {
                let mut r = PublishReport::default();
                i.offer_run(&one(2), Priority::Normal, &mut r);
                r
            })
        };
        let mut got = Vec::new();
        let mut lagged = 0;
        let mut take = |i: &Inbox<u64>| loop {
            match i.try_pop() {
                Ok(m) => got.push(*m.payload()),
                Err(TryRecvError::Lagged(n)) => lagged += n,
                Err(_) => break,
            }
        };
        take(&i);
        let r = p.join().unwrap();
        take(&i);
        assert_eq!(r.delivered, 1);
        assert_eq!(got.len() as u64 + r.displaced, 3, "received or displaced, once: {got:?}");
        assert_eq!(lagged, r.displaced, "every displaced message announced");
        assert_eq!(got.last(), Some(&2), "the newest entered");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    });
}

/// A join from position 0 of topic `t` (epoch 7, a history of 4) racing a
/// publisher per entry of `racing` (each publishing that payload), after
/// `before` was published with nobody subscribed; returns the seqs the
/// subscriber got. The join must say it recovered.
fn join_racing_publishers(before: &[u64], racing: &[u64]) -> Vec<u64> {
    use crate::config::TopicOptions;
    use crate::recovery::{self, JoinFrom};
    use crate::topic::{Position, TopicInner};
    let options = TopicOptions {
        history_size: 4,
        history_ttl: std::time::Duration::from_secs(60),
        overflow: None,
        shared_log: 0,
        shared_log_from: 0,
    };
    let topic = Arc::new(TopicInner::<u64>::new("t".into(), 7, 16, options));
    for &v in before {
        publish(&topic.seq, &topic.members, v);
    }
    let ps: Vec<_> = racing
        .iter()
        .map(|&v| {
            let topic = topic.clone();
            thread::spawn(move || publish(&topic.seq, &topic.members, v))
        })
        .collect();
    let i = inbox(1, 4, Overflow::DropNewest);
    let mut r = PublishReport::default();
    let from = JoinFrom::After(Position { epoch: 7, seq: 0 });
    let j = recovery::join_at(&topic, &i, from, 0, &mut r, &|_: &Arc<Inbox<u64>>| {}).unwrap();
    for p in ps {
        p.join().unwrap();
    }
    assert!(j.recovered, "{j:?}");
    let mut got = Vec::new();
    while let Ok(m) = i.try_pop() {
        got.push(m.seq());
    }
    // Break the inbox <-> topic link (the cleanup worker's job in a hub).
    assert!(i.leave("t").is_some());
    got
}

/// A join from a position races a publisher of the same topic: whether the
/// publish lands before the join's hand-off (then it is in the replay) or
/// after (then it arrives live), the subscriber gets every message after its
/// position exactly once, in order, and the join says it recovered. loom's
/// `UnsafeCell` also checks that the history is never reached by two threads
/// at once (the walk is its only exclusion).
#[test]
fn loom_join_from_a_position_racing_a_publisher() {
    loom::model(|| {
        // Seq 1, published before anyone joined: in the history only.
        let got = join_racing_publishers(&[1], &[2]);
        assert_eq!(got, vec![1, 2], "replay then live, nothing missing, nothing twice");
    });
}

/// A join waiting for the walk while two publishers race it: the publishers
/// leave the walk to the join while it waits ("Joins go first" in
/// `sequencer.rs`), and no message is left in the log with nobody to walk
/// it: the subscriber gets everything after its position, in order, once.
#[test]
fn loom_join_racing_two_publishers() {
    loom::model(|| {
        let got = join_racing_publishers(&[], &[1, 2]);
        assert_eq!(got, vec![1, 2], "replay then live, nothing missing, nothing twice");
    });
}

/// `DropOldest` on a full ring whose oldest message is `High`, racing the
/// receiver: a `Normal` message never displaces the `High` one (the
/// displacer reads the slot's priority without taking the message, and
/// claims the position only if it may), whatever the interleaving; every
/// message is received, displaced or dropped exactly once.
#[test]
fn loom_drop_oldest_never_displaces_a_higher_priority() {
    loom::model(|| {
        let i = inbox(1, 2, Overflow::DropOldest);
        let high = msg(0);
        let pre = [Some(high.inner.prepay(1))];
        let mut r0 = PublishReport::default();
        i.offer_run(&pre, Priority::High, &mut r0);
        assert_eq!(i.offer(&msg(1), Priority::Normal, &mut 0), Offer::Delivered);
        let p = {
            let i = i.clone();
            thread::spawn(move || {
                let mut r = PublishReport::default();
                i.offer_run(&one(2), Priority::Normal, &mut r);
                r
            })
        };
        let mut got = Vec::new();
        let mut take = |i: &Inbox<u64>| loop {
            match i.try_pop() {
                Ok(m) => got.push(*m.payload()),
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        };
        take(&i);
        let r = p.join().unwrap();
        take(&i);
        assert!(got.contains(&0), "the High message is never displaced: {got:?}");
        assert_eq!(got.len() as u64 + r.displaced + r.dropped.total(), 3, "{got:?} {r:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    });
}

/// The history of a bare topic, read as the hub reads it (no counters).
struct Bare;

impl crate::repair::Histories<u64> for Bare {
    fn read(
        &self,
        topic: &crate::topic::TopicInner<u64>,
        limit: usize,
        since: u64,
    ) -> crate::topic::HistoryPage<u64> {
        let mut r = PublishReport::default();
        crate::recovery::read_history(topic, limit, Some(since), 0, &mut r, &|_: &Arc<Inbox<u64>>| {})
    }
}

/// Gap repair (`repair.rs`) racing a publisher that overflows the ring: a
/// subscriber with a ring of 2 under `DropOldest` and a history of 8 receives
/// while three messages are published. Whatever the interleaving (the
/// displacement, the lag notice, the round's history read under the walk and
/// its claim of the ring), it hands out 1, 2, 3 once each, in order, and
/// reports nothing lost.
#[test]
fn loom_repair_racing_an_overflowing_publisher() {
    use crate::config::TopicOptions;
    use crate::repair::Repair;
    use crate::topic::TopicInner;
    loom::model(|| {
        let options = TopicOptions {
            history_size: 8,
            history_ttl: std::time::Duration::from_secs(60),
            overflow: None,
            shared_log: 0,
            shared_log_from: 0,
        };
        let topic = Arc::new(TopicInner::<u64>::new("t".into(), 1, 16, options));
        let i = inbox(1, 2, Overflow::DropOldest);
        i.join_with("t", |me| {
            topic.members.insert(me.clone());
            topic.clone()
        })
        .unwrap();
        let p = {
            let topic = topic.clone();
            thread::spawn(move || {
                for v in 1..=3 {
                    publish_named(&topic.seq, &topic.members, Some(topic.name.clone()), v);
                }
            })
        };
        let mut rep = Repair::new(false);
        let (mut got, mut lost) = (Vec::new(), 0);
        let mut take = |rep: &mut Repair<u64>| loop {
            let mut buf = Vec::new();
            let r = rep.recv(&i, &Bare, &mut buf, 8, |b, max| {
                Poll::Ready(match i.try_pop_into(b, max) {
                    Ok(n) => Ok(n),
                    Err(TryRecvError::Empty) => Ok(0),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Closed(c)) => Err(RecvError::Closed(c)),
                })
            });
            got.extend(buf.iter().map(|m| m.seq()));
            match r {
                Poll::Ready(Ok(0)) | Poll::Pending | Poll::Ready(Err(RecvError::Closed(_))) => break,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(RecvError::Lagged(n))) => lost += n,
            }
        };
        take(&mut rep);
        p.join().unwrap();
        take(&mut rep);
        assert_eq!((got, lost), (vec![1, 2, 3], 0), "every message once, in order, none lost");
        // Break the inbox <-> topic link (the cleanup worker's job in a hub).
        assert!(i.leave("t").is_some());
    });
}

// The shared log (`topic_log.rs`), with room 2 in 4 slots under loom: a
// few appends wrap it, so the writer moves a lagging reader.

#[allow(unsafe_code)] // the log's writer contract: one writing thread per model
mod shared_log {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Poll;

    use loom::thread;

    use crate::message::{Message, Meta, Origin, Priority};
    use crate::topic_log::{Cursor, TopicLog};

    /// A payload that counts its drops (a std atomic: read after the threads joined).
    pub(super) struct Tracked(u64, Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn append(log: &TopicLog<Tracked>, seq: u64, drops: &Arc<AtomicUsize>) {
        let meta = Meta { seq, epoch: 1 };
        let m = Message::new(None, Origin::Broadcast, meta, Priority::Normal, Tracked(seq, drops.clone()));
        // SAFETY: each model has one writing thread.
        unsafe { log.append(std::iter::once(m)) };
    }

    /// Takes what is there; returns the seqs taken and the loss reported.
    pub(super) fn take(log: &TopicLog<Tracked>, r: &Cursor, max: usize) -> (Vec<u64>, u64) {
        let mut buf = Vec::new();
        match log.take(r, &mut buf, max) {
            Ok(_) => (buf.iter().map(|m| m.payload().0).collect(), 0),
            Err(lost) => (Vec::new(), lost),
        }
    }

    /// A reader claiming while the writer wraps the log and moves it: it
    /// takes in order, what it takes plus what it is told it lost is every
    /// message, and each message is freed exactly once (a draw from a slot
    /// already replaced would free one twice or never).
    #[test]
    fn loom_log_reader_claims_racing_the_writer_moving_it() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let log = Arc::new(TopicLog::<Tracked>::new(2));
            let r = log.join();
            append(&log, 1, &drops); // admits `r` at position 0
            let w = {
                let (log, drops) = (log.clone(), drops.clone());
                thread::spawn(move || {
                    for s in 2..=6 {
                        append(&log, s, &drops);
                    }
                })
            };
            let (mut got, mut lost) = (Vec::new(), 0);
            for _ in 0..2 {
                let (g, l) = take(&log, &r, 2);
                got.extend(g);
                lost += l;
            }
            w.join().unwrap();
            loop {
                let (g, l) = take(&log, &r, 8);
                if g.is_empty() && l == 0 {
                    break;
                }
                got.extend(g);
                lost += l;
            }
            assert!(got.windows(2).all(|p| p[0] < p[1]), "in order: {got:?}");
            assert_eq!(got.len() as u64 + lost, 6, "taken {got:?} and lost {lost}");
            assert_eq!(got.last(), Some(&6));
            log.leave(&r);
            drop(log);
            assert_eq!(drops.load(Ordering::Relaxed), 6, "every message freed once");
        });
    }

    /// A reader parking while the writer appends twice: it gets both (a
    /// lost wake-up is a loom deadlock), whether the writer finds it on the
    /// parked stack, finds it still queued from an earlier park, or the
    /// reader sees the message after its fence.
    #[test]
    fn loom_log_reader_parks_racing_two_appends() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let log = Arc::new(TopicLog::<Tracked>::new(2));
            let r = log.join();
            // SAFETY: no writer runs yet.
            unsafe { log.settle() };
            let w = {
                let (log, drops) = (log.clone(), drops.clone());
                thread::spawn(move || {
                    append(&log, 1, &drops);
                    append(&log, 2, &drops);
                })
            };
            let mut got = Vec::new();
            while got.len() < 2 {
                loom::future::block_on(std::future::poll_fn(|cx| loop {
                    let (g, l) = take(&log, &r, 8);
                    assert_eq!(l, 0);
                    if !g.is_empty() {
                        got.extend(g);
                        return Poll::Ready(());
                    }
                    if !log.park(&r, cx.waker()) {
                        return Poll::Pending;
                    }
                }));
            }
            w.join().unwrap();
            assert_eq!(got, vec![1, 2]);
            log.leave(&r);
            drop(log);
            assert_eq!(drops.load(Ordering::Relaxed), 2);
        });
    }

    /// A reader that joins and leaves while the writer appends and wraps:
    /// whatever the writer admitted it to, every reference counted for it
    /// is drawn or given back (each message freed once), and what it took
    /// is consecutive.
    #[test]
    fn loom_log_join_and_leave_racing_the_writer() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let log = Arc::new(TopicLog::<Tracked>::new(2));
            let w = {
                let (log, drops) = (log.clone(), drops.clone());
                thread::spawn(move || {
                    for s in 1..=5 {
                        append(&log, s, &drops);
                    }
                })
            };
            let r = log.join();
            let (got, _) = take(&log, &r, 2);
            assert!(got.windows(2).all(|p| p[1] == p[0] + 1), "{got:?}");
            log.leave(&r);
            w.join().unwrap();
            drop(log);
            assert_eq!(drops.load(Ordering::Relaxed), 5);
        });
    }
}

/// Topic `t`, switching to a shared log of room 2 at its second member,
/// and two inboxes (rings of 4, `DropOldest`) not yet in it.
fn switching_at_two() -> (Arc<crate::topic::TopicInner<u64>>, Arc<Inbox<u64>>, Arc<Inbox<u64>>) {
    let options = crate::config::TopicOptions {
        shared_log: 2,
        shared_log_from: 2,
        ..crate::config::TopicOptions::default()
    };
    let topic = Arc::new(crate::topic::TopicInner::<u64>::new("t".into(), 1, 16, options));
    (topic, inbox(1, 4, Overflow::DropOldest), inbox(2, 4, Overflow::DropOldest))
}

/// `i` joins `topic` as a hub's join does (`Inbox::join_with`).
fn join_topic(i: &Arc<Inbox<u64>>, topic: &Arc<crate::topic::TopicInner<u64>>) -> bool {
    i.join_with("t", |me| {
        topic.members.insert(me.clone());
        topic.clone()
    })
    .unwrap()
}

/// A topic switching to a shared log (at its second member) while that
/// member joins from now: either the switching walk finds the new member
/// and gives it a cursor, or the join finds the log and links itself
/// (`Walk::switch`, `Inbox::join_after`). Each subscriber gets every
/// message from its join on once, in order, whether from its ring (before
/// the switch) or the log (after).
#[test]
fn loom_switch_to_a_shared_log_racing_a_join() {
    loom::model(|| {
        let (topic, a, b) = switching_at_two();
        join_topic(&a, &topic);
        publish(&topic.seq, &topic.members, 1); // one member: a's ring
        let j = {
            let (b, topic) = (b.clone(), topic.clone());
            thread::spawn(move || join_topic(&b, &topic))
        };
        publish(&topic.seq, &topic.members, 2); // switches if it sees b
        assert!(j.join().unwrap());
        publish(&topic.seq, &topic.members, 3); // has switched
        assert!(topic.seq.shared_log().is_some(), "two members: a log");
        let drain = |i: &Arc<Inbox<u64>>| {
            let mut got = Vec::new();
            while let Ok(m) = i.try_pop() {
                got.push(m.seq());
            }
            got
        };
        assert_eq!(drain(&a), vec![1, 2, 3], "the first member: ring, then log, in order");
        let got_b = drain(&b);
        assert!(got_b == vec![2, 3] || got_b == vec![3], "the joiner: from its join on, once: {got_b:?}");
        // Break the inbox <-> topic links (the cleanup worker's job in a hub).
        assert!(a.leave("t").is_some());
        assert!(b.leave("t").is_some());
    });
}

/// A receiver parked on its ring while its topic switches to a shared log
/// (two members, the switch and the first append in one walk on another
/// thread): the switch's link wakes it (`Inbox::link_switched`), so that
/// it parks on the log too, and the append's wake reaches it. A lost wake
/// here leaves `block_on` waiting forever, which loom reports.
#[test]
fn loom_a_receiver_parked_across_the_switch_is_woken() {
    loom::model(|| {
        let (topic, a, b) = switching_at_two();
        join_topic(&a, &topic);
        join_topic(&b, &topic);
        let p = {
            let topic = topic.clone();
            thread::spawn(move || publish(&topic.seq, &topic.members, 7))
        };
        let mut buf = Vec::new();
        let r = loom::future::block_on(std::future::poll_fn(|cx| a.poll_recv_many(cx, &mut buf, 8)));
        assert_eq!(r, Ok(1));
        assert_eq!(*buf[0].payload(), 7);
        p.join().unwrap();
        assert!(topic.seq.shared_log().is_some(), "two members: a log");
        // Break the inbox <-> topic links (the cleanup worker's job in a hub).
        assert!(a.leave("t").is_some());
        assert!(b.leave("t").is_some());
    });
}
