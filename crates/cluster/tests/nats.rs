//! The cluster over a real NATS JetStream: the cases of tests/cases on the
//! shared NATS, and a private nats-server that the test stops and starts.

#[macro_use]
mod cases;
mod common;

use common::*;
use fanout_core::{JoinFrom, Position, PublishError};
use serde_json::json;

broker_cases!(shared_nats());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_fails_publishes_and_a_restart_with_its_store_continues_the_stream() {
    let mut nats = Private::nats();
    let s = settings(&nats.url("nats"), "restart");
    let a = node(&s).await;
    let b = node(&s).await;
    let (mut sa, _) = join(&a, "t", JoinFrom::Now).await;
    publish(&b, "t", json!(1)).await.unwrap();
    let first = messages(&mut sa, 1).await;

    nats.down();
    // Not confirmed: the client gets an error. (async-nats may still send it
    // after the reconnect, so it may be stored: "not confirmed", not "lost".)
    assert_eq!(publish(&b, "t", json!("maybe")).await, Err(PublishError::Unavailable));

    nats.up(); // the same store: the stream is still there
    let deadline = std::time::Instant::now() + PATIENCE;
    let seq = loop {
        match publish(&b, "t", json!(2)).await {
            Ok(seq) => break seq,
            Err(_) => assert!(std::time::Instant::now() < deadline, "never reconnected"),
        }
    };
    assert!(seq == first[0].0 + 1 || seq == first[0].0 + 2, "the stream goes on: {seq}");
    let got = messages(&mut sa, (seq - first[0].0) as usize).await;
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, (first[0].0 + 1..=seq).collect::<Vec<_>>(), "same epoch, no gap");
    assert!(got.iter().all(|g| g.1 == first[0].1), "same epoch: {got:?}");
    assert_eq!(got.last().unwrap().2, json!(2));
    // A client from before the restart recovers.
    let (_s2, j) = join(&b, "t", JoinFrom::After(Position { epoch: first[0].1, seq: first[0].0 })).await;
    assert!(j.recovered, "{j:?}");
}
