//! Full-text search on PostgreSQL, as on SQLite's FTS5.
//!
//! The index: each item's `search` tsvector, built here from the same tokens FTS5
//! makes of its text ([`crate::store::search::tokens`]): title, categories, summary,
//! content, in that order (the longest last: PostgreSQL counts positions only up to
//! 16,383), weighted A, D, B, C, one empty position between columns so that no phrase
//! spans two. The tsvector is given as its literal, so PostgreSQL's own parser (whose
//! word boundaries depend on the server's locale) never splits the text.
//!
//! Queries: the tree renders to a tsquery. A term is a lexeme or a phrase (`<->`), a
//! prefix `:*`, a column filter a weight (`'x':AB`); `NOT` is `& !`. `NEAR` has no
//! tsquery: it renders as all of its phrases (a superset), and the rows found are
//! then checked against the tree itself ([`crate::store::search::matches`]) on their
//! tsvector. A `NOT` whose right side is such a superset cannot be rendered (its
//! negation would be a subset), so it is left to that check as well.

use std::collections::HashMap;
use std::fmt::Write as _;

use postgres::{Client, GenericClient};

use crate::model::{Match, PreviewRow, Query, Scope, TopicFilter};
use crate::store::StoreError;
use crate::store::search::{self, ALL_COLUMNS, Columns, Document, Phrase};

/// Weights of the columns of [`crate::model::COLUMNS`] (title, summary, content,
/// categories).
const WEIGHTS: [char; 4] = ['A', 'B', 'C', 'D'];

/// The order in which the columns' tokens are numbered (title, categories, summary,
/// content).
const ORDER: [usize; 4] = [0, 3, 1, 2];

/// Positions PostgreSQL keeps; larger ones count as this.
const MAX_POSITION: u32 = 16_383;

/// Positions a lexeme keeps (PostgreSQL drops the rest).
const MAX_POSITIONS_PER_LEXEME: usize = 256;

/// Longest lexeme PostgreSQL takes, in bytes.
const MAX_LEXEME: usize = 2_046;

/// Bound on the literal, under PostgreSQL's limit on a tsvector (1 MiB).
const MAX_VECTOR_BYTES: usize = 900_000;

/// The `search` tsvector of an item, as a literal: `'border':1A,5A 'police':7B`.
pub fn vector(title: &str, summary: &str, content: &str, categories: &[String]) -> String {
    let categories = categories.join(" ");
    let texts = [title, summary, content, categories.as_str()];
    // Lexeme -> positions with their column, in the order first seen.
    let mut lexemes: HashMap<String, Vec<(u32, usize)>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut at: u32 = 0;
    for column in ORDER {
        // Each token takes a position, and the gap after the column one more.
        search::each_token(texts[column], |t| {
            at += 1;
            if t.len() > MAX_LEXEME {
                return;
            }
            let positions = match lexemes.get_mut(t) {
                Some(p) => p,
                None => {
                    order.push(t.to_owned());
                    lexemes.entry(t.to_owned()).or_default()
                }
            };
            if positions.len() < MAX_POSITIONS_PER_LEXEME {
                positions.push((at.min(MAX_POSITION), column));
            }
        });
        at = at.saturating_add(1);
    }
    let mut out = String::with_capacity(order.len() * 12);
    for lexeme in &order {
        let Some(positions) = lexemes.get(lexeme) else { continue };
        if out.len() + lexeme.len() + positions.len() * 7 > MAX_VECTOR_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        push_lexeme(&mut out, lexeme);
        out.push(':');
        for (i, (p, column)) in positions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{p}{}", WEIGHTS[*column]);
        }
    }
    out
}

/// A lexeme quoted for a tsvector or tsquery literal.
fn push_lexeme(out: &mut String, lexeme: &str) {
    out.push('\'');
    for c in lexeme.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A query tree as a tsquery: what it renders to, and whether that is exact.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub query: Ts,
    /// `false`: `query` finds a superset, which [`search::matches`] must narrow.
    pub exact: bool,
}

/// A tsquery, or the two constants tsquery lacks.
#[derive(Debug, Clone, PartialEq)]
pub enum Ts {
    /// Matches every item.
    All,
    /// Matches no item (a term with no token in it).
    Nothing,
    Query(String),
}

impl Ts {
    fn and(self, other: Ts) -> Ts {
        match (self, other) {
            (Ts::Nothing, _) | (_, Ts::Nothing) => Ts::Nothing,
            (Ts::All, x) | (x, Ts::All) => x,
            (Ts::Query(a), Ts::Query(b)) => Ts::Query(format!("({a} & {b})")),
        }
    }

