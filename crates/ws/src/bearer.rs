//! The `Authorization: Bearer <token>` header: one parser for the WebSocket
//! upgrade (the JWT) and the HTTP API of `fanout-server` (the API key).
//!
//! Accepted (RFC 6750, section 2.1, read leniently as most servers do): the
//! scheme `Bearer` in any case, then one or more spaces or tabs, then the
//! token; spaces and tabs around the whole value and around the token are
//! ignored. Anything else is no bearer token: another scheme (`Basic ...`),
//! the scheme with no token (`Bearer`, `Bearer   `), a value that is not
//! visible ASCII. The token itself is not checked here: what it must be is
//! the caller's business (a JWT, or the API key compared in constant time).
//!
//! Before this module the two callers differed: the upgrade took any case of
//! the scheme, the HTTP API only `Bearer ` and `bearer `.

use http::{header, HeaderMap};

/// The scheme, compared without regard to case.
const SCHEME: &str = "bearer";

/// HTTP's optional whitespace.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The token of an `Authorization` header value, if it is a bearer
/// credential (see the module docs).
pub fn parse(value: &str) -> Option<&str> {
    let value = value.trim_matches(is_ows);
    let scheme = value.get(..SCHEME.len())?;
    let rest = &value[SCHEME.len()..];
    if !scheme.eq_ignore_ascii_case(SCHEME) || !rest.starts_with(is_ows) {
        return None;
    }
    Some(rest.trim_start_matches(is_ows)).filter(|t| !t.is_empty())
}

/// The bearer token of a request's (first) `Authorization` header, if any.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn scheme_in_any_case_and_surrounding_whitespace() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr abc",
            "Bearer   abc",
            "Bearer\tabc",
            "  Bearer abc  ",
            "\tBearer abc\t",
        ] {
            assert_eq!(parse(v), Some("abc"), "{v:?}");
        }
        // The token keeps its own characters (a JWT has dots, a key may have `=`).
        assert_eq!(parse("Bearer a.b-c_d=="), Some("a.b-c_d=="));
    }

    #[test]
    fn not_a_bearer_credential() {
        for v in ["", "Bearer", "Bearer ", "Bearer \t ", "Bearerabc", "Basic abc", "abc", "Bear abc", "é"] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }

    #[test]
    fn from_the_first_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k3y"));
        assert_eq!(from_headers(&h), Some("k3y"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").unwrap());
        assert_eq!(from_headers(&h), None, "not visible ASCII");
    }
}
