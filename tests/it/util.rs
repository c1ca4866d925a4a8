//! Helpers shared by the integration tests: a fixture HTTP server on 127.0.0.1:0, a
//! temporary config + database, and checks on rendered output.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use feedsieve::config::Config;
use feedsieve::daemon::{self, Clock, Pipeline};
use feedsieve::model::{Database, PollSummary};
use feedsieve::publish::Format;
use feedsieve::store::{Store, StoreHandle};

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

#[derive(Clone)]
struct Resource {
    /// Wait this long before answering.
    delay: std::time::Duration,
    status: StatusCode,
    body: Vec<u8>,
    content_type: String,
    etag: String,
    headers: Vec<(String, String)>,
    /// The `Authorization` value without which the answer is 401.
    authorization: Option<String>,
}

#[derive(Default)]
struct ServerState {
    files: HashMap<String, Resource>,
    /// Request headers seen, per path, in order.
    requests: HashMap<String, Vec<HeaderMap>>,
}

/// A real HTTP server serving fixture bodies with ETag and Last-Modified, answering
/// conditional requests with 304.
#[derive(Clone)]
pub struct FeedServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
}

/// The ETag [`FeedServer::put`] sends for `body`.
pub fn etag_of(body: &[u8]) -> String {
    format!(
        "\"{:x}\"",
        body.iter().fold(1469598103934665603u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(1099511628211))
    )
}

const LAST_MODIFIED: &str = "Mon, 01 Jun 2026 10:00:00 GMT";

impl FeedServer {
    pub async fn start() -> FeedServer {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let s = state.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let s = s.clone();
            async move {
                let delay =
                    s.lock().unwrap().files.get(req.uri().path()).map(|r| r.delay).unwrap_or_default();
                tokio::time::sleep(delay).await;
                serve(&s, req)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FeedServer { addr, state }
    }

    /// Serves `body` at `path`; the ETag changes whenever the body does.
    pub fn put(&self, path: &str, body: Vec<u8>, content_type: &str) {
        let etag = etag_of(&body);
        let r = Resource {
            delay: std::time::Duration::ZERO,
            status: StatusCode::OK,
            body,
            content_type: content_type.to_owned(),
            etag,
            headers: vec![],
            authorization: None,
        };
        self.state.lock().unwrap().files.insert(path.to_owned(), r);
    }

    /// Serves a fixed answer at `path`, unconditionally.
    pub fn put_raw(&self, path: &str, status: u16, headers: &[(&str, &str)], body: Vec<u8>) {
        let r = Resource {
            delay: std::time::Duration::ZERO,
            status: StatusCode::from_u16(status).unwrap(),
            body,
            content_type: "application/xml".into(),
            etag: String::new(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            authorization: None,
        };
        self.state.lock().unwrap().files.insert(path.to_owned(), r);
    }

    pub fn put_fixture(&self, path: &str, rel: &str) {
        let ct = if rel.ends_with(".json") {
            "application/feed+json"
        } else if rel.ends_with(".html") {
            "text/html; charset=utf-8"
        } else {
            "application/xml"
        };
        self.put(path, fixture(rel), ct);
    }

    /// Makes the answer at `path` wait `delay` before it starts.
    pub fn delay(&self, path: &str, delay: std::time::Duration) {
        if let Some(r) = self.state.lock().unwrap().files.get_mut(path) {
            r.delay = delay;
        }
    }

    /// Answers 401 at `path` unless the request carries exactly this `Authorization`.
    pub fn require_authorization(&self, path: &str, value: &str) {
        if let Some(r) = self.state.lock().unwrap().files.get_mut(path) {
            r.authorization = Some(value.to_owned());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self, path: &str) -> Vec<HeaderMap> {
        self.state.lock().unwrap().requests.get(path).cloned().unwrap_or_default()
    }
}

fn serve(state: &Mutex<ServerState>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut st = state.lock().unwrap();
    st.requests.entry(path.clone()).or_default().push(req.headers().clone());
    let Some(r) = st.files.get(&path).cloned() else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("not found")).unwrap();
    };
    if let Some(want) = &r.authorization
        && req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str())
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"partners\"")
            .body(Body::from("authentication required"))
            .unwrap();
    }
    if r.status != StatusCode::OK || !r.headers.is_empty() {
        let mut b = Response::builder().status(r.status);
        for (k, v) in &r.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        return b.body(Body::from(r.body)).unwrap();
    }
    let inm = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if inm == Some(r.etag.as_str()) {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &r.etag)
            .body(Body::empty())
            .unwrap();
    }
    Response::builder()
        .header(header::CONTENT_TYPE, r.content_type)
        .header(header::ETAG, r.etag)
        .header(header::LAST_MODIFIED, LAST_MODIFIED)
        .body(Body::from(r.body))
        .unwrap()
}

