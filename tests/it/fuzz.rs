//! Regressions found by the `cargo fuzz` targets (issue: fuzz targets for parse →
//! sanitise → publish, `fuzz/README.md`). Each reproducer in `tests/fixtures/fuzz/`
//! goes through the real pipeline (HTTP, parse, sanitise, SQLite, publish) and every
//! output must be well-formed and free of active content, titles and categories
//! included.

use feedsieve::publish::Format;

use crate::util::{Env, FeedServer, strings};

/// Polls the reproducer as the only feed of a query-less topic and returns every
/// decoded string of each output (`strings` also asserts XML well-formedness and the
/// absence of characters XML forbids).
async fn outputs(rel: &str) -> Vec<(Format, String)> {
    let server = FeedServer::start().await;
    server.put_fixture("/f", &format!("fuzz/{rel}"));
    let env = Env::new(&format!(
        "[[feed]]\nid = \"f\"\nurl = \"{}\"\n\n[[topic]]\nid = \"all\"\nfeeds = [\"f\"]\n",
        server.url("/f")
    ));
    let s = env.poll().await;
    assert_eq!((s.fetched, s.new_items), (1, 1), "{s:?}");
    Format::ALL
        .into_iter()
        .map(|f| {
            let body = env.export("all", f);
            let text = strings(f, &body).join("\n");
            assert!(text.contains("FUZZMARKER"), "{f:?}: the item is missing: {text}");
            (f, text)
        })
        .collect()
}

fn assert_no_markup(outputs: &[(Format, String)]) {
    for (f, text) in outputs {
        assert!(!text.to_lowercase().contains("<script"), "{f:?}: markup survived: {text}");
    }
}

/// Fuzz finding 1: a category is plain text, but `<category>&lt;script&gt;…` reached
/// Atom `term`, RSS `<category>` and JSON `tags` as a live `<script>` tag.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_markup_in_categories_is_stripped() {
    assert_no_markup(&outputs("parse_publish-category-markup.xml").await);
}

/// Fuzz finding 2: an Atom `type="html"` title whose HTML holds `&lt;script&gt;`
/// decoded to a `<script>` tag in the plain-text title of every output.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_html_title_that_decodes_to_markup_is_stripped() {
    assert_no_markup(&outputs("parse_publish-html-title-decodes-to-markup.xml").await);
}

/// Fuzz finding 3: `&#1;` in item HTML came out of the sanitiser as U+0001, making
/// the Atom and RSS outputs ill-formed XML.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_char_ref_to_a_control_character_keeps_xml_well_formed() {
    for (f, text) in outputs("parse_publish-char-ref-to-control.xml").await {
        assert!(!text.contains('\u{1}'), "{f:?}: U+0001 in the output");
        assert!(text.contains("ab"), "{f:?}: the text around it is lost: {text}");
    }
}

/// Fuzz finding 4: the JSON Feed `summary` (plain text made from the summary HTML)
/// decoded `&lt;script&gt;` into a `<script>` tag.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_json_summary_that_decodes_to_markup_is_stripped() {
    assert_no_markup(&outputs("parse_publish-json-summary-decodes-to-markup.xml").await);
}

/// Fuzz finding 5: an XML declaration naming another encoding in the middle of a
/// document made feed-rs (quick-xml) panic: `feed add` crashed and the daemon logged
/// "parser crashed". It is a malformed feed like any other.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_late_xml_declaration_is_a_malformed_feed_not_a_panic() {
    let bytes = crate::util::fixture("fuzz/parse_publish-late-xml-declaration.xml");
    let url = url::Url::parse("https://feeds.example.com/feed.xml").unwrap();
    let parsed = feedsieve::parse::parse_feed(&bytes, &url, chrono::Utc::now());
    assert!(matches!(parsed, Err(feedsieve::parse::ParseError::Malformed(_))), "{parsed:?}");

    let server = FeedServer::start().await;
    server.put_fixture("/f", "fuzz/parse_publish-late-xml-declaration.xml");
    let env = Env::new(&format!("[[feed]]\nid = \"f\"\nurl = \"{}\"\n", server.url("/f")));
    let s = env.poll().await;
    assert_eq!(s.failed, 1, "{s:?}");
    assert!(s.failures[0].1.contains("malformed feed"), "{s:?}");
}
