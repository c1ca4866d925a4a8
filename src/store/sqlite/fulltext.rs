//! The FTS5 index: topic queries rendered for it, topic matching, `topic preview`.
//!
//! The index keeps no copy of the text (`content = ''`): items keep their markup, and
//! preview extracts the text again for the few rows it highlights.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, params};

use crate::model::{Match, PreviewRow, Query, Scope, TopicFilter};
use crate::store::StoreError;

/// A query tree as an FTS5 MATCH expression: its canonical text, which is FTS5 syntax
/// fully parenthesised with every term quoted, so what SQLite sees is exactly what
/// was parsed.
pub fn render(q: &Query) -> String {
    q.to_string()
}

/// The MATCH expression for a topic with a query: the query without the exclude.
fn match_expr(filter: &TopicFilter) -> Option<String> {
    let q = render(filter.query.as_ref()?);
    Some(match &filter.exclude {
        Some(ex) => format!("({q}) NOT ({})", render(ex)),
        None => q,
    })
}

fn feeds_clause(filter: &TopicFilter) -> &'static str {
    if filter.feeds.is_some() {
        "AND i.feed_id IN (SELECT value FROM json_each(?2))"
    } else {
        "AND (?2 IS NULL)"
    }
}

fn exclude_clause(filter: &TopicFilter) -> &'static str {
    if filter.exclude.is_some() {
        "AND i.id NOT IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?4)"
    } else {
        ""
    }
}

/// The statement [`matches`] runs, with its MATCH expression and exclude
/// expression. Items are read through `items_match`, which holds every column it
/// needs, never from their rows.
pub(super) fn matches_sql(filter: &TopicFilter, scope: Scope) -> (String, Option<String>, Option<String>) {
    // Pending items only: the full-text index is read from the oldest pending id on (a
    // rowid range FTS5 honours), not evaluated over the whole store and filtered
    // afterwards, which made every pass cost tens of milliseconds per topic at 1M
    // items even with nothing pending.
    let (scope_clause, fts_scope) = match scope {
        Scope::Pending => (
            "AND i.id IN (SELECT item_id FROM pending)",
            "AND items_fts.rowid >= (SELECT min(item_id) FROM pending)",
        ),
        Scope::All => ("", ""),
    };
    // Of a story's items matched in one pass, the one that claims the earliest date
    // becomes its entry, then the first stored: not the first fetched, which
    // depends on which feed answers first (see `Writer::replace_topic`).
    let order = "ORDER BY COALESCE(i.published, i.first_seen), i.id";
    match match_expr(filter) {
        Some(q) => {
            let sql = format!(
                "SELECT i.id, i.story_id, -bm25(items_fts), COALESCE(i.published, i.first_seen)
                 FROM items_fts JOIN items i INDEXED BY items_match ON i.id = items_fts.rowid
                 WHERE items_fts MATCH ?1 {fts_scope} {} {scope_clause} {order}",
                feeds_clause(filter)
            );
            (sql, Some(q), None)
        }
        None => {
            let sql = format!(
                "SELECT i.id, i.story_id, 0.0, COALESCE(i.published, i.first_seen)
                 FROM items i INDEXED BY items_match WHERE (?1 IS NULL) {} {scope_clause} {} {order}",
                feeds_clause(filter),
                exclude_clause(filter).replace("?4", "?3")
            );
            (sql, None, filter.exclude.as_ref().map(render))
        }
    }
}

