//! Topic-name validation against its rules written out plainly, and the
//! segment matcher of token patterns (`fanout_ws::topic`). The first byte is `max_topic_len`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    fanout_ws::fuzzing::check_topic(s, usize::from(max).max(1));
    // Pattern matching: "pattern\ntopic" must terminate and never panic.
    if let Some((p, t)) = s.split_once('\n') {
        let matched = fanout_ws::topic::pattern_matches(p, t);
        // A pattern the syntax refuses matches nothing.
        assert!(!matched || fanout_ws::topic::validate_pattern(p).is_ok(), "{p:?} matched {t:?}");
    }
});
