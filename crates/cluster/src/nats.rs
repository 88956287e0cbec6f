//! The NATS JetStream broker: one stream numbers and keeps every topic's
//! messages, and republishes each stored message for the nodes to route.
//!
//! # Subjects, under prefix `p`
//!
//! | subject | what |
//! | --- | --- |
//! | `p.in.<topic>` | publishes; the stream (`settings.stream`) captures `p.in.>` |
//! | `p.out.<topic>` | the stream's RePublish of each *stored* message; nodes subscribe here |
//!
//! The stream keeps `retention` messages per subject (`max_msgs_per_subject`)
//! for `ttl` (`max_age`), with direct gets allowed (NATS 2.9 has both).
//!
//! # One `seq` per topic
//!
//! A JetStream sequence counts the whole stream, so the topic's own number
//! travels in headers: `Fanout-Seq` and `Fanout-Epoch`. A publish reads (or
//! remembers) the subject's last stored message — its stream sequence `s`
//! and its `(epoch, seq)` — and publishes `seq + 1` with
//! `Nats-Expected-Last-Subject-Sequence: s`. JetStream stores it only if no
//! other message of that subject was stored since, so two nodes can never
//! store the same `seq` twice or skip one; the loser of a race gets "wrong
//! last sequence", reads the subject's last message again and retries. A
//! subject with no stored message starts a new epoch at `seq` 1 (the first
//! publisher's proposal wins the same race); a node that asks for the
//! position of such a subject stores the new epoch's marker (`seq` 0) the
//! same way, so that the epoch it reports is the one later publishes use.
//!
//! Why not subscribe to `p.in.<topic>` directly: core NATS delivers a
//! publish to subscribers before (and whether or not) JetStream stores it, so
//! the nodes would see the losers of the race too. RePublish sends only what
//! the stream stored, in stream order.
//!
//! # Routing and its losses
//!
//! A core subscription per topic of local interest. async-nats reconnects
//! and renews subscriptions itself; its connection events become
//! [`Event::Disconnected`] and [`Event::Reconnected`], so the node reads back
//! (direct gets, `next_by_subj`) what was published meanwhile. A slow
//! subscription that overflows drops messages: the node sees the jump in
//! `seq` and reads them back the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, context::PublishErrorKind, stream::Stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use fanout_core::Position;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::broker::{fresh_epoch, Broker, BrokerError, Delivery, Event, Stored};
use crate::settings::BrokerSettings;

const SEQ: &str = "Fanout-Seq";
const EPOCH: &str = "Fanout-Epoch";

/// A subject's last stored message as a node knows it: (stream sequence,
/// position); `None` until read.
type Last = Option<(u64, Position)>;

/// A node's link to NATS (see the module docs).
pub struct NatsBroker {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: Stream,
    prefix: String,
    /// Per topic, the last stored message this node knows of (its stream
    /// sequence and position: a publish's guess, corrected on conflict),
    /// behind a lock that this node's publishes to the topic take in turn,
    /// so that they never race each other (only other nodes' publishes).
    last: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Last>>>>,
    /// Per topic of interest, the task that forwards its messages.
    routes: Mutex<HashMap<String, JoinHandle<()>>>,
    events: UnboundedSender<Event>,
}

fn err(e: impl std::fmt::Display) -> BrokerError {
    BrokerError(e.to_string())
}

/// `(epoch, seq)` from a stored or routed message's headers.
fn position_in(h: Option<&HeaderMap>) -> Option<Position> {
    let h = h?;
    let get = |k: &str| h.get(k).and_then(|v| v.as_str().parse::<u64>().ok());
    Some(Position { epoch: get(EPOCH)?, seq: get(SEQ)? })
}

