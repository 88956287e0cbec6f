//! A cluster node: the local hub, fed by the broker's ordered streams of the
//! topics that have local subscribers, behind the same [`Engine`] interface
//! as the hub alone.
//!
//! # Publishing
//!
//! A publish encodes its push once with the placeholder numbering
//! (`wire.rs`) and hands it to the broker, which numbers it; the answer is
//! the publish's `seq`. Nothing is delivered locally at that point: the
//! message comes back like every other node's, through the broker's routing,
//! so that every node applies one stream in one order. If the broker does
//! not confirm within the timeout, the client gets `PublishError::Unavailable`.
//! `$` topics (`$sys.stats`) are the node's own and stay in the local hub.
//!
//! # Interest
//!
//! A topic gets an [`Interest`] at its first local join: the node subscribes
//! at the broker, reads the stream's position, and moves the local topic
//! there (`Topic::advance`) before the join, so the join's answer carries
//! the cluster's `(epoch, seq)` and every message after it reaches the
//! client. The interest keeps a handle on the local topic (so its numbering
//! and history live while it lasts). A sweep drops an interest whose topic
//! has had no local member for the grace period, and unsubscribes.
//!
//! # Applying the broker's stream
//!
//! One task applies routed messages in order, each at its position
//! (`Topic::publish_at`). Each interest's lock serialises what changes its
//! local topic (that task's applies, the set-up, a join's read-back), which
//! makes the task the topic's single publisher. When a message's `seq` is
//! not the next one:
//!
//! - at or before the last applied (same epoch): a duplicate, ignored;
//! - after it: the messages between are read from the broker's stream and
//!   applied first; what the broker no longer holds is reported to the local
//!   subscribers as a lag at its place (`Topic::advance`), never skipped
//!   silently;
//! - another epoch: the broker lost the stream and started a new one; the
//!   new epoch's earlier messages are read back as above, and the local
//!   topic takes the new epoch (its history of the old one is dropped).
//!
//! After the routing connection comes back, every interest is checked
//! against the broker's position the same way.
//!
//! # Recovery on any node
//!
//! A join from a position that the local history does not reach back to
//! reads the missing messages from the broker's stream and puts them in
//! front of the local history (`Topic::backfill`) before the local join from
//! that position, which then replays with the usual exact hand-off. History
//! reads do the same; for a topic with no local interest they read the
//! broker alone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use fanout_core::{
    Engine, HistoryPage, Hub, JoinFrom, Joined, Message, Meta, Position, Priority, PublishError, PublishItem,
    PublishReport, SendError, Stats, SubscribeError, Subscriber, SubscriberId, Topic,
};
use fanout_ws::Frame;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::broker::{Broker, Event, Stored};
use crate::metrics::ClusterMetrics;
use crate::settings::BrokerSettings;
use crate::wire;

/// A cluster node as an [`Engine`] (see the module docs). Clones share it.
#[derive(Clone)]
pub struct Cluster {
    node: Arc<Node>,
}

struct Node {
    hub: Hub<Frame>,
    broker: Arc<dyn Broker>,
    settings: BrokerSettings,
    interests: DashMap<Arc<str>, Arc<Interest>>,
    metrics: ClusterMetrics,
    /// Routed messages received and not yet applied.
    lag: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shut: AtomicBool,
}

/// A topic with local subscribers, subscribed at the broker.
struct Interest {
    topic: Topic<Frame>,
    state: Arc<tokio::sync::Mutex<Applied>>,
    /// Since when the topic has had no local member (for the sweep).
    idle_since: Mutex<Option<Instant>>,
}

/// What the local topic holds of the broker's stream.
struct Applied {
    /// Subscribed at the broker and moved to its position.
    ready: bool,
    /// Dropped by the sweep: a join that finds it takes a new interest.
    gone: bool,
    /// The last position applied.
    last: Position,
}

