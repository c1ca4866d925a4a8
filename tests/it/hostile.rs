//! Hostile feeds, scenario by scenario ("Hostile feeds and crashes").
//!
//! Every scenario runs through one harness, [`Scenario`]: a healthy control feed and
//! one or more hostile feeds. A first poll (in process) stores each feed's seed items;
//! then the hostile feeds turn hostile, the control feed gains an item, and the real
//! binary runs `feedsieve poll` and `feedsieve status --json`. [`Scenario::hostile_poll`]
//! then checks what holds for every scenario:
//!
//! - the process survived (`poll` exited 0) and the control feed's new item was stored
//!   and published in that same pass;
//! - every topic output (Atom, RSS, JSON Feed), the HTML index page and the OPML are
//!   well-formed, free of characters XML forbids and of active content.
//!
//! Each test then says what the hostile feed must have led to: its error (named in the
//! log and in `status --json`, with its earlier items kept), or what was stored.
//!
//! Transport scenarios that no HTTP library would produce (never answering, one byte
//! a second, garbage, a 100 GB `Content-Length`, an endless chunked body) use
//! [`RawServer`], a hand-written server on a tokio `TcpListener`.
//!
//! Timeouts are short (`timeout = "2s"`); no test asserts a wall-clock time.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feedsieve::publish::Format;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pipeline::FORBIDDEN;
use crate::util::{Engine, Env, FeedServer, fixture, html_start_tags, opml_feed_urls, served_pages, strings};

// The cases that store what a hostile feed sends run on each store engine; the
// transport cases never reach the store.
on_both_engines!(
    xml_cut_off_mid_item_stores_nothing_from_that_poll,
    xml_characters_xml_forbids,
    content_xss_corpus_in_every_field_and_format,
    content_50000_items_in_one_feed,
    content_a_9_mib_description_and_a_huge_title,
    content_duplicate_guids_within_a_feed,
    content_items_without_ids_and_ids_that_change_every_poll,
    content_dates_in_9999_0001_feb_30_and_garbage,
);

// ---------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------

/// An RSS 2.0 document with items `(guid, title, description)`.
fn rss(title: &str, items: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>{title}</title>\
         <link>https://site.example/</link><description>d</description>\n"
    );
    for (i, (guid, t, d)) in items.iter().enumerate() {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{guid}</guid><title>{t}</title>\
             <link>https://site.example/{guid}</link>\
             <pubDate>Sun, {:02} Nov 2026 10:00:00 GMT</pubDate><description>{d}</description></item>\n",
            i + 1
        ));
    }
    s.push_str("</channel></rss>\n");
    s.into_bytes()
}

fn control(version: usize) -> Vec<u8> {
    let items: Vec<(String, String, String)> = (1..=version + 1)
        .map(|n| {
            (format!("control-{n}"), format!("CONTROLMARKER{n} control story"), format!("Control text {n}."))
        })
        .collect();
    let refs: Vec<_> = items.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    rss("Control", &refs)
}

/// The healthy document a hostile feed serves before it turns: two items whose titles
/// carry `SEEDMARKER-{id}-1` and `-2`.
fn seed(id: &str) -> Vec<u8> {
    let items: Vec<(String, String, String)> = (1..=2)
        .map(|n| {
            (format!("seed-{id}-{n}"), format!("SEEDMARKER-{id}-{n} earlier story"), format!("Seed {n}."))
        })
        .collect();
    let refs: Vec<_> = items.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    rss("Seed", &refs)
}

/// A healthy document of `n` items unlike any other feed's: titles `NEWMARKER-{id}-k`.
fn fresh(id: &str, n: usize) -> Vec<u8> {
    let items: Vec<(String, String, String)> = (1..=n)
        .map(|k| (format!("{id}-new-{k}"), format!("NEWMARKER-{id}-{k} new story"), format!("New {k}.")))
        .collect();
    let refs: Vec<_> = items.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    rss("Fresh", &refs)
}

/// One scenario: the control feed at the fixture server's `/control`, hostile feeds
/// at their URLs, and topics `control`, `hostile` (every hostile feed) and `all`.
struct Scenario {
    server: FeedServer,
    env: Env,
    hostile: Vec<String>,
}

/// What the hostile pass left: the binary's log and `status --json`.
struct Outcome {
    log: String,
    status: serde_json::Value,
}

impl Scenario {
    /// Hostile feeds `(id, url)`; a `None` URL is the fixture server's `/h/{id}`, which
    /// serves the seed until the test puts something else there.
    async fn new(daemon: &str, hostile: &[(&str, Option<String>)]) -> Scenario {
        Scenario::new_on(Engine::Sqlite, daemon, hostile).await
    }

    /// As [`Scenario::new`], on `engine`.
    async fn new_on(engine: Engine, daemon: &str, hostile: &[(&str, Option<String>)]) -> Scenario {
        let server = FeedServer::start().await;
        server.put("/control", control(1), "application/rss+xml");
        let mut feeds = format!("[[feed]]\nid = \"control\"\nurl = \"{}\"\n\n", server.url("/control"));
        for (id, url) in hostile {
            let url = url.clone().unwrap_or_else(|| {
                server.put(&format!("/h/{id}"), seed(id), "application/rss+xml");
                server.url(&format!("/h/{id}"))
            });
            feeds.push_str(&format!("[[feed]]\nid = \"{id}\"\nurl = \"{url}\"\n\n"));
        }
        let ids: Vec<String> = hostile.iter().map(|(id, _)| format!("\"{id}\"")).collect();
        feeds.push_str(&format!(
            "[[topic]]\nid = \"control\"\nfeeds = [\"control\"]\n\n\
             [[topic]]\nid = \"hostile\"\nfeeds = [{}]\nlimit = 1000\n\n\
             [[topic]]\nid = \"all\"\nfeeds = [\"control\", {}]\nlimit = 1000\n",
            ids.join(", "),
            ids.join(", ")
        ));
        let env = Env::with_daemon_on(engine, &format!("timeout = \"2s\"\n{daemon}"), &feeds);
        let hostile = hostile.iter().map(|(id, _)| (*id).to_owned()).collect();
        Scenario { server, env, hostile }
    }

