//! Issue 3: precision and recall of near-duplicate detection on the labelled pairs
//! of `tests/fixtures/dedup/pairs.jsonl` (see its README).
//!
//! Each feed's boilerplate is learnt the way the pipeline learns it: sentences that
//! recur in at least three of that feed's texts. A pair is predicted to be one story
//! when the resemblance of the two fingerprints reaches the default threshold.

use std::collections::{BTreeMap, HashMap, HashSet};

use feedsieve::dedup;

struct Pair {
    id: String,
    dup: bool,
    kind: String,
    a: (String, String),
    b: (String, String),
}

fn pairs() -> Vec<Pair> {
    let text = String::from_utf8(crate::util::fixture("dedup/pairs.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let side = |s: &serde_json::Value| {
                let body = s["text"].as_str().unwrap().to_owned();
                (s["feed"].as_str().unwrap().to_owned(), body)
            };
            Pair {
                id: v["id"].as_str().unwrap().to_owned(),
                dup: v["label"] == "dup",
                kind: v["kind"].as_str().unwrap().to_owned(),
                a: side(&v["a"]),
                b: side(&v["b"]),
            }
        })
        .collect()
}

#[test]
fn near_duplicates_meet_the_precision_and_recall_targets() {
    let pairs = pairs();
    assert!(pairs.len() >= 300, "the labelled set holds {} pairs", pairs.len());
    let mut by_feed: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in &pairs {
        for (feed, text) in [&p.a, &p.b] {
            by_feed.entry(feed).or_default().insert(text);
        }
    }
    let boilerplate: HashMap<&str, HashSet<u64>> =
        by_feed.iter().map(|(f, texts)| (*f, dedup::repeated_sentences(texts.iter().copied()))).collect();
    let fp = |(feed, text): &(String, String)| dedup::fingerprint(text, &boilerplate[feed.as_str()]);

    let (mut tp, mut fp_, mut fn_) = (0, 0, 0);
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for p in &pairs {
        // As in the store: a pair is compared only when LSH makes it a candidate
        // (a shared band key), then its resemblance must reach the threshold.
        let sim = match (fp(&p.a), fp(&p.b)) {
            (Some(a), Some(b)) => {
                let keys: HashSet<i64> = dedup::band_keys(&a).into_iter().collect();
                if dedup::band_keys(&b).iter().any(|k| keys.contains(k)) {
                    dedup::resemblance(&a, &b)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let said = sim >= dedup::DEFAULT_THRESHOLD;
        let k = kinds.entry(&p.kind).or_default();
        k.0 += 1;
        if said == p.dup {
            k.1 += 1;
        } else {
            wrong.push(format!(
                "{} {} ({}) at {sim:.2}",
                p.id,
                p.kind,
                if p.dup { "missed" } else { "merged" }
            ));
        }
        match (said, p.dup) {
            (true, true) => tp += 1,
            (true, false) => fp_ += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let precision = tp as f64 / (tp + fp_).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    println!("near-duplicates on {} labelled pairs at threshold {}:", pairs.len(), dedup::DEFAULT_THRESHOLD);
    println!("  precision {precision:.3}  recall {recall:.3}  (tp {tp}, fp {fp_}, fn {fn_})");
    for (kind, (n, right)) in &kinds {
        println!("  {kind:<26} {right}/{n} right");
    }
    for w in &wrong {
        println!("  wrong: {w}");
    }
    assert!(precision >= 0.98, "precision {precision:.3} below 0.98");
    assert!(recall >= 0.90, "recall {recall:.3} below 0.90");
}
