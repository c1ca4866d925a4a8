//! What the fuzz targets share: the parse → sanitise → publish path without SQLite,
//! and the one invariant checker every target asserts.
//!
//! # The invariant
//!
//! For every output [`check_output`] holds:
//!
//! - **Well-formed.** Atom and RSS parse back with quick-xml: one root element, every
//!   start tag closed by its own end tag, attributes without duplicates, only the five
//!   predefined entities, and no character XML 1.0 forbids, raw or as a character
//!   reference. JSON Feed parses with serde_json.
//! - **No active content.** Every decoded string of the document (text node,
//!   attribute value, JSON string) is read as HTML with html5ever's tokenizer, the way
//!   a reader that renders it would, and [`check_html`] holds for it. That covers the
//!   HTML fields (Atom `content`/`summary`, RSS `description`, JSON `content_html`)
//!   and the plain-text ones (titles, authors, categories), which readers also render
//!   as HTML (see `tests/fixtures/README.md`, `xss.xml`).
//! - **Only web links.** Every link the feed carries (`href`, `url`, `src` attributes,
//!   RSS `<link>`, JSON `url` fields) is an absolute `http` or `https` URL.
//!
//! A violation is returned as a message, and the targets panic with it and the body,
//! which is what libFuzzer records as a finding.

use std::cell::RefCell;

use chrono::{DateTime, TimeZone, Utc};
use feedsieve::model::ParsedFeed;
use feedsieve::parse;
use feedsieve::publish::{self, Format, Rendered, TopicMeta};
use feedsieve::store::{EntryRow, StoredItem};
use url::Url;

/// The URL every fuzzed feed is taken to come from.
pub const FEED_URL: &str = "https://feeds.example.com/section/feed.xml";
/// The `base_url` of the topic feeds.
pub const BASE_URL: &str = "http://feeds.test/";

/// The poll time: fixed, so a finding reproduces.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).single().unwrap_or_default()
}

/// Parses `bytes` as the feed `feed-0` fetched from [`FEED_URL`], sanitises its items
/// and renders them as one topic in every format; `None` when it is not a feed.
pub fn parse_sanitize_publish(bytes: &[u8]) -> Option<Vec<Rendered>> {
    let url = Url::parse(FEED_URL).ok()?;
    let parsed = parse::parse_feed(bytes, &url, now()).ok()?;
    Some(publish_parsed(parsed))
}

/// The sanitise and publish half: what `daemon::pipeline` does between `parse_feed`
/// and `Store::topic_entries`, minus SQLite. Every item becomes an entry; each entry
/// lists the next item as another source of its story, so the "Also reported by"
/// path is exercised too.
pub fn publish_parsed(mut parsed: ParsedFeed) -> Vec<Rendered> {
    let first_seen = now().timestamp();
    for item in &mut parsed.items {
        parse::sanitize_item(item);
    }
    let also: Vec<Option<String>> = parsed.items.iter().skip(1).map(|i| i.link.clone()).collect();
    let entries: Vec<EntryRow> = parsed
        .items
        .into_iter()
        .enumerate()
        .map(|(n, item)| EntryRow {
            story_id: n as i64 + 1,
            score: 0.0,
            // As `store::stored_item` reads back what `Writer::ingest` wrote: the feed's
            // title and site link come from the same poll's `FetchRecord`.
            item: StoredItem {
                id: n as i64 + 1,
                feed_id: "feed-0".into(),
                feed_title: parsed.title.clone(),
                feed_url: FEED_URL.into(),
                feed_site: parsed.site_link.clone(),
                key: item.key,
                link: item.link,
                title: item.title,
                summary: item.summary,
                content: item.content,
                authors: item.authors,
                categories: item.categories,
                published: item.published.map(|d| d.timestamp()),
                updated: item.updated.map(|d| d.timestamp()),
                first_seen,
                changed_at: first_seen,
            },
            also: also
                .get(n)
                .map(|link| vec![("feed-1".to_owned(), parsed.title.clone(), link.clone())])
                .unwrap_or_default(),
        })
        .collect();
    let base_url = Url::parse(BASE_URL).unwrap_or_else(|_| unreachable!());
    let meta =
        TopicMeta { id: "fuzz", title: "Fuzz", description: Some("Fuzzed topic"), base_url: &base_url };
    Format::ALL.iter().map(|&f| publish::render(f, &meta, &entries)).collect()
}

