//! The daemon in process: started on 127.0.0.1 port 0 with a shutdown token, driven
//! over HTTP like a reader would, reloaded and stopped.

use std::time::Duration;

use feedsieve::daemon::{self, Control};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::util::{Engine, Env, FeedServer};

on_both_engines!(serves_every_endpoint_like_a_reader_expects, stops_gracefully_in_the_middle_of_a_poll);

struct Running {
    base: String,
    shutdown: CancellationToken,
    reload: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

async fn start(env: &Env) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (reload, rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let config = env.config();
    let task = tokio::spawn(daemon::run(
        config,
        listener,
        Control { reload: rx, shutdown: shutdown.clone(), node: "test".into() },
    ));
    feedsieve::fetch::install_tls_provider();
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    Running { base, shutdown, reload, task, http }
}

impl Running {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    async fn text(&self, path: &str) -> String {
        self.get(path, &[]).await.text().await.unwrap()
    }

    /// Waits until `check` holds for the body at `path`, as a reader polling would.
    async fn until(&self, path: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        for _ in 0..300 {
            let body = self.text(path).await;
            if check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what} at {path}");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn items(json: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

const CONFIG: &str = r#"
[[feed]]
id = "relevant"
url = "URL/relevant"
tags = ["news"]

[[topic]]
id = "border"
title = "Border security"
query = '"border security" OR "migrant smuggling" OR "human trafficking"'
"#;

async fn serves_every_endpoint_like_a_reader_expects(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    let env = Env::on(engine, &CONFIG.replace("URL", &server.url("")));
    let d = start(&env).await;
    d.until("/topics/border.json", "the first poll", |b| items(b) == 8).await;

    // Topic feed: validators, conditional requests, HEAD, gzip.
    let r = d.get("/topics/border.atom", &[]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/atom+xml; charset=utf-8");
    assert!(h["cache-control"].to_str().unwrap().contains("max-age"));
    let etag = h["etag"].to_str().unwrap().to_owned();
    let lm = h["last-modified"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    assert_eq!(crate::util::titles(&body).len(), 8);
    assert_eq!(d.get("/topics/border.atom", &[("if-none-match", &etag)]).await.status(), 304);
    assert_eq!(d.get("/topics/border.atom", &[("if-modified-since", &lm)]).await.status(), 304);
    assert_eq!(d.get("/topics/border.atom", &[("if-none-match", "\"other\"")]).await.status(), 200);
    let head = d.http.head(format!("{}/topics/border.atom", d.base)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert!(head.bytes().await.unwrap().is_empty());
    let gz = d.get("/topics/border.atom", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz_etag = gz.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(gz_etag, etag, "each representation has its own strong validator");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.bytes().await.unwrap()[..]), &mut plain)
        .unwrap();
    assert_eq!(plain, body);
    assert_eq!(
        d.get("/topics/border.atom", &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)])
            .await
            .status(),
        304
    );
    for ext in ["rss", "json"] {
        let b = d.get(&format!("/topics/border.{ext}"), &[]).await.bytes().await.unwrap();
        assert_eq!(crate::util::titles(&b).len(), 8, "{ext}");
    }
    assert_eq!(d.get("/topics/nope.atom", &[]).await.status(), 404);
    assert_eq!(d.get("/topics/border.xml", &[]).await.status(), 404);
    assert_eq!(d.get("/nothing-here", &[]).await.status(), 404);

    // The index page: parsed as HTML; its alternate links lead to feeds that parse.
    let page = d.text("/").await;
    let links = crate::util::html_links(&page);
    let alternates: Vec<_> =
        links.iter().filter(|(tag, rel, _)| tag == "link" && rel == "alternate").collect();
    assert_eq!(alternates.len(), 3, "{links:?}");
    for (_, _, href) in alternates {
        let path = href.strip_prefix("http://feeds.test").expect("alternate links use base_url");
        let b = d.get(path, &[]).await.bytes().await.unwrap();
        assert_eq!(crate::util::titles(&b).len(), 8, "{href}");
    }
    assert!(links.iter().any(|(tag, _, href)| tag == "a" && href == "topics/border.atom"));
    assert!(page.contains("<svg"), "items-per-day chart");
    assert!(page.contains("relevant") && page.contains(">8<"), "feed health row");

    // OPML: every topic, parsed with an XML parser.
    let opml = d.text("/topics.opml").await;
    let urls = crate::util::opml_feed_urls(&opml);
    assert_eq!(urls, ["http://feeds.test/topics/border.atom"]);

    let health = d.get("/healthz", &[]).await;
    assert_eq!(health.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&health.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["items"], 8);

    let metrics = d.text("/metrics").await;
    for line in [
        "feedsieve_fetches_total{outcome=\"ok\"} 1",
        "feedsieve_items_stored_total 8",
        "feedsieve_topic_stories{topic=\"border\"} 8",
        "feedsieve_feeds_failing 0",
        "feedsieve_fetch_duration_seconds_count 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_keeps_the_running_config_and_a_good_one_applies() {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.put_fixture("/near", "topic/near_miss.xml");
    let env = Env::new(&CONFIG.replace("URL", &server.url("")));
    let d = start(&env).await;
    d.until("/topics/border.json", "the first poll", |b| items(b) == 8).await;
    let good = std::fs::read_to_string(&env.config_path).unwrap();

    // Invalid: an unknown key, and a query that would change the topic.
    std::fs::write(
        &env.config_path,
        good.replace("\"border security\" OR ", "").replace("[[topic]]", "[[topic]]\ncolour = 1"),
    )
    .unwrap();
    d.reload.send(()).await.unwrap();
    d.until("/metrics", "the failed reload", |m| {
        m.contains("feedsieve_config_reloads_total{result=\"failed\"} 1")
    })
    .await;
    assert_eq!(items(&d.text("/topics/border.json").await), 8, "the old topic is still served");

    // Valid: a second feed and a new topic; the changed query is backfilled.
    let changed = format!(
        "{good}\n[[feed]]\nid = \"near\"\nurl = \"{}\"\n\n[[topic]]\nid = \"collies\"\nquery = '\"border collie\"'\n",
        server.url("/near")
    );
    std::fs::write(&env.config_path, changed).unwrap();
    d.reload.send(()).await.unwrap();
    d.until("/metrics", "the good reload", |m| m.contains("feedsieve_config_reloads_total{result=\"ok\"} 1"))
        .await;
    d.until("/topics/collies.json", "the added feed's first poll", |b| items(b) == 1).await;
    let opml = d.text("/topics.opml").await;
    assert_eq!(crate::util::opml_feed_urls(&opml).len(), 2);
    d.stop().await;
}

async fn stops_gracefully_in_the_middle_of_a_poll(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.delay("/relevant", Duration::from_secs(2));
    let env = Env::on(engine, &CONFIG.replace("URL", &server.url("")));
    let d = start(&env).await;
    for _ in 0..200 {
        if !server.requests("/relevant").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(server.requests("/relevant").len(), 1, "the poll has started");
    let base = d.base.clone();
    d.stop().await; // returns Ok: the poll in flight finished, the server stopped, the store closed

    let store = env.store();
    assert_eq!(store.feed("relevant").unwrap().unwrap().items, 8, "the poll in flight was let finish");
    assert!(
        tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.is_err(),
        "the listener is closed"
    );
    let db = env.config().daemon.database;
    assert_eq!(integrity(&db), "ok");
}

fn integrity(db: &feedsieve::model::Database) -> String {
    feedsieve::store::Store::open_read_only(db).unwrap().integrity_check().unwrap()
}

/// The real binary under a stand-in for systemd: READY after start, WATCHDOG pings,
/// RELOADING/READY around SIGHUP, STOPPING and exit 0 on SIGTERM.
#[test]
fn the_binary_talks_to_systemd_and_obeys_signals() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::with_daemon("listen = \"127.0.0.1:0\"", "");
    let socket_path = env.config_path.with_file_name("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
        .arg("--config")
        .arg(&env.config_path)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    /// Kills the daemon if the test fails half-way.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let pid = child.0.id().to_string();
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim().to_owned()
    };
    let kill =
        |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    assert_eq!(next(), "READY=1");
    assert_eq!(next(), "WATCHDOG=1");
    kill("-HUP");
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("READY=1") {
        let m = next();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert_eq!(seen, ["RELOADING=1", "READY=1"]);
    kill("-TERM");
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "unexpected notification");
    }
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A daemon on the relevant fixture with `daemon` settings, after its first poll.
async fn started_on_relevant(daemon: &str) -> (FeedServer, Env, Running) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    let env = Env::with_daemon(daemon, &CONFIG.replace("URL", &server.url("")));
    let d = start(&env).await;
    d.until("/topics/border.json", "the first poll", |b| items(b) == 8).await;
    (server, env, d)
}

/// Writes `text` plus a new topic to the config file, waits for the automatic
/// reload that is the `ok`th to succeed, and checks that the topic is served.
async fn an_added_topic_is_reloaded_by_itself(d: &Running, env: &Env, text: &str, ok: usize) {
    std::fs::write(&env.config_path, format!("{text}\n[[topic]]\nid = \"more\"\nquery = 'smuggling'\n"))
        .unwrap();
    let done = format!("feedsieve_config_reloads_total{{result=\"ok\"}} {ok}");
    d.until("/metrics", "the automatic reload", |m| m.contains(&done)).await;
    assert_eq!(d.get("/topics/more.atom", &[]).await.status(), 200);
}

/// A reload that turns `watch_config` on starts the watching, which sleeps while it
/// is off (an idle daemon has no timer but the next due feed's).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_turns_watch_config_on_starts_watching() {
    let (_server, env, d) = started_on_relevant("timeout = \"5s\"").await;
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nwatch_config = true");
    std::fs::write(&env.config_path, &text).unwrap();
    d.reload.send(()).await.unwrap();
    d.until("/metrics", "the requested reload", |m| {
        m.contains("feedsieve_config_reloads_total{result=\"ok\"} 1")
    })
    .await;
    an_added_topic_is_reloaded_by_itself(&d, &env, &text, 2).await;
    d.stop().await;
}

/// Issue 5: with `watch_config = true` the daemon reloads by itself when the file
/// changes, with the same keep-the-old-config-on-error rule as SIGHUP.
#[tokio::test(flavor = "multi_thread")]
async fn watch_config_reloads_when_the_file_changes() {
    let (_server, env, d) = started_on_relevant("timeout = \"5s\"\nwatch_config = true").await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(&env.config_path, text.replace("[[topic]]", "[[topic]]\ncolour = 1")).unwrap();
    d.until("/metrics", "a failed automatic reload", |m| {
        m.contains("feedsieve_config_reloads_total{result=\"failed\"} 1")
    })
    .await;
    an_added_topic_is_reloaded_by_itself(&d, &env, &text, 1).await;
    d.stop().await;
}
