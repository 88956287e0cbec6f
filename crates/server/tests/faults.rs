//! The server under a real SIGTERM while publishing, and its logs: no secret
//! (JWT secret, API key, tokens, wrong keys) ever appears in them, at any level.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanout_server::{start, EngineKind, Settings};
use fanout_ws::sign_hs256;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const JWT_SECRET: &str = "jwt-SECRET-7f3a9c-of-32-bytes-at-least";
const API_KEY: &str = "api-KEY-51d0e2";
const WRONG_KEY: &str = "wrong-KEY-c0ffee";

/// One HTTP/1.1 request on a fresh connection: (status, body). `None` when the
/// server is gone.
async fn http(addr: SocketAddr, path: &str, key: &str, body: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// A subscriber that reads until its close frame: (last seq, close code).
async fn subscriber(url: String, topic: &str) -> tokio::task::JoinHandle<(u64, u16)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": [topic]});
    ws.send(Message::Text(req.to_string().into())).await.unwrap();
    loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            if serde_json::from_str::<Value>(t.as_str()).unwrap()["id"] == 1 {
                break;
            }
        }
    }
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(v["seq"], last + 1, "in order, no gap");
                    last += 1;
                }
                Some(Ok(Message::Close(Some(f)))) => return (last, u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("ended without a close frame: {other:?}"),
            }
        }
    })
}

/// The real binary, a real SIGTERM, while a backend publishes over HTTP: every
/// message whose `200` came back before the signal reaches every client, in
/// order, before its 1001 close; the process exits 0; its trace-level log holds
/// no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_publishing_loses_nothing_accepted() {
    const CLIENTS: usize = 4;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout-server"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "trace", "--stats-interval", "0s"])
        .env("FANOUT_API_KEY", API_KEY)
        .env("FANOUT_JWT_SECRET", JWT_SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "server exited: {log}");
        log.push_str(&line);
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let log_rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    let token = sign_hs256(&json!({"sub": "c", "subscribe": ["*"]}), JWT_SECRET.as_bytes());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(subscriber(format!("ws://{addr}/ws?token={token}"), "t").await);
    }
    // A refused token and a wrong API key, so that the refusals are logged too.
    let forged =
        sign_hs256(&json!({"sub": "x", "subscribe": ["*"]}), b"not-the-secret-not-the-secret-at-all");
    assert!(tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={forged}")).await.is_err());
    assert_eq!(http(addr, "/api/publish", WRONG_KEY, "{}").await.map(|r| r.0), Some(401));

    let accepted = Arc::new(AtomicU64::new(0));
    let (warm_tx, warm_rx) = tokio::sync::oneshot::channel();
    let acc = accepted.clone();
    let publisher = tokio::spawn(async move {
        let mut warm = Some(warm_tx);
        let (mut ok, mut refused) = (0u64, 0u64);
        loop {
            let body = json!({"topic": "t", "payload": {"n": ok + 1}}).to_string();
            match http(addr, "/api/publish", API_KEY, &body).await {
                Some((200, b)) => {
                    let v: Value = serde_json::from_str(&b).unwrap();
                    assert_eq!(
                        (v["delivered"].as_u64(), v["dropped"].as_u64()),
                        (Some(CLIENTS as u64), Some(0))
                    );
                    ok += 1;
                    acc.store(v["seq"].as_u64().unwrap(), Ordering::Release);
                    if ok == 200 {
                        let _ = warm.take().map(|w| w.send(()));
                    }
                }
                Some((503, _)) => refused += 1, // draining
                Some((s, b)) => panic!("unexpected {s}: {b}"),
                None => return (ok, refused), // the listener is closed
            }
        }
    });
    warm_rx.await.unwrap();
    let before = accepted.load(Ordering::Acquire);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (ok, refused) = publisher.await.unwrap();
    let mut min_last = u64::MAX;
    for c in clients {
        let (last, code) = c.await.unwrap();
        assert!(last >= before, "got {last}, {before} were accepted before SIGTERM");
        assert_eq!(last, ok, "every 200 was delivered");
        assert_eq!(code, 1001);
        min_last = min_last.min(last);
    }
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    log.push_str(&log_rest.join().unwrap());
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
    for secret in [JWT_SECRET, API_KEY, WRONG_KEY, token.as_str(), forged.as_str()] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }
    println!(
        "SIGTERM: {before} accepted before the signal, {ok} in all ({refused} refused 503 while draining); \
         every client got {min_last}, then 1001; log {} bytes without secrets",
        log.len()
    );
}

