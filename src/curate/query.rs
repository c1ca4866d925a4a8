//! The topic query language: SQLite FTS5 query syntax, parsed into our own tree.
//!
//! Parsing ourselves (instead of handing the string to SQLite) gives errors that point
//! at the offending character, lets `topic preview` name the terms that matched, and
//! keeps the store behind the query replaceable: the tree ([`Query`], in `model`) is
//! what topics carry, and each store engine renders it for its own full-text search
//! (FTS5 MATCH on SQLite, tsquery on PostgreSQL). So that every engine can run what
//! this accepts, the grammar is checked here alone, with no database to ask.
//!
//! Grammar (FTS5's, minus the `^` anchor and `+` phrase joins):
//! ```text
//! query   := or
//! or      := and ("OR" and)*
//! and     := not (["AND"] not)*          juxtaposition is AND
//! not     := primary ("NOT" primary)*    binary, as in FTS5
//! primary := "(" or ")" | columns ":" primary | NEAR "(" term+ ["," N] ")" | term
//! columns := name | "{" name+ "}"
//! term    := word ["*"] | '"' text '"' ["*"]
//! ```
//! Operators are upper-case, as in FTS5: a lower-case `and` is a word.

use std::fmt;

pub use crate::model::{COLUMNS, Query};

/// A query that does not parse: where (a character offset into the query) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .offset + 1)]
pub struct QueryError {
    /// Offset in characters from the start of the query string.
    pub offset: usize,
    pub message: String,
}

