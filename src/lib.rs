//! feedsieve: a feed aggregator daemon.
//!
//! It polls many RSS/Atom/JSON feeds, stores every new item once (in SQLite or
//! PostgreSQL), files items into curated topics defined by full-text queries, and
//! republishes each topic as Atom, RSS 2.0 and JSON Feed.
//!
//! # Layout
//!
//! The modules follow the data:
//!
//! ```text
//!  config file ─► config ─► schedule ─► fetch ─► parse ─► store ─► curate ─► publish
//!  (TOML)         (load,    (when is    (HTTP,   (feed-rs (one tx  (topics:  (Atom, RSS,
//!                  validate) each feed   cond.    → Item,  a feed,  FTS5      JSON Feed,
//!                            due)        GET)     text)    FTS5)    queries)  ETag,
//!                                                                          sanitize)
//! ```
//!
//! - [`model`]: the plain types the stages pass to each other (and the store takes and
//!   returns); it imports nothing of the crate.
//! - [`config`]: the TOML schema, loading with line/column errors, validation; editing
//!   the file in place and OPML (submodules `edit`, `opml`).
//! - [`schedule`]: cron / `@hourly` / `every 20m`, next-due times, backoff.
//! - [`fetch`]: the HTTP client: conditional GET, limits, redirects, proxies, a feed's
//!   headers and credentials (to its own origin only), `file://` feeds.
//! - [`article`]: `full_text`: an item's own page fetched once and reduced to its main
//!   text (dom_smoothie), sanitised.
//! - [`parse`]: feed-rs to [`model::Item`]; dates, links, text, HTML sanitising (run
//!   by the store when an item is first published); the feeds an HTML page advertises.
//! - [`dedup`]: item keys, canonical links, near-duplicate fingerprints (MinHash, LSH).
//! - [`store`]: one backend-neutral face ([`store::Store`], the writer thread and its
//!   read pool) over an engine that only stores and finds, chosen by `database`:
//!   `store/sqlite/` and `store/postgres/` each hold their schema, migrations and
//!   every SQL statement of their engine.
//! - [`curate`]: topic queries (our own parser; each engine renders the tree for its
//!   full-text search), matching, backfill.
//! - [`publish`]: topic feeds as bytes with their validators.
//! - [`serve`]: the HTTP server: topic feeds, index page, OPML, health, metrics.
//! - [`websub`]: WebSub on both ends: the hub of the topic feeds (subscriptions,
//!   verification, signed deliveries with retries) and the subscriber of source hubs.
//! - [`metrics`]: counters for `/metrics`.
//! - [`daemon`]: the wiring: the poll pass shared by `poll` and the scheduler, reload, stop.
//! - [`cli`]: the command line, including feed/topic/OPML management.

pub mod article;
pub mod cli;
pub mod config;
pub mod curate;
pub mod daemon;
pub mod dedup;
pub mod fetch;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod publish;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod websub;

/// The throwaway PostgreSQL server of the tests (shared with `tests/it`).
#[cfg(test)]
#[path = "../tests/support/pg.rs"]
mod pgtest;

/// An error and its causes on one line, `outer: inner: innermost`, skipping a cause
/// whose text the previous message already contains.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

/// Writes `bytes` to `path` so that a reader sees the whole old or the whole new file:
/// a temporary file in the same folder, fsync, rename, fsync of the folder.
///
/// # Errors
/// Any I/O error, naming nothing (the caller knows the path).
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        // Keep the permissions of the file being replaced (a config may be private).
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), for Last-Modified and
/// If-Modified-Since.
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Reads an HTTP date (RFC 9110's preferred form, which RFC 2822 parsing covers).
pub fn parse_http_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc2822(s.trim()).ok().map(|d| d.with_timezone(&chrono::Utc))
}
