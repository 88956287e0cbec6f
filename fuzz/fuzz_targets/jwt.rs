//! Token parsing and HS256 verification. Input: a secret length byte, the
//! secret, then the token. When the token bytes are a JSON object, they are also
//! signed as claims and must verify with that secret and no other.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n).min(rest.len());
    let (secret, token) = rest.split_at(n);
    let Ok(token) = std::str::from_utf8(token) else { return };
    fanout_ws::fuzzing::check_token(token, secret, 1_700_000_000);
});
