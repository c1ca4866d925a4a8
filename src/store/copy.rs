//! Copying a whole store to another database, of either engine (`feedsieve db copy`).
//!
//! Table by table, in the order their references need, rows stream from the source
//! and are written to the target in batches inside one transaction of the target's:
//! a copy that fails leaves the target as empty as it was. Ids are kept, so every
//! reference between tables holds. What each engine derives from the rows it is
//! given (SQLite's full-text rows, PostgreSQL's search vector) it builds as it loads
//! them. Near-duplicate search keys that a SQLite source had not written yet (they
//! are written in bulk later) are computed from the items' fingerprints for a target
//! that keeps every key written.

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::dedup;

/// A column's kind, as both engines store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
    Blob,
    /// SQLite's 0/1 integer, PostgreSQL's boolean.
    Bool,
}

/// A value of a copied row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// A table as both engines hold it: its columns (a PostgreSQL item's search vector
/// and SQLite's full-text rows are not among them: each engine derives them).
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::{Blob, Bool, Int, Real, Text};

/// Every table, in an order in which each row's references exist before it.
pub const TABLES: &[Table] = &[
    Table {
        name: "feeds",
        columns: &[
            ("id", Text),
            ("url", Text),
            ("title", Text),
            ("site_link", Text),
            ("ttl_minutes", Int),
            ("article_failures", Int),
            ("article_error", Text),
            ("etag", Text),
            ("last_modified", Text),
            ("last_fetch", Int),
            ("last_success", Int),
            ("last_status", Int),
            ("error", Text),
            ("failures", Int),
            ("next_due", Int),
            ("moved_to", Text),
        ],
    },
    Table { name: "stories", columns: &[("id", Int), ("first_seen", Int)] },
    Table {
        name: "items",
        columns: &[
            ("id", Int),
            ("feed_id", Text),
            ("key", Text),
            ("guid", Text),
            ("link", Text),
            ("canonical_link", Text),
            ("title", Text),
            ("summary", Text),
            ("content", Text),
            ("authors", Text),
            ("categories", Text),
            ("published", Int),
            ("updated", Int),
            ("first_seen", Int),
            ("changed_at", Int),
            ("content_hash", Blob),
            ("story_id", Int),
            ("fingerprint", Blob),
            ("base", Text),
            ("sanitized", Bool),
            ("article", Int),
        ],
    },
    Table { name: "pending", columns: &[("item_id", Int)] },
    Table {
        name: "websub_subscriptions",
        columns: &[
            ("topic", Text),
            ("format", Text),
            ("callback", Text),
            ("secret", Text),
            ("expires_at", Int),
            ("etag", Text),
            ("delivered", Text),
            ("attempts", Int),
            ("next_attempt", Int),
            ("claimed_until", Int),
            ("error", Text),
        ],
    },
    Table {
        name: "websub_sources",
        columns: &[
            ("feed_id", Text),
            ("hub", Text),
            ("topic", Text),
            ("secret", Text),
            ("state", Text),
            ("lease_until", Int),
            ("requested_at", Int),
            ("error", Text),
        ],
    },
    Table { name: "topics", columns: &[("id", Text), ("signature", Text), ("changed_at", Int)] },
    Table {
        name: "topic_stories",
        columns: &[
            ("topic_id", Text),
            ("story_id", Int),
            ("item_id", Int),
            ("score", Real),
            ("sort_date", Int),
            ("matched_at", Int),
        ],
    },
    Table { name: "tombstones", columns: &[("feed_id", Text), ("key", Text), ("pruned_at", Int)] },
    Table { name: "item_bands", columns: &[("key", Int), ("item_id", Int)] },
    Table { name: "feed_boilerplate", columns: &[("feed_id", Text), ("hash", Int)] },
    Table { name: "meta", columns: &[("key", Text), ("value", Int)] },
];

