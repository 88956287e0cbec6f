//! The client protocol: JSON-RPC 2.0 requests over text frames.
//!
//! Methods: `subscribe {topic}`, `unsubscribe {topic}`, `publish {topic,
//! payload}`, `ping`. Params may be given by name (an object) or by position
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

use crate::auth::{is_reserved, validate_topic, Permissions};
use crate::frame::Frame;
use crate::gateway::Gateway;

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

pub(crate) fn ok_response(id: &Value, result: impl Serialize) -> String {
    serde_json::to_string(&Response { jsonrpc: "2.0", id, result: Some(result), error: None })
        .expect("responses serialise")
}

pub(crate) fn error_response(id: &Value, e: &RpcError) -> String {
    serde_json::to_string(&Response::<()> { jsonrpc: "2.0", id, result: None, error: Some(e) })
        .expect("responses serialise")
}

/// What a publish did, as the client and `POST /api/publish` see it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishResult {
    /// Subscribers the message was offered to.
    pub recipients: u64,
    /// Queued for delivery.
    pub delivered: u64,
    /// Not queued (full queues, evictions).
    pub dropped: u64,
    /// Sequence number given to the message (0 when nobody was subscribed).
    pub seq: u64,
}

impl From<PublishReport> for PublishResult {
    fn from(r: PublishReport) -> Self {
        PublishResult {
            recipients: r.recipients,
            delivered: r.delivered,
            dropped: r.dropped.total(),
            seq: r.seq,
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
struct PublishParams<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
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

fn publish_params(params: Option<&RawValue>) -> Result<(Cow<'_, str>, &RawValue), RpcError> {
    let bad = || {
        RpcError::new(codes::INVALID_PARAMS, "invalid params: expected {\"topic\": string, \"payload\": any}")
    };
    let p = params.ok_or_else(bad)?;
    if is_array(p) {
        serde_json::from_str::<PublishParamsPos>(p.get()).map(|t| (t.0, t.1)).map_err(|_| bad())
    } else {
        serde_json::from_str::<PublishParams>(p.get()).map(|t| (t.topic, t.payload)).map_err(|_| bad())
    }
}

/// What the connection knows about itself: the state every request sees.
pub(crate) struct Session<E: Engine<Frame>> {
    pub(crate) gateway: Gateway<E>,
    pub(crate) id: SubscriberId,
    pub(crate) perms: Permissions,
    pub(crate) topics: HashSet<Arc<str>>,
    /// The one topic joined, if exactly one (named in lag notices).
    pub(crate) sole_topic: Option<Arc<str>>,
}

impl<E: Engine<Frame>> Session<E> {
    /// Handles one text frame; the reply to send, if any.
    pub(crate) fn handle_text(&mut self, text: &str) -> Option<String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            return self.handle_batch(text);
        }
        self.handle_one(text)
    }

    fn handle_batch(&mut self, text: &str) -> Option<String> {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
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
        let replies: Vec<String> = items.iter().filter_map(|r| self.handle_one(r.get())).collect();
        if replies.is_empty() {
            return None;
        }
        Some(format!("[{}]", replies.join(",")))
    }

    fn error(&self, id: &Value, e: RpcError) -> String {
        self.gateway.inner.metrics.rpc_error();
        error_response(id, &e)
    }

    fn handle_one(&mut self, text: &str) -> Option<String> {
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
            "subscribe" => self.subscribe(req.params),
            "unsubscribe" => self.unsubscribe(req.params),
            "publish" => self.publish(req.params),
            "ping" => Ok(Value::String("pong".into())),
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

    fn subscribe(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let topic = topic_param(params)?;
        self.check_topic(&topic)?;
        if !self.perms.subscribe.allows(&topic) {
            return Err(RpcError::new(
                codes::PERMISSION_DENIED,
                format!("permission denied: subscribe to {topic}"),
            ));
        }
        if self.topics.contains(topic.as_ref()) {
            return Ok(serde_json::json!({"topic": topic, "subscribed": true, "joined": false}));
        }
        let max = self.gateway.inner.config.max_subscriptions;
        if self.topics.len() >= max {
            return Err(RpcError::new(
                codes::SUBSCRIPTION_LIMIT,
                format!("subscription limit reached ({max})"),
            )
            .with_data(serde_json::json!({"limit": max})));
        }
        match self.gateway.inner.engine.join(self.id, &topic) {
            Ok(_) => {
                self.topics.insert(Arc::from(topic.as_ref()));
                self.update_sole();
                Ok(serde_json::json!({"topic": topic, "subscribed": true, "joined": true}))
            }
            Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
        }
    }

    fn unsubscribe(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let topic = topic_param(params)?;
        self.check_topic(&topic)?;
        if !self.topics.remove(topic.as_ref()) {
            return Ok(serde_json::json!({"topic": topic, "subscribed": false, "left": false}));
        }
        self.update_sole();
        match self.gateway.inner.engine.leave(self.id, &topic) {
            Ok(_) => Ok(serde_json::json!({"topic": topic, "subscribed": false, "left": true})),
            Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
        }
    }

    fn publish(&mut self, params: Option<&RawValue>) -> Result<Value, RpcError> {
        let (topic, payload) = publish_params(params)?;
        self.check_topic(&topic)?;
        if is_reserved(&topic) || !self.perms.publish.allows(&topic) {
            return Err(RpcError::new(
                codes::PERMISSION_DENIED,
                format!("permission denied: publish to {topic}"),
            ));
        }
        match self.gateway.publish_json(&topic, payload) {
            Ok(r) => Ok(serde_json::to_value(PublishResult::from(r)).expect("serialises")),
            Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
        }
    }

    /// A binary frame from the client: a publish, `[topic length u8][topic][payload]`.
    pub(crate) fn handle_binary(&mut self, data: &[u8]) -> Option<String> {
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
        if is_reserved(topic) || !self.perms.publish.allows(topic) {
            return err(self, codes::PERMISSION_DENIED, format!("permission denied: publish to {topic}"));
        }
        match self.gateway.publish_binary(topic, &rest[l as usize..]) {
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
