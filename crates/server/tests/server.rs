//! The server end to end: HTTP routes and WebSocket clients on 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Duration;

use fanout_server::{start, EngineKind, Server, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn settings(engine: EngineKind) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine,
        api_key: Some("k3y".into()),
        stats_interval: Duration::from_millis(20),
        log_level: "warn".into(),
        ..Settings::default()
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn publish(addr: SocketAddr, body: Value) -> (u16, Value) {
    let (s, b) =
        http(addr, "POST", "/api/publish", &[("Authorization", "Bearer k3y")], body.to_string().as_bytes())
            .await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

async fn ws(addr: SocketAddr) -> (Ws, u64) {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    let id = resp.headers().get("x-fanout-client-id").unwrap().to_str().unwrap().parse().unwrap();
    (ws, id)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

async fn subscribe(ws: &mut Ws, topic: &str) {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topic": topic}});
    ws.send(Message::Text(req.to_string().into())).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v.get("id") == Some(&json!(1)) {
            assert_eq!(v["result"]["subscribed"], true);
            return;
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .parse()
        .unwrap()
}

async fn http_publish_reaches_subscribers(engine: EngineKind) {
    http_publish_reaches_subscribers_with(settings(engine)).await;
}

async fn http_publish_reaches_subscribers_with(settings: Settings) {
    let srv: Server = start(settings).await.unwrap();
    let addr = srv.addr();
    let (mut a, _) = ws(addr).await;
    let (mut b, _) = ws(addr).await;
    subscribe(&mut a, "news").await;
    subscribe(&mut b, "news").await;
    for i in 1..=10u64 {
        let (status, r) = publish(addr, json!({"topic": "news", "payload": {"i": i}})).await;
        assert_eq!(status, 200);
        assert_eq!(r, json!({"recipients": 2, "delivered": 2, "dropped": 0, "seq": i, "walked": 1}));
    }
    for c in [&mut a, &mut b] {
        for i in 1..=10u64 {
            let m = next_json(c).await;
            assert_eq!((m["topic"].as_str(), m["seq"].as_u64()), (Some("news"), Some(i)));
            assert_eq!(m["payload"], json!({"i": i}));
        }
    }
    let report = srv.shutdown().await.unwrap();
    assert!(report.graceful);
    for c in [&mut a, &mut b] {
        match c.next().await.unwrap().unwrap() {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_reaches_subscribers_fanout() {
    http_publish_reaches_subscribers(EngineKind::Fanout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_reaches_subscribers_mutex() {
    http_publish_reaches_subscribers(EngineKind::Mutex).await;
}

/// `--shared-log`: the same pushes, counts and close, through the topic's
/// shared log instead of each connection's queue.
#[tokio::test]
async fn http_publish_reaches_subscribers_through_a_shared_log() {
    let mut s = settings(EngineKind::Fanout);
    s.history.shared_log = 512;
    s.history.shared_log_from = 0;
    http_publish_reaches_subscribers_with(s).await;
}

/// The API key is read by the same Bearer parser as the WebSocket upgrade's
/// token (`fanout_ws::bearer`): any case of the scheme, spaces or a tab
/// after it. Before, only `Bearer ` and `bearer ` were accepted here
/// (`BEARER k3y` was 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_bearer_forms_match_the_upgrade() {
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let addr = srv.addr();
    let body = br#"{"topic":"t","payload":1}"#;
    for auth in ["Bearer k3y", "bearer k3y", "BEARER k3y", "Bearer   k3y", "Bearer\tk3y", "Bearer k3y  "] {
        assert_eq!(
            http(addr, "POST", "/api/publish", &[("Authorization", auth)], body).await.0,
            200,
            "{auth:?}"
        );
    }
    for auth in ["Basic k3y", "Bearer", "Bearerk3y", "k3y"] {
        assert_eq!(
            http(addr, "POST", "/api/publish", &[("Authorization", auth)], body).await.0,
            401,
            "{auth:?}"
        );
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_errors_batch_and_unicast() {
    let srv = start(Settings { max_body_size: 1000, ..settings(EngineKind::Fanout) }).await.unwrap();
    let addr = srv.addr();
    let body = br#"{"topic":"t","payload":1}"#;
    assert_eq!(http(addr, "POST", "/api/publish", &[], body).await.0, 401);
    assert_eq!(http(addr, "POST", "/api/publish", &[("Authorization", "Bearer nope")], body).await.0, 401);
    assert_eq!(http(addr, "GET", "/api/publish", &[], b"").await.0, 405);
    assert_eq!(publish(addr, json!({"topic": "bad topic", "payload": 1})).await.0, 400);
    assert_eq!(publish(addr, json!({"topic": "$sys.stats", "payload": 1})).await.0, 403);
    assert_eq!(publish(addr, json!({"payload": 1})).await.0, 400);
    let (s, _) = http(addr, "POST", "/api/publish", &[("Authorization", "Bearer k3y")], b"{nope").await;
    assert_eq!(s, 400);
    let big = json!({"topic": "t", "payload": "x".repeat(2000)});
    assert_eq!(publish(addr, big).await.0, 413);

    let (mut c, id) = ws(addr).await;
    subscribe(&mut c, "t").await;
    // Batch: totals plus one result per message.
    let (s, r) = publish(addr, json!([{"topic": "t", "payload": 1}, {"topic": "t", "payload": 2}])).await;
    assert_eq!(s, 200);
    assert_eq!(
        (r["recipients"].as_u64(), r["delivered"].as_u64(), r["seq"].as_u64()),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(r["results"][1]["seq"], 2);
    assert_eq!(next_json(&mut c).await["payload"], 1);
    assert_eq!(next_json(&mut c).await["payload"], 2);
    // Unicast by the id from X-Fanout-Client-Id.
    let (s, r) = publish(addr, json!({"to": id, "payload": "just you"})).await;
    assert_eq!((s, r["delivered"].as_u64()), (200, Some(1)));
    let m = next_json(&mut c).await;
    assert_eq!((m["topic"].clone(), m["payload"].clone()), (Value::Null, json!("just you")));
    assert_eq!(publish(addr, json!({"to": 987_654, "payload": 1})).await.0, 404);
    // Binary publish: a binary frame with the documented header.
    let (s, _) = http(
        addr,
        "POST",
        "/api/publish?topic=t",
        &[("Authorization", "Bearer k3y"), ("Content-Type", "application/octet-stream")],
        &[7, 8, 9],
    )
    .await;
    assert_eq!(s, 200);
    let b = loop {
        match c.next().await.unwrap().unwrap() {
            Message::Binary(b) => break b,
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    };
    let p = fanout_ws::frame::decode_binary(&b).unwrap();
    assert_eq!((p.topic, p.seq, p.payload), ("t", 3, &[7u8, 8, 9][..]));
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_is_403_without_a_key() {
    let srv = start(Settings { api_key: None, ..settings(EngineKind::Fanout) }).await.unwrap();
    let (s, _) = http(
        srv.addr(),
        "POST",
        "/api/publish",
        &[("Authorization", "Bearer x")],
        br#"{"topic":"t","payload":1}"#,
    )
    .await;
    assert_eq!(s, 403);
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz() {
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let addr = srv.addr();
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await, (200, "ok\n".into()));
    assert_eq!(http(addr, "GET", "/nope", &[], b"").await.0, 404);
    let (s, before) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(s, 200);
    assert!(before.contains("fanout_info{engine=\"fanout\"} 1"));
    let (mut c, _) = ws(addr).await;
    subscribe(&mut c, "m").await;
    for _ in 0..3 {
        publish(addr, json!({"topic": "m", "payload": 0})).await;
    }
    for _ in 0..3 {
        next_json(&mut c).await;
    }
    let (_, after) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metric(&after, "fanout_connections"), 1.0);
    assert!(metric(&after, "fanout_published_total") >= metric(&before, "fanout_published_total") + 3.0);
    assert!(metric(&after, "fanout_delivered_total") >= 3.0);
    assert!(metric(&after, "fanout_frames_out_total") >= 4.0);
    assert!(metric(&after, "fanout_write_batch_size_count") >= 1.0);
    assert!(metric(&after, "fanout_publish_duration_seconds_count") >= 3.0);
    assert!(after.contains("fanout_dropped_total{reason=\"full\"} 0"));
    assert!(after.contains("fanout_publish_duration_seconds_bucket{le=\"+Inf\"}"));
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_stats_topic_is_streamed() {
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let (mut c, _) = ws(srv.addr()).await;
    subscribe(&mut c, "$sys.stats").await;
    let a = next_json(&mut c).await;
    let b = next_json(&mut c).await;
    assert_eq!(a["topic"], "$sys.stats");
    assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
    assert_eq!(a["payload"]["engine"], "fanout");
    assert!(a["payload"]["subscribers"].as_u64().unwrap() >= 1);
    assert_eq!(a["payload"]["connections"], 1);
    // The first push may have been counted before this subscription was
    // (the ticker counts, then publishes, and the join can land between):
    // the second was counted after the first was published to this
    // connection, so after its join.
    assert_eq!(b["payload"]["subscriptions"], 1, "one connection on one topic");
    let (_, m) = http(srv.addr(), "GET", "/metrics", &[], b"").await;
    assert!(m.contains("\nfanout_subscriptions 1\n"), "{m}");
    let unsub = json!({"jsonrpc": "2.0", "id": 2, "method": "unsubscribe", "params": ["$sys.stats"]});
    c.send(Message::Text(unsub.to_string().into())).await.unwrap();
    while next_json(&mut c).await["id"] != 2 {}
    let (_, m) = http(srv.addr(), "GET", "/metrics", &[], b"").await;
    assert!(m.contains("\nfanout_subscriptions 0\n"), "{m}");
    srv.shutdown().await.unwrap();
}

/// The dashboard page and the client build it loads are served from the
/// binary, at `/` by default; `no_dashboard` (`--no-dashboard`)
/// leaves `/` to the 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_served_and_can_be_turned_off() {
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let (status, page) = http(srv.addr(), "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>fanout dashboard</title>"), "{page}");
    let (status, js) = http(srv.addr(), "GET", "/client/index.js", &[], b"").await;
    assert_eq!(status, 200);
    assert!(js.contains("export { Client }"), "{js}");
    let (status, cfg) = http(srv.addr(), "GET", "/config.json", &[], b"").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&cfg).unwrap()["ws_path"].clone()),
        (200, json!("/ws"))
    );
    assert_eq!(http(srv.addr(), "GET", "/nothing-here", &[], b"").await.0, 404);
    srv.shutdown().await.unwrap();
    let off = start(Settings { no_dashboard: true, ..settings(EngineKind::Fanout) }).await.unwrap();
    assert_eq!(http(off.addr(), "GET", "/", &[], b"").await.0, 404);
    assert_eq!(http(off.addr(), "GET", "/client/index.js", &[], b"").await.0, 404);
    off.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_engine_is_selectable() {
    let srv = start(settings(EngineKind::Mutex)).await.unwrap();
    let (_, m) = http(srv.addr(), "GET", "/metrics", &[], b"").await;
    assert!(m.contains("fanout_info{engine=\"mutex\"} 1"), "{m}");
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_then_closes_1001() {
    // The client holds the drain open (it does not answer the close until we
    // drop it), so we can check meanwhile that the listener is closed.
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let addr = srv.addr();
    let (mut c, _) = ws(addr).await;
    let done = tokio::spawn(srv.shutdown());
    match c.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("{other:?}"),
    }
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    drop(c);
    assert!(done.await.unwrap().unwrap().graceful);
}

/// Issue 14, item 13. A batch with a bad item is refused whole before any
/// item is delivered: a retry of the corrected batch does not duplicate the
/// good ones (before, the items ahead of the bad one went out, then 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_is_validated_whole_first() {
    let srv = start(settings(EngineKind::Fanout)).await.unwrap();
    let addr = srv.addr();
    let (mut c, _) = ws(addr).await;
    subscribe(&mut c, "t").await;
    for bad in [
        json!([{"topic": "t", "payload": "first"}, {"topic": "bad topic", "payload": 2}]),
        json!([{"topic": "t", "payload": "first"}, {"topic": "$sys.stats", "payload": 2}]),
        json!([{"topic": "t", "payload": "first"}, {"payload": 2}]),
    ] {
        let (s, _) = publish(addr, bad).await;
        assert!(s == 400 || s == 403, "{s}");
    }
    assert_eq!(publish(addr, json!({"topic": "t", "payload": "after"})).await.0, 200);
    let m = next_json(&mut c).await;
    assert_eq!(
        (m["payload"].clone(), m["seq"].clone()),
        (json!("after"), json!(1)),
        "nothing went out before"
    );
    // A `to` naming no open connection does not cut a batch: it is dropped.
    let (s, r) =
        publish(addr, json!([{"to": 987_654, "payload": 0}, {"topic": "t", "payload": "next"}])).await;
    assert_eq!((s, r["results"][0]["dropped"].as_u64()), (200, Some(1)), "{r}");
    assert_eq!(next_json(&mut c).await["payload"], "next");
    srv.shutdown().await.unwrap();
}

/// Issue 14, item 9. With `--metrics-listen`, `/metrics` is served there and
/// is 404 on the public listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_moves_metrics_off_the_public_port() {
    let s = Settings { metrics_listen: Some("127.0.0.1:0".parse().unwrap()), ..settings(EngineKind::Fanout) };
    let srv = start(s).await.unwrap();
    let private = srv.metrics_addr().expect("a metrics address");
    assert_ne!(private, srv.addr());
    assert_eq!(http(srv.addr(), "GET", "/metrics", &[], b"").await.0, 404);
    assert_eq!(http(srv.addr(), "GET", "/healthz", &[], b"").await.0, 200, "the other routes stay");
    let (s, text) = http(private, "GET", "/metrics", &[], b"").await;
    assert_eq!(s, 200);
    assert_eq!(metric(&text, "fanout_connections"), 0.0);
    assert_eq!(http(private, "GET", "/api/publish", &[], b"").await.0, 404, "metrics only");
    srv.shutdown().await.unwrap();
}

/// Issue 14, item 8. A backend sends to a user (`"user": sub`), not to a
/// guessable connection id: each of the user's connections gets it, nobody
/// else does; a user with no open connection is 0 recipients, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_user_reaches_each_of_its_connections() {
    const SECRET: &str = "server-test-secret-of-32-bytes!!";
    let mut s = settings(EngineKind::Fanout);
    s.ws.jwt_secret = Some(SECRET.into());
    let srv = start(s).await.unwrap();
    let addr = srv.addr();
    let connect = |sub: &'static str| async move {
        let t = fanout_ws::sign_hs256(&json!({"sub": sub}), SECRET.as_bytes());
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={t}")).await.unwrap().0
    };
    let (mut a1, mut a2, mut b) = (connect("alice").await, connect("alice").await, connect("bob").await);
    let (s, r) = publish(addr, json!({"user": "alice", "payload": "for alice"})).await;
    assert_eq!((s, r["recipients"].as_u64(), r["delivered"].as_u64()), (200, Some(2), Some(2)), "{r}");
    for c in [&mut a1, &mut a2] {
        let m = next_json(c).await;
        assert_eq!((m["topic"].clone(), m["payload"].clone()), (Value::Null, json!("for alice")));
    }
    let (s, r) = publish(addr, json!({"user": "carol", "payload": 1})).await;
    assert_eq!((s, r["recipients"].as_u64()), (200, Some(0)));
    assert_eq!(publish(addr, json!({"user": "bob", "to": 1, "payload": 1})).await.0, 400);
    let (s, _) = publish(addr, json!({"user": "bob", "payload": "for bob"})).await;
    assert_eq!(s, 200);
    assert_eq!(next_json(&mut b).await["payload"], "for bob", "bob got his, and not alice's");
    srv.shutdown().await.unwrap();
}

/// Issue 14, item 2. A publish body that does not arrive within
/// `body_read_timeout` is answered 408 (before, the request waited for it as
/// long as the client kept the socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_publish_body_gets_408() {
    let s = Settings { body_read_timeout: Duration::from_millis(200), ..settings(EngineKind::Fanout) };
    let srv = start(s).await.unwrap();
    let mut tcp = TcpStream::connect(srv.addr()).await.unwrap();
    tcp.write_all(
        b"POST /api/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k3y\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"topic\":",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n =
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("an answer").unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf[..n]));
    srv.shutdown().await.unwrap();
}

/// Issue 14, item 12. The drain in the order a load balancer needs: at the
/// signal `/readyz` answers 503 while the listener still accepts (the grace
/// period); then the listener closes; a publish that was in flight (its body
/// still arriving) is applied and answered 200; then the WebSocket
/// connections get it and their 1001. Before, the listener closed first,
/// there was no `/readyz`, and the publish in flight was refused (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_order_readyz_grace_inflight_then_websockets() {
    let s = Settings { drain_grace: Duration::from_secs(2), ..settings(EngineKind::Fanout) };
    let srv = start(s).await.unwrap();
    let addr = srv.addr();
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await, (200, "ready\n".into()));
    let (mut c, _) = ws(addr).await;
    subscribe(&mut c, "t").await;
    // A publish whose body is not complete yet.
    let body = br#"{"topic":"t","payload":"in flight"}"#;
    let mut inflight = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k3y\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.unwrap();
    inflight.write_all(&body[..10]).await.unwrap();
    let done = tokio::spawn(srv.shutdown());
    // Not ready at once, while still accepting.
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while http(addr, "GET", "/readyz", &[], b"").await.0 != 503 {}
    })
    .await;
    assert!(r.is_ok(), "/readyz went 503");
    // Then the listener closes.
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "the listener closed after the grace period");
    // The publish in flight completes, is applied, and is answered 200.
    inflight.write_all(&body[10..]).await.unwrap();
    let mut resp = Vec::new();
    inflight.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The WebSocket client gets it, then its 1001.
    assert_eq!(next_json(&mut c).await["payload"], "in flight");
    match c.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("{other:?}"),
    }
    drop(c);
    assert!(done.await.unwrap().unwrap().graceful);
}

