//! What travels through the engine: a [`Frame`], encoded once per publish.
//!
//! A publish builds its wire bytes exactly once, inside
//! [`Engine::publish_with`](fanout_core::Engine::publish_with), where the topic's
//! sequence number is known; every recipient then gets a clone of the same
//! `Bytes` (a reference-count increment) and the connection's frame writer
//! (`writer.rs`) sends it behind a frame header of its own. Nothing is
//! serialised or copied per client.
//!
//! # Text push (JSON)
//!
//! ```text
//! {"topic":"news","seq":42,"epoch":1,"ts":1732230000123,"payload":{"title":"hi"}}
//! ```
//!
//! `ts` is the publish time in milliseconds since the Unix epoch; `payload` is the
//! publisher's JSON, byte for byte. Direct sends carry `"topic":null` and
//! `"seq":0`.
//!
//! # Binary push
//!
//! A binary payload goes out as one binary frame:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | kind: `0x01` topic push |
//! | 1 | topic length `L` (0 for a direct send) |
//! | `L` | topic, UTF-8 |
//! | 8 | seq, big-endian u64 |
//! | 8 | epoch, big-endian u64 |
//! | 8 | ts (ms since the Unix epoch), big-endian u64 |
//! | rest | payload |

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use fanout_core::Meta;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Kind byte of a binary push.
pub const BINARY_PUSH: u8 = 0x01;

/// Bytes before the topic in a binary push.
const BINARY_FIXED: usize = 2 + 3 * 8;

/// One encoded push, shared by every recipient of a publish (cloning it is a
/// reference-count increment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (a JSON envelope).
    Text(Utf8Bytes),
    /// A binary frame (see the module docs for its header).
    Binary(Bytes),
}

impl Frame {
    /// The tungstenite message that carries it (no copy).
    pub fn to_message(&self) -> Message {
        match self {
            Frame::Text(t) => Message::Text(t.clone()),
            Frame::Binary(b) => Message::Binary(b.clone()),
        }
    }

    /// Bytes on the wire, without the WebSocket frame header.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// The same push at another position: for an engine that numbers its
    /// messages elsewhere (a cluster node gets a push encoded with a
    /// placeholder [`Meta`] from its broker, and numbers it with the
    /// broker's `seq` and `epoch`). One copy of the payload per call, never
    /// per recipient. `None` if this is not a push of `topic`.
    ///
    /// ```
    /// use fanout_core::Meta;
    /// use fanout_ws::frame::{encode_json, Frame};
    /// use serde_json::value::RawValue;
    ///
    /// let p = RawValue::from_string("[1]".into()).unwrap();
    /// let template = encode_json(Some("t"), Meta { seq: 0, epoch: 0 }, 5, &p);
    /// let at = Meta { seq: 42, epoch: 7 };
    /// assert_eq!(template.restamp("t", at), Some(encode_json(Some("t"), at, 5, &p)));
    /// ```
    pub fn restamp(&self, topic: &str, meta: Meta) -> Option<Frame> {
        match self {
            Frame::Binary(b) => {
                let d = decode_binary(b)?;
                (d.topic == topic).then(|| encode_binary(Some(topic), meta, d.ts, d.payload))
            }
            Frame::Text(t) => {
                let s = t.as_str();
                let head = format!("{{\"topic\":{},\"seq\":", serde_json::to_string(topic).ok()?);
                let rest = s.strip_prefix(head.as_str())?;
                // `<seq>,"epoch":<epoch>,"ts":…`: keep from `,"ts":` on.
                let ts_at = rest.find(",\"ts\":")?;
                let (nums, tail) = rest.split_at(ts_at);
                let (seq, epoch) = nums.split_once(",\"epoch\":")?;
                if !(seq.bytes().all(|c| c.is_ascii_digit()) && epoch.bytes().all(|c| c.is_ascii_digit())) {
                    return None;
                }
                let mut out = String::with_capacity(s.len() + 40);
                out.push_str(&head);
                use std::fmt::Write;
                let _ = write!(out, "{},\"epoch\":{}", meta.seq, meta.epoch);
                out.push_str(tail);
                Some(Frame::Text(Utf8Bytes::from(out)))
            }
        }
    }

