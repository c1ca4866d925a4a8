//! Tests of the store's face: what every engine must do. Each runs on SQLite and on
//! PostgreSQL (a throwaway server the tests start; see `tests/support/pg.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::curate::query;
use crate::dedup;
use crate::model::{FeedRecord, FetchRecord, IngestJob, Item, NewItem, PgTarget, StoryRule, ts};

pub const TEXT: &str = "Police in 31 countries arrested 212 suspects during Operation Tidewater, a six-week \
        action against migrant smuggling networks operating along sea routes in the Mediterranean.";

pub fn new_item(key: &str, text: &str) -> NewItem {
    let fingerprint = dedup::fingerprint(text, &std::collections::HashSet::new());
    let mut item = Item { key: key.into(), title: key.into(), summary: Some(text.into()), ..Item::default() };
    item.content_hash = dedup::content_hash(&item);
    NewItem { item, summary_text: text.into(), content_text: String::new(), fingerprint, article: false }
}

pub fn job(feed: &str, items: Vec<NewItem>, now: DateTime<Utc>) -> IngestJob {
    IngestJob { feed_id: feed.into(), items, record: FetchRecord::default(), rule: StoryRule::default(), now }
}

/// The engines every contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A new, empty database of an engine, and what keeps it (a SQLite file's folder).
pub struct Fresh {
    pub db: Database,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    pub fn new(engine: Engine) -> Fresh {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Fresh { db: Database::Sqlite(dir.path().join("db.sqlite")), _dir: Some(dir) }
            }
            Engine::Postgres => {
                let url = crate::pgtest::server().fresh_database("store");
                Fresh { db: Database::Postgres(PgTarget { url, password_file: None }), _dir: None }
            }
        }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.db).unwrap()
    }

    /// The rows of `sql`, every column read as an integer: a look inside, with a
    /// connection of the test's own (SQL both engines take).
    pub fn rows(&self, sql: &str) -> Vec<Vec<i64>> {
        match &self.db {
            Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |r| (0..n).map(|i| r.get::<_, i64>(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Database::Postgres(target) => std::thread::scope(|s| {
                s.spawn(|| {
                    let mut c = ::postgres::Client::connect(&target.url, ::postgres::NoTls).unwrap();
                    let rows = c.query(sql, &[]).unwrap();
                    rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, i64>(i)).collect()).collect()
                })
                .join()
                .unwrap()
            }),
        }
    }
}

impl Fresh {
    /// Runs `sql` with a connection of the test's own.
    pub fn execute(&self, sql: &str) {
        match &self.db {
            Database::Sqlite(path) => rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap(),
            Database::Postgres(target) => std::thread::scope(|s| {
                s.spawn(|| {
                    let mut c = ::postgres::Client::connect(&target.url, ::postgres::NoTls).unwrap();
                    c.batch_execute(sql).unwrap();
                })
                .join()
                .unwrap()
            }),
        }
    }
}

/// Runs contract tests, each `fn name(engine: Engine)`, on each engine: as
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Engine::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Engine::Postgres)
            }
        })*
    };
}
pub(crate) use on_both_engines;

on_both_engines!(
    replacing_a_topic_leaves_the_rows_a_rebuild_would,
    preview_marks_matches_in_the_title_and_the_text_the_poll_indexed,
    a_group_is_stored_whole_or_not_at_all,
    a_new_url_forgets_what_the_old_one_answered,
    known_keys_are_the_listed_ones_stored_or_tombstoned,
    reads_do_not_wait_behind_the_writer,
    queued_polls_are_grouped_and_a_failure_stays_with_its_feed,
    queued_records_are_grouped_each_on_its_feed,
    an_article_s_content_is_known_and_the_feed_keeps_its_report,
    websub_subscribers_are_owed_each_version_once,
    websub_sources_are_kept,
);

/// As a WebSub hub: a version is owed once to each live subscriber (whoever says it
/// changed, however often), taken off when delivered, retried when it failed, and a
/// 410 or an ended lease ends the subscription. On PostgreSQL a delivery is held by
/// the node that took it.
fn websub_subscribers_are_owed_each_version_once(engine: Engine) {
    use crate::model::{Delivered, HubSubscription};
    let db = Fresh::new(engine);
    let mut s = db.open();
    let sub = |cb: &str, expires_at| HubSubscription {
        topic: "news".into(),
        format: "atom".into(),
        callback: format!("http://sub.example/{cb}"),
        secret: (cb == "a").then(|| "k".to_owned()),
        expires_at,
    };
    for (cb, exp) in [("a", 1000), ("b", 1000), ("old", 50)] {
        s.hub_subscribe(&sub(cb, exp)).unwrap();
    }
    s.hub_subscribe(&HubSubscription { format: "rss".into(), ..sub("c", 1000) }).unwrap();
    assert_eq!(s.hub_subscriptions(100).unwrap().len(), 3, "the ended lease is not live");
    assert_eq!(s.hub_changed("news", "atom", "\"v1\"", 100).unwrap(), 2, "a and b, not old, not the rss one");
    assert_eq!(s.hub_changed("news", "atom", "\"v1\"", 101).unwrap(), 0, "said twice: owed once");
    let due = s.hub_due(100, 160, 10).unwrap();
    assert_eq!(due.len(), 2, "{due:?}");
    assert_eq!(due.iter().find(|d| d.callback.ends_with("/a")).unwrap().secret.as_deref(), Some("k"));
    assert!(s.hub_due(100, 160, 10).unwrap().is_empty(), "held while in flight");
    let (a, b) = (
        due.iter().find(|d| d.callback.ends_with("/a")).unwrap(),
        due.iter().find(|d| d.callback.ends_with("/b")).unwrap(),
    );
    s.hub_done(a, &Delivered::Ok { etag: "\"v1\"".into() }).unwrap();
    s.hub_done(b, &Delivered::Failed { error: "HTTP 500".into(), retry_at: Some(105) }).unwrap();
    assert!(s.hub_due(104, 200, 10).unwrap().is_empty(), "b waits for its retry");
    let again = s.hub_due(105, 200, 10).unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1), "{again:?}");
    assert_eq!(s.hub_changed("news", "atom", "\"v1\"", 110).unwrap(), 0, "a has it, b has it pending");
    s.hub_done(&again[0], &Delivered::Gone).unwrap();
    assert_eq!(s.hub_subscriptions(100).unwrap().len(), 2, "410 ended b's subscription");
    assert_eq!(s.hub_changed("news", "atom", "\"v2\"", 120).unwrap(), 1, "a new version for a");
    let d = s.hub_due(120, 200, 10).unwrap();
    s.hub_done(&d[0], &Delivered::Failed { error: "timeout".into(), retry_at: None }).unwrap();
    assert!(s.hub_due(10_000, 20_000, 10).unwrap().is_empty(), "given up until the next change");
    assert_eq!(s.hub_prune(100).unwrap(), 1, "old's lease had ended");
    assert!(s.hub_unsubscribe("news", "rss", "http://sub.example/c").unwrap());
    assert_eq!(s.hub_subscriptions(100).unwrap().len(), 1);
}

