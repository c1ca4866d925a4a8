//! Parsing: raw feed bytes to [`ParsedFeed`], and HTML sanitising.
//!
//! Input: the bytes a feed sent (never decoded to text first: feed-rs reads the
//! encoding from the XML declaration) and the URL they came from. Output: our own
//! [`Item`]s with keys, absolute links, normalised dates and clean text.
//!
//! Sanitising HTML is a full HTML parse and the most expensive step per item, so it is
//! a separate function, [`sanitize_field`], that the store runs when an item is first
//! published (and on any read of HTML not sanitised yet), never at parse time.
//!
//! Limits, so one hostile feed cannot take the process's memory: at most
//! [`MAX_ITEMS`] items per poll (the first ones in document order, which feeds list
//! newest first), titles cut at [`MAX_TITLE_CHARS`], summary and content at
//! [`MAX_HTML_BYTES`] each.

use std::cell::RefCell;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use feed_rs::model::{Entry, Text};
use url::Url;

use crate::dedup;
use crate::model::{Item, ParsedFeed};

mod dates;

pub const MAX_ITEMS: usize = 5_000;
pub const MAX_TITLE_CHARS: usize = 1_000;
pub const MAX_HTML_BYTES: usize = 512 * 1024;
const MAX_SHORT_FIELD: usize = 500;

/// Dates before this are taken for garbage (year 1, Unix epoch defaults).
const EARLIEST_DATE: i64 = 631_152_000; // 1990-01-01
/// Clock skew tolerated before a date counts as "in the future".
const FUTURE_SLACK: TimeDelta = TimeDelta::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a feed: {0}")]
    NotAFeed(&'static str),
    /// feed-rs's message, flattened: its error repeats its cause in `source()`.
    #[error("malformed feed: {0}")]
    Malformed(String),
}

/// [`parse_feed`] of a body fetched over HTTP: its `Content-Type` charset applies
/// where the body names no encoding (see [`with_http_charset`]).
///
/// # Errors
/// As [`parse_feed`].
pub fn parse_response(
    bytes: &[u8],
    content_type: Option<&str>,
    url: &Url,
    now: DateTime<Utc>,
) -> Result<ParsedFeed, ParseError> {
    parse_feed(&with_http_charset(bytes, content_type), url, now)
}

/// Parses a feed body.
///
/// `url` is where the body came from (after redirects): the base for relative links.
/// Dates after `now` (plus a little clock skew) are dropped.
///
/// # Errors
/// [`ParseError::NotAFeed`] for an HTML page, empty or non-XML/JSON body;
/// [`ParseError::Malformed`] for a feed that does not parse.
pub fn parse_feed(bytes: &[u8], url: &Url, now: DateTime<Utc>) -> Result<ParsedFeed, ParseError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    let Some(start) = start else { return Err(ParseError::NotAFeed("the body is empty")) };
    if looks_like_html(&bytes[start..]) {
        return Err(ParseError::NotAFeed("the body is an HTML page"));
    }
    let parser = feed_rs::parser::Builder::new()
        .base_uri(Some(url.as_str()))
        // Never let feed-rs invent an id (it would be random): an empty id means "none"
        // and the key is derived in `dedup::item_key`.
        .id_generator(|_, _, _| String::new())
        .sanitize_content(false)
        .timestamp_parser(dates::parse)
        .build();
    // feed-rs 3 (through quick-xml 0.42) panics on some ill-formed input, e.g. an XML
    // declaration naming another encoding in the middle of the document (found by
    // fuzzing): such a body is malformed, not a reason to take the caller down.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.parse(bytes)))
        .map_err(|_| ParseError::Malformed("the XML parser gave up on this body (it panicked)".into()))?;
    let feed = parsed.map_err(|e| match e {
        feed_rs::parser::ParseFeedError::ParseError(feed_rs::parser::ParseErrorKind::NoFeedRoot) => {
            ParseError::NotAFeed("no RSS, Atom or JSON Feed root element")
        }
        other => ParseError::Malformed(other.to_string()),
    })?;

    let site_link = feed
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .and_then(|l| absolute_http(&l.href, Some(url)));
    let rel = |name: &str| {
        feed.links
            .iter()
            .find(|l| l.rel.as_deref() == Some(name))
            .and_then(|l| absolute_http(&l.href, Some(url)))
    };
    let mut out = ParsedFeed {
        title: feed.title.as_ref().map(|t| text_of(t, MAX_TITLE_CHARS)).filter(|t| !t.is_empty()),
        site_link,
        hub: rel("hub"),
        self_url: rel("self"),
        ttl_minutes: feed.ttl,
        items: Vec::with_capacity(feed.entries.len().min(MAX_ITEMS)),
        skipped: 0,
    };
    // Relative URLs resolve against the document's own URL when it is on the web; a
    // local file stands in for its site, so its links resolve against the site link.
    let base = if matches!(url.scheme(), "http" | "https") {
        url.clone()
    } else {
        out.site_link.as_deref().and_then(|s| Url::parse(s).ok()).unwrap_or_else(|| url.clone())
    };
    // feed-rs resolves entry links against `xml:base` but not URLs inside content, and
    // does not report a base set on the root element.
    let base = root_xml_base(bytes).and_then(|b| base.join(&b).ok()).unwrap_or(base);
    let mut seen = std::collections::HashSet::new();
    let entries = feed.entries.len();
    // By value: an entry's summary and content move into the item, not copied.
    for entry in feed.entries {
        if out.items.len() == MAX_ITEMS {
            out.skipped += entries - MAX_ITEMS;
            break;
        }
        let item = convert(entry, &base, now);
        if seen.insert(item.key.clone()) {
            out.items.push(item);
        } else {
            out.skipped += 1;
        }
    }
    Ok(out)
}

