//! Topic rows, the curation queue, a topic's entries, HTML sanitised on first
//! publication.

use std::collections::HashMap;

use postgres::{Client, Transaction};

use super::fulltext;
use crate::model::{EntryRow, Match, Scope, StoredItem, TopicFilter};
use crate::store::StoreError;
use crate::store::engine::TopicTx;
use crate::store::rules::{RawHtml, Sanitized, TopicRow, safe_html};

/// A curation transaction.
///
/// It takes the queue's items out of `pending` before it first reads the queue or
/// matches anything, and works on those: nodes store items while another curates,
/// and a `DELETE FROM pending` at the end also removed the items queued after the
/// matching had read the queue, which then never reached their topics. Queued
/// meanwhile, they wait for the next pass (an item queued again, by a merge, waits
/// for this transaction to end, then is queued anew). Committed without emptying
/// the queue, the transaction puts them back.
pub struct PgTopicTx<'c> {
    tx: Transaction<'c>,
    /// The queue's items taken, once taken; and whether the queue was emptied.
    claimed: Option<Vec<i64>>,
    cleared: bool,
}

impl<'c> PgTopicTx<'c> {
    pub fn begin(client: &'c mut Client) -> Result<Self, StoreError> {
        Ok(PgTopicTx { tx: client.transaction()?, claimed: None, cleared: false })
    }

    /// The queue's items, taken out of `pending` the first time.
    fn claim(&mut self) -> Result<&Vec<i64>, StoreError> {
        if self.claimed.is_none() {
            let rows = self.tx.query("DELETE FROM pending RETURNING item_id", &[])?;
            self.claimed = Some(rows.iter().map(|r| r.get(0)).collect());
        }
        Ok(self.claimed.get_or_insert_default())
    }
}

impl TopicTx for PgTopicTx<'_> {
    fn topic_signature(&mut self, topic_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tx.query_opt("SELECT signature FROM topics WHERE id = $1", &[&topic_id])?.map(|r| r.get(0)))
    }

    fn set_topic(&mut self, topic_id: &str, signature: &str, now: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO topics (id, signature, changed_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET signature = excluded.signature, changed_at = excluded.changed_at",
            &[&topic_id, &signature, &now],
        )?;
        Ok(())
    }

    fn topic_rows(
        &mut self,
        topic_id: &str,
        stories: Option<&[i64]>,
    ) -> Result<HashMap<i64, TopicRow>, StoreError> {
        let rows = self.tx.query(
            "SELECT story_id, item_id, score, sort_date FROM topic_stories
             WHERE topic_id = $1 AND ($2::bigint[] IS NULL OR story_id = ANY($2))",
            &[&topic_id, &stories],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), TopicRow { item_id: r.get(1), score: r.get(2), sort_date: r.get(3) }))
            .collect())
    }

    fn delete_topic_rows(&mut self, topic_id: &str, stories: &[i64]) -> Result<(), StoreError> {
        if !stories.is_empty() {
            self.tx.execute(
                "DELETE FROM topic_stories WHERE topic_id = $1 AND story_id = ANY($2)",
                &[&topic_id, &stories],
            )?;
        }
        Ok(())
    }

    fn unfile_pending(&mut self, topic_id: &str) -> Result<(), StoreError> {
        self.claim()?;
        self.tx.execute(
            "DELETE FROM topic_stories WHERE topic_id = $1 AND item_id = ANY($2)",
            &[&topic_id, &self.claimed],
        )?;
        Ok(())
    }

    fn put_topic_rows(
        &mut self,
        topic_id: &str,
        now: i64,
        rows: &[(i64, TopicRow)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let stories: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
        let items: Vec<i64> = rows.iter().map(|(_, r)| r.item_id).collect();
        let scores: Vec<f64> = rows.iter().map(|(_, r)| r.score).collect();
        let dates: Vec<i64> = rows.iter().map(|(_, r)| r.sort_date).collect();
        self.tx.execute(
            "INSERT INTO topic_stories (topic_id, story_id, item_id, score, sort_date, matched_at)
             SELECT $1, * , $6 FROM unnest($2::bigint[], $3::bigint[], $4::float8[], $5::bigint[])
             ON CONFLICT (topic_id, story_id) DO UPDATE SET item_id = excluded.item_id, score = excluded.score,
                 sort_date = excluded.sort_date, matched_at = excluded.matched_at",
            &[&topic_id, &stories, &items, &scores, &dates, &now],
        )?;
        Ok(())
    }

    fn retain_topics(&mut self, keep: &[&str]) -> Result<(), StoreError> {
        self.tx.execute("DELETE FROM topic_stories WHERE topic_id <> ALL($1)", &[&keep])?;
        self.tx.execute("DELETE FROM topics WHERE id <> ALL($1)", &[&keep])?;
        Ok(())
    }

    fn matches(&mut self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        // Taken first also for a rebuild from every item: what is queued after the
        // rebuild read the items is left for the next pass.
        self.claim()?;
        fulltext::matches(&mut self.tx, filter, scope, self.claimed.as_ref())
    }

    fn clear_pending(&mut self) -> Result<usize, StoreError> {
        let n = self.claim()?.len();
        self.cleared = true;
        Ok(n)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if let Some(claimed) = self.claimed.take().filter(|c| !self.cleared && !c.is_empty()) {
            self.tx.execute(
                "INSERT INTO pending (item_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
                &[&claimed],
            )?;
        }
        Ok(self.tx.commit()?)
    }
}