/// The store engines a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs tests, each `async fn name(engine: Engine)`, on each engine: as
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(crate::util::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name(crate::util::Engine::Postgres).await
            }
        })*
    };
}

/// A config file in a temporary folder, and its database: a SQLite file in that
/// folder, or a fresh database on the tests' PostgreSQL server.
pub struct Env {
    /// Removed (with a SQLite database) when the test ends.
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// The config path of an [`Env`] and a server base URL, to run the binary from a
/// blocking task while the fixture server keeps running.
pub struct CliEnv {
    pub config_path: PathBuf,
    pub base: String,
}

impl CliEnv {
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        run_cli(&self.config_path, args)
    }
}

fn run_cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

impl Env {
    /// `feeds_and_topics` is appended after a `[daemon]` table with a short timeout;
    /// the database is SQLite.
    pub fn new(feeds_and_topics: &str) -> Env {
        Env::on(Engine::Sqlite, feeds_and_topics)
    }

    /// As [`Env::new`], on `engine`.
    pub fn on(engine: Engine, feeds_and_topics: &str) -> Env {
        Env::with_daemon_on(engine, "timeout = \"5s\"", feeds_and_topics)
    }

    /// As [`Env::new`], with more `[daemon]` settings.
    pub fn with_daemon(daemon: &str, feeds_and_topics: &str) -> Env {
        Env::with_daemon_on(Engine::Sqlite, daemon, feeds_and_topics)
    }

    /// As [`Env::with_daemon`], on `engine`.
    pub fn with_daemon_on(engine: Engine, daemon: &str, feeds_and_topics: &str) -> Env {
        let database = match engine {
            Engine::Sqlite => "data/feedsieve.db".to_owned(),
            Engine::Postgres => crate::pg::server().fresh_database("it"),
        };
        Env::at(&database, daemon, feeds_and_topics)
    }

    /// A config whose `database` is `database` (a path, relative to the config's
    /// folder, or a URL).
    pub fn at(database: &str, daemon: &str, feeds_and_topics: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("feedsieve.toml");
        let text = format!(
            "[daemon]\ndatabase = \"{database}\"\n{daemon}\nbase_url = \"http://feeds.test/\"\n\n{feeds_and_topics}"
        );
        std::fs::write(&config_path, text).unwrap();
        Env { _dir: dir, config_path }
    }

    /// The SQLite file of a test that is SQLite's alone.
    pub fn sqlite_path(&self) -> PathBuf {
        match self.config().daemon.database {
            Database::Sqlite(path) => path,
            Database::Postgres(_) => panic!("a SQLite test on PostgreSQL"),
        }
    }

