//! Credentials written in a feed URL reach the feed's server and nothing else: not
//! the published feeds, the pages, `status`, `feed list`, OPML export or errors; and a
//! feed read from a local file is never named by its path in a published feed.

use feedsieve::publish::Format;

use crate::util::{Env, FeedServer, served_pages};

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
