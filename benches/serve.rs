//! Per-request cost of the HTTP handlers, in process: the axum router of
//! `serve::router` driven with `tower::ServiceExt::oneshot`, no sockets. What a
//! loopback `wrk` run (bench/serve.sh) adds on top is hyper's connection handling and
//! the kernel.
//!
//! The state is built as the daemon builds it: a database of synthetic items (with
//! HTML summaries) in a temporary folder, one curation pass, the topic's outputs
//! sanitised and rendered, `AppState::update_topics`. The topic shows 50 entries.
//!
//! `cargo bench --bench serve` (criterion's filters and options work after `--`).

mod common;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use common::Rng;
use criterion::{Criterion, criterion_group, criterion_main};
use feedsieve::daemon::render_topic;
use feedsieve::dedup;
use feedsieve::metrics::Metrics;
use feedsieve::model::{FetchRecord, IngestJob, Item, NewItem, StoryRule};
use feedsieve::publish::RenderedTopic;
use feedsieve::serve::{AppState, router};
use feedsieve::store::{Store, StoreHandle};
use tower::ServiceExt;

const FEEDS: usize = 20;
const ITEMS_PER_FEED: usize = 50;
const TOPIC: &str = "border-security";

const WORDS: &str = "agency officials report police minister said on the of a new plan court city council \
    week year data trade talks budget local regional press release statement operation network arrested \
    suspects funding coast guard training cooperation summit review public health weather market";

/// An item body of 60 to 240 words in paragraphs with links; one in four
/// carries a topic phrase.
fn body(rng: &mut Rng, n: usize) -> (String, String) {
    let vocab: Vec<&str> = WORDS.split_whitespace().collect();
    let words = 60 + rng.below(180);
    let mut text = String::new();
    let mut html = String::from("<p>");
    for i in 0..words {
        let w = vocab[rng.below(vocab.len())];
        text.push_str(w);
        text.push(' ');
        if i % 40 == 39 {
            html.push_str(&format!("<a href=\"/story/{n}/{i}\">{w}</a></p>\n<p>"));
        } else {
            html.push_str(w);
            html.push(' ');
        }
    }
    if n.is_multiple_of(4) {
        text.push_str("border security");
        html.push_str("border security");
    }
    html.push_str("</p>");
    (text, html)
}

fn item(feed: usize, n: usize, rng: &mut Rng) -> NewItem {
    let (text, html) = body(rng, n);
    let link = format!("https://site{feed}.example/news/{n}");
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&dedup::digest(&[&text])[..16]);
    let published = Utc::now() - chrono::Duration::minutes((FEEDS * ITEMS_PER_FEED - n) as i64);
    NewItem {
        item: Item {
            key: format!("g:{n}"),
            guid: Some(format!("urn:bench:{n}")),
            link: Some(link.clone()),
            canonical_link: Some(link),
            title: text.split(' ').take(8).collect::<Vec<_>>().join(" "),
            summary: Some(html),
            content: None,
            base: Some(format!("https://site{feed}.example/")),
            authors: vec![format!("Desk {feed}")],
            categories: vec!["news".into()],
            published: Some(published),
            updated: None,
            content_hash: hash,
        },
        fingerprint: dedup::fingerprint(&text, &HashSet::new()),
        summary_text: text,
        content_text: String::new(),
        article: false,
    }
}

