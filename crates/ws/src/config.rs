//! Transport settings: every limit the gateway enforces, validated once.

use std::fmt;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client_ip::Cidr;
use crate::keyed_limit::KeyedRate;
use crate::token::MIN_SECRET_LEN;

/// Longest accepted duration setting: timers add them to `Instant::now()`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Largest accepted `jwt_leeway`.
const MAX_LEEWAY: Duration = Duration::from_secs(3600);

/// Inbound message rate per connection: a token bucket.
///
/// Each JSON-RPC call takes one token (a batch of `n` calls takes `n`, all or
/// none; a binary frame takes one); the bucket holds
/// `burst` tokens and refills at `per_second`. A frame that finds it empty is
/// answered with a `-32003` error and not processed (a *strike*); after
/// `max_strikes` strikes without the bucket refilling to full in between, the
/// connection is closed with 4100.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (0 disables the limit).
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
    /// Refused frames before the close (4100).
    pub max_strikes: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 100.0, burst: 200, max_strikes: 20 }
    }
}

/// Settings of a [`Gateway`](crate::Gateway).
///
/// ```
/// use fanout_ws::WsConfig;
/// use std::time::Duration;
///
/// let config = WsConfig {
///     max_message_size: 16 * 1024,
///     ping_interval: Duration::from_secs(20),
///     pong_timeout: Duration::from_secs(25),
///     ..WsConfig::default()
/// };
/// config.validate().unwrap();
/// ```
///
/// `Debug` prints `jwt_secret` as `"<redacted>"`: a config dumped to a log or a
/// panic message does not leak it.
#[derive(Clone)]
pub struct WsConfig {
    /// Path of the WebSocket endpoint (default `/ws`).
    pub path: String,
    /// Path of the echo endpoint for protocol conformance tests (default off).
    pub echo_path: Option<String>,
    /// Largest inbound message, bytes (default 64 KiB): past it, close 1009.
    pub max_message_size: usize,
    /// tungstenite's per-connection read buffer, allocated eagerly (default 1 KiB;
    /// tungstenite's own default is 128 KiB). It is the size of one socket read,
    /// not a limit: larger messages are assembled across reads. Clients of a
    /// fan-out server send little, so a small buffer costs nothing and saves
    /// 3 KiB per connection against 4 KiB.
    pub read_buffer_size: usize,
    /// Bytes tungstenite buffers before writing to the socket (default 16 KiB). A
    /// batch smaller than this is written with one syscall, at the flush.
    pub write_buffer_size: usize,
    /// Most messages a connection takes from the engine per batch, and most
    /// replies it gathers before one write (default 64).
    pub max_batch: usize,
    /// Longest a batch's write and flush may take (default 10 s): past it the
    /// connection is dropped as a slow consumer.
    pub write_timeout: Duration,
    /// Interval between server pings (default 54 s).
    pub ping_interval: Duration,
    /// Longest wait for a pong, measured from the ping it answers (default
    /// 20 s): past it, close 4000. Any positive duration; when longer than
    /// `ping_interval`, more pings go out meanwhile and the deadline still
    /// runs from the first unanswered one.
    pub pong_timeout: Duration,
    /// Longest from TCP accept to a complete upgrade request (default 10 s).
    pub handshake_timeout: Duration,
    /// How long, after sending a close frame, to wait for the client's (default 1 s).
    pub close_timeout: Duration,
    /// Inbound rate limit per connection.
    pub rate_limit: RateLimit,
    /// Topics one connection may be subscribed to at once (default 64).
    pub max_subscriptions: usize,
    /// Longest topic name in bytes (default 128, at most 255).
    pub max_topic_len: usize,
    /// Open WebSocket connections in all (default 10,000; 0 = no cap): past it,
    /// HTTP 503.
    pub max_connections: usize,
    /// Open connections per client IP (default 1,000; 0 = no cap): past it, HTTP
    /// 429. On by default: one address cannot take every slot of
    /// `max_connections`; raise it for clients behind one large NAT.
    pub max_connections_per_ip: usize,
    /// Allowed `Origin` values (empty = any; `*` = any). A request without an
    /// `Origin` header (not a browser) is allowed. Otherwise: HTTP 403.
    pub allowed_origins: Vec<String>,
    /// HS256 secret for bearer tokens; `None` = anonymous clients.
    pub jwt_secret: Option<String>,
    /// Set `TCP_NODELAY` on accepted sockets (default true: we batch ourselves).
    pub tcp_nodelay: bool,
    /// `SO_SNDBUF` of accepted sockets, bytes (default 64 KiB; `None` = the
    /// kernel's autotuning, which lets a client that stopped reading park up to
    /// ~4 MiB in the kernel before the engine's queue, and so eviction, sees
    /// it). The kernel doubles the value it is given.
    pub send_buffer_size: Option<usize>,
    /// More HS256 keys, by the `kid` header of the tokens they check, for
    /// rotating a secret without dropping anyone (see `token.rs`). Each at
    /// least 32 bytes.
    pub jwt_keys: Vec<(String, String)>,
    /// Clock skew tolerated on `exp` and `nbf`, at the upgrade, at a
    /// `refresh`, and for the close at expiry (default 0).
    pub jwt_leeway: Duration,
    /// When set, a token's `aud` must contain it.
    pub jwt_audience: Option<String>,
    /// When set, a token's `iss` must be it.
    pub jwt_issuer: Option<String>,
    /// Sockets from one client address that have not (yet) upgraded to a
    /// WebSocket: HTTP requests and handshakes in progress (default 128; 0 =
    /// no cap). Past it, a new socket is closed at accept. Trusted proxies
    /// are exempt. See `serve.rs`.
    pub max_pending_per_ip: usize,
    /// Largest HTTP request head, bytes (default 16 KiB; at least 8 KiB):
    /// past it, `431`.
    pub max_request_head: usize,
    /// Proxies whose `X-Forwarded-For` names the client (default none: the
    /// header is ignored). See `client_ip.rs`.
    pub trusted_proxies: Vec<Cidr>,
    /// Open connections per token subject (`sub`; default 100, 0 = no cap):
    /// past it, HTTP 429. See `subjects.rs`.
    pub max_connections_per_subject: usize,
    /// Distinct topics clients may create by subscribing, across the gateway
    /// (default 100,000; 0 = no cap): past it a join of a new topic gets
    /// `-32006`. See `topic_cap.rs`.
    pub max_topics: usize,
    /// Costly calls (`subscribe`, `unsubscribe`, `refresh`) per second, shared
    /// by every connection of one client address and of one token subject
    /// (default 200/s, burst 1,000; 0 = off). See `keyed_limit.rs`.
    pub costly_rate_limit: KeyedRate,
    /// Bytes a connection may hold taken from the engine but not yet written
    /// to its socket, frame headers included (default 4 MiB): the burst a
    /// healthy client may fall behind by. At the mark the connection stops
    /// taking from the engine, so its ring fills next and the overflow policy
    /// applies (the ring's message count is the second cap: whichever fills
    /// first decides); it also stops reading requests until it is under again.
    pub max_queued_bytes: usize,
    /// Longest a connection may stay at `max_queued_bytes` (default 10 s):
    /// past it, it is closed with 4001 "slow consumer". A socket that accepts
    /// no byte at all for `write_timeout` is dropped at once, whatever this is.
    pub slow_consumer_timeout: Duration,
}

