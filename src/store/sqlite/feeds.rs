//! Feed rows, what a poll reads before storing (known keys, boilerplate), polls that
//! stored nothing, and the `meta` values.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::model::{FeedRecord, FeedRow, ts};
use crate::store::StoreError;
use crate::store::rules::Known;

pub fn sync(conn: &mut Connection, feeds: &[(&str, &str)]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO feeds (id, url) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET url = excluded.url, etag = NULL, last_modified = NULL,
                 moved_to = NULL, last_status = NULL, error = NULL, failures = 0, next_due = NULL
             WHERE feeds.url <> excluded.url",
        )?;
        for (id, url) in feeds {
            upsert.execute(params![id, url])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn rows(conn: &Connection, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError> {
    let count = if counts { "(SELECT count(*) FROM items i WHERE i.feed_id = f.id)" } else { "0" };
    let filter = match only {
        Some([_]) => "WHERE f.id = ?1",
        Some(_) => "WHERE f.id IN (SELECT value FROM json_each(?1))",
        None => "WHERE ?1 IS NULL",
    };
    let only: Option<String> = match only {
        Some([one]) => Some((*one).to_owned()),
        Some(ids) => Some(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())),
        None => None,
    };
    let sql = format!(
        "SELECT f.id, f.url, f.title, f.etag, f.last_modified, f.last_fetch, f.last_status, f.error,
                f.failures, f.next_due, f.moved_to, {count}, f.ttl_minutes, f.article_failures, f.article_error
         FROM feeds f {filter} ORDER BY f.id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([only], |r| {
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
            // One node: no claims.
            claimed_by: None,
            claim_until: None,
            ttl_minutes: r.get(12)?,
            article_failures: r.get(13)?,
            article_error: r.get(14)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn known_keys(
    conn: &Connection,
    feed_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, Option<Known>>, StoreError> {
    let mut out = HashMap::new();
    let legacy_below = legacy_hashes_below(conn)?;
    let mut stored =
        conn.prepare_cached("SELECT id, content_hash, article FROM items WHERE feed_id = ?1 AND key = ?2")?;
    let mut tombstoned = conn.prepare_cached("SELECT 1 FROM tombstones WHERE feed_id = ?1 AND key = ?2")?;
    for key in keys {
        let row = stored.query_row([feed_id, key], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)? == 1))
        });
        if let Some((id, hash, article)) = row.optional()? {
            out.insert((*key).to_owned(), Some(Known::of(id, &hash, legacy_below, article)));
        } else if tombstoned.exists([feed_id, key])? {
            out.insert((*key).to_owned(), None);
        }
    }
    Ok(out)
}

/// The stored contents of those of `keys` whose content is their page's main text.
pub fn article_contents(
    conn: &Connection,
    feed_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT content FROM items WHERE feed_id = ?1 AND key = ?2 AND article = 1 AND content IS NOT NULL",
    )?;
    let mut out = HashMap::new();
    for key in keys {
        if let Some(content) = stmt.query_row([feed_id, key], |r| r.get::<_, String>(0)).optional()? {
            out.insert((*key).to_owned(), content);
        }
    }
    Ok(out)
}

pub fn boilerplate(conn: &Connection, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT hash FROM feed_boilerplate WHERE feed_id = ?1")?;
    let rows = stmt.query_map([feed_id], |r| r.get::<_, i64>(0).map(|h| h as u64))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record_group(conn: &mut Connection, records: &[&FeedRecord]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for r in records {
        record(&tx, r)?;
    }
    tx.commit()?;
    Ok(())
}

fn record(conn: &Connection, record: &FeedRecord) -> Result<(), StoreError> {
    match record {
        FeedRecord::NotModified { feed_id, status, now, next_due, moved_to, .. } => conn
            .prepare_cached(
                "UPDATE feeds SET last_fetch = ?2, last_success = ?2, last_status = ?3, error = NULL,
                     failures = 0, next_due = ?4, moved_to = ?5 WHERE id = ?1",
            )?
            .execute(params![feed_id, ts(*now), status, next_due.map(ts), moved_to])?,
        FeedRecord::Failure { feed_id, status, error, now, next_due, .. } => conn
            .prepare_cached(
                "UPDATE feeds SET last_fetch = ?2, last_status = ?3, error = ?4, failures = failures + 1,
                     next_due = ?5 WHERE id = ?1",
            )?
            .execute(params![feed_id, ts(*now), status, error, next_due.map(ts)])?,
    };
    Ok(())
}

/// A value in `meta`, if it was ever set ([`set_meta`]).
pub fn meta(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Items with ids below this were stored before schema version 7: their content
/// hashes are [`crate::dedup::legacy_content_hash`]es.
pub fn legacy_hashes_below(conn: &Connection) -> Result<i64, StoreError> {
    Ok(meta(conn, "legacy_hashes_below")?.unwrap_or(0))
}
