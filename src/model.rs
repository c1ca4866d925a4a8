//! Plain types shared by every stage of the pipeline.
//!
//! Nothing here does I/O, and nothing here imports the rest of the crate: this is the
//! bottom of the house. Stages talk to each other only through these types, so a test
//! can build any of them by hand and drive one stage alone. The store takes and
//! returns them too (a feed's state row, a topic's entries, matches, ingest jobs),
//! whichever engine is behind it.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};

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
    /// The WebSub hub the feed advertises (`<link rel="hub">`), and its self URL
    /// (`rel="self"`), the topic to subscribe to at that hub.
    pub hub: Option<String>,
    pub self_url: Option<String>,
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

/// A time as the store keeps it: Unix seconds.
pub fn ts(d: DateTime<Utc>) -> i64 {
    d.timestamp()
}

/// A stored time back as a date (the epoch for one out of range).
pub fn from_ts(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

/// Permutations in one MinHash signature.
pub const SIG_LEN: usize = 32;

/// A MinHash signature.
pub type Signature = [u32; SIG_LEN];

/// The two signatures of an item's text, and the numbers it mentions: what finds
/// copies of a story in other feeds (computed by [`crate::dedup::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub lead: Signature,
    pub full: Signature,
    /// Hashes of the distinct numbers in the text (the `dedup::MAX_NUMBERS` smallest):
    /// copies of one report quote the same figures, while two events written from
    /// one template ("N arrests in M countries") differ in them.
    pub numbers: Vec<u32>,
    /// What fingerprints made since the second format add (`None` in one stored
    /// before: such an item is compared by the two signatures alone).
    pub marks: Option<Marks>,
}

/// The names and sizes in a fingerprint: what tells a rewritten copy of a story (its
/// names and figures kept, its wording not) from another story told in like words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    /// Word 3-shingles behind the lead and the whole-text signatures (at most
    /// `u16::MAX`): with the signatures, they estimate how much of the shorter text
    /// is in the longer one.
    pub lead_shingles: u16,
    pub full_shingles: u16,
    /// Hashes of the distinct names in the text (the `dedup::MAX_NAMES` smallest): its
    /// capitalised words that do not open a sentence.
    pub names: Vec<u16>,
}

/// An item ready to store: its text extracted, with the plain text the full-text
/// index gets.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub item: Item,
    pub summary_text: String,
    pub content_text: String,
    /// For finding near-duplicate copies in other feeds; `None` for texts too short.
    pub fingerprint: Option<Fingerprint>,
    /// `item.content` is the main text of the item's own page (`full_text`), not
    /// the feed's.
    pub article: bool,
}

/// How items join stories: near-duplicates first seen within `window` seconds whose
/// resemblance (`dedup::resemblance`) reaches `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoryRule {
    pub threshold: f64,
    pub window: i64,
}

impl StoryRule {
    /// The config's defaults (`dedup_threshold`, `dedup_window`).
    pub const DEFAULT: StoryRule = StoryRule { threshold: 0.5, window: 7 * 86_400 };
}

impl Default for StoryRule {
    fn default() -> Self {
        StoryRule::DEFAULT
    }
}

/// One successful poll of one feed, as the store ingests it.
#[derive(Debug, Clone)]
pub struct IngestJob {
    pub feed_id: String,
    /// Only items that are new or changed (the caller counts the rest as unchanged);
    /// one whose key and hash are already stored is counted as unchanged here too, and
    /// a tombstoned key is skipped.
    pub items: Vec<NewItem>,
    pub record: FetchRecord,
    pub rule: StoryRule,
    pub now: DateTime<Utc>,
}

/// What the feed row records after a successful fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchRecord {
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub title: Option<String>,
    pub site_link: Option<String>,
    pub moved_to: Option<String>,
    pub next_due: Option<DateTime<Utc>>,
    /// The feed's RSS `<ttl>` in minutes, if it gives one: kept, so that it still
    /// applies after the 304s that follow this poll.
    pub ttl_minutes: Option<i64>,
    /// Sentence hashes newly found to be this feed's boilerplate.
    pub boilerplate: Vec<u64>,
    /// What the poll's article fetches came to (`full_text` feeds that had new
    /// items); `None` leaves the feed's last report as it is.
    pub articles: Option<ArticleReport>,
    /// The claim this poll was made under (many nodes on PostgreSQL): stored only if
    /// the feed's claim is still this one, so that a poll that outlived its lease
    /// cannot overwrite a newer poll by another node.
    pub claim: Option<i64>,
}

