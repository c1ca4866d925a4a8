//! The PostgreSQL engine (13 or newer), through the synchronous `postgres` client: the
//! writer thread and each read connection own one connection.
//!
//! One file per concern, as for SQLite: `connect` (URL, password sources, TLS),
//! `migrations` (the schema, applied under an advisory lock), `feeds`, `ingest`,
//! `fulltext` (the query tree as tsquery, NEAR checked exactly, preview), `topics`,
//! `maintenance`.
//!
//! Only this folder names the `postgres` client: its errors become [`StoreError`]s
//! here, and the password of the URL never reaches a message.

mod connect;
mod copy;
mod feeds;
mod fulltext;
mod ingest;
mod maintenance;
pub(crate) mod migrations;
mod topics;
mod websub;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use postgres::Client;

use super::StoreError;
use super::copy::{Loader, Table, Value};
use super::engine::{Engine, IngestTx, Listener, Lock, Notice, Opener, TopicTx};
use super::rules::{Known, RawHtml, Sanitized};
use crate::model::{
    ClaimRequest, Claimed, Delivered, Delivery, EntryRow, FeedRecord, FeedRow, HubSubscription, IngestJob,
    Match, NodeRow, PgTarget, PreviewRow, PruneCounts, Scope, Source, TopicFilter,
};

/// Whether a `postgres://` URL is one feedsieve can connect with (its options
/// known, its values of the right kind), said as an error without the URL in it.
///
/// # Errors
/// What is wrong with it.
pub fn check_url(url: &str) -> Result<(), String> {
    connect::config(url).map(drop)
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

/// A connection to a PostgreSQL database.
///
/// The `postgres` client runs a small Tokio runtime of its own and blocks on it, which
/// Tokio forbids on a thread that drives async tasks. The store's connections are used
/// on the writer's thread and by the read pool on the blocking pool, where that is
/// allowed and costs nothing; anywhere else (opening one in `feedsieve run`, a test
/// reading inside its runtime, a read connection dropped there) the work moves to a
/// thread of its own for the call ([`off_runtime`]).
pub struct Postgres {
    /// Reads take `&self`; the client needs `&mut` for every statement. One
    /// connection is only ever used by one thread at a time (the writer's, or one
    /// task of the read pool), so the cell is never contended.
    client: RefCell<Conn>,
    /// What this connection knows of the search keys stored.
    bands: ingest::Bands,
    target: PgTarget,
    /// The URL without its password.
    name: String,
}

impl Postgres {
    /// Connects and brings the schema up to date (under an advisory lock: of several
    /// nodes starting at once, one migrates and the others wait).
    ///
    /// # Errors
    /// If the server cannot be reached or refuses the login, or its schema is newer
    /// than this feedsieve knows.
    pub fn open(target: &PgTarget) -> Result<Postgres, StoreError> {
        off_runtime(|| {
            let mut db = Postgres::connect(target)?;
            migrations::migrate(db.client.get_mut(), &db.name)?;
            Ok(db)
        })
    }

    /// Connects for reading: the schema must be this version's (an older one is
    /// migrated first, as [`Postgres::open`] would); the session refuses writes.
    ///
    /// # Errors
    /// As [`Postgres::open`].
    pub fn open_read_only(target: &PgTarget) -> Result<Postgres, StoreError> {
        off_runtime(|| {
            let mut db = Postgres::connect(target)?;
            if migrations::behind(db.client.get_mut(), &db.name)? {
                drop(db);
                return Postgres::open(target).and_then(|_| Postgres::open_read_only(target));
            }
            db.client.get_mut().batch_execute("SET default_transaction_read_only = on")?;
            Ok(db)
        })
    }

    fn connect(target: &PgTarget) -> Result<Postgres, StoreError> {
        let name = target.redacted();
        let client =
            connect::client(target).map_err(|source| StoreError::Open { at: name.clone(), source })?;
        Ok(Postgres {
            client: RefCell::new(Conn(Some(client))),
            bands: ingest::Bands::Unknown,
            target: target.clone(),
            name,
        })
    }

    /// Runs `f` with the client, where it may block (see [`Postgres`]).
    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        let mut conn = self.client.borrow_mut();
        let client: &mut Client = &mut conn;
        off_runtime(|| f(client))
    }

    fn with_mut<R: Send>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        let client: &mut Client = self.client.get_mut();
        off_runtime(|| f(client))
    }
}

/// Runs `f` here if this thread may block, else on a thread of its own (see
/// [`Postgres`]).
fn off_runtime<R: Send>(f: impl FnOnce() -> Result<R, StoreError> + Send) -> Result<R, StoreError> {
    if crate::store::writer::may_block() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|_| Err(StoreError::Closed))
}

/// The channel of notices between nodes (see [`Notice`]).
const CHANNEL: &str = "feedsieve";

/// The advisory lock curation and rendering hold ("fscurate" in ASCII).
const CURATION_LOCK: i64 = 0x6673_6375_7261_7465;

