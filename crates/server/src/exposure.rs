//! The settings that leave the server open, one warning line each at start.
//!
//! # Why
//!
//! The one-command start (`fanout-server`) is open on purpose: anonymous
//! clients, any origin, `/metrics` beside `/ws`. That is right on a laptop and
//! wrong on the internet, and nothing in the server's behaviour tells the two
//! apart. So the server says it: [`open_settings`] lists every setting whose
//! value leaves something open, with what it exposes and the flag that closes
//! it, and `run_with` logs each at `warn` before it listens. A server with no
//! such line was configured closed; a test (`open_settings_*`) holds the list
//! to the defaults.

use crate::config::Settings;

/// One line per open setting (see the module docs); empty when none is.
pub fn open_settings(s: &Settings) -> Vec<String> {
    let w = &s.ws;
    let mut out = Vec::new();
    if w.jwt_secret.is_none() && w.jwt_keys.is_empty() {
        out.push(
            "open: no --jwt-secret: every client is anonymous and may subscribe to every topic, \
             $sys.stats included"
                .to_string(),
        );
    }
    if w.allowed_origins.is_empty() || w.allowed_origins.iter().any(|o| o == "*") {
        out.push(
            "open: any Origin may open a WebSocket (pages of other sites included): set --allowed-origins"
                .into(),
        );
    }
    if s.metrics_listen.is_none() {
        out.push(format!(
            "open: /metrics is served on {} with the public routes: set --metrics-listen",
            s.listen
        ));
    }
    if let Some(p) = &w.echo_path {
        out.push(format!("open: the echo route {p} is on (for conformance tests only)"));
    }
    if w.max_connections == 0 {
        out.push("open: --max-connections 0: no cap on WebSocket connections".into());
    }
    if w.max_connections_per_ip == 0 {
        out.push("open: --max-connections-per-ip 0: one address may take every connection".into());
    }
    if w.rate_limit.per_second <= 0.0 {
        out.push("open: --rate-limit 0: no limit on calls per connection".into());
    }
    if w.max_topics == 0 {
        out.push("open: --max-topics 0: clients may create any number of topics".into());
    }
    if w.costly_rate_limit.per_second <= 0.0 {
        out.push("open: --costly-rate-limit 0: no limit on subscribe calls per address or subject".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_settings_of_the_defaults() {
        let lines = open_settings(&Settings::default());
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].contains("--jwt-secret") && lines[0].contains("$sys.stats"));
        assert!(lines[1].contains("--allowed-origins"));
        assert!(lines[2].contains("--metrics-listen"));
    }

    #[test]
    fn open_settings_none_when_closed() {
        let mut s = Settings::default();
        s.ws.jwt_secret = Some("x".repeat(32));
        s.ws.allowed_origins = vec!["https://app.example".into()];
        s.metrics_listen = Some("127.0.0.1:9090".parse().unwrap());
        assert_eq!(open_settings(&s), Vec::<String>::new());
        s.ws.rate_limit.per_second = 0.0;
        s.ws.max_connections_per_ip = 0;
        s.ws.echo_path = Some("/echo".into());
        assert_eq!(open_settings(&s).len(), 3);
    }
}
