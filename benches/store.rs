//! Storing a poll: [`Store::ingest_group`] of one feed's poll of 20 new items into a
//! store that holds 10,000 (`store/ingest_poll/10000`; the time is per poll, the
//! rate in items).
//!
//! The store is set up once, in a temporary folder: the corpus's first feeds (see
//! `benches/common/mod.rs`) parsed and normalised as a poll does it, 10,000 items
//! ingested 16 feeds per transaction as the writer groups polls, and their
//! near-duplicate search keys flushed. Each measured poll is 20 items of the
//! corpus's other feeds under fresh keys, so every one is stored (story lookup,
//! item row, full-text row: the whole ingest). The measured polls all go to one
//! feed, purged again after every 50 polls, untimed (which writes their band keys as
//! the end of a pass would), so the store stays between 10,000 and 11,000 items
//! whatever the iteration count. One purge per 50 polls rather than a feed per poll
//! purged: a purge costs several polls (`Store::purge_feed` scans `item_bands`).
//!
//! How the cost grows with a bigger store (1,000,000 items) is `benches/ingest_scale.rs`
//! (`cargo bench --bench ingest_scale -- --preload 1000000`), a plain timing loop
//! because the preload alone takes minutes.
//!
//! `cargo bench --bench store` (`FEEDSIEVE_BENCH_CLOCK=cpu` to measure CPU time, which
//! leaves out waiting for the disk, rather than wall time).

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use feedsieve::model::{FetchRecord, IngestJob, NewItem, StoryRule};
use feedsieve::store::Store;

/// Items in the store when measuring.
const PRELOAD: usize = 10_000;
/// Items per measured poll.
const POLL: usize = 20;
/// Polls between two purges.
const WINDOW: usize = 50;
/// Feeds per preload transaction.
const GROUP: usize = 16;

struct Feed {
    id: String,
    url: String,
    title: Option<String>,
    items: Vec<NewItem>,
    boilerplate: Vec<u64>,
}

fn with_suffix(n: &NewItem, suffix: &str) -> NewItem {
    let mut n = n.clone();
    n.item.key.push_str(suffix);
    n
}

fn record(title: Option<String>, boilerplate: Vec<u64>) -> FetchRecord {
    FetchRecord {
        status: 200,
        etag: Some("\"5f3a-62b1c0\"".into()),
        last_modified: Some("Mon, 30 Nov 2026 00:00:00 GMT".into()),
        title,
        next_due: Some(Utc::now() + chrono::TimeDelta::hours(1)),
        boilerplate,
        ..Default::default()
    }
}

