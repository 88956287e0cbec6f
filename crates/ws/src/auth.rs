//! Topic names, permissions, and the JWT (HS256) check on the upgrade.
//!
//! # Topic rules
//!
//! A topic name is 1 to `max_topic_len` bytes (default 128, never more than
//! 255) of ASCII letters, digits and `_ - . : /`. Names starting with `$` are
//! reserved: `$sys.` topics are published by the server itself (`$sys.stats`);
//! clients may subscribe to them when permitted but never publish to them, and
//! any other `$` name is refused.
//!
//! # Tokens
//!
//! With a secret configured, every upgrade must carry a JWT signed with HS256,
//! either as `Authorization: Bearer <token>` or as the `token` query parameter
//! (browsers cannot set headers on a WebSocket). A missing, malformed, wrongly
//! signed, expired (`exp`) or not-yet-valid (`nbf`) token is answered `401`
//! before the upgrade. Its claims say what the connection may do:
//!
//! ```json
//! {"sub": "dashboard-7", "exp": 1893456000, "subscribe": ["prices.*", "$sys.*"], "publish": ["chat.room1"]}
//! ```
//!
//! A pattern is a topic name in which `*` matches any run of characters
//! (including dots); `"*"` alone matches every topic. An absent claim grants
//! nothing. With no secret configured, connections are anonymous: they may
//! subscribe to any topic and publish to none.
//!
//! The verifier is written here on `hmac` + `sha2` rather than taken from a JWT
//! crate: HS256 is the only algorithm we accept, and the JWT crates bring RSA
//! and elliptic-curve stacks (or a C crypto library) that this check never uses.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the topics only the server publishes to.
pub const SYS_PREFIX: &str = "$sys.";

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

/// Checks a topic name against the rules (see the module docs). `$sys.` names
/// pass: whether the caller may publish to them is a separate check
/// ([`is_reserved`]).
pub fn validate_topic(name: &str, max_len: usize) -> Result<(), TopicError> {
    let max_len = max_len.min(255);
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
    match body.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))) {
        Some(c) => Err(TopicError::BadChar(c)),
        None => Ok(()),
    }
}

/// Whether only the server may publish to `name`.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with('$')
}

/// Whether `topic` matches `pattern` (`*` matches any run of characters).
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), topic.as_bytes());
    // Iterative glob with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Topic patterns a connection may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// Every topic.
    pub fn all() -> Self {
        Patterns(vec!["*".into()])
    }
    /// No topic.
    pub fn none() -> Self {
        Patterns(Vec::new())
    }
    /// These patterns.
    pub fn new(patterns: Vec<String>) -> Self {
        Patterns(patterns)
    }
    /// Whether `topic` matches one of them. A reserved (`$`) topic is
    /// matched only by a pattern that itself starts with `$sys.`: `*` grants
    /// every ordinary topic, never the server's own.
    pub fn allows(&self, topic: &str) -> bool {
        let reserved = is_reserved(topic);
        self.0.iter().any(|p| (!reserved || p.starts_with(SYS_PREFIX)) && pattern_matches(p, topic))
    }
}

/// What a connection may do, from its token (or anonymous).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// The token's `sub`, if any: logs, and the per-subject limits.
    pub subject: Option<String>,
    /// Topics it may subscribe to.
    pub subscribe: Patterns,
    /// Topics it may publish to (never `$` topics, whatever the patterns say).
    pub publish: Patterns,
    /// The token's `exp` (seconds since the Unix epoch): the connection is
    /// closed with 4002 then (plus the leeway), unless a `refresh` replaces
    /// the token. `None`: the rights do not expire.
    pub expires: Option<u64>,
    /// Topics the connection is subscribed to when it starts (the token's
    /// `channels` claim), with no round trip. Also granted in `subscribe`.
    pub channels: Vec<String>,
}

impl Permissions {
    /// An anonymous connection (a server without a secret): subscribe
    /// anywhere, `$sys.` topics included, publish nowhere.
    pub fn anonymous() -> Self {
        Permissions {
            subject: None,
            subscribe: Patterns::new(vec!["*".into(), format!("{SYS_PREFIX}*")]),
            publish: Patterns::none(),
            expires: None,
            channels: Vec::new(),
        }
    }
}

/// The claims we read from a token.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default)]
    pub exp: Option<u64>,
    /// Not before, seconds since the Unix epoch.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Subscribe patterns.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Publish patterns.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Audience: one string or a list (checked when the server names one).
    #[serde(default)]
    pub aud: Option<Audience>,
    /// Issuer (checked when the server names one).
    #[serde(default)]
    pub iss: Option<String>,
    /// Topics subscribed at connect (exact names, not patterns).
    #[serde(default)]
    pub channels: Vec<String>,
}

/// The `aud` claim: one audience or several.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(v) => v.iter().any(|a| a == name),
        }
    }
}

