//! Retention, purging a feed, counts and checks.

use std::collections::HashMap;

use postgres::Client;

use super::feeds::set_meta;
use crate::dedup;
use crate::model::PruneCounts;
use crate::store::StoreError;

/// Prunes items first seen before `cutoff` that are not in `keep` (see
/// `Store::prune`): tombstones for their keys, their band, topic and queue rows, the
/// stories they leave empty; then drops band keys of items first seen before
/// `window_cutoff`. One transaction.
pub fn prune(
    client: &mut Client,
    cutoff: i64,
    window_cutoff: i64,
    keep: &[i64],
    now: i64,
) -> Result<PruneCounts, StoreError> {
    let mut tx = client.transaction()?;
    // One node at a time: another that is at it already has it in hand.
    let ours: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])?.get(0);
    if !ours {
        tracing::debug!("retention: another node is running it");
        return Ok(PruneCounts::default());
    }
    // Stories are not taken apart while a group (of any node) joins items to them:
    // the row every group with new items holds until it commits (see `ingest`).
    tx.execute("SELECT value FROM meta WHERE key = 'band_writes' FOR UPDATE", &[])?;
    // Band keys are removed by key, through their index (see `unband`).
    tx.batch_execute("SET LOCAL enable_seqscan = off")?;
    tx.execute(
        "CREATE TEMP TABLE doomed ON COMMIT DROP AS
         SELECT id, story_id, feed_id, key FROM items WHERE first_seen < $1 AND id <> ALL($2)",
        &[&cutoff, &keep],
    )?;
    tx.execute(
        "INSERT INTO tombstones (feed_id, key, pruned_at) SELECT feed_id, key, $1 FROM doomed
         ON CONFLICT DO NOTHING",
        &[&now],
    )?;
    let items = forget_doomed(&mut tx)?;
    let stories = tx.execute(
        "DELETE FROM stories s WHERE s.id IN (SELECT story_id FROM doomed) AND s.first_seen < $1
           AND NOT EXISTS (SELECT 1 FROM items i WHERE i.story_id = s.id)",
        &[&cutoff],
    )? as usize;
    // Ids grow with first-seen time: the items older than the window are those below
    // the first item inside it (found through the first-seen index); their keys go,
    // from where the last prune stopped.
    let boundary: i64 = tx
        .query_one(
            "SELECT coalesce((SELECT id FROM items WHERE first_seen >= $1 ORDER BY first_seen, id LIMIT 1),
                             (SELECT max(id) + 1 FROM items), 0)",
            &[&window_cutoff],
        )?
        .get(0);
    let mut from: i64 = tx
        .query_one("SELECT coalesce((SELECT value FROM meta WHERE key = 'unbanded_below'), 0)", &[])?
        .get(0);
    while from < boundary {
        let to = boundary.min(from.saturating_add(UNBAND_CHUNK));
        unband(&mut tx, "SELECT id, fingerprint FROM items WHERE id >= $1 AND id < $2", &[&from, &to])?;
        from = to;
    }
    set_meta(&mut tx, "unbanded_below", from)?;
    set_meta(&mut tx, "last_prune", now)?;
    tx.commit()?;
    Ok(PruneCounts { items, stories })
}

/// The advisory lock retention holds ("fsprune" in ASCII).
const RETENTION_LOCK: i64 = 0x6673_7072_756e_6500;

/// Items whose band keys one statement of [`unband`] removes at most.
const UNBAND_CHUNK: i64 = 10_000;

