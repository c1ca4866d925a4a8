//! Faults, from the issue "Hostile feeds and crashes: keep working, lose nothing, let
//! nothing through": the real binary killed with SIGKILL while it stores a large feed
//! and while it writes topic files, a database locked by another process, one that
//! cannot be written, one that is corrupt, and bad config files (also sent by SIGHUP).
//!
//! Kill timings come from a seeded generator, so a failure can be replayed: every test
//! prints its seed, and `FEEDSIEVE_FAULT_SEED=N` runs it with another one.
//!
//! What is already covered elsewhere: `check` reporting semantic problems with
//! positions (`cli::check_reports_every_problem_with_positions_and_exits_2`), a bad
//! reload in process (`daemon::a_bad_reload_keeps_the_running_config_and_a_good_one_applies`)
//! and SIGHUP/SIGTERM under systemd (`daemon::the_binary_talks_to_systemd_and_obeys_signals`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use feedsieve::model::Database;

use crate::util::{Daemon, Engine, Env, FeedServer, Reap, etag_of};

/// A small linear congruential generator (Knuth's MMIX constants): reproducible kill
/// timings without a dependency.
struct Lcg(u64);

impl Lcg {
    fn seeded(default: u64) -> Lcg {
        let seed = std::env::var("FEEDSIEVE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
        eprintln!("fault seed: {seed} (set FEEDSIEVE_FAULT_SEED to replay another)");
        Lcg(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_feedsieve"));
    c.env("RUST_LOG", "warn");
    c
}

// ---------------------------------------------------------------------------------
// kill -9 while a large feed is stored

/// A feed at revision `rev`: items `0..count`, each titled with the revision so that a
/// mix of revisions in the database would show a torn transaction.
fn big_feed(rev: u32, count: usize) -> Vec<u8> {
    // Items too short to be fingerprinted: this is about transactions, not about
    // near-duplicate detection, whose cost would only slow the test down.
    let mut out = String::with_capacity(count * 300);
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\"><channel><title>Big</title>\
         <link>http://big.example/</link><description>A large feed</description>\n",
    );
    for i in 0..count {
        let topical = if i % 3 == 0 { " border patrol" } else { "" };
        let minutes = i % 60;
        let hours = (i / 60) % 24;
        let day = 1 + (i / 1440) % 28;
        out.push_str(&format!(
            "<item><title>rev {rev} item {i}</title><link>http://big.example/i/{i}</link>\
             <guid isPermaLink=\"false\">item-{i}</guid>\
             <pubDate>{day:02} May 2026 {hours:02}:{minutes:02}:00 GMT</pubDate>\
             <description>Revision {rev} of item {i}{topical}.</description></item>\n",
        ));
    }
    out.push_str("</channel></rss>\n");
    out.into_bytes()
}

/// Items of a revision: the feed grows by `GROW` items with each one, so every
/// revision brings items the database does not have yet (up to 4,550: the parser
/// takes at most 5,000 items of one poll).
const BASE_ITEMS: usize = 3000;
const GROW: usize = 50;

fn items_at(rev: u32) -> usize {
    BASE_ITEMS + GROW * rev as usize
}

/// What a database holds for the feed `big`: item key → revision in its title, and
/// the stored validators.
struct Stored {
    items: BTreeMap<String, u32>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Opens the database the way an inspector would, checks its integrity and that no
/// key is stored twice, and reads feed `big`.
fn inspect(db: &Database) -> Option<Stored> {
    match db {
        Database::Sqlite(path) => inspect_sqlite(path),
        Database::Postgres(target) => on_own_thread(|| inspect_postgres(&target.url)),
    }
}

/// [`inspect`] of a SQLite file: read-only, no recovery written.
fn inspect_sqlite(db: &Path) -> Option<Stored> {
    if !db.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "integrity_check of {}", db.display());
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'feeds'", [], |r| {
            r.get(0)
        })
        .unwrap();
    if tables == 0 {
        return None; // killed before the first migration committed
    }
    let dups: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT 1 FROM items GROUP BY feed_id, key HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dups, 0, "duplicate (feed, key) items");
    let (items, fts): (i64, i64) = conn
        .query_row("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM items_fts)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(items, fts, "every item has exactly one full-text row");
    let mut stmt = conn.prepare("SELECT key, title FROM items WHERE feed_id = 'big'").unwrap();
    let items = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (key, title) = r.unwrap();
            let rev =
                title.split(' ').nth(1).and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("{title}"));
            (key, rev)
        })
        .collect();
    let (etag, last_modified) = conn
        .query_row("SELECT etag, last_modified FROM feeds WHERE id = 'big'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap_or((None, None));
    Some(Stored { items, etag, last_modified })
}

