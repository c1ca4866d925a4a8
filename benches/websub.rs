//! WebSub end to end, on loopback: the release binary as both a subscriber (of a
//! source hub written here) and the hub of its topic feeds (to readers written here).
//!
//! `cargo build --release && cargo bench --bench websub` (`FEEDSIEVE_BIN` names another
//! binary; `PUSHES` and `SUBSCRIBERS` change the counts, 100 and 1,000).
//!
//! 1. Latency: the source hub pushes a new version of the source feed (signed) to
//!    feedsieve's callback; the time until a subscribed reader receives the topic feed
//!    that carries the new item. Median, 90th percentile and maximum over `PUSHES`.
//! 2. Fan-out: `SUBSCRIBERS` readers subscribed to one topic feed; the time from one
//!    push until every one of them has the new version, and the daemon's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hmac::{KeyInit, Mac};

type Log = Arc<Mutex<Vec<(String, Instant, Bytes)>>>;
/// The source's hub's subscription requests, and the source feed's body.
type Source = (Arc<Mutex<Vec<HashMap<String, String>>>>, Arc<Mutex<Vec<u8>>>);

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn feed(hub: &str, self_url: &str, n: usize) -> Vec<u8> {
    let mut doc = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel>\
         <title>Source</title><link>https://src.example.org/</link><description>d</description>\
         <atom:link rel=\"hub\" href=\"{hub}\"/><atom:link rel=\"self\" href=\"{self_url}\"/>"
    );
    for i in (0..n).rev().take(20) {
        doc.push_str(&format!(
            "<item><guid>s-{i}</guid><title>Item {i}</title><description>Item {i}.</description></item>"
        ));
    }
    doc.push_str("</channel></rss>");
    doc.into_bytes()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Callbacks under `/cb/{name}`: verifications echoed, pushes logged.
async fn readers() -> (String, Log, Arc<Mutex<usize>>) {
    let log: Log = Arc::default();
    let verified: Arc<Mutex<usize>> = Arc::default();
    let app =
        axum::Router::new()
            .route(
                "/cb/{name}",
                axum::routing::get(
                    |State((_, v)): State<(Log, Arc<Mutex<usize>>)>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        *v.lock().expect("lock") += 1;
                        q.get("hub.challenge").cloned().unwrap_or_default()
                    },
                )
                .post(
                    |State((log, _)): State<(Log, Arc<Mutex<usize>>)>,
                     Path(name): Path<String>,
                     body: Bytes| async move {
                        log.lock().expect("lock").push((name, Instant::now(), body));
                        StatusCode::OK
                    },
                ),
            )
            .with_state((log.clone(), verified.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log, verified)
}

