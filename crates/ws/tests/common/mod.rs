//! Test harness: a gateway served on 127.0.0.1:0 and real tokio-tungstenite
//! clients.
#![allow(dead_code)]

use std::net::SocketAddr;

use fanout_core::{Engine, Hub, Overflow};
use fanout_ws::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use fanout_ws::tokio_tungstenite::tungstenite::http::Response;
use fanout_ws::tokio_tungstenite::tungstenite::protocol::CloseFrame;
use fanout_ws::tokio_tungstenite::tungstenite::{Error as WsError, Message};
use fanout_ws::tokio_tungstenite::{client_async, WebSocketStream};
use fanout_ws::{not_found, serve, Frame, Gateway, WsConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type Client = WebSocketStream<TcpStream>;

pub struct TestServer<E: Engine<Frame>> {
    pub gw: Gateway<E>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<E: Engine<Frame>> TestServer<E> {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Stops accepting and drains (as the server binary does on SIGTERM).
    pub async fn shutdown(&mut self, drain: std::time::Duration) -> fanout_ws::DrainReport {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self.gw.shutdown(drain).await
    }
}

pub fn hub() -> Hub<Frame> {
    Hub::new()
}

pub fn hub_with(capacity: usize, overflow: Overflow) -> Hub<Frame> {
    Hub::builder().capacity(capacity).overflow(overflow).build().unwrap()
}

pub async fn start<E: Engine<Frame>>(engine: E, cfg: WsConfig) -> TestServer<E> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = Gateway::new(engine, cfg).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let g = gw.clone();
    let task = tokio::spawn(async move {
        serve(listener, g, not_found, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestServer { gw, addr, stop: Some(tx), task: Some(task) }
}

/// Connects with extra headers; the `101` response (for its headers) or the error.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    small_rcvbuf: bool,
) -> Result<(Client, Response<Option<Vec<u8>>>), WsError> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            k.parse::<fanout_ws::tokio_tungstenite::tungstenite::http::HeaderName>().unwrap(),
            v.parse().unwrap(),
        );
    }
    let sock = TcpSocket::new_v4().unwrap();
    if small_rcvbuf {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    let tcp = sock.connect(addr).await.unwrap();
    client_async(req, tcp).await
}

pub async fn connect(addr: SocketAddr) -> Client {
    try_connect(addr, "/ws", &[], false).await.unwrap().0
}

/// Connects and returns the client id from `X-Fanout-Client-Id`.
pub async fn connect_id(addr: SocketAddr, small_rcvbuf: bool) -> (Client, u64) {
    let (ws, resp) = try_connect(addr, "/ws", &[], small_rcvbuf).await.unwrap();
    let id = resp.headers().get("x-fanout-client-id").unwrap().to_str().unwrap().parse().unwrap();
    (ws, id)
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    match try_connect(addr, path, headers, false).await {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

pub async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

pub async fn send_text(ws: &mut Client, s: &str) {
    ws.send(Message::Text(s.to_string().into())).await.unwrap();
}

/// The next text frame as JSON (pings are skipped).
pub async fn next_json(ws: &mut Client) -> Value {
    loop {
        match ws.next().await.expect("stream ended").expect("read error") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Sends a request and returns its response (pushes before it are skipped).
pub async fn call(ws: &mut Client, id: u64, method: &str, params: Value) -> Value {
    send(ws, json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
    loop {
        let v = next_json(ws).await;
        if v.get("id") == Some(&json!(id)) {
            return v;
        }
    }
}

pub async fn subscribe(ws: &mut Client, topic: &str) {
    let r = call(ws, 9_000, "subscribe", json!({"topic": topic})).await;
    assert_eq!(r["result"]["subscribed"], true, "{r}");
}

/// Reads until the close frame; returns it (data frames before it are skipped).
pub async fn expect_close(ws: &mut Client) -> CloseFrame {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => return f,
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("read error before the close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

pub fn code(f: &CloseFrame) -> u16 {
    u16::from(f.code)
}

/// The `Engine` methods a test engine wrapping a `Hub<Frame>` in its `hub`
/// field passes through unchanged: join, leave, publish, broadcast, unicast,
/// stats, shutdown. Write the methods the test changes, then call this
/// inside the `impl Engine<Frame>` block.
#[macro_export]
macro_rules! delegate_to_hub {
    () => {
        fn join(
            &self,
            id: fanout_core::SubscriberId,
            topic: &str,
        ) -> Result<bool, fanout_core::SubscribeError> {
            self.hub.join(id, topic)
        }
        fn leave(
            &self,
            id: fanout_core::SubscriberId,
            topic: &str,
        ) -> Result<bool, fanout_core::SubscribeError> {
            self.hub.leave(id, topic)
        }
        fn publish_with<F: FnOnce(fanout_core::Meta) -> fanout_ws::Frame>(
            &self,
            topic: &str,
            priority: fanout_core::Priority,
            make: F,
        ) -> Result<fanout_core::PublishReport, fanout_core::PublishError> {
            self.hub.publish_with(topic, priority, make)
        }
        fn broadcast(
            &self,
            payload: fanout_ws::Frame,
        ) -> Result<fanout_core::PublishReport, fanout_core::PublishError> {
            self.hub.broadcast(payload)
        }
        fn send_to(
            &self,
            id: fanout_core::SubscriberId,
            payload: fanout_ws::Frame,
        ) -> Result<(), fanout_core::SendError<fanout_ws::Frame>> {
            self.hub.send_to(id, payload)
        }
        fn stats(&self) -> fanout_core::Stats {
            self.hub.stats()
        }
        fn shutdown(&self) {
            self.hub.shutdown()
        }
    };
}
