//! A node's broker settings (`--broker URL`, and the `[broker]` table of the
//! server's TOML file).

use std::time::Duration;

/// Which broker, and how to use it.
///
/// ```
/// use fanout_cluster::BrokerSettings;
///
/// let s = BrokerSettings::new("redis://127.0.0.1:6379");
/// assert_eq!((s.prefix.as_str(), s.retention), ("fanout", 1000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `redis://host:port` or `nats://host:port`.
    pub url: String,
    /// Names under which this cluster's keys, channels or subjects live
    /// (Redis keys `prefix:…`, NATS subjects `prefix.…`): clusters that
    /// share a broker use different ones.
    pub prefix: String,
    /// The JetStream stream's name (NATS only).
    pub stream: String,
    /// Messages the broker keeps per topic (how far back a client can
    /// recover on a node that did not have them).
    pub retention: usize,
    /// How long the broker keeps a topic's stream after its last publish
    /// (0: for ever). After that the topic starts a new epoch.
    pub ttl: Duration,
    /// How long a broker call may take before it fails.
    pub timeout: Duration,
    /// How long a node stays subscribed to a topic after its last local
    /// subscriber left (a client reconnecting within it costs no broker
    /// round trip).
    pub grace: Duration,
}

impl BrokerSettings {
    /// The defaults, for the broker at `url`.
    pub fn new(url: &str) -> Self {
        BrokerSettings {
            url: url.to_string(),
            prefix: "fanout".into(),
            stream: "FANOUT".into(),
            retention: 1000,
            ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(5),
            grace: Duration::from_secs(5),
        }
    }

    /// Which broker the URL names.
    pub fn kind(&self) -> Result<BrokerKind, String> {
        match self.url.split_once("://").map(|(s, _)| s) {
            Some("redis") => Ok(BrokerKind::Redis),
            Some("nats") => Ok(BrokerKind::Nats),
            _ => Err(format!("--broker {:?}: expected redis://host:port or nats://host:port", self.url)),
        }
    }
}

/// The brokers this layer speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// Redis (5 or later; the project runs 7.0).
    Redis,
    /// NATS with JetStream (2.9 or later).
    Nats,
}
