//! Near-duplicate search keys (LSH band keys) of items stored by this process and not
//! yet written to the database: the items of one transaction (`fresh`) and those
//! waiting for the next flush (`Store::unflushed`), looked up before stored ones.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::Fingerprint;

/// Items by LSH band key, in the order they were added. Most keys find one item, so
/// there is no list per key: each entry links to the next one under its key. Keys are
/// hashes of third-party text, hence a keyed hasher, but a fast one: a cold poll
/// adds half a million keys and looks up as many.
#[derive(Default)]
pub(crate) struct BandMap {
    /// The first and last entry under each key.
    keys: HashMap<i64, (u32, u32), foldhash::fast::RandomState>,
    entries: Vec<BandEntry>,
}

struct BandEntry {
    key: i64,
    banded: Banded,
    /// The next entry under the same key, if any.
    next: Option<u32>,
}

/// An item found by a band key: its id, story and fingerprint.
#[derive(Clone)]
pub(crate) struct Banded {
    pub item: i64,
    pub story: i64,
    pub fp: Arc<Fingerprint>,
}

impl BandMap {
    pub fn insert(&mut self, key: i64, banded: Banded) {
        // Never past u32: the keys are flushed at MAX_UNFLUSHED_KEYS, long before.
        let Ok(at) = u32::try_from(self.entries.len()) else { return };
        self.entries.push(BandEntry { key, banded, next: None });
        match self.keys.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (_, last) = o.get_mut();
                self.entries[*last as usize].next = Some(at);
                *last = at;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((at, at));
            }
        }
    }

    /// The items under `key`, first added first.
    pub fn get(&self, key: i64) -> impl Iterator<Item = &Banded> {
        let mut at = self.keys.get(&key).map(|(first, _)| *first);
        std::iter::from_fn(move || {
            let e = &self.entries[at? as usize];
            at = e.next;
            Some(&e.banded)
        })
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every (key, item id), in the order added.
    pub fn pairs(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.entries.iter().map(|e| (e.key, e.banded.item))
    }

    pub fn append(&mut self, other: BandMap) {
        self.keys.reserve(other.keys.len());
        self.entries.reserve(other.entries.len());
        for e in other.entries {
            self.insert(e.key, e.banded);
        }
    }
}

/// A Bloom filter over the band keys stored in `item_bands`: finding a new item's
/// near-duplicates seeks the table only for the keys that may be there. Most keys of
/// most items are in no other item, and each of an item's `dedup::BANDS` seeks read
/// a random page of a large index: at 20,000 items they were a fifth of the writer's
/// time in a cold poll. Keys are hashes already, so their bits serve as the filter's
/// hashes. False positives cost one seek; there are no false negatives, as long as the
/// filter has every key the table has: it is built from the table, takes the keys of
/// the connection's own writes, and catches up with (or is rebuilt after) another
/// connection's, which each engine tells by its `mark`.
///
/// A Bloom filter cannot grow, and building one reads the whole table. So when the
/// keys written outgrow the filter, a second filter takes them, with room for as many
/// keys again as both then hold; only when that one is full too is the filter built
/// again from the table, as one. A long bulk load (a first poll of many feeds) then
/// reads the table once or twice less.
pub(crate) struct BandFilter {
    /// The first part, built from the table, then at most one more.
    parts: Vec<Part>,
    /// What the filter has every key of, as its engine counts: SQLite's count of
    /// flushes (`band_flushes` in `meta`), PostgreSQL's last item id.
    pub mark: i64,
}

/// One Bloom filter of a [`BandFilter`], with a smaller one of the keys it took
/// while the filter may already have held them.
struct Part {
    bits: Vec<u64>,
    repeats: Vec<u64>,
    /// Keys it takes before it counts as full.
    capacity: usize,
    keys: usize,
}

impl Part {
    /// Bits in a block: a cache line's.
    const BLOCK: usize = 512;

    fn new(capacity: usize) -> Part {
        let words = |bits_per_key: usize| (capacity * bits_per_key).div_ceil(Self::BLOCK) * Self::BLOCK / 64;
        Part {
            bits: vec![0; words(BandFilter::BITS_PER_KEY)],
            repeats: vec![0; words(BandFilter::REPEAT_BITS_PER_KEY)],
            capacity,
            keys: 0,
        }
    }

