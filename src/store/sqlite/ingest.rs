//! A poll group's transaction: `BEGIN IMMEDIATE`, item rows as they come, their
//! full-text rows last, one commit.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::bands::{BandFilter, BandFilterState, band_filter};
use super::feeds::legacy_hashes_below;
use super::fulltext;
use crate::dedup;
use crate::model::{FetchRecord, NewItem, ts};
use crate::store::bands::Banded;
use crate::store::engine::{IngestTx, Linked};
use crate::store::rules::Known;
use crate::store::{StoreError, skip};

/// A full-text index write, deferred to the end of the transaction.
enum FtsOp<'a> {
    Delete(i64),
    Insert(i64, &'a NewItem),
}

/// Full-text rows are written last, after every item row: FTS5 flushes its in-memory
/// index at each statement that opens a savepoint, so interleaving them with item
/// writes turned each item into its own index segment. One group is one segment.
pub struct SqliteIngestTx<'c, 'a> {
    tx: Transaction<'c>,
    /// The band keys `item_bands` may hold; `None`: seek the table for every key.
    filter: Option<&'c BandFilter>,
    /// Ids below which content hashes are legacy ones, read once per transaction.
    legacy_below: Option<i64>,
    fts: Vec<FtsOp<'a>>,
}

impl<'c> SqliteIngestTx<'c, '_> {
    /// Begins the transaction, with the band filter for a group of `items`
    /// (built, from `worth` items on, if it was released).
    pub fn begin(
        conn: &'c mut Connection,
        filter: &'c mut BandFilterState,
        items: usize,
        worth: usize,
    ) -> Result<Self, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let filter = band_filter(&tx, filter, items, worth)?;
        Ok(SqliteIngestTx { tx, filter, legacy_below: None, fts: Vec::new() })
    }
}

