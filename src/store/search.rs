//! Full-text search as SQLite's FTS5 does it, for an engine that has no FTS5.
//!
//! - [`tokens`] splits and folds text exactly as the FTS5 index's tokenizer
//!   (`unicode61 remove_diacritics 2`): runs of letters and digits, lower-cased,
//!   diacritics removed where FTS5 removes them (`é` is `e`; `ø`, `ß` and `æ` stay).
//!   The table of what each character becomes is read from FTS5 itself, a block of
//!   256 characters at a time, the first time a character of the block is seen.
//! - [`matches`] evaluates a query tree over an item's tokens and positions, by
//!   FTS5's rules: phrases within one column, column filters that intersect, `NOT`,
//!   prefixes, and `NEAR` (which PostgreSQL's tsquery cannot express).
//!
//! PostgreSQL's `unaccent` was the other choice for folding: it also turns `ø` into
//! `o`, `ß` into `ss` and `æ` into `ae`, which FTS5 does not, so the same topic would
//! select more stories on PostgreSQL than on SQLite.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::sqlite::tokenizer::{BLOCK, Fold, fold_block};
use crate::model::{COLUMNS, NEAR_DEFAULT, Query};

/// Blocks of the fold table read so far, by block number.
type Blocks = HashMap<u32, Arc<Vec<Fold>>>;

fn blocks() -> &'static RwLock<Blocks> {
    static BLOCKS: std::sync::OnceLock<RwLock<Blocks>> = std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| RwLock::new(HashMap::new()))
}

/// What FTS5's tokenizer does with `c` (see the module comment).
fn fold(c: char) -> Fold {
    if c.is_ascii() {
        return if c.is_ascii_alphanumeric() { Fold::To(c.to_ascii_lowercase()) } else { Fold::Separator };
    }
    let (block, at) = (c as u32 / BLOCK, (c as u32 % BLOCK) as usize);
    if let Some(b) = blocks().read().unwrap_or_else(|e| e.into_inner()).get(&block) {
        return b[at];
    }
    let table = match fold_block(block) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            // Never expected (an in-memory database); letters and digits as tokens
            // then, lower-cased, is the nearest rule.
            tracing::error!("reading the tokenizer's table from SQLite failed: {e}");
            return if c.is_alphanumeric() {
                Fold::To(c.to_lowercase().next().unwrap_or(c))
            } else {
                Fold::Separator
            };
        }
    };
    let f = table[at];
    blocks().write().unwrap_or_else(|e| e.into_inner()).insert(block, table);
    f
}

/// The tokens of `text`, folded, in order.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    each_token(text, |t| out.push(t.to_owned()));
    out
}

/// Calls `f` with each token of `text`, folded, in order.
pub fn each_token(text: &str, mut f: impl FnMut(&str)) {
    each_span(text, |t, _| f(t));
}

/// Calls `f` with each token of `text`, folded, and where it stands in `text` (byte
/// offsets of its first and past its last character).
fn each_span(text: &str, mut f: impl FnMut(&str, std::ops::Range<usize>)) {
    let mut token = String::new();
    let mut start = None;
    for (at, c) in text.char_indices() {
        match fold(c) {
            Fold::Separator => {
                if let Some(s) = start.take()
                    && !token.is_empty()
                {
                    f(&token, s..at);
                }
                token.clear();
            }
            Fold::Drop => {
                start.get_or_insert(at);
            }
            Fold::To(d) => {
                start.get_or_insert(at);
                token.push(d);
            }
        }
    }
    if let Some(s) = start
        && !token.is_empty()
    {
        f(&token, s..text.len());
    }
}

/// A term of a query, tokenized: a phrase of one or more tokens, the last one a
/// prefix if `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    pub tokens: Vec<String>,
    pub prefix: bool,
}

impl Phrase {
    pub fn of(text: &str, prefix: bool) -> Phrase {
        Phrase { tokens: tokens(text), prefix }
    }
}

/// A set of index columns, one bit per column of [`COLUMNS`] (title is bit 0).
pub type Columns = u8;

/// Every column.
pub const ALL_COLUMNS: Columns = (1 << COLUMNS.len()) - 1;

/// The columns `names` name.
pub fn columns(names: &[String]) -> Columns {
    names.iter().filter_map(|n| COLUMNS.iter().position(|c| c == n)).fold(0, |set, i| set | 1 << i)
}

/// An item's indexed tokens: for each token, where it stands (column, position).
/// Positions count within the whole item; only their differences within one column
/// matter.
pub trait Document {
    /// Positions of `token` in `column`, ascending; with `prefix`, of every token
    /// that starts with it.
    fn positions(&self, token: &str, prefix: bool, column: usize) -> Vec<u32>;
}

