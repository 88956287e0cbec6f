//! One WebSocket client: connect from its own source address, subscribe, read.
//!
//! # What a client checks
//!
//! Every push is parsed just far enough to read `topic`, `seq`, `epoch` and the
//! time `t` that the publisher put at the front of the payload
//! (`{"t":<µs since the Unix epoch>,"p":"xxx…"}`): the time the message was
//! *due* by the publishing schedule, not the time it was sent, so that a
//! publisher held up by a slow server does not hide the wait (no coordinated
//! omission). The latency is the wall clock at receipt minus `t` (publisher and
//! clients share the machine, so they share the clock).
//!
//! Per topic the client runs an order checker ([`fanout_bench::order`]; its
//! module docs define every count), which takes the first push as the start:
//!
//! - `seq == highest + 1`: in order;
//! - `seq > highest + 1`: a **gap**, `seq - highest - 1` messages skipped
//!   (*unexplained* if no lag notice came just before it);
//! - below the highest seq, filling a gap: **out of order**; a seq seen before:
//!   **duplicate** (the protocol rules both out);
//! - another epoch: the topic was dropped and made again; the check restarts.
//!
//! When the client ends, gaps never filled are counted **missing** (`seq_missing`).
//! A client that saw at least one push out of order or duplicated is counted
//! once in `clients_disordered`. Lag notices (`{"lagged":n,"topic":…}`) are
//! counted apart from gaps; the notice goes to its topic's checker, or to every
//! topic's when it names none (the engine counts losses per connection).
//!
//! # Where the figures go
//!
//! Clients do not own a histogram each (15,000 × ~40 KB would dwarf the thing we
//! measure): they record into one of [`SHARDS`] [`Tally`] shards behind a mutex,
//! picked by client id, so that the two runtime threads rarely meet on a lock.
//! The worker swaps the shards out once a second ([`Tallies::take`]).
//!
//! # Reconnecting clients
//!
//! With `--reconnect-fraction`, that share of the reading clients drops its
//! connection every `--reconnect-every` and connects again, resubscribing
//! each topic with `since` = the last `(epoch, seq)` it received. Its order
//! checkers carry on across the reconnection, so what the server replays
//! fills the stream: a message the recovery missed is a gap (and, unless
//! filled later, `seq_missing`), one it sent twice a `duplicate`. The client
//! counts the answers (`recovered`, `not_recovered`) and the messages the
//! server said it replayed (`replayed`).
//!
//! # Failing over to another node
//!
//! With several nodes (`--nodes`, `--urls`), client `id` connects to node
//! `id mod N`. When its node ends the connection (a node killed with
//! `--kill-node-after`, or any other drop) while the run goes on, it connects
//! to the next node (and the next, if that one refuses) and resubscribes each
//! topic with `since` = the last `(epoch, seq)` it received there, or, for a
//! topic it received nothing on yet, the position its `subscribe` answer gave
//! (so a message published while it was away is replayed even then). The
//! order checkers carry on as for a planned reconnection; `failovers` counts
//! these reconnections, and their answers add to `recovered`, `not_recovered`
//! and `replayed`.
//!
//! Pushes that arrive between the answers of a (re)subscription (a replay of
//! the first topic while the second is being subscribed) are kept and counted
//! like any other push.
//!
//! # Stalled clients
//!
//! A stalled client subscribes and then never reads again, the way a frozen
//! browser tab does: its socket buffers fill, the server's queue for it fills,
//! and the server evicts it. Its deliveries are not counted. Its receive
//! buffer is set to 4 KiB (`SO_RCVBUF`) before it connects: with loopback's
//! default of several megabytes the server's queue would only fill after
//! minutes at a modest rate. That is not enough either: the server's send
//! buffer autotunes up to `tcp_wmem` max (4 MiB here) and absorbs what the
//! client does not read. With `--stall-flood`, stalled clients also subscribe
//! to a `flood` topic that a second publisher fills with large messages, so
//! their buffers and queues fill within seconds and the eviction path runs,
//! while the healthy clients see only the normal load.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use fanout_bench::order::{OrderChecker, OrderCounts};

