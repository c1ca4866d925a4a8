//! `full_text`: what one item's article page costs, on the article corpus of
//! `tests/fixtures/articles/` (pages of different shapes; see its README).
//!
//! `cargo bench --bench articles [-- FILTER]`. One iteration goes through every page
//! of the corpus, so the rates are pages (items) per second:
//!
//! - `extract`: [`article::extract`] alone: decoding, Readability's scoring
//!   (dom_smoothie), sanitising. CPU work only.
//! - `fetch_extract`: [`article::fetch`] from a local HTTP server on 127.0.0.1 (with
//!   the redirect rules' checks, as for a link from a feed) and then `extract`: what the
//!   poll adds per new item of a `full_text` feed, less the network's own latency.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use feedsieve::article::{self, Page};
use feedsieve::fetch::{FetchSettings, Fetcher, Request};
use url::Url;

/// The corpus's pages, by file name.
fn pages() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/articles");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 20, "the article corpus has {} pages", out.len());
    out
}

/// Serves the pages at `/NAME` as `text/html` on 127.0.0.1.
async fn serve(pages: Arc<Vec<(String, Vec<u8>)>>) -> SocketAddr {
    use axum::http::{Response, StatusCode, header};
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let pages = pages.clone();
        async move {
            let name = req.uri().path().trim_start_matches('/').to_owned();
            match pages.iter().find(|(n, _)| *n == name) {
                Some((_, body)) => Response::builder()
                    .header(header::CONTENT_TYPE, "text/html")
                    .body(axum::body::Body::from(body.clone())),
                None => Response::builder().status(StatusCode::NOT_FOUND).body(axum::body::Body::empty()),
            }
            .unwrap_or_default()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn articles(c: &mut Criterion) {
    let pages = Arc::new(pages());
    let n = pages.len() as u64;
    let base = Url::parse("https://news.example.org/").expect("URL");
    let fixed: Vec<Page> = pages
        .iter()
        .map(|(name, bytes)| Page {
            bytes: bytes.clone(),
            url: base.join(name).expect("URL"),
            content_type: Some("text/html".into()),
        })
        .collect();
    let ok = fixed.iter().filter(|p| article::extract(p).is_ok()).count();
    eprintln!("articles: {ok} of {n} pages give a main text");

    let mut g = c.benchmark_group("articles");
    g.throughput(Throughput::Elements(n)).sample_size(20).sampling_mode(SamplingMode::Flat);
    g.bench_function("extract", |b| {
        b.iter(|| {
            for p in &fixed {
                let _ = black_box(article::extract(black_box(p)));
            }
        })
    });

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let addr = runtime.block_on(serve(pages.clone()));
    let fetcher = Fetcher::new(FetchSettings {
        timeout: Duration::from_secs(30),
        max_bytes: 10 * 1024 * 1024,
        concurrency: 16,
        per_host: 2,
        own_address: None,
        proxy: None,
    })
    .expect("fetcher");
    let links: Vec<Url> =
        pages.iter().map(|(name, _)| Url::parse(&format!("http://{addr}/{name}")).expect("URL")).collect();
    g.bench_function("fetch_extract", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for link in &links {
                    let page = article::fetch(&fetcher, link, &Request::default()).await.expect("fetched");
                    let _ = black_box(article::extract(&page));
                }
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = articles
}
criterion_main!(benches);
