//! Settings: clap flags, environment variables, an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable (`FANOUT_*`), TOML
//! file (`--config`), built-in default. Every key of the file has the name of
//! its flag with `_` for `-` (see `docs/config.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use fanout_cluster::BrokerSettings;
use fanout_core::{Overflow, TopicOptions};
use fanout_ws::{RateLimit, WsConfig};
use serde::Deserialize;

/// Which engine runs behind the WebSocket front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// fanout-core's lock-free hub.
    Fanout,
    /// The mutex-hub baseline (fanout-baseline), for comparisons.
    Mutex,
}

/// What to do with a message that does not fit a subscriber's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowArg {
    /// Close the subscriber as a slow consumer.
    Evict,
    /// Drop the new message for that subscriber.
    DropNewest,
    /// Drop its oldest queued message (it gets a lag notice).
    DropOldest,
}

impl From<OverflowArg> for Overflow {
    fn from(o: OverflowArg) -> Self {
        match o {
            OverflowArg::Evict => Overflow::Evict,
            OverflowArg::DropNewest => Overflow::DropNewest,
            OverflowArg::DropOldest => Overflow::DropOldest,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `fanout-server` command line. Every flag also reads `FANOUT_<NAME>`.
#[derive(Parser, Default)]
#[command(name = "fanout-server", version, about = "fanout WebSocket fan-out server")]
pub struct Cli {
    /// TOML config file.
    #[arg(long, env = "FANOUT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FANOUT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Engine: fanout or mutex [default: fanout].
    #[arg(long, env = "FANOUT_ENGINE")]
    pub engine: Option<EngineKind>,
    /// Run as a node of a cluster over this broker: redis://host:port or
    /// nats://host:port (unset: a single node, no broker). Its options:
    /// the `[cluster]` table of the file.
    #[arg(long, env = "FANOUT_BROKER")]
    pub broker: Option<String>,
    /// API key for POST /api/publish (unset: the endpoint answers 403).
    #[arg(long, env = "FANOUT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// HS256 secret for client tokens (unset: anonymous clients, subscribe only).
    #[arg(long, env = "FANOUT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Allowed Origin values, comma-separated (unset: any).
    #[arg(long, env = "FANOUT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// WebSocket connections in all (0 = no cap) [default: 10000].
    #[arg(long, env = "FANOUT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// WebSocket connections per client IP (0 = no cap) [default: 1000].
    #[arg(long, env = "FANOUT_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Largest inbound WebSocket message, bytes [default: 65536].
    #[arg(long, env = "FANOUT_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Topics per connection [default: 64].
    #[arg(long, env = "FANOUT_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// Longest topic name, bytes [default: 128].
    #[arg(long, env = "FANOUT_MAX_TOPIC_LEN")]
    pub max_topic_len: Option<usize>,
    /// Inbound messages per second per connection (0 = no limit) [default: 100].
    #[arg(long, env = "FANOUT_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// Burst of the rate limit [default: 200].
    #[arg(long, env = "FANOUT_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Refused frames before the close (4100) [default: 20].
    #[arg(long, env = "FANOUT_RATE_STRIKES")]
    pub rate_strikes: Option<u32>,
    /// WebSocket path [default: /ws].
    #[arg(long, env = "FANOUT_WS_PATH")]
    pub ws_path: Option<String>,
    /// Echo route for protocol conformance tests (unset: off).
    #[arg(long, env = "FANOUT_ECHO_PATH")]
    pub echo_path: Option<String>,
    /// Queue slots per subscriber [default: 256] (fanout engine only).
    #[arg(long, env = "FANOUT_CAPACITY")]
    pub capacity: Option<usize>,
    /// Overflow policy [default: evict] (fanout engine only).
    #[arg(long, env = "FANOUT_OVERFLOW")]
    pub overflow: Option<OverflowArg>,
    /// Messages each topic keeps for recovery and `history` (0: none)
    /// [default: 128] (fanout engine only; per topic: `[[topics]]` in the file).
    #[arg(long, env = "FANOUT_HISTORY_SIZE")]
    pub history_size: Option<usize>,
    /// How long a message stays in the history, and a topic outlives its
    /// last subscriber, e.g. 5m [default: 300s].
    #[arg(long, env = "FANOUT_HISTORY_TTL", value_parser = parse_duration)]
    pub history_ttl: Option<Duration>,
    /// Messages per write batch [default: 64].
    #[arg(long, env = "FANOUT_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Drop a connection whose socket accepts no byte for this long, e.g. 10s [default: 10s].
    #[arg(long, env = "FANOUT_WRITE_TIMEOUT", value_parser = parse_duration)]
    pub write_timeout: Option<Duration>,
    /// Server ping interval [default: 54s].
    #[arg(long, env = "FANOUT_PING_INTERVAL", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Close after this long without a pong [default: 60s].
    #[arg(long, env = "FANOUT_PONG_TIMEOUT", value_parser = parse_duration)]
    pub pong_timeout: Option<Duration>,
    /// Longest wait for a request head / the upgrade [default: 10s].
    #[arg(long, env = "FANOUT_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Longest graceful drain on SIGTERM/SIGINT [default: 10s].
    #[arg(long, env = "FANOUT_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// tungstenite read buffer per connection, bytes [default: 1024].
    #[arg(long, env = "FANOUT_READ_BUFFER_SIZE")]
    pub read_buffer_size: Option<usize>,
    /// tungstenite write buffer per connection, bytes [default: 16384].
    #[arg(long, env = "FANOUT_WRITE_BUFFER_SIZE")]
    pub write_buffer_size: Option<usize>,
    /// SO_SNDBUF of accepted sockets, bytes; 0 = kernel autotuning [default: 65536].
    #[arg(long, env = "FANOUT_SEND_BUFFER_SIZE")]
    pub send_buffer_size: Option<usize>,
    /// Interval of the $sys.stats topic (0s = off) [default: 1s].
    #[arg(long, env = "FANOUT_STATS_INTERVAL", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,
    /// Largest POST /api/publish body, bytes [default: 1048576].
    #[arg(long, env = "FANOUT_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "FANOUT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, env = "FANOUT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// File holding the JWT secret (instead of --jwt-secret: not visible in `ps`).
    #[arg(long, env = "FANOUT_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// File holding the API key (instead of --api-key).
    #[arg(long, env = "FANOUT_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// File of `kid=secret` lines: more JWT keys, picked by the token's `kid`.
    #[arg(long, env = "FANOUT_JWT_KEYS_FILE")]
    pub jwt_keys_file: Option<PathBuf>,
    /// Clock skew tolerated on a token's exp and nbf [default: 0s].
    #[arg(long, env = "FANOUT_JWT_LEEWAY", value_parser = parse_duration)]
    pub jwt_leeway: Option<Duration>,
    /// Required token audience (`aud` must contain it) [default: not checked].
    #[arg(long, env = "FANOUT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required token issuer (`iss`) [default: not checked].
    #[arg(long, env = "FANOUT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Subscribe/unsubscribe/refresh calls per second per client address and per
    /// token subject (0 = no limit) [default: 200].
    #[arg(long, env = "FANOUT_COSTLY_RATE_LIMIT")]
    pub costly_rate_limit: Option<f64>,
    /// Burst of the costly-call limit [default: 1000].
    #[arg(long, env = "FANOUT_COSTLY_RATE_BURST")]
    pub costly_rate_burst: Option<u32>,
    /// Serve /metrics on this address only (unset: on --listen, public).
    #[arg(long, env = "FANOUT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Distinct topics clients may create by subscribing (0 = no cap) [default: 100000].
    #[arg(long, env = "FANOUT_MAX_TOPICS")]
    pub max_topics: Option<usize>,
    /// WebSocket connections per token subject (0 = no cap) [default: 100].
    #[arg(long, env = "FANOUT_MAX_CONNECTIONS_PER_SUBJECT")]
    pub max_connections_per_subject: Option<usize>,
    /// On SIGTERM, how long /readyz answers 503 before the listener closes, so
    /// that a load balancer stops sending new clients [default: 0s].
    #[arg(long, env = "FANOUT_DRAIN_GRACE", value_parser = parse_duration)]
    pub drain_grace: Option<Duration>,
    /// Longest read of a POST /api/publish body [default: 10s]; past it 408.
    #[arg(long, env = "FANOUT_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub body_read_timeout: Option<Duration>,
    /// Un-upgraded sockets per client address (0 = no cap) [default: 128].
    #[arg(long, env = "FANOUT_MAX_PENDING_PER_IP")]
    pub max_pending_per_ip: Option<usize>,
    /// Largest HTTP request head, bytes (at least 8192) [default: 16384].
    #[arg(long, env = "FANOUT_MAX_REQUEST_HEAD")]
    pub max_request_head: Option<usize>,
    /// Proxies (addresses or ranges, comma-separated) whose X-Forwarded-For
    /// names the client [default: none, the header is ignored].
    #[arg(long, env = "FANOUT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Bytes a connection may hold taken from its queue but not yet written
    /// to its socket; at the mark it stops taking (the queue's overflow policy
    /// applies next) [default: 4194304].
    #[arg(long, env = "FANOUT_MAX_QUEUED_BYTES")]
    pub max_queued_bytes: Option<usize>,
    /// Close (4001 "slow consumer") a connection that stays at
    /// --max-queued-bytes this long, e.g. 10s [default: 10s].
    #[arg(long, env = "FANOUT_SLOW_CONSUMER_TIMEOUT", value_parser = parse_duration)]
    pub slow_consumer_timeout: Option<Duration>,
}

/// The TOML file: the same keys as the flags, `_` for `-`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    engine: Option<EngineKind>,
    api_key: Option<String>,
    jwt_secret: Option<String>,
    allowed_origins: Option<Vec<String>>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_message_size: Option<usize>,
    max_subscriptions: Option<usize>,
    max_topic_len: Option<usize>,
    rate_limit: Option<f64>,
    rate_burst: Option<u32>,
    rate_strikes: Option<u32>,
    ws_path: Option<String>,
    echo_path: Option<String>,
    capacity: Option<usize>,
    overflow: Option<OverflowArg>,
    history_size: Option<usize>,
    history_ttl: Option<String>,
    /// Options per topic pattern, first match wins: `[[topics]] pattern =
    /// "prices.*" history_size = 1000`.
    topics: Option<Vec<TopicRuleFile>>,
    max_batch: Option<usize>,
    write_timeout: Option<String>,
    ping_interval: Option<String>,
    pong_timeout: Option<String>,
    handshake_timeout: Option<String>,
    drain_timeout: Option<String>,
    read_buffer_size: Option<usize>,
    write_buffer_size: Option<usize>,
    send_buffer_size: Option<usize>,
    stats_interval: Option<String>,
    max_body_size: Option<usize>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    api_key_file: Option<PathBuf>,
    jwt_keys_file: Option<PathBuf>,
    jwt_leeway: Option<String>,
    jwt_audience: Option<String>,
    jwt_issuer: Option<String>,
    costly_rate_limit: Option<f64>,
    costly_rate_burst: Option<u32>,
    metrics_listen: Option<SocketAddr>,
    broker: Option<String>,
    cluster: Option<ClusterFile>,
    max_topics: Option<usize>,
    max_connections_per_subject: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    body_read_timeout: Option<String>,
    drain_grace: Option<String>,
    max_pending_per_ip: Option<usize>,
    max_request_head: Option<usize>,
    max_queued_bytes: Option<usize>,
    slow_consumer_timeout: Option<String>,
}

/// The `[cluster]` table: the broker's own options (see docs/cluster.md).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    prefix: Option<String>,
    stream: Option<String>,
    retention: Option<usize>,
    ttl: Option<String>,
    timeout: Option<String>,
    grace: Option<String>,
}

impl ClusterFile {
    /// The broker settings for `url` with this table's options.
    fn settings(self, url: &str) -> Result<BrokerSettings, String> {
        let mut b = BrokerSettings::new(url);
        b.kind()?;
        b.prefix = self.prefix.unwrap_or(b.prefix);
        b.stream = self.stream.unwrap_or(b.stream);
        b.retention = self.retention.unwrap_or(b.retention);
        b.ttl = dur("cluster.ttl", self.ttl)?.unwrap_or(b.ttl);
        b.timeout = dur("cluster.timeout", self.timeout)?.unwrap_or(b.timeout);
        b.grace = dur("cluster.grace", self.grace)?.unwrap_or(b.grace);
        if b.retention == 0 || b.timeout.is_zero() {
            return Err("cluster: retention and timeout must be above zero".into());
        }
        Ok(b)
    }
}

/// One `[[topics]]` table of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicRuleFile {
    pattern: String,
    history_size: Option<usize>,
    history_ttl: Option<String>,
}

