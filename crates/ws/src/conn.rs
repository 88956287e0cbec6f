//! One connection: one task that reads requests and writes pushes.
//!
//! # One task, one wait
//!
//! A connection is a single task that owns the WebSocket stream, the engine
//! subscriber and the client's session. It waits on whichever comes first:
//!
//! - the engine: `recv_many` hands it up to `max_batch` messages; they are
//!   queued in the connection's frame writer (`writer.rs`: a frame header plus
//!   the shared payload each, no copy) and written at once with vectored
//!   writes, as far as the socket takes them;
//! - the socket accepting more of what the writer still holds;
//! - a frame from the client: a request is handled in place (subscribe,
//!   publish, …), and so is every further frame already buffered, up to
//!   `max_batch` frames; the replies join the writer's queue, in order with
//!   the pushes. The rate limit and the close codes for bad input (too big →
//!   1009, bad UTF-8 → 1007, protocol → 1002) are enforced here;
//! - the gateway leaving `Running`: on drain, it takes what its queue still
//!   holds (`try_recv` until empty), writes it, and closes with 1001;
//! - its one timer: the next ping, the pong deadline (close 4000 when no pong
//!   came within `pong_timeout` of the first unanswered ping), the token's
//!   expiry (close 4002 at `exp` unless a `refresh` moved it), the write stall
//!   and the slow-consumer deadline (below).
//!
//! A `Lagged(n)` from the engine becomes a `{"lagged":n,"topic":…}` text frame
//! at that point of the stream. A close by the engine (`SlowConsumer`, `Kicked`,
//! `Shutdown`) comes after the queue is drained and becomes a close frame.
//!
//! # Slow consumers: bytes and time
//!
//! A client that reads slower than its topics publish first fills its socket
//! buffers, then the writer's queue. The queue is measured in bytes
//! ([`Writer::queued`]): while it is under `max_queued_bytes` the connection
//! keeps taking messages from the engine, so a healthy client may fall behind
//! by a burst of that many bytes (4 MiB by default: 512 messages of 8 KB,
//! where the ring alone held 256 of any size) and catch up. At the mark it
//! stops taking from the engine and stops reading requests:
//!
//! - the engine's ring then fills, and its overflow policy applies as before
//!   (evict, drop the newest, drop the oldest, with lag notices): the ring's
//!   message count is the second cap, and whichever of the two fills first
//!   decides;
//! - a connection that stays at the mark for `slow_consumer_timeout` is
//!   closed with 4001 "slow consumer" (what was queued but not started is
//!   dropped; a frame already half written is finished first);
//! - a socket that accepts not one byte for `write_timeout` is dropped at
//!   once, without a close frame, whatever the queue holds. A socket that
//!   takes bytes, however slowly, restarts that clock.
//!
//! Memory per connection is thus at most `max_queued_bytes` plus one batch
//! (the last `recv_many` can cross the mark), plus its ring; the payloads are
//! shared with every other recipient, so a publish to many slow clients costs
//! one payload and a 48-byte queue entry per client, not a copy each.
//!
//! # tungstenite's part
//!
//! tungstenite does the handshake, reads frames, answers pings and runs the
//! close handshake; it writes those frames itself. The writer writes every
//! other frame straight to the socket. So that the two never interleave
//! inside a frame, the writer flushes tungstenite's buffer before each write,
//! and tungstenite is given the socket (a read, which may write a pong, or a
//! close) only while the writer is between frames
//! ([`Writer::mid_frame`]). A close frame goes out only once the writer's queue
//! is empty.
//!
//! # Why one task, not a reader and a writer
//!
//! An earlier version split the stream into a reader task and a writer task
//! joined by a reply channel. A heap profile of 5,000 idle connections put
//! ~1.7 KiB of each connection in the second task and the channel alone (plus
//! the lock between the stream's halves and the shared pong clock and
//! sole-topic cell), and a CPU profile at 100 messages/s put ~5 % of the
//! server's CPU in polling them on every wake (the reader's `JoinHandle`, the
//! channel, the lock). One task owns everything, so nothing is shared: the
//! task's state is ~1.5 KiB (`a_connection_task_stays_small`) where the
//! two tasks took ~3.4 KiB, and a server holding 5,000 idle connections went
//! from 13.1 to 7.8 KiB of RSS per connection (docs/benchmarks.md, run 3).
//!
//! # What is polled on a wake
//!
//! The engine is polled first, so that a wake for a push touches the
//! subscriber and not the other sources; the others are polled whenever the
//! engine has nothing, which is also when the task registers with all of them
//! before it sleeps. A connection whose engine is never empty still gets the
//! others polled first once every [`FAIR_EVERY`] batches, so a busy stream
//! cannot starve a drain, a request or the heartbeat. The phase wait is one
//! future for the life of the connection (it stays registered with the
//! gateway's watch, instead of joining and leaving its waiter list on every
//! wake), and the clock is read only when the socket pushes back. The rarely
//! taken paths (drain, close handshakes, write failures) are boxed, so that
//! their state does not enlarge every idle connection's task.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fanout_core::{CloseReason, Engine, Message as EngineMessage, Receiver, RecvError, TryRecvError};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::Permissions;
use crate::close_codes;
use crate::frame::{lag_notice, repair_notice, Frame};
use crate::gateway::{Gateway, Phase, TaskGuard};
use crate::limits::Slot;
use crate::metrics::{CloseKind, Metrics};
use crate::rpc::Session;
use crate::writer::{opcode, Writer};