    /// A scenario with one hostile feed, served by the fixture server at `/h/{id}`.
    async fn one(id: &str) -> Scenario {
        Scenario::new("", &[(id, None)]).await
    }

    /// As [`Scenario::one`], on `engine`.
    async fn one_on(engine: Engine, id: &str) -> Scenario {
        Scenario::new_on(engine, "", &[(id, None)]).await
    }

    fn path(&self, id: &str) -> String {
        format!("/h/{id}")
    }

    /// The first, healthy poll: every feed's seed is stored.
    async fn seed(&self) {
        let s = self.env.poll().await;
        assert_eq!(s.failed, 0, "the seed poll: {s:?}");
        let store = self.env.store();
        assert_eq!(store.feed("control").unwrap().unwrap().items, 2);
        for id in &self.hostile {
            assert_eq!(store.feed(id).unwrap().unwrap().items, 2, "seed of {id}");
        }
    }

    /// The hostile pass with the real binary, and the checks every scenario shares.
    async fn hostile_poll(&self) -> Outcome {
        self.server.put("/control", control(2), "application/rss+xml");
        let cli = self.env.clone_path();
        let (poll, status) = tokio::task::spawn_blocking(move || {
            let poll = cli.cli(&["poll"]);
            (poll, cli.cli(&["status", "--json"]))
        })
        .await
        .unwrap();
        let log = String::from_utf8_lossy(&poll.stderr).into_owned();
        assert!(poll.status.success(), "poll died ({:?}): {log}", poll.status);
        assert!(status.status.success(), "status: {}", String::from_utf8_lossy(&status.stderr));
        let status: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status --json is JSON");
        let out = Outcome { log, status };

        // The control feed: polled, stored and published in the same pass.
        let control = out.feed("control");
        assert_eq!(control["error"], serde_json::Value::Null, "control: {control}");
        assert_eq!(control["items"], 3, "control: {control}");
        for format in Format::ALL {
            let text = self.output("control", format).join("\n");
            assert!(text.contains("CONTROLMARKER3"), "{format:?}: the control item of this pass: {text}");
        }
        // Every output well-formed and clean (the XML checks are in `strings`).
        for topic in ["hostile", "all"] {
            for format in Format::ALL {
                self.output(topic, format);
            }
        }
        check_pages(&self.env).await;
        out
    }

    /// The decoded strings of a topic output, after checking it is well-formed, parses
    /// as a feed and carries no active content.
    fn output(&self, topic: &str, format: Format) -> Vec<String> {
        let body = self.env.export(topic, format);
        feed_rs::parser::parse(&body[..])
            .unwrap_or_else(|e| panic!("{topic} {format:?} does not parse: {e}"));
        let decoded = strings(format, &body);
        let raw = String::from_utf8_lossy(&body).to_lowercase();
        let lower = decoded.join("\n").to_lowercase();
        for bad in FORBIDDEN {
            for (what, text) in [("raw", &raw), ("decoded", &lower)] {
                if let Some(at) = text.find(bad) {
                    let context: String = text[at..].chars().take(100).collect();
                    panic!("{topic} {format:?}: {what} output contains {bad}: {context}…");
                }
            }
        }
        decoded
    }

    fn output_text(&self, topic: &str) -> String {
        Format::ALL.iter().map(|f| self.output(topic, *f).join("\n")).collect::<Vec<_>>().join("\n")
    }
}

impl Outcome {
    fn feed(&self, id: &str) -> &serde_json::Value {
        self.status["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in status: {}", self.status))
    }

    /// The hostile feed `id` failed with an error containing `expect`, named in the
    /// log and in `status --json`, and its earlier items are still stored.
    fn failed(&self, s: &Scenario, id: &str, expect: &str) {
        let f = self.feed(id);
        let err = f["error"].as_str().unwrap_or_else(|| panic!("{id} has no error: {f}"));
        assert!(err.contains(expect), "{id}: error {err:?} lacks {expect:?}");
        assert_eq!(f["items"], 2, "{id}: the earlier items remain: {f}");
        let line = self
            .log
            .lines()
            .find(|l| l.contains(&format!("feed={id} ")) || l.ends_with(&format!("feed={id}")))
            .unwrap_or_else(|| panic!("no log line names {id}: {}", self.log));
        assert!(line.contains(expect), "{id}: log line {line:?} lacks {expect:?}");
        let text = s.output_text("hostile");
        for n in 1..=2 {
            assert!(text.contains(&format!("SEEDMARKER-{id}-{n}")), "{id}: seed item {n} still published");
        }
    }

    /// The hostile feed `id` was read without error and holds `items` items.
    fn stored(&self, id: &str, items: i64) {
        let f = self.feed(id);
        assert_eq!(f["error"], serde_json::Value::Null, "{id}: {f}");
        assert_eq!(f["items"], items, "{id}: {f}");
    }
}

