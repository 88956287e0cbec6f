//! Integration tests: every feature and limit of the transport, over real
//! sockets on 127.0.0.1:0 with tokio-tungstenite clients. No sleeps stand in for
//! a signal, and no test asserts a timing threshold.

mod common;

use std::time::Duration;

use common::*;
use fanout_baseline::MutexHub;
use fanout_core::{Engine, Overflow, SubscriberId};
use fanout_ws::tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use fanout_ws::tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use fanout_ws::tokio_tungstenite::tungstenite::Message;
use fanout_ws::{close_codes, codes, sign_hs256, CloseKind, Frame, RateLimit, Rejection, WsConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A JWT secret of the minimum length (32 bytes).
const SECRET: &str = "test-secret-test-secret-test-sec";

fn publisher_token(secret: &str) -> String {
    sign_hs256(&json!({"sub": "pub", "subscribe": ["*"], "publish": ["*"]}), secret.as_bytes())
}

fn closed(gw_metrics: &fanout_ws::MetricsSnapshot, kind: CloseKind) -> u64 {
    gw_metrics.closed.iter().find(|(k, _)| *k == kind).map_or(0, |(_, v)| *v)
}

fn rejected(gw_metrics: &fanout_ws::MetricsSnapshot, r: Rejection) -> u64 {
    gw_metrics.rejected.iter().find(|(k, _)| *k == r).map_or(0, |(_, v)| *v)
}

// ---------------------------------------------------------------- protocol --

/// Publish over WS reaches every subscriber with consecutive seqs; the
/// envelope has the documented fields. Run against both engines.
async fn publish_reaches_subscribers<E: Engine<Frame>>(engine: E) {
    let cfg = WsConfig { jwt_secret: Some(SECRET.into()), ..WsConfig::default() };
    let srv = start(engine, cfg).await;
    let auth = format!("Bearer {}", publisher_token(SECRET));
    let mut subs = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = try_connect(srv.addr, "/ws", &[("authorization", &auth)], false).await.unwrap();
        subscribe(&mut ws, "news").await;
        subs.push(ws);
    }
    let (mut publisher, _) = try_connect(srv.addr, "/ws", &[("authorization", &auth)], false).await.unwrap();
    for i in 1..=20u64 {
        let r = call(&mut publisher, i, "publish", json!({"topic": "news", "payload": {"n": i}})).await;
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["result"]["recipients"], 3, "{r}");
        assert_eq!(r["result"]["delivered"], 3);
        assert_eq!(r["result"]["dropped"], 0);
        assert_eq!(r["result"]["seq"], i);
    }
    for ws in &mut subs {
        let first_epoch = {
            let m = next_json(ws).await;
            assert_eq!(m["seq"], 1);
            assert!(m.get("id").is_none(), "pushes carry no id");
            m["epoch"].clone()
        };
        for i in 2..=20u64 {
            let m = next_json(ws).await;
            assert_eq!(m["topic"], "news");
            assert_eq!(m["seq"], i, "consecutive seqs");
            assert_eq!(m["epoch"], first_epoch);
            assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
            assert_eq!(m["payload"], json!({"n": i}));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscribers_fanout() {
    publish_reaches_subscribers(hub()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscribers_mutex() {
    publish_reaches_subscribers(MutexHub::<Frame>::new()).await;
}

/// Every JSON-RPC error code the gateway can answer, against both engines.
async fn rpc_errors<E: Engine<Frame>>(engine: E) {
    let srv = start(engine, WsConfig { max_topic_len: 16, ..WsConfig::default() }).await;
    let mut ws = connect(srv.addr).await;

    send_text(&mut ws, "{not json").await;
    let r = next_json(&mut ws).await;
    assert_eq!(r["error"]["code"], codes::PARSE_ERROR);
    assert_eq!(r["id"], Value::Null);

    send(&mut ws, json!({"jsonrpc": "1.0", "id": 1, "method": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], codes::INVALID_REQUEST);
    send(&mut ws, json!(42)).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], codes::INVALID_REQUEST);
    send(&mut ws, json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], codes::INVALID_REQUEST);

    let r = call(&mut ws, 2, "frobnicate", json!({})).await;
    assert_eq!(r["error"]["code"], codes::METHOD_NOT_FOUND);
    let r = call(&mut ws, 3, "subscribe", json!({"nope": 1})).await;
    assert_eq!(r["error"]["code"], codes::INVALID_PARAMS);
    let r = call(&mut ws, 4, "subscribe", json!({"topic": "bad topic"})).await;
    assert_eq!(r["error"]["code"], codes::INVALID_PARAMS);
    let r = call(&mut ws, 5, "subscribe", json!({"topic": "a-much-too-long-topic-name"})).await;
    assert_eq!(r["error"]["code"], codes::INVALID_PARAMS);
    let r = call(&mut ws, 6, "subscribe", json!({"topic": "$other"})).await;
    assert_eq!(r["error"]["code"], codes::INVALID_PARAMS);
    // Anonymous: may subscribe, may not publish.
    let r = call(&mut ws, 7, "publish", json!({"topic": "news", "payload": 1})).await;
    assert_eq!(r["error"]["code"], codes::PERMISSION_DENIED);
    let r = call(&mut ws, 8, "subscribe", json!(["news"])).await;
    let res = &r["result"];
    assert_eq!(
        (&res["topic"], &res["subscribed"], &res["joined"]),
        (&json!("news"), &json!(true), &json!(true))
    );
    assert_eq!(res["seq"], 0, "the topic's position comes with the result: {r}");
    assert!(res["epoch"].is_u64(), "{r}");
    let r = call(&mut ws, 9, "subscribe", json!({"topic": "news"})).await;
    assert_eq!(r["result"]["joined"], false);
    let r = call(&mut ws, 10, "unsubscribe", json!({"topic": "news"})).await;
    assert_eq!(r["result"], json!({"topic": "news", "subscribed": false, "left": true}));
    let r = call(&mut ws, 11, "ping", Value::Null).await;
    assert_eq!(r["result"], "pong");
    let r = call(&mut ws, 12, "subscribe", json!({"topic": "$sys.stats"})).await;
    assert_eq!(r["result"]["subscribed"], true, "anonymous may subscribe to $sys topics");

    // A notification gets no answer, not even an error: the next frame is the ping's.
    send(&mut ws, json!({"jsonrpc": "2.0", "method": "frobnicate"})).await;
    send(&mut ws, json!({"jsonrpc": "2.0", "method": "subscribe", "params": {"topic": "n2"}})).await;
    let r = call(&mut ws, 13, "ping", json!([])).await;
    assert_eq!(r["result"], "pong");

    // A batch answers its requests in one array.
    send_text(
        &mut ws,
        r#"[{"jsonrpc":"2.0","id":20,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":21,"method":"nope"}]"#,
    )
    .await;
    let r = next_json(&mut ws).await;
    let arr = r.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["result"], "pong");
    assert_eq!(arr[1]["error"]["code"], codes::METHOD_NOT_FOUND);
    send_text(&mut ws, "[]").await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], codes::INVALID_REQUEST);
    assert!(srv.gw.metrics().rpc_errors >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_errors_fanout() {
    rpc_errors(hub()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_errors_mutex() {
    rpc_errors(MutexHub::<Frame>::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_reaches_one_connection() {
    let srv = start(hub(), WsConfig::default()).await;
    let (mut a, id_a) = connect_id(srv.addr, false).await;
    let (mut b, id_b) = connect_id(srv.addr, false).await;
    assert_ne!(id_a, id_b);
    let p = serde_json::value::to_raw_value(&json!({"to": "b"})).unwrap();
    srv.gw.send_json_to(SubscriberId::new(id_b), &p).unwrap();
    let m = next_json(&mut b).await;
    assert_eq!(m["topic"], Value::Null);
    assert_eq!(m["seq"], 0);
    assert_eq!(m["payload"], json!({"to": "b"}));
    // a got nothing: its next frame is the answer to its ping.
    assert_eq!(call(&mut a, 1, "ping", Value::Null).await["result"], "pong");
    assert!(srv.gw.send_json_to(SubscriberId::new(999_999), &p).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_publish_and_push() {
    let srv = start(hub(), WsConfig { jwt_secret: Some(SECRET.into()), ..WsConfig::default() }).await;
    let tok = publisher_token(SECRET);
    let (mut sub, _) = try_connect(srv.addr, &format!("/ws?token={tok}"), &[], false).await.unwrap();
    subscribe(&mut sub, "bin").await;
    let (mut publisher, _) = try_connect(srv.addr, &format!("/ws?token={tok}"), &[], false).await.unwrap();
    let mut frame = vec![3u8];
    frame.extend_from_slice(b"bin");
    frame.extend_from_slice(&[0, 1, 2, 255]);
    publisher.send(Message::Binary(frame.into())).await.unwrap();
    let m = loop {
        match sub.next().await.unwrap().unwrap() {
            Message::Binary(b) => break b,
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    };
    let p = fanout_ws::frame::decode_binary(&m).unwrap();
    assert_eq!((p.topic, p.seq, p.payload), ("bin", 1, &[0u8, 1, 2, 255][..]));
    // Reserved topics are refused for binary publishes too.
    let mut frame = vec![10u8];
    frame.extend_from_slice(b"$sys.stats");
    publisher.send(Message::Binary(frame.into())).await.unwrap();
    assert_eq!(next_json(&mut publisher).await["error"]["code"], codes::PERMISSION_DENIED);
}

// ---------------------------------------------------------------- delivery --

/// Under DropOldest a client whose socket is full loses the oldest messages and
/// is told how many, at the point of the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_notice_under_drop_oldest() {
    let srv = start(hub_with(4, Overflow::DropOldest), WsConfig::default()).await;
    let (mut ws, _) = connect_id(srv.addr, true).await;
    subscribe(&mut ws, "t").await;
    // 64 KiB payloads: 150 of them (9.6 MB) overflow the socket buffers (4 MiB
    // at most on the server side), so the writer blocks and the ring overflows.
    let big = serde_json::value::to_raw_value(&"x".repeat(64 * 1024)).unwrap();
    let n = 150u64;
    for _ in 0..n {
        srv.gw.publish_json("t", &big).unwrap();
    }
    let (mut expected, mut lagged_total, mut notices, mut gaps) = (1u64, 0u64, 0, 0u64);
    loop {
        let m = next_json(&mut ws).await;
        if let Some(l) = m.get("lagged") {
            assert_eq!(m["topic"], "t");
            lagged_total += l.as_u64().unwrap();
            notices += 1;
            continue;
        }
        let seq = m["seq"].as_u64().unwrap();
        assert!(seq >= expected);
        gaps += seq - expected;
        expected = seq + 1;
        if seq == n {
            break;
        }
    }
    assert!(notices >= 1, "a lag notice was sent");
    assert_eq!(gaps, lagged_total, "every missing seq is accounted for by a lag notice");
    assert_eq!(srv.gw.metrics().lagged_messages, lagged_total);
}

/// A client that stops reading is evicted (its socket blocks, its ring fills);
/// a fast client on the same topic receives every message meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_evicted_others_keep_receiving() {
    let srv = start(hub_with(8, Overflow::Evict), WsConfig::default()).await;
    let (mut slow, _) = connect_id(srv.addr, true).await;
    subscribe(&mut slow, "t").await;
    let (mut fast, _) = connect_id(srv.addr, false).await;
    subscribe(&mut fast, "t").await;
    let big = serde_json::value::to_raw_value(&"y".repeat(64 * 1024)).unwrap();
    let mut published = 0u64;
    for i in 1..=2_000u64 {
        srv.gw.publish_json("t", &big).unwrap();
        published = i;
        let m = next_json(&mut fast).await;
        assert_eq!(m["seq"], i, "the fast client misses nothing");
        if srv.gw.engine().stats().evicted.slow_consumer == 1 {
            break;
        }
    }
    assert_eq!(srv.gw.engine().stats().evicted.slow_consumer, 1, "the slow client was evicted");
    // More traffic still reaches the fast one.
    for i in published + 1..=published + 5 {
        let r = srv.gw.publish_json("t", &big).unwrap();
        assert_eq!(r.recipients, 1);
        assert_eq!(next_json(&mut fast).await["seq"], i);
    }
    // The slow client gets what was queued before the eviction, in order, then 4001.
    // (A lag notice may come before the close: the message that did not fit.)
    let mut expected = 1;
    let f = loop {
        match slow.next().await.unwrap().unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v.get("lagged").is_some() {
                    continue;
                }
                assert_eq!(v["seq"], expected);
                expected += 1;
            }
            Message::Close(Some(f)) => break f,
            _ => {}
        }
    };
    assert_eq!(code(&f), close_codes::SLOW_CONSUMER);
    assert_eq!(f.reason.as_str(), "slow consumer");
    assert!(expected > 1 && expected <= published);
}

/// A write that does not complete within the write timeout drops the
/// connection as a slow consumer (no close frame: the socket is stuck).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_drops_stuck_connection() {
    let cfg = WsConfig { write_timeout: Duration::from_millis(100), ..WsConfig::default() };
    let srv = start(hub_with(1024, Overflow::DropNewest), cfg).await;
    let (mut stuck, _) = connect_id(srv.addr, true).await;
    subscribe(&mut stuck, "t").await;
    let big = serde_json::value::to_raw_value(&"w".repeat(64 * 1024)).unwrap();
    for _ in 0..150 {
        srv.gw.publish_json("t", &big).unwrap();
    }
    // The client reads nothing: the writer's batch cannot complete. Wait for
    // the server to drop the connection (its task ends).
    srv.gw.wait_idle().await;
    assert_eq!(srv.gw.connections(), 0);
    // What the kernel had buffered still arrives, then the stream ends without
    // a close frame.
    loop {
        match stuck.next().await {
            Some(Ok(Message::Close(_))) => panic!("no close frame on a write timeout"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(closed(&srv.gw.metrics(), CloseKind::WriteTimeout), 1);
}

/// A batch larger than one message is written with one flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_batches() {
    let srv = start(hub(), WsConfig { max_batch: 16, ..WsConfig::default() }).await;
    let (mut slow, _) = connect_id(srv.addr, true).await;
    subscribe(&mut slow, "t").await;
    let big = serde_json::value::to_raw_value(&"z".repeat(32 * 1024)).unwrap();
    for _ in 0..200 {
        srv.gw.publish_json("t", &big).unwrap();
    }
    for i in 1..=200u64 {
        assert_eq!(next_json(&mut slow).await["seq"], i);
    }
    let h = srv.gw.metrics().write_batch;
    let single = h.buckets[0].1;
    assert!(h.count > single, "some batches held more than one message: {h:?}");
    assert!(h.buckets.iter().find(|(le, _)| *le == 16.0).unwrap().1 == h.count, "no batch above max_batch");
}

/// Requests that arrive together are answered together: the connection handles
/// every frame already buffered before it writes, so 20 pipelined requests
/// (one TCP write from the client) do not cost 20 writes.
#[tokio::test]
async fn pipelined_requests_share_a_write() {
    let srv = start(hub(), WsConfig { read_buffer_size: 4096, ..WsConfig::default() }).await;
    let mut ws = connect(srv.addr).await;
    for id in 1..=20u64 {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string();
        ws.feed(Message::Text(req.into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for id in 1..=20u64 {
        assert_eq!(next_json(&mut ws).await["id"], id, "replies in request order");
    }
    let h = srv.gw.metrics().write_batch;
    assert!(h.count < 20, "20 replies took {} writes: {h:?}", h.count);
}

// --------------------------------------------------------------- heartbeat --

/// A client that answers pings stays connected past several pong timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_answered_keeps_connection() {
    // Pings every 20 ms, each answered; the pong deadline is long (5 s from
    // each ping) so that a test thread stalled by a loaded machine cannot
    // turn an answered heartbeat into a timeout (it was 60 ms: flaky).
    let cfg = WsConfig {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_secs(5),
        ..WsConfig::default()
    };
    let srv = start(hub(), cfg).await;
    let mut ws = connect(srv.addr).await;
    let mut pings = 0;
    while pings < 10 {
        match ws.next().await.unwrap().unwrap() {
            Message::Ping(_) => pings += 1, // tungstenite queues the pong; the next read sends it
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(call(&mut ws, 1, "ping", Value::Null).await["result"], "pong");
    assert_eq!(closed(&srv.gw.metrics(), CloseKind::Heartbeat), 0);
}

/// A client that never answers pings is closed with 4000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_timeout_closes() {
    let cfg = WsConfig {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(60),
        close_timeout: Duration::from_millis(50),
        ..WsConfig::default()
    };
    let srv = start(hub(), cfg).await;
    // Raw socket: do the handshake by hand, then never write again (no pongs).
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read everything the server sends until it closes the socket.
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    // Walk the frames: pings (0x89), then a close (0x88) with code 4000.
    let mut i = head_end;
    let (mut pings, mut close_code) = (0, None);
    while i + 2 <= buf.len() {
        let op = buf[i] & 0x0f;
        let len = (buf[i + 1] & 0x7f) as usize;
        let body = &buf[i + 2..i + 2 + len];
        match op {
            0x9 => pings += 1,
            0x8 => close_code = Some(u16::from_be_bytes([body[0], body[1]])),
            _ => {}
        }
        i += 2 + len;
    }
    assert!(pings >= 1);
    assert_eq!(close_code, Some(close_codes::HEARTBEAT_TIMEOUT));
    assert_eq!(closed(&srv.gw.metrics(), CloseKind::Heartbeat), 1);
}

// ------------------------------------------------------------------ limits --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_size_closes_1009() {
    let srv = start(hub(), WsConfig { max_message_size: 1024, ..WsConfig::default() }).await;
    let mut ws = connect(srv.addr).await;
    // Just under the limit is fine.
    let ok = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "p".repeat(900)}});
    send(&mut ws, ok).await;
    assert_eq!(next_json(&mut ws).await["result"], "pong");
    send_text(&mut ws, &"x".repeat(100_000)).await;
    let f = expect_close(&mut ws).await;
    assert_eq!(code(&f), 1009);
    assert_eq!(closed(&srv.gw.metrics(), CloseKind::TooBig), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_closes_1007() {
    let srv = start(hub(), WsConfig::default()).await;
    let mut ws = connect(srv.addr).await;
    let bad = WsFrame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    let f = expect_close(&mut ws).await;
    assert_eq!(code(&f), 1007);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_errors_then_closes_4100() {
    // 0.001 token/s: the bucket does not refill during the test.
    let cfg = WsConfig {
        rate_limit: RateLimit { per_second: 0.001, burst: 3, max_strikes: 4 },
        ..WsConfig::default()
    };
    let srv = start(hub(), cfg).await;
    let mut ws = connect(srv.addr).await;
    for i in 1..=3 {
        assert_eq!(call(&mut ws, i, "ping", Value::Null).await["result"], "pong");
    }
    for _ in 0..3 {
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 99, "method": "ping"})).await;
        let r = next_json(&mut ws).await;
        assert_eq!(r["error"]["code"], codes::RATE_LIMITED, "{r}");
    }
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 100, "method": "ping"})).await;
    let f = expect_close(&mut ws).await;
    assert_eq!(code(&f), close_codes::RATE_LIMITED);
    assert_eq!(f.reason.as_str(), "rate limit exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_subscriptions() {
    let srv = start(hub(), WsConfig { max_subscriptions: 2, ..WsConfig::default() }).await;
    let mut ws = connect(srv.addr).await;
    subscribe(&mut ws, "a").await;
    subscribe(&mut ws, "b").await;
    let r = call(&mut ws, 1, "subscribe", json!({"topic": "c"})).await;
    assert_eq!(r["error"]["code"], codes::SUBSCRIPTION_LIMIT);
    assert_eq!(r["error"]["data"]["limit"], 2);
    // Leaving one makes room.
    call(&mut ws, 2, "unsubscribe", json!({"topic": "a"})).await;
    subscribe(&mut ws, "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_before_upgrade() {
    let srv = start(hub(), WsConfig { max_connections_per_ip: 2, ..WsConfig::default() }).await;
    let a = connect(srv.addr).await;
    let _b = connect(srv.addr).await;
    assert_eq!(refused_status(srv.addr, "/ws", &[]).await, 429);
    drop(a);
    // The slot comes back once the server has seen the close: wait for it.
    while srv.gw.connections() != 1 {
        tokio::task::yield_now().await;
    }
    let _c = connect(srv.addr).await;

    let srv2 = start(hub(), WsConfig { max_connections: 1, ..WsConfig::default() }).await;
    let _d = connect(srv2.addr).await;
    assert_eq!(refused_status(srv2.addr, "/ws", &[]).await, 503);
    let m = srv2.gw.metrics();
    assert_eq!(rejected(&m, Rejection::GlobalCap), 1);
    assert_eq!(rejected(&srv.gw.metrics(), Rejection::PerIpCap), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins() {
    let cfg = WsConfig { allowed_origins: vec!["https://good.example".into()], ..WsConfig::default() };
    let srv = start(hub(), cfg).await;
    assert_eq!(refused_status(srv.addr, "/ws", &[("origin", "https://evil.example")]).await, 403);
    try_connect(srv.addr, "/ws", &[("origin", "https://good.example")], false).await.unwrap();
    // Non-browser clients send no Origin.
    try_connect(srv.addr, "/ws", &[], false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens() {
    let srv = start(hub(), WsConfig { jwt_secret: Some(SECRET.into()), ..WsConfig::default() }).await;
    assert_eq!(refused_status(srv.addr, "/ws", &[]).await, 401);
    assert_eq!(refused_status(srv.addr, "/ws", &[("authorization", "Bearer not.a.jwt")]).await, 401);
    let wrong = sign_hs256(&json!({"subscribe": ["*"]}), b"other");
    assert_eq!(refused_status(srv.addr, &format!("/ws?token={wrong}"), &[]).await, 401);
    let expired = sign_hs256(&json!({"subscribe": ["*"], "exp": 1}), SECRET.as_bytes());
    assert_eq!(refused_status(srv.addr, &format!("/ws?token={expired}"), &[]).await, 401);

    let limited =
        sign_hs256(&json!({"sub": "u1", "subscribe": ["prices.*"], "publish": ["chat"]}), SECRET.as_bytes());
    let (mut ws, _) = try_connect(srv.addr, "/ws", &[("authorization", &format!("Bearer {limited}"))], false)
        .await
        .unwrap();
    subscribe(&mut ws, "prices.eur").await;
    let r = call(&mut ws, 1, "subscribe", json!({"topic": "secrets"})).await;
    assert_eq!(r["error"]["code"], codes::PERMISSION_DENIED);
    let r = call(&mut ws, 2, "publish", json!({"topic": "chat", "payload": "hi"})).await;
    assert_eq!(r["result"]["seq"], 0, "nobody subscribed: no seq spent");
    let r = call(&mut ws, 3, "publish", json!({"topic": "prices.eur", "payload": 1})).await;
    assert_eq!(r["error"]["code"], codes::PERMISSION_DENIED);
    // Even a token allowing "*" cannot publish to $sys.
    let (mut admin, _) =
        try_connect(srv.addr, &format!("/ws?token={}", publisher_token(SECRET)), &[], false).await.unwrap();
    let r = call(&mut admin, 4, "publish", json!({"topic": "$sys.stats", "payload": 1})).await;
    assert_eq!(r["error"]["code"], codes::PERMISSION_DENIED);
    assert_eq!(rejected(&srv.gw.metrics(), Rejection::Unauthorized), 4);
}

/// A TCP client that never sends its request is dropped after the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_drops_silent_clients() {
    let srv =
        start(hub(), WsConfig { handshake_timeout: Duration::from_millis(100), ..WsConfig::default() }).await;
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut b = [0u8; 16];
    let n = silent.read(&mut b).await.unwrap_or(0);
    assert_eq!(n, 0, "the server closed the socket without answering");
    // A slow one that sends half a request head is dropped too.
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf).await;
    assert!(!buf.starts_with(b"HTTP/1.1 101"));
    assert!(rejected(&srv.gw.metrics(), Rejection::HandshakeTimeout) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_an_upgrade_is_400() {
    let srv = start(hub(), WsConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&buf));
}

// ---------------------------------------------------------------- shutdown --

/// Drain: messages queued when the shutdown begins are delivered, then 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_delivers_then_1001() {
    let mut srv = start(hub(), WsConfig::default()).await;
    let (mut ws, _) = connect_id(srv.addr, true).await;
    subscribe(&mut ws, "t").await;
    let big = serde_json::value::to_raw_value(&"d".repeat(64 * 1024)).unwrap();
    // More than the socket buffers hold, less than the ring (256): some are
    // still queued in the ring when the drain begins.
    let n = 200u64;
    for _ in 0..n {
        srv.gw.publish_json("t", &big).unwrap();
    }
    let gw = srv.gw.clone();
    let reader = tokio::spawn(async move {
        let mut expected = 1;
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(v["seq"], expected);
                    expected += 1;
                }
                Message::Close(Some(f)) => return (expected - 1, code(&f)),
                _ => {}
            }
        }
    });
    let report = srv.shutdown(Duration::from_secs(30)).await;
    let (got, close) = reader.await.unwrap();
    assert_eq!(got, n, "every queued message was delivered");
    assert_eq!(close, 1001);
    assert!(report.graceful);
    assert!(gw.is_draining());
    assert_eq!(closed(&gw.metrics(), CloseKind::Shutdown), 1);
    // New upgrades are refused while draining (the listener is closed, so we
    // call the gateway directly).
    let req = http::Request::get("/ws").body(()).unwrap();
    assert_eq!(gw.handle_upgrade(req, "127.0.0.1:1".parse().unwrap()).status(), 503);
}

// -------------------------------------------------------------------- echo --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_route_off_by_default_and_echoes_when_on() {
    let srv = start(hub(), WsConfig::default()).await;
    assert_eq!(refused_status(srv.addr, "/echo", &[]).await, 404);
    let srv = start(hub(), WsConfig { echo_path: Some("/echo".into()), ..WsConfig::default() }).await;
    let (mut ws, _) = try_connect(srv.addr, "/echo", &[], false).await.unwrap();
    ws.send(Message::Text("héllo".into())).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text("héllo".into()));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Binary(vec![1, 2, 3].into()));
}

// ------------------------------------------------------------------- axum --

/// The axum adapter: the gateway mounted beside an ordinary route.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_adapter() {
    use std::net::SocketAddr;
    let gw = fanout_ws::Gateway::new(hub(), WsConfig { max_connections_per_ip: 1, ..WsConfig::default() })
        .unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .merge(fanout_ws::axum::router(gw.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    let mut ws = connect(addr).await;
    subscribe(&mut ws, "t").await;
    gw.publish_value("t", &json!({"via": "axum"})).unwrap();
    assert_eq!(next_json(&mut ws).await["payload"], json!({"via": "axum"}));
    // ConnectInfo reached the gateway: the per-IP cap applies.
    assert_eq!(refused_status(addr, "/ws", &[]).await, 429);
}
