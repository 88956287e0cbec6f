//! Settings: clap flags, environment variables, an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable (`FANOUT_*`), TOML
//! file (`--config`), built-in default. Each setting is declared once, in
//! `table.rs` (name, type, default, doc, and where it lands in
//! [`Settings`]); its flag, variable and key are derived from its name (see
//! `layers.rs`), so that none of them can drift from the others, from
//! `--help` or from `docs/config.md` (a test compares its reference table
//! with the declarations). `table.rs` says how to add a setting.
//!
//! - `layers.rs`: the layers and the `settings!` macro;
//! - `values.rs`: how each layer spells a value, by its type;
//! - `table.rs`: the settings;
//! - `topics.rs`: the file's `[[topics]]` rules;
//! - `open_files.rs`: the open-files limit against the connection caps;
//! - this file: [`Settings`] and the merge's checks across settings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use fanout_core::{Overflow, TopicOptions};
use fanout_ws::WsConfig;
use serde::Deserialize;

mod cluster;
mod layers;
mod open_files;
mod table;
#[cfg(test)]
mod tests;
mod topics;
mod values;

pub use layers::{reference_table, Applied, Fallback, Spec, ENV_PREFIX};
pub use open_files::{caps_warning, open_files_limit, RESERVED_FILES};
pub use table::{Cli, FileConfig, SETTINGS};
pub use topics::TopicRule;
pub use values::{Secret, Value};

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
    /// As drop-oldest, and what was lost comes back from the history, the
    /// newest per publish `key` (a repair notice says how many).
    Conflate,
}

impl From<OverflowArg> for Overflow {
    fn from(o: OverflowArg) -> Self {
        match o {
            OverflowArg::Evict => Overflow::Evict,
            OverflowArg::DropNewest => Overflow::DropNewest,
            OverflowArg::DropOldest => Overflow::DropOldest,
            OverflowArg::Conflate => Overflow::Conflate,
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

/// Everything the server runs with. `Debug` redacts the API key (and the JWT
/// secret, in `ws`). `Default` is the settings table's defaults.
///
/// ```
/// use fanout_server::Settings;
///
/// let s = Settings::default();
/// assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
/// assert_eq!(s.ws.max_message_size, 65536);
/// ```
#[derive(Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Engine.
    pub engine: EngineKind,
    /// The cluster's broker (`None`: a single node).
    pub broker: Option<fanout_cluster::BrokerSettings>,
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
    /// Where the dashboard page is served (unless `no_dashboard`).
    pub dashboard_path: String,
    /// Serve no dashboard page.
    pub no_dashboard: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("engine", &self.engine)
            .field("broker", &self.broker.as_ref().map(cluster::Redacted))
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
            .field("dashboard_path", &self.dashboard_path)
            .field("no_dashboard", &self.no_dashboard)
            .finish()
    }
}

impl Default for Settings {
    /// The table's defaults (a test checks that they pass every check).
    fn default() -> Self {
        Settings::merge(Cli::default(), FileConfig::default()).expect("the built-in defaults are valid")
    }
}

impl Settings {
    /// Where the dashboard page is served, if it is.
    pub fn dashboard(&self) -> Option<&str> {
        (!self.no_dashboard).then_some(self.dashboard_path.as_str())
    }

    /// What the table's entries write into: placeholders that every entry
    /// overwrites with its value or default (the table-driven tests check
    /// that each one does).
    fn frame() -> Settings {
        Settings {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            engine: EngineKind::Fanout,
            broker: None,
            api_key: None,
            capacity: 0,
            overflow: Overflow::Evict,
            history: TopicOptions::default(),
            topic_rules: Vec::new(),
            drain_timeout: Duration::ZERO,
            stats_interval: Duration::ZERO,
            max_body_size: 0,
            log_format: LogFormat::Text,
            log_level: String::new(),
            ws: WsConfig::default(),
            metrics_listen: None,
            body_read_timeout: Duration::ZERO,
            drain_grace: Duration::ZERO,
            dashboard_path: String::new(),
            no_dashboard: false,
        }
    }

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

    /// Merges a parsed command line over a parsed file, and checks the result.
    pub fn merge(cli: Cli, mut f: FileConfig) -> Result<Settings, String> {
        let mut s = Settings::frame();
        table::apply_layers(cli, &mut f, &mut s)?;
        s.ws.validate().map_err(|e| e.to_string())?;
        if s.body_read_timeout.is_zero() {
            return Err("body_read_timeout: must be longer than zero".into());
        }
        if s.capacity == 0 {
            return Err("capacity: must be at least 1".into());
        }
        if let Some(p) = s.dashboard() {
            crate::dashboard::check_path(p, &s.ws).map_err(|e| format!("dashboard_path: {e}"))?;
        }
        match (s.broker.take(), f.cluster.take()) {
            (Some(b), table) => s.broker = Some(table.unwrap_or_default().apply(b)?),
            (None, Some(_)) => {
                return Err("[cluster]: needs `broker` (or --broker) to say which broker".into())
            }
            (None, None) => {}
        }
        topics::check_history("history", s.history)?;
        s.topic_rules = topics::rules(f.topics.take().unwrap_or_default(), s.history)?;
        Ok(s)
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
///
/// ```
/// use fanout_server::config::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert!(parse_duration("400d").is_err());
/// ```
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