    /// Whether it has no bytes (never true for an encoded push).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Encodes the JSON envelope `{"topic","seq","epoch","ts","payload"}`.
pub fn encode_json(topic: Option<&str>, meta: Meta, ts: u64, payload: &RawValue) -> Frame {
    let raw = payload.get();
    let mut s = String::with_capacity(raw.len() + topic.map_or(4, str::len) + 80);
    s.push_str("{\"topic\":");
    match topic {
        // serde_json escapes whatever the name holds (topic rules make this a copy).
        Some(t) => s.push_str(&serde_json::to_string(t).expect("a string serialises")),
        None => s.push_str("null"),
    }
    use std::fmt::Write;
    let _ = write!(s, ",\"seq\":{},\"epoch\":{},\"ts\":{},\"payload\":", meta.seq, meta.epoch, ts);
    s.push_str(raw);
    s.push('}');
    Frame::Text(Utf8Bytes::from(s))
}

/// Encodes a binary push (see the module docs). Topics longer than 255 bytes are
/// refused by the topic rules before they get here; a longer one is cut at 255.
pub fn encode_binary(topic: Option<&str>, meta: Meta, ts: u64, payload: &[u8]) -> Frame {
    let t = topic.unwrap_or("").as_bytes();
    let t = &t[..t.len().min(255)];
    let mut b = BytesMut::with_capacity(BINARY_FIXED + t.len() + payload.len());
    b.put_u8(BINARY_PUSH);
    b.put_u8(t.len() as u8);
    b.put_slice(t);
    b.put_u64(meta.seq);
    b.put_u64(meta.epoch);
    b.put_u64(ts);
    b.put_slice(payload);
    Frame::Binary(b.freeze())
}

/// A decoded binary push (for clients and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryPush<'a> {
    /// Topic ("" for a direct send).
    pub topic: &'a str,
    /// Per-topic sequence number.
    pub seq: u64,
    /// Topic epoch.
    pub epoch: u64,
    /// Publish time, ms since the Unix epoch.
    pub ts: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// Decodes a binary push; `None` if it is not one.
pub fn decode_binary(b: &[u8]) -> Option<BinaryPush<'_>> {
    if b.len() < BINARY_FIXED || b[0] != BINARY_PUSH {
        return None;
    }
    let l = b[1] as usize;
    let rest = b.get(2..)?;
    let topic = std::str::from_utf8(rest.get(..l)?).ok()?;
    let nums = rest.get(l..l + 24)?;
    let u = |i: usize| u64::from_be_bytes(nums[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Some(BinaryPush { topic, seq: u(0), epoch: u(1), ts: u(2), payload: &rest[l + 24..] })
}

/// The lag notice: `{"lagged":n,"topic":…}` (`topic` is null unless the
/// connection is subscribed to exactly one topic), the text of a frame.
pub(crate) fn lag_notice(n: u64, topic: Option<&str>) -> Bytes {
    Bytes::from(format!("{{\"lagged\":{n},\"topic\":{}}}", topic_json(topic)))
}

/// A notice's `topic`: the name as a JSON string, or `null`.
fn topic_json(topic: Option<&str>) -> String {
    match topic {
        Some(t) => serde_json::to_string(t).expect("a string serialises"),
        None => "null".into(),
    }
}

/// The repair notice: `{"repaired":n,"conflated":c,"topic":…}` (`topic` as
/// in the lag notice): `n` missed messages came back from the history and
/// follow among the next pushes; `c` older ones were left out for a newer
/// one with the same key.
pub(crate) fn repair_notice(repaired: u64, conflated: u64, topic: Option<&str>) -> Bytes {
    let t = topic_json(topic);
    Bytes::from(format!("{{\"repaired\":{repaired},\"conflated\":{conflated},\"topic\":{t}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_envelope_is_exact() {
        let p = RawValue::from_string("{\"b\":1,\"a\":[1, 2]}".into()).unwrap();
        let f = encode_json(Some("news"), Meta { seq: 3, epoch: 7 }, 11, &p);
        let Frame::Text(t) = f else { panic!() };
        assert_eq!(t.as_str(), r#"{"topic":"news","seq":3,"epoch":7,"ts":11,"payload":{"b":1,"a":[1, 2]}}"#);
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(v["seq"], 3);
    }

    #[test]
    fn restamp_changes_only_the_numbering() {
        let p = RawValue::from_string("{\"seq\":1,\"epoch\":2}".into()).unwrap();
        let zero = Meta { seq: 0, epoch: 0 };
        let at = Meta { seq: 12345, epoch: 99 };
        let t = encode_json(Some("a.\"b"), zero, 77, &p);
        assert_eq!(t.restamp("a.\"b", at), Some(encode_json(Some("a.\"b"), at, 77, &p)));
        assert_eq!(t.restamp("other", at), None, "a push of another topic");
        let b = encode_binary(Some("t.x"), zero, 5, b"\x00\xffabc");
        assert_eq!(b.restamp("t.x", at), Some(encode_binary(Some("t.x"), at, 5, b"\x00\xffabc")));
        assert_eq!(b.restamp("t.y", at), None);
    }

    #[test]
    fn binary_round_trip() {
        let f = encode_binary(Some("t.x"), Meta { seq: 9, epoch: 2 }, 5, b"\x00\xffabc");
        let Frame::Binary(b) = f else { panic!() };
        let d = decode_binary(&b).unwrap();
        assert_eq!(d, BinaryPush { topic: "t.x", seq: 9, epoch: 2, ts: 5, payload: b"\x00\xffabc" });
        assert!(decode_binary(&b[..10]).is_none());
    }
}
