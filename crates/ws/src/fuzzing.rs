//! Entry points for the fuzz targets in `fuzz/` (hidden: not a stable API).
//!
//! The inbound path of a connection, without a socket: [`RpcHarness`] holds a
//! real JSON-RPC session on a real engine (a [`Hub`]) and feeds it the bytes of
//! one text or binary frame, as a connection does. Topic validation and token
//! verification are public already ([`crate::validate_topic`],
//! [`crate::verify_hs256`]); the checks on their outputs are here so that the
//! regression tests of the normal suite run the very same assertions as the
//! fuzzer.

use std::sync::OnceLock;

/// The `refresh`/token path (fuzz target `refresh`).
#[path = "fuzzing_refresh.rs"]
pub mod refresh;

use fanout_core::{Engine, Hub};
use serde_json::Value;

use crate::auth::Permissions;
use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::rpc::{Session, MAX_BATCH};
use crate::topic::Patterns;
use crate::WsConfig;

/// Runs a session call on the hub, which answers without waiting (its async
/// engine calls are the sync ones).
fn now<R>(f: impl std::future::Future<Output = R>) -> R {
    futures_util::FutureExt::now_or_never(Box::pin(f)).expect("the hub answers without waiting")
}

/// One gateway per process: the fuzzer calls the harness millions of times.
fn gateway() -> &'static Gateway<Hub<Frame>> {
    static GW: OnceLock<Gateway<Hub<Frame>>> = OnceLock::new();
    GW.get_or_init(|| {
        // No rate limits: the fuzzer sends far more than a client may, and
        // every input should reach the dispatcher.
        let cfg = WsConfig {
            max_subscriptions: 8,
            rate_limit: crate::RateLimit { per_second: 0.0, ..crate::RateLimit::default() },
            costly_rate_limit: crate::KeyedRate { per_second: 0.0, burst: 0 },
            max_connections: 0,
            max_connections_per_ip: 0,
            max_topics: 0,
            ..WsConfig::default()
        };
        Gateway::new(Hub::new(), cfg).expect("default settings are valid")
    })
}

/// A JSON-RPC session of one connection, on a process-wide gateway.
pub struct RpcHarness {
    session: Session<Hub<Frame>>,
    /// Keeps the engine subscriber (and so its id) alive.
    _sub: <Hub<Frame> as Engine<Frame>>::Subscriber,
}

impl RpcHarness {
    /// A session that may subscribe to anything and publish to `fuzz.*` (so that
    /// the publish path runs too).
    pub fn new() -> Self {
        let gw = gateway().clone();
        let sub = gw.inner.engine.subscribe().expect("the fuzz hub is never shut down");
        let perms = Permissions {
            subject: Some("fuzz".into()),
            subscribe: Patterns::all(),
            publish: Patterns::new(vec!["fuzz.*".into()]),
            expires: None,
            channels: Vec::new(),
        };
        let slot = gw.inner.limiter.try_acquire([127, 0, 0, 1].into()).expect("the fuzz gateway has no caps");
        let mut session = Session::new(gw, sub.id(), perms, slot);
        now(session.join_channels());
        RpcHarness { session, _sub: sub }
    }

    /// Handles one text frame; checks the reply (see [`check_reply`]) and returns it.
    pub fn text(&mut self, text: &str) -> Option<String> {
        let reply = now(self.session.handle_text(text));
        if let Some(r) = &reply {
            check_reply(text, r);
        }
        self.check_state();
        reply
    }

    /// Handles one binary frame (a binary publish); checks the reply.
    pub fn binary(&mut self, data: &[u8]) -> Option<String> {
        let reply = now(self.session.handle_binary(data));
        if let Some(r) = &reply {
            check_reply("", r);
        }
        self.check_state();
        reply
    }

