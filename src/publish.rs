//! Publishing: a topic's entries as Atom 1.0, RSS 2.0 and JSON Feed 1.1.
//!
//! Input: the topic's definition and its entries as the store returns them (newest
//! first, already limited). Output: bytes plus the `ETag` and `Last-Modified` that go
//! with them. Pure: the same entries always give the same bytes (no "now" in the
//! output), so an unchanged topic keeps its ETag across regenerations.
//!
//! What the store holds is already sanitised HTML and clean text; this stage only
//! arranges it. Every entry keeps its original link, a stable id derived from the
//! item it shows ([`dedup::entry_id`]), and names its source feed (`atom:source`, RSS
//! `<source>`, a `_feedsieve` extension in JSON). Other sources of the same story are
//! listed: Atom `<link rel="related">`, JSON `_feedsieve.also_reported_by`, and an
//! "Also reported by" paragraph in the HTML content of every format.

use chrono::{DateTime, FixedOffset, Utc};
use url::Url;

use crate::dedup;
use crate::model::{EntryRow, from_ts};
use crate::parse::escape_html;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Atom,
    Rss,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Atom, Format::Rss, Format::Json];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Atom => "atom",
            Format::Rss => "rss",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }

    /// `atom`, `rss` or `json` (as in file extensions and `--format`).
    pub fn from_extension(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.extension() == s)
    }
}

/// What a topic feed says about itself.
#[derive(Debug, Clone)]
pub struct TopicMeta<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    /// `[daemon] base_url`, ending in `/`.
    pub base_url: &'a Url,
    /// The WebSub hub the feed names beside its self link (`[websub] hub`).
    pub hub: Option<&'a str>,
}

impl TopicMeta<'_> {
    pub fn self_url(&self, format: Format) -> String {
        topic_url(self.base_url, self.id, format)
    }
}

/// A topic feed's URL: `BASE_URL/topics/ID.EXT`.
pub fn topic_url(base_url: &Url, id: &str, format: Format) -> String {
    base_url
        .join(&format!("topics/{id}.{}", format.extension()))
        .map_or_else(|_| format!("{base_url}topics/{id}.{}", format.extension()), |u| u.to_string())
}

/// One topic in every format, as the pipeline hands it to the server.
#[derive(Debug, Clone)]
pub struct RenderedTopic {
    pub id: String,
    pub outputs: Vec<Rendered>,
}

/// A rendered topic feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub format: Format,
    pub body: Vec<u8>,
    /// A strong validator: a hash of `body`, quoted.
    pub etag: String,
    /// The newest entry change (the Unix epoch for an empty topic).
    pub last_modified: DateTime<Utc>,
}

/// Renders a topic in one format.
pub fn render(format: Format, meta: &TopicMeta<'_>, entries: &[EntryRow]) -> Rendered {
    let last_modified = entries.iter().map(entry_updated).max().unwrap_or_default();
    let body = match format {
        Format::Atom => atom(meta, entries, last_modified),
        Format::Rss => rss(meta, entries, last_modified),
        Format::Json => json(meta, entries),
    };
    let d = dedup::digest_bytes(&[&body]);
    Rendered { format, etag: format!("\"{}\"", dedup::hex(&d[..12])), last_modified, body }
}

/// When an entry last changed: the later of what the feed claims (updated, else
/// published, else first seen) and a correction we stored.
fn entry_updated(e: &EntryRow) -> DateTime<Utc> {
    let i = &e.item;
    let claimed = i.updated.or(i.published).unwrap_or(i.first_seen);
    let corrected = if i.changed_at > i.first_seen { i.changed_at } else { i64::MIN };
    from_ts(claimed.max(corrected))
}

fn entry_published(e: &EntryRow) -> DateTime<Utc> {
    from_ts(e.item.published.unwrap_or(e.item.first_seen))
}

fn fixed(d: DateTime<Utc>) -> DateTime<FixedOffset> {
    d.fixed_offset()
}

fn feed_name(e: &EntryRow) -> &str {
    e.item.feed_title.as_deref().unwrap_or(&e.item.feed_id)
}

