//! The SQLite store: schema, migrations, and every SQL statement.
//!
//! Input: parsed and sanitised items, poll outcomes, topic matches. Output: rows for
//! curation, publishing and status. Nothing here knows HTTP or HTML.
//!
//! Invariants:
//! - One `BEGIN IMMEDIATE` transaction covers a feed poll's items, their FTS rows and
//!   the feed's new validators and status, so a crash can never leave an ETag
//!   recorded for items that were not stored (polls that queue up behind the writer
//!   share one: see [`StoreHandle`]).
//! - An item is stored once per `(feed_id, key)`; the same key with a different content
//!   hash is a correction and updates the row in place (same id, same story).
//! - Every new or corrected item is queued in `pending` in the same transaction, so
//!   curation after a crash still sees it.
//! - Keys of pruned items live on in `tombstones` and are never stored again.
//! - HTML never leaves the store unsanitised: rows hold it as sent until their first
//!   publication sanitises them in place (`sanitized` = 1), and reading a row not
//!   sanitised yet sanitises what it returns.
//!
//! Concurrency: one writer (see [`StoreHandle`], a dedicated thread), readers on their
//! own connections; WAL mode, `synchronous=NORMAL`, a busy timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::dedup;
use crate::model::Item;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the database folder {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Refused rather than repaired: the operator decides what to do with the file.
    #[error("database {} is corrupt or not a SQLite database; it was left untouched", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {} was written by a newer feedsieve (schema version {found}, this one knows {known})", path.display())]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// A [`StoreError::Sqlite`] on the writer, with the database it happened in (a
    /// locked or read-only file is only clear with its path).
    #[error("database {}", path.display())]
    In {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database writer has stopped")]
    Closed,
}

/// Append-only: each entry upgrades the schema by one version (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE feeds (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    title         TEXT,
    site_link     TEXT,
    etag          TEXT,
    last_modified TEXT,
    last_fetch    INTEGER,
    last_success  INTEGER,
    last_status   INTEGER,
    error         TEXT,
    failures      INTEGER NOT NULL DEFAULT 0,
    next_due      INTEGER,
    moved_to      TEXT
) STRICT;

CREATE TABLE stories (
    id         INTEGER PRIMARY KEY,
    first_seen INTEGER NOT NULL
) STRICT;

CREATE TABLE items (
    id             INTEGER PRIMARY KEY,
    feed_id        TEXT NOT NULL REFERENCES feeds(id),
    key            TEXT NOT NULL,
    guid           TEXT,
    link           TEXT,
    canonical_link TEXT,
    title          TEXT NOT NULL,
    summary        TEXT,
    content        TEXT,
    authors        TEXT NOT NULL,
    categories     TEXT NOT NULL,
    published      INTEGER,
    updated        INTEGER,
    first_seen     INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    content_hash   BLOB NOT NULL,
    story_id       INTEGER NOT NULL REFERENCES stories(id),
    UNIQUE (feed_id, key)
) STRICT;
CREATE INDEX items_canonical_link ON items(canonical_link) WHERE canonical_link IS NOT NULL;
CREATE INDEX items_story ON items(story_id);

