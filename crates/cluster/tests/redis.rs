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

/// A broker that counts the calls it passes on to Redis.
struct Counting {
    inner: fanout_cluster::RedisBroker,
    one: std::sync::atomic::AtomicUsize,
    many: std::sync::Mutex<Vec<usize>>,
}

impl fanout_cluster::Broker for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        body: bytes::Bytes,
    ) -> futures_util::future::BoxFuture<'a, Result<Position, fanout_cluster::BrokerError>> {
        self.one.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.publish(topic, body)
    }
    fn publish_many<'a>(
        &'a self,
        items: &'a [(&'a str, bytes::Bytes)],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Position>, fanout_cluster::BrokerError>> {
        self.many.lock().unwrap().push(items.len());
        self.inner.publish_many(items)
    }
    fn position<'a>(
        &'a self,
        topic: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Position, fanout_cluster::BrokerError>> {
        self.inner.position(topic)
    }
    fn read<'a>(
        &'a self,
        topic: &'a str,
        epoch: u64,
        after: u64,
        limit: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<fanout_cluster::Stored>, fanout_cluster::BrokerError>>
    {
        self.inner.read(topic, epoch, after, limit)
    }
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), fanout_cluster::BrokerError>> {
        self.inner.subscribe(topic)
    }
    fn unsubscribe<'a>(
        &'a self,
        topic: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), fanout_cluster::BrokerError>> {
        self.inner.unsubscribe(topic)
    }
}

/// A node hands each run of consecutive broker topics of a batch to the
/// broker in one call (one pipeline, one round trip on Redis), and a `$`
/// topic, which stays local, ends a run: 5 messages, 2 calls, none one by
/// one, every answer in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_to_the_broker_in_one_call_per_run() {
    use fanout_core::{Engine, Priority, PublishItem};
    use std::sync::Arc;
    let s = settings(&shared_redis(), "runs");
    let _cleanup = Cleanup(s.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let counting = Arc::new(Counting {
        inner: fanout_cluster::RedisBroker::connect(&s, tx).await.unwrap(),
        one: Default::default(),
        many: Default::default(),
    });
    let a = fanout_cluster::Cluster::new(hub(), counting.clone(), s.clone(), rx);
    let (mut sub, j) = join(&a, "r", JoinFrom::Now).await;
    let raw = &serde_json::value::to_raw_value(&json!("m")).unwrap();
    let items = ["r", "r", "$sys.local", "r", "r"]
        .map(|topic| PublishItem {
            topic,
            priority: Priority::Normal,
            key: None,
            make: move |meta| fanout_ws::frame::encode_json(Some(topic), meta, 0, raw),
        })
        .into();
    let answers = a.publish_batch_async(items).await;
    assert_eq!(answers.len(), 5);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let seqs: Vec<u64> = [0, 1, 3, 4].map(|i| answers[i].as_ref().unwrap().seq).into();
    assert_eq!(seqs, (j.position.seq + 1..=j.position.seq + 4).collect::<Vec<_>>());
    assert_eq!(*counting.many.lock().unwrap(), [2, 2], "one call per run");
    assert_eq!(counting.one.load(std::sync::atomic::Ordering::SeqCst), 0, "none one by one");
    let got = messages(&mut sub, 4).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), seqs, "delivered in order");
}