/// Whether `q` matches `doc`, by FTS5's rules.
pub fn matches(q: &Query, doc: &dyn Document) -> bool {
    eval(q, doc, ALL_COLUMNS)
}

fn eval(q: &Query, doc: &dyn Document, cols: Columns) -> bool {
    match q {
        Query::Term { text, prefix } => {
            let p = Phrase::of(text, *prefix);
            each_column(cols).any(|c| !phrase_starts(&p, doc, c).is_empty())
        }
        Query::Near { terms, distance } => {
            let phrases: Vec<Phrase> =
                terms.iter().map(|(t, p)| Phrase::of(t, *p)).filter(|p| !p.tokens.is_empty()).collect();
            let d = distance.unwrap_or(NEAR_DEFAULT);
            !phrases.is_empty() && each_column(cols).any(|c| near(&phrases, d, doc, c))
        }
        Query::Columns { columns: names, expr } => eval(expr, doc, cols & columns(names)),
        Query::And(a, b) => eval(a, doc, cols) && eval(b, doc, cols),
        Query::Or(a, b) => eval(a, doc, cols) || eval(b, doc, cols),
        Query::Not(a, b) => eval(a, doc, cols) && !eval(b, doc, cols),
    }
}

fn each_column(cols: Columns) -> impl Iterator<Item = usize> {
    (0..COLUMNS.len()).filter(move |c| cols & (1 << c) != 0)
}

/// Where `p` starts in `column`: positions of its first token followed by the others.
fn phrase_starts(p: &Phrase, doc: &dyn Document, column: usize) -> Vec<u32> {
    let Some(last) = p.tokens.len().checked_sub(1) else { return Vec::new() };
    let lists: Vec<Vec<u32>> =
        p.tokens.iter().enumerate().map(|(i, t)| doc.positions(t, p.prefix && i == last, column)).collect();
    lists[0]
        .iter()
        .copied()
        .filter(|&start| {
            lists.iter().enumerate().skip(1).all(|(i, l)| l.binary_search(&(start + i as u32)).is_ok())
        })
        .collect()
}

/// FTS5's NEAR: some instance of every phrase in one column such that, with `m` the
/// last of their starts, each phrase starts at least `m - its length - d` (so
/// `NEAR(a b, 1)` takes `a x b` and `b x a`, and three one-token phrases in a row do
/// not satisfy `NEAR(a b c, 0)`, as in FTS5).
fn near(phrases: &[Phrase], d: u32, doc: &dyn Document, column: usize) -> bool {
    let starts: Vec<Vec<u32>> = phrases.iter().map(|p| phrase_starts(p, doc, column)).collect();
    if starts.iter().any(Vec::is_empty) {
        return false;
    }
    starts.iter().flatten().any(|&m| {
        phrases.iter().zip(&starts).all(|(p, s)| {
            let lowest = i64::from(m) - p.tokens.len() as i64 - i64::from(d);
            // Some start in [lowest, m].
            let from = s.partition_point(|&x| i64::from(x) < lowest);
            s.get(from).is_some_and(|&x| x <= m)
        })
    })
}

/// A preview's marks: the title with the query's terms in `[brackets]`, and the
/// passage of at most [`SNIPPET_TOKENS`] tokens, of any column, that holds the most of
/// them, marked the same way, `…` where it cuts the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    pub title: String,
    pub snippet: String,
}

/// Tokens in a snippet (as `topic preview` asks FTS5 for).
pub const SNIPPET_TOKENS: usize = 16;

