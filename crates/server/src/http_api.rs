//! The HTTP routes: `POST /api/publish`, `GET /api/history`, `GET /metrics`,
//! `GET /healthz`, `GET /readyz`, and the dashboard's (`dashboard.rs`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fanout_core::{Engine, Priority, SendError, SubscriberId};
use fanout_ws::auth::constant_time_eq;
use fanout_ws::topic::{is_reserved, validate_topic};
use fanout_ws::{Body, Frame, Gateway, PublishResult};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Settings;

pub(crate) struct Api<E: Engine<Frame>> {
    pub(crate) gateway: Gateway<E>,
    pub(crate) settings: Settings,
    /// Cleared when the shutdown begins: `/readyz` answers 503 from then on.
    pub(crate) ready: Arc<AtomicBool>,
    /// The dashboard's routes; `None`: `--no-dashboard`.
    pub(crate) dashboard: Option<crate::dashboard::Dashboard>,
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: &impl Serialize) -> Response<Body> {
    respond(status, "application/json", serde_json::to_vec(v).expect("serialises"))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": msg.into() }))
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(default, borrow)]
    topic: Option<Cow<'a, str>>,
    /// Unicast: the subscriber id from the `X-Fanout-Client-Id` header.
    #[serde(default)]
    to: Option<u64>,
    /// To a user: every open connection whose token has this `sub`.
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a RawValue,
    /// Conflation key (topic publishes only).
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    /// `"normal"` (the default), `"high"` or `"urgent"` (topic publishes
    /// only; see `fanout_core::Priority`).
    #[serde(default)]
    priority: Option<WirePriority>,
}

impl PublishBody<'_> {
    /// The priority asked for (`Normal` when none was).
    fn priority(&self) -> Priority {
        self.priority.map_or(Priority::Normal, Priority::from)
    }
}

/// A publish's priority as the HTTP API spells it.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WirePriority {
    Normal,
    High,
    Urgent,
}

impl From<WirePriority> for Priority {
    fn from(p: WirePriority) -> Priority {
        match p {
            WirePriority::Normal => Priority::Normal,
            WirePriority::High => Priority::High,
            WirePriority::Urgent => Priority::Urgent,
        }
    }
}

#[derive(Serialize)]
struct BatchResult {
    #[serde(flatten)]
    total: PublishResult,
    messages: usize,
    results: Vec<PublishResult>,
}

impl BatchResult {
    /// Counts one item's result in, in order.
    fn add(&mut self, r: PublishResult) {
        self.total.recipients += r.recipients;
        self.total.delivered += r.delivered;
        self.total.dropped += r.dropped;
        self.total.walked += r.walked;
        if self.total.seq == 0 {
            self.total.seq = r.seq;
        }
        self.results.push(r);
    }
}

