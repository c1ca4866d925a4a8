//! The HTTP server: topic feeds, the index page, OPML, health and metrics.
//!
//! Input: topic outputs rendered by the pipeline (cached here as bytes, plain and
//! gzipped, until the topic changes) and the store's read pool for the index page,
//! `/healthz` and `/metrics`. Output: HTTP answers. Nothing here writes
//! to the database.
//!
//! Topic feeds carry `ETag`, `Last-Modified` and `Cache-Control`, answer
//! `If-None-Match` / `If-Modified-Since` with 304, answer HEAD (axum runs the GET
//! handler and drops the body), and are served gzipped when the client accepts it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::metrics::{Metrics, Sizes};
use crate::model::{from_ts, rows_by_id};
use crate::parse::escape_html;
use crate::publish::{Format, Rendered, RenderedTopic};
use crate::store::{Store, StoreError, StoreHandle};

/// How long readers may reuse a topic feed without asking again.
const CACHE_CONTROL: &str = "public, max-age=300";

/// One topic output ready to serve.
#[derive(Debug)]
pub struct CachedFeed {
    pub body: axum::body::Bytes,
    pub gzip: axum::body::Bytes,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub format: Format,
}

impl CachedFeed {
    pub fn new(r: Rendered) -> CachedFeed {
        let mut gz =
            flate2::write::GzEncoder::new(Vec::with_capacity(r.body.len() / 3), flate2::Compression::fast());
        let gzip = gz.write_all(&r.body).and_then(|()| gz.finish()).unwrap_or_default();
        CachedFeed {
            body: r.body.into(),
            gzip: gzip.into(),
            etag: r.etag,
            last_modified: r.last_modified,
            format: r.format,
        }
    }

    /// The validator of the gzipped representation (a different byte sequence, so a
    /// different strong ETag).
    fn gzip_etag(&self) -> String {
        format!("{}-gz\"", self.etag.trim_end_matches('"'))
    }
}

/// What the server shares with the daemon.
pub struct AppState {
    pub config: RwLock<Arc<Config>>,
    /// Topic id → outputs by extension.
    pub feeds: RwLock<HashMap<String, HashMap<&'static str, Arc<CachedFeed>>>>,
    /// The store, read through its read pool (queries run on the blocking pool).
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    /// The node answering (`run --node`), named by `/healthz`.
    pub node: String,
    /// WebSub's clients and channels; `None` where nothing runs them (tests, benches).
    pub websub: Option<crate::websub::WebSubState>,
}

