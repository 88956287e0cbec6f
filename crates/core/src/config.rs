//! Hub and subscriber configuration, validated once at build time.

use std::fmt;
use std::time::Duration;

/// What happens to a message that does not fit a subscriber's ring (see
/// [`Priority`](crate::Priority) for which room each message may use).
///
/// Whatever the policy, a subscriber that lost messages learns how many through
/// [`RecvError::Lagged`](crate::RecvError::Lagged): a loss is never silent and
/// never, by itself, a close.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// The subscriber is too slow: it is closed with
    /// [`CloseReason::SlowConsumer`](crate::CloseReason::SlowConsumer) at once
    /// (publishers skip it from then on), drains what it already holds, and the
    /// cleanup worker removes it. The message that did not fit is dropped.
    /// (On a topic delivering through a shared log, a reader is closed when
    /// the log's writer moves it, having fallen more than the log's room
    /// behind, and is told its loss first: see [`TopicOptions::shared_log`].)
    #[default]
    Evict,
    /// The new message is dropped for that subscriber; its ring keeps the older ones.
    DropNewest,
    /// The oldest queued message is dropped to make room: the subscriber keeps the
    /// freshest data (market data, game state).
    DropOldest,
    /// As `DropOldest` in the ring, and the subscriber repairs what it lost
    /// from the topics' histories conflated by key: of the messages it
    /// missed, it receives the newest per key (given at publish with
    /// [`Hub::publish_keyed`](crate::Hub::publish_keyed)), so a slow
    /// dashboard gets the newest price, not a gap. Implies
    /// [`SubscribeOptions::repair`]; see `repair.rs`.
    Conflate,
}

/// Settings of one topic, from [`HubConfig::topic_options`] (or the hub's
/// defaults).
///
/// ```
/// use std::time::Duration;
/// use fanout_core::{Hub, TopicOptions};
///
/// // Prices keep their last 1,000 messages for 10 minutes; other topics none.
/// let hub = Hub::<u64>::builder()
///     .topic_options(|name| {
///         if name.starts_with("prices.") {
///             TopicOptions { history_size: 1000, history_ttl: Duration::from_secs(600), ..TopicOptions::default() }
///         } else {
///             TopicOptions::default()
///         }
///     })
///     .build()
///     .unwrap();
/// hub.publish("prices.eur", 1).unwrap();
/// assert_eq!(hub.topic("prices.eur").history(10, None).messages.len(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicOptions {
    /// Messages kept per topic for joins from a position and history reads
    /// (0: none, the default in the library).
    pub history_size: usize,
    /// How long a message stays in the history; a topic with a history also
    /// outlives its last subscriber and handle for this long after its last
    /// publish, so that a client that comes back finds its stream.
    pub history_ttl: std::time::Duration,
    /// What happens to this topic's messages that do not fit a subscriber's
    /// ring, in place of the subscriber's own policy (`None`: the
    /// subscriber's). `Some(Conflate)`: they are dropped, never a reason to
    /// evict, and a subscriber with repair gets the newest per key back from
    /// the history (prices, game state).
    pub overflow: Option<Overflow>,
    /// Deliver through one shared log that every subscriber of the topic
    /// reads with a cursor of its own, instead of a handle pushed into each
    /// subscriber's ring, with room for each subscriber to fall this many
    /// messages behind (at least the hub's
    /// [`capacity`](HubConfig::capacity), up to [`MAX_SHARED_LOG`], so that
    /// the log never makes a subscriber lose earlier than its ring would;
    /// rounded up to a power of two, at least 64). The default is [`DEFAULT_SHARED_LOG`] (256,
    /// the default capacity) from [`DEFAULT_SHARED_LOG_FROM`] (256)
    /// members: a message to a large topic is written once for all its
    /// subscribers, which is what makes single messages to large topics
    /// cheap (docs/architecture.md, "Shared logs by default"); a small
    /// topic stays on the rings. 0: the rings always. One that falls
    /// further behind loses the oldest and is told how many (`Lagged`,
    /// counted as displaced); under [`Overflow::Evict`] (the topic's
    /// policy, or the subscriber's when the topic has none) it is also
    /// closed as a slow consumer at once, as a full ring's subscriber is
    /// (the walk that moved it closes it). Priorities and
    /// keys order nothing in it (the topic's order is its `seq`), and a
    /// subscriber reads it alongside what its own ring holds (broadcasts,
    /// direct sends, notices). A closed subscriber drains what was in the
    /// log when it closed, as it drains its ring, while the log still holds
    /// it (it keeps the room, not everything: what a closed subscriber let
    /// go it is told it lost). What differs from the
    /// rings: leaving the topic gives up what was not yet taken from its
    /// log (a ring keeps what is queued); a subscriber's own
    /// [`SubscribeOptions::capacity`] and its `DropNewest` policy do not
    /// apply to the log (it loses the oldest, at the log's room; a
    /// subscriber with repair, as under `Conflate`, then takes back what
    /// the history holds); what a subscriber gets from two
    /// sources (this log, another topic's, its ring) keeps each source's
    /// order but not the order they were published in across them (one
    /// ring kept that too); and the log counts every reader
    /// it has, a closed one too until its [`Subscriber`](crate::Subscriber)
    /// is dropped, in `recipients` and `delivered`; what a reader did not
    /// take is counted as `discarded` when it leaves, so `delivered ==
    /// received + displaced + discarded` holds as with the rings. The log
    /// takes 32 bytes per unit of room (two slots of 16 bytes) from the
    /// topic's first message through it.
    pub shared_log: usize,
    /// With a `shared_log` room: the members a topic must have before it
    /// delivers through the log (default [`DEFAULT_SHARED_LOG_FROM`], 256;
    /// 0: from its creation). Until then it
    /// delivers through the rings, which cost a small topic nothing more;
    /// the first walk that finds this many members makes the log and
    /// gives every member a cursor, read once what its ring already holds
    /// of the topic is taken, so nothing is lost, doubled or reordered. A
    /// topic that switched stays on its log.
    pub shared_log_from: usize,
}

