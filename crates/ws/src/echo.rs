//! The echo route (`echo_path`, off unless configured): every text or binary
//! frame goes back as it came. It exists for protocol conformance tests
//! (`scripts/autobahn.sh` runs the Autobahn suite against it) and is never
//! enabled in production.
//!
//! It runs its frames through the connections' frame writer (`writer.rs`)
//! and shares the socket with tungstenite's pongs and close frames exactly
//! as a client connection does (`conn.rs`), so that the suite checks the
//! write path that pushes take; it has no engine subscriber, no session and
//! no heartbeat of its own.

use std::net::SocketAddr;

use bytes::Bytes;
use fanout_core::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::close_codes;
use crate::conn::{classify, close_frame, linger, write_all, ReadWhy, WriteFail};
use crate::frame::Frame;
use crate::gateway::{Gateway, Phase};
use crate::limits::Slot;
use crate::metrics::CloseKind;
use crate::writer::{opcode, Writer};

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
    // Empty whenever the loop reads: each echo is written in full first.
    let mut writer = Writer::default();
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
                    // Through the connections' frame writer, so that the
                    // Autobahn suite (scripts/autobahn.sh, on this route)
                    // checks its frames and its sharing of the socket with
                    // tungstenite's pongs and close frames.
                    match m {
                        Message::Text(t) => writer.push_bytes(opcode::TEXT, Bytes::from(t)),
                        Message::Binary(b) => writer.push_bytes(opcode::BINARY, b),
                        _ => unreachable!("matched above"),
                    }
                    let k = match write_all(&mut ws, &mut writer, wt, usize::MAX, &inner.metrics).await {
                        Ok(()) => continue,
                        Err(WriteFail::Io) => CloseKind::Client,
                        Err(WriteFail::Timeout) => CloseKind::WriteTimeout,
                        Err(WriteFail::Forced) => CloseKind::Shutdown,
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
