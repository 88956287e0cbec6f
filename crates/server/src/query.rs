//! Query strings: one parser for every HTTP route that takes parameters
//! (`POST /api/publish?topic=…`, `GET /api/history?topic=…&limit=…&since=…`).
//!
//! `application/x-www-form-urlencoded` rules: pairs split on `&`, key and
//! value on the first `=`, `+` is a space, `%XX` is a byte; the decoded
//! bytes must be UTF-8. A malformed escape (`%` not followed by two hex
//! digits) or invalid UTF-8 is an error, never a silent guess. The first
//! occurrence of a key wins.

use std::borrow::Cow;

/// The decoded value of `key` in `query`: `Ok(None)` when absent.
///
/// ```
/// use fanout_server::query::param;
///
/// assert_eq!(param(Some("topic=a%2Eb&limit=5"), "topic").unwrap().as_deref(), Some("a.b"));
/// assert_eq!(param(Some("topic=a+b"), "topic").unwrap().as_deref(), Some("a b"));
/// assert_eq!(param(Some("limit=5"), "topic").unwrap(), None);
/// assert!(param(Some("topic=%zz"), "topic").is_err());
/// ```
pub fn param<'q>(query: Option<&'q str>, key: &str) -> Result<Option<Cow<'q, str>>, String> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k)? == key {
            return decode(v).map(Some);
        }
    }
    Ok(None)
}

/// Decodes one key or value.
fn decode(s: &str) -> Result<Cow<'_, str>, String> {
    if !s.contains(['%', '+']) {
        return Ok(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(v) => out.push(v),
                    None => return Err(format!("bad percent-escape in query: {s:?}")),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| format!("query value is not UTF-8: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        let q = Some("a=1&topic=news%2Fsports%20x&topic=second&e=");
        assert_eq!(param(q, "topic").unwrap().as_deref(), Some("news/sports x"), "first wins");
        assert_eq!(param(q, "e").unwrap().as_deref(), Some(""));
        assert_eq!(param(q, "zz").unwrap(), None);
        assert_eq!(param(None, "a").unwrap(), None);
        assert!(param(Some("topic=%4"), "topic").is_err(), "short escape");
        assert!(param(Some("topic=%ff"), "topic").is_err(), "not UTF-8");
        assert_eq!(param(Some("t%6Fpic=x"), "topic").unwrap().as_deref(), Some("x"), "keys decode too");
    }
}
