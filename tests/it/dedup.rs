//! Issue 3: precision and recall of near-duplicate detection on the labelled pairs
//! of `tests/fixtures/dedup/pairs.jsonl` (see its README).
//!
//! Each feed's boilerplate is learnt the way the pipeline learns it: sentences that
//! recur in at least three of that feed's texts. A pair is predicted to be one story
//! when the resemblance of the two fingerprints reaches the default threshold.

use crate::pairs;

#[test]
fn near_duplicates_meet_the_precision_and_recall_targets() {
    let text = String::from_utf8(crate::util::fixture("dedup/pairs.jsonl")).unwrap();
    let pairs = pairs::read(&text);
    assert!(pairs.len() >= 300, "the labelled set holds {} pairs", pairs.len());
    let s = pairs::score(&pairs);
    let (precision, recall) = (s.precision(), s.recall());
    println!(
        "near-duplicates on {} labelled pairs at threshold {}:",
        pairs.len(),
        feedsieve::dedup::DEFAULT_THRESHOLD
    );
    println!("  precision {precision:.3}  recall {recall:.3}  (tp {}, fp {}, fn {})", s.tp, s.fp, s.fn_);
    for ((_, kind), (n, right)) in &s.kinds {
        println!("  {kind:<26} {right}/{n} right");
    }
    for (p, sim) in &s.wrong {
        println!("  wrong: {} {} ({}) at {sim:.2}", p.id, p.kind, if p.dup { "missed" } else { "merged" });
    }
    assert_eq!(s.fp, 0, "precision {precision:.3}: pairs of different stories merged");
    assert!(recall >= 0.99, "recall {recall:.3} below 0.99");
}

/// Issue 22: the harder set of `tests/fixtures/stories/`, both halves, scored pair
/// by pair as the store decides (candidates by LSH, then the resemblance).
#[test]
fn rewritten_copies_meet_the_targets_on_both_halves() {
    for (half, min_recall) in [("dev", 0.95), ("heldout", 0.95)] {
        let text = String::from_utf8(crate::util::fixture(&format!("stories/{half}.jsonl"))).unwrap();
        let pairs = pairs::read(&text);
        assert_eq!(pairs.len(), 660, "{half}");
        let s = pairs::score(&pairs);
        println!("{half}: precision {:.3} recall {:.3}", s.precision(), s.recall());
        for (p, sim) in &s.wrong {
            println!(
                "  wrong: {} {} ({}) at {sim:.2}",
                p.id,
                p.kind,
                if p.dup { "missed" } else { "merged" }
            );
        }
        assert!(s.precision() >= 0.99, "{half}: precision {:.3} below 0.99", s.precision());
        assert!(s.recall() >= min_recall, "{half}: recall {:.3} below {min_recall}", s.recall());
    }
}

/// How much stories depend on which copy arrives first. Every item of the held-out
/// half (547 texts; one source story's copies are in up to 15 pairs) is stored in a
/// real SQLite store, one poll per item, in 10 shuffled orders, and the stories each
/// order makes are scored against the labels (two items are one story when the store
/// filed them so). A new item joins the story it resembles most and merges into it
/// the others it resembles, unless their copies contradict each other (a digest of
/// several stories): so two copies that arrive before their original and do not
/// resemble each other become one story when it comes. What still depends on the
/// order is which story such a digest joins, and whether a merge is refused because
/// of the copies there are when it is tried. This bounds that spread.
#[test]
fn the_spread_of_stories_over_arrival_orders_is_bounded() {
    // As measured when the bounds were set: precision 0.962 to 0.968, recall 0.945
    // to 1.000, 61 pairs decided differently by some order (when a new item joined
    // only the story it resembled most: 0.963 to 0.974, 0.912 to 0.982, and 113).
    const PRECISION: f64 = 0.955;
    const RECALL: f64 = 0.94;
    const DIFFER: usize = 70;
    use feedsieve::model::{FetchRecord, IngestJob, Item, NewItem, StoryRule};
    let text = String::from_utf8(crate::util::fixture("stories/heldout.jsonl")).unwrap();
    let pairs = pairs::read(&text);
    let fingerprints = pairs::fingerprints(&pairs);
    let mut items: Vec<(&str, &str)> = fingerprints.keys().copied().collect();
    items.sort_unstable();
    let feeds: std::collections::BTreeSet<&str> = items.iter().map(|(f, _)| *f).collect();
    let now = chrono::Utc::now();
    let mut runs: Vec<Vec<bool>> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for run in 0..10 {
        // A Fisher-Yates shuffle driven by splitmix64: a different order each run,
        // the same orders every time the test runs.
        let mut order = items.clone();
        for i in (1..order.len()).rev() {
            rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            order.swap(i, ((z ^ (z >> 31)) % (i as u64 + 1)) as usize);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut store = feedsieve::store::Store::open(path.as_path()).unwrap();
        store.sync_feeds(feeds.iter().map(|f| (*f, "https://feeds.example/"))).unwrap();
        let key = |(feed, text): (&str, &str)| {
            format!("{}", feedsieve::dedup::fnv64(format!("{feed}\0{text}").as_bytes()))
        };
        for (feed, text) in &order {
            let mut item = Item {
                key: key((feed, text)),
                title: String::new(),
                summary: Some((*text).into()),
                ..Item::default()
            };
            item.content_hash = feedsieve::dedup::content_hash(&item);
            let n = NewItem {
                item,
                summary_text: (*text).into(),
                content_text: String::new(),
                fingerprint: fingerprints[&(*feed, *text)].clone(),
                article: false,
            };
            let job = IngestJob {
                feed_id: (*feed).into(),
                items: vec![n],
                record: FetchRecord::default(),
                rule: StoryRule::default(),
                now,
            };
            store.ingest(&job).unwrap();
        }
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn.prepare("SELECT feed_id, key, story_id FROM items").unwrap();
        let stories: std::collections::HashMap<(String, String), i64> = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let story = |(feed, text): &(String, String)| stories[&(feed.clone(), key((feed, text)))];
        let said: Vec<bool> = pairs.iter().map(|p| story(&p.a) == story(&p.b)).collect();
        let tp = pairs.iter().zip(&said).filter(|(p, s)| p.dup && **s).count();
        let fp = pairs.iter().zip(&said).filter(|(p, s)| !p.dup && **s).count();
        let dups = pairs.iter().filter(|p| p.dup).count();
        let (precision, recall) = (tp as f64 / (tp + fp).max(1) as f64, tp as f64 / dups as f64);
        println!("order {run}: precision {precision:.3} recall {recall:.3}");
        assert!(
            precision >= PRECISION && recall >= RECALL,
            "order {run}: precision {precision:.3}, recall {recall:.3}"
        );
        runs.push(said);
    }
    let differ = (0..pairs.len()).filter(|i| runs.iter().any(|r| r[*i] != runs[0][*i])).count();
    println!("pairs not decided alike by every order: {differ} of {}", pairs.len());
    assert!(differ <= DIFFER, "{differ} pairs depend on the order");
}
