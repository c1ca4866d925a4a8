//! `feedsieve db copy`: a store copied from one engine to the other and back serves
//! the same topic feeds, byte for byte, and polls on as if nothing had happened.

use feedsieve::publish::Format;

use crate::util::{Engine, Env, FeedServer};

const FEEDS_AND_TOPIC: &str = r#"
[[topic]]
id = "border"
title = "Border security"
query = '"border security" OR "migrant smuggling" OR NEAR(police border, 5)'
exclude = '"job vacancy"'
"#;

fn config(server: &FeedServer) -> String {
    format!(
        "[[feed]]\nid = \"relevant\"\nurl = \"{}\"\n\n[[feed]]\nid = \"near\"\nurl = \"{}\"\n\n{FEEDS_AND_TOPIC}",
        server.url("/relevant"),
        server.url("/near")
    )
}

fn exports(env: &Env) -> Vec<Vec<u8>> {
    Format::ALL.iter().map(|f| env.export("border", *f)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_copied_to_the_other_engine_and_back_serves_the_same_bytes_and_polls_on() {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.put_fixture("/near", "topic/near_miss.xml");
    let sqlite = Env::on(Engine::Sqlite, &config(&server));
    let first = sqlite.poll().await;
    assert!(first.new_items > 0, "{first:?}");
    let stored = sqlite.rows("SELECT count(*) FROM items")[0][0].clone();
    let bytes = exports(&sqlite);
    assert!(String::from_utf8_lossy(&bytes[0]).contains("<entry>"), "the topic has entries");

    // SQLite to PostgreSQL.
    let url = crate::pg::server().fresh_database("copy");
    let from = sqlite.sqlite_path();
    let out = sqlite.cli(&["db", "copy", from.to_str().unwrap(), &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("items") && !said.contains(crate::pg::server().password()), "{said}");
    let pg = Env::at(&url, "timeout = \"5s\"", &config(&server));
    assert_eq!(pg.rows("SELECT count(*) FROM items")[0][0], stored);
    assert_eq!(exports(&pg), bytes, "the same topic bytes from the copy");

    // A target that is not empty is refused, and left as it was.
    let again = sqlite.cli(&["db", "copy", from.to_str().unwrap(), &url]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(pg.rows("SELECT count(*) FROM items")[0][0], stored);

    // The next poll of the copy asks conditionally and stores nothing.
    let before = server.requests("/relevant").len();
    let next = pg.poll().await;
    assert_eq!((next.not_modified, next.new_items, next.updated_items), (2, 0, 0), "{next:?}");
    let asked = server.requests("/relevant");
    assert!(asked[before..].iter().all(|h| h.contains_key("if-none-match")), "conditional requests");
    assert_eq!(exports(&pg), bytes);

    // And back, into a new SQLite file.
    let back = tempfile::tempdir().unwrap();
    let path = back.path().join("back.db");
    let out = pg.cli(&["db", "copy", &url, path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sqlite_again = Env::at(path.to_str().unwrap(), "timeout = \"5s\"", &config(&server));
    assert_eq!(exports(&sqlite_again), bytes, "the same topic bytes after the round trip");
    let next = sqlite_again.poll().await;
    assert_eq!((next.not_modified, next.new_items, next.updated_items), (2, 0, 0), "{next:?}");
    let check = feedsieve::store::Store::open_read_only(path.as_path()).unwrap().integrity_check().unwrap();
    assert_eq!(check, "ok");
}

/// The PostgreSQL password from each of its sources, and never in what the binary
/// prints: `database_password_file` (relative to `$CREDENTIALS_DIRECTORY` when set),
/// `PGPASSWORD`, `~/.pgpass`; a wrong one is an error that names the database.
#[test]
fn the_database_password_comes_from_a_file_the_environment_or_pgpass_and_is_never_shown() {
    let pg = crate::pg::server();
    let url = pg.fresh_database("password");
    let bare = pg.url_without_password(&url);
    let password = pg.password().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str, env: &[(&str, &str)]| {
        let path = dir.path().join("feedsieve.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"));
        cmd.arg("--config").arg(&path).args(["status", "--json"]);
        cmd.env_remove("PGPASSWORD").env_remove("PGPASSFILE").env_remove("CREDENTIALS_DIRECTORY");
        cmd.env("HOME", dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            !stdout.contains(&password) && !stderr.contains(&password),
            "the password shown: {stdout}{stderr}"
        );
        (out.status.code(), stderr)
    };
    let plain = format!("[daemon]\ndatabase = \"{bare}\"\n");

    // A password file beside the config, then one in $CREDENTIALS_DIRECTORY.
    std::fs::write(dir.path().join("db.pass"), format!("{password}\n")).unwrap();
    let with_file = format!("{plain}database_password_file = \"db.pass\"\n");
    assert_eq!(run(&with_file, &[]).0, Some(0));
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("db.pass"), &password).unwrap();
    std::fs::remove_file(dir.path().join("db.pass")).unwrap();
    let (code, err) = run(&with_file, &[]);
    assert_eq!(code, Some(2), "a missing password file is a config error: {err}");
    assert!(err.contains("db.pass") && err.contains("does not exist"), "{err}");
    assert_eq!(run(&with_file, &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]).0, Some(0));

    // PGPASSWORD, then ~/.pgpass.
    assert_eq!(run(&plain, &[("PGPASSWORD", &password)]).0, Some(0));
    let db = url.rsplit('/').next().unwrap();
    std::fs::write(
        dir.path().join(".pgpass"),
        format!("{}:{}:{db}:feedsieve:{password}\n", pg.host(), pg.port()),
    )
    .unwrap();
    assert_eq!(run(&plain, &[]).0, Some(0));

    // A wrong password: the database is named, the password is not.
    std::fs::remove_file(dir.path().join(".pgpass")).unwrap();
    let (code, err) = run(&plain, &[("PGPASSWORD", "not-the-password")]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&bare) && err.contains("password"), "{err}");
}
