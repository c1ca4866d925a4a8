//! Near-duplicate search keys in `item_bands`, and the Bloom filter that spares most
//! lookups of keys the table does not hold.

use rusqlite::{Connection, TransactionBehavior, params};

use super::feeds::{meta, set_meta};
use crate::dedup;
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

/// A Bloom filter over the band keys stored in `item_bands`: finding a new item's
/// near-duplicates seeks the table only for the keys that may be there. Most keys of
/// most items are in no other item, and each of an item's [`dedup::BANDS`] seeks read
/// a random page of a large index: at 20,000 items they were a fifth of the writer's
/// time in a cold poll. Keys are hashes already, so their bits serve as the filter's
/// hashes. False positives cost one seek; there are no false negatives, as long as the
/// filter has every key the table has: it is built from the table, takes the keys each
/// flush of its own writes, and is rebuilt when the count of flushes in `meta` shows
/// another connection's.
pub struct BandFilter {
    bits: Vec<u64>,
    /// The filter is rebuilt, larger, before it holds more keys than this.
    pub(super) capacity: usize,
    keys: usize,
    /// The `band_flushes` count (in `meta`) that the filter has every key of.
    flushes: i64,
}

impl BandFilter {
    /// Bits per key: with [`Self::PROBES`] probes, about 3 % false positives at
    /// capacity (a new item's 24 lookups then seek the table about 0.7 times).
    const BITS_PER_KEY: usize = 8;
    const PROBES: usize = 3;
    const MIN_CAPACITY: usize = 1 << 18;
    /// 16M keys: a filter of 16 to 24 MiB. Larger tables are seeked key by key.
    const MAX_KEYS: usize = 1 << 24;
    /// Items in one transaction from which a released filter is built again: each new
    /// item saves about [`dedup::BANDS`] seeks, and building reads the whole table
    /// (4.8M keys in about half a second). Smaller groups, an idle daemon's usual, seek.
    pub const WORTH_BUILDING: usize = 500;

    /// Room for the table's `keys` and half as many again (the daemon keeps the filter
    /// while it runs: 4.8M keys, 10,000 feeds' items in a week, take 7 MiB).
    pub(super) fn new(keys: usize, flushes: i64) -> BandFilter {
        let capacity = (keys + keys / 2).max(Self::MIN_CAPACITY);
        let words = (capacity * Self::BITS_PER_KEY).div_ceil(64);
        BandFilter { bits: vec![0; words], capacity, keys: 0, flushes }
    }

    /// The bit positions of a key: double hashing over its two halves, each hash
    /// mapped onto the bits by a multiply and shift (no power-of-two size needed).
    fn positions(&self, key: i64) -> [usize; Self::PROBES] {
        let bits = (self.bits.len() * 64) as u128;
        let (h1, h2) = (key as u64, (key as u64).rotate_left(32) | 1);
        std::array::from_fn(|i| {
            let h = h1.wrapping_add((i as u64).wrapping_mul(h2));
            ((u128::from(h) * bits) >> 64) as usize
        })
    }

    pub(super) fn insert(&mut self, key: i64) {
        for p in self.positions(key) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.keys += 1;
    }

    pub fn may_contain(&self, key: i64) -> bool {
        self.positions(key).iter().all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
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
    if matches!(state, BandFilterState::Built(f) if f.flushes != flushes) {
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
        BandFilterState::Built(mut f) if f.flushes == flushes && f.keys + keys.len() <= f.capacity => {
            keys.iter().for_each(|(k, _)| f.insert(*k));
            f.flushes = flushes + 1;
            BandFilterState::Built(f)
        }
        BandFilterState::TooLarge => BandFilterState::TooLarge,
        BandFilterState::Released => BandFilterState::Released,
        _ => BandFilterState::Unknown,
    };
    Ok(keys.len())
}