/// Options for the topics a pattern matches (`[[topics]]`; the first rule
/// whose pattern matches decides, the flags decide for the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRule {
    /// A topic pattern, as in token permissions (`prices.*`, `*`; see
    /// `fanout_ws::topic`), checked at load and again at start.
    pub pattern: String,
    /// Its topics' options.
    pub options: TopicOptions,
}

/// Everything the server runs with. `Debug` redacts the API key (and the JWT
/// secret, in `ws`).
#[derive(Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Engine.
    pub engine: EngineKind,
    /// The cluster's broker (`None`: a single node).
    pub broker: Option<BrokerSettings>,
    /// API key for POST /api/publish.
    pub api_key: Option<String>,
    /// Queue slots per subscriber (fanout engine).
    pub capacity: usize,
    /// Overflow policy (fanout engine).
    pub overflow: Overflow,
    /// History of topics no rule matches (fanout engine).
    pub history: TopicOptions,
    /// Options per topic pattern, first match wins.
    pub topic_rules: Vec<TopicRule>,
    /// Graceful drain bound.
    pub drain_timeout: Duration,
    /// `$sys.stats` interval (zero: off).
    pub stats_interval: Duration,
    /// Largest publish body.
    pub max_body_size: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Log level.
    pub log_level: String,
    /// Transport settings.
    pub ws: WsConfig,
    /// Where `/metrics` is served; `None`: on `listen`, with the public routes.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest read of a `POST /api/publish` body: past it, 408.
    pub body_read_timeout: Duration,
    /// On shutdown, how long `/readyz` answers 503 before the listener closes.
    pub drain_grace: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("engine", &self.engine)
            .field("broker", &self.broker)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("history", &self.history)
            .field("topic_rules", &self.topic_rules)
            .field("drain_timeout", &self.drain_timeout)
            .field("stats_interval", &self.stats_interval)
            .field("max_body_size", &self.max_body_size)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("ws", &self.ws)
            .field("metrics_listen", &self.metrics_listen)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("drain_grace", &self.drain_grace)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            engine: EngineKind::Fanout,
            broker: None,
            api_key: None,
            capacity: 256,
            overflow: Overflow::Evict,
            history: TopicOptions { history_size: 128, history_ttl: Duration::from_secs(300) },
            topic_rules: Vec::new(),
            drain_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(1),
            max_body_size: 1 << 20,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            ws: WsConfig::default(),
            metrics_listen: None,
            body_read_timeout: Duration::from_secs(10),
            drain_grace: Duration::ZERO,
        }
    }
}

