//! Topic rows (`topics`, `topic_stories`), the curation queue (`pending`), a topic's
//! entries as publishing reads them, and HTML sanitised on first publication.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::fulltext;
use crate::model::{EntryRow, Match, Scope, StoredItem, TopicFilter};
use crate::store::StoreError;
use crate::store::engine::TopicTx;
use crate::store::rules::{RawHtml, Sanitized, TopicRow, safe_html};

/// A curation transaction (`BEGIN IMMEDIATE`).
pub struct SqliteTopicTx<'c> {
    tx: Transaction<'c>,
}

impl<'c> SqliteTopicTx<'c> {
    pub fn begin(conn: &'c mut Connection) -> Result<Self, StoreError> {
        Ok(SqliteTopicTx { tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)? })
    }
}

/// A list of values as one JSON array parameter, for `IN (SELECT value FROM
/// json_each(?))`: one statement, prepared once, whatever the list's length.
fn json_array<T: serde::Serialize>(values: &[T]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

impl TopicTx for SqliteTopicTx<'_> {
    fn topic_signature(&mut self, topic_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_row("SELECT signature FROM topics WHERE id = ?1", [topic_id], |r| r.get(0))
            .optional()?)
    }

    fn set_topic(&mut self, topic_id: &str, signature: &str, now: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO topics (id, signature, changed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET signature = excluded.signature, changed_at = excluded.changed_at",
            params![topic_id, signature, now],
        )?;
        Ok(())
    }

    fn topic_rows(
        &mut self,
        topic_id: &str,
        stories: Option<&[i64]>,
    ) -> Result<HashMap<i64, TopicRow>, StoreError> {
        let only = stories.map(json_array);
        let mut stmt = self.tx.prepare_cached(
            "SELECT story_id, item_id, score, sort_date FROM topic_stories
             WHERE topic_id = ?1 AND (?2 IS NULL OR story_id IN (SELECT value FROM json_each(?2)))",
        )?;
        let rows = stmt.query_map(params![topic_id, only], |r| {
            Ok((r.get(0)?, TopicRow { item_id: r.get(1)?, score: r.get(2)?, sort_date: r.get(3)? }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_topic_rows(&mut self, topic_id: &str, stories: &[i64]) -> Result<(), StoreError> {
        let mut delete =
            self.tx.prepare_cached("DELETE FROM topic_stories WHERE topic_id = ?1 AND story_id = ?2")?;
        for story in stories {
            delete.execute(params![topic_id, story])?;
        }
        Ok(())
    }

    fn unfile_pending(&mut self, topic_id: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM topic_stories WHERE topic_id = ?1 AND item_id IN (SELECT item_id FROM pending)",
            [topic_id],
        )?;
        Ok(())
    }

    fn put_topic_rows(
        &mut self,
        topic_id: &str,
        now: i64,
        rows: &[(i64, TopicRow)],
    ) -> Result<(), StoreError> {
        let mut put = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO topic_stories (topic_id, story_id, item_id, score, sort_date, matched_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (story, row) in rows {
            put.execute(params![topic_id, story, row.item_id, row.score, row.sort_date, now])?;
        }
        Ok(())
    }

    fn retain_topics(&mut self, keep: &[&str]) -> Result<(), StoreError> {
        let keep = json_array(keep);
        self.tx.execute(
            "DELETE FROM topic_stories WHERE topic_id NOT IN (SELECT value FROM json_each(?1))",
            [&keep],
        )?;
        self.tx.execute("DELETE FROM topics WHERE id NOT IN (SELECT value FROM json_each(?1))", [&keep])?;
        Ok(())
    }

    fn matches(&mut self, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
        fulltext::matches(&self.tx, filter, scope)
    }

    fn clear_pending(&mut self) -> Result<usize, StoreError> {
        Ok(self.tx.execute("DELETE FROM pending", [])?)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }
}

/// The items of a topic's newest `limit` stories first seen or published since
/// `since`, in output order.
pub fn output_items(
    conn: &Connection,
    topic_id: &str,
    limit: usize,
    since: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT item_id FROM topic_stories WHERE topic_id = ?1 AND sort_date >= ?2
         ORDER BY sort_date DESC, score DESC, story_id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![topic_id, since.unwrap_or(i64::MIN), limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn entries(
    conn: &Connection,
    topic_id: &str,
    limit: usize,
    since: Option<i64>,
) -> Result<Vec<EntryRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ts.story_id, ts.score, {ITEM_COLUMNS}
         FROM topic_stories ts JOIN items i ON i.id = ts.item_id JOIN feeds f ON f.id = i.feed_id
         WHERE ts.topic_id = ?1 AND ts.sort_date >= ?2
         ORDER BY ts.sort_date DESC, ts.score DESC, ts.story_id DESC
         LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![topic_id, since.unwrap_or(i64::MIN), limit as i64], |r| {
        Ok(EntryRow { story_id: r.get(0)?, score: r.get(1)?, item: stored_item(r, 2)?, also: Vec::new() })
    })?;
    let mut entries: Vec<EntryRow> = rows.collect::<Result<_, _>>()?;
    let mut also = conn.prepare_cached(
        "SELECT i.feed_id, f.title, i.link FROM items i JOIN feeds f ON f.id = i.feed_id
         WHERE i.story_id = ?1 AND i.id <> ?2 ORDER BY i.first_seen, i.id",
    )?;
    for e in &mut entries {
        e.also = also
            .query_map(params![e.story_id, e.item.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
    }
    Ok(entries)
}

pub fn unsanitized(conn: &Connection, ids: &[i64]) -> Result<Vec<RawHtml>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, summary, content, base FROM items
             WHERE id IN (SELECT value FROM json_each(?1)) AND sanitized = 0",
        )?
        .query_map([json_array(ids)], |r| {
            Ok(RawHtml { id: r.get(0)?, summary: r.get(1)?, content: r.get(2)?, base: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?)
}

pub fn store_sanitized(conn: &mut Connection, rows: &[Sanitized]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update =
            tx.prepare_cached("UPDATE items SET summary = ?2, content = ?3, sanitized = 1 WHERE id = ?1")?;
        for r in rows {
            update.execute(params![r.id, r.summary, r.content])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn sizes(conn: &Connection) -> Result<HashMap<String, i64>, StoreError> {
    let mut stmt = conn.prepare("SELECT topic_id, count(*) FROM topic_stories GROUP BY topic_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const ITEM_COLUMNS: &str = "i.id, i.feed_id, f.title, f.url, f.site_link, i.key, i.link, i.title, i.summary,
     i.content, i.authors, i.categories, i.published, i.updated, i.first_seen, i.changed_at, i.base, i.sanitized";

/// A list stored as a JSON array (authors, categories); empty if it is not one.
pub fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn stored_item(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StoredItem> {
    let base: Option<String> = r.get(at + 16)?;
    let sanitized = r.get::<_, i64>(at + 17)? != 0;
    let html = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(safe_html(r.get(i)?, base.as_deref(), sanitized))
    };
    Ok(StoredItem {
        id: r.get(at)?,
        feed_id: r.get(at + 1)?,
        feed_title: r.get(at + 2)?,
        feed_url: r.get(at + 3)?,
        feed_site: r.get(at + 4)?,
        key: r.get(at + 5)?,
        link: r.get(at + 6)?,
        title: r.get(at + 7)?,
        summary: html(at + 8)?,
        content: html(at + 9)?,
        authors: json_list(&r.get::<_, String>(at + 10)?),
        categories: json_list(&r.get::<_, String>(at + 11)?),
        published: r.get(at + 12)?,
        updated: r.get(at + 13)?,
        first_seen: r.get(at + 14)?,
        changed_at: r.get(at + 15)?,
    })
}