impl AppState {
    /// Replaces the cached outputs of the given topics (an output whose bytes did not
    /// change keeps its cached entry) and drops topics no longer configured.
    /// Outputs whose bytes changed are owed to their WebSub subscribers.
    pub fn update_topics(self: &Arc<Self>, topics: Vec<RenderedTopic>, configured: &[&str]) {
        let mut changed: Vec<(String, Format, String)> = Vec::new();
        let mut fresh: Vec<(String, HashMap<&'static str, Arc<CachedFeed>>)> = Vec::new();
        {
            let current = self.feeds.read().unwrap_or_else(|e| e.into_inner());
            for t in topics {
                let old = current.get(&t.id);
                let mut m = HashMap::new();
                for r in t.outputs {
                    let ext = r.format.extension();
                    match old.and_then(|o| o.get(ext)).filter(|c| c.etag == r.etag) {
                        Some(same) => m.insert(ext, same.clone()),
                        None => {
                            changed.push((t.id.clone(), r.format, r.etag.clone()));
                            m.insert(ext, Arc::new(CachedFeed::new(r)))
                        }
                    };
                }
                fresh.push((t.id, m));
            }
        }
        let mut feeds = self.feeds.write().unwrap_or_else(|e| e.into_inner());
        for (id, m) in fresh {
            feeds.insert(id, m);
        }
        feeds.retain(|id, _| configured.contains(&id.as_str()));
        drop(feeds);
        if self.websub.is_some() && !changed.is_empty() {
            let me = self.clone();
            tokio::spawn(async move { crate::websub::changed(&me, changed).await });
        }
    }

    /// The config now in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A topic's cached output in the format of extension `ext`.
    pub fn feed(&self, topic: &str, ext: &str) -> Option<Arc<CachedFeed>> {
        self.feeds.read().unwrap_or_else(|e| e.into_inner()).get(topic)?.get(ext).cloned()
    }
}

/// The routes of SPEC.md.
pub fn router(state: Arc<AppState>) -> Router {
    // A hub's push is a whole feed: as large as `max_feed_bytes` allows a polled one
    // (axum's own default stops at 2 MiB), and a little more, so that the handler can
    // say which limit it broke.
    let push_limit =
        usize::try_from(state.config().daemon.max_feed_bytes).unwrap_or(usize::MAX).saturating_add(1);
    Router::new()
        .route("/", get(index))
        .route("/topics/{file}", get(topic_feed))
        .route("/topics.opml", get(opml))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/websub", axum::routing::post(crate::websub::hub_request))
        .route(
            "/websub/callback/{feed}",
            get(crate::websub::callback_verify)
                .post(crate::websub::callback_push)
                .layer(axum::extract::DefaultBodyLimit::max(push_limit)),
        )
        .fallback(|| async { ServeError::NotFound })
        .with_state(state)
}

/// Every error answer, mapped in one place.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("not found")]
    NotFound,
    #[error("database unavailable")]
    Store(#[from] StoreError),
    #[error("internal error")]
    Internal,
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServeError::NotFound => StatusCode::NOT_FOUND,
            ServeError::Store(e) => {
                tracing::error!("serving: {}", crate::error_chain(e));
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServeError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{self}\n")).into_response()
    }
}

/// Runs a read query on a read connection of the store.
async fn read<R: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, ServeError> {
    Ok(state.store.read(f).await?)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let q = it.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.trim().parse::<f32>().ok());
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q.is_none_or(|q| q > 0.0)
        })
    })
}

/// Whether a conditional request can be answered with 304.
fn not_modified(headers: &HeaderMap, etags: &[&str], last_modified: DateTime<Utc>) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        return inm.trim() == "*"
            || inm.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| etags.contains(&t));
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::parse_http_date)
        .is_some_and(|since| last_modified.timestamp() <= since.timestamp())
}

async fn topic_feed(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServeError> {
    let (topic, ext) = file.rsplit_once('.').ok_or(ServeError::NotFound)?;
    let feed = state.feed(topic, ext).ok_or(ServeError::NotFound)?;
    let gzip = accepts_gzip(&headers) && feed.gzip.len() < feed.body.len();
    let etag = if gzip { feed.gzip_etag() } else { feed.etag.clone() };
    let mut b = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, crate::http_date(feed.last_modified))
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::VARY, "Accept-Encoding");
    if not_modified(&headers, &[&feed.etag, &feed.gzip_etag()], feed.last_modified) {
        return b.status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(|_| ServeError::Internal);
    }
    b = b.header(header::CONTENT_TYPE, feed.format.content_type());
    // WebSub discovery (the Recommendation, 4): the hub and the topic's self URL.
    let config = state.config();
    if let Some(hub) = config.hub_url() {
        let own = crate::websub::topic_url(&config, topic, feed.format);
        b = b.header(header::LINK, format!("<{hub}>; rel=\"hub\", <{own}>; rel=\"self\""));
    }
    let body = if gzip {
        b = b.header(header::CONTENT_ENCODING, "gzip");
        feed.gzip.clone()
    } else {
        feed.body.clone()
    };
    b.body(Body::from(body)).map_err(|_| ServeError::Internal)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (status, body) = match read(&state, |s| s.item_count()).await {
        Ok(items) => {
            (StatusCode::OK, serde_json::json!({"status": "ok", "node": state.node, "items": items}))
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "node": state.node}),
        ),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ServeError> {
    let config = state.config();
    let sizes = read(&state, move |s| {
        let rows = s.feed_states()?;
        let configured: Vec<_> = rows.iter().filter(|r| config.feed(&r.id).is_some()).collect();
        let topic_sizes = s.topic_sizes()?;
        Ok(Sizes {
            items: s.item_count()?,
            stories: s.story_count()?,
            feeds: config.feeds.len() as i64,
            feeds_failing: configured.iter().filter(|r| r.error.is_some()).count() as i64,
            topics: config
                .topics
                .iter()
                .map(|t| (t.id.clone(), topic_sizes.get(&t.id).copied().unwrap_or(0)))
                .collect(),
        })
    })
    .await?;
    let text = state.metrics.render(&sizes);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response())
}

