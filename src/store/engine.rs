//! What an engine implements: storing and finding, nothing that defines behaviour.
//!
//! The rules (which story a new item joins, when an item is unchanged, which item
//! is a topic's entry, sanitising on first publication) live above, in `rules` and
//! `ingest`, and reach an engine only as calls to these traits. The traits are
//! synchronous and object-safe: the writer thread drives one `Box<dyn Engine>`, and
//! each read connection is another.
//!
//! Transactions are objects of their own ([`IngestTx`], [`TopicTx`]) that borrow the
//! engine: dropping one without [`IngestTx::commit`] rolls it back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::StoreError;
use super::bands::Banded;
use super::copy::{Loader, Table, Value};
use super::rules::{Known, RawHtml, Sanitized, TopicRow};
use crate::model::{
    ClaimRequest, Claimed, Delivered, Delivery, EntryRow, FeedRecord, FeedRow, FetchRecord, HubSubscription,
    IngestJob, Match, NewItem, NodeRow, PreviewRow, PruneCounts, Scope, Source, TopicFilter,
};

/// Opens another connection to the same database, for reading.
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn Engine>, StoreError> + Send + Sync>;

/// One connection to a database.
pub trait Engine: Send {
    /// The database as errors name it: a path, or a URL without its password.
    fn name(&self) -> &str;

    /// How to open read connections to this database; `None` when only this
    /// connection can see it (a private in-memory database).
    fn reader(&self) -> Option<Opener>;

    /// This connection is the writer's from now on (an engine may hand work such as
    /// checkpoints to a thread of its own).
    fn writer_started(&mut self) {}

    /// The writer is done: hand back what [`Engine::writer_started`] took and leave
    /// the database tidy for the next process.
    fn writer_stopping(&mut self) {}

    // Feeds.

