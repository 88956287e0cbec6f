//! [`HubBuilder`]: the hub's settings, validated when the hub is built.

use std::fmt;

use crate::config::{ConfigError, HubConfig, Overflow};
use crate::hub::Hub;

/// Builds a [`Hub`] from validated settings.
///
/// ```
/// use fanout_core::{Hub, Overflow};
/// use std::time::Duration;
///
/// let hub = Hub::<u64>::builder()
///     .capacity(1024)
///     .overflow(Overflow::DropOldest)
///     .high_water(0.9)
///     .sweep_interval(Duration::from_millis(50))
///     .build()
///     .unwrap();
/// assert_eq!(hub.config().capacity, 1024);
/// assert!(Hub::<u64>::builder().capacity(0).build().is_err());
/// ```
pub struct HubBuilder<T> {
    pub(crate) config: HubConfig,
    pub(crate) _payload: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for HubBuilder<T> {
    fn clone(&self) -> Self {
        HubBuilder { config: self.config.clone(), _payload: std::marker::PhantomData }
    }
}

impl<T> fmt::Debug for HubBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder").field("config", &self.config).finish()
    }
}

impl<T: Clone + Send + Sync + 'static> HubBuilder<T> {
    /// Ring slots per subscriber.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity;
        self
    }
    /// Default overflow policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }
    /// Fraction of a ring that `Normal` messages may fill, in (0, 1].
    pub fn high_water(mut self, fraction: f64) -> Self {
        self.config.high_water = fraction;
        self
    }
    /// Allocate each subscriber's ring at its first delivery rather than at
    /// `subscribe` (see [`HubConfig::lazy_rings`]).
    ///
    /// ```
    /// let hub = fanout_core::Hub::<u64>::builder().lazy_rings(true).build().unwrap();
    /// assert!(hub.config().lazy_rings);
    /// ```
    pub fn lazy_rings(mut self, lazy: bool) -> Self {
        self.config.lazy_rings = lazy;
        self
    }

    /// Capacity of the cleanup worker's request channel.
    pub fn cleanup_capacity(mut self, capacity: usize) -> Self {
        self.config.cleanup_capacity = capacity;
        self
    }
    /// How often the cleanup worker sweeps for closed subscribers it was not told of.
    pub fn sweep_interval(mut self, interval: std::time::Duration) -> Self {
        self.config.sweep_interval = interval;
        self
    }
    /// Shards of the hub-wide subscriber set.
    pub fn shards(mut self, shards: usize) -> Self {
        self.config.shards = shards;
        self
    }
    /// Subscribers per copy-on-write chunk.
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.config.chunk_size = chunk_size;
        self
    }

    /// Keeps the last `size` messages of every topic for `ttl` (the default
    /// for topics that [`HubBuilder::topic_options`] does not decide).
    pub fn history(mut self, size: usize, ttl: std::time::Duration) -> Self {
        self.config.topic_defaults =
            crate::TopicOptions { history_size: size, history_ttl: ttl, ..self.config.topic_defaults };
        self
    }

    /// Delivers broadcasts, and the topics that [`HubBuilder::topic_options`]
    /// does not decide, through shared logs with `room` per subscriber, at
    /// least the capacity (see
    /// [`TopicOptions::shared_log`](crate::TopicOptions); default
    /// [`DEFAULT_SHARED_LOG`](crate::DEFAULT_SHARED_LOG) from
    /// [`DEFAULT_SHARED_LOG_FROM`](crate::DEFAULT_SHARED_LOG_FROM)
    /// members; 0: through the rings always).
    ///
    /// ```
    /// use fanout_core::Hub;
    ///
    /// let hub = Hub::<u32>::builder().shared_log(512).shared_log_from(0).build().unwrap();
    /// let mut s = hub.subscribe().unwrap();
    /// s.join("t").unwrap();
    /// hub.publish("t", 1).unwrap();
    /// hub.broadcast(2).unwrap();
    /// assert_eq!(s.len(), 2, "both still to take, from the logs");
    /// let mut got: Vec<u32> = std::iter::from_fn(|| s.try_recv().ok()).map(|m| *m.payload()).collect();
    /// got.sort();
    /// assert_eq!(got, [1, 2]);
    /// ```
    pub fn shared_log(mut self, room: usize) -> Self {
        self.config.topic_defaults = crate::TopicOptions { shared_log: room, ..self.config.topic_defaults };
        self.config.broadcast_log = room;
        self
    }

    /// With [`HubBuilder::shared_log`]: topics (those that
    /// [`HubBuilder::topic_options`] does not decide) deliver through the
    /// rings until they have `members` members, then switch to their log
    /// (see [`TopicOptions::shared_log_from`](crate::TopicOptions);
    /// default [`DEFAULT_SHARED_LOG_FROM`](crate::DEFAULT_SHARED_LOG_FROM);
    /// 0: from their creation); broadcasts, until the hub has that many
    /// subscribers.
    ///
    /// ```
    /// use fanout_core::Hub;
    ///
    /// let hub = Hub::<u32>::builder().shared_log(256).shared_log_from(2).build().unwrap();
    /// let mut a = hub.subscribe().unwrap();
    /// a.join("t").unwrap();
    /// hub.publish("t", 1).unwrap(); // one member: through a's ring
    /// let mut b = hub.subscribe().unwrap();
    /// b.join("t").unwrap();
    /// hub.publish("t", 2).unwrap(); // two: through the topic's log
    /// let got: Vec<u32> = std::iter::from_fn(|| a.try_recv().ok()).map(|m| *m.payload()).collect();
    /// assert_eq!(got, [1, 2]);
    /// assert_eq!(*b.try_recv().unwrap().payload(), 2);
    /// ```
    pub fn shared_log_from(mut self, members: usize) -> Self {
        self.config.topic_defaults =
            crate::TopicOptions { shared_log_from: members, ..self.config.topic_defaults };
        self.config.broadcast_log_from = members;
        self
    }

    /// Decides each topic's options from its name, once, when the topic is
    /// created.
    pub fn topic_options(mut self, f: impl Fn(&str) -> crate::TopicOptions + Send + Sync + 'static) -> Self {
        self.config.topic_options = Some(std::sync::Arc::new(f));
        self
    }

    /// Gap repair for every subscriber (see
    /// [`SubscribeOptions::repair`](crate::SubscribeOptions::repair)).
    pub fn repair(mut self, on: bool) -> Self {
        self.config.repair = on;
        self
    }

    /// Validates the settings and starts the hub (and its cleanup thread).
    pub fn build(self) -> Result<Hub<T>, ConfigError> {
        Hub::with_config(self.config)
    }
}
