//! Feed rows, what a poll reads before storing, polls that stored nothing, `meta`.

use std::collections::{HashMap, HashSet};

use postgres::types::Type;
use postgres::{Client, GenericClient};

use crate::model::{ClaimRequest, Claimed, FeedRecord, FeedRow, NodeRow, ts};
use crate::store::StoreError;
use crate::store::rules::Known;

pub fn sync(client: &mut Client, feeds: &[(&str, &str)]) -> Result<(), StoreError> {
    let (ids, urls): (Vec<&str>, Vec<&str>) = feeds.iter().copied().unzip();
    client.execute(
        "INSERT INTO feeds (id, url) SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, etag = NULL, last_modified = NULL, moved_to = NULL,
             last_status = NULL, error = NULL, failures = 0, next_due = NULL
         WHERE feeds.url <> excluded.url",
        &[&ids, &urls],
    )?;
    Ok(())
}

pub fn rows(client: &mut Client, only: Option<&[&str]>, counts: bool) -> Result<Vec<FeedRow>, StoreError> {
    let count = if counts { "(SELECT count(*) FROM items i WHERE i.feed_id = f.id)" } else { "0::BIGINT" };
    let sql = format!(
        "SELECT {ROW}, {count} FROM feeds f WHERE $1::text[] IS NULL OR f.id = ANY($1) ORDER BY f.id"
    );
    Ok(client.query(&sql, &[&only])?.iter().map(|r| row(r, r.get(ROW_COLUMNS))).collect())
}

/// The columns of a [`FeedRow`], as [`row`] reads them.
const ROW: &str = "f.id, f.url, f.title, f.etag, f.last_modified, f.last_fetch, f.last_status, f.error,
                   f.failures, f.next_due, f.moved_to, f.claimed_by, f.claim_until, f.ttl_minutes,
                   f.article_failures, f.article_error";
const ROW_COLUMNS: usize = 16;

fn row(r: &postgres::Row, items: i64) -> FeedRow {
    FeedRow {
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
        claimed_by: r.get(11),
        claim_until: r.get(12),
        ttl_minutes: r.get(13),
        article_failures: r.get(14),
        article_error: r.get(15),
        items,
    }
}

/// Claims the feeds of `ids` that are free (no claim, or one whose lease has run
/// out) and due as `req` asks: one statement. A row another transaction holds (a
/// node claiming or storing it at this moment) is skipped, not waited for.
pub fn claim(client: &mut Client, ids: &[&str], req: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
    let sql = format!(
        "WITH free AS (
             SELECT id, claimed_by AS before FROM feeds
             WHERE id = ANY($1) AND (claim_until IS NULL OR claim_until <= $2)
               AND ($3::BIGINT IS NULL OR next_due IS NULL OR next_due <= $3)
             ORDER BY id FOR UPDATE SKIP LOCKED)
         UPDATE feeds f SET claimed_by = $4, claim_until = $5, claim_token = nextval('claim_tokens')
         FROM free WHERE f.id = free.id
         RETURNING {ROW}, f.claim_token, free.before IS NOT NULL"
    );
    let rows = client.query(&sql, &[&ids, &req.now, &req.due_by, &req.node, &req.until])?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            row: row(r, 0),
            token: Some(r.get(ROW_COLUMNS)),
            taken_over: r.get(ROW_COLUMNS + 1),
        })
        .collect())
}

/// Gives up `node`'s claims but those on `keep`; the tokens stay, so that a poll
/// still running under one of them can store what it fetched unless another node
/// claims the feed first.
pub fn release(client: &mut Client, node: &str, keep: &[&str]) -> Result<usize, StoreError> {
    let n = client.execute(
        "UPDATE feeds SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1 AND id <> ALL($2)",
        &[&node, &keep],
    )?;
    Ok(n as usize)
}

/// Nodes seen in the last day.
const NODE_MEMORY: i64 = 86_400;

pub fn heartbeat(
    client: &mut Client,
    node: &str,
    started: i64,
    config: &str,
    now: i64,
) -> Result<Vec<NodeRow>, StoreError> {
    client.execute(
        "INSERT INTO nodes (name, started, last_seen, config) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET started = excluded.started, last_seen = excluded.last_seen,
             config = excluded.config",
        &[&node, &started, &now, &config],
    )?;
    client.execute("DELETE FROM nodes WHERE last_seen < $1", &[&(now - NODE_MEMORY)])?;
    nodes(client, now)
}