/// The default room of a shared log: the default capacity (see
/// [`TopicOptions::shared_log`]).
pub const DEFAULT_SHARED_LOG: usize = 256;

/// The members from which a topic (or, for the broadcasts, the hub's
/// subscribers from which the broadcasts) delivers through its shared log
/// by default (see [`TopicOptions::shared_log_from`]). Below it the rings
/// cost a small topic nothing more and keep every per-subscriber setting.
/// A log pays most for large topics (single messages to 10,000: 2.6x the
/// rings); a subscriber reading many mid-sized logs pays on its receive
/// side (1,000 topics of 100 members, 10 per subscriber, batches of 64:
/// 0.53x the rings), hence 256 and not less (docs/architecture.md,
/// "Shared logs by default").
pub const DEFAULT_SHARED_LOG_FROM: usize = 256;

impl Default for TopicOptions {
    /// No history, no policy of the topic's own, and a shared log of
    /// [`DEFAULT_SHARED_LOG`] from [`DEFAULT_SHARED_LOG_FROM`] members.
    fn default() -> Self {
        TopicOptions {
            history_size: 0,
            history_ttl: Duration::ZERO,
            overflow: None,
            shared_log: DEFAULT_SHARED_LOG,
            shared_log_from: DEFAULT_SHARED_LOG_FROM,
        }
    }
}

/// Largest room of a shared log (a topic's or the broadcasts').
pub const MAX_SHARED_LOG: usize = 1 << 20;

/// Largest history per topic.
pub const MAX_HISTORY: usize = 1 << 20;

/// Picks a topic's options from its name.
pub type TopicOptionsFn = std::sync::Arc<dyn Fn(&str) -> TopicOptions + Send + Sync>;

