//! One connection: a reader task and a writer task.
//!
//! # Writer
//!
//! The writer owns the engine subscriber. It waits on whichever comes first:
//!
//! - the engine: `recv_many` hands it up to `max_batch` messages; it feeds them
//!   all to tungstenite (which buffers up to `write_buffer_size`) and flushes
//!   once, so a batch costs one write syscall when it fits the buffer. The batch
//!   must be written and flushed within `write_timeout`, or the connection is
//!   dropped as a slow consumer (no close frame: the socket is stuck).
//! - a reply from the reader (JSON-RPC responses), written the same way;
//! - the ping interval: a ping goes out;
//! - the pong deadline: if no pong came within `pong_timeout`, close 1008;
//! - the gateway's phase: on drain, it takes what its queue still holds
//!   (`try_recv` until empty), writes it, and closes with 1001.
//!
//! A `Lagged(n)` from the engine becomes a `{"lagged":n,"topic":…}` text frame
//! at that point of the stream. A close by the engine (`SlowConsumer`, `Kicked`,
//! `Shutdown`) comes after the queue is drained and becomes a close frame.
//!
//! # Reader
//!
//! The reader parses requests and sends replies to the writer through a bounded
//! channel (when the writer cannot keep up, the reader stops reading: TCP
//! pushes back on the client). It enforces the rate limit, and turns read
//! errors into close codes: too big → 1009, bad UTF-8 → 1007, protocol → 1002.
//! It ends by handing its half of the stream back, so that the writer can send
//! the close frame and wait (at most `close_timeout`) for the client's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_core::{CloseReason, Engine, Message as EngineMessage, Receiver, RecvError, TryRecvError};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::Permissions;
use crate::frame::{lag_notice, Frame};
use crate::gateway::{Gateway, Phase};
use crate::limits::{Slot, TokenBucket, Verdict};
use crate::metrics::CloseKind;
use crate::rpc::Session;

/// Close codes the gateway sends.
pub mod close_codes {
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// WebSocket protocol violation.
    pub const PROTOCOL: u16 = 1002;
    /// Invalid UTF-8 in a text frame.
    pub const INVALID_DATA: u16 = 1007;
    /// Rate limit, heartbeat timeout, slow consumer, kicked.
    pub const POLICY: u16 = 1008;
    /// Message larger than `max_message_size`.
    pub const TOO_BIG: u16 = 1009;
}

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;
type Stream<S> = SplitStream<WebSocketStream<S>>;

/// Why the reader stopped.
enum ReadWhy {
    /// The client closed, or the socket failed.
    Gone(CloseKind),
    /// We close, with this code. `fatal`: the stream cannot be read as WebSocket
    /// frames any more (after a read error).
    Close { kind: CloseKind, code: u16, reason: &'static str, fatal: bool },
}

struct ReadEnd<S> {
    stream: Stream<S>,
    why: ReadWhy,
}

enum WriteFail {
    Timeout,
    Io,
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) }))
}

/// Runs one client connection until it ends.
pub(crate) async fn run<E, S>(
    gw: Gateway<E>,
    ws: WebSocketStream<S>,
    sub: E::Subscriber,
    perms: Permissions,
    peer: SocketAddr,
    slot: Slot,
) where
    E: Engine<Frame>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _slot = slot;
    let inner = gw.inner.clone();
    inner.metrics.opened();
    let id = sub.id();
    tracing::debug!(%peer, client = id.get(), subject = perms.subject.as_deref(), "connected");
    let cfg = &inner.config;
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(cfg.reply_queue);
    let start = tokio::time::Instant::now();
    let last_pong = Arc::new(AtomicU64::new(0));
    let sole_topic = Arc::new(Mutex::new(None));
    let session =
        Session { gateway: gw.clone(), id, perms, topics: HashSet::new(), sole_topic: sole_topic.clone() };
    let reader = tokio::spawn(read_loop(session, stream, tx, last_pong.clone(), start));
    let mut w = Writer {
        sink: Some(sink),
        sub,
        // Grown on first use: an idle connection keeps no batch buffers.
        buf: Vec::new(),
        out: Vec::new(),
        rx,
        rx_open: true,
        phase: inner.phase.subscribe(),
        sole_topic,
        write_timeout: cfg.write_timeout,
        close_timeout: cfg.close_timeout,
        max_batch: cfg.max_batch,
        gw: gw.clone(),
        recorded: false,
    };
    let kind = w.run(reader, last_pong, start).await;
    tracing::debug!(%peer, client = id.get(), reason = kind.as_str(), "disconnected");
    inner.metrics.ended();
}

