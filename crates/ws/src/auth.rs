//! Permissions, and the JWT (HS256) check on the upgrade.
//!
//! Topic names and patterns have their rules in [`crate::topic`]; the items
//! that lived here before (`validate_topic`, `pattern_matches`, `Patterns`,
//! ...) are re-exported from it.
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
//! `subscribe` and `publish` are topic patterns (see [`crate::topic`]: `*` is
//! a whole segment; `"*"` alone matches every ordinary topic). A token with a
//! pattern that breaks the syntax (`user.42*`) is refused as a whole
//! ([`AuthError::Pattern`]). An absent claim grants nothing. With no secret
//! configured, connections are anonymous: they may subscribe to any topic and
//! publish to none.
//!
//! The verifier is written here on `hmac` + `sha2` rather than taken from a JWT
//! crate: HS256 is the only algorithm we accept, and the JWT crates bring RSA
//! and elliptic-curve stacks (or a C crypto library) that this check never uses.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::topic::{has_wildcard, validate_pattern};

type HmacSha256 = Hmac<Sha256>;

// The topic rules moved to `crate::topic`; these paths are kept so that code
// written against `fanout_ws::auth::*` still compiles.
/// Moved to [`crate::topic::is_reserved`] (this path is kept for compatibility).
pub use crate::topic::is_reserved;
/// Moved to [`crate::topic::pattern_matches`], which now matches whole
/// segments only (this path is kept for compatibility).
pub use crate::topic::pattern_matches;
/// Moved to [`crate::topic::validate_topic`] (this path is kept for compatibility).
pub use crate::topic::validate_topic;
/// Moved to [`crate::topic::Patterns`] (this path is kept for compatibility).
pub use crate::topic::Patterns;
/// Moved to [`crate::topic::TopicError`] (this path is kept for compatibility).
pub use crate::topic::TopicError;
/// Moved to [`crate::topic::SYS_PREFIX`] (this path is kept for compatibility).
pub use crate::topic::SYS_PREFIX;

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

    /// Whether the connection may publish to `topic`: a `publish` pattern
    /// matches it, and it is not a `$` topic (only the server publishes
    /// those, whatever the patterns say).
    pub fn may_publish(&self, topic: &str) -> bool {
        !is_reserved(topic) && self.publish.allows(topic)
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
        let mut subscribe = Patterns::new(self.subscribe);
        // A granted channel may be subscribed to again after a leave. A name
        // with `*` is no topic: it would never be joined, and must not
        // widen `subscribe` either.
        subscribe.extend(self.channels.iter().filter(|c| !has_wildcard(c)).cloned());
        Permissions {
            subject: self.sub,
            subscribe,
            publish: Patterns::new(self.publish),
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
    /// A `subscribe` or `publish` pattern breaks the pattern syntax
    /// ([`crate::topic::validate_pattern`]: `user.42*`, or an empty one).
    Pattern,
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
            AuthError::Pattern => {
                "token has an invalid topic pattern (empty, or a `*` that is not a whole segment)"
            }
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
    if claims.subscribe.iter().chain(&claims.publish).any(|p| validate_pattern(p).is_err()) {
        return Err(AuthError::Pattern);
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

    /// A token whose pattern puts `*` inside a segment is refused: before,
    /// `user.42*` verified and granted `user.420`.
    #[test]
    fn token_with_partial_wildcard_is_refused() {
        let t = sign_hs256(&json!({"sub": "u", "subscribe": ["user.42*"]}), b"k");
        assert_eq!(verify_hs256(&t, b"k", 0), Err(AuthError::Pattern));
        let t = sign_hs256(&json!({"sub": "u", "publish": ["ok.*", ""]}), b"k");
        assert_eq!(verify_hs256(&t, b"k", 0), Err(AuthError::Pattern));
        let t = sign_hs256(&json!({"sub": "u", "subscribe": ["user.42.*", "$sys.*"]}), b"k");
        let perms = verify_hs256(&t, b"k", 0).unwrap().permissions();
        assert!(perms.subscribe.allows("user.42.inbox"));
        assert!(!perms.subscribe.allows("user.420.inbox"));
        assert!(perms.subscribe.allows("$sys.stats"));
    }

    /// Open mode (no secret) keeps every topic readable, `$sys.` included,
    /// and grants no publish.
    #[test]
    fn anonymous_reads_everything_publishes_nothing() {
        let anon = Permissions::anonymous();
        assert!(anon.subscribe.allows("$sys.stats"));
        assert!(anon.subscribe.allows("a.b.c"));
        assert!(!anon.may_publish("a"));
    }

    /// `channels` are granted for `subscribe`, except a name with `*`.
    #[test]
    fn channels_widen_subscribe_but_not_with_wildcards() {
        let claims = Claims { channels: vec!["inbox.alice".into(), "x.*".into()], ..Claims::default() };
        let perms = claims.permissions();
        assert!(perms.subscribe.allows("inbox.alice"));
        assert!(!perms.subscribe.allows("x.y"));
    }

    /// Publishing needs a matching pattern and never reaches a `$` topic.
    #[test]
    fn may_publish_never_reserved() {
        let perms = Claims { publish: vec!["*".into(), "$sys.*".into()], ..Claims::default() }.permissions();
        assert!(perms.may_publish("news"));
        assert!(!perms.may_publish("$sys.stats"));
        assert!(!Permissions { publish: Patterns::none(), ..perms }.may_publish("news"));
    }
}
