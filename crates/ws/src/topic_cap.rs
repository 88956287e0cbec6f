//! The global cap on topics that clients create by subscribing.
//!
//! # Why
//!
//! Every distinct topic a client joins is an entry in the engine's topic map
//! with its snapshot: without a global bound, topics are bounded only by
//! connections × `max_subscriptions` (640,000 with the defaults, all from
//! anonymous clients). `max_topics` bounds them for the whole gateway.
//!
//! # How
//!
//! The engine's interface does not say whether a join creates a topic, so the
//! gateway keeps its own count of client subscriptions per topic: a map from
//! topic to the number of connections of this gateway subscribed to it,
//! behind one mutex taken only by joins and leaves (membership writes, which
//! copy a snapshot in the engine anyway; never by a delivery). A join of a
//! topic not in the map is refused once the map holds `max_topics` entries
//! (`-32006`, `data.limit`); a topic leaves the map with its last client.
//! The map also hands out one shared `Arc<str>` per topic, so that sessions
//! subscribed to the same topic share its name.
//!
//! The map alone does not bound the engine's topics: a topic with a history
//! outlives its last subscriber for the history's TTL, and a client's
//! `publish` to a new topic with a history creates it. So a join or a
//! publish of a topic the engine does not hold is also refused while the
//! engine holds `max_topics` topics (`Session::check_topic_room`, from the
//! engine's `topic_count` and `topic_exists`), whoever created them.
//! `max_topics = 0` turns the cap and the map off.
//!
//! # The subscription count
//!
//! Every client subscription passes through [`TopicCap::join`] and leaves
//! through [`TopicCap::leave`] (a `subscribe` that joins, a token's channels,
//! an `unsubscribe`, a `refresh` that takes a topic away, the end of a
//! connection), so the same two calls keep the gateway's count of
//! subscriptions (connection × topic), cap or no cap: `fanout_subscriptions`
//! in `/metrics` and `subscriptions` in `$sys.stats`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The cap is reached: the join would create one topic too many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TopicLimit(pub(crate) usize);

pub(crate) struct TopicCap {
    max: usize,
    /// Connections subscribed per topic; an entry is removed at zero.
    counts: Mutex<HashMap<Arc<str>, u32>>,
    /// Subscriptions in all: joins minus leaves (a gauge read for metrics;
    /// `Relaxed`, nothing is published through it).
    subscriptions: AtomicU64,
}

impl TopicCap {
    pub(crate) fn new(max: usize) -> Self {
        TopicCap { max, counts: Mutex::new(HashMap::new()), subscriptions: AtomicU64::new(0) }
    }

    /// Subscriptions (connection × topic) open now.
    pub(crate) fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Relaxed)
    }

    /// Counts one more connection on `topic`; its shared name.
    pub(crate) fn join(&self, topic: &str) -> Result<Arc<str>, TopicLimit> {
        let name = self.join_capped(topic)?;
        self.subscriptions.fetch_add(1, Relaxed);
        Ok(name)
    }

    fn join_capped(&self, topic: &str) -> Result<Arc<str>, TopicLimit> {
        if self.max == 0 {
            return Ok(Arc::from(topic));
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, n)) = counts.get_key_value(topic).map(|(k, n)| (k.clone(), *n)) {
            counts.insert(name.clone(), n + 1);
            return Ok(name);
        }
        if counts.len() >= self.max {
            return Err(TopicLimit(self.max));
        }
        let name: Arc<str> = Arc::from(topic);
        counts.insert(name.clone(), 1);
        Ok(name)
    }

    /// Counts one connection fewer on `topic`.
    pub(crate) fn leave(&self, topic: &str) {
        self.subscriptions.fetch_sub(1, Relaxed);
        if self.max == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(topic) {
            *n -= 1;
            if *n == 0 {
                counts.remove(topic);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_topics_past_the_cap_are_refused() {
        let cap = TopicCap::new(2);
        let a1 = cap.join("a").unwrap();
        let a2 = cap.join("a").unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "one shared name per topic");
        cap.join("b").unwrap();
        assert_eq!(cap.join("c"), Err(TopicLimit(2)));
        assert!(cap.join("b").is_ok(), "existing topics can still be joined");
        cap.leave("a");
        assert_eq!(cap.join("c"), Err(TopicLimit(2)), "a still has a client");
        cap.leave("a");
        assert!(cap.join("c").is_ok(), "a left the map with its last client");
        assert_eq!(cap.len(), 2);
        assert_eq!(cap.subscriptions(), 3, "b twice and c; the refused joins not counted");
    }

    #[test]
    fn zero_means_no_cap_and_no_map() {
        let cap = TopicCap::new(0);
        for i in 0..1000 {
            cap.join(&format!("t{i}")).unwrap();
        }
        assert_eq!(cap.len(), 0);
        assert_eq!(cap.subscriptions(), 1000, "counted without the cap too");
        cap.leave("t1");
        assert_eq!(cap.subscriptions(), 999);
    }
}