/// A connection of its own that listens on [`CHANNEL`].
struct PgListener(Postgres);

impl Listener for PgListener {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<Notice>, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let client: &mut Client = self.0.client.get_mut();
        off_runtime(|| {
            let mut out = Vec::new();
            // The first for up to `timeout`, then whatever else has come with it.
            let first = client.notifications().timeout_iter(timeout).next()?;
            if let Some(n) = first {
                out.extend(Notice::parse(n.payload()));
                let mut more = client.notifications();
                let mut more = more.iter();
                while let Some(n) = more.next()? {
                    out.extend(Notice::parse(n.payload()));
                }
            }
            // A lost connection ends the wait as no notice would.
            if client.is_closed() {
                return Err(StoreError::Db("the connection listening for other nodes was closed".into()));
            }
            Ok(out)
        })
    }
}

/// A client that may be dropped anywhere: from inside a runtime, on a thread of its
/// own (see [`Postgres`]).
struct Conn(Option<Client>);

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("a connection is only taken out when dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("a connection is only taken out when dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take()
            && !crate::store::writer::may_block()
        {
            // Closing is polite, not needed: if no thread can be had, the server sees
            // the socket close.
            let _ = std::thread::Builder::new().name("feedsieve-pg-close".into()).spawn(move || drop(client));
        }
    }
}

impl Engine for Postgres {
    fn name(&self) -> &str {
        &self.name
    }

    fn reader(&self) -> Option<Opener> {
        let target = self.target.clone();
        Some(Arc::new(move || Ok(Box::new(Postgres::open_read_only(&target)?) as Box<dyn Engine>)))
    }

    fn sync_feeds(&mut self, feeds: &[(&str, &str)]) -> Result<(), StoreError> {
        self.with_mut(|c| feeds::sync(c, feeds))
    }