/// As a WebSub subscriber: each source feed's subscription is kept, replaced and
/// removed.
fn websub_sources_are_kept(engine: Engine) {
    use crate::model::Source;
    let db = Fresh::new(engine);
    let mut s = db.open();
    let src = Source {
        feed_id: "f".into(),
        hub: "https://hub.example/".into(),
        topic: "https://f.example/feed".into(),
        secret: "k".into(),
        state: "requested".into(),
        lease_until: None,
        requested_at: 10,
        error: None,
    };
    s.put_source(&src).unwrap();
    let active = Source { state: "active".into(), lease_until: Some(1000), ..src.clone() };
    s.put_source(&active).unwrap();
    s.put_source(&Source { feed_id: "g".into(), ..src }).unwrap();
    let all = s.sources().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], active);
    s.remove_source("g").unwrap();
    assert_eq!(s.sources().unwrap(), vec![active]);
}

/// `full_text`: an item whose content is its page's is known as such, that content
/// can be read back (for a correction to keep), and a poll's article report stays on
/// the feed row until a poll with a report of its own.
fn an_article_s_content_is_known_and_the_feed_keeps_its_report(engine: Engine) {
    use crate::model::ArticleReport;
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/")]).unwrap();
    let mut page = new_item("p1", TEXT);
    page.item.content = Some("<p>The page's own text.</p>".into());
    page.article = true;
    let mut j = job("a", vec![page, new_item("f1", "Only the feed's text for this one, words enough.")], now);
    j.record.articles = Some(ArticleReport {
        fetched: 1,
        failed: 1,
        skipped: 0,
        error: Some("https://a/x: HTTP 404".into()),
    });
    s.ingest(&j).unwrap();
    let known = s.known_keys("a", ["p1", "f1"]).unwrap();
    assert!(known["p1"].unwrap().article && !known["f1"].unwrap().article, "{known:?}");
    let contents = s.article_contents("a", &["p1", "f1", "nope"]).unwrap();
    assert_eq!(contents.len(), 1);
    assert_eq!(contents["p1"], "<p>The page's own text.</p>");
    let row = |s: &Store| s.feeds().unwrap().into_iter().find(|r| r.id == "a").unwrap();
    let r = row(&s);
    assert_eq!((r.article_failures, r.article_error.as_deref()), (1, Some("https://a/x: HTTP 404")));
    assert_eq!(r.problem().as_deref(), Some("1 article page failed: https://a/x: HTTP 404"));
    // A poll without new pages leaves the report; one whose pages all worked clears it.
    s.ingest(&job("a", vec![], now)).unwrap();
    assert_eq!(row(&s).article_failures, 1);
    let mut j = job("a", vec![], now);
    j.record.articles = Some(ArticleReport { fetched: 2, ..ArticleReport::default() });
    s.ingest(&j).unwrap();
    let r = row(&s);
    assert_eq!((r.article_failures, r.article_error.clone(), r.problem()), (0, None, None));
    assert_eq!(db.rows("SELECT article FROM items ORDER BY key"), vec![vec![0], vec![1]]);
}

/// Runs `f` to its end on a runtime of its own (the store is set up before, outside
/// any runtime, as the command line does).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Rebuilding a topic writes only what changed, and leaves what a rebuild into
/// an empty topic would, except that an entry which still matches stays its
/// story's entry (readers know it by its id).
fn replacing_a_topic_leaves_the_rows_a_rebuild_would(engine: Engine) {
    let db = Fresh::new(engine);
    let mut s = db.open();
    let m = |item_id, story_id, score, sort_date| Match { item_id, story_id, score, sort_date };
    let before = [m(1, 1, 1.0, 10), m(2, 2, 2.0, 20), m(3, 2, 5.0, 30), m(4, 3, 1.0, 40), m(7, 5, 1.0, 70)];
    // Story 1 as it was, story 2 first matched by another item (its entry still
    // matches), story 3 gone, story 4 new with a better-scored second copy, story 5
    // matched by another item only.
    let after = [
        m(1, 1, 1.0, 10),
        m(3, 2, 5.0, 31),
        m(2, 2, 2.0, 20),
        m(5, 4, 3.0, 50),
        m(6, 4, 4.0, 60),
        m(8, 5, 2.0, 80),
    ];
    s.write(|w| w.replace_topic("t", "old", 100, &before)).unwrap();
    s.write(|w| w.replace_topic("t", "new", 200, &after)).unwrap();
    s.write(|w| w.replace_topic("fresh", "new", 200, &after)).unwrap();
    let rows = |_: &Store, topic: &str| -> Vec<(i64, i64, f64, i64, i64)> {
        let sql = format!(
            "SELECT story_id, item_id, CAST(score * 1000 AS BIGINT), sort_date, matched_at FROM topic_stories
             WHERE topic_id = '{topic}' ORDER BY story_id"
        );
        db.rows(&sql).into_iter().map(|r| (r[0], r[1], r[2] as f64 / 1000.0, r[3], r[4])).collect()
    };
    let fresh = [(1, 1, 1.0, 10, 200), (2, 3, 5.0, 31, 200), (4, 5, 4.0, 50, 200), (5, 8, 2.0, 80, 200)];
    assert_eq!(rows(&s, "fresh"), fresh);
    // The rebuilt topic: story 2 keeps its entry (and, unchanged, its row).
    assert_eq!(rows(&s, "t"), [(1, 1, 1.0, 10, 100), (2, 2, 5.0, 20, 100), fresh[2], fresh[3]]);
    // Filed pass by pass, the same matches leave the same rows.
    s.write(|w| {
        w.update_topic("inc", 200, &after[..2])?;
        w.update_topic("inc", 200, &after[2..])
    })
    .unwrap();
    assert_eq!(rows(&s, "inc"), rows(&s, "fresh"));
    assert_eq!(s.write(|w| w.topic_signature("t")).unwrap().as_deref(), Some("new"));
    // A rebuild that matches nothing empties the topic.
    s.write(|w| w.replace_topic("t", "none", 300, &[])).unwrap();
    assert!(rows(&s, "t").is_empty());
}

