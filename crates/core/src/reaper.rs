//! The cleanup worker: one thread that removes closed subscribers in batches.
//!
//! # Requests
//!
//! Whoever closes a subscriber (a publisher evicting a slow consumer, `kick`,
//! the subscriber's own drop) has already made it skip-able by flipping its
//! state word; it then sends the inbox on a bounded channel. The worker takes
//! what is queued (up to [`MAX_BATCH`]) and removes the whole batch: from the
//! hub-wide set with one snapshot store per touched shard, from each topic it
//! joined with one store per topic, and from the id map. Only then does the
//! inbox move to `closed`.
//!
//! # When the channel is full
//!
//! The closer does not wait: the subscriber is already closing (publishers skip
//! it), so the closer sets `needs_sweep`, and the worker, at its next tick
//! (every `sweep_interval` at the latest), walks the hub-wide set and removes
//! every closing subscriber it finds.
//!
//! # Panics
//!
//! The worker frees what it removes, and a message payload's `Drop` may
//! panic there. It catches the panic (counted in `Stats::cleanup_panics`),
//! sweeps on its next turn for what the interrupted batch did not reach, and
//! goes on: a dead worker would leave every later close unapplied.
//!
//! # Topics whose history expired
//!
//! A topic with a history outlives its last subscriber and handle for the
//! history's TTL. Nothing else happens to such a topic when the TTL runs
//! out, so the worker sweeps the topic map once a second (and on a flush),
//! removing every topic with no member, no handle and an expired history.
//!
//! # Stopping
//!
//! `Hub::shutdown`, or the drop of the last hub handle, sends `Stop` and joins
//! the thread. The worker empties every set on its way out (`Inner::clear_all`),
//! so no thread and no reference cycle outlives the hub.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::hub::Inner;
use crate::inbox::Inbox;
use crate::topic::TopicInner;
use crate::SubscriberId;

/// How often the worker looks for topics whose history expired.
const TOPIC_SWEEP: Duration = Duration::from_secs(1);

/// Most removals applied in one batch.
pub(crate) const MAX_BATCH: usize = 4096;

pub(crate) enum Request<T> {
    /// Remove this closing inbox from every set.
    Remove(Arc<Inbox<T>>),
    /// Settle the shared logs a dropped subscriber left (`Inner::settle_left`:
    /// it takes each topic's walk, which a dropping thread must not wait for).
    Settle(Vec<crate::cursors::Left<T>>),
    /// Answer once every request sent before this one has been applied.
    Flush(crossbeam_channel::Sender<()>),
    /// Stop the worker.
    Stop,
}

pub(crate) fn spawn<T: Clone + Send + Sync + 'static>(
    inner: Arc<Inner<T>>,
    rx: Receiver<Request<T>>,
) -> JoinHandle<()> {
    // Wait until the thread runs (its name is set by then), so that a hub is
    // fully up, thread included, when its constructor returns.
    let (up_tx, up_rx) = crossbeam_channel::bounded::<()>(1);
    let handle = std::thread::Builder::new()
        .name("fanout-reaper".into())
        .spawn(move || {
            let _ = up_tx.send(());
            run(&inner, &rx)
        })
        .expect("spawn the fanout cleanup thread");
    let _ = up_rx.recv();
    handle
}

