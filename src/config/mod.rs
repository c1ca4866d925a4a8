//! The config file: loading, validation, and its place on disk.
//!
//! Input: the path of a TOML file. Output: a validated [`Config`], or *every* problem
//! found, each with its file, line and column. Loading has no side effects: it touches
//! neither the network nor the database: topic queries are checked by their own
//! parser ([`crate::curate::query`]), which accepts only what every store can run.
//!
//! The file is read into `toml`'s spanned document tree rather than a serde struct
//! with `deny_unknown_fields`: serde stops at the first error, and `feedsieve check`
//! must report them all in one run.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};
use url::Url;

pub mod edit;
pub mod opml;
pub mod secrets;

pub use secrets::{Auth, Proxy, Secret};

use crate::curate::query::{self, Query};
use crate::model::{Database, PgTarget};
use crate::schedule::{Schedule, parse_duration};

/// A validated configuration. Relative paths are already resolved against the
/// folder of the config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages, and for editing it later).
    pub path: PathBuf,
    pub daemon: Daemon,
    pub feeds: Vec<FeedConfig>,
    pub topics: Vec<TopicConfig>,
    /// `[websub]`: push on both ends.
    pub websub: WebSub,
    /// Things that work but are probably not what the operator meant.
    pub warnings: Vec<Problem>,
    /// Position of each feed id in `feeds`, for [`Config::feed`]: with 100,000 feeds a
    /// scan per lookup made every per-feed pass quadratic.
    feed_index: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    /// A SQLite file, or a PostgreSQL database (`database = "postgres://..."`, with
    /// `database_password_file`).
    pub database: Database,
    pub listen: SocketAddr,
    /// Public address of the HTTP server, the prefix of every self link.
    pub base_url: Url,
    /// Whether the file sets `base_url` (else it follows `listen`).
    pub base_url_set: bool,
    /// Poll schedule of feeds that set none.
    pub schedule: Schedule,
    pub fetch_concurrency: usize,
    pub per_host_concurrency: usize,
    /// Bound on a whole request, connect to last byte.
    pub timeout: Duration,
    /// Cap on a feed body after decompression.
    pub max_feed_bytes: u64,
    pub retention: Duration,
    pub output_dir: Option<PathBuf>,
    /// Resemblance (`dedup::resemblance`, 0 to 1) from which two items are one story.
    pub dedup_threshold: f64,
    /// How far back (by first-seen time) a new item is compared with stored ones.
    pub dedup_window: Duration,
    /// Reload by itself when the config file changes (as on SIGHUP).
    pub watch_config: bool,
    /// PostgreSQL, many nodes: how long a node owns a feed it claimed to poll.
    pub lease: Duration,
    /// The proxy of feeds that set none; `None`: the environment's.
    pub proxy: Option<Proxy>,
}

impl Default for Daemon {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8077));
        Daemon {
            database: Database::Sqlite(PathBuf::from("feedsieve.db")),
            listen,
            base_url: default_base_url(listen),
            base_url_set: false,
            schedule: Schedule::parse(DEFAULT_SCHEDULE).unwrap_or(Schedule::Every(Duration::from_secs(1800))),
            fetch_concurrency: 16,
            per_host_concurrency: 2,
            timeout: Duration::from_secs(30),
            max_feed_bytes: 10 * 1024 * 1024,
            retention: Duration::from_secs(180 * 86_400),
            output_dir: None,
            dedup_threshold: crate::dedup::DEFAULT_THRESHOLD,
            dedup_window: Duration::from_secs(7 * 86_400),
            watch_config: false,
            lease: DEFAULT_LEASE,
            proxy: None,
        }
    }
}

/// How long a node's claim on a feed lasts by default: far longer than a poll takes
/// (`timeout` is 30 s), short enough that a dead node's feeds wait little.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

impl Daemon {
    /// Listens on `addr` instead (`run --listen`); a `base_url` the file does not set
    /// follows.
    pub fn listen_on(&mut self, addr: SocketAddr) {
        self.listen = addr;
        if !self.base_url_set {
            self.base_url = default_base_url(addr);
        }
    }
}

const DEFAULT_SCHEDULE: &str = "*/30 * * * *";

/// The tables of a config file, and the keys each takes: anything else is an error.
/// docs/configuration.md documents exactly these (a test holds it to them).
pub const TABLES: &[&str] = &["daemon", "feed", "topic", "websub"];
pub const WEBSUB_KEYS: &[&str] = &["hub", "subscribe"];
pub const DAEMON_KEYS: &[&str] = &[
    "database",
    "database_password_file",
    "listen",
    "base_url",
    "schedule",
    "fetch_concurrency",
    "per_host_concurrency",
    "timeout",
    "max_feed_bytes",
    "retention",
    "output_dir",
    "dedup_threshold",
    "dedup_window",
    "watch_config",
    "lease",
    "proxy",
];
pub const FEED_KEYS: &[&str] = &[
    "id",
    "url",
    "schedule",
    "tags",
    "enabled",
    "headers",
    "user_agent",
    "username",
    "password_file",
    "token_file",
    "proxy",
    "full_text",
];
pub const TOPIC_KEYS: &[&str] =
    &["id", "title", "description", "query", "exclude", "feeds", "tags", "limit", "max_age"];

fn default_base_url(listen: SocketAddr) -> Url {
    Url::parse(&format!("http://{listen}"))
        .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8077").expect("literal URL"))
}

/// `[websub]`: WebSub (W3C) on both ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSub {
    /// The hub topic feeds name: feedsieve's own (`/websub`) or another. `None`: none.
    pub hub: Option<Hub>,
    /// Subscribe to the hubs that source feeds advertise.
    pub subscribe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hub {
    /// `hub = "self"`: feedsieve is the hub of its topic feeds, at `/websub`.
    Itself,
    /// Another hub, pinged with `hub.mode=publish` on every change.
    External(Url),
}

