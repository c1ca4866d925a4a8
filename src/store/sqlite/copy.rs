//! Rows out of and into a SQLite database, for `db copy`.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Transaction, TransactionBehavior, params_from_iter};

use super::fulltext;
use crate::store::StoreError;
use crate::store::copy::{Kind, Loader, Table, Value};

pub fn row_counts(conn: &Connection, tables: &[&str]) -> Result<Vec<u64>, StoreError> {
    tables
        .iter()
        .map(|t| Ok(conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0))? as u64))
        .collect()
}

pub fn dump(
    conn: &Connection,
    table: &Table,
    f: &mut dyn FnMut(Vec<Value>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let sql = format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), table.name, columns[0]);
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(columns.len());
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            row.push(match (r.get_ref(i)?, kind) {
                (ValueRef::Null, _) => Value::Null,
                (ValueRef::Integer(v), Kind::Bool) => Value::Bool(v != 0),
                (ValueRef::Integer(v), Kind::Real) => Value::Real(v as f64),
                (ValueRef::Integer(v), _) => Value::Int(v),
                (ValueRef::Real(v), _) => Value::Real(v),
                (ValueRef::Text(t), _) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                (ValueRef::Blob(b), _) => Value::Blob(b.to_vec()),
            });
        }
        f(row)?;
    }
    Ok(())
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Loads rows inside one transaction; items get their full-text rows.
struct SqliteLoader<'c> {
    tx: Transaction<'c>,
}

impl Loader for SqliteLoader<'_> {
    fn load(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError> {
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        // The target's migrations wrote meta values of their own; the source's win.
        let conflict =
            if table.name == "meta" { " ON CONFLICT(key) DO UPDATE SET value = excluded.value" } else { "" };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){conflict}",
            table.name,
            columns.join(", "),
            marks.join(", ")
        );
        let mut insert = self.tx.prepare_cached(&sql)?;
        let mut index = self.tx.prepare_cached(&fulltext::index_insert("items_fts"))?;
        for row in rows {
            insert.execute(params_from_iter(row.iter()))?;
            if table.name == "items" {
                let text = |i: usize| match &row[i] {
                    Value::Text(t) => t.as_str(),
                    _ => "",
                };
                let html = |i: usize| crate::parse::index_text(Some(text(i)));
                let categories: Vec<String> = serde_json::from_str(text(10)).unwrap_or_default();
                let id = match row[0] {
                    Value::Int(id) => id,
                    _ => 0,
                };
                fulltext::index_row(&mut index, id, text(6), &html(7), &html(8), &categories)?;
            }
        }
        Ok(())
    }
}

pub fn copy_in(
    conn: &mut Connection,
    f: &mut dyn FnMut(&mut dyn Loader) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut loader = SqliteLoader { tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)? };
    f(&mut loader)?;
    loader.tx.commit()?;
    Ok(())
}
