//! Regenerating one topic over a large store, step by step: what the daemon does
//! when a topic is new or its definition changed (`curate::curate`'s backfill branch
//! followed by `curate_and_publish`'s sanitising and rendering), and what a pass
//! costs when nothing is pending.
//!
//! `cargo bench --bench regenerate -- --db PATH|URL [--query Q] [--runs N] [--limit L]`
//!
//! PATH is a database filled beforehand, e.g. by
//! `cargo bench --bench ingest_scale -- --preload 1000000 --db PATH` (synthetic
//! syllable words; the default query matches a few percent of those items). The
//! database is written to (the topic's rows, the pending queue emptied, the shown
//! items sanitised): work on a copy. Steps, each timed on its own:
//!
//! - `matches`: `Writer::matches(filter, Scope::All)`, the FTS5 query with bm25 over
//!   every stored item, inside the write transaction as curation runs it;
//! - `replace`: `Writer::replace_topic` (delete the topic's rows, insert every match);
//! - `commit`: the rest of `Store::write` (BEGIN IMMEDIATE and COMMIT);
//! - `sanitize`: `Store::sanitize_published` (only the first run has items to clean);
//! - `entries`: `Store::topic_entries` (the `limit` newest stories and their sources);
//! - `render atom` / `rss` / `json`: `publish::render`;
//! - `pass`: a whole curation pass with nothing pending plus rendering
//!   (`curate::curate`, `sanitize_published`, `render_topic`), the daemon's cost per
//!   poll pass for an unchanged topic.
//!
//! The first run reads the database from disk or the page cache into SQLite; the
//! median is over all runs, and the first run is also printed on its own. The last
//! column is the median CPU time of the thread (user and system), which other load on
//! the machine disturbs less than wall time.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use feedsieve::curate;
use feedsieve::daemon::render_topic;
use feedsieve::model::Scope;
use feedsieve::publish::{self, Format, TopicMeta};
use feedsieve::store::Store;