impl Config {
    /// The hub URL topic feeds advertise, if any.
    pub fn hub_url(&self) -> Option<String> {
        match self.websub.hub.as_ref()? {
            Hub::Itself => Some(
                self.daemon
                    .base_url
                    .join("websub")
                    .map_or_else(|_| format!("{}websub", self.daemon.base_url), |u| u.to_string()),
            ),
            Hub::External(u) => Some(u.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    pub id: String,
    /// Absolute: `http(s)://` or `file:///`.
    pub url: Url,
    /// `None`: the daemon's default schedule.
    pub schedule: Option<Schedule>,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Sent with every request to the feed's own origin (never to another host a
    /// redirect leads to): names lower-cased, values as written.
    pub headers: Vec<(String, String)>,
    /// Instead of feedsieve's own (`feedsieve/VERSION`).
    pub user_agent: Option<String>,
    /// `username` + `password_file`, or `token_file`, read from their files; or the
    /// credentials written in `url`. Sent to the feed's own origin only.
    pub auth: Option<Auth>,
    /// `None`: `[daemon] proxy`, else the environment's.
    pub proxy: Option<Proxy>,
    /// Fetch each new item's page and keep its main text as the item's content.
    pub full_text: bool,
}

/// Headers a feed's `headers` may not set: what feedsieve sets itself, what belongs
/// to the connection, and credentials, which come from files only.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "if-none-match",
    "if-modified-since",
    "user-agent",
    "authorization",
    "proxy-authorization",
    "cookie",
];

#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    /// `None`: every item of the selected feeds (a merged feed).
    pub query: Option<Query>,
    pub exclude: Option<Query>,
    /// Only items from these feeds (empty: no restriction by id).
    pub feeds: Vec<String>,
    /// Only items from feeds with any of these tags (empty: no restriction by tag).
    pub tags: Vec<String>,
    /// Entries in the output feeds.
    pub limit: usize,
    /// Only stories published (or first seen) this recently.
    pub max_age: Option<Duration>,
    /// Where `query` and `exclude` sit in the file, for errors found after loading.
    pub query_at: Option<Position>,
    pub exclude_at: Option<Position>,
}

impl TopicConfig {
    /// The oldest sort date (Unix seconds) the topic shows at `now`, if `max_age` is set.
    pub fn since(&self, now: i64) -> Option<i64> {
        self.max_age.map(|a| now - a.as_secs() as i64)
    }
}

impl Config {
    /// The feeds a topic draws from: each restriction it sets must hold (named in
    /// `feeds`, if given; carrying any of `tags`, if given). All feeds when it sets
    /// neither.
    pub fn topic_feeds<'a>(&'a self, topic: &'a TopicConfig) -> impl Iterator<Item = &'a FeedConfig> + 'a {
        self.feeds.iter().filter(move |f| {
            (topic.feeds.is_empty() || topic.feeds.contains(&f.id))
                && (topic.tags.is_empty() || f.tags.iter().any(|t| topic.tags.contains(t)))
        })
    }

    /// Whether a topic restricts its feeds at all.
    pub fn restricts_feeds(topic: &TopicConfig) -> bool {
        !topic.feeds.is_empty() || !topic.tags.is_empty()
    }

    pub fn feed(&self, id: &str) -> Option<&FeedConfig> {
        match self.feed_index.get(id).and_then(|&i| self.feeds.get(i)) {
            Some(f) if f.id == id => Some(f),
            // `feeds` is public: changed since loading, the index is only a hint.
            _ => self.feeds.iter().find(|f| f.id == id),
        }
    }

    pub fn topic(&self, id: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|t| t.id == id)
    }
}

/// A place in the config file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub at: Position,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.at.line, self.at.col, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write config file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, one per line as `file:line:col: message`.
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// Where the config file is when `--config` is not given: `$FEEDSIEVE_CONFIG`, then
/// `$XDG_CONFIG_HOME/feedsieve/feedsieve.toml` (or `~/.config/...`), then
/// `/etc/feedsieve/feedsieve.toml`. The first that exists wins; if none does, the
/// last candidate is returned so the error names a real place.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FEEDSIEVE_CONFIG") {
        return PathBuf::from(p);
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let mut candidates: Vec<PathBuf> = xdg.into_iter().map(|d| d.join("feedsieve/feedsieve.toml")).collect();
    candidates.push(PathBuf::from("/etc/feedsieve/feedsieve.toml"));
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| candidates.pop().unwrap_or_default())
}

/// Reads and validates a config file.
///
/// # Errors
/// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Invalid`] with
/// every problem found otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text, path)
}

/// Validates config text as if it had been read from `path` (which only serves to
/// resolve relative paths and to name the file in messages).
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem found.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut r = Reader::new(text, path);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    for e in &syntax_errors {
        r.error(e.span().unwrap_or(0..0), e.message().trim().to_owned());
    }
    // What could be read is validated too, so that one run reports every problem. A
    // value broken by a syntax error reads back empty; what validation says about it
    // on that line would only repeat the syntax error.
    let syntax = r.problems.len();
    let broken: HashSet<usize> = r.problems.iter().map(|p| p.at.line).collect();
    let config = r.config(doc.get_ref());
    let mut n = 0;
    r.problems.retain(|p| {
        n += 1;
        n <= syntax || !broken.contains(&p.at.line)
    });
    if r.problems.is_empty() {
        let mut config = config;
        config.warnings = r.warnings;
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems: r.problems })
    }
}

type Span = Range<usize>;

