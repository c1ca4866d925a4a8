//! What the criterion benchmarks share: the corpus they read, and the steps of a
//! poll between the fetched body and the store, done as `daemon::pipeline` does them.
//!
//! The corpus is the directory named by `FEEDSIEVE_BENCH_CORPUS` (any output of
//! `bench/gen_corpus.py`, e.g. the 1,000 × 20 corpus of `bench/RESULTS.md`). Without
//! it, `bench/gen_corpus.py --feeds 600 --items 20 --seed 1 --formats rss2,atom,rss1`
//! generates one once into the target directory: RESULTS.md's seed and formats, fewer
//! feeds so that a run stays short, and enough items (12,000) for the store benchmark
//! to preload 10,000 and poll the rest. Without python3 the feeds of `tests/fixtures`
//! stand in (a handful of small feeds: the numbers then say little).
//!
//! `FEEDSIEVE_BENCH_CLOCK=cpu` makes the benchmarks measure the CPU time of the
//! benchmark's thread instead of wall time ([`CpuTime`]; their ids then end in
//! `-cpu`): on a machine busy with other work the wall time counts the time the
//! benchmark waited for a core, its CPU time hardly. The targets are per core. (For
//! the store, CPU time leaves out waiting for the disk.)

// Each benchmark binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use feedsieve::model::NewItem;
use feedsieve::model::{Item, ParsedFeed};
use feedsieve::parse;
use url::Url;

/// The feeds the generated corpus has by default.
const DEFAULT_FEEDS: usize = 600;
/// The `--now` of the generated corpus: that of the corpus in bench/RESULTS.md, so
/// that the same arguments give its files byte for byte.
const CORPUS_NOW: &str = "2026-11-30T00:00:00+00:00";
/// What nginx (`bench/nginx.sh`) sends with a `.xml` file.
pub const CONTENT_TYPE: &str = "text/xml";

/// One feed body as a poll receives it.
pub struct Body {
    pub id: String,
    /// Where the body came from: the base for relative links.
    pub url: Url,
    pub bytes: Vec<u8>,
}

pub struct Corpus {
    /// Names the corpus in benchmark ids: `FxI` (feeds × items per feed) or `fixtures`.
    pub name: String,
    pub dir: PathBuf,
    pub feeds: Vec<Body>,
}

impl Corpus {
    pub fn bytes(&self) -> u64 {
        self.feeds.iter().map(|f| f.bytes.len() as u64).sum()
    }

    /// Every body parsed as a poll parses it ([`parse::parse_response`]).
    pub fn parse_all(&self, now: DateTime<Utc>) -> Vec<ParsedFeed> {
        self.feeds.iter().map(|f| parse_body(f, now)).collect()
    }
}

pub fn parse_body(f: &Body, now: DateTime<Utc>) -> ParsedFeed {
    parse::parse_response(&f.bytes, Some(CONTENT_TYPE), &f.url, now)
        .unwrap_or_else(|e| panic!("{}: {e}", f.id))
}

/// Loads the corpus (generating it first if needed; see the module docs) and says on
/// stderr which one it is.
pub fn corpus() -> Corpus {
    let corpus = match std::env::var_os("FEEDSIEVE_BENCH_CORPUS") {
        Some(dir) => read_corpus(Path::new(&dir)),
        None => match generated() {
            Some(dir) => read_corpus(&dir),
            None => fixtures(),
        },
    };
    assert!(!corpus.feeds.is_empty(), "no feeds in {}", corpus.dir.display());
    eprintln!(
        "corpus {}: {} feeds, {:.1} MB, from {}",
        corpus.name,
        corpus.feeds.len(),
        corpus.bytes() as f64 / 1e6,
        corpus.dir.display()
    );
    corpus
}

