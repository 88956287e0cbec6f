//! Memory per topic with the default history (see the module docs of
//! `history`).
//!
//! T topics, each kept alive by a handle (`Hub::topic`) and given 128
//! messages (two `publish_many` runs of 64) of a [`PAYLOAD`]-byte `Bytes`
//! payload, each payload its own allocation, as a server's are. Measured
//! twice, each on a fresh hub: without history (the messages are dropped as
//! soon as they are published: the topics have no subscribers) and with the
//! default history (the last 128 are kept). Each figure is the growth of the
//! live heap (the counting allocator: bytes asked for, not the C allocator's
//! per-block overhead) and of the RSS from just before the hub was built to
//! after the last publish. The history's cost per topic is the difference.

use bytes::Bytes;
use fanout_core::Hub;
use serde::Serialize;

use super::{BATCH, HISTORY_SIZE, HISTORY_TTL};
use crate::hub::tasks::rss_bytes;

/// Bytes of each message's payload.
pub const PAYLOAD: usize = 32;

/// One hub's figures.
#[derive(Serialize, Clone, Debug)]
pub struct Footprint {
    pub history_size: usize,
    /// Live heap growth, bytes (all topics).
    pub heap_bytes: i64,
    /// RSS growth, bytes (all topics); includes the allocator's overhead and
    /// pages it keeps.
    pub rss_bytes: i64,
    pub heap_bytes_per_topic: f64,
    pub rss_bytes_per_topic: f64,
    /// Messages the history of the first topic holds at the end (read back).
    pub held_in_first_topic: usize,
}

/// Both, and the difference.
#[derive(Serialize, Clone, Debug)]
pub struct Memory {
    pub topics: usize,
    pub messages_per_topic: usize,
    pub payload_bytes: usize,
    pub without_history: Footprint,
    pub with_history: Footprint,
    /// (with − without) heap ÷ topics: what the default history costs a topic.
    pub history_heap_bytes_per_topic: f64,
    /// The same ÷ 128: per message kept (handle, message, payload).
    pub history_heap_bytes_per_message: f64,
    /// The payload's share of a message: [`PAYLOAD`] bytes.
    pub history_heap_bytes_per_topic_without_payload: f64,
    /// (with − without) RSS ÷ topics.
    pub history_rss_bytes_per_topic: f64,
}

/// Measures both hubs.
pub fn run(topics: usize) -> Memory {
    let without = footprint(topics, 0);
    let with = footprint(topics, HISTORY_SIZE);
    let per_topic = (with.heap_bytes - without.heap_bytes) as f64 / topics.max(1) as f64;
    Memory {
        topics,
        messages_per_topic: HISTORY_SIZE,
        payload_bytes: PAYLOAD,
        history_heap_bytes_per_topic: per_topic,
        history_heap_bytes_per_message: per_topic / HISTORY_SIZE as f64,
        history_heap_bytes_per_topic_without_payload: per_topic - (HISTORY_SIZE * PAYLOAD) as f64,
        history_rss_bytes_per_topic: (with.rss_bytes - without.rss_bytes) as f64 / topics.max(1) as f64,
        without_history: without,
        with_history: with,
    }
}

fn footprint(topics: usize, history: usize) -> Footprint {
    let names: Vec<String> = (0..topics).map(|t| format!("memory-{t}")).collect();
    let body = [b'p'; PAYLOAD];
    let (heap0, rss0) = (crate::alloc::live_bytes(), rss_bytes() as i64);
    let b = Hub::<Bytes>::builder();
    let hub = if history > 0 { b.history(history, HISTORY_TTL) } else { b }.build().expect("hub");
    let handles: Vec<_> = names.iter().map(|n| hub.topic(n)).collect();
    for h in &handles {
        for _ in 0..HISTORY_SIZE as u64 / BATCH {
            h.publish_many((0..BATCH).map(|_| Bytes::copy_from_slice(&body))).expect("open");
        }
    }
    let (heap1, rss1) = (crate::alloc::live_bytes(), rss_bytes() as i64);
    let held = handles.first().map_or(0, |h| h.history(usize::MAX, None).messages.len());
    let (heap, rss) = (heap1 - heap0, rss1 - rss0);
    drop(handles);
    hub.shutdown();
    drop(hub);
    Footprint {
        history_size: history,
        heap_bytes: heap,
        rss_bytes: rss,
        heap_bytes_per_topic: heap as f64 / topics.max(1) as f64,
        rss_bytes_per_topic: rss as f64 / topics.max(1) as f64,
        held_in_first_topic: held,
    }
}
