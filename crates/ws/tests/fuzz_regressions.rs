//! Regression tests for what fuzzing and the hostile-client tests found in the
//! inbound path, run through the same harness as the fuzz targets
//! (`fanout_ws::fuzzing`, which also checks every reply's shape).

use fanout_ws::codes;
use fanout_ws::fuzzing::RpcHarness;
use serde_json::Value;

fn reply(h: &mut RpcHarness, text: &str) -> Value {
    serde_json::from_str(&h.text(text).unwrap_or_else(|| panic!("no answer to {text:.80}"))).unwrap()
}

/// Found by the deep-JSON test: an object that is not a request (no `jsonrpc`,
/// no `method`, no `id`) was taken for a notification and silently dropped.
/// JSON-RPC 2.0 (section 5) answers it Invalid Request with id null.
#[test]
fn object_that_is_not_a_request_is_answered() {
    let mut h = RpcHarness::new();
    for text in [r#"{"foo":"boo"}"#, "{}", r#"{"jsonrpc":"2.0"}"#, r#"{"method":"ping"}"#] {
        let r = reply(&mut h, text);
        assert_eq!(r["error"]["code"], codes::INVALID_REQUEST, "{text}");
        assert_eq!(r["id"], Value::Null, "{text}");
    }
    // A real notification is still not answered, even when it fails.
    assert_eq!(h.text(r#"{"jsonrpc":"2.0","method":"nope"}"#), None);
    // In a batch: one error per non-request.
    let r = reply(
        &mut h,
        r#"[{"foo":"boo"},{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    );
    assert_eq!(r.as_array().map(Vec::len), Some(2));
}

/// Deep nesting is always answered (an error, never silence), and never
/// overflows the stack.
#[test]
fn deep_objects_and_arrays() {
    let mut h = RpcHarness::new();
    for depth in [100, 120, 200, 1_000, 10_000, 100_000] {
        let obj = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        // Past the limit the unknown member is skipped without recursion: the
        // object parses, and is not a request.
        let code = reply(&mut h, &obj)["error"]["code"].as_i64().unwrap();
        assert_eq!(code, codes::INVALID_REQUEST, "object depth {depth}");
        let arr = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let r = reply(&mut h, &arr);
        let code =
            if let Value::Array(items) = &r { &items[0]["error"]["code"] } else { &r["error"]["code"] };
        assert!(*code == codes::INVALID_REQUEST || *code == codes::PARSE_ERROR, "array depth {depth}: {r}");
    }
}

/// The seeds of the `refresh` fuzz target, run through its harness (which
/// checks the invariants of `fanout_ws::fuzzing::refresh` on each), and the
/// outcome each seed stands for.
#[test]
fn refresh_seeds_hold_their_invariants() {
    use fanout_ws::fuzzing::refresh::{sign, RefreshHarness, SECRET};
    use serde_json::json;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/refresh");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        RefreshHarness::new().run(&data);
        seeds += 1;
    }
    assert!(seeds >= 7, "the seed corpus is there");
    let mut h = RefreshHarness::new();
    let narrower = sign(&json!({"sub": "fuzzer", "aud": "fuzz", "subscribe": ["a.*"]}), SECRET, None);
    assert_eq!(h.refresh(&narrower)["result"]["left"], json!(["b.1"]));
    for refused in [
        sign(&json!({"sub": "other", "aud": "fuzz"}), SECRET, None),
        sign(&json!({"sub": "fuzzer"}), SECRET, None),
        sign(&json!({"sub": "fuzzer", "aud": "fuzz", "exp": 1}), SECRET, None),
        "garbage".to_string(),
    ] {
        assert_eq!(h.refresh(&refused)["error"]["code"], codes::TOKEN_REFUSED, "{refused}");
    }
}
