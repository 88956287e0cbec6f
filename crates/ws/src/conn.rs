//! One connection: one task that reads requests and writes pushes.
//!
//! # One task, one wait
//!
//! A connection is a single task that owns the WebSocket stream, the engine
//! subscriber and the client's session. It waits on whichever comes first:
//!
//! - the engine: `recv_many` hands it up to `max_batch` messages; it feeds them
//!   all to tungstenite (which buffers up to `write_buffer_size`) and flushes
//!   once, so a batch costs one write syscall when it fits the buffer. The batch
//!   must be written and flushed within `write_timeout`, or the connection is
//!   dropped as a slow consumer (no close frame: the socket is stuck);
//! - a frame from the client: a request is handled in place (subscribe,
//!   publish, …), and so is every further frame already buffered, up to
//!   `max_batch` replies, which are then written at once. While it writes, it
//!   does not read: a client that sends faster than its replies drain is held
//!   back by TCP. The rate limit and the close codes for bad input (too big →
//!   1009, bad UTF-8 → 1007, protocol → 1002) are enforced here;
//! - the gateway leaving `Running`: on drain, it takes what its queue still
//!   holds (`try_recv` until empty), writes it, and closes with 1001;
//! - the heartbeat timer: one timer for the next ping, the pong deadline
//!   (close 4000 when no pong came within `pong_timeout` of the first
//!   unanswered ping) and the token's expiry (close 4002 at `exp` unless a
//!   `refresh` moved it).
//!
//! A `Lagged(n)` from the engine becomes a `{"lagged":n,"topic":…}` text frame
//! at that point of the stream. A close by the engine (`SlowConsumer`, `Kicked`,
//! `Shutdown`) comes after the queue is drained and becomes a close frame.
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
//! task's state is 1,480 bytes (`a_connection_task_stays_small`) where the
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
//! wake), and the write timeout's timer is armed only when a write does not
//! complete at once. The rarely taken paths (drain, close handshakes, write
//! failures) are boxed, so that their state does not enlarge every idle
//! connection's task.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use fanout_core::{CloseReason, Engine, Message as EngineMessage, Receiver, RecvError, TryRecvError};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::Permissions;
use crate::close_codes;
use crate::frame::{lag_notice, Frame};
use crate::gateway::{Gateway, Phase, TaskGuard};
use crate::limits::Slot;
use crate::metrics::CloseKind;
use crate::rpc::Session;

/// Engine batches in a row after which the other sources are polled first.
const FAIR_EVERY: u32 = 16;

