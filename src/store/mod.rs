//! The store: every item, story, topic row and feed state, behind one face.
//!
//! Input: parsed items ready to store ([`IngestJob`]s), poll outcomes
//! ([`FeedRecord`]s), topic matches. Output: rows for curation, publishing and status,
//! all as types of [`crate::model`]. Nothing here knows HTTP or HTML beyond calling the
//! sanitiser on first publication.
//!
//! # Layout
//! - this file: [`Store`], the face every other module uses, and [`Writer`], a
//!   curation transaction; [`StoreError`], which names no engine type;
//! - `engine`: the traits an engine implements (`Engine` and its
//!   transactions): engines store and find, nothing more;
//! - `rules`: what defines behaviour, written once above the engines: when an item
//!   is unchanged, the order in which a new item looks for its story, which item of a
//!   story is a topic's entry, sanitising on first publication;
//! - `ingest`: storing a group of polls, item by item, by those rules;
//! - `bands`: near-duplicate search keys of items stored but not yet written;
//! - `writer`: the writer thread, group commit, and the read pool;
//! - `search`: full-text search as FTS5 does it (its tokens, its NEAR), for an
//!   engine without FTS5;
//! - `copy`: a whole store into another database (`db copy`);
//! - `sqlite/`, `postgres/`: the engines, one file per concern, each with its
//!   migrations.
//!
//! Invariants, whatever the engine:
//! - One transaction covers a feed poll's items, their full-text rows and the feed's
//!   new validators and status, so a crash can never leave an ETag recorded for items
//!   that were not stored (polls that queue up behind the writer share one: see
//!   [`StoreHandle`]).
//! - An item is stored once per `(feed_id, key)`; the same key with a different
//!   content hash is a correction and updates the row in place (same id, same story).
//! - Every new or corrected item is queued for curation in the same transaction, so
//!   curation after a crash still sees it.
//! - Keys of pruned items live on as tombstones and are never stored again.
//! - HTML never leaves the store unsanitised: rows hold it as sent until their first
//!   publication sanitises them in place, and reading a row not sanitised yet
//!   sanitises what it returns (`rules::safe_html`).

mod bands;
pub mod copy;
mod engine;
mod ingest;
pub(crate) mod postgres;
mod rules;
mod search;
mod skip;
pub(crate) mod sqlite;
mod writer;

use std::collections::{HashMap, HashSet};

pub use engine::{Listener, Notice};
pub use postgres::check_url as check_postgres_url;
pub use rules::Known;
pub use search::tokens;
pub use writer::StoreHandle;

use crate::model::{
    ClaimRequest, Claimed, Database, Delivered, Delivery, EntryRow, FeedRecord, FeedRow, HubSubscription,
    IngestCounts, IngestJob, Match, NodeRow, PreviewRow, PruneCounts, Scope, Source, TopicFilter,
};
use bands::BandMap;
use engine::{Engine, Lock, TopicTx};
use rules::TopicRow;

