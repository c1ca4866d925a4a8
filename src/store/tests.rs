//! Tests of the store's face: what every engine must do.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::curate::query;
use crate::dedup;
use crate::model::{FeedRecord, FetchRecord, IngestJob, Item, NewItem, StoryRule, ts};

pub const TEXT: &str = "Police in 31 countries arrested 212 suspects during Operation Tidewater, a six-week \
        action against migrant smuggling networks operating along sea routes in the Mediterranean.";

pub fn new_item(key: &str, text: &str) -> NewItem {
    let fingerprint = dedup::fingerprint(text, &std::collections::HashSet::new());
    let mut item = Item { key: key.into(), title: key.into(), summary: Some(text.into()), ..Item::default() };
    item.content_hash = dedup::content_hash(&item);
    NewItem { item, summary_text: text.into(), content_text: String::new(), fingerprint }
}

pub fn job(feed: &str, items: Vec<NewItem>, now: DateTime<Utc>) -> IngestJob {
    IngestJob { feed_id: feed.into(), items, record: FetchRecord::default(), rule: StoryRule::default(), now }
}

/// Rebuilding a topic writes only what changed, and leaves what a rebuild into
/// an empty topic would.
#[test]
fn replacing_a_topic_leaves_the_rows_a_rebuild_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut s = Store::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let m = |item_id, story_id, score, sort_date| Match { item_id, story_id, score, sort_date };
    let before = [m(1, 1, 1.0, 10), m(2, 2, 2.0, 20), m(3, 2, 5.0, 30), m(4, 3, 1.0, 40)];
    // Story 1 as it was, story 2 first matched by another item, story 3 gone,
    // story 4 new with a better-scored second copy.
    let after = [m(1, 1, 1.0, 10), m(3, 2, 5.0, 31), m(2, 2, 2.0, 20), m(5, 4, 3.0, 50), m(6, 4, 4.0, 60)];
    s.write(|w| w.replace_topic("t", "old", 100, &before)).unwrap();
    s.write(|w| w.replace_topic("t", "new", 200, &after)).unwrap();
    s.write(|w| w.replace_topic("fresh", "new", 200, &after)).unwrap();
    let rows = |_: &Store, topic: &str| -> Vec<(i64, i64, f64, i64, i64)> {
        raw.prepare(
            "SELECT story_id, item_id, score, sort_date, matched_at FROM topic_stories
                     WHERE topic_id = ?1 ORDER BY story_id",
        )
        .unwrap()
        .query_map([topic], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(rows(&s, "fresh"), [(1, 1, 1.0, 10, 200), (2, 3, 5.0, 31, 200), (4, 5, 4.0, 50, 200)]);
    let without_time = |r: Vec<(i64, i64, f64, i64, i64)>| {
        r.into_iter().map(|(a, b, c, d, _)| (a, b, c, d)).collect::<Vec<_>>()
    };
    assert_eq!(without_time(rows(&s, "t")), without_time(rows(&s, "fresh")));
    // Filed pass by pass, the same matches leave the same rows.
    s.write(|w| {
        w.update_topic("inc", 200, &after[..2])?;
        w.update_topic("inc", 200, &after[2..])
    })
    .unwrap();
    assert_eq!(rows(&s, "inc"), rows(&s, "fresh"));
    // The unchanged row was not rewritten.
    assert_eq!(rows(&s, "t")[0].4, 100);
    assert_eq!(s.write(|w| w.topic_signature("t")).unwrap().as_deref(), Some("new"));
    // A rebuild that matches nothing empties the topic.
    s.write(|w| w.replace_topic("t", "none", 300, &[])).unwrap();
    assert!(rows(&s, "t").is_empty());
}

#[test]
fn preview_marks_matches_in_the_title_and_the_text_the_poll_indexed() {
    let now = Utc::now();
    let mut s = Store::open_in_memory().unwrap();
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

#[test]
fn a_group_is_stored_whole_or_not_at_all() {
    let now = Utc::now();
    let mut s = Store::open_in_memory().unwrap();
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

#[test]
fn known_keys_are_the_listed_ones_stored_or_tombstoned() {
    let now = Utc::now();
    let mut s = Store::open_in_memory().unwrap();
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
    assert_eq!(known["a1"], Some(Known { hash: expected, legacy: false }), "stored, with its content hash");
    assert_eq!(known["old"], None, "tombstoned");
}

/// What a poll reads before storing goes to a read connection: it is answered
/// while the writer is busy, and sees what the writer committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_wait_behind_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    store.sync_feeds([("a", "https://a/")]).unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
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
    join.join().unwrap();
}

/// Polls queued behind a busy writer share a transaction; one that fails there is
/// retried alone, so only it fails.
#[tokio::test]
async fn queued_polls_are_grouped_and_a_failure_stays_with_its_feed() {
    let now = Utc::now();
    let mut store = Store::open_in_memory().unwrap();
    store.sync_feeds([("a", "https://a/"), ("b", "https://b/")]).unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
    // Hold the writer until all three polls are queued behind it.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let busy = handle.call(move |_| {
        hold.recv().ok();
        Ok(())
    });
    let a = handle.ingest(job("a", vec![new_item("a1", TEXT)], now));
    let bad =
        handle.ingest(job("nope", vec![new_item("n1", "Words enough for a story of its own here.")], now));
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
    join.join().unwrap();
}

/// 304s and failures queued behind a busy writer are recorded together, each on
/// its own feed's row.
#[tokio::test]
async fn queued_records_are_grouped_each_on_its_feed() {
    let now = Utc::now();
    let due = now + chrono::TimeDelta::minutes(30);
    let mut store = Store::open_in_memory().unwrap();
    store.sync_feeds([("a", "https://a/"), ("b", "https://b/"), ("c", "https://c/")]).unwrap();
    store
        .record(&FeedRecord::Failure {
            feed_id: "a".into(),
            status: Some(500),
            error: "earlier".into(),
            now,
            next_due: None,
        })
        .unwrap();
    let (handle, join) = StoreHandle::spawn(store).unwrap();
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
    };
    let a = handle.record(not_modified("a", None));
    let b = handle.record(FeedRecord::Failure {
        feed_id: "b".into(),
        status: Some(503),
        error: "HTTP 503".into(),
        now,
        next_due: Some(due),
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
    join.join().unwrap();
}
