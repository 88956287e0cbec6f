//! The `refresh` method and the token checks behind it: a session of one
//! subject on a gateway with two keys (by `kid`), an audience and a leeway,
//! refreshed with fuzzed tokens. The first byte picks how the rest becomes a
//! token: as is, or (a JSON object) signed as claims with the default key, the
//! `kid` key, or a foreign key. See `fanout_ws::fuzzing::refresh` for the
//! invariants (a refresh succeeds exactly for a valid token of the same
//! subject; its permissions replace the old ones; a refused one changes
//! nothing).
#![no_main]

use fanout_ws::fuzzing::refresh::RefreshHarness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut h = RefreshHarness::new();
    for input in data.split(|&b| b == 0).take(8) {
        h.run(input);
    }
});
