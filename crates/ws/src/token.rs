//! Tokens for the whole life of a connection: which key checks a token, how
//! much clock skew is tolerated, which audience and issuer are accepted, when
//! a connection's rights end, and what a `refresh` changes.
//!
//! # Keys
//!
//! [`Verifier`] holds the default key (`jwt_secret`, for tokens without a
//! `kid` header, or with a `kid` it does not know) and any number of keys by
//! `kid` (`jwt_keys`). To rotate a secret without dropping anyone: add the new
//! key under a new `kid`, have the issuer sign with it, and remove the old
//! key once the last token signed with it has expired. Every key is at least
//! [`MIN_SECRET_LEN`] bytes (HS256 with a shorter key is guessable offline
//! from one token).
//!
//! # Lifetime
//!
//! A token is checked at the upgrade and its `exp` becomes the connection's
//! deadline (`deadline`): at `exp + leeway` the connection is closed with
//! 4002 (`token expired`: get a new token, reconnect), unless the client sent
//! a `refresh` with a newer token first. A refresh verifies the new token as
//! the upgrade does, must carry the same `sub` (a connection belongs to one
//! subject), and its permissions *replace* the old ones: subscriptions the new
//! token no longer allows are left, and the reply names them.
//!
//! The leeway (`jwt_leeway`) applies to `exp` and `nbf` alike, at the upgrade,
//! at a refresh, and to the deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::{verify_with, AuthError, Claims};
use crate::config::WsConfig;

/// Shortest secret accepted for HS256 (32 bytes: the size of the hash).
pub const MIN_SECRET_LEN: usize = 32;

/// Checks tokens against the configured keys and rules (see the module docs).
#[derive(Clone)]
pub struct Verifier {
    default_key: Option<Vec<u8>>,
    keys: Vec<(String, Vec<u8>)>,
    leeway: u64,
    audience: Option<String>,
    issuer: Option<String>,
}