use super::limits::source_addr;
use super::proto::{new_histogram, Interval};

/// Tally shards per worker.
pub const SHARDS: usize = 16;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What the clients of one shard saw since the last [`Tallies::take`].
pub struct Tally {
    interval: Interval,
    hist: Histogram<u64>,
}

/// The shards, and the worker-wide levels.
pub struct Tallies {
    shards: Vec<Mutex<Tally>>,
    /// Clients connected and subscribed, still open.
    pub open: AtomicU64,
    /// Clients whose connection the server ended.
    pub closed_by_server: AtomicU64,
    /// The first few errors, for the report.
    pub first_errors: Mutex<Vec<String>>,
}

impl Tallies {
    /// Empty tallies.
    pub fn new() -> Self {
        Tallies {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Tally { interval: Interval::default(), hist: new_histogram() }))
                .collect(),
            open: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `e` if fewer than ten errors were kept.
    pub fn note_error(&self, e: String) {
        let mut v = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < 10 {
            v.push(e);
        }
    }

    /// The figures since the last call, merged over shards; resets them.
    pub fn take(&self) -> Interval {
        let mut out = Interval::default();
        let mut hist = new_histogram();
        for s in &self.shards {
            let mut t = s.lock().unwrap_or_else(|p| p.into_inner());
            out.add(&t.interval);
            let _ = hist.add(&t.hist);
            t.interval = Interval::default();
            t.hist.reset();
        }
        out.connections = self.open.load(Relaxed);
        out.closed_by_server = self.closed_by_server.load(Relaxed);
        out.latency_us = super::proto::buckets(&hist);
        out
    }

    fn with<R>(&self, id: usize, f: impl FnOnce(&mut Tally) -> R) -> R {
        let mut t = self.shards[id % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t)
    }
}

impl Default for Tallies {
    fn default() -> Self {
        Self::new()
    }
}

/// Where and how a client connects.
#[derive(Clone, Debug)]
pub struct Target {
    /// `ws://host:port/path`.
    pub url: String,
    /// The server's address, resolved once.
    pub addr: SocketAddr,
    /// Bind 127.0.0.x source addresses (only when the server is on loopback).
    pub spread_sources: bool,
}

/// A push, or any other server frame: only the fields we need.
#[derive(Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    seq: Option<u64>,
    epoch: Option<u64>,
    payload: Option<Stamp>,
    lagged: Option<u64>,
    id: Option<u64>,
    error: Option<serde::de::IgnoredAny>,
    result: Option<SubscribeAnswer>,
}

/// The fields of a `subscribe` result a resubscription reads.
#[derive(Deserialize)]
struct SubscribeAnswer {
    recovered: Option<bool>,
    seq: Option<u64>,
    epoch: Option<u64>,
}

/// What the `subscribe` answers of one (re)connection said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resubscribed {
    /// Answered `recovered: true`.
    pub recovered: u64,
    /// Answered `recovered: false`.
    pub not_recovered: u64,
    /// Messages replayed, by the answers (`seq` − `since`).
    pub replayed: u64,
}

#[derive(Deserialize)]
struct Stamp {
    t: Option<u64>,
}

/// The order of each subscribed topic, as this client sees it.
struct SeqState {
    topics: Vec<u32>,
    /// Per topic: its epoch (once a push came) and its checker.
    streams: Vec<(Option<u64>, OrderChecker)>,
    /// Per topic: the position the last `subscribe` answer gave (`epoch`, `seq`).
    joined: Vec<Option<(u64, u64)>>,
    /// Counts of streams ended by an epoch change.
    ended: OrderCounts,
    /// Whether this client was already counted in `clients_disordered`.
    disordered: bool,
}

