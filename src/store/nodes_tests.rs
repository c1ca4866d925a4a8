//! Many nodes on one database: claims and their tokens, stories made by two
//! connections at once, notices. Claims are PostgreSQL's (SQLite has one node); the
//! outputs' version is both engines'.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::tests::{Engine, Fresh, job, new_item};
use super::*;
use crate::model::{ClaimRequest, Claimed, FeedRecord};

fn at(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).unwrap()
}

fn claim(store: &mut Store, node: &str, ids: &[&str], now: i64, lease: i64) -> Vec<Claimed> {
    store.claim(ids, &ClaimRequest { node, now, due_by: Some(now + 2), until: now + lease }).unwrap()
}

fn token(claims: &[Claimed], id: &str) -> Option<i64> {
    claims.iter().find(|c| c.row.id == id).and_then(|c| c.token)
}

fn not_modified(id: &str, now: i64, claim: Option<i64>) -> FeedRecord {
    FeedRecord::NotModified {
        feed_id: id.into(),
        status: 304,
        now: at(now),
        next_due: Some(at(now + 1800)),
        moved_to: None,
        claim,
    }
}

const T0: i64 = 1_796_000_000;

#[test]
fn a_feed_is_claimed_by_one_node_until_its_lease_runs_out_and_a_late_poll_is_not_stored() {
    let db = Fresh::new(Engine::Postgres);
    let (mut a, mut b) = (db.open(), db.open());
    a.sync_feeds([("f1", "https://x/1"), ("f2", "https://x/2"), ("f3", "https://x/3")]).unwrap();
    let ids = ["f1", "f2", "f3"];

    let by_a = claim(&mut a, "a", &ids, T0, 60);
    assert_eq!(by_a.len(), 3);
    let mut tokens: Vec<i64> = by_a.iter().map(|c| c.token.unwrap()).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "a token per claim");
    assert!(by_a.iter().all(|c| !c.taken_over && c.row.claimed_by.as_deref() == Some("a")));
    assert!(claim(&mut b, "b", &ids, T0 + 10, 60).is_empty(), "a holds them");

    a.heartbeat("a", T0, "same", T0 + 10).unwrap();
    let nodes = b.heartbeat("b", T0, "same", T0 + 10).unwrap();
    let claimed: Vec<(&str, i64)> = nodes.iter().map(|n| (n.node.as_str(), n.claimed)).collect();
    assert_eq!(claimed, [("a", 3), ("b", 0)]);

    // a's lease runs out before it stores anything: b takes the feeds over.
    let by_b = claim(&mut b, "b", &ids, T0 + 60, 60);
    assert_eq!(by_b.len(), 3);
    assert!(by_b.iter().all(|c| c.taken_over));

    // a's polls, late: not stored, neither the fenced one nor the rest of its group.
    let late =
        [not_modified("f2", T0 + 61, token(&by_a, "f2")), not_modified("f1", T0 + 61, token(&by_a, "f1"))];
    match a.record_group(&[&late[0], &late[1]]) {
        Err(StoreError::Fenced { feed }) => assert!(ids.contains(&feed.as_str())),
        other => panic!("a late poll must be refused, got {other:?}"),
    }
    assert!(a.feed_states().unwrap().iter().all(|r| r.last_fetch.is_none()), "nothing of the group stored");
    let mut late_job =
        job("f3", vec![new_item("k1", "Border police seize a boat carrying migrants")], at(T0 + 61));
    late_job.record.claim = token(&by_a, "f3");
    assert!(matches!(a.ingest(&late_job), Err(StoreError::Fenced { .. })));
    assert_eq!(a.item_count().unwrap(), 0, "no item of a late poll");

    // b's polls are stored and end its claims.
    b.record(&not_modified("f1", T0 + 62, token(&by_b, "f1"))).unwrap();
    late_job.record.claim = token(&by_b, "f3");
    b.ingest(&late_job).unwrap();
    assert_eq!(b.item_count().unwrap(), 1);
    let rows = b.feed_states().unwrap();
    for id in ["f1", "f3"] {
        let r = rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!((r.claimed_by.as_deref(), r.claim_until), (None, None), "{id}'s claim ends with its poll");
    }
    let f2 = rows.iter().find(|r| r.id == "f2").unwrap();
    assert_eq!(f2.claimed_by.as_deref(), Some("b"), "still b's until it stores its poll");
}