/// The `charset` parameter of a `Content-Type`, unquoted.
pub fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches(['"', '\'']))
    })
}

/// The body to give the parser when HTTP names a charset: feed-rs reads only the BOM
/// and the XML declaration. An XML body that names no encoding itself (no BOM, no
/// `encoding` in its declaration) and is not valid UTF-8 gets a declaration naming the
/// `Content-Type` charset. A body that is valid UTF-8 is taken as UTF-8 whatever HTTP
/// claims (servers mislabel far more often than UTF-8 happens by chance), and a
/// declared encoding wins over HTTP (the document's author wrote it).
pub fn with_http_charset<'a>(bytes: &'a [u8], content_type: Option<&str>) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let charset = content_type.and_then(charset_param);
    let Some(charset) = charset.filter(|c| {
        !c.is_empty()
            && c.len() <= 40
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            && !c.eq_ignore_ascii_case("utf-8")
            && !c.eq_ignore_ascii_case("utf8")
    }) else {
        return Cow::Borrowed(bytes);
    };
    let boms: [&[u8]; 3] = [b"\xEF\xBB\xBF", b"\xFE\xFF", b"\xFF\xFE"];
    if boms.iter().any(|b| bytes.starts_with(b)) || std::str::from_utf8(bytes).is_ok() {
        return Cow::Borrowed(bytes);
    }
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let rest = &bytes[start..];
    let body = if rest.starts_with(b"<?xml") {
        let Some(end) = rest.iter().position(|&b| b == b'>') else { return Cow::Borrowed(bytes) };
        if rest[..end].windows(8).any(|w| w == b"encoding") {
            return Cow::Borrowed(bytes);
        }
        &rest[end + 1..]
    } else if rest.starts_with(b"<") {
        rest
    } else {
        return Cow::Borrowed(bytes);
    };
    let mut out = format!("<?xml version=\"1.0\" encoding=\"{charset}\"?>").into_bytes();
    out.extend_from_slice(body);
    Cow::Owned(out)
}

/// The `xml:base` attribute of the root element, if any (looked for in the first
/// 4 KiB, where the root element starts in any real feed).
fn root_xml_base(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let mut rest = head.as_ref();
    // Skip the XML declaration, comments, doctype and processing instructions.
    let root = loop {
        let lt = rest.find('<')?;
        rest = &rest[lt..];
        if rest.starts_with("<?") || rest.starts_with("<!") {
            rest = &rest[rest.find('>')? + 1..];
        } else {
            break &rest[..rest.find('>')?];
        }
    };
    let at = root.find("xml:base")?;
    let after = root[at + "xml:base".len()..].trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    let end = value.find(quote)?;
    Some(decode_entities(&value[..end]))
}

fn looks_like_html(b: &[u8]) -> bool {
    let head: Vec<u8> = b.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let s = String::from_utf8_lossy(&head);
    let s = s.trim_start();
    s.starts_with("<!doctype html")
        || s.starts_with("<html")
        || (s.starts_with("<?xml") && s.contains("<html"))
}

