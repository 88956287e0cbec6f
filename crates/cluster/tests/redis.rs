//! The cluster over a real Redis: the cases of tests/cases on the shared
//! Redis, and a private redis-server that the test stops and starts.

#[macro_use]
mod cases;
mod common;

use common::*;
use fanout_core::{JoinFrom, NotRecovered, Position, PublishError};
use serde_json::json;

broker_cases!(shared_redis());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_publishes_and_a_restart_without_data_is_a_new_epoch() {
    let mut redis = Private::redis();
    let s = settings(&redis.url("redis"), "restart");
    let a = node(&s).await;
    let (mut sa, j) = join(&a, "t", JoinFrom::Now).await;
    publish(&a, "t", json!(1)).await.unwrap();
    let first = messages(&mut sa, 1).await;
    assert_eq!(first[0].1, j.position.epoch);

    redis.down();
    assert_eq!(
        publish(&a, "t", json!("lost")).await,
        Err(PublishError::Unavailable),
        "an error, not a silent drop"
    );

    redis.up(); // empty: the stream is gone
                // Publishes fail until the node has reconnected; then one goes through.
    let deadline = std::time::Instant::now() + PATIENCE;
    let seq = loop {
        match publish(&a, "t", json!(2)).await {
            Ok(seq) => break seq,
            Err(_) => assert!(std::time::Instant::now() < deadline, "never reconnected"),
        }
    };
    assert_eq!(seq, 1, "a new stream starts at 1");
    let got = messages(&mut sa, 1).await;
    assert_ne!(got[0].1, j.position.epoch, "a new epoch: the client knows the stream restarted");
    assert_eq!((got[0].0, got[0].2.clone()), (1, json!(2)));
    // A client back from before the restart is told, not replayed wrongly.
    let (_s2, j2) = join(&a, "t", JoinFrom::After(Position { epoch: j.position.epoch, seq: 1 })).await;
    assert_eq!(j2.reason, Some(NotRecovered::EpochChanged));
}