CREATE VIRTUAL TABLE items_fts USING fts5(
    title, summary, content, categories,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE pending (item_id INTEGER PRIMARY KEY) STRICT;

CREATE TABLE topics (
    id         TEXT PRIMARY KEY,
    signature  TEXT NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

CREATE TABLE topic_stories (
    topic_id   TEXT NOT NULL,
    story_id   INTEGER NOT NULL,
    item_id    INTEGER NOT NULL,
    score      REAL NOT NULL,
    sort_date  INTEGER NOT NULL,
    matched_at INTEGER NOT NULL,
    PRIMARY KEY (topic_id, story_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX topic_stories_by_date ON topic_stories(topic_id, sort_date DESC);
CREATE INDEX topic_stories_item ON topic_stories(item_id);

CREATE TABLE tombstones (
    feed_id   TEXT NOT NULL,
    key       TEXT NOT NULL,
    pruned_at INTEGER NOT NULL,
    PRIMARY KEY (feed_id, key)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- Near-duplicate stories: a fingerprint per item, LSH band keys of the items inside
-- the comparison window (ids grow with first_seen, so the window is an id range),
-- and each feed's boilerplate sentences.
ALTER TABLE items ADD COLUMN fingerprint BLOB;
CREATE TABLE item_bands (
    key     INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    PRIMARY KEY (key, item_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE feed_boilerplate (
    feed_id TEXT NOT NULL,
    hash    INTEGER NOT NULL,
    PRIMARY KEY (feed_id, hash)
) STRICT, WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
"#,
    r#"
-- Merge full-text segments less eagerly on insert (16 segments per level instead of
-- 4): a poll commits a few items at a time, and eager merging made each commit's cost
-- grow with the index. Maintenance merges in bulk instead (see Store::prune).
INSERT INTO items_fts (items_fts, rank) VALUES ('automerge', 16);
"#,
    r#"
-- HTML is sanitised when it is first published, not when it is stored: most items
-- are never in a topic. `sanitized` = 0 marks summary and content still as the feed
-- sent them (control characters removed, sizes capped); `base` is what relative URLs
-- in them resolve against. Rows stored before this were sanitised already.
ALTER TABLE items ADD COLUMN base TEXT;
ALTER TABLE items ADD COLUMN sanitized INTEGER NOT NULL DEFAULT 1;
"#,
    r#"
-- The full-text index keeps no copy of the text it indexes: that copy was a third of
-- the database and of what each commit wrote. Items keep their markup, and
-- `topic preview` extracts the text again for the few rows it highlights. Deleting
-- rows from an index without content needs `contentless_delete` (SQLite 3.43).
CREATE VIRTUAL TABLE items_fts_new USING fts5(
    title, summary, content, categories,
    tokenize = 'unicode61 remove_diacritics 2', content = '', contentless_delete = 1
);
INSERT INTO items_fts_new (rowid, title, summary, content, categories)
    SELECT rowid, title, summary, content, categories FROM items_fts;
DROP TABLE items_fts;
ALTER TABLE items_fts_new RENAME TO items_fts;
INSERT INTO items_fts (items_fts, rank) VALUES ('automerge', 16);
"#,
    r#"
-- What topic matching reads of each matching item, so it reads this index and not the
-- row: a row's later columns sit behind its summary and content, most often in
-- overflow pages (8,221 matches over 1M items: 60 % of the time was copying them).
CREATE INDEX items_match ON items(id, story_id, first_seen, published, feed_id);
"#,
    r#"
-- Content hashes are XXH3-128 from here on (dedup::content_hash); the items stored
-- before keep their SHA-256 ones, and a hash that differs is checked against the old
-- function too (dedup::legacy_content_hash) before the item counts as changed.
INSERT INTO meta (key, value) SELECT 'legacy_hashes_below', coalesce(max(id), 0) + 1 FROM items;
"#,
];

pub fn ts(d: DateTime<Utc>) -> i64 {
    d.timestamp()
}

pub fn from_ts(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

/// An item ready to store: sanitised, with the plain text the index gets.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub item: Item,
    pub summary_text: String,
    pub content_text: String,
    /// For finding near-duplicate copies in other feeds; `None` for texts too short.
    pub fingerprint: Option<dedup::Fingerprint>,
}

/// How items join stories: near-duplicates within `window` seconds of first-seen
/// time whose [`dedup::resemblance`] reaches `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoryRule {
    pub threshold: f64,
    pub window: i64,
}

impl Default for StoryRule {
    fn default() -> Self {
        StoryRule { threshold: dedup::DEFAULT_THRESHOLD, window: 7 * 86_400 }
    }
}

/// One successful poll of one feed, as [`Store::ingest`] stores it.
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

/// Parts of storing that a build with the `bench-bounds` feature leaves out, so that
/// `bench/run.py --bounds` can time what each part of a cold poll costs: the
/// environment variable `FEEDSIEVE_BENCH_SKIP` lists them, comma-separated. `fts`: no
/// full-text rows (so topic queries match nothing, and filing into those topics
/// costs nothing either); `bands`: no near-duplicate search keys written (they are still looked up,
/// and the keys of the pass still in memory still find copies); `store`: nothing of a
/// successful poll stored at all (its items are counted as new). Such a build keeps
/// an incomplete database: it measures, it is never a feedsieve to run. Without the
/// feature, [`skip::parts`] is a constant "nothing" and the environment is not read.
mod skip {
    use std::sync::OnceLock;

    #[derive(Default)]
    pub struct Parts {
        pub fts: bool,
        pub bands: bool,
        pub store: bool,
    }

    pub fn parts() -> &'static Parts {
        static NOTHING: Parts = Parts { fts: false, bands: false, store: false };
        static PARTS: OnceLock<Parts> = OnceLock::new();
        if !cfg!(feature = "bench-bounds") {
            return &NOTHING;
        }
        PARTS.get_or_init(|| {
            let mut p = Parts::default();
            let list = std::env::var("FEEDSIEVE_BENCH_SKIP").unwrap_or_default();
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part {
                    "fts" => p.fts = true,
                    "bands" => p.bands = true,
                    "store" => p.store = true,
                    other => eprintln!("FEEDSIEVE_BENCH_SKIP: no part {other:?} (fts, bands, store)"),
                }
            }
            eprintln!("bench-bounds build: skipping fts {}, bands {}, store {}", p.fts, p.bands, p.store);
            p
        })
    }
}

/// A full-text index write, deferred to the end of the transaction.
enum FtsOp<'a> {
    Delete(i64),
    Insert(i64, &'a NewItem),
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
    /// Sentence hashes newly found to be this feed's boilerplate.
    pub boilerplate: Vec<u64>,
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
    },
    /// The poll failed: the error, the HTTP status if any, one more failure.
    /// Validators and items are left as they were.
    Failure {
        feed_id: String,
        status: Option<u16>,
        error: String,
        now: DateTime<Utc>,
        next_due: Option<DateTime<Utc>>,
    },
}

impl FeedRecord {
    fn apply(&self, conn: &Connection) -> Result<(), StoreError> {
        match self {
            FeedRecord::NotModified { feed_id, status, now, next_due, moved_to } => conn
                .prepare_cached(
                    "UPDATE feeds SET last_fetch = ?2, last_success = ?2, last_status = ?3, error = NULL,
                         failures = 0, next_due = ?4, moved_to = ?5 WHERE id = ?1",
                )?
                .execute(params![feed_id, ts(*now), status, next_due.map(ts), moved_to])?,
            FeedRecord::Failure { feed_id, status, error, now, next_due } => conn
                .prepare_cached(
                    "UPDATE feeds SET last_fetch = ?2, last_status = ?3, error = ?4, failures = failures + 1,
                         next_due = ?5 WHERE id = ?1",
                )?
                .execute(params![feed_id, ts(*now), status, error, next_due.map(ts)])?,
        };
        Ok(())
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
    /// Higher is better (the negated FTS5 bm25 rank; 0 for topics without a query).
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

/// A compiled topic, in the store's terms.
#[derive(Debug, Clone)]
pub struct TopicFilter {
    /// FTS5 MATCH expression; `None` takes every item.
    pub fts: Option<String>,
    pub exclude: Option<String>,
    /// Only items of these feeds; `None`: every feed.
    pub feeds: Option<Vec<String>>,
}

impl TopicFilter {
    /// The MATCH expression for a topic with a query: the query without the exclude.
    fn match_expr(&self) -> Option<String> {
        let q = self.fts.as_ref()?;
        Some(match &self.exclude {
            Some(ex) => format!("({q}) NOT ({ex})"),
            None => q.clone(),
        })
    }
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

/// An item of a feed the store holds: its content hash, and whether that is of the
/// kind items stored before schema version 7 have ([`dedup::legacy_content_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub hash: [u8; 16],
    pub legacy: bool,
}

impl Known {
    /// Stored row `id`'s content `hash`; `legacy_below` is [`legacy_hashes_below`].
    fn of(id: i64, hash: &[u8], legacy_below: i64) -> Known {
        Known { hash: <[u8; 16]>::try_from(hash).unwrap_or_default(), legacy: id < legacy_below }
    }

    /// Whether `item` says what the stored item said.
    pub fn same_as(&self, item: &Item) -> bool {
        self.hash == item.content_hash || (self.legacy && self.hash == dedup::legacy_content_hash(item))
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Band keys of items stored since the last [`Store::flush_bands`], by key: the
    /// item's story and fingerprint. Band keys are random, so writing them row by row
    /// with each feed's transaction dirtied a page per key; they are written sorted,
    /// in bulk, once per pass instead. They are derived data: a crash before the flush
    /// loses nothing, the next flush recomputes them from the stored fingerprints.
    unflushed: BandMap,
    /// Whether `unflushed` holds every item stored after the last flush (false after
    /// a crash left some behind: the next flush then reads them back from the table).
    unflushed_complete: bool,
    /// Which band keys `item_bands` may hold.
    band_filter: BandFilterState,
    /// Items in one transaction from which a released band filter is built again.
    band_filter_from: usize,
}

/// Items by LSH band key, in the order they were added. Most keys find one item, so
/// there is no list per key: each entry links to the next one under its key. Keys are
/// hashes of third-party text, hence a keyed hasher, but a fast one: a cold poll
/// adds half a million keys and looks up as many.
#[derive(Default)]
struct BandMap {
    /// The first and last entry under each key.
    keys: HashMap<i64, (u32, u32), foldhash::fast::RandomState>,
    entries: Vec<BandEntry>,
}

struct BandEntry {
    key: i64,
    banded: Banded,
    /// The next entry under the same key, if any.
    next: Option<u32>,
}

impl BandMap {
    fn insert(&mut self, key: i64, banded: Banded) {
        // Never past u32: the keys are flushed at MAX_UNFLUSHED_KEYS, long before.
        let Ok(at) = u32::try_from(self.entries.len()) else { return };
        self.entries.push(BandEntry { key, banded, next: None });
        match self.keys.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (_, last) = o.get_mut();
                self.entries[*last as usize].next = Some(at);
                *last = at;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((at, at));
            }
        }
    }

    /// The items under `key`, first added first.
    fn get(&self, key: i64) -> impl Iterator<Item = &Banded> {
        let mut at = self.keys.get(&key).map(|(first, _)| *first);
        std::iter::from_fn(move || {
            let e = &self.entries[at? as usize];
            at = e.next;
            Some(&e.banded)
        })
    }

    /// Distinct keys.
    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every (key, item id), in the order added.
    fn pairs(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.entries.iter().map(|e| (e.key, e.banded.item))
    }

    fn append(&mut self, other: BandMap) {
        self.keys.reserve(other.keys.len());
        self.entries.reserve(other.entries.len());
        for e in other.entries {
            self.insert(e.key, e.banded);
        }
    }
}

/// An item found by a band key: its id, story and fingerprint.
#[derive(Clone)]
struct Banded {
    item: i64,
    story: i64,
    fp: std::sync::Arc<dedup::Fingerprint>,
}

/// What a [`Store`] knows of the band keys in `item_bands`.
enum BandFilterState {
    /// Nothing yet, or the filter went stale: built from the table when next needed.
    Unknown,
    /// Dropped while the daemon is idle: built again for the first transaction that
    /// stores [`BandFilter::WORTH_BUILDING`] items or more.
    Released,
    Built(BandFilter),
    /// The table holds more than [`BandFilter::MAX_KEYS`] keys: every lookup seeks it.
    /// Until the next prune, which may shrink it.
    TooLarge,
}

/// A Bloom filter over the band keys stored in `item_bands`: finding a new item's
/// near-duplicates seeks the table only for the keys that may be there. Most keys of
/// most items are in no other item, and each of an item's [`dedup::BANDS`] seeks read
/// a random page of a large index: at 20,000 items they were a fifth of the writer's
/// time in a cold poll. Keys are hashes already, so their bits serve as the filter's
/// hashes. False positives cost one seek; there are no false negatives, as long as the
/// filter has every key the table has: it is built from the table, takes the keys each
/// flush of its own writes, and is rebuilt when the count of flushes in `meta` shows
/// another connection's.
struct BandFilter {
    bits: Vec<u64>,
    /// The filter is rebuilt, larger, before it holds more keys than this.
    capacity: usize,
    keys: usize,
    /// The `band_flushes` count (in `meta`) that the filter has every key of.
    flushes: i64,
}

impl BandFilter {
    /// Bits per key: with [`Self::PROBES`] probes, about 3 % false positives at
    /// capacity (a new item's 24 lookups then seek the table about 0.7 times).
    const BITS_PER_KEY: usize = 8;
    const PROBES: usize = 3;
    const MIN_CAPACITY: usize = 1 << 18;
    /// 16M keys: a filter of 16 to 24 MiB. Larger tables are seeked key by key.
    const MAX_KEYS: usize = 1 << 24;
    /// Items in one transaction from which a released filter is built again: each new
    /// item saves about [`dedup::BANDS`] seeks, and building reads the whole table
    /// (4.8M keys in about half a second). Smaller groups, an idle daemon's usual, seek.
    const WORTH_BUILDING: usize = 500;

    /// Room for the table's `keys` and half as many again (the daemon keeps the filter
    /// while it runs: 4.8M keys, 10,000 feeds' items in a week, take 7 MiB).
    fn new(keys: usize, flushes: i64) -> BandFilter {
        let capacity = (keys + keys / 2).max(Self::MIN_CAPACITY);
        let words = (capacity * Self::BITS_PER_KEY).div_ceil(64);
        BandFilter { bits: vec![0; words], capacity, keys: 0, flushes }
    }

    /// The bit positions of a key: double hashing over its two halves, each hash
    /// mapped onto the bits by a multiply and shift (no power-of-two size needed).
    fn positions(&self, key: i64) -> [usize; Self::PROBES] {
        let bits = (self.bits.len() * 64) as u128;
        let (h1, h2) = (key as u64, (key as u64).rotate_left(32) | 1);
        std::array::from_fn(|i| {
            let h = h1.wrapping_add((i as u64).wrapping_mul(h2));
            ((u128::from(h) * bits) >> 64) as usize
        })
    }

    fn insert(&mut self, key: i64) {
        for p in self.positions(key) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.keys += 1;
    }

    fn may_contain(&self, key: i64) -> bool {
        self.positions(key).iter().all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

/// A value in `meta`, if it was ever set ([`set_meta`]).
fn meta(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// The filter for the band keys `item_bands` holds now, built from the table if
/// there is none or another connection wrote keys since; `None` if the table is too
/// large for one, or the filter was released and the `items` about to be stored are
/// fewer than `worth` ([`BandFilter::WORTH_BUILDING`] but in tests).
fn band_filter<'s>(
    conn: &Connection,
    state: &'s mut BandFilterState,
    items: usize,
    worth: usize,
) -> Result<Option<&'s BandFilter>, StoreError> {
    let flushes = meta(conn, "band_flushes")?.unwrap_or(0);
    if matches!(state, BandFilterState::Built(f) if f.flushes != flushes) {
        *state = BandFilterState::Unknown;
    }
    if matches!(state, BandFilterState::Released) && items >= worth {
        *state = BandFilterState::Unknown;
    }
    if matches!(state, BandFilterState::Unknown) {
        let keys: i64 = conn.query_row("SELECT count(*) FROM item_bands", [], |r| r.get(0))?;
        *state = if keys as usize > BandFilter::MAX_KEYS {
            BandFilterState::TooLarge
        } else {
            let mut f = BandFilter::new(keys as usize, flushes);
            let mut stmt = conn.prepare("SELECT key FROM item_bands")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                f.insert(r.get(0)?);
            }
            BandFilterState::Built(f)
        };
    }
    Ok(match state {
        BandFilterState::Built(f) => Some(f),
        _ => None,
    })
}

impl Store {
    fn new(conn: Connection, path: PathBuf) -> Store {
        Store {
            conn,
            path,
            unflushed: BandMap::default(),
            unflushed_complete: false,
            band_filter: BandFilterState::Unknown,
            band_filter_from: BandFilter::WORTH_BUILDING,
        }
    }

    /// Opens (creating if needed) the database and brings its schema up to date.
    ///
    /// # Errors
    /// If the folder cannot be created, the file is not a database or is damaged
    /// ([`StoreError::Corrupt`], and nothing is written to it), or it was written by
    /// a newer version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| open_error(path, source))?;
        let mut store = Store::new(conn, path.to_owned());
        store.configure().map_err(|source| open_error(path, source))?;
        // Reading the schema now finds a damaged first page before anything is written.
        store
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|source| open_error(path, source))?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database for reading only (status, export, preview).
    ///
    /// # Errors
    /// If the file does not exist or is not a feedsieve database.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |source| open_error(path, source);
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        let store = Store::new(conn, path.to_owned());
        let version = store.user_version().map_err(open_err)?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        if version < MIGRATIONS.len() as i64 {
            // Older schema: let the writer migrate it first.
            drop(store);
            return Store::open(path).and_then(|_| Store::open_read_only(path));
        }
        Ok(store)
    }

    /// A private in-memory database (query checks, tests).
    ///
    /// # Errors
    /// Only if SQLite itself fails.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        let mut store = Store::new(conn, PathBuf::from(":memory:"));
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(Duration::from_secs(5))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // More distinct statements than rusqlite's default 16 run on every pass.
        self.conn.set_prepared_statement_cache_capacity(64);
        // Plans that do not depend on bound values: without this, a query on the
        // partial canonical-link index was prepared again for every link it looked up.
        self.conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        Ok(())
    }

    fn user_version(&self) -> rusqlite::Result<i64> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.user_version()?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            if version > 0 {
                // A fresh database is no news; an upgrade can take minutes (a
                // rebuilt index), so say what is happening.
                tracing::info!(database = %self.path.display(), "upgrading the schema to version {}", i + 1);
            }
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Checks that SQLite's FTS5 accepts a MATCH expression.
    ///
    /// # Errors
    /// SQLite's message when it does not.
    pub fn check_fts(&self, expr: &str) -> Result<(), String> {
        self.conn
            .query_row("SELECT count(*) FROM items_fts WHERE items_fts MATCH ?1", [expr], |_| Ok(()))
            .map_err(|e| e.to_string())
    }

    /// Makes the feed rows match the configured feeds (id and URL). A feed whose URL
    /// changed loses its validators, which belonged to the old URL. Rows of feeds no
    /// longer configured are kept with their items.
    ///
    /// # Errors
    /// On database failure.
    pub fn sync_feeds<'a>(
        &mut self,
        feeds: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO feeds (id, url) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET url = excluded.url, etag = NULL, last_modified = NULL,
                     moved_to = NULL
                 WHERE feeds.url <> excluded.url",
            )?;
            for (id, url) in feeds {
                upsert.execute(params![id, url])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A feed's stored state, with its item count.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed(&self, id: &str) -> Result<Option<FeedRow>, StoreError> {
        Ok(self.feeds_where("WHERE f.id = ?1", [id], true)?.into_iter().next())
    }

    /// A feed's stored state without its item count (`items` is 0): what a poll needs,
    /// without counting the feed's items on every poll.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed_state(&self, id: &str) -> Result<Option<FeedRow>, StoreError> {
        Ok(self.feeds_where("WHERE f.id = ?1", [id], false)?.into_iter().next())
    }

    /// Every feed row, by id, with its item count.
    ///
    /// # Errors
    /// On database failure.
    pub fn feeds(&self) -> Result<Vec<FeedRow>, StoreError> {
        self.feeds_where("", [], true)
    }

    /// Every feed row without item counts (`items` is 0), for the scheduler and
    /// `/metrics`, which run often.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed_states(&self) -> Result<Vec<FeedRow>, StoreError> {
        self.feeds_where("", [], false)
    }

    fn feeds_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
        counts: bool,
    ) -> Result<Vec<FeedRow>, StoreError> {
        let count = if counts { "(SELECT count(*) FROM items i WHERE i.feed_id = f.id)" } else { "0" };
        let sql = format!(
            "SELECT f.id, f.url, f.title, f.etag, f.last_modified, f.last_fetch, f.last_status, f.error,
                    f.failures, f.next_due, f.moved_to, {count}
             FROM feeds f {filter} ORDER BY f.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(p, |r| {
            Ok(FeedRow {
                id: r.get(0)?,
                url: r.get(1)?,
                title: r.get(2)?,
                etag: r.get(3)?,
                last_modified: r.get(4)?,
                last_fetch: r.get(5)?,
                last_status: r.get(6)?,
                error: r.get(7)?,
                failures: r.get(8)?,
                next_due: r.get(9)?,
                moved_to: r.get(10)?,
                items: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Of `keys` (the items a feed lists now), those already stored with their content
    /// hashes, and those tombstoned (as `None`): what a poll needs to tell new,
    /// corrected and repeated items apart before doing any expensive work on them.
    /// Point lookups of the listed keys, not a scan of the feed's history, so the cost
    /// follows the feed document, not how long the feed has been stored.
    ///
    /// # Errors
    /// On database failure.
    pub fn known_keys<'k>(
        &self,
        feed_id: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<HashMap<String, Option<Known>>, StoreError> {
        let mut out = HashMap::new();
        let legacy_below = legacy_hashes_below(&self.conn)?;
        let mut stored =
            self.conn.prepare_cached("SELECT id, content_hash FROM items WHERE feed_id = ?1 AND key = ?2")?;
        let mut tombstoned =
            self.conn.prepare_cached("SELECT 1 FROM tombstones WHERE feed_id = ?1 AND key = ?2")?;
        for key in keys {
            if out.contains_key(key) {
                continue;
            }
            let row =
                stored.query_row([feed_id, key], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)));
            if let Some((id, hash)) = row.optional()? {
                out.insert(key.to_owned(), Some(Known::of(id, &hash, legacy_below)));
            } else if tombstoned.exists([feed_id, key])? {
                out.insert(key.to_owned(), None);
            }
        }
        Ok(out)
    }

    /// A feed's known boilerplate sentences (hashes from [`dedup::sentences`]).
    ///
    /// # Errors
    /// On database failure.
    pub fn boilerplate(&self, feed_id: &str) -> Result<std::collections::HashSet<u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT hash FROM feed_boilerplate WHERE feed_id = ?1")?;
        let rows = stmt.query_map([feed_id], |r| r.get::<_, i64>(0).map(|h| h as u64))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores one successful poll of one feed in one transaction: new items, corrected
    /// items, their index rows, and the feed's validators and health.
    ///
    /// # Errors
    /// On database failure, after which nothing of this poll is stored.
    pub fn ingest(&mut self, job: &IngestJob) -> Result<IngestCounts, StoreError> {
        let counts = self.ingest_group(&[job])?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    /// Stores the polls of several feeds in one transaction: all of them or none.
    ///
    /// Full-text rows are written last, after every item row: FTS5 flushes its
    /// in-memory index at each statement that opens a savepoint, so interleaving them
    /// with item writes turned each item into its own index segment. One group is one
    /// segment and one commit, however many feeds answered at once.
    ///
    /// # Errors
    /// On database failure, after which nothing of the group is stored.
    pub fn ingest_group(&mut self, group: &[&IngestJob]) -> Result<Vec<IngestCounts>, StoreError> {
        if skip::parts().store {
            return Ok(group
                .iter()
                .map(|j| IngestCounts { new: j.items.len(), ..IngestCounts::default() })
                .collect());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut all = Vec::with_capacity(group.len());
        // Band keys of this transaction's new items join `unflushed` only once it commits.
        let mut fresh = BandMap::default();
        let mut fts: Vec<FtsOp<'_>> = Vec::new();
        let items = group.iter().map(|j| j.items.len()).sum();
        let stored = StoredBands {
            unflushed: &self.unflushed,
            filter: band_filter(&tx, &mut self.band_filter, items, self.band_filter_from)?,
        };
        for job in group {
            let feed_id = job.feed_id.as_str();
            let record = &job.record;
            let now = ts(job.now);
            let mut counts = IngestCounts::default();
            {
                let mut add = tx.prepare_cached(
                    "INSERT OR IGNORE INTO feed_boilerplate (feed_id, hash) VALUES (?1, ?2)",
                )?;
                for h in &record.boilerplate {
                    add.execute(params![feed_id, *h as i64])?;
                }
            }
            for n in &job.items {
                match upsert_item(&tx, feed_id, n, job.rule, now, stored, &mut fresh, &mut fts)? {
                    Upsert::New => counts.new += 1,
                    Upsert::Updated => counts.updated += 1,
                    Upsert::Unchanged | Upsert::Tombstoned => counts.unchanged += 1,
                }
            }
            tx.prepare_cached(
                "UPDATE feeds SET etag = ?2, last_modified = ?3, last_fetch = ?4, last_success = ?4,
                     last_status = ?5, error = NULL, failures = 0, title = COALESCE(?6, title),
                     site_link = COALESCE(?7, site_link), moved_to = ?8, next_due = ?9
                 WHERE id = ?1",
            )?
            .execute(params![
                feed_id,
                record.etag,
                record.last_modified,
                now,
                record.status,
                record.title,
                record.site_link,
                record.moved_to,
                record.next_due.map(ts),
            ])?;
            all.push(counts);
        }
        if skip::parts().fts {
            fts.clear();
        }
        {
            let mut delete = tx.prepare_cached("DELETE FROM items_fts WHERE rowid = ?1")?;
            let mut insert = tx.prepare_cached(&index_insert("items_fts"))?;
            for op in &fts {
                match op {
                    FtsOp::Delete(id) => delete.execute([id]).map(drop)?,
                    FtsOp::Insert(id, n) => index_row(
                        &mut insert,
                        *id,
                        &n.item.title,
                        &n.summary_text,
                        &n.content_text,
                        &n.item.categories,
                    )?,
                };
            }
        }
        tx.commit()?;
        self.unflushed.append(fresh);
        // The group is committed: a failed flush must not report it as failed (its
        // polls would be stored again as "unchanged"). The keys stay in memory and
        // the next flush writes them.
        if self.unflushed.len() > MAX_UNFLUSHED_KEYS
            && let Err(e) = self.flush_bands()
        {
            tracing::warn!(error = %crate::error_chain(&e), "writing near-duplicate search keys failed; will retry");
        }
        Ok(all)
    }

    /// Records a poll that stored no items on its feed's row.
    ///
    /// # Errors
    /// On database failure.
    pub fn record(&mut self, record: &FeedRecord) -> Result<(), StoreError> {
        record.apply(&self.conn)
    }

    /// Records polls that stored no items (304s and failures) in one transaction: one
    /// commit per feed made a warm pass over 100,000 feeds 100,000 transactions.
    ///
    /// # Errors
    /// On database failure; nothing of the group is recorded then.
    pub fn record_group(&mut self, records: &[&FeedRecord]) -> Result<Vec<()>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for r in records {
            r.apply(&tx)?;
        }
        tx.commit()?;
        Ok(vec![(); records.len()])
    }

    /// Runs `f` inside one write transaction (curation: matches, topic rows, queue).
    ///
    /// # Errors
    /// Whatever `f` or the commit returns; on error nothing is applied.
    pub fn write<R>(
        &mut self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut w = Writer { tx };
        let r = f(&mut w)?;
        w.tx.commit()?;
        Ok(r)
    }

    /// Matches of a topic filter over stored items, best first within equal dates.
    ///
    /// # Errors
    /// On database failure or an FTS expression SQLite rejects.
    pub fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        query_matches(&self.conn, filter, scope)
    }

    /// The topic's entries for publishing, newest first.
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_entries(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<EntryRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT ts.story_id, ts.score, {ITEM_COLUMNS}
             FROM topic_stories ts JOIN items i ON i.id = ts.item_id JOIN feeds f ON f.id = i.feed_id
             WHERE ts.topic_id = ?1 AND ts.sort_date >= ?2
             ORDER BY ts.sort_date DESC, ts.score DESC, ts.story_id DESC
             LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![topic_id, since.unwrap_or(i64::MIN), limit as i64], |r| {
            Ok(EntryRow { story_id: r.get(0)?, score: r.get(1)?, item: stored_item(r, 2)?, also: Vec::new() })
        })?;
        let mut entries: Vec<EntryRow> = rows.collect::<Result<_, _>>()?;
        let mut also = self.conn.prepare_cached(
            "SELECT i.feed_id, f.title, i.link FROM items i JOIN feeds f ON f.id = i.feed_id
             WHERE i.story_id = ?1 AND i.id <> ?2 ORDER BY i.first_seen, i.id",
        )?;
        for e in &mut entries {
            e.also = also
                .query_map(params![e.story_id, e.item.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
        }
        Ok(entries)
    }

    /// Sanitises, once, the HTML of the items a topic shows: what [`Store::topic_entries`]
    /// would return, where not sanitised yet. Returns the number of items sanitised.
    ///
    /// # Errors
    /// On database failure.
    pub fn sanitize_published(
        &mut self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<usize, StoreError> {
        let shown = serde_json::to_string(&self.topic_output_items(topic_id, limit, since)?)
            .unwrap_or_else(|_| "[]".into());
        // (id, summary, content, base)
        type Raw = (i64, Option<String>, Option<String>, Option<String>);
        let raw: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT id, summary, content, base FROM items
                 WHERE id IN (SELECT value FROM json_each(?1)) AND sanitized = 0",
            )?
            .query_map([shown], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        if raw.is_empty() {
            return Ok(0); // the usual pass: nothing new in the topic, no transaction
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut update = tx
                .prepare_cached("UPDATE items SET summary = ?2, content = ?3, sanitized = 1 WHERE id = ?1")?;
            for (id, summary, content, base) in &raw {
                let clean = |h: &Option<String>| crate::parse::sanitize_field(h.as_deref(), base.as_deref());
                update.execute(params![id, clean(summary), clean(content)])?;
            }
        }
        tx.commit()?;
        Ok(raw.len())
    }

    /// Number of stories in each topic.
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT topic_id, count(*) FROM topic_stories GROUP BY topic_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Total stored items.
    ///
    /// # Errors
    /// On database failure.
    pub fn item_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?)
    }

    /// Total stories.
    ///
    /// # Errors
    /// On database failure.
    pub fn story_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM stories", [], |r| r.get(0))?)
    }

    /// Items per feed per day (days since the epoch, by published date or first-seen
    /// time), for days from `since` on.
    ///
    /// # Errors
    /// On database failure.
    pub fn items_per_day(&self, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT feed_id, COALESCE(published, first_seen) / 86400 AS day, count(*) FROM items
             WHERE COALESCE(published, first_seen) >= ?1 GROUP BY feed_id, day",
        )?;
        let mut out: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        let mut rows = stmt.query([since])?;
        while let Some(r) = rows.next()? {
            out.entry(r.get(0)?).or_default().push((r.get(1)?, r.get(2)?));
        }
        Ok(out)
    }

    /// Items shown in a topic's output now: the entries of its newest `limit` stories
    /// first seen or published since `since`.
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_output_items(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT item_id FROM topic_stories WHERE topic_id = ?1 AND sort_date >= ?2
             ORDER BY sort_date DESC, score DESC, story_id DESC LIMIT ?3",
        )?;
        let rows =
            stmt.query_map(params![topic_id, since.unwrap_or(i64::MIN), limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Prunes items first seen before `cutoff` that are not in `keep` (the entries of
    /// current topic outputs): their keys become tombstones so a feed that still lists
    /// them cannot bring them back, and their index rows, topic rows and emptied
    /// stories go with them. Also drops LSH band keys of items older than
    /// `window_cutoff` (they no longer take part in near-duplicate search), then
    /// checkpoints the WAL. One transaction.
    ///
    /// # Errors
    /// On database failure; nothing is pruned then.
    pub fn prune(
        &mut self,
        cutoff: i64,
        window_cutoff: i64,
        keep: &[i64],
        now: i64,
    ) -> Result<PruneCounts, StoreError> {
        self.flush_bands()?;
        let keep = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
        )?;
        // Ids grow with first_seen, so what is older than a cutoff is an id range: found
        // by reading from the oldest item to the first one inside the cutoff, never the
        // whole table (a full scan read the store's gigabytes every few hours).
        let items = tx.execute(
            "INSERT INTO temp.doomed (id) SELECT id FROM items
             WHERE id < ?3 AND first_seen < ?1 AND id NOT IN (SELECT value FROM json_each(?2))",
            params![cutoff, keep, first_since(&tx, "items", cutoff)?],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO tombstones (feed_id, key, pruned_at)
             SELECT feed_id, key, ?1 FROM items WHERE id IN (SELECT id FROM temp.doomed)",
            [now],
        )?;
        forget_doomed(&tx)?;
        let stories = tx.execute(
            "DELETE FROM stories WHERE id < ?2 AND first_seen < ?1
               AND NOT EXISTS (SELECT 1 FROM items WHERE story_id = stories.id)",
            params![cutoff, first_since(&tx, "stories", cutoff)?],
        )?;
        tx.execute("DELETE FROM item_bands WHERE item_id < ?1", [first_since(&tx, "items", window_cutoff)?])?;
        set_meta(&tx, "last_prune", now)?;
        // Bulk-merge full-text segments left by many small inserts (bounded work).
        tx.execute("INSERT INTO items_fts (items_fts, rank) VALUES ('merge', 2000)", [])?;
        tx.commit()?;
        // Fewer keys: a filter built now is smaller and may fit again.
        if !matches!(self.band_filter, BandFilterState::Released) {
            self.band_filter = BandFilterState::Unknown;
        }
        self.checkpoint()?;
        Ok(PruneCounts { items, stories })
    }

    /// Frees what this connection keeps only to go faster: the band filter (built
    /// again by the next large ingest) and SQLite's page cache. For an idle daemon.
    ///
    /// # Errors
    /// On database failure.
    pub fn release_memory(&mut self) -> Result<(), StoreError> {
        self.band_filter = BandFilterState::Released;
        Ok(self.conn.release_memory()?)
    }

    /// Copies what the write-ahead log holds into the database and empties the log.
    ///
    /// # Errors
    /// On database failure.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Writes the LSH band keys of every item stored since the last flush, sorted, in
    /// one transaction: from memory, or after a crash from the stored fingerprints, so
    /// keys lost in a crash are written too. Returns the number of keys written.
    ///
    /// # Errors
    /// On database failure; the keys are then written by a later flush.
    pub fn flush_bands(&mut self) -> Result<usize, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let through = meta(&tx, "bands_through")?.unwrap_or(0);
        let flushes = meta(&tx, "band_flushes")?.unwrap_or(0);
        let last: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM items", [], |r| r.get(0))?;
        let mut keys: Vec<(i64, i64)> = Vec::new();
        if self.unflushed_complete {
            keys.extend(self.unflushed.pairs());
        } else {
            let mut stmt =
                tx.prepare_cached("SELECT id, fingerprint FROM items WHERE id > ?1 ORDER BY id")?;
            let mut rows = stmt.query([through])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let blob: Option<Vec<u8>> = r.get(1)?;
                if let Some(fp) = blob.as_deref().and_then(dedup::signature_from_bytes) {
                    keys.extend(dedup::band_keys(&fp).into_iter().map(|k| (k, id)));
                }
            }
        }
        if skip::parts().bands {
            keys.clear();
        }
        keys.sort_unstable();
        {
            let mut add =
                tx.prepare_cached("INSERT OR IGNORE INTO item_bands (key, item_id) VALUES (?1, ?2)")?;
            for (k, id) in &keys {
                add.execute(params![k, id])?;
            }
        }
        set_meta(&tx, "bands_through", last)?;
        set_meta(&tx, "band_flushes", flushes + 1)?;
        tx.commit()?;
        // The filter takes the new keys if it had all the others and has room; else it
        // is built again, larger, when next needed.
        self.band_filter = match std::mem::replace(&mut self.band_filter, BandFilterState::Unknown) {
            BandFilterState::Built(mut f) if f.flushes == flushes && f.keys + keys.len() <= f.capacity => {
                keys.iter().for_each(|(k, _)| f.insert(*k));
                f.flushes = flushes + 1;
                BandFilterState::Built(f)
            }
            BandFilterState::TooLarge => BandFilterState::TooLarge,
            BandFilterState::Released => BandFilterState::Released,
            _ => BandFilterState::Unknown,
        };
        // Not `clear()`: a pass over many feeds grows the map to tens of MiB, which the
        // idle daemon should not keep.
        self.unflushed = BandMap::default();
        self.unflushed_complete = true;
        Ok(keys.len())
    }

    /// Forgets a feed entirely: its items (with their index, band and topic rows),
    /// stories left empty, tombstones, boilerplate and its row. Returns the number of
    /// items removed.
    ///
    /// # Errors
    /// On database failure; nothing is removed then.
    pub fn purge_feed(&mut self, feed_id: &str) -> Result<usize, StoreError> {
        // Band keys still in memory would outlive the items they point to.
        self.flush_bands()?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
        )?;
        let items =
            tx.execute("INSERT INTO temp.doomed (id) SELECT id FROM items WHERE feed_id = ?1", [feed_id])?;
        // Stories this feed shared live on through their other items: curate those again.
        tx.execute(
            "INSERT OR IGNORE INTO pending (item_id) SELECT o.id FROM items o
             WHERE o.feed_id <> ?1 AND o.story_id IN (SELECT story_id FROM items WHERE feed_id = ?1)",
            [feed_id],
        )?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS touched (id INTEGER PRIMARY KEY); DELETE FROM temp.touched;",
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO temp.touched (id) SELECT story_id FROM items WHERE feed_id = ?1",
            [feed_id],
        )?;
        forget_doomed(&tx)?;
        tx.execute_batch(
            "DELETE FROM stories WHERE id IN (SELECT id FROM temp.touched)
               AND NOT EXISTS (SELECT 1 FROM items WHERE story_id = stories.id);
             DELETE FROM temp.touched;",
        )?;
        for sql in [
            "DELETE FROM tombstones WHERE feed_id = ?1",
            "DELETE FROM feed_boilerplate WHERE feed_id = ?1",
            "DELETE FROM feeds WHERE id = ?1",
        ] {
            tx.execute(sql, [feed_id])?;
        }
        tx.commit()?;
        Ok(items)
    }

    /// When [`Store::prune`] last ran (Unix seconds).
    ///
    /// # Errors
    /// On database failure.
    /// Records `now` as the time of the last prune without pruning.
    ///
    /// # Errors
    /// On database failure.
    pub fn set_last_prune(&mut self, now: i64) -> Result<(), StoreError> {
        set_meta(&self.conn, "last_prune", now)
    }

    pub fn last_prune(&self) -> Result<Option<i64>, StoreError> {
        meta(&self.conn, "last_prune")
    }

    /// SQLite's `PRAGMA integrity_check`: `"ok"` for a sound database.
    ///
    /// # Errors
    /// On database failure.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Whether the database answers (for the watchdog and `/healthz`).
    ///
    /// # Errors
    /// When it does not.
    pub fn ping(&self) -> Result<(), StoreError> {
        Ok(self.conn.query_row("SELECT 1", [], |_| Ok(()))?)
    }

    /// Items matching an ad-hoc filter, best first, with highlighted title and snippet,
    /// for `topic preview`.
    ///
    /// # Errors
    /// On database failure or an FTS expression SQLite rejects.
    pub fn preview(&self, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError> {
        let (sql, fts) = match filter.match_expr() {
            Some(q) => {
                (
                    format!(
                        "SELECT i.id, i.feed_id, i.link, -bm25(items_fts), i.title, '', COALESCE(i.published, i.first_seen),
                                (SELECT count(*) FROM items o WHERE o.story_id = i.story_id), i.story_id
                         FROM items_fts JOIN items i ON i.id = items_fts.rowid
                         WHERE items_fts MATCH ?1 {} AND ?3 > 0
                         ORDER BY bm25(items_fts), i.id DESC",
                        feeds_clause(filter)
                    ),
                    Some(q),
                )
            }
            None => (
                format!(
                    "SELECT i.id, i.feed_id, i.link, 0.0, i.title, '', COALESCE(i.published, i.first_seen),
                            (SELECT count(*) FROM items o WHERE o.story_id = i.story_id), i.story_id
                     FROM items i WHERE (?1 IS NULL) {} {} AND ?3 > 0
                     ORDER BY COALESCE(i.published, i.first_seen) DESC",
                    feeds_clause(filter),
                    exclude_clause(filter)
                ),
                None,
            ),
        };
        let feeds = filter.feeds.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default());
        let mut stmt = self.conn.prepare(&sql)?;
        let ex = if fts.is_none() { filter.exclude.clone() } else { None };
        let mut p: Vec<Box<dyn rusqlite::ToSql>> =
            vec![Box::new(fts.clone()), Box::new(feeds), Box::new(limit as i64)];
        if ex.is_some() {
            p.push(Box::new(ex));
        }
        let rows = stmt.query_map(rusqlite::params_from_iter(p.iter()), |r| {
            Ok(PreviewRow {
                item_id: r.get(0)?,
                feed_id: r.get(1)?,
                link: r.get(2)?,
                score: r.get(3)?,
                title: r.get(4)?,
                snippet: r.get(5)?,
                date: r.get(6)?,
                sources: r.get(7)?,
                story_id: r.get(8)?,
            })
        })?;
        // One line per story: its best-matching item.
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(limit);
        for row in rows {
            let row = row?;
            if seen.insert(row.story_id) {
                out.push(row);
                if out.len() == limit {
                    break;
                }
            }
        }
        if let Some(expr) = &fts {
            self.highlight(expr, &mut out)?;
        }
        Ok(out)
    }

    /// Marks the terms `expr` matches in each row's title, and picks its best passage
    /// as the snippet. The index keeps no copy of the text (see the migration that made
    /// it contentless), so this indexes the text of these few rows again, extracted
    /// from their stored markup as the poll extracted it, in a temporary table (which
    /// a read-only connection may write). A row whose text no longer matches keeps its
    /// plain title and no snippet.
    fn highlight(&self, expr: &str, rows: &mut [PreviewRow]) -> Result<(), StoreError> {
        self.conn.execute_batch(&format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.preview_fts USING fts5(
                 title, summary, content, categories, {INDEX_TOKENIZER}
             );
             DELETE FROM temp.preview_fts;"
        ))?;
        {
            let mut get =
                self.conn.prepare("SELECT title, summary, content, categories FROM items WHERE id = ?1")?;
            let mut put = self.conn.prepare(&index_insert("temp.preview_fts"))?;
            for row in rows.iter() {
                let (title, summary, content, categories) = get.query_row([row.item_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?;
                let text = |h: Option<String>| crate::parse::index_text(h.as_deref());
                index_row(
                    &mut put,
                    row.item_id,
                    &title,
                    &text(summary),
                    &text(content),
                    &json_list(&categories),
                )?;
            }
        }
        let mut marked = self.conn.prepare(
            "SELECT rowid, highlight(preview_fts, 0, '[', ']'), snippet(preview_fts, -1, '[', ']', '…', 16)
             FROM temp.preview_fts WHERE preview_fts MATCH ?1",
        )?;
        let marked: HashMap<i64, (String, String)> = marked
            .query_map([expr], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<Result<_, _>>()?;
        for row in rows {
            if let Some((title, snippet)) = marked.get(&row.item_id) {
                row.title.clone_from(title);
                row.snippet.clone_from(snippet);
            }
        }
        Ok(())
    }
}

/// What [`Store::prune`] removed.
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

/// A write transaction handed to [`Store::write`].
pub struct Writer<'c> {
    tx: Transaction<'c>,
}

