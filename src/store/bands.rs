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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup;

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