/// Engine batches in a row after which the other sources are polled first.
const FAIR_EVERY: u32 = 16;

/// What ended a read, or what it asks for.
pub(crate) enum ReadWhy {
    /// The client closed, or the socket failed.
    Gone(CloseKind),
    /// We close, with this code. `fatal`: the stream cannot be read as WebSocket
    /// frames any more (after a read error).
    Close { kind: CloseKind, code: u16, reason: &'static str, fatal: bool },
}

pub(crate) enum WriteFail {
    Timeout,
    Io,
    /// The gateway's drain was forced while the writer still held frames.
    Forced,
}

/// What woke the connection.
enum Event {
    Engine(Result<usize, RecvError>),
    /// The gateway left `Running`.
    Phase,
    Read(Option<Result<Message, WsError>>),
    /// The socket took bytes: `Ok(true)` when the writer's queue is empty.
    Wrote(std::io::Result<bool>),
    /// Time to ping, to check the pong deadline, or a write or slow-consumer
    /// deadline passed.
    Timer,
}

pub(crate) fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) }))
}

/// Builds a client connection; the future runs it until it ends. Spawn it as
/// a task of its own: its state is all a connection costs between messages
/// (see the module docs), so nothing from the upgrade should stay around it.
pub(crate) fn run<E, S>(
    gw: Gateway<E>,
    ws: WebSocketStream<S>,
    sub: E::Subscriber,
    perms: Permissions,
    peer: SocketAddr,
    slot: Slot,
    guard: TaskGuard<E>,
) -> impl Future<Output = ()> + Send + 'static
where
    E: Engine<Frame>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = sub.id();
    tracing::debug!(%peer, client = id.get(), subject = perms.subject.as_deref(), "connected");
    let session = Session::new(gw, id, perms, slot);
    let conn = Conn {
        session,
        ws,
        sub,
        // Grown on first use: an idle connection keeps no batch buffers.
        buf: Vec::new(),
        writer: Writer::default(),
        stalled_since: None,
        over_since: None,
        reading: true,
        unanswered_ping: None,
        recorded: false,
        peer,
        _open: None,
        _guard: guard,
    };
    conn.run()
}

