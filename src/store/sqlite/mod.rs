//! The SQLite engine: one database file (or a private in-memory database), in WAL
//! mode with `synchronous=NORMAL` and a busy timeout.
//!
//! One file per concern: `migrations` (the schema), `feeds` (feed rows, known keys,
//! boilerplate, `meta`), `ingest` (a poll group's transaction), `bands`
//! (near-duplicate search keys in `item_bands`, and the filter in front of them),
//! `fulltext` (the FTS5 index: rendering topic queries, matching, preview), `topics`
//! (topic rows and entries, sanitised HTML), `maintenance` (retention, purges,
//! checkpoints, counts).
//!
//! Only this folder names rusqlite: its errors become [`StoreError`]s here.

mod bands;
mod copy;
mod feeds;
mod fulltext;
mod ingest;
mod maintenance;
pub(crate) mod migrations;
pub(super) mod tokenizer;
mod topics;
mod websub;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;
use super::copy::{Loader, Table, Value};
use super::engine::{Engine, IngestTx, Opener, TopicTx};
use super::rules::{Known, RawHtml, Sanitized};
use crate::model::{
    Delivered, Delivery, EntryRow, FeedRecord, FeedRow, HubSubscription, IngestJob, Match, PreviewRow,
    PruneCounts, Scope, Source, TopicFilter,
};
use bands::{BandFilter, BandFilterState};
#[cfg(test)]
pub(super) use fulltext::INDEX_TOKENIZER;
use maintenance::Checkpointer;
use migrations::MIGRATIONS;

/// How long a connection waits for another's lock before it reports the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

/// A connection to a SQLite database.
pub struct Sqlite {
    conn: Connection,
    /// The file; `None` for a private in-memory database.
    path: Option<PathBuf>,
    /// The file as errors name it.
    name: String,
    /// What this connection knows of the band keys in `item_bands`.
    band_filter: BandFilterState,
    /// Items in one transaction from which a released band filter is built again.
    band_filter_from: usize,
    /// Checkpoints on a thread of their own, while this is the writer's connection.
    checkpointer: Option<Checkpointer>,
}

impl Sqlite {
    fn new(conn: Connection, path: Option<&Path>) -> Sqlite {
        Sqlite {
            conn,
            path: path.map(Path::to_owned),
            name: path.map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string()),
            band_filter: BandFilterState::Unknown,
            band_filter_from: BandFilter::WORTH_BUILDING,
            checkpointer: None,
        }
    }

    /// Opens (creating if needed) the database and brings its schema up to date.
    ///
    /// # Errors
    /// If the folder cannot be created, the file is not a database or is damaged
    /// ([`StoreError::Corrupt`], and nothing is written to it), or it was written by
    /// a newer version.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| open_error(path, source))?;
        let mut db = Sqlite::new(conn, Some(path));
        db.configure().map_err(|source| open_error(path, source))?;
        // Reading the schema now finds a damaged first page before anything is written.
        db.conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|source| open_error(path, source))?;
        // An upgrade held up by another process's lock names the database.
        db.migrate().map_err(|e| e.named(&db.name))?;
        Ok(db)
    }

    /// Opens an existing database for reading only.
    ///
    /// # Errors
    /// If the file does not exist or is not a feedsieve database.
    pub fn open_read_only(path: &Path) -> Result<Sqlite, StoreError> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |source| open_error(path, source);
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let db = Sqlite::new(conn, Some(path));
        let version = db.user_version().map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew { at: db.name, found: version, known });
        }
        if version < known {
            // Older schema: let the writer migrate it first.
            drop(db);
            return Sqlite::open(path).and_then(|_| Sqlite::open_read_only(path));
        }
        Ok(db)
    }

    /// A private in-memory database.
    ///
    /// # Errors
    /// Only if SQLite itself fails.
    pub fn open_in_memory() -> Result<Sqlite, StoreError> {
        let mut db = Sqlite::new(Connection::open_in_memory()?, None);
        db.configure()?;
        db.migrate()?;
        Ok(db)
    }

    fn configure(&mut self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Connections that switch a new file to WAL at the same moment each hold a
        // read lock and want the write lock: SQLite answers one of them "busy" at
        // once rather than wait for a lock that cannot come (its busy handler is not
        // asked). The other finishes the switch, so asking again succeeds.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match self.conn.pragma_update(None, "journal_mode", "WAL") {
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                switched => break switched?,
            }
        }
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

    /// Applies the steps the database lacks, each in a write transaction that reads
    /// the version again first: processes that open a new file at the same moment
    /// (a `poll` beside a starting `run`) wait for each other instead of making the
    /// same table twice.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let first = self.user_version()?;
        if first > known {
            return Err(StoreError::TooNew { at: self.name.clone(), found: first, known });
        }
        if first == known {
            // Up to date: no write transaction, which another process may be holding.
            return Ok(());
        }
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version > known {
                return Err(StoreError::TooNew { at: self.name.clone(), found: version, known });
            }
            let Some(sql) = MIGRATIONS.get(version as usize) else { return Ok(()) };
            if first > 0 {
                // A fresh database is no news; an upgrade can take minutes (a
                // rebuilt index), so say what is happening.
                tracing::info!(database = %self.name, "upgrading the schema to version {}", version + 1);
            }
            tx.execute_batch(sql)?;
            if version + 1 == migrations::BANDS_REKEYED {
                bands::rekey(&tx, &self.name)?;
            }
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
        }
    }
}

