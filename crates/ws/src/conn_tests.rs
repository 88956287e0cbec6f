//! A connection on tokio's paused clock: the slow-consumer policy by bytes
//! and time, and the rule that lets tungstenite and the frame writer share
//! one socket.
//!
//! A connection runs over an in-memory pipe (`tokio::io::duplex`, 4 KiB of
//! buffer: a socket whose peer reads only when the test says so), so that
//! time moves only when the test advances it. No sleeps, no timing
//! thresholds: the test reads a message, advances the clock, and checks what
//! the connection did.

use std::time::Duration;

use fanout_core::{Hub, Overflow};
use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::auth::Permissions;
use crate::conn::run;
use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::metrics::CloseKind;
use crate::WsConfig;

/// Size of each published payload.
const MSG: usize = 8 * 1024;

/// A budget of 64 KiB, over for 5 s at most; a socket may stall for 3 s.
fn config() -> WsConfig {
    WsConfig {
        max_queued_bytes: 64 * 1024,
        slow_consumer_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(3),
        ..WsConfig::default()
    }
}

/// A connection subscribed to `t` (the engine never evicts it: its ring is
/// large and drops the newest), and the client's end of its socket.
async fn connection() -> (Gateway<Hub<Frame>>, WebSocketStream<DuplexStream>, JoinHandle<()>) {
    let hub = Hub::builder().capacity(1024).overflow(Overflow::DropNewest).build().unwrap();
    let gw = Gateway::new(hub, config()).unwrap();
    let (server, client) = tokio::io::duplex(4096);
    let ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let sub = gw.inner.engine.subscribe().unwrap();
    gw.inner.engine.join(sub.id(), "t").unwrap();
    let slot = gw.inner.limiter.try_acquire("127.0.0.1".parse().unwrap()).unwrap();
    let peer = "127.0.0.1:1".parse().unwrap();
    let task = tokio::spawn(run(gw.clone(), ws, sub, Permissions::anonymous(), peer, slot, gw.task_guard()));
    (gw, client, task)
}

/// Publishes `n` messages and lets the connection take them: it queues them
/// up to its budget and writes what the pipe takes (one poll: the runtime
/// has one thread, so `yield_now` runs the woken connection first).
async fn publish(gw: &Gateway<Hub<Frame>>, n: usize) {
    for _ in 0..n {
        gw.publish_binary("t", &[7u8; MSG]).unwrap();
    }
    tokio::task::yield_now().await;
}

async fn next_push(client: &mut WebSocketStream<DuplexStream>) -> u64 {
    match client.next().await.unwrap().unwrap() {
        Message::Binary(b) => crate::frame::decode_binary(&b).unwrap().seq,
        other => panic!("expected a push, got {other:?}"),
    }
}

fn closed(gw: &Gateway<Hub<Frame>>, kind: CloseKind) -> u64 {
    gw.metrics().closed.iter().find(|(k, _)| *k == kind).map_or(0, |(_, v)| *v)
}

/// Over the byte budget for longer than `slow_consumer_timeout` → 4001 "slow
/// consumer", even though the socket takes bytes all along (so the write
/// timeout never fires): what was queued but not started is dropped.
#[tokio::test(start_paused = true)]
async fn over_the_budget_past_the_timeout_is_evicted() {
    let (gw, mut client, task) = connection().await;
    publish(&gw, 20).await; // 160 KiB: over the 64 KiB budget from now on
    let mut seq = 0;
    for _ in 0..4 {
        // One message a second: progress, still over the budget.
        seq = next_push(&mut client).await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(seq, 4);
    assert!(!task.is_finished(), "4 s over the budget: still connected");
    assert_eq!(closed(&gw, CloseKind::SlowConsumer), 0);
    // 5 s over the budget (the socket last took bytes 2 s ago, within the
    // 3 s write timeout).
    tokio::time::advance(Duration::from_secs(1)).await;
    // The frame in progress is finished, then the close frame.
    let close = loop {
        match client.next().await.unwrap().unwrap() {
            Message::Binary(b) => {
                seq = crate::frame::decode_binary(&b).unwrap().seq;
            }
            Message::Close(Some(f)) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), crate::close_codes::SLOW_CONSUMER);
    assert_eq!(close.reason.as_str(), "slow consumer");
    assert!(seq < 20, "queued frames not yet started were dropped (last seq {seq})");
    assert!(client.next().await.is_none(), "the close handshake completed");
    task.await.unwrap();
    assert_eq!(closed(&gw, CloseKind::SlowConsumer), 1);
}

/// A client that falls behind by more than the budget, but for less than the
/// timeout each time, is kept: the clock restarts once it catches up. It
/// reads slower than the write timeout would have allowed for a whole batch
/// (one message a second, 3 s write timeout, 20 messages in one batch): progress is what counts.
#[tokio::test(start_paused = true)]
async fn a_client_that_catches_up_in_time_is_kept() {
    let (gw, mut client, task) = connection().await;
    let mut expected = 1;
    for _round in 0..2 {
        publish(&gw, 20).await;
        for _ in 0..4 {
            assert_eq!(next_push(&mut client).await, expected);
            expected += 1;
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Catch up: the rest of the round, at once.
        while expected % 20 != 1 {
            assert_eq!(next_push(&mut client).await, expected);
            expected += 1;
        }
    }
    // 8 s over the budget in all, never 5 s in a row: still connected.
    assert!(!task.is_finished());
    assert_eq!(closed(&gw, CloseKind::SlowConsumer), 0);
    assert_eq!(closed(&gw, CloseKind::WriteTimeout), 0);
    assert_eq!(gw.inner.engine.stats().dropped.full, 0, "the ring never filled");
}

/// A socket that accepts nothing for the write timeout is dropped at once,
/// without a close frame, before the slow-consumer timeout.
#[tokio::test(start_paused = true)]
async fn a_socket_that_takes_nothing_is_dropped_after_the_write_timeout() {
    let (gw, _client, task) = connection().await;
    publish(&gw, 20).await;
    tokio::time::advance(Duration::from_millis(2_999)).await;
    assert!(!task.is_finished());
    tokio::time::advance(Duration::from_millis(2)).await;
    task.await.unwrap();
    assert_eq!(closed(&gw, CloseKind::WriteTimeout), 1);
    assert_eq!(closed(&gw, CloseKind::SlowConsumer), 0);
}

/// A ping from the client while a push is half written: tungstenite's pong
/// must not land inside the push's frame. The connection reads (and so lets
/// tungstenite write) only between frames, so the client sees the whole push,
/// then the pong; reading mid-frame would splice the pong into the payload
/// and the client would fail to parse the stream.
#[tokio::test(start_paused = true)]
async fn a_pong_never_lands_inside_a_push() {
    let (gw, mut client, _task) = connection().await;
    gw.publish_binary("t", &[9u8; 32 * 1024]).unwrap();
    tokio::task::yield_now().await; // the connection writes 4 KiB of it and waits
    client.send(Message::Ping(bytes::Bytes::from_static(b"hb"))).await.unwrap();
    tokio::task::yield_now().await;
    match client.next().await.unwrap().unwrap() {
        Message::Binary(b) => {
            let p = crate::frame::decode_binary(&b).unwrap();
            assert_eq!((p.seq, p.payload.len()), (1, 32 * 1024));
            assert!(p.payload.iter().all(|&x| x == 9), "the push arrived whole");
        }
        other => panic!("expected the push first, got {other:?}"),
    }
    match client.next().await.unwrap().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"hb"),
        other => panic!("expected the pong, got {other:?}"),
    }
}