/// `"priority"` on `POST /api/publish` reaches the engine (before, every
/// HTTP publish was `Normal`: this failed on the first assertion), on a
/// single item and in a batch; a bad value, or a priority on a unicast, is
/// a 400 that names the problem, and nothing is published.
#[tokio::test]
async fn http_publish_carries_a_priority() {
    use fanout_core::{Hub, Priority};
    let hub = Hub::<fanout_ws::Frame>::new();
    let mut sub = hub.subscribe().unwrap();
    sub.join("alerts").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(fanout_server::run_with(hub.clone(), settings(EngineKind::Fanout), listener, async {
            let _ = stopped.await;
        }));
    let (s, b) = publish(addr, json!({"topic": "alerts", "payload": 1, "priority": "urgent"})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = publish(
        addr,
        json!([
            {"topic": "alerts", "payload": 2, "priority": "high"},
            {"topic": "alerts", "payload": 3},
        ]),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("in time").unwrap();
        got.push(m.priority());
    }
    assert_eq!(got, [Priority::Urgent, Priority::High, Priority::Normal]);
    let (s, b) = publish(addr, json!({"topic": "alerts", "payload": 4, "priority": "max"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("unknown variant `max`"), "{b}");
    let (s, b) = publish(addr, json!({"to": 1, "payload": 5, "priority": "high"})).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("`priority` is for topic publishes only")), "{b}");
    assert!(sub.try_recv().is_err(), "a refused publish published nothing");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
