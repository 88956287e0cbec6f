//! The `refresh` path under fuzzing: a session on a gateway with keys
//! (a default secret, a second key by `kid`, an audience, a leeway) fed
//! `refresh` calls carrying fuzzed tokens, and the invariants that must hold
//! whatever the token:
//!
//! - every reply is a well-formed JSON-RPC response ([`check_reply`](crate::fuzzing::check_reply));
//! - a refresh that succeeds carried a token the gateway's verifier accepts,
//!   of the session's own subject; the session's permissions are then exactly
//!   the token's, its deadline is the token's `exp`, and every topic it is
//!   still subscribed to is one the new token allows;
//! - a refresh that fails (`-32005`, or `-32602` for bad params) changes
//!   nothing: same permissions, same deadline, same topics.
//!
//! Input: the first byte picks how the rest becomes a token (as is; or, when
//! it is a JSON object, signed as claims with the default key, with the `kid`
//! key, or with a key the gateway does not have).

use std::sync::OnceLock;

use fanout_core::{Engine, Hub};
use serde_json::{json, Value};

use crate::auth::sign_hs256;
use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::rpc::Session;
use crate::WsConfig;

/// The gateway's default key.
pub const SECRET: &str = "fuzz-refresh-secret-32-bytes-!!!";
/// The key of `kid` [`KID`].
pub const KID_SECRET: &str = "fuzz-refresh-kid-secret-32-bytes";
/// The second key's id.
pub const KID: &str = "k2";
/// The subject of the harness's session.
pub const SUBJECT: &str = "fuzzer";

fn gateway() -> &'static Gateway<Hub<Frame>> {
    static GW: OnceLock<Gateway<Hub<Frame>>> = OnceLock::new();
    GW.get_or_init(|| {
        let cfg = WsConfig {
            jwt_secret: Some(SECRET.into()),
            jwt_keys: vec![(KID.into(), KID_SECRET.into())],
            jwt_audience: Some("fuzz".into()),
            jwt_leeway: std::time::Duration::from_secs(30),
            max_subscriptions: 8,
            rate_limit: crate::RateLimit { per_second: 0.0, ..crate::RateLimit::default() },
            costly_rate_limit: crate::KeyedRate { per_second: 0.0, burst: 0 },
            max_connections: 0,
            max_connections_per_ip: 0,
            max_connections_per_subject: 0,
            max_topics: 0,
            ..WsConfig::default()
        };
        Gateway::new(Hub::new(), cfg).expect("the fuzz settings are valid")
    })
}

/// Signs `claims` with `key`, with a `kid` header when given.
pub fn sign(claims: &Value, key: &str, kid: Option<&str>) -> String {
    match kid {
        None => sign_hs256(claims, key.as_bytes()),
        Some(kid) => {
            use hmac::{Hmac, Mac};
            let enc = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
            let head = enc(json!({"alg": "HS256", "kid": kid}).to_string().as_bytes());
            let body = enc(claims.to_string().as_bytes());
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
            mac.update(format!("{head}.{body}").as_bytes());
            format!("{head}.{body}.{}", enc(&mac.finalize().into_bytes()))
        }
    }
}

/// A session of subject [`SUBJECT`], subscribed to a few topics, on the
/// keyed gateway.
pub struct RefreshHarness {
    session: Session<Hub<Frame>>,
    _sub: <Hub<Frame> as Engine<Frame>>::Subscriber,
}

impl RefreshHarness {
    /// A session from a token granting `a.*` and `b.*`, subscribed to `a.1`
    /// and `b.1`.
    pub fn new() -> Self {
        let gw = gateway().clone();
        let sub = gw.inner.engine.subscribe().expect("the fuzz hub is never shut down");
        let claims = json!({"sub": SUBJECT, "aud": "fuzz", "subscribe": ["a.*", "b.*"]});
        let verifier = gw.inner.verifier.clone().expect("keys are configured");
        let perms = verifier.verify(&sign(&claims, SECRET, None), 0).expect("own token").permissions();
        let slot = gw.inner.limiter.try_acquire([127, 0, 0, 1].into()).expect("no caps");
        let mut session = Session::new(gw, sub.id(), perms, slot);
        super::now(session.join_channels());
        for t in ["a.1", "b.1"] {
            let r = super::now(session.handle_text(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "subscribe", "params": [t]}).to_string(),
            ));
            assert!(r.is_some_and(|r| r.contains("\"joined\":true")), "setup subscribe to {t}");
        }
        RefreshHarness { session, _sub: sub }
    }

    /// Turns fuzz input into a token (see the module docs) and refreshes with it.
    pub fn run(&mut self, data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else { return };
        let Ok(text) = std::str::from_utf8(rest) else { return };
        let token = match (mode % 4, serde_json::from_str::<Value>(text)) {
            (1, Ok(c @ Value::Object(_))) => sign(&c, SECRET, None),
            (2, Ok(c @ Value::Object(_))) => sign(&c, KID_SECRET, Some(KID)),
            (3, Ok(c @ Value::Object(_))) => sign(&c, "not-a-key-of-this-gateway-at-all", None),
            _ => text.to_string(),
        };
        self.refresh(&token);
    }

    /// One `refresh` call with `token`; checks the invariants of the module docs.
    pub fn refresh(&mut self, token: &str) -> Value {
        let before = (self.session.perms.clone(), self.session.expires, self.session.topics.clone());
        let req =
            json!({"jsonrpc": "2.0", "id": 1, "method": "refresh", "params": {"token": token}}).to_string();
        let reply = super::now(self.session.handle_text(&req)).expect("a call with an id is answered");
        super::check_reply(&req, &reply);
        let v: Value = serde_json::from_str(&reply).expect("checked");
        let now = crate::token::unix_now();
        let verified = self.session.gateway.inner.verifier.as_ref().expect("keys").verify(token, now);
        if v.get("result").is_some() {
            let claims = verified.expect("a refresh succeeded with a token the verifier refuses");
            assert_eq!(claims.sub.as_deref(), Some(SUBJECT), "a refresh changed the subject");
            let perms = claims.permissions();
            assert_eq!(v["result"]["expires"], json!(perms.expires));
            assert_eq!(self.session.perms, perms, "permissions are the new token's");
            assert_eq!(self.session.expires.is_some(), perms.expires.is_some());
            for t in &self.session.topics {
                assert!(self.session.perms.subscribe.allows(t), "still subscribed to {t}, not granted");
            }
        } else {
            let code = v["error"]["code"].as_i64();
            assert!(matches!(code, Some(-32005) | Some(-32602)), "refresh error {reply}");
            assert_eq!(
                (self.session.perms.clone(), self.session.expires, self.session.topics.clone()),
                before,
                "a refused refresh changed the session"
            );
            if code == Some(-32005) {
                assert!(
                    verified.map_or(true, |c| c.sub.as_deref() != Some(SUBJECT)),
                    "refused a valid token of the same subject: {reply}"
                );
            }
        }
        v
    }
}

impl Default for RefreshHarness {
    fn default() -> Self {
        Self::new()
    }
}
