//! Ingest cost per item as the store grows: preloads N synthetic items (1,000 feeds,
//! 20 items per feed, G feeds per transaction as the writer groups polls that arrive
//! together, 5 % near-duplicate copies), then times the next M items the same way.
//! The cost per item must not grow with N.
//!
//! `cargo bench --bench ingest_scale -- [--preload N] [--measure M] [--group G] [--rate R | --days D] [--db PATH|URL] [--run R]`
//! (defaults: N = 10,000, M = 10,000, G = 16, preload all "now", a temporary database,
//! run 0). With `--rate R` the preload arrives at R items a day, so a bigger N is a
//! longer history at the same pace (the fair way to ask whether cost grows with the
//! store), and the measured items go on arriving at that rate after it, timed once
//! the first window's worth has arrived (the band index then holds one window of
//! items, as it does in a daemon that has run for a while); with `--days D` it is
//! spread over the D days before now and the measured items all arrive "now".
//! Maintenance runs every 6 simulated hours, as the daemon's does (band keys are
//! kept only for the dedup window); its time is not counted. Wall and CPU time of
//! this thread are reported per item. To measure again
//! on a database preloaded earlier, pass `--preload 0 --db PATH --run 1` (a new run
//! number gives new item keys and texts). `--db postgres://...` measures PostgreSQL
//! (an empty database, or one preloaded earlier); the CPU time is then this
//! process's alone, the server's work shows in the wall time.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use common::Rng;
use feedsieve::dedup;
use feedsieve::model::Item;
use feedsieve::model::{Database, FetchRecord, IngestJob, NewItem, PgTarget, StoryRule};
use feedsieve::store::Store;

const FEEDS: usize = 1000;
/// `--no-fingerprints`: store items without fingerprints, to see what near-duplicate
/// search costs.
static NO_FINGERPRINTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const BATCH: usize = 20;

fn vocabulary() -> Vec<String> {
    let syl =
        ["ra", "to", "mi", "ke", "lo", "sa", "vi", "de", "nu", "po", "ge", "ha", "ri", "ba", "co", "fe"];
    let mut rng = Rng(7);
    (0..4000).map(|_| (0..2 + rng.below(3)).map(|_| syl[rng.below(syl.len())]).collect()).collect()
}

fn text(rng: &mut Rng, vocab: &[String], words: usize) -> String {
    let mut out = String::with_capacity(words * 7);
    for i in 0..words {
        out.push_str(&vocab[rng.below(vocab.len())]);
        out.push(if i % 15 == 14 { '.' } else { ' ' });
        if i % 15 == 14 {
            out.push(' ');
        }
    }
    out
}

fn item(run: usize, n: usize, body: &str) -> NewItem {
    let feed = n % FEEDS;
    let link = format!("https://site{feed}.example/news/{run}/{n}");
    let fingerprint = if NO_FINGERPRINTS.load(std::sync::atomic::Ordering::Relaxed) {
        None
    } else {
        dedup::fingerprint(body, &HashSet::new())
    };
    let mut item = Item {
        key: format!("g:{run}:{n}"),
        guid: Some(n.to_string()),
        link: Some(link.clone()),
        canonical_link: Some(link),
        title: body.split('.').next().unwrap_or("").to_owned(),
        summary: Some(format!("<p>{body}</p>")),
        ..Item::default()
    };
    item.content_hash = dedup::content_hash(&item);
    NewItem { item, summary_text: body.to_owned(), content_text: String::new(), fingerprint, article: false }
}

struct Gen {
    run: usize,
    rng: Rng,
    vocab: Vec<String>,
    recent: Vec<String>,
    n: usize,
}

impl Gen {
    /// The next batch of one feed's poll.
    fn batch(&mut self) -> (String, Vec<NewItem>) {
        let feed = format!("f{:04}", self.n % FEEDS);
        let mut items = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let body = if !self.recent.is_empty() && self.rng.below(20) == 0 {
                // A syndicated copy: a recent story with a dateline and a word changed.
                let base = &self.recent[self.rng.below(self.recent.len())];
                format!("CITY (Wire) - {}", base.replacen(' ', " very ", 1))
            } else {
                let words = 80 + self.rng.below(200);
                text(&mut self.rng, &self.vocab, words)
            };
            if self.recent.len() < 500 {
                self.recent.push(body.clone());
            } else {
                let i = self.rng.below(500);
                self.recent[i] = body.clone();
            }
            items.push(item(self.run, self.n * FEEDS + items.len(), &body));
        }
        self.n += 1;
        (feed, items)
    }
}

