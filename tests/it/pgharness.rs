//! The throwaway PostgreSQL server of `tests/support/pg.rs` checks itself: fresh
//! databases are distinct, empty and the test role's; logging in takes the right
//! password; `unaccent` is there for the owner; the server and its folder go when the
//! test process ends, also when a test panics or the process is killed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use crate::pg;

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

fn one_string(client: &mut Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The database name at the end of a URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().expect("a URL has a slash")
}

/// Relations in the database other than the system's.
fn user_relations(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .expect("counting relations")
        .get(0)
}

#[test]
fn fresh_databases_are_distinct_empty_and_owned_by_the_test_role() {
    let server = pg::server();
    let a = server.fresh_database("pgharness");
    let b = server.fresh_database("pgharness");
    assert_ne!(a, b);
    let (mut ca, mut cb) = (connect(&a), connect(&b));
    assert_eq!(one_string(&mut ca, "SELECT current_database()::text"), db_name(&a));
    assert_eq!(one_string(&mut cb, "SELECT current_database()::text"), db_name(&b));
    for client in [&mut ca, &mut cb] {
        assert_eq!(user_relations(client), 0);
        assert_eq!(
            one_string(
                client,
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()"
            ),
            "feedsieve"
        );
        assert_eq!(
            one_string(
                client,
                "SELECT pg_encoding_to_char(encoding)::text FROM pg_database WHERE datname = current_database()"
            ),
            "UTF8"
        );
    }
    ca.batch_execute("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1)")
        .expect("create a table");
    assert_eq!(user_relations(&mut ca), 1);
    assert_eq!(user_relations(&mut cb), 0);
}

#[test]
fn the_url_logs_in_as_the_unprivileged_test_role() {
    let server = pg::server();
    let url = server.fresh_database("pgharness_role");
    let prefix = format!("postgres://feedsieve:{}@{}:{}/", server.password(), server.host(), server.port());
    assert!(url.starts_with(&prefix), "{url} should start with {prefix}");
    if server.data_folder().is_some() {
        assert_eq!(server.host(), "127.0.0.1");
    }
    let mut client = connect(&url);
    assert_eq!(one_string(&mut client, "SELECT current_user::text"), "feedsieve");
    let row = client
        .query_one("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user", &[])
        .expect("reading the role");
    let (superuser, createdb): (bool, bool) = (row.get(0), row.get(1));
    assert!(!superuser, "the test role must not be a superuser");
    assert!(createdb);
    // Its password is stored as a SCRAM verifier, and the throwaway server trusts no one.
    let mut admin = server.admin(&url);
    let scram: bool = admin
        .query_one(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'feedsieve'",
            &[],
        )
        .expect("reading pg_authid")
        .get(0);
    assert!(scram);
    if server.data_folder().is_some() {
        let trusting: i64 = admin
            .query_one("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256'", &[])
            .expect("reading pg_hba_file_rules")
            .get(0);
        assert_eq!(trusting, 0, "every pg_hba.conf line asks for a SCRAM password");
    }
}

#[test]
fn a_wrong_or_missing_password_is_refused() {
    let server = pg::server();
    let url = server.fresh_database("pgharness_pw");
    let mut config: Config = server.url_without_password(&url).parse().expect("a URL postgres reads");
    config.password("not-the-password");
    let err = config.connect(NoTls).err().unwrap_or_else(|| {
        panic!("a wrong password was accepted: the server must ask TCP clients for passwords")
    });
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");

    let no_password: Config = server.url_without_password(&url).parse().expect("a URL postgres reads");
    assert!(no_password.connect(NoTls).is_err(), "no password was accepted");
}

#[test]
fn the_url_without_password_works_with_the_password_given_apart() {
    let server = pg::server();
    let url = server.fresh_database("pgharness_nopw");
    let bare = server.url_without_password(&url);
    assert_eq!(bare, format!("postgres://feedsieve@{}:{}/{}", server.host(), server.port(), db_name(&url)));
    assert_eq!(server.url_without_password(db_name(&url)), bare, "a name or a URL");
    assert!(!bare.contains(server.password()));
    let mut config: Config = bare.parse().expect("a URL postgres reads");
    config.password(server.password());
    let mut client = config.connect(NoTls).expect("the password given apart is accepted");
    assert_eq!(one_string(&mut client, "SELECT current_user::text"), "feedsieve");
    assert_eq!(one_string(&mut client, "SELECT current_database()::text"), db_name(&url));
}

#[test]
fn the_database_owner_can_create_unaccent() {
    let url = pg::server().fresh_database("pgharness_unaccent");
    let mut client = connect(&url);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        .expect("CREATE EXTENSION unaccent as the owner");
    assert_eq!(one_string(&mut client, "SELECT unaccent('Jørgensen São')"), "Jorgensen Sao");
}

#[test]
fn admin_is_a_superuser_on_the_database_asked_for() {
    let server = pg::server();
    let url = server.fresh_database("pgharness_admin");
    for db in [url.as_str(), db_name(&url)] {
        let mut admin = server.admin(db);
        assert_eq!(one_string(&mut admin, "SELECT current_database()::text"), db_name(&url));
        let superuser: bool = admin
            .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[])
            .expect("reading the role")
            .get(0);
        assert!(superuser);
    }
    // The superuser sees what the owner made, and may tamper with it.
    connect(&url).batch_execute("CREATE TABLE t (x int)").expect("create a table");
    server.admin(&url).batch_execute("INSERT INTO t VALUES (42)").expect("tamper");
    let x: i32 = connect(&url).query_one("SELECT x FROM t", &[]).expect("read it back").get(0);
    assert_eq!(x, 42);
}