/// The entry's HTML: content (else summary) and the other sources of its story.
fn entry_html(e: &EntryRow) -> String {
    let mut html = e.item.content.clone().or_else(|| e.item.summary.clone()).unwrap_or_default();
    if !e.also.is_empty() {
        html.push_str("<p>Also reported by: ");
        for (i, (feed_id, title, link)) in e.also.iter().enumerate() {
            if i > 0 {
                html.push_str(", ");
            }
            let name = escape_html(title.as_deref().unwrap_or(feed_id));
            match link {
                Some(l) => html.push_str(&format!(
                    "<a href=\"{}\" rel=\"noopener noreferrer\">{name}</a>",
                    escape_html(l)
                )),
                None => html.push_str(&name),
            }
        }
        html.push_str("</p>");
    }
    html
}

fn atom(meta: &TopicMeta<'_>, entries: &[EntryRow], updated: DateTime<Utc>) -> Vec<u8> {
    use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Source, Text};
    let link = |href: String, rel: &str, mime: Option<&str>, title: Option<String>| Link {
        href,
        rel: rel.into(),
        mime_type: mime.map(Into::into),
        title,
        ..Link::default()
    };
    let feed = Feed {
        title: Text::plain(meta.title),
        id: meta.self_url(Format::Atom),
        updated: fixed(updated),
        subtitle: meta.description.map(Text::plain),
        generator: Some(Generator {
            value: "feedsieve".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Generator::default()
        }),
        links: meta
            .hub
            .map(|h| link(h.to_owned(), "hub", None, None))
            .into_iter()
            .chain([
                link(meta.self_url(Format::Atom), "self", Some("application/atom+xml"), None),
                link(meta.base_url.to_string(), "alternate", Some("text/html"), None),
            ])
            .collect(),
        entries: entries
            .iter()
            .map(|e| {
                let i = &e.item;
                let mut links: Vec<Link> =
                    i.link.iter().map(|l| link(l.clone(), "alternate", None, None)).collect();
                links.extend(e.also.iter().filter_map(|(feed_id, title, l)| {
                    Some(link(
                        l.clone()?,
                        "related",
                        None,
                        Some(title.clone().unwrap_or_else(|| feed_id.clone())),
                    ))
                }));
                Entry {
                    title: Text::plain(i.title.clone()),
                    id: dedup::entry_id(&i.feed_id, &i.key),
                    updated: fixed(entry_updated(e)),
                    published: Some(fixed(entry_published(e))),
                    authors: i
                        .authors
                        .iter()
                        .map(|a| Person { name: a.clone(), ..Person::default() })
                        .collect(),
                    categories: i
                        .categories
                        .iter()
                        .map(|c| Category { term: c.clone(), ..Category::default() })
                        .collect(),
                    links,
                    summary: i
                        .summary
                        .as_ref()
                        .filter(|_| i.content.is_some())
                        .map(|s| Text::html(s.clone())),
                    content: Some(Content {
                        value: Some(entry_html(e)),
                        content_type: Some("html".into()),
                        ..Content::default()
                    }),
                    source: Some(Source {
                        title: Text::plain(feed_name(e)),
                        // Never a local path or a URL's credentials.
                        id: source_id(&i.feed_id, &i.feed_url),
                        updated: fixed(from_ts(i.changed_at)),
                        links: i.feed_site.iter().map(|s| link(s.clone(), "alternate", None, None)).collect(),
                        // RFC 4287 wants an author in the entry, its source or the
                        // feed: an item without one is the source feed's.
                        authors: if i.authors.is_empty() {
                            vec![Person { name: feed_name(e).to_owned(), ..Person::default() }]
                        } else {
                            Vec::new()
                        },
                        ..Source::default()
                    }),
                    ..Entry::default()
                }
            })
            .collect(),
        ..Feed::default()
    };
    let mut out = Vec::with_capacity(4096 + entries.len() * 2048);
    // Writing into a Vec cannot fail for I/O reasons; an error here would be a bug in
    // the writer, and an empty body is then the safe answer.
    if feed.write_to(&mut out).is_err() {
        out.clear();
    }
    out
}

fn rfc2822(d: DateTime<Utc>) -> String {
    d.to_rfc2822()
}

