//! A connection whose engine is never empty still reads, drains and closes.
//!
//! A connection polls its engine first (see `conn.rs`). The engine here, a
//! *firehose*, always has another message ready, so without the fairness rule
//! (the other sources go first once every few batches) the requests below
//! would never be answered and the drain never seen. Both tests bound the
//! frames they read, so a regression fails instead of hanging.

mod common;

use common::*;
use fanout_core::{
    Engine, Hub, Message as EngineMessage, Receiver, RecvError, SubscribeError, Subscriber, SubscriberId,
    TryRecvError,
};
use fanout_ws::tokio_tungstenite::tungstenite::Message;
use fanout_ws::{Frame, WsConfig};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// Frames a test reads before it gives up: far more than the fairness rule needs.
const BOUND: usize = 20_000;

/// A real hub whose subscribers always have one more message; with
/// `lagging`, every other receive reports a lag instead, as an overflowing
/// `DropOldest` queue does.
#[derive(Clone)]
struct Firehose {
    hub: Hub<Frame>,
    msg: EngineMessage<Frame>,
    lagging: bool,
}

impl Firehose {
    fn new() -> Self {
        let hub = Hub::new();
        let mut s = hub.subscribe().unwrap();
        hub.broadcast(Frame::Text(r#"{"fire":1}"#.into())).unwrap();
        let msg = s.try_recv().unwrap();
        Firehose { hub, msg, lagging: false }
    }

    fn lagging() -> Self {
        Firehose { lagging: true, ..Firehose::new() }
    }
}

struct FirehoseSub {
    inner: Subscriber<Frame>,
    msg: EngineMessage<Frame>,
    lagging: bool,
    calls: u64,
}

impl Receiver<Frame> for FirehoseSub {
    fn id(&self) -> SubscriberId {
        self.inner.id()
    }
    fn try_recv(&mut self) -> Result<EngineMessage<Frame>, TryRecvError> {
        // The drain takes until empty: a finite drain, as a real queue has.
        Receiver::try_recv(&mut self.inner)
    }
    fn recv_many<'a>(
        &'a mut self,
        buf: &'a mut Vec<EngineMessage<Frame>>,
        _max: usize,
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        self.calls += 1;
        if self.lagging && self.calls % 2 == 0 {
            return std::future::ready(Err(RecvError::Lagged(1)));
        }
        buf.push(self.msg.clone());
        std::future::ready(Ok(1))
    }
}

impl Engine<Frame> for Firehose {
    type Subscriber = FirehoseSub;
    fn name(&self) -> &'static str {
        "firehose"
    }
    fn subscribe(&self) -> Result<FirehoseSub, SubscribeError> {
        Ok(FirehoseSub {
            inner: self.hub.subscribe()?,
            msg: self.msg.clone(),
            lagging: self.lagging,
            calls: 0,
        })
    }
    delegate_to_hub!();
}

#[tokio::test]
async fn requests_are_answered_while_the_engine_is_never_empty() {
    requests_are_answered(Firehose::new()).await;
}

/// Lag notices count as batches too: an overflowing queue alternates them
/// with messages, and must not reset the count that lets the others in.
#[tokio::test]
async fn requests_are_answered_while_the_engine_lags_and_delivers_in_turn() {
    requests_are_answered(Firehose::lagging()).await;
}

async fn requests_are_answered(engine: Firehose) {
    let server = start(engine, WsConfig::default()).await;
    let mut ws = connect(server.addr).await;
    for id in 1..=3u64 {
        send(&mut ws, json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"topic": "t"}}))
            .await;
        let mut pushes = 0;
        let reply = loop {
            assert!(pushes < BOUND, "no answer to request {id} within {BOUND} pushes");
            let v = next_json(&mut ws).await;
            if v.get("id") == Some(&json!(id)) {
                break v;
            }
            assert!(v == json!({"fire": 1}) || v.get("lagged").is_some(), "{v}");
            pushes += 1;
        };
        assert_eq!(reply["result"]["subscribed"], true, "{reply}");
        assert_eq!(reply["result"]["joined"], json!(id == 1), "{reply}");
    }
}

#[tokio::test]
async fn a_drain_closes_a_connection_whose_engine_is_never_empty() {
    let mut server = start(Firehose::new(), WsConfig::default()).await;
    let mut ws = connect(server.addr).await;
    assert_eq!(next_json(&mut ws).await, json!({"fire": 1}));
    let reader = tokio::spawn(async move {
        for _ in 0..BOUND {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(v, json!({"fire": 1}));
                }
                Some(Ok(_)) => {}
                other => panic!("expected pushes then a close frame, got {other:?}"),
            }
        }
        panic!("no close frame within {BOUND} frames");
    });
    let report = server.shutdown(Duration::from_secs(30)).await;
    assert_eq!(reader.await.unwrap(), Some(1001));
    assert!(report.graceful, "{report:?}");
}