impl Verifier {
    /// The verifier `cfg` asks for; `None` when no key is configured (open
    /// mode: anonymous connections).
    pub fn from_config(cfg: &WsConfig) -> Option<Verifier> {
        if cfg.jwt_secret.is_none() && cfg.jwt_keys.is_empty() {
            return None;
        }
        Some(Verifier {
            default_key: cfg.jwt_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            keys: cfg.jwt_keys.iter().map(|(kid, s)| (kid.clone(), s.as_bytes().to_vec())).collect(),
            leeway: cfg.jwt_leeway.as_secs(),
            audience: cfg.jwt_audience.clone(),
            issuer: cfg.jwt_issuer.clone(),
        })
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let key_for = |kid: Option<&str>| {
            kid.and_then(|kid| self.keys.iter().find(|(k, _)| k == kid))
                .map(|(_, key)| key.as_slice())
                .or(self.default_key.as_deref())
        };
        let claims = verify_with(token, key_for, now, self.leeway)?;
        if let Some(aud) = &self.audience {
            if !claims.aud.as_ref().is_some_and(|a| a.contains(aud)) {
                return Err(AuthError::Audience);
            }
        }
        if let Some(iss) = &self.issuer {
            if claims.iss.as_deref() != Some(iss.as_str()) {
                return Err(AuthError::Issuer);
            }
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instant at which a token with this `exp` stops granting anything:
/// `exp + leeway`, on tokio's clock. A deadline past what the clock can
/// represent is taken as 100 years from now.
pub(crate) fn deadline(exp: u64, leeway: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    // `exp + leeway − now`, not `max(exp − now, 0) + leeway`: a token already
    // past `exp` (inside the leeway) keeps only what is left of the leeway,
    // so a refresh with it cannot stretch its rights to `exp + 2 × leeway`.
    let end = Duration::from_secs(exp).saturating_add(leeway);
    let left = end.saturating_sub(Duration::from_secs(unix_now()));
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(left.min(far)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #[tokio::test(start_paused = true)]
    async fn a_token_past_exp_keeps_only_the_rest_of_its_leeway() {
        use std::time::Duration;
        let leeway = Duration::from_secs(60);
        let now = tokio::time::Instant::now();
        let d = super::deadline(super::unix_now() - 50, leeway);
        // exp was 50 s ago: 10 s of leeway are left (was 60: exp + 2 × leeway − 50).
        let left = d.duration_since(now);
        assert!(left <= Duration::from_secs(10) && left >= Duration::from_secs(9), "{left:?}");
        let d = super::deadline(super::unix_now() + 100, leeway);
        let left = d.duration_since(now);
        assert!(left <= Duration::from_secs(160) && left >= Duration::from_secs(159), "{left:?}");
    }

    use super::*;
    use crate::auth::sign_hs256;
    use serde_json::json;

    const OLD: &str = "an-old-secret-of-at-least-32-bytes!!";
    const NEW: &str = "a-new-secret-of-at-least-32-bytes!!!";

    fn verifier(cfg: WsConfig) -> Verifier {
        Verifier::from_config(&cfg).unwrap()
    }

    fn sign_kid(claims: serde_json::Value, kid: &str, key: &str) -> String {
        use hmac::{Hmac, Mac};
        let enc = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
        let head = enc(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#).as_bytes());
        let body = enc(claims.to_string().as_bytes());
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", enc(&mac.finalize().into_bytes()))
    }

    #[test]
    fn keys_by_kid_for_rotation() {
        let v = verifier(WsConfig {
            jwt_secret: Some(OLD.into()),
            jwt_keys: vec![("2".into(), NEW.into())],
            ..WsConfig::default()
        });
        // Old tokens (no kid) and new ones (kid 2) both verify.
        assert!(v.verify(&sign_hs256(&json!({"sub": "a"}), OLD.as_bytes()), 0).is_ok());
        assert!(v.verify(&sign_kid(json!({"sub": "a"}), "2", NEW), 0).is_ok());
        // kid 2 signed with the old key: the named key decides, so it fails.
        assert_eq!(v.verify(&sign_kid(json!({}), "2", OLD), 0), Err(AuthError::Signature));
        // Only kid keys: a token without kid has no key.
        let only = verifier(WsConfig { jwt_keys: vec![("2".into(), NEW.into())], ..WsConfig::default() });
        assert_eq!(only.verify(&sign_hs256(&json!({}), NEW.as_bytes()), 0), Err(AuthError::UnknownKey));
    }

    #[test]
    fn leeway_audience_issuer() {
        let v = verifier(WsConfig {
            jwt_secret: Some(OLD.into()),
            jwt_leeway: Duration::from_secs(30),
            jwt_audience: Some("fanout".into()),
            jwt_issuer: Some("auth.example".into()),
            ..WsConfig::default()
        });
        let t = |c| sign_hs256(&c, OLD.as_bytes());
        let ok = json!({"exp": 100, "nbf": 50, "aud": ["x", "fanout"], "iss": "auth.example"});
        assert!(v.verify(&t(ok.clone()), 129).is_ok(), "within the leeway after exp");
        assert_eq!(v.verify(&t(ok.clone()), 130), Err(AuthError::Expired));
        assert!(v.verify(&t(ok.clone()), 20).is_ok(), "within the leeway before nbf");
        assert_eq!(v.verify(&t(ok), 19), Err(AuthError::NotYetValid));
        assert_eq!(v.verify(&t(json!({"aud": "other", "iss": "auth.example"})), 0), Err(AuthError::Audience));
        assert_eq!(v.verify(&t(json!({"iss": "auth.example"})), 0), Err(AuthError::Audience));
        assert_eq!(v.verify(&t(json!({"aud": "fanout", "iss": "evil"})), 0), Err(AuthError::Issuer));
        assert!(v.verify(&t(json!({"aud": "fanout", "iss": "auth.example"})), 0).is_ok());
    }

    #[test]
    fn deadlines_never_overflow() {
        let d = deadline(u64::MAX, Duration::MAX);
        assert!(d > tokio::time::Instant::now());
        assert!(deadline(0, Duration::ZERO) <= tokio::time::Instant::now());
    }
}
