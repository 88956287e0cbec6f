//! The publish gate (the gateway's second job; see `gateway.rs`): publishes
//! and direct sends made through the gateway (the RPC's `publish`, the HTTP
//! API), counted in while they run, so that the drain can close the gate and
//! wait for them.
//!
//! `Inner::publishing` and `Inner::closing` form a Dekker-style gate (both
//! sides `SeqCst`: each stores, then loads the other's word): a publish counts
//! itself in, then checks `closing`; the drain sets `closing`, then waits for
//! the count to reach 0 before the writers empty their queues. So every
//! publish that returned `Ok` had queued its message before any writer began
//! its final drain, and reaches the client before the 1001.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use fanout_core::{
    Engine, Meta, Priority, PublishError, PublishItem, PublishReport, SendError, SubscriberId,
};
use serde_json::value::RawValue;

use crate::frame::{encode_binary, encode_json, now_ms, Frame};
use crate::gateway::Gateway;

/// Counts one publish in progress (see `Inner::publishing`).
struct PublishGuard<'a>(&'a AtomicUsize);

impl Drop for PublishGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<E: Engine<Frame>> Gateway<E> {
    /// Runs one publish through the drain gate (`None`: refused, the drain
    /// began), timing it.
    fn timed<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        self.inner.publishing.fetch_add(1, Ordering::SeqCst);
        let _guard = PublishGuard(&self.inner.publishing);
        if self.inner.closing.load(Ordering::SeqCst) {
            return None;
        }
        let t0 = Instant::now();
        let r = f();
        self.inner.metrics.publish(t0.elapsed().as_nanos() as u64);
        Some(r)
    }

    /// Publishes a JSON payload to `topic`: the envelope (with the topic's next
    /// seq) is encoded once and shared by every recipient. No topic-name or
    /// permission check: callers facing clients do those. Refused with
    /// `PublishError::Shutdown` once the drain began: a publish that returns
    /// `Ok` reaches every recipient that is not evicted, even during a drain.
    pub fn publish_json(&self, topic: &str, payload: &RawValue) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        self.timed(|| {
            self.inner
                .engine
                .publish_with(topic, Priority::Normal, |meta| encode_json(Some(topic), meta, ts, payload))
        })
        .unwrap_or(Err(PublishError::Shutdown))
    }

    /// [`publish_json`](Self::publish_json) through the engine's async
    /// publish: what the RPC and the HTTP API await (an engine with a broker
    /// answers once the broker has numbered the message).
    /// `key`: a conflation key (see `fanout_core::Hub::publish_keyed`): a
    /// client that falls behind on a conflated topic gets the newest message
    /// per key.
    pub async fn publish_json_async(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &RawValue,
    ) -> Result<PublishReport, PublishError> {
        self.publish_json_with(topic, Priority::Normal, key, payload).await
    }

    /// [`publish_json_async`](Self::publish_json_async) with a priority
    /// (see `fanout_core::Priority`: `High` uses the room above a
    /// subscriber's high-water mark, `Urgent` always enters, displacing the
    /// oldest queued message). For trusted publishers: the HTTP API offers
    /// it, a WebSocket client's `publish` does not.
    pub async fn publish_json_with(
        &self,
        topic: &str,
        priority: Priority,
        key: Option<&str>,
        payload: &RawValue,
    ) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        let make = move |meta| encode_json(Some(topic), meta, ts, payload);
        self.timed_async(|| self.inner.engine.publish_async(topic, priority, key, make)).await
    }

    /// Publishes a run of JSON messages, each `(topic, priority, key,
    /// payload)` as [`publish_json_with`](Self::publish_json_with) would,
    /// through [`Engine::publish_batch_async`]: a topic's messages are
    /// numbered in the order given, and an engine with a broker hands them
    /// over in one call. One answer per message, in order, up to and
    /// including the first error.
    pub async fn publish_json_batch(
        &self,
        items: &[(&str, Priority, Option<&str>, &RawValue)],
    ) -> Vec<Result<PublishReport, PublishError>> {
        let ts = now_ms();
        let batch = items
            .iter()
            .map(|&(topic, priority, key, payload)| PublishItem {
                topic,
                priority,
                key,
                make: move |meta| encode_json(Some(topic), meta, ts, payload),
            })
            .collect();
        self.gated_async(|| self.inner.engine.publish_batch_async(batch))
            .await
            .unwrap_or_else(|| vec![Err(PublishError::Shutdown)])
    }

    /// [`publish_binary`](Self::publish_binary) through the engine's async
    /// publish (see [`publish_json_async`](Self::publish_json_async)).
    pub async fn publish_binary_async(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        let make = move |meta| encode_binary(Some(topic), meta, ts, payload);
        self.timed_async(|| self.inner.engine.publish_async(topic, Priority::Normal, None, make)).await
    }

    /// [`timed`](Self::timed) for a publish that may wait: counted in
    /// before the future is made (an engine's default async publish does its
    /// work when called), so the drain waits for it.
    async fn timed_async<F>(&self, publish: impl FnOnce() -> F) -> Result<PublishReport, PublishError>
    where
        F: std::future::Future<Output = Result<PublishReport, PublishError>>,
    {
        self.gated_async(publish).await.unwrap_or(Err(PublishError::Shutdown))
    }

    /// The same for any answer: `None` when refused (the drain began).
    async fn gated_async<F: std::future::Future>(&self, publish: impl FnOnce() -> F) -> Option<F::Output> {
        self.inner.publishing.fetch_add(1, Ordering::SeqCst);
        let _guard = PublishGuard(&self.inner.publishing);
        if self.inner.closing.load(Ordering::SeqCst) {
            return None;
        }
        let t0 = Instant::now();
        let r = publish().await;
        self.inner.metrics.publish(t0.elapsed().as_nanos() as u64);
        Some(r)
    }

    /// Publishes a JSON value (serialised once).
    pub fn publish_value(
        &self,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<PublishReport, PublishError> {
        let raw = serde_json::value::to_raw_value(payload).expect("a Value serialises");
        self.publish_json(topic, &raw)
    }

    /// Publishes a binary payload to `topic` (a binary frame; see [`crate::frame`]).
    pub fn publish_binary(&self, topic: &str, payload: &[u8]) -> Result<PublishReport, PublishError> {
        let ts = now_ms();
        self.timed(|| {
            self.inner
                .engine
                .publish_with(topic, Priority::Normal, |meta| encode_binary(Some(topic), meta, ts, payload))
        })
        .unwrap_or(Err(PublishError::Shutdown))
    }

    /// Sends a JSON payload to one connection, by the id it got in the
    /// `X-Fanout-Client-Id` header (`"topic":null`, `"seq":0`).
    pub fn send_json_to(&self, id: SubscriberId, payload: &RawValue) -> Result<(), SendError<Frame>> {
        let frame = encode_json(None, Meta { seq: 0, epoch: 0 }, now_ms(), payload);
        let slot = std::cell::Cell::new(Some(frame));
        let take = || slot.take().expect("the frame is taken once");
        self.timed(|| self.inner.engine.send_to(id, take()))
            .unwrap_or_else(|| Err(SendError::Shutdown(take())))
    }

    /// Sends a JSON payload to every open connection of token subject
    /// `subject` (`"topic":null`, `"seq":0`; see `subjects.rs`): recipients
    /// is how many it has (0 when none is open), dropped those whose queue was
    /// full or that closed meanwhile.
    pub fn send_json_to_subject(
        &self,
        subject: &str,
        payload: &RawValue,
    ) -> Result<PublishReport, PublishError> {
        let ids = self.inner.subjects.connections(subject);
        let frame = encode_json(None, Meta { seq: 0, epoch: 0 }, now_ms(), payload);
        let mut report = PublishReport::default();
        for id in ids {
            report.recipients += 1;
            match self.timed(|| self.inner.engine.send_to(id, frame.clone())) {
                None | Some(Err(SendError::Shutdown(_))) => return Err(PublishError::Shutdown),
                Some(Ok(())) => report.delivered += 1,
                Some(Err(_)) => report.dropped.full += 1,
            }
        }
        Ok(report)
    }
}