pub fn nodes(client: &mut Client, now: i64) -> Result<Vec<NodeRow>, StoreError> {
    Ok(client
        .query(
            "SELECT n.name, n.started, n.last_seen, n.config,
                    (SELECT count(*) FROM feeds f WHERE f.claimed_by = n.name AND f.claim_until > $1)
             FROM nodes n WHERE n.last_seen >= $2 ORDER BY n.name",
            &[&now, &(now - NODE_MEMORY)],
        )?
        .iter()
        .map(|r| NodeRow {
            node: r.get(0),
            started: r.get(1),
            last_seen: r.get(2),
            config: r.get(3),
            claimed: r.get(4),
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
        "SELECT key, id, content_hash, (SELECT value FROM meta WHERE key = 'legacy_hashes_below'), article
         FROM items WHERE feed_id = $1 AND key = ANY($2)",
        &[&feed_id, &keys],
    )? {
        let hash: Vec<u8> = r.get(2);
        // Items copied from a SQLite store of before XXH3 keep their old hashes.
        let legacy_below: Option<i64> = r.get(3);
        let article: i64 = r.get(4);
        out.insert(r.get(0), Some(Known::of(r.get(1), &hash, legacy_below.unwrap_or(0), article == 1)));
    }
    for r in
        client.query("SELECT key FROM tombstones WHERE feed_id = $1 AND key = ANY($2)", &[&feed_id, &keys])?
    {
        out.entry(r.get(0)).or_insert(None);
    }
    Ok(out)
}

/// The stored contents of those of `keys` whose content is their page's main text.
pub fn article_contents(
    client: &mut impl GenericClient,
    feed_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    Ok(client
        .query(
            "SELECT key, content FROM items
             WHERE feed_id = $1 AND key = ANY($2) AND article = 1 AND content IS NOT NULL",
            &[&feed_id, &keys],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

pub fn boilerplate(client: &mut Client, feed_id: &str) -> Result<HashSet<u64>, StoreError> {
    Ok(client
        .query("SELECT hash FROM feed_boilerplate WHERE feed_id = $1", &[&feed_id])?
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect())
}

/// Polls that stored nothing, one statement for each kind in the group. A record
/// made under a claim is stored only if the feed's claim is still that one, and clears
/// it; if one is not (another node claimed the feed after this claim ran out), none of
/// the group is stored and the error names that feed.
pub fn record_group(client: &mut Client, records: &[&FeedRecord]) -> Result<(), StoreError> {
    let (mut ok, mut failed) = (NotModified::default(), Failed::default());
    // A feed recorded twice in one group: its last record stands, as it would
    // written one after the other.
    let mut seen = HashSet::new();
    let mut claimed = Vec::new();
    for r in records.iter().rev() {
        if !seen.insert(r.feed_id()) {
            continue;
        }
        if r.claim().is_some() {
            claimed.push(r.feed_id());
        }
        match r {
            FeedRecord::NotModified { feed_id, status, now, next_due, moved_to, claim } => {
                ok.ids.push(feed_id.as_str());
                ok.now.push(ts(*now));
                ok.status.push(i64::from(*status));
                ok.next_due.push(next_due.map(ts));
                ok.moved_to.push(moved_to.as_deref());
                ok.claim.push(*claim);
            }
            FeedRecord::Failure { feed_id, status, error, now, next_due, claim } => {
                failed.ids.push(feed_id.as_str());
                failed.now.push(ts(*now));
                failed.status.push(status.map(i64::from));
                failed.error.push(error.as_str());
                failed.next_due.push(next_due.map(ts));
                failed.claim.push(*claim);
            }
        }
    }
    // One statement is atomic by itself, and sent with its parameters' types it is
    // one round trip: the usual group on one node (304s alone) is one. Both kinds, or
    // claims to check, take a transaction.
    if claimed.is_empty() && (ok.ids.is_empty() || failed.ids.is_empty()) {
        ok.write(client)?;
        failed.write(client)?;
        return Ok(());
    }
    let mut tx = client.transaction()?;
    let mut stored = ok.write(&mut tx)?;
    stored.extend(failed.write(&mut tx)?);
    if let Some(lost) = claimed.into_iter().find(|id| !stored.iter().any(|s| s == id)) {
        return Err(StoreError::Fenced { feed: lost.to_owned() });
    }
    tx.commit()?;
    Ok(())
}

/// The claim columns of a record's update: checked against the record's token
/// (`u.claim`), and cleared, when it has one.
const CLAIM_CHECK: &str = "(u.claim IS NULL OR f.claim_token = u.claim)";
const CLAIM_CLEAR: &str = "claimed_by = CASE WHEN u.claim IS NULL THEN f.claimed_by END,
                           claim_until = CASE WHEN u.claim IS NULL THEN f.claim_until END";

/// 304s of a group, as arrays.
#[derive(Default)]
struct NotModified<'r> {
    ids: Vec<&'r str>,
    now: Vec<i64>,
    status: Vec<i64>,
    next_due: Vec<Option<i64>>,
    moved_to: Vec<Option<&'r str>>,
    claim: Vec<Option<i64>>,
}

impl NotModified<'_> {
    /// Returns the feeds updated.
    fn write(&self, c: &mut impl GenericClient) -> Result<Vec<String>, StoreError> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = c.query_typed(
            &format!(
                "UPDATE feeds f SET last_fetch = u.now, last_success = u.now, last_status = u.status, error = NULL,
                     failures = 0, next_due = u.next_due, moved_to = u.moved_to, {CLAIM_CLEAR}
                 FROM unnest($1, $2, $3, $4, $5, $6) AS u(id, now, status, next_due, moved_to, claim)
                 WHERE f.id = u.id AND {CLAIM_CHECK} RETURNING f.id"
            ),
            &[
                (&self.ids, Type::TEXT_ARRAY),
                (&self.now, Type::INT8_ARRAY),
                (&self.status, Type::INT8_ARRAY),
                (&self.next_due, Type::INT8_ARRAY),
                (&self.moved_to, Type::TEXT_ARRAY),
                (&self.claim, Type::INT8_ARRAY),
            ],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
    claim: Vec<Option<i64>>,
}

impl Failed<'_> {
    /// Returns the feeds updated.
    fn write(&self, c: &mut impl GenericClient) -> Result<Vec<String>, StoreError> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = c.query_typed(
            &format!(
                "UPDATE feeds f SET last_fetch = u.now, last_status = u.status, error = u.error,
                     failures = f.failures + 1, next_due = u.next_due, {CLAIM_CLEAR}
                 FROM unnest($1, $2, $3, $4, $5, $6) AS u(id, now, status, error, next_due, claim)
                 WHERE f.id = u.id AND {CLAIM_CHECK} RETURNING f.id"
            ),
            &[
                (&self.ids, Type::TEXT_ARRAY),
                (&self.now, Type::INT8_ARRAY),
                (&self.status, Type::INT8_ARRAY),
                (&self.error, Type::TEXT_ARRAY),
                (&self.next_due, Type::INT8_ARRAY),
                (&self.claim, Type::INT8_ARRAY),
            ],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