fn convert(entry: Entry, feed_url: &Url, now: DateTime<Utc>) -> Item {
    let base = entry.base.as_deref().and_then(|b| feed_url.join(b).ok()).unwrap_or_else(|| feed_url.clone());
    let link = entry
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(entry.links.first())
        .and_then(|l| absolute_http_url(&l.href, Some(&base)));
    let canonical_link = link.clone().and_then(dedup::canonical_url);
    let link = link.map(String::from);
    let title = entry.title.as_ref().map(|t| text_of(t, MAX_TITLE_CHARS)).unwrap_or_default();
    let summary = entry.summary.map(html_of).filter(|s| !s.trim().is_empty());
    let content = entry
        .content
        .and_then(|c| {
            let body = limit_bytes(clean_xml_string(c.body?), MAX_HTML_BYTES);
            Some(if is_html(&c.content_type) || has_tag(&body) { body } else { text_to_html(&body) })
        })
        .filter(|s| !s.trim().is_empty());
    let guid = Some(clean_xml_chars(entry.id.trim())).filter(|g| !g.is_empty());
    let key_text = content.as_deref().or(summary.as_deref()).unwrap_or("");
    let key = dedup::item_key(guid.as_deref(), canonical_link.as_deref(), &title, key_text);
    let authors: Vec<String> = entry
        .authors
        .iter()
        .map(|p| {
            limit_chars(&plain(&clean_xml_chars(p.name.as_deref().unwrap_or("").trim())), MAX_SHORT_FIELD)
        })
        .filter(|n| !n.is_empty())
        .take(20)
        .collect();
    let categories: Vec<String> = entry
        .categories
        .iter()
        .map(|c| {
            // Plain text like author names: JSON Feed tags and Atom labels carry markup too.
            limit_chars(
                &plain(&clean_xml_chars(c.label.as_deref().unwrap_or(&c.term).trim())),
                MAX_SHORT_FIELD,
            )
        })
        .filter(|n| !n.is_empty())
        .take(50)
        .collect();
    let published = plausible(entry.published, now);
    let updated = plausible(entry.updated, now);
    let mut item = Item {
        key,
        guid,
        link,
        canonical_link,
        title,
        summary,
        content,
        base: Some(base.to_string()),
        authors,
        categories,
        published,
        updated,
        content_hash: [0; 16],
    };
    item.content_hash = dedup::content_hash(&item);
    item
}

/// Keeps dates a feed could truthfully claim: not in the future, not before 1990.
fn plausible(d: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let earliest = Utc.timestamp_opt(EARLIEST_DATE, 0).single()?;
    d.filter(|d| *d <= now + FUTURE_SLACK && *d >= earliest)
}

/// An absolute http(s) URL from `href`, resolved against `base`; `None` for any
/// other scheme (`javascript:`, `data:` …).
fn absolute_http(href: &str, base: Option<&Url>) -> Option<String> {
    absolute_http_url(href, base).map(String::from)
}