pub fn output_items(
    client: &mut Client,
    topic_id: &str,
    limit: usize,
    since: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    Ok(client
        .query(
            "SELECT item_id FROM topic_stories WHERE topic_id = $1 AND sort_date >= $2
             ORDER BY sort_date DESC, score DESC, story_id DESC LIMIT $3",
            &[&topic_id, &since.unwrap_or(i64::MIN), &(limit as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The topic's entries, newest first: the `limit` rows of the topic first, then
/// their items one by one (so written, the plan does not depend on what the planner
/// believes of the topic's size: right after a backfill its statistics say nothing,
/// and a join it chose then read the whole items table).
pub fn entries(
    client: &mut Client,
    topic_id: &str,
    limit: usize,
    since: Option<i64>,
) -> Result<Vec<EntryRow>, StoreError> {
    let rows = client.query(
        "SELECT ts.story_id, ts.score, i.id, i.feed_id, f.title, f.url, f.site_link, i.key, i.link, i.title,
                i.summary, i.content, i.authors, i.categories, i.published, i.updated, i.first_seen,
                i.changed_at, i.base, i.sanitized
         FROM (SELECT story_id, score, item_id, sort_date FROM topic_stories
               WHERE topic_id = $1 AND sort_date >= $2
               ORDER BY sort_date DESC, score DESC, story_id DESC LIMIT $3) ts
         JOIN LATERAL (SELECT * FROM items WHERE id = ts.item_id OFFSET 0) i ON true
         JOIN feeds f ON f.id = i.feed_id
         ORDER BY ts.sort_date DESC, ts.score DESC, ts.story_id DESC",
        &[&topic_id, &since.unwrap_or(i64::MIN), &(limit as i64)],
    )?;
    let mut entries: Vec<EntryRow> = rows
        .iter()
        .map(|r| {
            let base: Option<String> = r.get(18);
            let sanitized: bool = r.get(19);
            let list = |i: usize| serde_json::from_str::<Vec<String>>(r.get(i)).unwrap_or_default();
            EntryRow {
                story_id: r.get(0),
                score: r.get(1),
                item: StoredItem {
                    id: r.get(2),
                    feed_id: r.get(3),
                    feed_title: r.get(4),
                    feed_url: r.get(5),
                    feed_site: r.get(6),
                    key: r.get(7),
                    link: r.get(8),
                    title: r.get(9),
                    summary: safe_html(r.get(10), base.as_deref(), sanitized),
                    content: safe_html(r.get(11), base.as_deref(), sanitized),
                    authors: list(12),
                    categories: list(13),
                    published: r.get(14),
                    updated: r.get(15),
                    first_seen: r.get(16),
                    changed_at: r.get(17),
                },
                also: Vec::new(),
            }
        })
        .collect();
    // The other sources of every entry's story, in one statement. `OFFSET 0` keeps each
    // lookup a probe of the story index: flattened, the planner hashes the whole items
    // table against the few stories (15 ms over 20,000 items against 1 ms).
    let stories: Vec<i64> = entries.iter().map(|e| e.story_id).collect();
    // Story -> (item id, feed id, feed title, link).
    type Source = (i64, String, Option<String>, Option<String>);
    let mut also: HashMap<i64, Vec<Source>> = HashMap::new();
    for r in client.query(
        "SELECT s.story, i.id, i.feed_id, f.title, i.link FROM unnest($1::bigint[]) AS s(story)
         JOIN LATERAL (SELECT id, feed_id, link, first_seen FROM items
                       WHERE story_id = s.story OFFSET 0) i ON true
         JOIN LATERAL (SELECT title FROM feeds WHERE id = i.feed_id OFFSET 0) f ON true
         ORDER BY i.first_seen, i.id",
        &[&stories],
    )? {
        also.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3), r.get(4)));
    }
    for e in &mut entries {
        e.also = also
            .get(&e.story_id)
            .into_iter()
            .flatten()
            .filter(|(id, ..)| *id != e.item.id)
            .map(|(_, feed, title, link)| (feed.clone(), title.clone(), link.clone()))
            .collect();
    }
    Ok(entries)
}

pub fn unsanitized(client: &mut Client, ids: &[i64]) -> Result<Vec<RawHtml>, StoreError> {
    Ok(client
        .query("SELECT id, summary, content, base FROM items WHERE id = ANY($1) AND NOT sanitized", &[&ids])?
        .iter()
        .map(|r| RawHtml { id: r.get(0), summary: r.get(1), content: r.get(2), base: r.get(3) })
        .collect())
}

pub fn store_sanitized(client: &mut Client, rows: &[Sanitized]) -> Result<(), StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let summaries: Vec<Option<&str>> = rows.iter().map(|r| r.summary.as_deref()).collect();
    let contents: Vec<Option<&str>> = rows.iter().map(|r| r.content.as_deref()).collect();
    client.execute(
        "UPDATE items SET summary = u.summary, content = u.content, sanitized = true
         FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, summary, content) WHERE items.id = u.id",
        &[&ids, &summaries, &contents],
    )?;
    Ok(())
}

pub fn sizes(client: &mut Client) -> Result<HashMap<String, i64>, StoreError> {
    Ok(client
        .query("SELECT topic_id, count(*) FROM topic_stories GROUP BY topic_id", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