/// Checks one rendered topic feed against the invariant (see the module docs).
///
/// # Errors
/// The first violation found, described.
pub fn check_output(format: Format, body: &[u8]) -> Result<(), String> {
    match format {
        Format::Atom | Format::Rss => check_xml(body),
        Format::Json => check_json(body),
    }
}

/// Whether XML 1.0 forbids `c` (the complement of its `Char` production).
pub fn forbidden_in_xml(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

fn check_chars(what: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|c| forbidden_in_xml(*c)) {
        Some(c) => Err(format!("{what}: character U+{:04X}, which XML 1.0 forbids", c as u32)),
        None => Ok(()),
    }
}

/// Attributes whose value is a link in the feed formats we write.
const XML_LINK_ATTRS: [&str; 4] = ["href", "url", "src", "uri"];
/// JSON Feed members whose value is a link.
const JSON_LINK_KEYS: [&str; 6] = ["url", "external_url", "home_page_url", "feed_url", "icon", "favicon"];

fn check_link(what: &str, value: &str) -> Result<(), String> {
    match Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => Err(format!("{what}: link with scheme {:?}: {value:?}", u.scheme())),
        Err(e) => Err(format!("{what}: not an absolute URL ({e}): {value:?}")),
    }
}

fn check_xml(body: &[u8]) -> Result<(), String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).map_err(|e| format!("XML output is not UTF-8: {e}"))?;
    check_chars("raw XML body", text)?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0usize;
    // Adjacent text, references and CDATA form one string of the document: a payload
    // split by an escape must still be seen whole.
    let mut pending = String::new();
    let flush = |pending: &mut String, stack: &[String]| -> Result<(), String> {
        let s = std::mem::take(pending);
        let parent = stack.last().map(String::as_str).unwrap_or("");
        check_chars(&format!("text of <{parent}>"), &s)?;
        check_html(&s).map_err(|e| format!("text of <{parent}>: {e}: {s:?}"))?;
        if parent == "link" && stack.iter().any(|e| e == "item" || e == "channel") {
            check_link("RSS <link>", s.trim())?;
        }
        if stack.is_empty() && !s.trim().is_empty() {
            return Err(format!("text outside the root element: {s:?}"));
        }
        Ok(())
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not well-formed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Text(t) => {
                pending.push_str(&t.decode().map_err(|e| format!("text does not decode: {e}"))?);
                continue;
            }
            Event::CData(t) => {
                pending.push_str(&t.decode().map_err(|e| format!("CDATA does not decode: {e}"))?);
                continue;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| format!("bad character reference: {e}"))? {
                    Some(c) => c,
                    None => match &*r.decode().map_err(|e| format!("reference does not decode: {e}"))? {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("undeclared entity &{other};")),
                    },
                };
                pending.push(c);
                continue;
            }
            _ => flush(&mut pending, &stack)?,
        }
        match event {
            Event::Start(e) | Event::Empty(e) if stack.is_empty() && roots > 0 => {
                return Err(format!(
                    "a second root element <{}>",
                    String::from_utf8_lossy(e.name().as_ref())
                ));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if stack.is_empty() {
                    roots += 1;
                }
                for a in e.attributes() {
                    let a = a.map_err(|err| format!("<{name}>: malformed attribute: {err}"))?;
                    let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                    let value = a.unescape_value().map_err(|err| format!("<{name} {key}>: {err}"))?;
                    let what = format!("<{name} {key}>");
                    check_chars(&what, &value)?;
                    check_html(&value).map_err(|err| format!("{what}: {err}: {value:?}"))?;
                    let local = String::from_utf8_lossy(a.key.local_name().into_inner()).into_owned();
                    if XML_LINK_ATTRS.contains(&local.as_str()) {
                        check_link(&what, &value)?;
                    }
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(name);
                }
            }
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if stack.pop().as_deref() != Some(name.as_str()) {
                    return Err(format!("unmatched </{name}>"));
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err("a DOCTYPE in the output".into()),
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => unreachable!(),
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed ({} open elements at the end)", stack.len()));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

fn check_json(body: &[u8]) -> Result<(), String> {
    fn walk(key: &str, v: &serde_json::Value) -> Result<(), String> {
        match v {
            serde_json::Value::String(s) => {
                check_chars(&format!("JSON {key:?}"), s)?;
                check_html(s).map_err(|e| format!("JSON {key:?}: {e}: {s:?}"))?;
                if JSON_LINK_KEYS.contains(&key) {
                    check_link(&format!("JSON {key:?}"), s)?;
                }
                Ok(())
            }
            serde_json::Value::Array(a) => a.iter().try_for_each(|x| walk(key, x)),
            serde_json::Value::Object(o) => o.iter().try_for_each(|(k, x)| {
                check_html(k).map_err(|e| format!("JSON key {k:?}: {e}"))?;
                walk(k, x)
            }),
            _ => Ok(()),
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("output is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("the JSON Feed is not an object".into());
    }
    walk("", &v)
}

/// Elements that run code, load other documents, submit data, restyle the page or
/// change how the rest of the markup parses.
const ACTIVE_ELEMENTS: [&str; 28] = [
    "script",
    "style",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "param",
    "form",
    "input",
    "button",
    "select",
    "textarea",
    "meta",
    "base",
    "link",
    "svg",
    "math",
    "noscript",
    "template",
    "xmp",
    "plaintext",
    "noembed",
    "noframes",
    "portal",
    "isindex",
    "keygen",
];

/// Attributes that hold a URL a browser follows or loads.
const URL_ATTRS: [&str; 16] = [
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "cite",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "poster",
    "data",
    "codebase",
    "usemap",
    "icon",
    "manifest",
    "ping",
];

/// The schemes content may link to.
const SAFE_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// Checks that `html`, read as an HTML fragment by a browser's tokenizer, carries no
/// active content: none of [`ACTIVE_ELEMENTS`], no `on*`, `style`, `srcdoc` or
/// `xlink:href` attribute, and no URL attribute ([`URL_ATTRS`], `srcset`) whose
/// scheme is not `http`, `https` or `mailto` (after the browser's own decoding:
/// entities, and ASCII whitespace and control characters removed). Relative URLs
/// pass: they carry no scheme.
///
/// The tokenizer switches to raw text after `title`, `textarea`, `style`, `xmp`,
/// `iframe`, `noembed`, `noframes`, `noscript` and `script`, as the tree builder
/// makes it do, so mutation tricks such as `<noscript><p title="</noscript><img
/// onerror=…>">` are seen as a browser sees them.
///
/// # Errors
/// The first violation, described.
pub fn check_html(html: &str) -> Result<(), String> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::states::RawKind;
    use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer};

    if !html.contains('<') {
        // Entities alone cannot make markup: the tokenizer would see one text token.
        return Ok(());
    }
    struct Sink(RefCell<Option<String>>);
    impl TokenSink for Sink {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            let Token::TagToken(Tag { kind: TagKind::StartTag, name, attrs, .. }) = token else {
                return TokenSinkResult::Continue;
            };
            let mut first = self.0.borrow_mut();
            if first.is_none() {
                *first = active_tag(&name, &attrs);
            }
            match &*name {
                "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
                "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                    TokenSinkResult::RawData(RawKind::Rawtext)
                }
                "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                "plaintext" => TokenSinkResult::Plaintext,
                _ => TokenSinkResult::Continue,
            }
        }
    }
    let tok = Tokenizer::new(Sink(RefCell::new(None)), Default::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from(html));
    let _ = tok.feed(&queue);
    tok.end();
    match tok.sink.0.take() {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

fn active_tag(name: &str, attrs: &[html5ever::Attribute]) -> Option<String> {
    if ACTIVE_ELEMENTS.contains(&name) {
        return Some(format!("<{name}> element"));
    }
    for a in attrs {
        let attr = &*a.name.local;
        let value = &*a.value;
        if attr.starts_with("on") || matches!(attr, "style" | "srcdoc") {
            return Some(format!("<{name} {attr}> attribute"));
        }
        if attr.contains(':') {
            // `xlink:href` and friends outside foreign content.
            return Some(format!("<{name} {attr}> attribute"));
        }
        if URL_ATTRS.contains(&attr) && !safe_url(value) {
            return Some(format!("<{name} {attr}={value:?}>: unsafe URL"));
        }
        if attr == "srcset" {
            for candidate in value.split(',') {
                let url = candidate.split_ascii_whitespace().next().unwrap_or("");
                if !safe_url(url) {
                    return Some(format!("<{name} srcset={value:?}>: unsafe URL"));
                }
            }
        }
    }
    None
}

/// Whether a URL attribute value is safe: its scheme, as a browser reads it, is
/// http, https or mailto, or it has none.
fn safe_url(value: &str) -> bool {
    // The URL parser strips leading and trailing C0 controls and spaces and removes
    // tabs and newlines anywhere.
    let cleaned: String =
        value.trim_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let scheme_end = cleaned.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')));
    match scheme_end {
        Some(i) if i > 0 && cleaned[i..].starts_with(':') && cleaned.as_bytes()[0].is_ascii_alphabetic() => {
            SAFE_SCHEMES.contains(&cleaned[..i].to_ascii_lowercase().as_str())
        }
        // No scheme: a relative URL.
        _ => true,
    }
}

/// Panics with `msg` and the offending output: how a target reports a finding.
pub fn fail(what: &str, msg: &str, body: &[u8]) -> ! {
    let body = String::from_utf8_lossy(body);
    let shown: String = body.chars().take(20_000).collect();
    panic!("{what}: {msg}\n----- output -----\n{shown}\n------------------")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_content_is_seen() {
        for bad in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<a href=\" jav&#x09;ascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<img src=\"data:text/html;base64,PHNjcmlwdD4=\">",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
            "<div style=\"position:fixed\">x</div>",
            "<iframe srcdoc=\"x\"></iframe>",
            "<a xlink:href=\"javascript:alert(1)\">x</a>",
            "<img srcset=\"https://a/x.png 1x, javascript:alert(1) 2x\">",
        ] {
            assert!(check_html(bad).is_err(), "{bad}");
        }
        for good in [
            "<p>Hi <a href=\"https://a.example/x\" rel=\"noopener noreferrer\">x</a></p>",
            "<img src=\"https://a.example/p.png\" alt=\"onerror\">",
            "<p title=\"</noscript><img src=x onerror=alert(1)>\">text</p>",
            "a < b &lt;script&gt; javascript:alert(1)",
            "<a href=\"mailto:x@example.com\">m</a> <a href=\"rel/a.html\">r</a>",
        ] {
            assert_eq!(check_html(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn fixtures_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let mut files: Vec<_> = ["xss.xml", "control_chars.json", "formats/atom.xml", "formats/rss20.xml"]
            .into_iter()
            .map(|rel| root.join(rel))
            .collect();
        // The reproducers of past findings (some are not feeds at all).
        files.extend(std::fs::read_dir(root.join("fuzz")).unwrap().map(|e| e.unwrap().path()));
        for path in files {
            let rel = path.display().to_string();
            let bytes = std::fs::read(&path).unwrap();
            let Some(out) = parse_sanitize_publish(&bytes) else { continue };
            for r in out {
                if let Err(e) = check_output(r.format, &r.body) {
                    fail(&rel, &e, &r.body);
                }
            }
        }
    }
}