impl SeqState {
    fn new(topics: Vec<u32>) -> SeqState {
        let streams = topics.iter().map(|_| (None, OrderChecker::new())).collect();
        let joined = vec![None; topics.len()];
        SeqState { topics, streams, joined, ended: OrderCounts::default(), disordered: false }
    }

    /// Where each topic resumes: the last push received, else the join position.
    fn since(&self) -> Vec<Option<(u64, u64)>> {
        self.streams
            .iter()
            .zip(&self.joined)
            .map(|((epoch, c), joined)| epoch.zip(c.highest()).or(*joined))
            .collect()
    }

    /// Ends every stream: the counts, missing included.
    fn finish(&mut self) -> OrderCounts {
        let mut total = self.ended;
        for (_, c) in &mut self.streams {
            total.add(&c.finish());
        }
        total
    }
}

/// The topic only stalled clients subscribe to with `--stall-flood`.
pub const FLOOD_TOPIC: &str = "flood";

/// Topic `n`'s name.
pub fn topic_name(n: u32) -> String {
    format!("t{n}")
}

fn topic_index(name: &str) -> Option<u32> {
    name.strip_prefix('t')?.parse().ok()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A connection whose subscriptions were all answered.
pub struct Joined {
    pub ws: Ws,
    /// What the answers to `since` said.
    pub answers: Resubscribed,
    /// Per topic, the position its answer gave (`epoch`, `seq`).
    pub positions: Vec<Option<(u64, u64)>>,
    /// Pushes that came before the last answer, in arrival order.
    pub early: Vec<String>,
}

/// Connects and subscribes (with `since[i]` = `(epoch, seq)` for `topics[i]`
/// when given: a resubscription); `Err` says why it could not.
pub async fn connect(
    id: usize,
    target: &Target,
    topics: &[u32],
    since: &[Option<(u64, u64)>],
    stalled: bool,
    flood: bool,
) -> Result<Joined, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if stalled {
        // A small receive window, so that the server's queue (not megabytes of
        // loopback socket buffer) fills within seconds, as behind a slow link.
        let _ = socket.set_recv_buffer_size(4096);
    }
    if target.spread_sources {
        let src = SocketAddr::from((source_addr(id), 0));
        socket.bind(src).map_err(|e| format!("bind {src}: {e}"))?;
    }
    let stream = socket.connect(target.addr).await.map_err(|e| format!("connect {}: {e}", target.addr))?;
    let _ = stream.set_nodelay(true);
    // Small buffers: tungstenite's 128 KiB read buffer would cost 2 GB at 15k clients.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut names: Vec<String> = topics.iter().map(|&t| topic_name(t)).collect();
    if stalled && flood {
        names.push(FLOOD_TOPIC.to_string());
    }
    for (i, name) in names.iter().enumerate() {
        let since = match since.get(i).copied().flatten() {
            Some((epoch, seq)) => format!(r#","since":{{"seq":{seq},"epoch":{epoch}}}"#),
            None => String::new(),
        };
        let req = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"subscribe","params":{{"topic":"{name}"{since}}}}}"#
        );
        ws.feed(Message::text(req)).await.map_err(|e| format!("subscribe: {e}"))?;
    }
    let mut answers = Resubscribed::default();
    let mut positions = vec![None; topics.len()];
    let mut early = Vec::new();
    ws.flush().await.map_err(|e| format!("subscribe: {e}"))?;
    let mut answered = 0;
    while answered < names.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "subscribe: no answer in 30 s".to_string())?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let p: Push =
                    serde_json::from_str(t.as_str()).map_err(|e| format!("subscribe answer: {e}"))?;
                if p.error.is_some() {
                    return Err(format!("subscribe refused: {}", t.as_str()));
                }
                let Some(i) = p.id else {
                    early.push(t.as_str().to_string());
                    continue;
                };
                answered += 1;
                let since = since.get(i as usize).copied().flatten();
                if let (Some(slot), Some(r)) = (positions.get_mut(i as usize), &p.result) {
                    *slot = r.epoch.zip(r.seq);
                }
                match (since, p.result.and_then(|r| r.recovered.zip(r.seq))) {
                    (Some((_, from)), Some((true, to))) => {
                        answers.recovered += 1;
                        answers.replayed += to.saturating_sub(from);
                    }
                    (Some(_), _) => answers.not_recovered += 1,
                    (None, _) => {}
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("subscribe: {e}")),
            None => return Err("subscribe: connection closed".into()),
        }
    }
    Ok(Joined { ws, answers, positions, early })
}