/// An error while opening `path`; a file SQLite does not recognise as a database, or
/// whose schema it cannot read, is reported as corrupt.
fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    let at = path.display().to_string();
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt { at, source: Box::new(source) },
        _ => StoreError::Open { at, source: Box::new(source) },
    }
}

impl Engine for Sqlite {
    fn name(&self) -> &str {
        &self.name
    }

    fn reader(&self) -> Option<Opener> {
        let path = self.path.clone()?;
        Some(Arc::new(move || Ok(Box::new(Sqlite::open_read_only(&path)?) as Box<dyn Engine>)))
    }

    fn writer_started(&mut self) {
        if let Some(path) = &self.path {
            self.checkpointer = Checkpointer::start(&mut self.conn, path);
        }
    }

    fn writer_stopping(&mut self) {
        if let Some(c) = self.checkpointer.take() {
            c.stop(&mut self.conn);
        }
        // The last connection to close folds the write-ahead log into the database;
        // when read connections outlive this one, none does, and the next process to
        // open it first reads the whole log back (a cold poll left 10 MB that made the
        // next poll 60-80 % slower). Idle readers do not block this.
        if self.path.is_some()
            && let Err(e) = self.checkpoint()
        {
            tracing::warn!(error = %crate::error_chain(&e), "checkpointing the database on close failed");
        }
    }

    fn sync_feeds(&mut self, feeds: &[(&str, &str)]) -> Result<(), StoreError> {
        feeds::sync(&mut self.conn, feeds)
    }