    fn feeds(&self, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError> {
        self.with(|c| feeds::rows(c, only, counts))
    }

    fn known_keys(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, Option<Known>>, StoreError> {
        self.with(|c| feeds::known_keys(c, feed_id, keys))
    }

    fn hub_subscribe(&mut self, s: &HubSubscription) -> Result<(), StoreError> {
        self.with_mut(|c| websub::subscribe(c, s))
    }
    fn hub_unsubscribe(&mut self, topic: &str, format: &str, callback: &str) -> Result<bool, StoreError> {
        self.with_mut(|c| websub::unsubscribe(c, topic, format, callback))
    }
    fn hub_changed(&mut self, topic: &str, format: &str, etag: &str, now: i64) -> Result<usize, StoreError> {
        self.with_mut(|c| websub::changed(c, topic, format, etag, now))
    }
    fn hub_due(&mut self, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.with_mut(|c| websub::due(c, now, until, limit))
    }
    fn hub_done(&mut self, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError> {
        self.with_mut(|c| websub::done(c, d, outcome))
    }
    fn hub_subscriptions(&self, now: i64) -> Result<Vec<HubSubscription>, StoreError> {
        self.with(|c| websub::subscriptions(c, now))
    }
    fn hub_prune(&mut self, now: i64) -> Result<usize, StoreError> {
        self.with_mut(|c| websub::prune(c, now))
    }
    fn sources(&self, only: Option<&str>) -> Result<Vec<Source>, StoreError> {
        self.with(|c| websub::sources(c, only))
    }
    fn put_source(&mut self, s: &Source) -> Result<(), StoreError> {
        self.with_mut(|c| websub::put_source(c, s))
    }
    fn remove_source(&mut self, feed_id: &str) -> Result<(), StoreError> {
        self.with_mut(|c| websub::remove_source(c, feed_id))
    }

    fn article_contents(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        self.with(|c| feeds::article_contents(c, feed_id, keys))
    }

    fn boilerplate(&self, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
        self.with(|c| feeds::boilerplate(c, feed_id))
    }

    fn record_group(&mut self, records: &[&FeedRecord]) -> Result<(), StoreError> {
        self.with_mut(|c| feeds::record_group(c, records))
    }

    fn has_claims(&self) -> bool {
        true
    }

    fn claim(&mut self, ids: &[&str], req: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        self.with_mut(|c| feeds::claim(c, ids, req))
    }

    fn release_claims(&mut self, node: &str, keep: &[&str]) -> Result<usize, StoreError> {
        let n = self.with_mut(|c| feeds::release(c, node, keep))?;
        if n > 0 {
            self.notify(Notice::Claims)?;
        }
        Ok(n)
    }

    fn heartbeat(
        &mut self,
        node: &str,
        started: i64,
        config: &str,
        now: i64,
    ) -> Result<Vec<NodeRow>, StoreError> {
        self.with_mut(|c| feeds::heartbeat(c, node, started, config, now))
    }

    fn nodes(&self, now: i64) -> Result<Vec<NodeRow>, StoreError> {
        self.with(|c| feeds::nodes(c, now))
    }

    fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        self.with_mut(|c| Ok(c.execute("DELETE FROM nodes WHERE name = $1", &[&node]).map(drop)?))
    }

    fn notify(&mut self, what: Notice) -> Result<(), StoreError> {
        self.with_mut(|c| Ok(c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &what.as_str()]).map(drop)?))
    }

    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        let target = self.target.clone();
        off_runtime(move || {
            let mut db = Postgres::connect(&target)?;
            db.client.get_mut().batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(Some(Box::new(PgListener(db)) as Box<dyn Listener>))
        })
    }

    fn lock(&mut self, lock: Lock, hold: bool) -> Result<(), StoreError> {
        let key = match lock {
            Lock::Curation => CURATION_LOCK,
        };
        let sql = if hold { "SELECT pg_advisory_lock($1)" } else { "SELECT pg_advisory_unlock($1)" };
        self.with_mut(|c| Ok(c.execute(sql, &[&key]).map(drop)?))
    }

    fn ingest_tx<'s, 'a: 's>(
        &'s mut self,
        group: &[&'a IngestJob],
    ) -> Result<Box<dyn IngestTx<'a> + 's>, StoreError> {
        Ok(Box::new(ingest::PgIngestTx::begin(self.client.get_mut(), &mut self.bands, group)?))
    }

    /// Written with each poll group: nodes sharing the database must find each
    /// other's copies at once, and PostgreSQL's index takes random keys in bulk well.
    fn defers_band_keys(&self) -> bool {
        false
    }

    fn flush_bands(&mut self, _pairs: Option<Vec<(i64, i64)>>) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn topic_tx(&mut self) -> Result<Box<dyn TopicTx + '_>, StoreError> {
        Ok(Box::new(topics::PgTopicTx::begin(self.client.get_mut())?))
    }

    fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        self.with(|c| fulltext::matches(c, filter, scope, None))
    }

    fn topic_entries(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<EntryRow>, StoreError> {
        self.with(|c| topics::entries(c, topic_id, limit, since))
    }

    fn topic_output_items(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<i64>, StoreError> {
        self.with(|c| topics::output_items(c, topic_id, limit, since))
    }

    fn unsanitized(&self, ids: &[i64]) -> Result<Vec<RawHtml>, StoreError> {
        self.with(|c| topics::unsanitized(c, ids))
    }

    fn store_sanitized(&mut self, rows: &[Sanitized]) -> Result<(), StoreError> {
        self.with_mut(|c| topics::store_sanitized(c, rows))
    }

    fn topic_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.with(topics::sizes)
    }

    fn preview(&self, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError> {
        self.with(|c| fulltext::preview(c, filter, limit))
    }

    fn item_count(&self) -> Result<i64, StoreError> {
        self.with(|c| Ok(c.query_one("SELECT count(*) FROM items", &[])?.get(0)))
    }

    fn story_count(&self) -> Result<i64, StoreError> {
        self.with(|c| Ok(c.query_one("SELECT count(*) FROM stories", &[])?.get(0)))
    }

    fn items_per_day(&self, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
        self.with(|c| maintenance::items_per_day(c, since))
    }

    /// PostgreSQL checks its own pages; this checks what feedsieve relies on: every
    /// item in a story that exists, and every topic row's item.
    fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(maintenance::integrity_check)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_one("SELECT 1", &[]).map(drop).map_err(Into::into))
    }

    fn prune(
        &mut self,
        cutoff: i64,
        window_cutoff: i64,
        keep: &[i64],
        now: i64,
    ) -> Result<PruneCounts, StoreError> {
        self.with_mut(|c| maintenance::prune(c, cutoff, window_cutoff, keep, now))
    }

    fn purge_feed(&mut self, feed_id: &str) -> Result<usize, StoreError> {
        self.with_mut(|c| maintenance::purge_feed(c, feed_id))
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| feeds::meta(c, key))
    }

    fn set_meta(&mut self, key: &str, value: i64) -> Result<(), StoreError> {
        self.with_mut(|c| feeds::set_meta(c, key, value))
    }

    /// Drops the search keys' filter (built again by the next large group).
    fn release_memory(&mut self) -> Result<(), StoreError> {
        self.bands = ingest::Bands::Released;
        Ok(())
    }

    /// Commits are durable when they return (the server's `synchronous_commit`).
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn row_counts(&self, tables: &[&str]) -> Result<Vec<u64>, StoreError> {
        self.with(|c| copy::row_counts(c, tables))
    }

    /// Not from inside a runtime: `f` runs on this thread.
    fn dump(
        &self,
        table: &Table,
        f: &mut dyn FnMut(Vec<Value>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        copy::dump(&mut self.client.borrow_mut(), table, f)
    }

    /// Not from inside a runtime: `f` runs on this thread.
    fn copy_in(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Loader) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        copy::copy_in(self.client.get_mut(), f)
    }
}

#[cfg(test)]
mod tests;