/// The directory of the generated corpus, generating it if it is not there yet;
/// `None` without a working python3.
fn generated() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { manifest.join(t) } else { t })
        .unwrap_or_else(|| manifest.join("target"));
    let dir = target.join("bench-corpus").join(format!("seed1-rss2-atom-rss1-{DEFAULT_FEEDS}x20"));
    if dir.join("manifest.json").exists() {
        return Some(dir);
    }
    // Written beside and renamed, so that an interrupted run leaves no half corpus.
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("generating the benchmark corpus into {} (once)", dir.display());
    let status = std::process::Command::new("python3")
        .arg(manifest.join("bench/gen_corpus.py"))
        .args(["--feeds", &DEFAULT_FEEDS.to_string(), "--items", "20", "--seed", "1"])
        .args(["--formats", "rss2,atom,rss1", "--now", CORPUS_NOW, "--quiet", "--out"])
        .arg(&tmp)
        .status();
    match status {
        Ok(s) if s.success() => {
            std::fs::rename(&tmp, &dir).expect("moving the generated corpus in place");
            Some(dir)
        }
        other => {
            eprintln!("bench/gen_corpus.py did not run ({other:?}): using tests/fixtures instead");
            let _ = std::fs::remove_dir_all(&tmp);
            None
        }
    }
}

/// A corpus directory of gen_corpus.py: the files its feeds.tsv lists, in order.
fn read_corpus(dir: &Path) -> Corpus {
    let tsv = std::fs::read_to_string(dir.join("feeds.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e} (not a corpus of bench/gen_corpus.py?)", dir.display()));
    let feeds: Vec<Body> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, path)| Body {
            id: id.to_owned(),
            // As bench/run.py serves the corpus (nginx on 127.0.0.1).
            url: Url::parse(&format!("http://127.0.0.1:8080/{path}")).expect("feed URL"),
            bytes: std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}")),
        })
        .collect();
    let manifest: Option<serde_json::Value> =
        std::fs::read(dir.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let name = manifest
        .and_then(|m| {
            Some(format!("{}x{}", m["feeds"].as_u64()?, m["items"].as_u64()? / m["feeds"].as_u64()?))
        })
        .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    Corpus { name, dir: dir.to_owned(), feeds }
}

/// The well-formed feeds of tests/fixtures.
fn fixtures() -> Corpus {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = ["formats", "topic", "poll"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let feeds = paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&dir).unwrap_or(p).to_string_lossy().into_owned();
            Body {
                id: rel.replace(['/', '.'], "-"),
                url: Url::parse(&format!("http://127.0.0.1:8080/{rel}")).expect("feed URL"),
                bytes: std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            }
        })
        .collect();
    Corpus { name: "fixtures".into(), dir, feeds }
}

/// What a cold poll of one feed does to its parsed items before storing them (the
/// pipeline's own step, for a feed with nothing stored yet: every item is new and no
/// boilerplate is known). Returns the items to store and the feed's boilerplate.
pub fn normalise(items: Vec<Item>) -> (Vec<NewItem>, Vec<u64>) {
    let wanted = vec![true; items.len()];
    feedsieve::daemon::normalise(items, &wanted, &mut HashSet::new())
}

/// The bytes of HTML (summary and content) of these items: what the sanitiser and
/// the text extraction read.
pub fn html_bytes<'a>(items: impl IntoIterator<Item = &'a Item>) -> u64 {
    items
        .into_iter()
        .map(|i| (i.summary.as_deref().map_or(0, str::len) + i.content.as_deref().map_or(0, str::len)) as u64)
        .sum()
}

/// Whether to measure CPU time (`FEEDSIEVE_BENCH_CLOCK=cpu`) rather than wall time.
pub fn cpu_clock() -> bool {
    std::env::var("FEEDSIEVE_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// What ends benchmark ids measured in CPU time, so that criterion never compares
/// them with wall times of an earlier run.
pub fn clock_suffix() -> &'static str {
    if cpu_clock() { "-cpu" } else { "" }
}

/// The defaults of these benchmarks (the command line overrides them): one second of
/// warm-up and `secs` of measurement, enough for stable numbers and a short run.
pub fn config(secs: u64) -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(secs))
}

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`): criterion runs the
/// routine on the thread that reads the clock. Reported like wall time.
pub struct CpuTime(pub WallTime);

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
