//! A poll group's transaction, in few round trips.
//!
//! Each statement is a round trip to the server, and the rules ask item by item
//! (is this key tombstoned, stored, is there a story with this link, which stored
//! items share these search keys). So the transaction looks up what the whole group
//! may ask for at its start, in four statements over arrays, answers the rules'
//! questions from that and from what the group itself has written so far, and writes
//! the group's rows at the end, one statement per table. Ids of new items and stories
//! are taken from their sequences in advance, one statement for the group.
//!
//! What the group writes is seen by its own later questions exactly as SQLite's
//! transaction sees its rows: keys stored by an earlier feed of the group, and the
//! canonical links of its new items (a stored item's link keeps priority: it is the
//! older). One difference, within a group only: a correction that changes a stored
//! item's canonical link still lends its story under the old link.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use postgres::{Client, Transaction};

use super::fulltext;
use crate::dedup;
use crate::model::{FetchRecord, Fingerprint, IngestJob, NewItem, ts};
use crate::store::StoreError;
use crate::store::bands::{BandFilter, Banded};
use crate::store::engine::{IngestTx, Linked};
use crate::store::rules::Known;

/// A stored item as the group's questions need it.
#[derive(Clone, Copy)]
struct Stored {
    id: i64,
    story: i64,
    known: Known,
}

/// A stored item found by a search key.
struct Prefetched {
    item: i64,
    story: i64,
    first_seen: i64,
    fp: Arc<Fingerprint>,
}

/// An item row to insert or update at commit.
struct Row<'a> {
    id: i64,
    feed_id: String,
    story: i64,
    now: i64,
    n: &'a NewItem,
}

/// What a connection knows of the search keys in `item_bands` (see [`BandFilter`]).
/// Its `mark` is the last `band_writes` number it has every key of: writers number
/// their groups while holding the row of that counter until they commit, so the
/// numbers follow the order of commits, and the keys written after the mark are
/// exactly those with a larger `write_no`, whichever connection wrote them.
pub enum Bands {
    /// Nothing yet, or full: built from the table when next needed.
    Unknown,
    /// Dropped while the daemon is idle: built again for a large group.
    Released,
    Built(BandFilter),
    /// The table holds more than [`BandFilter::MAX_KEYS`] keys: every key is looked up.
    TooLarge,
}

/// The filter for a group of `items`: caught up with the writes since its mark, or
/// built from the table; `None` when there is none to have.
fn band_filter<'s>(
    tx: &mut Transaction<'_>,
    state: &'s mut Bands,
    items: usize,
) -> Result<Option<&'s BandFilter>, StoreError> {
    if matches!(state, Bands::Released) && items >= BandFilter::WORTH_BUILDING {
        *state = Bands::Unknown;
    }
    if let Bands::Built(f) = state {
        let rows = tx.query("SELECT key, write_no FROM item_bands WHERE write_no > $1", &[&f.mark])?;
        if f.extend(rows.iter().map(|r| r.get(0))) {
            f.mark = rows.iter().map(|r| r.get(1)).fold(f.mark, i64::max);
        } else {
            *state = Bands::Unknown;
        }
    }
    if matches!(state, Bands::Unknown) {
        // The mark first, then the keys: every write up to the mark is in them.
        let mark: i64 = tx.query_one("SELECT value FROM meta WHERE key = 'band_writes'", &[])?.get(0);
        let keys: i64 = tx.query_one("SELECT count(*) FROM item_bands", &[])?.get(0);
        *state = if keys as usize > BandFilter::MAX_KEYS {
            Bands::TooLarge
        } else {
            let mut f = BandFilter::new(keys as usize, mark);
            for r in tx.query("SELECT key FROM item_bands", &[])? {
                f.insert(r.get(0));
            }
            Bands::Built(f)
        };
    }
    Ok(match state {
        Bands::Built(f) => Some(f),
        _ => None,
    })
}

