//! What is PostgreSQL's own and needs no server: the query tree as tsquery, and the
//! tsvector literal and its reading back.

use super::fulltext::{Rendered, Ts, Vector, render, vector};
use crate::curate::query;
use crate::store::search::{Document, matches};

fn ts(q: &str) -> (String, bool) {
    let Rendered { query, exact } = render(&query::parse(q).unwrap());
    let text = match query {
        Ts::Query(q) => q,
        other => format!("{other:?}"),
    };
    (text, exact)
}

#[test]
fn queries_render_to_tsquery() {
    assert_eq!(ts("border"), ("'border'".into(), true));
    assert_eq!(ts("Bórder"), ("'border'".into(), true), "folded as the index is");
    assert_eq!(ts("smuggl*"), ("'smuggl':*".into(), true));
    assert_eq!(ts("\"border security\""), ("('border' <-> 'security')".into(), true));
    assert_eq!(ts("\"people smuggl\"*"), ("('people' <-> 'smuggl':*)".into(), true));
    assert_eq!(ts("\"e-mail\""), ("('e' <-> 'mail')".into(), true), "split as FTS5 splits it");
    assert_eq!(ts("title: border"), ("'border':A".into(), true));
    assert_eq!(ts("{summary content}: \"a b\"*"), ("('a':BC <-> 'b':*BC)".into(), true));
    assert_eq!(ts("categories: (a OR b)"), ("('a':D | 'b':D)".into(), true));
    assert_eq!(ts("a b OR c"), ("(('a' & 'b') | 'c')".into(), true));
    assert_eq!(ts("a NOT b"), ("('a' & !'b')".into(), true));
    assert_eq!(ts("title: (a NOT b)"), ("('a':A & !'b':A)".into(), true));
    assert_eq!(ts("{title} : ({summary}: a)"), ("Nothing".into(), true), "no column left");
    // NEAR: all of its phrases, checked exactly afterwards.
    assert_eq!(ts("NEAR(a \"b c\", 3)"), ("('a' & ('b' <-> 'c'))".into(), false));
    // A NOT of something inexact cannot be rendered: left to the check.
    assert_eq!(ts("a NOT NEAR(b c)"), ("'a'".into(), false));
    assert_eq!(ts("NEAR(a b) NOT c"), ("(('a' & 'b') & !'c')".into(), false));
}

#[test]
fn a_tsvector_literal_reads_back_as_written() {
    let literal = vector("Border security", "Police at the border", "", &["Crime".into(), "Border".into()]);
    // Title, then categories, then summary, then content; a gap between columns.
    assert_eq!(literal, "'border':1A,5D,10B 'security':2A 'crime':4D 'police':7B 'at':8B 'the':9B");
    let v = Vector::parse(&literal);
    assert_eq!(v.positions("border", false, 0), [1]);
    assert_eq!(v.positions("border", false, 1), [10]);
    assert_eq!(v.positions("border", false, 3), [5]);
    assert_eq!(v.positions("bor", true, 1), [10]);
    assert!(v.positions("border", false, 2).is_empty());
    // As PostgreSQL prints it: weight D without a letter, quotes doubled.
    let printed = Vector::parse("'it''s':3 'x':1A,2");
    assert_eq!(printed.positions("it's", false, 3), [3]);
    assert_eq!(printed.positions("x", false, 3), [2]);
    let q = |s: &str| query::parse(s).unwrap();
    assert!(matches(&q("\"border security\""), &v));
    assert!(!matches(&q("\"security crime\""), &v), "no phrase across columns");
    assert!(matches(&q("NEAR(police border, 2)"), &v));
    assert!(!matches(&q("NEAR(police border, 1)"), &v));
}

#[test]
fn long_texts_stay_inside_what_postgresql_takes() {
    let word = "w".repeat(3000);
    let long: String = (0..40_000).map(|i| format!("word{} ", i % 50_000)).collect();
    let literal = vector(&word, &long, &long, &[]);
    assert!(!literal.contains(&word), "a lexeme over 2,046 bytes is left out");
    assert!(literal.len() < 1_000_000, "{} bytes", literal.len());
    let v = Vector::parse(&literal);
    assert!(v.positions("word7", false, 1).iter().all(|p| *p <= 16_383));
}
