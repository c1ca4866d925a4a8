//! Retention, purging a feed, counts and checks.

use std::collections::HashMap;

use postgres::Client;

use super::feeds::set_meta;
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
    // Ids grow with first-seen time: the keys of items older than the window are those
    // below the first item inside it (found through the first-seen index).
    tx.execute(
        "DELETE FROM item_bands WHERE item_id < coalesce(
             (SELECT id FROM items WHERE first_seen >= $1 ORDER BY first_seen, id LIMIT 1),
             (SELECT max(id) + 1 FROM items), 0)",
        &[&window_cutoff],
    )?;
    set_meta(&mut tx, "last_prune", now)?;
    tx.commit()?;
    Ok(PruneCounts { items, stories })
}

/// Deletes the items listed in the temporary table `doomed` with everything that
/// refers to them; returns how many.
fn forget_doomed(tx: &mut postgres::Transaction<'_>) -> Result<usize, StoreError> {
    tx.batch_execute(
        "DELETE FROM item_bands WHERE item_id IN (SELECT id FROM doomed);
         DELETE FROM topic_stories WHERE item_id IN (SELECT id FROM doomed);
         DELETE FROM pending WHERE item_id IN (SELECT id FROM doomed);",
    )?;
    Ok(tx.execute("DELETE FROM items WHERE id IN (SELECT id FROM doomed)", &[])? as usize)
}

/// Forgets a feed entirely (see `Store::purge_feed`). One transaction.
pub fn purge_feed(client: &mut Client, feed_id: &str) -> Result<usize, StoreError> {
    let mut tx = client.transaction()?;
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
