//! The JSON-RPC parser and dispatcher: one connection's session fed a run of
//! frames. Frames are separated by a NUL byte; a frame starting with 0xFF is a
//! binary frame (a binary publish), any other a text frame (skipped unless it is
//! UTF-8, as tungstenite closes the connection with 1007 before we see it).
//! Every reply must be a well-formed JSON-RPC response (see
//! `fanout_ws::fuzzing::check_reply`), and the session's state must stay within
//! its limits.
#![no_main]

use fanout_ws::fuzzing::RpcHarness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut h = RpcHarness::new();
    for frame in data.split(|&b| b == 0).take(64) {
        match frame.split_first() {
            Some((0xff, bin)) => {
                h.binary(bin);
            }
            _ => {
                if let Ok(text) = std::str::from_utf8(frame) {
                    h.text(text);
                }
            }
        }
    }
});
