//! Tests of what is SQLite's own: schema, migrations, the FTS5 index, band keys
//! in `item_bands`, checkpoints.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use rusqlite::Connection;

use super::bands::BandFilter;
use super::feeds::legacy_hashes_below;
use super::fulltext::{INDEX_TOKENIZER, matches_sql};
use super::maintenance::first_since;
use super::*;
use crate::curate::query;
use crate::dedup;
use crate::store::bands::Banded;
use crate::store::tests::{TEXT, job, new_item};
use crate::store::{Store, StoreHandle};

/// A store on the file `path`, its engine built by `engine` (to set what tests
/// tune), and a connection of the test's own to look inside.
fn store_with(path: &Path, engine: impl FnOnce(&mut Sqlite)) -> (Store, Connection) {
    let mut db = Sqlite::open(path).unwrap();
    engine(&mut db);
    (Store::with(Box::new(db)), Connection::open(path).unwrap())
}

/// What migrations after schema version 6 added, dropped: to make a database of
/// version 6 out of a new one.
pub const ADDED_SINCE_6: [&str; 6] = [
    "ALTER TABLE feeds DROP COLUMN ttl_minutes",
    "ALTER TABLE items DROP COLUMN article",
    "ALTER TABLE feeds DROP COLUMN article_failures",
    "ALTER TABLE feeds DROP COLUMN article_error",
    "DROP TABLE websub_subscriptions",
    "DROP TABLE websub_sources",
];

fn store_at(path: &Path) -> (Store, Connection) {
    store_with(path, |_| {})
}

#[test]
fn migrations_run_twice_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/db.sqlite");
    drop(Sqlite::open(&path).unwrap());
    let s = Sqlite::open(&path).unwrap();
    assert_eq!(s.user_version().unwrap(), MIGRATIONS.len() as i64);
    let mode: String = s.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn an_index_with_its_own_copy_of_the_text_loses_the_copy_not_the_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let before = MIGRATIONS.iter().position(|m| m.contains("content = ''")).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..before] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64).unwrap();
        conn.execute(
            "INSERT INTO items_fts (rowid, title, summary, content, categories)
                 VALUES (7, 'Operation Tidewater', 'Arrests at sea', 'Smugglers were held', 'crime')",
            [],
        )
        .unwrap();
    }
    let s = Sqlite::open(&path).unwrap();
    let hits = |q: &str| -> Vec<i64> {
        s.conn
            .prepare("SELECT rowid FROM items_fts WHERE items_fts MATCH ?1")
            .unwrap()
            .query_map([q], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(hits("tidewater"), [7]);
    assert_eq!(hits("content:smugglers AND categories:crime"), [7]);
    let copy: Option<String> =
        s.conn.query_row("SELECT title FROM items_fts WHERE rowid = 7", [], |r| r.get(0)).unwrap();
    assert_eq!(copy, None, "no copy of the text");
    s.conn.execute("DELETE FROM items_fts WHERE rowid = 7", []).unwrap();
    assert!(hits("tidewater").is_empty(), "rows can still be deleted");
}

#[test]
fn the_preview_index_splits_text_as_the_stored_index_does() {
    let s = Sqlite::open_in_memory().unwrap();
    let sql: String =
        s.conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'items_fts'", [], |r| r.get(0)).unwrap();
    assert!(sql.contains(INDEX_TOKENIZER), "{sql}");
}

#[test]
fn topic_matching_reads_items_through_their_index_not_their_rows() {
    let s = Sqlite::open_in_memory().unwrap();
    let feeds = Some(vec!["a".to_string()]);
    let q = Some(query::parse("border").unwrap());
    let weather = Some(query::parse("weather").unwrap());
    for (query, exclude, feeds) in [
        (q.clone(), None, None),
        (q.clone(), weather.clone(), feeds.clone()),
        (None, None, None),
        (None, weather, feeds),
    ] {
        for scope in [Scope::All, Scope::Pending] {
            let filter = TopicFilter { query: query.clone(), exclude: exclude.clone(), feeds: feeds.clone() };
            let (sql, ..) = matches_sql(&filter, scope);
            let mut explain = s.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let unbound = vec![None::<String>; explain.parameter_count()];
            let plan: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(unbound), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let items: Vec<&String> = plan.iter().filter(|l| l.contains(" i ")).collect();
            assert!(
                !items.is_empty() && items.iter().all(|l| l.contains("COVERING INDEX items_match")),
                "{filter:?} {scope:?}: {plan:#?}"
            );
        }
    }
}

/// Items stored before content hashes were XXH3 keep their SHA-256 hashes: seen
/// again unchanged, they are unchanged (not "updated" once after the upgrade), and
/// changed, they are updated. Only items below the watermark get the second look.
#[test]
fn items_hashed_before_the_upgrade_are_not_taken_for_changed() {
    let now = Utc::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let as_before = |key: &str, text: &str| {
        let mut n = new_item(key, text);
        n.item.content_hash = dedup::legacy_content_hash(&n.item);
        n
    };
    let (a1, a2, a3) = (
        "A first story with words enough to fingerprint.",
        "A second story, and more words.",
        "A third story told after the upgrade.",
    );
    {
        // A database of schema version 6 (its content hashes the old kind).
        let (mut s, raw) = store_at(&path);
        s.sync_feeds([("a", "https://a/")]).unwrap();
        s.ingest(&job("a", vec![as_before("a1", a1), as_before("a2", a2)], now)).unwrap();
        raw.execute("DELETE FROM meta WHERE key = 'legacy_hashes_below'", []).unwrap();
        // What the later migrations added goes too.
        for added in ADDED_SINCE_6 {
            raw.execute(added, []).unwrap();
        }
        raw.pragma_update(None, "user_version", 6).unwrap();
    }
    let (mut s, raw) = store_at(&path);
    assert_eq!(legacy_hashes_below(&raw).unwrap(), 3);
    s.ingest(&job("a", vec![as_before("a3", a3)], now)).unwrap();

    let known = s.known_keys("a", ["a1", "a2", "a3"]).unwrap();
    let (k1, k3) = (known["a1"].unwrap(), known["a3"].unwrap());
    assert!(k1.legacy && !k3.legacy, "{known:?}");
    assert!(k1.same_as(&new_item("a1", a1).item));
    assert!(!k1.same_as(&new_item("a1", "A first story, corrected.").item));
    // Stored after the watermark, an old-style hash is just a different hash.
    assert!(!k3.same_as(&new_item("a3", a3).item));

    let counts = s
        .ingest(&job(
            "a",
            vec![new_item("a1", a1), new_item("a2", "A second story, corrected."), new_item("a3", a3)],
            now,
        ))
        .unwrap();
    assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 2, 1), "{counts:?}");
}