/// Parses `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("invalid duration `{s}` (try 500ms, 10s, 2m)"))?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("invalid duration `{s}`"));
    }
    let too_long = || format!("duration `{s}` is longer than 365 days");
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in `{s}` (ms, s, m, h)")),
    };
    // `from_secs_f64` panics past u64::MAX seconds; timers panic far sooner
    // (`Instant + Duration`), so anything past a year is refused here.
    let d = Duration::try_from_secs_f64(secs).map_err(|_| too_long())?;
    if d > fanout_ws::MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

fn dur(field: &str, v: Option<String>) -> Result<Option<Duration>, String> {
    v.map(|s| parse_duration(&s).map_err(|e| format!("{field}: {e}"))).transpose()
}

impl Settings {
    /// Merges flags/env (already in `cli`), then the file, then the defaults.
    pub fn from_cli(cli: Cli) -> Result<Settings, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Merges a parsed command line over a parsed file.
    pub fn merge(cli: Cli, f: FileConfig) -> Result<Settings, String> {
        let d = Settings::default();
        let w = WsConfig::default();
        let ws = WsConfig {
            path: cli.ws_path.or(f.ws_path).unwrap_or(w.path),
            echo_path: cli.echo_path.or(f.echo_path).filter(|p| !p.is_empty()),
            max_message_size: cli.max_message_size.or(f.max_message_size).unwrap_or(w.max_message_size),
            read_buffer_size: cli.read_buffer_size.or(f.read_buffer_size).unwrap_or(w.read_buffer_size),
            write_buffer_size: cli.write_buffer_size.or(f.write_buffer_size).unwrap_or(w.write_buffer_size),
            max_batch: cli.max_batch.or(f.max_batch).unwrap_or(w.max_batch),
            write_timeout: cli
                .write_timeout
                .or(dur("write_timeout", f.write_timeout)?)
                .unwrap_or(w.write_timeout),
            ping_interval: cli
                .ping_interval
                .or(dur("ping_interval", f.ping_interval)?)
                .unwrap_or(w.ping_interval),
            pong_timeout: cli.pong_timeout.or(dur("pong_timeout", f.pong_timeout)?).unwrap_or(w.pong_timeout),
            handshake_timeout: cli
                .handshake_timeout
                .or(dur("handshake_timeout", f.handshake_timeout)?)
                .unwrap_or(w.handshake_timeout),
            close_timeout: w.close_timeout,
            rate_limit: RateLimit {
                per_second: cli.rate_limit.or(f.rate_limit).unwrap_or(w.rate_limit.per_second),
                burst: cli.rate_burst.or(f.rate_burst).unwrap_or(w.rate_limit.burst),
                max_strikes: cli.rate_strikes.or(f.rate_strikes).unwrap_or(w.rate_limit.max_strikes),
            },
            max_subscriptions: cli.max_subscriptions.or(f.max_subscriptions).unwrap_or(w.max_subscriptions),
            max_topic_len: cli.max_topic_len.or(f.max_topic_len).unwrap_or(w.max_topic_len),
            max_connections: cli.max_connections.or(f.max_connections).unwrap_or(w.max_connections),
            max_connections_per_ip: cli
                .max_connections_per_ip
                .or(f.max_connections_per_ip)
                .unwrap_or(w.max_connections_per_ip),
            allowed_origins: cli
                .allowed_origins
                .or(f.allowed_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            jwt_secret: cli.jwt_secret.or(f.jwt_secret).filter(|s| !s.is_empty()),
            tcp_nodelay: w.tcp_nodelay,
            send_buffer_size: match cli.send_buffer_size.or(f.send_buffer_size) {
                Some(0) => None,
                Some(n) => Some(n),
                None => w.send_buffer_size,
            },
            costly_rate_limit: fanout_ws::KeyedRate {
                per_second: cli
                    .costly_rate_limit
                    .or(f.costly_rate_limit)
                    .unwrap_or(w.costly_rate_limit.per_second),
                burst: cli.costly_rate_burst.or(f.costly_rate_burst).unwrap_or(w.costly_rate_limit.burst),
            },
            jwt_keys: match cli.jwt_keys_file.or(f.jwt_keys_file) {
                Some(p) => crate::secrets::read_keys(&p)?,
                None => w.jwt_keys,
            },
            jwt_leeway: cli.jwt_leeway.or(dur("jwt_leeway", f.jwt_leeway)?).unwrap_or(w.jwt_leeway),
            jwt_audience: cli.jwt_audience.or(f.jwt_audience).filter(|s| !s.is_empty()),
            jwt_issuer: cli.jwt_issuer.or(f.jwt_issuer).filter(|s| !s.is_empty()),
            max_topics: cli.max_topics.or(f.max_topics).unwrap_or(w.max_topics),
            max_connections_per_subject: cli
                .max_connections_per_subject
                .or(f.max_connections_per_subject)
                .unwrap_or(w.max_connections_per_subject),
            trusted_proxies: cli
                .trusted_proxies
                .or(f.trusted_proxies)
                .unwrap_or_default()
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.parse().map_err(|e| format!("trusted_proxies: {e}")))
                .collect::<Result<_, _>>()?,
            max_pending_per_ip: cli
                .max_pending_per_ip
                .or(f.max_pending_per_ip)
                .unwrap_or(w.max_pending_per_ip),
            max_request_head: cli.max_request_head.or(f.max_request_head).unwrap_or(w.max_request_head),
            max_queued_bytes: cli.max_queued_bytes.or(f.max_queued_bytes).unwrap_or(w.max_queued_bytes),
            slow_consumer_timeout: cli
                .slow_consumer_timeout
                .or(dur("slow_consumer_timeout", f.slow_consumer_timeout)?)
                .unwrap_or(w.slow_consumer_timeout),
        };
        let mut ws = ws;
        ws.jwt_secret = crate::secrets::inline_or_file(
            "jwt-secret",
            ws.jwt_secret.take(),
            cli.jwt_secret_file.or(f.jwt_secret_file).as_deref(),
        )?;
        ws.validate().map_err(|e| e.to_string())?;
        let s = Settings {
            listen: cli.listen.or(f.listen).unwrap_or(d.listen),
            engine: cli.engine.or(f.engine).unwrap_or(d.engine),
            broker: match cli.broker.or(f.broker) {
                Some(url) => Some(f.cluster.unwrap_or_default().settings(&url)?),
                None => None,
            },
            api_key: crate::secrets::inline_or_file(
                "api-key",
                cli.api_key.or(f.api_key),
                cli.api_key_file.or(f.api_key_file).as_deref(),
            )?,
            capacity: cli.capacity.or(f.capacity).unwrap_or(d.capacity),
            overflow: cli.overflow.or(f.overflow).map(Overflow::from).unwrap_or(d.overflow),
            history: TopicOptions {
                history_size: cli.history_size.or(f.history_size).unwrap_or(d.history.history_size),
                history_ttl: cli
                    .history_ttl
                    .or(dur("history_ttl", f.history_ttl)?)
                    .unwrap_or(d.history.history_ttl),
            },
            topic_rules: Vec::new(),
            drain_timeout: cli
                .drain_timeout
                .or(dur("drain_timeout", f.drain_timeout)?)
                .unwrap_or(d.drain_timeout),
            stats_interval: cli
                .stats_interval
                .or(dur("stats_interval", f.stats_interval)?)
                .unwrap_or(d.stats_interval),
            max_body_size: cli.max_body_size.or(f.max_body_size).unwrap_or(d.max_body_size),
            log_format: cli.log_format.or(f.log_format).unwrap_or(d.log_format),
            log_level: cli.log_level.or(f.log_level).unwrap_or(d.log_level),
            ws,
            metrics_listen: cli.metrics_listen.or(f.metrics_listen),
            body_read_timeout: cli
                .body_read_timeout
                .or(dur("body_read_timeout", f.body_read_timeout)?)
                .unwrap_or(d.body_read_timeout),
            drain_grace: cli.drain_grace.or(dur("drain_grace", f.drain_grace)?).unwrap_or(d.drain_grace),
        };
        if s.body_read_timeout.is_zero() {
            return Err("body_read_timeout: must be longer than zero".into());
        }
        if s.capacity == 0 {
            return Err("capacity: must be at least 1".into());
        }
        let mut s = s;
        check_history("history", s.history)?;
        for (i, r) in f.topics.unwrap_or_default().into_iter().enumerate() {
            let at = format!("topics[{i}] (pattern {:?})", r.pattern);
            if r.pattern.trim().is_empty() {
                return Err(format!("{at}: pattern must not be empty"));
            }
            fanout_ws::topic::validate_pattern(&r.pattern).map_err(|e| format!("{at}: {e}"))?;
            let options = TopicOptions {
                history_size: r.history_size.unwrap_or(s.history.history_size),
                history_ttl: dur(&format!("{at}.history_ttl"), r.history_ttl)?
                    .unwrap_or(s.history.history_ttl),
            };
            check_history(&at, options)?;
            s.topic_rules.push(TopicRule { pattern: r.pattern, options });
        }
        Ok(s)
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Files kept aside for the listener, logs, the engine's thread and HTTP clients.
pub const RESERVED_FILES: u64 = 64;

/// A warning when the connection caps exceed what the open-files limit allows.
pub fn caps_warning(ws: &WsConfig, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let usable = limit.saturating_sub(RESERVED_FILES);
    let total = ws.max_connections as u64;
    if total == 0 {
        return Some(format!(
            "max_connections is 0 (no cap) but this process may open at most {limit} files: past ~{usable} \
             connections accepts fail with EMFILE; set --max-connections to {usable} or less"
        ));
    }
    if total > usable {
        return Some(format!(
            "max_connections = {total} exceeds what the open-files limit ({limit}) allows: at most ~{usable} \
             connections can be served; lower --max-connections or raise `ulimit -n`"
        ));
    }
    let per_ip = ws.max_connections_per_ip as u64;
    if per_ip > usable {
        return Some(format!(
            "max_connections_per_ip = {per_ip} exceeds what the open-files limit ({limit}) allows (~{usable})"
        ));
    }
    None
}

/// A history's bounds: a size the engine accepts, and a TTL when it keeps
/// anything.
fn check_history(at: &str, o: TopicOptions) -> Result<(), String> {
    if o.history_size > fanout_core::MAX_HISTORY {
        return Err(format!("{at}: history_size must be at most {}", fanout_core::MAX_HISTORY));
    }
    if o.history_size > 0 && o.history_ttl.is_zero() {
        return Err(format!("{at}: history_ttl must be longer than zero when history_size is not 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nmax_message_size = 1000\nping_interval = \"5s\"\npong_timeout = \"6s\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["fanout-server", "--max-message-size", "2000"]).unwrap();
        let s = Settings::merge(cli, file).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.ws.max_message_size, 2000);
        assert_eq!(s.ws.ping_interval, Duration::from_secs(5));
        assert_eq!(s.ws.max_subscriptions, 64);
    }

    #[test]
    fn send_buffer_defaults_to_64k_and_zero_means_kernel() {
        let s =
            Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), FileConfig::default()).unwrap();
        assert_eq!(s.ws.send_buffer_size, Some(64 * 1024));
        let cli = Cli::try_parse_from(["fanout-server", "--send-buffer-size", "0"]).unwrap();
        assert_eq!(Settings::merge(cli, FileConfig::default()).unwrap().ws.send_buffer_size, None);
        let file: FileConfig = toml::from_str("send_buffer_size = 8192").unwrap();
        let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap();
        assert_eq!(s.ws.send_buffer_size, Some(8192));
    }

    /// Issue 14, item 14: a huge duration used to panic (`from_secs_f64`) or
    /// pass and panic later (`Instant + Duration`); every one is an error now.
    #[test]
    fn huge_durations_are_errors_not_panics() {
        for d in ["1e300", "1e20s", "18446744073709551616", "400d", "9000h", "inf", "NaN"] {
            assert!(parse_duration(d).is_err(), "{d}");
        }
        assert_eq!(parse_duration("8760h"), Ok(fanout_ws::MAX_DURATION));
        let cli = Cli::try_parse_from(["fanout-server", "--ping-interval", "1e18"]);
        assert!(cli.is_err(), "refused by the flag's parser");
        let file: FileConfig = toml::from_str("drain_timeout = \"1e300s\"").unwrap();
        let e = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap_err();
        assert!(e.contains("drain_timeout"), "{e}");
    }

    #[test]
    fn secrets_from_files_and_not_both() {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("fanout-cfg-{}-jwt", std::process::id()));
        std::fs::write(&p, format!("{}\n", "j".repeat(32))).unwrap();
        let k = dir.join(format!("fanout-cfg-{}-key", std::process::id()));
        std::fs::write(&k, "api-key-from-file\n").unwrap();
        let cli = Cli::try_parse_from([
            "fanout-server",
            "--jwt-secret-file",
            p.to_str().unwrap(),
            "--api-key-file",
            k.to_str().unwrap(),
        ])
        .unwrap();
        let s = Settings::merge(cli, FileConfig::default()).unwrap();
        assert_eq!(s.ws.jwt_secret, Some("j".repeat(32)));
        assert_eq!(s.api_key.as_deref(), Some("api-key-from-file"));
        let both =
            Cli::try_parse_from(["fanout-server", "--api-key", "x", "--api-key-file", k.to_str().unwrap()])
                .unwrap();
        assert!(Settings::merge(both, FileConfig::default()).unwrap_err().contains("not both"));
        let short = Cli::try_parse_from(["fanout-server", "--jwt-secret", "short"]).unwrap();
        assert!(Settings::merge(short, FileConfig::default()).unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn history_flags_file_and_topic_rules() {
        let none = |args: &[&str]| Settings::merge(Cli::try_parse_from(args).unwrap(), FileConfig::default());
        let d = none(&["fanout-server"]).unwrap();
        assert_eq!(
            (d.history.history_size, d.history.history_ttl),
            (128, Duration::from_secs(300)),
            "on by default"
        );
        let s = none(&["fanout-server", "--history-size", "0"]).unwrap();
        assert_eq!(s.history.history_size, 0);
        let file: FileConfig = toml::from_str(
            "history_ttl = \"1m\"\n[[topics]]\npattern = \"prices.*\"\nhistory_size = 1000\n\
             [[topics]]\npattern = \"chat.*\"\nhistory_ttl = \"10s\"\n",
        )
        .unwrap();
        let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap();
        assert_eq!(s.history.history_ttl, Duration::from_secs(60));
        assert_eq!(
            s.topic_rules,
            vec![
                TopicRule {
                    pattern: "prices.*".into(),
                    options: TopicOptions { history_size: 1000, history_ttl: Duration::from_secs(60) }
                },
                TopicRule {
                    pattern: "chat.*".into(),
                    options: TopicOptions { history_size: 128, history_ttl: Duration::from_secs(10) }
                },
            ],
            "unset keys of a rule come from the flags and top-level keys"
        );
        // Bad settings are clear errors at start.
        let bad = |toml_text: &str| {
            let f: FileConfig = toml::from_str(toml_text).unwrap();
            Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), f).unwrap_err()
        };
        assert!(bad("history_ttl = \"0s\"").contains("history_ttl"));
        assert!(bad("history_size = 2000000").contains("at most"));
        assert!(bad("[[topics]]\npattern = \"\"\n").contains("pattern"));
        // A `*` inside a segment is no pattern (it used to match `user.420`).
        let e = bad("[[topics]]\npattern = \"user.*\"\n[[topics]]\npattern = \"user.42*\"\n");
        assert!(e.contains("topics[1]") && e.contains("whole segment"), "{e}");
        assert!(
            toml::from_str::<FileConfig>("[[topics]]\npattern = \"a\"\noverflow = \"conflate\"\n").is_err()
        );
    }

