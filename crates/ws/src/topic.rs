//! Topic names and topic patterns: the one place where their rules live.
//!
//! The RPC (`subscribe`, `publish`, `history`, binary publishes), the HTTP API
//! of `fanout-server` (`POST /api/publish`, `GET /api/history`), the
//! permission check ([`Patterns`], filled from a token's claims) and the
//! server's `[[topics]]` rules all call the functions of this module; none of
//! them checks a `$`, a length or a character itself.
//!
//! # Names
//!
//! A topic name is 1 to `max_topic_len` bytes (default 128, never more than
//! [`MAX_TOPIC_LEN`]) of ASCII letters, digits and `_ - . : /`
//! ([`validate_topic`]). A `.` separates the *segments* of a name, which is
//! what patterns match: `prices.eu.btc` has the segments `prices`, `eu` and
//! `btc`.
//!
//! # `$` topics
//!
//! Names starting with `$` are reserved for the server ([`is_reserved`]).
//! `$sys.` topics ([`SYS_PREFIX`]; `$sys.stats` today) are published by the
//! server itself: clients may subscribe to them when permitted, but nobody
//! else publishes to them, not even with the HTTP API key. Any other `$` name
//! is refused outright.
//!
//! # Patterns
//!
//! Token permissions (`subscribe`, `publish`) and `[[topics]]` rules name
//! topics by pattern. A pattern is split at `.` into segments, like a name:
//!
//! | pattern segment | matches |
//! | --- | --- |
//! | a literal (`prices`) | that segment, exactly |
//! | `*`, not last | exactly one segment, whatever it is |
//! | `*`, last | one or more segments: the rest of the name |
//!
//! So `prices.*` matches `prices.btc` and `prices.eu.btc` but not `prices`;
//! `user.*.inbox` matches `user.42.inbox` but not `user.42.x.inbox`; and `*`
//! alone matches every name. A `*` inside a segment (`user.42*`, `a*c`, `$*`)
//! is not a pattern: [`validate_pattern`] refuses it, so a token carrying one
//! is refused (`401` at the upgrade, `-32005` on `refresh`) and a server
//! whose `[[topics]]` names one does not start. Where such a string reaches
//! [`pattern_matches`] anyway (a [`Patterns`] built by hand), it matches
//! nothing.
//!
//! A `$` topic is matched, for permissions ([`Patterns::allows`]), only by a
//! pattern that itself starts with `$sys.` (`$sys.*`, `$sys.stats`): `*`
//! grants every ordinary topic, never the server's own.
//!
//! Before this module, `*` matched any run of characters, segment or not, so
//! `user.42*` (meant for user 42's topics) matched `user.420` too, and
//! `a.*.c` matched `a.b.x.c`.

use std::fmt;

/// Prefix of the topics only the server publishes to.
pub const SYS_PREFIX: &str = "$sys.";

/// The longest topic name any setting allows, in bytes (`max_topic_len` is
/// capped here: the binary frame header gives the topic one length byte).
pub const MAX_TOPIC_LEN: usize = 255;

/// The segment that matches any segment (and, last, the rest of a name).
const WILDCARD: &str = "*";

/// Why a topic name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Empty.
    Empty,
    /// Longer than the limit.
    TooLong(usize),
    /// A character outside `[A-Za-z0-9_.:/-]`.
    BadChar(char),
    /// Starts with `$` but is not a `$sys.` topic.
    Reserved,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => f.write_str("topic name is empty"),
            TopicError::TooLong(max) => write!(f, "topic name is longer than {max} bytes"),
            TopicError::BadChar(c) => write!(f, "topic name has a forbidden character {c:?}"),
            TopicError::Reserved => f.write_str("topic names starting with `$` are reserved"),
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name against the rules (see the module docs), with at most
/// `max_len` bytes (never more than [`MAX_TOPIC_LEN`]). `$sys.` names pass:
/// whether the caller may publish to them is a separate check
/// ([`is_reserved`]).
pub fn validate_topic(name: &str, max_len: usize) -> Result<(), TopicError> {
    let max_len = max_len.min(MAX_TOPIC_LEN);
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > max_len {
        return Err(TopicError::TooLong(max_len));
    }
    let body = match name.strip_prefix(SYS_PREFIX) {
        Some(rest) if !rest.is_empty() => rest,
        _ if name.starts_with('$') => return Err(TopicError::Reserved),
        _ => name,
    };
    match body.chars().find(|&c| !is_name_char(c)) {
        Some(c) => Err(TopicError::BadChar(c)),
        None => Ok(()),
    }
}

