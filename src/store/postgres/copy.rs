//! Rows out of and into a PostgreSQL database, for `db copy`.

use postgres::types::ToSql;
use postgres::{Client, Row, Transaction};

use super::fulltext;
use crate::store::StoreError;
use crate::store::copy::{Kind, Loader, Table, Value};

/// Rows fetched per round trip while dumping.
const FETCH: i32 = 1_000;

pub fn row_counts(client: &mut Client, tables: &[&str]) -> Result<Vec<u64>, StoreError> {
    tables
        .iter()
        .map(|t| Ok(client.query_one(&format!("SELECT count(*) FROM {t}"), &[])?.get::<_, i64>(0) as u64))
        .collect()
}

/// Streams the rows through a portal, [`FETCH`] at a time, in a read-only
/// transaction (one consistent snapshot).
pub fn dump(
    client: &mut Client,
    table: &Table,
    f: &mut dyn FnMut(Vec<Value>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let sql = format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), table.name, columns[0]);
    let mut tx = client.build_transaction().read_only(true).start()?;
    let portal = tx.bind(sql.as_str(), &[])?;
    loop {
        let rows = tx.query_portal(&portal, FETCH)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            f(values(table, r))?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn values(table: &Table, r: &Row) -> Vec<Value> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let v = match kind {
                Kind::Int => r.get::<_, Option<i64>>(i).map(Value::Int),
                Kind::Real => r.get::<_, Option<f64>>(i).map(Value::Real),
                Kind::Text => r.get::<_, Option<String>>(i).map(Value::Text),
                Kind::Blob => r.get::<_, Option<Vec<u8>>>(i).map(Value::Blob),
                Kind::Bool => r.get::<_, Option<bool>>(i).map(Value::Bool),
            };
            v.unwrap_or(Value::Null)
        })
        .collect()
}

/// One column of a batch, as the array `unnest` takes.
enum Array {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Blob(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

impl Array {
    fn of(kind: Kind, rows: &[Vec<Value>], i: usize) -> Array {
        let col = rows.iter().map(|r| &r[i]);
        match kind {
            Kind::Int => {
                Array::Int(col.map(|v| if let Value::Int(x) = v { Some(*x) } else { None }).collect())
            }
            Kind::Real => Array::Real(
                col.map(|v| match v {
                    Value::Real(x) => Some(*x),
                    Value::Int(x) => Some(*x as f64),
                    _ => None,
                })
                .collect(),
            ),
            Kind::Text => Array::Text(
                col.map(|v| if let Value::Text(x) = v { Some(x.clone()) } else { None }).collect(),
            ),
            Kind::Blob => Array::Blob(
                col.map(|v| if let Value::Blob(x) = v { Some(x.clone()) } else { None }).collect(),
            ),
            Kind::Bool => {
                Array::Bool(col.map(|v| if let Value::Bool(x) = v { Some(*x) } else { None }).collect())
            }
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Array::Int(_) => "bigint[]",
            Array::Real(_) => "float8[]",
            Array::Text(_) => "text[]",
            Array::Blob(_) => "bytea[]",
            Array::Bool(_) => "boolean[]",
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Int(v) => v,
            Array::Real(v) => v,
            Array::Text(v) => v,
            Array::Blob(v) => v,
            Array::Bool(v) => v,
        }
    }
}

/// Loads rows inside one transaction; items get their search vector.
struct PgLoader<'c> {
    tx: Transaction<'c>,
}

impl Loader for PgLoader<'_> {
    fn load(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let mut arrays: Vec<Array> =
            table.columns.iter().enumerate().map(|(i, (_, kind))| Array::of(*kind, rows, i)).collect();
        if table.name == "items" {
            let text = |r: &Vec<Value>, i: usize| match &r[i] {
                Value::Text(t) => t.clone(),
                _ => String::new(),
            };
            let vectors = rows
                .iter()
                .map(|r| {
                    let categories: Vec<String> = serde_json::from_str(&text(r, 10)).unwrap_or_default();
                    let html = |i: usize| crate::parse::index_text(Some(&text(r, i)));
                    Some(fulltext::vector(&text(r, 6), &html(7), &html(8), &categories))
                })
                .collect();
            names.push("search");
            arrays.push(Array::Text(vectors));
        }
        let casts: Vec<String> =
            arrays.iter().enumerate().map(|(i, a)| format!("${}::{}", i + 1, a.sql_type())).collect();
        let select: Vec<String> = names
            .iter()
            .map(|n| if *n == "search" { "search::tsvector".to_owned() } else { (*n).to_owned() })
            .collect();
        let conflict =
            if table.name == "meta" { " ON CONFLICT (key) DO UPDATE SET value = excluded.value" } else { "" };
        let sql = format!(
            "INSERT INTO {t} ({cols}) SELECT {select} FROM unnest({casts}) AS u({cols}){conflict}",
            t = table.name,
            cols = names.join(", "),
            select = select.join(", "),
            casts = casts.join(", "),
        );
        let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(Array::param).collect();
        self.tx.execute(&sql, &params)?;
        Ok(())
    }
}

pub fn copy_in(
    client: &mut Client,
    f: &mut dyn FnMut(&mut dyn Loader) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut loader = PgLoader { tx: client.transaction()? };
    f(&mut loader)?;
    // Rows came with their ids: new ones continue after them.
    for table in ["items", "stories"] {
        loader.tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
            ),
            &[],
        )?;
    }
    loader.tx.commit()?;
    Ok(())
}
