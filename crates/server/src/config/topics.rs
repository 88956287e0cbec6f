//! Options per topic pattern: the file's `[[topics]]` tables.
//!
//! A rule names a pattern (as in token permissions, `fanout_ws::topic`) and
//! the options of the topics it matches; the first rule whose pattern
//! matches a topic's name decides, when the topic is created, and a key a
//! rule does not set comes from the flags / top-level keys (`history_size`,
//! `history_ttl`). `overflow` is the topic's own policy for messages that do
//! not fit a client's queue (`conflate`: dropped, never a reason to close the
//! client, and the newest per key comes back from the history). Rules have no
//! flag: they are a file-only key of the settings table.

use fanout_core::TopicOptions;
use serde::Deserialize;

use super::parse_duration;

/// One `[[topics]]` table of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicRuleFile {
    pattern: String,
    history_size: Option<usize>,
    history_ttl: Option<String>,
    overflow: Option<super::OverflowArg>,
    shared_log: Option<usize>,
    shared_log_from: Option<usize>,
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

/// The file's rules, checked, with unset keys from `fallback`.
pub(super) fn rules(files: Vec<TopicRuleFile>, fallback: TopicOptions) -> Result<Vec<TopicRule>, String> {
    let mut out = Vec::with_capacity(files.len());
    for (i, r) in files.into_iter().enumerate() {
        let at = format!("topics[{i}] (pattern {:?})", r.pattern);
        if r.pattern.trim().is_empty() {
            return Err(format!("{at}: pattern must not be empty"));
        }
        fanout_ws::topic::validate_pattern(&r.pattern).map_err(|e| format!("{at}: {e}"))?;
        let history_ttl = match r.history_ttl {
            Some(t) => parse_duration(&t).map_err(|e| format!("{at}.history_ttl: {e}"))?,
            None => fallback.history_ttl,
        };
        let options = TopicOptions {
            history_size: r.history_size.unwrap_or(fallback.history_size),
            history_ttl,
            overflow: r.overflow.map(Into::into),
            shared_log: r.shared_log.unwrap_or(fallback.shared_log),
            shared_log_from: r.shared_log_from.unwrap_or(fallback.shared_log_from),
        };
        check_history(&at, options)?;
        out.push(TopicRule { pattern: r.pattern, options });
    }
    Ok(out)
}

/// A history's bounds: a size the engine accepts, and a TTL when it keeps
/// anything.
pub(super) fn check_history(at: &str, o: TopicOptions) -> Result<(), String> {
    if o.shared_log > fanout_core::MAX_SHARED_LOG {
        return Err(format!("{at}: shared_log must be at most {}", fanout_core::MAX_SHARED_LOG));
    }
    if o.history_size > fanout_core::MAX_HISTORY {
        return Err(format!("{at}: history_size must be at most {}", fanout_core::MAX_HISTORY));
    }
    if o.history_size > 0 && o.history_ttl.is_zero() {
        return Err(format!("{at}: history_ttl must be longer than zero when history_size is not 0"));
    }
    Ok(())
}