/// An error of the store. Its causes are the engine's own errors, boxed: nothing
/// outside the store sees an engine's types.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {at}")]
    Open {
        at: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot create the database folder {}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Refused rather than repaired: the operator decides what to do with the file.
    #[error("database {at} is corrupt or not a SQLite database; it was left untouched")]
    Corrupt {
        at: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "database {at} was written by a newer feedsieve (schema version {found}, this one knows {known})"
    )]
    TooNew { at: String, found: i64, known: i64 },
    #[error("database error")]
    Db(#[source] BoxError),
    /// A [`StoreError::Db`] on the writer or a read connection, with the database it
    /// happened in (a locked or read-only file is only clear with its name).
    #[error("database {at}")]
    In {
        at: String,
        #[source]
        source: BoxError,
    },
    #[error("the database writer has stopped")]
    Closed,
    /// `db copy` fills only an empty database.
    #[error("database {at} is not empty ({rows} rows in {table}); db copy only fills an empty database")]
    NotEmpty { at: String, table: &'static str, rows: u64 },
    #[error("the copy of {table} has {copied} rows where the source has {rows}")]
    CopyMismatch { table: &'static str, rows: u64, copied: u64 },
    /// A poll that outlived its claim: another node claimed the feed since, and its
    /// poll stands. Nothing of this one was stored.
    #[error("feed {feed}: the claim on it ran out and another node took it; this poll was not stored")]
    Fenced { feed: String },
    /// What one engine does and the other does not (`db backup` is SQLite's).
    #[error("{what} is not available on {at}: {instead}")]
    Unsupported { at: String, what: &'static str, instead: &'static str },
}

/// An engine's error, as a [`StoreError`] carries it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// This error with the database named, if it is a bare engine error.
    fn named(self, at: &str) -> StoreError {
        match self {
            StoreError::Db(source) => StoreError::In { at: at.to_owned(), source },
            e => e,
        }
    }
}

/// `meta` keys of [`Store::record_outputs`].
const OUTPUTS_VERSION: &str = "outputs_version";
const OUTPUTS_SIGNATURE: &str = "outputs_signature";
const OUTPUTS_AS_OF: &str = "outputs_as_of";

/// Band keys held in memory before [`Store::flush_bands`] writes them regardless
/// (about 2,000 items' worth, a few MiB): bounds memory in a pass over many feeds.
const MAX_UNFLUSHED_KEYS: usize = 48_000;

/// A connection to a database, whichever engine holds it: the writer's (see
/// [`StoreHandle`]) or a reader's.
pub struct Store {
    engine: Box<dyn Engine>,
    /// Band keys of items stored since the last [`Store::flush_bands`], by key: the
    /// item's story and fingerprint, for an engine that writes them in bulk later
    /// ([`Engine::defers_band_keys`]). Band keys are random, so writing them row by
    /// row with each feed's transaction dirtied a page per key in SQLite; they are
    /// written sorted, in bulk, once per pass instead. They are derived data: a crash
    /// before the flush loses nothing, the next flush recomputes them from the stored
    /// fingerprints.
    unflushed: BandMap,
    /// Whether `unflushed` holds every item stored after the last flush (false after
    /// a crash left some behind: the next flush then reads them back from the table).
    unflushed_complete: bool,
}

impl Store {
    fn with(engine: Box<dyn Engine>) -> Store {
        Store { engine, unflushed: BandMap::default(), unflushed_complete: false }
    }

    /// Opens (creating if needed) the database, SQLite file or PostgreSQL database,
    /// and brings its schema up to date.
    ///
    /// # Errors
    /// If the SQLite folder cannot be created, the file is not a database or is
    /// damaged ([`StoreError::Corrupt`], and nothing is written to it), PostgreSQL
    /// cannot be reached or refuses the login, or the schema was written by a newer
    /// version.
    pub fn open(db: impl Into<Database>) -> Result<Store, StoreError> {
        Ok(Store::with(match db.into() {
            Database::Sqlite(path) => Box::new(sqlite::Sqlite::open(&path)?),
            Database::Postgres(target) => Box::new(postgres::Postgres::open(&target)?),
        }))
    }

    /// Opens an existing database for reading only (status, export, preview).
    ///
    /// # Errors
    /// If the file does not exist or is not a feedsieve database, or PostgreSQL
    /// cannot be reached.
    pub fn open_read_only(db: impl Into<Database>) -> Result<Store, StoreError> {
        Ok(Store::with(match db.into() {
            Database::Sqlite(path) => Box::new(sqlite::Sqlite::open_read_only(&path)?),
            Database::Postgres(target) => Box::new(postgres::Postgres::open_read_only(&target)?),
        }))
    }

    /// A private in-memory database (an empty store to render from, tests).
    ///
    /// # Errors
    /// Only if SQLite itself fails.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store::with(Box::new(sqlite::Sqlite::open_in_memory()?)))
    }

    /// The database as errors and logs name it.
    pub fn name(&self) -> &str {
        self.engine.name()
    }

    /// Makes the feed rows match the configured feeds (id and URL). A feed whose URL
    /// changed loses what belonged to the old URL: its validators, its redirect, its
    /// last status and error (a 410 Gone among them) and its backoff; it is due at
    /// once. Rows of feeds no longer configured are kept with their items.
    ///
    /// # Errors
    /// On database failure.
    pub fn sync_feeds<'a>(
        &mut self,
        feeds: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), StoreError> {
        let feeds: Vec<(&str, &str)> = feeds.into_iter().collect();
        self.engine.sync_feeds(&feeds)
    }

    /// A feed's stored state, with its item count.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed(&self, id: &str) -> Result<Option<FeedRow>, StoreError> {
        Ok(self.engine.feeds(Some(&[id]), true)?.into_iter().next())
    }

    /// The stored state of the feeds `ids` (those that have a row), without item
    /// counts: what a pass over them needs (counting items on every poll would cost),
    /// in one read instead of one per feed.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed_states_of(&self, ids: &[&str]) -> Result<Vec<FeedRow>, StoreError> {
        self.engine.feeds(Some(ids), false)
    }

    /// Every feed row, by id, with its item count.
    ///
    /// # Errors
    /// On database failure.
    pub fn feeds(&self) -> Result<Vec<FeedRow>, StoreError> {
        self.engine.feeds(None, true)
    }

    /// Every feed row without item counts (`items` is 0), for the scheduler and
    /// `/metrics`, which run often.
    ///
    /// # Errors
    /// On database failure.
    pub fn feed_states(&self) -> Result<Vec<FeedRow>, StoreError> {
        self.engine.feeds(None, false)
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
        let mut seen = HashSet::new();
        let keys: Vec<&str> = keys.into_iter().filter(|k| seen.insert(*k)).collect();
        self.engine.known_keys(feed_id, &keys)
    }

    // WebSub.

    /// Records (or renews) a verified subscriber of a topic feed.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_subscribe(&mut self, s: &HubSubscription) -> Result<(), StoreError> {
        self.engine.hub_subscribe(s)
    }

    /// Ends a subscription; `false` if there was none.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_unsubscribe(&mut self, topic: &str, format: &str, callback: &str) -> Result<bool, StoreError> {
        self.engine.hub_unsubscribe(topic, format, callback)
    }

    /// A topic feed's output in `format` is now version `etag`: owed, from `now`, to
    /// every live subscriber that has neither it nor it pending. Returns how many. Many
    /// nodes may say so of one version: it is owed once.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_changed(
        &mut self,
        topic: &str,
        format: &str,
        etag: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.engine.hub_changed(topic, format, etag, now)
    }

    /// Up to `limit` deliveries due at `now`, held by this node until `until` (on
    /// PostgreSQL no other node takes them meanwhile).
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_due(&mut self, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.engine.hub_due(now, until, limit)
    }

    /// Records what a delivery came to.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_done(&mut self, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError> {
        self.engine.hub_done(d, outcome)
    }

    /// The subscriptions still live at `now`.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_subscriptions(&self, now: i64) -> Result<Vec<HubSubscription>, StoreError> {
        self.engine.hub_subscriptions(now)
    }

    /// Removes the subscriptions whose lease ended by `now`; returns how many.
    ///
    /// # Errors
    /// On database failure.
    pub fn hub_prune(&mut self, now: i64) -> Result<usize, StoreError> {
        self.engine.hub_prune(now)
    }

    /// The source feeds' subscriptions at their hubs.
    ///
    /// # Errors
    /// On database failure.
    pub fn sources(&self) -> Result<Vec<Source>, StoreError> {
        self.engine.sources(None)
    }

    /// One source feed's subscription at its hub, if it has one.
    ///
    /// # Errors
    /// On database failure.
    pub fn source(&self, feed_id: &str) -> Result<Option<Source>, StoreError> {
        Ok(self.engine.sources(Some(feed_id))?.into_iter().next())
    }

    /// # Errors
    /// On database failure.
    pub fn put_source(&mut self, s: &Source) -> Result<(), StoreError> {
        self.engine.put_source(s)
    }

    /// # Errors
    /// On database failure.
    pub fn remove_source(&mut self, feed_id: &str) -> Result<(), StoreError> {
        self.engine.remove_source(feed_id)
    }

    /// The stored contents of those of `keys` whose content is their page's main text
    /// (`full_text`): what a correction from the feed keeps.
    ///
    /// # Errors
    /// On database failure.
    pub fn article_contents(
        &self,
        feed_id: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        self.engine.article_contents(feed_id, keys)
    }

    /// A feed's known boilerplate sentences (hashes from [`crate::dedup::sentences`]).
    ///
    /// # Errors
    /// On database failure.
    pub fn boilerplate(&self, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
        self.engine.boilerplate(feed_id)
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
    /// One group is one commit, however many feeds answered at once.
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
        let (counts, fresh) = ingest::group(self.engine.as_mut(), &self.unflushed, group)?;
        if let Some(fresh) = fresh {
            self.unflushed.append(fresh);
        }
        // The group is committed: a failed flush must not report it as failed (its
        // polls would be stored again as "unchanged"). The keys stay in memory and
        // the next flush writes them.
        if self.unflushed.len() > MAX_UNFLUSHED_KEYS
            && let Err(e) = self.flush_bands()
        {
            tracing::warn!(error = %crate::error_chain(&e), "writing near-duplicate search keys failed; will retry");
        }
        Ok(counts)
    }

    /// Records a poll that stored no items on its feed's row.
    ///
    /// # Errors
    /// On database failure.
    pub fn record(&mut self, record: &FeedRecord) -> Result<(), StoreError> {
        self.engine.record_group(&[record])
    }

    /// Records polls that stored no items (304s and failures) in one transaction: one
    /// commit per feed made a warm pass over 100,000 feeds 100,000 transactions.
    ///
    /// # Errors
    /// On database failure; nothing of the group is recorded then.
    pub fn record_group(&mut self, records: &[&FeedRecord]) -> Result<Vec<()>, StoreError> {
        self.engine.record_group(records)?;
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
        let mut w = Writer { tx: self.engine.topic_tx()? };
        let r = f(&mut w)?;
        w.tx.commit()?;
        Ok(r)
    }

    /// Matches of a topic filter over stored items, best first within equal dates.
    ///
    /// # Errors
    /// On database failure.
    pub fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        self.engine.matches(filter, scope)
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
        self.engine.topic_entries(topic_id, limit, since)
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
        let shown = self.engine.topic_output_items(topic_id, limit, since)?;
        let raw = self.engine.unsanitized(&shown)?;
        if raw.is_empty() {
            return Ok(0); // the usual pass: nothing new in the topic, no transaction
        }
        let clean: Vec<rules::Sanitized> = raw.iter().map(rules::sanitize).collect();
        self.engine.store_sanitized(&clean)?;
        Ok(clean.len())
    }

    /// Number of stories in each topic.
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.engine.topic_sizes()
    }

    /// Total stored items.
    ///
    /// # Errors
    /// On database failure.
    pub fn item_count(&self) -> Result<i64, StoreError> {
        self.engine.item_count()
    }

    /// Total stories.
    ///
    /// # Errors
    /// On database failure.
    pub fn story_count(&self) -> Result<i64, StoreError> {
        self.engine.story_count()
    }

    /// Items per feed per day (days since the epoch, by published date or first-seen
    /// time), for days from `since` on.
    ///
    /// # Errors
    /// On database failure.
    pub fn items_per_day(&self, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
        self.engine.items_per_day(since)
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
        self.engine.topic_output_items(topic_id, limit, since)
    }

    /// Prunes items first seen before `cutoff` that are not in `keep` (the entries of
    /// current topic outputs): their keys become tombstones so a feed that still lists
    /// them cannot bring them back, and their index rows, topic rows and emptied
    /// stories go with them. Also drops near-duplicate search keys of items older than
    /// `window_cutoff` (they no longer take part in near-duplicate search). One
    /// transaction.
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
        self.engine.prune(cutoff, window_cutoff, keep, now)
    }

    /// Frees what this connection keeps only to go faster (caches an engine builds
    /// again when needed). For an idle daemon.
    ///
    /// # Errors
    /// On database failure.
    pub fn release_memory(&mut self) -> Result<(), StoreError> {
        self.engine.release_memory()
    }

    /// Makes what is committed durable in the database proper (SQLite: copies the
    /// write-ahead log into the database and empties the log).
    ///
    /// # Errors
    /// On database failure.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.engine.checkpoint()
    }

    /// Writes the near-duplicate search keys of every item stored since the last
    /// flush, in one transaction: from memory, or after a crash from the stored
    /// fingerprints, so keys lost in a crash are written too. Returns the number of
    /// keys written (0 for an engine that writes them with each ingest).
    ///
    /// # Errors
    /// On database failure; the keys are then written by a later flush.
    pub fn flush_bands(&mut self) -> Result<usize, StoreError> {
        if !self.engine.defers_band_keys() {
            return Ok(0);
        }
        let pairs: Option<Vec<(i64, i64)>> =
            self.unflushed_complete.then(|| self.unflushed.pairs().collect());
        let written = self.engine.flush_bands(pairs)?;
        // Not `clear()`: a pass over many feeds grows the map to tens of MiB, which the
        // idle daemon should not keep.
        self.unflushed = BandMap::default();
        self.unflushed_complete = true;
        Ok(written)
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
        self.engine.purge_feed(feed_id)
    }

    /// Records `now` as the time of the last prune without pruning.
    ///
    /// # Errors
    /// On database failure.
    pub fn set_last_prune(&mut self, now: i64) -> Result<(), StoreError> {
        self.engine.set_meta("last_prune", now)
    }

    /// Claims feeds for `req.node` (see [`crate::model::ClaimRequest`]): of `ids`,
    /// those no other node holds an unexpired claim on and, with `req.due_by`, due by
    /// then; each with a token its poll is stored under (see
    /// [`crate::model::FetchRecord::claim`]). Without claims (SQLite, one node) every
    /// feed of `ids` that has a row, without a token.
    ///
    /// # Errors
    /// On database failure; nothing is claimed then.
    pub fn claim(&mut self, ids: &[&str], req: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        self.engine.claim(ids, req)
    }

    /// Gives up `node`'s claims except on the feeds of `keep`, and tells the other
    /// nodes, which poll those feeds at once if due. Returns how many were given up.
    ///
    /// # Errors
    /// On database failure.
    pub fn release_claims(&mut self, node: &str, keep: &[&str]) -> Result<usize, StoreError> {
        self.engine.release_claims(node, keep)
    }

    /// Records that `node` (running since `started`, with the config digest
    /// `config`) is alive at `now`; returns every node seen in the last day (none
    /// without claims).
    ///
    /// # Errors
    /// On database failure.
    pub fn heartbeat(
        &mut self,
        node: &str,
        started: i64,
        config: &str,
        now: i64,
    ) -> Result<Vec<NodeRow>, StoreError> {
        self.engine.heartbeat(node, started, config, now)
    }

    /// The nodes seen in the last day, each with its unexpired claims at `now`.
    ///
    /// # Errors
    /// On database failure.
    pub fn nodes(&self, now: i64) -> Result<Vec<NodeRow>, StoreError> {
        self.engine.nodes(now)
    }

    /// Removes a node that stops cleanly from the list.
    ///
    /// # Errors
    /// On database failure.
    pub fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        self.engine.forget_node(node)
    }

    /// A connection of its own that waits for other nodes' notices, where the engine
    /// has them (PostgreSQL's LISTEN); `None` on SQLite, where a change is found by
    /// looking at [`Store::outputs_version`].
    ///
    /// # Errors
    /// If the connection cannot be opened.
    pub fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        self.engine.listener()
    }

    /// Runs `f` (curating and rendering the topics) while no other node does: the
    /// outputs a node records are those of the state it curated.
    ///
    /// # Errors
    /// What `f` returns, or the failure to take or give back the lock.
    pub fn curating<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.engine.lock(Lock::Curation, true)?;
        let r = f(self);
        let unlocked = self.engine.lock(Lock::Curation, false);
        let r = r?;
        unlocked?;
        Ok(r)
    }

    /// Records the topics' outputs as rendered at `as_of` (`signature`: a digest of
    /// all of them). If they differ from those recorded last, the version goes up and
    /// the other nodes are told, so that they render them again (with `as_of`, for the
    /// same bytes). Returns the version, new or not.
    ///
    /// # Errors
    /// On database failure.
    pub fn record_outputs(&mut self, signature: i64, as_of: i64) -> Result<i64, StoreError> {
        let version = self.engine.meta(OUTPUTS_VERSION)?.unwrap_or(0);
        if self.engine.meta(OUTPUTS_SIGNATURE)? == Some(signature) {
            return Ok(version);
        }
        self.engine.set_meta(OUTPUTS_SIGNATURE, signature)?;
        self.engine.set_meta(OUTPUTS_AS_OF, as_of)?;
        self.engine.set_meta(OUTPUTS_VERSION, version + 1)?;
        self.engine.notify(Notice::Outputs)?;
        Ok(version + 1)
    }

    /// The outputs' version and the time they were rendered at (see
    /// [`Store::record_outputs`]); `None` before any were recorded.
    ///
    /// # Errors
    /// On database failure.
    pub fn outputs_version(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let version = self.engine.meta(OUTPUTS_VERSION)?;
        let as_of = self.engine.meta(OUTPUTS_AS_OF)?;
        Ok(version.zip(as_of))
    }

    /// When [`Store::prune`] last ran (Unix seconds).
    ///
    /// # Errors
    /// On database failure.
    pub fn last_prune(&self) -> Result<Option<i64>, StoreError> {
        self.engine.meta("last_prune")
    }

    /// The engine's own consistency check: `"ok"` for a sound database.
    ///
    /// # Errors
    /// On database failure.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.engine.integrity_check()
    }

    /// Writes a consistent copy of the whole database to the new file `to`, while
    /// other connections and processes go on writing (SQLite's `VACUUM INTO`, in one
    /// read transaction). The file is only complete once this returns.
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] on PostgreSQL (`pg_dump` makes its backups); a
    /// file that cannot be written.
    pub fn backup_to(&self, to: &std::path::Path) -> Result<(), StoreError> {
        self.engine.backup_to(to)
    }

    /// Whether the database answers (for the watchdog and `/healthz`).
    ///
    /// # Errors
    /// When it does not.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.engine.ping()
    }

    /// Items matching an ad-hoc filter, best first, one per story, with highlighted
    /// title and snippet, for `topic preview`.
    ///
    /// # Errors
    /// On database failure.
    pub fn preview(&self, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError> {
        self.engine.preview(filter, limit)
    }
}