impl Writer<'_> {
    /// The stored signature of a topic's definition (to notice a changed query).
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_signature(&self, topic_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_row("SELECT signature FROM topics WHERE id = ?1", [topic_id], |r| r.get(0))
            .optional()?)
    }

    /// Replaces every match of a topic (backfill) and records its new signature. Only
    /// the difference from the stored rows is written: an edited definition mostly
    /// keeps its stories, and rewriting every row (and its two index entries) was a
    /// quarter of a rebuild over a million items.
    ///
    /// # Errors
    /// On database failure.
    pub fn replace_topic(
        &mut self,
        topic_id: &str,
        signature: &str,
        now: i64,
        m: &[Match],
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO topics (id, signature, changed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET signature = excluded.signature, changed_at = excluded.changed_at",
            params![topic_id, signature, now],
        )?;
        let have = self.topic_rows(topic_id, None)?;
        let mut want = HashMap::with_capacity(m.len());
        fold_matches(&mut want, m);
        let mut delete =
            self.tx.prepare_cached("DELETE FROM topic_stories WHERE topic_id = ?1 AND story_id = ?2")?;
        for story in have.keys().filter(|s| !want.contains_key(*s)) {
            delete.execute(params![topic_id, story])?;
        }
        self.put_topic_rows(topic_id, now, &want, &have)
    }

    /// Adds matches of pending items; removes pending items that no longer match
    /// (a correction can take an item out of a topic).
    ///
    /// # Errors
    /// On database failure.
    pub fn update_topic(&mut self, topic_id: &str, now: i64, m: &[Match]) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM topic_stories WHERE topic_id = ?1 AND item_id IN (SELECT item_id FROM pending)",
            [topic_id],
        )?;
        let stories: Vec<i64> = m.iter().map(|x| x.story_id).collect();
        let have = self.topic_rows(topic_id, Some(&stories))?;
        let mut want = have.clone();
        fold_matches(&mut want, m);
        self.put_topic_rows(topic_id, now, &want, &have)
    }

    /// A topic's stored rows, all or those of `stories`.
    fn topic_rows(
        &self,
        topic_id: &str,
        stories: Option<&[i64]>,
    ) -> Result<HashMap<i64, TopicRow>, StoreError> {
        let only = stories.map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
        let mut stmt = self.tx.prepare_cached(
            "SELECT story_id, item_id, score, sort_date FROM topic_stories
             WHERE topic_id = ?1 AND (?2 IS NULL OR story_id IN (SELECT value FROM json_each(?2)))",
        )?;
        let rows = stmt.query_map(params![topic_id, only], |r| {
            Ok((r.get(0)?, TopicRow { item_id: r.get(1)?, score: r.get(2)?, sort_date: r.get(3)? }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes the rows of `want` that differ from those in `have`.
    fn put_topic_rows(
        &self,
        topic_id: &str,
        now: i64,
        want: &HashMap<i64, TopicRow>,
        have: &HashMap<i64, TopicRow>,
    ) -> Result<(), StoreError> {
        let mut put = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO topic_stories (topic_id, story_id, item_id, score, sort_date, matched_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (story, row) in want.iter().filter(|(s, r)| have.get(*s) != Some(*r)) {
            put.execute(params![topic_id, story, row.item_id, row.score, row.sort_date, now])?;
        }
        Ok(())
    }

    /// Forgets topics no longer configured.
    ///
    /// # Errors
    /// On database failure.
    pub fn retain_topics(&mut self, keep: &[&str]) -> Result<(), StoreError> {
        let keep = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
        self.tx.execute(
            "DELETE FROM topic_stories WHERE topic_id NOT IN (SELECT value FROM json_each(?1))",
            [&keep],
        )?;
        self.tx.execute("DELETE FROM topics WHERE id NOT IN (SELECT value FROM json_each(?1))", [&keep])?;
        Ok(())
    }

    /// Matches over the items in scope, seen from inside this transaction.
    ///
    /// # Errors
    /// On database failure.
    pub fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        query_matches(&self.tx, filter, scope)
    }

    /// Empties the curation queue.
    ///
    /// # Errors
    /// On database failure.
    pub fn clear_pending(&mut self) -> Result<usize, StoreError> {
        Ok(self.tx.execute("DELETE FROM pending", [])?)
    }
}

/// A topic's entry for one story.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TopicRow {
    item_id: i64,
    score: f64,
    sort_date: i64,
}

/// Files matches, in order, into a topic's rows: the first item of a story to match
/// stays its entry (its id must not change when later copies join), the best score is
/// kept, and the sort date is the entry item's.
fn fold_matches(rows: &mut HashMap<i64, TopicRow>, m: &[Match]) {
    for x in m {
        rows.entry(x.story_id)
            .and_modify(|r| {
                r.score = r.score.max(x.score);
                if r.item_id == x.item_id {
                    r.sort_date = x.sort_date;
                }
            })
            .or_insert(TopicRow { item_id: x.item_id, score: x.score, sort_date: x.sort_date });
    }
}

/// Band keys held in memory before [`Store::flush_bands`] writes them regardless
/// (about 2,000 items' worth, a few MiB): bounds memory in a pass over many feeds.
const MAX_UNFLUSHED_KEYS: usize = 48_000;

/// Items with ids below this were stored before schema version 7: their content
/// hashes are [`dedup::legacy_content_hash`]es.
fn legacy_hashes_below(conn: &Connection) -> Result<i64, StoreError> {
    Ok(meta(conn, "legacy_hashes_below")?.unwrap_or(0))
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// The id of the first row of `table` (`items` or `stories`) first seen at or after
/// `since`, or one past the last row if there is none: as ids grow with first_seen,
/// the rows before it are the older ones. A binary search over ids, a few dozen
/// lookups by id: a scan to find it read up to the whole store (gigabytes) every
/// maintenance. Should the clock have gone back, rows near the boundary may fall on
/// the other side of it; callers still test first_seen on what they delete.
fn first_since(tx: &Transaction<'_>, table: &str, since: i64) -> Result<i64, StoreError> {
    let (lo, last): (Option<i64>, Option<i64>) =
        tx.query_row(&format!("SELECT min(id), max(id) FROM {table}"), [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(last)) = (lo, last) else { return Ok(0) };
    let mut hi = last + 1;
    let mut at =
        tx.prepare_cached(&format!("SELECT id, first_seen FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1"))?;
    // Invariant: rows before `lo` are older than `since`; the first row at or after
    // `since` is before `hi`, or there is none.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at.query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()? {
            Some((id, seen)) if id < hi => {
                if seen >= since {
                    hi = id;
                } else {
                    lo = id + 1;
                }
            }
            // No row from `mid` up to `hi`: the boundary is at `mid` at the latest.
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Deletes the items listed in `temp.doomed` with everything that refers to them
/// (index, topic, queue and band rows), and empties the list.
fn forget_doomed(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // Band rows by their keys, computed from the fingerprints: the table is keyed by
    // band key, and a delete by item id alone read all of it.
    let banded: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT id, fingerprint FROM items
             WHERE id IN (SELECT id FROM temp.doomed) AND fingerprint IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut unband = tx.prepare_cached("DELETE FROM item_bands WHERE key = ?1 AND item_id = ?2")?;
    for (id, blob) in banded {
        if let Some(fp) = dedup::signature_from_bytes(&blob) {
            for key in dedup::band_keys(&fp) {
                unband.execute(params![key, id])?;
            }
        }
    }
    tx.execute_batch(
        "DELETE FROM items_fts WHERE rowid IN (SELECT id FROM temp.doomed);
         DELETE FROM topic_stories WHERE item_id IN (SELECT id FROM temp.doomed);
         DELETE FROM pending WHERE item_id IN (SELECT id FROM temp.doomed);
         DELETE FROM items WHERE id IN (SELECT id FROM temp.doomed);
         DELETE FROM temp.doomed;",
    )?;
    Ok(())
}

const ITEM_COLUMNS: &str = "i.id, i.feed_id, f.title, f.url, f.site_link, i.key, i.link, i.title, i.summary,
     i.content, i.authors, i.categories, i.published, i.updated, i.first_seen, i.changed_at, i.base, i.sanitized";

/// Summary and content as they may leave the store: sanitised now if they were not
/// yet (see [`Store::sanitize_published`]).
fn safe_html(
    r: &rusqlite::Row<'_>,
    html: usize,
    base: usize,
    sanitized: usize,
) -> rusqlite::Result<Option<String>> {
    let h: Option<String> = r.get(html)?;
    if r.get::<_, i64>(sanitized)? != 0 {
        return Ok(h);
    }
    let base: Option<String> = r.get(base)?;
    Ok(crate::parse::sanitize_field(h.as_deref(), base.as_deref()))
}

/// A list stored as a JSON array (authors, categories); empty if it is not one.
fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// How the full-text index splits text (see the migrations); `topic preview`'s
/// temporary index must split it the same way.
const INDEX_TOKENIZER: &str = "tokenize = 'unicode61 remove_diacritics 2'";

/// The statement that adds one item's row to a full-text index `table`.
fn index_insert(table: &str) -> String {
    format!("INSERT INTO {table} (rowid, title, summary, content, categories) VALUES (?1, ?2, ?3, ?4, ?5)")
}

/// One item's row in a full-text index: its title, the text of its summary and
/// content ([`crate::parse::index_text`]) and its categories.
fn index_row(
    insert: &mut rusqlite::Statement<'_>,
    id: i64,
    title: &str,
    summary: &str,
    content: &str,
    categories: &[String],
) -> rusqlite::Result<()> {
    insert.execute(params![id, title, summary, content, categories.join(" ")]).map(drop)
}

fn stored_item(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StoredItem> {
    Ok(StoredItem {
        id: r.get(at)?,
        feed_id: r.get(at + 1)?,
        feed_title: r.get(at + 2)?,
        feed_url: r.get(at + 3)?,
        feed_site: r.get(at + 4)?,
        key: r.get(at + 5)?,
        link: r.get(at + 6)?,
        title: r.get(at + 7)?,
        summary: safe_html(r, at + 8, at + 16, at + 17)?,
        content: safe_html(r, at + 9, at + 16, at + 17)?,
        authors: json_list(&r.get::<_, String>(at + 10)?),
        categories: json_list(&r.get::<_, String>(at + 11)?),
        published: r.get(at + 12)?,
        updated: r.get(at + 13)?,
        first_seen: r.get(at + 14)?,
        changed_at: r.get(at + 15)?,
    })
}

fn feeds_clause(filter: &TopicFilter) -> &'static str {
    if filter.feeds.is_some() {
        "AND i.feed_id IN (SELECT value FROM json_each(?2))"
    } else {
        "AND (?2 IS NULL)"
    }
}

fn exclude_clause(filter: &TopicFilter) -> &'static str {
    if filter.exclude.is_some() {
        "AND i.id NOT IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?4)"
    } else {
        ""
    }
}

/// The statement [`query_matches`] runs, with its MATCH expression and exclude
/// expression. Items are read through `items_match`, which holds every column it
/// needs, never from their rows.
fn matches_sql(filter: &TopicFilter, scope: Scope) -> (String, Option<String>, Option<String>) {
    // Pending items only: the full-text index is read from the oldest pending id on (a
    // rowid range FTS5 honours), not evaluated over the whole store and filtered
    // afterwards, which made every pass cost tens of milliseconds per topic at 1M
    // items even with nothing pending.
    let (scope_clause, fts_scope) = match scope {
        Scope::Pending => (
            "AND i.id IN (SELECT item_id FROM pending)",
            "AND items_fts.rowid >= (SELECT min(item_id) FROM pending)",
        ),
        Scope::All => ("", ""),
    };
    // The first item seen of a story becomes its entry; items first seen in the same
    // pass are ordered by the date they claim, then by arrival.
    let order = "ORDER BY i.first_seen, COALESCE(i.published, i.first_seen), i.id";
    match filter.match_expr() {
        Some(q) => {
            let sql = format!(
                "SELECT i.id, i.story_id, -bm25(items_fts), COALESCE(i.published, i.first_seen)
                 FROM items_fts JOIN items i INDEXED BY items_match ON i.id = items_fts.rowid
                 WHERE items_fts MATCH ?1 {fts_scope} {} {scope_clause} {order}",
                feeds_clause(filter)
            );
            (sql, Some(q), None)
        }
        None => {
            let sql = format!(
                "SELECT i.id, i.story_id, 0.0, COALESCE(i.published, i.first_seen)
                 FROM items i INDEXED BY items_match WHERE (?1 IS NULL) {} {scope_clause} {} {order}",
                feeds_clause(filter),
                exclude_clause(filter).replace("?4", "?3")
            );
            (sql, None, filter.exclude.clone())
        }
    }
}

fn query_matches(conn: &Connection, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
    let (sql, fts, ex) = matches_sql(filter, scope);
    let feeds = filter.feeds.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default());
    let mut stmt = conn.prepare_cached(&sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Match { item_id: r.get(0)?, story_id: r.get(1)?, score: r.get(2)?, sort_date: r.get(3)? })
    };
    let rows = match ex {
        Some(ex) => stmt.query_map(params![fts, feeds, ex], map)?.collect::<Result<Vec<_>, _>>()?,
        None => stmt.query_map(params![fts, feeds], map)?.collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

enum Upsert {
    New,
    Updated,
    Unchanged,
    Tombstoned,
}

/// The story a new item joins: the story of an item with the same canonical link,
/// else of the most alike item first seen within the window, if alike enough.
fn find_story(
    tx: &Transaction<'_>,
    n: &NewItem,
    rule: StoryRule,
    now: i64,
    stored: StoredBands<'_>,
    fresh: &BandMap,
) -> Result<Option<i64>, StoreError> {
    if let Some(link) = &n.item.canonical_link {
        let by_link = tx
            .prepare_cached("SELECT story_id FROM items WHERE canonical_link = ?1 ORDER BY id LIMIT 1")?
            .query_row([link], |r| r.get::<_, i64>(0))
            .optional()?;
        if by_link.is_some() {
            return Ok(by_link);
        }
    }
    let Some(fp) = &n.fingerprint else { return Ok(None) };
    let band_keys = dedup::band_keys(fp);
    // Candidates: items of this pass whose keys are not written yet (all from the
    // current process, well inside the window), then stored ones sharing a key.
    let mut candidates: Vec<(i64, std::sync::Arc<dedup::Fingerprint>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for key in &band_keys {
        for found in stored.unflushed.get(*key).chain(fresh.get(*key)) {
            // An item sharing several keys is one candidate.
            if seen.insert(found.item) {
                candidates.push((found.story, found.fp.clone()));
            }
        }
    }
    // One placeholder per key (band_keys always gives BANDS of them).
    static BY_BANDS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT i.story_id, i.fingerprint FROM items i
             WHERE i.id IN (SELECT item_id FROM item_bands WHERE key IN ({}))
               AND i.first_seen >= ? AND i.fingerprint IS NOT NULL
             ORDER BY i.id",
            vec!["?"; dedup::BANDS].join(", ")
        )
    });
    // Only the keys the table may hold; the statement's other placeholders repeat one
    // of them (the IN list is a set), and no key at all skips the query.
    let wanted: Vec<i64> =
        band_keys.iter().copied().filter(|k| stored.filter.is_none_or(|f| f.may_contain(*k))).collect();
    if let Some(first) = wanted.first() {
        let mut stmt = tx.prepare_cached(&BY_BANDS)?;
        let since = now - rule.window;
        let keys = wanted.iter().chain(std::iter::repeat(first)).take(dedup::BANDS);
        let args = keys.map(|k| k as &dyn rusqlite::ToSql).chain([&since as &dyn rusqlite::ToSql]);
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let blob: Vec<u8> = r.get(1)?;
            if let Some(other) = dedup::signature_from_bytes(&blob) {
                candidates.push((r.get(0)?, std::sync::Arc::new(other)));
            }
        }
    }
    // Which candidate, if any, is the same story is dedup's call.
    Ok(dedup::best_match(fp, candidates.iter().map(|(story, other)| (*story, &**other)), rule.threshold))
}

/// Where the band keys of items stored before this transaction are: in memory until
/// flushed, then in `item_bands` (only where the filter, if any, says they may be).
#[derive(Clone, Copy)]
struct StoredBands<'a> {
    unflushed: &'a BandMap,
    filter: Option<&'a BandFilter>,
}

#[allow(clippy::too_many_arguments)]
fn upsert_item<'a>(
    tx: &Transaction<'_>,
    feed_id: &str,
    n: &'a NewItem,
    rule: StoryRule,
    now: i64,
    stored: StoredBands<'_>,
    fresh: &mut BandMap,
    fts: &mut Vec<FtsOp<'a>>,
) -> Result<Upsert, StoreError> {
    let it = &n.item;
    let tomb: bool = tx
        .prepare_cached("SELECT 1 FROM tombstones WHERE feed_id = ?1 AND key = ?2")?
        .exists(params![feed_id, it.key])?;
    if tomb {
        return Ok(Upsert::Tombstoned);
    }
    let existing: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT id, content_hash FROM items WHERE feed_id = ?1 AND key = ?2")?
        .query_row(params![feed_id, it.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let existing = match existing {
        Some((id, hash)) => Some(Known::of(id, &hash, legacy_hashes_below(tx)?)),
        None => None,
    };
    let authors = serde_json::to_string(&it.authors).unwrap_or_else(|_| "[]".into());
    let fp_bytes = n.fingerprint.as_ref().map(dedup::signature_bytes);
    let categories = serde_json::to_string(&it.categories).unwrap_or_else(|_| "[]".into());
    let (story, outcome) = match existing {
        Some(known) if known.same_as(it) => return Ok(Upsert::Unchanged),
        // A correction keeps its story (the conflict clause below leaves story_id alone).
        Some(_) => (0, Upsert::Updated),
        None => {
            let story = match find_story(tx, n, rule, now, stored, fresh)? {
                Some(s) => s,
                None => {
                    tx.prepare_cached("INSERT INTO stories (first_seen) VALUES (?1)")?.execute([now])?;
                    tx.last_insert_rowid()
                }
            };
            (story, Upsert::New)
        }
    };
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO items (feed_id, key, guid, link, canonical_link, title, summary, content, authors,
                 categories, published, updated, first_seen, changed_at, content_hash, story_id, fingerprint,
                 base, sanitized)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17, 0)
             ON CONFLICT (feed_id, key) DO UPDATE SET
                 guid = excluded.guid, link = excluded.link, canonical_link = excluded.canonical_link,
                 title = excluded.title, summary = excluded.summary, content = excluded.content,
                 authors = excluded.authors, categories = excluded.categories, published = excluded.published,
                 updated = excluded.updated, changed_at = excluded.changed_at,
                 content_hash = excluded.content_hash, fingerprint = excluded.fingerprint,
                 base = excluded.base, sanitized = 0
             RETURNING id",
        )?
        .query_row(
            params![
                feed_id,
                it.key,
                it.guid,
                it.link,
                it.canonical_link,
                it.title,
                it.summary,
                it.content,
                authors,
                categories,
                it.published.map(ts),
                it.updated.map(ts),
                now,
                &it.content_hash[..],
                story,
                fp_bytes,
                it.base,
            ],
            |r| r.get(0),
        )?;
    match outcome {
        Upsert::Updated => fts.push(FtsOp::Delete(id)),
        _ => {
            // Band keys are written later, in bulk (see `Store::unflushed`); a
            // correction keeps the keys it was first found by.
            if let Some(fp) = &n.fingerprint {
                let fp = std::sync::Arc::new(fp.clone());
                for key in dedup::band_keys(&fp) {
                    fresh.insert(key, Banded { item: id, story, fp: fp.clone() });
                }
            }
        }
    }
    fts.push(FtsOp::Insert(id, n));
    tx.prepare_cached("INSERT OR IGNORE INTO pending (item_id) VALUES (?1)")?.execute([id])?;
    Ok(outcome)
}