/// What ended a read, or what it asks for.
enum ReadWhy {
    /// The client closed, or the socket failed.
    Gone(CloseKind),
    /// We close, with this code. `fatal`: the stream cannot be read as WebSocket
    /// frames any more (after a read error).
    Close { kind: CloseKind, code: u16, reason: &'static str, fatal: bool },
}

enum WriteFail {
    Timeout,
    Io,
}

/// What woke the connection.
enum Event {
    Engine(Result<usize, RecvError>),
    /// The gateway left `Running`.
    Phase,
    Read(Option<Result<Message, WsError>>),
    /// Time to ping, or to check the pong deadline.
    Heartbeat,
}

fn close_frame(code: u16, reason: &'static str) -> Message {
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
    gw.inner.metrics.opened();
    let id = sub.id();
    tracing::debug!(%peer, client = id.get(), subject = perms.subject.as_deref(), "connected");
    let conn = Conn {
        session: Session::new(gw, id, perms, slot),
        ws,
        sub,
        // Grown on first use: an idle connection keeps no batch buffers.
        buf: Vec::new(),
        out: Vec::new(),
        reading: true,
        unanswered_ping: None,
        recorded: false,
        peer,
        _guard: guard,
    };
    conn.run()
}

struct Conn<E: Engine<Frame>, S> {
    ws: WebSocketStream<S>,
    sub: E::Subscriber,
    /// The client's subscriptions and permissions; holds the gateway.
    session: Session<E>,
    /// Messages taken from the engine, not yet written.
    buf: Vec<EngineMessage<Frame>>,
    /// Frames to write: pushes, replies, pings, a close.
    out: Vec<Message>,
    /// False once the stream ended (the client closed, or a read failed).
    reading: bool,
    /// When the first ping since the last pong was sent: the pong deadline is
    /// measured from it (`None`: every ping was answered).
    unanswered_ping: Option<tokio::time::Instant>,
    /// The close reason was counted.
    recorded: bool,
    peer: SocketAddr,
    /// Held for the connection's life: its count among the gateway's live
    /// tasks (its place under the connection caps is in `session`).
    _guard: TaskGuard<E>,
}

/// `run` counted the connection open when it built it; it is counted ended
/// when it is dropped, so that the gauge stays right if the future is dropped
/// before it completes (a cancelled `run_stream`, a runtime shutting down).
impl<E: Engine<Frame>, S> Drop for Conn<E, S> {
    fn drop(&mut self) {
        self.session.gateway.inner.metrics.ended();
    }
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
            let kind = self.serve().await;
            self.record(kind);
            tracing::debug!(peer = %self.peer, client = self.session.id.get(), reason = kind.as_str(), "disconnected");
        }
    }

    async fn serve(&mut self) -> CloseKind {
        let start = tokio::time::Instant::now();
        let cfg = &self.gw().inner.config;
        let (ping_every, pong_timeout, max_batch) = (cfg.ping_interval, cfg.pong_timeout, cfg.max_batch);
        let mut phase = self.gw().inner.phase.subscribe();
        if *phase.borrow_and_update() != Phase::Running {
            return Box::pin(self.drain()).await;
        }
        // Registered with the watch once, for the life of the connection.
        let mut left_running = pin!(async move {
            let _ = phase.wait_for(|p| *p != Phase::Running).await;
        });
        let mut next_ping = start + ping_every;
        let mut heartbeat = pin!(tokio::time::sleep_until(self.next_wake(next_ping, pong_timeout)));
        let mut streak = 0;
        loop {
            let event = if streak < FAIR_EVERY {
                tokio::select! {
                    biased;
                    r = self.sub.recv_many(&mut self.buf, max_batch) => Event::Engine(r),
                    () = &mut left_running => Event::Phase,
                    m = self.ws.next(), if self.reading => Event::Read(m),
                    () = &mut heartbeat => Event::Heartbeat,
                }
            } else {
                tokio::select! {
                    biased;
                    () = &mut left_running => Event::Phase,
                    m = self.ws.next(), if self.reading => Event::Read(m),
                    () = &mut heartbeat => Event::Heartbeat,
                    r = self.sub.recv_many(&mut self.buf, max_batch) => Event::Engine(r),
                }
            };
            // A lag notice counts as a batch: a connection whose queue
            // overflows alternates lag and messages, and must not starve the
            // other sources either.
            streak = match event {
                Event::Engine(Ok(_) | Err(RecvError::Lagged(_))) if streak < FAIR_EVERY => streak + 1,
                _ => 0,
            };
            match event {
                Event::Engine(Ok(_)) => {
                    self.out.extend(self.buf.drain(..).map(|m| m.payload().to_message()));
                    if let Err(f) = self.write_out().await {
                        return Box::pin(self.write_failed(f)).await;
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
                    // A `refresh` may have moved the expiry before the armed wake.
                    if let Some(exp) = self.session.expires {
                        if exp < heartbeat.deadline() {
                            heartbeat.as_mut().reset(exp);
                        }
                    }
                }
                Event::Heartbeat => {
                    let now = tokio::time::Instant::now();
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
                        self.out.push(Message::Ping(bytes::Bytes::new()));
                        if let Err(f) = self.write_out().await {
                            return Box::pin(self.write_failed(f)).await;
                        }
                        next_ping = now + ping_every;
                        self.unanswered_ping.get_or_insert(now);
                    }
                    heartbeat.as_mut().reset(self.next_wake(next_ping, pong_timeout));
                }
            }
        }
    }

    /// Handles `first` and every further frame already buffered (up to
    /// `max_batch` frames), then writes the replies at once. `Some` when the
    /// connection ends.
    async fn on_read(&mut self, first: Option<Result<Message, WsError>>) -> Option<CloseKind> {
        let max_batch = self.gw().inner.config.max_batch;
        let mut next = first;
        // Frames, not replies, are counted: a client sending frames that need
        // no answer (binary publishes, notifications) must not keep the task
        // reading while its own queue and heartbeat wait.
        let mut handled = 0;
        loop {
            match self.on_frame(next) {
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
            match self.ws.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if let Err(f) = self.write_out().await {
            return Some(Box::pin(self.write_failed(f)).await);
        }
        None
    }

    /// One frame from the client: a reply goes to `out`.
    fn on_frame(&mut self, m: Option<Result<Message, WsError>>) -> Option<ReadWhy> {
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
                    Message::Text(t) => self.session.handle_text(t.as_str()),
                    Message::Binary(b) => self.session.handle_binary(b),
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
            // tungstenite answers pings and closes itself; after a close the
            // stream ends.
            Message::Ping(_) | Message::Close(_) | Message::Frame(_) => None,
        };
        if let Some(r) = reply {
            self.out.push(Message::Text(r.into()));
        }
        None
    }

    /// The heartbeat timer's next wake: the next ping, the pong deadline of
    /// the first unanswered ping, or the token's expiry, whichever is first.
    fn next_wake(&self, next_ping: tokio::time::Instant, pong_timeout: Duration) -> tokio::time::Instant {
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
        self.out.push(lag_notice(n, self.session.sole_topic.as_deref()));
    }

    /// Feeds every frame of `out`, then flushes once, within the write timeout.
    /// The timeout's timer is made only when the write does not finish at once.
    async fn write_out(&mut self) -> Result<(), WriteFail> {
        let n = self.out.len();
        if n == 0 {
            return Ok(());
        }
        let bytes: usize = self.out.iter().map(Message::len).sum();
        let write_timeout = self.gw().inner.config.write_timeout;
        let r = {
            // The sink driven by hand (not `feed` futures): a smaller state.
            let (ws, out) = (&mut self.ws, &mut self.out);
            let mut fed = 0;
            let mut write = std::future::poll_fn(move |cx| {
                while fed < out.len() {
                    std::task::ready!(ws.poll_ready_unpin(cx))?;
                    ws.start_send_unpin(std::mem::replace(
                        &mut out[fed],
                        Message::Binary(bytes::Bytes::new()),
                    ))?;
                    fed += 1;
                }
                ws.poll_flush_unpin(cx)
            });
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut write).poll(cx))).await {
                Poll::Ready(r) => Ok(r),
                Poll::Pending => tokio::time::timeout(write_timeout, write).await,
            }
        };
        self.out.clear();
        match r {
            Ok(Ok(())) => {
                self.gw().inner.metrics.batch(n, bytes);
                Ok(())
            }
            Ok(Err(_)) => Err(WriteFail::Io),
            Err(_) => Err(WriteFail::Timeout),
        }
    }

    async fn write_failed(&mut self, f: WriteFail) -> CloseKind {
        match f {
            WriteFail::Timeout => {
                tracing::debug!("write timeout: dropping slow consumer");
                CloseKind::WriteTimeout
            }
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

    /// Writes what `out` holds and a close frame, then waits (at most the close
    /// timeout) for the client's close. `fatal`: the input cannot be read as
    /// frames any more, so it lingers on the raw socket instead (see [`linger`]).
    async fn close(&mut self, code: u16, reason: &'static str, fatal: bool) {
        self.out.push(close_frame(code, reason));
        if self.write_out().await.is_err() {
            return;
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
                    self.out.push(m.payload().to_message());
                    if self.out.len() >= max_batch {
                        // A forced drain ends it between batches (each batch
                        // would otherwise get a fresh write timeout).
                        if *self.gw().inner.phase.borrow() == Phase::Forced {
                            return CloseKind::Shutdown;
                        }
                        if let Err(f) = self.write_out().await {
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

fn classify(e: WsError) -> ReadWhy {
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