impl fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConfig")
            .field("path", &self.path)
            .field("echo_path", &self.echo_path)
            .field("max_message_size", &self.max_message_size)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("max_batch", &self.max_batch)
            .field("write_timeout", &self.write_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("rate_limit", &self.rate_limit)
            .field("max_subscriptions", &self.max_subscriptions)
            .field("max_topic_len", &self.max_topic_len)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("allowed_origins", &self.allowed_origins)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("send_buffer_size", &self.send_buffer_size)
            .field("costly_rate_limit", &self.costly_rate_limit)
            .field("max_topics", &self.max_topics)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("max_pending_per_ip", &self.max_pending_per_ip)
            .field("max_request_head", &self.max_request_head)
            .field("max_connections_per_subject", &self.max_connections_per_subject)
            .field("jwt_keys", &self.jwt_keys.iter().map(|(kid, _)| (kid, "<redacted>")).collect::<Vec<_>>())
            .field("jwt_leeway", &self.jwt_leeway)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("slow_consumer_timeout", &self.slow_consumer_timeout)
            .finish()
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            path: "/ws".into(),
            echo_path: None,
            max_message_size: 64 * 1024,
            read_buffer_size: 1024,
            write_buffer_size: 16 * 1024,
            max_batch: 64,
            write_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(54),
            pong_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            rate_limit: RateLimit::default(),
            max_subscriptions: 64,
            max_topic_len: 128,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            allowed_origins: Vec::new(),
            jwt_secret: None,
            tcp_nodelay: true,
            send_buffer_size: Some(64 * 1024),
            costly_rate_limit: KeyedRate::default(),
            max_topics: 100_000,
            trusted_proxies: Vec::new(),
            max_pending_per_ip: 128,
            max_request_head: 16 * 1024,
            max_connections_per_subject: 100,
            jwt_keys: Vec::new(),
            jwt_leeway: Duration::ZERO,
            jwt_audience: None,
            jwt_issuer: None,
            max_queued_bytes: 4 * 1024 * 1024,
            slow_consumer_timeout: Duration::from_secs(10),
        }
    }
}

