//! Rendering a topic: [`publish::render`] in Atom, RSS and JSON Feed of a topic of
//! 50 and of 500 entries (`render/FORMAT/ENTRIES`).
//!
//! The entries are items of the corpus (see `benches/common/mod.rs`) as the store
//! hands them to `publish`: HTML sanitised, newest first, and one story in twelve
//! also reported by another feed (the corpus has 8 % near-duplicates).
//!
//! `cargo bench --bench render [-- FILTER]` (`FEEDSIEVE_BENCH_CLOCK=cpu` to measure CPU
//! time rather than wall time).

mod common;

use std::hint::black_box;

use chrono::Utc;
use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use feedsieve::model::{EntryRow, StoredItem};
use feedsieve::model::{Item, ParsedFeed};
use feedsieve::parse;
use feedsieve::publish::{self, Format, TopicMeta};
use url::Url;

/// `n` entries of items spread over the whole corpus, newest first.
fn entries(corpus: &common::Corpus, parsed: &[ParsedFeed], n: usize) -> Vec<EntryRow> {
    let now = Utc::now();
    let all: Vec<(&common::Body, Option<&str>, Option<&str>, &Item)> = corpus
        .feeds
        .iter()
        .zip(parsed)
        .flat_map(|(b, p)| p.items.iter().map(move |i| (b, p.title.as_deref(), p.site_link.as_deref(), i)))
        .collect();
    let step = (all.len() / n).max(1);
    let mut out: Vec<EntryRow> = (0..n)
        .map(|k| {
            // A corpus smaller than `n` is used more than once, under other ids.
            let (body, feed_title, feed_site, item) = all[(k * step) % all.len()];
            let mut item = item.clone();
            parse::sanitize_item(&mut item);
            let first_seen = item.published.map_or(now.timestamp(), |d| d.timestamp() + 600);
            let also = if k % 12 == 5 {
                let (other, other_title, _, other_item) = all[(k * step + all.len() / 2) % all.len()];
                vec![(other.id.clone(), other_title.map(str::to_owned), other_item.link.clone())]
            } else {
                vec![]
            };
            EntryRow {
                story_id: k as i64 + 1,
                score: 1.0 + (k % 7) as f64,
                item: StoredItem {
                    id: k as i64 + 1,
                    feed_id: body.id.clone(),
                    feed_title: feed_title.map(str::to_owned),
                    feed_url: body.url.to_string(),
                    feed_site: feed_site.map(str::to_owned),
                    key: format!("{}#{k}", item.key),
                    link: item.link,
                    title: item.title,
                    summary: item.summary,
                    content: item.content,
                    authors: item.authors,
                    categories: item.categories,
                    published: item.published.map(|d| d.timestamp()),
                    updated: item.updated.map(|d| d.timestamp()),
                    first_seen,
                    changed_at: first_seen,
                },
                also,
            }
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.item.published.unwrap_or(e.item.first_seen)));
    out
}

fn render<M: Measurement>(c: &mut Criterion<M>) {
    let corpus = common::corpus();
    let base_url = Url::parse("http://127.0.0.1:8080/").expect("base URL");
    let meta = TopicMeta {
        id: "border-security",
        title: "Border security",
        description: Some("Border security, migrant smuggling and human trafficking"),
        base_url: &base_url,
        hub: None,
    };
    let parsed = corpus.parse_all(Utc::now());
    let mut g = c.benchmark_group("render");
    for n in [50, 500] {
        let entries = entries(&corpus, &parsed, n);
        g.throughput(Throughput::Elements(n as u64));
        for format in Format::ALL {
            eprintln!(
                "render/{}/{n}: {} bytes",
                format.extension(),
                publish::render(format, &meta, &entries).body.len()
            );
            g.bench_with_input(
                BenchmarkId::new(format.extension(), format!("{n}{}", common::clock_suffix())),
                &entries,
                |b, entries| b.iter(|| black_box(publish::render(format, &meta, entries))),
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = wall;
    config = common::config(3);
    targets = render::<WallTime>
}
criterion_group! {
    name = cpu;
    config = common::config(3).with_measurement(common::CpuTime(WallTime));
    targets = render::<common::CpuTime>
}

fn main() {
    if common::cpu_clock() {
        cpu()
    } else {
        wall()
    }
    Criterion::default().configure_from_args().final_summary();
}
