//! Full text (`full_text = true`): a new item's own page, fetched once and reduced to
//! its main text, which becomes the item's content.
//!
//! Input: an item's link (third-party input: the feed chose it) and the feed's request
//! options. Output: sanitised HTML of the page's main text, or an [`ArticleError`]
//! that leaves the item as the feed gave it. The page is fetched by the poll's
//! [`Fetcher`], under the feed limits (size cap, timeout, per-host politeness), with
//! the link held to the redirect rules from the first request on; the feed's
//! credentials and headers go only to the feed's own origin. The text is extracted by
//! `dom_smoothie` (Mozilla Readability's algorithm; chosen on the comparison in
//! `bench/EXTRACT.md`) and sanitised like any feed HTML, its links made absolute
//! against the page.

use std::time::Duration;

use url::Url;

use crate::fetch::{FetchError, Fetched, Fetcher, Request, Validators};

/// Article pages fetched per feed per poll, at most: the newest new items get their
/// page; those past it keep the feed's text (a feed's first poll may list hundreds).
pub const MAX_ARTICLES_PER_POLL: usize = 20;

/// All of one poll's article fetches end within this many times the fetch `timeout`;
/// pages not fetched by then keep the feed's text.
pub const ARTICLE_TIME_FACTOR: u32 = 3;

/// Elements of a page the extractor looks at, at most: a page with more is refused
/// rather than scored for seconds.
pub const MAX_ELEMENTS: usize = 60_000;

/// Deepest nesting of a page the extractor parses (HTML parsing of deep nesting is
/// quadratic; real article pages nest a few dozen levels).
pub const MAX_DEPTH: usize = 512;

/// dom_smoothie's `char_threshold`: the text a candidate needs before it is taken as
/// the article. Its default, 500, took the footer for the story of a two-paragraph
/// article beside a long footer (`short-huge-footer.html`); 250 keeps every story of
/// the corpus and changes no other page (bench/EXTRACT.md).
pub const CHAR_THRESHOLD: usize = 250;

/// Least main text (characters) that counts as an article: less is a teaser, a paywall
/// or an index page, and the feed's own text is worth more.
pub const MIN_TEXT_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("not an HTML page (Content-Type: {0})")]
    NotHtml(String),
    #[error("answered 304 to an unconditional request")]
    NotModified,
    #[error("the page nests elements deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("no main text found ({0})")]
    NoText(String),
    #[error("the extractor crashed")]
    Crashed,
}

/// A fetched article page: its bytes, where they came from, what they claim to be.
pub struct Page {
    pub bytes: Vec<u8>,
    pub url: Url,
    pub content_type: Option<String>,
}

/// Whether an item's link is a page feedsieve may fetch: http or https.
pub fn fetchable(link: &str) -> Option<Url> {
    Url::parse(link).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// Fetches `link` for a feed whose requests carry `request`.
///
/// # Errors
/// The fetch's failure, a 304, or a body that is not HTML by its `Content-Type`.
pub async fn fetch(fetcher: &Fetcher, link: &Url, request: &Request<'_>) -> Result<Page, ArticleError> {
    let request = Request { untrusted: true, ..*request };
    let body = match fetcher.fetch_with(link, &Validators::default(), &request).await? {
        Fetched::Body(b) => b,
        Fetched::NotModified { .. } => return Err(ArticleError::NotModified),
    };
    if let Some(ct) = &body.content_type {
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(essence.as_str(), "text/html" | "application/xhtml+xml" | "") {
            return Err(ArticleError::NotHtml(ct.clone()));
        }
    }
    Ok(Page { bytes: body.bytes, url: body.final_url, content_type: body.content_type })
}

/// The main text of `page`, as sanitised HTML with absolute links. CPU work only.
///
/// # Errors
/// A page too deep or too large to score, or one without enough main text.
pub fn extract(page: &Page) -> Result<String, ArticleError> {
    let html = decode(&page.bytes, page.content_type.as_deref());
    if crate::parse::nesting_depth(&html) > MAX_DEPTH {
        return Err(ArticleError::TooDeep);
    }
    let config = dom_smoothie::Config {
        max_elements_to_parse: MAX_ELEMENTS,
        char_threshold: CHAR_THRESHOLD,
        ..dom_smoothie::Config::default()
    };
    let article = std::panic::catch_unwind(|| {
        dom_smoothie::Readability::new(html.as_str(), Some(page.url.as_str()), Some(config))
            .and_then(|mut r| r.parse())
    })
    .map_err(|_| ArticleError::Crashed)?
    .map_err(|e| ArticleError::NoText(e.to_string()))?;
    let chars = article.text_content.chars().filter(|c| !c.is_whitespace()).count();
    if chars < MIN_TEXT_CHARS {
        return Err(ArticleError::NoText(format!("{chars} characters of text, fewer than {MIN_TEXT_CHARS}")));
    }
    let clean = crate::parse::sanitize_html(&article.content, Some(page.url.as_str()));
    if crate::parse::html_to_text(&clean).trim().is_empty() {
        return Err(ArticleError::NoText("nothing left once sanitised".to_owned()));
    }
    Ok(clean)
}

/// The time one poll's article fetches may take in all, for a fetch `timeout`.
pub fn budget(timeout: Duration) -> Duration {
    timeout * ARTICLE_TIME_FACTOR
}

/// The page as text: by its byte order mark, else the `Content-Type` charset, else a
/// `<meta>` charset in its first 1,024 bytes, else UTF-8 if it is, else windows-1252
/// (what browsers assume).
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> String {
    if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        return enc.decode_without_bom_handling(&bytes[bom..]).0.into_owned();
    }
    let declared = content_type
        .and_then(|ct| crate::parse::charset_param(ct).map(str::to_owned))
        .or_else(|| meta_charset(&bytes[..bytes.len().min(1024)]))
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
    let enc = match declared {
        // A page labelled UTF-16 without a BOM is ASCII-compatible in practice.
        Some(e) if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE => encoding_rs::UTF_8,
        Some(e) => e,
        None if std::str::from_utf8(bytes).is_ok() => encoding_rs::UTF_8,
        None => encoding_rs::WINDOWS_1252,
    };
    enc.decode_without_bom_handling(bytes).0.into_owned()
}