/// The id boundary maintenance prunes by, found by binary search, is the one a
/// scan finds, with gaps in the ids and for cutoffs before, inside and after the
/// stored times.
#[test]
fn the_boundary_by_first_seen_is_found_without_a_scan() {
    let t0 = Utc::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, mut raw) = store_at(&dir.path().join("db.sqlite"));
    s.sync_feeds([("a", "https://a/")]).unwrap();
    for k in 0..40i64 {
        let text = format!("Story number {k} has words enough to be a story of its own here.");
        let at = t0 + chrono::Duration::seconds(k / 3 * 10);
        s.ingest(&job("a", vec![new_item(&format!("k{k}"), &text)], at)).unwrap();
    }
    raw.execute("DELETE FROM items WHERE id % 7 = 3 OR id BETWEEN 20 AND 26", []).unwrap();
    let tx = raw.transaction().unwrap();
    for since in (-20..160).map(|d| t0.timestamp() + d) {
        let scanned: i64 = tx
                .query_row(
                    "SELECT coalesce((SELECT min(id) FROM items WHERE first_seen >= ?1), (SELECT max(id) + 1 FROM items))",
                    [since],
                    |r| r.get(0),
                )
                .unwrap();
        let found = first_since(&tx, "items", since).unwrap();
        let between: i64 = tx
            .query_row(
                "SELECT count(*) FROM items WHERE id >= min(?1, ?2) AND id < max(?1, ?2)",
                [scanned, found],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(between, 0, "since {since}: scan says {scanned}, search {found}");
    }
    assert_eq!(first_since(&tx, "stories", i64::MAX).unwrap() - 1, {
        tx.query_row("SELECT max(id) FROM stories", [], |r| r.get::<_, i64>(0)).unwrap()
    });
}