/// Where a reading client may go: every node, the one it is on, and how
/// often it drops its connection on purpose.
#[derive(Clone, Debug)]
pub struct Moves {
    /// Every node of the run (one: no failover).
    pub nodes: std::sync::Arc<Vec<Target>>,
    /// The node the client is on, an index into `nodes`.
    pub node: usize,
    /// `--reconnect-fraction` clients: drop and resubscribe this often.
    pub reconnect_every: Option<Duration>,
}

/// Reads pushes until `stop` turns true or the server ends the connection
/// (with several nodes: until no node takes the client back). With
/// `moves.reconnect_every`, drops the connection every so often and
/// resubscribes from where it was (see "Reconnecting clients").
pub async fn read_loop(
    id: usize,
    joined: Joined,
    topics: Vec<u32>,
    tallies: &Tallies,
    mut stop: watch::Receiver<bool>,
    mut moves: Moves,
) {
    let mut seqs = SeqState::new(topics);
    seqs.joined = joined.positions;
    for t in &joined.early {
        on_text(id, t, &mut seqs, tallies);
    }
    let mut ws = joined.ws;
    // One wait for the whole run: a `wait_for` made per message joined and
    // left the watch's waiter list each time (~4 % of the load generator's CPU).
    let stopped_rx = stop.clone();
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    let every = moves.reconnect_every.unwrap_or(Duration::from_secs(3600 * 24 * 365));
    let mut reconnect_at = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let msg = tokio::select! {
            biased;
            () = &mut stopped => break,
            _ = reconnect_at.tick(), if moves.reconnect_every.is_some() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                match resubscribe(id, &moves.nodes[moves.node], &mut seqs, tallies).await {
                    Ok(fresh) => {
                        ws = fresh;
                        tallies.with(id, |t| t.interval.reconnects += 1);
                        continue;
                    }
                    Err(e) => {
                        tallies.with(id, |t| t.interval.errors += 1);
                        tallies.note_error(format!("client {id}: reconnect: {e}"));
                        end_order(id, &mut seqs, tallies);
                        tallies.open.fetch_sub(1, Relaxed);
                        return;
                    }
                }
            }
            m = ws.next() => m,
        };
        let ended = match msg {
            Some(Ok(Message::Text(t))) => {
                on_text(id, t.as_str(), &mut seqs, tallies);
                None
            }
            Some(Ok(Message::Binary(_))) => {
                tallies.with(id, |t| t.interval.errors += 1);
                None
            }
            Some(Ok(Message::Close(_))) | None => Some(None),
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(Some(e)),
        };
        let Some(err) = ended else { continue };
        tallies.closed_by_server.fetch_add(1, Relaxed);
        tallies.open.fetch_sub(1, Relaxed);
        if let Some(e) = &err {
            if moves.nodes.len() < 2 {
                tallies.with(id, |t| t.interval.errors += 1);
                tallies.note_error(format!("client {id}: read: {e}"));
            }
        }
        if moves.nodes.len() < 2 || *stopped_rx.borrow() {
            end_order(id, &mut seqs, tallies);
            return;
        }
        match failover(id, &mut moves, &mut seqs, tallies).await {
            Some(fresh) => {
                ws = fresh;
                tallies.open.fetch_add(1, Relaxed);
            }
            None => {
                end_order(id, &mut seqs, tallies);
                return;
            }
        }
    }
    end_order(id, &mut seqs, tallies);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    tallies.open.fetch_sub(1, Relaxed);
}