/// A subscriber of one of feedsieve's topic feeds (feedsieve as a WebSub hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSubscription {
    pub topic: String,
    /// The format subscribed to: `atom`, `rss` or `json` (the feed URL's extension).
    pub format: String,
    pub callback: String,
    /// `hub.secret`: the pushes are signed with it.
    pub secret: Option<String>,
    pub expires_at: i64,
}

/// A new version of a topic feed owed to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub format: String,
    pub callback: String,
    pub secret: Option<String>,
    /// The version (the output's ETag) to deliver.
    pub etag: String,
    /// Failed attempts at it so far.
    pub attempts: i64,
}

/// What a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The subscriber took `etag`.
    Ok { etag: String },
    /// It answered 410: the subscription ends.
    Gone,
    /// It failed: tried again at `retry_at`, or given up (`None`) until the next change.
    Failed { error: String, retry_at: Option<i64> },
    /// This node does not hold that version yet: another look soon, not an attempt.
    Later { retry_at: i64 },
}

/// A source feed's subscription at the hub it advertises (feedsieve as a WebSub
/// subscriber).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub feed_id: String,
    pub hub: String,
    /// The feed's self URL: the topic subscribed to.
    pub topic: String,
    /// This subscription's own secret: pushes must be signed with it.
    pub secret: String,
    /// `requested`, `active` (verified), or `unsubscribing`.
    pub state: String,
    pub lease_until: Option<i64>,
    pub requested_at: i64,
    pub error: Option<String>,
}

/// The article pages one poll of a `full_text` feed fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArticleReport {
    /// Pages whose main text became their item's content.
    pub fetched: u32,
    /// Pages that could not be fetched or gave no text: their items keep the feed's.
    pub failed: u32,
    /// New items past the per-poll limit, stored with the feed's text.
    pub skipped: u32,
    /// The last failure, naming the page (without credentials).
    pub error: Option<String>,
}

/// A poll that stored no items, as the feed row records it.
#[derive(Debug, Clone)]
pub enum FeedRecord {
    /// The feed answered 304 (or the like): fetched, nothing new.
    NotModified {
        feed_id: String,
        status: u16,
        now: DateTime<Utc>,
        next_due: Option<DateTime<Utc>>,
        moved_to: Option<String>,
        /// As [`FetchRecord::claim`].
        claim: Option<i64>,
    },
    /// The poll failed: the error, the HTTP status if any, one more failure.
    /// Validators and items are left as they were.
    Failure {
        feed_id: String,
        status: Option<u16>,
        error: String,
        now: DateTime<Utc>,
        next_due: Option<DateTime<Utc>>,
        /// As [`FetchRecord::claim`].
        claim: Option<i64>,
    },
}

impl FeedRecord {
    pub fn feed_id(&self) -> &str {
        match self {
            FeedRecord::NotModified { feed_id, .. } | FeedRecord::Failure { feed_id, .. } => feed_id,
        }
    }

    pub fn claim(&self) -> Option<i64> {
        match self {
            FeedRecord::NotModified { claim, .. } | FeedRecord::Failure { claim, .. } => *claim,
        }
    }
}

/// The counts of one feed's ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// A feed's stored state: validators for the next request and health for `status`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FeedRow {
    pub id: String,
    pub url: String,
    pub title: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_fetch: Option<i64>,
    pub last_status: Option<i64>,
    pub error: Option<String>,
    pub failures: i64,
    pub next_due: Option<i64>,
    pub moved_to: Option<String>,
    pub items: i64,
    /// The node polling the feed now, and until when it may (PostgreSQL; a claim
    /// whose time has passed is void).
    pub claimed_by: Option<String>,
    pub claim_until: Option<i64>,
    /// The RSS `<ttl>` of the feed's last 200, in minutes.
    pub ttl_minutes: Option<i64>,
    /// Article pages (`full_text`) that failed in the last poll that fetched any,
    /// and the last failure.
    pub article_failures: i64,
    pub article_error: Option<String>,
}