impl Claims {
    /// The permissions they grant.
    pub fn permissions(self) -> Permissions {
        let mut subscribe = self.subscribe;
        // A granted channel may be subscribed to again after a leave. A name
        // with `*` is no topic: it would never be joined, and must not
        // widen `subscribe` either.
        subscribe.extend(self.channels.iter().filter(|c| !c.contains('*')).cloned());
        Permissions {
            subject: self.sub,
            subscribe: Patterns(subscribe),
            publish: Patterns(self.publish),
            expires: self.exp,
            channels: self.channels,
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token on a server that requires one.
    Missing,
    /// Not three base64url parts of JSON.
    Malformed,
    /// `alg` is not `HS256`.
    Algorithm,
    /// The signature does not match.
    Signature,
    /// Past its `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// Its `kid` names no configured key, and there is no default key.
    UnknownKey,
    /// The server names an audience and `aud` does not contain it.
    Audience,
    /// The server names an issuer and `iss` is not it.
    Issuer,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "missing bearer token",
            AuthError::Malformed => "malformed token",
            AuthError::Algorithm => "token algorithm is not HS256",
            AuthError::Signature => "bad token signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::UnknownKey => "token key id unknown",
            AuthError::Audience => "token audience not accepted",
            AuthError::Issuer => "token issuer not accepted",
        })
    }
}

impl std::error::Error for AuthError {}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, AuthError> {
    data_encoding::BASE64URL_NOPAD
        .decode(s.trim_end_matches('=').as_bytes())
        .map_err(|_| AuthError::Malformed)
}

/// Verifies an HS256 JWT and returns its claims. `now` is seconds since the
/// Unix epoch. No leeway, no audience or issuer check, one key: see
/// [`crate::token::Verifier`] for those.
pub fn verify_hs256(token: &str, secret: &[u8], now: u64) -> Result<Claims, AuthError> {
    verify_with(token, |_| Some(secret), now, 0)
}

/// Verifies an HS256 JWT with the key `key_for` picks by the header's `kid`,
/// and checks `exp` and `nbf` with `leeway` seconds of tolerance.
pub(crate) fn verify_with<'k>(
    token: &str,
    key_for: impl FnOnce(Option<&str>) -> Option<&'k [u8]>,
    now: u64,
    leeway: u64,
) -> Result<Claims, AuthError> {
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| AuthError::Malformed)?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm);
    }
    let secret = key_for(header.kid.as_deref()).ok_or(AuthError::UnknownKey)?;
    let sig = b64(s)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
    let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| AuthError::Malformed)?;
    if claims.exp.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err(AuthError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(AuthError::NotYetValid);
    }
    Ok(claims)
}

/// Signs `claims` (a JSON object) as an HS256 JWT: for tests, examples, and
/// operators minting tokens.
pub fn sign_hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    let enc = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = enc(claims.to_string().as_bytes());
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("{head}.{body}.{}", enc(&mac.finalize().into_bytes()))
}

/// Compares two secrets in time independent of where they differ (`subtle`'s
/// `ConstantTimeEq`; only the lengths, which are not secret, may end it early).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topic_rules() {
        assert!(validate_topic("news", 128).is_ok());
        assert!(validate_topic("a-b_c.d:e/f9", 128).is_ok());
        assert!(validate_topic("$sys.stats", 128).is_ok());
        assert_eq!(validate_topic("", 128), Err(TopicError::Empty));
        assert_eq!(validate_topic("abcd", 3), Err(TopicError::TooLong(3)));
        assert_eq!(validate_topic("a b", 128), Err(TopicError::BadChar(' ')));
        assert_eq!(validate_topic("a*", 128), Err(TopicError::BadChar('*')));
        assert_eq!(validate_topic("$other", 128), Err(TopicError::Reserved));
        assert_eq!(validate_topic("$sys.", 128), Err(TopicError::Reserved));
        assert!(is_reserved("$sys.stats"));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("news.*", "news.eu.fr"));
        assert!(!pattern_matches("news.*", "news"));
        assert!(pattern_matches("a*c", "abbbc"));
        assert!(!pattern_matches("a*c", "abbbd"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exact2"));
    }

    #[test]
    fn jwt_round_trip_and_failures() {
        let t = sign_hs256(&json!({"sub": "u", "exp": 100, "subscribe": ["a.*"], "publish": []}), b"k");
        let c = verify_hs256(&t, b"k", 50).unwrap();
        assert_eq!(c.sub.as_deref(), Some("u"));
        assert!(c.clone().permissions().subscribe.allows("a.b"));
        assert_eq!(verify_hs256(&t, b"other", 50), Err(AuthError::Signature));
        assert_eq!(verify_hs256(&t, b"k", 100), Err(AuthError::Expired));
        assert_eq!(verify_hs256("abc", b"k", 0), Err(AuthError::Malformed));
        let t2 = sign_hs256(&json!({"nbf": 10}), b"k");
        assert_eq!(verify_hs256(&t2, b"k", 5), Err(AuthError::NotYetValid));
        // alg=none is refused even with an empty signature.
        let none = format!(
            "{}.{}.",
            data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#),
            data_encoding::BASE64URL_NOPAD.encode(b"{}")
        );
        assert_eq!(verify_hs256(&none, b"k", 0), Err(AuthError::Algorithm));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }

    /// With a secret, `*` grants ordinary topics only: a `$sys.` topic needs a
    /// pattern that names it (before, `*` matched `$sys.stats` too).
    #[test]
    fn star_does_not_grant_reserved_topics() {
        let star = Patterns::new(vec!["*".into()]);
        assert!(star.allows("news"));
        assert!(!star.allows("$sys.stats"));
        assert!(Patterns::new(vec!["$sys.*".into()]).allows("$sys.stats"));
        assert!(Patterns::new(vec!["$sys.stats".into()]).allows("$sys.stats"));
        assert!(!Patterns::new(vec!["$*".into()]).allows("$sys.stats"));
        // Open mode (no secret) keeps every topic readable, `$sys.` included.
        assert!(Permissions::anonymous().subscribe.allows("$sys.stats"));
    }
}