fn preview_marks_matches_in_the_title_and_the_text_the_poll_indexed(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/")]).unwrap();
    let mut border = new_item("Border security news", "");
    border.item.summary = None;
    border.item.content = Some(format!("<p>{}</p><p>Operation <b>Tide</b>water &amp; more.</p>", TEXT));
    border.content_text = crate::parse::index_text(border.item.content.as_deref());
    border.summary_text = String::new();
    let other = new_item("Weather", "Rain is expected over the hills all week, with sun at the weekend.");
    s.ingest_group(&[&job("a", vec![border, other], now)]).unwrap();
    let preview = |q: &str| {
        let filter = TopicFilter { query: Some(query::parse(q).unwrap()), exclude: None, feeds: None };
        s.preview(&filter, 10).unwrap()
    };
    let rows = preview("border");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].title, "[Border] security news");
    assert_eq!(rows[0].snippet, "[Border] security news");
    let rows = preview("smuggling AND tidewater");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].title, "Border security news", "nothing to mark in the title");
    assert!(rows[0].snippet.contains("migrant [smuggling] networks"), "{}", rows[0].snippet);
    assert!(!rows[0].snippet.contains('<'), "text, not markup: {}", rows[0].snippet);
    let rows = preview("tidewater");
    assert!(rows[0].snippet.contains("[Tidewater]"), "{}", rows[0].snippet);
}

/// Found writing the operations guide: a feed that answered 410 Gone stayed gone after
/// its URL was changed, as the log promised it would not.
fn a_new_url_forgets_what_the_old_one_answered(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/old"), ("b", "https://b/")]).unwrap();
    for id in ["a", "b"] {
        s.record(&FeedRecord::Failure {
            feed_id: id.into(),
            status: Some(410),
            error: "HTTP 410 Gone".into(),
            now,
            next_due: Some(now + chrono::TimeDelta::hours(6)),
            claim: None,
        })
        .unwrap();
    }
    s.sync_feeds([("a", "https://a/new"), ("b", "https://b/")]).unwrap();
    let a = s.feed("a").unwrap().unwrap();
    assert_eq!(
        (a.url.as_str(), a.last_status, a.error, a.failures, a.next_due),
        ("https://a/new", None, None, 0, None)
    );
    assert_eq!(a.last_fetch, Some(now.timestamp()), "when it was last fetched stays true");
    let b = s.feed("b").unwrap().unwrap();
    assert_eq!((b.last_status, b.failures), (Some(410), 1), "an unchanged URL keeps its state");
}

fn a_group_is_stored_whole_or_not_at_all(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/")]).unwrap();
    let good = job("a", vec![new_item("a1", TEXT)], now);
    let unknown_feed = job("nope", vec![new_item("n1", "Another story entirely, with words enough.")], now);
    assert!(s.ingest_group(&[&good, &unknown_feed]).is_err());
    assert_eq!(s.item_count().unwrap(), 0, "nothing of the group");
    let counts = s.ingest_group(&[&good]).unwrap();
    assert_eq!(counts[0].new, 1);
    assert_eq!(s.item_count().unwrap(), 1);
    let tidewater =
        TopicFilter { query: Some(query::parse("tidewater").unwrap()), exclude: None, feeds: None };
    assert_eq!(s.matches(&tidewater, Scope::All).unwrap().len(), 1, "indexed in the same transaction");
}

fn known_keys_are_the_listed_ones_stored_or_tombstoned(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
    let old = job("a", vec![new_item("old", "An old story, long gone from the feed by now, words.")], now);
    s.ingest(&old).unwrap();
    s.prune(now.timestamp() + 1, now.timestamp(), &[], now.timestamp()).unwrap();
    let a1 = new_item("a1", TEXT);
    let expected = a1.item.content_hash;
    s.ingest(&job("a", vec![a1, new_item("a2", "A second story about other things, words enough.")], now))
        .unwrap();
    s.ingest(&job("b", vec![new_item("b1", "Feed b has its own story with enough words here.")], now))
        .unwrap();
    let known = s.known_keys("a", ["a1", "old", "new", "b1", "a1"]).unwrap();
    assert_eq!(known.len(), 2, "only listed keys of this feed: {known:?}");
    assert_eq!(
        known["a1"],
        Some(Known { hash: expected, legacy: false, article: false }),
        "stored, with its content hash"
    );
    assert_eq!(known["old"], None, "tombstoned");
}