/// [`inspect`] of a PostgreSQL database: the schema's constraints hold what SQLite's
/// integrity check and the duplicate count check there; every item has its full-text
/// vector.
fn inspect_postgres(url: &str) -> Option<Stored> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let exists: bool = c.query_one("SELECT to_regclass('feeds') IS NOT NULL", &[]).unwrap().get(0);
    if !exists {
        return None; // killed before the first migration committed
    }
    let unindexed: i64 =
        c.query_one("SELECT count(*) FROM items WHERE length(search) = 0", &[]).unwrap().get(0);
    assert_eq!(unindexed, 0, "every item has its full-text vector");
    let items = c
        .query("SELECT key, title FROM items WHERE feed_id = 'big'", &[])
        .unwrap()
        .iter()
        .map(|r| {
            let (key, title): (String, String) = (r.get(0), r.get(1));
            let rev =
                title.split(' ').nth(1).and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("{title}"));
            (key, rev)
        })
        .collect();
    let (etag, last_modified) = c
        .query_opt("SELECT etag, last_modified FROM feeds WHERE id = 'big'", &[])
        .unwrap()
        .map_or((None, None), |r| (r.get(0), r.get(1)));
    Some(Stored { items, etag, last_modified })
}

/// The stored ETag of feed `big`, as a reader sees it (none before the database exists).
fn stored_etag(db: &Database) -> Option<String> {
    match db {
        Database::Sqlite(path) => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT etag FROM feeds WHERE id = 'big'", [], |r| r.get(0)))
            .unwrap_or(None),
        Database::Postgres(target) => on_own_thread(|| {
            let mut c = postgres::Client::connect(&target.url, postgres::NoTls).ok()?;
            c.query_opt("SELECT etag FROM feeds WHERE id = 'big'", &[]).ok().flatten().and_then(|r| r.get(0))
        }),
    }
}

/// Runs `f` on a thread of its own (the sync PostgreSQL client must not block a
/// runtime's worker thread).
fn on_own_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// The invariants that must hold whenever the process dies: one revision throughout
/// (one transaction per feed poll), and validators only for a revision stored whole.
/// `revisions` holds the ETag and item count of each revision the server sent.
fn assert_consistent(s: &Stored, revisions: &[(String, usize)], round: usize) {
    let revs: std::collections::BTreeSet<u32> = s.items.values().copied().collect();
    assert!(revs.len() <= 1, "round {round}: items of revisions {revs:?} side by side: a torn transaction");
    assert_eq!(s.etag.is_some(), s.last_modified.is_some(), "round {round}: validators stored together");
    if let Some(etag) = &s.etag {
        let rev =
            revisions.iter().position(|(e, _)| e == etag).unwrap_or_else(|| panic!("unknown ETag {etag}"));
        let want: Vec<String> = (0..revisions[rev].1).map(|i| format!("g:item-{i}")).collect();
        let have: Vec<&String> = s.items.keys().collect();
        assert_eq!(
            have.len(),
            want.len(),
            "round {round}: the ETag of revision {rev} was stored without all its items"
        );
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert!(have.iter().zip(&want_sorted).all(|(a, b)| *a == b), "round {round}: item keys differ");
        assert_eq!(revs.into_iter().next(), Some(rev as u32), "round {round}: ETag and items disagree");
    } else {
        assert!(s.items.is_empty(), "round {round}: items stored but no validators");
    }
}

on_both_engines!(sigkill_while_storing_a_large_feed_loses_nothing_and_tears_nothing);

