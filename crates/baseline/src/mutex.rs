//! The mutex hub: a faithful Rust port of the Go hubs fanout replaces
//! (`go-hub-basic.go` and `go-hub-topics.go`, in `shared/reference/`).
//!
//! # The Go design, kept
//!
//! ```text
//! type Hub struct {
//!     clients    map[*Client]bool      // -> State::clients: HashMap<SubscriberId, Client>
//!     register   chan *Client          // -> rendezvous channel (bounded(0))
//!     unregister chan *Client          // -> unbounded channel (see below)
//!     broadcast  chan []byte           // -> bounded(256) channel of Message<T>
//!     mu         sync.RWMutex          // -> std::sync::RwLock<State>
//! }
//! ```
//!
//! - **Run loop.** One task (`Hub.Run`'s goroutine) selects over `done`,
//!   `register`, `unregister` and `broadcast` with `tokio::select!`, which, like
//!   Go's `select`, picks at random among the ready cases. Registration takes
//!   the write lock; a broadcast takes the read lock and offers the message to
//!   every client in map order. Like a goroutine on Go's scheduler, the task
//!   runs on the same runtime as everything else (the publishers, the
//!   receivers, the transport): created inside a multi-threaded tokio runtime,
//!   [`MutexHub::new`] spawns it there. Created outside one (or inside a
//!   current-thread runtime, where a caller blocked in `subscribe` would stop
//!   the only thread that could answer it), the run loop gets a thread of its
//!   own with a one-thread runtime, as a last resort for tests and sync users.
//! - **Broadcast** ([`Engine::broadcast`]) only hands the message to the run loop
//!   through the 256-slot channel, as Go's `Broadcast` does, and drops the whole
//!   message when that channel is full (Go logs "broadcast channel full,
//!   dropping message"; we count it as `dropped.full` for every client, so a
//!   loss is never silent in the benchmarks). Its [`PublishReport`] therefore
//!   says what the call did (queued, or dropped), not the deliveries, which the
//!   run loop makes later and adds to [`Engine::stats`].
//! - **The message is built once** ([`Message::new`], one `Arc`) and each
//!   delivery clones the handle, as Go shares one `[]byte` among all clients.
//! - **Each client** has a bounded channel of 256 slots. We use
//!   `tokio::sync::mpsc`: it is what a Rust engineer porting a Go channel with
//!   async readers reaches for, it has a native `recv_many` (the batch drain the
//!   engine's receivers use too), and `try_send` is Go's `select { case c.send
//!   <- m: default: }`. crossbeam's channels would need a separate waker to be
//!   awaited, which is not the Go design any more.
//!
//! # Where the port must differ, and how
//!
//! - **Eviction of a full client.** `go-hub-basic` drops the read lock, takes
//!   the write lock, deletes and closes the client, and takes the read lock
//!   again *inside* the map iteration; `go-hub-topics` closes and deletes while
//!   holding only the read lock (a data race). Neither is expressible in safe
//!   Rust, and both are bugs. The port collects the full clients under the read
//!   lock, then, after the loop, takes the write lock once and removes them
//!   (setting their close reason to `SlowConsumer` and dropping their senders,
//!   which is Go's `close(client.send)`: the receiver drains what is queued, then
//!   sees the close). This is the fix a careful Go engineer would make, and it is
//!   cheaper than the original, never dearer.
//! - **Register waits for the insert.** Go's `register` is unbuffered, so
//!   `Register` returns once the run loop has *received* the client, a moment
//!   before it is in the map. Here the run loop acknowledges after the insert, so
//!   that [`Engine::join`] may follow [`Engine::subscribe`] at once. Like Go, a
//!   subscribe waits behind whatever the run loop is doing (a broadcast to every
//!   client included): that is the design's subscribe latency. The trait's
//!   `subscribe` is not async, so the caller blocks its thread for the answer;
//!   on a worker of a multi-threaded runtime it does so inside
//!   `tokio::task::block_in_place`, which hands the worker's other tasks (the
//!   run loop among them, perhaps) to another thread first, as Go's scheduler
//!   moves other goroutines off a blocked one's thread.
//! - **Unregister never blocks.** Go's `unregister` is unbuffered too, and the
//!   pumps block on it in a `defer`. In Rust the receiver unregisters from
//!   `Drop`, which may run on an async runtime's worker thread, where blocking
//!   until the run loop comes round would stall every task of that worker (a Go
//!   goroutine blocks alone). So `unregister` is unbounded; the run loop applies
//!   it in order, exactly as Go's would.
//! - **Topics** (`go-hub-topics`' `BroadcastToSubscribers`) are published by the
//!   caller under the read lock, as in Go. Go scans *every* client and asks
//!   `IsSubscribed(projectID)`; that makes a publish cost O(all clients) even
//!   when a topic has ten members. A careful Go engineer who has thousands of
//!   topics keeps a `map[topic]map[*Client]bool` beside `clients`, under the
//!   same lock; so does this port (`State::topics`), so that the topic
//!   benchmarks measure the lock-and-channel design, not a missing index. Full
//!   members are evicted as for broadcasts (Go's topic hub silently skipped
//!   them; eviction is the behaviour the engine shares).
//! - **Numbering and stats.** Messages carry a per-topic `seq` (per hub for
//!   broadcasts) like the engine's, so that the transport works on either; the
//!   counters are plain atomics updated once per publish, not per delivery.
//! - **Order under concurrent publishers.** The Go hubs have no `seq`, so they
//!   never promised an order. The port promises the engine's (every subscriber
//!   receives a topic's messages in increasing `seq`), and keeps it the way a Go
//!   engineer would: a topic's number is taken and its members are walked under
//!   that topic's mutex (Go: a `sync.Mutex` in the topic struct), and a
//!   broadcast is numbered and queued for the run loop under the hub's
//!   broadcast mutex. Without them two publishers under the read lock interleave
//!   their walks, and a subscriber receives seq 6 before seq 5.
//! - **Priorities** are carried in the message but ignored: the Go hub has none.
//!   Unicast ([`Engine::send_to`], which the Go hubs lack) is a `try_send` under
//!   the read lock, with the same eviction on full.
//!
//! # Shutdown
//!
//! [`Engine::shutdown`] (or dropping the last handle) refuses later publishes and
//! subscribes, then closes the run loop's `done` channel (Go's `ctx.Done()`); the
//! run loop takes the write lock, marks every client `Shutdown`, drops every
//! sender (Go's `close(client.send)` for each), and returns; the caller waits
//! for it to return (blocking as `subscribe` does). Dropping the last handle
//! does the same without waiting (it may happen while the runtime shuts down,
//! when the run loop will never run again). Receivers drain what is queued,
//! then see `Closed(Shutdown)`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crossbeam_channel::{Receiver as CbReceiver, Sender as CbSender};
use fanout_core::{
    CloseReason, Closes, Drops, Engine, Message, Meta, Origin, Priority, PublishError, PublishReport,
    Receiver, RecvError, SendError, Stats, SubscribeError, SubscriberId, TryRecvError,
};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