    /// The rows of `sql` (SQL both engines take), every value as text (`NULL` for
    /// null, integers and booleans as digits): a look inside with a connection of the
    /// test's own.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self.config().daemon.database {
            Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                                rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            Database::Postgres(target) => on_own_thread(move || {
                let mut c = postgres::Client::connect(&target.url, postgres::NoTls).unwrap();
                c.query(sql, &[]).unwrap().iter().map(pg_row_text).collect()
            }),
        }
    }

    /// Runs `sql` (SQL both engines take) with a connection of the test's own.
    pub fn execute(&self, sql: &str) {
        match self.config().daemon.database {
            Database::Sqlite(path) => {
                rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
            }
            Database::Postgres(target) => on_own_thread(move || {
                postgres::Client::connect(&target.url, postgres::NoTls).unwrap().batch_execute(sql).unwrap();
            }),
        }
    }

    pub fn config(&self) -> Config {
        feedsieve::daemon::load_config(&self.config_path).unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// One `feedsieve poll`, in process.
    pub async fn poll(&self) -> PollSummary {
        self.poll_at(Clock::new()).await
    }

    /// One `feedsieve poll` (with its retention step) on a clock that may be set ahead.
    pub async fn poll_at(&self, clock: Clock) -> PollSummary {
        let config = Arc::new(self.config());
        let feeds: Vec<_> = config.feeds.iter().filter(|f| f.enabled).cloned().collect();
        let store = Store::open(&config.daemon.database).unwrap();
        let (handle, writer) = StoreHandle::spawn(store).unwrap();
        let pipeline =
            Arc::new(Pipeline::with(config, handle, clock, Default::default(), Default::default()).unwrap());
        daemon::sync_feeds(&pipeline).await.unwrap();
        let summary = daemon::poll(&pipeline, feeds, |_, _| {}).await.unwrap().summary;
        daemon::maintain(&pipeline).await.unwrap();
        drop(pipeline);
        tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
        summary
    }

    pub fn store(&self) -> Store {
        Store::open_read_only(&self.config().daemon.database).unwrap()
    }

    /// The topic rendered in `format`.
    pub fn export(&self, topic: &str, format: Format) -> Vec<u8> {
        let config = self.config();
        let rendered = daemon::render_topic(&self.store(), &config, topic, chrono::Utc::now())
            .unwrap()
            .expect("topic exists");
        rendered.into_iter().find(|(f, _)| *f == format).unwrap().1.body
    }

    /// Runs the real binary with this config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        run_cli(&self.config_path, args)
    }

    /// What a blocking task needs to run the binary (the folder stays with `self`).
    pub fn clone_path(&self) -> CliEnv {
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        let base = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("url").and_then(|r| r.split('"').nth(1)))
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| {
                format!(
                    "{}://{}",
                    u.scheme(),
                    u.host_str().zip(u.port()).map(|(h, p)| format!("{h}:{p}")).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        CliEnv { config_path: self.config_path.clone(), base }
    }
}

/// Entry titles of a feed, parsed back with feed-rs (any format).
pub fn titles(body: &[u8]) -> Vec<String> {
    let feed = feed_rs::parser::parse(body).unwrap_or_else(|e| panic!("output does not parse: {e}"));
    feed.entries.iter().map(|e| e.title.as_ref().map(|t| t.content.clone()).unwrap_or_default()).collect()
}

/// Every text node and attribute value of an XML document, decoded, and a check that
/// the document is well-formed and free of characters XML forbids.
pub fn xml_strings(body: &[u8]) -> Vec<String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).expect("output is UTF-8");
    for c in text.chars() {
        assert!(
            !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}'),
            "forbidden character U+{:04X} in output",
            c as u32
        );
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                depth += 1;
                for a in e.attributes() {
                    let a = a.expect("well-formed attribute");
                    out.push(a.unescape_value().expect("attribute decodes").into_owned());
                }
            }
            Ok(Event::Empty(e)) => {
                for a in e.attributes() {
                    let a = a.expect("well-formed attribute");
                    out.push(a.unescape_value().expect("attribute decodes").into_owned());
                }
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Text(t)) => out.push(t.decode().expect("text decodes").into_owned()),
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().expect("entity decodes");
                out.push(match name.as_ref() {
                    "lt" => "<".into(),
                    "gt" => ">".into(),
                    "amp" => "&".into(),
                    "quot" => "\"".into(),
                    "apos" => "'".into(),
                    other => panic!("undeclared entity &{other};"),
                });
            }
            Ok(Event::CData(t)) => out.push(String::from_utf8_lossy(&t).into_owned()),
            Ok(_) => {}
            Err(e) => panic!("output is not well-formed XML: {e}"),
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    // Adjacent text and entity pieces form one string in the document; join them so a
    // payload split by an escape is still seen whole.
    vec![out.join("")]
}