/// What a poll reads before storing goes to a read connection: it is answered
/// while the writer is busy, and sees what the writer committed.
fn reads_do_not_wait_behind_the_writer(engine: Engine) {
    let db = Fresh::new(engine);
    let mut store = db.open();
    store.sync_feeds([("a", "https://a/")]).unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        handle.ingest(job("a", vec![new_item("a1", TEXT)], Utc::now())).await.unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (entered, held) = tokio::sync::oneshot::channel::<()>();
        let writer = handle.clone();
        let busy = tokio::spawn(async move {
            writer
                .call(move |_| {
                    entered.send(()).ok();
                    hold.recv().ok();
                    Ok(())
                })
                .await
        });
        held.await.unwrap();
        let read = handle.read(|s| s.known_keys("a", ["a1", "a2"]));
        let known = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the read waited for the writer")
            .unwrap();
        assert_eq!(known.keys().collect::<Vec<_>>(), ["a1"]);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        drop(handle);
    });
    join.join().unwrap();
}

/// Polls queued behind a busy writer share a transaction; one that fails there is
/// retried alone, so only it fails.
fn queued_polls_are_grouped_and_a_failure_stays_with_its_feed(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut store = db.open();
    store.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
    block_on(async move {
        // Hold the writer until all three polls are queued behind it.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = handle.call(move |_| {
            hold.recv().ok();
            Ok(())
        });
        let a = handle.ingest(job("a", vec![new_item("a1", TEXT)], now));
        let bad = handle.ingest(job(
            "nope",
            vec![new_item("n1", "Words enough for a story of its own here.")],
            now,
        ));
        let copy = format!("LYON (Wire) - {TEXT}");
        let b = handle.ingest(job("b", vec![new_item("b1", &copy)], now));
        let released = async {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        };
        let (busy, a, bad, b, ()) = tokio::join!(busy, a, bad, b, released);
        busy.unwrap();
        assert_eq!(a.unwrap().new, 1);
        assert!(bad.is_err(), "the unknown feed fails");
        assert_eq!(b.unwrap().new, 1);
        let (items, stories) = handle.call(|s| Ok((s.item_count()?, s.story_count()?))).await.unwrap();
        assert_eq!((items, stories), (2, 1), "the copy in b joined a's story");
        drop(handle);
    });
    join.join().unwrap();
}

/// 304s and failures queued behind a busy writer are recorded together, each on
/// its own feed's row.
fn queued_records_are_grouped_each_on_its_feed(engine: Engine) {
    let now = Utc::now();
    let due = now + chrono::TimeDelta::minutes(30);
    let db = Fresh::new(engine);
    let mut store = db.open();
    store.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    store
        .record(&FeedRecord::Failure {
            feed_id: "a".into(),
            status: Some(500),
            error: "earlier".into(),
            now,
            next_due: None,
            claim: None,
        })
        .unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
    block_on(async move {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = handle.call(move |_| {
            hold.recv().ok();
            Ok(())
        });
        let not_modified = |id: &str, moved: Option<&str>| FeedRecord::NotModified {
            feed_id: id.into(),
            status: 304,
            now,
            next_due: Some(due),
            moved_to: moved.map(Into::into),
            claim: None,
        };
        let a = handle.record(not_modified("a", None));
        let b = handle.record(FeedRecord::Failure {
            feed_id: "b".into(),
            status: Some(503),
            error: "HTTP 503".into(),
            now,
            next_due: Some(due),
            claim: None,
        });
        let c = handle.record(not_modified("c", Some("https://c2/")));
        let released = async {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        };
        let (busy, a, b, c, ()) = tokio::join!(busy, a, b, c, released);
        busy.unwrap();
        a.unwrap();
        b.unwrap();
        c.unwrap();
        let rows = handle.call(|s| s.feeds()).await.unwrap();
        let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
        let (a, b, c) = (row("a"), row("b"), row("c"));
        assert_eq!((a.last_status, a.error.as_deref(), a.failures), (Some(304), None, 0), "a recovered");
        assert_eq!((b.last_status, b.error.as_deref(), b.failures), (Some(503), Some("HTTP 503"), 1));
        assert_eq!((c.last_status, c.moved_to.as_deref()), (Some(304), Some("https://c2/")));
        for r in [&a, &b, &c] {
            assert_eq!((r.last_fetch, r.next_due), (Some(ts(now)), Some(ts(due))), "{}", r.id);
        }
        drop(handle);
    });
    join.join().unwrap();
}

/// An item with the given title, summary and content text, and categories.
fn text_item(key: &str, title: &str, summary: &str, content: &str, categories: &[&str]) -> NewItem {
    let mut item = Item {
        key: key.into(),
        title: title.into(),
        summary: Some(summary.into()),
        content: Some(content.into()),
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        ..Item::default()
    };
    item.content_hash = dedup::content_hash(&item);
    NewItem {
        item,
        summary_text: summary.into(),
        content_text: content.into(),
        fingerprint: None,
        article: false,
    }
}

