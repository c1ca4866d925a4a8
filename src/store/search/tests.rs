//! This module against FTS5 itself: the same tokens from the same text, and the
//! same items matched by the same queries, on generated texts and queries.

use rusqlite::Connection;

use super::*;
use crate::curate::query;

/// xorshift64: reproducible input without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

fn index() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE t USING fts5(title, summary, content, categories, {});
         CREATE VIRTUAL TABLE v USING fts5vocab(t, instance);",
        crate::store::sqlite::INDEX_TOKENIZER
    ))
    .unwrap();
    conn
}

#[test]
fn text_is_split_and_folded_as_fts5_does() {
    let pool: Vec<char> = "aZ09_-.,'\"  \t\nÉéüÜñçåÅøØßæŒœłŁđİıﬁ½²€$+<>@#—“”…ΆάΩωЖжЁё中文한국語ＡＢａ𝐀😀\u{301}\u{308}\u{363}\u{200B}\u{A0}"
        .chars()
        .collect();
    let conn = index();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..300 {
        let text: String = (0..rng.below(40)).map(|_| rng.pick(&pool)).collect();
        conn.execute("DELETE FROM t", []).unwrap();
        conn.execute("INSERT INTO t (rowid, title) VALUES (1, ?1)", [&text]).unwrap();
        let theirs: Vec<String> = conn
            .prepare("SELECT term FROM v ORDER BY offset")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tokens(&text), theirs, "round {round}: {text:?}");
    }
}

/// Words of the generated texts: few, so that queries find them, some with the
/// accents and ligatures FTS5 folds and those it keeps.
const WORDS: &[&str] = &[
    "border",
    "Border",
    "bórder",
    "police",
    "smugglers",
    "smuggling",
    "sea",
    "Jørgensen",
    "jorgensen",
    "straße",
    "naïve",
    "naive",
    "x",
];

fn text(rng: &mut Rng) -> String {
    let n = rng.below(12);
    let mut out = String::new();
    for _ in 0..n {
        out.push_str(rng.pick(WORDS));
        out.push_str(rng.pick(&[" ", " ", ", ", ". ", "-"]));
    }
    out
}

fn term(rng: &mut Rng) -> String {
    let words: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(WORDS)).collect();
    let star = if rng.below(4) == 0 { "*" } else { "" };
    if words.len() == 1 && rng.below(2) == 0 {
        let w = words[0];
        // A bare prefix must be a word in the query language; a shortened one.
        let cut: String = w.chars().take(1 + rng.below(w.chars().count())).collect();
        format!("{cut}{star}")
    } else {
        format!("\"{}\"{star}", words.join(" "))
    }
}

fn expr(rng: &mut Rng, depth: u32) -> String {
    let leaf = depth == 0 || rng.below(3) == 0;
    if leaf {
        return match rng.below(5) {
            0 => {
                let n = 2 + rng.below(2);
                let terms: Vec<String> = (0..n).map(|_| term(rng)).collect();
                match rng.below(3) {
                    0 => format!("NEAR({})", terms.join(" ")),
                    _ => format!("NEAR({}, {})", terms.join(" "), rng.below(4)),
                }
            }
            _ => term(rng),
        };
    }
    let (a, b) = (expr(rng, depth - 1), expr(rng, depth - 1));
    match rng.below(6) {
        0 | 1 => format!("({a} AND {b})"),
        2 | 3 => format!("({a} OR {b})"),
        4 => format!("({a} NOT {b})"),
        _ => {
            let cols = ["title", "summary", "content", "categories"];
            let pick = rng.pick(&cols);
            match rng.below(2) {
                0 => format!("{pick}: ({a})"),
                _ => format!("{{{pick} {}}}: ({a})", rng.pick(&cols)),
            }
        }
    }
}

#[test]
fn queries_match_the_items_fts5_matches() {
    let conn = index();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let docs: Vec<[String; 4]> = (0..60).map(|_| std::array::from_fn(|_| text(&mut rng))).collect();
    for (i, d) in docs.iter().enumerate() {
        conn.execute(
            "INSERT INTO t (rowid, title, summary, content, categories) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![i as i64, d[0], d[1], d[2], d[3]],
        )
        .unwrap();
    }
    let texts: Vec<Texts> = docs.iter().map(|d| Texts::new([&d[0], &d[1], &d[2], &d[3]])).collect();
    let (mut checked, mut nonempty) = (0, 0);
    for _ in 0..600 {
        let q = expr(&mut rng, 3);
        let Ok(tree) = query::parse(&q) else { continue };
        let mut theirs: Vec<i64> = conn
            .prepare("SELECT rowid FROM t WHERE t MATCH ?1")
            .unwrap()
            .query_map([tree.to_string()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        theirs.sort_unstable();
        let ours: Vec<i64> =
            texts.iter().enumerate().filter(|(_, t)| matches(&tree, *t)).map(|(i, _)| i as i64).collect();
        assert_eq!(ours, theirs, "{q}");
        checked += 1;
        nonempty += usize::from(!theirs.is_empty());
    }
    assert!(
        checked > 500 && nonempty > checked / 4,
        "{checked} queries checked, {nonempty} matched something"
    );
}