/// Every string of a JSON document.
pub fn json_strings(body: &[u8]) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                walk(x, out)
            }),
            _ => {}
        }
    }
    let v: serde_json::Value = serde_json::from_slice(body).expect("output is JSON");
    let mut out = Vec::new();
    walk(&v, &mut out);
    out
}

/// The decoded strings of a rendered topic in any format.
pub fn strings(format: Format, body: &[u8]) -> Vec<String> {
    match format {
        Format::Json => json_strings(body),
        _ => xml_strings(body),
    }
}

/// `(tag, rel, href)` of every `<a>` and `<link>` start tag, read by a real HTML
/// tokenizer (html5ever, the one browsers' behaviour is specified by).
pub fn html_links(html: &str) -> Vec<(String, String, String)> {
    html_start_tags(html)
        .into_iter()
        .filter(|(tag, _)| tag == "a" || tag == "link")
        .map(|(tag, attrs)| {
            let attr =
                |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
            let (rel, href) = (attr("rel"), attr("href"));
            (tag, rel, href)
        })
        .collect()
}

/// The `xmlUrl` of every outline of an OPML document, read with an XML parser that
/// rejects anything malformed.
pub fn opml_feed_urls(opml: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(opml);
    reader.config_mut().check_end_names = true;
    let mut urls = Vec::new();
    let mut saw_root = false;
    loop {
        match reader.read_event().expect("OPML is well-formed") {
            Event::Eof => break,
            Event::Start(e) if e.name().as_ref() == b"opml" => {
                saw_root = true;
                let v = e.try_get_attribute("version").unwrap().expect("version attribute");
                assert_eq!(&*v.value, b"2.0");
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"outline" => {
                if let Some(a) = e.try_get_attribute("xmlUrl").unwrap() {
                    urls.push(a.unescape_value().unwrap().into_owned());
                }
            }
            _ => {}
        }
    }
    assert!(saw_root, "no <opml> root");
    urls
}

/// `(tag, [(attribute, value)])` of every start tag of an HTML document, read by
/// html5ever's tokenizer (what a browser would see).
pub fn html_start_tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer};
    type Tags = Vec<(String, Vec<(String, String)>)>;
    struct Sink(std::cell::RefCell<Tags>);
    impl TokenSink for Sink {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            if let Token::TagToken(Tag { kind: TagKind::StartTag, name, attrs, .. }) = token {
                let attrs = attrs.iter().map(|a| (a.name.local.to_string(), a.value.to_string())).collect();
                self.0.borrow_mut().push((name.to_string(), attrs));
            }
            TokenSinkResult::Continue
        }
    }
    let tok = Tokenizer::new(Sink(Default::default()), Default::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from(html));
    let _ = tok.feed(&queue);
    tok.end();
    tok.sink.0.take()
}

/// The index page and `/topics.opml` as the daemon's HTTP server answers them for
/// `env`'s config and database.
pub async fn served_pages(env: &Env) -> (String, String) {
    let mut pages = served(env, &["/", "/topics.opml"]).await;
    let opml = pages.pop().unwrap_or_default();
    (pages.pop().unwrap_or_default(), opml)
}