/// Topic queries select the same items on every engine: phrases across punctuation,
/// hyphens and numbers, prefixes, accents folded (and the letters FTS5 keeps), NEAR
/// in both orders and within one column, column filters, NOT, an exclude and a feed
/// restriction.
fn queries_select_the_same_items_on_every_engine(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
    let items = vec![
        text_item("k1", "Border security talks", "Ministers met in Brussels on Tuesday.", "", &["Politics"]),
        text_item(
            "k2",
            "Migrant smuggling ring broken",
            "Police arrested 12 people-smugglers in Calais.",
            "",
            &["Crime", "Border"],
        ),
        text_item(
            "k3",
            "Jørgensen wins e-mail award",
            "The naïve café owner in São Paulo…",
            "",
            &["Culture"],
        ),
        text_item(
            "k4",
            "Weather",
            "",
            "Border weather: heavy rain near the security fence on the border.",
            &[],
        ),
        text_item(
            "k5",
            "Security budget 2026",
            "Budget of €1.5 billion for border security in 2026.",
            "",
            &["Budget"],
        ),
        text_item("k6", "Tightened", "Security at the border was tightened.", "", &[]),
    ];
    s.ingest(&job("a", items, now)).unwrap();
    s.ingest(&job("b", vec![text_item("k7", "Other feed", "A naive cafe by the border.", "", &[])], now))
        .unwrap();
    let keys = |filter: &TopicFilter| -> Vec<String> {
        let ids: Vec<i64> = s.matches(filter, Scope::All).unwrap().iter().map(|m| m.item_id).collect();
        let mut keys: Vec<String> = ids
            .iter()
            .flat_map(|id| {
                db.rows(&format!("SELECT CAST(substr(key, 2) AS BIGINT) FROM items WHERE id = {id}"))
            })
            .map(|r| format!("k{}", r[0]))
            .collect();
        keys.sort();
        keys
    };
    let q = |text: &str| Some(query::parse(text).unwrap());
    let cases: &[(&str, &[&str])] = &[
        ("\"border security\"", &["k1", "k5"]),
        ("smuggl*", &["k2"]),
        ("\"people smugglers\"", &["k2"]),
        ("\"people-smugglers\"", &["k2"]),
        ("\"e-mail\"", &["k3"]),
        ("jørgensen", &["k3"]),
        ("JØRGENSEN", &["k3"]),
        ("jorgensen", &[]),
        ("naive", &["k3", "k7"]),
        ("café", &["k3", "k7"]),
        ("\"são paulo\"", &["k3"]),
        ("NEAR(border security, 2)", &["k1", "k5", "k6"]),
        ("NEAR(security border, 2)", &["k1", "k5", "k6"]),
        ("NEAR(border security, 0)", &["k1", "k5"]),
        ("NEAR(border security)", &["k1", "k4", "k5", "k6"]),
        ("NEAR(talks ministers, 10)", &[]),
        ("NEAR(\"migrant smuggling\" ring, 1)", &["k2"]),
        ("title: security", &["k1", "k5"]),
        ("summary: security", &["k5", "k6"]),
        ("content: border", &["k4"]),
        ("categories: border", &["k2"]),
        ("{title summary}: budget", &["k5"]),
        ("border NOT weather", &["k1", "k2", "k5", "k6", "k7"]),
        ("security NOT title: security", &["k4", "k6"]),
        ("2026", &["k5"]),
        ("\"1.5\"", &["k5"]),
        ("\"1 5 billion\"", &["k5"]),
        ("brussels OR calais", &["k1", "k2"]),
        ("(border OR smuggl*) AND police", &["k2"]),
        ("bord* NOT NEAR(border security, 2)", &["k2", "k4", "k7"]),
    ];
    for (text, want) in cases {
        let filter = TopicFilter { query: q(text), exclude: None, feeds: None };
        assert_eq!(keys(&filter), *want, "{engine:?}: {text}");
    }
    // An exclude, alone or beside a query, and a feed restriction.
    let f = |query: Option<&str>, exclude: Option<&str>, feeds: Option<&[&str]>| TopicFilter {
        query: query.and_then(q),
        exclude: exclude.and_then(q),
        feeds: feeds.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
    };
    assert_eq!(keys(&f(Some("border"), Some("weather OR budget"), None)), ["k1", "k2", "k6", "k7"]);
    assert_eq!(keys(&f(None, Some("border"), None)), ["k3"]);
    assert_eq!(keys(&f(None, Some("NEAR(border security, 2)"), None)), ["k2", "k3", "k4", "k7"]);
    assert_eq!(keys(&f(Some("naive"), None, Some(&["b"]))), ["k7"]);
    assert_eq!(keys(&f(None, None, Some(&["b"]))), ["k7"]);
}

on_both_engines!(queries_select_the_same_items_on_every_engine);

/// The upgrade to the second fingerprint format writes the search keys of the items
/// that had keys again, from their stored fingerprints (the whole text's bands
/// changed), drops the old ones, and gives none to an item that had none (one outside
/// the search window).
fn the_upgrade_writes_search_keys_again_from_the_fingerprints(engine: Engine) {
    let f = Fresh::new(engine);
    let mut s = f.open();
    s.sync_feeds([("a", "https://a/")]).unwrap();
    let other =
        "Customs officers seized four tonnes of cocaine hidden in a banana shipment at the port on Tuesday.";
    s.ingest(&job("a", vec![new_item("a1", TEXT), new_item("a2", other)], Utc::now())).unwrap();
    s.flush_bands().unwrap();
    drop(s);
    let ids: Vec<i64> = f.rows("SELECT id FROM items ORDER BY id").into_iter().map(|r| r[0]).collect();
    // As the database was before: keys of the old layout for a1, none for a2.
    f.execute(&format!(
        "DELETE FROM item_bands; INSERT INTO item_bands (key, item_id) VALUES (1, {a1}), (2, {a1});",
        a1 = ids[0]
    ));
    f.execute(&match engine {
        Engine::Sqlite => format!("PRAGMA user_version = {}", super::sqlite::migrations::BANDS_REKEYED - 1),
        Engine::Postgres => {
            format!(
                "UPDATE feedsieve_schema SET version = {}",
                super::postgres::migrations::BANDS_REKEYED - 1
            )
        }
    });
    drop(f.open());
    let mut want = dedup::band_keys(&dedup::fingerprint(TEXT, &HashSet::new()).unwrap());
    want.sort_unstable();
    let got: Vec<i64> = f
        .rows(&format!("SELECT key FROM item_bands WHERE item_id = {} ORDER BY key", ids[0]))
        .into_iter()
        .map(|r| r[0])
        .collect();
    assert_eq!(got, want);
    assert_eq!(f.rows("SELECT count(*) FROM item_bands"), [[dedup::BANDS as i64]], "none for a2");
}