struct Writer<E: Engine<Frame>, S> {
    /// `None` only once the close handshake took it back (reunited).
    sink: Option<Sink<S>>,
    sub: E::Subscriber,
    /// Messages taken from the engine, not yet written.
    buf: Vec<EngineMessage<Frame>>,
    /// Frames being written.
    out: Vec<Message>,
    rx: mpsc::Receiver<String>,
    /// False once the reader dropped its sender.
    rx_open: bool,
    phase: watch::Receiver<Phase>,
    sole_topic: Arc<Mutex<Option<Arc<str>>>>,
    write_timeout: Duration,
    close_timeout: Duration,
    max_batch: usize,
    gw: Gateway<E>,
    /// The close reason was counted.
    recorded: bool,
}

impl<E: Engine<Frame>, S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Writer<E, S> {
    async fn run(
        &mut self,
        mut reader: JoinHandle<ReadEnd<S>>,
        last_pong: Arc<AtomicU64>,
        start: tokio::time::Instant,
    ) -> CloseKind {
        let kind = self.run_inner(&mut reader, &last_pong, start).await;
        self.record(kind);
        reader.abort();
        kind
    }

    async fn run_inner(
        &mut self,
        reader: &mut JoinHandle<ReadEnd<S>>,
        last_pong: &AtomicU64,
        start: tokio::time::Instant,
    ) -> CloseKind {
        let cfg = &self.gw.inner.config;
        let (ping_interval, pong_timeout) = (cfg.ping_interval, cfg.pong_timeout);
        let mut ping = tokio::time::interval_at(start + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pong_deadline = tokio::time::sleep_until(start + pong_timeout);
        tokio::pin!(pong_deadline);
        if *self.phase.borrow_and_update() != Phase::Running {
            return self.drain(reader).await;
        }
        loop {
            tokio::select! {
                biased;
                changed = self.phase.changed() => {
                    let phase = if changed.is_ok() { *self.phase.borrow_and_update() } else { Phase::Forced };
                    match phase {
                        Phase::Running => {}
                        Phase::Draining => return self.drain(reader).await,
                        Phase::Forced => return CloseKind::Shutdown,
                    }
                }
                end = &mut *reader => {
                    let Ok(end) = end else { return CloseKind::Error };
                    return match end.why {
                        ReadWhy::Gone(kind) => kind,
                        ReadWhy::Close { kind, code, reason, fatal } => {
                            self.record(kind);
                            // The reader has ended, so every reply it queued is in
                            // the channel: send them before the close (the
                            // -32003 answers that led to a rate-limit close, say).
                            while let Ok(t) = self.rx.try_recv() {
                                self.out.push(Message::Text(t.into()));
                            }
                            self.close_after_reader(end.stream, code, reason, fatal).await;
                            kind
                        }
                    };
                }
                reply = self.rx.recv(), if self.rx_open => match reply {
                    Some(text) => {
                        self.out.push(Message::Text(text.into()));
                        while self.out.len() < self.max_batch {
                            match self.rx.try_recv() {
                                Ok(t) => self.out.push(Message::Text(t.into())),
                                Err(_) => break,
                            }
                        }
                        if let Err(f) = self.write_out().await {
                            return self.write_failed(f, reader).await;
                        }
                    }
                    None => self.rx_open = false,
                },
                r = self.sub.recv_many(&mut self.buf, self.max_batch) => match r {
                    Ok(_) => {
                        self.out.extend(self.buf.drain(..).map(|m| m.payload().to_message()));
                        if let Err(f) = self.write_out().await {
                            return self.write_failed(f, reader).await;
                        }
                    }
                    Err(RecvError::Lagged(n)) => self.push_lag(n),
                    Err(RecvError::Closed(reason)) => {
                        let (kind, code, why) = match reason {
                            CloseReason::Shutdown => (CloseKind::Shutdown, close_codes::GOING_AWAY, "server shutting down"),
                            CloseReason::SlowConsumer => (CloseKind::SlowConsumer, close_codes::POLICY, "slow consumer"),
                            CloseReason::Kicked => (CloseKind::Kicked, close_codes::POLICY, "kicked"),
                            CloseReason::Unsubscribed => (CloseKind::Client, 1000, ""),
                        };
                        self.record(kind);
                        self.close_while_reading(reader, code, why).await;
                        return kind;
                    }
                },
                _ = ping.tick() => {
                    self.out.push(Message::Ping(bytes::Bytes::new()));
                    if let Err(f) = self.write_out().await {
                        return self.write_failed(f, reader).await;
                    }
                }
                () = &mut pong_deadline => {
                    let last = start + Duration::from_millis(last_pong.load(Relaxed));
                    if tokio::time::Instant::now() >= last + pong_timeout {
                        self.record(CloseKind::Heartbeat);
                        self.close_while_reading(reader, close_codes::POLICY, "heartbeat timeout").await;
                        return CloseKind::Heartbeat;
                    }
                    pong_deadline.as_mut().reset(last + pong_timeout);
                }
            }
        }
    }

    /// Counts the close reason once (see `Metrics::closed`).
    fn record(&mut self, kind: CloseKind) {
        if !self.recorded {
            self.recorded = true;
            self.gw.inner.metrics.closed(kind);
        }
    }

    fn push_lag(&mut self, n: u64) {
        self.gw.inner.metrics.lag(n);
        let topic = self.sole_topic.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.out.push(lag_notice(n, topic.as_deref()));
    }

    /// Feeds every frame of `out`, then flushes once, within the write timeout.
    async fn write_out(&mut self) -> Result<(), WriteFail> {
        let n = self.out.len();
        if n == 0 {
            return Ok(());
        }
        let bytes: usize = self.out.iter().map(Message::len).sum();
        let (Some(sink), out) = (self.sink.as_mut(), &mut self.out) else {
            return Err(WriteFail::Io);
        };
        let fut = async {
            for m in out.drain(..) {
                sink.feed(m).await?;
            }
            sink.flush().await
        };
        let r = tokio::time::timeout(self.write_timeout, fut).await;
        self.out.clear();
        match r {
            Ok(Ok(())) => {
                self.gw.inner.metrics.batch(n, bytes);
                Ok(())
            }
            Ok(Err(_)) => Err(WriteFail::Io),
            Err(_) => Err(WriteFail::Timeout),
        }
    }

    async fn write_failed(&mut self, f: WriteFail, reader: &mut JoinHandle<ReadEnd<S>>) -> CloseKind {
        match f {
            WriteFail::Timeout => {
                tracing::debug!("write timeout: dropping slow consumer");
                CloseKind::WriteTimeout
            }
            // Usually the client closed or reset: the reader knows which.
            WriteFail::Io => match tokio::time::timeout(self.close_timeout, reader).await {
                Ok(Ok(ReadEnd { why: ReadWhy::Gone(kind), .. })) => kind,
                _ => CloseKind::Error,
            },
        }
    }

    /// Sends a close frame while the reader still runs, then waits (at most the
    /// close timeout) for the reader to see the client's close.
    async fn close_while_reading(
        &mut self,
        reader: &mut JoinHandle<ReadEnd<S>>,
        code: u16,
        reason: &'static str,
    ) {
        self.out.push(close_frame(code, reason));
        if self.write_out().await.is_ok() {
            let _ = tokio::time::timeout(self.close_timeout, reader).await;
        }
    }

    /// The reader stopped on a fault of the client's: send the close frame, and
    /// wait (at most the close timeout) for the client's close or EOF, so that
    /// unread input does not turn our close into a reset.
    async fn close_after_reader(&mut self, stream: Stream<S>, code: u16, reason: &'static str, fatal: bool) {
        self.out.push(close_frame(code, reason));
        if self.write_out().await.is_err() {
            return;
        }
        let Some(sink) = self.sink.take() else { return };
        let Ok(mut ws) = sink.reunite(stream) else { return };
        if fatal {
            linger(ws.get_mut(), self.close_timeout).await;
        } else {
            let _ = tokio::time::timeout(self.close_timeout, async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// Drain: write what the queue holds (and pending replies), close 1001.
    async fn drain(&mut self, reader: &mut JoinHandle<ReadEnd<S>>) -> CloseKind {
        while let Ok(t) = self.rx.try_recv() {
            self.out.push(Message::Text(t.into()));
        }
        loop {
            match self.sub.try_recv() {
                Ok(m) => {
                    self.out.push(m.payload().to_message());
                    if self.out.len() >= self.max_batch {
                        if let Err(f) = self.write_out().await {
                            return self.write_failed(f, reader).await;
                        }
                    }
                }
                Err(TryRecvError::Lagged(n)) => self.push_lag(n),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed(_)) => break,
            }
        }
        self.record(CloseKind::Shutdown);
        self.close_while_reading(reader, close_codes::GOING_AWAY, "server shutting down").await;
        CloseKind::Shutdown
    }
}

async fn read_loop<E, S>(
    mut session: Session<E>,
    mut stream: Stream<S>,
    tx: mpsc::Sender<String>,
    last_pong: Arc<AtomicU64>,
    start: tokio::time::Instant,
) -> ReadEnd<S>
where
    E: Engine<Frame>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = session.gateway.inner.clone();
    let mut bucket = TokenBucket::new(inner.config.rate_limit, Instant::now());
    loop {
        let msg = match stream.next().await {
            None => return ReadEnd { stream, why: ReadWhy::Gone(CloseKind::Client) },
            Some(Err(e)) => return ReadEnd { stream, why: classify(e) },
            Some(Ok(m)) => m,
        };
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => {
                inner.metrics.frame_in();
                match bucket.check(Instant::now()) {
                    Verdict::Allow => match &msg {
                        Message::Text(t) => session.handle_text(t.as_str()),
                        Message::Binary(b) => session.handle_binary(b),
                        _ => None,
                    },
                    Verdict::Refuse => Some(session.rate_limited()),
                    Verdict::Close => {
                        let why = ReadWhy::Close {
                            kind: CloseKind::RateLimit,
                            code: close_codes::POLICY,
                            reason: "rate limit exceeded",
                            fatal: false,
                        };
                        return ReadEnd { stream, why };
                    }
                }
            }
            Message::Pong(_) => {
                last_pong.store(start.elapsed().as_millis() as u64, Relaxed);
                None
            }
            // tungstenite answers pings and closes itself; after a close the
            // stream ends.
            Message::Ping(_) | Message::Close(_) | Message::Frame(_) => None,
        };
        if let Some(r) = reply {
            if tx.send(r).await.is_err() {
                return ReadEnd { stream, why: ReadWhy::Gone(CloseKind::Client) };
            }
        }
    }
}

fn classify(e: WsError) -> ReadWhy {
    let close = |kind, code, reason| ReadWhy::Close { kind, code, reason, fatal: true };
    match e {
        WsError::Capacity(_) => close(CloseKind::TooBig, close_codes::TOO_BIG, "message too big"),
        WsError::Utf8(_) => close(CloseKind::InvalidUtf8, close_codes::INVALID_DATA, "invalid utf-8"),
        WsError::Protocol(_) => close(CloseKind::Protocol, close_codes::PROTOCOL, "protocol error"),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ReadWhy::Gone(CloseKind::Client),
        WsError::Io(e) => {
            tracing::debug!(error = %e, "read error");
            ReadWhy::Gone(CloseKind::Client)
        }
        other => {
            tracing::debug!(error = %other, "read error");
            ReadWhy::Gone(CloseKind::Error)
        }
    }
}

/// The echo route: every text or binary frame goes back as it came.
pub(crate) async fn run_echo<E, S>(gw: Gateway<E>, mut ws: WebSocketStream<S>, peer: SocketAddr, slot: Slot)
where
    E: Engine<Frame>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _slot = slot;
    let inner = gw.inner.clone();
    inner.metrics.opened();
    let mut phase = inner.phase.subscribe();
    let wt = inner.config.write_timeout;
    // Each exit counts its reason before any close frame goes out.
    let kind = loop {
        tokio::select! {
            () = async { let _ = phase.wait_for(|p| *p != Phase::Running).await; } => {
                inner.metrics.closed(CloseKind::Shutdown);
                let _ = tokio::time::timeout(wt, ws.send(close_frame(close_codes::GOING_AWAY, "server shutting down"))).await;
                break CloseKind::Shutdown;
            }
            m = ws.next() => match m {
                None => {
                    inner.metrics.closed(CloseKind::Client);
                    break CloseKind::Client;
                }
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    inner.metrics.frame_in();
                    let n = m.len();
                    let k = match tokio::time::timeout(wt, ws.send(m)).await {
                        Ok(Ok(())) => {
                            inner.metrics.batch(1, n);
                            continue;
                        }
                        Ok(Err(_)) => CloseKind::Client,
                        Err(_) => CloseKind::WriteTimeout,
                    };
                    inner.metrics.closed(k);
                    break k;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => match classify(e) {
                    ReadWhy::Gone(k) => {
                        inner.metrics.closed(k);
                        break k;
                    }
                    ReadWhy::Close { kind, code, reason, .. } => {
                        inner.metrics.closed(kind);
                        let _ = tokio::time::timeout(wt, ws.send(close_frame(code, reason))).await;
                        linger(ws.get_mut(), inner.config.close_timeout).await;
                        break kind;
                    }
                },
            }
        }
    };
    tracing::debug!(%peer, reason = kind.as_str(), "echo connection closed");
    inner.metrics.ended();
}

/// After our close frame on a failed connection: closes our sending side
/// first (a FIN: RFC 6455, section 7.1.1, prefers that the server close the TCP
/// connection first), then reads and discards input until the client's EOF, at
/// most `limit`, so that unread input does not turn the close into a reset
/// that would destroy the close frame in flight.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, limit: Duration) {
    let _ = tokio::time::timeout(limit, io.shutdown()).await;
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