/// An error while opening `path`; a file SQLite does not recognise as a database, or
/// whose schema it cannot read, is reported as corrupt.
fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt { path: path.to_owned(), source },
        _ => StoreError::Open { path: path.to_owned(), source },
    }
}

enum Job {
    Call(Box<dyn FnOnce(&mut Store) + Send>),
    Ingest(Box<IngestJob>, Reply<IngestCounts>),
    Record(Box<FeedRecord>, Reply<()>),
}

/// A bare SQLite error from the writer, turned into one naming the database.
fn named(store: &Store, e: StoreError) -> StoreError {
    match e {
        StoreError::Sqlite(source) => StoreError::In { path: store.path.clone(), source },
        e => e,
    }
}

type Reply<R> = tokio::sync::oneshot::Sender<Result<R, StoreError>>;

/// At most this many feeds' polls share one transaction.
const MAX_GROUP_FEEDS: usize = 64;
/// ... and at most about this many items.
const MAX_GROUP_ITEMS: usize = 4_000;
/// At most this many polls without items (304s, failures) share one transaction.
const MAX_GROUP_RECORDS: usize = 512;

/// Checkpoints the write-ahead log on a thread of its own, so that the writer's
/// thread only appends to the log. SQLite's automatic checkpoint ran on the committing
/// connection, after the commit that grew the log past [`Checkpointer::PAGES`]: in a
/// cold poll a sixth of the writer thread's time, while the parse threads waited for
/// it. A passive checkpoint never blocks the writer, and copies what is committed.
struct Checkpointer {
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// SQLite's default automatic checkpoint threshold, in pages of log.
    const PAGES: i32 = 1000;