fn run<T: Clone + Send + Sync + 'static>(inner: &Inner<T>, rx: &Receiver<Request<T>>) {
    let mut batch: Vec<Arc<Inbox<T>>> = Vec::new();
    let mut flushes: Vec<crossbeam_channel::Sender<()>> = Vec::new();
    let mut settles: Vec<crate::cursors::Left<T>> = Vec::new();
    let mut topics_swept = Instant::now();
    loop {
        let mut stop = false;
        let mut take = |req: Request<T>, batch: &mut Vec<_>, stop: &mut bool| match req {
            Request::Remove(inbox) => batch.push(inbox),
            Request::Settle(left) => settles.extend(left),
            Request::Flush(done) => flushes.push(done),
            Request::Stop => *stop = true,
        };
        match rx.recv_timeout(inner.config.sweep_interval) {
            Ok(req) => take(req, &mut batch, &mut stop),
            Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while !stop && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => take(req, &mut batch, &mut stop),
                Err(_) => break,
            }
        }
        if stop {
            // The logs' leavers that came with the stop, or are still on
            // their way, are settled first: what they left is counted.
            // A panic here (a payload's `Drop`) must not stop the thread from
            // ending normally: the hub's shutdown joins it.
            last_settles(inner, rx, &mut settles, &mut flushes);
            if catch_unwind(AssertUnwindSafe(|| inner.clear_all())).is_err() {
                inner.counters.cleanup_panic();
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        // A flush also sweeps, so that it covers removals whose request found
        // the channel full.
        if inner.needs_sweep.swap(false, Ordering::AcqRel) || !flushes.is_empty() {
            batch.extend(inner.all.closing());
        }
        if !batch.is_empty() && catch_unwind(AssertUnwindSafe(|| apply(inner, &mut batch))).is_err() {
            // A payload's `Drop` panicked while a snapshot was freed. Every
            // step of `apply` is idempotent: sweep for what it did not reach,
            // and go on (a dead worker would leave every later close unapplied).
            inner.counters.cleanup_panic();
            batch.clear();
            inner.needs_sweep.store(true, Ordering::Release);
        }
        settles.extend(inner.take_held_settles());
        if !settles.is_empty()
            && catch_unwind(AssertUnwindSafe(|| inner.settle_left(settles.drain(..)))).is_err()
        {
            // A payload's `Drop` panicked while a walk delivered or gave back.
            inner.counters.cleanup_panic();
            settles.clear();
        }
        if inner.keeps_histories() && (!flushes.is_empty() || topics_swept.elapsed() >= TOPIC_SWEEP) {
            topics_swept = Instant::now();
            if catch_unwind(AssertUnwindSafe(|| inner.sweep_topics())).is_err() {
                inner.counters.cleanup_panic();
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The stopping worker's last settles: those it holds, those still in the
/// channel or held, and those a sender is putting there
/// (`Inner::request_settle` says why none can be missed). One at a time,
/// each under its own `catch_unwind`: a payload's `Drop` that panics
/// costs the count of one leaver, not of the rest.
fn last_settles<T: Clone + Send + Sync + 'static>(
    inner: &Inner<T>,
    rx: &Receiver<Request<T>>,
    settles: &mut Vec<crate::cursors::Left<T>>,
    flushes: &mut Vec<crossbeam_channel::Sender<()>>,
) {
    let backoff = crossbeam_utils::Backoff::new();
    loop {
        let quiet = inner.settles_in_flight.load(Ordering::SeqCst) == 0;
        while let Ok(req) = rx.try_recv() {
            match req {
                Request::Settle(left) => settles.extend(left),
                Request::Flush(done) => flushes.push(done),
                Request::Remove(_) | Request::Stop => {}
            }
        }
        settles.extend(inner.take_held_settles());
        if settles.is_empty() {
            if quiet {
                return;
            }
            backoff.snooze();
            continue;
        }
        for l in std::mem::take(settles) {
            if catch_unwind(AssertUnwindSafe(|| inner.settle_left(std::iter::once(l)))).is_err() {
                inner.counters.cleanup_panic();
            }
        }
    }
}

/// A topic and the members the batch removes from it.
type TopicRemovals<T> = (Arc<TopicInner<T>>, Vec<SubscriberId>);

/// Removes every inbox of `batch` from every set; empties `batch`.
pub(crate) fn apply<T: Clone + Send + Sync + 'static>(inner: &Inner<T>, batch: &mut Vec<Arc<Inbox<T>>>) {
    batch.sort_unstable_by_key(|i| i.id);
    batch.dedup_by_key(|i| i.id);
    let ids: Vec<SubscriberId> = batch.iter().map(|i| i.id).collect();
    inner.all.remove_many(&ids);

    // Group by topic so that each topic's snapshot is stored once.
    let mut per_topic: HashMap<*const TopicInner<T>, TopicRemovals<T>> = HashMap::new();
    for inbox in batch.iter() {
        // Taken under the lock that joins check the state under: no topic can
        // be added to this (closing) inbox after this.
        for t in inbox.take_topics() {
            per_topic.entry(Arc::as_ptr(&t)).or_insert_with(|| (t.clone(), Vec::new())).1.push(inbox.id);
        }
    }
    for (topic, members) in per_topic.values() {
        topic.members.remove_many(members);
        inner.maybe_reclaim(topic);
    }
    // Count the inboxes this batch moved to `closed`, not the batch's length:
    // the sweep and a queued request can both bring one inbox, in two batches
    // (the sweep removes it first, the request comes later), and `finish`
    // succeeds once per inbox.
    let mut removed = 0;
    for inbox in batch.iter() {
        inner.by_id.remove_if(&inbox.id, |_, v| Arc::ptr_eq(v, inbox));
        removed += usize::from(inbox.finish());
    }
    inner.counters.cleanup(removed);
    batch.clear();
}
