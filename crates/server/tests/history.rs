//! History and recovery through the server binary's settings and routes:
//! every publish returns a real `seq`, `GET /api/history` answers with the
//! API key, and a restarted server never claims to continue a lost stream.

use std::net::SocketAddr;
use std::time::Duration;

use fanout_server::{start, EngineKind, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine: EngineKind::Fanout,
        api_key: Some("k3y".into()),
        stats_interval: Duration::ZERO,
        log_level: "warn".into(),
        ..Settings::default()
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (text[9..12].parse().unwrap(), body)
}

async fn publish(addr: SocketAddr, topic: &str, payload: Value) -> Value {
    let (s, b) = http(
        addr,
        "POST",
        "/api/publish",
        Some("k3y"),
        &json!({"topic": topic, "payload": payload}).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

async fn call(addr: SocketAddr, method: &str, params: Value) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    ws.send(Message::Text(req.to_string().into())).await.unwrap();
    loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v.get("id") == Some(&json!(1)) {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn publishes_are_numbered_kept_and_read_back_over_http() {
    let srv = start(settings()).await.unwrap();
    let addr = srv.addr();
    for v in 1..=3 {
        let r = publish(addr, "news", json!({"v": v})).await;
        assert_eq!(r["seq"], v, "a real seq without subscribers: {r}");
    }
    let (s, b) = http(addr, "GET", "/api/history?topic=news&limit=2", Some("k3y"), "").await;
    assert_eq!(s, 200, "{b}");
    let page: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(page["seq"], 3);
    let seqs: Vec<Value> =
        page["publications"].as_array().unwrap().iter().map(|p| p["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(2), json!(3)]);
    let (s, b) = http(addr, "GET", "/api/history?topic=news&since=2", Some("k3y"), "").await;
    assert_eq!(
        (s, serde_json::from_str::<Value>(&b).unwrap()["publications"][0]["payload"]["v"].clone()),
        (200, json!(3))
    );
    // Percent-escapes decode; bad input is a clear 400; no key is 401.
    let (s, b) = http(addr, "GET", "/api/history?topic=ne%77s&limit=1", Some("k3y"), "").await;
    assert_eq!(
        (s, serde_json::from_str::<Value>(&b).unwrap()["publications"][0]["seq"].clone()),
        (200, json!(3))
    );
    assert_eq!(http(addr, "GET", "/api/history?topic=news&limit=x", Some("k3y"), "").await.0, 400);
    assert_eq!(http(addr, "GET", "/api/history?limit=1", Some("k3y"), "").await.0, 400);
    assert_eq!(http(addr, "GET", "/api/history?topic=%zz", Some("k3y"), "").await.0, 400);
    assert_eq!(http(addr, "GET", "/api/history?topic=news", None, "").await.0, 401);
    assert_eq!(http(addr, "GET", "/api/history?topic=news", Some("wrong"), "").await.0, 401);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_server_answers_not_recovered() {
    let srv = start(settings()).await.unwrap();
    for v in 1..=3 {
        publish(srv.addr(), "t", json!(v)).await;
    }
    let r = call(srv.addr(), "history", json!({"topic": "t", "limit": 1})).await;
    let (epoch, seq) = (r["result"]["epoch"].clone(), r["result"]["seq"].clone());
    assert_eq!(seq, 3, "{r}");
    srv.shutdown().await.unwrap();

    // The same traffic on a new process's engine: same seqs, another stream.
    let srv = start(settings()).await.unwrap();
    for v in 1..=3 {
        publish(srv.addr(), "t", json!(v)).await;
    }
    let r = call(srv.addr(), "subscribe", json!({"topic": "t", "since": {"seq": 2, "epoch": epoch}})).await;
    let res = &r["result"];
    assert_eq!(
        (res["recovered"].clone(), res["reason"].clone()),
        (json!(false), json!("epoch_changed")),
        "{r}"
    );
    assert_ne!(res["epoch"], epoch, "never the lost stream's epoch");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn history_size_zero_turns_history_off() {
    let srv = start(Settings { history: fanout_core::TopicOptions::default(), ..settings() }).await.unwrap();
    let r = publish(srv.addr(), "t", json!(1)).await;
    assert_eq!(r["seq"], 0, "no history, nobody subscribed: nothing numbered");
    let (s, b) = http(srv.addr(), "GET", "/api/history?topic=t", Some("k3y"), "").await;
    assert_eq!((s, b.as_str()), (200, r#"{"epoch":0,"seq":0,"publications":[]}"#));
    srv.shutdown().await.unwrap();
}

/// `[[topics]]` rules match whole segments, with the token patterns' syntax
/// (`fanout_ws::topic`): a rule for `user.42.*` keeps user 42's history and
/// not user 420's (before, a rule written `user.42*` matched both), and a
/// `*` inside a segment stops the server at start.
#[tokio::test]
async fn topic_rules_match_whole_segments() {
    use fanout_core::TopicOptions;
    use fanout_server::config::TopicRule;
    let keep =
        TopicOptions { history_size: 8, history_ttl: Duration::from_secs(60), ..TopicOptions::default() };
    let none =
        TopicOptions { history_size: 0, history_ttl: Duration::from_secs(60), ..TopicOptions::default() };
    let rule = |pattern: &str| TopicRule { pattern: pattern.into(), options: keep };
    let bad = Settings { topic_rules: vec![rule("user.42*")], ..settings() };
    let e = start(bad).await.err().expect("a partial wildcard stops the start").to_string();
    assert!(e.contains("user.42*") && e.contains("whole segment"), "{e}");

    let srv =
        start(Settings { topic_rules: vec![rule("user.42.*")], history: none, ..settings() }).await.unwrap();
    let addr = srv.addr();
    for topic in ["user.42.inbox", "user.420.inbox"] {
        publish(addr, topic, json!(1)).await;
    }
    let kept =
        |b: &str| serde_json::from_str::<Value>(b).unwrap()["publications"].as_array().map_or(0, Vec::len);
    let (s, b) = http(addr, "GET", "/api/history?topic=user.42.inbox", Some("k3y"), "").await;
    assert_eq!((s, kept(&b)), (200, 1), "{b}");
    let (s, b) = http(addr, "GET", "/api/history?topic=user.420.inbox", Some("k3y"), "").await;
    assert_eq!((s, kept(&b)), (200, 0), "{b}");
    srv.shutdown().await.unwrap();
}