const TOPIC: &str = "bench-topic";
/// Four words of the synthetic vocabulary (benches/ingest_scale.rs), each in about
/// 4 % of the items, as a topic combines them: under 1 % of the items of a store it filled.
const DEFAULT_QUERY: &str = "(babanu OR babato) AND (babavi OR babake)";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let Some(db) = value("--db") else {
        eprintln!(
            "usage: cargo bench --bench regenerate -- --db PATH|URL [--query Q] [--runs N] [--limit L]"
        );
        std::process::exit(2);
    };
    let query = value("--query").unwrap_or_else(|| DEFAULT_QUERY.to_owned());
    let runs: usize = value("--runs").and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let limit: usize = value("--limit").and_then(|v| v.parse().ok()).unwrap_or(50);

    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[daemon]\ndatabase = {db:?}\n\n[[topic]]\nid = \"{TOPIC}\"\ntitle = \"Bench topic\"\nquery = {query:?}\nlimit = {limit}\n",
    );
    let config = feedsieve::config::parse(&toml, &dir.path().join("feedsieve.toml"))
        .unwrap_or_else(|e| panic!("config: {e:#}\n{toml}"));
    let topic = config.topic(TOPIC).expect("topic");
    let filter = curate::filter_for(&config, topic);
    let sig = curate::signature(&filter);

    let mut store = Store::open(&config.daemon.database).expect("open");
    let items = store.item_count().expect("count");
    // A store filled without curating has every item in the queue; the daemon's
    // would have emptied it at its last pass.
    let pending = store.write(|w| w.clear_pending()).expect("clear pending");
    eprintln!(
        "{}: {items} items ({pending} were pending), query {}",
        config.daemon.database,
        filter.query.as_ref().map_or("-".to_string(), ToString::to_string)
    );

    let steps = [
        "matches",
        "replace",
        "commit",
        "sanitize",
        "entries",
        "render atom",
        "render rss",
        "render json",
        "total",
        "pass",
    ];
    let mut times: Vec<Vec<Span>> = vec![Vec::new(); steps.len()];
    let mut matched = 0;
    let mut stories = 0;
    let mut bytes = [0usize; 3];
    for run in 0..runs {
        let now = Utc::now();
        let mut t = [Span::default(); 10];
        let start = Stopwatch::start();
        let (m_t, r_t, n) = store
            .write(|w| {
                let a = Stopwatch::start();
                let m = w.matches(&filter, Scope::All)?;
                let m_t = a.span();
                let b = Stopwatch::start();
                w.replace_topic(TOPIC, &sig, now.timestamp(), &m)?;
                Ok((m_t, b.span(), m.len()))
            })
            .expect("backfill");
        matched = n;
        t[0] = m_t;
        t[1] = r_t;
        t[2] = start.span().minus(m_t).minus(r_t);
        let a = Stopwatch::start();
        let cleaned = store.sanitize_published(TOPIC, limit, topic.since(now.timestamp())).expect("sanitise");
        t[3] = a.span();
        let a = Stopwatch::start();
        let entries = store.topic_entries(TOPIC, limit, topic.since(now.timestamp())).expect("entries");
        t[4] = a.span();
        let meta = TopicMeta {
            id: &topic.id,
            title: &topic.title,
            description: topic.description.as_deref(),
            base_url: &config.daemon.base_url,
            hub: None,
        };
        for (i, f) in Format::ALL.into_iter().enumerate() {
            let a = Stopwatch::start();
            let r = publish::render(f, &meta, &entries);
            t[5 + i] = a.span();
            bytes[i] = r.body.len();
        }
        t[8] = start.span();
        stories = store.topic_sizes().expect("sizes").get(TOPIC).copied().unwrap_or(0);

        let a = Stopwatch::start();
        let changes = store.write(|w| curate::curate(w, &config, now.timestamp())).expect("pass");
        assert!(!changes[0].backfilled, "the signature was recorded");
        store.sanitize_published(TOPIC, limit, topic.since(now.timestamp())).expect("sanitise");
        render_topic(&store, &config, TOPIC, now).expect("render").expect("topic");
        t[9] = a.span();

        let ms: Vec<String> = t.iter().map(|d| format!("{:.1}", ms(d.wall))).collect();
        eprintln!("run {run}: {} ms ({} entries, {cleaned} sanitised)", ms.join(" / "), entries.len());
        for (i, d) in t.into_iter().enumerate() {
            times[i].push(d);
        }
    }
    println!(
        "{items} items; query {query:?}: {matched} matching items ({:.2} %), {stories} stories; {limit} entries \
         (atom {} B, rss {} B, json {} B); {runs} runs",
        matched as f64 * 100.0 / items.max(1) as f64,
        bytes[0],
        bytes[1],
        bytes[2]
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "step", "median ms", "min ms", "max ms", "first ms", "CPU ms"
    );
    for (name, v) in steps.iter().zip(times) {
        let first = v[0].wall;
        let mut wall: Vec<Duration> = v.iter().map(|s| s.wall).collect();
        let mut cpu: Vec<Duration> = v.iter().map(|s| s.cpu).collect();
        wall.sort();
        cpu.sort();
        println!(
            "{name:<12} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            ms(wall[wall.len() / 2]),
            ms(wall[0]),
            ms(wall[wall.len() - 1]),
            ms(first),
            ms(cpu[cpu.len() / 2])
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall-clock time and the CPU time of this thread (user and system), which other
/// load on the machine disturbs less.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    wall: Duration,
    cpu: Duration,
}

impl Span {
    fn minus(self, o: Span) -> Span {
        Span { wall: self.wall.saturating_sub(o.wall), cpu: self.cpu.saturating_sub(o.cpu) }
    }
}

struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Stopwatch {
        Stopwatch { wall: Instant::now(), cpu: common::thread_cpu_time() }
    }
    fn span(&self) -> Span {
        Span { wall: self.wall.elapsed(), cpu: common::thread_cpu_time().saturating_sub(self.cpu) }
    }
}