/// The node dropped the connection: tries every other node in turn, from the
/// next one on; `None` (an error noted) if none takes the client back.
async fn failover(id: usize, moves: &mut Moves, seqs: &mut SeqState, tallies: &Tallies) -> Option<Ws> {
    let n = moves.nodes.len();
    let mut last = String::new();
    for k in 1..n {
        let node = (moves.node + k) % n;
        match resubscribe(id, &moves.nodes[node], seqs, tallies).await {
            Ok(ws) => {
                moves.node = node;
                tallies.with(id, |t| t.interval.failovers += 1);
                return Some(ws);
            }
            Err(e) => last = e,
        }
    }
    tallies.with(id, |t| t.interval.errors += 1);
    tallies.note_error(format!("client {id}: no node took it back: {last}"));
    None
}

/// Connects to `target` and resubscribes every topic from where this client
/// was (`SeqState::since`; none yet: live), counting the answers and the
/// pushes that came with them.
async fn resubscribe(
    id: usize,
    target: &Target,
    seqs: &mut SeqState,
    tallies: &Tallies,
) -> Result<Ws, String> {
    let since = seqs.since();
    let joined = connect(id, target, &seqs.topics, &since, false, false).await?;
    for (slot, p) in seqs.joined.iter_mut().zip(&joined.positions) {
        if p.is_some() {
            *slot = *p;
        }
    }
    tallies.with(id, |t| {
        t.interval.recovered += joined.answers.recovered;
        t.interval.not_recovered += joined.answers.not_recovered;
        t.interval.replayed += joined.answers.replayed;
    });
    for t in &joined.early {
        on_text(id, t, seqs, tallies);
    }
    Ok(joined.ws)
}

/// Counts the gaps this client never saw filled as missing.
fn end_order(id: usize, seqs: &mut SeqState, tallies: &Tallies) {
    let missing = seqs.finish().missing;
    tallies.with(id, |t| t.interval.seq_missing += missing);
}

/// Holds the connection without reading until `stop`.
pub async fn stall(mut ws: Ws, tallies: &Tallies, mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
    // Do not wait on a close handshake behind megabytes of unread pushes.
    let _ = tokio::time::timeout(Duration::from_millis(100), ws.close(None)).await;
    tallies.open.fetch_sub(1, Relaxed);
}