struct Conn<E: Engine<Frame>, S> {
    ws: WebSocketStream<S>,
    sub: E::Subscriber,
    /// The client's subscriptions and permissions; holds the gateway.
    session: Session<E>,
    /// Messages taken from the engine, on their way to the writer (empty
    /// between events).
    buf: Vec<EngineMessage<Frame>>,
    /// Frames to write: pushes, replies, lag notices, pings. Never a close
    /// (tungstenite writes it, once this is empty).
    writer: Writer,
    /// Since when the socket has accepted no byte while the writer held some
    /// (`None` when the writer is empty, or since its last progress).
    stalled_since: Option<TokioInstant>,
    /// Since when the writer has held `max_queued_bytes` or more (`None` while
    /// under).
    over_since: Option<TokioInstant>,
    /// False once the stream ended (the client closed, or a read failed).
    reading: bool,
    /// When the first ping since the last pong was sent: the pong deadline is
    /// measured from it (`None`: every ping was answered).
    unanswered_ping: Option<TokioInstant>,
    /// The close reason was counted.
    recorded: bool,
    peer: SocketAddr,
    /// Counts the connection ended when dropped: after `sub` and `session`
    /// (fields drop in order), so that once `Gateway::connections` no longer
    /// counts it, its topics and its place under the caps are given back.
    /// Set (and the connection counted open) once the token's channels are
    /// joined.
    _open: Option<Opened<E>>,
    /// Held for the connection's life: its count among the gateway's live
    /// tasks (its place under the connection caps is in `session`).
    _guard: TaskGuard<E>,
}

/// `run` counted the connection open when it built it; it is counted ended
/// when its `Conn` is dropped, so that the gauge stays right if the future is
/// dropped before it completes (a cancelled `run_stream`, a runtime shutting
/// down).
struct Opened<E: Engine<Frame>>(Gateway<E>);

impl<E: Engine<Frame>> Drop for Opened<E> {
    fn drop(&mut self) {
        self.0.inner.metrics.ended();
    }
}

/// One step of the writer: tungstenite's buffer first (see the module docs),
/// then as many of the writer's frames as the socket takes.
fn poll_write_step<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    ws: &mut WebSocketStream<S>,
    writer: &mut Writer,
    max_frames: usize,
    metrics: &Metrics,
) -> Poll<std::io::Result<bool>> {
    match ws.poll_flush_unpin(cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(WsError::Io(e))) => return Poll::Ready(Err(e)),
        Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
        Poll::Pending => return Poll::Pending,
    }
    writer.poll_write(cx, ws.get_mut(), max_frames, |frames, bytes| metrics.batch(frames, bytes))
}

/// The socket's events: the writer's progress first, then (when `read` and
/// the writer is between frames) the next frame from the client.
fn io_event<'a, S: AsyncRead + AsyncWrite + Unpin>(
    ws: &'a mut WebSocketStream<S>,
    writer: &'a mut Writer,
    read: bool,
    max_frames: usize,
    metrics: &'a Metrics,
) -> impl Future<Output = Event> + 'a {
    std::future::poll_fn(move |cx| {
        if !writer.is_empty() {
            if let Poll::Ready(r) = poll_write_step(cx, ws, writer, max_frames, metrics) {
                return Poll::Ready(Event::Wrote(r));
            }
        }
        if read && !writer.mid_frame() {
            if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                return Poll::Ready(Event::Read(m));
            }
        }
        Poll::Pending
    })
}

/// Writes everything `writer` holds; fails when the socket accepts no byte
/// for `write_timeout`.
pub(crate) async fn write_all<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    writer: &mut Writer,
    write_timeout: Duration,
    max_frames: usize,
    metrics: &Metrics,
) -> Result<(), WriteFail> {
    while !writer.is_empty() {
        let step = std::future::poll_fn(|cx| poll_write_step(cx, ws, writer, max_frames, metrics));
        match tokio::time::timeout(write_timeout, step).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(WriteFail::Io),
            Err(_) => return Err(WriteFail::Timeout),
        }
    }
    Ok(())
}

