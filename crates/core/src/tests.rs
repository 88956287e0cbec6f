//! White-box unit tests of the pieces: chunked snapshots and parking.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::config::Overflow;
use crate::error::CloseReason;
use crate::inbox::{Inbox, Offer};
use crate::members::Members;
use crate::message::{Message, Meta, Origin, Priority};
use crate::reaper;
use crate::{Hub, SubscriberId};

fn inbox(id: u64) -> Arc<Inbox<u64>> {
    Arc::new(Inbox::new(SubscriberId(id), 4, 4, Overflow::Evict, false))
}

fn ids(m: &Members<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = m.all().iter().map(|i| i.id.0).collect();
    v.sort();
    v
}

#[test]
fn members_fill_chunks_and_drop_empty_ones() {
    let m = Members::new(1, 16);
    for id in 0..100 {
        assert!(m.insert(inbox(id)));
    }
    assert!(!m.insert(inbox(5)), "already a member");
    assert_eq!(m.len(), 100);
    assert_eq!(m.chunk_count(), 7, "ceil(100 / 16)");

    // Empty the first chunk entirely and thin the others.
    let gone: Vec<SubscriberId> = (0..16).chain((16..100).step_by(3)).map(SubscriberId).collect();
    assert_eq!(m.remove_many(&gone), gone.len());
    assert_eq!(m.remove_many(&gone), 0, "removing twice removes nothing");
    assert_eq!(m.chunk_count(), 6, "the emptied chunk is dropped");
    let want: Vec<u64> = (16..100).filter(|i| (i - 16) % 3 != 0).collect();
    assert_eq!(ids(&m), want);
    assert_eq!(m.len(), want.len());

    // New members refill chunks with room before opening new ones.
    for id in 1000..1010 {
        m.insert(inbox(id));
    }
    assert_eq!(m.chunk_count(), 6);
    m.clear();
    assert!(m.is_empty());
    assert_eq!(m.chunk_count(), 0);
}

#[test]
fn members_shard_by_id() {
    let m = Members::new(4, 16);
    for id in 0..64 {
        m.insert(inbox(id));
    }
    assert_eq!(m.chunk_count(), 4, "16 per shard, one chunk each");
    assert!(m.remove(SubscriberId(7)));
    assert!(!m.remove(SubscriberId(7)));
    assert_eq!(m.len(), 63);
}

#[test]
fn a_publisher_keeps_its_snapshot_while_members_change() {
    let m = Members::new(1, 16);
    for id in 0..3 {
        m.insert(inbox(id));
    }
    let mut seen = Vec::new();
    m.for_each(|i| {
        // Removing during the walk changes later walks, not this one.
        m.remove(SubscriberId(2));
        seen.push(i.id.0);
    });
    assert_eq!(seen, vec![0, 1, 2]);
    assert_eq!(ids(&m), vec![0, 1]);
}