/// The index page and the OPML: well-formed, no active content.
async fn check_pages(env: &Env) {
    let (page, opml) = served_pages(env).await;
    for (tag, attrs) in html_start_tags(&page) {
        assert!(
            !matches!(
                tag.as_str(),
                "script"
                    | "iframe"
                    | "form"
                    | "object"
                    | "embed"
                    | "base"
                    | "frame"
                    | "input"
                    | "math"
                    | "noscript"
            ),
            "index page has <{tag}>"
        );
        if tag == "meta" {
            assert!(attrs.iter().all(|(n, _)| n != "http-equiv"), "index page has a meta refresh");
        }
        for (name, value) in &attrs {
            assert!(!name.starts_with("on"), "index page: <{tag} {name}=…>");
            if matches!(name.as_str(), "href" | "src" | "action" | "formaction" | "xlink:href") {
                let v: String =
                    value.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_control()).collect();
                let v = v.to_lowercase();
                let scheme_ok = v.starts_with("http://")
                    || v.starts_with("https://")
                    || !v.split(['/', '?', '#']).next().unwrap_or("").contains(':');
                assert!(scheme_ok, "index page: <{tag} {name}={value:?}>");
            }
        }
    }
    let urls = opml_feed_urls(&opml);
    assert_eq!(urls.len(), 3, "{opml}");
    assert!(!opml.to_lowercase().contains("<script"), "{opml}");
}

// ---------------------------------------------------------------------------------
// A hand-written HTTP server for what axum would never send
// ---------------------------------------------------------------------------------

#[derive(Clone)]
enum Behaviour {
    /// A correct `200 OK` with this body, then close.
    Feed(Vec<u8>),
    /// Reads the request, never answers, holds the connection.
    Silent,
    /// A correct answer, sent one byte a second.
    Slowloris(Vec<u8>),
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// `head`, then `chunk` again and again until the client hangs up.
    Endless { head: Vec<u8>, chunk: Vec<u8> },
}

