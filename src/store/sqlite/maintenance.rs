//! Retention, purging a feed, checkpoints, and counts for status pages.

use std::collections::HashMap;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::feeds::set_meta;
use crate::dedup;
use crate::model::PruneCounts;
use crate::store::StoreError;

/// Prunes items first seen before `cutoff` that are not in `keep` (see
/// `Store::prune`), drops band keys of items older than `window_cutoff`, and merges
/// full-text segments. One transaction.
pub fn prune(
    conn: &mut Connection,
    cutoff: i64,
    window_cutoff: i64,
    keep: &[i64],
    now: i64,
) -> Result<PruneCounts, StoreError> {
    let keep = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
    Ok(PruneCounts { items, stories })
}

/// Forgets a feed entirely (see `Store::purge_feed`). One transaction.
pub fn purge_feed(conn: &mut Connection, feed_id: &str) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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

/// Items per feed per day (days since the epoch, by published date or first-seen
/// time), for days from `since` on.
pub fn items_per_day(conn: &Connection, since: i64) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
    let mut stmt = conn.prepare(
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

/// The id of the first row of `table` (`items` or `stories`) first seen at or after
/// `since`, or one past the last row if there is none: as ids grow with first_seen,
/// the rows before it are the older ones. A binary search over ids, a few dozen
/// lookups by id: a scan to find it read up to the whole store (gigabytes) every
/// maintenance. Should the clock have gone back, rows near the boundary may fall on
/// the other side of it; callers still test first_seen on what they delete.
pub(super) fn first_since(tx: &Transaction<'_>, table: &str, since: i64) -> Result<i64, StoreError> {
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

/// Checkpoints the write-ahead log on a thread of its own, so that the writer's
/// thread only appends to the log. SQLite's automatic checkpoint ran on the committing
/// connection, after the commit that grew the log past [`Checkpointer::PAGES`]: in a
/// cold poll a sixth of the writer thread's time, while the parse threads waited for
/// it. A passive checkpoint never blocks the writer, and copies what is committed.
pub struct Checkpointer {
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// SQLite's default automatic checkpoint threshold, in pages of log.
    const PAGES: i32 = 1000;

    /// Takes over checkpointing from `conn`, the writer's connection to `path`.
    /// `None` (and SQLite's own checkpoints stay) if a second connection cannot be
    /// opened.
    pub fn start(conn: &mut Connection, path: &std::path::Path) -> Option<Checkpointer> {
        let opened = Connection::open(path).and_then(|c| c.busy_timeout(super::BUSY_TIMEOUT).map(|()| c));
        let ckpt = match opened {
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
                    if let Err(e) = ckpt.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
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
        if let Err(e) = conn.wal_hook(Some(hook)) {
            tracing::warn!(error = %e, "could not hand checkpoints to their own thread");
        }
        Some(Checkpointer { thread })
    }

    /// Hands checkpointing back to `conn` and waits for the thread.
    pub fn stop(self, conn: &mut Connection) {
        // Dropping the hook drops the sender: the thread ends after its last request.
        let none: Option<fn(&mut rusqlite::hooks::Wal, std::ffi::c_int) -> rusqlite::Result<()>> = None;
        let restored =
            conn.wal_hook(none).and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", Self::PAGES));
        if let Err(e) = restored {
            tracing::warn!(error = %e, "restoring automatic checkpoints failed");
        }
        let _ = self.thread.join();
    }
}
