//! Every setting of `fanout-server`, each declared once.
//!
//! An entry gives the setting's name, type, default and doc; its flag
//! (`--max-message-size`), environment variable (`FANOUT_MAX_MESSAGE_SIZE`)
//! and file key (`max_message_size`) are derived from the name, `--help` and
//! the reference table of `docs/config.md` from the doc and the default, and
//! the merge from the type (see `values.rs` for how each type is spelled).
//! The closure after `=>` writes the resolved value where the server uses
//! it; entries are applied in this order, so an entry may read what an
//! entry above it wrote (`api_key_file` reads `api_key`).
//!
//! # Adding a setting
//!
//! Add one entry here, where it belongs in `docs/config.md`'s order:
//!
//! ```text
//! /// what it does, as docs/config.md should say it (one paragraph).
//! dashboard_path: String, unset "off", example "/dash" => |s, v| s.dashboard_path = v;
//! ```
//!
//! - `default "text"`: the value when no layer gives one, written as a user
//!   would write the flag (`"10s"`, `"65536"`, `"drop-oldest"`); the closure
//!   gets the type itself. `unset "text"`: no default, the closure gets an
//!   `Option`, and the text is what docs/config.md shows for it (`—`, `off`).
//! - `example`: another valid value, which the table-driven tests set
//!   through each layer (`tests.rs`, `tests/config_env.rs`) and expect to
//!   reach [`Settings`].
//! - The type needs a [`Value`](super::Value) impl (`values.rs` has numbers,
//!   text, paths, addresses, durations, lists, secrets, and the choices; a
//!   new `ValueEnum` joins `choice_value!`).
//! - The field it lands in is the only other edit (a field of [`Settings`]
//!   or of `fanout_ws::WsConfig`, with its checks where the value is used).
//!
//! Then run `UPDATE_DOCS=1 cargo test -p fanout-server --lib docs_reference`
//! to rewrite the reference table of `docs/config.md` from this one (the test
//! fails while they differ). A file section without a flag (a `[broker]`
//! table, `[[topics]]`) is a `file_only` field, read by `Settings::merge`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cluster::ClusterFile;
use super::layers::settings;
use super::topics::TopicRuleFile;
use super::values::Secret;
use super::{EngineKind, LogFormat, OverflowArg};
use crate::secrets;

