//! Feed rows, what a poll reads before storing, polls that stored nothing, `meta`.

use std::collections::{HashMap, HashSet};

use postgres::types::Type;
use postgres::{Client, GenericClient};

use crate::model::{FeedRecord, FeedRow, ts};
use crate::store::StoreError;
use crate::store::rules::Known;

pub fn sync(client: &mut Client, feeds: &[(&str, &str)]) -> Result<(), StoreError> {
    let (ids, urls): (Vec<&str>, Vec<&str>) = feeds.iter().copied().unzip();
    client.execute(
        "INSERT INTO feeds (id, url) SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, etag = NULL, last_modified = NULL, moved_to = NULL
         WHERE feeds.url <> excluded.url",
        &[&ids, &urls],
    )?;
    Ok(())
}

pub fn rows(client: &mut Client, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError> {
    let count = if counts { "(SELECT count(*) FROM items i WHERE i.feed_id = f.id)" } else { "0::BIGINT" };
    let sql = format!(
        "SELECT f.id, f.url, f.title, f.etag, f.last_modified, f.last_fetch, f.last_status, f.error,
                f.failures, f.next_due, f.moved_to, {count}
         FROM feeds f WHERE $1::text[] IS NULL OR f.id = ANY($1) ORDER BY f.id"
    );
    Ok(client
        .query(&sql, &[&only])?
        .iter()
        .map(|r| FeedRow {
            id: r.get(0),
            url: r.get(1),
            title: r.get(2),
            etag: r.get(3),
            last_modified: r.get(4),
            last_fetch: r.get(5),
            last_status: r.get(6),
            error: r.get(7),
            failures: r.get(8),
            next_due: r.get(9),
            moved_to: r.get(10),
            items: r.get(11),
        })
        .collect())
}

/// Of `keys`, those stored in the feed (their content hashes) and those tombstoned:
/// two statements for the whole list, not one per key (each is a round trip).
pub fn known_keys(
    client: &mut impl GenericClient,
    feed_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, Option<Known>>, StoreError> {
    let mut out = HashMap::new();
    for r in client.query(
        "SELECT key, id, content_hash, (SELECT value FROM meta WHERE key = 'legacy_hashes_below')
         FROM items WHERE feed_id = $1 AND key = ANY($2)",
        &[&feed_id, &keys],
    )? {
        let hash: Vec<u8> = r.get(2);
        // Items copied from a SQLite store of before XXH3 keep their old hashes.
        let legacy_below: Option<i64> = r.get(3);
        out.insert(r.get(0), Some(Known::of(r.get(1), &hash, legacy_below.unwrap_or(0))));
    }
    for r in
        client.query("SELECT key FROM tombstones WHERE feed_id = $1 AND key = ANY($2)", &[&feed_id, &keys])?
    {
        out.entry(r.get(0)).or_insert(None);
    }
    Ok(out)
}

pub fn boilerplate(client: &mut Client, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
    Ok(client
        .query("SELECT hash FROM feed_boilerplate WHERE feed_id = $1", &[&feed_id])?
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect())
}

/// Polls that stored nothing, one statement for each kind in the group.
pub fn record_group(client: &mut Client, records: &[&FeedRecord]) -> Result<(), StoreError> {
    let (mut ok, mut failed) = (NotModified::default(), Failed::default());
    // A feed recorded twice in one group: its last record stands, as it would
    // written one after the other.
    let mut seen = HashSet::new();
    for r in records.iter().rev() {
        let (FeedRecord::NotModified { feed_id, .. } | FeedRecord::Failure { feed_id, .. }) = r;
        if !seen.insert(feed_id.as_str()) {
            continue;
        }
        match r {
            FeedRecord::NotModified { feed_id, status, now, next_due, moved_to } => {
                ok.ids.push(feed_id.as_str());
                ok.now.push(ts(*now));
                ok.status.push(i64::from(*status));
                ok.next_due.push(next_due.map(ts));
                ok.moved_to.push(moved_to.as_deref());
            }
            FeedRecord::Failure { feed_id, status, error, now, next_due } => {
                failed.ids.push(feed_id.as_str());
                failed.now.push(ts(*now));
                failed.status.push(status.map(i64::from));
                failed.error.push(error.as_str());
                failed.next_due.push(next_due.map(ts));
            }
        }
    }
    // One statement is atomic by itself, and sent with its parameters' types it is
    // one round trip: the usual group (304s alone) is one. Both kinds take a
    // transaction.
    if !ok.ids.is_empty() && !failed.ids.is_empty() {
        let mut tx = client.transaction()?;
        ok.write(&mut tx)?;
        failed.write(&mut tx)?;
        tx.commit()?;
    } else {
        ok.write(client)?;
        failed.write(client)?;
    }
    Ok(())
}

/// 304s of a group, as arrays.
#[derive(Default)]
struct NotModified<'r> {
    ids: Vec<&'r str>,
    now: Vec<i64>,
    status: Vec<i64>,
    next_due: Vec<Option<i64>>,
    moved_to: Vec<Option<&'r str>>,
}

impl NotModified<'_> {
    fn write(&self, c: &mut impl GenericClient) -> Result<(), StoreError> {
        if !self.ids.is_empty() {
            c.execute_typed(
                "UPDATE feeds f SET last_fetch = u.now, last_success = u.now, last_status = u.status, error = NULL,
                     failures = 0, next_due = u.next_due, moved_to = u.moved_to
                 FROM unnest($1, $2, $3, $4, $5) AS u(id, now, status, next_due, moved_to)
                 WHERE f.id = u.id",
                &[
                    (&self.ids, Type::TEXT_ARRAY),
                    (&self.now, Type::INT8_ARRAY),
                    (&self.status, Type::INT8_ARRAY),
                    (&self.next_due, Type::INT8_ARRAY),
                    (&self.moved_to, Type::TEXT_ARRAY),
                ],
            )?;
        }
        Ok(())
    }
}

/// Failures of a group, as arrays.
#[derive(Default)]
struct Failed<'r> {
    ids: Vec<&'r str>,
    now: Vec<i64>,
    status: Vec<Option<i64>>,
    error: Vec<&'r str>,
    next_due: Vec<Option<i64>>,
}

impl Failed<'_> {
    fn write(&self, c: &mut impl GenericClient) -> Result<(), StoreError> {
        if !self.ids.is_empty() {
            c.execute_typed(
                "UPDATE feeds f SET last_fetch = u.now, last_status = u.status, error = u.error,
                     failures = f.failures + 1, next_due = u.next_due
                 FROM unnest($1, $2, $3, $4, $5) AS u(id, now, status, error, next_due)
                 WHERE f.id = u.id",
                &[
                    (&self.ids, Type::TEXT_ARRAY),
                    (&self.now, Type::INT8_ARRAY),
                    (&self.status, Type::INT8_ARRAY),
                    (&self.error, Type::TEXT_ARRAY),
                    (&self.next_due, Type::INT8_ARRAY),
                ],
            )?;
        }
        Ok(())
    }
}

pub fn meta(client: &mut Client, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(client.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?.map(|r| r.get(0)))
}

pub fn set_meta(client: &mut impl GenericClient, key: &str, value: i64) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )?;
    Ok(())
}