/// The characters of a topic name (after the `$sys.` prefix).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// Whether only the server may publish to `name` (it starts with `$`).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with('$')
}

/// Whether `s` holds a wildcard, and so is no topic name (a token's
/// `channels` entry with one is ignored).
pub fn has_wildcard(s: &str) -> bool {
    s.contains('*')
}

/// Why a pattern is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// Empty.
    Empty,
    /// A `*` that is not a whole segment (the segment is given): `user.42*`.
    PartialWildcard(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("topic pattern is empty"),
            PatternError::PartialWildcard(seg) => write!(
                f,
                "topic pattern segment {seg:?}: `*` must be a whole segment (`user.*`, not `user.42*`)"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Checks a pattern against the syntax (see the module docs): not empty, and
/// every `*` a whole segment.
pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    match pattern.split('.').find(|seg| *seg != WILDCARD && has_wildcard(seg)) {
        Some(seg) => Err(PatternError::PartialWildcard(seg.to_owned())),
        None => Ok(()),
    }
}

/// Whether `topic` matches `pattern`, segment by segment (see the module
/// docs): a `*` segment matches one segment, or all the remaining ones when it
/// is the pattern's last. A pattern that [`validate_pattern`] refuses matches
/// nothing. No `$` rule here: that is [`Patterns::allows`]'.
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let mut pattern = pattern.split('.').peekable();
    let mut topic = topic.split('.');
    while let Some(p) = pattern.next() {
        // Every pattern segment consumes one topic segment.
        let Some(t) = topic.next() else { return false };
        if p == WILDCARD {
            if pattern.peek().is_none() {
                // The last `*`: it has taken one segment, it takes the rest.
                return true;
            }
        } else if p != t || has_wildcard(p) {
            return false;
        }
    }
    // The pattern is used up: the topic must be too.
    topic.next().is_none()
}