/// Slots in each client's channel (Go: `make(chan []byte, 256)`).
pub const CLIENT_CAPACITY: usize = 256;

/// Slots in the hub's broadcast channel (Go: `make(chan []byte, 256)`).
pub const BROADCAST_CAPACITY: usize = 256;

/// The mutex hub. Cheap to clone; shuts down when the last handle is dropped.
///
/// ```
/// use fanout_baseline::MutexHub;
/// use fanout_core::{Engine, Receiver};
///
/// let hub = MutexHub::<u32>::new();
/// let mut sub = hub.subscribe().unwrap();
/// hub.join(sub.id(), "t").unwrap();
/// assert_eq!(hub.publish("t", 7).unwrap().delivered, 1);
/// assert_eq!(*sub.try_recv().unwrap().payload(), 7);
/// ```
pub struct MutexHub<T: Clone + Send + Sync + 'static> {
    shared: Arc<Shared<T>>,
}

/// What the handles share; dropping it shuts the hub down.
struct Shared<T: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<T>>,
    /// Answered (or dropped) when the run loop returns; taken by shutdown.
    run_loop: Mutex<Option<CbReceiver<()>>>,
    /// Go's `ctx`: dropped (closed) by shutdown, which the run loop sees.
    done: Mutex<Option<oneshot::Sender<()>>>,
}

struct Inner<T> {
    /// Go's `mu` and what it guards.
    state: RwLock<State<T>>,
    register: mpsc::UnboundedSender<Register<T>>,
    unregister: mpsc::UnboundedSender<SubscriberId>,
    broadcast: mpsc::Sender<Message<T>>,
    /// Refuses publishes and subscribes once set.
    shut: AtomicBool,
    next_id: AtomicU64,
    next_epoch: AtomicU64,
    /// Last broadcast seq given out; held while a broadcast is numbered and
    /// queued, so that the queue (and every client) sees increasing seqs.
    broadcast_seq: Mutex<u64>,
    counters: Counters,
}