/// Hub-wide settings. Build them with [`HubBuilder`](crate::HubBuilder).
#[derive(Clone)]
pub struct HubConfig {
    /// Slots in each subscriber's ring (default 256).
    pub capacity: usize,
    /// Default overflow policy (default [`Overflow::Evict`]).
    pub overflow: Overflow,
    /// Fraction of the capacity that `Normal` messages may fill (default 0.8).
    pub high_water: f64,
    /// Capacity of the cleanup worker's request channel (default 4096).
    pub cleanup_capacity: usize,
    /// How often the cleanup worker sweeps for closed subscribers whose removal
    /// request found its channel full (default 100 ms).
    pub sweep_interval: Duration,
    /// Shards of the hub-wide subscriber set (default 8): a membership change
    /// copies one shard's snapshot, and writers of different shards do not wait for
    /// each other.
    pub shards: usize,
    /// Subscribers per copy-on-write chunk inside a snapshot (default 512): a
    /// change copies one chunk and the shard's list of chunk pointers.
    pub chunk_size: usize,
    /// Allocate each subscriber's ring storage at its first delivery instead
    /// of at `subscribe` (default false). Worth it when most subscribers are
    /// idle (a WebSocket server's connections on quiet topics: 3 KiB each at
    /// the default capacity); the price is that the first publish to many
    /// fresh subscribers allocates their rings on the publisher's thread
    /// (100,000 rings: ~0.2 s on this project's machine; see docs/benchmarks.md).
    pub lazy_rings: bool,
    /// Options of topics that `topic_options` does not decide (default: no
    /// history).
    pub topic_defaults: TopicOptions,
    /// Deliver broadcasts through one shared log that every subscriber
    /// reads, with this much room each (as [`TopicOptions::shared_log`],
    /// at least the capacity; default [`DEFAULT_SHARED_LOG`]; 0: through
    /// the rings).
    pub broadcast_log: usize,
    /// With a `broadcast_log` room: the subscribers the hub must have
    /// before broadcasts go through the log (as
    /// [`TopicOptions::shared_log_from`]; default
    /// [`DEFAULT_SHARED_LOG_FROM`]; 0: from the start).
    pub broadcast_log_from: usize,
    /// Options per topic, from its name (default: `topic_defaults` for all).
    pub topic_options: Option<TopicOptionsFn>,
    /// Gap repair for every subscriber (default false; always with
    /// [`Overflow::Conflate`]): see [`SubscribeOptions::repair`].
    pub repair: bool,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("high_water", &self.high_water)
            .field("cleanup_capacity", &self.cleanup_capacity)
            .field("sweep_interval", &self.sweep_interval)
            .field("shards", &self.shards)
            .field("chunk_size", &self.chunk_size)
            .field("lazy_rings", &self.lazy_rings)
            .field("topic_defaults", &self.topic_defaults)
            .field("broadcast_log", &self.broadcast_log)
            .field("broadcast_log_from", &self.broadcast_log_from)
            .field("topic_options", &self.topic_options.as_ref().map(|_| "<fn>"))
            .field("repair", &self.repair)
            .finish()
    }
}

impl HubConfig {
    /// The options of topic `name`.
    pub fn options_for(&self, name: &str) -> TopicOptions {
        let o = match &self.topic_options {
            Some(f) => f(name),
            None => self.topic_defaults,
        };
        TopicOptions {
            history_size: o.history_size.min(MAX_HISTORY),
            shared_log: self.log_room(o.shared_log),
            ..o
        }
    }

    /// The room a shared log asked for with `room` gets: none for 0, else
    /// at least the capacity (a log never makes a subscriber lose earlier
    /// than its ring would), at most [`MAX_SHARED_LOG`].
    pub fn log_room(&self, room: usize) -> usize {
        if room == 0 {
            0
        } else {
            room.max(self.capacity).min(MAX_SHARED_LOG)
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            capacity: 256,
            overflow: Overflow::Evict,
            high_water: 0.8,
            cleanup_capacity: 4096,
            sweep_interval: Duration::from_millis(100),
            shards: 8,
            chunk_size: 512,
            lazy_rings: false,
            topic_defaults: TopicOptions::default(),
            broadcast_log: DEFAULT_SHARED_LOG,
            broadcast_log_from: DEFAULT_SHARED_LOG_FROM,
            topic_options: None,
            repair: false,
        }
    }
}

impl HubConfig {
    /// Checks every field; [`HubBuilder::build`](crate::HubBuilder::build) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_capacity(self.capacity)?;
        check_high_water(self.high_water)?;
        for (field, room) in [
            ("broadcast_log", self.broadcast_log),
            ("topic_defaults.shared_log", self.topic_defaults.shared_log),
        ] {
            if room > MAX_SHARED_LOG {
                return Err(ConfigError::new(field, "at most MAX_SHARED_LOG (1,048,576)"));
            }
        }
        if self.cleanup_capacity == 0 {
            return Err(ConfigError::new("cleanup_capacity", "must be at least 1"));
        }
        if self.sweep_interval.is_zero() {
            return Err(ConfigError::new("sweep_interval", "must be longer than zero"));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::new("shards", "must be between 1 and 1024"));
        }
        if !(16..=1 << 20).contains(&self.chunk_size) {
            return Err(ConfigError::new("chunk_size", "must be between 16 and 1,048,576"));
        }
        if self.cleanup_capacity > 1 << 24 {
            return Err(ConfigError::new("cleanup_capacity", "must be at most 16,777,216"));
        }
        if self.topic_defaults.history_size > MAX_HISTORY {
            return Err(ConfigError::new("history_size", "must be at most 1,048,576"));
        }
        if self.topic_defaults.history_size > 0 && self.topic_defaults.history_ttl.is_zero() {
            return Err(ConfigError::new("history_ttl", "must be longer than zero when a history is kept"));
        }
        Ok(())
    }
}

