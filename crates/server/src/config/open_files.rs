//! The open-files limit against the connection caps (see docs/config.md,
//! "Open-file limit"): each connection holds a descriptor, so caps above the
//! limit fail with `EMFILE` at accept instead of a clean 503; the server
//! warns at start.

use fanout_ws::WsConfig;

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

#[cfg(test)]
mod tests {
    use super::*;

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
