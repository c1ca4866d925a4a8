//! Labelled pairs of feed items (`tests/fixtures/dedup/pairs.jsonl`,
//! `tests/fixtures/stories/*.jsonl`) and how the story detector scores on them, as
//! the store decides: each feed's boilerplate is the sentences that recur in three or
//! more of its texts in the set; a pair is one story when the LSH bands make it a
//! candidate and the resemblance of the fingerprints reaches the default threshold.
//! Shared by the test that holds the first set to its targets and the bench that
//! reports every set.

use std::collections::{BTreeMap, HashMap, HashSet};

use feedsieve::dedup;

pub struct Pair {
    pub id: String,
    pub dup: bool,
    pub kind: String,
    /// (feed, text)
    pub a: (String, String),
    pub b: (String, String),
}

/// The pairs of a JSONL set.
pub fn read(jsonl: &str) -> Vec<Pair> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let side = |s: &serde_json::Value| {
                (
                    s["feed"].as_str().unwrap_or_default().to_owned(),
                    s["text"].as_str().unwrap_or_default().to_owned(),
                )
            };
            Pair {
                id: v["id"].as_str().unwrap_or_default().to_owned(),
                dup: v["label"] == "dup",
                kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                a: side(&v["a"]),
                b: side(&v["b"]),
            }
        })
        .collect()
}

/// What the detector said of a set.
pub struct Score<'a> {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    /// (label dup, kind) → (pairs, right).
    pub kinds: BTreeMap<(bool, &'a str), (usize, usize)>,
    /// The pairs it got wrong, with their resemblance.
    pub wrong: Vec<(&'a Pair, f64)>,
}

impl Score<'_> {
    pub fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }

    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
}

/// Each item of the pairs, (feed, text), with its fingerprint as the pipeline makes
/// it: without the sentences its feed repeats in three or more of its texts in the set.
pub fn fingerprints(pairs: &[Pair]) -> HashMap<(&str, &str), Option<dedup::Fingerprint>> {
    let mut by_feed: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in pairs {
        for (feed, text) in [&p.a, &p.b] {
            by_feed.entry(feed).or_default().insert(text);
        }
    }
    let mut out = HashMap::new();
    for (feed, texts) in &by_feed {
        let boilerplate = dedup::repeated_sentences(texts.iter().copied());
        for text in texts {
            out.insert((*feed, *text), dedup::fingerprint(text, &boilerplate));
        }
    }
    out
}

/// Runs the detector over `pairs`.
pub fn score(pairs: &[Pair]) -> Score<'_> {
    let fingerprints = fingerprints(pairs);
    let fp = |(feed, text): &(String, String)| fingerprints[&(feed.as_str(), text.as_str())].clone();
    let mut s = Score { tp: 0, fp: 0, fn_: 0, kinds: BTreeMap::new(), wrong: Vec::new() };
    for p in pairs {
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
        let k = s.kinds.entry((p.dup, p.kind.as_str())).or_default();
        k.0 += 1;
        if said == p.dup {
            k.1 += 1;
        } else {
            s.wrong.push((p, sim));
        }
        match (said, p.dup) {
            (true, true) => s.tp += 1,
            (true, false) => s.fp += 1,
            (false, true) => s.fn_ += 1,
            _ => {}
        }
    }
    s
}
