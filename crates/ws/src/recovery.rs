//! The protocol of history and recovery: `subscribe` with `since` or
//! `latest`, and the `history` method (also served at `GET /api/history`).
//!
//! # Subscribe from a position
//!
//! ```text
//! → {"jsonrpc":"2.0","id":1,"method":"subscribe",
//!    "params":{"topic":"prices","since":{"epoch":4503599627370,"seq":41}}}
//! ← {"jsonrpc":"2.0","id":1,"result":{"topic":"prices","subscribed":true,"joined":true,
//!    "epoch":4503599627370,"seq":45,"recovered":true}}
//! then the pushes of seq 42..45 (the replay), then the live ones from 46.
//! ```
//!
//! `recovered: false` comes with `"reason"` (`epoch_changed`, `too_old`,
//! `ahead_of_stream`, `no_history`, `too_many`, `overflowed`,
//! `already_joined`) and the topic's current `epoch` and `seq`: the client
//! reloads its state and goes on live from there. The engine decides
//! (`fanout_core::recovery`): the replay and the live stream meet with no gap
//! and no duplicate, or the answer says not recovered.
//!
//! `"latest": true` (without `since`): right after the result, the topic's
//! latest message (if the topic keeps a history and has one) arrives as an
//! ordinary push, then the live ones.
//!
//! # History
//!
//! ```text
//! → {"jsonrpc":"2.0","id":2,"method":"history","params":{"topic":"prices","limit":2,"since":41}}
//! ← {"jsonrpc":"2.0","id":2,"result":{"epoch":4503599627370,"seq":45,"publications":[
//!      {"topic":"prices","seq":42,"epoch":4503599627370,"ts":1732230000123,"payload":…},
//!      {"topic":"prices","seq":43,…}]}}
//! ```
//!
//! Each publication is the push the subscribers received, byte for byte
//! (it has `seq`, `ts` and `payload`, and also `topic` and `epoch`): the
//! history holds the encoded frames, and the answer is written around them
//! without parsing or re-encoding them. A binary push is given as `{"seq","epoch","ts","binary"}`
//! with the payload in standard base64. `limit` defaults to 100 and is at most
//! [`MAX_HISTORY_LIMIT`]; with `since`, the page is the oldest `limit`
//! messages after it (page forward), without, the newest `limit`.

use std::borrow::Cow;

use fanout_core::{HistoryPage, JoinFrom, Joined, Position};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::frame::{self, Frame};
use crate::rpc::{codes, RpcError};

/// Most publications one `history` call returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// `limit` when none is given.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeParams<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(default)]
    since: Option<Since>,
    #[serde(default)]
    latest: bool,
}

/// A position as the client gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    seq: u64,
    epoch: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<u64>,
}

/// `subscribe`'s params: `{"topic", "since"?, "latest"?}` or `["topic"]`.
pub(crate) fn subscribe_params(params: Option<&RawValue>) -> Result<(Cow<'_, str>, JoinFrom), RpcError> {
    let bad = |why: &str| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "invalid params: expected {{\"topic\": string, \"since\"?: {{\"seq\": number, \"epoch\": number}}, \
                 \"latest\"?: bool}}{why}"
            ),
        )
    };
    let p = params.ok_or_else(|| bad(""))?;
    if p.get().trim_start().starts_with('[') {
        let (topic,) = serde_json::from_str::<(Cow<str>,)>(p.get()).map_err(|_| bad(""))?;
        return Ok((topic, JoinFrom::Now));
    }
    let s: SubscribeParams = serde_json::from_str(p.get()).map_err(|e| bad(&format!(": {e}")))?;
    let from = match (s.since, s.latest) {
        (Some(_), true) => return Err(bad(": give since or latest, not both")),
        (Some(p), false) => JoinFrom::After(Position { epoch: p.epoch, seq: p.seq }),
        (None, true) => JoinFrom::Latest,
        (None, false) => JoinFrom::Now,
    };
    Ok((s.topic, from))
}

/// `history`'s params: `{"topic", "limit"?, "since"?}`.
pub(crate) fn history_params(
    params: Option<&RawValue>,
) -> Result<(Cow<'_, str>, usize, Option<u64>), RpcError> {
    let bad = |why: String| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "invalid params: expected {{\"topic\": string, \"limit\"?: number, \"since\"?: number}}{why}"
            ),
        )
    };
    let p = params.ok_or_else(|| bad(String::new()))?;
    let h: HistoryParams = serde_json::from_str(p.get()).map_err(|e| bad(format!(": {e}")))?;
    let limit = h.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if limit > MAX_HISTORY_LIMIT {
        return Err(bad(format!(": limit is at most {MAX_HISTORY_LIMIT}")));
    }
    Ok((h.topic, limit, h.since))
}