on_both_engines!(the_upgrade_writes_search_keys_again_from_the_fingerprints);

/// Forgetting items (a feed purged, retention) removes their search keys and no
/// others; keys of items older than the search window go too.
fn forgotten_items_leave_no_band_keys(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    s.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
    let other =
        "Customs officers seized four tonnes of cocaine hidden in a banana shipment at the port on Tuesday.";
    s.ingest(&job("b", vec![new_item("b1", other)], now)).unwrap();
    let later = now + chrono::TimeDelta::days(30);
    let third =
        "A ferry ran aground off the northern coast late on Sunday; all passengers were brought ashore.";
    s.ingest(&job("c", vec![new_item("c1", third)], later)).unwrap();
    s.flush_bands().unwrap();
    let bands = |feed: &str| -> i64 {
        db.rows(&format!(
            "SELECT count(*) FROM item_bands WHERE item_id IN (SELECT id FROM items WHERE feed_id = '{feed}')"
        ))[0][0]
    };
    let total = || db.rows("SELECT count(*) FROM item_bands")[0][0];
    assert_eq!(
        (bands("a"), bands("b"), bands("c")),
        (dedup::BANDS as i64, dedup::BANDS as i64, dedup::BANDS as i64)
    );
    s.purge_feed("a").unwrap();
    assert_eq!(total(), 2 * dedup::BANDS as i64, "only b's and c's keys are left");
    // A prune that keeps every item but moves the window past b's: b's keys go.
    let b_and_c: Vec<i64> = db.rows("SELECT id FROM items ORDER BY id").into_iter().map(|r| r[0]).collect();
    let t = later.timestamp();
    s.prune(t - 365 * 86_400, t - 86_400, &b_and_c, t).unwrap();
    assert_eq!((bands("b"), bands("c")), (0, dedup::BANDS as i64), "keys outside the window are dropped");
    assert_eq!(s.item_count().unwrap(), 2, "the items stay");
}

/// A copy stored through one connection finds the story another connection stored:
/// each connection's filter of the stored keys takes in what the other wrote.
fn band_keys_written_by_another_connection_are_found(engine: Engine) {
    let now = Utc::now();
    let db = Fresh::new(engine);
    let (mut a, mut b) = (db.open(), db.open());
    a.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    // Each connection's first ingest builds its filter.
    let other = "An unrelated story about dredging the harbour, with words enough to fingerprint it.";
    a.ingest(&job("a", vec![new_item("a0", other)], now)).unwrap();
    let another = "Another unrelated story, about a new tram line, with words enough for one as well.";
    b.ingest(&job("b", vec![new_item("b0", another)], now)).unwrap();
    a.ingest(&job("a", vec![new_item("a1", TEXT)], now)).unwrap();
    a.flush_bands().unwrap(); // SQLite writes keys in bulk; PostgreSQL has written them
    b.ingest(&job("b", vec![new_item("b1", &format!("{TEXT} Reporting by A. Smith."))], now)).unwrap();
    a.ingest(&job("c", vec![new_item("c1", &format!("LYON (Wire) - {TEXT}"))], now)).unwrap();
    let story = |key: &str| db.rows(&format!("SELECT story_id FROM items WHERE key = '{key}'"))[0][0];
    assert_eq!(story("b1"), story("a1"), "found through the other connection's keys");
    assert_eq!(story("c1"), story("a1"));
    assert_eq!(a.story_count().unwrap(), 3);
}

on_both_engines!(forgotten_items_leave_no_band_keys, band_keys_written_by_another_connection_are_found);

/// The first and the second half of one report: an excerpt and the rest, which do
/// not resemble each other but agree on its names and figures.
const FIRST_HALF: &str = "Border guards at the Kessel crossing near Tarrowgate found 27 people, 6 of them \
    children, hidden behind pallets of frozen fish in a refrigerated lorry early on Tuesday. The driver, a \
    41-year-old man from Varland, was arrested at the scene and will appear before magistrates in Tarrowgate.";
const SECOND_HALF: &str = "Officers opened the trailer at Kessel when a carbon dioxide detector raised the \
    alarm during a routine check. All 27 were given blankets and food, and the 6 children were seen by \
    paramedics before the group was taken to a reception centre in Tarrowgate; the man from Varland, 41, \
    is charged with helping people to enter the country illegally.";

/// Files the queued items into topic "t" by `filter`, and empties the queue, as a
/// curation pass does.
fn file_pending(s: &mut Store, filter: &TopicFilter, now: DateTime<Utc>) {
    s.write(|w| {
        let m = w.matches(filter, Scope::Pending)?;
        w.update_topic("t", now.timestamp(), &m)?;
        w.clear_pending()
    })
    .unwrap();
}