impl<'a> IngestTx<'a> for SqliteIngestTx<'_, 'a> {
    fn tombstoned(&mut self, feed_id: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM tombstones WHERE feed_id = ?1 AND key = ?2")?
            .exists(params![feed_id, key])?)
    }

    fn stored(&mut self, feed_id: &str, key: &str) -> Result<Option<Known>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT id, content_hash FROM items WHERE feed_id = ?1 AND key = ?2")?
            .query_row(params![feed_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((id, hash)) = row else { return Ok(None) };
        let legacy_below = match self.legacy_below {
            Some(l) => l,
            None => *self.legacy_below.insert(legacy_hashes_below(&self.tx)?),
        };
        // Only "changed or not" is asked here.
        Ok(Some(Known::of(id, &hash, legacy_below, false)))
    }

    fn story_by_link(&mut self, link: &str) -> Result<Option<Linked>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, story_id FROM items WHERE canonical_link = ?1 ORDER BY id LIMIT 1")?
            .query_row([link], |r| Ok(Linked { item: r.get(0)?, story: r.get(1)? }))
            .optional()?)
    }

    fn band_candidates(
        &mut self,
        keys: &[i64],
        since: i64,
        linked: Option<i64>,
        out: &mut Vec<Banded>,
    ) -> Result<(), StoreError> {
        // Only the keys the table may hold.
        let mut wanted: Vec<i64> =
            keys.iter().copied().filter(|k| self.filter.is_none_or(|f| f.may_contain(*k))).collect();
        let sole = match (self.filter, linked) {
            (Some(filter), Some(item)) if wanted.len() >= 2 => {
                sole_holder(&self.tx, filter, item, &mut wanted)?
            }
            _ => None,
        };
        let start = out.len();
        seek_bands(&self.tx, &wanted, since, out)?;
        // The item where the seek would have put it (by id), unless another key of
        // its found it anyway.
        if let Some((item, _)) = sole.filter(|(_, first_seen)| *first_seen >= since) {
            let at = start + out[start..].partition_point(|c| c.item < item.item);
            if out.get(at).is_none_or(|c| c.item != item.item) {
                out.insert(at, item);
            }
        }
        Ok(())
    }

    fn story_now(&mut self, item: i64, story: i64) -> Result<i64, StoreError> {
        // Merges update the rows in this transaction: the row knows.
        Ok(self
            .tx
            .prepare_cached("SELECT story_id FROM items WHERE id = ?1")?
            .query_row([item], |r| r.get(0))
            .optional()?
            .unwrap_or(story))
    }

    fn new_story(&mut self, now: i64) -> Result<i64, StoreError> {
        self.tx.prepare_cached("INSERT INTO stories (first_seen) VALUES (?1)")?.execute([now])?;
        Ok(self.tx.last_insert_rowid())
    }

    fn merge_stories(&mut self, into: i64, from: &[i64]) -> Result<(), StoreError> {
        for f in from {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pending (item_id) SELECT id FROM items WHERE story_id = ?1",
                )?
                .execute([f])?;
            self.tx
                .prepare_cached("UPDATE items SET story_id = ?1 WHERE story_id = ?2")?
                .execute([into, *f])?;
            self.tx
                .prepare_cached(
                    "UPDATE stories SET first_seen = min(first_seen,
                         coalesce((SELECT first_seen FROM stories WHERE id = ?2), first_seen))
                     WHERE id = ?1",
                )?
                .execute([into, *f])?;
            self.tx.prepare_cached("DELETE FROM stories WHERE id = ?1")?.execute([f])?;
        }
        Ok(())
    }

    fn put_item(
        &mut self,
        feed_id: &str,
        n: &'a NewItem,
        story: i64,
        now: i64,
        correction: bool,
    ) -> Result<i64, StoreError> {
        let it = &n.item;
        let authors = serde_json::to_string(&it.authors).unwrap_or_else(|_| "[]".into());
        let categories = serde_json::to_string(&it.categories).unwrap_or_else(|_| "[]".into());
        let fp_bytes = n.fingerprint.as_ref().map(dedup::signature_bytes);
        // A correction keeps its story: the conflict clause leaves story_id alone.
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO items (feed_id, key, guid, link, canonical_link, title, summary, content, authors,
                     categories, published, updated, first_seen, changed_at, content_hash, story_id, fingerprint,
                     base, sanitized, article)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17, 0, ?18)
                 ON CONFLICT (feed_id, key) DO UPDATE SET
                     guid = excluded.guid, link = excluded.link, canonical_link = excluded.canonical_link,
                     title = excluded.title, summary = excluded.summary, content = excluded.content,
                     authors = excluded.authors, categories = excluded.categories, published = excluded.published,
                     updated = excluded.updated, changed_at = excluded.changed_at,
                     content_hash = excluded.content_hash, fingerprint = excluded.fingerprint,
                     base = excluded.base, sanitized = 0, article = excluded.article
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
                    i64::from(n.article),
                ],
                |r| r.get(0),
            )?;
        if correction {
            self.fts.push(FtsOp::Delete(id));
        }
        self.fts.push(FtsOp::Insert(id, n));
        self.tx.prepare_cached("INSERT OR IGNORE INTO pending (item_id) VALUES (?1)")?.execute([id])?;
        Ok(id)
    }

    fn add_boilerplate(&mut self, feed_id: &str, hashes: &[u64]) -> Result<(), StoreError> {
        let mut add = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO feed_boilerplate (feed_id, hash) VALUES (?1, ?2)")?;
        for h in hashes {
            add.execute(params![feed_id, *h as i64])?;
        }
        Ok(())
    }

    fn record_fetch(&mut self, feed_id: &str, record: &FetchRecord, now: i64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE feeds SET etag = ?2, last_modified = ?3, last_fetch = ?4, last_success = ?4,
                     last_status = ?5, error = NULL, failures = 0, title = COALESCE(?6, title),
                     site_link = COALESCE(?7, site_link), moved_to = ?8, next_due = ?9,
                     ttl_minutes = ?10,
                     article_failures = COALESCE(?11, article_failures),
                     article_error = CASE WHEN ?11 IS NULL THEN article_error ELSE ?12 END
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
                record.ttl_minutes,
                record.articles.as_ref().map(|a| i64::from(a.failed)),
                record.articles.as_ref().and_then(|a| a.error.as_deref()),
            ])?;
        Ok(())
    }

    fn add_band_keys(&mut self, _keys: &[(i64, i64)]) -> Result<(), StoreError> {
        // Deferred: written sorted, in bulk, by the next flush (see `bands::flush`).
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if skip::parts().fts {
            self.fts.clear();
        }
        {
            let mut delete = self.tx.prepare_cached("DELETE FROM items_fts WHERE rowid = ?1")?;
            let mut insert = self.tx.prepare_cached(&fulltext::index_insert("items_fts"))?;
            for op in &self.fts {
                match op {
                    FtsOp::Delete(id) => delete.execute([id]).map(drop)?,
                    FtsOp::Insert(id, n) => fulltext::index_row(
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
        self.tx.commit()?;
        Ok(())
    }
}

/// Adds to `out`, by id, the stored items first seen at or after `since` that hold
/// any of `keys` (at most [`dedup::BANDS`] of them).
fn seek_bands(
    tx: &Transaction<'_>,
    keys: &[i64],
    since: i64,
    out: &mut Vec<Banded>,
) -> Result<(), StoreError> {
    // One placeholder per key (band_keys always gives BANDS of them).
    static BY_BANDS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT i.id, i.story_id, i.fingerprint FROM items i
             WHERE i.id IN (SELECT item_id FROM item_bands WHERE key IN ({}))
               AND i.first_seen >= ? AND i.fingerprint IS NOT NULL
             ORDER BY i.id",
            vec!["?"; dedup::BANDS].join(", ")
        )
    });
    // The statement's other placeholders repeat one of the keys (the IN list is a
    // set), and no key at all skips the query.
    let Some(first) = keys.first() else { return Ok(()) };
    let mut stmt = tx.prepare_cached(&BY_BANDS)?;
    let keys = keys.iter().chain(std::iter::repeat(first)).take(dedup::BANDS);
    let args = keys.map(|k| k as &dyn rusqlite::ToSql).chain([&since as &dyn rusqlite::ToSql]);
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        let blob: Vec<u8> = r.get(2)?;
        if let Some(fp) = dedup::signature_from_bytes(&blob) {
            out.push(Banded { item: r.get(0)?, story: r.get(1)?, fp: Arc::new(fp) });
        }
    }
    Ok(())
}