/// Walks the document, collecting problems instead of stopping at the first.
struct Reader<'a> {
    text: &'a str,
    file: PathBuf,
    dir: PathBuf,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, path: &Path) -> Self {
        Reader {
            text,
            file: path.to_owned(),
            dir: folder_of(path),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position { line, col: before[line_start..].chars().count() + 1 }
    }

    fn problem(&self, span: Span, message: String) -> Problem {
        Problem { file: self.file.clone(), at: self.position(span.start), message }
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        let p = self.problem(span, message.into());
        self.problems.push(p);
    }

    fn warn(&mut self, span: Span, message: impl Into<String>) {
        let p = self.problem(span, message.into());
        self.warnings.push(p);
    }

    /// Reports keys of `table` not in `allowed`.
    fn known_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                self.error(
                    key.span(),
                    format!(
                        "unknown key '{}' in {what} (expected one of: {})",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn get<'t>(table: &'t DeTable<'a>, key: &str) -> Option<&'t Spanned<DeValue<'a>>> {
        table.get(key)
    }

    fn string(&mut self, table: &DeTable<'a>, key: &str) -> Option<(String, Span)> {
        let v = Self::get(table, key)?;
        match v.get_ref().as_str() {
            Some(s) => Some((s.to_owned(), v.span())),
            None => {
                self.error(v.span(), format!("'{key}' must be a string, not {}", v.get_ref().type_str()));
                None
            }
        }
    }

    fn integer(&mut self, table: &DeTable<'a>, key: &str, range: Range<i64>) -> Option<i64> {
        let v = Self::get(table, key)?;
        let n = v.get_ref().as_integer().and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
        match n {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                self.error(
                    v.span(),
                    format!("'{key}' = {n} is out of range {}..={}", range.start, range.end - 1),
                );
                None
            }
            None => {
                self.error(
                    v.span(),
                    format!("'{key}' must be a whole number, not {}", v.get_ref().type_str()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, table: &DeTable<'a>, key: &str) -> Option<bool> {
        let v = Self::get(table, key)?;
        let b = v.get_ref().as_bool();
        if b.is_none() {
            self.error(v.span(), format!("'{key}' must be true or false, not {}", v.get_ref().type_str()));
        }
        b
    }

    fn strings(&mut self, table: &DeTable<'a>, key: &str) -> Vec<(String, Span)> {
        let Some(v) = Self::get(table, key) else { return Vec::new() };
        let Some(array) = v.get_ref().as_array() else {
            self.error(v.span(), format!("'{key}' must be a list of strings, like [\"a\", \"b\"]"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in array.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_owned(), item.span())),
                None => self.error(item.span(), format!("'{key}' must hold strings only")),
            }
        }
        out
    }

    fn duration(&mut self, table: &DeTable<'a>, key: &str) -> Option<Duration> {
        let (s, span) = self.string(table, key)?;
        match parse_duration(&s) {
            Ok(d) if d.is_zero() => {
                self.error(span, format!("'{key}' must be longer than 0s"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(span, format!("'{key}': {e}"));
                None
            }
        }
    }

    fn schedule(&mut self, table: &DeTable<'a>, key: &str) -> Option<Schedule> {
        let (s, span) = self.string(table, key)?;
        match Schedule::parse(&s) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(span, format!("bad schedule: {e}"));
                None
            }
        }
    }

    fn path(&self, s: &str) -> PathBuf {
        self.dir.join(s)
    }

    /// `database`: a `postgres://` (or `postgresql://`) URL, or the path of a SQLite
    /// file. Any other URL is an error, not a file name with a colon in it.
    fn database(&mut self, s: &str, span: Span) -> Option<Database> {
        let s = s.trim();
        if s.is_empty() {
            self.error(span, "'database' must not be empty");
            return None;
        }
        let Some((scheme, rest)) = s.split_once("://") else { return Some(Database::Sqlite(self.path(s))) };
        if !scheme.eq_ignore_ascii_case("postgres") && !scheme.eq_ignore_ascii_case("postgresql") {
            self.error(
                span,
                format!("'database' = '{scheme}://...' is not a database feedsieve knows: give a path (SQLite) or a postgres:// URL"),
            );
            return None;
        }
        let shown = crate::model::redact_url(s);
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() && !rest.contains("host=") {
            self.error(span, format!("'database' = '{shown}' names no host: postgres://user@host:5432/name"));
            return None;
        }
        if let Err(why) = crate::store::check_postgres_url(s) {
            self.error(span, format!("'database' = '{shown}': {why}"));
            return None;
        }
        Some(Database::Postgres(PgTarget { url: s.to_owned(), password_file: None }))
    }

    /// A file holding a secret: relative to `$CREDENTIALS_DIRECTORY` (systemd's
    /// `LoadCredential=`) when that is set, else to the config file's folder. It must
    /// exist now, so that `check` finds a missing one before the daemon does.
    fn secret_file(&mut self, s: &str, span: Span) -> Option<PathBuf> {
        let path = self.credentials_dir().join(s);
        if path.is_file() {
            Some(path)
        } else {
            self.error(span, format!("secret file {} does not exist or is not a file", path.display()));
            None
        }
    }

    /// Where secret files are: `$CREDENTIALS_DIRECTORY` when set, else the config
    /// file's folder.
    fn credentials_dir(&self) -> PathBuf {
        std::env::var_os("CREDENTIALS_DIRECTORY").map_or_else(|| self.dir.clone(), PathBuf::from)
    }

    /// The position of character `offset` inside the string value at `span`.
    fn position_in_string(&self, span: &Span, offset: usize) -> Position {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") { 3 } else { 1 };
        let start = span.start + quote;
        let skip: usize = self.text.get(start..).unwrap_or("").chars().take(offset).map(char::len_utf8).sum();
        self.position(start + skip)
    }

    fn query(&mut self, table: &DeTable<'a>, key: &str, topic: &str) -> (Option<Query>, Option<Position>) {
        let Some((q, span)) = self.string(table, key) else { return (None, None) };
        let at = self.position_in_string(&span, 0);
        match query::parse(&q) {
            Ok(e) => (Some(e), Some(at)),
            Err(e) => {
                let at = self.position_in_string(&span, e.offset);
                self.problems.push(Problem {
                    file: self.file.clone(),
                    at,
                    message: format!("topic '{topic}': bad {key}: {}", e.message),
                });
                (None, Some(at))
            }
        }
    }

    fn config(&mut self, doc: &DeTable<'a>) -> Config {
        self.known_keys(doc, TABLES, "the config file");
        let daemon = match doc.get("daemon") {
            None => Daemon { database: Database::Sqlite(self.path("feedsieve.db")), ..Daemon::default() },
            Some(v) => match v.get_ref().as_table() {
                Some(t) => self.daemon(t),
                None => {
                    self.error(v.span(), "'daemon' must be a table: [daemon]");
                    Daemon::default()
                }
            },
        };
        let feeds = self.array_of_tables(doc, "feed", Self::feed);
        self.duplicate_ids(doc, "feed");
        let topics = self.array_of_tables(doc, "topic", Self::topic);
        self.duplicate_ids(doc, "topic");
        let known_tags: HashSet<&str> =
            feeds.iter().flat_map(|(f, _)| f.tags.iter().map(String::as_str)).collect();
        for (t, span) in &topics {
            for f in &t.feeds {
                if !feeds.iter().any(|(feed, _)| &feed.id == f) {
                    self.error(span.clone(), format!("topic '{}' names unknown feed '{f}'", t.id));
                }
            }
            for tag in &t.tags {
                if !known_tags.contains(tag.as_str()) {
                    self.warn(span.clone(), format!("topic '{}': no feed has tag '{tag}'", t.id));
                }
            }
        }
        let feeds: Vec<FeedConfig> = feeds.into_iter().map(|(f, _)| f).collect();
        let websub = match doc.get("websub") {
            None => WebSub::default(),
            Some(v) => match v.get_ref().as_table() {
                Some(t) => self.websub(t, &daemon),
                None => {
                    self.error(v.span(), "'websub' must be a table: [websub]");
                    WebSub::default()
                }
            },
        };
        Config {
            websub,
            path: self.file.clone(),
            daemon,
            feed_index: feeds.iter().enumerate().map(|(i, f)| (f.id.clone(), i)).collect(),
            feeds,
            topics: topics.into_iter().map(|(t, _)| t).collect(),
            warnings: Vec::new(),
        }
    }

    /// Reports every repeated `id` among the `[[key]]` tables, at the repeat, whether
    /// or not the rest of its table is valid.
    fn duplicate_ids(&mut self, doc: &DeTable<'a>, key: &str) {
        let Some(array) = doc.get(key).and_then(|v| v.get_ref().as_array()) else { return };
        let mut seen = HashSet::new();
        for entry in array.iter() {
            let Some(id) = entry.get_ref().as_table().and_then(|t| t.get("id")) else { continue };
            if let Some(s) = id.get_ref().as_str()
                && !seen.insert(s.to_owned())
            {
                self.error(id.span(), format!("duplicate {key} id '{s}'"));
            }
        }
    }

    fn array_of_tables<T>(
        &mut self,
        doc: &DeTable<'a>,
        key: &str,
        each: fn(&mut Self, &DeTable<'a>, Span) -> Option<T>,
    ) -> Vec<(T, Span)> {
        let Some(v) = doc.get(key) else { return Vec::new() };
        let Some(array) = v.get_ref().as_array() else {
            self.error(v.span(), format!("'{key}' must be an array of tables: [[{key}]]"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in array.iter() {
            match entry.get_ref().as_table() {
                Some(t) => {
                    if let Some(x) = each(self, t, entry.span()) {
                        out.push((x, entry.span()));
                    }
                }
                None => self.error(entry.span(), format!("each '{key}' must be a table: [[{key}]]")),
            }
        }
        out
    }

    fn daemon(&mut self, t: &DeTable<'a>) -> Daemon {
        self.known_keys(t, DAEMON_KEYS, "[daemon]");
        let mut d = Daemon { database: Database::Sqlite(self.path("feedsieve.db")), ..Daemon::default() };
        if let Some((s, span)) = self.string(t, "database")
            && let Some(db) = self.database(&s, span)
        {
            d.database = db;
        }
        let password_file = self.string(t, "database_password_file");
        match (&mut d.database, password_file) {
            (Database::Postgres(target), Some((s, span))) => {
                target.password_file = self.secret_file(&s, span)
            }
            (Database::Sqlite(_), Some((_, span))) => self.error(
                span,
                "'database_password_file' is for a PostgreSQL database (database = \"postgres://...\")",
            ),
            (_, None) => {}
        }
        if let Some((s, span)) = self.string(t, "listen") {
            match s.parse::<SocketAddr>() {
                Ok(a) => {
                    d.listen = a;
                    d.base_url = default_base_url(a);
                }
                Err(_) => self.error(span, format!("'listen' = '{s}' is not an address like 127.0.0.1:8077")),
            }
        }
        if let Some((s, span)) = self.string(t, "base_url") {
            match Url::parse(&s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                    // Self links are built by appending paths: keep a trailing slash.
                    let mut u = u;
                    if !u.path().ends_with('/') {
                        let p = format!("{}/", u.path());
                        u.set_path(&p);
                    }
                    d.base_url = u;
                    d.base_url_set = true;
                }
                _ => self.error(span, format!("'base_url' = '{s}' is not an http(s) URL")),
            }
        }
        if let Some(s) = self.schedule(t, "schedule") {
            d.schedule = s;
        }
        if let Some(n) = self.integer(t, "fetch_concurrency", 1..10_001) {
            d.fetch_concurrency = n as usize;
        }
        if let Some(n) = self.integer(t, "per_host_concurrency", 1..10_001) {
            d.per_host_concurrency = n as usize;
        }
        if let Some(x) = self.duration(t, "timeout") {
            d.timeout = x;
        }
        if t.get("max_feed_bytes").is_some_and(|v| v.get_ref().is_integer()) {
            if let Some(n) = self.integer_if_int(t, "max_feed_bytes") {
                d.max_feed_bytes = n;
            }
        } else if let Some((s, span)) = self.string(t, "max_feed_bytes") {
            match parse_size(&s) {
                Ok(n) if n >= 1024 => d.max_feed_bytes = n,
                Ok(_) => self.error(span, "'max_feed_bytes' must be at least 1KiB"),
                Err(e) => self.error(span, format!("'max_feed_bytes': {e}")),
            }
        }
        if let Some(x) = self.duration(t, "retention") {
            d.retention = x;
        }
        if let Some((s, _)) = self.string(t, "output_dir") {
            d.output_dir = Some(self.path(&s));
        }
        if let Some(v) = t.get("dedup_threshold") {
            let x = v.get_ref().as_float().and_then(|f| f.as_str().parse::<f64>().ok());
            match x {
                Some(x) if (0.0..=1.0).contains(&x) && x > 0.0 => d.dedup_threshold = x,
                _ => {
                    self.error(v.span(), "'dedup_threshold' must be a number above 0 and at most 1, like 0.5")
                }
            }
        }
        if let Some(x) = self.duration(t, "dedup_window") {
            d.dedup_window = x;
        }
        if let Some(b) = self.boolean(t, "watch_config") {
            d.watch_config = b;
        }
        if let Some(x) = self.duration(t, "lease") {
            let span = t.get("lease").map(|v| v.span()).unwrap_or_default();
            if matches!(d.database, Database::Sqlite(_)) {
                self.warn(
                    span,
                    "'lease' is for many nodes on PostgreSQL; with a SQLite database it does nothing",
                );
            } else if x < d.timeout * 2 {
                // A claim that ends while its poll is still fetching lets another
                // node fetch the feed too.
                self.warn(
                    span,
                    format!(
                        "'lease' ({}) is less than twice 'timeout' ({}): a slow feed may be polled by two nodes",
                        crate::schedule::format_duration(x),
                        crate::schedule::format_duration(d.timeout)
                    ),
                );
            }
            d.lease = x;
        }
        d.proxy = self.proxy(t);
        d
    }

    fn websub(&mut self, t: &DeTable<'a>, daemon: &Daemon) -> WebSub {
        self.known_keys(t, WEBSUB_KEYS, "[websub]");
        let hub = self.string(t, "hub").and_then(|(s, span)| {
            if s.trim() == "self" {
                return Some(Hub::Itself);
            }
            match Url::parse(s.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    Some(Hub::External(u))
                }
                _ => {
                    self.error(span, format!("'hub' = '{s}': \"self\" or a hub's http(s) URL"));
                    None
                }
            }
        });
        let subscribe = self.boolean(t, "subscribe").unwrap_or(false);
        let public = !daemon.base_url.host_str().is_some_and(|h| {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        });
        if (subscribe || hub.is_some()) && !daemon.base_url_set {
            let span = t.get("subscribe").or_else(|| t.get("hub")).map(|v| v.span()).unwrap_or_default();
            self.warn(
                span,
                "WebSub needs [daemon] base_url: the address hubs and subscribers reach this daemon at",
            );
        } else if subscribe && !public {
            let span = t.get("subscribe").map(|v| v.span()).unwrap_or_default();
            self.warn(
                span,
                format!(
                    "'subscribe': base_url {} is this machine: only local hubs can reach it",
                    daemon.base_url
                ),
            );
        }
        WebSub { hub, subscribe }
    }

    /// `max_feed_bytes = 1048576` is accepted as well as `"1MiB"`.
    fn integer_if_int(&mut self, t: &DeTable<'a>, key: &str) -> Option<u64> {
        if t.get(key)?.get_ref().is_integer() {
            self.integer(t, key, 1024..i64::MAX).map(|n| n as u64)
        } else {
            None
        }
    }

    fn feed(&mut self, t: &DeTable<'a>, span: Span) -> Option<FeedConfig> {
        self.known_keys(t, FEED_KEYS, "[[feed]]");
        let id = self.id(t, "feed", &span);
        let url = match self.string(t, "url") {
            None => {
                if t.get("url").is_none() {
                    self.error(span.clone(), "a [[feed]] needs a 'url'");
                }
                None
            }
            Some((s, span)) => match self.feed_url(&s) {
                Ok(u) => Some(u),
                Err(e) => {
                    self.error(span, e);
                    None
                }
            },
        };
        let schedule = self.schedule(t, "schedule");
        let tags = self.tags(t);
        let enabled = self.boolean(t, "enabled").unwrap_or(true);
        let headers = self.headers(t);
        let user_agent = self.string(t, "user_agent").and_then(|(s, span)| {
            if s.trim().is_empty() || reqwest::header::HeaderValue::from_str(&s).is_err() {
                self.error(
                    span,
                    format!("'user_agent' = '{s}' is not a usable User-Agent (printable, not empty)"),
                );
                None
            } else {
                Some(s)
            }
        });
        let auth = self.auth(t, id.as_deref().unwrap_or("?"), url.as_ref());
        let proxy = self.proxy(t);
        let full_text = self.boolean(t, "full_text").unwrap_or(false);
        Some(FeedConfig {
            id: id?,
            url: url?,
            schedule,
            tags,
            enabled,
            headers,
            user_agent,
            auth,
            proxy,
            full_text,
        })
    }

    /// `proxy`, in `[daemon]` or a feed.
    fn proxy(&mut self, t: &DeTable<'a>) -> Option<Proxy> {
        let (text, span) = self.string(t, "proxy")?;
        Proxy::parse(&text).map_err(|e| self.error(span, e)).ok()
    }

    /// A feed's credentials: `username` with `password_file`, or `token_file`, each
    /// file read now; else those written in its URL.
    fn auth(&mut self, t: &DeTable<'a>, id: &str, url: Option<&Url>) -> Option<Auth> {
        let username = self.string(t, "username");
        let password = self.string(t, "password_file");
        let token = self.string(t, "token_file");
        let in_url = url.and_then(Auth::from_url);
        let read = |this: &mut Self, key: &str, (file, span): (String, Span)| {
            let path = this.credentials_dir().join(&file);
            match secrets::read_secret(&path) {
                Ok(s) => {
                    if secrets::readable_by_others(&path) {
                        this.warn(
                            span,
                            format!(
                                "feed '{id}': {key} {} is readable by every user of this machine (chmod 600)",
                                path.display()
                            ),
                        );
                    }
                    Some(s)
                }
                Err(e) => {
                    this.error(span, format!("feed '{id}': {key}: {e}"));
                    None
                }
            }
        };
        let from_files = match (username, password, token) {
            (None, None, None) => return in_url,
            (Some((user, _)), Some(p), None) => {
                let password = read(self, "password_file", p)?;
                Auth::Basic { username: user, password }
            }
            (None, None, Some(tk)) => Auth::Bearer(read(self, "token_file", tk)?),
            (Some((_, span)), None, None) => {
                self.error(span, format!("feed '{id}': 'username' needs a 'password_file'"));
                return None;
            }
            (None, Some((_, span)), None) => {
                self.error(span, format!("feed '{id}': 'password_file' needs a 'username'"));
                return None;
            }
            (_, _, Some((_, span))) => {
                self.error(
                    span,
                    format!(
                        "feed '{id}': give either 'token_file' or 'username' with 'password_file', not both"
                    ),
                );
                return None;
            }
        };
        if in_url.is_some() {
            let span = t.get("url").map(|v| v.span()).unwrap_or_default();
            self.error(
                span,
                format!(
                    "feed '{id}': credentials are both in its url and in username/token_file: keep the files"
                ),
            );
            return None;
        }
        Some(from_files)
    }

    /// A feed's `headers`: a table of header names to strings.
    fn headers(&mut self, t: &DeTable<'a>) -> Vec<(String, String)> {
        let Some(v) = Self::get(t, "headers") else { return Vec::new() };
        let Some(table) = v.get_ref().as_table() else {
            self.error(
                v.span(),
                "'headers' must be a table of names to values, like { \"Accept-Language\" = \"en\" }",
            );
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, value) in table.iter() {
            let lower = name.get_ref().to_ascii_lowercase();
            let Some(text) = value.get_ref().as_str() else {
                self.error(value.span(), format!("header '{}' must be a string", name.get_ref()));
                continue;
            };
            if reqwest::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                self.error(name.span(), format!("'{}' is not a header name", name.get_ref()));
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                let why = match lower.as_str() {
                    "authorization" | "proxy-authorization" | "cookie" => {
                        "credentials come from files: use token_file, or username and password_file"
                    }
                    "user-agent" => "use user_agent",
                    _ => "feedsieve sets it itself",
                };
                self.error(name.span(), format!("header '{}' cannot be set here: {why}", name.get_ref()));
            } else if reqwest::header::HeaderValue::from_str(text).is_err() {
                self.error(
                    value.span(),
                    format!("header '{}': the value is not printable text", name.get_ref()),
                );
            } else if out.iter().any(|(n, _)| *n == lower) {
                self.error(name.span(), format!("header '{}' is given twice", name.get_ref()));
            } else {
                out.push((lower, text.to_owned()));
            }
        }
        out
    }

    fn tags(&mut self, t: &DeTable<'a>) -> Vec<String> {
        let mut tags = Vec::new();
        for (tag, span) in self.strings(t, "tags") {
            if tag.trim().is_empty() {
                self.error(span, "tags must not be empty");
            } else if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        tags
    }

    /// An `id`: required, and safe in URLs and file names.
    fn id(&mut self, t: &DeTable<'a>, what: &str, span: &Span) -> Option<String> {
        let Some((id, id_span)) = self.string(t, "id") else {
            if t.get("id").is_none() {
                self.error(span.clone(), format!("a [[{what}]] needs an 'id'"));
            }
            return None;
        };
        if let Err(e) = check_id(&id) {
            self.error(id_span, format!("{what} id '{id}': {e}"));
            return None;
        }
        Some(id)
    }

    fn feed_url(&self, s: &str) -> Result<Url, String> {
        feed_url(s, &self.dir)
    }

    fn topic(&mut self, t: &DeTable<'a>, span: Span) -> Option<TopicConfig> {
        self.known_keys(t, TOPIC_KEYS, "[[topic]]");
        // An invalid id is reported, and the rest of the topic checked all the same
        // under the id as written (the file is refused anyway), so that one run shows
        // every problem.
        let valid_id = self.id(t, "topic", &span);
        let id = valid_id.unwrap_or_else(|| {
            t.get("id").and_then(|v| v.get_ref().as_str()).unwrap_or("(no id)").to_owned()
        });
        let title = self.string(t, "title").map_or_else(|| id.clone(), |(s, _)| s);
        let description = self.string(t, "description").map(|(s, _)| s);
        let (query, query_at) = self.query(t, "query", &id);
        let (exclude, exclude_at) = self.query(t, "exclude", &id);
        let feeds: Vec<String> = self.strings(t, "feeds").into_iter().map(|(s, _)| s).collect();
        let tags = self.tags(t);
        let limit = self.integer(t, "limit", 1..10_001).map_or(50, |n| n as usize);
        let max_age = self.duration(t, "max_age");
        if t.get("query").is_none() && feeds.is_empty() && tags.is_empty() {
            self.error(span, format!("topic '{id}' selects nothing: give it a 'query', 'feeds' or 'tags'"));
        }
        Some(TopicConfig {
            id,
            title,
            description,
            query,
            exclude,
            feeds,
            tags,
            limit,
            max_age,
            query_at,
            exclude_at,
        })
    }
}

/// The folder relative paths in a config file resolve against: the file's own, made
/// absolute.
pub fn folder_of(config_path: &Path) -> PathBuf {
    let dir = config_path.parent().map(Path::to_owned).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A feed URL as the config file may write it: `http(s)://…`, `file:///abs/path`, or
/// `file:relative/path` (against `dir`, the config file's folder).
///
/// # Errors
/// What is wrong with it.
pub fn feed_url(s: &str, dir: &Path) -> Result<Url, String> {
    if let Some(rest) = s.strip_prefix("file:")
        && !rest.starts_with('/')
    {
        return Url::from_file_path(dir.join(rest)).map_err(|()| format!("'{s}' is not a usable file path"));
    }
    let u = Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    match u.scheme() {
        "http" | "https" if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(u),
        "http" | "https" => Err(format!("'{s}' has no host")),
        "file" if u.to_file_path().is_ok() => Ok(u),
        other => Err(format!("'{s}': scheme '{other}' is not supported (use http, https or file)")),
    }
}

/// Ids appear in URLs (`/topics/{id}.atom`) and file names: letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit, at most 64 characters.
///
/// # Errors
/// A message saying what is wrong.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 64 {
        return Err("is longer than 64 characters".into());
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(format!("'{c}' is not allowed (letters, digits, '-', '_', '.')"));
    }
    Ok(())
}

/// Parses `512KiB`, `10MiB`, `1GiB`, `500kB`, `2MB` or a plain byte count.
///
/// # Errors
/// A message naming the bad input.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (examples: 512KiB, 10MiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("'{s}': unknown unit '{other}' (use B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("/etc/fs/test.toml")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems }) => problems.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// `database` is a path or a `postgres://` URL; a URL's problems are found by
    /// `check`, named at its line, and never show its password.
    #[test]
    fn a_database_url_is_checked_and_its_password_never_shown() {
        let db = |value: &str| problems(&format!("[daemon]\ndatabase = \"{value}\"\n"));
        assert!(db("postgres://feedsieve:s3cret@db.internal:5432/feeds?sslmode=require").is_empty());
        assert!(db("postgresql://feedsieve@db.internal/feeds").is_empty());
        for (value, says) in [
            ("mysql://u:s3cret@h/db", "not a database feedsieve knows"),
            ("postgres://u:s3cret@/db", "names no host"),
            ("postgres://u:s3cret@h:notaport/db", "does not parse"),
            ("postgres://u:s3cret@h/db?sslmode=sometimes", "does not parse"),
            ("postgres://u:s3cret@h/db?no_such_option=1", "does not parse"),
        ] {
            let p = db(value);
            assert_eq!(p.len(), 1, "{value}: {p:?}");
            assert!(p[0].starts_with("/etc/fs/test.toml:2:12:") && p[0].contains(says), "{value}: {p:?}");
            assert!(!p[0].contains("s3cret"), "{value}: the password shown: {p:?}");
        }
        let p = problems("[daemon]\ndatabase = \"x.db\"\ndatabase_password_file = \"pw\"\n");
        assert!(p.len() == 1 && p[0].contains("is for a PostgreSQL database"), "{p:?}");
        let c = parse("[daemon]\ndatabase = \"postgres://u:s3cret@h/db\"\n", Path::new("/etc/fs/t.toml"))
            .unwrap();
        assert!(
            !format!("{:?} {}", c.daemon, c.daemon.database).contains("s3cret"),
            "Debug and Display redact"
        );
    }

    #[test]
    fn a_full_config_loads_with_paths_resolved() {
        let c = parse(
            r#"
[daemon]
database = "data/fs.db"
listen = "127.0.0.1:9000"
base_url = "https://feeds.example.org/sieve"
schedule = "@hourly"
fetch_concurrency = 4
per_host_concurrency = 1
timeout = "10s"
max_feed_bytes = "512KiB"
retention = "30d"
output_dir = "public"

[[feed]]
id = "a"
url = "file:samples/a.xml"
tags = ["x", "x", "y"]

[[feed]]
id = "b"
url = "https://example.org/b.rss"
schedule = "every 20m"
enabled = false

[[topic]]
id = "t"
query = '"border security" OR smuggl*'
exclude = 'vacancy'
feeds = ["a"]
limit = 10
max_age = "7d"
"#,
            Path::new("/etc/fs/feedsieve.toml"),
        )
        .unwrap();
        assert_eq!(c.daemon.database, crate::model::Database::Sqlite(PathBuf::from("/etc/fs/data/fs.db")));
        assert_eq!(c.daemon.output_dir, Some(PathBuf::from("/etc/fs/public")));
        assert_eq!(c.daemon.base_url.as_str(), "https://feeds.example.org/sieve/");
        assert_eq!(c.daemon.max_feed_bytes, 512 * 1024);
        assert_eq!(c.feeds[0].url.as_str(), "file:///etc/fs/samples/a.xml");
        assert_eq!(c.feeds[0].tags, ["x", "y"]);
        assert!(!c.feeds[1].enabled);
        assert_eq!(c.topics[0].title, "t");
        assert_eq!(c.topics[0].limit, 10);
        assert_eq!(c.topics[0].query_at, Some(Position { line: 27, col: 10 }));
        assert_eq!(c.topic_feeds(&c.topics[0]).count(), 1);
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let c = parse("", Path::new("/srv/f.toml")).unwrap();
        assert_eq!(c.daemon.database, crate::model::Database::Sqlite(PathBuf::from("/srv/feedsieve.db")));
        assert_eq!(c.daemon.fetch_concurrency, 16);
        assert_eq!(c.daemon.per_host_concurrency, 2);
        assert_eq!(c.daemon.max_feed_bytes, 10 * 1024 * 1024);
        assert_eq!(c.daemon.base_url.as_str(), "http://127.0.0.1:8077/");
    }

    #[test]
    fn feeds_are_found_by_id_also_after_the_list_changed() {
        let text: String = (0..50)
            .map(|i| format!("[[feed]]\nid = \"f{i}\"\nurl = \"https://example.org/{i}.xml\"\n\n"))
            .collect();
        let mut c = parse(&text, Path::new("/srv/f.toml")).unwrap();
        for i in [0, 17, 49] {
            assert_eq!(
                c.feed(&format!("f{i}")).unwrap().url.as_str(),
                format!("https://example.org/{i}.xml")
            );
        }
        assert!(c.feed("f50").is_none());
        // The list is public; a stale index must not return the wrong feed.
        c.feeds.remove(0);
        assert_eq!(c.feed("f1").unwrap().id, "f1");
        assert!(c.feed("f0").is_none());
        c.feeds.swap(0, 1);
        assert_eq!(c.feed("f2").unwrap().id, "f2");
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let p = problems(
            r#"[daemon]
colour = "blue"
timeout = "soon"
max_feed_bytes = "10 parsecs"

[[feed]]
id = "a"
url = "ftp://example.org/x"

[[feed]]
id = "a"
url = "https://example.org/y"
schedule = "* * *"

[[topic]]
id = "t"
query = '"border security" OR (smuggling'
feeds = ["nope"]

[[topic]]
id = "empty"
"#,
        );
        let expected = [
            "/etc/fs/test.toml:2:1: unknown key 'colour' in [daemon]",
            "/etc/fs/test.toml:3:11: 'timeout': 'soon' is not a duration",
            "/etc/fs/test.toml:4:18: 'max_feed_bytes'",
            "/etc/fs/test.toml:8:7: 'ftp://example.org/x': scheme 'ftp' is not supported",
            "/etc/fs/test.toml:13:12: bad schedule",
            "/etc/fs/test.toml:11:6: duplicate feed id 'a'",
            "/etc/fs/test.toml:17:41: topic 't': bad query: expected ')' at the end",
            "/etc/fs/test.toml:20:1: topic 'empty' selects nothing",
            "/etc/fs/test.toml:15:1: topic 't' names unknown feed 'nope'",
        ];
        for e in expected {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expected.len(), "{p:#?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let p = problems("[daemon]\nlisten = \"127.0.0.1:1\"\ntimeout = \n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("/etc/fs/test.toml:3:"), "{p:?}");
    }

    /// Issue "Hostile feeds and crashes": a syntax error used to hide every other
    /// problem of the file.
    #[test]
    fn syntax_errors_do_not_hide_other_problems() {
        let p = problems("[daemon]\ntimeout = \n\n[[feed]]\nid = \"a\"\nurl = \"gopher://x/\"\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("/etc/fs/test.toml:2:"), "{p:?}");
        assert!(p[1].starts_with("/etc/fs/test.toml:6:7: 'gopher://x/'"), "{p:?}");
    }

    #[test]
    fn wrong_types_are_named() {
        let p = problems("[[feed]]\nid = 7\nurl = \"https://x.org/\"\ntags = \"x\"\nenabled = \"yes\"\n");
        assert!(p.iter().any(|m| m.contains("2:6: 'id' must be a string, not integer")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("'tags' must be a list")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("'enabled' must be true or false")), "{p:?}");
    }

    #[test]
    fn ids_must_be_url_safe() {
        let p = problems("[[feed]]\nid = \"a b\"\nurl = \"https://x.org/\"\n");
        assert!(p[0].contains("feed id 'a b': ' ' is not allowed"), "{p:?}");
    }

    /// Issue "For operators": a topic with an invalid id hid the errors of its query.
    #[test]
    fn a_topic_with_a_bad_id_still_has_its_query_checked() {
        let p = problems(
            "[[feed]]\nid = \"a\"\nurl = \"https://x.org/\"\n\n             [[topic]]\nid = \"border news\"\nquery = 'border AND'\nexclude = '(x'\nfeeds = [\"nope\"]\nlimit = 0\n",
        );
        let expected = [
            "/etc/fs/test.toml:6:6: topic id 'border news': ' ' is not allowed",
            "/etc/fs/test.toml:7:20: topic 'border news': bad query",
            "/etc/fs/test.toml:8:14: topic 'border news': bad exclude",
            "/etc/fs/test.toml:10:9: 'limit' = 0 is out of range",
        ];
        for e in expected {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert!(p.iter().any(|m| m.ends_with("topic 'border news' names unknown feed 'nope'")), "{p:#?}");
        assert_eq!(p.len(), expected.len() + 1, "{p:#?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    /// A byte count may be written as a bare integer too (it was refused as "must be a
    /// string" though the reference promised it).
    #[test]
    fn max_feed_bytes_takes_an_integer() {
        let c = parse("[daemon]\nmax_feed_bytes = 1048576\n", Path::new("/etc/fs/test.toml")).unwrap();
        assert_eq!(c.daemon.max_feed_bytes, 1_048_576);
        let p = problems("[daemon]\nmax_feed_bytes = 10\n");
        assert!(p.len() == 1 && p[0].contains("'max_feed_bytes' = 10 is out of range"), "{p:?}");
    }
}