pub struct PgIngestTx<'c, 'a> {
    tx: Transaction<'c>,
    tombstoned: HashSet<(String, String)>,
    stored: HashMap<(String, String), Stored>,
    /// Canonical link -> the first item with it (stored, then of the group).
    links: HashMap<String, Linked>,
    bands: HashMap<i64, Vec<Prefetched>>,
    /// Ids taken in advance, used from the back.
    item_ids: Vec<i64>,
    story_ids: Vec<i64>,
    new_stories: Vec<(i64, i64)>,
    /// Stories merged into another by this group: merged -> into. Only a story not
    /// merged yet is merged, into another such, so following the links ends.
    merged: HashMap<i64, i64>,
    inserts: Vec<Row<'a>>,
    updates: Vec<Row<'a>>,
    boilerplate: Vec<(String, i64)>,
    band_keys: Vec<(i64, i64)>,
    fetches: Vec<(String, FetchRecord, i64)>,
}

impl<'c, 'a> PgIngestTx<'c, 'a> {
    /// Begins the transaction and looks up what `group` may ask.
    pub fn begin(
        client: &'c mut Client,
        bands: &mut Bands,
        group: &[&'a IngestJob],
    ) -> Result<Self, StoreError> {
        let mut tx = client.transaction()?;
        // Every statement here reads by index: while a cold poll fills the tables,
        // the planner's idea of their size lags behind, and a scan it chose for a
        // table it took for small read all of it once per group.
        tx.batch_execute("SET LOCAL enable_seqscan = off")?;
        let items: usize = group.iter().map(|j| j.items.len()).sum();
        if items > 0 {
            // One group with new items at a time, whichever node stores it: the row
            // of the band-key counter is held from here until commit, so a group looks
            // up stories after every group before it has committed, and two nodes
            // storing copies of one story at the same moment make one story (looked
            // up before, both would have missed the other's and made two). The
            // retention's transaction takes the same row first.
            tx.execute("SELECT value FROM meta WHERE key = 'band_writes' FOR UPDATE", &[])?;
        }
        let filter = band_filter(&mut tx, bands, items)?;
        let (mut feeds, mut keys, mut links, mut band_keys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for job in group {
            for n in &job.items {
                feeds.push(job.feed_id.as_str());
                keys.push(n.item.key.as_str());
                links.extend(n.item.canonical_link.as_deref());
                if let Some(fp) = &n.fingerprint {
                    band_keys.extend(dedup::band_keys(fp));
                }
            }
        }
        // Each lookup is written so that its plan is index probes whatever the
        // planner believes of the tables' sizes (a join it took for small tables
        // chose a scan of the whole table).
        let tombstoned = tx
            .query(
                "SELECT k.feed_id, k.key FROM unnest($1::text[], $2::text[]) AS k(feed_id, key)
                 WHERE EXISTS (SELECT 1 FROM tombstones t WHERE t.feed_id = k.feed_id AND t.key = k.key)",
                &[&feeds, &keys],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Items copied from a SQLite store of before XXH3 keep their old hashes.
        let legacy_below: i64 = tx
            .query_one("SELECT coalesce((SELECT value FROM meta WHERE key = 'legacy_hashes_below'), 0)", &[])?
            .get(0);
        let stored = tx
            .query(
                "SELECT k.feed_id, k.key, i.id, i.story_id, i.content_hash
                 FROM unnest($1::text[], $2::text[]) AS k(feed_id, key)
                 JOIN LATERAL (SELECT id, story_id, content_hash FROM items i
                               WHERE i.feed_id = k.feed_id AND i.key = k.key) i ON true",
                &[&feeds, &keys],
            )?
            .iter()
            .map(|r| {
                let id: i64 = r.get(2);
                let stored =
                    Stored { id, story: r.get(3), known: Known::of(id, r.get(4), legacy_below, false) };
                ((r.get(0), r.get(1)), stored)
            })
            .collect();
        links.sort_unstable();
        links.dedup();
        let links = tx
            .query(
                "SELECT l.link, s.id, s.story_id FROM unnest($1::text[]) AS l(link)
                 JOIN LATERAL (SELECT id, story_id FROM items WHERE canonical_link = l.link ORDER BY id LIMIT 1) s
                 ON true",
                &[&links],
            )?
            .iter()
            .map(|r| (r.get(0), Linked { item: r.get(1), story: r.get(2) }))
            .collect();
        // Only the keys the table may hold.
        band_keys.retain(|k| filter.is_none_or(|f| f.may_contain(*k)));
        band_keys.sort_unstable();
        band_keys.dedup();
        let bands = band_lookup(&mut tx, &band_keys)?;
        let items = items as i64;
        let take = |tx: &mut Transaction<'_>, table: &str| -> Result<Vec<i64>, StoreError> {
            let mut ids: Vec<i64> = tx
                .query(
                    "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2::bigint)",
                    &[&table, &items],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            ids.reverse();
            Ok(ids)
        };
        let (item_ids, story_ids) = if items > 0 {
            (take(&mut tx, "items")?, take(&mut tx, "stories")?)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(PgIngestTx {
            tx,
            tombstoned,
            stored,
            links,
            bands,
            item_ids,
            story_ids,
            new_stories: Vec::new(),
            merged: HashMap::new(),
            inserts: Vec::new(),
            updates: Vec::new(),
            boilerplate: Vec::new(),
            band_keys: Vec::new(),
            fetches: Vec::new(),
        })
    }
}

/// The stored items that have any of `keys` (sorted, distinct), by key: one probe of
/// the key index per key, then the items found by their ids.
fn band_lookup(tx: &mut Transaction<'_>, keys: &[i64]) -> Result<HashMap<i64, Vec<Prefetched>>, StoreError> {
    let found: Vec<(i64, i64)> = tx
        .query("SELECT key, item_id FROM item_bands WHERE key = ANY($1)", &[&keys])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if found.is_empty() {
        return Ok(HashMap::new());
    }
    let mut ids: Vec<i64> = found.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut items: HashMap<i64, (i64, i64, Arc<Fingerprint>)> = HashMap::new();
    for r in tx.query(
        "SELECT id, story_id, first_seen, fingerprint FROM items WHERE id = ANY($1) AND fingerprint IS NOT NULL",
        &[&ids],
    )? {
        if let Some(fp) = dedup::signature_from_bytes(r.get(3)) {
            items.insert(r.get(0), (r.get(1), r.get(2), Arc::new(fp)));
        }
    }
    let mut bands: HashMap<i64, Vec<Prefetched>> = HashMap::new();
    for (key, id) in found {
        if let Some((story, first_seen, fp)) = items.get(&id) {
            bands.entry(key).or_default().push(Prefetched {
                item: id,
                story: *story,
                first_seen: *first_seen,
                fp: fp.clone(),
            });
        }
    }
    Ok(bands)
}

fn key(feed_id: &str, key: &str) -> (String, String) {
    (feed_id.to_owned(), key.to_owned())
}

/// An id taken in advance; running out means the group asked for more than its
/// items, which the rules never do.
fn next_id(ids: &mut Vec<i64>, what: &str) -> Result<i64, StoreError> {
    ids.pop().ok_or_else(|| StoreError::Db(format!("no {what} id left for this group").into()))
}

impl<'a> IngestTx<'a> for PgIngestTx<'_, 'a> {
    fn tombstoned(&mut self, feed_id: &str, key_: &str) -> Result<bool, StoreError> {
        Ok(self.tombstoned.contains(&key(feed_id, key_)))
    }

    fn stored(&mut self, feed_id: &str, key_: &str) -> Result<Option<Known>, StoreError> {
        Ok(self.stored.get(&key(feed_id, key_)).map(|s| s.known))
    }

    fn story_by_link(&mut self, link: &str) -> Result<Option<Linked>, StoreError> {
        Ok(self.links.get(link).map(|l| Linked { item: l.item, story: root(&self.merged, l.story) }))
    }

    fn band_candidates(
        &mut self,
        keys: &[i64],
        since: i64,
        // The group's keys were looked up at once, before it: nothing to spare.
        _linked: Option<i64>,
        out: &mut Vec<Banded>,
    ) -> Result<(), StoreError> {
        let mut found: Vec<&Prefetched> = keys
            .iter()
            .filter_map(|k| self.bands.get(k))
            .flatten()
            .filter(|b| b.first_seen >= since)
            .collect();
        found.sort_unstable_by_key(|b| b.item);
        found.dedup_by_key(|b| b.item);
        // Read before this group's merges: the story each is in now.
        let merged = &self.merged;
        out.extend(found.into_iter().map(|b| Banded {
            item: b.item,
            story: root(merged, b.story),
            fp: b.fp.clone(),
        }));
        Ok(())
    }

    fn story_now(&mut self, _item: i64, story: i64) -> Result<i64, StoreError> {
        // Only this group merges while it holds the band-key counter's row, and every
        // story it knows of was read after it took that row.
        Ok(root(&self.merged, story))
    }

    fn new_story(&mut self, now: i64) -> Result<i64, StoreError> {
        let id = next_id(&mut self.story_ids, "story")?;
        self.new_stories.push((id, now));
        Ok(id)
    }

    fn merge_stories(&mut self, into: i64, from: &[i64]) -> Result<(), StoreError> {
        for f in from {
            self.merged.insert(*f, into);
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
        let k = key(feed_id, &n.item.key);
        let (id, story) = match (correction, self.stored.get(&k)) {
            (true, Some(s)) => (s.id, s.story),
            _ => (next_id(&mut self.item_ids, "item")?, story),
        };
        let row = Row { id, feed_id: feed_id.to_owned(), story, now, n };
        if correction {
            self.updates.push(row);
        } else {
            self.inserts.push(row);
        }
        self.stored.insert(
            k,
            Stored {
                id,
                story,
                known: Known { hash: n.item.content_hash, legacy: false, article: n.article },
            },
        );
        if let Some(link) = &n.item.canonical_link {
            self.links.entry(link.clone()).or_insert(Linked { item: id, story });
        }
        Ok(id)
    }

    fn add_boilerplate(&mut self, feed_id: &str, hashes: &[u64]) -> Result<(), StoreError> {
        self.boilerplate.extend(hashes.iter().map(|h| (feed_id.to_owned(), *h as i64)));
        Ok(())
    }

    fn record_fetch(&mut self, feed_id: &str, record: &FetchRecord, now: i64) -> Result<(), StoreError> {
        self.fetches.push((feed_id.to_owned(), record.clone(), now));
        Ok(())
    }

    fn add_band_keys(&mut self, keys: &[(i64, i64)]) -> Result<(), StoreError> {
        self.band_keys.extend_from_slice(keys);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let mut this = *self;
        let tx = &mut this.tx;
        // Stories of the group merged into another are never written; stored ones
        // are moved below.
        let group_stories: HashSet<i64> = this.new_stories.iter().map(|(id, _)| *id).collect();
        this.new_stories.retain(|(id, _)| !this.merged.contains_key(id));
        if !this.new_stories.is_empty() {
            let (ids, seen): (Vec<i64>, Vec<i64>) = this.new_stories.iter().copied().unzip();
            tx.execute(
                "INSERT INTO stories (id, first_seen) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
                &[&ids, &seen],
            )?;
        }
        for r in &mut this.inserts {
            r.story = root(&this.merged, r.story);
        }
        let (from, into): (Vec<i64>, Vec<i64>) = this
            .merged
            .keys()
            .filter(|f| !group_stories.contains(f))
            .map(|f| (*f, root(&this.merged, *f)))
            .unzip();
        if !from.is_empty() {
            merge_stored(tx, &from, &into)?;
        }
        write_items(tx, &this.inserts, false)?;
        write_items(tx, &this.updates, true)?;
        let queued: Vec<i64> = this.inserts.iter().chain(&this.updates).map(|r| r.id).collect();
        if !queued.is_empty() {
            tx.execute(
                "INSERT INTO pending (item_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
                &[&queued],
            )?;
        }
        if !this.band_keys.is_empty() {
            // The group's number, in commit order: the counter's row stays locked
            // until this transaction ends, so a later number commits later.
            let write_no: i64 = tx
                .query_one(
                    "UPDATE meta SET value = value + 1 WHERE key = 'band_writes' RETURNING value",
                    &[],
                )?
                .get(0);
            this.band_keys.sort_unstable();
            this.band_keys.dedup();
            let (keys, items): (Vec<i64>, Vec<i64>) = this.band_keys.iter().copied().unzip();
            tx.execute(
                "INSERT INTO item_bands (key, item_id, write_no) SELECT *, $3 FROM unnest($1::bigint[], $2::bigint[])",
                &[&keys, &items, &write_no],
            )?;
        }
        if !this.boilerplate.is_empty() {
            let (feeds, hashes): (Vec<String>, Vec<i64>) = this.boilerplate.iter().cloned().unzip();
            tx.execute(
                "INSERT INTO feed_boilerplate (feed_id, hash) SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT DO NOTHING",
                &[&feeds, &hashes],
            )?;
        }
        for (feed_id, r, now) in &this.fetches {
            // Stored only under the feed's current claim (see `feeds::record_group`).
            let updated = tx.execute(
                "UPDATE feeds SET etag = $2, last_modified = $3, last_fetch = $4, last_success = $4,
                     last_status = $5, error = NULL, failures = 0, title = COALESCE($6, title),
                     site_link = COALESCE($7, site_link), moved_to = $8, next_due = $9, ttl_minutes = $11,
                     article_failures = COALESCE($12, article_failures),
                     article_error = CASE WHEN $12::BIGINT IS NULL THEN article_error ELSE $13 END,
                     claimed_by = CASE WHEN $10::BIGINT IS NULL THEN claimed_by END,
                     claim_until = CASE WHEN $10::BIGINT IS NULL THEN claim_until END
                 WHERE id = $1 AND ($10::BIGINT IS NULL OR claim_token = $10)",
                &[
                    feed_id,
                    &r.etag,
                    &r.last_modified,
                    now,
                    &i64::from(r.status),
                    &r.title,
                    &r.site_link,
                    &r.moved_to,
                    &r.next_due.map(ts),
                    &r.claim,
                    &r.ttl_minutes,
                    &r.articles.as_ref().map(|a| i64::from(a.failed)),
                    &r.articles.as_ref().and_then(|a| a.error.clone()),
                ],
            )?;
            if updated == 0 && r.claim.is_some() {
                return Err(StoreError::Fenced { feed: feed_id.clone() });
            }
        }
        this.tx.commit()?;
        Ok(())
    }
}

/// The story `story` is part of now: itself, or the one it was merged into.
fn root(merged: &HashMap<i64, i64>, mut story: i64) -> i64 {
    while let Some(into) = merged.get(&story) {
        story = *into;
    }
    story
}

/// Moves the stored items of each story `from[i]` into story `into[i]` (which keeps
/// the earliest first sighting), queues them for curation again, and forgets the
/// stories moved from.
fn merge_stored(tx: &mut Transaction<'_>, from: &[i64], into: &[i64]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO pending (item_id) SELECT id FROM items WHERE story_id = ANY($1) ON CONFLICT DO NOTHING",
        &[&from],
    )?;
    let moves = "unnest($1::bigint[], $2::bigint[]) AS m(from_id, into_id)";
    tx.execute(
        &format!(
            "UPDATE stories s SET first_seen = e.first_seen
             FROM (SELECT m.into_id, min(f.first_seen) AS first_seen FROM {moves}
                   JOIN stories f ON f.id = m.from_id GROUP BY m.into_id) e
             WHERE s.id = e.into_id AND e.first_seen < s.first_seen"
        ),
        &[&from, &into],
    )?;
    tx.execute(
        &format!("UPDATE items SET story_id = m.into_id FROM {moves} WHERE items.story_id = m.from_id"),
        &[&from, &into],
    )?;
    tx.execute("DELETE FROM stories WHERE id = ANY($1)", &[&from])?;
    Ok(())
}

/// Inserts (or, `update`, rewrites in place) item rows, one statement for all.
fn write_items(tx: &mut Transaction<'_>, rows: &[Row<'_>], update: bool) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = Columns::default();
    for r in rows {
        let it = &r.n.item;
        c.id.push(r.id);
        c.feed_id.push(r.feed_id.as_str());
        c.key.push(it.key.as_str());
        c.guid.push(it.guid.as_deref());
        c.link.push(it.link.as_deref());
        c.canonical_link.push(it.canonical_link.as_deref());
        c.title.push(it.title.as_str());
        c.summary.push(it.summary.as_deref());
        c.content.push(it.content.as_deref());
        c.authors.push(serde_json::to_string(&it.authors).unwrap_or_else(|_| "[]".into()));
        c.categories.push(serde_json::to_string(&it.categories).unwrap_or_else(|_| "[]".into()));
        c.published.push(it.published.map(ts));
        c.updated.push(it.updated.map(ts));
        c.now.push(r.now);
        c.hash.push(&it.content_hash[..]);
        c.story.push(r.story);
        c.fingerprint.push(r.n.fingerprint.as_ref().map(dedup::signature_bytes));
        c.base.push(it.base.as_deref());
        c.article.push(i64::from(r.n.article));
    }
    c.search = vectors(rows);
    let unnest =
        "unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[],
                         $14::bigint[], $15::bytea[], $16::bigint[], $17::bytea[], $18::text[], $19::text[],
                         $20::bigint[])
                  AS u(id, feed_id, key, guid, link, canonical_link, title, summary, content, authors,
                       categories, published, updated, now, content_hash, story_id, fingerprint, base, search,
                       article)";
    let sql = if update {
        format!(
            "UPDATE items SET guid = u.guid, link = u.link, canonical_link = u.canonical_link, title = u.title,
                 summary = u.summary, content = u.content, authors = u.authors, categories = u.categories,
                 published = u.published, updated = u.updated, changed_at = u.now,
                 content_hash = u.content_hash, fingerprint = u.fingerprint, base = u.base,
                 sanitized = false, search = u.search::tsvector, article = u.article
             FROM {unnest} WHERE items.id = u.id"
        )
    } else {
        format!(
            "INSERT INTO items (id, feed_id, key, guid, link, canonical_link, title, summary, content, authors,
                 categories, published, updated, first_seen, changed_at, content_hash, story_id, fingerprint,
                 base, sanitized, search, article)
             SELECT id, feed_id, key, guid, link, canonical_link, title, summary, content, authors, categories,
                 published, updated, now, now, content_hash, story_id, fingerprint, base, false,
                 search::tsvector, article
             FROM {unnest}"
        )
    };
    tx.execute(
        &sql,
        &[
            &c.id,
            &c.feed_id,
            &c.key,
            &c.guid,
            &c.link,
            &c.canonical_link,
            &c.title,
            &c.summary,
            &c.content,
            &c.authors,
            &c.categories,
            &c.published,
            &c.updated,
            &c.now,
            &c.hash,
            &c.story,
            &c.fingerprint,
            &c.base,
            &c.search,
            &c.article,
        ],
    )?;
    Ok(())
}

