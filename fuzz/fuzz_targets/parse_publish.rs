//! Arbitrary bytes as a feed: parse → sanitise → publish in every format, and every
//! output must satisfy the invariant (`feedsieve_fuzz::check_output`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // `parse_feed` catches a panic of feed-rs and reports a malformed feed, as in
        // production; libfuzzer-sys's hook would abort before it can. This hook only
        // prints the message (no backtrace: caught panics are frequent): a panic nothing
        // catches still reaches libfuzzer-sys's own `catch_unwind`, which aborts, so it
        // is still a finding.
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    },
    |data: &[u8]| {
        let Some(outputs) = feedsieve_fuzz::parse_sanitize_publish(data) else { return };
        for r in outputs {
            if let Err(e) = feedsieve_fuzz::check_output(r.format, &r.body) {
                feedsieve_fuzz::fail(&format!("{:?} output", r.format), &e, &r.body);
            }
        }
    }
);