/// The charset a `<meta charset>` or `<meta http-equiv="Content-Type" content="...;
/// charset=...">` names, by a plain scan of the page's start.
fn meta_charset(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let at = text.find("charset=")? + "charset=".len();
    let rest = text[at..].trim_start_matches(['"', '\'', ' ']);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.:".contains(c))).unwrap_or(rest.len());
    let label = &rest[..end];
    (!label.is_empty()).then(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(html: &str) -> Page {
        Page {
            bytes: html.as_bytes().to_vec(),
            url: Url::parse("https://news.example.org/2026/border/seizure.html").unwrap(),
            content_type: Some("text/html; charset=utf-8".into()),
        }
    }

    const PARAGRAPH: &str = "Customs officers at the northern crossing seized a large consignment of \
        counterfeit medicines hidden in a refrigerated lorry on Tuesday, the agency said in a statement.";

    #[test]
    fn the_main_text_is_kept_and_the_page_around_it_dropped() {
        let html = format!(
            "<html><head><title>Seizure</title><script>var tracker = 1;</script></head><body>\
             <nav><a href=\"/\">Home</a> <a href=\"/sport\">Sport</a></nav>\
             <article><h1>Seizure at the crossing</h1><p>{PARAGRAPH}</p><p>{PARAGRAPH}</p>\
             <p>See <a href=\"/related/1\">the earlier case</a>.</p>\
             <img src=\"/img/lorry.jpg\" onerror=\"alert(1)\"></article>\
             <footer>Copyright Example News. All rights reserved.</footer></body></html>"
        );
        let out = extract(&page(&html)).unwrap();
        assert!(out.contains("counterfeit medicines"), "{out}");
        assert!(!out.contains("Sport") && !out.contains("All rights reserved"), "{out}");
        assert!(!out.contains("tracker") && !out.contains("onerror") && !out.contains("<script"), "{out}");
        assert!(out.contains("https://news.example.org/related/1"), "links made absolute: {out}");
    }

    #[test]
    fn a_page_without_enough_text_is_a_failure() {
        let e = extract(&page("<html><body><p>Subscribe to read.</p></body></html>")).unwrap_err();
        assert!(matches!(e, ArticleError::NoText(_)), "{e}");
        let deep = format!("<html><body>{}{PARAGRAPH}</body></html>", "<div>".repeat(MAX_DEPTH + 1));
        assert!(matches!(extract(&page(&deep)), Err(ArticleError::TooDeep)));
    }

    #[test]
    fn charsets() {
        let latin = b"<html><head><meta charset=\"windows-1252\"></head><body>caf\xe9</body></html>";
        assert!(decode(latin, None).contains("café"));
        assert!(decode(latin, Some("text/html; charset=ISO-8859-1")).contains("café"));
        let http_equiv = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-15\">\xa4";
        assert!(decode(http_equiv, None).contains('€'));
        assert_eq!(decode("naïve".as_bytes(), None), "naïve");
        assert_eq!(decode(b"\xEF\xBB\xBFbom", Some("text/html; charset=windows-1252")), "bom");
        assert_eq!(decode(b"caf\xe9", None), "café", "not UTF-8: windows-1252");
    }

    #[test]
    fn only_web_links_are_fetched() {
        assert!(fetchable("https://news.example.org/a").is_some());
        for bad in
            ["file:///etc/passwd", "javascript:alert(1)", "mailto:x@example.org", "/relative", "data:,x"]
        {
            assert!(fetchable(bad).is_none(), "{bad}");
        }
    }
}