/// Each of `paths` as the daemon's HTTP server answers it (200 asserted) for `env`'s
/// config and database.
pub async fn served(env: &Env, paths: &[&str]) -> Vec<String> {
    use feedsieve::serve::{AppState, router};
    use std::sync::RwLock;
    let config = Arc::new(env.config());
    let (store, _writer) = StoreHandle::spawn(Store::open(&config.daemon.database).unwrap()).unwrap();
    let state = Arc::new(AppState {
        config: RwLock::new(config),
        feeds: RwLock::new(HashMap::new()),
        store,
        metrics: Default::default(),
        node: "test".into(),
        websub: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    feedsieve::fetch::install_tls_provider();
    let http = reqwest::Client::new();
    let mut pages = Vec::new();
    for p in paths {
        let r = http.get(format!("http://{addr}{p}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        pages.push(r.text().await.unwrap());
    }
    task.abort();
    pages
}

/// Runs `f` on a thread of its own (the sync PostgreSQL client must not block a
/// runtime's worker thread).
fn on_own_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// A PostgreSQL row's values as text, as [`Env::rows`] gives them.
fn pg_row_text(row: &postgres::Row) -> Vec<String> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let t = row.columns()[i].type_().clone();
            let v = if t == Type::INT8 {
                row.get::<_, Option<i64>>(i).map(|v| v.to_string())
            } else if t == Type::INT4 {
                row.get::<_, Option<i32>>(i).map(|v| v.to_string())
            } else if t == Type::BOOL {
                row.get::<_, Option<bool>>(i).map(|v| u8::from(v).to_string())
            } else if t == Type::FLOAT8 {
                row.get::<_, Option<f64>>(i).map(|v| v.to_string())
            } else {
                row.get::<_, Option<String>>(i)
            };
            v.unwrap_or_else(|| "NULL".to_owned())
        })
        .collect()
}

/// Kills the child when a test fails half-way.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reap {
    /// Waits for the child to exit on its own; a hang fails the test.
    pub fn wait_exit(&mut self, what: &str) -> std::process::ExitStatus {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < give_up, "{what}: the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The real daemon (`feedsieve run`), its address learnt from its log.
pub struct Daemon {
    pub child: Reap,
    pub base: String,
    pub log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Daemon {
    pub async fn start(cmd: Command) -> Daemon {
        Daemon::start_with(cmd, &[]).await
    }

    /// As [`Daemon::start`], with more arguments to `run`.
    pub async fn start_with(cmd: Command, args: &[&str]) -> Daemon {
        Daemon::start_logging(cmd, args, "info").await
    }

    /// As [`Daemon::start_with`], logging what `filter` (a `RUST_LOG` value) lets
    /// through, which must include `feedsieve=info`: the address is learnt from the
    /// log. `IT_LOG` set in the tests' environment replaces `filter`.
    pub async fn start_logging(mut cmd: Command, args: &[&str], filter: &str) -> Daemon {
        cmd.env("RUST_LOG", std::env::var("IT_LOG").ok().filter(|v| !v.is_empty()).unwrap_or(filter.into()));
        cmd.arg("run").args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        feedsieve::fetch::install_tls_provider();
        let mut d = Daemon { child: Reap(child), base: String::new(), log, http: reqwest::Client::new() };
        let log = d.wait_log("the daemon to listen", |l| l.contains("serving on ")).await;
        let addr = log.split("serving on ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
        d.base = format!("http://{addr}");
        d
    }

    /// Waits until the log satisfies `check`; the daemon exiting first fails the test.
    pub async fn wait_log(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        for _ in 0..1200 {
            let log = self.log.lock().unwrap().clone();
            if check(&log) {
                return log;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await; // the rest of the log
                panic!("waiting for {what}: the daemon exited with {status}:\n{}", self.log.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}:\n{}", self.log.lock().unwrap());
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn topic_titles(&self, topic: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/topics/{topic}.json")).await;
        assert_eq!(status, 200, "{body}");
        crate::util::titles(body.as_bytes())
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.0.id() as libc::pid_t, sig) }, 0);
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait_exit("the daemon after SIGTERM")
    }
}

impl Drop for Daemon {
    /// A test failing while the daemon runs shows the end of the daemon's log (set
    /// `IT_LOG`, e.g. `IT_LOG=feedsieve=debug`, for more than `info`).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- the last {} lines of the daemon at {}:\n{}",
                tail.len(),
                self.base,
                tail.join("\n")
            );
        }
    }
}
