//! A token's `channels` are joined as `subscribe` joins, waiting for an
//! engine that waits (a cluster node, for its broker subscription): the
//! connection answers nothing before they are joined, so a client whose
//! first call was answered misses nothing published on its channels.
//!
//! The engine here is a hub whose asynchronous join waits at a gate the test
//! opens. Before the change the channels were joined with the synchronous
//! join, the gate was never reached, and the first call was answered while
//! a cluster node would still be subscribing: this test failed there.

mod common;

use std::future::Future;
use std::sync::Arc;

use common::*;
use fanout_core::{Engine, Hub, JoinFrom, Joined, Priority, SubscribeError, Subscriber, SubscriberId};
use fanout_ws::{Frame, WsConfig};
use serde_json::json;
use tokio::sync::Notify;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A hub whose `join_from_async` waits until `open` is notified, after
/// notifying `entered`.
#[derive(Clone)]
struct Gated {
    hub: Hub<Frame>,
    entered: Arc<Notify>,
    open: Arc<Notify>,
}

impl Engine<Frame> for Gated {
    type Subscriber = Subscriber<Frame>;
    fn name(&self) -> &'static str {
        "gated"
    }
    fn subscribe(&self) -> Result<Subscriber<Frame>, SubscribeError> {
        self.hub.subscribe()
    }
    // As the trait declares it (its future must be `Send`).
    #[allow(clippy::manual_async_fn)]
    fn join_from_async<'a>(
        &'a self,
        id: SubscriberId,
        topic: &'a str,
        from: JoinFrom,
    ) -> impl Future<Output = Result<Joined, SubscribeError>> + Send + 'a {
        async move {
            self.entered.notify_one();
            self.open.notified().await;
            self.hub.join_from(id, topic, from)
        }
    }
    delegate_to_hub!();
}

#[tokio::test]
async fn channels_are_joined_before_the_first_answer() {
    let engine = Gated { hub: hub(), entered: Arc::new(Notify::new()), open: Arc::new(Notify::new()) };
    let cfg = WsConfig { jwt_secret: Some(SECRET.into()), ..WsConfig::default() };
    let mut server = start(engine.clone(), cfg).await;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": "u", "exp": exp, "channels": ["room"], "subscribe": ["other"]});
    let token = fanout_ws::sign_hs256(&claims, SECRET.as_bytes());
    let mut ws = try_connect(server.addr, &format!("/ws?token={token}"), &[], false).await.unwrap().0;
    // A call the connection answers alone (no engine): it is read only once
    // the session is set up.
    send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "unsubscribe", "params": {"topic": "other"}}))
        .await;
    tokio::select! {
        biased;
        _ = engine.entered.notified() => {}
        reply = next_json(&mut ws) => panic!("answered before the channel was joined: {reply}"),
    }
    engine.open.notify_one();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["result"]["left"], false, "{reply}");
    // Joined: a publish to the channel reaches the client.
    let raw = serde_json::value::to_raw_value(&json!({"x": 1})).unwrap();
    engine
        .hub
        .publish_with("room", Priority::Normal, |meta| {
            fanout_ws::frame::encode_json(Some("room"), meta, 0, &raw)
        })
        .unwrap();
    let push = next_json(&mut ws).await;
    assert_eq!(push["topic"], "room", "{push}");
    server.shutdown(std::time::Duration::from_secs(1)).await;
}
