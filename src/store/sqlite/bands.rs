//! Near-duplicate search keys in `item_bands`, and the Bloom filter that spares most
//! lookups of keys the table does not hold.

use rusqlite::{Connection, TransactionBehavior, params};

use super::feeds::{meta, set_meta};
use crate::dedup;
pub(crate) use crate::store::bands::BandFilter;
use crate::store::{StoreError, skip};

/// What a connection knows of the band keys in `item_bands`.
pub enum BandFilterState {
    /// Nothing yet, or the filter went stale: built from the table when next needed.
    Unknown,
    /// Dropped while the daemon is idle: built again for the first transaction that
    /// stores [`BandFilter::WORTH_BUILDING`] items or more.
    Released,
    Built(BandFilter),
    /// The table holds more than [`BandFilter::MAX_KEYS`] keys: every lookup seeks it.
    /// Until the next prune, which may shrink it.
    TooLarge,
}

/// The filter for the band keys `item_bands` holds now, built from the table if
/// there is none or another connection wrote keys since; `None` if the table is too
/// large for one, or the filter was released and the `items` about to be stored are
/// fewer than `worth` ([`BandFilter::WORTH_BUILDING`] but in tests).
pub fn band_filter<'s>(
    conn: &Connection,
    state: &'s mut BandFilterState,
    items: usize,
    worth: usize,
) -> Result<Option<&'s BandFilter>, StoreError> {
    let flushes = meta(conn, "band_flushes")?.unwrap_or(0);
    if matches!(state, BandFilterState::Built(f) if f.mark != flushes) {
        *state = BandFilterState::Unknown;
    }
    if matches!(state, BandFilterState::Released) && items >= worth {
        *state = BandFilterState::Unknown;
    }
    if matches!(state, BandFilterState::Unknown) {
        let keys: i64 = conn.query_row("SELECT count(*) FROM item_bands", [], |r| r.get(0))?;
        *state = if keys as usize > BandFilter::MAX_KEYS {
            BandFilterState::TooLarge
        } else {
            let mut f = BandFilter::new(keys as usize, flushes);
            let mut stmt = conn.prepare("SELECT key FROM item_bands")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                f.insert(r.get(0)?);
            }
            BandFilterState::Built(f)
        };
    }
    Ok(match state {
        BandFilterState::Built(f) => Some(f),
        _ => None,
    })
}

/// Writes again, from their stored fingerprints, the near-duplicate search keys of the
/// items the upgrade to [`super::migrations::BANDS_REKEYED`] listed in `temp.rekey`
/// (those that had keys), a batch of items at a time, then drops the list. Returns the
/// number of keys written.
pub fn rekey(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<usize, StoreError> {
    const BATCH: i64 = 20_000;
    let items: i64 = tx.query_row("SELECT count(*) FROM temp.rekey", [], |r| r.get(0))?;
    if items > 0 {
        tracing::info!(database = %name, items, "writing the near-duplicate search keys of the stored items again");
    }
    let (mut after, mut written) = (i64::MIN, 0);
    let mut select = tx.prepare(
        "SELECT i.id, i.fingerprint FROM items i JOIN temp.rekey r ON r.item_id = i.id
         WHERE i.id > ?1 ORDER BY i.id LIMIT ?2",
    )?;
    let mut add = tx.prepare("INSERT OR IGNORE INTO item_bands (key, item_id) VALUES (?1, ?2)")?;
    loop {
        let mut keys: Vec<(i64, i64)> = Vec::new();
        let mut rows = select.query(params![after, BATCH])?;
        let mut any = false;
        while let Some(r) = rows.next()? {
            any = true;
            after = r.get(0)?;
            let blob: Option<Vec<u8>> = r.get(1)?;
            if let Some(fp) = blob.as_deref().and_then(dedup::signature_from_bytes) {
                keys.extend(dedup::band_keys(&fp).into_iter().map(|k| (k, after)));
            }
        }
        if !any {
            break;
        }
        keys.sort_unstable();
        for (k, id) in &keys {
            add.execute(params![k, id])?;
        }
        written += keys.len();
    }
    drop((select, add));
    tx.execute_batch("DROP TABLE temp.rekey")?;
    Ok(written)
}

/// Writes the band keys of the items stored since the last flush, sorted, in one
/// transaction: `pairs` (key, item id), or when `None` those computed from the
/// fingerprints of the items stored after the last flush (keys lost in a crash).
/// Brings `state` up to date with what it wrote. Returns the number of keys written.
pub fn flush(
    conn: &mut Connection,
    state: &mut BandFilterState,
    pairs: Option<Vec<(i64, i64)>>,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let through = meta(&tx, "bands_through")?.unwrap_or(0);
    let flushes = meta(&tx, "band_flushes")?.unwrap_or(0);
    let last: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM items", [], |r| r.get(0))?;
    let mut keys: Vec<(i64, i64)> = match pairs {
        Some(pairs) => pairs,
        None => {
            let mut keys = Vec::new();
            let mut stmt =
                tx.prepare_cached("SELECT id, fingerprint FROM items WHERE id > ?1 ORDER BY id")?;
            let mut rows = stmt.query([through])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let blob: Option<Vec<u8>> = r.get(1)?;
                if let Some(fp) = blob.as_deref().and_then(dedup::signature_from_bytes) {
                    keys.extend(dedup::band_keys(&fp).into_iter().map(|k| (k, id)));
                }
            }
            keys
        }
    };
    if skip::parts().bands {
        keys.clear();
    }
    keys.sort_unstable();
    {
        let mut add = tx.prepare_cached("INSERT OR IGNORE INTO item_bands (key, item_id) VALUES (?1, ?2)")?;
        for (k, id) in &keys {
            add.execute(params![k, id])?;
        }
    }
    set_meta(&tx, "bands_through", last)?;
    set_meta(&tx, "band_flushes", flushes + 1)?;
    tx.commit()?;
    // The filter takes the new keys if it had all the others and has room; else it
    // is built again, larger, when next needed.
    *state = match std::mem::replace(state, BandFilterState::Unknown) {
        BandFilterState::Built(mut f) if f.mark == flushes => {
            if f.extend(keys.iter().map(|(k, _)| *k)) {
                f.mark = flushes + 1;
                BandFilterState::Built(f)
            } else {
                BandFilterState::Unknown
            }
        }
        BandFilterState::TooLarge => BandFilterState::TooLarge,
        BandFilterState::Released => BandFilterState::Released,
        _ => BandFilterState::Unknown,
    };
    Ok(keys.len())
}