/// A curation transaction handed to [`Store::write`].
pub struct Writer<'c> {
    tx: Box<dyn TopicTx + 'c>,
}

impl Writer<'_> {
    /// The stored signature of a topic's definition (to notice a changed query).
    ///
    /// # Errors
    /// On database failure.
    pub fn topic_signature(&mut self, topic_id: &str) -> Result<Option<String>, StoreError> {
        self.tx.topic_signature(topic_id)
    }

    /// Replaces every match of a topic (backfill) and records its new signature. Only
    /// the difference from the stored rows is written: an edited definition mostly
    /// keeps its stories, and rewriting every row (and its index entries) was a
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
        self.tx.set_topic(topic_id, signature, now)?;
        let have = self.tx.topic_rows(topic_id, None)?;
        // An entry that still matches, in the same story, stays its story's entry:
        // readers know it by its id. Its score and date come from this pass's matches.
        let matched: HashMap<i64, i64> = m.iter().map(|x| (x.item_id, x.story_id)).collect();
        let mut want: HashMap<i64, TopicRow> = have
            .iter()
            .filter(|(s, r)| matched.get(&r.item_id) == Some(*s))
            .map(|(s, r)| (*s, TopicRow { score: f64::NEG_INFINITY, ..*r }))
            .collect();
        rules::fold_matches(&mut want, m);
        let gone: Vec<i64> = have.keys().filter(|s| !want.contains_key(*s)).copied().collect();
        self.tx.delete_topic_rows(topic_id, &gone)?;
        self.put_changed(topic_id, now, &want, &have)
    }

    /// Adds matches of pending items; removes pending items that no longer match
    /// (a correction can take an item out of a topic).
    ///
    /// # Errors
    /// On database failure.
    pub fn update_topic(&mut self, topic_id: &str, now: i64, m: &[Match]) -> Result<(), StoreError> {
        self.tx.unfile_pending(topic_id)?;
        let stories: Vec<i64> = m.iter().map(|x| x.story_id).collect();
        let have = self.tx.topic_rows(topic_id, Some(&stories))?;
        let mut want = have.clone();
        rules::fold_matches(&mut want, m);
        self.put_changed(topic_id, now, &want, &have)
    }

    /// Writes the rows of `want` that differ from those in `have`.
    fn put_changed(
        &mut self,
        topic_id: &str,
        now: i64,
        want: &HashMap<i64, TopicRow>,
        have: &HashMap<i64, TopicRow>,
    ) -> Result<(), StoreError> {
        let changed: Vec<(i64, TopicRow)> =
            want.iter().filter(|(s, r)| have.get(*s) != Some(*r)).map(|(s, r)| (*s, *r)).collect();
        self.tx.put_topic_rows(topic_id, now, &changed)
    }

    /// Forgets topics no longer configured.
    ///
    /// # Errors
    /// On database failure.
    pub fn retain_topics(&mut self, keep: &[&str]) -> Result<(), StoreError> {
        self.tx.retain_topics(keep)
    }

    /// Matches over the items in scope, seen from inside this transaction.
    ///
    /// # Errors
    /// On database failure.
    pub fn matches(&mut self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        self.tx.matches(filter, scope)
    }

    /// Empties the curation queue.
    ///
    /// # Errors
    /// On database failure.
    pub fn clear_pending(&mut self) -> Result<usize, StoreError> {
        self.tx.clear_pending()
    }
}

#[cfg(test)]
mod nodes_tests;
#[cfg(test)]
mod tests;
