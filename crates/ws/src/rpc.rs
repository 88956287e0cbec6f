//! The client protocol: JSON-RPC 2.0 requests over text frames.
//!
//! Methods: `subscribe {topic}`, `unsubscribe {topic}`, `publish {topic,
//! payload}`, `refresh {token}`, `ping`. Every call takes a token of the
//! connection's rate limit (a batch of `n` calls takes `n`); `subscribe`,
//! `unsubscribe` and `refresh` are also charged to the client's address and
//! token subject (`keyed_limit.rs`). Params may be given by name (an object) or by position
//! (`["news"]`, `["news", {"x": 1}]`). A request without `id` is a notification:
//! it is carried out and never answered, not even with an error. A batch (an
//! array of requests) is answered with an array of the responses to its
//! non-notifications. See `docs/protocol.md` for every message and code.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use fanout_core::{Engine, PublishReport, SubscriberId};
use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use std::time::Instant;

use crate::auth::Permissions;
use crate::frame::Frame;
use crate::gateway::Gateway;
use crate::limits::{Slot, TokenBucket, Verdict};
use crate::topic::validate_topic;

/// JSON-RPC error codes used by the gateway.
pub mod codes {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Missing or invalid params, including a topic name that breaks the rules.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The engine failed in an unexpected way.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The token does not allow this topic (or the topic is reserved).
    pub const PERMISSION_DENIED: i64 = -32001;
    /// The connection is subscribed to as many topics as it may be.
    pub const SUBSCRIPTION_LIMIT: i64 = -32002;
    /// Too many messages: this one was not processed.
    pub const RATE_LIMITED: i64 = -32003;
    /// The server is shutting down.
    pub const UNAVAILABLE: i64 = -32004;
    /// `refresh`: the token is refused (bad, expired, another subject, or the
    /// server uses no tokens); the connection keeps its current rights.
    pub const TOKEN_REFUSED: i64 = -32005;
    /// The server holds as many client-created topics as it may
    /// (`max_topics`): a join that would create another is refused.
    pub const TOPIC_LIMIT: i64 = -32006;
}

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;

/// A JSON-RPC error object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RpcError {
    /// Code (see [`codes`]).
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Details, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None }
    }
    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[derive(Serialize)]
struct Response<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RpcError>,
}

/// A method's result: a JSON value, or JSON text kept as it is.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Json(Value),
    Raw(Box<RawValue>),
}

pub(crate) fn ok_response(id: &Value, result: impl Serialize) -> String {
    serde_json::to_string(&Response { jsonrpc: "2.0", id, result: Some(result), error: None })
        .expect("responses serialise")
}

pub(crate) fn error_response(id: &Value, e: &RpcError) -> String {
    serde_json::to_string(&Response::<()> { jsonrpc: "2.0", id, result: None, error: Some(e) })
        .expect("responses serialise")
}

/// What a publish did, as the client and `POST /api/publish` see it.
///
/// The delivery counts describe the messages this call *delivered*
/// (`walked`): under concurrent publishers to one topic, one call may deliver
/// several callers' messages in one pass, and a call whose message went out
/// with another call's pass returns at once with `walked` 0 and no counts
/// (see the engine's `PublishReport`). `seq` is always this call's own.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishResult {
    /// Deliveries attempted (subscribers offered a message), over the
    /// `walked` messages.
    pub recipients: u64,
    /// Of those, queued for delivery.
    pub delivered: u64,
    /// Of those, not queued (full queues, evictions).
    pub dropped: u64,
    /// Sequence number given to the message (0 when the topic keeps no
    /// history and nobody was subscribed: no number is spent).
    pub seq: u64,
    /// Messages this call delivered, its own and other publishers'.
    #[serde(default)]
    pub walked: u64,
}

impl From<PublishReport> for PublishResult {
    fn from(r: PublishReport) -> Self {
        PublishResult {
            recipients: r.recipients,
            delivered: r.delivered,
            dropped: r.dropped.total(),
            seq: r.seq,
            walked: r.walked,
        }
    }
}

/// `Some(value)` when the member is present, even if it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default)]
    jsonrpc: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TopicParams<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
}

#[derive(Deserialize)]
struct TokenParams<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PublishParams<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
    /// Conflation key (see `Gateway::publish_json_async`).
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
}

/// Longest conflation key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Checks a conflation key: 1 to [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("invalid key: must be 1 to {MAX_KEY_LEN} bytes"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PublishParamsPos<'a>(#[serde(borrow)] Cow<'a, str>, #[serde(borrow)] &'a RawValue);

fn is_array(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('[')
}