    /// Takes over checkpointing from `store`'s connection. `None` (and SQLite's own
    /// checkpoints stay) for an in-memory store, or if a second connection cannot be
    /// opened.
    fn start(store: &mut Store) -> Option<Checkpointer> {
        if store.path() == Path::new(":memory:") {
            return None;
        }
        let opened =
            Connection::open(store.path()).and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c));
        let conn = match opened {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint connection; the writer checkpoints itself");
                return None;
            }
        };
        // One pending request is enough: a checkpoint copies all that is committed.
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("feedsieve-ckpt".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "checkpointing the write-ahead log failed; will retry");
                    }
                }
            })
            .ok()?;
        // Replaces SQLite's automatic checkpoint, which is a hook of the same kind.
        let hook = move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            if pages >= Self::PAGES {
                let _ = wake.try_send(());
            }
            Ok(())
        };
        if let Err(e) = store.conn.wal_hook(Some(hook)) {
            tracing::warn!(error = %e, "could not hand checkpoints to their own thread");
        }
        Some(Checkpointer { thread })
    }

    /// Hands checkpointing back to `store`'s connection and waits for the thread.
    fn stop(self, store: &mut Store) {
        // Dropping the hook drops the sender: the thread ends after its last request.
        let none: Option<fn(&mut rusqlite::hooks::Wal, std::ffi::c_int) -> rusqlite::Result<()>> = None;
        let restored = store
            .conn
            .wal_hook(none)
            .and_then(|()| store.conn.pragma_update(None, "wal_autocheckpoint", Self::PAGES));
        if let Err(e) = restored {
            tracing::warn!(error = %e, "restoring automatic checkpoints failed");
        }
        let _ = self.thread.join();
    }
}

