//! WebSub on both ends, with real daemons: feedsieve as the hub of its topic feeds
//! (a subscriber written here), as a subscriber (a hub written here), and two
//! daemons, one subscribed to the other's topic through its hub.
//!
//! The W3C Recommendation's points these cover (section numbers of the text):
//! - 4 discovery: `rel="hub"` and `rel="self"` in the Atom, RSS and JSON feeds and in
//!   the `Link` header;
//! - 5.1 subscriber request: `hub.mode`, `hub.topic`, `hub.callback`,
//!   `hub.lease_seconds`, `hub.secret` (under 200 bytes); 202 Accepted; 4xx for an
//!   unknown topic, a bad mode, a callback on a forbidden address, a long secret;
//! - 5.3 intent verification: a GET with `hub.challenge` (and `hub.lease_seconds`),
//!   answered by echoing it; a callback that does not echo it gets no subscription;
//!   the subscriber side answers only for subscriptions it asked for (404 otherwise);
//! - 6 publishing and 7 content distribution: a new version POSTed to each live
//!   subscriber, with the feed's content type and `Link` headers, 2xx taken as
//!   success, other answers and timeouts retried, 410 ending the subscription;
//! - 8 authenticated distribution: `X-Hub-Signature: sha256=...` when a secret was
//!   given; pushes checked against sha1 and sha256 signatures, a bad or missing one
//!   acknowledged and not stored;
//! - leases: an expired subscription gets nothing; unsubscription verified the same
//!   way; subscriptions kept across a restart.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};

use crate::util::{Daemon, FeedServer};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A daemon's config in a folder of its own, on a port chosen now (its `base_url`
/// must be known before it starts).
struct Node {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    base: String,
}

impl Node {
    fn new(websub: &str, feeds_and_topics: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}/");
        let config = dir.path().join("feedsieve.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\ndatabase = \"data/db.sqlite\"\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"{base}\"\n\
                 timeout = \"5s\"\nschedule = \"every 1h\"\n\n[websub]\n{websub}\n\n{feeds_and_topics}"
            ),
        )
        .unwrap();
        Node { _dir: dir, config, base }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_feedsieve"));
        c.arg("--config").arg(&self.config);
        c
    }

    async fn start(&self) -> Daemon {
        Daemon::start_logging(self.cmd(), &[], "feedsieve=debug").await
    }

    /// One `feedsieve poll` process: its change reaches the running daemon's outputs.
    async fn poll(&self) {
        let mut cmd = self.cmd();
        cmd.arg("poll");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.config.parent().unwrap().join("data/db.sqlite")).unwrap()
    }
}

fn rss(title: &str, items: &[&str], links: &str) -> Vec<u8> {
    let mut doc = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel>\
         <title>{title}</title><link>https://src.example.org/</link><description>d</description>{links}"
    );
    for (i, t) in items.iter().enumerate() {
        doc.push_str(&format!(
            "<item><guid>{title}-{i}</guid><title>{t}</title><description>{t}.</description></item>"
        ));
    }
    doc.push_str("</channel></rss>");
    doc.into_bytes()
}

