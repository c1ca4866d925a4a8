//! Precision and recall of story detection on a labelled set of pairs, by kind of
//! copy: the harder set of `tests/fixtures/stories/` (its development and held-out
//! halves) and the first set, `tests/fixtures/dedup/pairs.jsonl`.
//!
//! `cargo bench --bench stories [-- FILE.jsonl ...]`. As the store decides: each
//! feed's boilerplate is the sentences that recur in three or more of its texts in the
//! file; a pair is one story when the LSH bands make it a candidate and the
//! resemblance of the fingerprints reaches the default threshold. Tune on the
//! development half only.

use std::collections::{BTreeMap, HashMap, HashSet};

use feedsieve::dedup;

struct Pair {
    dup: bool,
    kind: String,
    a: (String, String),
    b: (String, String),
}

fn read(path: &str) -> Vec<Pair> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}"));
            let side = |s: &serde_json::Value| {
                (
                    s["feed"].as_str().unwrap_or_default().to_owned(),
                    s["text"].as_str().unwrap_or_default().to_owned(),
                )
            };
            Pair {
                dup: v["label"] == "dup",
                kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                a: side(&v["a"]),
                b: side(&v["b"]),
            }
        })
        .collect()
}

fn evaluate(path: &str) {
    let pairs = read(path);
    let mut by_feed: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in &pairs {
        for (feed, text) in [&p.a, &p.b] {
            by_feed.entry(feed).or_default().insert(text);
        }
    }
    let boilerplate: HashMap<&str, HashSet<u64>> =
        by_feed.iter().map(|(f, texts)| (*f, dedup::repeated_sentences(texts.iter().copied()))).collect();
    let fp = |(feed, text): &(String, String)| dedup::fingerprint(text, &boilerplate[feed.as_str()]);
    let (mut tp, mut fp_, mut fn_) = (0usize, 0usize, 0usize);
    let mut kinds: BTreeMap<(bool, &str), (usize, usize)> = BTreeMap::new();
    for p in &pairs {
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
        let k = kinds.entry((p.dup, &p.kind)).or_default();
        k.0 += 1;
        k.1 += usize::from(said == p.dup);
        match (said, p.dup) {
            (true, true) => tp += 1,
            (true, false) => fp_ += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let precision = tp as f64 / (tp + fp_).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    let shown = path.strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/")).unwrap_or(path);
    println!("## {shown}: {} pairs\n", pairs.len());
    println!("precision {precision:.3}, recall {recall:.3} (tp {tp}, fp {fp_}, fn {fn_})\n");
    println!("| label | kind | right | of |\n|---|---|---|---|");
    for ((dup, kind), (n, right)) in &kinds {
        println!("| {} | {kind} | {right} | {n} |", if *dup { "dup" } else { "distinct" });
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let files = if args.is_empty() {
        [
            "tests/fixtures/stories/dev.jsonl",
            "tests/fixtures/stories/heldout.jsonl",
            "tests/fixtures/dedup/pairs.jsonl",
        ]
        .iter()
        .map(|f| format!("{root}/{f}"))
        .collect()
    } else {
        args
    };
    for f in files {
        evaluate(&f);
    }
}
