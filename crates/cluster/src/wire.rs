//! What a node hands the broker: the push, encoded once by the publishing
//! node with the placeholder numbering `(seq 0, epoch 0)`, behind a byte
//! that says whether it is a text or a binary frame. A receiving node builds
//! its push from it with the broker's numbering ([`Frame::restamp`]): one
//! copy per node, never per client.
//!
//! A message with a priority other than `Normal`, or with a conflation key,
//! says so after that byte (an upper-case kind): one byte of priority, the
//! key's length (two bytes, big-endian; 0 = no key) and the key, so that
//! every node delivers it with the publisher's priority and conflates it
//! under its key. A plain message keeps the one-byte header, which is also
//! what bodies written before the key was carried hold.
//!
//! ```text
//! plain:  't' | 'b'            frame
//! marked: 'T' | 'B'  priority  key length (u16 BE)  key  frame
//! ```

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fanout_core::{Meta, Priority};
use fanout_ws::Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

const TEXT: u8 = b't';
const BINARY: u8 = b'b';
const TEXT_MARKED: u8 = b'T';
const BINARY_MARKED: u8 = b'B';

/// The numbering a push is encoded with before the broker numbers it.
pub(crate) const PLACEHOLDER: Meta = Meta { seq: 0, epoch: 0 };

/// A broker body, decoded for one position of a topic.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded {
    pub(crate) frame: Frame,
    pub(crate) priority: Priority,
    pub(crate) key: Option<Arc<str>>,
}

fn priority_byte(p: Priority) -> u8 {
    match p {
        Priority::Normal => 0,
        Priority::High => 1,
        Priority::Urgent => 2,
    }
}

fn priority_of(b: u8) -> Option<Priority> {
    match b {
        0 => Some(Priority::Normal),
        1 => Some(Priority::High),
        2 => Some(Priority::Urgent),
        _ => None,
    }
}

/// The broker's body for `frame`, published with `priority` and `key`.
/// A key longer than 65,535 bytes is refused by the transport before this
/// (its limit is far lower); here it would be cut, so it is checked.
pub(crate) fn encode(frame: &Frame, priority: Priority, key: Option<&str>) -> Bytes {
    let (plain, marked, bytes): (u8, u8, &[u8]) = match frame {
        Frame::Text(t) => (TEXT, TEXT_MARKED, t.as_bytes()),
        Frame::Binary(b) => (BINARY, BINARY_MARKED, b),
    };
    let key = key.unwrap_or("");
    assert!(key.len() <= u16::MAX as usize, "conflation key of {} bytes", key.len());
    if priority == Priority::Normal && key.is_empty() {
        let mut out = BytesMut::with_capacity(1 + bytes.len());
        out.put_u8(plain);
        out.put_slice(bytes);
        return out.freeze();
    }
    let mut out = BytesMut::with_capacity(4 + key.len() + bytes.len());
    out.put_u8(marked);
    out.put_u8(priority_byte(priority));
    out.put_u16(key.len() as u16);
    out.put_slice(key.as_bytes());
    out.put_slice(bytes);
    out.freeze()
}

/// The push of `topic` at `meta` from a broker body, with its priority and
/// key; `None` if the body is not one this layer wrote for that topic.
pub(crate) fn decode(body: &Bytes, topic: &str, meta: Meta) -> Option<Decoded> {
    let (&kind, _) = body.split_first()?;
    let mut rest = body.slice(1..);
    let (text, priority, key) = match kind {
        TEXT | BINARY => (kind == TEXT, Priority::Normal, None),
        TEXT_MARKED | BINARY_MARKED => {
            if rest.len() < 3 {
                return None;
            }
            let priority = priority_of(rest.get_u8())?;
            let n = rest.get_u16() as usize;
            if rest.len() < n {
                return None;
            }
            let key = std::str::from_utf8(&rest[..n]).ok()?;
            let key = (n > 0).then(|| Arc::from(key));
            rest.advance(n);
            (kind == TEXT_MARKED, priority, key)
        }
        _ => return None,
    };
    let template = if text { Frame::Text(Utf8Bytes::try_from(rest).ok()?) } else { Frame::Binary(rest) };
    Some(Decoded { frame: template.restamp(topic, meta)?, priority, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout_ws::frame::{encode_binary, encode_json};
    use serde_json::value::RawValue;

    #[test]
    fn a_body_comes_back_as_the_push_at_the_brokers_position() {
        let p = RawValue::from_string("{\"x\":1}".into()).unwrap();
        let at = Meta { seq: 9, epoch: 4 };
        let plain = |frame| Some(Decoded { frame, priority: Priority::Normal, key: None });
        let body = encode(&encode_json(Some("t"), PLACEHOLDER, 3, &p), Priority::Normal, None);
        assert_eq!(body[0], TEXT, "a plain message keeps the one-byte header");
        assert_eq!(decode(&body, "t", at), plain(encode_json(Some("t"), at, 3, &p)));
        let body = encode(&encode_binary(Some("t"), PLACEHOLDER, 3, b"ab"), Priority::Normal, None);
        assert_eq!(decode(&body, "t", at), plain(encode_binary(Some("t"), at, 3, b"ab")));
        assert_eq!(decode(&Bytes::from_static(b"x{}"), "t", at), None);
        assert_eq!(decode(&Bytes::new(), "t", at), None);
    }

    #[test]
    fn priority_and_key_travel_with_the_body() {
        let p = RawValue::from_string("{\"px\":1.5}".into()).unwrap();
        let at = Meta { seq: 2, epoch: 7 };
        let body = encode(&encode_json(Some("fx"), PLACEHOLDER, 3, &p), Priority::High, Some("EURUSD"));
        let d = decode(&body, "fx", at).unwrap();
        assert_eq!(d.frame, encode_json(Some("fx"), at, 3, &p));
        assert_eq!((d.priority, d.key.as_deref()), (Priority::High, Some("EURUSD")));
        let body = encode(&encode_binary(Some("fx"), PLACEHOLDER, 3, b"z"), Priority::Urgent, None);
        let d = decode(&body, "fx", at).unwrap();
        assert_eq!(
            (d.frame, d.priority, d.key),
            (encode_binary(Some("fx"), at, 3, b"z"), Priority::Urgent, None)
        );
        // Cut short, an unknown priority, a key that is not UTF-8: refused.
        assert_eq!(decode(&body.slice(..3), "fx", at), None);
        assert_eq!(decode(&Bytes::from_static(b"T\x09\x00\x00{}"), "fx", at), None);
        assert_eq!(decode(&Bytes::from_static(b"T\x00\x00\x01\xff{}"), "fx", at), None);
    }
}