/// Largest ring: 2^24 slots (256 MiB of slots for one subscriber is already
/// more than any sane use; past it a typo would abort the process on OOM).
pub const MAX_CAPACITY: usize = 1 << 24;

fn check_capacity(capacity: usize) -> Result<(), ConfigError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(ConfigError::new("capacity", "must be between 1 and 16,777,216"));
    }
    Ok(())
}

fn check_high_water(hw: f64) -> Result<(), ConfigError> {
    if hw.is_nan() || hw <= 0.0 || hw > 1.0 {
        return Err(ConfigError::new("high_water", "must be in (0, 1]"));
    }
    Ok(())
}

/// Per-subscriber overrides of the hub's settings, for
/// [`Hub::subscribe_with`](crate::Hub::subscribe_with).
///
/// ```
/// use fanout_core::{Hub, Overflow, SubscribeOptions};
///
/// let hub = Hub::<u64>::new();
/// // A dashboard that wants the freshest data and never wants to be evicted:
/// let opts = SubscribeOptions::new().overflow(Overflow::DropOldest).capacity(64);
/// let sub = hub.subscribe_with(opts).unwrap();
/// assert_eq!(sub.capacity(), 64);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SubscribeOptions {
    pub(crate) capacity: Option<usize>,
    pub(crate) overflow: Option<Overflow>,
    pub(crate) high_water: Option<f64>,
    pub(crate) repair: Option<bool>,
}

impl SubscribeOptions {
    /// All settings from the hub.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ring capacity for this subscriber.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }
    /// Overflow policy for this subscriber.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }
    /// High-water fraction for this subscriber; `1.0` makes it a high-priority
    /// subscriber whose normal messages may use the whole ring.
    pub fn high_water(mut self, high_water: f64) -> Self {
        self.high_water = Some(high_water);
        self
    }
    /// Gap repair: messages of joined topics lost to this subscriber (its
    /// ring overflowed) are taken back from the topics' histories while they
    /// still hold them, and handed out in their place; only what is gone is
    /// reported as `Lagged` (see [`Subscriber::repaired`](crate::Subscriber::repaired)).
    /// Costs the receiver a check of each message's `seq` (about 90 instructions per delivery); publishers
    /// nothing. On by default with [`Overflow::Conflate`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fanout_core::{Hub, Overflow, SubscribeOptions};
    ///
    /// let hub = Hub::<u64>::builder().history(128, Duration::from_secs(60)).build().unwrap();
    /// let opts = SubscribeOptions::new().overflow(Overflow::DropOldest).capacity(4).repair(true);
    /// let mut sub = hub.subscribe_with(opts).unwrap();
    /// sub.join("ticks").unwrap();
    /// for i in 1..=10 {
    ///     hub.publish("ticks", i).unwrap(); // 6 of them are displaced from the ring
    /// }
    /// let got: Vec<u64> = std::iter::from_fn(|| sub.try_recv().ok()).map(|m| *m.payload()).collect();
    /// assert_eq!(got, (1..=10).collect::<Vec<_>>());
    /// assert_eq!(sub.repaired(), 6);
    /// ```
    pub fn repair(mut self, on: bool) -> Self {
        self.repair = Some(on);
        self
    }

    pub(crate) fn resolve(&self, hub: &HubConfig) -> Result<Resolved, ConfigError> {
        let capacity = self.capacity.unwrap_or(hub.capacity);
        check_capacity(capacity)?;
        let hw = self.high_water.unwrap_or(hub.high_water);
        check_high_water(hw)?;
        // At least one slot for normal traffic, at most all of them.
        let high_water = ((capacity as f64 * hw).ceil() as usize).clamp(1, capacity);
        let overflow = self.overflow.unwrap_or(hub.overflow);
        let repair = self.repair.unwrap_or(hub.repair || overflow == Overflow::Conflate);
        Ok(Resolved { capacity, high_water, overflow, repair })
    }
}

pub(crate) struct Resolved {
    pub(crate) capacity: usize,
    pub(crate) high_water: usize,
    pub(crate) overflow: Overflow,
    pub(crate) repair: bool,
}

/// A setting that is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: &'static str,
}

impl ConfigError {
    fn new(field: &'static str, reason: &'static str) -> Self {
        ConfigError { field, reason }
    }
    /// The setting at fault.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid hub setting `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