#[test]
fn databases_can_be_created_from_many_threads_at_once() {
    let server = pg::server();
    let urls: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| (0..3).map(|_| server.fresh_database("pgharness_threads")).collect::<Vec<_>>())
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().expect("a creating thread")).collect()
    });
    let names: HashSet<&str> = urls.iter().map(|u| db_name(u)).collect();
    assert_eq!(names.len(), 48);
    let mut admin = server.admin(&urls[0]);
    let listed: Vec<String> = admin
        .query("SELECT datname::text FROM pg_database", &[])
        .expect("listing databases")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in &names {
        assert!(listed.iter().any(|l| l == name), "{name} is not on the server");
    }
}

#[tokio::test]
async fn fresh_database_works_from_an_async_test() {
    let url = pg::server().fresh_database("pgharness_async");
    let current = tokio::task::spawn_blocking(move || {
        let mut client = connect(&url);
        one_string(&mut client, "SELECT current_user::text")
    })
    .await
    .expect("the blocking task");
    assert_eq!(current, "feedsieve");
}

// --- The server goes when its test process ends ---

/// What the child process prints once its server is up.
const MARKER: &str = "PGHARNESS_CHILD";

/// Run only as a child process by the tests below (it does nothing otherwise): starts
/// the server, prints its folder and postmaster, then panics or waits to be killed.
#[test]
#[ignore = "run in a child process by the_server_goes_when_*"]
fn child_process_with_a_server() {
    let Ok(mode) = std::env::var("FEEDSIEVE_PGHARNESS_CHILD") else { return };
    let server = pg::server();
    let url = server.fresh_database("pgharness_child");
    assert_eq!(one_string(&mut connect(&url), "SELECT current_user::text"), "feedsieve");
    let folder = server.data_folder().expect("a local server");
    let pid = server.postmaster_pid().expect("a local server");
    println!("{MARKER} {pid} {}", folder.display());
    match mode.as_str() {
        "panic" => panic!("a deliberate panic, to check that the server still goes"),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

struct Child {
    process: std::process::Child,
    postmaster: u32,
    folder: PathBuf,
}

/// Starts this test binary again to run `child_process_with_a_server` only.
fn spawn_child(mode: &str) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut process = Command::new(exe)
        .args(["pgharness::child_process_with_a_server", "--exact", "--ignored", "--nocapture"])
        .env("FEEDSIEVE_PGHARNESS_CHILD", mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the test binary again");
    let mut stderr = process.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(process.stdout.take().expect("piped")).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next() {
        let line = line.expect("reading the child's output");
        if let Some(rest) = line.strip_prefix(MARKER) {
            let (pid, folder) = rest.trim().split_once(' ').expect("pid and folder");
            // Keep reading, so that the child's writes neither block nor fail.
            std::thread::spawn(move || lines.for_each(drop));
            return Child {
                process,
                postmaster: pid.parse().expect("a process id"),
                folder: PathBuf::from(folder),
            };
        }
        seen.push(line);
    }
    let _ = process.wait();
    panic!(
        "the child never reported its server; its output:\n{}\n{}",
        seen.join("\n"),
        stderr.join().unwrap_or_default()
    );
}

/// Whether a process is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Processes whose command line mentions `folder`.
fn processes_mentioning(folder: &Path) -> Vec<String> {
    let needle = folder.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline.windows(needle.len()).any(|w| w == needle)
        {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline)
            ));
        }
    }
    found
}

/// Waits (60 s at most, a bound for a loaded machine) until the server and its folder
/// are gone, and says what is left otherwise.
fn wait_until_gone(child: &Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = processes_mentioning(&child.folder);
        let gone = !alive(child.postmaster) && !child.folder.exists() && left.is_empty();
        if gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "postmaster {} alive: {}; folder {} exists: {}; processes naming it: {left:?}",
                child.postmaster,
                alive(child.postmaster),
                child.folder.display(),
                child.folder.exists()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn local_server_or_say_why_not() -> bool {
    if pg::server().data_folder().is_none() {
        eprintln!("not checked: FEEDSIEVE_TEST_PG points the tests at a server they did not start");
        return false;
    }
    true
}

#[test]
fn the_server_goes_when_a_test_panics() {
    if !local_server_or_say_why_not() {
        return;
    }
    let mut child = spawn_child("panic");
    let status = child.process.wait().expect("waiting for the child");
    assert!(!status.success(), "the child's test was to fail");
    // The atexit handler waits for the watchdog: all is gone before the child exits.
    assert!(!alive(child.postmaster), "the postmaster outlived its test process");
    assert!(!child.folder.exists(), "{} outlived its test process", child.folder.display());
    wait_until_gone(&child).unwrap_or_else(|e| panic!("after the child panicked: {e}"));
}

#[test]
fn the_server_goes_when_the_test_process_is_killed() {
    if !local_server_or_say_why_not() {
        return;
    }
    let mut child = spawn_child("wait");
    assert!(alive(child.postmaster), "the postmaster should run while its test process does");
    assert!(child.folder.join("data").is_dir());
    child.process.kill().expect("SIGKILL to the child");
    child.process.wait().expect("waiting for the child");
    // No atexit after SIGKILL: the watchdog's pipe reads end-of-file, and it stops the server.
    wait_until_gone(&child).unwrap_or_else(|e| panic!("after the child was killed: {e}"));
}