async fn opml(State(state): State<Arc<AppState>>) -> Response {
    let config = state.config();
    let base = &config.daemon.base_url;
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<opml version=\"2.0\">\n<head>\n");
    let _ = writeln!(
        o,
        "<title>feedsieve topics</title>\n<ownerId>{}</ownerId>\n</head>\n<body>",
        escape_html(base.as_str())
    );
    for t in &config.topics {
        let url = base.join(&format!("topics/{}.atom", t.id)).map(|u| u.to_string()).unwrap_or_default();
        let _ = writeln!(
            o,
            "<outline type=\"rss\" text=\"{}\" title=\"{}\" xmlUrl=\"{}\" htmlUrl=\"{}\"{}/>",
            escape_html(&t.title),
            escape_html(&t.title),
            escape_html(&url),
            escape_html(base.as_str()),
            t.description
                .as_deref()
                .map(|d| format!(" description=\"{}\"", escape_html(d)))
                .unwrap_or_default()
        );
    }
    o.push_str("</body>\n</opml>\n");
    ([(header::CONTENT_TYPE, "text/x-opml; charset=utf-8")], o).into_response()
}

/// Days shown in the per-feed chart on the index page.
const CHART_DAYS: i64 = 30;

async fn index(State(state): State<Arc<AppState>>) -> Result<Response, ServeError> {
    let config = state.config();
    let now = Utc::now();
    let since = now.timestamp() - CHART_DAYS * 86_400;
    let (rows, sizes, per_day) =
        read(&state, move |s| Ok((s.feeds()?, s.topic_sizes()?, s.items_per_day(since)?))).await?;
    let base = &config.daemon.base_url;
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>feedsieve</title>\n");
    for t in &config.topics {
        for (f, mime) in [
            ("atom", "application/atom+xml"),
            ("rss", "application/rss+xml"),
            ("json", "application/feed+json"),
        ] {
            let _ = writeln!(
                h,
                "<link rel=\"alternate\" type=\"{mime}\" title=\"{} ({f})\" href=\"{}\">",
                escape_html(&t.title),
                escape_html(&format!("{base}topics/{}.{f}", t.id))
            );
        }
    }
    h.push_str(STYLE);
    h.push_str("</head><body>\n<header><h1>feedsieve</h1>");
    let _ = write!(h, "<p>{} topics from {} feeds. ", config.topics.len(), config.feeds.len());
    h.push_str("<a href=\"topics.opml\">All topics as OPML</a> for your reader.</p></header>\n<main>\n<h2>Topics</h2>\n<ul class=\"topics\">\n");
    for t in &config.topics {
        let n = sizes.get(&t.id).copied().unwrap_or(0);
        let _ = write!(h, "<li><h3>{}</h3>", escape_html(&t.title));
        if let Some(d) = &t.description {
            let _ = write!(h, "<p>{}</p>", escape_html(d));
        }
        let _ = write!(h, "<p class=\"sub\">{n} stories · subscribe: ");
        for f in ["atom", "rss", "json"] {
            let _ = write!(h, "<a href=\"topics/{}.{f}\">{}</a> ", escape_html(&t.id), f.to_uppercase());
        }
        h.push_str("</p></li>\n");
    }
    h.push_str("</ul>\n<h2>Sources</h2>\n<table>\n<thead><tr><th>feed</th><th>last fetch</th><th>status</th><th>items</th><th>last 30 days</th><th>error</th></tr></thead>\n<tbody>\n");
    let by_id = rows_by_id(&rows);
    for f in &config.feeds {
        let r = by_id.get(f.id.as_str()).map(|r| (*r).clone()).unwrap_or_default();
        let name = r.title.clone().unwrap_or_else(|| f.id.clone());
        let last = r
            .last_fetch
            .map(|t| from_ts(t).format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or("never".into());
        let status = r.last_status.map(|s| s.to_string()).unwrap_or("–".into());
        let health = if r.error.is_some() {
            "bad"
        } else if r.last_fetch.is_some() {
            "ok"
        } else {
            "new"
        };
        let days = per_day.get(&f.id).cloned().unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr class=\"{health}\"><td><span title=\"{}\">{}</span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(
                &crate::model::public_feed_url(f.url.as_str()).unwrap_or_else(|| "a local file".into())
            ),
            escape_html(&name),
            if f.enabled { "" } else { " <em>(disabled)</em>" },
            escape_html(&last),
            escape_html(&status),
            r.items,
            sparkline(&days, now.timestamp() / 86_400),
            escape_html(&r.problem().unwrap_or_default())
        );
    }
    h.push_str("</tbody></table>\n</main>\n<footer>feedsieve ");
    h.push_str(env!("CARGO_PKG_VERSION"));
    h.push_str("</footer></body></html>\n");
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], h)
        .into_response())
}