/// Topic patterns a connection may use (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// Every ordinary topic (`*`).
    pub fn all() -> Self {
        Patterns(vec![WILDCARD.into()])
    }
    /// No topic.
    pub fn none() -> Self {
        Patterns(Vec::new())
    }
    /// These patterns, unchecked: one that [`validate_pattern`] refuses
    /// matches nothing (see [`Patterns::parse`] to refuse it instead).
    pub fn new(patterns: Vec<String>) -> Self {
        Patterns(patterns)
    }
    /// These patterns, each checked with [`validate_pattern`].
    pub fn parse(patterns: Vec<String>) -> Result<Self, PatternError> {
        patterns.iter().try_for_each(|p| validate_pattern(p))?;
        Ok(Patterns(patterns))
    }
    /// Whether `topic` matches one of them. A reserved (`$`) topic is
    /// matched only by a pattern that itself starts with `$sys.`: `*` grants
    /// every ordinary topic, never the server's own.
    pub fn allows(&self, topic: &str) -> bool {
        let reserved = is_reserved(topic);
        self.0.iter().any(|p| (!reserved || p.starts_with(SYS_PREFIX)) && pattern_matches(p, topic))
    }
    /// The patterns, as given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl Extend<String> for Patterns {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules() {
        assert!(validate_topic("news", 128).is_ok());
        assert!(validate_topic("a-b_c.d:e/f9", 128).is_ok());
        assert!(validate_topic("$sys.stats", 128).is_ok());
        assert_eq!(validate_topic("", 128), Err(TopicError::Empty));
        assert_eq!(validate_topic("abcd", 3), Err(TopicError::TooLong(3)));
        assert_eq!(validate_topic(&"a".repeat(256), 1000), Err(TopicError::TooLong(MAX_TOPIC_LEN)));
        assert_eq!(validate_topic("a b", 128), Err(TopicError::BadChar(' ')));
        assert_eq!(validate_topic("a*", 128), Err(TopicError::BadChar('*')));
        assert_eq!(validate_topic("$other", 128), Err(TopicError::Reserved));
        assert_eq!(validate_topic("$sys.", 128), Err(TopicError::Reserved));
        assert!(is_reserved("$sys.stats"));
        assert!(!is_reserved("sys.stats"));
    }

    /// The bug this module fixes: a `*` inside a segment matched across the
    /// segment's end (`user.42*` granted `user.420`). Such a pattern is now
    /// refused, and matches nothing if it gets through.
    #[test]
    fn partial_wildcard_is_refused_and_matches_nothing() {
        assert_eq!(validate_pattern("user.42*"), Err(PatternError::PartialWildcard("42*".into())));
        assert!(validate_pattern("a*c").is_err());
        assert!(validate_pattern("$*").is_err());
        assert!(validate_pattern("**").is_err());
        assert_eq!(validate_pattern(""), Err(PatternError::Empty));
        assert!(!pattern_matches("user.42*", "user.420"));
        assert!(!pattern_matches("user.42*", "user.42"));
        assert!(!pattern_matches("a*c", "abbbc"));
        assert!(!Patterns::new(vec!["user.42*".into()]).allows("user.420"));
        assert!(Patterns::parse(vec!["user.*".into(), "user.42*".into()]).is_err());
        assert!(PatternError::PartialWildcard("42*".into()).to_string().contains("whole segment"));
    }

    #[test]
    fn patterns_match_whole_segments() {
        // Valid patterns.
        for p in ["*", "news", "news.*", "user.*.inbox", "*.eu", "$sys.*", "$sys.stats", "a.*.*"] {
            assert_eq!(validate_pattern(p), Ok(()), "{p}");
        }
        // `*` alone: every name.
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("*", "news.eu.fr"));
        // A last `*`: one or more segments.
        assert!(pattern_matches("news.*", "news.eu"));
        assert!(pattern_matches("news.*", "news.eu.fr"));
        assert!(!pattern_matches("news.*", "news"));
        assert!(!pattern_matches("news.*", "newsy.eu"));
        assert!(!pattern_matches("user.42.*", "user.420.x"));
        // A `*` before the end: exactly one segment.
        assert!(pattern_matches("user.*.inbox", "user.42.inbox"));
        assert!(!pattern_matches("user.*.inbox", "user.42.x.inbox"));
        assert!(!pattern_matches("user.*.inbox", "user.inbox"));
        assert!(pattern_matches("*.eu", "prices.eu"));
        assert!(!pattern_matches("*.eu", "prices.x.eu"));
        assert!(pattern_matches("a.*.*", "a.b.c.d"));
        assert!(!pattern_matches("a.*.*", "a.b"));
        // Literals: the whole name.
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exact2"));
        assert!(!pattern_matches("exact", "exact.x"));
        assert!(!pattern_matches("user.42", "user.420"));
        // Other separators (`:`, `/`) are characters of a segment.
        assert!(!pattern_matches("a:*", "a:b"));
        assert!(pattern_matches("a:b.*", "a:b.c/d"));
    }

    /// With a secret, `*` grants ordinary topics only: a `$sys.` topic needs a
    /// pattern that names it.
    #[test]
    fn star_does_not_grant_reserved_topics() {
        let star = Patterns::all();
        assert!(star.allows("news"));
        assert!(!star.allows("$sys.stats"));
        assert!(Patterns::new(vec!["$sys.*".into()]).allows("$sys.stats"));
        assert!(Patterns::new(vec!["$sys.stats".into()]).allows("$sys.stats"));
        assert!(!Patterns::new(vec!["$*".into()]).allows("$sys.stats"));
        assert!(!Patterns::none().allows("news"));
    }
}