impl NatsBroker {
    /// Connects to `settings.url` and makes (or reuses) the stream; routed
    /// messages and connection events go to `events`.
    pub async fn connect(
        settings: &BrokerSettings,
        events: UnboundedSender<Event>,
    ) -> Result<Self, BrokerError> {
        let ev = events.clone();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            .retry_on_initial_connect()
            .event_callback(move |e| {
                let ev = ev.clone();
                async move {
                    let _ = match e {
                        async_nats::Event::Disconnected => ev.send(Event::Disconnected),
                        async_nats::Event::Connected => ev.send(Event::Reconnected),
                        _ => Ok(()),
                    };
                }
            });
        let addr = settings.url.clone();
        let client = tokio::time::timeout(settings.timeout, options.connect(addr))
            .await
            .map_err(|_| BrokerError(format!("{}: no answer within {:?}", settings.url, settings.timeout)))?
            .map_err(err)?;
        let js = jetstream::new(client.clone());
        let prefix = settings.prefix.clone();
        let config = jetstream::stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{prefix}.in.>")],
            max_messages_per_subject: settings.retention as i64,
            max_age: settings.ttl,
            allow_direct: true,
            republish: Some(jetstream::stream::Republish {
                source: format!("{prefix}.in.>"),
                destination: format!("{prefix}.out.>"),
                headers_only: false,
            }),
            ..Default::default()
        };
        let stream = js.get_or_create_stream(config).await.map_err(err)?;
        Ok(NatsBroker {
            client,
            js,
            stream,
            prefix,
            last: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            events,
        })
    }

    fn subject_in(&self, topic: &str) -> String {
        format!("{}.in.{topic}", self.prefix)
    }

    /// The subject's last stored message: (stream sequence, position).
    async fn fetch_last(&self, topic: &str) -> Result<Option<(u64, Position)>, BrokerError> {
        match self.stream.get_last_raw_message_by_subject(&self.subject_in(topic)).await {
            Ok(m) => {
                let pos = position_in(Some(&m.headers))
                    .ok_or_else(|| BrokerError(format!("a message of {topic} without {SEQ}/{EPOCH}")))?;
                Ok(Some((m.sequence, pos)))
            }
            Err(e) if matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => {
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The first stored message of the subject at or after stream sequence `at`.
    async fn next_at(&self, topic: &str, at: u64) -> Result<Option<(u64, Position, Bytes)>, BrokerError> {
        match self.stream.direct_get_next_for_subject(self.subject_in(topic), Some(at)).await {
            Ok(m) => {
                let pos = position_in(Some(&m.headers))
                    .ok_or_else(|| BrokerError("a message without a seq".into()))?;
                Ok(Some((m.sequence, pos, m.payload)))
            }
            Err(e) if matches!(e.kind(), jetstream::stream::DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }
}

impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn publish<'a>(&'a self, topic: &'a str, body: Bytes) -> BoxFuture<'a, Result<Position, BrokerError>> {
        async move {
            let subject = self.subject_in(topic);
            let slot = self.last.lock().expect("not poisoned").entry(topic.to_string()).or_default().clone();
            let mut known = slot.lock().await;
            loop {
                let last = match *known {
                    Some(l) => Some(l),
                    None => self.fetch_last(topic).await?,
                };
                let (expect, pos) = match last {
                    Some((s, p)) => (s, Position { epoch: p.epoch, seq: p.seq + 1 }),
                    None => (0, Position { epoch: fresh_epoch(), seq: 1 }),
                    // After the epoch's marker (see `position`).
                };
                let msg = jetstream::message::PublishMessage::build()
                    .payload(body.clone())
                    .header(SEQ, pos.seq.to_string().as_str())
                    .header(EPOCH, pos.epoch.to_string().as_str())
                    .expected_last_subject_sequence(expect);
                let ack = self.js.send_publish(subject.clone(), msg).await.map_err(err)?.await;
                match ack {
                    Ok(a) => {
                        *known = Some((a.sequence, pos));
                        return Ok(pos);
                    }
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        // Another node stored one first: read the subject again.
                        *known = None;
                    }
                    Err(e) => {
                        *known = None;
                        return Err(err(e));
                    }
                }
            }
        }
        .boxed()
    }

    /// A subject with no stored message gets its epoch now: a marker
    /// (`seq` 0, stored with expected last subject sequence 0, so one
    /// proposal wins), which later publishes continue from and nodes skip.
    fn position<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Position, BrokerError>> {
        async move {
            loop {
                if let Some((_, p)) = self.fetch_last(topic).await? {
                    return Ok(p);
                }
                let marker = jetstream::message::PublishMessage::build()
                    .header(SEQ, "0")
                    .header(EPOCH, fresh_epoch().to_string().as_str())
                    .expected_last_subject_sequence(0);
                let ack = self.js.send_publish(self.subject_in(topic), marker).await.map_err(err)?.await;
                match ack {
                    Ok(_) => {}
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                    Err(e) => return Err(err(e)),
                }
            }
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        epoch: u64,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Stored>, BrokerError>> {
        async move {
            let Some((last_s, last)) = self.fetch_last(topic).await? else { return Ok(Vec::new()) };
            if last.epoch != epoch || after >= last.seq || limit == 0 {
                return Ok(Vec::new());
            }
            let want = after + 1;
            // The first stored message whose seq is at least `want`: the
            // topic's seqs grow with the stream's, so search by stream
            // sequence (log2 of the stream's length in direct gets).
            let (mut lo, mut hi) = (1u64, last_s);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.next_at(topic, mid).await? {
                    Some((_, p, _)) if p.epoch != epoch || p.seq >= want => hi = mid,
                    Some(_) => lo = mid + 1,
                    None => hi = mid,
                }
            }
            let mut out = Vec::new();
            let mut at = lo;
            while out.len() < limit {
                let Some((s, p, body)) = self.next_at(topic, at).await? else { break };
                if p.epoch != epoch || p.seq != want + out.len() as u64 {
                    break;
                }
                out.push(Stored { seq: p.seq, body });
                at = s + 1;
            }
            Ok(out)
        }
        .boxed()
    }

    fn subscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            if self.routes.lock().expect("not poisoned").contains_key(topic) {
                return Ok(());
            }
            let mut sub = self.client.subscribe(format!("{}.out.{topic}", self.prefix)).await.map_err(err)?;
            // The server has the subscription once the flush returns.
            self.client.flush().await.map_err(err)?;
            let events = self.events.clone();
            let name: Arc<str> = Arc::from(topic);
            let task = tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    // Not ours, or an epoch's marker (seq 0): nothing to apply.
                    let Some(pos) = position_in(m.headers.as_ref()).filter(|p| p.seq > 0) else { continue };
                    let d = Delivery { topic: name.clone(), epoch: pos.epoch, seq: pos.seq, body: m.payload };
                    if events.send(Event::Message(d)).is_err() {
                        return;
                    }
                }
            });
            if let Some(old) = self.routes.lock().expect("not poisoned").insert(topic.to_string(), task) {
                old.abort();
            }
            Ok(())
        }
        .boxed()
    }

    fn unsubscribe<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            // Dropping the subscriber (with its task) unsubscribes.
            if let Some(task) = self.routes.lock().expect("not poisoned").remove(topic) {
                task.abort();
            }
            Ok(())
        }
        .boxed()
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        for (_, t) in self.routes.lock().expect("not poisoned").drain() {
            t.abort();
        }
    }
}
