//! Plain types shared by every stage of the pipeline.
//!
//! Nothing here does I/O. Stages talk to each other only through these types, so a
//! test can build any of them by hand and drive one stage alone.

use chrono::{DateTime, Utc};

/// One entry of a feed after parsing and normalisation, before it is stored.
///
/// Text fields are already cleaned of characters XML forbids. `summary` and `content`
/// hold HTML as the source sent it (relative URLs not yet resolved, not sanitised):
/// sanitising is a full HTML parse, so the store does it when an item is first
/// published (see [`crate::store::Store::sanitize_published`]). `Default` is an empty
/// item, for tests and benches to fill in what they need; it has no key to store by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    /// The identity of the item within its feed: guid, else canonical link, else a
    /// hash of title and content (see [`crate::dedup::item_key`]).
    pub key: String,
    /// The guid/id the feed gave, if any (never one invented by the parser).
    pub guid: Option<String>,
    /// Absolute link to the original article.
    pub link: Option<String>,
    /// `link` in canonical form (tracking parameters stripped); compared across feeds.
    pub canonical_link: Option<String>,
    /// Plain text.
    pub title: String,
    /// HTML as sent (not sanitised).
    pub summary: Option<String>,
    /// HTML as sent (not sanitised).
    pub content: Option<String>,
    /// Base URL for resolving relative links in `summary` and `content`.
    pub base: Option<String>,
    pub authors: Vec<String>,
    pub categories: Vec<String>,
    /// As the feed claims it; `None` when missing, unparseable or in the future.
    pub published: Option<DateTime<Utc>>,
    /// As the feed claims it; `None` when missing, unparseable or in the future.
    pub updated: Option<DateTime<Utc>>,
    /// Hash of everything the item says, to tell a correction from a repeat.
    pub content_hash: [u8; 16],
}

/// A parsed feed: its own metadata and its items in document order.
#[derive(Debug, Clone, Default)]
pub struct ParsedFeed {
    pub title: Option<String>,
    /// The site the feed belongs to.
    pub site_link: Option<String>,
    /// RSS `<ttl>` in minutes, a hint for scheduling.
    pub ttl_minutes: Option<u32>,
    pub items: Vec<Item>,
    /// Items dropped because the feed repeated a key or exceeded the per-poll cap.
    pub skipped: usize,
}

/// What one poll of one feed came to, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// 200 with a feed: `new` items stored, `updated` corrected in place.
    Fetched { new: usize, updated: usize, unchanged: usize },
    /// 304 (or an unchanged local file): nothing to do.
    NotModified,
    /// Anything else; the message names the cause.
    Failed { error: String },
}

/// The totals of one pass over a set of feeds, printed by `feedsieve poll`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PollSummary {
    pub feeds: usize,
    pub fetched: usize,
    pub not_modified: usize,
    pub failed: usize,
    pub new_items: usize,
    pub updated_items: usize,
    /// `(feed id, error)` for every failed feed.
    pub failures: Vec<(String, String)>,
}

impl PollSummary {
    pub fn add(&mut self, feed_id: &str, outcome: &PollOutcome) {
        self.feeds += 1;
        match outcome {
            PollOutcome::Fetched { new, updated, .. } => {
                self.fetched += 1;
                self.new_items += new;
                self.updated_items += updated;
            }
            PollOutcome::NotModified => self.not_modified += 1,
            PollOutcome::Failed { error } => {
                self.failed += 1;
                self.failures.push((feed_id.to_owned(), error.clone()));
            }
        }
    }
}