/// CPU time this thread has used, in seconds: less disturbed than wall time by other
/// work on a small machine.
fn thread_cpu() -> f64 {
    common::thread_cpu_time().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let preload = arg("--preload", 10_000);
    NO_FINGERPRINTS
        .store(args.iter().any(|a| a == "--no-fingerprints"), std::sync::atomic::Ordering::Relaxed);
    let measure = arg("--measure", 10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = match args.iter().position(|a| a == "--db").and_then(|i| args.get(i + 1)) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Database::Postgres(PgTarget { url: url.clone(), password_file: None })
        }
        Some(path) => Database::Sqlite(path.into()),
        None => Database::Sqlite(dir.path().join("bench.db")),
    };
    let mut store = Store::open(&db).expect("open");
    let ids: Vec<(String, String)> =
        (0..FEEDS).map(|f| (format!("f{f:04}"), format!("https://site{f}.example/feed"))).collect();
    store.sync_feeds(ids.iter().map(|(a, b)| (a.as_str(), b.as_str()))).expect("feeds");
    let run = arg("--run", 0);
    let mut g = Gen { run, rng: Rng(42 + run as u64), vocab: vocabulary(), recent: Vec::new(), n: 0 };
    let rule = StoryRule::default();
    let group = arg("--group", 16).max(1);
    // `--rate R` / `--days D`: see the module comment. Maintenance every 6 simulated
    // hours drops the band keys of items older than the near-duplicate window, as
    // the daemon's does.
    let days = arg("--days", 0);
    let rate = arg("--rate", 0);
    // Seconds the preload is spread over.
    let span = if rate > 0 { (preload as u128 * 86_400 / rate as u128) as i64 } else { days as i64 * 86_400 };
    // Stores `count` items from `start`, `span` seconds apart in all (0: all at
    // `start`), maintenance included; gives (wall s, CPU s, per-group us/item) of the
    // groups from item `skip` on, maintenance left out.
    let ingest = |store: &mut Store, g: &mut Gen, count: usize, start: i64, span: i64, skip: usize| {
        let mut last_prune = start;
        let mut per_group = Vec::with_capacity(count / BATCH / group + 1);
        let (mut wall, mut cpu) = (0.0, 0.0);
        let feeds = count.div_ceil(BATCH);
        let mut done = 0;
        while done < feeds {
            let n = group.min(feeds - done);
            let at = start + ((done * BATCH) as i128 * span as i128 / count.max(1) as i128) as i64;
            if span > 0 && at - last_prune >= 6 * 3600 {
                store.prune(i64::MIN, at - rule.window, &[], at).expect("maintenance");
                last_prune = at;
            }
            let (t, c) = (Instant::now(), thread_cpu());
            let jobs: Vec<IngestJob> = (0..n)
                .map(|_| {
                    let (feed, items) = g.batch();
                    IngestJob {
                        feed_id: feed,
                        items,
                        record: FetchRecord { status: 200, ..Default::default() },
                        rule,
                        now: Utc.timestamp_opt(at, 0).single().expect("time"),
                    }
                })
                .collect();
            let stored = Instant::now();
            store.ingest_group(&jobs.iter().collect::<Vec<_>>()).expect("ingest");
            // A poll pass over all the feeds ends by writing the pass's band keys.
            if (done + n) / FEEDS > done / FEEDS {
                store.flush_bands().expect("flush");
            }
            if done * BATCH >= skip {
                per_group.push(stored.elapsed().as_secs_f64() * 1e6 / (n * BATCH) as f64);
                wall += t.elapsed().as_secs_f64();
                cpu += thread_cpu() - c;
            }
            done += n;
        }
        let (t, c) = (Instant::now(), thread_cpu());
        store.flush_bands().expect("flush");
        (wall + t.elapsed().as_secs_f64(), cpu + thread_cpu() - c, per_group)
    };
    let now = Utc::now().timestamp();
    let t = Instant::now();
    ingest(&mut store, &mut g, preload, now - span, span, usize::MAX);
    if preload > 0 {
        let secs = t.elapsed().as_secs_f64();
        eprintln!("preloaded {preload} items in {secs:.1} s ({:.0} items/s)", preload as f64 / secs);
    }
    let stored = store.item_count().expect("count");
    // With a rate, the measured items go on arriving at it, after a pause longer than
    // the window (so the items of an earlier measuring run on this database are out
    // of it), and the first window's worth is not counted: the band index is then in
    // its steady state, holding one window of items, whatever the store's size.
    let (start, warm, span) = if rate > 0 {
        let last = last_first_seen(&db);
        let last = last.unwrap_or(now).max(now);
        let warm = rule.window as usize * rate / 86_400;
        (last + rule.window + 86_400, warm, ((warm + measure) as u128 * 86_400 / rate as u128) as i64)
    } else {
        if span > 0 {
            store.prune(i64::MIN, now - rule.window, &[], now).expect("maintenance");
        }
        (now, 0, 0)
    };
    let (secs, cpu, mut per) = ingest(&mut store, &mut g, warm + measure, start, span, warm);
    per.sort_by(f64::total_cmp);
    let pct = |p: f64| per[((per.len() - 1) as f64 * p) as usize];
    let items = store.item_count().expect("count");
    let stories = store.story_count().expect("count");
    drop(store);
    let bytes = database_bytes(&db);
    println!(
        "store {stored:>9} items: ingest {:.1} us/item mean, {:.1} us/item CPU (per-group p50 {:.1}, p99 {:.1}); {items} items, {stories} stories, {:.0} bytes/item",
        secs * 1e6 / measure as f64,
        cpu * 1e6 / measure as f64,
        pct(0.5),
        pct(0.99),
        bytes as f64 / items as f64
    );
}

/// The first-seen time of the newest item stored.
fn last_first_seen(db: &Database) -> Option<i64> {
    let sql = "SELECT max(first_seen) FROM items";
    match db {
        Database::Sqlite(path) => rusqlite::Connection::open(path)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .expect("last item"),
        Database::Postgres(t) => {
            let mut c = postgres::Client::connect(&t.url, postgres::NoTls).expect("connect");
            c.query_one(sql, &[]).expect("last item").get(0)
        }
    }
}

/// The size of the store: the SQLite file with its log, or PostgreSQL's database.
fn database_bytes(db: &Database) -> u64 {
    match db {
        Database::Sqlite(path) => ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
            .map(|m| m.len())
            .sum(),
        Database::Postgres(t) => {
            let mut c = postgres::Client::connect(&t.url, postgres::NoTls).expect("connect");
            c.execute("CHECKPOINT", &[]).ok();
            let n: i64 =
                c.query_one("SELECT pg_database_size(current_database())", &[]).expect("size").get(0);
            n as u64
        }
    }
}