/// A setting that is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for WsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid transport setting `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for WsConfigError {}

fn err(field: &'static str, reason: &'static str) -> Result<(), WsConfigError> {
    Err(WsConfigError { field, reason })
}

impl WsConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), WsConfigError> {
        if !self.path.starts_with('/') {
            return err("path", "must start with `/`");
        }
        if let Some(p) = &self.echo_path {
            if !p.starts_with('/') || *p == self.path {
                return err("echo_path", "must start with `/` and differ from `path`");
            }
        }
        if self.max_message_size < 128 {
            return err("max_message_size", "must be at least 128 bytes");
        }
        if self.read_buffer_size < 256 {
            return err("read_buffer_size", "must be at least 256 bytes");
        }
        // Per connection, allocated at the upgrade: a typo here used to abort
        // the process (allocation failure) or panic every connection task
        // (tungstenite asserts its write buffer below its maximum) at the
        // first client, not at start.
        for (field, v) in
            [("read_buffer_size", self.read_buffer_size), ("write_buffer_size", self.write_buffer_size)]
        {
            if v > MAX_BUFFER {
                return err(field, "must be at most 64 MiB");
            }
        }
        if self.max_batch == 0 {
            return err("max_batch", "must be at least 1");
        }
        for (field, d) in [
            ("write_timeout", self.write_timeout),
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("close_timeout", self.close_timeout),
        ] {
            if d.is_zero() {
                return err(field, "must be longer than zero");
            }
            // Timers add these to `Instant::now()`, which panics on overflow.
            if d > MAX_DURATION {
                return err(field, "must be at most 365 days");
            }
        }
        if self.jwt_leeway > MAX_LEEWAY {
            return err("jwt_leeway", "must be at most 1 hour");
        }
        let r = &self.rate_limit;
        if !(r.per_second >= 0.0 && r.per_second.is_finite()) {
            return err("rate_limit.per_second", "must be a finite number >= 0");
        }
        if r.per_second > 0.0 && r.burst == 0 {
            return err("rate_limit.burst", "must be at least 1");
        }
        if r.max_strikes == 0 {
            return err("rate_limit.max_strikes", "must be at least 1");
        }
        let k = &self.costly_rate_limit;
        if !(k.per_second >= 0.0 && k.per_second.is_finite()) {
            return err("costly_rate_limit.per_second", "must be a finite number >= 0");
        }
        if k.per_second > 0.0 && k.burst == 0 {
            return err("costly_rate_limit.burst", "must be at least 1");
        }
        // hyper panics on a smaller read buffer.
        if self.max_request_head < 8192 {
            return err("max_request_head", "must be at least 8192 bytes");
        }
        if self.max_topic_len == 0 || self.max_topic_len > 255 {
            return err("max_topic_len", "must be between 1 and 255");
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return err(
                "jwt_secret",
                "must be at least 32 bytes (HS256 with a shorter key can be guessed offline)",
            );
        }
        for (kid, secret) in &self.jwt_keys {
            if kid.is_empty() {
                return err("jwt_keys", "a key id must not be empty");
            }
            if secret.len() < MIN_SECRET_LEN {
                return err("jwt_keys", "every key must be at least 32 bytes");
            }
        }
        // Two keys under one id: which one verifies would be an accident of order.
        let mut kids: Vec<&str> = self.jwt_keys.iter().map(|(k, _)| k.as_str()).collect();
        kids.sort_unstable();
        if kids.windows(2).any(|w| w[0] == w[1]) {
            return err("jwt_keys", "a key id appears twice");
        }
        if self.max_queued_bytes < 1024 {
            return err("max_queued_bytes", "must be at least 1 KiB");
        }
        if self.slow_consumer_timeout.is_zero() {
            return err("slow_consumer_timeout", "must be longer than zero");
        }
        Ok(())
    }

    /// The tungstenite settings these imply. tungstenite's own write buffer
    /// carries only pongs and close frames (pushes go through the frame
    /// writer), so it is bounded at the write buffer size plus 64 KiB: a
    /// client that pings without reading fails there instead of growing it.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(self.write_buffer_size + 64 * 1024)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// Largest read or write buffer per connection.