/// Captures every tracing event of the process (all levels) in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// In-process: a test subscriber at TRACE captures the logs of a server that
/// sees good and bad tokens, good and wrong API keys; none of them, nor the
/// secret, is in the output. `Debug` of the settings redacts them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_in_logs() {
    let cap = Capture::default();
    let c = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || c.clone())
        .finish();
    tracing::subscriber::set_global_default(sub).unwrap();

    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine: EngineKind::Fanout,
        api_key: Some(API_KEY.into()),
        stats_interval: Duration::ZERO,
        ..Settings::default()
    };
    settings.ws.jwt_secret = Some(JWT_SECRET.into());
    let debug = format!("{settings:?} {:?}", settings.ws);
    assert!(!debug.contains(JWT_SECRET) && !debug.contains(API_KEY), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");

    let srv = start(settings).await.unwrap();
    let addr = srv.addr();
    let good =
        sign_hs256(&json!({"sub": "alice", "subscribe": ["*"], "publish": ["*"]}), JWT_SECRET.as_bytes());
    let forged = sign_hs256(&json!({"sub": "mallory", "subscribe": ["*"]}), b"guess");
    let expired = sign_hs256(&json!({"sub": "bob", "exp": 1}), JWT_SECRET.as_bytes());
    let garbage = "garbage-TOKEN-9b8c7d";
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={good}")).await.unwrap();
    for bad in [&forged, &expired, &garbage.to_string()] {
        assert!(tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={bad}")).await.is_err());
    }
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "publish", "params": ["t", {"x": 1}]});
    ws.send(Message::Text(req.to_string().into())).await.unwrap();
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(http(addr, "/api/publish", WRONG_KEY, "{}").await.map(|r| r.0), Some(401));
    let body = json!({"topic": "t", "payload": 1}).to_string();
    assert_eq!(http(addr, "/api/publish", API_KEY, &body).await.map(|r| r.0), Some(200));
    drop(ws);
    srv.shutdown().await.unwrap();

    let log = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("listening") && log.contains("token refused"), "the capture works: {log}");
    for secret in [JWT_SECRET, API_KEY, WRONG_KEY, good.as_str(), forged.as_str(), expired.as_str(), garbage]
    {
        assert!(!log.contains(secret), "a secret is in the log: {secret}\n{log}");
    }
    // Nor any token's signature on its own.
    for t in [&good, &forged, &expired] {
        assert!(!log.contains(t.rsplit('.').next().unwrap()));
    }
}

/// The defaults are the safe ones (docs/security.md): loopback only, no HTTP
/// publishing without a key, no echo route, every limit on.
#[test]
fn safe_defaults() {
    let s = Settings::default();
    assert!(s.listen.ip().is_loopback(), "binds 127.0.0.1 by default");
    assert_eq!(s.api_key, None, "POST /api/publish answers 403 until a key is set");
    let w = &s.ws;
    assert_eq!(w.jwt_secret, None);
    assert_eq!(w.echo_path, None, "no echo route");
    assert!(w.allowed_origins.is_empty());
    assert!(w.max_connections > 0 && w.max_connections <= 19_900);
    assert!(w.max_connections_per_ip > 0 && w.max_connections_per_ip < w.max_connections);
    assert!(w.max_message_size <= 1 << 20);
    assert!(w.rate_limit.per_second > 0.0 && w.rate_limit.burst > 0);
    assert!(w.max_subscriptions > 0 && w.max_subscriptions <= 1024);
    assert!(w.handshake_timeout <= Duration::from_secs(30));
    assert!(w.write_timeout <= Duration::from_secs(30));
    assert!(w.pong_timeout <= Duration::from_secs(120));
    assert!(s.max_body_size <= 16 << 20);
    // Anonymous connections may subscribe but never publish.
    let anon = fanout_ws::Permissions::anonymous();
    assert!(anon.subscribe.allows("news") && !anon.publish.allows("news"));
}
