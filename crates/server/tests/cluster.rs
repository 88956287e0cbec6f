//! Two fanout-server processes' worth of servers (in one test process) on
//! the shared Redis and NATS with `--broker`: a client on either receives
//! every message published on either, at the same `seq`, and recovers on the
//! other after a reconnect. The brokers must be up (this project's machines
//! and .ci/run start them): a test that cannot reach one fails and says so.

use std::net::{SocketAddr, TcpStream as StdTcp};
use std::time::Duration;

use fanout_cluster::BrokerSettings;
use fanout_server::{start, EngineKind, Settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn broker(url: &str, addr: &str, tag: &str) -> BrokerSettings {
    assert!(
        StdTcp::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok(),
        "no broker on {addr}: the cluster tests need it (this project's machines and .ci/run start it)"
    );
    let mut b = BrokerSettings::new(url);
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    b.prefix = format!("srv{tag}{}{}", std::process::id(), n % 1_000_000_000_000);
    b.stream = b.prefix.to_uppercase();
    b.ttl = Duration::from_secs(120);
    b
}

fn settings(b: &BrokerSettings) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine: EngineKind::Fanout,
        broker: Some(b.clone()),
        api_key: Some("k3y".into()),
        stats_interval: Duration::ZERO,
        log_level: "warn".into(),
        ..Settings::default()
    }
}

async fn connect(addr: SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap().0
}

/// Sends a call and returns its answer (pushes before it are skipped).
async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(req.to_string().into())).await.unwrap();
    loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
        }
    }
}

/// `POST /api/publish` to topic `room`: the `seq` it got.
async fn publish(addr: SocketAddr, payload: Value) -> u64 {
    let v = post(addr, json!({"topic": "room", "payload": payload})).await;
    v["seq"].as_u64().unwrap_or_else(|| panic!("{v}"))
}

/// `POST /api/publish` of `body`: the answer.
async fn post(addr: SocketAddr, body: Value) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer k3y\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (_, b) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(b).unwrap_or_else(|_| panic!("{text}"))
}

/// The next `n` pushes: (seq, epoch, payload).
async fn pushes(ws: &mut Ws, n: usize) -> Vec<(u64, u64, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("a push in time");
        if let Message::Text(t) = m.unwrap().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert!(v.get("lagged").is_none(), "no loss expected: {v}");
            if v.get("seq").is_some() && v.get("id").is_none() {
                out.push((v["seq"].as_u64().unwrap(), v["epoch"].as_u64().unwrap(), v["payload"].clone()));
            }
        }
    }
    out
}

async fn two_servers_one_topic_space(b: BrokerSettings) {
    let (a, z) = (start(settings(&b)).await.unwrap(), start(settings(&b)).await.unwrap());
    let (mut ca, mut cz) = (connect(a.addr()).await, connect(z.addr()).await);
    let ja = call(&mut ca, 1, "subscribe", json!({"topic": "room"})).await;
    let jz = call(&mut cz, 1, "subscribe", json!({"topic": "room"})).await;
    assert_eq!(ja["result"]["epoch"], jz["result"]["epoch"], "{ja} {jz}");
    // Publishers on both servers, through the HTTP API.
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(publish(a.addr(), json!({"a": i})).await);
        seqs.push(publish(z.addr(), json!({"z": i})).await);
    }
    let got_a = pushes(&mut ca, 10).await;
    let got_z = pushes(&mut cz, 10).await;
    assert_eq!(got_a, got_z, "one order, one numbering on both servers");
    assert_eq!(got_a.iter().map(|g| g.0).collect::<Vec<_>>(), seqs, "the seqs the publishers were answered");
    // A client of server a reconnects to server z with `since`.
    let last = got_a[4].clone();
    drop(ca);
    let mut again = connect(z.addr()).await;
    let since = json!({"topic": "room", "since": {"seq": last.0, "epoch": last.1}});
    let r = call(&mut again, 1, "subscribe", since).await;
    assert_eq!(r["result"]["recovered"], true, "{r}");
    let replay = pushes(&mut again, 5).await;
    assert_eq!(replay, got_a[5..].to_vec());
    // A batch through the HTTP API (one broker call for the run of topic
    // items): numbered in the order given, delivered in that order.
    let items: Vec<Value> = (0..4).map(|i| json!({"topic": "room", "payload": {"batch": i}})).collect();
    let answer = post(a.addr(), Value::Array(items)).await;
    let answered: Vec<u64> =
        answer["results"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let after = got_a[9].0;
    assert_eq!(answered, (after + 1..=after + 4).collect::<Vec<_>>(), "{answer}");
    let got = pushes(&mut cz, 4).await;
    let want: Vec<_> = (0..4u64).map(|i| (after + 1 + i, last.1, json!({"batch": i}))).collect();
    assert_eq!(got, want, "in the batch's order, on the other server");
    a.shutdown().await.unwrap();
    z.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_redis_two_servers_are_one_topic_space() {
    two_servers_one_topic_space(broker("redis://127.0.0.1:6379", "127.0.0.1:6379", "r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats_two_servers_are_one_topic_space() {
    two_servers_one_topic_space(broker("nats://127.0.0.1:4222", "127.0.0.1:4222", "n")).await;
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A token's `channels` on a server new to the topic: once the connection
/// has answered its first call, the channel's stream is set up, and a
/// message published on the other server reaches it. Before, the channel
/// was joined without waiting for the broker subscription, and such a
/// message could be lost (here, over a real broker, in 1 run of 8: the
/// HTTP publish usually gives the subscription time; the check that fails
/// every time without the wait is crates/ws/tests/channels.rs).
async fn a_token_channel_misses_nothing_after_the_first_answer(b: BrokerSettings) {
    let secured = || Settings {
        ws: fanout_ws::WsConfig { jwt_secret: Some(SECRET.into()), ..Default::default() },
        ..settings(&b)
    };
    let (a, z) = (start(secured()).await.unwrap(), start(secured()).await.unwrap());
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": "u", "exp": exp, "channels": ["room"], "subscribe": ["other"]});
    let token = fanout_ws::sign_hs256(&claims, SECRET.as_bytes());
    let (mut cz, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token={token}", z.addr())).await.unwrap();
    // A call answered by the connection alone (no engine, no broker).
    let first = call(&mut cz, 1, "unsubscribe", json!({"topic": "other"})).await;
    assert_eq!(first["result"]["left"], false, "{first}");
    let seq = publish(a.addr(), json!("hello")).await;
    let got = pushes(&mut cz, 1).await;
    assert_eq!((got[0].0, &got[0].2), (seq, &json!("hello")), "the channel's first message");
    a.shutdown().await.unwrap();
    z.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_redis_a_token_channel_misses_nothing_after_the_first_answer() {
    a_token_channel_misses_nothing_after_the_first_answer(broker(
        "redis://127.0.0.1:6379",
        "127.0.0.1:6379",
        "c",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats_a_token_channel_misses_nothing_after_the_first_answer() {
    a_token_channel_misses_nothing_after_the_first_answer(broker(
        "nats://127.0.0.1:4222",
        "127.0.0.1:4222",
        "d",
    ))
    .await;
}

#[tokio::test]
async fn a_broker_url_of_another_kind_is_refused_at_start() {
    let mut s = settings(&BrokerSettings::new("redis://127.0.0.1:6379"));
    s.broker.as_mut().unwrap().url = "kafka://127.0.0.1:9092".into();
    let e = start(s).await.err().expect("refused");
    assert!(e.to_string().contains("expected redis://host:port or nats://host:port"), "{e}");
}
