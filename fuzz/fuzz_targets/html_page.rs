//! Arbitrary bytes as a web page for `feed add`: `advertised_feeds` must not panic,
//! and every feed it reports is an absolute http(s) URL with a title XML can carry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = url::Url::parse("https://news.example/section/index.html") else { return };
    for feed in feedsieve::parse::advertised_feeds(data, &page) {
        match url::Url::parse(&feed.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => panic!("advertised feed with a non-web URL: {feed:?}"),
        }
        if let Some(c) =
            feed.title.as_deref().and_then(|t| t.chars().find(|c| feedsieve_fuzz::forbidden_in_xml(*c)))
        {
            panic!("advertised feed title with U+{:04X}: {feed:?}", c as u32);
        }
    }
});
