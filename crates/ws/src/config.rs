//! Transport settings: every limit the gateway enforces, validated once.

use std::fmt;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Inbound message rate per connection: a token bucket.
///
/// Each text or binary frame from a client takes one token; the bucket holds
/// `burst` tokens and refills at `per_second`. A frame that finds it empty is
/// answered with a `-32005` error and not processed (a *strike*); after
/// `max_strikes` strikes without the bucket refilling to full in between, the
/// connection is closed with 1008.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (0 disables the limit).
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
    /// Refused frames before the close.
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
    /// Close after this long without a pong (default 60 s).
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
    /// Bytes a connection may hold taken from the engine but not yet written
    /// to its socket, frame headers included (default 4 MiB): the burst a
    /// healthy client may fall behind by. At the mark the connection stops
    /// taking from the engine, so its ring fills next and the overflow policy
    /// applies (the ring's message count is the second cap: whichever fills
    /// first decides); it also stops reading requests until it is under again.
    pub max_queued_bytes: usize,
    /// Longest a connection may stay at `max_queued_bytes` (default 10 s):
    /// past it, it is closed with 1008 "slow consumer". A socket that accepts
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
            pong_timeout: Duration::from_secs(60),
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
        if self.max_batch == 0 {
            return err("max_batch", "must be at least 1");
        }
        for (field, d) in [
            ("write_timeout", self.write_timeout),
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if d.is_zero() {
                return err(field, "must be longer than zero");
            }
        }
        // Equal would close every connection at its first ping, before the
        // client could answer it.
        if self.pong_timeout <= self.ping_interval {
            return err("pong_timeout", "must be longer than `ping_interval`");
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
        if self.max_topic_len == 0 || self.max_topic_len > 255 {
            return err("max_topic_len", "must be between 1 and 255");
        }
        if self.jwt_secret.as_deref() == Some("") {
            return err("jwt_secret", "must not be empty");
        }
        if self.max_queued_bytes < 1024 {
            return err("max_queued_bytes", "must be at least 1 KiB");
        }
        if self.slow_consumer_timeout.is_zero() {
            return err("slow_consumer_timeout", "must be longer than zero");
        }
        Ok(())
    }

    /// The tungstenite settings these imply.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_timeout_must_outlast_the_ping_interval() {
        let with = |ping, pong| WsConfig {
            ping_interval: Duration::from_secs(ping),
            pong_timeout: Duration::from_secs(pong),
            ..WsConfig::default()
        };
        assert!(with(10, 11).validate().is_ok());
        // Equal would close every connection at its first ping.
        assert!(with(10, 10).validate().unwrap_err().to_string().contains("pong_timeout"));
        assert!(with(10, 5).validate().is_err());
    }
}