/// Writes copied rows into a target, inside the transaction of
/// [`super::engine::Engine::copy_in`].
pub trait Loader {
    /// Adds `rows` (values in the order of `table.columns`) to `table`.
    fn load(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError>;
}

/// Rows written per statement batch.
const BATCH: usize = 1_000;

/// How far a copy has come: rows of `table` copied, of `total`.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub table: &'a str,
    pub copied: u64,
    pub total: u64,
}

/// Rows per table, source and target, after a copy.
pub type Counts = Vec<(&'static str, u64, u64)>;

/// Copies every table of `from` into `to`, which must hold no feed, item, story or
/// topic yet. Returns each table's row count in both, which must agree.
///
/// # Errors
/// A non-empty target (nothing is written), a database failure (nothing of the copy
/// stays in the target), or counts that disagree after the copy.
pub fn copy(
    from: &Store,
    to: &mut Store,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Counts, StoreError> {
    let kept = ["feeds", "items", "stories", "topics"];
    let occupied = to.engine.row_counts(&kept)?;
    if let Some((table, n)) = kept.iter().zip(occupied).find(|(_, n)| *n > 0) {
        return Err(StoreError::NotEmpty { at: to.name().to_owned(), table, rows: n });
    }
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let totals: HashMap<&str, u64> = names.iter().copied().zip(from.engine.row_counts(&names)?).collect();
    // Search keys the source has not written yet: those of items after `bands_through`.
    let unwritten_from = (from.engine.defers_band_keys() && !to.engine.defers_band_keys())
        .then(|| from.engine.meta("bands_through"))
        .transpose()?
        .map(|through| through.unwrap_or(0));
    let to_defers = to.engine.defers_band_keys();
    let from_engine = &from.engine;
    to.engine.copy_in(&mut |loader| {
        let mut late_keys: Vec<(i64, i64)> = Vec::new();
        let mut last_item = 0;
        for table in TABLES {
            let total = totals.get(table.name).copied().unwrap_or(0);
            let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
            let mut copied = 0u64;
            progress(Progress { table: table.name, copied, total });
            from_engine.dump(table, &mut |row| {
                if table.name == "items" {
                    let id = row[0].int().unwrap_or(0);
                    last_item = last_item.max(id);
                    if let (Some(through), Value::Blob(fp)) = (unwritten_from, &row[17])
                        && id > through
                        && let Some(fp) = dedup::signature_from_bytes(fp)
                    {
                        late_keys.extend(dedup::band_keys(&fp).into_iter().map(|k| (k, id)));
                    }
                }
                batch.push(row);
                if batch.len() == BATCH {
                    loader.load(table, &batch)?;
                    copied += batch.len() as u64;
                    batch.clear();
                    progress(Progress { table: table.name, copied, total });
                }
                Ok(())
            })?;
            if table.name == "item_bands" && !late_keys.is_empty() {
                batch.extend(late_keys.drain(..).map(|(k, id)| vec![Value::Int(k), Value::Int(id)]));
            }
            if table.name == "meta" && to_defers && !from_engine.defers_band_keys() {
                // Every key of a source that writes them as it stores is in the copy:
                // nothing for the target's next flush to compute again.
                batch.retain(|r| !matches!(&r[0], Value::Text(k) if k == "bands_through"));
                batch.push(vec![Value::Text("bands_through".into()), Value::Int(last_item)]);
            }
            copied += batch.len() as u64;
            loader.load(table, &batch)?;
            progress(Progress { table: table.name, copied, total: total.max(copied) });
        }
        Ok(())
    })?;
    let after: HashMap<&str, u64> = names.iter().copied().zip(to.engine.row_counts(&names)?).collect();
    let counts: Counts = TABLES
        .iter()
        .map(|t| (t.name, totals.get(t.name).copied().unwrap_or(0), after.get(t.name).copied().unwrap_or(0)))
        .collect();
    for (table, source, target) in &counts {
        // Keys the source had not written yet are added; a target's own meta values
        // (its migrations') may be more.
        let added_keys = *table == "item_bands" || *table == "meta";
        if (added_keys && target < source) || (!added_keys && target != source) {
            return Err(StoreError::CopyMismatch { table, rows: *source, copied: *target });
        }
    }
    Ok(counts)
}