/// Removes the band keys of the items `sql` selects (`id, fingerprint`): computed
/// again from their fingerprints and deleted through the key index, the table having
/// no index by item.
fn unband(
    tx: &mut postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<(), StoreError> {
    let (mut keys, mut items) = (Vec::new(), Vec::new());
    for r in tx.query(sql, params)? {
        let id: i64 = r.get(0);
        if let Some(fp) = r.get::<_, Option<&[u8]>>(1).and_then(dedup::signature_from_bytes) {
            for k in dedup::band_keys(&fp) {
                keys.push(k);
                items.push(id);
            }
        }
    }
    if !keys.is_empty() {
        tx.execute(
            "DELETE FROM item_bands b USING unnest($1::bigint[], $2::bigint[]) AS d(key, item_id)
             WHERE b.key = d.key AND b.item_id = d.item_id",
            &[&keys, &items],
        )?;
    }
    Ok(())
}

/// Deletes the items listed in the temporary table `doomed` with everything that
/// refers to them; returns how many.
fn forget_doomed(tx: &mut postgres::Transaction<'_>) -> Result<usize, StoreError> {
    unband(tx, "SELECT i.id, i.fingerprint FROM items i JOIN doomed d ON d.id = i.id", &[])?;
    tx.batch_execute(
        "DELETE FROM topic_stories WHERE item_id IN (SELECT id FROM doomed);
         DELETE FROM pending WHERE item_id IN (SELECT id FROM doomed);",
    )?;
    Ok(tx.execute("DELETE FROM items WHERE id IN (SELECT id FROM doomed)", &[])? as usize)
}

/// Forgets a feed entirely (see `Store::purge_feed`). One transaction.
pub fn purge_feed(client: &mut Client, feed_id: &str) -> Result<usize, StoreError> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL enable_seqscan = off")?;
    tx.execute(
        "CREATE TEMP TABLE doomed ON COMMIT DROP AS SELECT id, story_id FROM items WHERE feed_id = $1",
        &[&feed_id],
    )?;
    // Stories this feed shared live on through their other items: curate those again.
    tx.execute(
        "INSERT INTO pending (item_id) SELECT o.id FROM items o
         WHERE o.feed_id <> $1 AND o.story_id IN (SELECT story_id FROM doomed) ON CONFLICT DO NOTHING",
        &[&feed_id],
    )?;
    let items = forget_doomed(&mut tx)?;
    tx.execute(
        "DELETE FROM stories s WHERE s.id IN (SELECT story_id FROM doomed)
           AND NOT EXISTS (SELECT 1 FROM items i WHERE i.story_id = s.id)",
        &[],
    )?;
    for sql in [
        "DELETE FROM tombstones WHERE feed_id = $1",
        "DELETE FROM feed_boilerplate WHERE feed_id = $1",
        "DELETE FROM feeds WHERE id = $1",
    ] {
        tx.execute(sql, &[&feed_id])?;
    }
    tx.commit()?;
    Ok(items)
}

pub fn items_per_day(
    client: &mut Client,
    since: i64,
) -> Result<HashMap<String, Vec<(i64, i64)>>, StoreError> {
    let mut out: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for r in client.query(
        "SELECT feed_id, COALESCE(published, first_seen) / 86400 AS day, count(*) FROM items
         WHERE COALESCE(published, first_seen) >= $1 GROUP BY feed_id, day",
        &[&since],
    )? {
        out.entry(r.get(0)).or_default().push((r.get(1), r.get(2)));
    }
    Ok(out)
}

/// What feedsieve relies on beyond what PostgreSQL's constraints hold: every topic
/// row's item exists, every band key's item exists. `"ok"`, or what is wrong.
pub fn integrity_check(client: &mut Client) -> Result<String, StoreError> {
    let row = client.query_one(
        "SELECT (SELECT count(*) FROM topic_stories t WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = t.item_id)),
                (SELECT count(*) FROM item_bands b WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = b.item_id))",
        &[],
    )?;
    let (topics, bands): (i64, i64) = (row.get(0), row.get(1));
    Ok(match (topics, bands) {
        (0, 0) => "ok".to_owned(),
        _ => format!("{topics} topic rows and {bands} search keys name items that do not exist"),
    })
}

/// Writes again, from their stored fingerprints, the near-duplicate search keys of the
/// items the upgrade to [`super::migrations::BANDS_REKEYED`] listed in `rekey` (those
/// that had keys), a batch of items at a time, all under one new `band_writes`
/// number. Returns the number of keys written.
pub fn rekey(tx: &mut postgres::Transaction<'_>, name: &str) -> Result<usize, StoreError> {
    const BATCH: i64 = 20_000;
    let items: i64 = tx.query_one("SELECT count(*) FROM rekey", &[])?.get(0);
    if items == 0 {
        return Ok(0);
    }
    tracing::info!(database = %name, items, "writing the near-duplicate search keys of the stored items again");
    let write_no: i64 = tx
        .query_one("UPDATE meta SET value = value + 1 WHERE key = 'band_writes' RETURNING value", &[])?
        .get(0);
    let (mut after, mut written) = (i64::MIN, 0);
    loop {
        let rows = tx.query(
            "SELECT i.id, i.fingerprint FROM items i JOIN rekey r ON r.item_id = i.id
             WHERE i.id > $1 ORDER BY i.id LIMIT $2",
            &[&after, &BATCH],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let mut keys: Vec<(i64, i64)> = Vec::new();
        for r in &rows {
            if let Some(fp) = r.get::<_, Option<&[u8]>>(1).and_then(dedup::signature_from_bytes) {
                let id: i64 = r.get(0);
                keys.extend(dedup::band_keys(&fp).into_iter().map(|k| (k, id)));
            }
        }
        keys.sort_unstable();
        let (k, ids): (Vec<i64>, Vec<i64>) = keys.into_iter().unzip();
        written += k.len();
        tx.execute(
            "INSERT INTO item_bands (key, item_id, write_no) SELECT *, $3 FROM unnest($1::bigint[], $2::bigint[])",
            &[&k, &ids, &write_no],
        )?;
    }
    Ok(written)
}
