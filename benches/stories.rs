//! Precision and recall of story detection on a labelled set of pairs, by kind of
//! copy: the harder set of `tests/fixtures/stories/` (its development and held-out
//! halves) and the first set, `tests/fixtures/dedup/pairs.jsonl`.
//!
//! `cargo bench --bench stories [-- FILE.jsonl ...]`. Scored as the store decides
//! (`tests/support/pairs.rs`). Tune on the development half only.

#[path = "../tests/support/pairs.rs"]
mod pairs;

fn evaluate(path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let pairs = pairs::read(&text);
    let s = pairs::score(&pairs);
    let shown = path.strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/")).unwrap_or(path);
    println!("## {shown}: {} pairs\n", pairs.len());
    println!(
        "precision {:.3}, recall {:.3} (tp {}, fp {}, fn {})\n",
        s.precision(),
        s.recall(),
        s.tp,
        s.fp,
        s.fn_
    );
    println!("| label | kind | right | of |\n|---|---|---|---|");
    for ((dup, kind), (n, right)) in &s.kinds {
        println!("| {} | {kind} | {right} | {n} |", if *dup { "dup" } else { "distinct" });
    }
    let wrong: Vec<String> = s.wrong.iter().map(|(p, sim)| format!("{} ({sim:.2})", p.id)).collect();
    println!("\nwrong: {}\n", wrong.join(", "));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
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