fn on_text(id: usize, text: &str, seqs: &mut SeqState, tallies: &Tallies) {
    let now = now_us();
    let Ok(p) = serde_json::from_str::<Push>(text) else {
        tallies.with(id, |t| t.interval.errors += 1);
        return;
    };
    if let Some(n) = p.lagged {
        let slot =
            p.topic.as_deref().and_then(topic_index).and_then(|n| seqs.topics.iter().position(|&t| t == n));
        for (i, (_, c)) in seqs.streams.iter_mut().enumerate() {
            if slot.is_none() || slot == Some(i) {
                c.lagged(n);
            }
        }
        tallies.with(id, |t| {
            t.interval.lag_notices += 1;
            t.interval.lagged_messages += n;
        });
        return;
    }
    let (Some(topic), Some(seq)) = (p.topic, p.seq) else {
        return; // a response or a direct message: not part of the load
    };
    let epoch = p.epoch.unwrap_or(0);
    let slot = topic_index(&topic).and_then(|n| seqs.topics.iter().position(|&t| t == n));
    let mut delta = OrderCounts::default();
    let mut newly_disordered = false;
    if let Some(i) = slot {
        let (e, c) = &mut seqs.streams[i];
        if e.is_some_and(|e| e != epoch) {
            // The topic was made again: the old stream ended here.
            seqs.ended.add(&c.finish());
            *c = OrderChecker::new();
        }
        *e = Some(epoch);
        let before = c.counts();
        c.push(seq);
        let after = c.counts();
        delta.gaps = after.gaps - before.gaps;
        delta.gap_messages = after.gap_messages - before.gap_messages;
        delta.unexplained_gaps = after.unexplained_gaps - before.unexplained_gaps;
        delta.out_of_order = after.out_of_order - before.out_of_order;
        delta.duplicates = after.duplicates - before.duplicates;
        if delta.out_of_order + delta.duplicates > 0 && !seqs.disordered {
            seqs.disordered = true;
            newly_disordered = true;
        }
    }
    let latency = p.payload.and_then(|s| s.t).map(|t| now.saturating_sub(t));
    tallies.with(id, |t| {
        let iv = &mut t.interval;
        iv.deliveries += 1;
        iv.bytes += text.len() as u64;
        iv.gaps += delta.gaps;
        iv.gap_messages += delta.gap_messages;
        iv.unexplained_gaps += delta.unexplained_gaps;
        iv.out_of_order += delta.out_of_order;
        iv.duplicates += delta.duplicates;
        iv.clients_disordered += u64::from(newly_disordered);
        if slot.is_none() {
            iv.errors += 1;
        }
        if let Some(l) = latency {
            t.hist.saturating_record(l.max(1));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_lag_and_latency() {
        let tallies = Tallies::new();
        let mut s = SeqState::new(vec![3]);
        let t = now_us();
        for seq in [1u64, 2, 5, 6] {
            let m =
                format!(r#"{{"topic":"t3","seq":{seq},"epoch":1,"ts":0,"payload":{{"t":{t},"p":"xx"}}}}"#);
            on_text(0, &m, &mut s, &tallies);
        }
        on_text(0, r#"{"lagged":7,"topic":"t3"}"#, &mut s, &tallies);
        on_text(0, r#"{"jsonrpc":"2.0","id":0,"result":{}}"#, &mut s, &tallies);
        let i = tallies.take();
        assert_eq!((i.deliveries, i.gaps, i.gap_messages), (4, 1, 2));
        assert_eq!((i.lag_notices, i.lagged_messages, i.errors), (1, 7, 0));
        assert_eq!(i.latency_us.iter().map(|b| b.1).sum::<u64>(), 4);
    }

    #[test]
    fn a_new_epoch_restarts_the_count_and_going_back_is_a_duplicate() {
        let tallies = Tallies::new();
        let mut s = SeqState::new(vec![0]);
        for (epoch, seq) in [(1u64, 4u64), (2, 1), (2, 1)] {
            let m = format!(r#"{{"topic":"t0","seq":{seq},"epoch":{epoch},"payload":{{"t":1}}}}"#);
            on_text(0, &m, &mut s, &tallies);
        }
        let i = tallies.take();
        assert_eq!((i.deliveries, i.gaps, i.duplicates, i.errors), (3, 0, 1, 0));
        assert_eq!(i.clients_disordered, 1);
    }

    #[test]
    fn counts_reorders_duplicates_and_missing_per_client() {
        let tallies = Tallies::new();
        let mut s = SeqState::new(vec![0]);
        // 3 overtaken by 4, 5 twice, 7 never comes.
        for seq in [1u64, 2, 4, 3, 5, 5, 6, 8] {
            let m = format!(r#"{{"topic":"t0","seq":{seq},"epoch":1,"payload":{{"t":1}}}}"#);
            on_text(9, &m, &mut s, &tallies);
        }
        end_order(9, &mut s, &tallies);
        let i = tallies.take();
        assert_eq!((i.out_of_order, i.duplicates, i.seq_missing), (1, 1, 1));
        assert_eq!((i.gaps, i.gap_messages, i.unexplained_gaps), (2, 2, 2));
        assert_eq!(i.clients_disordered, 1, "one client, counted once");
    }
}