    /// The bit positions of a key in `bits`, all in one block, so that looking a key
    /// up reads one cache line (or two), not one per probe: a new item's 26 keys were
    /// 104 reads spread over a filter larger than the processor's cache. The block is
    /// the key's high bits mapped onto the blocks by a multiply and shift (no
    /// power-of-two size needed), each position 9 of its low bits.
    fn positions(bits: &[u64], key: i64) -> [usize; BandFilter::PROBES] {
        let blocks = (bits.len() * 64 / Self::BLOCK) as u128;
        let key = key as u64;
        let block = ((u128::from(key) * blocks) >> 64) as usize;
        std::array::from_fn(|i| block * Self::BLOCK + ((key >> (9 * i)) & 511) as usize)
    }

    fn set(bits: &mut [u64], key: i64) {
        for p in Self::positions(bits, key) {
            bits[p / 64] |= 1 << (p % 64);
        }
    }

    fn test(bits: &[u64], key: i64) -> bool {
        Self::positions(bits, key).iter().all(|p| bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Adds a key; `seen` if the filter may hold it already.
    fn insert(&mut self, key: i64, seen: bool) {
        Self::set(&mut self.bits, key);
        if seen {
            Self::set(&mut self.repeats, key);
        }
        self.keys += 1;
    }

    fn may_contain(&self, key: i64) -> bool {
        Self::test(&self.bits, key)
    }

    fn may_repeat(&self, key: i64) -> bool {
        Self::test(&self.repeats, key)
    }
}

impl BandFilter {
    /// Bits per key: with [`Self::PROBES`] probes in one block, about 0.7 % false
    /// positives at capacity, so that about one new item in five seeks the table for
    /// one of its 26 keys (with a second part, up to one in three). With 8 bits and 3
    /// probes, 3 %: half the items of a cold poll of 20,000 seeked, a twentieth of its
    /// instructions.
    const BITS_PER_KEY: usize = 12;
    const PROBES: usize = 4;
    /// Bits per key of capacity for the keys held twice or more: about a twentieth
    /// of a cold poll's keys (those its copies share). Then about 0.05 % of the keys
    /// held once are taken for repeated; were a third of the keys repeated, 2 %.
    const REPEAT_BITS_PER_KEY: usize = 2;
    const MIN_CAPACITY: usize = 1 << 18;
    /// 16M keys: a filter of 40 MiB when built (twice that at most, with a second
    /// part). Larger tables are seeked key by key.
    pub const MAX_KEYS: usize = 1 << 24;
    /// Items in one transaction from which a released filter is built again: each new
    /// item saves about `dedup::BANDS` seeks, and building reads the whole table
    /// (4.8M keys in about half a second). Smaller groups, an idle daemon's usual, seek.
    pub const WORTH_BUILDING: usize = 500;

    /// Room for the table's `keys` and half as many again (the daemon keeps the filter
    /// while it runs: 4.8M keys, 10,000 feeds' items in a week, take 12 MiB). Its keys
    /// are then added with [`BandFilter::insert`].
    pub fn new(keys: usize, mark: i64) -> BandFilter {
        BandFilter { parts: vec![Part::new((keys + keys / 2).max(Self::MIN_CAPACITY))], mark }
    }

    /// The keys it holds.
    pub fn keys(&self) -> usize {
        self.parts.iter().map(|p| p.keys).sum()
    }

    /// The keys its parts take before they are full.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.parts.iter().map(|p| p.capacity).sum()
    }

    /// Adds a key (one row of the table: a key and an item) while building; see
    /// [`BandFilter::extend`] for keys written later.
    pub fn insert(&mut self, key: i64) {
        let seen = self.may_contain(key);
        if let Some(p) = self.parts.last_mut() {
            p.insert(key, seen);
        }
    }

    /// Adds the keys written since the filter's mark. `false`, and nothing added,
    /// when they do not fit: the filter must then be built again from the table.
    pub fn extend(&mut self, keys: impl ExactSizeIterator<Item = i64>) -> bool {
        let (held, more) = (self.keys(), keys.len());
        let Some(last) = self.parts.last() else { return false };
        if last.keys + more > last.capacity {
            if self.parts.len() >= 2 || held + more > Self::MAX_KEYS {
                return false;
            }
            self.parts.push(Part::new(held + more));
        }
        keys.for_each(|k| self.insert(k));
        true
    }

    pub fn may_contain(&self, key: i64) -> bool {
        self.parts.iter().any(|p| p.may_contain(key))
    }

    /// Whether the table may hold `key` for two items or more. `false` is certain, as
    /// long as the filter has every row of the table: of two rows with one key, the
    /// second added found the filter holding the key already, and marked it. A copy
    /// of a stored item shares most of its keys with it, often keys no other item
    /// holds: its lookup need not seek those (see the SQLite engine's
    /// `band_candidates`).
    pub fn may_repeat(&self, key: i64) -> bool {
        self.parts.iter().any(|p| p.may_repeat(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup;

    /// A key added twice (two rows of the table) is known for repeated, whenever the
    /// second came, also in a second part; few keys added once are taken for
    /// repeated, at the share of repeated keys a cold poll sees and at a larger one.
    #[test]
    fn keys_held_twice_are_known_for_repeated_and_few_others() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as i64
        };
        // Built from a table of `rows` rows, every `every`-th key held by two items.
        let build = |rows: usize, every: usize, next: &mut dyn FnMut() -> i64| {
            let mut f = BandFilter::new(rows, 0);
            let keys: Vec<i64> = (0..rows).map(|_| next()).collect();
            let twice: Vec<i64> = keys.iter().step_by(every).copied().collect();
            // The second rows after all the others: marking them does not depend on
            // a scan by key giving both rows of a key one after the other.
            keys.iter().chain(&twice).for_each(|k| f.insert(*k));
            let once: Vec<i64> =
                keys.iter().enumerate().filter(|(i, _)| i % every != 0).map(|(_, k)| *k).collect();
            (f, twice, once)
        };
        let taken = |f: &BandFilter, keys: &[i64]| keys.iter().filter(|k| f.may_repeat(**k)).count();

        // One key in twenty repeated, as the copies of a cold poll share theirs.
        let (mut f, twice, once) = build(400_000, 20, &mut next);
        assert_eq!(taken(&f, &twice), twice.len(), "no false negatives");
        let wrong = taken(&f, &once);
        assert!(wrong < once.len() / 1000, "{wrong} of {} taken for repeated", once.len());
        assert!(once.iter().all(|k| f.may_contain(*k)));
        // Keys written later, in a second part: again those of a stored item, and
        // two new items sharing some.
        let capacity = f.capacity();
        let again: Vec<i64> = once.iter().take(1000).copied().collect();
        let fresh: Vec<i64> = (0..capacity).map(|_| next()).collect();
        let shared: Vec<i64> = fresh.iter().take(1000).copied().collect();
        assert!(f.extend(again.iter().chain(&fresh).chain(&shared).copied().collect::<Vec<_>>().into_iter()));
        assert_eq!(f.parts.len(), 2);
        assert_eq!(taken(&f, &again), again.len(), "repeated across parts");
        assert_eq!(taken(&f, &shared), shared.len(), "repeated within one part");
        let single = &fresh[1000..];
        let wrong = taken(&f, single);
        assert!(wrong < single.len() / 200, "{wrong} of {} taken for repeated", single.len());

        // A third of the keys repeated: more taken, still few.
        let (f, twice, once) = build(400_000, 3, &mut next);
        assert_eq!(taken(&f, &twice), twice.len());
        let wrong = taken(&f, &once);
        assert!(wrong < once.len() / 33, "{wrong} of {} taken for repeated", once.len());
    }

    /// A band key finds every item added under it, first added first, also after one
    /// map is appended to another (a committed group joining the unflushed keys).
    #[test]
    fn band_keys_find_their_items_in_the_order_added() {
        let text = "Police in twelve countries arrested suspects during a joint operation against \
            smuggling networks that moved people across the border in lorries";
        let fp = Arc::new(dedup::fingerprint(text, &std::collections::HashSet::new()).unwrap());
        let banded = |item| Banded { item, story: item * 10, fp: fp.clone() };
        let (mut old, mut fresh) = (BandMap::default(), BandMap::default());
        old.insert(7, banded(1));
        old.insert(8, banded(2));
        fresh.insert(7, banded(3));
        fresh.insert(9, banded(4));
        fresh.insert(7, banded(5));
        let items = |m: &BandMap, key| m.get(key).map(|b| (b.item, b.story)).collect::<Vec<_>>();
        assert_eq!(items(&fresh, 7), [(3, 30), (5, 50)]);
        old.append(fresh);
        assert_eq!(items(&old, 7), [(1, 10), (3, 30), (5, 50)]);
        assert_eq!(items(&old, 9), [(4, 40)]);
        assert_eq!(items(&old, 6), []);
        assert_eq!(old.len(), 3);
        assert_eq!(old.pairs().collect::<Vec<_>>(), [(7, 1), (8, 2), (7, 3), (9, 4), (7, 5)]);
    }
}