impl<E: Engine<Frame>, S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<E, S> {
    fn gw(&self) -> &Gateway<E> {
        &self.session.gateway
    }

    /// The connection's whole life. An `async move` block rather than an
    /// `async fn(self)`: an async fn keeps its by-value arguments twice in its
    /// state (rust-lang/rust#62958), which here would be 664 bytes per
    /// connection for nothing (guarded by `a_connection_task_stays_small`).
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // The token's channels, joined as `subscribe` joins (waiting for
            // an engine that waits, see `Session::join_channels`) before a
            // frame is read: a client whose first call is answered misses
            // nothing on them. Boxed: its state is not kept in every
            // connection's future. Counted open after it: a connection that
            // `Gateway::connections` counts receives their messages.
            if self.session.has_channels() {
                Box::pin(self.session.join_channels()).await;
            }
            self.session.gateway.inner.metrics.opened();
            self._open = Some(Opened(self.session.gateway.clone()));
            let kind = self.serve().await;
            self.record(kind);
            tracing::debug!(peer = %self.peer, client = self.session.id.get(), reason = kind.as_str(), "disconnected");
        }
    }

    async fn serve(&mut self) -> CloseKind {
        let start = TokioInstant::now();
        let cfg = &self.gw().inner.config;
        let (ping_every, pong_timeout, max_batch) = (cfg.ping_interval, cfg.pong_timeout, cfg.max_batch);
        let (budget, write_timeout, slow_timeout) =
            (cfg.max_queued_bytes, cfg.write_timeout, cfg.slow_consumer_timeout);
        let mut phase = self.gw().inner.phase.subscribe();
        if *phase.borrow_and_update() != Phase::Running {
            return Box::pin(self.drain()).await;
        }
        // Registered with the watch once, for the life of the connection.
        let mut left_running = pin!(async move {
            let _ = phase.wait_for(|p| *p != Phase::Running).await;
        });
        let mut next_ping = start + ping_every;
        let mut armed = self.next_wake(next_ping, pong_timeout);
        let mut timer = pin!(tokio::time::sleep_until(armed));
        let mut streak = 0;
        loop {
            let under = self.writer.queued() < budget;
            let read = self.reading && under;
            let metrics = &self.session.gateway.inner.metrics;
            let event = if streak < FAIR_EVERY {
                tokio::select! {
                    biased;
                    r = self.sub.recv_many(&mut self.buf, max_batch), if under => Event::Engine(r),
                    () = &mut left_running => Event::Phase,
                    e = io_event(&mut self.ws, &mut self.writer, read, max_batch, metrics) => e,
                    () = &mut timer => Event::Timer,
                }
            } else {
                tokio::select! {
                    biased;
                    () = &mut left_running => Event::Phase,
                    e = io_event(&mut self.ws, &mut self.writer, read, max_batch, metrics) => e,
                    () = &mut timer => Event::Timer,
                    r = self.sub.recv_many(&mut self.buf, max_batch), if under => Event::Engine(r),
                }
            };
            // A lag notice counts as a batch: a connection whose queue
            // overflows alternates lag and messages, and must not starve the
            // other sources either.
            streak = match event {
                Event::Engine(Ok(_) | Err(RecvError::Lagged(_))) if streak < FAIR_EVERY => streak + 1,
                _ => 0,
            };
            // Whether the socket took bytes during this event.
            let mut progressed = false;
            match event {
                Event::Engine(Ok(_)) => {
                    if let Some((repaired, conflated)) = self.sub.take_repairs() {
                        self.gw().inner.metrics.repair(repaired, conflated);
                        let topic = self.session.sole_topic.as_deref();
                        self.writer.push_bytes(opcode::TEXT, repair_notice(repaired, conflated, topic));
                    }
                    for m in self.buf.drain(..) {
                        self.writer.push(m);
                    }
                    match self.write_now().await {
                        Err(f) => return Box::pin(self.write_failed(f)).await,
                        Ok(p) => progressed = p,
                    }
                }
                Event::Engine(Err(RecvError::Lagged(n))) => self.push_lag(n),
                Event::Engine(Err(RecvError::Closed(reason))) => {
                    let (kind, code, why) = match reason {
                        CloseReason::Shutdown => {
                            (CloseKind::Shutdown, close_codes::GOING_AWAY, "server shutting down")
                        }
                        CloseReason::SlowConsumer => {
                            (CloseKind::SlowConsumer, close_codes::SLOW_CONSUMER, "slow consumer")
                        }
                        CloseReason::Kicked => (CloseKind::Kicked, close_codes::KICKED, "kicked"),
                        CloseReason::Unsubscribed => (CloseKind::Client, 1000, ""),
                    };
                    self.record(kind);
                    Box::pin(self.close(code, why, false)).await;
                    return kind;
                }
                Event::Phase => {
                    let phase = *self.gw().inner.phase.borrow();
                    return match phase {
                        Phase::Running | Phase::Draining => Box::pin(self.drain()).await,
                        Phase::Forced => CloseKind::Shutdown,
                    };
                }
                Event::Read(m) => {
                    if let Some(kind) = self.on_read(m).await {
                        return kind;
                    }
                    match self.write_now().await {
                        Err(f) => return Box::pin(self.write_failed(f)).await,
                        Ok(p) => progressed = p,
                    }
                }
                Event::Wrote(Ok(_)) => progressed = true,
                Event::Wrote(Err(_)) => return Box::pin(self.write_failed(WriteFail::Io)).await,
                Event::Timer => {
                    let now = TokioInstant::now();
                    if self.stalled_since.is_some_and(|t| now >= t + write_timeout) {
                        return Box::pin(self.write_failed(WriteFail::Timeout)).await;
                    }
                    if self.over_since.is_some_and(|t| now >= t + slow_timeout) {
                        return Box::pin(self.evict()).await;
                    }
                    if self.session.expires.is_some_and(|exp| now >= exp) {
                        self.record(CloseKind::TokenExpired);
                        Box::pin(self.close(close_codes::TOKEN_EXPIRED, "token expired", false)).await;
                        return CloseKind::TokenExpired;
                    }
                    if self.unanswered_ping.is_some_and(|p| now >= p + pong_timeout) {
                        self.record(CloseKind::Heartbeat);
                        Box::pin(self.close(close_codes::HEARTBEAT_TIMEOUT, "heartbeat timeout", false))
                            .await;
                        return CloseKind::Heartbeat;
                    }
                    if now >= next_ping {
                        self.writer.push_control(opcode::PING, Bytes::new());
                        match self.write_now().await {
                            Err(f) => return Box::pin(self.write_failed(f)).await,
                            Ok(p) => progressed = p,
                        }
                        next_ping = now + ping_every;
                        self.unanswered_ping.get_or_insert(now);
                    }
                }
            }
            // The clock is read only when the socket pushed back.
            if self.writer.is_empty() {
                self.stalled_since = None;
            } else if progressed || self.stalled_since.is_none() {
                self.stalled_since = Some(TokioInstant::now());
            }
            if self.writer.queued() < budget {
                self.over_since = None;
            } else if self.over_since.is_none() {
                self.over_since = Some(TokioInstant::now());
            }
            // (A `refresh` may have moved the token's expiry: it is read here.)
            let mut next = self.next_wake(next_ping, pong_timeout);
            if let Some(t) = self.stalled_since {
                next = next.min(t + write_timeout);
            }
            if let Some(t) = self.over_since {
                next = next.min(t + slow_timeout);
            }
            if next != armed {
                armed = next;
                timer.as_mut().reset(armed);
            }
        }
    }

    /// Writes what the socket takes now, without waiting. `Ok(true)` if it
    /// took any bytes.
    async fn write_now(&mut self) -> Result<bool, WriteFail> {
        if self.writer.is_empty() {
            return Ok(false);
        }
        let before = self.writer.queued();
        let max_batch = self.gw().inner.config.max_batch;
        let (ws, writer, metrics) = (&mut self.ws, &mut self.writer, &self.session.gateway.inner.metrics);
        let r =
            std::future::poll_fn(|cx| Poll::Ready(poll_write_step(cx, ws, writer, max_batch, metrics))).await;
        match r {
            Poll::Ready(Err(_)) => Err(WriteFail::Io),
            _ => Ok(self.writer.queued() < before),
        }
    }

    /// Writes everything the writer holds; fails when the socket accepts no
    /// byte for the write timeout.
    /// A forced drain ends it at once: the writer may hold up to
    /// `max_queued_bytes` for a client that reads slowly, and a forced drain
    /// must not wait for that.
    async fn write_all(&mut self) -> Result<(), WriteFail> {
        let inner = &self.session.gateway.inner;
        let (write_timeout, max_batch) = (inner.config.write_timeout, inner.config.max_batch);
        let mut phase = inner.phase.subscribe();
        tokio::select! {
            r = write_all(&mut self.ws, &mut self.writer, write_timeout, max_batch, &inner.metrics) => r,
            _ = phase.wait_for(|p| *p == Phase::Forced) => Err(WriteFail::Forced),
        }
    }

    /// Handles `first` and every further frame already buffered (up to
    /// `max_batch` frames); the replies join the writer's queue. `Some` when
    /// the connection ends.
    async fn on_read(&mut self, first: Option<Result<Message, WsError>>) -> Option<CloseKind> {
        let max_batch = self.gw().inner.config.max_batch;
        let mut next = first;
        // Frames, not replies, are counted: a client sending frames that need
        // no answer (binary publishes, notifications) must not keep the task
        // reading while its own queue and heartbeat wait.
        let mut handled = 0;
        loop {
            // Boxed (one allocation per frame read, not per delivery): the
            // calls that may wait for the engine would otherwise grow every
            // idle connection's task state by their size.
            match Box::pin(self.on_frame(next)).await {
                None => {}
                Some(ReadWhy::Gone(kind)) => return Some(kind),
                Some(ReadWhy::Close { kind, code, reason, fatal }) => {
                    self.record(kind);
                    // The replies handled so far go out before the close frame
                    // (the -32003 answers that led to a rate-limit close, say).
                    Box::pin(self.close(code, reason, fatal)).await;
                    return Some(kind);
                }
            }
            handled += 1;
            if handled >= max_batch {
                break;
            }
            // Already buffered or readable without waiting; a `Pending` here
            // leaves nothing behind (the next poll registers the task again).
            // The writer is between frames: reads happen only then.
            match futures_util::FutureExt::now_or_never(self.ws.next()) {
                Some(m) => next = m,
                None => break,
            }
        }
        None
    }

    /// One frame from the client: a reply joins the writer's queue.
    async fn on_frame(&mut self, m: Option<Result<Message, WsError>>) -> Option<ReadWhy> {
        let msg = match m {
            None => {
                self.reading = false;
                return Some(ReadWhy::Gone(CloseKind::Client));
            }
            Some(Err(e)) => {
                self.reading = false;
                return Some(classify(e));
            }
            Some(Ok(m)) => m,
        };
        let reply = match &msg {
            Message::Text(_) | Message::Binary(_) => {
                self.gw().inner.metrics.frame_in();
                // The session charges the rate limit per call.
                let reply = match &msg {
                    Message::Text(t) => self.session.handle_text(t.as_str()).await,
                    Message::Binary(b) => self.session.handle_binary(b).await,
                    _ => None,
                };
                if self.session.rate_close {
                    return Some(ReadWhy::Close {
                        kind: CloseKind::RateLimit,
                        code: close_codes::RATE_LIMITED,
                        reason: "rate limit exceeded",
                        fatal: false,
                    });
                }
                reply
            }
            Message::Pong(_) => {
                self.unanswered_ping = None;
                None
            }
            // The client closed and tungstenite has answered: nothing may
            // follow its close frame, so what the writer still holds is
            // dropped and the connection ends.
            Message::Close(_) => {
                self.reading = false;
                return Some(ReadWhy::Gone(CloseKind::Client));
            }
            // tungstenite answers pings itself.
            Message::Ping(_) | Message::Frame(_) => None,
        };
        if let Some(r) = reply {
            self.writer.push_bytes(opcode::TEXT, Bytes::from(r));
        }
        None
    }

    /// The heartbeat part of the timer's next wake: the next ping, the pong
    /// deadline of the first unanswered ping, or the token's expiry, whichever
    /// is first.
    fn next_wake(&self, next_ping: TokioInstant, pong_timeout: Duration) -> TokioInstant {
        let mut at = next_ping;
        if let Some(p) = self.unanswered_ping {
            at = at.min(p + pong_timeout);
        }
        if let Some(exp) = self.session.expires {
            at = at.min(exp);
        }
        at
    }

    /// Counts the close reason once (see `Metrics::closed`).
    fn record(&mut self, kind: CloseKind) {
        if !self.recorded {
            self.recorded = true;
            self.gw().inner.metrics.closed(kind);
        }
    }

    fn push_lag(&mut self, n: u64) {
        self.gw().inner.metrics.lag(n);
        self.writer.push_bytes(opcode::TEXT, lag_notice(n, self.session.sole_topic.as_deref()));
    }

    async fn write_failed(&mut self, f: WriteFail) -> CloseKind {
        match f {
            WriteFail::Timeout => {
                tracing::debug!("write timeout: dropping slow consumer");
                CloseKind::WriteTimeout
            }
            WriteFail::Forced => CloseKind::Shutdown,
            // Usually the client closed or reset: reading tells which.
            WriteFail::Io if !self.reading => CloseKind::Client,
            WriteFail::Io => {
                let close_timeout = self.gw().inner.config.close_timeout;
                let ws = &mut self.ws;
                let gone = async move {
                    loop {
                        match ws.next().await {
                            None => return CloseKind::Client,
                            Some(Err(e)) => match classify(e) {
                                ReadWhy::Gone(kind) => return kind,
                                ReadWhy::Close { .. } => return CloseKind::Error,
                            },
                            Some(Ok(_)) => {}
                        }
                    }
                };
                tokio::time::timeout(close_timeout, gone).await.unwrap_or(CloseKind::Error)
            }
        }
    }

    /// Over `max_queued_bytes` for longer than `slow_consumer_timeout`: what
    /// was queued but not started is dropped, and the client gets 4001 after
    /// the frame in progress (if its socket takes it within the write timeout).
    async fn evict(&mut self) -> CloseKind {
        tracing::debug!(peer = %self.peer, queued = self.writer.queued(), "over the byte budget too long: slow consumer");
        self.record(CloseKind::SlowConsumer);
        self.writer.discard_unstarted();
        self.close(close_codes::SLOW_CONSUMER, "slow consumer", false).await;
        CloseKind::SlowConsumer
    }

    /// Writes what the writer holds, then a close frame (through tungstenite,
    /// which then expects the client's), then waits (at most the close
    /// timeout) for the client's close. `fatal`: the input cannot be read as
    /// frames any more, so it lingers on the raw socket instead (see [`linger`]).
    async fn close(&mut self, code: u16, reason: &'static str, fatal: bool) {
        if self.write_all().await.is_err() {
            return;
        }
        let write_timeout = self.gw().inner.config.write_timeout;
        match tokio::time::timeout(write_timeout, self.ws.send(close_frame(code, reason))).await {
            Ok(Ok(())) => self.gw().inner.metrics.batch(1, 4 + reason.len()),
            _ => return,
        }
        let close_timeout = self.gw().inner.config.close_timeout;
        if fatal {
            linger(self.ws.get_mut(), close_timeout).await;
        } else if self.reading {
            let ws = &mut self.ws;
            let _ = tokio::time::timeout(
                close_timeout,
                async move { while let Some(Ok(_)) = ws.next().await {} },
            )
            .await;
        }
    }

    /// Drain: write what the queue holds, close 1001.
    async fn drain(&mut self) -> CloseKind {
        let max_batch = self.gw().inner.config.max_batch;
        loop {
            match self.sub.try_recv() {
                Ok(m) => {
                    self.writer.push(m);
                    if self.writer.frames() >= max_batch {
                        // A forced drain ends it between batches (each batch
                        // would otherwise get a fresh write timeout).
                        if *self.gw().inner.phase.borrow() == Phase::Forced {
                            return CloseKind::Shutdown;
                        }
                        if let Err(f) = self.write_all().await {
                            return self.write_failed(f).await;
                        }
                    }
                }
                Err(TryRecvError::Lagged(n)) => self.push_lag(n),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed(_)) => break,
            }
        }
        self.record(CloseKind::Shutdown);
        self.close(close_codes::GOING_AWAY, "server shutting down", false).await;
        CloseKind::Shutdown
    }
}

