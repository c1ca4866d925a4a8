//! Arbitrary text as item HTML: `sanitize_html` must leave no active content and
//! nothing XML cannot carry; `html_to_text` must not panic.
//!
//! The first byte picks the base URL (none, a web page, a non-web base), as items
//! carry one or not; the rest is the HTML. As in `parse::convert`, the HTML has
//! already lost the characters XML forbids when it reaches the sanitiser.
#![no_main]

use libfuzzer_sys::fuzz_target;

const BASES: [Option<&str>; 4] = [
    None,
    Some("https://news.example.org/posts/1/"),
    Some("file:///tmp/feed.xml"),
    Some("http://[::1]:8080/a?b#c"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let base = BASES[usize::from(selector) % BASES.len()];
    let html = feedsieve::parse::clean_xml_chars(&String::from_utf8_lossy(rest));
    let clean = feedsieve::parse::sanitize_html(&html, base);
    let _ = feedsieve::parse::html_to_text(&html);
    let _ = feedsieve::parse::html_to_text(&clean);
    if let Some(c) = clean.chars().find(|c| feedsieve_fuzz::forbidden_in_xml(*c)) {
        feedsieve_fuzz::fail(
            "sanitize_html",
            &format!("character U+{:04X}, which XML 1.0 forbids", c as u32),
            clean.as_bytes(),
        );
    }
    if let Err(e) = feedsieve_fuzz::check_html(&clean) {
        feedsieve_fuzz::fail("sanitize_html", &e, clean.as_bytes());
    }
});
