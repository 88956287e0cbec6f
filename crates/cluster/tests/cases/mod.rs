//! The cases every broker must pass (tests/redis.rs and tests/nats.rs run
//! them on the shared brokers): nodes agree on `seq`, a client recovers on
//! another node, what the routing lost is read back from the broker, what
//! the broker no longer holds is a lag notice, a node's death loses
//! nothing for clients that move, a node cut off from the broker
//! catches up when it is let back, a message's priority and key reach
//! every node, and a batch is numbered in the order given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;
use fanout_cluster::Event;
use fanout_core::{Engine, JoinFrom, Position};
use serde_json::json;

pub async fn two_nodes_agree_on_every_seq(url: &str) {
    let s = settings(url, "agree");
    let _cleanup = Cleanup(s.clone());
    let (a, b) = (node(&s).await, node(&s).await);
    let (mut sa, ja) = join(&a, "room", JoinFrom::Now).await;
    let (mut sb, jb) = join(&b, "room", JoinFrom::Now).await;
    assert_eq!(ja.position, jb.position, "one stream, one position");
    // Two publishers on two nodes at once.
    let pa = tokio::spawn({
        let a = a.clone();
        async move {
            for i in 0..20 {
                publish(&a, "room", json!({"from": "a", "i": i})).await.unwrap();
            }
        }
    });
    for i in 0..20 {
        publish(&b, "room", json!({"from": "b", "i": i})).await.unwrap();
    }
    pa.await.unwrap();
    let got_a = messages(&mut sa, 40).await;
    let got_b = messages(&mut sb, 40).await;
    assert_eq!(got_a, got_b, "the same messages, at the same seq, on both nodes");
    let seqs: Vec<u64> = got_a.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (ja.position.seq + 1..=ja.position.seq + 40).collect::<Vec<_>>());
    assert!(got_a.iter().all(|m| m.1 == ja.position.epoch));
}

pub async fn a_client_recovers_on_a_node_that_never_had_the_topic(url: &str) {
    let s = settings(url, "recover");
    let _cleanup = Cleanup(s.clone());
    let a = node(&s).await;
    let (mut sa, _) = join(&a, "news", JoinFrom::Now).await;
    for i in 1..=3 {
        publish(&a, "news", json!(i)).await.unwrap();
    }
    let seen = messages(&mut sa, 3).await;
    let last = Position { epoch: seen[2].1, seq: seen[2].0 };
    drop(sa); // the client goes away
    for i in 4..=8 {
        publish(&a, "news", json!(i)).await.unwrap();
    }
    // It comes back on node b, which has no interest in the topic yet.
    let b = node(&s).await;
    let (mut sb, j) = join(&b, "news", JoinFrom::After(last)).await;
    assert!(j.recovered, "{j:?}");
    assert_eq!(j.position, Position { epoch: last.epoch, seq: last.seq + 5 });
    publish(&b, "news", json!(9)).await.unwrap();
    let got: Vec<serde_json::Value> = messages(&mut sb, 6).await.into_iter().map(|m| m.2).collect();
    assert_eq!(got, (4..=9).map(|i| json!(i)).collect::<Vec<_>>(), "replay, then live, no gap, no duplicate");
    // The history reads the broker too, on a node with no interest.
    let c = node(&s).await;
    let page = c.history_async("news", 3, Some(last.seq)).await.expect("a page");
    assert_eq!(
        page.messages.iter().map(|m| m.seq()).collect::<Vec<_>>(),
        [4, 5, 6].map(|k| last.seq - 3 + k)
    );
}