/// The issue's first fault: `kill -9` at thirty seeded moments while a large feed is
/// stored, then a poll to completion. Each revision of the feed corrects every item
/// and adds new ones, so every poll has a large transaction to tear.
async fn sigkill_while_storing_a_large_feed_loses_nothing_and_tears_nothing(engine: Engine) {
    const KILLS: usize = 30;
    let server = FeedServer::start().await;
    let env = Env::with_daemon_on(
        engine,
        "timeout = \"30s\"",
        &format!("[[feed]]\nid = \"big\"\nurl = \"{}\"\n", server.url("/big")),
    );
    let db = env.config().daemon.database;
    // Two uninterrupted revisions, then one per kill.
    let revisions: Vec<Vec<u8>> = (0..KILLS as u32 + 2).map(|r| big_feed(r, items_at(r))).collect();
    let etags: Vec<(String, usize)> =
        revisions.iter().enumerate().map(|(r, b)| (etag_of(b), items_at(r as u32))).collect();
    let config = env.config_path.clone();
    let poll = move || {
        let mut c = binary();
        c.arg("--config").arg(&config).arg("poll").stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };

    // Revisions 0 and 1, uninterrupted. When the transaction of 1 (corrections, like
    // the polls to come) commits, as a read-only connection sees it, tells where to
    // aim the kills.
    let mut commit = Duration::ZERO;
    for (rev, body) in revisions.iter().enumerate().take(2) {
        server.put("/big", body.clone(), "application/rss+xml");
        let (status, err, at) = tokio::task::spawn_blocking({
            let poll = poll.clone();
            let db = db.clone();
            let etag = etags[rev].0.clone();
            move || {
                let started = Instant::now();
                let mut child = Reap(poll().spawn().unwrap());
                let mut commit = None;
                while child.0.try_wait().unwrap().is_none() {
                    if commit.is_none() && stored_etag(&db).as_deref() == Some(etag.as_str()) {
                        commit = Some(started.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
                (child.0.wait().unwrap(), err, commit.unwrap_or_else(|| started.elapsed()))
            }
        })
        .await
        .unwrap();
        assert!(status.success(), "{err}");
        assert_consistent(&inspect(&db).unwrap(), &etags, rev);
        commit = at;
    }

    let mut rng = Lcg::seeded(20261130);
    let mut advanced = 0;
    let mut seen = 1;
    let mut aim = commit;
    for (round, body) in revisions.iter().enumerate().skip(2) {
        server.put("/big", body.clone(), "application/rss+xml");
        // From before the commit (start-up, fetch, parse, then the transaction) to a
        // little after it; a later revision is larger and takes longer. `aim` follows
        // the load of the machine: it grows while the kills come before the commit
        // and shrinks when they come after.
        let scale = items_at(round as u32) as f64 / items_at(1) as f64;
        let delay = aim.mul_f64(scale * (0.5 + 0.7 * rng.unit()));
        let poll = poll.clone();
        tokio::task::spawn_blocking(move || {
            let mut child = Reap(poll().stderr(Stdio::null()).spawn().unwrap());
            std::thread::sleep(delay);
            let _ = child.0.kill();
            child.0.wait().unwrap()
        })
        .await
        .unwrap();
        let stored = inspect(&db).expect("the database survives");
        assert_consistent(&stored, &etags, round);
        let rev = stored.items.values().next().copied().unwrap_or(0) as usize;
        if rev != seen {
            advanced += 1;
            seen = rev;
            aim = aim.mul_f64(0.85);
        } else {
            aim = aim.mul_f64(1.1);
        }
    }
    eprintln!(
        "{KILLS} kills around the commit ({commit:?} into an uninterrupted poll): {advanced} came after it"
    );

    // Restart and poll to completion: everything the feed holds, once.
    let out = tokio::task::spawn_blocking(move || poll().output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = inspect(&db).unwrap();
    let last = KILLS + 1;
    assert_consistent(&stored, &etags, last + 1);
    assert_eq!(stored.etag.as_deref(), Some(etags[last].0.as_str()));
    assert_eq!(stored.items.len(), items_at(last as u32));
    assert!(stored.items.values().all(|&r| r as usize == last), "every item at the last revision");
    let status: serde_json::Value = serde_json::from_slice(&env.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["items_total"], items_at(last as u32));
}

// ---------------------------------------------------------------------------------
// kill -9 while topic files are written

/// `(revision, item number)` of every entry of a topic file, after checking that the
/// file parses completely: Atom and RSS as well-formed XML with every element closed,
/// JSON Feed as one JSON document.
fn entries_of(path: &Path) -> Vec<(u32, usize)> {
    let body = std::fs::read(path).unwrap();
    let what = path.display();
    let titles: Vec<String> = if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what} is not whole JSON: {e}"));
        v["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect()
    } else {
        feed_rs::parser::parse(&body[..]).unwrap_or_else(|e| panic!("{what} is not a whole feed: {e}"));
        crate::util::xml_strings(&body);
        crate::util::titles(&body)
    };
    titles
        .iter()
        .map(|t| {
            let mut w = t.split(' ');
            let rev = w.nth(1).and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("{what}: {t}"));
            let item = w.nth(1).and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("{what}: {t}"));
            (rev, item)
        })
        .collect()
}

/// Topic files (not the writer's hidden temporary files) in `dir`.
fn topic_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Name, size and modification time of everything in `dir`: it changes as soon as a
/// writer starts on a file there, whether it writes in place or beside it.
fn dir_state(dir: &Path) -> BTreeMap<std::ffi::OsString, (u64, Option<std::time::SystemTime>)> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let meta = e.metadata().ok();
                    let len = meta.as_ref().map_or(0, |m| m.len());
                    (e.file_name(), (len, meta.and_then(|m| m.modified().ok())))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `kill -9` while topic files are written to `output_dir`: every file is the whole
/// old or the whole new version. Kills are aimed at the writes: the test waits for
/// the first change in the folder (a temporary file, or a file being rewritten) and
/// kills a seeded moment later.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_writing_output_files_leaves_whole_old_or_new_files() {
    const ROUNDS: u32 = 20;
    const ITEMS: usize = 600;
    let server = FeedServer::start().await;
    let env = Env::with_daemon(
        "timeout = \"30s\"\noutput_dir = \"public\"",
        &format!(
            "[[feed]]\nid = \"big\"\nurl = \"{}\"\n\n[[topic]]\nid = \"all\"\nfeeds = [\"big\"]\nlimit = 1000\n\n\
             [[topic]]\nid = \"border\"\nquery = 'border AND patrol'\nlimit = 1000\n",
            server.url("/big")
        ),
    );
    let out_dir = env.config().daemon.output_dir.unwrap();
    let config = env.config_path.clone();
    let poll = move || {
        let mut c = binary();
        c.arg("--config").arg(&config).arg("poll").stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    server.put("/big", big_feed(0, ITEMS), "application/rss+xml");
    let status = tokio::task::spawn_blocking({
        let poll = poll.clone();
        move || poll().status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    // What each file holds when whole: these item numbers, all of one revision.
    let baseline: BTreeMap<PathBuf, Vec<usize>> = topic_files(&out_dir)
        .into_iter()
        .map(|p| {
            let mut items: Vec<usize> = entries_of(&p).into_iter().map(|(_, i)| i).collect();
            items.sort_unstable();
            (p, items)
        })
        .collect();
    assert_eq!(baseline.len(), 6, "two topics in three formats: {baseline:?}");
    assert!(baseline.values().all(|v| !v.is_empty()));

    let mut rng = Lcg::seeded(4242);
    let mut during_write = 0;
    let mut versions = std::collections::BTreeSet::new();
    for rev in 1..=ROUNDS {
        server.put("/big", big_feed(rev, ITEMS), "application/rss+xml");
        let wait = Duration::from_micros(rng.next() % 3000);
        let poll = poll.clone();
        let dir = out_dir.clone();
        during_write += tokio::task::spawn_blocking(move || {
            let before = dir_state(&dir);
            let mut child = Reap(poll().spawn().unwrap());
            let mut seen = false;
            while child.0.try_wait().unwrap().is_none() {
                if dir_state(&dir) != before {
                    seen = true;
                    std::thread::sleep(wait);
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = child.0.kill();
            child.0.wait().unwrap();
            usize::from(seen)
        })
        .await
        .unwrap();
        for (path, want) in &baseline {
            let entries = entries_of(path);
            let revs: std::collections::BTreeSet<u32> = entries.iter().map(|(r, _)| *r).collect();
            assert_eq!(revs.len(), 1, "round {rev}: {} mixes revisions {revs:?}", path.display());
            let mut items: Vec<usize> = entries.iter().map(|(_, i)| *i).collect();
            items.sort_unstable();
            assert_eq!(&items, want, "round {rev}: {} is not a whole version", path.display());
            versions.insert(revs.into_iter().next());
        }
    }
    eprintln!(
        "{ROUNDS} kills, {during_write} after writing began; files seen at {} revisions",
        versions.len()
    );

    // A poll to completion brings every file to the last revision.
    let status = tokio::task::spawn_blocking(move || poll().status().unwrap()).await.unwrap();
    assert!(status.success());
    for path in baseline.keys() {
        assert!(entries_of(path).iter().all(|(r, _)| *r == ROUNDS), "{}", path.display());
    }
}

// ---------------------------------------------------------------------------------
// The database locked, read-only, corrupt

/// A database locked by another process: the pass fails with an error that names the
/// database and says it is locked, stores nothing half-way, and the next pass after
/// the lock is released succeeds. The store waits `busy_timeout` (5 s) before it gives
/// up, so a short lock by another tool does not fail a pass at all.
///
/// Regression (this issue): the error said "database error: database is locked",
/// without saying which database.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_fails_the_pass_clearly_and_the_next_pass_succeeds() {
    let server = FeedServer::start().await;
    let env = Env::new(&format!("[[feed]]\nid = \"big\"\nurl = \"{}\"\n", server.url("/big")));
    let db = env.sqlite_path();
    let revisions = [big_feed(0, 20), big_feed(1, 30)];
    let etags = [(etag_of(&revisions[0]), 20), (etag_of(&revisions[1]), 30)];
    server.put("/big", revisions[0].clone(), "application/rss+xml");
    let cli = env.clone_path();
    let out = tokio::task::spawn_blocking(move || cli.cli(&["poll"])).await.unwrap();
    assert!(out.status.success());

    let lock = Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    server.put("/big", revisions[1].clone(), "application/rss+xml");
    let cli = env.clone_path();
    let out = tokio::task::spawn_blocking(move || cli.cli(&["poll"])).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "a pass that could not store anything is a failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database is locked"), "{err}");
    assert!(err.contains(&db.display().to_string()), "the error names the database: {err}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let stored = inspect_sqlite(&db).unwrap();
    assert_consistent(&stored, &etags, 1);
    assert_eq!(stored.items.len(), 20, "nothing of the locked-out pass was stored");

    let cli = env.clone_path();
    let out = tokio::task::spawn_blocking(move || cli.cli(&["poll"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = inspect_sqlite(&db).unwrap();
    assert_consistent(&stored, &etags, 2);
    assert_eq!(stored.items.len(), 30);
}

/// A maker of commands that run the binary as a user the file modes apply to. As
/// root, modes do not stop writes, so the child runs as `nobody` instead (from a copy
/// of the binary in `scratch` if the build folder is closed to it); otherwise as
/// ourselves.
fn unprivileged(scratch: &Path) -> impl Fn() -> Command + Clone + Send + 'static {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let command = move |bin: &Path| {
        let mut c = Command::new(bin);
        if root {
            c.uid(NOBODY).gid(NOBODY);
        }
        c.env("RUST_LOG", "warn");
        c
    };
    let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_feedsieve"));
    if !command(&bin).arg("--version").output().is_ok_and(|o| o.status.success()) {
        let copy = scratch.join("feedsieve");
        std::fs::copy(&bin, &copy).unwrap();
        bin = copy;
    }
    move || command(&bin)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A database file the daemon may read but not write (an operator ran a first poll as
/// another user): `poll` fails naming the file, and `run` still starts, serves what is
/// stored, and reports each failed pass with the file's path.
///
/// Regression (this issue): the error was "database error: attempt to write a
/// readonly database", without the path, and `run` gave up at start (its first write,
/// recording the configured feeds, failed) instead of serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_cannot_be_written_is_named_and_serving_continues() {
    let server = FeedServer::start().await;
    let env = Env::with_daemon(
        "timeout = \"5s\"\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[[feed]]\nid = \"big\"\nurl = \"{}\"\n\n[[topic]]\nid = \"all\"\nfeeds = [\"big\"]\n",
            server.url("/big")
        ),
    );
    let db = env.sqlite_path();
    let revisions = [big_feed(0, 20), big_feed(1, 30)];
    let etags = [(etag_of(&revisions[0]), 20), (etag_of(&revisions[1]), 30)];
    server.put("/big", revisions[0].clone(), "application/rss+xml");
    let cli = env.clone_path();
    assert!(tokio::task::spawn_blocking(move || cli.cli(&["poll"])).await.unwrap().status.success());

    // The operator adds a feed (due at once), and the file turns out read-only; its
    // folder stays writable, as SQLite needs for its shared-memory file when it reads.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        format!("{text}\n[[feed]]\nid = \"more\"\nurl = \"{}\"\n", server.url("/more")),
    )
    .unwrap();
    server.put("/more", big_feed(0, 5), "application/rss+xml");
    let root = env.config_path.parent().unwrap().to_owned();
    chmod(&root, 0o755);
    chmod(db.parent().unwrap(), 0o777);
    chmod(&db, 0o444);
    server.put("/big", revisions[1].clone(), "application/rss+xml");
    let as_user = unprivileged(&root);
    let config = env.config_path.clone();
    let out = tokio::task::spawn_blocking({
        let as_user = as_user.clone();
        let config = config.clone();
        move || as_user().arg("--config").arg(&config).arg("poll").output().unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&db.display().to_string()), "the error names the database: {err}");
    assert!(err.contains("readonly"), "{err}");

    let mut cmd = as_user();
    cmd.arg("--config").arg(&config);
    let mut d = Daemon::start(cmd).await;
    assert_eq!(d.topic_titles("all").await.len(), 20, "what is stored is served");
    let db_name = db.display().to_string();
    let failed = |l: &str, what: &str| {
        l.lines().any(|l| l.contains(what) && l.contains(&db_name) && l.contains("readonly"))
    };
    d.wait_log("the start-up report", |l| failed(l, "cannot record the configured feeds")).await;
    // The added feed is due at once: its pass fails the same way, and is retried later.
    d.wait_log("the failed pass", |l| failed(l, "a poll pass failed")).await;
    assert_eq!(d.get("/healthz").await.0, 200, "the database still answers reads");
    assert_eq!(d.topic_titles("all").await.len(), 20, "serving continues after the failed pass");
    assert!(d.stop().success());
    let stored = inspect_sqlite(&db).unwrap();
    assert_consistent(&stored, &etags, 1);
    assert_eq!(stored.items.len(), 20);
}

/// A database file that is not one, or is damaged: `poll` and `run` refuse to start
/// with a message that names the file and says what is wrong, and leave it exactly
/// as it was (no recovery, no `-wal`/`-shm` files beside it).
///
/// Regression (this issue): SQLite's "file is not a database" was the only hint.
#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let env = Env::with_daemon("listen = \"127.0.0.1:0\"", "");
    let db = env.sqlite_path();
    assert!(env.cli(&["poll"]).status.success());
    let real = std::fs::read(&db).unwrap();
    assert!(real.len() >= 8192, "a real database of several pages");
    let mut rng = Lcg(7);
    let garbage: Vec<u8> = (0..65536).map(|_| rng.next() as u8).collect();
    let mut bad_header = real.clone();
    bad_header[..16].copy_from_slice(b"SQLite format 9\0");
    let mut bad_schema = real.clone();
    for b in &mut bad_schema[100..4096] {
        *b = rng.next() as u8;
    }
    let side = |suffix: &str| PathBuf::from(format!("{}{suffix}", db.display()));
    for (name, bytes) in
        [("garbage", &garbage), ("a damaged header", &bad_header), ("a damaged schema page", &bad_schema)]
    {
        for command in ["poll", "run"] {
            std::fs::write(&db, bytes).unwrap();
            let mut child = Reap(
                binary()
                    .arg("--config")
                    .arg(&env.config_path)
                    .arg(command)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let status = child.wait_exit(&format!("{command} on {name}"));
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "{command} on {name}: {err}");
            assert!(err.contains(&db.display().to_string()), "{command} on {name} names the file: {err}");
            assert!(err.contains("corrupt"), "{command} on {name} says the file is corrupt: {err}");
            assert!(std::fs::read(&db).unwrap() == *bytes, "{command} on {name}: the file was changed");
            for suffix in ["-wal", "-shm", "-journal"] {
                assert!(!side(suffix).exists(), "{command} on {name} left {suffix} beside the file");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Bad config files

/// Appended to a valid config: two syntax errors and three semantic ones, each on its
/// own line, with what the message must say.
const BAD_TAIL: &str = r#"
[[feed]]
id = "a"
url = "https://example.org/a.xml"
schedule = "61 * * * *"

[[feed]]
id = "b"
url = "https://example.org/b.xml"
tags = ["x" "y"]

[[topic]]
id = "t"
query = 'border'
limit = "ten"
max_age = 30d
colour = "red"
"#;

/// `(line, column or 0 for any, text)` of every problem in `text` + [`BAD_TAIL`].
fn bad_tail_problems(text: &str) -> Vec<(usize, usize, &'static str)> {
    let line_of = |needle: &str| {
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        text[..at].matches('\n').count() + 1
    };
    vec![
        (line_of("schedule = \"61"), 12, "bad schedule"),
        (line_of("tags = [\"x\" \"y\"]"), 0, ""),
        (line_of("limit = \"ten\""), 9, "limit"),
        (line_of("max_age = 30d"), 0, ""),
        (line_of("colour = \"red\""), 1, "unknown key 'colour'"),
    ]
}

fn assert_reported(log: &str, file: &Path, problems: &[(usize, usize, &str)]) {
    let file = file.display().to_string();
    for &(line, col, text) in problems {
        let found = log.lines().any(|l| {
            let Some(rest) = l.split(&format!("{file}:{line}:")).nth(1) else { return false };
            let (c, message) = rest.split_once(": ").unwrap_or(("", ""));
            c.parse::<usize>().is_ok_and(|c| col == 0 || c == col) && message.contains(text)
        });
        assert!(found, "no problem reported at {file}:{line}:{col} ({text}) in\n{log}");
    }
}

/// Config files with syntax and semantic errors: `check` reports all of them, each
/// with line and column, in one run, and exits 2.
///
/// Regression (this issue): a syntax error hid every other problem until it was fixed.
#[test]
fn check_reports_syntax_and_semantic_errors_in_one_run() {
    let env = Env::new(BAD_TAIL);
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let out = env.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_reported(&String::from_utf8_lossy(&out.stderr), &env.config_path, &bad_tail_problems(&text));
}

/// A bad config sent to the real daemon by SIGHUP: every problem is logged with its
/// position, and the old config keeps running (its topics served, none of the new
/// ones). The same in process: `daemon::a_bad_reload_keeps_the_running_config_and_a_good_one_applies`.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_bad_config_keeps_the_old_one() {
    let server = FeedServer::start().await;
    server.put("/big", big_feed(0, 20), "application/rss+xml");
    let env = Env::with_daemon(
        "timeout = \"5s\"\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[[feed]]\nid = \"big\"\nurl = \"{}\"\n\n[[topic]]\nid = \"all\"\nfeeds = [\"big\"]\n",
            server.url("/big")
        ),
    );
    let mut cmd = binary();
    cmd.arg("--config").arg(&env.config_path);
    let mut d = Daemon::start(cmd).await;
    for _ in 0..600 {
        if d.topic_titles("all").await.len() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.topic_titles("all").await.len(), 20, "the first poll");

    let good = std::fs::read_to_string(&env.config_path).unwrap();
    let bad = format!("{good}{BAD_TAIL}");
    std::fs::write(&env.config_path, &bad).unwrap();
    d.signal(libc::SIGHUP);
    let log = d.wait_log("the failed reload", |l| l.contains("reload failed")).await;
    assert_reported(&log, &env.config_path, &bad_tail_problems(&bad));
    assert_eq!(d.topic_titles("all").await.len(), 20, "the old topics are still served");
    assert_eq!(d.get("/healthz").await.0, 200);
    assert_eq!(d.get("/topics/t.json").await.0, 404, "nothing of the bad config applied");
    assert!(d.stop().success());
}
