//! Parsing and normalising throughput: what a poll does to the bodies it fetches,
//! in MB of feed per second on one core.
//!
//! The performance issue's target: parse and normalise at 50 MB/s per core or more,
//! within 3× of sfeed's parse-only time on the same files (`bench/parse_floor.sh`
//! measures that and compares it with `parse_normalise` here).
//!
//! `cargo bench --bench parse [-- FILTER]`; the corpus is described in
//! `benches/common/mod.rs` (`FEEDSIEVE_BENCH_CORPUS=DIR` to use another;
//! `FEEDSIEVE_BENCH_CLOCK=cpu` to measure CPU time rather than wall time). One
//! iteration goes through every file of the corpus, one after the other, and every
//! group counts the same bytes (the corpus's), so the rates of the stages compare
//! directly:
//!
//! - `parse`: [`parse::parse_response`] of every body: feed-rs, then our items
//!   (keys, absolute and canonical links, dates, plain-text titles).
//! - `normalise`: what the poll does next to a feed's new items (text of the
//!   HTML, boilerplate sentences, near-duplicate fingerprints: `common::normalise`),
//!   on items parsed beforehand.
//! - `parse_normalise`: the two together: a cold poll's CPU work before the store.
//! - `parse_normalise_sanitise`: the same, then every item's HTML sanitised. The
//!   daemon sanitises an item only when a topic first shows it, so this is the cost
//!   if every item were shown.
//! - `sanitise`: [`parse::sanitize_field`] of every summary and content (what
//!   [`parse::sanitize_item`] does), alone.
//! - `html_to_text`: [`parse::html_to_text`] of every summary and content, alone.

mod common;

use std::hint::black_box;

use chrono::Utc;
use criterion::measurement::{Measurement, WallTime};
use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group};
use feedsieve::model::Item;
use feedsieve::parse;

/// A group whose iterations go through the whole corpus (`bytes`): that takes a
/// second or more, so a few samples of one iteration each are enough.
fn group<'a, M: Measurement>(c: &'a mut Criterion<M>, bytes: u64, name: &str) -> BenchmarkGroup<'a, M> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::BytesDecimal(bytes)).sample_size(10).sampling_mode(SamplingMode::Flat);
    g
}

fn corpus<M: Measurement>(c: &mut Criterion<M>) {
    let corpus = common::corpus();
    let id = format!("{}{}", corpus.name, common::clock_suffix());
    let now = Utc::now();
    let parsed = corpus.parse_all(now);
    let items: Vec<&Item> = parsed.iter().flat_map(|f| &f.items).collect();
    eprintln!(
        "{} items; {:.1} MB of HTML in their summaries and contents",
        items.len(),
        common::html_bytes(items.iter().copied()) as f64 / 1e6
    );
    let bytes = corpus.bytes();

    let mut g = group(c, bytes, "parse");
    g.bench_function(&id, |b| {
        b.iter(|| {
            for f in &corpus.feeds {
                black_box(common::parse_body(f, now));
            }
        })
    });
    g.finish();

    let mut g = group(c, bytes, "normalise");
    g.bench_function(&id, |b| {
        b.iter_batched(
            || parsed.iter().map(|f| f.items.clone()).collect::<Vec<_>>(),
            |feeds| {
                for items in feeds {
                    black_box(common::normalise(items));
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = group(c, bytes, "parse_normalise");
    g.bench_function(&id, |b| {
        b.iter(|| {
            for f in &corpus.feeds {
                black_box(common::normalise(common::parse_body(f, now).items));
            }
        })
    });
    g.finish();

    let mut g = group(c, bytes, "parse_normalise_sanitise");
    g.bench_function(&id, |b| {
        b.iter(|| {
            for f in &corpus.feeds {
                let (mut new, boilerplate) = common::normalise(common::parse_body(f, now).items);
                for n in &mut new {
                    parse::sanitize_item(&mut n.item);
                }
                black_box((new, boilerplate));
            }
        })
    });
    g.finish();

    let mut g = group(c, bytes, "sanitise");
    g.bench_function(&id, |b| {
        b.iter(|| {
            for i in &items {
                let base = i.base.as_deref();
                black_box(parse::sanitize_field(i.summary.as_deref(), base));
                black_box(parse::sanitize_field(i.content.as_deref(), base));
            }
        })
    });
    g.finish();

    let mut g = group(c, bytes, "html_to_text");
    g.bench_function(&id, |b| {
        b.iter(|| {
            for i in &items {
                black_box(i.summary.as_deref().map(parse::html_to_text));
                black_box(i.content.as_deref().map(parse::html_to_text));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = wall;
    config = common::config(5);
    targets = corpus::<WallTime>
}
criterion_group! {
    name = cpu;
    config = common::config(5).with_measurement(common::CpuTime(WallTime));
    targets = corpus::<common::CpuTime>
}

fn main() {
    if common::cpu_clock() {
        cpu()
    } else {
        wall()
    }
    Criterion::default().configure_from_args().final_summary();
}
