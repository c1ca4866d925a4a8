//! Arbitrary bytes as a feed: parse → sanitise → publish in every format, and every
//! output must satisfy the invariant (`feedsieve_fuzz::check_output`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(outputs) = feedsieve_fuzz::parse_sanitize_publish(data) else { return };
    for r in outputs {
        if let Err(e) = feedsieve_fuzz::check_output(r.format, &r.body) {
            feedsieve_fuzz::fail(&format!("{:?} output", r.format), &e, &r.body);
        }
    }
});