const MAX_BUFFER: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// The pong deadline is measured from the ping, so a pong timeout shorter
    /// than the ping interval is the usual setting (it was refused when the
    /// deadline ran from the last pong).
    #[test]
    fn pong_timeout_is_any_positive_duration() {
        let with = |ping, pong| WsConfig {
            ping_interval: Duration::from_secs(ping),
            pong_timeout: Duration::from_secs(pong),
            ..WsConfig::default()
        };
        assert!(with(10, 11).validate().is_ok());
        assert!(with(10, 10).validate().is_ok());
        assert!(with(54, 20).validate().is_ok());
        assert!(with(10, 0).validate().unwrap_err().to_string().contains("pong_timeout"));
    }

    /// A huge duration used to pass and panic later (`Instant + Duration`
    /// overflow in the first timer); now it is an error at start.
    #[test]
    fn huge_durations_are_errors() {
        for cfg in [
            WsConfig { ping_interval: Duration::MAX, ..WsConfig::default() },
            WsConfig { pong_timeout: Duration::from_secs(u64::MAX), ..WsConfig::default() },
            WsConfig { write_timeout: MAX_DURATION + Duration::from_secs(1), ..WsConfig::default() },
            WsConfig { handshake_timeout: Duration::MAX, ..WsConfig::default() },
            WsConfig { jwt_leeway: Duration::MAX, ..WsConfig::default() },
        ] {
            let e = cfg.validate().unwrap_err();
            assert!(e.to_string().contains("at most"), "{e}");
        }
        assert!(WsConfig { ping_interval: MAX_DURATION, ..WsConfig::default() }.validate().is_ok());
    }

    /// Buffer sizes that would abort or panic at the first connection are
    /// errors at start (review finding on issue 14, item 14).
    #[test]
    fn huge_buffers_are_errors() {
        for cfg in [
            WsConfig { read_buffer_size: usize::MAX, ..WsConfig::default() },
            WsConfig { write_buffer_size: usize::MAX, ..WsConfig::default() },
            WsConfig { read_buffer_size: MAX_BUFFER + 1, ..WsConfig::default() },
        ] {
            assert!(cfg.validate().unwrap_err().to_string().contains("64 MiB"));
        }
        let ok = WsConfig { write_buffer_size: MAX_BUFFER, ..WsConfig::default() };
        assert!(ok.validate().is_ok());
        // What tungstenite asserts at each connection holds.
        let c = ok.websocket_config();
        assert!(c.max_write_buffer_size > c.write_buffer_size);
    }

    #[test]
    fn duplicate_key_ids_are_errors() {
        let k = "k".repeat(32);
        let dup = WsConfig {
            jwt_keys: vec![("a".into(), k.clone()), ("a".into(), k.clone())],
            ..WsConfig::default()
        };
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
        let ok = WsConfig { jwt_keys: vec![("a".into(), k.clone()), ("b".into(), k)], ..WsConfig::default() };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn short_secrets_are_errors() {
        let short = WsConfig { jwt_secret: Some("x".repeat(31)), ..WsConfig::default() };
        assert!(short.validate().unwrap_err().to_string().contains("32 bytes"));
        assert!(WsConfig { jwt_secret: Some("x".repeat(32)), ..WsConfig::default() }.validate().is_ok());
        let keys = WsConfig { jwt_keys: vec![("1".into(), "short".into())], ..WsConfig::default() };
        assert!(keys.validate().is_err());
    }
}