/// The single writer: a thread that owns the write connection and runs closures sent
/// to it in order. Cloning the handle is cheap; the thread ends (and the database is
/// closed cleanly) when the last handle is dropped.
///
/// Group commit: polls that arrive while the writer is busy are stored together, in
/// one transaction, when it is free (see [`Store::ingest_group`]); each caller still
/// gets its own feed's counts, and only after the commit.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
    /// Read connections for what a poll must know before it stores anything (a
    /// feed's validators, which of its items are known): such reads need not wait
    /// behind the writer's transactions, nor take its time. `None` for an in-memory
    /// store, which only the writer's connection sees.
    readers: Option<Arc<ReadPool>>,
}

/// Read-only connections to the writer's database, opened as needed, at most
/// [`MAX_READERS`] (each keeps a page cache), each used by one task at a time.
struct ReadPool {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<Store>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Read connections a writer's handle opens at most.
const MAX_READERS: usize = 4;

impl ReadPool {
    fn run<R>(&self, f: impl FnOnce(&Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let store = match idle {
            Some(s) => s,
            None => Store::open_read_only(&self.path)?,
        };
        let result = f(&store).map_err(|e| named(&store, e));
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
        result
    }
}

impl StoreHandle {
    /// Moves `store` onto its own thread.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(store: Store) -> std::io::Result<(StoreHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let path = store.path().to_owned();
        let readers = (path != Path::new(":memory:")).then(|| {
            Arc::new(ReadPool {
                path,
                idle: std::sync::Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            })
        });
        let join = std::thread::Builder::new().name("feedsieve-store".into()).spawn(move || {
            let mut store = store;
            let checkpointer = Checkpointer::start(&mut store);
            let mut next = None;
            while let Some(job) = next.take().or_else(|| rx.recv().ok()) {
                match job {
                    Job::Call(f) => f(&mut store),
                    Job::Ingest(job, reply) => {
                        let take = |j| match j {
                            Job::Ingest(job, reply) => Ok((job, reply)),
                            other => Err(other),
                        };
                        let size = |(job, _): &(Box<IngestJob>, _)| job.items.len();
                        let group = gather(
                            &rx,
                            &mut next,
                            (job, reply),
                            take,
                            MAX_GROUP_FEEDS,
                            size,
                            MAX_GROUP_ITEMS,
                        );
                        run_group(&mut store, group, Store::ingest_group, Store::ingest, "storing");
                    }
                    Job::Record(record, reply) => {
                        let take = |j| match j {
                            Job::Record(record, reply) => Ok((record, reply)),
                            other => Err(other),
                        };
                        let group =
                            gather(&rx, &mut next, (record, reply), take, MAX_GROUP_RECORDS, |_| 0, 1);
                        run_group(&mut store, group, Store::record_group, Store::record, "recording");
                    }
                }
            }
            if let Some(c) = checkpointer {
                c.stop(&mut store);
            }
            // The last connection to close folds the write-ahead log into the
            // database; when read connections outlive this one, none does, and the
            // next process to open it first reads the whole log back (a cold poll
            // left 10 MB that made the next poll 60-80 % slower). Idle readers do not
            // block this.
            if store.path() != Path::new(":memory:")
                && let Err(e) = store.checkpoint()
            {
                tracing::warn!(error = %crate::error_chain(&e), "checkpointing the database on close failed");
            }
        })?;
        Ok((StoreHandle { tx, readers }, join))
    }

    /// Frees the writer's caches ([`Store::release_memory`]) and closes idle read
    /// connections (opened again when needed): for a daemon going idle.
    ///
    /// # Errors
    /// On database failure.
    pub async fn release_memory(&self) -> Result<(), StoreError> {
        if let Some(pool) = &self.readers {
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.call(Store::release_memory).await
    }

    /// Runs `f` on a read connection, off the writer thread: it sees what the writer
    /// has committed, never a transaction in progress. On the writer itself for an
    /// in-memory store.
    ///
    /// # Errors
    /// What `f` returns, or the failure to open a read connection, with the database
    /// named.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    {
        let Some(pool) = self.readers.clone() else {
            return self.call(move |s| f(s)).await;
        };
        let permit = pool.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let result = pool.run(f);
            drop(permit);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer thread and returns its result.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; otherwise what `f` returns,
    /// with a bare SQLite error turned into [`StoreError::In`] naming the database.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Call(Box::new(move |s: &mut Store| {
                let result = f(s).map_err(|e| named(s, e));
                let _ = done.send(result);
            })))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores one feed's poll, possibly in one transaction with other feeds' polls.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; a database failure of this
    /// feed's own writes (nothing of its poll is then stored).
    pub async fn ingest(&self, job: IngestJob) -> Result<IngestCounts, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Job::Ingest(Box::new(job), done)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Records a poll that stored no items, possibly in one transaction with others.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; a database failure of this
    /// feed's own update.
    pub async fn record(&self, record: FeedRecord) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Job::Record(Box::new(record), done)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }
}

/// Takes more jobs of `first`'s kind off the queue, as long as the group has fewer
/// than `max_len` and their `size`s add up to less than `max_size`; a job of another
/// kind is left in `next`.
fn gather<J>(
    rx: &mpsc::Receiver<Job>,
    next: &mut Option<Job>,
    first: J,
    take: impl Fn(Job) -> Result<J, Job>,
    max_len: usize,
    size: impl Fn(&J) -> usize,
    max_size: usize,
) -> Vec<J> {
    let mut total = size(&first);
    let mut group = vec![first];
    while group.len() < max_len && total < max_size {
        let Ok(job) = rx.try_recv() else { break };
        match take(job) {
            Ok(j) => {
                total += size(&j);
                group.push(j);
            }
            Err(other) => {
                *next = Some(other);
                break;
            }
        }
    }
    group
}