#[test]
fn only_due_feeds_are_claimed_and_claims_given_up_are_free_at_once() {
    let db = Fresh::new(Engine::Postgres);
    let (mut a, mut b) = (db.open(), db.open());
    a.sync_feeds([("f1", "https://x/1"), ("f2", "https://x/2"), ("f3", "https://x/3")]).unwrap();
    let by_a = claim(&mut a, "a", &["f1"], T0, 60);
    a.record(&not_modified("f1", T0, token(&by_a, "f1"))).unwrap();
    assert!(
        claim(&mut b, "b", &["f1"], T0 + 5, 60).is_empty(),
        "polled in this slot: due again in 30 minutes"
    );
    assert_eq!(claim(&mut b, "b", &["f1"], T0 + 1799, 60).len(), 1, "due within the next seconds");

    let mut listener = b.listener().unwrap().expect("PostgreSQL listens");
    assert_eq!(claim(&mut a, "a", &["f2", "f3"], T0, 300).len(), 2);
    assert_eq!(a.release_claims("a", &["f3"]).unwrap(), 1, "all but the feed being polled");
    let heard = listen_for(&mut *listener, Notice::Claims);
    assert!(heard, "the other nodes are told");
    let by_b = claim(&mut b, "b", &["f2", "f3"], T0 + 1, 300);
    assert_eq!(by_b.iter().map(|c| c.row.id.as_str()).collect::<Vec<_>>(), ["f2"]);
}

/// Waits a few seconds for `notice`.
fn listen_for(listener: &mut dyn Listener, notice: Notice) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if listener.wait(Duration::from_millis(200)).unwrap().contains(&notice) {
            return true;
        }
    }
    false
}

/// Words for texts that share nothing from one round to the next.
fn text(round: u64, words: usize) -> String {
    let mut x = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..words)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("w{}", x % 5000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two nodes store copies of one story (the same canonical link, or near-duplicate
/// texts) in two feeds at the same moment, forty times: forty stories. Without the
/// group lock each looked up stories before the other's copy was committed, and most
/// rounds made two.
#[test]
fn copies_stored_at_once_by_two_nodes_make_one_story() {
    const ROUNDS: u64 = 40;
    let db = Fresh::new(Engine::Postgres);
    let (mut a, mut b) = (db.open(), db.open());
    a.sync_feeds([("fa", "https://a/"), ("fb", "https://b/")]).unwrap();
    let copy = |feed: &'static str, round: u64| {
        let body = text(round, 120);
        let extra = if feed == "fa" { "Read more at outlet A." } else { "Distributed by wire service B." };
        let mut n = new_item(&format!("{feed}-{round}"), &format!("{body} {extra}"));
        if round.is_multiple_of(2) {
            n.item.canonical_link = Some(format!("https://news.example/story/{round}"));
        }
        job(feed, vec![n], Utc::now())
    };
    let start = Arc::new(Barrier::new(2));
    std::thread::scope(|s| {
        for (store, feed) in [(&mut a, "fa"), (&mut b, "fb")] {
            let start = start.clone();
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let j = copy(feed, round);
                    start.wait();
                    store.ingest(&j).unwrap();
                }
            });
        }
    });
    assert_eq!(a.item_count().unwrap(), 2 * ROUNDS as i64);
    assert_eq!(a.story_count().unwrap(), ROUNDS as i64, "each pair of copies one story");
    let pairs = db.rows("SELECT count(DISTINCT story_id) FROM items GROUP BY story_id HAVING count(*) = 2");
    assert_eq!(pairs.len(), ROUNDS as usize);
}

/// Outputs recorded with the same signature keep their version; new ones raise it,
/// and (PostgreSQL) every listening connection hears of it.
fn outputs_are_versioned_and_a_change_is_heard(engine: Engine) {
    let db = Fresh::new(engine);
    let (mut a, b) = (db.open(), db.open());
    let mut listener = b.listener().unwrap();
    assert_eq!(listener.is_some(), engine == Engine::Postgres, "only PostgreSQL has notices");
    assert_eq!(b.outputs_version().unwrap(), None);
    assert_eq!(a.record_outputs(7, T0).unwrap(), 1);
    assert_eq!(a.record_outputs(7, T0 + 60).unwrap(), 1, "the same outputs: no new version");
    assert_eq!(b.outputs_version().unwrap(), Some((1, T0)), "rendered at the first time");
    if let Some(l) = listener.as_mut() {
        assert!(listen_for(&mut **l, Notice::Outputs));
        // The unchanged outputs sent nothing.
        assert!(l.wait(Duration::from_millis(300)).unwrap().is_empty());
    }
    assert_eq!(a.record_outputs(8, T0 + 120).unwrap(), 2);
    assert_eq!(b.outputs_version().unwrap(), Some((2, T0 + 120)));
    if let Some(l) = listener.as_mut() {
        assert!(listen_for(&mut **l, Notice::Outputs));
    }
}

super::tests::on_both_engines!(outputs_are_versioned_and_a_change_is_heard);