fn hmac_sha256(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha1(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..secs * 20 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------------------------
// A subscriber written here

/// How a test callback answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Echoes the challenge, takes pushes with 200.
    Good,
    /// Answers the verification with something else.
    WrongChallenge,
    /// Takes pushes with 410 Gone.
    Gone,
    /// Fails the first push with 500, then takes them.
    FailOnce,
    /// Never answers a push within the hub's timeout.
    Slow,
}

#[derive(Default)]
struct SubscriberLog {
    behaviour: HashMap<String, Behaviour>,
    verifications: Vec<(String, HashMap<String, String>)>,
    pushes: Vec<(String, HeaderMap, Bytes)>,
    failed_once: Vec<String>,
}

type Sub = Arc<Mutex<SubscriberLog>>;

async fn subscriber() -> (String, Sub) {
    let log: Sub = Arc::default();
    async fn verify(
        State(log): State<Sub>,
        Path(name): Path<String>,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, String) {
        let mut l = log.lock().unwrap();
        l.verifications.push((name.clone(), q.clone()));
        match l.behaviour.get(&name) {
            Some(Behaviour::WrongChallenge) => (StatusCode::OK, "not the challenge".into()),
            Some(_) => (StatusCode::OK, q.get("hub.challenge").cloned().unwrap_or_default()),
            None => (StatusCode::NOT_FOUND, String::new()),
        }
    }
    async fn push(
        State(log): State<Sub>,
        Path(name): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let behaviour = {
            let mut l = log.lock().unwrap();
            l.pushes.push((name.clone(), headers, body));
            let b = l.behaviour.get(&name).copied().unwrap_or(Behaviour::Good);
            if b == Behaviour::FailOnce && !l.failed_once.contains(&name) {
                l.failed_once.push(name.clone());
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            b
        };
        match behaviour {
            Behaviour::Gone => StatusCode::GONE,
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }
            _ => StatusCode::OK,
        }
    }
    let app = axum::Router::new()
        .route("/cb/{name}", axum::routing::get(verify).post(push))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

async fn hub_post(hub: &str, form: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let r = reqwest::Client::new()
        .post(hub)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// feedsieve as the hub of its topic feeds, against a subscriber written here.
#[tokio::test(flavor = "multi_thread")]
async fn feedsieve_is_the_hub_of_its_topic_feeds() {
    let src = FeedServer::start().await;
    src.put("/src", rss("src", &["First story"], ""), "application/rss+xml");
    let node = Node::new(
        "hub = \"self\"",
        &format!(
            "[[feed]]\nid = \"src\"\nurl = \"{}\"\n\n[[topic]]\nid = \"news\"\nfeeds = [\"src\"]\n",
            src.url("/src")
        ),
    );
    let mut daemon = node.start().await;
    daemon.wait_log("the first poll", |l| l.contains("polled 1 feeds")).await;
    let hub = format!("{}websub", node.base);
    let topic = format!("{}topics/news.atom", node.base);

    // Discovery: every format and the Link header name the hub and the feed itself.
    for (ext, want) in [("atom", "rel=\"hub\""), ("rss", "rel=\"hub\""), ("json", "\"hubs\"")] {
        let (status, body) = daemon.get(&format!("/topics/news.{ext}")).await;
        assert_eq!(status, 200);
        assert!(body.contains(want) && body.contains(&hub), "{ext}: {body}");
    }
    let r = reqwest::get(&topic).await.unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, format!("<{hub}>; rel=\"hub\", <{topic}>; rel=\"self\""));

    let (sub, log) = subscriber().await;
    for (name, b) in [
        ("good", Behaviour::Good),
        ("wrong", Behaviour::WrongChallenge),
        ("gone", Behaviour::Gone),
        ("flaky", Behaviour::FailOnce),
        ("slow", Behaviour::Slow),
        ("expired", Behaviour::Good),
        ("leaving", Behaviour::Good),
    ] {
        log.lock().unwrap().behaviour.insert(name.into(), b);
    }
    let cb = |name: &str| format!("{sub}/cb/{name}");
    let subscribe = |name: &str, secret: &str| {
        let (hub, topic, cb) = (hub.clone(), topic.clone(), cb(name));
        let secret = secret.to_owned();
        async move {
            let mut form =
                vec![("hub.mode", "subscribe"), ("hub.topic", topic.as_str()), ("hub.callback", cb.as_str())];
            form.push(("hub.lease_seconds", "3600"));
            if !secret.is_empty() {
                form.push(("hub.secret", secret.as_str()));
            }
            hub_post(&hub, &form).await
        }
    };

    // Refused at once: 4xx, and no verification is ever sent.
    let own = format!("{}cb", node.base);
    for (form, status, why) in [
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", "http://elsewhere.example/feed"),
                ("hub.callback", cb("good").leak()),
            ],
            404,
            "not a topic feed",
        ),
        (
            vec![("hub.mode", "watch"), ("hub.topic", topic.as_str()), ("hub.callback", cb("good").leak())],
            400,
            "hub.mode",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic.as_str()),
                ("hub.callback", "http://169.254.169.254/latest/"),
            ],
            403,
            "link-local",
        ),
        (
            vec![("hub.mode", "subscribe"), ("hub.topic", topic.as_str()), ("hub.callback", own.as_str())],
            403,
            "own address",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", topic.as_str()),
                ("hub.callback", cb("good").leak()),
                ("hub.secret", "x".repeat(200).leak()),
            ],
            400,
            "shorter than 200",
        ),
    ] {
        let (got, text) = hub_post(&hub, &form).await;
        assert_eq!(got, status, "{form:?}: {text}");
        assert!(text.contains(why), "{form:?}: {text}");
    }

    for (name, secret) in [
        ("good", "s3cret"),
        ("wrong", ""),
        ("gone", ""),
        ("flaky", "f"),
        ("slow", ""),
        ("expired", ""),
        ("leaving", ""),
    ] {
        let (status, text) = subscribe(name, secret).await;
        assert_eq!(status, 202, "{name}: {text}");
    }
    let rows = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut s = conn.prepare("SELECT callback FROM websub_subscriptions ORDER BY callback").unwrap();
        s.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    let conn = node.sqlite();
    wait_for("six verified subscriptions", 10, || (rows(&conn).len() == 6).then_some(())).await;
    wait_for("seven verifications", 10, || (log.lock().unwrap().verifications.len() == 7).then_some(()))
        .await;
    assert!(
        !rows(&conn).contains(&cb("wrong")),
        "a callback that does not echo the challenge is not subscribed"
    );
    {
        let l = log.lock().unwrap();
        assert_eq!(l.verifications.len(), 7, "one verification each, none for the refused requests");
        let (_, q) = l.verifications.iter().find(|(n, _)| n == "good").unwrap();
        assert_eq!(q["hub.mode"], "subscribe");
        assert_eq!(q["hub.topic"], topic);
        assert_eq!(q["hub.lease_seconds"], "3600");
        assert!(q["hub.challenge"].len() >= 32);
    }
    // Leases are bounded: one second asked, a minute granted.
    log.lock().unwrap().behaviour.insert("brief".into(), Behaviour::Good);
    let (status, _) = hub_post(
        &hub,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &cb("brief")),
            ("hub.lease_seconds", "1"),
        ],
    )
    .await;
    assert_eq!(status, 202);
    let granted = wait_for("brief's verification", 10, || {
        let l = log.lock().unwrap();
        l.verifications.iter().find(|(n, _)| n == "brief").map(|(_, q)| q["hub.lease_seconds"].clone())
    })
    .await;
    assert_eq!(granted, "60");
    // "expired": its lease ends now.
    conn.execute(
        &format!("UPDATE websub_subscriptions SET expires_at = 1 WHERE callback = '{}'", cb("expired")),
        [],
    )
    .unwrap();
    // "leaving" unsubscribes, verified the same way.
    let (status, _) = hub_post(
        &hub,
        &[("hub.mode", "unsubscribe"), ("hub.topic", &topic), ("hub.callback", &cb("leaving"))],
    )
    .await;
    assert_eq!(status, 202);
    wait_for("the unsubscription", 10, || (!rows(&conn).contains(&cb("leaving"))).then_some(())).await;

    // A change: a new item, stored by a `poll` process, reaches the daemon's outputs,
    // and the new version goes out.
    src.put("/src", rss("src", &["First story", "Second story"], ""), "application/rss+xml");
    node.poll().await;
    let pushed = |name: &str| log.lock().unwrap().pushes.iter().filter(|(n, _, _)| n == name).count();
    wait_for("the push to good", 15, || (pushed("good") == 1).then_some(())).await;
    let (headers, body) = {
        let l = log.lock().unwrap();
        let (_, h, b) = l.pushes.iter().find(|(n, _, _)| n == "good").unwrap();
        (h.clone(), b.clone())
    };
    assert!(String::from_utf8_lossy(&body).contains("Second story"));
    assert_eq!(headers["content-type"], "application/atom+xml; charset=utf-8");
    assert_eq!(
        headers["x-hub-signature"].to_str().unwrap(),
        format!("sha256={}", hmac_sha256("s3cret", &body))
    );
    assert!(headers["link"].to_str().unwrap().contains("rel=\"self\""));
    // 410: pushed once, then no subscription.
    wait_for("the push to gone", 15, || (pushed("gone") == 1).then_some(())).await;
    wait_for("gone's subscription to end", 10, || (!rows(&conn).contains(&cb("gone"))).then_some(())).await;
    // 500 once: retried (after 5 s), then taken; the slow one is cut off and retried too.
    wait_for("flaky's retry", 20, || (pushed("flaky") == 2).then_some(())).await;
    wait_for("slow's retry", 30, || (pushed("slow") >= 2).then_some(())).await;
    assert_eq!(pushed("wrong") + pushed("expired") + pushed("leaving"), 0, "nothing for the unsubscribed");
    let flaky: String = conn
        .query_row(
            "SELECT delivered IS NOT NULL FROM websub_subscriptions WHERE callback = ?1",
            [cb("flaky")],
            |r| r.get::<_, i64>(0).map(|v| v.to_string()),
        )
        .unwrap();
    assert_eq!(flaky, "1");

    // Across a restart the subscriptions stand: the next change reaches "good" again.
    assert!(daemon.stop().success());
    let mut daemon = node.start().await;
    daemon.wait_log("serving", |l| l.contains("serving on")).await;
    src.put("/src", rss("src", &["First story", "Second story", "Third story"], ""), "application/rss+xml");
    node.poll().await;
    wait_for("the push after a restart", 15, || {
        log.lock()
            .unwrap()
            .pushes
            .iter()
            .any(|(n, _, b)| n == "good" && String::from_utf8_lossy(b).contains("Third story"))
            .then_some(())
    })
    .await;
    let metrics = daemon.get("/metrics").await.1;
    assert!(metrics.contains("feedsieve_websub_deliveries_total{outcome=\"ok\"}"), "{metrics}");
    assert!(daemon.stop().success());
}