    fn or(self, other: Ts) -> Ts {
        match (self, other) {
            (Ts::All, _) | (_, Ts::All) => Ts::All,
            (Ts::Nothing, x) | (x, Ts::Nothing) => x,
            (Ts::Query(a), Ts::Query(b)) => Ts::Query(format!("({a} | {b})")),
        }
    }

    fn not(self) -> Ts {
        match self {
            Ts::All => Ts::Nothing,
            Ts::Nothing => Ts::All,
            Ts::Query(a) => Ts::Query(format!("!{a}")),
        }
    }
}

/// Renders `q` (see the module comment).
pub fn render(q: &Query) -> Rendered {
    render_in(q, ALL_COLUMNS)
}

fn render_in(q: &Query, cols: Columns) -> Rendered {
    match q {
        Query::Term { text, prefix } => {
            Rendered { query: phrase(&Phrase::of(text, *prefix), cols), exact: true }
        }
        Query::Near { terms, .. } => {
            let phrases = terms.iter().map(|(t, p)| Phrase::of(t, *p)).filter(|p| !p.tokens.is_empty());
            let all = phrases.fold(Ts::All, |acc, p| acc.and(phrase(&p, cols)));
            // NEAR of no phrase at all matches nothing, as in FTS5.
            let query = if all == Ts::All { Ts::Nothing } else { all };
            Rendered { query, exact: false }
        }
        Query::Columns { columns, expr } => render_in(expr, cols & search::columns(columns)),
        Query::And(a, b) => {
            let (a, b) = (render_in(a, cols), render_in(b, cols));
            Rendered { query: a.query.and(b.query), exact: a.exact && b.exact }
        }
        Query::Or(a, b) => {
            let (a, b) = (render_in(a, cols), render_in(b, cols));
            Rendered { query: a.query.or(b.query), exact: a.exact && b.exact }
        }
        Query::Not(a, b) => {
            let (a, b) = (render_in(a, cols), render_in(b, cols));
            if b.exact {
                Rendered { query: a.query.and(b.query.not()), exact: a.exact }
            } else {
                Rendered { query: a.query, exact: false }
            }
        }
    }
}

/// A phrase in columns `cols`: its tokens in a row, the last one a prefix if so.
fn phrase(p: &Phrase, cols: Columns) -> Ts {
    if p.tokens.is_empty() || cols == 0 {
        return Ts::Nothing;
    }
    let weights: String = if cols == ALL_COLUMNS {
        String::new()
    } else {
        (0..WEIGHTS.len()).filter(|c| cols & (1 << c) != 0).map(|c| WEIGHTS[c]).collect()
    };
    let mut out = String::new();
    let last = p.tokens.len() - 1;
    for (i, t) in p.tokens.iter().enumerate() {
        if i > 0 {
            out.push_str(" <-> ");
        }
        push_lexeme(&mut out, t);
        let star = if p.prefix && i == last { "*" } else { "" };
        if !star.is_empty() || !weights.is_empty() {
            let _ = write!(out, ":{star}{weights}");
        }
    }
    Ts::Query(if p.tokens.len() > 1 { format!("({out})") } else { out })
}

/// An item's tsvector, read back: lexemes with their positions and columns.
pub struct Vector {
    lexemes: HashMap<String, Vec<(u32, usize)>>,
}

impl Vector {
    /// Parses tsvector text as PostgreSQL prints it (`'a':1A,3 'b':2C`; weight D is
    /// printed without a letter).
    pub fn parse(text: &str) -> Vector {
        let mut lexemes: HashMap<String, Vec<(u32, usize)>> = HashMap::new();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| *c == ' ').is_some() {}
            if chars.next() != Some('\'') {
                break;
            }
            let mut lexeme = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.next_if_eq(&'\'').is_some() => lexeme.push('\''),
                    '\'' => break,
                    '\\' => lexeme.extend(chars.next()),
                    c => lexeme.push(c),
                }
            }
            let positions = lexemes.entry(lexeme).or_default();
            if chars.next_if_eq(&':').is_none() {
                continue;
            }
            loop {
                let mut n = 0u32;
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    n = n.saturating_mul(10).saturating_add(d.to_digit(10).unwrap_or(0));
                }
                let column = match chars.next_if(|c| matches!(c, 'A' | 'B' | 'C' | 'D')) {
                    Some(w) => WEIGHTS.iter().position(|x| *x == w).unwrap_or(3),
                    None => 3,
                };
                positions.push((n, column));
                if chars.next_if_eq(&',').is_none() {
                    break;
                }
            }
        }
        for p in lexemes.values_mut() {
            p.sort_unstable();
        }
        Vector { lexemes }
    }
}