fn memory_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    let (pushes, subscribers) = (env_or("PUSHES", 100), env_or("SUBSCRIBERS", 1000));
    let bin = std::env::var("FEEDSIEVE_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/feedsieve", env!("CARGO_MANIFEST_DIR")));
    assert!(std::path::Path::new(&bin).exists(), "{bin} is missing: cargo build --release first");
    feedsieve::fetch::install_tls_provider();
    let http = reqwest::Client::new();

    // The source: its feed, and its hub (which records subscription requests).
    let hub_requests: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let body: Arc<Mutex<Vec<u8>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hub",
            axum::routing::post(|State((r, _)): State<Source>, b: Bytes| async move {
                r.lock().expect("lock").push(url::form_urlencoded::parse(&b).into_owned().collect());
                StatusCode::ACCEPTED
            }),
        )
        .route(
            "/src",
            axum::routing::get(|State((_, b)): State<Source>| async move { b.lock().expect("lock").clone() }),
        )
        .with_state((hub_requests.clone(), body.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let src = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (hub, self_url) = (format!("{src}/hub"), format!("{src}/src"));
    *body.lock().expect("lock") = feed(&hub, &self_url, 1);

    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let base = format!("http://127.0.0.1:{port}/");
    let config = dir.path().join("feedsieve.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndatabase = \"db.sqlite\"\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"{base}\"\n\
             schedule = \"every 1h\"\n\n[websub]\nhub = \"self\"\nsubscribe = true\n\n\
             [[feed]]\nid = \"src\"\nurl = \"{self_url}\"\n\n[[topic]]\nid = \"t\"\nfeeds = [\"src\"]\nlimit = 20\n"
        ),
    )
    .expect("config");
    let mut daemon = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the daemon starts");
    let pid = daemon.id();

    // feedsieve subscribes to the source's hub; the "hub" verifies.
    let request = {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = hub_requests.lock().expect("lock").first().cloned() {
                break r;
            }
            assert!(Instant::now() < until, "no subscription request from feedsieve");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (secret, callback) = (request["hub.secret"].clone(), request["hub.callback"].clone());
    let check = http
        .get(format!(
            "{callback}?hub.mode=subscribe&hub.topic={self_url}&hub.challenge=c&hub.lease_seconds=86400"
        ))
        .send()
        .await
        .expect("verification");
    assert_eq!(check.text().await.expect("body"), "c");

    // Readers subscribe to the topic feed at feedsieve's own hub.
    let (readers_url, received, verified) = readers().await;
    let topic = format!("{base}topics/t.atom");
    let subscribe = |name: String| {
        let (http, hub, topic, cb) =
            (http.clone(), format!("{base}websub"), topic.clone(), format!("{readers_url}/cb/{name}"));
        async move {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("hub.mode", "subscribe"), ("hub.topic", &topic), ("hub.callback", &cb)])
                .finish();
            let r = http
                .post(hub)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await;
            assert_eq!(r.expect("subscribe").status().as_u16(), 202);
        }
    };
    subscribe("reader".into()).await;
    wait("the reader's verification", 10, || *verified.lock().expect("lock") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let push = |n: usize| {
        let (http, callback, hub, self_url, secret) =
            (http.clone(), callback.clone(), hub.clone(), self_url.clone(), secret.clone());
        async move {
            let doc = feed(&hub, &self_url, n);
            let r = http
                .post(callback)
                .header("content-type", "application/rss+xml")
                .header("x-hub-signature", sign(&secret, &doc))
                .body(doc)
                .send()
                .await
                .expect("push");
            assert_eq!(r.status().as_u16(), 202);
        }
    };
    let has = |name: &str, n: usize| {
        let want = format!("Item {}", n - 1);
        received
            .lock()
            .expect("lock")
            .iter()
            .any(|(who, _, b)| who == name && String::from_utf8_lossy(b).contains(&want))
    };

    // 1. Latency.
    let mut took: Vec<Duration> = Vec::with_capacity(pushes);
    for i in 0..pushes {
        let n = i + 2;
        let t0 = Instant::now();
        push(n).await;
        wait("the reader's copy", 30, || has("reader", n)).await;
        took.push(t0.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("## Latency: source hub's push to a subscribed reader's copy ({pushes} pushes, loopback)\n");
    println!("| median | p90 | max | min |\n|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
        ms(took[took.len() / 2]),
        ms(took[took.len() * 9 / 10]),
        ms(took[took.len() - 1]),
        ms(took[0])
    );

    // 2. Fan-out.
    let rss_before = memory_kib(pid, "VmRSS:");
    let t_sub = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..subscribers {
        tasks.spawn(subscribe(format!("f{k}")));
        if tasks.len() >= 32 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    wait("every verification", 120, || *verified.lock().expect("lock") == subscribers + 1).await;
    let subscribed_in = t_sub.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = pushes + 2;
    let t0 = Instant::now();
    push(n).await;
    let all = |n: usize| {
        let want = format!("Item {}", n - 1);
        received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(who, _, b)| who.starts_with('f') && String::from_utf8_lossy(b).contains(&want))
            .count()
    };
    wait("every subscriber's copy", 300, || all(n) >= subscribers).await;
    let fan_out = t0.elapsed();
    let first = received
        .lock()
        .expect("lock")
        .iter()
        .filter(|(who, _, _)| who.starts_with('f'))
        .map(|(_, at, _)| at.duration_since(t0))
        .min()
        .unwrap_or_default();
    let (rss_after, hwm) = (memory_kib(pid, "VmRSS:"), memory_kib(pid, "VmHWM:"));
    println!("## Fan-out: one push to {subscribers} subscribers of one topic feed\n");
    println!(
        "| subscribing {subscribers} (verified) | first copy | all copies | daemon RSS before | after | peak |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.2} s | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        subscribed_in.as_secs_f64(),
        ms(first),
        ms(fan_out),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = daemon.wait();
}
