//! Identity: item keys, canonical links, and which items tell the same story.
//!
//! Input: the fields of a parsed item. Output: strings and hashes that the store
//! compares. Pure; nothing here runs SQL (the store asks, this answers).
//!
//! - An item's **key** identifies it within its feed: the guid the feed gave, else its
//!   canonical link, else a hash of title and text. Never anything random: feed-rs
//!   invents a UUID for an entry with neither id nor link, which is why the parser
//!   installs an id generator that yields nothing and the key is derived here.
//! - A **canonical link** is the link with the parts that vary between copies of one
//!   URL removed: scheme and host lower-cased (the `url` crate does that), default port
//!   and fragment dropped, tracking parameters removed, remaining parameters sorted.
//!   Two items from different feeds with the same canonical link are one story.

use sha2::{Digest, Sha256};
use url::Url;

/// Query parameters that only track the reader, never select content.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gclsrc",
    "msclkid",
    "yclid",
    "twclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "ref",
    "ref_src",
    "ref_url",
    "cmpid",
    "campaign_id",
    "ocid",
    "spm",
    "vero_id",
    "wt_mc",
    "wt.mc_id",
    "at_medium",
    "at_campaign",
];

/// Prefixes of tracking parameter families (`utm_source`, `utm_medium`, …).
const TRACKING_PREFIXES: &[&str] = &["utm_", "pk_", "mtm_", "hmb_", "oly_", "__hs", "_branch"];

fn is_tracking(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    TRACKING_PARAMS.contains(&lower.as_str()) || TRACKING_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// The canonical form of an absolute http(s) link; `None` for anything else.
pub fn canonical_link(link: &str) -> Option<String> {
    let mut url = Url::parse(link.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    // The url crate already drops a port that is the scheme's default.
    if let Some(host) = url.host_str().map(|h| h.trim_end_matches('.').to_owned()) {
        let _ = url.set_host(Some(&host));
    }
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if params.is_empty() {
        url.set_query(None);
    } else {
        params.sort();
        url.query_pairs_mut().clear().extend_pairs(params);
    }
    Some(url.to_string())
}

/// The most of a guid kept verbatim as a key; longer ones are hashed.
const MAX_GUID_KEY: usize = 512;

/// The key of an item within its feed: `g:` guid, else `l:` canonical link, else `h:`
/// a hash of title and text.
pub fn item_key(guid: Option<&str>, canonical_link: Option<&str>, title: &str, text: &str) -> String {
    if let Some(g) = guid.map(str::trim).filter(|g| !g.is_empty()) {
        if g.len() <= MAX_GUID_KEY {
            return format!("g:{g}");
        }
        return format!("g#{}", hex(&digest(&[g])[..16]));
    }
    if let Some(l) = canonical_link {
        return format!("l:{l}");
    }
    format!("h:{}", hex(&digest(&[title.trim(), text.trim()])[..16]))
}

/// SHA-256 over the parts, each followed by a NUL so that ("ab","c") != ("a","bc").
pub fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable entry id for a story in published feeds, derived from its representative
/// item's feed and key: the same story keeps it across regenerations and rebuilds.
pub fn entry_id(feed_id: &str, key: &str) -> String {
    let d = digest(&[feed_id, key]);
    let h = hex(&d[..16]);
    format!("urn:uuid:{}-{}-5{}-{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_links() {
        let c = |s| canonical_link(s).unwrap();
        assert_eq!(
            c("HTTPS://Example.ORG:443/a/b?utm_source=x&id=3&utm_medium=rss#top"),
            "https://example.org/a/b?id=3"
        );
        assert_eq!(c("http://example.org:80/x?b=2&a=1&fbclid=zzz&gclid=1"), "http://example.org/x?a=1&b=2");
        assert_eq!(
            c("http://example.org:8080/x?mc_cid=1&mc_eid=2&ref=tw&_ga=3"),
            "http://example.org:8080/x"
        );
        assert_eq!(c("https://example.org./"), "https://example.org/");
        assert_eq!(canonical_link("javascript:alert(1)"), None);
        assert_eq!(canonical_link("/relative"), None);
    }

    #[test]
    fn keys_prefer_guid_then_link_then_hash() {
        assert_eq!(item_key(Some(" g1 "), Some("https://x/"), "t", "c"), "g:g1");
        assert_eq!(item_key(Some(""), Some("https://x/"), "t", "c"), "l:https://x/");
        let h = item_key(None, None, "t", "c");
        assert!(h.starts_with("h:"));
        assert_eq!(h, item_key(None, None, "t", "c"), "deterministic");
        assert_ne!(h, item_key(None, None, "t", "d"));
        let long = "x".repeat(600);
        assert!(item_key(Some(&long), None, "", "").starts_with("g#"));
    }

    #[test]
    fn entry_ids_are_stable_uuids() {
        let a = entry_id("feed", "g:1");
        assert_eq!(a, entry_id("feed", "g:1"));
        assert_ne!(a, entry_id("feed2", "g:1"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
    }
}
