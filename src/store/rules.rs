//! What defines the store's behaviour, written once for every engine: when an item
//! is unchanged, the order in which a new item looks for its story, which item of a
//! story is a topic's entry, and sanitising HTML on its first publication. Engines
//! only store and find what these ask for.

use std::collections::{HashMap, HashSet};

use super::StoreError;
use super::bands::{BandMap, Banded};
use super::engine::IngestTx;
use crate::dedup;
use crate::model::{Item, Match, NewItem, StoryRule};

/// An item of a feed the store holds: its content hash, and whether that is of the
/// kind items stored before SQLite schema version 7 have
/// ([`dedup::legacy_content_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub hash: [u8; 16],
    pub legacy: bool,
    /// The stored content is the item's own page's main text (`full_text`).
    pub article: bool,
}

impl Known {
    /// Stored row `id`'s content `hash`, given the id below which hashes are legacy
    /// ones (0: none are).
    pub(crate) fn of(id: i64, hash: &[u8], legacy_below: i64, article: bool) -> Known {
        Known { hash: <[u8; 16]>::try_from(hash).unwrap_or_default(), legacy: id < legacy_below, article }
    }

    /// Whether `item` says what the stored item said: the rule for "unchanged".
    pub fn same_as(&self, item: &Item) -> bool {
        self.hash == item.content_hash || (self.legacy && self.hash == dedup::legacy_content_hash(item))
    }
}

/// The story a new item joins, and the other stories it shows to be the same one,
/// to merge into it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Joins {
    pub story: i64,
    pub merged: Vec<i64>,
}

impl Joins {
    fn one(story: i64) -> Joins {
        Joins { story, merged: Vec::new() }
    }
}

/// The story a new item joins: the story of the first stored item with the same
/// canonical link; else, of the items found by its near-duplicate search keys (those
/// of this process not yet written, `unflushed` and `fresh`, then stored ones first
/// seen inside the window), the most alike if alike enough (the first found on a
/// tie).
///
/// Every other story with an item alike enough is merged into it, unless a
/// candidate of the one contradicts a candidate of the other ([`dedup::contradict`]):
/// then the item resembles two different events, as a digest of the week's news
/// does, and only joins the one. Merging is what keeps stories from depending on the
/// order copies arrive in: an original that comes after two copies which do not
/// resemble each other (an excerpt and a rewrite) gathers them into one story, as it
/// would have had it come first.
pub(crate) fn find_story(
    tx: &mut dyn IngestTx<'_>,
    n: &NewItem,
    rule: StoryRule,
    now: i64,
    unflushed: &BandMap,
    fresh: &BandMap,
) -> Result<Option<Joins>, StoreError> {
    let linked = match &n.item.canonical_link {
        Some(link) => tx.story_by_link(link)?,
        None => None,
    };
    let linked_story = linked.map(|l| l.story);
    let Some(fp) = &n.fingerprint else { return Ok(linked_story.map(Joins::one)) };
    let band_keys = dedup::band_keys(fp);
    let mut candidates: Vec<Banded> = Vec::new();
    let mut seen = HashSet::new();
    for key in &band_keys {
        for found in unflushed.get(*key).chain(fresh.get(*key)) {
            // An item sharing several keys is one candidate.
            if seen.insert(found.item) {
                candidates.push(found.clone());
            }
        }
    }
    let in_memory = candidates.len();
    tx.band_candidates(&band_keys, now - rule.window, linked.map(|l| l.item), &mut candidates)?;
    let alike: Vec<(usize, f64)> = candidates
        .iter()
        .map(|c| dedup::resemblance(fp, &c.fp))
        .enumerate()
        .filter(|(_, sim)| *sim >= rule.threshold)
        .collect();
    let Some(&(best, _)) = alike.iter().reduce(|b, x| if x.1 > b.1 { x } else { b }) else {
        return Ok(linked_story.map(Joins::one));
    };
    // The stories the candidates are in now: those kept in memory may have been
    // merged since they were found (stored ones come with their story of now).
    let mut stories = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        stories.push(if i < in_memory { tx.story_now(c.item, c.story)? } else { c.story });
    }
    let story = linked_story.unwrap_or(stories[best]);
    let mut others: Vec<i64> = alike.iter().map(|(i, _)| stories[*i]).filter(|s| *s != story).collect();
    others.sort_unstable();
    others.dedup();
    let mut joins = Joins::one(story);
    for other in others {
        let in_story = |i: &usize, s: i64| stories[*i] == s;
        let agree = (0..candidates.len()).filter(|i| in_story(i, other)).all(|i| {
            (0..candidates.len())
                .filter(|j| in_story(j, story) || joins.merged.iter().any(|m| in_story(j, *m)))
                .all(|j| !dedup::contradict(&candidates[i].fp, &candidates[j].fp))
        });
        if agree {
            joins.merged.push(other);
        }
    }
    Ok(Some(joins))
}

/// A topic's entry for one story.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicRow {
    pub item_id: i64,
    pub score: f64,
    pub sort_date: i64,
}

/// Files matches, in order, into a topic's rows: the first item of a story to match
/// stays its entry (its id must not change when later copies join), the best score is
/// kept, and the sort date is the entry item's.
pub(crate) fn fold_matches(rows: &mut HashMap<i64, TopicRow>, m: &[Match]) {
    for x in m {
        rows.entry(x.story_id)
            .and_modify(|r| {
                r.score = r.score.max(x.score);
                if r.item_id == x.item_id {
                    r.sort_date = x.sort_date;
                }
            })
            .or_insert(TopicRow { item_id: x.item_id, score: x.score, sort_date: x.sort_date });
    }
}

/// An item's HTML as stored, not sanitised yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RawHtml {
    pub id: i64,
    pub summary: Option<String>,
    pub content: Option<String>,
    /// What relative URLs in them resolve against.
    pub base: Option<String>,
}

/// An item's HTML sanitised, to store in place of its [`RawHtml`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sanitized {
    pub id: i64,
    pub summary: Option<String>,
    pub content: Option<String>,
}

/// The sanitised form of a stored item's HTML.
pub(crate) fn sanitize(raw: &RawHtml) -> Sanitized {
    let clean = |h: &Option<String>| crate::parse::sanitize_field(h.as_deref(), raw.base.as_deref());
    Sanitized { id: raw.id, summary: clean(&raw.summary), content: clean(&raw.content) }
}

/// Stored HTML as it may leave the store: as stored once `sanitized`, else sanitised
/// now (the row is sanitised in place at its first publication:
/// `Store::sanitize_published`).
pub(crate) fn safe_html(html: Option<String>, base: Option<&str>, sanitized: bool) -> Option<String> {
    if sanitized { html } else { crate::parse::sanitize_field(html.as_deref(), base) }
}
