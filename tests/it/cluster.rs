//! Many nodes on one PostgreSQL database: real `feedsieve run` processes (and a
//! `feedsieve poll`) against a feed server on 127.0.0.1 that counts requests.
//!
//! Every wait here has a bound far above what it should take, and a bound hit fails
//! the test with what was seen; no test checks how fast anything was.

use std::process::Command;
use std::time::Duration;

use crate::util::{Daemon, Engine, Env, FeedServer};

fn binary(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_feedsieve"));
    c.arg("--config").arg(&env.config_path);
    c
}

/// An RSS feed of `items`: (guid, title, link, text).
fn rss(items: &[(String, String, String, String)]) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title>");
    for (guid, title, link, text) in items {
        s.push_str(&format!(
            "<item><guid>{guid}</guid><title>{title}</title><link>{link}</link>\
             <description>{text}</description><pubDate>Mon, 01 Jun 2026 09:00:00 GMT</pubDate></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s.into_bytes()
}

/// A story's text: distinct words per `n`, and "border" for the topic.
fn words(n: usize) -> String {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = vec!["border".to_owned()];
    for _ in 0..80 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(format!("w{}", x % 4000));
    }
    out.join(" ")
}

/// Waits until `check` holds, looking every 200 ms for up to `secs` seconds; the
/// last thing seen is in the failure.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    secs: u64,
    mut look: impl AsyncFnMut() -> (bool, T),
) -> T {
    let mut last = None;
    for _ in 0..secs * 5 {
        let (ok, seen) = look().await;
        if ok {
            return seen;
        }
        last = Some(seen);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs}s waiting for {what}; last seen: {last:?}");
}

fn count(env: &Env, sql: &str) -> i64 {
    env.rows(sql)[0][0].parse().unwrap()
}