impl Document for Vector {
    fn positions(&self, token: &str, prefix: bool, column: usize) -> Vec<u32> {
        let of = |v: &Vec<(u32, usize)>| {
            v.iter().filter(|(_, c)| *c == column).map(|(p, _)| *p).collect::<Vec<_>>()
        };
        if prefix {
            let mut out: Vec<u32> =
                self.lexemes.iter().filter(|(l, _)| l.starts_with(token)).flat_map(|(_, v)| of(v)).collect();
            out.sort_unstable();
            out
        } else {
            self.lexemes.get(token).map_or_else(Vec::new, of)
        }
    }
}

/// What a topic filter asks of the items, for the statements below.
struct Plan {
    /// The condition rows must meet in SQL.
    cond: Cond,
    /// The tsquery rows are ranked by, if any.
    rank: Option<String>,
    /// A check in Rust, for a rendering that is not exact.
    check: Option<Check>,
}

enum Cond {
    True,
    Nothing,
    Matches(String),
    NotMatches(String),
}

/// Rows are checked against `tree` on their tsvector: kept when it matches
/// (`keep_matching`) or when it does not. `only_when`: the tsvector is read only for
/// rows that match this tsquery (the others cannot match the tree).
struct Check {
    tree: Query,
    keep_matching: bool,
    only_when: Option<String>,
}

fn plan(filter: &TopicFilter) -> Plan {
    let tree = match (&filter.query, &filter.exclude) {
        (Some(q), Some(ex)) => Query::Not(Box::new(q.clone()), Box::new(ex.clone())),
        (Some(q), None) => q.clone(),
        (None, Some(ex)) => {
            let r = render(ex);
            let check = |only_when| Some(Check { tree: ex.clone(), keep_matching: false, only_when });
            return match (r.query, r.exact) {
                (Ts::Nothing, _) => Plan { cond: Cond::True, rank: None, check: None },
                (Ts::All, true) => Plan { cond: Cond::Nothing, rank: None, check: None },
                (Ts::All, false) => Plan { cond: Cond::True, rank: None, check: check(None) },
                (Ts::Query(q), true) => Plan { cond: Cond::NotMatches(q), rank: None, check: None },
                (Ts::Query(q), false) => Plan { cond: Cond::True, rank: None, check: check(Some(q)) },
            };
        }
        (None, None) => return Plan { cond: Cond::True, rank: None, check: None },
    };
    let r = render(&tree);
    let check = (!r.exact).then_some(Check { tree, keep_matching: true, only_when: None });
    match r.query {
        Ts::Nothing => Plan { cond: Cond::Nothing, rank: None, check: None },
        Ts::All => Plan { cond: Cond::True, rank: None, check },
        Ts::Query(q) => Plan { cond: Cond::Matches(q.clone()), rank: Some(q), check },
    }
}

/// Parameters of a statement, numbered as they are bound.
#[derive(Default)]
struct Binder<'a> {
    params: Vec<&'a (dyn postgres::types::ToSql + Sync)>,
}

impl<'a> Binder<'a> {
    fn bind(&mut self, v: &'a (dyn postgres::types::ToSql + Sync)) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }
}

/// The SQL of `plan`: the condition, the rank, and the tsvector to check (or NULL).
fn clauses<'a>(p: &'a Plan, b: &mut Binder<'a>) -> (String, String, String) {
    let cond = match &p.cond {
        Cond::True => "TRUE".to_owned(),
        Cond::Nothing => "FALSE".to_owned(),
        Cond::Matches(q) => format!("i.search @@ {}::text::tsquery", b.bind(q)),
        Cond::NotMatches(q) => format!("NOT (i.search @@ {}::text::tsquery)", b.bind(q)),
    };
    let rank = match &p.rank {
        Some(q) => format!("ts_rank(i.search, {}::text::tsquery)::float8", b.bind(q)),
        None => "0::float8".to_owned(),
    };
    let vector = match &p.check {
        None => "NULL::text".to_owned(),
        Some(Check { only_when: None, .. }) => "i.search::text".to_owned(),
        Some(Check { only_when: Some(q), .. }) => {
            format!("CASE WHEN i.search @@ {}::text::tsquery THEN i.search::text END", b.bind(q))
        }
    };
    (cond, rank, vector)
}

/// Whether a row passes the Rust check of a plan, given its tsvector (if read).
fn passes(check: &Option<Check>, vector: Option<&str>) -> bool {
    match (check, vector) {
        (None, _) => true,
        (Some(c), None) => !c.keep_matching,
        (Some(c), Some(text)) => search::matches(&c.tree, &Vector::parse(text)) == c.keep_matching,
    }
}