settings! {
    file_only {
        /// Options per topic pattern, first match wins: `[[topics]] pattern =
        /// "prices.*" history_size = 1000`.
        topics: Option<Vec<TopicRuleFile>>,
        /// The broker's own options (docs/cluster.md): `[cluster] prefix =
        /// "fanout" stream = "FANOUT" retention = 1000 ttl = "24h"`.
        cluster: Option<ClusterFile>,
    }

    /// address for `/ws` and the HTTP routes
    listen: SocketAddr, default "127.0.0.1:8080", example "127.0.0.1:9000" => |s, v| s.listen = v;

    /// `fanout` (lock-free hub) or `mutex` (the mutex-hub baseline, for comparisons)
    engine: EngineKind, default "fanout", example "mutex" => |s, v| s.engine = v;

    /// run as a node of a cluster over this broker: `redis://host:port` or `nats://host:port`
    /// (its options: the file's `[cluster]` table, docs/cluster.md); unset: a single node
    broker: String, unset "— (a single node)", example "redis://127.0.0.1:6379" => |s, v| -> Result<(), String> {
        s.broker = v.map(|url| fanout_cluster::BrokerSettings::new(&url)).map(|b| b.kind().map(|_| b)).transpose()?;
        Ok(())
    };

    /// key for `POST /api/publish` (`Authorization: Bearer <key>`); unset: the endpoint answers 403
    api_key: Secret, unset "—", example "publish-key" => |s, v| s.api_key = v.map(|k| k.0);

    /// file holding the API key (one trailing newline is removed); not with `--api-key`
    api_key_file: PathBuf, unset "—", example "/run/secrets/fanout-api-key" => |s, v| -> Result<(), String> {
        s.api_key = secrets::inline_or_file("api-key", s.api_key.take(), v.as_deref())?;
        Ok(())
    };

    /// HS256 secret for client tokens, at least 32 bytes; unset: anonymous clients (subscribe only)
    jwt_secret: Secret, unset "—", example "0123456789abcdef0123456789abcdef" => |s, v| {
        s.ws.jwt_secret = v.map(|k| k.0).filter(|k| !k.is_empty());
    };

    /// file holding the JWT secret (not visible in `ps`); not with `--jwt-secret`
    jwt_secret_file: PathBuf, unset "—", example "/run/secrets/fanout-jwt" => |s, v| -> Result<(), String> {
        s.ws.jwt_secret = secrets::inline_or_file("jwt-secret", s.ws.jwt_secret.take(), v.as_deref())?;
        Ok(())
    };

    /// file of `kid=secret` lines (`#` comments): tokens whose `kid` header names one are
    /// checked with it (key rotation); each at least 32 bytes
    jwt_keys_file: PathBuf, unset "—", example "/run/secrets/fanout-keys" => |s, v| -> Result<(), String> {
        if let Some(path) = v {
            s.ws.jwt_keys = secrets::read_keys(&path)?;
        }
        Ok(())
    };

    /// clock skew tolerated on `exp` and `nbf` (at most 1 h), also for the close at expiry
    jwt_leeway: Duration, default "0s", example "30s" => |s, v| s.ws.jwt_leeway = v;

    /// when set, a token's `aud` must contain it
    jwt_audience: String, unset "—", example "fanout" => |s, v| {
        s.ws.jwt_audience = v.filter(|a| !a.is_empty());
    };

    /// when set, a token's `iss` must be it
    jwt_issuer: String, unset "—", example "https://auth.example.com" => |s, v| {
        s.ws.jwt_issuer = v.filter(|i| !i.is_empty());
    };

    /// comma-separated `Origin` values allowed to connect (`*` = any); others get 403
    allowed_origins: Vec<String>, unset "any", example "https://app.example.com" => |s, v| {
        s.ws.allowed_origins = v
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
    };

    /// WebSocket connections in all (0 = no cap); past it 503
    max_connections: usize, default "10000", example "15000" => |s, v| s.ws.max_connections = v;

    /// connections per client IP (0 = no cap); past it 429. An IPv6 client is keyed by its /64
    max_connections_per_ip: usize, default "1000", example "100" => |s, v| {
        s.ws.max_connections_per_ip = v;
    };

    /// comma-separated addresses or ranges (`10.0.0.0/8`, `::1`) of reverse proxies: from them,
    /// `X-Forwarded-For` names the client for the per-IP limits; from anyone else it is ignored
    trusted_proxies: Vec<String>, unset "none", example "10.0.0.0/8,::1" => |s, v| -> Result<(), String> {
        s.ws.trusted_proxies = v
            .unwrap_or_default()
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.parse().map_err(|e| format!("trusted_proxies: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(())
    };

    /// connections per token `sub` (0 = no cap); past it 429
    max_connections_per_subject: usize, default "100", example "10" => |s, v| {
        s.ws.max_connections_per_subject = v;
    };

    /// largest inbound message in bytes; past it close 1009
    max_message_size: usize, default "65536", example "16384" => |s, v| s.ws.max_message_size = v;

    /// topics per connection; past it error -32002
    max_subscriptions: usize, default "64", example "32" => |s, v| s.ws.max_subscriptions = v;

    /// distinct topics clients may create by subscribing, server-wide (0 = no cap); past it
    /// error -32006
    max_topics: usize, default "100000", example "5000" => |s, v| s.ws.max_topics = v;

    /// longest topic name (1–255 bytes)
    max_topic_len: usize, default "128", example "64" => |s, v| s.ws.max_topic_len = v;

    /// JSON-RPC calls per second per connection (a batch of n counts n; 0 = no limit)
    rate_limit: f64, default "100", example "50" => |s, v| s.ws.rate_limit.per_second = v;

    /// token bucket size
    rate_burst: u32, default "200", example "100" => |s, v| s.ws.rate_limit.burst = v;

    /// refused frames (error -32003 each) before close 4100
    rate_strikes: u32, default "20", example "5" => |s, v| s.ws.rate_limit.max_strikes = v;

    /// `subscribe`/`unsubscribe`/`refresh` calls per second per client address (IPv6 /64) and
    /// per token `sub`, shared by all their connections (0 = no limit)
    costly_rate_limit: f64, default "200", example "20" => |s, v| {
        s.ws.costly_rate_limit.per_second = v;
    };

    /// bucket size of the costly-call limit
    costly_rate_burst: u32, default "1000", example "50" => |s, v| s.ws.costly_rate_limit.burst = v;

    /// WebSocket path
    ws_path: String, default "/ws", example "/socket" => |s, v| s.ws.path = v;

    /// echo endpoint for protocol conformance tests; never enable it in production
    echo_path: String, unset "off", example "/echo" => |s, v| {
        s.ws.echo_path = v.filter(|p| !p.is_empty());
    };

    /// queue slots per connection (fanout engine; the mutex hub is fixed at 256)
    capacity: usize, default "256", example "512" => |s, v| s.capacity = v;

    /// full queue: `evict` (close 4001 slow consumer), `drop-newest`, `drop-oldest`, `conflate`
    /// (drop-oldest, and the newest per publish `key` of what was lost comes back from the
    /// history). Under all but `evict` the lost messages still in the history are pushed again
    /// (repair notices, docs/protocol.md); only the rest is reported by lag notices
    overflow: OverflowArg, default "evict", example "drop-oldest" => |s, v| s.overflow = v.into();

    /// messages each topic keeps for recovery (`subscribe` with `since`), `latest` and
    /// `history`; `0`: none (fanout engine)
    history_size: usize, default "128", example "1000" => |s, v| s.history.history_size = v;

    /// how long a message stays in the history; a topic also outlives its last subscriber for
    /// this long after its last publish, so that a client that comes back finds its stream
    history_ttl: Duration, default "300s", example "10m" => |s, v| s.history.history_ttl = v;

    /// deliver each topic and the broadcasts, once they have `shared_log_from` connections,
    /// through one shared log that every connection reads with a cursor of its own, with room
    /// for a connection to fall this many messages behind (at least `capacity`); one that falls
    /// further is closed (4001 slow consumer) under `--overflow evict`, and under the other
    /// policies loses the oldest with a lag notice; `0`: a queue per connection always. A
    /// message to a large topic is then written once for all its recipients. Each topic's log
    /// takes 32 bytes per unit of room (8 KiB at 256) from its first message through it
    shared_log: usize, default "256", example "512" => |s, v| s.history.shared_log = v;

    /// with `shared_log`: the connections a topic (or, for the broadcasts, the server) must have
    /// before it delivers through its log (`0`: from its creation); until then through each
    /// connection's queue, which costs a small topic nothing more, and the switch loses, doubles
    /// and reorders nothing
    shared_log_from: usize, default "256", example "1000" => |s, v| s.history.shared_log_from = v;

    /// messages per write batch (one flush each)
    max_batch: usize, default "64", example "16" => |s, v| s.ws.max_batch = v;

    /// longest the socket may accept not one byte while the connection has something to write;
    /// past it the connection is dropped (no close frame). A slow socket that takes bytes
    /// restarts it
    write_timeout: Duration, default "10s", example "5s" => |s, v| s.ws.write_timeout = v;

    /// server ping interval
    ping_interval: Duration, default "54s", example "25s" => |s, v| s.ws.ping_interval = v;

    /// close (4000) when no pong came this long after a ping (measured from the first
    /// unanswered ping)
    pong_timeout: Duration, default "20s", example "10s" => |s, v| s.ws.pong_timeout = v;

    /// longest wait for a request head (the first one, and each later one on a keep-alive
    /// connection) and for the upgrade
    handshake_timeout: Duration, default "10s", example "5s" => |s, v| s.ws.handshake_timeout = v;

    /// after sending a close frame, how long to wait for the client's before dropping the
    /// connection
    close_timeout: Duration, default "1s", example "3s" => |s, v| s.ws.close_timeout = v;

    /// sockets per client address that have not upgraded (HTTP requests, handshakes); past it a
    /// new socket is closed at accept (0 = no cap; trusted proxies exempt)
    max_pending_per_ip: usize, default "128", example "16" => |s, v| s.ws.max_pending_per_ip = v;

    /// largest HTTP request head in bytes (at least 8192); past it 431
    max_request_head: usize, default "16384", example "32768" => |s, v| s.ws.max_request_head = v;

    /// longest read of a `POST /api/publish` body; past it 408
    body_read_timeout: Duration, default "10s", example "5s" => |s, v| s.body_read_timeout = v;

    /// on SIGTERM/SIGINT, how long `/readyz` answers 503 while the listener still accepts,
    /// before it closes (set it above the load balancer's health-check period, e.g. `5s`)
    drain_grace: Duration, default "0s", example "5s" => |s, v| s.drain_grace = v;

    /// longest graceful drain on SIGTERM/SIGINT; then remaining connections are dropped
    drain_timeout: Duration, default "10s", example "15s" => |s, v| s.drain_timeout = v;

    /// tungstenite read buffer per connection (allocated up front; the size of one socket read,
    /// not a message limit; tungstenite's own default is 128 KiB)
    read_buffer_size: usize, default "1024", example "4096" => |s, v| s.ws.read_buffer_size = v;

    /// tungstenite's write buffer, which now carries only its pongs and the close frame (pushes
    /// and replies go through the connection's own vectored writer, which copies nothing)
    write_buffer_size: usize, default "16384", example "65536" => |s, v| s.ws.write_buffer_size = v;

    /// `SO_SNDBUF` of accepted sockets (0 = kernel autotuning). Bounds what a client that
    /// stopped reading can park in the kernel (~4 MiB with autotuning), so that the engine's
    /// queue fills and the slow consumer is evicted
    send_buffer_size: usize, default "65536", example "8192" => |s, v| {
        s.ws.send_buffer_size = (v > 0).then_some(v);
    };

    /// `TCP_NODELAY` on accepted sockets (`false`: the kernel may hold small writes back to
    /// coalesce them; the server already batches its writes)
    tcp_nodelay: bool, default "true", example "false" => |s, v| s.ws.tcp_nodelay = v;

    /// period of the `$sys.stats` topic (`0s` = off)
    stats_interval: Duration, default "1s", example "0s" => |s, v| s.stats_interval = v;

    /// largest `POST /api/publish` body; past it 413
    max_body_size: usize, default "1048576", example "1000" => |s, v| s.max_body_size = v;

    /// `text` or `json` (one object per line, on stderr)
    log_format: LogFormat, default "text", example "json" => |s, v| s.log_format = v;

    /// `error`, `warn`, `info`, `debug`, `trace`
    log_level: String, default "info", example "debug" => |s, v| s.log_level = v;

    /// serve `GET /metrics` on this address only; the public port then answers it 404
    metrics_listen: SocketAddr, unset "— (on `--listen`)", example "127.0.0.1:9090" => |s, v| {
        s.metrics_listen = v;
    };

    /// bytes a connection may hold taken from its queue but not yet written to its socket (frame
    /// headers included): how far a healthy client may fall behind in a burst. At the mark the
    /// connection stops taking from its queue, which then fills and the `--overflow` policy
    /// applies; the queue's `--capacity` in messages (for a topic on its shared log, the log's
    /// room) is the second cap, and whichever fills first decides. At least 1024
    max_queued_bytes: usize, default "4194304", example "8388608" => |s, v| s.ws.max_queued_bytes = v;

    /// a connection that stays at `--max-queued-bytes` this long is closed with 4001 "slow
    /// consumer" (frames not yet started are dropped). `--write-timeout` still drops a socket
    /// that takes nothing at all sooner
    slow_consumer_timeout: Duration, default "10s", example "5s" => |s, v| {
        s.ws.slow_consumer_timeout = v;
    };

    /// where the dashboard page is served (an absolute path, not the WebSocket's nor an API
    /// route)
    dashboard_path: String, default "/", example "/ops" => |s, v| s.dashboard_path = v;

    /// serve no dashboard page
    no_dashboard: bool, default "false", example "true" => |s, v| s.no_dashboard = v;
}
