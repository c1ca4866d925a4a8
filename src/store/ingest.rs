//! Storing a group of polls, item by item, by the rules of `rules`: one transaction
//! of whichever engine holds the database.

use std::sync::Arc;

use super::StoreError;
use super::bands::{BandMap, Banded};
use super::engine::{Engine, IngestTx};
use super::rules;
use crate::dedup;
use crate::model::{IngestCounts, IngestJob, NewItem, StoryRule, ts};

/// What storing one item came to.
enum Upsert {
    New,
    Updated,
    Unchanged,
    Tombstoned,
}

/// Stores `group` in one transaction of `engine`: every feed's items, its
/// boilerplate and its feed row. `unflushed` holds the search keys of items stored
/// earlier and not yet written. Returns each poll's counts and, for an engine that
/// defers search keys, those of this group's new items (to keep until the flush).
///
/// # Errors
/// On database failure, after which nothing of the group is stored.
pub(crate) fn group(
    engine: &mut dyn Engine,
    unflushed: &BandMap,
    group: &[&IngestJob],
) -> Result<(Vec<IngestCounts>, Option<BandMap>), StoreError> {
    let defers = engine.defers_band_keys();
    let mut tx = engine.ingest_tx(group)?;
    let mut all = Vec::with_capacity(group.len());
    // Search keys of this transaction's new items: found by the group's later items,
    // and kept (or written) only once it commits.
    let mut fresh = BandMap::default();
    for job in group {
        let feed_id = job.feed_id.as_str();
        let now = ts(job.now);
        let mut counts = IngestCounts::default();
        tx.add_boilerplate(feed_id, &job.record.boilerplate)?;
        for n in &job.items {
            match item(tx.as_mut(), feed_id, n, job.rule, now, unflushed, &mut fresh)? {
                Upsert::New => counts.new += 1,
                Upsert::Updated => counts.updated += 1,
                Upsert::Unchanged | Upsert::Tombstoned => counts.unchanged += 1,
            }
        }
        tx.record_fetch(feed_id, &job.record, now)?;
        all.push(counts);
    }
    if !defers {
        let pairs: Vec<(i64, i64)> = fresh.pairs().collect();
        tx.add_band_keys(&pairs)?;
    }
    tx.commit()?;
    Ok((all, defers.then_some(fresh)))
}

/// Stores one item: a tombstoned key is skipped, an unchanged one left alone, a
/// changed one corrected in place (keeping its story), and a new one filed in the
/// story [`rules::find_story`] finds (merging into it the others it finds the
/// item to be part of), or a new story.
fn item<'a>(
    tx: &mut dyn IngestTx<'a>,
    feed_id: &str,
    n: &'a NewItem,
    rule: StoryRule,
    now: i64,
    unflushed: &BandMap,
    fresh: &mut BandMap,
) -> Result<Upsert, StoreError> {
    let it = &n.item;
    if tx.tombstoned(feed_id, &it.key)? {
        return Ok(Upsert::Tombstoned);
    }
    let (story, outcome) = match tx.stored(feed_id, &it.key)? {
        Some(known) if known.same_as(it) => return Ok(Upsert::Unchanged),
        // A correction keeps its story.
        Some(_) => (0, Upsert::Updated),
        None => {
            let story = match rules::find_story(tx, n, rule, now, unflushed, fresh)? {
                Some(joins) => {
                    if !joins.merged.is_empty() {
                        tx.merge_stories(joins.story, &joins.merged)?;
                    }
                    joins.story
                }
                None => tx.new_story(now)?,
            };
            (story, Upsert::New)
        }
    };
    let correction = matches!(outcome, Upsert::Updated);
    let id = tx.put_item(feed_id, n, story, now, correction)?;
    // A correction keeps the search keys it was first found by.
    if !correction && let Some(fp) = &n.fingerprint {
        let fp = Arc::new(fp.clone());
        for key in dedup::band_keys(&fp) {
            fresh.insert(key, Banded { item: id, story, fp: fp.clone() });
        }
    }
    Ok(outcome)
}