pub fn matches(conn: &Connection, filter: &TopicFilter, scope: Scope) -> Result<Vec<Match>, StoreError> {
    let (sql, fts, ex) = matches_sql(filter, scope);
    let feeds = filter.feeds.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default());
    let mut stmt = conn.prepare_cached(&sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Match { item_id: r.get(0)?, story_id: r.get(1)?, score: r.get(2)?, sort_date: r.get(3)? })
    };
    let rows = match ex {
        Some(ex) => stmt.query_map(params![fts, feeds, ex], map)?.collect::<Result<Vec<_>, _>>()?,
        None => stmt.query_map(params![fts, feeds], map)?.collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

/// Items matching an ad-hoc filter, best first, one per story, with highlighted title
/// and snippet.
pub fn preview(conn: &Connection, filter: &TopicFilter, limit: usize) -> Result<Vec<PreviewRow>, StoreError> {
    let (sql, fts) = match match_expr(filter) {
            Some(q) => {
                (
                    format!(
                        "SELECT i.id, i.feed_id, i.link, -bm25(items_fts), i.title, '', COALESCE(i.published, i.first_seen),
                                (SELECT count(*) FROM items o WHERE o.story_id = i.story_id), i.story_id
                         FROM items_fts JOIN items i ON i.id = items_fts.rowid
                         WHERE items_fts MATCH ?1 {} AND ?3 > 0
                         ORDER BY bm25(items_fts), i.id DESC",
                        feeds_clause(filter)
                    ),
                    Some(q),
                )
            }
            None => (
                format!(
                    "SELECT i.id, i.feed_id, i.link, 0.0, i.title, '', COALESCE(i.published, i.first_seen),
                            (SELECT count(*) FROM items o WHERE o.story_id = i.story_id), i.story_id
                     FROM items i WHERE (?1 IS NULL) {} {} AND ?3 > 0
                     ORDER BY COALESCE(i.published, i.first_seen) DESC",
                    feeds_clause(filter),
                    exclude_clause(filter)
                ),
                None,
            ),
        };
    let feeds = filter.feeds.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default());
    let mut stmt = conn.prepare(&sql)?;
    let ex = if fts.is_none() { filter.exclude.as_ref().map(render) } else { None };
    let mut p: Vec<Box<dyn rusqlite::ToSql>> =
        vec![Box::new(fts.clone()), Box::new(feeds), Box::new(limit as i64)];
    if ex.is_some() {
        p.push(Box::new(ex));
    }
    let rows = stmt.query_map(rusqlite::params_from_iter(p.iter()), |r| {
        Ok(PreviewRow {
            item_id: r.get(0)?,
            feed_id: r.get(1)?,
            link: r.get(2)?,
            score: r.get(3)?,
            title: r.get(4)?,
            snippet: r.get(5)?,
            date: r.get(6)?,
            sources: r.get(7)?,
            story_id: r.get(8)?,
        })
    })?;
    // One line per story: its best-matching item.
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(limit);
    for row in rows {
        let row = row?;
        if seen.insert(row.story_id) {
            out.push(row);
            if out.len() == limit {
                break;
            }
        }
    }
    if let Some(expr) = &fts {
        highlight(conn, expr, &mut out)?;
    }
    Ok(out)
}

/// Marks the terms `expr` matches in each row's title, and picks its best passage
/// as the snippet. The index keeps no copy of the text (see the migration that made
/// it contentless), so this indexes the text of these few rows again, extracted
/// from their stored markup as the poll extracted it, in a temporary table (which
/// a read-only connection may write). A row whose text no longer matches keeps its
/// plain title and no snippet.
fn highlight(conn: &Connection, expr: &str, rows: &mut [PreviewRow]) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.preview_fts USING fts5(
                 title, summary, content, categories, {INDEX_TOKENIZER}
             );
             DELETE FROM temp.preview_fts;"
    ))?;
    {
        let mut get = conn.prepare("SELECT title, summary, content, categories FROM items WHERE id = ?1")?;
        let mut put = conn.prepare(&index_insert("temp.preview_fts"))?;
        for row in rows.iter() {
            let (title, summary, content, categories) = get.query_row([row.item_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let text = |h: Option<String>| crate::parse::index_text(h.as_deref());
            index_row(
                &mut put,
                row.item_id,
                &title,
                &text(summary),
                &text(content),
                &super::topics::json_list(&categories),
            )?;
        }
    }
    let mut marked = conn.prepare(
        "SELECT rowid, highlight(preview_fts, 0, '[', ']'), snippet(preview_fts, -1, '[', ']', '…', 16)
             FROM temp.preview_fts WHERE preview_fts MATCH ?1",
    )?;
    let marked: HashMap<i64, (String, String)> =
        marked.query_map([expr], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?.collect::<Result<_, _>>()?;
    for row in rows {
        if let Some((title, snippet)) = marked.get(&row.item_id) {
            row.title.clone_from(title);
            row.snippet.clone_from(snippet);
        }
    }
    Ok(())
}

/// How the full-text index splits text (see the migrations); `topic preview`'s
/// temporary index must split it the same way.
pub const INDEX_TOKENIZER: &str = "tokenize = 'unicode61 remove_diacritics 2'";

/// The statement that adds one item's row to a full-text index `table`.
pub fn index_insert(table: &str) -> String {
    format!("INSERT INTO {table} (rowid, title, summary, content, categories) VALUES (?1, ?2, ?3, ?4, ?5)")
}

/// One item's row in a full-text index: its title, the text of its summary and
/// content ([`crate::parse::index_text`]) and its categories.
pub fn index_row(
    insert: &mut rusqlite::Statement<'_>,
    id: i64,
    title: &str,
    summary: &str,
    content: &str,
    categories: &[String],
) -> rusqlite::Result<()> {
    insert.execute(params![id, title, summary, content, categories.join(" ")]).map(drop)
}
