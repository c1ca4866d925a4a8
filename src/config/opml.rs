//! OPML 2.0 in and out: subscriptions from and for other feed readers.
//!
//! Import is forgiving, because real exports bend the rules: a missing `version`, an
//! empty `<body>`, `xmlUrl` spelt in another case, feeds nested in folders (whose
//! names become tags), `category` attributes (`/a/b,/c` become tags too). Outlines
//! without a usable http(s) URL are counted as broken, never fatal. Export writes
//! every configured feed with its tags as `category` and feedsieve's own settings as
//! `fs:` attributes, so that importing an export gives the same feeds back.

use quick_xml::events::{BytesStart, Event};

use super::FeedConfig;

/// One subscription found in an OPML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// `title`, else `text`.
    pub title: Option<String>,
    pub url: String,
    /// Folder names on the way down, then `category` entries.
    pub tags: Vec<String>,
    pub schedule: Option<String>,
    pub enabled: bool,
}

/// What an OPML file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    pub feeds: Vec<Outline>,
    /// Outlines that looked like feeds but had no usable URL.
    pub broken: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("not an OPML file: {0}")]
pub struct OpmlError(pub String);

/// The namespace of feedsieve's own outline attributes.
pub const FS_NS: &str = "https://feedsieve.invalid/opml";

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        let key = std::str::from_utf8(a.key.as_ref()).ok()?;
        key.eq_ignore_ascii_case(name)
            .then(|| a.unescape_value().ok().map(|v| v.trim().to_owned()))
            .flatten()
            .filter(|v| !v.is_empty())
    })
}

/// Reads the subscriptions of an OPML document.
///
/// # Errors
/// When the document is not well-formed XML or has no `<opml>` root.
pub fn parse(text: &str) -> Result<Subscriptions, OpmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut out = Subscriptions::default();
    // The folder names of the open outlines (None for open feed outlines).
    let mut folders: Vec<Option<String>> = Vec::new();
    let mut saw_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| OpmlError(format!("at byte {}: {e}", reader.error_position())))?;
        let (e, empty) = match event {
            Event::Eof => break,
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                if e.name().as_ref().eq_ignore_ascii_case(b"outline") {
                    folders.pop();
                }
                continue;
            }
            _ => continue,
        };
        let name = e.name();
        if name.as_ref().eq_ignore_ascii_case(b"opml") {
            saw_root = true;
            continue;
        }
        if !name.as_ref().eq_ignore_ascii_case(b"outline") {
            continue;
        }
        let title = attr(&e, "title").or_else(|| attr(&e, "text"));
        let xml_url = attr(&e, "xmlUrl").or_else(|| {
            attr(&e, "url").filter(|_| attr(&e, "type").is_some_and(|t| t.eq_ignore_ascii_case("rss")))
        });
        let looks_like_feed =
            xml_url.is_some() || attr(&e, "type").is_some_and(|t| t.eq_ignore_ascii_case("rss"));
        if looks_like_feed {
            match xml_url.filter(|u| {
                url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.has_host())
            }) {
                Some(url) => {
                    let mut tags: Vec<String> = folders.iter().flatten().cloned().collect();
                    for c in attr(&e, "category")
                        .iter()
                        .flat_map(|c| c.split(',').map(str::to_owned).collect::<Vec<_>>())
                    {
                        for part in c.split('/').map(str::trim).filter(|p| !p.is_empty()) {
                            tags.push(part.to_owned());
                        }
                    }
                    let mut seen = std::collections::HashSet::new();
                    tags.retain(|t| seen.insert(t.clone()));
                    out.feeds.push(Outline {
                        title,
                        url,
                        tags,
                        schedule: attr(&e, "fs:schedule"),
                        enabled: attr(&e, "fs:enabled").is_none_or(|v| v != "false"),
                    });
                }
                None => out.broken += 1,
            }
            if !empty {
                folders.push(None);
            }
        } else if !empty {
            folders.push(title);
        }
    }
    if !saw_root {
        return Err(OpmlError("no <opml> root element".into()));
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Every feed as OPML 2.0.
pub fn export(feeds: &[FeedConfig]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(&format!("<opml version=\"2.0\" xmlns:fs=\"{FS_NS}\">\n"));
    o.push_str("  <head>\n    <title>feedsieve subscriptions</title>\n  </head>\n  <body>\n");
    for f in feeds {
        o.push_str(&format!(
            "    <outline type=\"rss\" text=\"{0}\" title=\"{0}\" xmlUrl=\"{1}\"",
            esc(&f.id),
            esc(&crate::model::redacted_url(&f.url))
        ));
        if !f.tags.is_empty() {
            let cats: Vec<String> =
                f.tags.iter().map(|t| format!("/{}", t.replace([',', '/'], " "))).collect();
            o.push_str(&format!(" category=\"{}\"", esc(&cats.join(","))));
        }
        if let Some(s) = &f.schedule {
            o.push_str(&format!(" fs:schedule=\"{}\"", esc(&s.to_string())));
        }
        if !f.enabled {
            o.push_str(" fs:enabled=\"false\"");
        }
        o.push_str("/>\n");
    }
    o.push_str("  </body>\n</opml>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_folders_become_tags_and_odd_exports_are_accepted() {
        let opml = r#"<?xml version="1.0"?>
<opml>
  <head><title>My reader</title></head>
  <body>
    <outline text="Police">
      <outline text="Europe" title="Europe">
        <outline type="rss" text="Europol" XMLURL="https://europol.example/rss" category="/official,/eu/agency"/>
      </outline>
      <outline type="rss" text="Interpol" xmlurl="https://interpol.example/news.rss"></outline>
    </outline>
    <outline type="rss" text="No URL"/>
    <outline type="rss" text="Bad" xmlUrl="javascript:alert(1)"/>
    <outline type="rss" text="Loose" xmlUrl="https://loose.example/feed"/>
  </body>
</opml>"#;
        let s = parse(opml).unwrap();
        assert_eq!(s.broken, 2);
        assert_eq!(s.feeds.len(), 3);
        assert_eq!(s.feeds[0].url, "https://europol.example/rss");
        assert_eq!(s.feeds[0].tags, ["Police", "Europe", "official", "eu", "agency"]);
        assert_eq!(s.feeds[1].tags, ["Police"]);
        assert_eq!(s.feeds[2].tags, Vec::<String>::new());
        assert_eq!(s.feeds[2].title.as_deref(), Some("Loose"));
    }

    #[test]
    fn empty_bodies_and_non_opml() {
        assert_eq!(parse("<opml version=\"1.0\"><head/><body/></opml>").unwrap().feeds, vec![]);
        assert!(parse("<html><body/></html>").is_err());
        assert!(parse("<opml><body><outline").is_err());
    }
}