impl Cluster {
    /// A node over `broker`, fanning out through `hub`; `events` is the
    /// broker's routing (see [`Broker`]). Spawns the applying task and the
    /// interest sweep on the current tokio runtime.
    pub fn new(
        hub: Hub<Frame>,
        broker: Arc<dyn Broker>,
        settings: BrokerSettings,
        events: UnboundedReceiver<Event>,
    ) -> Cluster {
        let node = Arc::new(Node {
            hub,
            broker,
            settings,
            interests: DashMap::new(),
            metrics: ClusterMetrics::default(),
            lag: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
            shut: AtomicBool::new(false),
        });
        node.metrics.connected.store(1, Relaxed);
        let apply = tokio::spawn(apply_events(Arc::downgrade(&node), events));
        let sweep = tokio::spawn(sweep(Arc::downgrade(&node)));
        node.tasks.lock().expect("not poisoned").extend([apply, sweep]);
        Cluster { node }
    }

    /// Connects to the broker that `settings.url` names and makes a node.
    pub async fn connect(hub: Hub<Frame>, settings: BrokerSettings) -> Result<Cluster, crate::BrokerError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let broker: Arc<dyn Broker> = match settings.kind().map_err(crate::BrokerError)? {
            crate::BrokerKind::Redis => Arc::new(crate::redis::RedisBroker::connect(&settings, tx).await?),
            crate::BrokerKind::Nats => Arc::new(crate::nats::NatsBroker::connect(&settings, tx).await?),
        };
        Ok(Cluster::new(hub, broker, settings, rx))
    }

    /// The local hub.
    pub fn hub(&self) -> &Hub<Frame> {
        &self.node.hub
    }

    /// The node's broker metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let n = &self.node;
        n.metrics.render(n.broker.name(), n.lag.load(Relaxed), n.interests.len())
    }

    /// The topic's position as this node applied it (`None`: no interest).
    pub fn applied(&self, topic: &str) -> Option<Position> {
        let int = self.node.interests.get(topic)?.clone();
        let st = int.state.try_lock().ok()?;
        st.ready.then_some(st.last)
    }
}

impl Cluster {
    /// Takes an interest in `topic` in the background (the sync joins).
    fn interest_later(&self, topic: &str) {
        if local_only(topic) {
            return;
        }
        let node = self.node.clone();
        let t = topic.to_string();
        tokio::spawn(async move {
            let _ = node.interest(&t).await;
        });
    }
}

/// `$` topics are the node's own.
fn local_only(topic: &str) -> bool {
    topic.starts_with('$')
}

impl Node {
    /// The interest in `topic`, set up (subscribed, moved to the broker's
    /// position), its state locked; `Err` if the broker is unreachable.
    async fn interest(
        &self,
        topic: &str,
    ) -> Result<(Arc<Interest>, tokio::sync::OwnedMutexGuard<Applied>), SubscribeError> {
        loop {
            let int = self
                .interests
                .entry(Arc::from(topic))
                .or_insert_with(|| {
                    Arc::new(Interest {
                        topic: self.hub.topic(topic),
                        state: Arc::new(tokio::sync::Mutex::new(Applied {
                            ready: false,
                            gone: false,
                            last: Position::default(),
                        })),
                        idle_since: Mutex::new(None),
                    })
                })
                .clone();
            let mut st = lock(&int).await;
            if st.gone {
                continue;
            }
            if !st.ready {
                if let Err(e) = self.set_up(&int, &mut st).await {
                    tracing::warn!(topic, error = %e, "cluster: cannot take an interest");
                    self.metrics.join_errors.fetch_add(1, Relaxed);
                    return Err(SubscribeError::Unavailable);
                }
            }
            *int.idle_since.lock().expect("not poisoned") = None;
            return Ok((int, st));
        }
    }

    /// Subscribes at the broker, then moves the local topic to the stream's
    /// position (no member yet: nothing to report).
    async fn set_up(&self, int: &Interest, st: &mut Applied) -> Result<(), crate::BrokerError> {
        let name = int.topic.name();
        self.timed(self.broker.subscribe(name)).await?;
        let pos = self.timed(self.broker.position(name)).await?;
        let before = int.topic.position();
        if pos.epoch != before.epoch || pos.seq > before.seq {
            int.topic.advance(pos);
        }
        st.last = int.topic.position();
        st.ready = true;
        Ok(())
    }