/// Parses a query. Every query it accepts is one every store engine can run: there
/// is no second check against a database.
///
/// # Errors
/// A [`QueryError`] pointing at the first character that does not fit the grammar.
pub fn parse(input: &str) -> Result<Query, QueryError> {
    let tokens = lex(input)?;
    let mut p = Parser { tokens, pos: 0, end: input.chars().count() };
    if p.tokens.is_empty() {
        return Err(QueryError { offset: 0, message: "empty query".into() });
    }
    let expr = p.or()?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(p.error_at(t.offset, format!("unexpected {}", t.kind))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word(String),
    Phrase(String),
    Star,
    Colon,
    Comma,
    LParen,
    RParen,
    LBrace,
    RBrace,
    And,
    Or,
    Not,
    Near,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Word(w) => write!(f, "word '{w}'"),
            Kind::Phrase(p) => write!(f, "phrase \"{p}\""),
            Kind::Star => f.write_str("'*'"),
            Kind::Colon => f.write_str("':'"),
            Kind::Comma => f.write_str("','"),
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
            Kind::LBrace => f.write_str("'{'"),
            Kind::RBrace => f.write_str("'}'"),
            Kind::And => f.write_str("AND"),
            Kind::Or => f.write_str("OR"),
            Kind::Not => f.write_str("NOT"),
            Kind::Near => f.write_str("NEAR"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    offset: usize,
}

/// FTS5 barewords: letters, digits, `_`, and any non-ASCII character.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || !c.is_ascii()
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(QueryError {
                                offset: start,
                                message: "unterminated phrase: a '\"' is missing".into(),
                            });
                        }
                        Some('"') if chars.get(i + 1) == Some(&'"') => {
                            text.push('"');
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                if !text.chars().any(is_word_char) {
                    return Err(QueryError { offset: start, message: "empty phrase".into() });
                }
                tokens.push(Token { kind: Kind::Phrase(text), offset: start });
                continue;
            }
            '*' => Kind::Star,
            ':' => Kind::Colon,
            ',' => Kind::Comma,
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            '{' => Kind::LBrace,
            '}' => Kind::RBrace,
            c if is_word_char(c) => {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let kind = match word.as_str() {
                    "AND" => Kind::And,
                    "OR" => Kind::Or,
                    "NOT" => Kind::Not,
                    "NEAR" => Kind::Near,
                    _ => Kind::Word(word),
                };
                tokens.push(Token { kind, offset: start });
                continue;
            }
            other => {
                return Err(QueryError {
                    offset: start,
                    message: format!("'{other}' is not allowed outside quotes; put the text in a \"phrase\""),
                });
            }
        };
        i += 1;
        tokens.push(Token { kind, offset: start });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Offset of the end of input, for "expected ... at end" errors.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn error_at(&self, offset: usize, message: String) -> QueryError {
        QueryError { offset, message }
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn expect(&mut self, kind: Kind, what: &str) -> Result<(), QueryError> {
        match self.next() {
            Some(t) if t.kind == kind => Ok(()),
            Some(t) => Err(self.error_at(t.offset, format!("expected {what}, found {}", t.kind))),
            None => Err(self.error_at(self.end, format!("expected {what} at the end"))),
        }
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some(Token { kind: Kind::Or, .. })) {
            self.pos += 1;
            let right = self.and()?;
            left = Query::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut left = self.not()?;
        loop {
            match self.peek().map(|t| &t.kind) {
                Some(Kind::And) => self.pos += 1,
                Some(Kind::Word(_) | Kind::Phrase(_) | Kind::LParen | Kind::LBrace | Kind::Near) => {}
                _ => return Ok(left),
            }
            let right = self.not()?;
            left = Query::And(Box::new(left), Box::new(right));
        }
    }

    fn not(&mut self) -> Result<Query, QueryError> {
        let mut left = self.primary()?;
        while matches!(self.peek(), Some(Token { kind: Kind::Not, .. })) {
            self.pos += 1;
            let right = self.primary()?;
            left = Query::Not(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Query, QueryError> {
        let Some(tok) = self.next() else {
            return Err(self.error_at(self.end, "the query ends where a term was expected".into()));
        };
        match tok.kind {
            Kind::LParen => {
                let inner = self.or()?;
                self.expect(Kind::RParen, "')'")?;
                Ok(inner)
            }
            Kind::Word(w) if matches!(self.peek(), Some(Token { kind: Kind::Colon, .. })) => {
                self.pos += 1;
                let columns = vec![check_column(&w, tok.offset)?];
                let expr = self.primary()?;
                Ok(Query::Columns { columns, expr: Box::new(expr) })
            }
            Kind::LBrace => {
                let mut columns = Vec::new();
                loop {
                    match self.next() {
                        Some(Token { kind: Kind::Word(w), offset }) => {
                            columns.push(check_column(&w, offset)?)
                        }
                        Some(Token { kind: Kind::RBrace, offset }) => {
                            if columns.is_empty() {
                                return Err(self.error_at(offset, "empty column list".into()));
                            }
                            break;
                        }
                        Some(t) => {
                            return Err(
                                self.error_at(t.offset, format!("expected a column name, found {}", t.kind))
                            );
                        }
                        None => return Err(self.error_at(self.end, "a '}' is missing".into())),
                    }
                }
                self.expect(Kind::Colon, "':' after the column list")?;
                let expr = self.primary()?;
                Ok(Query::Columns { columns, expr: Box::new(expr) })
            }
            Kind::Near => {
                self.expect(Kind::LParen, "'(' after NEAR")?;
                let mut terms = Vec::new();
                let mut distance = None;
                loop {
                    let at = self.here();
                    match self.next().map(|t| t.kind) {
                        Some(Kind::Word(t) | Kind::Phrase(t)) => {
                            check_term(&t, at)?;
                            let prefix = self.star();
                            terms.push((t, prefix));
                        }
                        Some(Kind::Comma) => {
                            let at = self.here();
                            match self.next().map(|t| t.kind) {
                                Some(Kind::Word(n)) => match n.parse::<u32>() {
                                    Ok(n) => distance = Some(n),
                                    Err(_) => {
                                        return Err(
                                            self.error_at(at, "NEAR distance must be a number".into())
                                        );
                                    }
                                },
                                _ => return Err(self.error_at(at, "NEAR distance must be a number".into())),
                            }
                            self.expect(Kind::RParen, "')' to close NEAR")?;
                            break;
                        }
                        Some(Kind::RParen) => break,
                        Some(k) => return Err(self.error_at(at, format!("{k} is not allowed inside NEAR()"))),
                        None => return Err(self.error_at(self.end, "a ')' is missing to close NEAR".into())),
                    }
                }
                if terms.len() < 2 {
                    return Err(self.error_at(tok.offset, "NEAR needs at least two terms".into()));
                }
                Ok(Query::Near { terms, distance })
            }
            Kind::Word(text) | Kind::Phrase(text) => {
                check_term(&text, tok.offset)?;
                let prefix = self.star();
                Ok(Query::Term { text, prefix })
            }
            kind @ (Kind::And | Kind::Or | Kind::Not) => Err(self.error_at(
                tok.offset,
                format!("{kind} needs a term on both sides (to search for the word, write \"{kind}\")"),
            )),
            other => Err(self.error_at(tok.offset, format!("unexpected {other}"))),
        }
    }

    fn star(&mut self) -> bool {
        if matches!(self.peek(), Some(Token { kind: Kind::Star, .. })) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

/// A term must hold a word the index can find: one that splits into no token
/// (`"_"`, `"..."`) would match nothing, silently.
fn check_term(text: &str, offset: usize) -> Result<(), QueryError> {
    if crate::store::tokens(text).is_empty() {
        return Err(QueryError {
            offset,
            message: format!("'{text}' has no letter or digit in it, so it can match nothing"),
        });
    }
    Ok(())
}

fn check_column(name: &str, offset: usize) -> Result<String, QueryError> {
    if COLUMNS.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(QueryError {
            offset,
            message: format!("unknown column '{name}' (columns: {})", COLUMNS.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(q: &str) -> String {
        parse(q).map(|e| e.to_string()).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn renders_words_phrases_and_operators() {
        assert_eq!(fts("border"), r#""border""#);
        assert_eq!(fts(r#""border security" OR smuggl*"#), r#"("border security" OR "smuggl"*)"#);
        assert_eq!(fts("a b OR c"), r#"(("a" AND "b") OR "c")"#);
        assert_eq!(fts("a OR b c"), r#"("a" OR ("b" AND "c"))"#);
        assert_eq!(fts("a NOT b c"), r#"(("a" NOT "b") AND "c")"#);
        assert_eq!(fts("(a OR b) AND c"), r#"(("a" OR "b") AND "c")"#);
        assert_eq!(fts("title: border"), r#"{title} : ("border")"#);
        assert_eq!(fts("{title summary}: \"x y\""), r#"{title summary} : ("x y")"#);
        assert_eq!(fts("NEAR(border police, 5)"), r#"NEAR("border" "police", 5)"#);
        assert_eq!(fts(r#""say ""hi""""#), r#""say ""hi""""#);
        assert_eq!(fts("and or"), r#"("and" AND "or")"#, "lower-case operators are words");
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        let err = |q: &str| parse(q).expect_err(q);
        assert_eq!(err("border-security").offset, 6);
        assert_eq!(err(r#"a OR "unclosed"#).offset, 5);
        assert_eq!(err("a OR").offset, 4);
        assert_eq!(err("(a OR b").offset, 7);
        assert_eq!(err("a )").offset, 2);
        assert_eq!(err("body: x").offset, 0);
        assert!(err("body: x").message.contains("unknown column"));
        assert_eq!(err("NOT a").offset, 0);
        assert_eq!(err("NEAR(a)").offset, 0);
        assert_eq!(err("NEAR(a b, x)").offset, 10);
        assert_eq!(err("").offset, 0);
        assert_eq!(err("\"\"").message, "empty phrase");
        assert_eq!(err("a OR _").offset, 5, "a term the index splits into nothing");
        assert_eq!(err("NEAR(a \"...\")").offset, 7);
    }

    #[test]
    fn positive_terms_skip_negations() {
        let e = parse(r#""border security" OR smuggl* NOT vacancy"#).unwrap();
        assert_eq!(e.positive_terms(), vec!["border security", "smuggl*"]);
    }
}