/// [`absolute_http`], parsed.
fn absolute_http_url(href: &str, base: Option<&Url>) -> Option<Url> {
    let href = href.trim();
    let url = match base {
        Some(b) => b.join(href).ok()?,
        None => Url::parse(href).ok()?,
    };
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Plain text of a title-like field.
fn text_of(t: &Text, max_chars: usize) -> String {
    let raw = clean_xml_chars(&t.content);
    // Decoding an HTML title can yield markup again (`&lt;script&gt;`): strip that too.
    let text = if is_html(&t.content_type) { plain(&html_to_text(&raw)) } else { plain(&raw) };
    limit_chars(&collapse_whitespace(&text), max_chars)
}

/// Text that should be plain but may carry markup anyway (feeds put HTML in titles,
/// author names and categories; [`html_to_text`] decodes `&lt;script&gt;` into a
/// tag): tags are removed when there are any, so no reader that renders the field as
/// HTML sees active content.
pub fn plain(s: &str) -> String {
    if has_tag(s) { html_to_text(&escape_lone_lt(s)) } else { s.to_owned() }
}

/// Whether text holds markup: feeds often send HTML in fields typed as plain text (RSS
/// descriptions are HTML by convention, whatever the parser infers).
fn has_tag(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut at = 0;
    while let Some(lt) = memchr::memchr(b'<', &bytes[at..]).map(|i| at + i) {
        if bytes.get(lt + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'/' || *b == b'!') {
            return true;
        }
        at = lt + 1;
    }
    false
}

/// Escapes `<` that does not open a tag, so `html_to_text` keeps it as text.
fn escape_lone_lt(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' if !chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || *n == '/' || *n == '!') => {
                out.push_str("&lt;")
            }
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a media type names HTML (`text/html`, `application/xhtml+xml`, …).
fn is_html(m: &mediatype::MediaTypeBuf) -> bool {
    [Some(m.ty()), Some(m.subty()), m.suffix()].into_iter().flatten().any(|n| n.as_str().contains("html"))
}

/// HTML of a summary-like field (plain text is escaped into a paragraph).
fn html_of(t: Text) -> String {
    let raw = limit_bytes(clean_xml_string(t.content), MAX_HTML_BYTES);
    if is_html(&t.content_type) || has_tag(&raw) { raw } else { text_to_html(&raw) }
}

fn text_to_html(text: &str) -> String {
    let escaped = escape_html(text.trim());
    format!("<p>{}</p>", escaped.replace("\n\n", "</p><p>"))
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn collapse_whitespace(s: &str) -> String {
    let mut out = Collapsed::with_capacity(s.len());
    out.push_str(s);
    out.out
}

/// Where text goes, a piece or a character at a time.
trait TextSink {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl TextSink for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// Text written with every run of white space collapsed to one space, and none at
/// either end: what `split_whitespace().join(" ")` gives of all that was written.
struct Collapsed {
    out: String,
    /// White space was written after the last word.
    gap: bool,
}

impl Collapsed {
    fn with_capacity(n: usize) -> Collapsed {
        Collapsed { out: String::with_capacity(n), gap: false }
    }

    /// Text that is not white space follows: one space first if it is not the first.
    fn word(&mut self, s: &str) {
        if self.gap && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.gap = false;
        self.out.push_str(s);
    }
}

/// ASCII white space as `char::is_whitespace` has it (which includes U+000B).
fn ascii_space(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0x0b
}

/// Bytes [`Collapsed`] looks at together when it can.
const RUN_CHUNK: usize = 16;

/// Whether the [`RUN_CHUNK`] bytes from `at` all belong to a run of ASCII words
/// separated by single spaces that started before `at`: each is printable ASCII, or a
/// space before printable ASCII. (Other bytes may belong to the run too; the byte at
/// a time loop decides those.) Written without early exit or bounds checks, so that
/// the compiler compares all the bytes at once.
fn run_goes_on(bytes: &[u8], at: usize) -> bool {
    let Some(w) = bytes.get(at..at + RUN_CHUNK + 1) else { return false };
    let Ok(w) = <&[u8; RUN_CHUNK + 1]>::try_from(w) else { return false };
    let printable = |b: u8| b.wrapping_sub(0x21) < 0x5f;
    let mut ok = true;
    for j in 0..RUN_CHUNK {
        ok &= printable(w[j]) | ((w[j] == b' ') & printable(w[j + 1]));
    }
    ok
}

impl TextSink for Collapsed {
    fn push_str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        // Copied as they come: ASCII that is not white space.
        let plain = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii() && !ascii_space(*b));
        let mut i = 0;
        while i < bytes.len() {
            // A run of words separated by single spaces is copied whole: its ASCII a
            // byte at a time, any other character looked at whole (only white space
            // ends the run). `i` is always on a character boundary.
            let start = i;
            loop {
                if i > start {
                    while run_goes_on(bytes, i) {
                        i += RUN_CHUNK;
                    }
                }
                while plain(i) {
                    i += 1;
                }
                match bytes.get(i) {
                    Some(b' ') if i > start && plain(i + 1) => i += 1,
                    Some(b) if !b.is_ascii() => match s[i..].chars().next() {
                        Some(c) if !c.is_whitespace() => i += c.len_utf8(),
                        _ => break,
                    },
                    _ => break,
                }
            }
            if i > start {
                self.word(&s[start..i]);
            } else {
                // White space, ASCII or not.
                let Some(c) = s[i..].chars().next() else { break };
                i += c.len_utf8();
                self.gap = true;
            }
        }
    }

    fn push(&mut self, c: char) {
        if c.is_whitespace() {
            self.gap = true;
        } else {
            let mut buf = [0u8; 4];
            self.word(c.encode_utf8(&mut buf));
        }
    }
}

/// Removes characters XML 1.0 forbids (C0 controls but tab, newline and carriage
/// return; U+FFFE and U+FFFF), so whatever is stored can be republished as XML.
pub fn clean_xml_chars(s: &str) -> String {
    clean_xml_string(s.to_owned())
}

/// [`clean_xml_chars`] of a string of one's own: the same string when it is clean.
fn clean_xml_string(s: String) -> String {
    // Bytes first, 32 at a time and without early exit within them (the compiler
    // compares them at once): every forbidden character is a C0 control or starts
    // with 0xEF.
    let suspect = |b: &u8| (*b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || *b == 0xEF;
    if s.as_bytes().chunks(32).any(|c| c.iter().fold(false, |any, b| any | suspect(b)))
        && s.chars().any(forbidden_in_xml)
    {
        s.chars().filter(|c| !forbidden_in_xml(*c)).collect()
    } else {
        s
    }
}

fn forbidden_in_xml(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

fn limit_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn limit_bytes(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        // A body many times the limit would otherwise keep its whole allocation.
        s.shrink_to_fit();
    }
    s
}

/// A feed an HTML page advertises with `<link rel="alternate" type="…">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub url: String,
    pub title: Option<String>,
    pub media_type: String,
}

/// The feeds an HTML page advertises (RSS, Atom or JSON Feed alternates), with URLs
/// resolved against the page's `<base href>` or `page_url`, in page order, without
/// repeats. The page is read with html5ever's tokenizer, as a browser would.
pub fn advertised_feeds(html: &[u8], page_url: &Url) -> Vec<Advertised> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer};
    const TYPES: [&str; 5] = [
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json",
        "application/rdf+xml",
    ];
    /// `(rel, type, href, title)` of a `<link>`.
    type LinkTag = (String, String, String, Option<String>);
    #[derive(Default)]
    struct Sink {
        links: RefCell<Vec<LinkTag>>,
        base: RefCell<Option<String>>,
    }
    impl TokenSink for Sink {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            if let Token::TagToken(Tag { kind: TagKind::StartTag, name, attrs, .. }) = token {
                let attr =
                    |n: &str| attrs.iter().find(|a| &*a.name.local == n).map(|a| a.value.trim().to_owned());
                if &*name == "link" {
                    let rel = attr("rel").unwrap_or_default().to_ascii_lowercase();
                    let ty = attr("type").unwrap_or_default().to_ascii_lowercase();
                    if let Some(href) = attr("href") {
                        self.links.borrow_mut().push((rel, ty, href, attr("title")));
                    }
                } else if &*name == "base" && self.base.borrow().is_none() {
                    *self.base.borrow_mut() = attr("href");
                }
            }
            TokenSinkResult::Continue
        }
    }
    let html = String::from_utf8_lossy(html);
    let tok = Tokenizer::new(Sink::default(), Default::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from(html.as_ref()));
    let _ = tok.feed(&queue);
    tok.end();
    let base = tok.sink.base.take().and_then(|b| page_url.join(&b).ok()).unwrap_or_else(|| page_url.clone());
    let mut out: Vec<Advertised> = Vec::new();
    for (rel, ty, href, title) in tok.sink.links.take() {
        let ty = ty.split(';').next().unwrap_or("").trim().to_owned();
        if !rel.split_ascii_whitespace().any(|r| r == "alternate") || !TYPES.contains(&ty.as_str()) {
            continue;
        }
        let Some(url) = absolute_http(&href, Some(&base)) else { continue };
        if !out.iter().any(|a| a.url == url) {
            out.push(Advertised { url, title: title.map(|t| clean_xml_chars(&t)), media_type: ty });
        }
    }
    out
}