    fn check_state(&self) {
        let max = self.session.gateway.inner.config.max_subscriptions;
        assert!(self.session.topics.len() <= max, "more topics than max_subscriptions");
        let sole = self.session.sole_topic.clone();
        match (self.session.topics.len(), sole) {
            (1, Some(t)) => assert!(self.session.topics.contains(&t)),
            (1, None) => panic!("one topic but no sole topic"),
            (_, Some(_)) => panic!("sole topic set with {} topics", self.session.topics.len()),
            (_, None) => {}
        }
    }
}

impl Default for RpcHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks one reply: JSON; a response object (or, for a batch, an array of 1 to
/// `MAX_BATCH` of them) with `"jsonrpc":"2.0"`, an `id` that is null, a string
/// or a number, and exactly one of `result` and `error`.
pub fn check_reply(request: &str, reply: &str) {
    let v: Value = serde_json::from_str(reply)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply:?} to {request:?}"));
    match &v {
        Value::Array(items) => {
            assert!(!items.is_empty() && items.len() <= MAX_BATCH, "batch reply of {} items", items.len());
            items.iter().for_each(|i| check_response(i, reply));
        }
        other => check_response(other, reply),
    }
}

fn check_response(v: &Value, reply: &str) {
    let o = v.as_object().unwrap_or_else(|| panic!("response is not an object: {reply}"));
    assert_eq!(o.get("jsonrpc"), Some(&Value::String("2.0".into())), "{reply}");
    assert!(
        matches!(o.get("id"), Some(Value::Null | Value::String(_) | Value::Number(_))),
        "bad id in {reply}"
    );
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            assert!(e.get("code").and_then(Value::as_i64).is_some(), "error without code: {reply}");
            assert!(e.get("message").and_then(Value::as_str).is_some(), "error without message: {reply}");
        }
        _ => panic!("needs exactly one of result and error: {reply}"),
    }
}

/// Checks [`crate::validate_topic`] against its rules, written out plainly.
pub fn check_topic(name: &str, max_len: usize) {
    let r = crate::validate_topic(name, max_len);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/');
    let body = name.strip_prefix(crate::topic::SYS_PREFIX).unwrap_or(name);
    let expect_ok = !name.is_empty()
        && name.len() <= max_len.min(255)
        && !body.is_empty()
        && (!name.starts_with('$') || name.starts_with(crate::topic::SYS_PREFIX))
        && body.chars().all(allowed);
    assert_eq!(r.is_ok(), expect_ok, "validate_topic({name:?}, {max_len}) = {r:?}");
    // A valid name is matched by `*` and by itself as a pattern.
    if r.is_ok() {
        assert!(crate::topic::pattern_matches("*", name));
        assert!(crate::topic::pattern_matches(name, name));
        assert_eq!(crate::topic::validate_pattern(name), Ok(()), "a name is a pattern of itself");
    }
}

/// Runs [`crate::verify_hs256`] on `token`, and checks that a token we sign over
/// the same bytes (when they are a JSON object) verifies with the same secret
/// and not with another one.
pub fn check_token(token: &str, secret: &[u8], now: u64) {
    let _ = crate::verify_hs256(token, secret, now);
    if secret.is_empty() {
        return;
    }
    if let Ok(claims @ Value::Object(_)) = serde_json::from_str::<Value>(token) {
        let signed = crate::sign_hs256(&claims, secret);
        // Claims that are not ours (ill-typed `exp`, …) are refused as malformed;
        // well-typed ones verify unless expired or not yet valid.
        match crate::verify_hs256(&signed, secret, now) {
            Ok(_) => {
                let mut other = secret.to_vec();
                other[0] ^= 1;
                assert!(crate::verify_hs256(&signed, &other, now).is_err(), "verified with a wrong secret");
            }
            Err(e) => assert!(
                matches!(
                    e,
                    crate::auth::AuthError::Malformed
                        | crate::auth::AuthError::Expired
                        | crate::auth::AuthError::NotYetValid
                        | crate::auth::AuthError::Pattern
                ),
                "own token refused: {e}"
            ),
        }
    }
}