    fn feeds(&self, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError> {
        feeds::rows(&self.conn, only, counts)
    }

    fn known_keys(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, Option<Known>>, StoreError> {
        feeds::known_keys(&self.conn, feed_id, keys)
    }

    fn hub_subscribe(&mut self, s: &HubSubscription) -> Result<(), StoreError> {
        websub::subscribe(&self.conn, s)
    }
    fn hub_unsubscribe(&mut self, topic: &str, format: &str, callback: &str) -> Result<bool, StoreError> {
        websub::unsubscribe(&self.conn, topic, format, callback)
    }
    fn hub_changed(&mut self, topic: &str, format: &str, etag: &str, now: i64) -> Result<usize, StoreError> {
        websub::changed(&self.conn, topic, format, etag, now)
    }
    fn hub_due(&mut self, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        websub::due(&self.conn, now, until, limit)
    }
    fn hub_done(&mut self, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError> {
        websub::done(&self.conn, d, outcome)
    }
    fn hub_subscriptions(&self, now: i64) -> Result<Vec<HubSubscription>, StoreError> {
        websub::subscriptions(&self.conn, now)
    }
    fn hub_prune(&mut self, now: i64) -> Result<usize, StoreError> {
        websub::prune(&self.conn, now)
    }
    fn sources(&self, only: Option<&str>) -> Result<Vec<Source>, StoreError> {
        websub::sources(&self.conn, only)
    }
    fn put_source(&mut self, s: &Source) -> Result<(), StoreError> {
        websub::put_source(&self.conn, s)
    }
    fn remove_source(&mut self, feed_id: &str) -> Result<(), StoreError> {
        websub::remove_source(&self.conn, feed_id)
    }

    fn article_contents(&self, feed_id: &str, keys: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        feeds::article_contents(&self.conn, feed_id, keys)
    }

    fn boilerplate(&self, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
        feeds::boilerplate(&self.conn, feed_id)
    }

    fn record_group(&mut self, records: &[&FeedRecord]) -> Result<(), StoreError> {
        feeds::record_group(&mut self.conn, records)
    }

    fn ingest_tx<'s, 'a: 's>(
        &'s mut self,
        group: &[&'a IngestJob],
    ) -> Result<Box<dyn IngestTx<'a> + 's>, StoreError> {
        let items = group.iter().map(|j| j.items.len()).sum();
        Ok(Box::new(ingest::SqliteIngestTx::begin(
            &mut self.conn,
            &mut self.band_filter,
            items,
            self.band_filter_from,
        )?))
    }

    fn defers_band_keys(&self) -> bool {
        true
    }

    fn flush_bands(&mut self, pairs: Option<Vec<(i64, i64)>>) -> Result<usize, StoreError> {
        bands::flush(&mut self.conn, &mut self.band_filter, pairs)
    }

    fn topic_tx(&mut self) -> Result<Box<dyn TopicTx + '_>, StoreError> {
        Ok(Box::new(topics::SqliteTopicTx::begin(&mut self.conn)?))
    }

    fn matches(&self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        fulltext::matches(&self.conn, filter, scope)
    }

    fn topic_entries(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<EntryRow>, StoreError> {
        topics::entries(&self.conn, topic_id, limit, since)
    }

    fn topic_output_items(
        &self,
        topic_id: &str,
        limit: usize,
        since: Option<i64>,
    ) -> Result<Vec<i64>, StoreError> {
        topics::output_items(&self.conn, topic_id, limit, since)
    }

    fn unsanitized(&self, ids: &[i64]) -> Result<Vec<RawHtml>, StoreError> {
        topics::unsanitized(&self.conn, ids)
    }

    fn store_sanitized(&mut self, rows: &[Sanitized]) -> Result<(), StoreError> {
        topics::store_sanitized(&mut self.conn, rows)
    }

    fn topic_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        topics::sizes(&self.conn)
    }

    fn preview(&self, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError> {
        fulltext::preview(&self.conn, filter, limit)
    }

    fn item_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?)
    }

    fn story_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM stories", [], |r| r.get(0))?)
    }

    fn items_per_day(&self, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
        maintenance::items_per_day(&self.conn, since)
    }

    fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        let Some(path) = to.to_str() else {
            return Err(StoreError::Db(format!("{} is not a UTF-8 path", to.display()).into()));
        };
        self.conn.execute("VACUUM INTO ?1", [path])?;
        Ok(())
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(self.conn.query_row("SELECT 1", [], |_| Ok(()))?)
    }

    fn prune(
        &mut self,
        cutoff: i64,
        window_cutoff: i64,
        keep: &[i64],
        now: i64,
    ) -> Result<PruneCounts, StoreError> {
        let counts = maintenance::prune(&mut self.conn, cutoff, window_cutoff, keep, now)?;
        // Fewer keys: a filter built now is smaller and may fit again.
        if !matches!(self.band_filter, BandFilterState::Released) {
            self.band_filter = BandFilterState::Unknown;
        }
        self.checkpoint()?;
        Ok(counts)
    }

    fn purge_feed(&mut self, feed_id: &str) -> Result<usize, StoreError> {
        maintenance::purge_feed(&mut self.conn, feed_id)
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        feeds::meta(&self.conn, key)
    }

    fn set_meta(&mut self, key: &str, value: i64) -> Result<(), StoreError> {
        feeds::set_meta(&self.conn, key, value)
    }

    /// Drops the band filter (built again by the next large ingest) and SQLite's
    /// page cache.
    fn release_memory(&mut self) -> Result<(), StoreError> {
        self.band_filter = BandFilterState::Released;
        Ok(self.conn.release_memory()?)
    }

    /// Copies what the write-ahead log holds into the database and empties the log.
    fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn row_counts(&self, tables: &[&str]) -> Result<Vec<u64>, StoreError> {
        copy::row_counts(&self.conn, tables)
    }

    fn dump(
        &self,
        table: &Table,
        f: &mut dyn FnMut(Vec<Value>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        copy::dump(&self.conn, table, f)
    }

    fn copy_in(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Loader) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        copy::copy_in(&mut self.conn, f)
    }
}

#[cfg(test)]
mod tests;
