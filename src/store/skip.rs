//! Parts of storing that a build with the `bench-bounds` feature leaves out, so that
//! `bench/run.py --bounds` can time what each part of a cold poll costs: the
//! environment variable `FEEDSIEVE_BENCH_SKIP` lists them, comma-separated. `fts`: no
//! full-text rows (so topic queries match nothing, and filing into those topics
//! costs nothing either); `bands`: no near-duplicate search keys written (they are
//! still looked up, and the keys of the pass still in memory still find copies);
//! `store`: nothing of a successful poll stored at all (its items are counted as new).
//! Such a build keeps an incomplete database: it measures, it is never a feedsieve to
//! run. Without the feature, [`parts`] is a constant "nothing" and the environment is
//! not read.

use std::sync::OnceLock;

#[derive(Default)]
pub struct Parts {
    pub fts: bool,
    pub bands: bool,
    pub store: bool,
}

pub fn parts() -> &'static Parts {
    static NOTHING: Parts = Parts { fts: false, bands: false, store: false };
    static PARTS: OnceLock<Parts> = OnceLock::new();
    if !cfg!(feature = "bench-bounds") {
        return &NOTHING;
    }
    PARTS.get_or_init(|| {
        let mut p = Parts::default();
        let list = std::env::var("FEEDSIEVE_BENCH_SKIP").unwrap_or_default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "fts" => p.fts = true,
                "bands" => p.bands = true,
                "store" => p.store = true,
                other => eprintln!("FEEDSIEVE_BENCH_SKIP: no part {other:?} (fts, bands, store)"),
            }
        }
        eprintln!("bench-bounds build: skipping fts {}, bands {}, store {}", p.fts, p.bands, p.store);
        p
    })
}