impl FeedRow {
    /// What is wrong with the feed, for a person: the last poll's error, else the
    /// article pages (`full_text`) that failed in the last poll that fetched any.
    pub fn problem(&self) -> Option<String> {
        self.error.clone().or_else(|| {
            (self.article_failures > 0).then(|| {
                format!(
                    "{} article page{} failed: {}",
                    self.article_failures,
                    if self.article_failures == 1 { "" } else { "s" },
                    self.article_error.as_deref().unwrap_or("?")
                )
            })
        })
    }
}

/// What a node asks of [`FeedRow`]s it claims (see `Store::claim`).
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub node: &'a str,
    pub now: i64,
    /// Only feeds due by then (their `next_due` unset or not later); `None`: whatever
    /// their due time.
    pub due_by: Option<i64>,
    /// The end of the lease.
    pub until: i64,
}

/// A feed claimed by a node: its state and the claim's token (`None` where the
/// engine has no claims: SQLite).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub row: FeedRow,
    pub token: Option<i64>,
    /// The feed was claimed by another node whose lease had run out.
    pub taken_over: bool,
}

/// A node (a `feedsieve run` process) as the database knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    pub node: String,
    /// Unix seconds.
    pub started: i64,
    pub last_seen: i64,
    /// Feeds it holds unexpired claims on.
    pub claimed: i64,
    /// A digest of its config file: nodes that differ are warned of.
    #[serde(skip)]
    pub config: String,
}

/// `rows` by feed id (lookups per configured feed stay linear in the feed count).
pub fn rows_by_id(rows: &[FeedRow]) -> std::collections::HashMap<&str, &FeedRow> {
    rows.iter().map(|r| (r.id.as_str(), r)).collect()
}

/// One item matched by a topic query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub item_id: i64,
    pub story_id: i64,
    /// Higher is better (the full-text engine's relevance; 0 for topics without a
    /// query).
    pub score: f64,
    pub sort_date: i64,
}

/// Which items a topic query looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Items stored or corrected since the last curation.
    Pending,
    /// Every stored item (backfill).
    All,
}

/// A topic as the store selects it: the query tree (each engine renders it for its
/// own full-text search), the exclude tree, and the feeds it draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicFilter {
    /// `None` takes every item.
    pub query: Option<Query>,
    pub exclude: Option<Query>,
    /// Only items of these feeds; `None`: every feed.
    pub feeds: Option<Vec<String>>,
}

/// A story as it appears in a topic output.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    pub story_id: i64,
    pub score: f64,
    pub item: StoredItem,
    /// Other items of the same story: `(feed id, feed title, link)`.
    pub also: Vec<(String, Option<String>, Option<String>)>,
}

/// A stored item as publishing reads it (its HTML sanitised).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    pub id: i64,
    pub feed_id: String,
    pub feed_title: Option<String>,
    pub feed_url: String,
    pub feed_site: Option<String>,
    pub key: String,
    pub link: Option<String>,
    pub title: String,
    pub summary: Option<String>,
    pub content: Option<String>,
    pub authors: Vec<String>,
    pub categories: Vec<String>,
    pub published: Option<i64>,
    pub updated: Option<i64>,
    pub first_seen: i64,
    pub changed_at: i64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    pub items: usize,
    pub stories: usize,
}

/// One line of `topic preview`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PreviewRow {
    pub item_id: i64,
    pub feed_id: String,
    pub link: Option<String>,
    pub score: f64,
    /// Title with matched terms in `[brackets]`.
    pub title: String,
    /// The best passage with matched terms in `[brackets]`.
    pub snippet: String,
    pub date: i64,
    /// Items in the same story, this one included.
    pub sources: i64,
    pub story_id: i64,
}

/// Columns of the full-text index, in index order (what `title:` and the like name).
pub const COLUMNS: [&str; 4] = ["title", "summary", "content", "categories"];

/// A topic query, parsed (`curate::query` parses it; each store engine renders it).
/// Its text form ([`fmt::Display`]) is the canonical query, fully parenthesised with
/// every term quoted: topics are identified by it, so it never changes for a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A word or a quoted phrase; `prefix` for a trailing `*`.
    Term {
        text: String,
        prefix: bool,
    },
    /// `NEAR(a b c, 10)`: the terms within `distance` tokens of each other.
    Near {
        terms: Vec<(String, bool)>,
        distance: Option<u32>,
    },
    /// `title: expr` or `{title summary}: expr`.
    Columns {
        columns: Vec<String>,
        expr: Box<Query>,
    },
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    /// `a NOT b`: matches of `a` that do not match `b`.
    Not(Box<Query>, Box<Query>),
}