/// The `subscribe` result for a join that happened (`joined` false: was
/// already subscribed, nothing replayed).
pub(crate) fn subscribe_result(topic: &str, joined: Option<Joined>, from: JoinFrom) -> Value {
    let mut v =
        serde_json::json!({"topic": topic, "subscribed": true, "joined": joined.is_some_and(|j| j.joined)});
    if let Some(j) = joined {
        v["epoch"] = j.position.epoch.into();
        v["seq"] = j.position.seq.into();
        if matches!(from, JoinFrom::After(_)) {
            v["recovered"] = j.recovered.into();
            if let Some(why) = j.reason {
                v["reason"] = why.code().into();
            }
        }
    } else if matches!(from, JoinFrom::After(_)) {
        v["recovered"] = false.into();
        v["reason"] = "already_joined".into();
    }
    v
}

/// The `history` result (and `GET /api/history`'s body): built around the
/// stored frames without parsing them.
pub fn history_json(page: &HistoryPage<Frame>) -> String {
    let mut out =
        String::with_capacity(64 + page.messages.iter().map(|m| m.payload().len() + 1).sum::<usize>());
    out.push_str(&format!(
        "{{\"epoch\":{},\"seq\":{},\"publications\":[",
        page.position.epoch, page.position.seq
    ));
    for (i, m) in page.messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match m.payload() {
            Frame::Text(t) => out.push_str(t.as_str()),
            Frame::Binary(b) => out.push_str(&binary_publication(b)),
        }
    }
    out.push_str("]}");
    out
}

/// [`history_json`], or an empty page (`epoch` and `seq` 0) when there is
/// none: no such topic, or an engine that keeps no history.
pub fn history_json_or_empty(page: Option<&HistoryPage<Frame>>) -> String {
    match page {
        Some(p) => history_json(p),
        None => r#"{"epoch":0,"seq":0,"publications":[]}"#.to_string(),
    }
}

/// A binary push as a JSON object (see the module docs).
fn binary_publication(b: &[u8]) -> String {
    match frame::decode_binary(b) {
        Some(p) => serde_json::json!({
            "seq": p.seq,
            "epoch": p.epoch,
            "ts": p.ts,
            "binary": data_encoding::BASE64.encode(p.payload),
        })
        .to_string(),
        None => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn subscribe_params_every_form() {
        let r = raw(r#"{"topic":"t","since":{"seq":4,"epoch":9}}"#);
        let (t, from) = subscribe_params(Some(&r)).unwrap();
        assert_eq!((t.as_ref(), from), ("t", JoinFrom::After(Position { epoch: 9, seq: 4 })));
        let r = raw(r#"{"topic":"t","latest":true}"#);
        assert_eq!(subscribe_params(Some(&r)).unwrap().1, JoinFrom::Latest);
        let r = raw(r#"["t"]"#);
        assert_eq!(subscribe_params(Some(&r)).unwrap().1, JoinFrom::Now);
        for bad in [
            r#"{"topic":"t","since":{"seq":4}}"#,
            r#"{"topic":"t","since":{"seq":-1,"epoch":1}}"#,
            r#"{"topic":"t","since":{"seq":1,"epoch":1},"latest":true}"#,
            r#"{"topic":"t","sinse":{"seq":1,"epoch":1}}"#,
        ] {
            let e = subscribe_params(Some(&raw(bad))).unwrap_err();
            assert_eq!(e.code, codes::INVALID_PARAMS, "{bad}");
        }
    }

    #[test]
    fn history_params_and_limits() {
        let r = raw(r#"{"topic":"t","limit":5,"since":2}"#);
        let (t, limit, since) = history_params(Some(&r)).unwrap();
        assert_eq!((t.as_ref(), limit, since), ("t", 5, Some(2)));
        let r = raw(r#"{"topic":"t"}"#);
        assert_eq!(history_params(Some(&r)).unwrap().1, DEFAULT_HISTORY_LIMIT);
        let r = raw(r#"{"topic":"t","limit":1001}"#);
        assert!(history_params(Some(&r)).is_err());
    }
}