struct State<T> {
    clients: HashMap<SubscriberId, Client<T>>,
    topics: HashMap<Arc<str>, Topic<T>>,
}

struct Client<T> {
    send: mpsc::Sender<Message<T>>,
    life: Arc<Life>,
    /// Topics joined, so that removal also leaves them (and every clone of
    /// `send` is dropped, which closes the channel).
    topics: Vec<Arc<str>>,
}

struct Topic<T> {
    name: Arc<str>,
    epoch: u64,
    /// Last seq given out; held while a message is numbered and offered to
    /// every member, so that each member receives the topic's seqs in order
    /// (publishers hold the hub's read lock only, and would interleave).
    seq: Mutex<u64>,
    /// Members' senders (clones of `Client::send`).
    members: HashMap<SubscriberId, mpsc::Sender<Message<T>>>,
}

/// A client's close reason, shared with its receiver: 0 while open, else
/// `1 + CloseReason`. Set once, under the write lock, before the senders are
/// dropped; the receiver reads it after its channel reports closed.
struct Life(AtomicU8);

impl Life {
    fn close(&self, reason: CloseReason) -> bool {
        self.0.compare_exchange(0, 1 + reason as u8, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
    fn reason(&self) -> Option<CloseReason> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(CloseReason::Shutdown),
            2 => Some(CloseReason::SlowConsumer),
            3 => Some(CloseReason::Kicked),
            _ => Some(CloseReason::Unsubscribed),
        }
    }
}

struct Register<T> {
    id: SubscriberId,
    client: Client<T>,
    /// Answered once the client is in the map.
    ack: CbSender<()>,
}

#[derive(Default)]
struct Counters {
    subscribed: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    dropped_full: AtomicU64,
    dropped_evicted: AtomicU64,
    closed: [AtomicU64; 4],
}