/// NEAR's distance when the query gives none (as in SQLite FTS5).
pub const NEAR_DEFAULT: u32 = 10;

impl Query {
    /// Every term of the query (for highlighting what matched), excluding the right
    /// side of `NOT`.
    pub fn positive_terms(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_terms(&mut out);
        out
    }

    fn collect_terms(&self, out: &mut Vec<String>) {
        match self {
            Query::Term { text, prefix } => out.push(term_label(text, *prefix)),
            Query::Near { terms, .. } => out.extend(terms.iter().map(|(t, p)| term_label(t, *p))),
            Query::Columns { expr, .. } => expr.collect_terms(out),
            Query::And(a, b) | Query::Or(a, b) => {
                a.collect_terms(out);
                b.collect_terms(out);
            }
            Query::Not(a, _) => a.collect_terms(out),
        }
    }
}

fn term_label(text: &str, prefix: bool) -> String {
    if prefix { format!("{text}*") } else { text.to_owned() }
}

/// The canonical text: `"border security"`, `("a" OR "b"*)`, `{title} : ("x")`,
/// `NEAR("a" "b", 5)`, which is also SQLite FTS5 syntax.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Term { text, prefix } => write_term(f, text, *prefix),
            Query::Near { terms, distance } => {
                f.write_str("NEAR(")?;
                for (i, (text, prefix)) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write_term(f, text, *prefix)?;
                }
                if let Some(d) = distance {
                    write!(f, ", {d}")?;
                }
                f.write_str(")")
            }
            Query::Columns { columns, expr } => write!(f, "{{{}}} : ({expr})", columns.join(" ")),
            Query::And(a, b) => write!(f, "({a} AND {b})"),
            Query::Or(a, b) => write!(f, "({a} OR {b})"),
            Query::Not(a, b) => write!(f, "({a} NOT {b})"),
        }
    }
}

fn write_term(f: &mut fmt::Formatter<'_>, text: &str, prefix: bool) -> fmt::Result {
    write!(f, "\"{}\"{}", text.replace('"', "\"\""), if prefix { "*" } else { "" })
}

/// Where the store lives: `[daemon] database`, a path (SQLite) or a `postgres://` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(PgTarget),
}

/// A PostgreSQL database to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL as configured (`postgres://user@host:port/db?sslmode=...`); it may
    /// hold a password, so it is only ever shown through [`PgTarget::redacted`].
    pub url: String,
    /// `database_password_file`, resolved: read when connecting.
    pub password_file: Option<std::path::PathBuf>,
}

impl PgTarget {
    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

/// `url` with the password part of its user info (`user:secret@`) taken out.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl Database {
    /// Whether this is a file that does not exist yet (no poll has created it). A
    /// PostgreSQL database always exists as far as feedsieve can tell without asking.
    pub fn is_missing_file(&self) -> bool {
        matches!(self, Database::Sqlite(p) if !p.exists())
    }
}

/// The path, or the URL without its password.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(t) => f.write_str(&t.redacted()),
        }
    }
}

/// As [`fmt::Display`]: never the password.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.redacted())
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl From<&std::path::Path> for Database {
    fn from(p: &std::path::Path) -> Database {
        Database::Sqlite(p.to_owned())
    }
}

impl From<&std::path::PathBuf> for Database {
    fn from(p: &std::path::PathBuf) -> Database {
        Database::Sqlite(p.clone())
    }
}

impl From<std::path::PathBuf> for Database {
    fn from(p: std::path::PathBuf) -> Database {
        Database::Sqlite(p)
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Database {
        d.clone()
    }
}

/// `url` as operators and readers may see it: without a user name or password (a feed
/// URL may carry credentials, `https://user:pass@host/...`, which reach the server and
/// nothing else).
pub fn redacted_url(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    // Only a URL that cannot have credentials refuses these, and it has none.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// As [`redacted_url`], for a URL stored as text; what does not parse is left out.
pub fn redacted_url_text(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| redacted_url(&u))
}

/// A feed's address as a published feed may name it: an http(s) URL without
/// credentials; none for a local file (a path of this machine).
pub fn public_feed_url(url: &str) -> Option<String> {
    url::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https")).map(|u| redacted_url(&u))
}
