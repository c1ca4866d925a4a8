//! What SQLite's FTS5 tokenizer (`unicode61 remove_diacritics 2`, the one the index
//! uses) does with each character, asked of FTS5 itself: the other engine splits and
//! folds text by this table, so that a topic query matches the same items on both.

use rusqlite::Connection;

/// What FTS5's tokenizer does with one character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Ends a token (spaces, punctuation, symbols).
    Separator,
    /// Part of a token but dropped from it (a combining diacritic).
    Drop,
    /// Part of a token, as this character (lower-cased, diacritics removed).
    To(char),
}

/// Characters per block of the table.
pub const BLOCK: u32 = 256;

/// How FTS5 folds the characters `block * 256` to `block * 256 + 255` (a code point
/// that is no character, a surrogate, folds as a separator).
///
/// Each character `c` is indexed as the word `x{c}y` in a private in-memory index, and
/// the terms it became are read back in order from `fts5vocab`: `x`, `y` (a
/// separator), `xy` (dropped) or `x{d}y` (folded to `d`).
///
/// # Errors
/// If SQLite fails (it should not: an in-memory database).
pub fn fold_block(block: u32) -> rusqlite::Result<Vec<Fold>> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE t USING fts5(a, {});
         CREATE VIRTUAL TABLE v USING fts5vocab(t, instance);",
        super::fulltext::INDEX_TOKENIZER
    ))?;
    let chars: Vec<Option<char>> = (block * BLOCK..(block + 1) * BLOCK).map(char::from_u32).collect();
    let doc: String = chars.iter().flatten().map(|c| format!("x{c}y ")).collect();
    conn.execute("INSERT INTO t (rowid, a) VALUES (1, ?1)", [&doc])?;
    let mut stmt = conn.prepare("SELECT term FROM v ORDER BY offset")?;
    let terms: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut terms = terms.into_iter();
    let mut out = Vec::with_capacity(BLOCK as usize);
    for c in chars {
        let fold = match c {
            None => Fold::Separator,
            Some(_) => match terms.next().as_deref() {
                Some("x") => {
                    terms.next(); // the "y"
                    Fold::Separator
                }
                Some(t) => {
                    let inner = t.strip_prefix('x').and_then(|t| t.strip_suffix('y')).unwrap_or("");
                    let mut it = inner.chars();
                    match (it.next(), it.next()) {
                        (None, _) => Fold::Drop,
                        (Some(d), None) => Fold::To(d),
                        // FTS5 folds a character to one character; anything else
                        // would be a surprise, kept as the token says.
                        (Some(_), Some(_)) => Fold::Separator,
                    }
                }
                None => Fold::Separator,
            },
        };
        out.push(fold);
    }
    Ok(out)
}