thread_local! {
    /// Building an ammonia policy allocates a dozen sets: do it once per thread and
    /// only swap the base URL per item.
    static SANITIZER: RefCell<ammonia::Builder<'static>> = RefCell::new(policy());
}

/// The allow-list. Everything not named here is dropped: script, style, iframe, form,
/// object, embed, svg, math, meta, base; every `on*` and `style` attribute; every URL
/// scheme but http, https and mailto.
fn policy() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.rm_tags(["area", "map", "details", "summary", "nav", "header", "footer"])
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer"))
        .strip_comments(true);
    b
}

/// Open elements beyond which HTML is not parsed as HTML: browsers' parsing of
/// deeply nested formatting elements is quadratic (100,000 nested `<b><i>` took
/// html5ever 38 s), and no real article nests this deep.
pub const MAX_HTML_DEPTH: usize = 256;

/// The deepest nesting of open tags, by a linear scan (an upper bound: void elements
/// and unclosed tags count as open).
pub(crate) fn nesting_depth(html: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let bytes = html.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'<' {
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(c) if c.is_ascii_alphabetic() => {
                depth += 1;
                max = max.max(depth);
            }
            _ => {}
        }
    }
    max
}

/// Sanitises HTML against the allow-list, resolving relative URLs against `base`
/// (they are dropped when there is no base). HTML nested deeper than
/// [`MAX_HTML_DEPTH`] is reduced to its text.
pub fn sanitize_html(html: &str, base: Option<&str>) -> String {
    if nesting_depth(html) > MAX_HTML_DEPTH {
        return text_to_html(&html_to_text(html));
    }
    SANITIZER.with(|cell| {
        let mut b = cell.borrow_mut();
        let base = base.and_then(|s| Url::parse(s).ok()).filter(|u| matches!(u.scheme(), "http" | "https"));
        match base {
            Some(u) => b.url_relative(ammonia::UrlRelative::RewriteWithBase(u)),
            None => b.url_relative(ammonia::UrlRelative::Deny),
        };
        // html5ever decodes `&#1;` and `&#xFFFE;` to the characters themselves, which
        // XML cannot carry: the output would not be well-formed.
        clean_xml_chars(&b.clean(html).to_string())
    })
}

/// Sanitises an item's summary and content in place.
pub fn sanitize_item(item: &mut Item) {
    let base = item.base.as_deref();
    for field in [&mut item.summary, &mut item.content] {
        *field = sanitize_field(field.as_deref(), base);
    }
}

/// One summary or content field sanitised: `None` when nothing is left of it.
pub fn sanitize_field(html: Option<&str>, base: Option<&str>) -> Option<String> {
    html.map(|h| sanitize_html(h, base)).filter(|h| !h.trim().is_empty())
}

/// The text the full-text index gets of an item's summary or content: [`html_to_text`]
/// of it, empty when the item has none. The poll indexes it and `topic preview`
/// extracts it again to highlight, so both go through here.
pub fn index_text(html: Option<&str>) -> String {
    html.map(html_to_text).unwrap_or_default()
}