struct RawServer {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    async fn start(b: Behaviour) -> RawServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(b));
        let connections = Arc::new(AtomicUsize::new(0));
        let (b, n) = (behaviour.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                let b = b.lock().unwrap().clone();
                tokio::spawn(answer(sock, b));
            }
        });
        RawServer { addr, behaviour, connections, task }
    }

    fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    fn url(&self) -> String {
        format!("http://{}/feed", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn answer(mut sock: tokio::net::TcpStream, b: Behaviour) {
    // Read the request head (requests here have no body).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match b {
        Behaviour::Feed(body) => {
            let _ = sock.write_all(&ok_response(&body)).await;
            let _ = sock.shutdown().await;
        }
        Behaviour::Silent => {
            // Hold the connection until the client gives up.
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        Behaviour::Slowloris(body) => {
            for byte in ok_response(&body) {
                if sock.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Behaviour::Raw(bytes) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Behaviour::Endless { head, chunk } => {
            if sock.write_all(&head).await.is_err() {
                return;
            }
            while sock.write_all(&chunk).await.is_ok() {}
        }
    }
}

/// A hostile feed served by a [`RawServer`] that serves the seed first.
async fn raw_scenario(daemon: &str) -> (RawServer, Scenario) {
    let raw = RawServer::start(Behaviour::Feed(seed("raw"))).await;
    let s = Scenario::new(daemon, &[("raw", Some(raw.url()))]).await;
    s.seed().await;
    (raw, s)
}

// ---------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn transport_a_server_that_accepts_and_never_answers() {
    let (raw, s) = raw_scenario("").await;
    raw.set(Behaviour::Silent);
    s.hostile_poll().await.failed(&s, "raw", "no complete answer within 2s");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_slowloris_one_byte_a_second() {
    let (raw, s) = raw_scenario("").await;
    raw.set(Behaviour::Slowloris(seed("raw")));
    s.hostile_poll().await.failed(&s, "raw", "no complete answer within 2s");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_connection_refused() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    let raw = RawServer::start(Behaviour::Feed(seed("raw"))).await;
    let s = Scenario::new("", &[("raw", Some(raw.url()))]).await;
    s.seed().await;
    // The same feed now at a port nobody listens on.
    drop(closed);
    let text = std::fs::read_to_string(&s.env.config_path).unwrap();
    std::fs::write(&s.env.config_path, text.replace(&raw.addr.to_string(), &addr.to_string())).unwrap();
    s.hostile_poll().await.failed(&s, "raw", "Connection refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_a_truncated_body() {
    let (raw, s) = raw_scenario("").await;
    let body = control(2);
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body[..body.len() / 2]);
    raw.set(Behaviour::Raw(r));
    s.hostile_poll().await.failed(&s, "raw", "request failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_protocol_garbage() {
    let (raw, s) = raw_scenario("").await;
    let mut garbage = b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x1b[31m\r\n\r\n".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    raw.set(Behaviour::Raw(garbage));
    s.hostile_poll().await.failed(&s, "raw", "request failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_a_content_length_of_100_gb() {
    let (raw, s) = raw_scenario("max_feed_bytes = \"1MiB\"").await;
    raw.set(Behaviour::Endless {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 107374182400\r\n\r\n<rss>"
            .to_vec(),
        chunk: vec![b' '; 64 * 1024],
    });
    s.hostile_poll().await.failed(&s, "raw", "larger than the limit of 1048576 bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_an_endless_chunked_body() {
    let (raw, s) = raw_scenario("max_feed_bytes = \"1MiB\"").await;
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
    chunk.extend_from_slice(b"\r\n");
    raw.set(Behaviour::Endless {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<rss>\r\n"
            .to_vec(),
        chunk,
    });
    s.hostile_poll().await.failed(&s, "raw", "larger than the limit of 1048576 bytes");
}

/// 64 MiB of XML that gzip packs into about 64 KiB, announced or not.
fn gzip_bomb() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"<rss version=\"2.0\"><channel><title>bomb</title><description>").unwrap();
    let block = [b'a'; 64 * 1024];
    for _ in 0..1024 {
        gz.write_all(&block).unwrap();
    }
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_a_gzip_bomb_stops_at_the_decoded_cap() {
    let (raw, s) = raw_scenario("max_feed_bytes = \"1MiB\"").await;
    let bomb = gzip_bomb();
    assert!(bomb.len() < 256 * 1024, "compressed {} bytes", bomb.len());
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    r.extend_from_slice(&bomb);
    raw.set(Behaviour::Raw(r));
    s.hostile_poll().await.failed(&s, "raw", "larger than the limit of 1048576 bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_redirect_loops_and_a_15_hop_chain() {
    let s = Scenario::new("", &[("loop", None), ("pingpong", None), ("chain", None)]).await;
    s.seed().await;
    s.server.put_raw(&s.path("loop"), 302, &[("location", "/h/loop")], vec![]);
    s.server.put_raw(&s.path("pingpong"), 307, &[("location", "/pong")], vec![]);
    s.server.put_raw("/pong", 308, &[("location", "/h/pingpong")], vec![]);
    s.server.put_raw(&s.path("chain"), 302, &[("location", "/hop1")], vec![]);
    for i in 1..15 {
        s.server.put_raw(&format!("/hop{i}"), 301, &[("location", &format!("/hop{}", i + 1))], vec![]);
    }
    s.server.put("/hop15", fresh("chain", 1), "application/rss+xml");
    let out = s.hostile_poll().await;
    for id in ["loop", "pingpong", "chain"] {
        out.failed(&s, id, "more than 10 redirects");
    }
    assert!(s.server.requests("/hop15").is_empty(), "the 15th hop is never reached");
    assert_eq!(s.server.requests("/h/loop").len(), 2 + 10, "seed, then 11 requests, no retries");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_429_and_503_with_retry_after_are_capped_without_a_storm() {
    let s = Scenario::new("", &[("busy", None), ("down", None), ("dated", None)]).await;
    s.seed().await;
    s.server.put_raw(&s.path("busy"), 429, &[("retry-after", "99999999999")], b"slow down".to_vec());
    s.server.put_raw(&s.path("down"), 503, &[("retry-after", "600")], b"maintenance".to_vec());
    s.server.put_raw(
        &s.path("dated"),
        503,
        &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
        b"maintenance".to_vec(),
    );
    let before = chrono::Utc::now().timestamp();
    let out = s.hostile_poll().await;
    out.failed(&s, "busy", "HTTP 429");
    out.failed(&s, "down", "HTTP 503");
    out.failed(&s, "dated", "HTTP 503");
    let store = s.env.store();
    let due = |id: &str| store.feed(id).unwrap().unwrap().next_due.unwrap() - before;
    let day = 24 * 3600;
    // A huge delay is capped at 24 h (backoff jitter aside), a sane one honoured.
    assert!((day - 60..=day + 3600).contains(&due("busy")), "busy due in {}s", due("busy"));
    assert!((day - 60..=day + 3600).contains(&due("dated")), "dated due in {}s", due("dated"));
    assert!(due("down") >= 600 && due("down") < day, "down due in {}s", due("down"));
    // One request per feed per pass: no retry storm.
    for id in ["busy", "down", "dated"] {
        assert_eq!(s.server.requests(&s.path(id)).len(), 2, "{id}: the seed poll and one more");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_an_empty_200() {
    let s = Scenario::one("empty").await;
    s.seed().await;
    s.server.put(&s.path("empty"), Vec::new(), "application/rss+xml");
    s.hostile_poll().await.failed(&s, "empty", "the body is empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_an_html_page_or_a_challenge_page_instead_of_a_feed() {
    let s = Scenario::new("", &[("page", None), ("challenge", None), ("challenge200", None)]).await;
    s.seed().await;
    s.server.put_fixture(&s.path("page"), "html_page.html");
    let challenge = fixture("hostile/challenge.html");
    s.server.put_raw(
        &s.path("challenge"),
        403,
        &[("content-type", "text/html; charset=UTF-8"), ("cf-mitigated", "challenge")],
        challenge.clone(),
    );
    s.server.put(&s.path("challenge200"), challenge, "text/html; charset=UTF-8");
    let out = s.hostile_poll().await;
    out.failed(&s, "page", "HTML page");
    out.failed(&s, "challenge", "HTTP 403");
    out.failed(&s, "challenge200", "HTML page");
}

// ---------------------------------------------------------------------------------
// Redirect policy
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn redirects_never_lead_to_other_schemes_metadata_unspecified_or_ourselves() {
    // The daemon's listen address: a real listener, so a request there would be seen.
    let own = RawServer::start(Behaviour::Feed(fresh("own", 1))).await;
    let port = own.addr.port();
    let targets: Vec<(&str, String, &str)> = vec![
        ("file", "file:///etc/passwd".into(), "only http and https"),
        ("gopher", "gopher://127.0.0.1:70/".into(), "only http and https"),
        ("ftp", "ftp://127.0.0.1/feed".into(), "only http and https"),
        ("meta4", "http://169.254.169.254/latest/meta-data/".into(), "link-local or metadata"),
        ("meta6", "http://[fd00:ec2::254]/latest/meta-data/".into(), "cloud metadata address"),
        ("mapped", "http://[::ffff:169.254.169.254]/".into(), "link-local or metadata"),
        ("mappedhex", "http://[::ffff:a9fe:a9fe]/".into(), "link-local or metadata"),
        ("decimal", "http://2852039166/".into(), "link-local or metadata"),
        ("any4", format!("http://0.0.0.0:{port}/feed"), "unspecified address"),
        ("any6", format!("http://[::]:{port}/feed"), "unspecified address"),
        ("self", format!("http://127.0.0.1:{port}/feed"), "the daemon's own address"),
        ("selfname", format!("http://localhost:{port}/feed"), "the daemon's own address"),
    ];
    let mut feeds: Vec<(&str, Option<String>)> = targets.iter().map(|(id, _, _)| (*id, None)).collect();
    feeds.push(("allowed", None));
    let s = Scenario::new(&format!("listen = \"127.0.0.1:{port}\""), &feeds).await;
    s.seed().await;
    for (id, to, _) in &targets {
        s.server.put_raw(&s.path(id), 302, &[("location", to)], vec![]);
    }
    // A redirect through a host name that resolves to loopback (another port) is fine.
    let final_url = format!("http://localhost:{}/final", s.server.addr.port());
    s.server.put_raw(&s.path("allowed"), 302, &[("location", &final_url)], vec![]);
    s.server.put("/final", fresh("allowed", 3), "application/rss+xml");
    let out = s.hostile_poll().await;
    for (id, to, why) in &targets {
        out.failed(&s, id, why);
        let err = out.feed(id)["error"].as_str().unwrap().to_owned();
        assert!(err.contains("refused"), "{id}: {err} (to {to})");
    }
    out.stored("allowed", 2 + 3);
    assert_eq!(own.connections.load(Ordering::SeqCst), 0, "nothing reached the daemon's own address");
}

// ---------------------------------------------------------------------------------
// XML
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn xml_billion_laughs_is_not_expanded() {
    let s = Scenario::one("laughs").await;
    s.seed().await;
    s.server.put_fixture(&s.path("laughs"), "hostile/billion_laughs.xml");
    let out = s.hostile_poll().await;
    out.stored("laughs", 3);
    let text = s.output_text("hostile");
    assert!(text.contains("LAUGHMARKER &lol9;"), "the reference stays text: {text}");
    assert!(!text.contains("lollollol"), "an entity was expanded");
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_external_entities_are_never_fetched_or_read() {
    let canary = RawServer::start(Behaviour::Feed(b"<!ENTITY x \"CANARYSEEN\">".to_vec())).await;
    let s = Scenario::one("xxe").await;
    s.seed().await;
    let doc =
        String::from_utf8(fixture("hostile/xxe.xml")).unwrap().replace("CANARY", &canary.addr.to_string());
    s.server.put(&s.path("xxe"), doc.into_bytes(), "application/rss+xml");
    let out = s.hostile_poll().await;
    out.stored("xxe", 2 + 2);
    let text = s.output_text("hostile");
    assert!(!text.contains("root:") && !text.contains("CANARYSEEN"), "{text}");
    assert_eq!(canary.connections.load(Ordering::SeqCst), 0, "the canary port saw a request");
}

/// 100,000 nested elements in each place a parser might recurse: under the root,
/// inside an item's description, in Atom `type="xhtml"` content, unclosed, and a JSON
/// Feed nested as deep. A stack overflow would kill the process (and every feed with
/// it). quick-xml refuses XML nested deeper than 65,535 elements, so the same places
/// are also tried at 60,000 levels, which reach feed-rs and the sanitiser.
#[tokio::test(flavor = "multi_thread")]
async fn xml_100000_levels_of_nesting() {
    let deep = |n: usize, open: &str, close: &str| format!("{}{}", open.repeat(n), close.repeat(n));
    let under_root = |n| {
        format!(
            "<rss version=\"2.0\"><channel><title>Deep</title>{}<item><guid>deep-1</guid><title>DEEPMARKER</title></item></channel></rss>",
            deep(n, "<x>", "</x>")
        )
    };
    let in_item = |n| {
        format!(
            "<rss version=\"2.0\"><channel><title>Deep</title><item><guid>deep-1</guid><title>DEEPMARKER</title>\
             <description>{}</description></item></channel></rss>",
            deep(n, "<div>", "</div>")
        )
    };
    let xhtml = |n| {
        format!(
            "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>Deep</title><id>urn:deep</id>\
             <updated>2026-11-01T00:00:00Z</updated><entry><id>urn:deep:1</id><title>DEEPMARKER</title>\
             <updated>2026-11-01T00:00:00Z</updated><content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div></content></entry></feed>",
            deep(n, "<b>", "</b>")
        )
    };
    let unclosed = format!("<rss version=\"2.0\"><channel><title>Deep</title>{}", "<x>".repeat(100_000));
    let json = format!(
        "{{\"version\":\"https://jsonfeed.org/version/1.1\",\"title\":\"Deep\",\"items\":[{{\"id\":\"deep-1\",\"title\":\"DEEPMARKER\",\"content_html\":\"{}\",\"_x\":{}}}]}}",
        deep(100_000, "<i>", "</i>"),
        deep(100_000, "[", "]")
    );
    let docs = [
        ("root", under_root(100_000)),
        ("item", in_item(100_000)),
        ("xhtml", xhtml(100_000)),
        ("unclosed", unclosed),
        ("root60k", under_root(60_000)),
        ("item60k", in_item(60_000)),
        ("xhtml60k", xhtml(60_000)),
        ("json", json),
    ];
    let ids = docs.iter().map(|(id, _)| (*id, None)).collect::<Vec<_>>();
    let s = Scenario::new("", &ids).await;
    s.seed().await;
    for (id, doc) in &docs {
        s.server.put(&s.path(id), doc.clone().into_bytes(), "application/xml");
    }
    let out = s.hostile_poll().await;
    for id in ["root", "item", "xhtml", "unclosed"] {
        out.failed(&s, id, "nests elements deeper than the supported limit");
    }
    for id in ["root60k", "item60k", "xhtml60k", "json"] {
        out.stored(id, 3);
    }
    // The four deep items are published, once each per format.
    for format in Format::ALL {
        let text = s.output("hostile", format).join("\n");
        assert_eq!(text.matches("DEEPMARKER").count(), 4, "{format:?}");
    }
}

async fn xml_cut_off_mid_item_stores_nothing_from_that_poll(engine: Engine) {
    let s = Scenario::one_on(engine, "cut").await;
    s.seed().await;
    // The seed's two items, a third complete one, and a fourth cut off mid-description.
    let mut doc = rss(
        "Seed",
        &[
            ("seed-cut-1", "SEEDMARKER-cut-1 earlier story", "Seed 1."),
            ("seed-cut-2", "SEEDMARKER-cut-2 earlier story", "Seed 2 corrected."),
            ("cut-3", "CUTMARKER3 complete", "Complete."),
            ("cut-4", "CUTMARKER4 cut", "This description stops in the mid"),
        ],
    );
    let at = String::from_utf8_lossy(&doc).find("stops in the mid").unwrap() + "stops in the mid".len();
    doc.truncate(at);
    s.server.put(&s.path("cut"), doc, "application/rss+xml");
    let out = s.hostile_poll().await;
    out.failed(&s, "cut", "malformed");
    let text = s.output_text("all");
    assert!(!text.contains("CUTMARKER") && !text.contains("corrected"), "nothing of that poll is stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_invalid_utf8() {
    let s = Scenario::new("", &[("badutf8", None), ("badjson", None)]).await;
    s.seed().await;
    let mut doc = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>Bad \xff\xfe bytes</title>\
        <item><guid>u-1</guid><title>UTF8MARKER \xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80 end</title>\
        <description>caf\xe9 \xc0\xaf</description></item></channel></rss>"
        .to_vec();
    s.server.put(&s.path("badutf8"), std::mem::take(&mut doc), "application/rss+xml; charset=utf-8");
    let json = b"{\"version\":\"https://jsonfeed.org/version/1.1\",\"title\":\"J\",\"items\":[{\"id\":\"j-1\",\"title\":\"UTF8MARKER \xff\"}]}".to_vec();
    s.server.put(&s.path("badjson"), json, "application/feed+json");
    let out = s.hostile_poll().await;
    // Refused as malformed: a decoder that guessed would store mojibake.
    out.failed(&s, "badutf8", "cannot decode input using UTF-8");
    out.failed(&s, "badjson", "malformed feed: unable to parse JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_charset_conflicts_between_http_and_the_declaration() {
    let ids = ["latin1decl", "utf8decl", "nodecl", "bom", "latin1http"];
    let s = Scenario::new("", &ids.map(|id| (id, None))).await;
    s.seed().await;
    let doc = |decl: &str, title: &[u8]| {
        let mut d = format!(
            "{decl}<rss version=\"2.0\"><channel><title>Charset</title><item><guid>cs-1</guid><title>"
        )
        .into_bytes();
        d.extend_from_slice(title);
        d.extend_from_slice(b"</title><description>Text.</description></item></channel></rss>");
        d
    };
    // The XML declaration says ISO-8859-1 (and the bytes are), HTTP claims UTF-8.
    s.server.put(
        &s.path("latin1decl"),
        doc("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>", b"Caf\xe9 CHARSETMARKER1"),
        "application/rss+xml; charset=utf-8",
    );
    // The declaration says UTF-8 (and the bytes are), HTTP claims ISO-8859-1.
    s.server.put(
        &s.path("utf8decl"),
        doc("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "Café CHARSETMARKER2".as_bytes()),
        "application/rss+xml; charset=iso-8859-1",
    );
    // No declaration, UTF-8 bytes, HTTP claims windows-1252.
    s.server.put(
        &s.path("nodecl"),
        doc("", "Café CHARSETMARKER3".as_bytes()),
        "text/xml; charset=windows-1252",
    );
    // A UTF-8 byte order mark, a declaration that says UTF-16.
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(doc("<?xml version=\"1.0\" encoding=\"UTF-16\"?>", "Café CHARSETMARKER4".as_bytes()));
    s.server.put(&s.path("bom"), bom, "application/xml");
    // No declaration, ISO-8859-1 bytes, and HTTP says so (RFC 7303: HTTP decides).
    s.server.put(
        &s.path("latin1http"),
        doc("", b"Caf\xe9 CHARSETMARKER5"),
        "application/rss+xml; charset=iso-8859-1",
    );
    let out = s.hostile_poll().await;
    // A byte order mark that contradicts the declaration is a fatal error in XML: the
    // feed is reported, its earlier items kept.
    out.failed(&s, "bom", "cannot decode input using UTF-16");
    let text = s.output_text("hostile");
    for (n, id) in ids.iter().enumerate() {
        if *id == "bom" {
            continue;
        }
        let f = out.feed(id);
        assert_eq!(f["error"], serde_json::Value::Null, "{id}: {f}");
        assert_eq!(f["items"], 3, "{id}: {f}");
        assert!(text.contains(&format!("Café CHARSETMARKER{}", n + 1)), "{id}: decoded as its bytes are");
    }
}

/// Raw C0 control bytes and references to characters XML forbids: the characters are
/// dropped before storing, so the topic feeds stay well-formed XML 1.0 (checked by
/// `Scenario::output`); a reference to U+0000 or a surrogate makes the document
/// ill-formed, and it is refused.
async fn xml_characters_xml_forbids(engine: Engine) {
    let s = Scenario::new_on(engine, "", &[("ctrl", None), ("nul", None)]).await;
    s.seed().await;
    s.server.put_fixture(&s.path("ctrl"), "hostile/forbidden_chars.xml");
    s.server.put_fixture(&s.path("nul"), "hostile/forbidden_refs.xml");
    let out = s.hostile_poll().await;
    out.stored("ctrl", 2 + 2);
    out.failed(&s, "nul", "not permitted in XML");
    let text = s.output_text("hostile");
    assert!(text.contains("FORBIDMARKER1 raw"), "{text}");
    assert!(text.contains("FORBIDMARKER2 refs"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_atom_xhtml_content_trying_to_close_the_entry() {
    let s = Scenario::one("xhtml").await;
    s.seed().await;
    s.server.put_fixture(&s.path("xhtml"), "hostile/xhtml_breakout.xml");
    let out = s.hostile_poll().await;
    out.stored("xhtml", 2 + 2);
    for format in Format::ALL {
        let body = s.env.export("hostile", format);
        let feed = feed_rs::parser::parse(&body[..]).unwrap();
        let titles: Vec<String> = feed
            .entries
            .iter()
            .map(|e| e.title.as_ref().map(|t| t.content.clone()).unwrap_or_default())
            .collect();
        assert_eq!(titles.len(), 4, "{format:?}: {titles:?}");
        // Text that looks like closing tags stays text inside its own element.
        assert!(
            titles.iter().all(|t| t.starts_with("BREAKOUTMARKER") || t.starts_with("SEEDMARKER")),
            "{format:?}: {titles:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------

async fn content_xss_corpus_in_every_field_and_format(engine: Engine) {
    let ids = ["xssrss", "xssatom", "xssjson"];
    let s = Scenario::new_on(engine, "", &ids.map(|id| (id, None))).await;
    s.seed().await;
    s.server.put_fixture(&s.path("xssrss"), "xss.xml");
    s.server.put_fixture(&s.path("xssatom"), "hostile/xss_atom.xml");
    s.server.put_fixture(&s.path("xssjson"), "hostile/xss.json");
    let out = s.hostile_poll().await;
    out.stored("xssrss", 2 + 6);
    out.stored("xssatom", 2 + 4);
    out.stored("xssjson", 2 + 4);
    // `output` already checked the forbidden list over raw and decoded text; the markers
    // show the items were published, not dropped.
    let text = s.output_text("hostile");
    for marker in ["XSSMARKER1", "XSSMARKER6", "ATOMXSS1", "ATOMXSS4", "JSONXSS1", "JSONXSS4"] {
        assert!(text.contains(marker), "{marker} published");
    }
    // Feed titles reach the index page: as text, without markup.
    let (page, _) = served_pages(&s.env).await;
    assert!(page.contains("ATOMFEEDTITLE") && page.contains("JSONFEEDTITLE"), "feed titles on the page");
    for bad in ["<script", "<img", "onerror", "javascript:", "<iframe"] {
        let lower = page.to_lowercase();
        let feed_rows = &lower[lower.find("<h2>sources</h2>").unwrap()..];
        assert!(!feed_rows.contains(bad), "index page feed rows contain {bad}");
    }
}

/// 50,000 items in one feed: the first 5,000 (`parse::MAX_ITEMS`, documented in
/// README.md) are stored, the poll succeeds.
async fn content_50000_items_in_one_feed(engine: Engine) {
    let s = Scenario::one_on(engine, "many").await;
    s.seed().await;
    let mut doc = String::from("<rss version=\"2.0\"><channel><title>Many</title>");
    for i in 0..50_000 {
        doc.push_str(&format!("<item><guid>many-{i}</guid><title>Item {i}</title></item>"));
    }
    doc.push_str("</channel></rss>");
    s.server.put(&s.path("many"), doc.into_bytes(), "application/rss+xml");
    let out = s.hostile_poll().await;
    out.stored("many", 2 + feedsieve::parse::MAX_ITEMS as i64);
    let json: serde_json::Value = serde_json::from_slice(&s.env.export("hostile", Format::Json)).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1000, "the topic's limit");
}

/// A 9 MiB description: stored cut to `parse::MAX_HTML_BYTES` (512 KiB), titles to
/// `parse::MAX_TITLE_CHARS`.
async fn content_a_9_mib_description_and_a_huge_title(engine: Engine) {
    let s = Scenario::one_on(engine, "huge").await;
    s.seed().await;
    let big = "word ".repeat(9 * 1024 * 1024 / 5);
    let title = format!("HUGEMARKER {}", "t".repeat(100_000));
    let doc = format!(
        "<rss version=\"2.0\"><channel><title>Huge</title><item><guid>huge-1</guid><title>{title}</title>\
         <description>{big}</description></item></channel></rss>"
    );
    s.server.put(&s.path("huge"), doc.into_bytes(), "application/rss+xml");
    let out = s.hostile_poll().await;
    out.stored("huge", 3);
    let json: serde_json::Value = serde_json::from_slice(&s.env.export("hostile", Format::Json)).unwrap();
    let item = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str().is_some() && i["title"].as_str().unwrap_or("").starts_with("HUGEMARKER"))
        .expect("the huge item is published");
    let title_chars = item["title"].as_str().unwrap().chars().count();
    assert!(title_chars <= feedsieve::parse::MAX_TITLE_CHARS + 1, "title of {title_chars} chars");
    let html = item["content_html"].as_str().unwrap();
    assert!(html.len() <= feedsieve::parse::MAX_HTML_BYTES + 64, "content of {} bytes", html.len());
    assert!(html.len() > 100_000, "the first part is kept");
}

async fn content_duplicate_guids_within_a_feed(engine: Engine) {
    let s = Scenario::one_on(engine, "dups").await;
    s.seed().await;
    let doc = rss(
        "Dups",
        &[
            ("dup", "DUPMARKER first", "First."),
            ("dup", "DUPMARKER second", "Second."),
            ("dup", "DUPMARKER third", "Third."),
            ("seed-dups-1", "SEEDMARKER-dups-1 earlier story", "Seed 1."),
            ("seed-dups-1", "SEEDMARKER-dups-1 hijacked", "Hijack."),
        ],
    );
    s.server.put(&s.path("dups"), doc, "application/rss+xml");
    let out = s.hostile_poll().await;
    out.stored("dups", 3);
    let text = s.output_text("hostile");
    assert!(text.contains("DUPMARKER first") && !text.contains("DUPMARKER second"), "the first copy wins");
    assert!(!text.contains("hijacked"), "a later duplicate does not overwrite the first");
}

async fn content_items_without_ids_and_ids_that_change_every_poll(engine: Engine) {
    let s = Scenario::new_on(engine, "", &[("noid", None), ("churn", None)]).await;
    s.seed().await;
    let noid = b"<rss version=\"2.0\"><channel><title>No ids</title>\
        <item><title>NOIDMARKER1 no guid no link</title><description>Body one.</description></item>\
        <item><description>NOIDMARKER2 nothing but a description</description></item>\
        <item></item></channel></rss>"
        .to_vec();
    s.server.put(&s.path("noid"), noid.clone(), "application/rss+xml");
    let churn = |poll: usize| {
        format!(
            "<rss version=\"2.0\"><channel><title>Churn</title><item><guid>urn:uuid:{poll}-a</guid>\
             <title>CHURNMARKER story</title><link>https://churn.example/story</link>\
             <description>The same story under a new id.</description></item></channel></rss>"
        )
        .into_bytes()
    };
    s.server.put(&s.path("churn"), churn(1), "application/rss+xml");
    let out = s.hostile_poll().await;
    // Three items: the empty `<item>` is one too (keyed by the hash of nothing).
    out.stored("noid", 2 + 3);
    let noid_items = 2 + 3;
    out.stored("churn", 3);
    // Again, the same bodies resent (no id stays stable), and the churning id renewed.
    s.server.put(&s.path("noid"), [noid, b"\n".to_vec()].concat(), "application/rss+xml");
    for poll in 2..=4 {
        s.server.put(&s.path("churn"), churn(poll), "application/rss+xml");
        s.env.poll().await;
    }
    let store = s.env.store();
    assert_eq!(store.feed("noid").unwrap().unwrap().items, noid_items, "id-less items are not stored again");
    // Each new id is a new item, but one story: readers see it once.
    let json: serde_json::Value = serde_json::from_slice(&s.env.export("hostile", Format::Json)).unwrap();
    let churned =
        json["items"].as_array().unwrap().iter().filter(|i| i["title"] == "CHURNMARKER story").count();
    assert_eq!(churned, 1, "{json}");
}

async fn content_dates_in_9999_0001_feb_30_and_garbage(engine: Engine) {
    let s = Scenario::new_on(engine, "", &[("dates", None), ("atomdates", None), ("jsondates", None)]).await;
    s.seed().await;
    s.server.put_fixture(&s.path("dates"), "hostile/dates.xml");
    s.server.put_fixture(&s.path("atomdates"), "hostile/dates_atom.xml");
    s.server.put_fixture(&s.path("jsondates"), "hostile/dates.json");
    let out = s.hostile_poll().await;
    out.stored("dates", 2 + 6);
    out.stored("atomdates", 2 + 4);
    out.stored("jsondates", 2 + 4);
    let now = chrono::Utc::now();
    for format in Format::ALL {
        let body = s.env.export("hostile", format);
        let feed = feed_rs::parser::parse(&body[..]).unwrap();
        for e in &feed.entries {
            for d in [e.published, e.updated].into_iter().flatten() {
                assert!(d.timestamp() <= now.timestamp() + 3600, "{format:?}: a date in the future: {d}");
                assert!(d.timestamp() >= 631_152_000, "{format:?}: a date before 1990: {d}");
            }
        }
    }
}