/// The stored `item` (the first with the new item's canonical link), with its first
/// sighting, when it is the only item that holds two or more of the `wanted` keys:
/// those keys are then taken out of `wanted`, as seeking them would find that item
/// alone. A copy
/// syndicated under the link of a stored story shares most of its keys with the
/// item it copies, and seeking each read a random page of the table: in a cold
/// poll of 1,000 feeds, where one item in twelve is such a copy, half of the
/// writer's reads of the table (27,000 pages; 14,000 now).
///
/// The filter, which has every row of the table (it was checked at the start of
/// this transaction, and keys are written in transactions of their own), tells the
/// keys no two rows share. Those of the item's keys are its alone if its keys are
/// in the table at all: an item's keys are written, and deleted, together, so one
/// seek for one of them tells.
pub(super) fn sole_holder(
    tx: &Transaction<'_>,
    filter: &BandFilter,
    item: i64,
    wanted: &mut Vec<i64>,
) -> Result<Option<(Banded, i64)>, StoreError> {
    let row: Option<(i64, i64, Option<Vec<u8>>)> = tx
        .prepare_cached("SELECT story_id, first_seen, fingerprint FROM items WHERE id = ?1")?
        .query_row([item], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((story, first_seen, Some(blob))) = row else { return Ok(None) };
    let Some(fp) = dedup::signature_from_bytes(&blob) else { return Ok(None) };
    let theirs = dedup::band_keys(&fp);
    let sole: Vec<i64> =
        wanted.iter().copied().filter(|k| theirs.contains(k) && !filter.may_repeat(*k)).collect();
    // Telling costs one seek: worth it from two keys spared.
    let Some(&probe) = sole.first().filter(|_| sole.len() >= 2) else { return Ok(None) };
    let held = tx
        .prepare_cached("SELECT 1 FROM item_bands WHERE key = ?1 AND item_id = ?2")?
        .exists(params![probe, item])?;
    if !held {
        return Ok(None);
    }
    wanted.retain(|k| !sole.contains(k));
    Ok(Some((Banded { item, story, fp: Arc::new(fp) }, first_seen)))
}