pub async fn what_the_routing_lost_is_read_back_from_the_stream(url: &str) {
    let s = settings(url, "repair");
    let _cleanup = Cleanup(s.clone());
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    // Node a loses every routed message after the 2nd, up to the 5th.
    let a = filtered_node(&s, move |ev| {
        !matches!(ev, Event::Message(_)) || !(3..=5).contains(&(c.fetch_add(1, Ordering::SeqCst) + 1))
    })
    .await;
    let b = node(&s).await;
    let (mut sa, j) = join(&a, "t", JoinFrom::Now).await;
    for i in 1..=7 {
        publish(&b, "t", json!(i)).await.unwrap();
    }
    let got = messages(&mut sa, 7).await;
    assert_eq!(got.iter().map(|m| m.0 - j.position.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        got.iter().map(|m| m.2.clone()).collect::<Vec<_>>(),
        (1..=7).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert!(
        a.metrics_text().contains(&format!(
            "fanout_cluster_repaired_total{{broker=\"{}\"}} 3",
            s.kind().map(|k| format!("{k:?}").to_lowercase()).unwrap()
        )),
        "{}",
        a.metrics_text()
    );
}

pub async fn what_the_stream_no_longer_holds_is_a_lag_notice_never_a_silent_gap(url: &str) {
    let mut s = settings(url, "lost");
    s.retention = 2;
    let _cleanup = Cleanup(s.clone());
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    // Node a misses the 2nd to the 6th message; the stream keeps 2.
    let a = filtered_node(&s, move |ev| {
        !matches!(ev, Event::Message(_)) || !(2..=6).contains(&(c.fetch_add(1, Ordering::SeqCst) + 1))
    })
    .await;
    let b = node(&s).await;
    let (mut sa, j) = join(&a, "t", JoinFrom::Now).await;
    for i in 1..=9 {
        publish(&b, "t", json!(i)).await.unwrap();
    }
    let base = j.position.seq;
    let mut got = Vec::new();
    while got
        .last()
        .is_none_or(|g| *g != Got::Msg { seq: base + 9, epoch: j.position.epoch, payload: json!(9) })
    {
        got.push(next(&mut sa).await);
    }
    // 1 arrives; 2..=6 are gone from the stream when 7 arrives (it holds 8 and
    // 9 by then, or 6 and 7): whatever was lost is announced before the next.
    let mut expect = base + 1;
    for g in &got {
        match g {
            Got::Msg { seq, .. } => {
                assert_eq!(*seq, expect, "no silent gap: {got:?}");
                expect += 1;
            }
            Got::Lagged(n) => expect += n,
        }
    }
    assert!(got.iter().any(|g| matches!(g, Got::Lagged(_))), "{got:?}");
    // A client that saw 1 is told it cannot be replayed.
    let (_s2, j2) = join(&a, "t", JoinFrom::After(Position { epoch: j.position.epoch, seq: base + 1 })).await;
    assert!(!j2.recovered);
}

pub async fn a_node_that_dies_loses_nothing_for_clients_that_move(url: &str) {
    let s = settings(url, "kill");
    let _cleanup = Cleanup(s.clone());
    let a = node(&s).await;
    let b = node(&s).await;
    let (mut sa, _) = join(&a, "t", JoinFrom::Now).await;
    publish(&b, "t", json!(1)).await.unwrap();
    let seen = messages(&mut sa, 1).await;
    a.shutdown(); // node a dies
    drop(a);
    for i in 2..=4 {
        publish(&b, "t", json!(i)).await.unwrap();
    }
    let from = JoinFrom::After(Position { epoch: seen[0].1, seq: seen[0].0 });
    let (mut sb, j) = join(&b, "t", from).await;
    assert!(j.recovered);
    let got: Vec<_> = messages(&mut sb, 3).await.into_iter().map(|m| m.2).collect();
    assert_eq!(got, [json!(2), json!(3), json!(4)]);
}

/// A partition: node a is cut off from the broker (a proxy between them
/// drops every connection and refuses new ones) while node b goes on
/// publishing; when a is let back, its client gets what b published
/// meanwhile, in order, then the live messages: no gap, no duplicate.
pub async fn a_node_cut_off_from_the_broker_catches_up_when_let_back(url: &str) {
    let s = settings(url, "cut");
    let _cleanup = Cleanup(s.clone());
    let proxy = Cut::to(url).await;
    let scheme = url.split_once("://").unwrap().0;
    let a = node(&fanout_cluster::BrokerSettings { url: proxy.url(scheme), ..s.clone() }).await;
    let b = node(&s).await;
    let (mut sa, j) = join(&a, "t", JoinFrom::Now).await;
    for i in 1..=2 {
        publish(&b, "t", json!(i)).await.unwrap();
    }
    assert_eq!(
        messages(&mut sa, 2).await.iter().map(|m| m.2.clone()).collect::<Vec<_>>(),
        [json!(1), json!(2)]
    );
    proxy.cut();
    for i in 3..=5 {
        publish(&b, "t", json!(i)).await.unwrap();
    }
    proxy.heal();
    publish(&b, "t", json!(6)).await.unwrap();
    let got = messages(&mut sa, 4).await;
    assert_eq!(
        got.iter().map(|m| (m.0 - j.position.seq, m.2.clone())).collect::<Vec<_>>(),
        (3..=6).map(|i| (i, json!(i))).collect::<Vec<_>>(),
        "what b published while a was cut off, in order, then live"
    );
}

/// A publish's priority and conflation key reach the other nodes' clients,
/// live and when read back from the broker (before, every node delivered
/// `Normal` messages without a key: the broker's body did not carry them).
pub async fn priority_and_key_reach_every_node(url: &str) {
    use fanout_core::{Message, Priority};
    let s = settings(url, "keyed");
    let _cleanup = Cleanup(s.clone());
    let (a, b) = (node(&s).await, node(&s).await);
    let (mut sb, j) = join(&b, "px", JoinFrom::Now).await;
    let publish_as = |priority, key: Option<&'static str>, v: serde_json::Value| {
        let a = a.clone();
        async move {
            let raw = serde_json::value::to_raw_value(&v).unwrap();
            a.publish_async("px", priority, key, move |meta| {
                fanout_ws::frame::encode_json(Some("px"), meta, 0, &raw)
            })
            .await
            .unwrap()
        }
    };
    publish_as(Priority::High, Some("EURUSD"), json!(1.08)).await;
    publish_as(Priority::Normal, None, json!("plain")).await;
    let mut got: Vec<Message<fanout_ws::Frame>> = Vec::new();
    while got.len() < 2 {
        let mut buf = Vec::new();
        tokio::time::timeout(PATIENCE, sb.recv_many(&mut buf, 2)).await.expect("in time").expect("open");
        got.append(&mut buf);
    }
    let seen = |ms: &[Message<fanout_ws::Frame>]| {
        ms.iter().map(|m| (m.seq(), m.priority(), m.key().map(|k| k.to_string()))).collect::<Vec<_>>()
    };
    let want = vec![
        (j.position.seq + 1, Priority::High, Some("EURUSD".to_string())),
        (j.position.seq + 2, Priority::Normal, None),
    ];
    assert_eq!(seen(&got), want, "live, on another node");
    // Read back from the broker by a node with no interest in the topic.
    let c = node(&s).await;
    let page = c.history_async("px", 2, Some(j.position.seq)).await.expect("a page");
    assert_eq!(seen(&page.messages), want, "read back from the broker");
}

/// A batch (the HTTP API's array) is numbered in the order given, per
/// topic, and every node delivers it in that order: the broker's
/// `publish_many` (one pipeline on Redis) keeps the order it was handed.
pub async fn a_batch_is_numbered_in_the_order_given(url: &str) {
    use fanout_core::{Priority, PublishItem};
    let s = settings(url, "batch");
    let _cleanup = Cleanup(s.clone());
    let (a, b) = (node(&s).await, node(&s).await);
    let (mut sx, jx) = join(&b, "bx", JoinFrom::Now).await;
    let (mut sy, jy) = join(&b, "by", JoinFrom::Now).await;
    // bx 0, by 0, bx 1, by 1, ...: two topics interleaved in one batch, long
    // enough for Redis to take it in three script calls (64 per call).
    const EACH: u64 = 70;
    let raws: Vec<_> =
        (0..2 * EACH).map(|i| serde_json::value::to_raw_value(&json!(i / 2)).unwrap()).collect();
    let items = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let topic = if i % 2 == 0 { "bx" } else { "by" };
            PublishItem {
                topic,
                priority: Priority::Normal,
                key: None,
                make: move |meta| fanout_ws::frame::encode_json(Some(topic), meta, 0, raw),
            }
        })
        .collect();
    let answers: Vec<u64> =
        a.publish_batch_async(items).await.into_iter().map(|r| r.expect("confirmed").seq).collect();
    let (x, y) = (jx.position.seq, jy.position.seq);
    let want: Vec<u64> = (1..=EACH).flat_map(|i| [x + i, y + i]).collect();
    assert_eq!(answers, want, "numbered in the order given, per topic");
    for (sub, j) in [(&mut sx, &jx), (&mut sy, &jy)] {
        let got = messages(sub, EACH as usize).await;
        let want: Vec<_> = (0..EACH).map(|i| (j.position.seq + 1 + i, j.position.epoch, json!(i))).collect();
        assert_eq!(got, want, "in the batch's order, on another node");
    }
    // A batch of one (on Redis: the single publish's script) goes on from there.
    let raw = serde_json::value::to_raw_value(&json!("one")).unwrap();
    let one = PublishItem {
        topic: "bx",
        priority: Priority::Normal,
        key: None,
        make: |meta| fanout_ws::frame::encode_json(Some("bx"), meta, 0, &raw),
    };
    let answer = a.publish_batch_async(vec![one]).await;
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].as_ref().expect("confirmed").seq, x + EACH + 1);
    assert_eq!(messages(&mut sx, 1).await, [(x + EACH + 1, jx.position.epoch, json!("one"))]);
}

/// One test per case above, on the broker at `$url`.
macro_rules! broker_cases {
    ($url:expr) => {
        broker_cases!(@each $url;
            two_nodes_agree_on_every_seq,
            a_client_recovers_on_a_node_that_never_had_the_topic,
            what_the_routing_lost_is_read_back_from_the_stream,
            what_the_stream_no_longer_holds_is_a_lag_notice_never_a_silent_gap,
            a_node_that_dies_loses_nothing_for_clients_that_move,
            priority_and_key_reach_every_node,
            a_batch_is_numbered_in_the_order_given,
            a_node_cut_off_from_the_broker_catches_up_when_let_back,
        );
    };
    (@each $url:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                cases::$case(&$url).await;
            }
        )*
    };
}