    /// A broker call bounded by the timeout.
    async fn timed<R>(
        &self,
        f: impl std::future::Future<Output = Result<R, crate::BrokerError>>,
    ) -> Result<R, crate::BrokerError> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(crate::BrokerError(format!("no answer within {:?}", self.settings.timeout))),
        }
    }

    /// Applies one routed message (see "Applying the broker's stream").
    async fn apply(&self, d: crate::Delivery) {
        self.metrics.received.fetch_add(1, Relaxed);
        let Some(int) = self.interests.get(&d.topic).map(|i| i.clone()) else { return };
        let mut st = lock(&int).await;
        if !st.ready || st.gone {
            return;
        }
        let at = Position { epoch: d.epoch, seq: d.seq };
        // `seq` 0 numbers no message (a broker's epoch marker).
        if at.seq == 0 || (at.epoch == st.last.epoch && at.seq <= st.last.seq) {
            self.metrics.stale.fetch_add(1, Relaxed);
            return;
        }
        self.catch_up(&int, &mut st, Position { epoch: at.epoch, seq: at.seq - 1 }).await;
        self.place(&int, &mut st, at, &d.body);
    }

    /// Brings the local topic to `to` (the position just before a message,
    /// or the broker's position after a reconnect): reads what it missed
    /// from the broker and applies it; what the broker no longer holds is
    /// reported as lost (or, in a new epoch, the topic takes it).
    async fn catch_up(&self, int: &Interest, st: &mut Applied, to: Position) {
        let same = to.epoch == st.last.epoch;
        let from = if same { st.last.seq } else { 0 };
        if to.seq > from {
            let name = int.topic.name();
            match self.timed(self.broker.read(name, to.epoch, from, (to.seq - from) as usize)).await {
                Ok(stored) => {
                    for s in stored.into_iter().take_while(|s| s.seq <= to.seq) {
                        self.metrics.repaired.fetch_add(1, Relaxed);
                        self.place(int, st, Position { epoch: to.epoch, seq: s.seq }, &s.body);
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "cluster: cannot read back missed messages")
                }
            }
        }
        if st.last != to && (to.epoch != st.last.epoch || to.seq > st.last.seq) {
            let a = int.topic.advance(to);
            if a.new_epoch {
                self.metrics.new_epochs.fetch_add(1, Relaxed);
            }
            self.metrics.lost.fetch_add(a.lost, Relaxed);
            st.last = to;
        }
    }

    /// Publishes `body` into the local topic at `at`.
    fn place(&self, int: &Interest, st: &mut Applied, at: Position, body: &bytes::Bytes) {
        let meta = Meta { epoch: at.epoch, seq: at.seq };
        let Some(d) = wire::decode(body, int.topic.name(), meta) else {
            tracing::warn!(
                topic = int.topic.name(),
                seq = at.seq,
                "cluster: a body this layer did not write"
            );
            return;
        };
        if at.epoch != st.last.epoch {
            self.metrics.new_epochs.fetch_add(u64::from(st.last.epoch != 0), Relaxed);
        }
        match int.topic.publish_at_keyed(meta, d.priority, d.key.as_deref(), |_| d.frame) {
            Ok(fanout_core::Placed::Published(_)) => {
                self.metrics.applied.fetch_add(1, Relaxed);
                st.last = at;
            }
            Ok(fanout_core::Placed::Stale) => {
                self.metrics.stale.fetch_add(1, Relaxed);
            }
            Err(_) => {}
        }
    }

    /// After the routing came back: every interest against the broker.
    async fn resync(&self) {
        let all: Vec<Arc<Interest>> = self.interests.iter().map(|e| e.value().clone()).collect();
        for int in all {
            let mut st = lock(&int).await;
            if !st.ready || st.gone {
                continue;
            }
            // The commands connection may still be failing (its first
            // command after a drop errs while it reconnects): try again,
            // backing off, until the broker answers or the node is gone. A
            // resync given up would leave the topic's clients short of what
            // was published meanwhile until its next message.
            let mut wait = Duration::from_millis(50);
            loop {
                match self.timed(self.broker.position(int.topic.name())).await {
                    Ok(pos) => {
                        self.catch_up(&int, &mut st, pos).await;
                        break;
                    }
                    Err(e) if !self.shut.load(Relaxed) => {
                        tracing::warn!(topic = int.topic.name(), error = %e, "cluster: resync failed; trying again");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(1));
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// Makes the local history reach back to `p` if the broker still holds
    /// what is missing (see "Recovery on any node"); best effort.
    async fn reach_back(&self, int: &Interest, st: &Applied, p: Position) {
        if p.epoch != st.last.epoch || p.seq >= st.last.seq {
            return;
        }
        let first = int.topic.history(1, Some(p.seq)).messages.first().map(Message::seq);
        let end = match first {
            Some(s) if s == p.seq + 1 => return,
            Some(s) => s - 1,
            None => st.last.seq,
        };
        let name = int.topic.name();
        let Ok(stored) = self.timed(self.broker.read(name, p.epoch, p.seq, (end - p.seq) as usize)).await
        else {
            return;
        };
        let older = frames(name, p.epoch, stored.into_iter().take_while(|s| s.seq <= end));
        int.topic.backfill_messages(older);
    }

    /// A history page read from the broker alone.
    async fn broker_history(
        &self,
        topic: &str,
        limit: usize,
        since: Option<u64>,
    ) -> Option<HistoryPage<Frame>> {
        let pos = self.timed(self.broker.position(topic)).await.ok()?;
        let after = since.unwrap_or(pos.seq.saturating_sub(limit as u64));
        let stored = self.timed(self.broker.read(topic, pos.epoch, after, limit)).await.ok()?;
        Some(HistoryPage { position: pos, messages: frames(topic, pos.epoch, stored) })
    }
}

/// Messages built from stored bodies (those this layer wrote).
fn frames(topic: &str, epoch: u64, stored: impl IntoIterator<Item = Stored>) -> Vec<Message<Frame>> {
    let name: Arc<str> = Arc::from(topic);
    stored
        .into_iter()
        .filter_map(|s| {
            let meta = Meta { epoch, seq: s.seq };
            let d = wire::decode(&s.body, topic, meta)?;
            Some(Message::keyed(Some(name.clone()), meta, d.priority, d.key, d.frame))
        })
        .collect()
}

/// Locks an interest's state (owned: the guard outlives the map entry).
async fn lock(int: &Arc<Interest>) -> tokio::sync::OwnedMutexGuard<Applied> {
    int.state.clone().lock_owned().await
}

/// The applying task (see the module docs). Ends with the node.
async fn apply_events(node: Weak<Node>, mut events: UnboundedReceiver<Event>) {
    while let Some(ev) = events.recv().await {
        let Some(n) = node.upgrade() else { return };
        n.lag.store(events.len(), Relaxed);
        match ev {
            Event::Message(d) => n.apply(d).await,
            Event::Disconnected => {
                n.metrics.connected.store(0, Relaxed);
                n.metrics.disconnects.fetch_add(1, Relaxed);
                tracing::warn!(broker = n.broker.name(), "cluster: routing connection lost; reconnecting");
            }
            Event::Reconnected => {
                n.metrics.connected.store(1, Relaxed);
                tracing::info!(broker = n.broker.name(), "cluster: routing connection back; catching up");
                n.resync().await;
            }
        }
    }
}

/// Drops interests whose topic has had no local member for the grace
/// period, and unsubscribes them at the broker.
async fn sweep(node: Weak<Node>) {
    let every = match node.upgrade() {
        Some(n) => (n.settings.grace / 2).max(Duration::from_millis(10)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(n) = node.upgrade() else { return };
        let now = Instant::now();
        let idle: Vec<Arc<Interest>> = n
            .interests
            .iter()
            .filter(|e| e.value().topic.subscriber_count() == 0)
            .map(|e| e.value().clone())
            .collect();
        for int in idle {
            let due = {
                let mut since = int.idle_since.lock().expect("not poisoned");
                let at = *since.get_or_insert(now);
                now.duration_since(at) >= n.settings.grace
            };
            if !due {
                continue;
            }
            let mut st = lock(&int).await;
            // A join holds the lock while it joins: a member now is seen.
            if int.topic.subscriber_count() > 0 || st.gone {
                continue;
            }
            st.gone = true;
            n.interests.remove(int.topic.name());
            if let Err(e) = n.timed(n.broker.unsubscribe(int.topic.name())).await {
                tracing::warn!(topic = int.topic.name(), error = %e, "cluster: unsubscribe failed");
            }
        }
    }
}

impl Engine<Frame> for Cluster {
    type Subscriber = Subscriber<Frame>;

    fn name(&self) -> &'static str {
        self.node.broker.name()
    }
    fn subscribe(&self) -> Result<Subscriber<Frame>, SubscribeError> {
        self.node.hub.subscribe()
    }
    /// Joins at once; the interest (if new) is taken in the background, so
    /// messages before it is set up may be missed: transports join with
    /// [`join_from_async`](Engine::join_from_async).
    fn join(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        let joined = self.node.hub.join(id, topic)?;
        self.interest_later(topic);
        Ok(joined)
    }
    fn leave(&self, id: SubscriberId, topic: &str) -> Result<bool, SubscribeError> {
        self.node.hub.leave(id, topic)
    }
    fn join_from(&self, id: SubscriberId, topic: &str, from: JoinFrom) -> Result<Joined, SubscribeError> {
        let j = self.node.hub.join_from(id, topic, from)?;
        self.interest_later(topic);
        Ok(j)
    }
    async fn join_from_async<'a>(
        &'a self,
        id: SubscriberId,
        topic: &'a str,
        from: JoinFrom,
    ) -> Result<Joined, SubscribeError> {
        {
            if local_only(topic) {
                return self.node.hub.join_from(id, topic, from);
            }
            let (int, st) = self.node.interest(topic).await?;
            if let JoinFrom::After(p) = from {
                self.node.reach_back(&int, &st, p).await;
            }
            // Under the interest's lock: the sweep sees this member.
            let j = self.node.hub.join_from(id, topic, from);
            drop(st);
            j
        }
    }
    fn topic_count(&self) -> usize {
        self.node.hub.topic_count()
    }
    fn topic_exists(&self, topic: &str) -> bool {
        Engine::topic_exists(&self.node.hub, topic)
    }
    fn history(&self, topic: &str, limit: usize, since: Option<u64>) -> Option<HistoryPage<Frame>> {
        self.node.hub.history(topic, limit, since)
    }
    async fn history_async<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        since: Option<u64>,
    ) -> Option<HistoryPage<Frame>> {
        {
            if local_only(topic) {
                return self.node.hub.history(topic, limit, since);
            }
            let int = self.node.interests.get(topic).map(|i| i.clone());
            if let Some(int) = int {
                let st = lock(&int).await;
                if st.ready && !st.gone {
                    let from = since.unwrap_or(st.last.seq.saturating_sub(limit as u64));
                    self.node.reach_back(&int, &st, Position { epoch: st.last.epoch, seq: from }).await;
                    return Some(int.topic.history(limit, since));
                }
            }
            self.node.broker_history(topic, limit, since).await
        }
    }
    /// `$` topics: the local hub. Others: handed to the broker in the
    /// background (the report has no `seq`): transports publish with
    /// [`publish_async`](Engine::publish_async).
    fn publish_with<F: FnOnce(Meta) -> Frame>(
        &self,
        topic: &str,
        priority: Priority,
        make: F,
    ) -> Result<PublishReport, PublishError> {
        if local_only(topic) {
            return self.node.hub.publish_with(topic, priority, make);
        }
        if self.node.shut.load(Relaxed) {
            return Err(PublishError::Shutdown);
        }
        let body = wire::encode(&make(wire::PLACEHOLDER), priority, None);
        let node = self.node.clone();
        let t = topic.to_string();
        tokio::spawn(async move {
            let _ = node.publish(&t, body).await;
        });
        Ok(PublishReport { messages: 1, ..PublishReport::default() })
    }
    /// The priority and the conflation `key` travel with the body
    /// (`wire.rs`): every node delivers the message with both.
    async fn publish_async<'a, F>(
        &'a self,
        topic: &'a str,
        priority: Priority,
        key: Option<&'a str>,
        make: F,
    ) -> Result<PublishReport, PublishError>
    where
        F: FnOnce(Meta) -> Frame + Send + 'a,
    {
        {
            if local_only(topic) {
                return self.node.hub.publish_keyed_with(topic, priority, key, make);
            }
            if self.node.shut.load(Relaxed) {
                return Err(PublishError::Shutdown);
            }
            let body = wire::encode(&make(wire::PLACEHOLDER), priority, key);
            let pos = self.node.publish(topic, body).await?;
            Ok(PublishReport { messages: 1, seq: pos.seq, ..PublishReport::default() })
        }
    }
    /// Runs of consecutive broker topics go to the broker in one call
    /// ([`Broker::publish_many`]: one round trip on Redis); a `$` topic
    /// between them is published locally in its turn.
    async fn publish_batch_async<'a, F>(
        &'a self,
        items: Vec<PublishItem<'a, F>>,
    ) -> Vec<Result<PublishReport, PublishError>>
    where
        F: FnOnce(Meta) -> Frame + Send + 'a,
    {
        let mut out = Vec::with_capacity(items.len());
        let mut run: Vec<(&'a str, bytes::Bytes)> = Vec::new();
        for item in items {
            if !local_only(item.topic) {
                run.push((
                    item.topic,
                    wire::encode(&(item.make)(wire::PLACEHOLDER), item.priority, item.key),
                ));
                continue;
            }
            if !self.node.publish_run(&mut run, &mut out).await {
                return out;
            }
            let r = self.node.hub.publish_keyed_with(item.topic, item.priority, item.key, item.make);
            let failed = r.is_err();
            out.push(r);
            if failed {
                return out;
            }
        }
        self.node.publish_run(&mut run, &mut out).await;
        out
    }
    /// The local hub's subscribers only (a broadcast is not a topic: it has
    /// no cluster-wide numbering).
    fn broadcast(&self, payload: Frame) -> Result<PublishReport, PublishError> {
        self.node.hub.broadcast(payload)
    }
    fn send_to(&self, id: SubscriberId, payload: Frame) -> Result<(), SendError<Frame>> {
        self.node.hub.send_to(id, payload)
    }
    fn stats(&self) -> Stats {
        self.node.hub.stats()
    }
    fn shutdown(&self) {
        self.node.shut.store(true, Relaxed);
        for t in self.node.tasks.lock().expect("not poisoned").drain(..) {
            t.abort();
        }
        self.node.hub.shutdown();
    }
}

