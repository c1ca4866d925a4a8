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
    assert!(precision >= 0.98, "precision {precision:.3} below 0.98");
    assert!(recall >= 0.90, "recall {recall:.3} below 0.90");
}