#[test]
fn parked_flag_follows_the_receiver() {
    // The inbox alone (no hub): miri runs this, and a hub's maps go through
    // DashMap's lock, whose futex syscalls miri cannot model.
    let s = inbox(1);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut buf = Vec::new();
    assert!(s.poll_recv_many(&mut cx, &mut buf, 8).is_pending());
    assert!(s.is_parked());
    let msg = Message::new(None, Origin::Broadcast, Meta { seq: 1, epoch: 0 }, Priority::Normal, 1);
    let mut depth = 0;
    assert_eq!(s.offer(&msg, Priority::Normal, &mut depth), Offer::Delivered);
    assert!(s.is_parked(), "an offer alone does not wake");
    assert!(s.notify(), "notify wakes a parked receiver");
    assert!(!s.is_parked(), "the publisher took the flag when it woke us");
    assert!(!s.notify(), "and wakes it once");
    assert_eq!(s.poll_recv_many(&mut cx, &mut buf, 8), Poll::Ready(Ok(1)));
    assert!(!s.is_parked());
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn cleanup_counts_a_subscriber_once_when_removed_twice() {
    // The sweep and a queued request can bring the same inbox to the worker in
    // two batches (tests/hub.rs `full_cleanup_channel_falls_back_to_sweep`
    // failed on it now and then): the second batch removes nothing, and must
    // count nothing.
    let hub = Hub::<u64>::new();
    let s = hub.subscribe().unwrap();
    let inbox = s.inbox().clone();
    // Closed without a request to the worker, so that only this thread applies.
    assert!(inbox.close(CloseReason::Kicked));
    reaper::apply(hub.inner(), &mut vec![inbox.clone()]);
    reaper::apply(hub.inner(), &mut vec![inbox.clone()]);
    let st = hub.stats();
    assert_eq!(st.cleanup_removed, 1);
    assert_eq!(st.cleanup_batches, 2);
}

#[test]
fn walks_from_any_start_visit_every_member_once() {
    let m = Members::new(3, 16);
    for id in 0..200 {
        m.insert(inbox(id));
    }
    for start in [0, 1, 2, 5, 17, 1000] {
        let mut seen: Vec<u64> = Vec::new();
        m.for_each_from(start, |i| seen.push(i.id.0));
        // The walk's loop (prefetching, wakes in groups) visits the same
        // members in the same order.
        let mut walked: Vec<u64> = Vec::new();
        let wakes = m.offer_each_from(start, |i| {
            walked.push(i.id.0);
            i.id.0 % 3 == 0
        });
        assert_eq!(walked, seen, "start {start}");
        assert_eq!(wakes, 0, "nobody parked");
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "start {start}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_subscriber_kicked_between_its_inserts_is_removed() {
    // The interleaving a kick can make with `subscribe`: it finds the new
    // subscriber by id after the first insert, and the worker applies its
    // removal before the second. Without `settle_new`, the closed inbox
    // stayed in the hub-wide set until shutdown.
    let hub = Hub::<u64>::new();
    let inner = hub.inner();
    let inbox = Arc::new(Inbox::new(SubscriberId(1000), 4, 4, Overflow::Evict, false));
    inner.by_id.insert(inbox.id, inbox.clone()); // insert_new, first half
    assert!(hub.kick(inbox.id));
    hub.flush_cleanup(); // the removal is applied now
    inner.all.insert(inbox.clone()); // insert_new, second half
    inner.settle_new(&inbox);
    hub.flush_cleanup();
    assert!(inner.all.is_empty(), "no closed inbox left in the hub-wide set");
    assert!(inner.by_id.get(&inbox.id).is_none());
    assert_eq!(hub.stats().cleanup_removed, 1, "counted once though removed twice");
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_subscriber_inserted_after_the_final_clear_is_removed() {
    // A subscribe racing shutdown, whose inserts land after the worker's
    // last `clear_all`: nobody would remove it (the worker has stopped).
    let hub = Hub::<u64>::new();
    let inner = hub.inner().clone();
    hub.shutdown();
    let inbox = Arc::new(Inbox::new(SubscriberId(1000), 4, 4, Overflow::Evict, false));
    inner.insert_new(&inbox);
    inner.settle_new(&inbox);
    assert_eq!(inbox.close_reason(), Some(CloseReason::Shutdown));
    assert!(inner.all.is_empty());
    assert!(inner.by_id.is_empty());
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_plain_join_does_not_wait_for_a_walk() {
    // A walk of a large topic can take a long time; a plain join (the
    // server's `subscribe` without `since`) must not wait for it. Only joins
    // that replay take the walk.
    let hub = Hub::<u64>::builder().history(8, std::time::Duration::from_secs(60)).build().unwrap();
    let topic = hub.inner().topic_inner("t");
    let walk = topic.seq.walk_blocking(); // someone is walking
    let s = hub.subscribe().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let joiner = {
        let hub = hub.clone();
        let id = s.id();
        std::thread::spawn(move || {
            let j = hub.join_from(id, "t", crate::JoinFrom::Now).unwrap();
            tx.send(j.joined).unwrap();
        })
    };
    // A generous bound that only stops a hang; a join that waits for the walk
    // never answers while this thread holds it.
    let joined = rx.recv_timeout(std::time::Duration::from_secs(30));
    assert!(!walk.end());
    joiner.join().unwrap();
    assert_eq!(joined, Ok(true), "joined while the walk was held");
    hub.inner().release_topic(&topic);
}

/// A payload whose drop, when armed, says so and waits to be let go: it
/// holds the cleanup worker inside a settle for as long as a test needs.
#[derive(Clone)]
struct Gate(Option<(std::sync::mpsc::Sender<()>, Release)>);

/// What lets an armed [`Gate`]'s drop go on.
type Release = Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>;

/// The hub's `delivered` and `discarded`, and that every delivery was
/// received (`received` of them), displaced or discarded.
fn assert_counts<T: Clone + Send + Sync + 'static>(
    hub: &Hub<T>,
    delivered: u64,
    discarded: u64,
    received: u64,
) {
    let st = hub.stats();
    assert_eq!((st.delivered, st.discarded), (delivered, discarded), "{st:?}");
    assert_eq!(st.delivered, received + st.displaced + st.discarded, "{st:?}");
}

/// An armed [`Gate`], what says its drop has begun, and what lets it end.
fn armed_gate() -> (Gate, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    (Gate(Some((entered_tx, Arc::new(std::sync::Mutex::new(release_rx))))), entered, release)
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some((entered, release)) = self.0.take() {
            let _ = entered.send(());
            let _ = release.lock().unwrap().recv();
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_log_leaver_whose_settle_comes_with_the_stop_is_still_counted() {
    // The worker used to stop at `Stop` and drop the settles taken with it:
    // what that leaver never took went uncounted (discarded 2, not 3).
    let hub = Hub::<Gate>::builder().shared_log(64).shared_log_from(0).build().unwrap();
    let subs: Vec<_> = (0..3).map(|_| hub.subscribe().unwrap()).collect();
    for s in &subs {
        s.join("t").unwrap();
    }
    let (gate, entered, release) = armed_gate();
    hub.publish("t", gate).unwrap();
    hub.publish("t", Gate(None)).unwrap();
    let [mut a, b, mut c] = <[_; 3]>::try_from(subs).ok().unwrap();
    assert_eq!(std::iter::from_fn(|| a.try_recv().ok()).count(), 2, "a takes both");
    assert!(c.try_recv().is_ok(), "c takes the first");
    // b's settle gives back the first message's last reference: its drop
    // holds the worker inside the settle.
    drop(b);
    entered.recv().unwrap();
    // Queued behind it: c's settle (it left the second untaken), then the stop.
    drop(c);
    hub.inner().shutdown();
    release.send(()).unwrap();
    hub.shutdown(); // joins the worker
                    // Three readers of two messages; b's two and c's one discarded.
    assert_counts(&hub, 6, 3, 3);
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_log_leaver_whose_settle_finds_the_channel_full_is_still_counted() {
    // A settle that found the worker's channel full used to be dropped,
    // left to the log's next append, which after shutdown never comes:
    // discarded 3, not 4. (Its log must be one no later settle covers: a
    // settle settles every leaver of its log.)
    let hub = Hub::<Gate>::builder().cleanup_capacity(2).shared_log(64).shared_log_from(0).build().unwrap();
    let subs: Vec<_> = (0..4).map(|_| hub.subscribe().unwrap()).collect();
    for s in &subs[..3] {
        s.join("t").unwrap();
    }
    subs[3].join("u").unwrap();
    hub.publish("u", Gate(None)).unwrap();
    let (gate, entered, release) = armed_gate();
    hub.publish("t", gate).unwrap();
    hub.publish("t", Gate(None)).unwrap();
    let [mut a, b, mut c, d] = <[_; 4]>::try_from(subs).ok().unwrap();
    assert_eq!(std::iter::from_fn(|| a.try_recv().ok()).count(), 2, "a takes both of t");
    assert!(c.try_recv().is_ok(), "c takes the first of t");
    // b's settle gives back the first message's last reference: its drop
    // holds the worker, with an empty channel of room 2.
    drop(b);
    entered.recv().unwrap();
    drop(c); // its removal and its settle fill the channel
    drop(d); // its removal and its settle (of u) find it full
    release.send(()).unwrap();
    hub.shutdown(); // joins the worker
                    // Three readers of two in t, one of one in u; b's two, c's one and
                    // d's one discarded.
    assert_counts(&hub, 7, 4, 3);
}

/// A payload that owns a subscriber of the hub it travels through.
#[derive(Clone)]
struct Owning {
    _owned: Arc<std::sync::Mutex<Option<crate::Subscriber<Owning>>>>,
}

#[test]
#[cfg_attr(miri, ignore = "a hub's maps go through DashMap's lock, whose futex syscalls miri cannot model")]
fn a_settle_after_shutdown_that_drops_a_subscriber_of_the_same_log_does_not_wait_for_itself() {
    // After shutdown a dropped subscriber's settle runs on the dropping
    // thread. Here it gives back the last reference of a message whose
    // payload owns another subscriber of the same topic; that one's settle
    // used to wait for the walk its own thread held: a deadlock (this test
    // hung). It is now held, and the counts balance.
    let hub = Hub::<Owning>::builder().shared_log(64).shared_log_from(0).build().unwrap();
    let mut r = hub.subscribe().unwrap();
    let b = hub.subscribe().unwrap();
    r.join("t").unwrap();
    b.join("t").unwrap();
    let slot = Arc::new(std::sync::Mutex::new(None));
    hub.publish("t", Owning { _owned: slot.clone() }).unwrap();
    let y = hub.subscribe().unwrap();
    y.join("t").unwrap(); // after the message: not one of its readers
    *slot.lock().unwrap() = Some(y);
    drop(slot);
    assert!(r.try_recv().is_ok());
    hub.shutdown();
    drop(b); // its settle frees the message, and with it y
    assert_counts(&hub, 2, 1, 1);
}