/// A copy that shows two stories to be one merges them, whichever way the copies
/// came: an excerpt and the rest of a report, stored first (in two groups, or in one
/// with the whole), are one story once the whole report is stored, and the topic
/// they were filed in shows one entry for it after curation. A digest that resembles
/// two different stories joins one of them and merges nothing.
fn a_copy_that_shows_two_stories_to_be_one_merges_them(engine: Engine) {
    let now = Utc::now();
    let whole = format!("{FIRST_HALF}\n\n{SECOND_HALF}");
    let fp = |t: &str| dedup::fingerprint(t, &std::collections::HashSet::new()).unwrap();
    let alike = |a: &str, b: &str| dedup::resemblance(&fp(a), &fp(b)) >= dedup::DEFAULT_THRESHOLD;
    assert!(!alike(FIRST_HALF, SECOND_HALF) && alike(&whole, FIRST_HALF) && alike(&whole, SECOND_HALF));
    assert!(!dedup::contradict(&fp(FIRST_HALF), &fp(SECOND_HALF)));
    let filter =
        TopicFilter { query: Some(query::parse("lorry OR trailer").unwrap()), exclude: None, feeds: None };
    let curate = |s: &mut Store| file_pending(s, &filter, now);
    let story =
        |db: &Fresh, key: &str| db.rows(&format!("SELECT story_id FROM items WHERE key = '{key}'"))[0][0];

    // Stored and filed apart first, then the whole report.
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    s.write(|w| w.replace_topic("t", "sig", now.timestamp(), &[])).unwrap();
    s.ingest(&job("a", vec![new_item("first", FIRST_HALF)], now)).unwrap();
    s.ingest(&job("b", vec![new_item("second", SECOND_HALF)], now)).unwrap();
    curate(&mut s);
    assert_eq!(s.story_count().unwrap(), 2);
    assert_eq!(s.topic_entries("t", 10, None).unwrap().len(), 2);
    let first_story = story(&db, "first");
    s.flush_bands().unwrap(); // found in the table (the in-memory keys: below)
    s.ingest(&job("c", vec![new_item("whole", &whole)], now)).unwrap();
    assert_eq!(s.story_count().unwrap(), 1, "{engine:?}: merged");
    for key in ["first", "second", "whole"] {
        assert_eq!(story(&db, key), first_story, "{engine:?}: {key}");
    }
    assert_eq!(db.rows("SELECT count(*) FROM stories"), [[1]]);
    // The moved item is queued again, and curation files it under the one story.
    assert_eq!(db.rows("SELECT count(*) FROM pending"), [[2]], "{engine:?}: the moved item and the new one");
    curate(&mut s);
    let entries = s.topic_entries("t", 10, None).unwrap();
    assert_eq!(entries.len(), 1, "{engine:?}: one entry for the story");
    assert_eq!(
        (entries[0].story_id, entries[0].item.key.as_str()),
        (first_story, "first"),
        "the entry stays"
    );
    assert_eq!(entries[0].also.len(), 2);
    drop(s);

    // The same copies in one group, on a fresh database, in the other order.
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/")]).unwrap();
    let items =
        vec![new_item("second", SECOND_HALF), new_item("first", FIRST_HALF), new_item("whole", &whole)];
    s.ingest(&job("a", items, now)).unwrap();
    assert_eq!(s.story_count().unwrap(), 1, "{engine:?}: merged within the group");
    assert_eq!(db.rows("SELECT count(*) FROM stories"), [[1]]);
    assert_eq!(db.rows("SELECT count(DISTINCT story_id) FROM items"), [[1]]);
    assert_eq!(db.rows("SELECT count(*) FROM items i JOIN stories s ON s.id = i.story_id"), [[3]]);
    // A later copy of the half that lost its story finds the merged one (its
    // search keys, kept in memory by SQLite, still name the story it had).
    s.ingest(&job("a", vec![new_item("again", &format!("{SECOND_HALF} (Updated.)"))], now)).unwrap();
    assert_eq!(story(&db, "again"), story(&db, "whole"));
    drop(s);

    // A digest of two different stories joins one and leaves them two.
    let other = "Customs officers at Port Calden seized 4 tonnes of cocaine hidden in a shipment of \
        bananas from Estmark on Monday, the largest haul at the port in 9 years, and arrested 3 dock workers \
        suspected of helping to unload it.";
    let digest = format!("Our weekly round-up of the news.\n\n{TEXT}\n\n{other}");
    assert!(alike(&digest, TEXT) && alike(&digest, other) && dedup::contradict(&fp(TEXT), &fp(other)));
    let db = Fresh::new(engine);
    let mut s = db.open();
    s.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    s.ingest(&job("a", vec![new_item("tidewater", TEXT)], now)).unwrap();
    s.ingest(&job("b", vec![new_item("cocaine", other)], now)).unwrap();
    s.ingest(&job("c", vec![new_item("digest", &digest)], now)).unwrap();
    assert_eq!(s.story_count().unwrap(), 2, "{engine:?}: the digest merged nothing");
    assert_ne!(story(&db, "tidewater"), story(&db, "cocaine"));
}

on_both_engines!(a_copy_that_shows_two_stories_to_be_one_merges_them);

/// Of a story's copies filed in one pass, the entry is the one that claims the
/// earliest date, whichever feed answered first (a second apart, the first fetched
/// used to win); an entry stays when a copy claiming an earlier date comes later,
/// and when the topic is rebuilt because its definition changed.
fn a_storys_entry_does_not_depend_on_which_feed_answered_first(engine: Engine) {
    let t0 = Utc::now();
    let copy = |key: &str, hours_after: i64| {
        let mut n = new_item(key, TEXT);
        n.item.canonical_link = Some("https://police.example/news/2291".into());
        n.item.published = Some(t0 + chrono::Duration::hours(hours_after));
        n
    };
    let filter = TopicFilter { query: Some(query::parse("Tidewater").unwrap()), exclude: None, feeds: None };
    let entry = |s: &Store| {
        let e = s.topic_entries("t", 10, None).unwrap();
        assert_eq!(e.len(), 1, "{engine:?}: one story");
        e[0].item.key.clone()
    };
    let backfill = |s: &mut Store, sig: &str| {
        s.write(|w| {
            let m = w.matches(&filter, Scope::All)?;
            w.replace_topic("t", sig, t0.timestamp(), &m)
        })
        .unwrap()
    };
    let curate = |s: &mut Store| file_pending(s, &filter, t0);
    // The wire's copy is fetched a second before the release it copies.
    let arrive = |s: &mut Store| {
        s.sync_feeds([("police", "https://police.example/"), ("wire", "https://wire.example/")]).unwrap();
        s.ingest(&job("wire", vec![copy("wire copy", 5)], t0)).unwrap();
        s.ingest(&job("police", vec![copy("release", 0)], t0 + chrono::Duration::seconds(1))).unwrap();
        assert_eq!(s.story_count().unwrap(), 1);
    };

    // A new topic, built from every stored item.
    let db = Fresh::new(engine);
    let mut s = db.open();
    arrive(&mut s);
    backfill(&mut s, "one");
    assert_eq!(entry(&s), "release", "{engine:?}: built");

    // A topic that exists, filed from the queue.
    let db = Fresh::new(engine);
    let mut s = db.open();
    backfill(&mut s, "one");
    arrive(&mut s);
    curate(&mut s);
    assert_eq!(entry(&s), "release", "{engine:?}: filed");

    // A copy that claims an earlier date, a pass later, changes no entry: not when
    // it is filed, not when the topic is rebuilt.
    s.sync_feeds([
        ("police", "https://police.example/"),
        ("wire", "https://wire.example/"),
        ("late", "https://late.example/"),
    ])
    .unwrap();
    s.ingest(&job("late", vec![copy("late copy", -1)], t0 + chrono::Duration::seconds(60))).unwrap();
    curate(&mut s);
    assert_eq!(entry(&s), "release", "{engine:?}: filed later");
    backfill(&mut s, "two");
    assert_eq!(entry(&s), "release", "{engine:?}: rebuilt");
    let e = s.topic_entries("t", 10, None).unwrap();
    assert_eq!(e[0].also.len(), 2, "{engine:?}: both copies are other sources");
}