/// Marks the instances of `q`'s phrases (not those it excludes) in `columns` (title,
/// summary, content, categories), as FTS5's `highlight()` and `snippet()` do.
pub fn highlight(q: &Query, columns: &[String; 4]) -> Highlight {
    let mut phrases: Vec<(Phrase, Columns)> = Vec::new();
    positive_phrases(q, ALL_COLUMNS, &mut phrases);
    let mut best: Option<(usize, usize, String)> = None; // (hits, column, snippet)
    let mut title = columns[0].clone();
    for (c, text) in columns.iter().enumerate() {
        let mut spans: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        each_span(text, |t, r| spans.push((t.to_owned(), r)));
        // Marked token ranges [first, last] of each phrase instance, merged.
        let mut marks: Vec<(usize, usize)> = Vec::new();
        for (p, cols) in &phrases {
            if cols & (1 << c) == 0 || p.tokens.is_empty() {
                continue;
            }
            let n = p.tokens.len();
            for i in 0..spans.len().saturating_sub(n - 1) {
                let hit = p.tokens.iter().enumerate().all(|(k, t)| {
                    let s = &spans[i + k].0;
                    if p.prefix && k == n - 1 { s.starts_with(t.as_str()) } else { s == t }
                });
                if hit {
                    marks.push((i, i + n - 1));
                }
            }
        }
        marks.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (a, b) in marks {
            match merged.last_mut() {
                Some(last) if a <= last.1 + 1 && a >= last.0 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if c == 0 {
            title = marked(text, &spans, &merged, 0, spans.len());
        }
        if merged.is_empty() {
            continue;
        }
        // The window of SNIPPET_TOKENS tokens with the most marks (the first such),
        // moved so that its marks sit in its middle, as FTS5 centres them.
        let width = SNIPPET_TOKENS.min(spans.len());
        let (mut from, mut hits) = (0, 0);
        for start in 0..=spans.len() - width {
            let n = merged.iter().filter(|(a, _)| *a >= start && *a < start + width).count();
            if n > hits {
                (from, hits) = (start, n);
            }
        }
        let inside: Vec<&(usize, usize)> =
            merged.iter().filter(|(a, _)| *a >= from && *a < from + width).collect();
        if let (Some(first), Some(last)) = (inside.first(), inside.last()) {
            let used = last.1.min(from + width - 1) + 1 - first.0;
            from = first.0.saturating_sub((width - used) / 2).min(spans.len() - width);
        }
        if best.as_ref().is_none_or(|(h, _, _)| hits > *h) {
            best = Some((hits, c, marked(text, &spans, &merged, from, from + width)));
        }
    }
    Highlight { title, snippet: best.map(|(_, _, s)| s).unwrap_or_default() }
}

/// The phrases of `q` outside the right side of any `NOT`, with their columns.
fn positive_phrases(q: &Query, cols: Columns, out: &mut Vec<(Phrase, Columns)>) {
    match q {
        Query::Term { text, prefix } => out.push((Phrase::of(text, *prefix), cols)),
        Query::Near { terms, .. } => out.extend(terms.iter().map(|(t, p)| (Phrase::of(t, *p), cols))),
        Query::Columns { columns: names, expr } => positive_phrases(expr, cols & columns(names), out),
        Query::And(a, b) | Query::Or(a, b) => {
            positive_phrases(a, cols, out);
            positive_phrases(b, cols, out);
        }
        Query::Not(a, _) => positive_phrases(a, cols, out),
    }
}

/// The text of tokens `from..to` (from the start of the text when `from` is 0, to its
/// end when `to` is the last), with `[` `]` around marked token ranges and `…` where
/// the window cuts the text.
fn marked(
    text: &str,
    spans: &[(String, std::ops::Range<usize>)],
    marks: &[(usize, usize)],
    from: usize,
    to: usize,
) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    let start = if from == 0 { 0 } else { spans[from].1.start };
    let end = if to >= spans.len() { text.len() } else { spans[to - 1].1.end };
    let mut out = String::with_capacity(end - start + 8);
    if from > 0 {
        out.push('…');
    }
    let mut at = start;
    for (a, b) in marks.iter().filter(|(a, _)| *a >= from && *a < to) {
        let (s, e) = (spans[*a].1.start, spans[(*b).min(to - 1)].1.end);
        out.push_str(&text[at..s]);
        out.push('[');
        out.push_str(&text[s..e]);
        out.push(']');
        at = e;
    }
    out.push_str(&text[at..end]);
    if to < spans.len() {
        out.push('…');
    }
    out
}

/// A document made of the four columns' texts, tokenized here (for checks of this
/// module against FTS5).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Texts {
    by_token: HashMap<String, Vec<(usize, u32)>>,
}

#[cfg(test)]
impl Texts {
    pub fn new(columns: [&str; 4]) -> Texts {
        let mut by_token: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        for (c, text) in columns.iter().enumerate() {
            let mut at = 0;
            each_token(text, |t| {
                by_token.entry(t.to_owned()).or_default().push((c, at));
                at += 1;
            });
        }
        Texts { by_token }
    }
}

#[cfg(test)]
impl Document for Texts {
    fn positions(&self, token: &str, prefix: bool, column: usize) -> Vec<u32> {
        let mut out: Vec<u32> = if prefix {
            self.by_token
                .iter()
                .filter(|(t, _)| t.starts_with(token))
                .flat_map(|(_, v)| v.iter().filter(|(c, _)| *c == column).map(|(_, p)| *p))
                .collect()
        } else {
            self.by_token
                .get(token)
                .map_or_else(Vec::new, |v| v.iter().filter(|(c, _)| *c == column).map(|(_, p)| *p).collect())
        };
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests;