/// A read connection still open when the writer closes must not leave the
/// write-ahead log for the next process to read back.
#[tokio::test]
async fn the_writer_empties_the_log_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut store = Store::open(&path).unwrap();
    store.sync_feeds([("a", "https://a/")]).unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
    let items = (0..50).map(|i| new_item(&format!("a{i}"), TEXT)).collect();
    handle.ingest(job("a", items, Utc::now())).await.unwrap();
    let wal = dir.path().join("db.sqlite-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the ingest went through the log");
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.item_count().unwrap(), 50);
    drop(handle);
    join.join().unwrap();
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0, "log left behind");
    assert_eq!(reader.item_count().unwrap(), 50);
}

#[test]
fn band_keys_lost_in_a_crash_are_written_by_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let now = Utc::now();
    let mut s = Store::open(&path).unwrap();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
    s.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
    // Found through the keys still in memory, before any flush.
    let copy = format!("LYON (Wire) - {TEXT}");
    s.ingest(&job("b", vec![new_item("b1", &copy)], now)).unwrap();
    assert_eq!(s.story_count().unwrap(), 1);
    drop(s); // "crash": the keys were never flushed

    let mut s = Store::open(&path).unwrap();
    let written = s.flush_bands().unwrap();
    assert_eq!(written, 2 * dedup::BANDS);
    assert_eq!(s.flush_bands().unwrap(), 0, "nothing twice");
    let third = format!("{TEXT} Reporting by A. Smith.");
    s.ingest(&job("b", vec![new_item("b2", &third)], now)).unwrap();
    assert_eq!(s.story_count().unwrap(), 1, "found through the written keys");
}

#[test]
fn the_band_filter_has_every_key_and_few_others() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as i64
    };
    let mut f = BandFilter::new(0, 0);
    let full = f.capacity();
    let mut keys: Vec<i64> = (0..full).map(|_| next()).collect();
    keys.iter().for_each(|k| f.insert(*k));
    assert!(keys.iter().all(|k| f.may_contain(*k)), "no false negatives");
    let others = 100_000;
    let false_positives =
        |f: &BandFilter, next: &mut dyn FnMut() -> i64| (0..others).filter(|_| f.may_contain(next())).count();
    let at_capacity = false_positives(&f, &mut next);
    assert!(at_capacity < others / 50, "{at_capacity} false positives in {others}");
    // Keys written later, beyond its capacity, go into a second part, with room for
    // as many again as both hold; its false positives add to the first's.
    let later: Vec<i64> = (0..full / 2).map(|_| next()).collect();
    assert!(f.extend(later.iter().copied()));
    keys.extend(&later);
    assert_eq!(f.keys(), keys.len());
    assert_eq!(f.capacity(), full + keys.len());
    assert!(keys.iter().all(|k| f.may_contain(*k)), "no false negatives in either part");
    let more: Vec<i64> = (0..full).map(|_| next()).collect();
    assert!(f.extend(more.iter().copied()), "room left in the second part");
    keys.extend(&more);
    assert!(keys.iter().all(|k| f.may_contain(*k)));
    let with_two = false_positives(&f, &mut next);
    assert!(with_two < others / 33, "{with_two} false positives in {others}");
    // A third part is never made: the filter is built again, as one.
    assert!(!f.extend((0..2).map(|_| next())), "full");
    assert_eq!(f.keys(), keys.len(), "nothing added");
}