fn topic_param(params: Option<&RawValue>) -> Result<Cow<'_, str>, RpcError> {
    let bad = || RpcError::new(codes::INVALID_PARAMS, "invalid params: expected {\"topic\": string}");
    let p = params.ok_or_else(bad)?;
    if is_array(p) {
        serde_json::from_str::<(Cow<str>,)>(p.get()).map(|t| t.0).map_err(|_| bad())
    } else {
        serde_json::from_str::<TopicParams>(p.get()).map(|t| t.topic).map_err(|_| bad())
    }
}

fn publish_params(params: Option<&RawValue>) -> Result<PublishParams<'_>, RpcError> {
    let bad = || {
        RpcError::new(
            codes::INVALID_PARAMS,
            "invalid params: expected {\"topic\": string, \"payload\": any, \"key\"?: string}",
        )
    };
    let p = params.ok_or_else(bad)?;
    let params = if is_array(p) {
        serde_json::from_str::<PublishParamsPos>(p.get())
            .map(|t| PublishParams { topic: t.0, payload: t.1, key: None })
            .map_err(|_| bad())?
    } else {
        serde_json::from_str::<PublishParams>(p.get()).map_err(|_| bad())?
    };
    if let Some(k) = &params.key {
        check_key(k).map_err(|e| RpcError::new(codes::INVALID_PARAMS, e))?;
    }
    Ok(params)
}

/// What the connection knows about itself: the state every request sees.
pub(crate) struct Session<E: Engine<Frame>> {
    pub(crate) gateway: Gateway<E>,
    pub(crate) id: SubscriberId,
    pub(crate) perms: Permissions,
    pub(crate) topics: HashSet<Arc<str>>,
    /// The one topic joined, if exactly one (named in lag notices).
    pub(crate) sole_topic: Option<Arc<str>>,
    /// The connection's rate limit, charged per call.
    bucket: TokenBucket,
    /// Set when the bucket says close (4100): the connection reads it after
    /// each frame.
    pub(crate) rate_close: bool,
    /// The connection's place under the connection caps (held for its life);
    /// its address key charges the costly calls.
    slot: Slot,
    /// When the token expires (its `exp` plus the leeway): the connection
    /// closes with 4002 then, unless a `refresh` moves it. `None`: never.
    pub(crate) expires: Option<tokio::time::Instant>,
}

impl<E: Engine<Frame>> Session<E> {
    /// The session of a new connection from `ip` with `perms`; its token's
    /// channels are joined by [`Session::join_channels`].
    pub(crate) fn new(gateway: Gateway<E>, id: SubscriberId, perms: Permissions, slot: Slot) -> Self {
        let cfg = &gateway.inner.config;
        let bucket = TokenBucket::new(cfg.rate_limit, Instant::now());
        let expires = perms.expires.map(|exp| crate::token::deadline(exp, cfg.jwt_leeway));
        Session {
            gateway,
            id,
            perms,
            topics: HashSet::new(),
            sole_topic: None,
            bucket,
            rate_close: false,
            slot,
            expires,
        }
    }

    /// Whether the token names `channels` to join.
    pub(crate) fn has_channels(&self) -> bool {
        !self.perms.channels.is_empty()
    }

    /// Joins the token's `channels`, as `subscribe` does: an engine that
    /// waits (a cluster node, for its broker subscription) has the topic's
    /// stream set up when this returns, so no message published after the
    /// connection opened is missed. A channel that breaks a rule or a limit
    /// is skipped, with a debug line: the client can still `subscribe` to it
    /// and learn why.
    pub(crate) async fn join_channels(&mut self) {
        let channels = std::mem::take(&mut self.perms.channels);
        for c in &channels {
            let joined = async {
                self.check_topic(c)?;
                self.join_from(c, fanout_core::JoinFrom::Now).await
            };
            if let Err(e) = joined.await {
                tracing::debug!(channel = %c, error = %e.message, "channel not joined");
            }
        }
        self.perms.channels = channels;
    }

    /// Charges `calls` to the connection's bucket; the `-32003` reply when it
    /// refuses (and `rate_close` set when it is time to close).
    fn charge(&mut self, calls: u32) -> Result<(), String> {
        match self.bucket.take(calls, Instant::now(), &self.gateway.inner.config.rate_limit) {
            Verdict::Allow => Ok(()),
            Verdict::Refuse => Err(self.rate_limited()),
            Verdict::Close => {
                self.rate_close = true;
                Err(self.rate_limited())
            }
        }
    }

