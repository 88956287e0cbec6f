//! The recovery protocol over a real WebSocket (`recovery.rs`): subscribe
//! with `since` (recovered, or not with the reason), with `latest`, and the
//! `history` method.

mod common;

use std::time::Duration;

use common::*;
use fanout_core::Hub;
use fanout_ws::{Frame, WsConfig};
use serde_json::{json, Value};

fn history_hub() -> Hub<Frame> {
    Hub::builder().history(100, Duration::from_secs(300)).build().unwrap()
}

/// The next push (a JSON object with `seq`), skipping nothing else.
async fn next_push(ws: &mut Client) -> Value {
    let v = next_json(ws).await;
    assert!(v.get("seq").is_some(), "expected a push, got {v}");
    v
}

#[tokio::test]
async fn a_client_that_reconnects_with_since_gets_what_it_missed_then_live() {
    let srv = start(history_hub(), WsConfig::default()).await;
    let mut a = connect(srv.addr).await;
    let r = call(&mut a, 1, "subscribe", json!({"topic": "prices"})).await;
    assert_eq!(r["result"]["seq"], 0, "nothing published yet: {r}");
    for v in 1..=3 {
        srv.gw.publish_value("prices", &json!({"v": v})).unwrap();
    }
    let mut last = Value::Null;
    for v in 1..=3 {
        last = next_push(&mut a).await;
        assert_eq!(last["payload"]["v"], v);
    }
    let (epoch, seq) = (last["epoch"].as_u64().unwrap(), last["seq"].as_u64().unwrap());
    assert!(epoch < 1 << 53, "exact in a JavaScript number");
    drop(a); // the client goes away; the topic keeps its stream
    for v in 4..=6 {
        srv.gw.publish_value("prices", &json!({"v": v})).unwrap();
    }

    let mut b = connect(srv.addr).await;
    let r =
        call(&mut b, 1, "subscribe", json!({"topic": "prices", "since": {"seq": seq, "epoch": epoch}})).await;
    let res = &r["result"];
    assert_eq!(
        (res["recovered"].clone(), res["seq"].clone(), res["epoch"].clone()),
        (json!(true), json!(6), json!(epoch)),
        "{r}"
    );
    assert!(res.get("reason").is_none());
    srv.gw.publish_value("prices", &json!({"v": 7})).unwrap();
    for v in 4..=7 {
        let p = next_push(&mut b).await;
        assert_eq!((p["seq"].clone(), p["payload"]["v"].clone()), (json!(v), json!(v)), "replay, then live");
    }
}