/// Runs a group of jobs in one transaction (`all`); if that fails, each on its own
/// (`one`), so that one feed's failure is that feed's alone.
fn run_group<J, R>(
    store: &mut Store,
    group: Vec<(Box<J>, Reply<R>)>,
    all: impl FnOnce(&mut Store, &[&J]) -> Result<Vec<R>, StoreError>,
    one: impl Fn(&mut Store, &J) -> Result<R, StoreError>,
    what: &str,
) {
    let jobs: Vec<&J> = group.iter().map(|(job, _)| &**job).collect();
    match all(store, &jobs) {
        Ok(results) => {
            for ((_, reply), r) in group.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some((_, reply)) = group.into_iter().next() {
                let _ = reply.send(Err(named(store, e)));
            }
        }
        Err(e) => {
            tracing::debug!(error = %crate::error_chain(&e), feeds = group.len(), "{what} a group failed; one by one");
            for (job, reply) in group {
                let _ = reply.send(one(store, &job).map_err(|e| named(store, e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilding a topic writes only what changed, and leaves what a rebuild into
    /// an empty topic would.
    #[test]
    fn replacing_a_topic_leaves_the_rows_a_rebuild_would() {
        let mut s = Store::open_in_memory().unwrap();
        let m = |item_id, story_id, score, sort_date| Match { item_id, story_id, score, sort_date };
        let before = [m(1, 1, 1.0, 10), m(2, 2, 2.0, 20), m(3, 2, 5.0, 30), m(4, 3, 1.0, 40)];
        // Story 1 as it was, story 2 first matched by another item, story 3 gone,
        // story 4 new with a better-scored second copy.
        let after =
            [m(1, 1, 1.0, 10), m(3, 2, 5.0, 31), m(2, 2, 2.0, 20), m(5, 4, 3.0, 50), m(6, 4, 4.0, 60)];
        s.write(|w| w.replace_topic("t", "old", 100, &before)).unwrap();
        s.write(|w| w.replace_topic("t", "new", 200, &after)).unwrap();
        s.write(|w| w.replace_topic("fresh", "new", 200, &after)).unwrap();
        let rows = |s: &Store, topic: &str| -> Vec<(i64, i64, f64, i64, i64)> {
            s.conn
                .prepare(
                    "SELECT story_id, item_id, score, sort_date, matched_at FROM topic_stories
                     WHERE topic_id = ?1 ORDER BY story_id",
                )
                .unwrap()
                .query_map([topic], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(rows(&s, "fresh"), [(1, 1, 1.0, 10, 200), (2, 3, 5.0, 31, 200), (4, 5, 4.0, 50, 200)]);
        let without_time = |r: Vec<(i64, i64, f64, i64, i64)>| {
            r.into_iter().map(|(a, b, c, d, _)| (a, b, c, d)).collect::<Vec<_>>()
        };
        assert_eq!(without_time(rows(&s, "t")), without_time(rows(&s, "fresh")));
        // Filed pass by pass, the same matches leave the same rows.
        s.write(|w| {
            w.update_topic("inc", 200, &after[..2])?;
            w.update_topic("inc", 200, &after[2..])
        })
        .unwrap();
        assert_eq!(rows(&s, "inc"), rows(&s, "fresh"));
        // The unchanged row was not rewritten.
        assert_eq!(rows(&s, "t")[0].4, 100);
        assert_eq!(s.write(|w| w.topic_signature("t")).unwrap().as_deref(), Some("new"));
        // A rebuild that matches nothing empties the topic.
        s.write(|w| w.replace_topic("t", "none", 300, &[])).unwrap();
        assert!(rows(&s, "t").is_empty());
    }

    #[test]
    fn migrations_run_twice_without_harm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db.sqlite");
        drop(Store::open(&path).unwrap());
        let s = Store::open(&path).unwrap();
        assert_eq!(s.user_version().unwrap(), MIGRATIONS.len() as i64);
        let mode: String = s.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::open(&path).unwrap();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }

    #[test]
    fn an_index_with_its_own_copy_of_the_text_loses_the_copy_not_the_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let before = MIGRATIONS.iter().position(|m| m.contains("content = ''")).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..before] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", before as i64).unwrap();
            conn.execute(
                "INSERT INTO items_fts (rowid, title, summary, content, categories)
                 VALUES (7, 'Operation Tidewater', 'Arrests at sea', 'Smugglers were held', 'crime')",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let hits = |q: &str| -> Vec<i64> {
            s.conn
                .prepare("SELECT rowid FROM items_fts WHERE items_fts MATCH ?1")
                .unwrap()
                .query_map([q], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(hits("tidewater"), [7]);
        assert_eq!(hits("content:smugglers AND categories:crime"), [7]);
        let copy: Option<String> =
            s.conn.query_row("SELECT title FROM items_fts WHERE rowid = 7", [], |r| r.get(0)).unwrap();
        assert_eq!(copy, None, "no copy of the text");
        s.conn.execute("DELETE FROM items_fts WHERE rowid = 7", []).unwrap();
        assert!(hits("tidewater").is_empty(), "rows can still be deleted");
    }

    #[test]
    fn the_preview_index_splits_text_as_the_stored_index_does() {
        let s = Store::open_in_memory().unwrap();
        let sql: String = s
            .conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'items_fts'", [], |r| r.get(0))
            .unwrap();
        assert!(sql.contains(INDEX_TOKENIZER), "{sql}");
    }

    #[test]
    fn preview_marks_matches_in_the_title_and_the_text_the_poll_indexed() {
        let now = Utc::now();
        let mut s = Store::open_in_memory().unwrap();
        s.sync_feeds([("a", "https://a/")]).unwrap();
        let mut border = new_item("Border security news", "");
        border.item.summary = None;
        border.item.content = Some(format!("<p>{}</p><p>Operation <b>Tide</b>water &amp; more.</p>", TEXT));
        border.content_text = crate::parse::index_text(border.item.content.as_deref());
        border.summary_text = String::new();
        let other = new_item("Weather", "Rain is expected over the hills all week, with sun at the weekend.");
        s.ingest_group(&[&job("a", vec![border, other], now)]).unwrap();
        let preview = |q: &str| {
            let filter = TopicFilter { fts: Some(q.into()), exclude: None, feeds: None };
            s.preview(&filter, 10).unwrap()
        };
        let rows = preview("border");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].title, "[Border] security news");
        assert_eq!(rows[0].snippet, "[Border] security news");
        let rows = preview("smuggling AND tidewater");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].title, "Border security news", "nothing to mark in the title");
        assert!(rows[0].snippet.contains("migrant [smuggling] networks"), "{}", rows[0].snippet);
        assert!(!rows[0].snippet.contains('<'), "text, not markup: {}", rows[0].snippet);
        let rows = preview("tidewater");
        assert!(rows[0].snippet.contains("[Tidewater]"), "{}", rows[0].snippet);
    }

    #[test]
    fn topic_matching_reads_items_through_their_index_not_their_rows() {
        let s = Store::open_in_memory().unwrap();
        let feeds = Some(vec!["a".to_string()]);
        let q = Some("border".to_string());
        for (fts, exclude, feeds) in [
            (q.clone(), None, None),
            (q.clone(), Some("weather".to_string()), feeds.clone()),
            (None, None, None),
            (None, Some("weather".to_string()), feeds),
        ] {
            for scope in [Scope::All, Scope::Pending] {
                let filter = TopicFilter { fts: fts.clone(), exclude: exclude.clone(), feeds: feeds.clone() };
                let (sql, ..) = matches_sql(&filter, scope);
                let mut explain = s.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let unbound = vec![None::<String>; explain.parameter_count()];
                let plan: Vec<String> = explain
                    .query_map(rusqlite::params_from_iter(unbound), |r| r.get(3))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let items: Vec<&String> = plan.iter().filter(|l| l.contains(" i ")).collect();
                assert!(
                    !items.is_empty() && items.iter().all(|l| l.contains("COVERING INDEX items_match")),
                    "{filter:?} {scope:?}: {plan:#?}"
                );
            }
        }
    }

    fn new_item(key: &str, text: &str) -> NewItem {
        let fingerprint = dedup::fingerprint(text, &std::collections::HashSet::new());
        let mut item =
            Item { key: key.into(), title: key.into(), summary: Some(text.into()), ..Item::default() };
        item.content_hash = dedup::content_hash(&item);
        NewItem { item, summary_text: text.into(), content_text: String::new(), fingerprint }
    }

    /// Items stored before content hashes were XXH3 keep their SHA-256 hashes: seen
    /// again unchanged, they are unchanged (not "updated" once after the upgrade), and
    /// changed, they are updated. Only items below the watermark get the second look.
    #[test]
    fn items_hashed_before_the_upgrade_are_not_taken_for_changed() {
        let now = Utc::now();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let as_before = |key: &str, text: &str| {
            let mut n = new_item(key, text);
            n.item.content_hash = dedup::legacy_content_hash(&n.item);
            n
        };
        let (a1, a2, a3) = (
            "A first story with words enough to fingerprint.",
            "A second story, and more words.",
            "A third story told after the upgrade.",
        );
        {
            // A database of schema version 6 (its content hashes the old kind).
            let mut s = Store::open(&path).unwrap();
            s.sync_feeds([("a", "https://a/")]).unwrap();
            s.ingest(&job("a", vec![as_before("a1", a1), as_before("a2", a2)], now)).unwrap();
            s.conn.execute("DELETE FROM meta WHERE key = 'legacy_hashes_below'", []).unwrap();
            s.conn.pragma_update(None, "user_version", 6).unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(legacy_hashes_below(&s.conn).unwrap(), 3);
        s.ingest(&job("a", vec![as_before("a3", a3)], now)).unwrap();

        let known = s.known_keys("a", ["a1", "a2", "a3"]).unwrap();
        let (k1, k3) = (known["a1"].unwrap(), known["a3"].unwrap());
        assert!(k1.legacy && !k3.legacy, "{known:?}");
        assert!(k1.same_as(&new_item("a1", a1).item));
        assert!(!k1.same_as(&new_item("a1", "A first story, corrected.").item));
        // Stored after the watermark, an old-style hash is just a different hash.
        assert!(!k3.same_as(&new_item("a3", a3).item));

        let counts = s
            .ingest(&job(
                "a",
                vec![new_item("a1", a1), new_item("a2", "A second story, corrected."), new_item("a3", a3)],
                now,
            ))
            .unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 2, 1), "{counts:?}");
    }

    fn job(feed: &str, items: Vec<NewItem>, now: DateTime<Utc>) -> IngestJob {
        IngestJob {
            feed_id: feed.into(),
            items,
            record: FetchRecord::default(),
            rule: StoryRule::default(),
            now,
        }
    }

    const TEXT: &str = "Police in 31 countries arrested 212 suspects during Operation Tidewater, a six-week \
        action against migrant smuggling networks operating along sea routes in the Mediterranean.";

    #[test]
    fn a_group_is_stored_whole_or_not_at_all() {
        let now = Utc::now();
        let mut s = Store::open_in_memory().unwrap();
        s.sync_feeds([("a", "https://a/")]).unwrap();
        let good = job("a", vec![new_item("a1", TEXT)], now);
        let unknown_feed =
            job("nope", vec![new_item("n1", "Another story entirely, with words enough.")], now);
        assert!(s.ingest_group(&[&good, &unknown_feed]).is_err());
        assert_eq!(s.item_count().unwrap(), 0, "nothing of the group");
        let counts = s.ingest_group(&[&good]).unwrap();
        assert_eq!(counts[0].new, 1);
        assert_eq!(s.item_count().unwrap(), 1);
        let fts: i64 = s
            .conn
            .query_row("SELECT count(*) FROM items_fts WHERE items_fts MATCH 'tidewater'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fts, 1, "indexed in the same transaction");
    }

    #[test]
    fn known_keys_are_the_listed_ones_stored_or_tombstoned() {
        let now = Utc::now();
        let mut s = Store::open_in_memory().unwrap();
        s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
        let old =
            job("a", vec![new_item("old", "An old story, long gone from the feed by now, words.")], now);
        s.ingest(&old).unwrap();
        s.prune(now.timestamp() + 1, now.timestamp(), &[], now.timestamp()).unwrap();
        let a1 = new_item("a1", TEXT);
        let expected = a1.item.content_hash;
        s.ingest(&job(
            "a",
            vec![a1, new_item("a2", "A second story about other things, words enough.")],
            now,
        ))
        .unwrap();
        s.ingest(&job("b", vec![new_item("b1", "Feed b has its own story with enough words here.")], now))
            .unwrap();
        let known = s.known_keys("a", ["a1", "old", "new", "b1", "a1"]).unwrap();
        assert_eq!(known.len(), 2, "only listed keys of this feed: {known:?}");
        assert_eq!(
            known["a1"],
            Some(Known { hash: expected, legacy: false }),
            "stored, with its content hash"
        );
        assert_eq!(known["old"], None, "tombstoned");
    }

    /// The id boundary maintenance prunes by, found by binary search, is the one a
    /// scan finds, with gaps in the ids and for cutoffs before, inside and after the
    /// stored times.
    #[test]
    fn the_boundary_by_first_seen_is_found_without_a_scan() {
        let t0 = Utc::now();
        let mut s = Store::open_in_memory().unwrap();
        s.sync_feeds([("a", "https://a/")]).unwrap();
        for k in 0..40i64 {
            let text = format!("Story number {k} has words enough to be a story of its own here.");
            let at = t0 + chrono::Duration::seconds(k / 3 * 10);
            s.ingest(&job("a", vec![new_item(&format!("k{k}"), &text)], at)).unwrap();
        }
        s.conn.execute("DELETE FROM items WHERE id % 7 = 3 OR id BETWEEN 20 AND 26", []).unwrap();
        let tx = s.conn.transaction().unwrap();
        for since in (-20..160).map(|d| t0.timestamp() + d) {
            let scanned: i64 = tx
                .query_row(
                    "SELECT coalesce((SELECT min(id) FROM items WHERE first_seen >= ?1), (SELECT max(id) + 1 FROM items))",
                    [since],
                    |r| r.get(0),
                )
                .unwrap();
            let found = first_since(&tx, "items", since).unwrap();
            let between: i64 = tx
                .query_row(
                    "SELECT count(*) FROM items WHERE id >= min(?1, ?2) AND id < max(?1, ?2)",
                    [scanned, found],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(between, 0, "since {since}: scan says {scanned}, search {found}");
        }
        assert_eq!(first_since(&tx, "stories", i64::MAX).unwrap() - 1, {
            tx.query_row("SELECT max(id) FROM stories", [], |r| r.get::<_, i64>(0)).unwrap()
        });
    }

    /// A band key finds every item added under it, first added first, also after one
    /// map is appended to another (a committed group joining the unflushed keys).
    #[test]
    fn band_keys_find_their_items_in_the_order_added() {
        let text = "Police in twelve countries arrested suspects during a joint operation against \
            smuggling networks that moved people across the border in lorries";
        let fp = std::sync::Arc::new(dedup::fingerprint(text, &std::collections::HashSet::new()).unwrap());
        let banded = |item| Banded { item, story: item * 10, fp: fp.clone() };
        let (mut old, mut fresh) = (BandMap::default(), BandMap::default());
        old.insert(7, banded(1));
        old.insert(8, banded(2));
        fresh.insert(7, banded(3));
        fresh.insert(9, banded(4));
        fresh.insert(7, banded(5));
        let items = |m: &BandMap, key| m.get(key).map(|b| (b.item, b.story)).collect::<Vec<_>>();
        assert_eq!(items(&fresh, 7), [(3, 30), (5, 50)]);
        old.append(fresh);
        assert_eq!(items(&old, 7), [(1, 10), (3, 30), (5, 50)]);
        assert_eq!(items(&old, 9), [(4, 40)]);
        assert_eq!(items(&old, 6), []);
        assert_eq!(old.len(), 3);
        assert_eq!(old.pairs().collect::<Vec<_>>(), [(7, 1), (8, 2), (7, 3), (9, 4), (7, 5)]);
    }

    /// Forgetting items (a feed removed, retention) removes their band keys and no
    /// others.
    #[test]
    fn forgotten_items_leave_no_band_keys() {
        let now = Utc::now();
        let mut s = Store::open_in_memory().unwrap();
        s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
        s.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
        let other = "Customs officers seized four tonnes of cocaine hidden in a banana shipment at the port on Tuesday.";
        s.ingest(&job("b", vec![new_item("b1", other)], now)).unwrap();
        s.flush_bands().unwrap();
        let bands = |s: &Store, feed: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT count(*) FROM item_bands WHERE item_id IN (SELECT id FROM items WHERE feed_id = ?1)",
                    [feed],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(bands(&s, "a"), dedup::BANDS as i64);
        let b_bands = bands(&s, "b");
        assert_eq!(b_bands, dedup::BANDS as i64);
        s.purge_feed("a").unwrap();
        let total: i64 = s.conn.query_row("SELECT count(*) FROM item_bands", [], |r| r.get(0)).unwrap();
        assert_eq!(total, b_bands, "only b's keys are left");
    }

    /// What a poll reads before storing goes to a read connection: it is answered
    /// while the writer is busy, and sees what the writer committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_behind_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        store.sync_feeds([("a", "https://a/")]).unwrap();
        let (handle, join) = StoreHandle::spawn(store).unwrap();
        handle.ingest(job("a", vec![new_item("a1", TEXT)], Utc::now())).await.unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (entered, held) = tokio::sync::oneshot::channel::<()>();
        let writer = handle.clone();
        let busy = tokio::spawn(async move {
            writer
                .call(move |_| {
                    entered.send(()).ok();
                    hold.recv().ok();
                    Ok(())
                })
                .await
        });
        held.await.unwrap();
        let read = handle.read(|s| s.known_keys("a", ["a1", "a2"]));
        let known = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the read waited for the writer")
            .unwrap();
        assert_eq!(known.keys().collect::<Vec<_>>(), ["a1"]);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        drop(handle);
        join.join().unwrap();
    }

    /// A read connection still open when the writer closes must not leave the
    /// write-ahead log for the next process to read back.
    #[tokio::test]
    async fn the_writer_empties_the_log_when_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut store = Store::open(&path).unwrap();
        store.sync_feeds([("a", "https://a/")]).unwrap();
        let (handle, join) = StoreHandle::spawn(store).unwrap();
        let items = (0..50).map(|i| new_item(&format!("a{i}"), TEXT)).collect();
        handle.ingest(job("a", items, Utc::now())).await.unwrap();
        let wal = dir.path().join("db.sqlite-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the ingest went through the log");
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.item_count().unwrap(), 50);
        drop(handle);
        join.join().unwrap();
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0, "log left behind");
        assert_eq!(reader.item_count().unwrap(), 50);
    }

    /// Polls queued behind a busy writer share a transaction; one that fails there is
    /// retried alone, so only it fails.
    #[tokio::test]
    async fn queued_polls_are_grouped_and_a_failure_stays_with_its_feed() {
        let now = Utc::now();
        let mut store = Store::open_in_memory().unwrap();
        store.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
        let (handle, join) = StoreHandle::spawn(store).unwrap();
        // Hold the writer until all three polls are queued behind it.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = handle.call(move |_| {
            hold.recv().ok();
            Ok(())
        });
        let a = handle.ingest(job("a", vec![new_item("a1", TEXT)], now));
        let bad = handle.ingest(job(
            "nope",
            vec![new_item("n1", "Words enough for a story of its own here.")],
            now,
        ));
        let copy = format!("LYON (Wire) - {TEXT}");
        let b = handle.ingest(job("b", vec![new_item("b1", &copy)], now));
        let released = async {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        };
        let (busy, a, bad, b, ()) = tokio::join!(busy, a, bad, b, released);
        busy.unwrap();
        assert_eq!(a.unwrap().new, 1);
        assert!(bad.is_err(), "the unknown feed fails");
        assert_eq!(b.unwrap().new, 1);
        let (items, stories) = handle.call(|s| Ok((s.item_count()?, s.story_count()?))).await.unwrap();
        assert_eq!((items, stories), (2, 1), "the copy in b joined a's story");
        drop(handle);
        join.join().unwrap();
    }

    /// 304s and failures queued behind a busy writer are recorded together, each on
    /// its own feed's row.
    #[tokio::test]
    async fn queued_records_are_grouped_each_on_its_feed() {
        let now = Utc::now();
        let due = now + chrono::TimeDelta::minutes(30);
        let mut store = Store::open_in_memory().unwrap();
        store.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
        store
            .record(&FeedRecord::Failure {
                feed_id: "a".into(),
                status: Some(500),
                error: "earlier".into(),
                now,
                next_due: None,
            })
            .unwrap();
        let (handle, join) = StoreHandle::spawn(store).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = handle.call(move |_| {
            hold.recv().ok();
            Ok(())
        });
        let not_modified = |id: &str, moved: Option<&str>| FeedRecord::NotModified {
            feed_id: id.into(),
            status: 304,
            now,
            next_due: Some(due),
            moved_to: moved.map(Into::into),
        };
        let a = handle.record(not_modified("a", None));
        let b = handle.record(FeedRecord::Failure {
            feed_id: "b".into(),
            status: Some(503),
            error: "HTTP 503".into(),
            now,
            next_due: Some(due),
        });
        let c = handle.record(not_modified("c", Some("https://c2/")));
        let released = async {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        };
        let (busy, a, b, c, ()) = tokio::join!(busy, a, b, c, released);
        busy.unwrap();
        a.unwrap();
        b.unwrap();
        c.unwrap();
        let rows = handle.call(|s| s.feeds()).await.unwrap();
        let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
        let (a, b, c) = (row("a"), row("b"), row("c"));
        assert_eq!((a.last_status, a.error.as_deref(), a.failures), (Some(304), None, 0), "a recovered");
        assert_eq!((b.last_status, b.error.as_deref(), b.failures), (Some(503), Some("HTTP 503"), 1));
        assert_eq!((c.last_status, c.moved_to.as_deref()), (Some(304), Some("https://c2/")));
        for r in [&a, &b, &c] {
            assert_eq!((r.last_fetch, r.next_due), (Some(ts(now)), Some(ts(due))), "{}", r.id);
        }
        drop(handle);
        join.join().unwrap();
    }

    #[test]
    fn band_keys_lost_in_a_crash_are_written_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let now = Utc::now();
        let mut s = Store::open(&path).unwrap();
        s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
        s.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
        // Found through the keys still in memory, before any flush.
        let copy = format!("LYON (Wire) - {TEXT}");
        s.ingest(&job("b", vec![new_item("b1", &copy)], now)).unwrap();
        assert_eq!(s.story_count().unwrap(), 1);
        drop(s); // "crash": the keys were never flushed

        let mut s = Store::open(&path).unwrap();
        let written = s.flush_bands().unwrap();
        assert_eq!(written, 2 * dedup::BANDS);
        assert_eq!(s.flush_bands().unwrap(), 0, "nothing twice");
        let third = format!("{TEXT} Reporting by A. Smith.");
        s.ingest(&job("b", vec![new_item("b2", &third)], now)).unwrap();
        assert_eq!(s.story_count().unwrap(), 1, "found through the written keys");
    }

    #[test]
    fn the_band_filter_has_every_key_and_few_others() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as i64
        };
        let mut f = BandFilter::new(0, 0);
        let keys: Vec<i64> = (0..f.capacity).map(|_| next()).collect();
        keys.iter().for_each(|k| f.insert(*k));
        assert!(keys.iter().all(|k| f.may_contain(*k)), "no false negatives");
        let others = 100_000;
        let false_positives = (0..others).filter(|_| f.may_contain(next())).count();
        assert!(false_positives < others / 20, "{false_positives} false positives in {others}");
    }

    /// The band filter has every key in the table: the keys this connection flushed,
    /// and those another connection flushed after the filter was built.
    #[test]
    fn band_keys_are_found_after_this_or_another_connection_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let now = Utc::now();
        let mut a = Store::open(&path).unwrap();
        let mut b = Store::open(&path).unwrap();
        // A filter for every group, however small.
        a.band_filter_from = 0;
        b.band_filter_from = 0;
        a.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
        // Each connection's first ingest builds its filter, from an empty table.
        let other = "An unrelated story about dredging the harbour, with words enough to fingerprint it.";
        a.ingest(&job("a", vec![new_item("a0", other)], now)).unwrap();
        let another = "Another unrelated story, about a new tram line, with words enough for one as well.";
        b.ingest(&job("b", vec![new_item("b0", another)], now)).unwrap();
        a.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
        a.flush_bands().unwrap();
        a.ingest(&job("c", vec![new_item("c1", &format!("LYON (Wire) - {TEXT}"))], now)).unwrap();
        b.ingest(&job("b", vec![new_item("b1", &format!("{TEXT} Reporting by A. Smith."))], now)).unwrap();
        let story = |s: &Store, key: &str| {
            s.conn
                .query_row("SELECT story_id FROM items WHERE key = ?1", [key], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(story(&a, "c1"), story(&a, "a1"), "found through this connection's flush");
        assert_eq!(story(&a, "b1"), story(&a, "a1"), "found through another connection's flush");
        assert_eq!(a.story_count().unwrap(), 3);
        a.flush_bands().unwrap();
        a.release_memory().unwrap();
        a.ingest(&job("c", vec![new_item("c2", &format!("PARIS (Wire) - {TEXT}"))], now)).unwrap();
        assert_eq!(story(&a, "c2"), story(&a, "a1"), "found through a filter built again");
        assert_eq!(a.story_count().unwrap(), 3);
    }

    #[test]
    fn the_log_is_checkpointed_on_its_own_thread_then_by_the_writer_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut s = Store::open(&path).unwrap();
        s.conn.execute_batch("CREATE TABLE filler (b BLOB)").unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        // About 2,000 pages of log, past the threshold.
        let fill = |s: &Store| s.conn.execute("INSERT INTO filler VALUES (zeroblob(8000000))", []).unwrap();
        let before = size();
        let c = Checkpointer::start(&mut s).unwrap();
        fill(&s);
        // The database file grows when a checkpoint copies the log into it.
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while size() < before + 8_000_000 {
            assert!(std::time::Instant::now() < give_up, "the checkpoint thread never copied the log");
            std::thread::sleep(Duration::from_millis(10));
        }
        c.stop(&mut s);
        // SQLite's own checkpoint again, on the commit that grows the log past it.
        let grown = size();
        fill(&s);
        assert!(size() >= grown + 8_000_000, "the writer checkpoints itself again");
    }

    #[test]
    fn fts_check_reports_sqlite_errors() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.check_fts("\"border security\" OR smuggl*").is_ok());
        assert!(s.check_fts("AND AND").is_err());
    }
}
