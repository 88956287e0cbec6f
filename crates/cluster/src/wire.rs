//! What a node hands the broker: the push, encoded once by the publishing
//! node with the placeholder numbering `(seq 0, epoch 0)`, behind one byte
//! that says whether it is a text or a binary frame. A receiving node builds
//! its push from it with the broker's numbering ([`Frame::restamp`]): one
//! copy per node, never per client.

use bytes::{BufMut, Bytes, BytesMut};
use fanout_core::Meta;
use fanout_ws::Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

const TEXT: u8 = b't';
const BINARY: u8 = b'b';

/// The numbering a push is encoded with before the broker numbers it.
pub(crate) const PLACEHOLDER: Meta = Meta { seq: 0, epoch: 0 };

/// The broker's body for `frame`.
pub(crate) fn encode(frame: &Frame) -> Bytes {
    let (kind, bytes): (u8, &[u8]) = match frame {
        Frame::Text(t) => (TEXT, t.as_bytes()),
        Frame::Binary(b) => (BINARY, b),
    };
    let mut out = BytesMut::with_capacity(1 + bytes.len());
    out.put_u8(kind);
    out.put_slice(bytes);
    out.freeze()
}

/// The push of `topic` at `meta` from a broker body; `None` if the body is
/// not one this layer wrote for that topic.
pub(crate) fn decode(body: &Bytes, topic: &str, meta: Meta) -> Option<Frame> {
    let (&kind, _) = body.split_first()?;
    let rest = body.slice(1..);
    let template = match kind {
        TEXT => Frame::Text(Utf8Bytes::try_from(rest).ok()?),
        BINARY => Frame::Binary(rest),
        _ => return None,
    };
    template.restamp(topic, meta)
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
        let body = encode(&encode_json(Some("t"), PLACEHOLDER, 3, &p));
        assert_eq!(decode(&body, "t", at), Some(encode_json(Some("t"), at, 3, &p)));
        let body = encode(&encode_binary(Some("t"), PLACEHOLDER, 3, b"ab"));
        assert_eq!(decode(&body, "t", at), Some(encode_binary(Some("t"), at, 3, b"ab")));
        assert_eq!(decode(&Bytes::from_static(b"x{}"), "t", at), None);
        assert_eq!(decode(&Bytes::new(), "t", at), None);
    }
}