impl Counters {
    fn publish(&self, r: &PublishReport) {
        self.published.fetch_add(r.messages, Ordering::Relaxed);
        if r.delivered != 0 {
            self.delivered.fetch_add(r.delivered, Ordering::Relaxed);
        }
        if r.dropped.full != 0 {
            self.dropped_full.fetch_add(r.dropped.full, Ordering::Relaxed);
        }
        if r.dropped.evicted != 0 {
            self.dropped_evicted.fetch_add(r.dropped.evicted, Ordering::Relaxed);
        }
    }
    fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Clone + Send + Sync + 'static> MutexHub<T> {
    /// A hub with its run loop started: a task on the current tokio runtime if
    /// it is multi-threaded, else a thread of its own (see the module docs).
    pub fn new() -> Self {
        // Register needs no buffer to be Go's rendezvous: the caller waits for
        // the run loop's acknowledgement anyway.
        let (register_tx, register_rx) = mpsc::unbounded_channel();
        let (unregister_tx, unregister_rx) = mpsc::unbounded_channel();
        let (broadcast_tx, broadcast_rx) = mpsc::channel(BROADCAST_CAPACITY);
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let inner = Arc::new(Inner {
            state: RwLock::new(State { clients: HashMap::new(), topics: HashMap::new() }),
            register: register_tx,
            unregister: unregister_tx,
            broadcast: broadcast_tx,
            shut: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            next_epoch: AtomicU64::new(0),
            broadcast_seq: Mutex::new(0),
            counters: Counters::default(),
        });
        let (finished_tx, finished_rx) = crossbeam_channel::bounded::<()>(1);
        let run = inner.clone().run(done_rx, register_rx, unregister_rx, broadcast_rx);
        let run = async move {
            run.await;
            let _ = finished_tx.send(());
        };
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                h.spawn(run);
            }
            _ => {
                let rt =
                    tokio::runtime::Builder::new_current_thread().build().expect("the run loop's runtime");
                std::thread::Builder::new()
                    .name("mutex-hub-run".into())
                    .spawn(move || rt.block_on(run))
                    .expect("spawn the hub's run loop");
            }
        }
        MutexHub {
            shared: Arc::new(Shared {
                inner,
                run_loop: Mutex::new(Some(finished_rx)),
                done: Mutex::new(Some(done_tx)),
            }),
        }
    }

    fn inner(&self) -> &Inner<T> {
        &self.shared.inner
    }

    /// Clients in the map right now (Go's `ClientCount`, under the read lock).
    pub fn client_count(&self) -> usize {
        read(&self.inner().state).clients.len()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for MutexHub<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> Clone for MutexHub<T> {
    fn clone(&self) -> Self {
        MutexHub { shared: self.shared.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static> Shared<T> {
    /// Refuses later calls and tells the run loop to close every client.
    fn cancel(&self) {
        self.inner.shut.store(true, Ordering::SeqCst);
        // Closing `done` is Go's cancel(): the run loop closes every client.
        drop(self.done.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    /// [`Shared::cancel`], then waits for the run loop to return.
    fn shutdown(&self) {
        self.cancel();
        let finished = self.run_loop.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(f) = finished {
            // Err: the run loop's runtime is gone, and the loop with it.
            let _ = block(|| f.recv());
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Shared<T> {
    /// Cancels without waiting: the last handle may be dropped while its
    /// runtime shuts down, when the run loop will never be polled again. The
    /// loop closes the clients if it runs; if it is dropped instead, the
    /// clients' senders go with it and receivers see `Closed(Shutdown)`.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Runs `f`, which blocks the thread until the run loop answers: inside
/// `block_in_place` on a worker of a multi-threaded runtime (so that its other
/// tasks, the run loop perhaps among them, move to another thread first),
/// directly anywhere else.
fn block<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    /// `Hub.Run`.
    async fn run(
        self: Arc<Self>,
        mut done: oneshot::Receiver<()>,
        mut register: mpsc::UnboundedReceiver<Register<T>>,
        mut unregister: mpsc::UnboundedReceiver<SubscriberId>,
        mut broadcast: mpsc::Receiver<Message<T>>,
    ) {
        // `self` holds a sender of each channel, so none of them ends first.
        loop {
            tokio::select! {
                _ = &mut done => {
                    let mut st = write(&self.state);
                    for (_, c) in st.clients.drain() {
                        if c.life.close(CloseReason::Shutdown) {
                            self.counters.closed(CloseReason::Shutdown);
                        }
                    }
                    st.topics.clear();
                    return;
                }
                Some(r) = register.recv() => {
                    write(&self.state).clients.insert(r.id, r.client);
                    let _ = r.ack.send(());
                }
                Some(id) = unregister.recv() => {
                    let mut st = write(&self.state);
                    if remove(&mut st, id, CloseReason::Unsubscribed) {
                        self.counters.closed(CloseReason::Unsubscribed);
                    }
                }
                Some(msg) = broadcast.recv() => {
                    let mut r = PublishReport::default();
                    let mut full = Vec::new();
                    {
                        let st = read(&self.state);
                        for (id, c) in st.clients.iter() {
                            offer(&c.send, *id, &msg, &mut r, &mut full);
                        }
                    }
                    self.evict(full);
                    self.counters.publish(&r);
                }
                else => return,
            }
        }
    }

    /// Removes the clients that were full, under the write lock.
    fn evict(&self, full: Vec<SubscriberId>) {
        if full.is_empty() {
            return;
        }
        let mut st = write(&self.state);
        for id in full {
            if remove(&mut st, id, CloseReason::SlowConsumer) {
                self.counters.closed(CloseReason::SlowConsumer);
            }
        }
    }

    fn check_open(&self) -> Result<(), PublishError> {
        if self.shut.load(Ordering::Acquire) {
            Err(PublishError::Shutdown)
        } else {
            Ok(())
        }
    }
}

/// Go's `select { case client.send <- message: default: <full> }`.
#[inline]
fn offer<T>(
    send: &mpsc::Sender<Message<T>>,
    id: SubscriberId,
    msg: &Message<T>,
    r: &mut PublishReport,
    full: &mut Vec<SubscriberId>,
) {
    match send.try_send(msg.clone()) {
        Ok(()) => {
            r.recipients += 1;
            r.delivered += 1;
        }
        Err(TrySendError::Full(_)) => {
            r.recipients += 1;
            r.dropped.evicted += 1;
            full.push(id);
        }
        // The receiver is gone and its unregister is on its way: not a recipient.
        Err(TrySendError::Closed(_)) => {}
    }
}

/// Deletes client `id` and its topic memberships, closing its channel (every
/// sender clone is dropped). True if it was there.
fn remove<T>(st: &mut State<T>, id: SubscriberId, reason: CloseReason) -> bool {
    let Some(c) = st.clients.remove(&id) else { return false };
    c.life.close(reason);
    for name in &c.topics {
        if let Some(t) = st.topics.get_mut(name) {
            t.members.remove(&id);
            if t.members.is_empty() {
                st.topics.remove(name);
            }
        }
    }
    true
}

impl<T: Clone + Send + Sync + 'static> Engine<T> for MutexHub<T> {
    type Subscriber = MutexSubscriber<T>;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn subscribe(&self) -> Result<MutexSubscriber<T>, SubscribeError> {
        let inner = self.inner();
        if inner.shut.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let id = SubscriberId::new(inner.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::channel(CLIENT_CAPACITY);
        let life = Arc::new(Life(AtomicU8::new(0)));
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        let client = Client { send: tx, life: life.clone(), topics: Vec::new() };
        // Go: `h.register <- client` (a rendezvous with the run loop).
        if inner.register.send(Register { id, client, ack: ack_tx }).is_err()
            || block(|| ack_rx.recv()).is_err()
        {
            return Err(SubscribeError::Shutdown);
        }
        inner.counters.subscribed.fetch_add(1, Ordering::Relaxed);
        Ok(MutexSubscriber { id, rx, life, unregister: inner.unregister.clone(), closed: None })
    }

    fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let inner = self.inner();
        if inner.shut.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let mut guard = write(&inner.state);
        let st = &mut *guard;
        let Some(c) = st.clients.get_mut(&id) else { return Err(SubscribeError::NoSuchSubscriber) };
        if c.topics.iter().any(|t| &**t == topic) {
            return Ok(false);
        }
        let t = match st.topics.get_mut(topic) {
            Some(t) => t,
            None => {
                let name: Arc<str> = Arc::from(topic);
                let epoch = inner.next_epoch.fetch_add(1, Ordering::Relaxed) + 1;
                st.topics.entry(name.clone()).or_insert(Topic {
                    name,
                    epoch,
                    seq: Mutex::new(0),
                    members: HashMap::new(),
                })
            }
        };
        t.members.insert(id, c.send.clone());
        c.topics.push(t.name.clone());
        Ok(true)
    }

    fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let inner = self.inner();
        if inner.shut.load(Ordering::Acquire) {
            return Err(SubscribeError::Shutdown);
        }
        let mut guard = write(&inner.state);
        let st = &mut *guard;
        let Some(c) = st.clients.get_mut(&id) else { return Err(SubscribeError::NoSuchSubscriber) };
        let Some(pos) = c.topics.iter().position(|t| &**t == topic) else { return Ok(false) };
        c.topics.swap_remove(pos);
        if let Some(t) = st.topics.get_mut(topic) {
            t.members.remove(&id);
            if t.members.is_empty() {
                st.topics.remove(topic);
            }
        }
        Ok(true)
    }

    /// `BroadcastToSubscribers`: delivered by the caller, under the read lock.
    fn publish_with<F: FnOnce(Meta) -> T>(
        &self,
        topic: &str,
        priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        let mut r = PublishReport { messages: 1, ..PublishReport::default() };
        let mut full = Vec::new();
        {
            let st = read(&inner.state);
            if let Some(t) = st.topics.get(topic) {
                let mut seq = t.seq.lock().unwrap_or_else(PoisonError::into_inner);
                *seq += 1;
                let meta = Meta { seq: *seq, epoch: t.epoch };
                r.seq = meta.seq;
                r.walked = 1; // delivered here, under the topic's lock
                let msg = Message::new(Some(t.name.clone()), Origin::Topic, meta, priority, make(meta));
                for (id, send) in t.members.iter() {
                    offer(send, *id, &msg, &mut r, &mut full);
                }
            }
        }
        inner.evict(full);
        inner.counters.publish(&r);
        Ok(r)
    }

    /// Go's `Broadcast`: hands the message to the run loop, or drops it when the
    /// 256-slot channel is full.
    fn broadcast(&self, payload: T) -> Result<PublishReport, PublishError> {
        let inner = self.inner();
        inner.check_open()?;
        let mut seq = inner.broadcast_seq.lock().unwrap_or_else(PoisonError::into_inner);
        *seq += 1;
        let meta = Meta { seq: *seq, epoch: 0 };
        let msg = Message::new(None, Origin::Broadcast, meta, Priority::Normal, payload);
        let mut r = PublishReport { messages: 1, seq: meta.seq, ..PublishReport::default() };
        let sent = inner.broadcast.try_send(msg);
        drop(seq);
        match sent {
            // Deliveries are made and counted by the run loop.
            Ok(()) => inner.counters.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                // "broadcast channel full, dropping message": every client loses it.
                let n = read(&inner.state).clients.len() as u64;
                r.recipients = n;
                r.dropped.full = n;
                inner.counters.publish(&r);
                0
            }
        };
        Ok(r)
    }

    fn send_to(&self, id: SubscriberId, payload: T) -> Result<(), SendError<T>> {
        let inner = self.inner();
        if inner.shut.load(Ordering::Acquire) {
            return Err(SendError::Shutdown(payload));
        }
        let msg = Message::new(None, Origin::Direct, Meta { seq: 0, epoch: 0 }, Priority::Normal, payload);
        let res = {
            let st = read(&inner.state);
            match st.clients.get(&id) {
                None => return Err(SendError::NoSuchSubscriber(msg.into_payload())),
                Some(c) => c.send.try_send(msg),
            }
        };
        let mut r = PublishReport { messages: 1, recipients: 1, ..PublishReport::default() };
        let out = match res {
            Ok(()) => {
                r.delivered = 1;
                Ok(())
            }
            Err(TrySendError::Full(m)) => {
                r.dropped.evicted = 1;
                inner.evict(vec![id]);
                Err(SendError::Full(m.into_payload()))
            }
            Err(TrySendError::Closed(m)) => {
                r.recipients = 0;
                Err(SendError::Closed(m.into_payload()))
            }
        };
        inner.counters.publish(&r);
        out
    }

    fn stats(&self) -> Stats {
        let inner = self.inner();
        let (subscribers, topics) = {
            let st = read(&inner.state);
            (st.clients.len() as u64, st.topics.len() as u64)
        };
        let c = &inner.counters;
        let closed = |r: CloseReason| c.closed[r as usize].load(Ordering::Relaxed);
        Stats {
            subscribers,
            topics,
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: Drops {
                high_water: 0,
                full: c.dropped_full.load(Ordering::Relaxed),
                evicted: c.dropped_evicted.load(Ordering::Relaxed),
            },
            evicted: Closes {
                shutdown: closed(CloseReason::Shutdown),
                slow_consumer: closed(CloseReason::SlowConsumer),
                kicked: closed(CloseReason::Kicked),
                unsubscribed: closed(CloseReason::Unsubscribed),
            },
            ..Stats::default()
        }
    }

    fn shutdown(&self) {
        self.shared.shutdown();
    }
}

/// A mutex-hub client's receiving half: its channel's receiver.
pub struct MutexSubscriber<T> {
    id: SubscriberId,
    rx: mpsc::Receiver<Message<T>>,
    life: Arc<Life>,
    unregister: mpsc::UnboundedSender<SubscriberId>,
    /// Set once the channel reported closed and drained.
    closed: Option<CloseReason>,
}

impl<T> MutexSubscriber<T> {
    fn closed(&mut self) -> CloseReason {
        let reason = self.life.reason().unwrap_or(CloseReason::Shutdown);
        self.closed = Some(reason);
        reason
    }

    /// Why it was closed, once it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.life.reason()
    }
}

impl<T: Send + Sync + 'static> Receiver<T> for MutexSubscriber<T> {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn try_recv(&mut self) -> Result<Message<T>, TryRecvError> {
        if let Some(r) = self.closed {
            return Err(TryRecvError::Closed(r));
        }
        match self.rx.try_recv() {
            Ok(m) => Ok(m),
            Err(mpsc::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(TryRecvError::Closed(self.closed())),
        }
    }

    async fn recv_many(&mut self, buf: &mut Vec<Message<T>>, max: usize) -> Result<usize, RecvError> {
        if let Some(r) = self.closed {
            return Err(RecvError::Closed(r));
        }
        if max == 0 {
            return Ok(0);
        }
        match self.rx.recv_many(buf, max).await {
            0 => Err(RecvError::Closed(self.closed())),
            n => Ok(n),
        }
    }
}

impl<T> Drop for MutexSubscriber<T> {
    fn drop(&mut self) {
        // Go's `defer func() { c.hub.unregister <- c }()`, without blocking.
        if self.life.reason().is_none() {
            let _ = self.unregister.send(self.id);
        }
    }
}

impl<T> std::fmt::Debug for MutexSubscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexSubscriber").field("id", &self.id).field("closed", &self.life.reason()).finish()
    }
}