/// The text of an HTML fragment, for the full-text index: tags removed, the contents
/// of `script` and `style` dropped, common entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    // One pass: the text between tags is decoded and collapsed as it is copied, and
    // a tag is white space. An entity never spans a tag: its name would hold the space
    // the tag becomes.
    let bytes = html.as_bytes();
    let mut out = Collapsed::with_capacity(html.len());
    let mut text_from = 0;
    let mut at = 0;
    while let Some(lt) = memchr::memchr(b'<', &bytes[at..]).map(|i| at + i) {
        decode_entities_into(&html[text_from..lt], &mut out);
        let name = &bytes[lt + 1..];
        // The text of scripts and style sheets is not text; a missing end tag hides
        // the rest.
        let mut tag_end_from = lt + 1;
        for (element, end_tag) in [(&b"script"[..], &b"</script"[..]), (b"style", b"</style")] {
            if name.len() >= element.len() && name[..element.len()].eq_ignore_ascii_case(element) {
                tag_end_from = find_ignore_ascii_case(bytes, lt + 1, end_tag).unwrap_or(bytes.len());
                break;
            }
        }
        match memchr::memchr(b'>', &bytes[tag_end_from..]) {
            Some(gt) => {
                out.gap = true;
                at = tag_end_from + gt + 1;
            }
            None => at = bytes.len(),
        }
        text_from = at;
    }
    decode_entities_into(&html[text_from..], &mut out);
    out.out
}

