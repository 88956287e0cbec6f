//! The `POST /api/publish` body parser and publisher (after the key check).
//! First byte: bit 0 set = `application/octet-stream` with `?topic=` taken from
//! the bytes up to the first newline; otherwise the rest is the JSON body. The
//! answer must be a documented status with a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    if flags & 1 == 1 {
        let (topic, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(String::from_utf8_lossy(&rest[..i]).into_owned()), &rest[i + 1..]),
            None => (None, rest),
        };
        fanout_server::fuzzing::publish_body(true, topic, body);
    } else {
        fanout_server::fuzzing::publish_body(false, None, rest);
    }
});