    /// Charges a costly call to the client's address and token subject (see
    /// `keyed_limit.rs`).
    fn charge_costly(&self) -> Result<(), RpcError> {
        let subject = self.perms.subject.as_deref();
        self.gateway.inner.keyed.charge(self.slot.ip(), subject, Instant::now()).map_err(|scope| {
            RpcError::new(codes::RATE_LIMITED, format!("rate limit exceeded for this {}", scope.as_str()))
                .with_data(serde_json::json!({"scope": scope.as_str()}))
        })
    }

    /// Handles one text frame; the reply to send, if any. Each call in it
    /// takes a token of the rate limit (a batch of `n` takes `n`, or is
    /// refused whole).
    pub(crate) async fn handle_text(&mut self, text: &str) -> Option<String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            return self.handle_batch(text).await;
        }
        if let Err(reply) = self.charge(1) {
            return Some(reply);
        }
        self.handle_one(text).await
    }

    async fn handle_batch(&mut self, text: &str) -> Option<String> {
        let parsed = serde_json::from_str::<Vec<&RawValue>>(text);
        // Every call costs a token, so a batch is counted before any is
        // handled; a frame that is no batch at all, or a batch refused whole
        // (empty, too long), costs one.
        let calls = match &parsed {
            Ok(v) if (1..=MAX_BATCH).contains(&v.len()) => v.len() as u32,
            _ => 1,
        };
        if let Err(reply) = self.charge(calls) {
            return Some(reply);
        }
        let items: Vec<&RawValue> = match parsed {
            Ok(v) => v,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Some(self.error(&Value::Null, RpcError::new(codes::PARSE_ERROR, "parse error")))
            }
            Err(_) => {
                return Some(
                    self.error(&Value::Null, RpcError::new(codes::INVALID_REQUEST, "invalid request")),
                )
            }
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            let e = RpcError::new(codes::INVALID_REQUEST, format!("a batch holds 1 to {MAX_BATCH} requests"));
            return Some(self.error(&Value::Null, e));
        }
        let mut replies: Vec<String> = Vec::new();
        for r in &items {
            replies.extend(self.handle_one(r.get()).await);
        }
        if replies.is_empty() {
            return None;
        }
        Some(format!("[{}]", replies.join(",")))
    }

    fn error(&self, id: &Value, e: RpcError) -> String {
        self.gateway.inner.metrics.rpc_error();
        error_response(id, &e)
    }

    async fn handle_one(&mut self, text: &str) -> Option<String> {
        let req: RawRequest = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Some(self.error(&Value::Null, RpcError::new(codes::PARSE_ERROR, "parse error")))
            }
            Err(_) => {
                // Valid JSON but not a request object; answer with its id if we can find one.
                let id = serde_json::from_str::<IdOnly>(text).ok().and_then(|i| i.id).unwrap_or(Value::Null);
                let id = if valid_id(&id) { id } else { Value::Null };
                return Some(self.error(&id, RpcError::new(codes::INVALID_REQUEST, "invalid request")));
            }
        };
        let notification = req.id.is_none();
        let id = req.id.unwrap_or(Value::Null);
        if !valid_id(&id) {
            return Some(
                self.error(&Value::Null, RpcError::new(codes::INVALID_REQUEST, "invalid request: bad id")),
            );
        }
        let method = match (&req.jsonrpc, &req.method) {
            (Some(Value::String(v)), Some(Value::String(m))) if v == "2.0" => m.as_str(),
            _ => {
                // Not a request object at all, so not a notification either
                // (JSON-RPC 2.0, section 5: `{"foo": "boo"}` is answered with an
                // Invalid Request error, id null).
                let e = RpcError::new(
                    codes::INVALID_REQUEST,
                    "invalid request: needs \"jsonrpc\":\"2.0\" and a method",
                );
                return Some(self.error(&id, e));
            }
        };
        let result = match method {
            "subscribe" => self.subscribe(req.params).await.map(Answer::Json),
            "history" => self.history(req.params).await.map(Answer::Raw),
            "unsubscribe" => self.unsubscribe(req.params).map(Answer::Json),
            "publish" => self.publish(req.params).await.map(Answer::Json),
            "ping" => Ok(Answer::Json(Value::String("pong".into()))),
            "refresh" => self.refresh(req.params).map(Answer::Json),
            _ => Err(RpcError::new(codes::METHOD_NOT_FOUND, format!("method not found: {method}"))),
        };
        if notification {
            return None;
        }
        Some(match result {
            Ok(v) => ok_response(&id, v),
            Err(e) => self.error(&id, e),
        })
    }

    fn check_topic(&self, topic: &str) -> Result<(), RpcError> {
        validate_topic(topic, self.gateway.inner.config.max_topic_len).map_err(|e| {
            RpcError::new(codes::INVALID_PARAMS, format!("invalid params: {e}"))
                .with_data(serde_json::json!({"topic": topic}))
        })
    }

    async fn subscribe(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let (topic, from) = crate::recovery::subscribe_params(params)?;
        self.check_subscribe(&topic)?;
        let joined = self.join_from(&topic, from).await?;
        Ok(crate::recovery::subscribe_result(&topic, joined, from))
    }

    /// A valid topic that this client may subscribe to (and so read the
    /// history of).
    fn check_subscribe(&self, topic: &str) -> Result<(), RpcError> {
        self.check_topic(topic)?;
        if !self.perms.subscribe.allows(topic) {
            return Err(RpcError::new(
                codes::PERMISSION_DENIED,
                format!("permission denied: subscribe to {topic}"),
            ));
        }
        Ok(())
    }

    /// `history {topic, limit?, since?}`: whoever may subscribe may read.
    /// The answer is built around the stored frames (no parse, no re-encode).
    async fn history(&mut self, params: Option<&RawValue>) -> Result<Box<RawValue>, RpcError> {
        let (topic, limit, since) = crate::recovery::history_params(params)?;
        self.check_subscribe(&topic)?;
        let page = self.gateway.inner.engine.history_async(&topic, limit, since).await;
        let json = crate::recovery::history_json_or_empty(page.as_ref());
        RawValue::from_string(json).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
    }

    /// Joins a valid, permitted topic within the limits, from a position or
    /// with its latest message; `None` if already subscribed.
    async fn join_from(
        &mut self,
        topic: &str,
        from: fanout_core::JoinFrom,
    ) -> Result<Option<fanout_core::Joined>, RpcError> {
        if self.topics.contains(topic) {
            return Ok(None);
        }
        let name = self.admit(topic)?;
        let joined = self.gateway.inner.engine.join_from_async(self.id, topic, from).await;
        self.joined(topic, name, joined)
    }

    /// The limits a join must pass; the topic's counted name.
    fn admit(&mut self, topic: &str) -> Result<Arc<str>, RpcError> {
        let max = self.gateway.inner.config.max_subscriptions;
        if self.topics.len() >= max {
            return Err(RpcError::new(
                codes::SUBSCRIPTION_LIMIT,
                format!("subscription limit reached ({max})"),
            )
            .with_data(serde_json::json!({"limit": max})));
        }
        // Only a call that changes the engine's membership is costly.
        self.charge_costly()?;
        self.check_topic_room(topic)?;
        self.gateway.inner.topic_cap.join(topic).map_err(|l| {
            RpcError::new(codes::TOPIC_LIMIT, format!("topic limit reached ({})", l.0))
                .with_data(serde_json::json!({"limit": l.0}))
        })
    }

    /// Records the engine's answer to a join that [`admit`](Self::admit) let through.
    fn joined(
        &mut self,
        topic: &str,
        name: Arc<str>,
        joined: Result<fanout_core::Joined, fanout_core::SubscribeError>,
    ) -> Result<Option<fanout_core::Joined>, RpcError> {
        match joined {
            Ok(j) => {
                self.topics.insert(name);
                self.update_sole();
                Ok(Some(j))
            }
            Err(e) => {
                self.gateway.inner.topic_cap.leave(topic);
                Err(RpcError::new(codes::UNAVAILABLE, e.to_string()))
            }
        }
    }

    fn unsubscribe(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let topic = topic_param(params)?;
        self.check_topic(&topic)?;
        if !self.topics.contains(topic.as_ref()) {
            return Ok(serde_json::json!({"topic": topic, "subscribed": false, "left": false}));
        }
        self.charge_costly()?;
        self.topics.remove(topic.as_ref());
        self.gateway.inner.topic_cap.leave(&topic);
        self.update_sole();
        match self.gateway.inner.engine.leave(self.id, &topic) {
            Ok(_) => Ok(serde_json::json!({"topic": topic, "subscribed": false, "left": true})),
            Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
        }
    }

    /// The global topic cap, counted in the engine: a join or publish that
    /// would create a topic is refused once the engine holds `max_topics`
    /// (topics with a history outlive their last subscriber for its TTL, so
    /// the gateway's own count of subscribed topics is not enough).
    fn check_topic_room(&self, topic: &str) -> Result<(), RpcError> {
        let max = self.gateway.inner.config.max_topics;
        let engine = &self.gateway.inner.engine;
        if max > 0 && engine.topic_count() >= max && !engine.topic_exists(topic) {
            return Err(RpcError::new(codes::TOPIC_LIMIT, format!("topic limit reached ({max})"))
                .with_data(serde_json::json!({"limit": max})));
        }
        Ok(())
    }

    async fn publish(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let PublishParams { topic, payload, key } = publish_params(params)?;
        self.check_topic(&topic)?;
        if !self.perms.may_publish(&topic) {
            return Err(RpcError::new(
                codes::PERMISSION_DENIED,
                format!("permission denied: publish to {topic}"),
            ));
        }
        self.check_topic_room(&topic)?;
        match self.gateway.publish_json_async(&topic, key.as_deref(), payload).await {
            Ok(r) => Ok(serde_json::to_value(PublishResult::from(r)).expect("serialises")),
            Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
        }
    }

    /// `refresh {token}`: the new token's permissions replace the old ones
    /// and its `exp` becomes the connection's deadline (see `token.rs`).
    fn refresh(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let bad = || RpcError::new(codes::INVALID_PARAMS, "invalid params: expected {\"token\": string}");
        let p = params.ok_or_else(bad)?;
        let token = if is_array(p) {
            serde_json::from_str::<(Cow<str>,)>(p.get()).map(|t| t.0).map_err(|_| bad())?
        } else {
            serde_json::from_str::<TokenParams>(p.get()).map(|t| t.token).map_err(|_| bad())?
        };
        self.charge_costly()?;
        let refused = |why: &dyn std::fmt::Display| {
            RpcError::new(codes::TOKEN_REFUSED, format!("token refused: {why}"))
        };
        let Some(verifier) = &self.gateway.inner.verifier else {
            return Err(refused(&"this server does not use tokens"));
        };
        let claims = verifier.verify(&token, crate::token::unix_now()).map_err(|e| refused(&e))?;
        if claims.sub != self.perms.subject {
            return Err(refused(&"the token is for another subject"));
        }
        let perms = claims.permissions();
        let leeway = self.gateway.inner.config.jwt_leeway;
        self.expires = perms.expires.map(|exp| crate::token::deadline(exp, leeway));
        // Subscriptions the new token no longer grants are left.
        let gone: Vec<Arc<str>> =
            self.topics.iter().filter(|t| !perms.subscribe.allows(t)).cloned().collect();
        for t in &gone {
            self.topics.remove(t);
            self.gateway.inner.topic_cap.leave(t);
            let _ = self.gateway.inner.engine.leave(self.id, t);
        }
        self.update_sole();
        let expires = perms.expires;
        self.perms = perms;
        let left: Vec<&str> = gone.iter().map(|t| &**t).collect();
        Ok(serde_json::json!({"expires": expires, "left": left}))
    }

    /// A binary frame from the client: a publish, `[topic length u8][topic][payload]`.
    pub(crate) async fn handle_binary(&mut self, data: &[u8]) -> Option<String> {
        if let Err(reply) = self.charge(1) {
            return Some(reply);
        }
        let err = |s: &Self, code, msg: String| Some(s.error(&Value::Null, RpcError::new(code, msg)));
        let Some((&l, rest)) = data.split_first() else {
            return err(self, codes::INVALID_REQUEST, "empty binary frame".into());
        };
        let Some(topic) = rest.get(..l as usize).and_then(|t| std::str::from_utf8(t).ok()) else {
            return err(self, codes::INVALID_REQUEST, "binary frame: bad topic header".into());
        };
        if let Err(e) = self.check_topic(topic) {
            return Some(self.error(&Value::Null, e));
        }
        if !self.perms.may_publish(topic) {
            return err(self, codes::PERMISSION_DENIED, format!("permission denied: publish to {topic}"));
        }
        match self.gateway.publish_binary_async(topic, &rest[l as usize..]).await {
            Ok(_) => None,
            Err(e) => err(self, codes::UNAVAILABLE, e.to_string()),
        }
    }

    fn update_sole(&mut self) {
        self.sole_topic = if self.topics.len() == 1 { self.topics.iter().next().cloned() } else { None };
    }

    pub(crate) fn rate_limited(&self) -> String {
        self.error(&Value::Null, RpcError::new(codes::RATE_LIMITED, "rate limit exceeded: message dropped"))
    }
}

/// The engine drops a closed subscriber's memberships itself; the gateway's
/// topic count (`topic_cap.rs`) is given back here.
impl<E: Engine<Frame>> Drop for Session<E> {
    fn drop(&mut self) {
        for t in self.topics.drain() {
            self.gateway.inner.topic_cap.leave(&t);
        }
    }
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<Value>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, IgnoredAny>,
}

fn valid_id(id: &Value) -> bool {
    matches!(id, Value::Null | Value::String(_) | Value::Number(_))
}