pub(crate) fn classify(e: WsError) -> ReadWhy {
    let close = |kind, code, reason| ReadWhy::Close { kind, code, reason, fatal: true };
    match e {
        WsError::Capacity(_) => close(CloseKind::TooBig, close_codes::TOO_BIG, "message too big"),
        WsError::Utf8(_) => close(CloseKind::InvalidUtf8, close_codes::INVALID_DATA, "invalid utf-8"),
        // EOF without a close frame: the peer is gone, nothing to answer.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ReadWhy::Gone(CloseKind::Reset),
        WsError::Protocol(_) => close(CloseKind::Protocol, close_codes::PROTOCOL, "protocol error"),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ReadWhy::Gone(CloseKind::Client),
        WsError::Io(e) => {
            tracing::debug!(error = %e, "read error");
            ReadWhy::Gone(CloseKind::Reset)
        }
        other => {
            tracing::debug!(error = %other, "read error");
            ReadWhy::Gone(CloseKind::Error)
        }
    }
}

/// After our close frame on a failed connection: closes our sending side
/// first (a FIN: RFC 6455, section 7.1.1, prefers that the server close the TCP
/// connection first), then reads and discards input until the client's EOF, at
/// most `limit`, so that unread input does not turn the close into a reset
/// that would destroy the close frame in flight.
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, limit: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection task's state is most of what an idle connection costs
    /// (with the ring, the read buffer and the socket). It was ~3.4 KiB as a
    /// reader and a writer task; this guards the budget of the single task.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let gw = Gateway::new(fanout_core::Hub::<Frame>::new(), crate::WsConfig::default()).unwrap();
        let (io, _peer) = tokio::io::duplex(64);
        let ws = WebSocketStream::from_raw_socket(
            io,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let sub = gw.inner.engine.subscribe().unwrap();
        let slot = gw.inner.limiter.try_acquire("127.0.0.1".parse().unwrap()).unwrap();
        let peer = "127.0.0.1:1".parse().unwrap();
        let task = run(gw.clone(), ws, sub, Permissions::anonymous(), peer, slot, gw.task_guard());
        let size = std::mem::size_of_val(&task);
        let conn = std::mem::size_of::<Conn<fanout_core::Hub<Frame>, tokio::io::DuplexStream>>();
        assert!(size <= 1536, "connection task state {size} bytes (the connection itself: {conn})");
        assert!(size < 3 * conn, "the task state holds the connection more than once: {size} vs {conn}");
    }
}