    #[test]
    fn slow_consumer_settings_from_flag_file_and_default() {
        let s =
            Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), FileConfig::default()).unwrap();
        assert_eq!(s.ws.max_queued_bytes, 4 * 1024 * 1024);
        assert_eq!(s.ws.slow_consumer_timeout, Duration::from_secs(10));
        let file: FileConfig =
            toml::from_str("max_queued_bytes = 65536\nslow_consumer_timeout = \"3s\"\n").unwrap();
        let cli = Cli::try_parse_from(["fanout-server", "--slow-consumer-timeout", "500ms"]).unwrap();
        let s = Settings::merge(cli, file).unwrap();
        assert_eq!(s.ws.max_queued_bytes, 65536);
        assert_eq!(s.ws.slow_consumer_timeout, Duration::from_millis(500));
        let cli = Cli::try_parse_from(["fanout-server", "--max-queued-bytes", "10"]).unwrap();
        assert!(Settings::merge(cli, FileConfig::default()).unwrap_err().contains("max_queued_bytes"));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let cli = Cli::try_parse_from(["fanout-server", "--pong-timeout", "0s"]).unwrap();
        assert!(Settings::merge(cli, FileConfig::default()).unwrap_err().contains("pong_timeout"));
    }

    #[test]
    fn warns_when_caps_exceed_open_files() {
        let mut ws = WsConfig { max_connections: 30_000, ..WsConfig::default() };
        assert!(caps_warning(&ws, Some(20_000)).unwrap().contains("30000"));
        ws.max_connections = 10_000;
        assert!(caps_warning(&ws, Some(20_000)).is_none());
        ws.max_connections = 0;
        assert!(caps_warning(&ws, Some(20_000)).is_some());
    }
}