fn rss(meta: &TopicMeta<'_>, entries: &[EntryRow], updated: DateTime<Utc>) -> Vec<u8> {
    use rss::extension::atom::{AtomExtension, Link};
    use rss::{Category, Channel, Guid, Item, Source};
    let channel = Channel {
        title: meta.title.into(),
        link: meta.base_url.to_string(),
        description: meta.description.unwrap_or(meta.title).into(),
        generator: Some(concat!("feedsieve ", env!("CARGO_PKG_VERSION")).into()),
        last_build_date: Some(rfc2822(updated)),
        atom_ext: Some(AtomExtension {
            links: meta
                .hub
                .map(|h| Link { href: h.to_owned(), rel: "hub".into(), ..Link::default() })
                .into_iter()
                .chain([Link {
                    href: meta.self_url(Format::Rss),
                    rel: "self".into(),
                    mime_type: Some("application/rss+xml".into()),
                    ..Link::default()
                }])
                .collect(),
        }),
        items: entries
            .iter()
            .map(|e| {
                let i = &e.item;
                Item {
                    title: Some(i.title.clone()),
                    link: i.link.clone(),
                    description: Some(entry_html(e)),
                    guid: Some(Guid { value: dedup::entry_id(&i.feed_id, &i.key), permalink: false }),
                    pub_date: Some(rfc2822(entry_published(e))),
                    categories: i
                        .categories
                        .iter()
                        .map(|c| Category { name: c.clone(), domain: None })
                        .collect(),
                    // RSS's <source> needs a URL: none for a feed read from a local file.
                    source: crate::model::public_feed_url(&i.feed_url)
                        .map(|url| Source { url, title: Some(feed_name(e).to_owned()) }),
                    dublin_core_ext: None,
                    ..Item::default()
                }
            })
            .collect(),
        ..Channel::default()
    };
    let mut out = Vec::with_capacity(4096 + entries.len() * 2048);
    if channel.write_to(&mut out).is_err() {
        out.clear();
    }
    out
}

#[derive(serde::Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    home_page_url: String,
    feed_url: String,
    /// WebSub hubs (JSON Feed 1.1 `hubs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<JsonHub<'a>>,
    items: Vec<JsonItem<'a>>,
}

#[derive(serde::Serialize)]
struct JsonHub<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
}

#[derive(serde::Serialize)]
struct JsonItem<'a> {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    title: &'a str,
    content_html: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    date_published: String,
    date_modified: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authors: Vec<JsonAuthor<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tags: &'a [String],
    _feedsieve: JsonExtension<'a>,
}

#[derive(serde::Serialize)]
struct JsonAuthor<'a> {
    name: &'a str,
}

/// The `_feedsieve` extension object on every JSON Feed item.
#[derive(serde::Serialize)]
struct JsonExtension<'a> {
    source: JsonSource<'a>,
    also_reported_by: Vec<JsonSource<'a>>,
}

#[derive(serde::Serialize)]
struct JsonSource<'a> {
    feed_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The `atom:source` id of a feed: its public URL, or for a feed read from a local
/// file, a URN of its id.
fn source_id(feed_id: &str, feed_url: &str) -> String {
    crate::model::public_feed_url(feed_url).unwrap_or_else(|| format!("urn:feedsieve:feed:{feed_id}"))
}

fn json(meta: &TopicMeta<'_>, entries: &[EntryRow]) -> Vec<u8> {
    let feed = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: meta.title,
        description: meta.description,
        home_page_url: meta.base_url.to_string(),
        feed_url: meta.self_url(Format::Json),
        hubs: meta.hub.map(|url| JsonHub { kind: "WebSub", url }).into_iter().collect(),
        items: entries
            .iter()
            .map(|e| {
                let i = &e.item;
                JsonItem {
                    id: dedup::entry_id(&i.feed_id, &i.key),
                    url: i.link.as_deref(),
                    title: &i.title,
                    content_html: entry_html(e),
                    summary: i
                        .summary
                        .as_deref()
                        .filter(|_| i.content.is_some())
                        .map(|s| crate::parse::plain(&crate::parse::html_to_text(s)))
                        .filter(|s| !s.is_empty()),
                    date_published: entry_published(e).to_rfc3339(),
                    date_modified: entry_updated(e).to_rfc3339(),
                    authors: i.authors.iter().map(|a| JsonAuthor { name: a }).collect(),
                    tags: &i.categories,
                    _feedsieve: JsonExtension {
                        source: JsonSource {
                            feed_id: &i.feed_id,
                            title: i.feed_title.as_deref(),
                            url: crate::model::public_feed_url(&i.feed_url),
                        },
                        also_reported_by: e
                            .also
                            .iter()
                            .map(|(id, title, link)| JsonSource {
                                feed_id: id,
                                title: title.as_deref(),
                                url: link.as_deref().and_then(crate::model::public_feed_url),
                            })
                            .collect(),
                    },
                }
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&feed).unwrap_or_default()
}