/// A small inline SVG bar chart of items per day, oldest on the left.
fn sparkline(days: &[(i64, i64)], today: i64) -> String {
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (w, hgt, bar) = (CHART_DAYS * 4, 20, 3);
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"items per day, last {CHART_DAYS} days\">"
    );
    for (day, n) in days {
        let age = today - day;
        if !(0..CHART_DAYS).contains(&age) {
            continue;
        }
        let x = (CHART_DAYS - 1 - age) * 4;
        let bh = ((*n * hgt) / max).max(1);
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{bh}\"><title>{n}</title></rect>",
            hgt - bh
        );
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = "<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#222}
h1{margin:.2rem 0}h2{border-bottom:1px solid #ddd;margin-top:2rem}h3{margin:.2rem 0}
ul.topics{list-style:none;padding:0}ul.topics li{margin:0 0 1rem}.sub a{margin-right:.4rem}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee}
tr.bad td:first-child{border-left:4px solid #c33}tr.ok td:first-child{border-left:4px solid #3a3}tr.new td:first-child{border-left:4px solid #aaa}
svg{background:#f3f5f8}svg rect{fill:#4a7ab8}footer{margin-top:2rem;color:#888;font-size:13px}
</style>\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers(&[("accept-encoding", "gzip, deflate, br")])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "br;q=1.0, gzip;q=0.8")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn conditional_requests() {
        let lm = from_ts(1_700_000_000);
        assert!(not_modified(&headers(&[("if-none-match", "\"a\"")]), &["\"a\""], lm));
        assert!(not_modified(&headers(&[("if-none-match", "\"x\", W/\"a\"")]), &["\"a\""], lm));
        assert!(!not_modified(&headers(&[("if-none-match", "\"b\"")]), &["\"a\""], lm));
        let ims = crate::http_date(lm);
        assert!(not_modified(&headers(&[("if-modified-since", &ims)]), &["\"a\""], lm));
        let earlier = crate::http_date(from_ts(1_600_000_000));
        assert!(!not_modified(&headers(&[("if-modified-since", &earlier)]), &["\"a\""], lm));
        // A stale ETag is not rescued by a fresh date.
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"b\""), ("if-modified-since", &ims)]),
            &["\"a\""],
            lm
        ));
    }

    #[test]
    fn sparkline_places_days() {
        let svg = sparkline(&[(100, 2), (99, 1), (50, 9)], 100);
        assert_eq!(svg.matches("<rect").count(), 2, "a day outside the window is left out");
        assert!(svg.contains("x=\"116\""), "today is the rightmost bar: {svg}");
    }
}
