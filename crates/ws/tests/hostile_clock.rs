//! Hostile clients against the connection's clock: late pongs, silent peers,
//! tokens that expire mid-connection and their refresh (issue 14, items 6
//! and 11).
//!
//! Each test runs one connection over an in-memory duplex pipe
//! ([`Gateway::run_stream`]) under tokio's paused clock: when every task
//! waits, time jumps to the next timer, so "4 s later" and "at 52 s" are exact
//! and no test sleeps in real time. The client speaks raw WebSocket frames, so
//! that it decides when (and whether) a pong goes out.

use std::time::Duration;

use fanout_core::Hub;
use fanout_ws::tokio_tungstenite::tungstenite::protocol::Role;
use fanout_ws::tokio_tungstenite::WebSocketStream;
use fanout_ws::{codes, sign_hs256, verify_hs256, Frame, Gateway, Permissions, WsConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const SECRET: &str = "clock-test-secret-of-32-bytes-ok";
const PING: u8 = 0x9;
const CLOSE: u8 = 0x8;
const TEXT: u8 = 0x1;

/// One connection on a fresh gateway; the client's end of the pipe.
async fn connect(cfg: WsConfig, perms: Permissions) -> (Gateway<Hub<Frame>>, DuplexStream) {
    let gw = Gateway::new(Hub::<Frame>::new(), cfg).unwrap();
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let wscfg = gw.config().websocket_config();
    let g = gw.clone();
    tokio::spawn(async move {
        let ws = WebSocketStream::from_raw_socket(server_io, Role::Server, Some(wscfg)).await;
        g.run_stream(ws, "127.0.0.1:9".parse().unwrap(), perms).await;
    });
    (gw, client_io)
}

/// The next frame from the server: its opcode and payload (server frames are
/// not masked).
async fn read_frame(io: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.expect("a frame");
    let len = match head[1] & 0x7f {
        126 => usize::from(io.read_u16().await.unwrap()),
        127 => io.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.unwrap();
    (head[0] & 0x0f, body)
}

/// Writes one client frame (masked with a zero key, so the payload is as is).
async fn write_frame(io: &mut DuplexStream, opcode: u8, payload: &[u8]) {
    let mut f = vec![0x80 | opcode];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    io.write_all(&f).await.unwrap();
}

async fn call(io: &mut DuplexStream, id: u64, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    write_frame(io, TEXT, req.to_string().as_bytes()).await;
    loop {
        let (op, body) = read_frame(io).await;
        assert_eq!(op, TEXT, "expected the answer to {method}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        if v["id"] == id {
            return v;
        }
    }
}

fn close_code(body: &[u8]) -> u16 {
    u16::from_be_bytes([body[0], body[1]])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn perms_of(token: &str) -> Permissions {
    verify_hs256(token, SECRET.as_bytes(), unix_now()).unwrap().permissions()
}

/// Item 11. A client that answers each ping 4 s late keeps its connection
/// (the deadline is 12 s from the ping); once it stops answering, it is
/// closed with 4000 exactly 12 s after the ping it ignored. Before, the
/// deadline ran from the last pong (60 s since the last pong with pings every
/// 54 s left 6 s), and this client was closed at 12 s with 1008.
#[tokio::test(start_paused = true)]
async fn pong_deadline_runs_from_the_ping() {
    let cfg = WsConfig {
        ping_interval: Duration::from_secs(10),
        pong_timeout: Duration::from_secs(12),
        ..WsConfig::default()
    };
    let (gw, mut io) = connect(cfg, Permissions::anonymous()).await;
    let t0 = Instant::now();
    for k in 1..=3u64 {
        let (op, _) = read_frame(&mut io).await;
        assert_eq!(op, PING, "ping {k}, not a close: the late pongs were in time");
        assert_eq!(t0.elapsed(), Duration::from_secs(10 * k));
        tokio::time::sleep(Duration::from_secs(4)).await;
        write_frame(&mut io, 0xA, b"").await;
    }
    // Silent from now on: the ping at 40 s goes unanswered (the one at 50 s
    // too: the deadline still runs from the first).
    for at in [40, 50] {
        let (op, _) = read_frame(&mut io).await;
        assert_eq!((op, t0.elapsed()), (PING, Duration::from_secs(at)));
    }
    let (op, body) = read_frame(&mut io).await;
    assert_eq!(op, CLOSE);
    assert_eq!(close_code(&body), 4000);
    assert_eq!(&body[2..], b"heartbeat timeout");
    assert_eq!(t0.elapsed(), Duration::from_secs(52), "12 s after the unanswered ping");
    let m = gw.metrics();
    assert_eq!(m.closed.iter().find(|(k, _)| k.as_str() == "heartbeat").unwrap().1, 1);
}

/// Pings far apart, so that only the token's clock matters.
fn quiet() -> WsConfig {
    WsConfig {
        jwt_secret: Some(SECRET.into()),
        ping_interval: Duration::from_secs(1000),
        pong_timeout: Duration::from_secs(1001),
        ..WsConfig::default()
    }
}

/// Item 6. A token that expires 30 s into the connection ends it then, with
/// 4002 ("refresh and reconnect"); before, it kept its rights for the whole
/// connection (the next frame was the ping at 1,000 s).
#[tokio::test(start_paused = true)]
async fn expired_token_closes_4002_at_exp() {
    let token =
        sign_hs256(&json!({"sub": "u", "exp": unix_now() + 30, "subscribe": ["*"]}), SECRET.as_bytes());
    let (gw, mut io) = connect(quiet(), perms_of(&token)).await;
    let t0 = Instant::now();
    let (op, body) = read_frame(&mut io).await;
    assert_eq!(op, CLOSE, "closed at expiry, before any ping");
    assert_eq!(close_code(&body), 4002);
    assert_eq!(&body[2..], b"token expired");
    // `exp` has a resolution of 1 s, and the wall clock may tick between
    // signing and connecting.
    let at = t0.elapsed();
    assert!(at >= Duration::from_secs(29) && at <= Duration::from_secs(30), "{at:?}");
    let m = gw.metrics();
    assert_eq!(m.closed.iter().find(|(k, _)| k.as_str() == "token_expired").unwrap().1, 1);
}

/// Item 6. `refresh` with a newer token moves the deadline and replaces the
/// permissions: a topic the new token does not grant is left (and named);
/// a token for another subject, or a bad one, is refused with -32005 and
/// changes nothing. Before, `refresh` did not exist (-32601).
#[tokio::test(start_paused = true)]
async fn refresh_replaces_permissions_and_moves_the_deadline() {
    let sign = |c: Value| sign_hs256(&c, SECRET.as_bytes());
    let first = sign(json!({"sub": "u", "exp": unix_now() + 30, "subscribe": ["a.*", "b.*"]}));
    let (gw, mut io) = connect(quiet(), perms_of(&first)).await;
    let t0 = Instant::now();
    for (i, t) in ["a.1", "b.1"].into_iter().enumerate() {
        let r = call(&mut io, i as u64, "subscribe", json!({"topic": t})).await;
        assert_eq!(r["result"]["joined"], true, "{r}");
    }
    // Refused: another subject, a forged token, a token without params.
    let other = sign(json!({"sub": "v", "exp": unix_now() + 100, "subscribe": ["*"]}));
    let forged = sign_hs256(&json!({"sub": "u", "subscribe": ["*"]}), b"not-the-secret-not-the-secret-!!");
    for (id, tok) in [(10, other), (11, forged), (12, "garbage".to_string())] {
        let r = call(&mut io, id, "refresh", json!({"token": tok})).await;
        assert_eq!(r["error"]["code"], -32005, "{r}");
    }
    let exp = unix_now() + 100;
    let second = sign(json!({"sub": "u", "exp": exp, "subscribe": ["a.*"]}));
    let r = call(&mut io, 20, "refresh", json!([second])).await;
    assert_eq!(r["result"], json!({"expires": exp, "left": ["b.1"]}), "{r}");
    let r = call(&mut io, 21, "subscribe", json!({"topic": "b.2"})).await;
    assert_eq!(r["error"]["code"], codes::PERMISSION_DENIED, "the new token's rights only");
    // Past the first token's expiry, the connection still receives.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let p = serde_json::value::to_raw_value(&1).unwrap();
    assert_eq!(gw.publish_json("b.1", &p).unwrap().recipients, 0, "b.1 was left");
    assert_eq!(gw.publish_json("a.1", &p).unwrap().recipients, 1);
    let (op, push) = read_frame(&mut io).await;
    assert_eq!(op, TEXT, "{:?}", String::from_utf8_lossy(&push));
    assert_eq!(serde_json::from_slice::<Value>(&push).unwrap()["topic"], "a.1");
    assert_eq!(call(&mut io, 22, "ping", Value::Null).await["result"], "pong");
    // And it closes at the second token's expiry.
    let (op, body) = read_frame(&mut io).await;
    assert_eq!((op, close_code(&body)), (CLOSE, 4002));
    let at = t0.elapsed();
    assert!(at >= Duration::from_secs(99) && at <= Duration::from_secs(100), "{at:?}");
}

/// Item 12. A forced drain is honoured: a client that reads a trickle (one
/// message every 5 s) with 100 messages queued is still in its graceful drain
/// when the drain timeout (100 s) passes; the connection then ends at its next
/// write batch. Before, each batch got a fresh write timeout and the
/// connection went on for its whole queue (~500 s), past the forced drain.
#[tokio::test(start_paused = true)]
async fn forced_drain_stops_a_trickling_connection() {
    let cfg = WsConfig {
        max_batch: 1,
        ping_interval: Duration::from_secs(1000),
        pong_timeout: Duration::from_secs(1001),
        ..WsConfig::default()
    };
    let (gw, io) = connect(cfg, Permissions::anonymous()).await;
    let (mut rd, mut wr) = tokio::io::split(io);
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["t"]}).to_string();
    let mut f = vec![0x81, 0x80 | req.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(req.as_bytes());
    wr.write_all(&f).await.unwrap();
    let mut b = vec![0u8; 256];
    let n = rd.read(&mut b).await.unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).contains("\"joined\":true"));
    let p = serde_json::value::to_raw_value(&"x".repeat(1000)).unwrap();
    for _ in 0..100 {
        assert_eq!(gw.publish_json("t", &p).unwrap().delivered, 1);
    }
    let reader = tokio::spawn(async move {
        let mut b = vec![0u8; 1100];
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if matches!(rd.read(&mut b).await, Ok(0) | Err(_)) {
                return;
            }
        }
    });
    let g = gw.clone();
    let shutdown = tokio::spawn(async move { g.shutdown(Duration::from_secs(100)).await });
    let t0 = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(150), gw.wait_idle()).await;
    assert!(ended.is_ok(), "still draining its queue at {:?}, past the forced drain", t0.elapsed());
    assert!(!shutdown.await.unwrap().graceful);
    reader.await.unwrap();
    drop(wr);
}
