//! `feedsieve db backup FILE`: a consistent copy of the SQLite store taken while other
//! processes write to it, checked, and restored; refused on PostgreSQL.

use std::path::Path;
use std::time::Duration;

use crate::util::{Daemon, Engine, Env, FeedServer};

const FEEDS: usize = 4;
/// Items of each feed at round 0, and how many each later round adds.
const FIRST: usize = 30;
const STEP: usize = 10;

fn feed(f: usize, round: usize) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title>");
    for i in 0..FIRST + STEP * round {
        s.push_str(&format!(
            "<item><guid>f{f}-{i}</guid><title>Border item {f} {i}</title>\
             <link>https://outlet{f}.example/{i}</link>\
             <description>border report {f} {i} with words w{i}x{f} and more w{f}y{i}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s.into_bytes()
}

/// Items per feed in a SQLite file, read with a connection of the test's own, after
/// checking the file's integrity.
fn items_per_feed(file: &Path) -> Vec<usize> {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok", "{}", file.display());
    (0..FEEDS)
        .map(|f| {
            conn.query_row("SELECT count(*) FROM items WHERE feed_id = ?1", [format!("f{f}")], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as usize
        })
        .collect()
}

/// Backups taken while `feedsieve run` serves and `feedsieve poll` processes store
/// new items: each is whole (every poll of a feed in it or not, never a part) and
/// newer than the one before; the last, put in place of a store, is served as it was.
#[tokio::test(flavor = "multi_thread")]
async fn backups_taken_while_others_write_are_whole_and_restore() {
    let server = FeedServer::start().await;
    let mut feeds = String::new();
    for f in 0..FEEDS {
        server.put(&format!("/f{f}.xml"), feed(f, 0), "application/rss+xml");
        feeds.push_str(&format!(
            "[[feed]]\nid = \"f{f}\"\nurl = \"{}\"\n\n",
            server.url(&format!("/f{f}.xml"))
        ));
    }
    feeds.push_str("[[topic]]\nid = \"border\"\nquery = \"border\"\nlimit = 500\n");
    let env = Env::with_daemon_on(
        Engine::Sqlite,
        "timeout = \"5s\"\nschedule = \"every 1h\"\nlisten = \"127.0.0.1:0\"",
        &feeds,
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"));
    cmd.arg("--config").arg(&env.config_path);
    let daemon = Daemon::start(cmd).await;
    for _ in 0..300 {
        if env.rows("SELECT count(*) FROM items")[0][0] == (FEEDS * FIRST).to_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A writer: eight rounds of new items, each stored by a `poll` process.
    const ROUNDS: usize = 8;
    let writer = {
        let cli = env.clone_path();
        let server = server.clone();
        std::thread::spawn(move || {
            for round in 1..=ROUNDS {
                for f in 0..FEEDS {
                    server.put(&format!("/f{f}.xml"), feed(f, round), "application/rss+xml");
                }
                let out = cli.cli(&["poll"]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        })
    };
    let folder = tempfile::tempdir().unwrap();
    let mut backups = Vec::new();
    let mut n = 0;
    while !writer.is_finished() || n < 2 {
        let file = folder.path().join(format!("backup-{n}.db"));
        let out = env.cli(&["db", "backup", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            said.contains(&format!("to {}: ", file.display())) && said.contains("integrity ok"),
            "{said}"
        );
        backups.push(file);
        n += 1;
    }
    writer.join().unwrap();

    let mut before = vec![0; FEEDS];
    for file in &backups {
        let counts = items_per_feed(file);
        for (f, c) in counts.iter().enumerate() {
            assert!(
                *c >= FIRST && (c - FIRST).is_multiple_of(STEP),
                "{}: feed f{f} has {c} items",
                file.display()
            );
            assert!(*c >= before[f], "{}: older than the backup before it", file.display());
        }
        before = counts;
    }
    let states: std::collections::HashSet<usize> =
        backups.iter().map(|b| items_per_feed(b).iter().sum()).collect();
    assert!(states.len() > 1, "the backups were taken while the store changed: {states:?}");
    // No partial file was left beside the backups.
    let names: Vec<String> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names.len(), backups.len(), "{names:?}");

    // Restore: the last backup in place of a new config's store.
    let last = backups.last().unwrap();
    let stored: usize = items_per_feed(last).iter().sum();
    let restored = Env::at(last.to_str().unwrap(), "timeout = \"5s\"", &feeds);
    let out = restored.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["items_total"].as_u64(), Some(stored as u64), "{status}");
    let out = restored.cli(&["export", "border", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!crate::util::titles(&out.stdout).is_empty());
    assert!(daemon.stop().success());
}

#[test]
fn a_backup_never_overwrites_and_needs_a_store() {
    let env = Env::new("[[feed]]\nid = \"a\"\nurl = \"https://example.org/feed\"\n");
    let folder = tempfile::tempdir().unwrap();
    // No store yet.
    let file = folder.path().join("b.db");
    let out = env.cli(&["db", "backup", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{out:?}");
    assert!(!file.exists());
    // A file already there is left as it is.
    drop(feedsieve::store::Store::open(env.config().daemon.database).unwrap());
    std::fs::write(&file, b"keep me").unwrap();
    let out = env.cli(&["db", "backup", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"), "{out:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // A folder that does not exist is named.
    let missing = folder.path().join("nope/b.db");
    let out = env.cli(&["db", "backup", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{out:?}");
}

#[test]
fn on_postgresql_a_backup_is_refused_with_pg_dump_named() {
    let env = Env::on(Engine::Postgres, "[[feed]]\nid = \"a\"\nurl = \"https://example.org/feed\"\n");
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("b.db");
    let out = env.cli(&["db", "backup", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump") && err.contains("is PostgreSQL"), "{err}");
    assert!(!err.contains("password"), "{err}");
    assert!(!file.exists());
}