/// Matches of a topic filter, by the date items claim, then in the order they were
/// stored (as on SQLite). `claimed`: the queue's items a curation transaction took
/// (`Scope::Pending` then means those); `None`: the queue as it is.
pub fn matches(
    client: &mut impl GenericClient,
    filter: &TopicFilter,
    scope: Scope,
    claimed: Option<&Vec<i64>>,
) -> Result<Vec<Match>, StoreError> {
    let p = plan(filter);
    let mut b = Binder::default();
    let (cond, rank, vector) = clauses(&p, &mut b);
    let feeds = b.bind(&filter.feeds);
    // Pending items only: read from the queue, each item by its id (`OFFSET 0` keeps
    // the planner from folding the lookup into a join it might start from the
    // full-text index: a pass with nothing pending read thousands of rows that way).
    let from = match scope {
        Scope::Pending => {
            let queue = match claimed {
                Some(ids) => format!("unnest({}::bigint[]) AS p(item_id)", b.bind(ids)),
                None => "pending p".to_owned(),
            };
            format!("{queue} CROSS JOIN LATERAL (SELECT * FROM items WHERE id = p.item_id OFFSET 0) i")
        }
        Scope::All => "items i".to_owned(),
    };
    let sql = format!(
        "SELECT i.id, i.story_id, {rank}, COALESCE(i.published, i.first_seen), {vector}
         FROM {from}
         WHERE {cond} AND ({feeds}::text[] IS NULL OR i.feed_id = ANY({feeds}))
         ORDER BY COALESCE(i.published, i.first_seen), i.id"
    );
    let rows = client.query(&sql, &b.params)?;
    Ok(matched(&p, &rows))
}

/// The matches among the rows of [`matches`]' statement.
fn matched(p: &Plan, rows: &[postgres::Row]) -> Vec<Match> {
    rows.iter()
        .filter(|r| passes(&p.check, r.get::<_, Option<&str>>(4)))
        .map(|r| Match { item_id: r.get(0), story_id: r.get(1), score: r.get(2), sort_date: r.get(3) })
        .collect()
}

/// Items matching an ad-hoc filter, best first, one per story, with the matched terms
/// in `[brackets]` in the title and the best passage.
pub fn preview(
    client: &mut Client,
    filter: &TopicFilter,
    limit: usize,
) -> Result<Vec<PreviewRow>, StoreError> {
    let p = plan(filter);
    let mut b = Binder::default();
    let (cond, rank, vector) = clauses(&p, &mut b);
    let feeds = b.bind(&filter.feeds);
    let order =
        if p.rank.is_some() { "4 DESC, i.id DESC" } else { "COALESCE(i.published, i.first_seen) DESC" };
    let sql = format!(
        "SELECT i.id, i.feed_id, i.link, {rank}, i.title, COALESCE(i.published, i.first_seen),
                (SELECT count(*) FROM items o WHERE o.story_id = i.story_id), i.story_id, {vector},
                i.summary, i.content, i.categories
         FROM items i
         WHERE {cond} AND ({feeds}::text[] IS NULL OR i.feed_id = ANY({feeds}))
         ORDER BY {order}"
    );
    // Rows come a batch at a time, until `limit` stories are found: a broad query
    // over a large store matches far more rows than a preview shows.
    let mut tx = client.build_transaction().read_only(true).start()?;
    let portal = tx.bind(sql.as_str(), &b.params)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(limit);
    while out.len() < limit {
        let rows = tx.query_portal(&portal, PREVIEW_FETCH)?;
        if rows.is_empty() {
            break;
        }
        for r in rows.iter().filter(|r| passes(&p.check, r.get::<_, Option<&str>>(8))) {
            let story: i64 = r.get(7);
            if out.len() == limit || !seen.insert(story) {
                continue;
            }
            out.push(preview_row(filter, r));
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Rows a preview fetches at a time.
const PREVIEW_FETCH: i32 = 200;

/// A preview's line for a row of [`preview`]'s statement.
fn preview_row(filter: &TopicFilter, r: &postgres::Row) -> PreviewRow {
    let title: String = r.get(4);
    let (mut marked, mut snippet) = (title.clone(), String::new());
    if let Some(q) = &filter.query {
        let text = |h: Option<String>| crate::parse::index_text(h.as_deref());
        let categories: Vec<String> = serde_json::from_str(r.get(11)).unwrap_or_default();
        let columns = [title, text(r.get(9)), text(r.get(10)), categories.join(" ")];
        let h = search::highlight(q, &columns);
        marked = h.title;
        snippet = h.snippet;
    }
    PreviewRow {
        item_id: r.get(0),
        feed_id: r.get(1),
        link: r.get(2),
        score: r.get(3),
        title: marked,
        snippet,
        date: r.get(5),
        sources: r.get(6),
        story_id: r.get(7),
    }
}
