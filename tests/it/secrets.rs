//! Credentials, from secret files or written in a feed URL, reach the feed's own
//! server and nothing else: not another origin a redirect leads to, the published
//! feeds, the pages, `status`, `feed list`, OPML export, metrics, logs or errors; and a
//! feed read from a local file is never named by its path in a published feed.

use std::path::Path;

use feedsieve::publish::Format;

use crate::util::{Env, FeedServer, served, served_pages};

const SECRET: &str = "s3cretPassw0rd";

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_a_feed_url_and_local_paths_are_never_shown() {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    let with_secret = server.url("/feed").replacen("http://", &format!("http://reader:{SECRET}@"), 1);
    let dead = format!("http://reader:{SECRET}@127.0.0.1:9/feed");
    let sample = format!("{}/tests/fixtures/formats/atom.xml", env!("CARGO_MANIFEST_DIR"));
    let env = Env::new(&format!(
        "[[feed]]\nid = \"private\"\nurl = \"{with_secret}\"\n\n\
         [[feed]]\nid = \"dead\"\nurl = \"{dead}\"\n\n\
         [[feed]]\nid = \"local\"\nurl = \"file://{sample}\"\n\n\
         [[topic]]\nid = \"all\"\nfeeds = [\"private\", \"dead\", \"local\"]\n"
    ));
    let summary = env.poll().await;
    assert_eq!((summary.fetched, summary.failed), (2, 1), "{summary:?}");
    // The server got the credentials, as Basic authentication.
    let auth = server.requests("/feed")[0].get("authorization").cloned().expect("credentials sent");
    assert!(auth.to_str().unwrap().starts_with("Basic "));

    let mut shown: Vec<(String, String)> = Vec::new();
    for format in Format::ALL {
        let body = String::from_utf8(env.export("all", format)).unwrap();
        assert!(body.contains("127.0.0.1"), "the private feed is still named, without credentials");
        assert!(
            !body.contains(&sample) && !body.contains("file://"),
            "{format:?} names a local path:\n{body}"
        );
        shown.push((format!("{format:?} export"), body));
    }
    let atom = &shown[0].1;
    assert!(atom.contains("urn:feedsieve:feed:local"), "a local feed's source id is a URN:\n{atom}");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["feed", "list"],
        &["feed", "list", "--json"],
        &["opml", "export"],
        &["export", "all", "--format", "atom"],
    ] {
        let out = env.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        shown.push((format!("{args:?}"), String::from_utf8_lossy(&out.stdout).into_owned()));
        shown.push((format!("{args:?} stderr"), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let (index, opml) = served_pages(&env).await;
    assert!(index.contains("title=\"http://127.0.0.1:") && index.contains("a local file"), "{index}");
    shown.push(("/".into(), index));
    shown.push(("/topics.opml".into(), opml));
    let status = &shown.iter().find(|(what, _)| what == "[\"status\", \"--json\"]").unwrap().1;
    assert!(
        status.contains("\"url\":\"http://127.0.0.1:"),
        "the URL is shown without its credentials: {status}"
    );
    let rows = env.rows("SELECT error FROM feeds WHERE id = 'dead'");
    assert_ne!(rows[0][0], "NULL", "the dead feed's error is recorded");
    shown.push(("the dead feed's stored error".into(), rows[0][0].clone()));
    for (what, text) in &shown {
        assert!(!text.contains(SECRET), "{what} shows the password:\n{text}");
        assert!(!text.contains("reader:"), "{what} shows the user name:\n{text}");
    }
}

const TOKEN: &str = "tok-9f8e7d6c5b4a";
/// `reader:s3cretPassw0rd` in Base64, worked out independently of feedsieve.
const BASIC: &str = "Basic cmVhZGVyOnMzY3JldFBhc3N3MHJk";

/// Writes the secret files of the tests beside `env`'s config (mode 600).
fn write_secrets(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for (name, text) in [("partner.pass", format!("{SECRET}\n")), ("partner.token", format!("{TOKEN}\n"))] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn folder(env: &Env) -> &Path {
    env.config_path.parent().unwrap()
}

const BASIC_OPTIONS: &str = "username = \"reader\"\npassword_file = \"partner.pass\"\n";
const TOKEN_OPTIONS: &str = "token_file = \"partner.token\"\n";

/// Basic and bearer authentication from secret files: 401 without them, 200 with.
#[tokio::test(flavor = "multi_thread")]
async fn basic_and_bearer_credentials_from_files_open_protected_feeds() {
    let server = FeedServer::start().await;
    server.put_fixture("/basic", "formats/rss20.xml");
    server.put_fixture("/bearer", "formats/atom.xml");
    server.require_authorization("/basic", BASIC);
    server.require_authorization("/bearer", &format!("Bearer {TOKEN}"));
    let feeds = |basic: &str, bearer: &str| {
        format!(
            "[[feed]]\nid = \"basic\"\nurl = \"{}\"\n{basic}\n[[feed]]\nid = \"bearer\"\nurl = \"{}\"\n{bearer}",
            server.url("/basic"),
            server.url("/bearer")
        )
    };
    let without = Env::new(&feeds("", ""));
    let summary = without.poll().await;
    assert_eq!((summary.fetched, summary.failed), (0, 2), "{summary:?}");
    let errors = without.rows("SELECT error FROM feeds ORDER BY id");
    assert!(errors.iter().all(|r| r[0].contains("HTTP 401")), "{errors:?}");

    let with = Env::new(&feeds(BASIC_OPTIONS, TOKEN_OPTIONS));
    write_secrets(folder(&with));
    let summary = with.poll().await;
    assert_eq!((summary.fetched, summary.failed), (2, 0), "{summary:?}");
    let auth = |path: &str| {
        server
            .requests(path)
            .last()
            .and_then(|h| h.get("authorization"))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(auth("/basic").as_deref(), Some(BASIC));
    assert_eq!(auth("/bearer"), Some(format!("Bearer {TOKEN}")));
    let items: u32 = with.rows("SELECT count(*) FROM items")[0][0].parse().unwrap();
    assert!(items > 0, "the protected feeds' items were stored");
}

/// Secret files are found in `$CREDENTIALS_DIRECTORY` when it is set (systemd's
/// `LoadCredential=`), else beside the config; a missing one is a `check` error that
/// names the feed.
#[test]
fn secret_files_come_from_the_credentials_directory_and_a_missing_one_is_named() {
    let env = Env::new(&format!(
        "[[feed]]\nid = \"partner\"\nurl = \"https://partner.example.org/feed\"\n{BASIC_OPTIONS}\n\
         [[feed]]\nid = \"wire\"\nurl = \"https://wire.example.org/feed\"\n{TOKEN_OPTIONS}"
    ));
    let out = env.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in
        ["feed 'partner': password_file: cannot read", "partner.pass", "feed 'wire': token_file: cannot read"]
    {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let creds = tempfile::tempdir().unwrap();
    write_secrets(creds.path());
    let check_with = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
            .arg("--config")
            .arg(&env.config_path)
            .arg("check")
            .env("CREDENTIALS_DIRECTORY", dir)
            .output()
            .unwrap()
    };
    let out = check_with(creds.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    // Readable by everyone: a warning; empty: an error.
    use std::os::unix::fs::PermissionsExt as _;
    let token = creds.path().join("partner.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check_with(creds.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by every user"), "{out:?}");
    std::fs::write(&token, "\n").unwrap();
    let out = check_with(creds.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("feed 'wire': token_file:"), "{out:?}");
    // Both kinds at once, or half of Basic: errors naming the feed.
    let env = Env::new(
        "[[feed]]\nid = \"both\"\nurl = \"https://a.example.org/\"\nusername = \"u\"\npassword_file = \"p\"\ntoken_file = \"t\"\n\
         [[feed]]\nid = \"half\"\nurl = \"https://b.example.org/\"\nusername = \"u\"\n\
         [[feed]]\nid = \"twice\"\nurl = \"https://u:p@c.example.org/\"\ntoken_file = \"partner.token\"\n",
    );
    write_secrets(folder(&env));
    let err = String::from_utf8_lossy(&env.cli(&["check"]).stderr).into_owned();
    for want in [
        "feed 'both': give either 'token_file' or 'username' with 'password_file', not both",
        "feed 'half': 'username' needs a 'password_file'",
        "feed 'twice': credentials are both in its url and in username/token_file",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

/// A redirect to another origin gets no credentials, whether they come from files or
/// from the URL; a redirect within the origin keeps them.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    let server = FeedServer::start().await;
    let other = FeedServer::start().await;
    server.put_fixture("/basic", "formats/rss20.xml");
    server.require_authorization("/basic", BASIC);
    server.put_raw("/here", 302, &[("location", "/basic")], vec![]);
    for (from, to) in [("/away-basic", "/a"), ("/away-token", "/b"), ("/away-url", "/c")] {
        server.put_raw(from, 302, &[("location", &other.url(to))], vec![]);
        other.put_fixture(to, "formats/atom.xml");
    }
    // A protected feed on the other origin: without the credentials, refused.
    server.put_raw("/to-protected", 301, &[("location", &other.url("/protected"))], vec![]);
    other.put_fixture("/protected", "formats/rss20.xml");
    other.require_authorization("/protected", BASIC);
    let with_url = server.url("/away-url").replacen("http://", &format!("http://reader:{SECRET}@"), 1);
    let env = Env::new(&format!(
        "[[feed]]\nid = \"here\"\nurl = \"{}\"\n{BASIC_OPTIONS}\n\
         [[feed]]\nid = \"away-basic\"\nurl = \"{}\"\n{BASIC_OPTIONS}\n\
         [[feed]]\nid = \"away-token\"\nurl = \"{}\"\n{TOKEN_OPTIONS}\n\
         [[feed]]\nid = \"away-url\"\nurl = \"{with_url}\"\n\n\
         [[feed]]\nid = \"to-protected\"\nurl = \"{}\"\n{BASIC_OPTIONS}",
        server.url("/here"),
        server.url("/away-basic"),
        server.url("/away-token"),
        server.url("/to-protected"),
    ));
    write_secrets(folder(&env));
    let summary = env.poll().await;
    assert_eq!((summary.fetched, summary.failed), (4, 1), "{summary:?}");
    let auth = |s: &FeedServer, path: &str| -> Vec<Option<String>> {
        s.requests(path)
            .iter()
            .map(|h| h.get("authorization").map(|v| v.to_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(auth(&server, "/here"), vec![Some(BASIC.to_owned())]);
    assert_eq!(auth(&server, "/basic"), vec![Some(BASIC.to_owned())], "same origin: kept");
    assert_eq!(auth(&server, "/away-basic"), vec![Some(BASIC.to_owned())]);
    assert_eq!(auth(&server, "/away-token"), vec![Some(format!("Bearer {TOKEN}"))]);
    assert_eq!(auth(&server, "/away-url"), vec![Some(BASIC.to_owned())], "the URL's own, as Basic");
    for path in ["/a", "/b", "/c", "/protected"] {
        assert_eq!(auth(&other, path), vec![None], "{path}: nothing for another origin");
    }
    let error = &env.rows("SELECT error FROM feeds WHERE id = 'to-protected'")[0][0];
    assert!(error.contains("HTTP 401"), "{error}");
    // The feed moved for good (301) to the other origin: polled there from now on, and
    // still without the credentials.
    let summary = env.poll().await;
    assert_eq!(summary.failed, 1, "{summary:?}");
    assert_eq!(auth(&other, "/protected"), vec![None, None]);
}

/// Secrets from files appear nowhere a user or reader can see: not in the logs of a
/// poll at debug level, not in any command's output, page, metric, published feed or
/// stored error, not even in the database file.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_from_a_file_is_shown_anywhere() {
    let server = FeedServer::start().await;
    let other = FeedServer::start().await;
    server.put_fixture("/ok", "formats/rss20.xml");
    server.require_authorization("/ok", &format!("Bearer {TOKEN}"));
    server.put_fixture("/denied", "formats/atom.xml");
    server.require_authorization("/denied", "Basic bm90OnRoaXM=");
    server.put_raw("/away", 302, &[("location", &other.url("/gone"))], vec![]);
    other.put_raw("/gone", 500, &[], b"broken".to_vec());
    let env = Env::new(&format!(
        "[[feed]]\nid = \"ok\"\nurl = \"{}\"\n{TOKEN_OPTIONS}\n\
         [[feed]]\nid = \"denied\"\nurl = \"{}\"\n{BASIC_OPTIONS}\n\
         [[feed]]\nid = \"away\"\nurl = \"{}\"\n{TOKEN_OPTIONS}\n\
         [[topic]]\nid = \"all\"\nfeeds = [\"ok\", \"denied\", \"away\"]\n",
        server.url("/ok"),
        server.url("/denied"),
        server.url("/away"),
    ));
    write_secrets(folder(&env));
    let mut shown: Vec<(String, String)> = Vec::new();
    let poll = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
        .arg("--config")
        .arg(&env.config_path)
        .args(["poll", "--json"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&poll.stdout).into_owned();
    assert!(stdout.contains("\"fetched\":1") && stdout.contains("\"failed\":2"), "{stdout}");
    let log = String::from_utf8_lossy(&poll.stderr).into_owned();
    assert!(log.contains("DEBUG"), "the poll logged at debug level:\n{log}");
    shown.push(("poll --json".into(), stdout));
    shown.push(("the poll's log at debug level".into(), log));
    for args in [
        &["check"][..],
        &["status"],
        &["status", "--json"],
        &["feed", "list"],
        &["feed", "list", "--json"],
        &["opml", "export"],
    ] {
        let out = env.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        shown.push((format!("{args:?}"), String::from_utf8_lossy(&out.stdout).into_owned()));
        shown.push((format!("{args:?} stderr"), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    for format in Format::ALL {
        shown.push((format!("{format:?}"), String::from_utf8_lossy(&env.export("all", format)).into_owned()));
    }
    for (path, page) in ["/", "/topics.opml", "/metrics", "/healthz"]
        .iter()
        .zip(served(&env, &["/", "/topics.opml", "/metrics", "/healthz"]).await)
    {
        shown.push(((*path).to_owned(), page));
    }
    let errors = env.rows("SELECT id, error FROM feeds ORDER BY id");
    assert!(errors.iter().any(|r| r[0] == "denied" && r[1].contains("HTTP 401")), "{errors:?}");
    shown.push(("stored errors".into(), format!("{errors:?}")));
    let db = env.sqlite_path();
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    shown.push(("the database file".into(), String::from_utf8_lossy(&bytes).into_owned()));
    for (what, text) in &shown {
        for secret in [SECRET, TOKEN, "cmVhZGVyOnMzY3JldFBhc3N3MHJk"] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }
}

/// An item's relative link resolves against the feed's address without the
/// credentials written in it: they would be published with every such link.
#[tokio::test(flavor = "multi_thread")]
async fn relative_item_links_do_not_inherit_a_url_s_credentials() {
    let server = FeedServer::start().await;
    server.put(
        "/feed",
        b"<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>T</title><link>/</link><description>d</description>\
          <item><guid>r-1</guid><title>Relative</title><link>/story/1</link><description>A story.</description></item>\
          </channel></rss>"
            .to_vec(),
        "application/rss+xml",
    );
    let url = server.url("/feed").replacen("http://", &format!("http://reader:{SECRET}@"), 1);
    let env = Env::new(&format!(
        "[[feed]]\nid = \"f\"\nurl = \"{url}\"\n\n[[topic]]\nid = \"all\"\nfeeds = [\"f\"]\n"
    ));
    assert_eq!(env.poll().await.new_items, 1);
    let link = &env.rows("SELECT link FROM items")[0][0];
    assert_eq!(*link, server.url("/story/1"));
    for format in Format::ALL {
        let body = String::from_utf8(env.export("all", format)).unwrap();
        assert!(!body.contains(SECRET) && !body.contains("reader:"), "{format:?}:\n{body}");
    }
}