/// The search vectors of `rows`, built on as many threads as there are cores (a
/// group's text is a few MB to split and fold; the writer's thread would otherwise
/// do it alone while the server waits).
fn vectors(rows: &[Row<'_>]) -> Vec<String> {
    let vector = |r: &Row<'_>| {
        fulltext::vector(&r.n.item.title, &r.n.summary_text, &r.n.content_text, &r.n.item.categories)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || rows.len() < 64 {
        return rows.iter().map(vector).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(vector).collect::<Vec<_>>()))
            .collect();
        // A part whose thread panicked is built here instead.
        parts
            .into_iter()
            .zip(rows.chunks(chunk))
            .flat_map(|(h, part)| h.join().unwrap_or_else(|_| part.iter().map(vector).collect()))
            .collect()
    })
}

/// Item rows as arrays, one per column (what `unnest` takes).
#[derive(Default)]
struct Columns<'r> {
    id: Vec<i64>,
    feed_id: Vec<&'r str>,
    key: Vec<&'r str>,
    guid: Vec<Option<&'r str>>,
    link: Vec<Option<&'r str>>,
    canonical_link: Vec<Option<&'r str>>,
    title: Vec<&'r str>,
    summary: Vec<Option<&'r str>>,
    content: Vec<Option<&'r str>>,
    authors: Vec<String>,
    categories: Vec<String>,
    published: Vec<Option<i64>>,
    updated: Vec<Option<i64>>,
    now: Vec<i64>,
    hash: Vec<&'r [u8]>,
    story: Vec<i64>,
    fingerprint: Vec<Option<Vec<u8>>>,
    base: Vec<Option<&'r str>>,
    search: Vec<String>,
    article: Vec<i64>,
}