impl Node {
    /// Publishes `run` (emptied) through the broker in one call and appends
    /// an answer per message to `out` (one error if the call failed). False
    /// if it failed.
    async fn publish_run(
        &self,
        run: &mut Vec<(&str, bytes::Bytes)>,
        out: &mut Vec<Result<PublishReport, PublishError>>,
    ) -> bool {
        if run.is_empty() {
            return true;
        }
        let done =
            if self.shut.load(Relaxed) { Err(PublishError::Shutdown) } else { self.publish_many(run).await };
        run.clear();
        match done {
            Ok(positions) => {
                out.extend(
                    positions
                        .into_iter()
                        .map(|p| Ok(PublishReport { messages: 1, seq: p.seq, ..PublishReport::default() })),
                );
                true
            }
            Err(e) => {
                out.push(Err(e));
                false
            }
        }
    }

    /// Publishes `items` through the broker in one call (one round trip
    /// where the broker allows), timed and counted.
    async fn publish_many(&self, items: &[(&str, bytes::Bytes)]) -> Result<Vec<Position>, PublishError> {
        let t0 = Instant::now();
        match self.timed(self.broker.publish_many(items)).await {
            Ok(positions) => {
                self.metrics.round_trip(t0.elapsed());
                self.metrics.published.fetch_add(items.len() as u64, Relaxed);
                Ok(positions)
            }
            Err(e) => {
                let topic = items.first().map_or("", |i| i.0);
                tracing::warn!(topic, messages = items.len(), error = %e, "cluster: publish not confirmed");
                self.metrics.publish_errors.fetch_add(items.len() as u64, Relaxed);
                Err(PublishError::Unavailable)
            }
        }
    }

    /// One publish through the broker: a run of one.
    async fn publish(&self, topic: &str, body: bytes::Bytes) -> Result<Position, PublishError> {
        self.publish_many(&[(topic, body)]).await?.pop().ok_or(PublishError::Unavailable)
    }
}