// ---------------------------------------------------------------------------------
// A hub written here

#[derive(Default)]
struct HubLog {
    requests: Vec<HashMap<String, String>>,
}

async fn test_hub() -> (String, Arc<Mutex<HubLog>>) {
    let log: Arc<Mutex<HubLog>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hub",
            axum::routing::post(|State(log): State<Arc<Mutex<HubLog>>>, body: Bytes| async move {
                let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                log.lock().unwrap().requests.push(form);
                StatusCode::ACCEPTED
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hub"), log)
}

/// feedsieve as a subscriber of a source feed's hub (one written here).
#[tokio::test(flavor = "multi_thread")]
async fn a_source_feed_s_hub_is_subscribed_and_its_pushes_stored() {
    let (hub, hub_log) = test_hub().await;
    let src = FeedServer::start().await;
    let self_url = src.url("/src");
    let links =
        format!("<atom:link rel=\"hub\" href=\"{hub}\"/><atom:link rel=\"self\" href=\"{self_url}\"/>");
    src.put("/src", rss("src", &["Polled story"], &links), "application/rss+xml");
    // A second feed at the same hub, whose subscription the hub never verifies.
    let silent_url = src.url("/silent");
    let silent_links =
        format!("<atom:link rel=\"hub\" href=\"{hub}\"/><atom:link rel=\"self\" href=\"{silent_url}\"/>");
    src.put("/silent", rss("silent", &["Quiet story"], &silent_links), "application/rss+xml");
    let topic = "[[topic]]\nid = \"news\"\ntags = [\"t\"]\n";
    let silent = format!("[[feed]]\nid = \"silent\"\nurl = \"{silent_url}\"\ntags = [\"t\"]\n");
    let node = Node::new(
        "subscribe = true",
        &format!("[[feed]]\nid = \"src\"\nurl = \"{self_url}\"\ntags = [\"t\"]\n\n{silent}\n{topic}"),
    );
    let mut daemon = node.start().await;
    wait_for("two subscription requests", 15, || (hub_log.lock().unwrap().requests.len() == 2).then_some(()))
        .await;
    let request =
        hub_log.lock().unwrap().requests.iter().find(|r| r["hub.topic"] == self_url).cloned().unwrap();
    let callback = format!("{}websub/callback/src", node.base);
    assert_eq!(request["hub.mode"], "subscribe");
    assert_eq!(request["hub.topic"], self_url);
    assert_eq!(request["hub.callback"], callback);
    let secret = request["hub.secret"].clone();
    assert!(secret.len() >= 32 && secret.len() < 200);

    let http = reqwest::Client::new();
    let verify = |mode: &str, topic: &str| {
        let url = format!(
            "{callback}?hub.mode={mode}&hub.topic={}&hub.challenge=ch4llenge&hub.lease_seconds=600",
            url::form_urlencoded::byte_serialize(topic.as_bytes()).collect::<String>()
        );
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(verify("subscribe", "http://other.example/feed").await.0, 404, "a topic not asked for");
    assert_eq!(verify("unsubscribe", &self_url).await.0, 404, "an unsubscription not asked for");
    assert_eq!(verify("subscribe", &self_url).await, (200, "ch4llenge".to_owned()));
    let state: String = node
        .sqlite()
        .query_row("SELECT state FROM websub_sources WHERE feed_id = 'src'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "active");

    // Pushes: a bad and a missing signature are acknowledged and stored nowhere; sha1
    // and sha256 signatures are taken, and the item is in the topic at once.
    let push = |body: Vec<u8>, signature: Option<String>| {
        let (http, callback) = (http.clone(), callback.clone());
        async move {
            let mut r = http.post(callback).header("content-type", "application/rss+xml").body(body);
            if let Some(s) = signature {
                r = r.header("x-hub-signature", s);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let forged = rss("src", &["Polled story", "Forged story"], &links);
    assert_eq!(push(forged.clone(), Some(format!("sha256={}", hmac_sha256("guess", &forged)))).await, 202);
    assert_eq!(push(forged, None).await, 202);
    let sha1_body = rss("src", &["Polled story", "Pushed by sha1"], &links);
    assert_eq!(push(sha1_body.clone(), Some(format!("sha1={}", hmac_sha1(&secret, &sha1_body)))).await, 202);
    let sha256_body = rss("src", &["Polled story", "Pushed by sha1", "Pushed by sha256"], &links);
    assert_eq!(
        push(sha256_body.clone(), Some(format!("sha256={}", hmac_sha256(&secret, &sha256_body)))).await,
        202
    );
    daemon.wait_log("both pushes stored", |l| l.matches("WebSub push stored").count() >= 2).await;
    // A push is a whole feed: one of 3 MB (over axum's default body limit, under
    // max_feed_bytes) is taken.
    let mut big = rss("src", &["Polled story", "Pushed by sha1", "Pushed by sha256", "Big one"], &links);
    let pad = format!("<!-- {} -->", "x".repeat(3 * 1024 * 1024));
    big.splice(big.len() - "</channel></rss>".len()..big.len() - "</channel></rss>".len(), pad.into_bytes());
    assert_eq!(push(big.clone(), Some(format!("sha256={}", hmac_sha256(&secret, &big)))).await, 202);
    daemon.wait_log("the big push stored", |l| l.matches("WebSub push stored").count() >= 3).await;
    let titles = wait_for("the pushed items in the topic", 10, || {
        let t = futures_lite_block(daemon.topic_titles("news"));
        t.iter().any(|t| t == "Pushed by sha256").then_some(t)
    })
    .await;
    assert!(titles.contains(&"Pushed by sha1".to_owned()), "{titles:?}");
    assert!(!titles.iter().any(|t| t.contains("Forged")), "{titles:?}");
    assert_eq!(src.requests("/src").len(), 1, "pushes, not polls, brought them");
    // The hub that never verified: that subscription stays asked for, and the feed is
    // still polled.
    let silent_state: String = node
        .sqlite()
        .query_row("SELECT state FROM websub_sources WHERE feed_id = 'silent'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(silent_state, "requested");
    node.poll().await;
    assert_eq!(src.requests("/silent").len(), 2, "polling goes on");

    // The feed removed from the config (and a reload): unsubscribed at its hub, which
    // verifies that as well.
    std::fs::write(
        &node.config,
        std::fs::read_to_string(&node.config)
            .unwrap()
            .replace(&format!("[[feed]]\nid = \"src\"\nurl = \"{self_url}\"\ntags = [\"t\"]\n"), ""),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    let unsubscribe = wait_for("the unsubscription request", 20, || {
        hub_log.lock().unwrap().requests.iter().find(|r| r["hub.mode"] == "unsubscribe").cloned()
    })
    .await;
    assert_eq!(unsubscribe["hub.topic"], self_url);
    assert_eq!(unsubscribe["hub.callback"], callback);
    assert_eq!(verify("unsubscribe", &self_url).await, (200, "ch4llenge".to_owned()));
    let left: i64 = node
        .sqlite()
        .query_row("SELECT count(*) FROM websub_sources WHERE feed_id = 'src'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
    let log = daemon.log.lock().unwrap().clone();
    assert!(
        log.contains("a push with a bad signature was dropped")
            && log.contains("a push without a signature was dropped"),
        "{log}"
    );
    assert!(daemon.stop().success());
}

/// `Daemon::topic_titles` from a synchronous closure (the test's own runtime is
/// multi-threaded, so a nested wait on a fresh current-thread runtime is fine).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Two daemons: B's feed is A's topic, which names A as its hub; B subscribes there,
/// and a story A stores reaches B's topic by push.
#[tokio::test(flavor = "multi_thread")]
async fn one_feedsieve_subscribes_to_another_s_topic_through_its_hub() {
    let src = FeedServer::start().await;
    src.put("/src", rss("src", &["Story one"], ""), "application/rss+xml");
    let a = Node::new(
        "hub = \"self\"",
        &format!(
            "[[feed]]\nid = \"src\"\nurl = \"{}\"\n\n[[topic]]\nid = \"border\"\nfeeds = [\"src\"]\n",
            src.url("/src")
        ),
    );
    let mut da = a.start().await;
    da.wait_log("A's first poll", |l| l.contains("polled 1 feeds")).await;
    let b = Node::new(
        "subscribe = true",
        &format!(
            "[[feed]]\nid = \"a-border\"\nurl = \"{}topics/border.atom\"\n\n[[topic]]\nid = \"mirror\"\nfeeds = [\"a-border\"]\n",
            a.base
        ),
    );
    let mut db = b.start().await;
    db.wait_log("B's subscription verified", |l| l.contains("a-border subscribed at")).await;
    da.wait_log("A's record of it", |l| l.contains("a-border subscribed to")).await;

    let started = std::time::Instant::now();
    src.put("/src", rss("src", &["Story one", "Story two"], ""), "application/rss+xml");
    a.poll().await;
    db.wait_log("the push stored by B", |l| l.contains("WebSub push stored: 1 new")).await;
    let titles = db.topic_titles("mirror").await;
    assert!(titles.contains(&"Story two".to_owned()), "{titles:?}");
    eprintln!("A's change reached B's topic in {:?}", started.elapsed());
    assert!(da.stop().success());
    assert!(db.stop().success());
}

/// `hub = "URL"`: topic feeds name that hub, and it is pinged with `hub.mode=publish`
/// for each format of a topic whose feed changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_external_hub_is_named_and_pinged_on_every_change() {
    let (hub, hub_log) = test_hub().await;
    let src = FeedServer::start().await;
    src.put("/src", rss("src", &["One"], ""), "application/rss+xml");
    let node = Node::new(
        &format!("hub = \"{hub}\""),
        &format!(
            "[[feed]]\nid = \"src\"\nurl = \"{}\"\n\n[[topic]]\nid = \"news\"\nfeeds = [\"src\"]\n",
            src.url("/src")
        ),
    );
    let mut daemon = node.start().await;
    daemon.wait_log("the first poll", |l| l.contains("polled 1 feeds")).await;
    let (_, atom) = daemon.get("/topics/news.atom").await;
    assert!(atom.contains(&format!("<link href=\"{hub}\" rel=\"hub\"/>")), "{atom}");
    let before = hub_log.lock().unwrap().requests.len();
    src.put("/src", rss("src", &["One", "Two"], ""), "application/rss+xml");
    node.poll().await;
    let pings = wait_for("three publish pings", 15, || {
        let l = hub_log.lock().unwrap();
        (l.requests.len() >= before + 3).then(|| l.requests[before..].to_vec())
    })
    .await;
    let mut urls: Vec<String> = pings.iter().map(|p| p["hub.url"].clone()).collect();
    urls.sort();
    let want: Vec<String> =
        ["atom", "json", "rss"].iter().map(|e| format!("{}topics/news.{e}", node.base)).collect();
    assert_eq!(urls, want);
    assert!(pings.iter().all(|p| p["hub.mode"] == "publish"));
    assert!(daemon.stop().success());
}