/// A counter of `/metrics`.
async fn metric(d: &Daemon, name: &str) -> u64 {
    let (_, text) = d.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

const FEEDS: usize = 24;

/// Feed `i` has its own story and, for `i` below a third of the feeds, a copy of a
/// story that feed `i + FEEDS / 2` carries too (the same link with other tracking
/// parameters, and the same text).
fn feed_items(i: usize) -> Vec<(String, String, String, String)> {
    let mut items = vec![(
        format!("own-{i}"),
        format!("Own story {i}"),
        format!("https://outlet{i}.example/own/{i}"),
        words(1000 + i),
    )];
    let shared = if i < FEEDS / 3 {
        Some(i)
    } else if (FEEDS / 2..FEEDS / 2 + FEEDS / 3).contains(&i) {
        Some(i - FEEDS / 2)
    } else {
        None
    };
    if let Some(s) = shared {
        items.push((
            format!("copy-{i}"),
            format!("Shared story {s}"),
            format!("https://wire.example/story/{s}?utm_source=feed{i}"),
            words(s),
        ));
    }
    items
}

/// `n` feeds `/f0.xml`... on `server`, feed `i` holding the items of `feed_items(story(i))`
/// and answering after `delay`; their `[[feed]]` tables.
fn slow_feeds(server: &FeedServer, n: usize, delay: Duration, story: impl Fn(usize) -> usize) -> String {
    let mut feeds = String::new();
    for i in 0..n {
        let path = format!("/f{i}.xml");
        server.put(&path, rss(&feed_items(story(i))), "application/rss+xml");
        server.delay(&path, delay);
        feeds.push_str(&format!("[[feed]]\nid = \"f{i}\"\nurl = \"{}\"\n\n", server.url(&path)));
    }
    feeds
}

fn cluster_env(server: &FeedServer, daemon: &str) -> Env {
    let mut feeds = String::new();
    for i in 0..FEEDS {
        feeds.push_str(&format!(
            "[[feed]]\nid = \"f{i}\"\nurl = \"{}\"\n\n",
            server.url(&format!("/f{i}.xml"))
        ));
    }
    feeds.push_str("[[topic]]\nid = \"border\"\ntitle = \"Border\"\nquery = \"border\"\n");
    Env::with_daemon_on(Engine::Postgres, daemon, &feeds)
}

/// Three nodes on one database behave as one daemon: each feed fetched once in its
/// slot, copies in feeds polled by different nodes one story, the same bytes (and
/// ETag) from every node, and a change stored by a `feedsieve poll` process served by
/// every node within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_poll_each_feed_once_and_serve_the_same_bytes() {
    let server = FeedServer::start().await;
    for i in 0..FEEDS {
        server.put(&format!("/f{i}.xml"), rss(&feed_items(i)), "application/rss+xml");
    }
    let env = cluster_env(
        &server,
        "timeout = \"5s\"\nlease = \"30s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"\nfetch_concurrency = 4",
    );
    // Started together, so that each finds feeds due; each logs the feeds it stored.
    let node = |name: &'static str| {
        let cmd = binary(&env);
        async move {
            Daemon::start_logging(cmd, &["--node", name], "info,feedsieve::daemon::pipeline=debug").await
        }
    };
    let (n1, n2, n3) = tokio::join!(node("n1"), node("n2"), node("n3"));
    let nodes = [n1, n2, n3];
    let shared = FEEDS / 3;
    let items = (FEEDS + 2 * shared) as i64;
    eventually("every item stored", 60, async || {
        let n = count(&env, "SELECT count(*) FROM items");
        (n == items, n)
    })
    .await;
    // The nodes' first passes are over (each feed's next poll is an hour away):
    // wait a little for a second fetch that must not come.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fetches: Vec<usize> = (0..FEEDS).map(|i| server.requests(&format!("/f{i}.xml")).len()).collect();
    assert!(fetches.iter().all(|n| *n == 1), "each feed fetched once: {fetches:?}");
    assert_eq!(count(&env, "SELECT count(*) FROM stories"), items - shared as i64, "each shared story once");

    // The work was shared, and each claim was one fetch.
    let mut claims = Vec::new();
    for d in &nodes {
        claims.push(metric(d, "feedsieve_claims_total").await);
    }
    assert_eq!(claims.iter().sum::<u64>(), FEEDS as u64, "claims per node: {claims:?}");
    assert!(claims.iter().filter(|c| **c > 0).count() >= 2, "more than one node polled: {claims:?}");
    // Copies stored by different nodes made one story (the count above) at least once.
    let stored_by = |feed: usize| {
        let needle = format!("stored feed=f{feed} new=");
        nodes.iter().position(|d| d.log.lock().unwrap().contains(&needle)).expect("a node stored each feed")
    };
    let split = (0..shared).filter(|&s| stored_by(s) != stored_by(s + FEEDS / 2)).count();
    assert!(split > 0, "some pair of copies was stored by two nodes");

    // Every node serves the same bytes.
    let same = eventually("the same topic feed from every node", 30, async || {
        let mut seen = Vec::new();
        for d in &nodes {
            let r = reqwest::get(format!("{}/topics/border.atom", d.base)).await.unwrap();
            let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
            seen.push((etag, r.bytes().await.unwrap()));
        }
        let all_same = seen.windows(2).all(|w| w[0] == w[1]);
        (all_same && crate::util::titles(&seen[0].1).len() == items as usize - shared, seen)
    })
    .await;
    assert!(same[0].0.is_some());

    // Health and status name the nodes.
    let (status, health) = nodes[1].get("/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["node"], "n2");
    let out = env.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> =
        status["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["n1", "n2", "n3"], "{status}");
    assert!(status["nodes"][0]["last_seen"].is_string() && status["nodes"][0]["claimed"].is_number());

    // A change stored by another process reaches every node.
    let mut f0 = feed_items(0);
    f0.push(("late".into(), "Late border news".into(), "https://outlet0.example/late".into(), words(5000)));
    server.put("/f0.xml", rss(&f0), "application/rss+xml");
    let cli = env.clone_path();
    let out = tokio::task::spawn_blocking(move || cli.cli(&["poll", "--feed", "f0"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for d in &nodes {
        eventually("the change on every node", 20, async || {
            let titles = d.topic_titles("border").await;
            (titles.iter().any(|t| t == "Late border news"), titles.len())
        })
        .await;
    }
    let notified: Vec<u64> = {
        let mut v = Vec::new();
        for d in &nodes {
            v.push(metric(d, "feedsieve_notifications_total").await);
        }
        v
    };
    assert!(notified.iter().all(|n| *n > 0), "told by notices: {notified:?}");
    for d in nodes {
        assert!(d.stop().success());
    }
}

/// A node killed while it holds claims: the others poll its feeds once its lease has
/// run out; everything is stored once and no feed fetched more than twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_s_feeds_are_polled_by_the_others_after_its_lease() {
    const N: usize = 8;
    let server = FeedServer::start().await;
    let feeds = slow_feeds(&server, N, Duration::from_secs(3), |i| FEEDS - 1 - i);
    let env = Env::with_daemon_on(
        Engine::Postgres,
        "timeout = \"5s\"\nlease = \"10s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"\n\
         fetch_concurrency = 2\nper_host_concurrency = 2",
        &feeds,
    );
    let mut a = Daemon::start_with(binary(&env), &["--node", "a"]).await;
    // a claims every feed as it comes due (within 5 s of its start), and fetches two at
    // a time, three seconds each.
    eventually("a to claim every feed", 30, async || {
        let n = count(&env, "SELECT count(*) FROM feeds WHERE claimed_by = 'a' OR last_fetch IS NOT NULL");
        (n == N as i64, n)
    })
    .await;
    // b runs before a dies (it finds a's feeds taken and waits for a's claims to
    // end), c starts after.
    let b = Daemon::start_with(binary(&env), &["--node", "b"]).await;
    eventually("b to find the feeds taken", 30, async || {
        let n = metric(&b, "feedsieve_poll_passes_total").await;
        (n > 0, n)
    })
    .await;
    a.signal(libc::SIGKILL);
    let _ = a.child.wait_exit("a after SIGKILL");
    let held = count(&env, "SELECT count(*) FROM feeds WHERE claimed_by = 'a'");
    assert!(held > 0, "a died holding claims");
    let c = Daemon::start_with(binary(&env), &["--node", "c"]).await;
    eventually("every feed stored", 90, async || {
        let n = count(&env, "SELECT count(*) FROM feeds WHERE last_status = 200");
        (n == N as i64, n)
    })
    .await;
    let fetches: Vec<usize> = (0..N).map(|i| server.requests(&format!("/f{i}.xml")).len()).collect();
    assert!(fetches.iter().all(|n| (1..=2).contains(n)), "no feed fetched more than twice: {fetches:?}");
    let expected: usize = (0..N).map(|i| feed_items(FEEDS - 1 - i).len()).sum();
    assert_eq!(count(&env, "SELECT count(*) FROM items"), expected as i64, "every item, once");
    let taken = metric(&b, "feedsieve_claims_taken_over_total").await
        + metric(&c, "feedsieve_claims_taken_over_total").await;
    assert_eq!(taken, held as u64, "the feeds a held were taken over after its lease");
    assert!(b.stop().success() && c.stop().success());
}

/// A node stopped with SIGTERM gives its claims up at once: another node polls the
/// feeds it had not started long before its ten-minute lease would end.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_node_hands_its_claims_over_at_once() {
    const N: usize = 8;
    let server = FeedServer::start().await;
    let feeds = slow_feeds(&server, N, Duration::from_secs(3), |i| FEEDS / 2 - 1 - i);
    let env = Env::with_daemon_on(
        Engine::Postgres,
        "timeout = \"5s\"\nlease = \"10m\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"\n\
         fetch_concurrency = 1\nper_host_concurrency = 1",
        &feeds,
    );
    let a = Daemon::start_with(binary(&env), &["--node", "a"]).await;
    eventually("a to claim every feed", 30, async || {
        let n = count(&env, "SELECT count(*) FROM feeds WHERE claimed_by = 'a' OR last_fetch IS NOT NULL");
        (n == N as i64, n)
    })
    .await;
    let b = Daemon::start_with(binary(&env), &["--node", "b"]).await;
    // b has looked (its first polls are spread over five seconds) and found every
    // feed a's for ten minutes.
    eventually("b to find the feeds taken", 30, async || {
        let n = metric(&b, "feedsieve_poll_passes_total").await;
        (n > 0, n)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let unpolled = count(&env, "SELECT count(*) FROM feeds WHERE last_fetch IS NULL");
    assert!(unpolled > 1, "a holds feeds it has not polled yet");
    // A `feedsieve poll` process leaves alone a feed a node holds.
    let held = env
        .rows("SELECT id FROM feeds WHERE claimed_by = 'a' AND last_fetch IS NULL ORDER BY id DESC LIMIT 1");
    let cli = env.clone_path();
    let feed = held[0][0].clone();
    let out =
        tokio::task::spawn_blocking(move || cli.cli(&["poll", "--json", "--feed", &feed])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let poll: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((poll["skipped"].as_u64(), poll["fetched"].as_u64()), (Some(1), Some(0)), "{poll}");
    assert!(a.stop().success());
    eventually("every feed stored", 60, async || {
        let n = count(&env, "SELECT count(*) FROM feeds WHERE last_status = 200");
        (n == N as i64, n)
    })
    .await;
    assert_eq!(metric(&b, "feedsieve_claims_taken_over_total").await, 0, "handed over, not expired");
    assert!(metric(&b, "feedsieve_claims_total").await >= unpolled as u64 - 1);
    let fetches: Vec<usize> = (0..N).map(|i| server.requests(&format!("/f{i}.xml")).len()).collect();
    assert!(fetches.iter().all(|n| *n == 1), "each feed fetched once: {fetches:?}");
    assert!(b.stop().success());
}

/// On SQLite, a change a `feedsieve poll` process stores while `run` serves reaches
/// the served feeds within seconds, not at the daemon's next pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_process_s_change_reaches_a_running_daemon_on_sqlite() {
    let server = FeedServer::start().await;
    server.put("/f0.xml", rss(&feed_items(0)), "application/rss+xml");
    let env = Env::with_daemon_on(
        Engine::Sqlite,
        "timeout = \"5s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[[feed]]\nid = \"f0\"\nurl = \"{}\"\n\n[[topic]]\nid = \"border\"\nquery = \"border\"\n",
            server.url("/f0.xml")
        ),
    );
    let d = Daemon::start(binary(&env)).await;
    eventually("the first poll served", 30, async || {
        let n = d.topic_titles("border").await.len();
        (n == feed_items(0).len(), n)
    })
    .await;
    let mut f0 = feed_items(0);
    f0.push(("late".into(), "Late border news".into(), "https://outlet0.example/late".into(), words(5000)));
    server.put("/f0.xml", rss(&f0), "application/rss+xml");
    let cli = env.clone_path();
    let out = tokio::task::spawn_blocking(move || cli.cli(&["poll"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the change served", 20, async || {
        let titles = d.topic_titles("border").await;
        (titles.iter().any(|t| t == "Late border news"), titles)
    })
    .await;
    assert_eq!(
        server.requests("/f0.xml").len(),
        2,
        "the daemon did not poll again: the change came from the store"
    );
    assert!(d.stop().success());
}

/// A node whose config file differs from another live node's says so, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_another_config_file_is_named_in_a_warning() {
    let server = FeedServer::start().await;
    server.put("/f0.xml", rss(&feed_items(0)), "application/rss+xml");
    let env = Env::with_daemon_on(
        Engine::Postgres,
        "timeout = \"5s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"",
        &format!("[[feed]]\nid = \"f0\"\nurl = \"{}\"\n", server.url("/f0.xml")),
    );
    let mut x = Daemon::start_with(binary(&env), &["--node", "x"]).await;
    // The same database and feeds, one more topic.
    let other = tempfile::tempdir().unwrap();
    let other_path = other.path().join("feedsieve.toml");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(&other_path, format!("{text}\n[[topic]]\nid = \"extra\"\nquery = \"border\"\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedsieve"));
    cmd.arg("--config").arg(&other_path);
    let mut y = Daemon::start_with(cmd, &["--node", "y"]).await;
    y.wait_log("y to warn of x", |l| l.contains("node x runs with another config file")).await;
    x.wait_log("x to warn of y", |l| l.contains("node y runs with another config file")).await;
    assert!(x.stop().success() && y.stop().success());
}

/// A node claims no more feeds than it can soon poll: four per fetch slot, at least
/// sixteen, whatever is due (claiming all that was due had a node behind a slow
/// server hold feeds past their lease).
#[tokio::test(flavor = "multi_thread")]
async fn a_node_holds_no_more_claims_than_it_can_soon_poll() {
    const N: usize = 40;
    let server = FeedServer::start().await;
    let feeds = slow_feeds(&server, N, Duration::from_millis(300), |i| i % FEEDS);
    let env = Env::with_daemon_on(
        Engine::Postgres,
        "timeout = \"5s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"\nfetch_concurrency = 1",
        &feeds,
    );
    let a = Daemon::start_with(binary(&env), &["--node", "a"]).await;
    let mut most = 0;
    let seen = eventually("every feed stored", 90, async || {
        most = most.max(count(&env, "SELECT count(*) FROM feeds WHERE claimed_by = 'a'"));
        let stored = count(&env, "SELECT count(*) FROM feeds WHERE last_status = 200");
        (stored == N as i64, (stored, most))
    })
    .await;
    assert!((1..=16).contains(&seen.1), "claims held at once: {}", seen.1);
    assert!(a.stop().success());
}