    /// Inserts configured feeds and updates their URLs (see `Store::sync_feeds`).
    fn sync_feeds(&mut self, feeds: &[(&str, &str)]) -> Result<(), StoreError>;
    /// Feed rows, all or those with the ids `only`, by id; `counts`: with item counts.
    fn feeds(&self, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError>;
    /// Of `keys` (distinct), those stored in `feed_id` and those tombstoned (`None`).
    fn known_keys(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, Option<Known>>, StoreError>;
    fn boilerplate(&self, feed_id: &str) -> Result<HashSet<u64>, StoreError>;
    /// The stored contents of those of `keys` whose content is their page's main text.
    fn article_contents(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, String>, StoreError>;
    // WebSub (see `Store`'s methods of the same names).

    fn hub_subscribe(&mut self, s: &HubSubscription) -> Result<(), StoreError>;
    fn hub_unsubscribe(&mut self, topic: &str, format: &str, callback: &str) -> Result<bool, StoreError>;
    fn hub_changed(&mut self, topic: &str, format: &str, etag: &str, now: i64) -> Result<usize, StoreError>;
    fn hub_due(&mut self, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    fn hub_done(&mut self, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError>;
    fn hub_subscriptions(&self, now: i64) -> Result<Vec<HubSubscription>, StoreError>;
    fn hub_prune(&mut self, now: i64) -> Result<usize, StoreError>;
    fn sources(&self, only: Option<&str>) -> Result<Vec<Source>, StoreError>;
    fn put_source(&mut self, s: &Source) -> Result<(), StoreError>;
    fn remove_source(&mut self, feed_id: &str) -> Result<(), StoreError>;

    /// Polls that stored no items, on their feed rows, in one transaction; none of
    /// them if any outlived its claim ([`StoreError::Fenced`]).
    fn record_group(&mut self, records: &[&FeedRecord]) -> Result<(), StoreError>;

    // Many nodes (an engine without claims, SQLite, keeps these defaults: one node).

    /// Whether polls claim feeds ([`Engine::claim`] does more than read them).
    fn has_claims(&self) -> bool {
        false
    }

    /// Claims, of the feeds `ids`, those no other node holds an unexpired claim on
    /// (and due, as `req` says), each with a new token; feeds locked by another
    /// node's claim at this moment are skipped, not waited for.
    fn claim(&mut self, ids: &[&str], req: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        let _ = req;
        Ok(self
            .feeds(Some(ids), false)?
            .into_iter()
            .map(|row| Claimed { row, token: None, taken_over: false })
            .collect())
    }
    /// Gives up `node`'s claims but those on `keep` (feeds being polled), and tells
    /// the other nodes. Returns how many were given up.
    fn release_claims(&mut self, node: &str, keep: &[&str]) -> Result<usize, StoreError> {
        let _ = (node, keep);
        Ok(0)
    }
    /// Records that `node` is alive (with its config's digest) and returns every
    /// node seen in the last day.
    fn heartbeat(
        &mut self,
        node: &str,
        started: i64,
        config: &str,
        now: i64,
    ) -> Result<Vec<NodeRow>, StoreError> {
        let _ = (node, started, config, now);
        Ok(Vec::new())
    }
    /// The nodes seen in the last day, with their unexpired claims at `now`.
    fn nodes(&self, now: i64) -> Result<Vec<NodeRow>, StoreError> {
        let _ = now;
        Ok(Vec::new())
    }
    /// A node that stopped cleanly leaves the list.
    fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        let _ = node;
        Ok(())
    }
    /// Tells every node listening (see [`Engine::listener`]) that `what` changed.
    fn notify(&mut self, what: Notice) -> Result<(), StoreError> {
        let _ = what;
        Ok(())
    }
    /// A connection of its own that waits for other nodes' notices; `None` where
    /// there are none to wait for (then changes are found by looking).
    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        Ok(None)
    }
    /// Holds (`true`) or lets go of a lock that one connection of all holds at a
    /// time: curation and rendering, or maintenance. Holding one the connection
    /// already holds is an error of the caller.
    fn lock(&mut self, lock: Lock, hold: bool) -> Result<(), StoreError> {
        let _ = (lock, hold);
        Ok(())
    }

    // Storing polls.

    /// A transaction for storing `group`'s polls (given so that an engine may look up
    /// what the group needs in bulk; the calls still come item by item).
    fn ingest_tx<'s, 'a: 's>(
        &'s mut self,
        group: &[&'a IngestJob],
    ) -> Result<Box<dyn IngestTx<'a> + 's>, StoreError>;
    /// Whether near-duplicate search keys are written later, in bulk, by
    /// [`Engine::flush_bands`]; otherwise [`IngestTx::add_band_keys`] writes them
    /// with the items.
    fn defers_band_keys(&self) -> bool;
    /// Writes the search keys of the items stored since the last flush: `pairs`
    /// (key, item id), or when `None` (some were lost in a crash) those computed from
    /// the stored fingerprints. Returns the number written.
    fn flush_bands(&mut self, pairs: Option<Vec<(i64, i64)>>) -> Result<usize, StoreError>;

    // Topics.

    /// A curation transaction.
    fn topic_tx(&mut self) -> Result<Box<dyn TopicTx + '_>, StoreError>;
    fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError>;
    fn topic_entries(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<EntryRow>, StoreError>;
    fn topic_output_items(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<i64>, StoreError>;
    /// Of the items `ids`, those whose HTML is not sanitised yet, as stored.
    fn unsanitized(&self, ids: &[i64]) -> Result<Vec<RawHtml>, StoreError>;
    /// Replaces items' HTML with its sanitised form, marking them sanitised.
    fn store_sanitized(&mut self, rows: &[Sanitized]) -> Result<(), StoreError>;
    fn topic_sizes(&self) -> Result<HashMap<String, i64>, StoreError>;
    fn preview(&self, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError>;

    // Status.

    fn item_count(&self) -> Result<i64, StoreError>;
    fn story_count(&self) -> Result<i64, StoreError>;
    fn items_per_day(&self, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError>;
    fn integrity_check(&self) -> Result<String, StoreError>;
    /// A consistent copy of the database in the new file `to` (see `Store::backup_to`).
    fn backup_to(&self, to: &std::path::Path) -> Result<(), StoreError> {
        let _ = to;
        Err(StoreError::Unsupported {
            at: self.name().to_owned(),
            what: "db backup",
            instead: "back PostgreSQL up with pg_dump -Fc (and restore with pg_restore)",
        })
    }
    fn ping(&self) -> Result<(), StoreError>;

    // Maintenance.

    fn prune(
        &mut self,
        cutoff: i64,
        window_cutoff: i64,
        keep: &[i64],
        now: i64,
    ) -> Result<PruneCounts, StoreError>;
    fn purge_feed(&mut self, feed_id: &str) -> Result<usize, StoreError>;
    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError>;
    fn set_meta(&mut self, key: &str, value: i64) -> Result<(), StoreError>;
    fn release_memory(&mut self) -> Result<(), StoreError>;
    fn checkpoint(&self) -> Result<(), StoreError>;

    // Copying a store (`db copy`); not from inside an async runtime.

    /// Rows in each of `tables`, in order.
    fn row_counts(&self, tables: &[&str]) -> Result<Vec<u64>, StoreError>;
    /// Calls `f` with every row of `table` (values in the order of its columns).
    fn dump(
        &self,
        table: &Table,
        f: &mut dyn FnMut(Vec<Value>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs `f` with a loader inside one transaction, committed if `f` succeeds; then
    /// brings what the engine keeps beside the rows up to date (sequences).
    fn copy_in(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Loader) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// What a notice between nodes says changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The topics' outputs (see `Store::outputs_changed`).
    Outputs,
    /// Claims were given up: feeds may be polled now.
    Claims,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Outputs => "outputs",
            Notice::Claims => "claims",
        }
    }

    pub fn parse(s: &str) -> Option<Notice> {
        match s {
            "outputs" => Some(Notice::Outputs),
            "claims" => Some(Notice::Claims),
            _ => None,
        }
    }
}

/// Locks one connection of all holds at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Curating and rendering the topics.
    Curation,
}

/// Waits for notices from other connections.
pub trait Listener: Send {
    /// The notices received within `timeout` (empty if none came). An error means the
    /// connection is lost: open another listener.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<Notice>, StoreError>;
}

/// The first stored item with a canonical link, and the story it is in.
#[derive(Debug, Clone, Copy)]
pub struct Linked {
    pub item: i64,
    pub story: i64,
}

/// Storing a group of polls: `'a` is how long the group's items live.
pub trait IngestTx<'a> {
    fn tombstoned(&mut self, feed_id: &str, key: &str) -> Result<bool, StoreError>;
    /// The item stored under `(feed_id, key)`, if any.
    fn stored(&mut self, feed_id: &str, key: &str) -> Result<Option<Known>, StoreError>;
    /// The first stored item with this canonical link, and its story.
    fn story_by_link(&mut self, link: &str) -> Result<Option<Linked>, StoreError>;
    /// Adds to `out`, in the order they were stored, the stored items first seen at
    /// or after `since` that share any of `keys`, each with the story it is in now
    /// (after this transaction's merges). `linked`: the stored item with the new
    /// item's canonical link ([`IngestTx::story_by_link`]); an engine may use its
    /// keys to seek fewer.
    fn band_candidates(
        &mut self,
        keys: &[i64],
        since: i64,
        linked: Option<i64>,
        out: &mut Vec<Banded>,
    ) -> Result<(), StoreError>;
    /// The story item `item` is in now, found earlier in `story`: a merge since may
    /// have moved it (the search keys kept in memory still name the story it had).
    fn story_now(&mut self, item: i64, story: i64) -> Result<i64, StoreError>;
    /// A new story first seen `now`.
    fn new_story(&mut self, now: i64) -> Result<i64, StoreError>;
    /// Moves every item of the stories `from` into the story `into`, which keeps
    /// the earliest first sighting of them all, and forgets those stories. Their items
    /// are queued for curation again: a topic's entries for them are filed anew,
    /// under `into`.
    fn merge_stories(&mut self, into: i64, from: &[i64]) -> Result<(), StoreError>;
    /// Stores a new item in `story`, or (`correction`) a stored one's new content,
    /// leaving its story alone; indexes it and queues it for curation. Returns its id.
    fn put_item(
        &mut self,
        feed_id: &str,
        n: &'a NewItem,
        story: i64,
        now: i64,
        correction: bool,
    ) -> Result<i64, StoreError>;
    fn add_boilerplate(&mut self, feed_id: &str, hashes: &[u64]) -> Result<(), StoreError>;
    /// A successful fetch on the feed's row: validators, health, next due time.
    fn record_fetch(&mut self, feed_id: &str, record: &FetchRecord, now: i64) -> Result<(), StoreError>;
    /// Search keys (key, item id) of new items, for an engine that does not defer
    /// them.
    fn add_band_keys(&mut self, keys: &[(i64, i64)]) -> Result<(), StoreError>;
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A curation transaction.
pub trait TopicTx {
    fn topic_signature(&mut self, topic_id: &str) -> Result<Option<String>, StoreError>;
    /// Records a topic's signature (inserting the topic if new).
    fn set_topic(&mut self, topic_id: &str, signature: &str, now: i64) -> Result<(), StoreError>;
    /// A topic's rows by story, all or those of `stories`.
    fn topic_rows(
        &mut self,
        topic_id: &str,
        stories: Option<&[i64]>,
    ) -> Result<HashMap<i64, TopicRow>, StoreError>;
    fn delete_topic_rows(&mut self, topic_id: &str, stories: &[i64]) -> Result<(), StoreError>;
    /// Removes the topic's rows whose entry item is pending (to be filed again).
    fn unfile_pending(&mut self, topic_id: &str) -> Result<(), StoreError>;
    /// Inserts or replaces rows (story, row), matched at `now`.
    fn put_topic_rows(
        &mut self,
        topic_id: &str,
        now: i64,
        rows: &[(i64, TopicRow)],
    ) -> Result<(), StoreError>;
    /// Forgets every topic not in `keep`.
    fn retain_topics(&mut self, keep: &[&str]) -> Result<(), StoreError>;
    fn matches(&mut self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError>;
    fn clear_pending(&mut self) -> Result<usize, StoreError>;
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