fn ingest<M: Measurement<Value = Duration>>(c: &mut Criterion<M>) {
    let corpus = common::corpus();
    let now = Utc::now();
    let feeds: Vec<Feed> = corpus
        .feeds
        .iter()
        .map(|b| {
            let parsed = common::parse_body(b, now);
            let (items, boilerplate) = common::normalise(parsed.items);
            Feed { id: b.id.clone(), url: b.url.to_string(), title: parsed.title, items, boilerplate }
        })
        .collect();
    let total: usize = feeds.iter().map(|f| f.items.len()).sum();
    // The preload takes whole feeds up to PRELOAD items; the polls take the rest. A
    // corpus too small for both (the fixtures) keeps a share for the polls and is
    // preloaded several times over under other keys: its numbers say little.
    let (pre, pool) = {
        let mut n = 0;
        let split = feeds
            .iter()
            .position(|f| {
                n += f.items.len();
                n >= PRELOAD
            })
            .map(|i| i + 1)
            .filter(|_| total >= PRELOAD + WINDOW * POLL)
            .unwrap_or_else(|| feeds.len() - (feeds.len() / 5).max(1));
        feeds.split_at(split)
    };
    let pool: Vec<&NewItem> = pool.iter().flat_map(|f| &f.items).collect();
    if pool.len() < WINDOW * POLL {
        eprintln!("store: only {} items to poll: some polls repeat texts stored shortly before", pool.len());
    }

    let dir = tempfile::tempdir().expect("temporary folder");
    let mut store = Store::open(dir.path().join("bench.db")).expect("store");
    // The feed of the measured polls.
    let live = "live";
    let sync_live = |store: &mut Store| {
        store.sync_feeds([(live, "http://127.0.0.1:8080/live.xml")]).expect("feeds");
    };
    sync_live(&mut store);

    let started = Instant::now();
    let mut stored = 0;
    for round in 0.. {
        // Round 0 stores the feeds as they are; later ones (small corpora only) as copies.
        let suffix = if round == 0 { String::new() } else { format!("~{round}") };
        let jobs: Vec<IngestJob> = pre
            .iter()
            .filter_map(|f| {
                let take = f.items.len().min(PRELOAD.saturating_sub(stored));
                (take > 0).then(|| {
                    stored += take;
                    IngestJob {
                        feed_id: format!("{}{suffix}", f.id),
                        items: f.items[..take].iter().map(|n| with_suffix(n, &suffix)).collect(),
                        record: record(f.title.clone(), f.boilerplate.clone()),
                        rule: StoryRule::default(),
                        now,
                    }
                })
            })
            .collect();
        if jobs.is_empty() {
            break;
        }
        let ids: Vec<(String, &str)> =
            pre.iter().map(|f| (format!("{}{suffix}", f.id), f.url.as_str())).collect();
        store.sync_feeds(ids.iter().map(|(a, b)| (a.as_str(), *b))).expect("feeds");
        for group in jobs.chunks(GROUP) {
            store.ingest_group(&group.iter().collect::<Vec<_>>()).expect("preload");
        }
    }
    store.flush_bands().expect("flush");
    let items = store.item_count().expect("count");
    eprintln!(
        "store: preloaded {items} items ({} stories) in {:.1} s",
        store.story_count().expect("count"),
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("store");
    // Samples of many polls each: a WAL checkpoint every few hundred polls then
    // spreads over a sample instead of making outliers of single-poll samples.
    g.throughput(Throughput::Elements(POLL as u64)).sample_size(20).sampling_mode(SamplingMode::Flat);
    let mut polls = 0usize;
    // The clock of the measurement: criterion's is not at hand in `iter_custom`.
    let cpu = common::cpu_clock();
    let epoch = Instant::now();
    let clock = || if cpu { common::thread_cpu_time() } else { epoch.elapsed() };
    g.bench_function(BenchmarkId::new("ingest_poll", format!("{items}{}", common::clock_suffix())), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if polls > 0 && polls.is_multiple_of(WINDOW) {
                    store.purge_feed(live).expect("purge");
                    sync_live(&mut store);
                }
                // A key no item had before, even when a small pool repeats within a poll.
                let n = |k: usize| polls * POLL + k;
                let job = IngestJob {
                    feed_id: live.into(),
                    items: (0..POLL)
                        .map(|k| with_suffix(pool[n(k) % pool.len()], &format!("~p{}", n(k))))
                        .collect(),
                    record: record(Some("Live".into()), Vec::new()),
                    rule: StoryRule::default(),
                    now: Utc::now(),
                };
                let t = clock();
                let counts = store.ingest_group(&[&job]).expect("ingest");
                timed += clock() - t;
                assert_eq!(counts[0].new, POLL, "every measured item is new");
                polls += 1;
            }
            timed
        })
    });
    g.finish();
    eprintln!(
        "store: {polls} polls measured; {} items stored at the end",
        store.item_count().expect("count")
    );
}

criterion_group! {
    name = wall;
    config = common::config(5);
    targets = ingest::<WallTime>
}
criterion_group! {
    name = cpu;
    config = common::config(5).with_measurement(common::CpuTime(WallTime));
    targets = ingest::<common::CpuTime>
}

fn main() {
    if common::cpu_clock() {
        cpu()
    } else {
        wall()
    }
    Criterion::default().configure_from_args().final_summary();
}