/// A new item with the canonical link of a stored one finds the same candidates
/// whether or not its lookup spares the keys only that item holds; and those keys
/// are spared only when the table holds them for that item alone: not when another
/// item shares them, nor when the item's keys are not in the table (lost in a crash)
/// and another item holds them.
#[test]
fn keys_only_the_linked_item_holds_are_spared_and_the_same_items_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let now = Utc::now();
    let texts = [
        TEXT.to_owned(),
        "Border guards at the northern crossing found forty kilograms of cocaine hidden in \
         a shipment of bananas on Tuesday, the customs agency said in a statement."
            .to_owned(),
        "The harbour authority will dredge the eastern basin next spring so that larger \
         container ships can berth there, its director told the city council."
            .to_owned(),
        "A new tram line will link the station to the university from September, the \
         transport company announced, after three years of works on the avenue."
            .to_owned(),
    ];
    let copy = |i: usize| format!("LYON (Wire) - {}", texts[i]);
    let link = |i: usize| format!("https://news.example/{i}");
    let linked = |key: &str, text: &str, l: Option<String>| {
        let mut n = new_item(key, text);
        n.item.canonical_link = l;
        n
    };
    let mut s = Store::open(&path).unwrap();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    // Story 0: the original and a copy under its link, which share most keys.
    s.ingest(&job("a", vec![linked("a0", &texts[0], Some(link(0)))], now)).unwrap();
    s.ingest(&job("b", vec![linked("b0", &copy(0), Some(link(0)))], now)).unwrap();
    // Story 1: the original alone. Story 2: the original and a copy under no link.
    s.ingest(&job("a", vec![linked("a1", &texts[1], Some(link(1)))], now)).unwrap();
    s.ingest(&job("a", vec![linked("a2", &texts[2], Some(link(2)))], now)).unwrap();
    s.ingest(&job("c", vec![linked("c2", &copy(2), None)], now)).unwrap();
    // Story 3: a copy under no link, then the original under its link, whose keys
    // are lost in a "crash" before the next flush: the copy alone holds the keys
    // they share.
    s.ingest(&job("c", vec![linked("c3", &copy(3), None)], now)).unwrap();
    s.flush_bands().unwrap();
    s.ingest(&job("a", vec![linked("a3", &texts[3], Some(link(3)))], now)).unwrap();
    drop(s);

    let mut db = Sqlite::open(&path).unwrap();
    let raw = Connection::open(&path).unwrap();
    let id = |key: &str| {
        raw.query_row("SELECT id FROM items WHERE key = ?1", [key], |r| r.get::<_, i64>(0)).unwrap()
    };
    let rows = |k: i64| -> Vec<i64> {
        let mut stmt = raw.prepare("SELECT item_id FROM item_bands WHERE key = ?1").unwrap();
        stmt.query_map([k], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let probes: Vec<String> = (0..4).flat_map(|i| [texts[i].clone(), copy(i)]).collect();
    let keys_of = |text: &str| dedup::band_keys(&dedup::fingerprint(text, &Default::default()).unwrap());
    let since = [now.timestamp(), now.timestamp() + 1];

    // What the spared keys are, and that they are the linked item's alone.
    let mut spared = std::collections::HashMap::new();
    {
        let tx = db.conn.transaction().unwrap();
        let mut state = BandFilterState::Unknown;
        let filter = bands::band_filter(&tx, &mut state, 1, 0).unwrap().unwrap();
        for l in 0..4 {
            for probe in &probes {
                let mut wanted: Vec<i64> =
                    keys_of(probe).into_iter().filter(|k| filter.may_contain(*k)).collect();
                let before = wanted.clone();
                let linked = id(&format!("a{l}"));
                let sole = ingest::sole_holder(&tx, filter, linked, &mut wanted).unwrap();
                let gone: Vec<i64> = before.into_iter().filter(|k| !wanted.contains(k)).collect();
                if let Some((item, _)) = &sole {
                    assert_eq!(item.item, linked);
                    assert!(gone.len() >= 2);
                    for k in &gone {
                        assert_eq!(rows(*k), [item.item], "a spared key is the item's alone");
                    }
                } else {
                    assert!(gone.is_empty());
                }
                *spared.entry(l).or_insert(0) += gone.len();
            }
        }
    }
    assert!(spared[&1] >= 2 * dedup::BANDS / 2, "the lone original's keys: {spared:?}");
    assert!(spared[&0] < spared[&1], "story 0's keys are held twice: {spared:?}");
    assert_eq!(spared[&3], 0, "keys not in the table: {spared:?}");

    // The candidates, with and without the link, for every probe, link and window.
    let mut tx = db.ingest_tx(&[]).unwrap();
    let mut compared = 0;
    for l in 0..4 {
        for probe in &probes {
            for since in since {
                let (mut with, mut without) = (Vec::new(), Vec::new());
                let keys = keys_of(probe);
                tx.band_candidates(&keys, since, Some(id(&format!("a{l}"))), &mut with).unwrap();
                tx.band_candidates(&keys, since, None, &mut without).unwrap();
                let found =
                    |c: &[Banded]| c.iter().map(|b| (b.item, b.story, b.fp.clone())).collect::<Vec<_>>();
                assert_eq!(found(&with), found(&without), "probe {probe:?}, link {l}, since {since}");
                compared += usize::from(!without.is_empty());
            }
        }
    }
    assert!(compared >= 8, "probes that find candidates: {compared}");
}

/// The band filter has every key in the table: the keys this connection flushed,
/// and those another connection flushed after the filter was built.
#[test]
fn band_keys_are_found_after_this_or_another_connection_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let now = Utc::now();
    // A filter for every group, however small.
    let (mut a, raw) = store_with(&path, |db| db.band_filter_from = 0);
    let (mut b, _) = store_with(&path, |db| db.band_filter_from = 0);
    a.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    // Each connection's first ingest builds its filter, from an empty table.
    let other = "An unrelated story about dredging the harbour, with words enough to fingerprint it.";
    a.ingest(&job("a", vec![new_item("a0", other)], now)).unwrap();
    let another = "Another unrelated story, about a new tram line, with words enough for one as well.";
    b.ingest(&job("b", vec![new_item("b0", another)], now)).unwrap();
    a.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
    a.flush_bands().unwrap();
    a.ingest(&job("c", vec![new_item("c1", &format!("LYON (Wire) - {TEXT}"))], now)).unwrap();
    b.ingest(&job("b", vec![new_item("b1", &format!("{TEXT} Reporting by A. Smith."))], now)).unwrap();
    let story = |key: &str| {
        raw.query_row("SELECT story_id FROM items WHERE key = ?1", [key], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!(story("c1"), story("a1"), "found through this connection's flush");
    assert_eq!(story("b1"), story("a1"), "found through another connection's flush");
    assert_eq!(a.story_count().unwrap(), 3);
    a.flush_bands().unwrap();
    a.release_memory().unwrap();
    a.ingest(&job("c", vec![new_item("c2", &format!("PARIS (Wire) - {TEXT}"))], now)).unwrap();
    assert_eq!(story("c2"), story("a1"), "found through a filter built again");
    assert_eq!(a.story_count().unwrap(), 3);
}

#[test]
fn the_log_is_checkpointed_on_its_own_thread_then_by_the_writer_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut s = Sqlite::open(&path).unwrap();
    s.conn.execute_batch("CREATE TABLE filler (b BLOB)").unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();
    // About 2,000 pages of log, past the threshold.
    let fill = |s: &Sqlite| s.conn.execute("INSERT INTO filler VALUES (zeroblob(8000000))", []).unwrap();
    let before = size();
    let c = Checkpointer::start(&mut s.conn, &path).unwrap();
    fill(&s);
    // The database file grows when a checkpoint copies the log into it.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while size() < before + 8_000_000 {
        assert!(std::time::Instant::now() < give_up, "the checkpoint thread never copied the log");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.stop(&mut s.conn);
    // SQLite's own checkpoint again, on the commit that grows the log past it.
    let grown = size();
    fill(&s);
    assert!(size() >= grown + 8_000_000, "the writer checkpoints itself again");
}

/// Config checking asks no database: every query the parser accepts must be one
/// FTS5 runs. Queries built from every construct of the grammar, with terms of every
/// kind of character, all run.
#[test]
fn every_query_the_parser_accepts_runs_on_fts5() {
    let db = Sqlite::open_in_memory().unwrap();
    let terms = [
        "border",
        "smuggl*",
        "\"border security\"",
        "\"say \"\"hi\"\"\"",
        "\"...x...\"",
        "\"x_y\"",
        "Ümlaut",
        "\"e-mail\"*",
        "2026",
        "\"a\u{301}\"",
        "\"1.5%\"",
        "NEARLY",
        "and",
    ];
    let mut queries: Vec<String> = Vec::new();
    for (i, a) in terms.iter().enumerate() {
        let b = terms[(i + 3) % terms.len()];
        let c = terms[(i + 7) % terms.len()];
        queries.extend([
            (*a).to_owned(),
            format!("{a} {b}"),
            format!("{a} OR {b} NOT {c}"),
            format!("({a} OR {b}) AND NOT_A_WORD {c}"),
            format!("title: {a}"),
            format!("{{title summary}}: ({a} OR {b})"),
            format!("categories: ({a} NOT {b})"),
            format!("NEAR({a} {b})"),
            format!("NEAR({a} {b} {c}, 0)"),
            format!("NEAR({a} {b}, 4294967295)"),
            format!("content: NEAR({a} {b}, 3) OR {c}"),
            format!("{a} NOT title: {b}"),
        ]);
    }
    let mut ran = 0;
    for q in &queries {
        let Ok(tree) = query::parse(q) else { continue };
        let expr = fulltext::render(&tree);
        let run =
            db.conn.query_row("SELECT count(*) FROM items_fts WHERE items_fts MATCH ?1", [&expr], |_| Ok(()));
        assert!(run.is_ok(), "{q} -> {expr}: {run:?}");
        ran += 1;
    }
    assert!(ran > queries.len() * 9 / 10, "only {ran} of {} queries parsed", queries.len());
}