on_both_engines!(a_storys_entry_does_not_depend_on_which_feed_answered_first);

/// Nodes that start together on an empty database: each waits for the first to make
/// the schema, none fails, and the schema is made once.
fn the_schema_is_made_once_by_whoever_opens_first(engine: Engine) {
    let f = Fresh::new(engine);
    let opened: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..8).map(|_| s.spawn(|| Store::open(&f.db).map(drop))).collect();
        opening.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in opened {
        o.unwrap();
    }
    let version = match engine {
        Engine::Sqlite => f.rows("SELECT user_version FROM pragma_user_version"),
        Engine::Postgres => f.rows("SELECT count(*), max(version)::BIGINT FROM feedsieve_schema"),
    };
    let v = *version[0].last().unwrap();
    assert!(v > 0);
    if engine == Engine::Postgres {
        assert_eq!(version[0][0], 1, "one version row");
    }
    // The schema works, and opening it again changes nothing.
    let mut store = f.open();
    store.sync_feeds([("a", "https://a/")]).unwrap();
    store.ingest(&job("a", vec![new_item("k1", "Border patrol finds a boat")], Utc::now())).unwrap();
    drop(store);
    f.open();
    assert_eq!(
        *f.rows(match engine {
            Engine::Sqlite => "SELECT user_version FROM pragma_user_version",
            Engine::Postgres => "SELECT max(version)::BIGINT FROM feedsieve_schema",
        })[0]
            .last()
            .unwrap(),
        v
    );
    assert_eq!(f.rows("SELECT count(*) FROM items"), [[1]]);
}

/// A store a newer feedsieve has upgraded is refused, for writing and for reading,
/// rather than written in a shape this one does not know.
fn a_newer_schema_is_refused(engine: Engine) {
    let f = Fresh::new(engine);
    drop(f.open());
    f.execute(match engine {
        Engine::Sqlite => "PRAGMA user_version = 99",
        Engine::Postgres => "UPDATE feedsieve_schema SET version = 99",
    });
    assert!(matches!(Store::open(&f.db), Err(StoreError::TooNew { found: 99, .. })));
    assert!(matches!(Store::open_read_only(&f.db), Err(StoreError::TooNew { found: 99, .. })));
}

on_both_engines!(the_schema_is_made_once_by_whoever_opens_first, a_newer_schema_is_refused);

/// On PostgreSQL another node stores items while one curates. An item queued after
/// the pass read the queue is left for the next pass, not emptied from the queue
/// with the items the pass filed (it then never reached its topics); and a curation
/// transaction that does not empty the queue leaves it as it was.
#[test]
fn items_queued_while_another_node_curates_wait_for_the_next_pass() {
    let now = Utc::now();
    let db = Fresh::new(Engine::Postgres);
    let (mut a, mut b) = (db.open(), db.open());
    a.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    let filter = TopicFilter { query: Some(query::parse("border").unwrap()), exclude: None, feeds: None };
    a.write(|w| w.replace_topic("t", "sig", now.timestamp(), &[])).unwrap();
    let id = |key: &str| db.rows(&format!("SELECT id FROM items WHERE key = '{key}'"))[0][0];
    let text = |n: &str| match n {
        "Kessel" => "Guards at the Kessel border post found 27 people hidden in a lorry of frozen fish.",
        "Tarrowgate" => "The Tarrowgate border crossing will close for repairs to its bridge from March.",
        _ => "A new border agency office opens in Varland next week, with forty staff and a clinic.",
    };

    a.ingest(&job("a", vec![new_item("first", text("Kessel"))], now)).unwrap();
    let filed = a
        .write(|w| {
            let m = w.matches(&filter, Scope::Pending)?;
            // Stored and committed by another node while this pass runs.
            b.ingest(&job("b", vec![new_item("second", text("Tarrowgate"))], now))?;
            w.update_topic("t", now.timestamp(), &m)?;
            w.clear_pending()?;
            Ok(m.len())
        })
        .unwrap();
    assert_eq!(filed, 1);
    assert_eq!(db.rows("SELECT item_id FROM pending"), [[id("second")]], "left for the next pass");
    file_pending(&mut a, &filter, now);
    let entries: Vec<i64> = db.rows("SELECT item_id FROM topic_stories ORDER BY item_id").concat();
    assert_eq!(entries, [id("first"), id("second")]);
    assert_eq!(db.rows("SELECT count(*) FROM pending"), [[0]]);

    // A transaction that reads the queue but does not empty it puts it back.
    b.ingest(&job("c", vec![new_item("third", text("Varland"))], now)).unwrap();
    a.write(|w| w.matches(&filter, Scope::Pending).map(drop)).unwrap();
    assert_eq!(db.rows("SELECT item_id FROM pending"), [[id("third")]]);
}
