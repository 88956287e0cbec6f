//! The file's `[cluster]` table: the broker's own options, for a node run
//! with `--broker` (see docs/cluster.md). A file-only key of the settings
//! table, applied by `Settings::merge` once `--broker` is known.

use fanout_cluster::BrokerSettings;
use serde::Deserialize;

use super::parse_duration;

/// The `[cluster]` table.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    prefix: Option<String>,
    stream: Option<String>,
    retention: Option<usize>,
    ttl: Option<String>,
    timeout: Option<String>,
    grace: Option<String>,
}

impl ClusterFile {
    /// `broker` with this table's options.
    pub(super) fn apply(self, mut b: BrokerSettings) -> Result<BrokerSettings, String> {
        let dur = |key: &str, v: Option<String>, d| match v {
            Some(t) => parse_duration(&t).map_err(|e| format!("cluster.{key}: {e}")),
            None => Ok(d),
        };
        b.prefix = self.prefix.unwrap_or(b.prefix);
        b.stream = self.stream.unwrap_or(b.stream);
        b.retention = self.retention.unwrap_or(b.retention);
        b.ttl = dur("ttl", self.ttl, b.ttl)?;
        b.timeout = dur("timeout", self.timeout, b.timeout)?;
        b.grace = dur("grace", self.grace, b.grace)?;
        if b.retention == 0 || b.timeout.is_zero() {
            return Err("cluster: retention and timeout must be above zero".into());
        }
        Ok(b)
    }
}

/// Broker settings as logs may show them: a password in the URL redacted.
pub(super) struct Redacted<'a>(pub(super) &'a BrokerSettings);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0.url;
        let shown = match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}<redacted>@{}", &url[..s + 3], &url[at + 1..]),
            _ => url.clone(),
        };
        f.debug_struct("BrokerSettings")
            .field("url", &shown)
            .field("prefix", &self.0.prefix)
            .field("stream", &self.0.stream)
            .field("retention", &self.0.retention)
            .field("ttl", &self.0.ttl)
            .field("timeout", &self.0.timeout)
            .field("grace", &self.0.grace)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let b = BrokerSettings::new("redis://user:s3cret@10.0.0.1:6379");
        let shown = format!("{:?}", Redacted(&b));
        assert!(!shown.contains("s3cret") && shown.contains("redis://<redacted>@10.0.0.1:6379"), "{shown}");
    }

    #[test]
    fn the_table_sets_the_options_and_refuses_nonsense() {
        let t: ClusterFile = toml::from_str("prefix = \"p\"\nretention = 10\nttl = \"1h\"").unwrap();
        let b = t.apply(BrokerSettings::new("nats://127.0.0.1:4222")).unwrap();
        assert_eq!((b.prefix.as_str(), b.retention, b.ttl.as_secs()), ("p", 10, 3600));
        let t: ClusterFile = toml::from_str("retention = 0").unwrap();
        assert!(t.apply(BrokerSettings::new("nats://x")).is_err());
        assert!(toml::from_str::<ClusterFile>("prefx = \"p\"").is_err(), "a typo is an error");
    }
}
