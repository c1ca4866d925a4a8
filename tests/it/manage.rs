//! Issue 5: managing feeds from the command line without mangling the config file.

use crate::util::{Env, FeedServer};

/// A config as an operator writes it: comments everywhere, its own order and spacing.
const WRITTEN: &str = r#"# Border news, curated
[daemon]
timeout = "5s"          # our feeds are fast

# ---- Police --------------------------------------------------------------
[[feed]]
id   = "police"         # aligned by hand
url  = "URL/police.xml"
tags = ["official"]

# ---- Topics --------------------------------------------------------------
[[topic]]
id = "border"
query = '"border security"'   # keep it narrow
"#;

fn env(server: &FeedServer) -> Env {
    let env = Env::with_daemon("", "");
    std::fs::write(&env.config_path, WRITTEN.replace("URL", &server.url(""))).unwrap();
    env
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_add_finds_the_advertised_feed_and_keeps_the_file_as_written() {
    let server = FeedServer::start().await;
    server.put_fixture("/police.xml", "formats/rss20.xml");
    server.put_fixture("/news/", "html_page.html");
    server.put_fixture("/feed.xml", "poll/v1.xml");
    let env = env(&server);
    let before = std::fs::read_to_string(&env.config_path).unwrap();
    let e = env.clone_path();
    let out = tokio::task::spawn_blocking(move || {
        e.cli(&["feed", "add", &format!("{}/news/", e.base), "--tag", "news"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("advertises"), "{}", stdout(&out));
    let after = std::fs::read_to_string(&env.config_path).unwrap();
    let added = format!(
        "\n[[feed]]\nid = \"corrections-gazette\"\nurl = \"{}\"\ntags = [\"news\"]\n",
        server.url("/feed.xml")
    );
    assert_eq!(
        after,
        before.replace("\n# ---- Topics", &format!("{added}\n# ---- Topics")),
        "only the new table was added"
    );
    assert!(env.cli(&["check"]).status.success());

    // The same feed again, even spelt with tracking parameters: refused, file untouched.
    let e = env.clone_path();
    let dup = tokio::task::spawn_blocking(move || {
        e.cli(&["feed", "add", &format!("{}/feed.xml?utm_source=x", e.base)])
    })
    .await
    .unwrap();
    assert_eq!(dup.status.code(), Some(2));
    assert!(stderr(&dup).contains("already configured as feed 'corrections-gazette'"), "{}", stderr(&dup));
    assert_eq!(std::fs::read_to_string(&env.config_path).unwrap(), after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_with_several_feeds_asks_which_one() {
    let server = FeedServer::start().await;
    server.put_fixture("/police.xml", "formats/rss20.xml");
    server.put(
        "/page",
        br#"<html><head>
        <link rel="alternate" type="application/rss+xml" title="News" href="/a.xml">
        <link rel="alternate" type="application/atom+xml" title="Sport" href="/b.atom">
        </head><body></body></html>"#
            .to_vec(),
        "text/html",
    );
    server.put_fixture("/b.atom", "formats/atom.xml");
    let env = env(&server);
    let e = env.clone_path();
    let (ask, pick) = tokio::task::spawn_blocking(move || {
        let page = format!("{}/page", e.base);
        (e.cli(&["feed", "add", &page]), e.cli(&["feed", "add", &page, "--pick", "2"]))
    })
    .await
    .unwrap();
    assert_eq!(ask.status.code(), Some(2));
    assert!(stderr(&ask).contains("advertises 2 feeds; choose one with --pick N"), "{}", stderr(&ask));
    assert!(stderr(&ask).contains("2. http://"), "{}", stderr(&ask));
    assert!(pick.status.success(), "{}", stderr(&pick));
    let config = env.config();
    assert_eq!(config.feeds[1].id, "greenhouse-diaries");
    assert!(config.feeds[1].url.as_str().ends_with("/b.atom"));
}

#[test]
fn feed_add_offline_and_remove_round_trip_to_the_same_text() {
    let env = Env::with_daemon("", "");
    std::fs::write(&env.config_path, WRITTEN.replace("URL", "https://police.example")).unwrap();
    let original = std::fs::read_to_string(&env.config_path).unwrap();
    let out = env.cli(&[
        "feed",
        "add",
        "https://wire.example/rss",
        "--no-fetch",
        "--id",
        "wire",
        "--schedule",
        "every 20m",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("reload"), "says how to apply the change");
    let bad = env.cli(&["feed", "add", "https://x.example/rss", "--no-fetch", "--schedule", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(env.config().feeds.len(), 2);
    let out = env.cli(&["feed", "remove", "wire"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&env.config_path).unwrap(),
        original,
        "add then remove restores the file"
    );
    let out = env.cli(&["feed", "remove", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_feed_a_topic_names_is_not_removed() {
    let env = Env::with_daemon("", "");
    let text = WRITTEN
        .replace("URL", "https://police.example")
        .replace("query = '\"border security\"'", "feeds = [\"police\"]");
    std::fs::write(&env.config_path, &text).unwrap();
    let out = env.cli(&["feed", "remove", "police"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("topic 'border' names feed 'police'"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&env.config_path).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_list_json_shows_health() {
    let server = FeedServer::start().await;
    server.put_fixture("/police.xml", "formats/rss20.xml");
    let env = env(&server);
    env.poll().await;
    let out = env.cli(&["feed", "list", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["feeds"][0];
    for key in ["id", "url", "tags", "schedule", "next_due", "last_fetch", "last_status", "error", "items"] {
        assert!(f.get(key).is_some(), "{key} missing in {f}");
    }
    assert_eq!(f["id"], "police");
    assert_eq!(f["items"], 5);
    assert_eq!(f["last_status"], 200);
    assert_eq!(f["schedule"], "*/30 * * * *");
    assert!(f["next_due"].as_str().is_some());
    let table = stdout(&env.cli(&["feed", "list"]));
    assert!(table.lines().nth(1).unwrap().starts_with("police"), "{table}");

    // Removing with --purge forgets what was stored from the feed.
    let out = env.cli(&["feed", "remove", "police", "--purge"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted 5 stored items"), "{}", stdout(&out));
    let store = env.store();
    assert_eq!((store.item_count().unwrap(), store.story_count().unwrap()), (0, 0));
    assert_eq!(store.feed("police").unwrap(), None);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

const READER_EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<opml>
  <head><title>Exported from SomeReader</title></head>
  <body>
    <outline text="Police" title="Police">
      <outline text="Europe">
        <outline type="rss" text="Europol News" xmlUrl="https://europol.example/rss" htmlUrl="https://europol.example/"/>
        <outline type="rss" text="Europol again" XMLURL="https://EUROPOL.example/rss?utm_source=reader"/>
      </outline>
      <outline type="rss" text="Interpol" xmlurl="https://interpol.example/news.rss"/>
    </outline>
    <outline text="Wires">
      <outline type="rss" text="Harbour Wire" xmlUrl="https://harbourwire.example/feed"/>
      <outline type="rss" text="Broken" xmlUrl=""/>
      <outline type="rss" text="Not http" xmlUrl="ftp://old.example/feed"/>
    </outline>
    <outline type="rss" text="Police (already here)" xmlUrl="https://police.example/police.xml"/>
  </body>
</opml>
"#;

#[test]
fn opml_import_of_a_real_export_and_export_imports_back_unchanged() {
    let env = Env::with_daemon("", "");
    std::fs::write(&env.config_path, WRITTEN.replace("URL", "https://police.example")).unwrap();
    let opml = env.config_path.with_file_name("reader.opml");
    std::fs::write(&opml, READER_EXPORT).unwrap();
    let out = env.cli(&["opml", "import", opml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported 3 feeds")
            && stdout(&out).contains("2 already configured or repeated, 2 broken outlines skipped"),
        "{}",
        stdout(&out)
    );
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    assert!(text.contains("id   = \"police\"         # aligned by hand"), "comments survive: {text}");
    let config = env.config();
    let got: Vec<(String, String, Vec<String>)> =
        config.feeds.iter().map(|f| (f.id.clone(), f.url.to_string(), f.tags.clone())).collect();
    assert_eq!(
        got,
        [
            ("police".into(), "https://police.example/police.xml".into(), vec!["official".into()]),
            (
                "europol-news".into(),
                "https://europol.example/rss".into(),
                vec!["Police".into(), "Europe".into()]
            ),
            ("interpol".into(), "https://interpol.example/news.rss".into(), vec!["Police".into()]),
            ("harbour-wire".into(), "https://harbourwire.example/feed".into(), vec!["Wires".into()]),
        ]
    );

    // From the import to a topic without an editor; a bad query is refused first.
    let bad = env.cli(&["topic", "add", "smuggling", "--query", "smuggl* OR (border"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("bad query: expected ')' at the end"), "{}", stderr(&bad));
    let out =
        env.cli(&["topic", "add", "smuggling", "--query", "smuggl*", "--tag", "Police", "--limit", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = env.config().topics.into_iter().find(|t| t.id == "smuggling").unwrap();
    assert_eq!((t.tags, t.limit), (vec!["Police".to_owned()], 20));
    assert!(env.cli(&["topic", "remove", "smuggling"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&env.config_path).unwrap(),
        text,
        "topic add then remove restores the file"
    );

    // Export, then import into an empty config: the same feeds come back.
    let export = env.cli(&["opml", "export"]);
    assert!(export.status.success());
    let exported = env.config_path.with_file_name("export.opml");
    std::fs::write(&exported, &export.stdout).unwrap();
    let fresh = Env::with_daemon("", "");
    let out = fresh.cli(&["opml", "import", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let back: Vec<_> = fresh
        .config()
        .feeds
        .iter()
        .map(|f| (f.id.clone(), f.url.to_string(), f.tags.clone(), f.schedule.clone(), f.enabled))
        .collect();
    let orig: Vec<_> = config
        .feeds
        .iter()
        .map(|f| (f.id.clone(), f.url.to_string(), f.tags.clone(), f.schedule.clone(), f.enabled))
        .collect();
    assert_eq!(back, orig);
}

#[test]
fn completions_and_man_page() {
    let env = Env::with_daemon("", "");
    for shell in ["bash", "zsh", "fish"] {
        let out = env.cli(&["completions", shell]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("opml"), "{shell}");
    }
    let man = env.cli(&["man"]);
    assert!(man.status.success());
    assert!(
        stdout(&man).starts_with(".ie") || stdout(&man).contains(".TH feedsieve"),
        "{}",
        &stdout(&man)[..80]
    );
}

/// `feed add` reads a fetched feed as polling does: an ISO-8859-1 document that names
/// no encoding is decoded by the charset its `Content-Type` gives.
#[tokio::test(flavor = "multi_thread")]
async fn feed_add_honours_the_http_charset_as_polling_does() {
    let server = FeedServer::start().await;
    server.put(
        "/latin1.xml",
        b"<rss version=\"2.0\"><channel><title>Gr\xfcne Grenze</title><link>https://latin1.example/</link>\
          <item><guid>l1</guid><title>Caf\xe9 closed at the border</title></item></channel></rss>"
            .to_vec(),
        "application/rss+xml; charset=ISO-8859-1",
    );
    let env = env(&server);
    let e = env.clone_path();
    let out = tokio::task::spawn_blocking(move || e.cli(&["feed", "add", &format!("{}/latin1.xml", e.base)]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(&env.config_path).unwrap();
    assert!(config.contains(&server.url("/latin1.xml")), "{config}");
}

/// `feed add` takes the per-feed request options: they are checked (a missing secret
/// file names the feed and leaves the file alone), used for the fetch that finds the
/// feed, and written to the file.
#[tokio::test(flavor = "multi_thread")]
async fn feed_add_takes_the_request_options_and_fetches_with_them() {
    let server = FeedServer::start().await;
    server.put_fixture("/police.xml", "formats/rss20.xml");
    server.put_fixture("/partner.xml", "poll/v1.xml");
    server.require_authorization("/partner.xml", "Bearer partner-tok-77");
    let env = env(&server);
    let before = std::fs::read_to_string(&env.config_path).unwrap();
    let args = |e: &crate::util::CliEnv| {
        e.cli(&[
            "feed",
            "add",
            &format!("{}/partner.xml", e.base),
            "--id",
            "partner",
            "--token-file",
            "partner.token",
            "--header",
            "Accept-Language: en",
            "--user-agent",
            "partner-reader/2",
            "--proxy",
            "none",
            "--full-text",
        ])
    };
    let e = env.clone_path();
    let missing = tokio::task::spawn_blocking(move || args(&e)).await.unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("feed 'partner': token_file: cannot read"), "{}", stderr(&missing));
    assert_eq!(std::fs::read_to_string(&env.config_path).unwrap(), before, "the file is untouched");
    assert!(server.requests("/partner.xml").is_empty(), "nothing fetched with a missing secret");

    std::fs::write(env.config_path.parent().unwrap().join("partner.token"), "partner-tok-77\n").unwrap();
    let e = env.clone_path();
    let out = tokio::task::spawn_blocking(move || args(&e)).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = server.requests("/partner.xml");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["authorization"], "Bearer partner-tok-77");
    assert_eq!(sent[0]["accept-language"], "en");
    assert_eq!(sent[0]["user-agent"], "partner-reader/2");
    let after = std::fs::read_to_string(&env.config_path).unwrap();
    let added = format!(
        "\n[[feed]]\nid = \"partner\"\nurl = \"{}\"\nheaders = {{ Accept-Language = \"en\" }}\n\
         user_agent = \"partner-reader/2\"\ntoken_file = \"partner.token\"\nproxy = \"none\"\nfull_text = true\n",
        server.url("/partner.xml")
    );
    assert_eq!(after, before.replace("\n# ---- Topics", &format!("{added}\n# ---- Topics")));
    assert!(!after.contains("partner-tok-77") && !stdout(&out).contains("partner-tok-77"));
    let config = env.config();
    let feed = config.feed("partner").unwrap();
    assert_eq!(feed.headers, vec![("accept-language".to_owned(), "en".to_owned())]);
    assert_eq!(feed.proxy, Some(feedsieve::config::Proxy::Direct));
    assert!(feed.full_text);

    let e = env.clone_path();
    let bad = tokio::task::spawn_blocking(move || {
        e.cli(&["feed", "add", "https://x.example/rss", "--no-fetch", "--header", "no colon"])
    })
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--header 'no colon': write it as \"Name: value\""), "{}", stderr(&bad));
}