impl<E: Engine<Frame>> Api<E> {
    pub(crate) async fn route(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/readyz") | (&Method::HEAD, "/readyz") => {
                if self.ready.load(Ordering::Relaxed) && !self.gateway.is_draining() {
                    respond(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
                } else {
                    respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "not ready\n")
                }
            }
            (&Method::GET, "/healthz") | (&Method::HEAD, "/healthz") => {
                if self.gateway.is_draining() {
                    respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "draining\n")
                } else {
                    respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
                }
            }
            // With --metrics-listen, /metrics lives there only.
            (&Method::GET, "/metrics") if self.settings.metrics_listen.is_some() => {
                error(StatusCode::NOT_FOUND, "not found")
            }
            (&Method::GET, "/metrics") => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::prometheus::render(&self.gateway),
            ),
            (&Method::POST, "/api/publish") => self.publish(req).await,
            (&Method::GET, "/api/history") => self.history(&req).await,
            (_, "/api/publish")
            | (_, "/api/history")
            | (_, "/metrics")
            | (_, "/healthz")
            | (_, "/readyz") => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                let allow = if req.uri().path() == "/api/publish" { "POST" } else { "GET" };
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            (&Method::GET, path) | (&Method::HEAD, path) => {
                match self.dashboard.as_ref().and_then(|d| d.answer(path)) {
                    Some(r) => r,
                    None => error(StatusCode::NOT_FOUND, "not found"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// The API key check shared by the backend routes: `Err` is the answer
    /// (403 when no key is configured, 401 for a missing or wrong one).
    /// The error is the response itself, as for the other checks here.
    #[allow(clippy::result_large_err)]
    fn authorize<B>(&self, req: &Request<B>, what: &str) -> Result<(), Response<Body>> {
        let Some(key) = &self.settings.api_key else {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("{what} over HTTP is disabled: no API key configured"),
            ));
        };
        let given = fanout_ws::bearer::from_headers(req.headers());
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(r);
        }
        Ok(())
    }

    /// `GET /api/history?topic=T&limit=N&since=S` (API key): the same JSON as
    /// the `history` method.
    async fn history<B>(&self, req: &Request<B>) -> Response<Body> {
        if let Err(r) = self.authorize(req, "reading history") {
            return r;
        }
        let (topic, limit, since) = match history_query(req.uri().query()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        if let Err(r) = self.check_topic(&topic) {
            return r;
        }
        let page = self.gateway.engine().history_async(&topic, limit, since).await;
        respond(StatusCode::OK, "application/json", fanout_ws::recovery::history_json_or_empty(page.as_ref()))
    }

    async fn publish(&self, req: Request<Incoming>) -> Response<Body> {
        if let Err(r) = self.authorize(&req, "publishing") {
            return r;
        }
        if self.gateway.is_draining() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
        }
        let binary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/octet-stream"));
        let query_topic = match crate::query::param(req.uri().query(), "topic") {
            Ok(t) => t.map(|t| t.into_owned()),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        // A body sent a byte at a time must not hold the request (and its
        // socket) for ever.
        let read = Limited::new(req.into_body(), self.settings.max_body_size).collect();
        let Ok(read) = tokio::time::timeout(self.settings.body_read_timeout, read).await else {
            return error(StatusCode::REQUEST_TIMEOUT, "request body not received in time");
        };
        let body = match read {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {} bytes", self.settings.max_body_size),
                )
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
        };
        self.publish_body(binary, query_topic, &body).await
    }

    /// Everything `POST /api/publish` does once the key is checked and the body
    /// read: the part that parses untrusted bytes (and the fuzz target's entry).
    pub(crate) async fn publish_body(
        &self,
        binary: bool,
        query_topic: Option<String>,
        body: &[u8],
    ) -> Response<Body> {
        if binary {
            let Some(topic) = query_topic else {
                return error(StatusCode::BAD_REQUEST, "binary publish needs ?topic=");
            };
            if let Err(r) = self.check_topic(&topic) {
                return r;
            }
            return match self.gateway.publish_binary_async(&topic, body).await {
                Ok(r) => json(StatusCode::OK, &PublishResult::from(r)),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
        }
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(_) => return error(StatusCode::BAD_REQUEST, "body is not UTF-8"),
        };
        if text.trim_start().starts_with('[') {
            let items: Vec<PublishBody> = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
            };
            // Validated whole before any item is delivered: a bad item must not
            // leave a half-delivered batch that a retry would duplicate.
            for item in &items {
                if let Err(resp) = self.validate(item) {
                    return resp;
                }
            }
            let mut out =
                BatchResult { total: PublishResult::default(), messages: items.len(), results: Vec::new() };
            // Consecutive topic items go to the engine as one run (one broker
            // round trip on a cluster); a `to` or `user` item ends a run, so
            // everything still happens in the order given.
            for group in items.chunk_by(|a, b| a.topic.is_some() && b.topic.is_some()) {
                let run: Vec<_> = group
                    .iter()
                    .filter_map(|i| Some((&**i.topic.as_ref()?, i.priority(), i.key.as_deref(), i.payload)))
                    .collect();
                if run.is_empty() {
                    // A `to` or `user` item: a group of its own.
                    match self.publish_one(&group[0], true).await {
                        Ok(r) => out.add(r),
                        Err(resp) => return resp,
                    }
                    continue;
                }
                for r in self.gateway.publish_json_batch(&run).await {
                    match r {
                        Ok(r) => out.add(r.into()),
                        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                    }
                }
            }
            return json(StatusCode::OK, &out);
        }
        match serde_json::from_str::<PublishBody>(text) {
            Ok(item) => {
                if let Err(resp) = self.validate(&item) {
                    return resp;
                }
                match self.publish_one(&item, false).await {
                    Ok(r) => json(StatusCode::OK, &r),
                    Err(resp) => resp,
                }
            }
            Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
        }
    }

    #[allow(clippy::result_large_err)]
    fn check_topic(&self, topic: &str) -> Result<(), Response<Body>> {
        if let Err(e) = validate_topic(topic, self.settings.ws.max_topic_len) {
            return Err(error(StatusCode::BAD_REQUEST, e.to_string()));
        }
        if is_reserved(topic) {
            return Err(error(StatusCode::FORBIDDEN, "`$` topics are published by the server only"));
        }
        Ok(())
    }

    /// Everything about an item that the request alone decides.
    #[allow(clippy::result_large_err)]
    fn validate(&self, item: &PublishBody) -> Result<(), Response<Body>> {
        if item.priority.is_some() && item.topic.is_none() {
            return Err(error(StatusCode::BAD_REQUEST, "`priority` is for topic publishes only"));
        }
        if let Some(key) = &item.key {
            if item.topic.is_none() {
                return Err(error(StatusCode::BAD_REQUEST, "`key` is for topic publishes only"));
            }
            fanout_ws::rpc::check_key(key).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
        }
        match (&item.topic, item.to, &item.user) {
            (Some(topic), None, None) => self.check_topic(topic),
            (None, Some(_), None) | (None, None, Some(_)) => Ok(()),
            _ => Err(error(StatusCode::BAD_REQUEST, "give exactly one of `topic`, `to` and `user`")),
        }
    }

    /// Delivers a validated item. `in_batch`: a `to` that names no open
    /// connection counts as dropped instead of failing the rest of the batch
    /// (the connection may close between any two items).
    #[allow(clippy::result_large_err)]
    async fn publish_one(
        &self,
        item: &PublishBody<'_>,
        in_batch: bool,
    ) -> Result<PublishResult, Response<Body>> {
        if let Some(user) = &item.user {
            return self
                .gateway
                .send_json_to_subject(user, item.payload)
                .map(PublishResult::from)
                .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
        }
        match (&item.topic, item.to) {
            (Some(topic), None) => self
                .gateway
                .publish_json_with(topic, item.priority(), item.key.as_deref(), item.payload)
                .await
                .map(PublishResult::from)
                .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
            (None, Some(id)) => match self.gateway.send_json_to(SubscriberId::new(id), item.payload) {
                Ok(()) => Ok(PublishResult { recipients: 1, delivered: 1, dropped: 0, seq: 0, walked: 1 }),
                Err(SendError::Full(_)) => {
                    Ok(PublishResult { recipients: 1, delivered: 0, dropped: 1, seq: 0, walked: 1 })
                }
                Err(SendError::NoSuchSubscriber(_)) | Err(SendError::Closed(_)) if in_batch => {
                    Ok(PublishResult { recipients: 1, delivered: 0, dropped: 1, seq: 0, walked: 1 })
                }
                Err(SendError::NoSuchSubscriber(_)) | Err(SendError::Closed(_)) => {
                    Err(error(StatusCode::NOT_FOUND, format!("no open connection with id {id}")))
                }
                Err(SendError::Shutdown(_)) => {
                    Err(error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"))
                }
            },
            _ => Err(error(StatusCode::BAD_REQUEST, "give exactly one of `topic`, `to` and `user`")),
        }
    }
}

/// `GET /api/history`'s parameters: `topic` (required), `limit` (default and
/// bound as for the `history` method), `since`.
fn history_query(q: Option<&str>) -> Result<(String, usize, Option<u64>), String> {
    use fanout_ws::recovery::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
    let topic = crate::query::param(q, "topic")?.ok_or("missing topic")?.into_owned();
    let num = |k: &str| -> Result<Option<u64>, String> {
        crate::query::param(q, k)?
            .map(|v| v.parse::<u64>().map_err(|_| format!("{k}: not a number: {v:?}")))
            .transpose()
    };
    let limit = num("limit")?.map_or(DEFAULT_HISTORY_LIMIT, |l| l.min(u64::MAX >> 1) as usize);
    if limit > MAX_HISTORY_LIMIT {
        return Err(format!("limit: at most {MAX_HISTORY_LIMIT}"));
    }
    Ok((topic, limit, num("since")?))
}