/// Where `needle` (ASCII, starting with `<`) first occurs in `hay` at or after `from`,
/// ignoring ASCII case.
fn find_ignore_ascii_case(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(i) = hay.get(at..)?.iter().position(|b| *b == needle[0]) {
        let start = at + i;
        if hay.get(start..start + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    decode_entities_into(s, &mut out);
    out
}

/// Writes `s` to `out` with the common entities decoded (characters XML forbids are
/// dropped); anything that is not one stays as it is.
fn decode_entities_into(s: &str, out: &mut impl TextSink) {
    let mut rest = s;
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        // Entity names are short: look no further (text full of bare `&` stays linear).
        let end = tail.bytes().take(11).position(|b| b == b';');
        let decoded = end.and_then(|i| {
            let name = &tail[1..i];
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => ' ',
                n if n.starts_with("#x") || n.starts_with("#X") => {
                    char::from_u32(u32::from_str_radix(&n[2..], 16).ok()?)?
                }
                n if n.starts_with('#') => char::from_u32(n[1..].parse().ok()?)?,
                _ => return None,
            };
            Some((c, i + 1))
        });
        match decoded {
            Some((c, len)) => {
                if !forbidden_in_xml(c) {
                    out.push(c);
                }
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn url() -> Url {
        Url::parse("https://news.example.org/feeds/main.xml").unwrap()
    }

    #[test]
    fn whitespace_collapses_as_split_whitespace_does() {
        for s in [
            "",
            "   ",
            "a",
            "  a  b\t\nc \u{0b}d\u{0c}e\r",
            "caf\u{e9}\u{a0}\u{a0}cr\u{e8}me\u{2003}br\u{fb}l\u{e9}e\u{3000}",
            "\u{2028}x\u{85}y\u{200b}z ",
            "日本語 テキスト\u{3000}です",
            "a \u{e9}t\u{e9} \u{a0}b \u{a0} c\u{2014}d \u{2019}e\u{a0}",
            "Word, word.  Word\u{0}\u{1f} \n\r\n w\u{85}\u{85}x \u{1680}",
        ] {
            let want = s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(collapse_whitespace(s), want, "{s:?}");
        }
    }

    /// Runs of plain text are taken 16 bytes at a time: texts of every length and mix,
    /// with white space of every kind at every offset, still collapse as
    /// `split_whitespace` has it.
    #[test]
    fn long_mixed_text_collapses_as_split_whitespace_does() {
        let pieces = [
            "word",
            "longerword",
            "x",
            " ",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\u{0b}",
            "\u{a0}",
            "\u{e9}",
            "\u{2019}",
            "\u{3000}",
            "\u{85}",
            "\u{1}",
            "\u{7f}",
            "1,280.5",
            ".",
            "\u{65e5}\u{672c}",
        ];
        // xorshift64: the same texts on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3_000 {
            let len = (next() % 60) as usize;
            let s: String = (0..len).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            let want = s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(collapse_whitespace(&s), want, "{s:?}");
        }
    }

    #[test]
    fn forbidden_characters_are_found_past_the_byte_check() {
        assert_eq!(clean_xml_chars("a\u{1}b\u{fffe}c\u{ffff}d\u{feff}e"), "abcd\u{feff}e");
        assert_eq!(clean_xml_chars("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
    }

    #[test]
    fn rss_items_without_guid_or_link_get_a_deterministic_key() {
        let xml = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
            <item><title>No id</title><description>Body text</description></item>
            <item><title>Linked</title><link>/a?utm_source=x</link></item>
            <item><guid>urn:x:1</guid><title>Guid</title></item>
            </channel></rss>"#;
        let a = parse_feed(xml, &url(), now()).unwrap();
        let b = parse_feed(xml, &url(), now()).unwrap();
        assert_eq!(a.items.len(), 3);
        assert_eq!(a.items[0].key, b.items[0].key, "no random ids");
        assert!(a.items[0].key.starts_with("h:"));
        assert_eq!(a.items[0].guid, None);
        assert_eq!(a.items[1].key, "l:https://news.example.org/a");
        assert_eq!(a.items[1].link.as_deref(), Some("https://news.example.org/a?utm_source=x"));
        assert_eq!(a.items[2].key, "g:urn:x:1");
    }

    #[test]
    fn rdf_about_is_never_a_key() {
        let xml = br#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
<channel rdf:about="https://x.org/"><title>W</title><link>https://x.org/</link><description>d</description></channel>
<item rdf:about="https://x.org/about-1"><title>One</title><link>https://x.org/one</link><description>First</description></item>
</rdf:RDF>"#;
        let f = parse_feed(xml, &url(), now()).unwrap();
        assert_eq!(f.items.len(), 1);
        assert_eq!(f.items[0].key, "l:https://x.org/one");
        assert_eq!(f.items[0].guid, None);
    }

    #[test]
    fn future_and_ancient_dates_are_dropped() {
        let xml = br#"<rss version="2.0"><channel><title>T</title>
            <item><guid>1</guid><pubDate>Mon, 01 Jan 2035 00:00:00 GMT</pubDate></item>
            <item><guid>2</guid><pubDate>Mon, 01 Jan 0001 00:00:00 GMT</pubDate></item>
            <item><guid>3</guid><pubDate>Sun, 29 Nov 2026 10:00:00 GMT</pubDate></item>
            <item><guid>4</guid><pubDate>yesterday-ish</pubDate></item>
            </channel></rss>"#;
        let f = parse_feed(xml, &url(), now()).unwrap();
        let dates: Vec<_> = f.items.iter().map(|i| i.published.map(|d| d.timestamp())).collect();
        assert_eq!(
            dates,
            [None, None, Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap().timestamp()), None]
        );
    }

    #[test]
    fn html_pages_and_empty_bodies_are_not_feeds() {
        let page = b"<!DOCTYPE html><html><head><title>x</title></head><body>hi</body></html>";
        assert!(matches!(parse_feed(page, &url(), now()), Err(ParseError::NotAFeed(_))));
        assert!(matches!(parse_feed(b"  \n", &url(), now()), Err(ParseError::NotAFeed(_))));
        assert!(matches!(parse_feed(b"hello", &url(), now()), Err(ParseError::NotAFeed(_))));
        let cut = b"<rss version=\"2.0\"><channel><title>T</title><item><title>a";
        assert!(parse_feed(cut, &url(), now()).is_err());
    }

    #[test]
    fn duplicate_keys_keep_the_first() {
        let xml = br#"<rss version="2.0"><channel><title>T</title>
            <item><guid>1</guid><title>first</title></item>
            <item><guid>1</guid><title>second</title></item></channel></rss>"#;
        let f = parse_feed(xml, &url(), now()).unwrap();
        assert_eq!(f.items.len(), 1);
        assert_eq!(f.items[0].title, "first");
        assert_eq!(f.skipped, 1);
    }

    #[test]
    fn sanitizer_drops_active_content_and_resolves_links() {
        let dirty = r#"<p onclick="x()">Hi <a href="../a.html">rel</a> <a href="javascript:alert(1)">js</a>
            <img src="img/p.png" onerror="alert(1)"><script>alert(1)</script><iframe src="https://e/"></iframe>
            <svg onload="alert(1)"></svg><math><mi xlink:href="javascript:alert(1)">m</mi></math>
            <form action="https://e/"><input name="q"></form><style>body{}</style>
            <div style="position:fixed">s</div><a href="data:text/html;base64,PHNjcmlwdD4=">d</a>
            <a href="vbscript:msgbox(1)">v</a><object data="x.swf"></object><embed src="x.swf"></p>"#;
        let clean = sanitize_html(dirty, Some("https://news.example.org/posts/1/"));
        let lower = clean.to_lowercase();
        for bad in [
            "<script",
            "javascript:",
            "vbscript:",
            "onerror",
            "onclick",
            "onload",
            "<iframe",
            "<svg",
            "<math",
            "<form",
            "<input",
            "<style",
            "style=",
            "data:text",
            "<object",
            "<embed",
        ] {
            assert!(!lower.contains(bad), "{bad} survived: {clean}");
        }
        assert!(clean.contains(r#"href="https://news.example.org/posts/a.html""#), "{clean}");
        assert!(clean.contains(r#"src="https://news.example.org/posts/1/img/p.png""#), "{clean}");
        assert!(clean.contains(r#"rel="noopener noreferrer""#), "{clean}");
    }

    /// Hostile feeds issue: the HTTP charset of a body that names none itself.
    #[test]
    fn the_http_charset_applies_only_where_the_body_names_none() {
        let latin1 = b"<rss version=\"2.0\"><channel><title>Caf\xe9</title></channel></rss>";
        let ct = Some("application/rss+xml; charset=ISO-8859-1");
        let fixed = with_http_charset(latin1, ct);
        assert!(fixed.starts_with(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss"));
        assert_eq!(parse_feed(&fixed, &url(), now()).unwrap().title.as_deref(), Some("Café"));
        let declared = [b"<?xml version=\"1.0\"?>\n".as_slice(), latin1].concat();
        assert!(with_http_charset(&declared, ct).starts_with(b"<?xml version=\"1.0\" encoding="));
        // Valid UTF-8, a declared encoding, a BOM, JSON, or a hostile label: untouched.
        let utf8 = "<rss><channel><title>Café</title></channel></rss>".as_bytes();
        assert_eq!(&*with_http_charset(utf8, ct), utf8);
        let own = [b"<?xml version=\"1.0\" encoding=\"windows-1252\"?>".as_slice(), latin1].concat();
        assert_eq!(&*with_http_charset(&own, ct), &own[..]);
        let bom = [b"\xEF\xBB\xBF".as_slice(), latin1].concat();
        assert_eq!(&*with_http_charset(&bom, ct), &bom[..]);
        assert_eq!(&*with_http_charset(b"{\"a\":\"\xe9\"}", ct), b"{\"a\":\"\xe9\"}");
        let evil = Some("text/xml; charset=\"x\"?><!DOCTYPE a [<!ENTITY b SYSTEM 'file:///'>]><?x \"");
        assert_eq!(&*with_http_charset(latin1, evil), latin1);
        assert_eq!(&*with_http_charset(latin1, Some("text/xml")), latin1);
    }

    /// Hostile feeds issue: categories (JSON Feed tags, Atom labels) are plain text.
    #[test]
    fn categories_lose_their_markup() {
        let json = br#"{"version":"https://jsonfeed.org/version/1.1","title":"T","items":[{"id":"1",
            "content_text":"x","tags":["<script>alert(1)</script>","<img src=x onerror=alert(1)>tag","a < b"]}]}"#;
        let f = parse_feed(json, &url(), now()).unwrap();
        assert_eq!(f.items[0].categories, ["tag", "a < b"]);
    }

    #[test]
    fn root_xml_base_is_found() {
        let xml = br#"<?xml version="1.0"?><!-- c --><feed xmlns="http://www.w3.org/2005/Atom" xml:base='https://a.example/b/'>"#;
        assert_eq!(root_xml_base(xml).as_deref(), Some("https://a.example/b/"));
        assert_eq!(root_xml_base(b"<rss version=\"2.0\"><channel>"), None);
    }

    #[test]
    fn advertised_feeds_are_found() {
        let page = br#"<!DOCTYPE html><html><head><title>News</title>
            <link rel="stylesheet" href="/s.css">
            <link rel="alternate" type="application/rss+xml" title="All news" href="/feed.xml">
            <LINK REL="Alternate feed" TYPE="application/atom+xml; charset=utf-8" HREF="atom.xml">
            <link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
            <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
            <link rel="alternate" type="application/rss+xml" href="/feed.xml">
            </head><body><a href="/other.rss">rss</a></body></html>"#;
        let found = advertised_feeds(page, &Url::parse("https://news.example/section/index.html").unwrap());
        let urls: Vec<_> = found.iter().map(|a| a.url.as_str()).collect();
        assert_eq!(urls, ["https://news.example/feed.xml", "https://news.example/section/atom.xml"]);
        assert_eq!(found[0].title.as_deref(), Some("All news"));
    }

    #[test]
    fn pathologically_nested_html_is_reduced_to_text() {
        let deep = format!("{}payload<script>alert(1)</script>", "<b><i>".repeat(50_000));
        let out = sanitize_html(&deep, None);
        assert_eq!(out, "<p>payload</p>");
        let normal = "<div><p><b><i>ok</i></b></p></div>";
        assert_eq!(sanitize_html(normal, None), normal);
    }

    #[test]
    fn text_extraction_and_xml_chars() {
        assert_eq!(html_to_text("<p>A &amp; B</p><script>x<y</script><p>C&#233;&nbsp;D</p>"), "A & B Cé D");
        assert_eq!(html_to_text("a &lt; b and &amp;bogus; ok"), "a < b and &bogus; ok");
        assert_eq!(clean_xml_chars("a\u{1}b\u{b}c\u{fffe}d\te"), "abcd\te");
    }
}