/// The daemon's state after a poll and a curation pass, and the folder it lives in.
fn state() -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = String::from(
        "[daemon]\ndatabase = \"bench.db\"\nlisten = \"127.0.0.1:8077\"\nbase_url = \"http://127.0.0.1:8077\"\n\n",
    );
    for f in 0..FEEDS {
        toml.push_str(&format!("[[feed]]\nid = \"f{f:02}\"\nurl = \"https://site{f}.example/feed\"\n\n"));
    }
    toml.push_str(&format!(
        "[[topic]]\nid = \"{TOPIC}\"\ntitle = \"Border security news\"\n\
         query = '\"border security\" OR \"migrant smuggling\"'\nlimit = 50\n"
    ));
    let path = dir.path().join("feedsieve.toml");
    let config = feedsieve::config::parse(&toml, &path).expect("config");
    let db = config.daemon.database.clone();
    let mut store = Store::open(&db).expect("open");
    let ids: Vec<(String, String)> = config.feeds.iter().map(|f| (f.id.clone(), f.url.to_string())).collect();
    store.sync_feeds(ids.iter().map(|(a, b)| (a.as_str(), b.as_str()))).expect("feeds");
    let mut rng = Rng(1);
    let now = Utc::now();
    let jobs: Vec<IngestJob> = (0..FEEDS)
        .map(|f| IngestJob {
            feed_id: format!("f{f:02}"),
            items: (0..ITEMS_PER_FEED).map(|i| item(f, i * FEEDS + f, &mut rng)).collect(),
            record: FetchRecord { status: 200, ..Default::default() },
            rule: StoryRule::default(),
            now,
        })
        .collect();
    store.ingest_group(&jobs.iter().collect::<Vec<_>>()).expect("ingest");
    store.flush_bands().expect("flush");
    store.write(|w| feedsieve::curate::curate(w, &config, now.timestamp())).expect("curate");
    let t = config.topic(TOPIC).expect("topic");
    store.sanitize_published(TOPIC, t.limit, t.since(now.timestamp())).expect("sanitise");
    let outputs = render_topic(&store, &config, TOPIC, now)
        .expect("render")
        .expect("configured")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    // The server reads through the writer's read pool; the writer thread lives as
    // long as the bench.
    let (store, _writer) = StoreHandle::spawn(store).expect("writer");
    let state = Arc::new(AppState {
        config: RwLock::new(Arc::new(config)),
        feeds: RwLock::new(HashMap::new()),
        store,
        metrics: Arc::new(Metrics::default()),
        node: "bench".into(),
        websub: None,
    });
    state.update_topics(vec![RenderedTopic { id: TOPIC.into(), outputs }], &[TOPIC]);
    (state, dir)
}

/// One request through the router, body read to the end.
async fn send(app: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, usize) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, body.len())
}

fn bench(c: &mut Criterion) {
    let (state, _dir) = state();
    let app = router(state.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let atom = state.feeds.read().unwrap()[TOPIC]["atom"].clone();
    let etag = atom.etag.clone();
    let lm = feedsieve::http_date(atom.last_modified);
    let gz = (header::ACCEPT_ENCODING, "gzip, deflate, br");
    // (name, path, request headers, expected status)
    type Case<'a> = (&'a str, String, Vec<(header::HeaderName, &'a str)>, StatusCode);
    let cases: Vec<Case<'_>> = vec![
        ("atom", format!("/topics/{TOPIC}.atom"), vec![], StatusCode::OK),
        ("rss", format!("/topics/{TOPIC}.rss"), vec![], StatusCode::OK),
        ("json", format!("/topics/{TOPIC}.json"), vec![], StatusCode::OK),
        ("atom_gzip", format!("/topics/{TOPIC}.atom"), vec![gz.clone()], StatusCode::OK),
        (
            "atom_if_none_match_304",
            format!("/topics/{TOPIC}.atom"),
            vec![(header::IF_NONE_MATCH, etag.as_str())],
            StatusCode::NOT_MODIFIED,
        ),
        (
            "atom_if_modified_since_304",
            format!("/topics/{TOPIC}.atom"),
            vec![(header::IF_MODIFIED_SINCE, lm.as_str())],
            StatusCode::NOT_MODIFIED,
        ),
        ("unknown_topic_404", "/topics/nope.atom".into(), vec![], StatusCode::NOT_FOUND),
        ("healthz", "/healthz".into(), vec![], StatusCode::OK),
    ];
    let mut g = c.benchmark_group("serve");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (name, uri, headers, want) in &cases {
        let (status, len) = rt.block_on(send(&app, uri, headers));
        assert_eq!(status, *want, "{name}: {uri}");
        eprintln!("{name}: {status}, {len} body bytes");
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(send(&app, uri, headers).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