#[tokio::test]
async fn not_recovered_says_why_and_where_the_stream_is() {
    let srv = start(history_hub(), WsConfig::default()).await;
    srv.gw.publish_value("t", &json!(1)).unwrap();
    let mut c = connect(srv.addr).await;
    let r = call(&mut c, 1, "subscribe", json!({"topic": "t", "since": {"seq": 1, "epoch": 12345}})).await;
    let res = &r["result"];
    assert_eq!(
        (res["recovered"].clone(), res["reason"].clone(), res["seq"].clone()),
        (json!(false), json!("epoch_changed"), json!(1)),
        "{r}"
    );
    // Bad params are an error, not a guess.
    let r = call(&mut c, 2, "subscribe", json!({"topic": "u", "since": {"seq": 1}})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r =
        call(&mut c, 3, "subscribe", json!({"topic": "u", "since": {"seq": 1, "epoch": 1}, "latest": true}))
            .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[tokio::test]
async fn latest_then_live_and_the_history_method() {
    let srv = start(history_hub(), WsConfig::default()).await;
    for v in 1..=5 {
        srv.gw.publish_value("scores", &json!({"v": v})).unwrap();
    }
    let mut c = connect(srv.addr).await;
    let r = call(&mut c, 1, "subscribe", json!({"topic": "scores", "latest": true})).await;
    assert_eq!(r["result"]["seq"], 5, "{r}");
    assert_eq!(next_push(&mut c).await["payload"]["v"], 5, "the latest message, right after the result");

    let r = call(&mut c, 2, "history", json!({"topic": "scores", "limit": 2, "since": 1})).await;
    let res = &r["result"];
    assert_eq!(res["seq"], 5, "{r}");
    let pubs = res["publications"].as_array().unwrap();
    let got: Vec<(Value, Value)> =
        pubs.iter().map(|p| (p["seq"].clone(), p["payload"]["v"].clone())).collect();
    assert_eq!(got, vec![(json!(2), json!(2)), (json!(3), json!(3))], "the oldest after since, limit 2");
    assert!(pubs[0]["ts"].as_u64().is_some());
    let r = call(&mut c, 3, "history", json!({"topic": "scores", "limit": 1})).await;
    assert_eq!(r["result"]["publications"][0]["seq"], 5, "without since: the newest");
    let r = call(&mut c, 4, "history", json!({"topic": "nothing-here"})).await;
    assert_eq!(r["result"], json!({"epoch": 0, "seq": 0, "publications": []}));
    let r = call(&mut c, 5, "history", json!({"topic": "scores", "limit": 5000})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[tokio::test]
async fn history_needs_the_right_to_subscribe() {
    let secret = "a-test-secret-that-is-long-enough-0123456789";
    let cfg = WsConfig { jwt_secret: Some(secret.into()), ..WsConfig::default() };
    let srv = start(history_hub(), cfg).await;
    srv.gw.publish_value("private.a", &json!(1)).unwrap();
    let token = fanout_ws::sign_hs256(&json!({"sub": "u", "subscribe": ["public.*"]}), secret.as_bytes());
    let auth = format!("Bearer {token}");
    let (mut c, _) = try_connect(srv.addr, "/ws", &[("authorization", auth.as_str())], false).await.unwrap();
    let r = call(&mut c, 1, "history", json!({"topic": "private.a"})).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let r = call(&mut c, 2, "subscribe", json!({"topic": "private.a", "latest": true})).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
}

/// With a history, a topic outlives its last subscriber for the TTL: a client
/// that subscribes to new names and unsubscribes again must still meet the
/// global topic cap (counted in the engine), and so must a publish that would
/// create a topic. Before the cap counted the engine's topics, all 20 names
/// were accepted and stayed in the engine.
#[tokio::test]
async fn the_topic_cap_counts_topics_that_outlive_their_subscribers() {
    let secret = "a-test-secret-that-is-long-enough-0123456789";
    let cfg = WsConfig { max_topics: 10, jwt_secret: Some(secret.into()), ..WsConfig::default() };
    let srv = start(history_hub(), cfg).await;
    let reader = fanout_ws::sign_hs256(&json!({"sub": "r", "subscribe": ["*"]}), secret.as_bytes());
    let auth = format!("Bearer {reader}");
    let (mut c, _) = try_connect(srv.addr, "/ws", &[("authorization", auth.as_str())], false).await.unwrap();
    let mut refused = 0;
    for i in 0..20 {
        let t = format!("churn{i}");
        let r = call(&mut c, 2 * i, "subscribe", json!({"topic": t})).await;
        if r["error"]["code"] == json!(-32006) {
            refused += 1;
            continue;
        }
        assert_eq!(r["result"]["subscribed"], true, "{r}");
        let r = call(&mut c, 2 * i + 1, "unsubscribe", json!({"topic": t})).await;
        assert_eq!(r["result"]["left"], true, "{r}");
    }
    assert_eq!(refused, 10, "the 11th new topic on is refused");
    assert_eq!(srv.gw.engine().topic_count(), 10, "and never created");
    // A topic that exists can still be joined at the cap.
    let r = call(&mut c, 100, "subscribe", json!({"topic": "churn3"})).await;
    assert_eq!(r["result"]["subscribed"], true, "{r}");
    // A publisher's new topic counts too.
    let token = fanout_ws::sign_hs256(&json!({"sub": "p", "publish": ["*"]}), secret.as_bytes());
    let auth = format!("Bearer {token}");
    let (mut p, _) = try_connect(srv.addr, "/ws", &[("authorization", auth.as_str())], false).await.unwrap();
    let r = call(&mut p, 1, "publish", json!({"topic": "brand-new", "payload": 1})).await;
    assert_eq!(r["error"]["code"], -32006, "{r}");
    let r = call(&mut p, 2, "publish", json!({"topic": "churn3", "payload": 1})).await;
    assert_eq!(r["result"]["seq"], 1, "{r}");
}

/// Gap repair over a real socket: a client whose socket is full under
/// `DropOldest` (the same setup as `lag_notice_under_drop_oldest`, which
/// loses messages without repair) gets every message, in order, the lost ones
/// from the history, announced by a repair notice and no lag notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_what_its_queue_lost_back_from_the_history() {
    use fanout_core::Overflow;
    let hub = Hub::builder()
        .capacity(4)
        .overflow(Overflow::DropOldest)
        .repair(true)
        .history(200, Duration::from_secs(300))
        .build()
        .unwrap();
    let srv = start(hub, WsConfig::default()).await;
    let (mut ws, _) = connect_id(srv.addr, true).await;
    subscribe(&mut ws, "t").await;
    let big = serde_json::value::to_raw_value(&"x".repeat(64 * 1024)).unwrap();
    let n = 150u64;
    for _ in 0..n {
        srv.gw.publish_json("t", &big).unwrap();
    }
    let (mut expected, mut repaired) = (1u64, 0u64);
    while expected <= n {
        let m = next_json(&mut ws).await;
        assert!(m.get("lagged").is_none(), "nothing is lost while the history holds it: {m}");
        if let Some(r) = m.get("repaired") {
            assert_eq!(m["topic"], "t");
            repaired += r.as_u64().unwrap();
            continue;
        }
        assert_eq!(m["seq"], expected, "every message, in order");
        expected += 1;
    }
    assert!(repaired > 0, "the queue overflowed and was repaired");
}

/// Conflation over a real socket: a keyed publish (`key`) to a topic whose
/// rule says `conflate` never evicts a slow client; what it missed comes back
/// as the newest message per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_on_a_conflated_topic_gets_the_newest_per_key() {
    use fanout_core::{Overflow, TopicOptions};
    let hub = Hub::builder()
        .capacity(4)
        .repair(true)
        .topic_options(|_| TopicOptions {
            history_size: 500,
            history_ttl: Duration::from_secs(300),
            overflow: Some(Overflow::Conflate),
            shared_log: 0,
            shared_log_from: 0,
        })
        .build()
        .unwrap();
    let srv = start(hub, WsConfig::default()).await;
    let (mut ws, _) = connect_id(srv.addr, true).await;
    subscribe(&mut ws, "prices").await;
    let big = "x".repeat(64 * 1024);
    let n = 150u64;
    for i in 1..=n {
        let key = ["EUR", "GBP", "JPY"][(i % 3) as usize];
        let p = serde_json::value::to_raw_value(&json!({"key": key, "i": i, "pad": big})).unwrap();
        srv.gw.publish_json_async("prices", Some(key), &p).await.unwrap();
    }
    let (mut last, mut newest, mut conflated) = (0u64, std::collections::HashMap::new(), 0u64);
    while last < n {
        let m = next_json(&mut ws).await;
        assert!(m.get("lagged").is_none(), "nothing is lost while the history holds it: {m}");
        if let Some(c) = m.get("conflated") {
            conflated += c.as_u64().unwrap();
            continue;
        }
        let seq = m["seq"].as_u64().unwrap();
        assert!(seq > last, "in order");
        last = seq;
        newest.insert(m["payload"]["key"].as_str().unwrap().to_string(), seq);
    }
    assert!(conflated > 0, "the queue overflowed and older prices were left out");
    let want: std::collections::HashMap<String, u64> =
        [("EUR", 150), ("GBP", 148), ("JPY", 149)].into_iter().map(|(k, s)| (k.to_string(), s)).collect();
    assert_eq!(newest, want, "every key's newest price arrived");
}
