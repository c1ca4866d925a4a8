//! `full_text = true`: each new item's page fetched once, its main text stored as the
//! item's content, indexed for topics and republished; hostile pages leave the feed's
//! own text and the rest of the poll untouched.

use feedsieve::publish::Format;

use crate::pipeline::FORBIDDEN;
use crate::util::{Env, FeedServer, served, strings};

/// A news page: navigation, the article's paragraphs, related links, a footer.
fn page(title: &str, paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>\n")).collect();
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <script>window.tracker = 'NAVTRACKER';</script></head><body>\
         <header><nav><a href=\"/\">Home</a> | <a href=\"/weather\">Weather NAVWEATHER</a></nav></header>\
         <main><article><h1>{title}</h1>\n{body}</article>\
         <aside><h3>Related</h3><ul><li><a href=\"/r/1\">Lottery results RELATEDLOTTERY</a></li></ul></aside></main>\
         <footer>Copyright 2026 Example Gazette FOOTERCOPY. All rights reserved.</footer></body></html>"
    )
    .into_bytes()
}

const LONG: [&str; 4] = [
    "Coast guard crews intercepted two inflatable boats off the eastern headland before dawn on Sunday, \
     the regional command said, and brought forty-one people ashore at the harbour.",
    "Investigators believe the crossings were organised by a migrant smuggling network that charged each \
     passenger several thousand euros, according to a statement from the prosecutor's office.",
    "Three men were arrested at a holiday let near the marina where officers found satellite phones, \
     fuel receipts and a ledger of payments, the statement added.",
    "The command said patrols along the coast would continue through the week while the weather stayed calm.",
];

const DULL: [&str; 3] = [
    "The county road safety partnership published its annual report on Monday, showing fewer collisions \
     on rural routes than in any year since records began.",
    "Officers credited new speed cameras on two notorious bends and a winter campaign about icy mornings, \
     and thanked volunteers who ran the community speed watch scheme.",
    "The partnership will hold a public meeting at the town hall next month to discuss the next plan.",
];

fn rss(server: &FeedServer, items: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut doc = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Coast Command</title>\
         <link>https://coast.example.org/</link><description>News</description>",
    );
    for (i, (guid, title, path)) in items.iter().enumerate() {
        doc.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{guid}</guid><title>{title}</title><link>{}</link>\
             <description>Read the full statement on our website.</description>\
             <pubDate>Sun, 0{} Nov 2026 06:00:00 +0000</pubDate></item>",
            if path.starts_with("http") { (*path).to_owned() } else { server.url(path) },
            i + 1
        ));
    }
    doc.push_str("</channel></rss>");
    doc.into_bytes()
}

const TOPIC: &str = "[[topic]]\nid = \"smuggling\"\nquery = '\"migrant smuggling\"'\n";

/// A summary-only feed: its topic matches only through the article page. The page is
/// fetched once per item, not again on later polls, after a restart or on a
/// correction of the item, and the summary stays the summary.
#[tokio::test(flavor = "multi_thread")]
async fn a_summary_only_feed_matches_its_topic_through_the_article() {
    let server = FeedServer::start().await;
    server.put("/a1.html", page("Boats intercepted", &LONG), "text/html; charset=utf-8");
    server.put("/a2.html", page("Road safety report", &DULL), "text/html; charset=utf-8");
    let items =
        [("c-1", "Boats intercepted off the headland", "/a1.html"), ("c-2", "Road report", "/a2.html")];
    server.put("/feed", rss(&server, &items), "application/rss+xml");
    let feed = |full: bool| {
        format!("[[feed]]\nid = \"coast\"\nurl = \"{}\"\nfull_text = {full}\n\n{TOPIC}", server.url("/feed"))
    };

    // Without full_text: the feed's one-line summaries match nothing.
    let plain = Env::new(&feed(false));
    assert_eq!(plain.poll().await.new_items, 2);
    assert!(
        strings(Format::Atom, &plain.export("smuggling", Format::Atom)).iter().all(|s| !s.contains("Boats"))
    );
    assert!(server.requests("/a1.html").is_empty(), "no page fetched without full_text");

    let env = Env::new(&feed(true));
    let summary = env.poll().await;
    assert_eq!((summary.new_items, summary.failed), (2, 0), "{summary:?}");
    let json: serde_json::Value = serde_json::from_slice(&env.export("smuggling", Format::Json)).unwrap();
    let entries = json["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the smuggling story: {json}");
    let entry = &entries[0];
    assert_eq!(entry["title"], "Boats intercepted off the headland");
    let html = entry["content_html"].as_str().unwrap();
    assert!(html.contains("migrant smuggling network") && html.contains("ledger of payments"), "{html}");
    for boilerplate in ["NAVWEATHER", "RELATEDLOTTERY", "FOOTERCOPY", "NAVTRACKER"] {
        assert!(!html.contains(boilerplate), "{boilerplate} kept in {html}");
    }
    assert_eq!(entry["summary"], "Read the full statement on our website.", "the summary stays the summary");
    for format in Format::ALL {
        let body = String::from_utf8(env.export("smuggling", format)).unwrap();
        assert!(body.contains("satellite phones"), "{format:?} carries the article");
    }
    let rows = env.rows("SELECT key, article FROM items ORDER BY key");
    assert_eq!(
        rows,
        vec![vec!["g:c-1".to_owned(), "1".to_owned()], vec!["g:c-2".to_owned(), "1".to_owned()]]
    );

    // Polled again (a new process: as after a restart), and then with the first item
    // corrected by the feed: no page is fetched again, and the article stays.
    env.poll().await;
    let corrected = [("c-1", "Boats intercepted off the headland (updated)", "/a1.html"), items[1]];
    server.put("/feed", rss(&server, &corrected), "application/rss+xml");
    let summary = env.poll().await;
    assert_eq!(summary.updated_items, 1, "{summary:?}");
    assert_eq!(server.requests("/a1.html").len(), 1, "each page fetched once");
    assert_eq!(server.requests("/a2.html").len(), 1);
    let json: serde_json::Value = serde_json::from_slice(&env.export("smuggling", Format::Json)).unwrap();
    let entry = &json["items"][0];
    assert_eq!(entry["title"], "Boats intercepted off the headland (updated)");
    assert!(entry["content_html"].as_str().unwrap().contains("migrant smuggling network"), "{entry}");
    assert_eq!(env.rows("SELECT article FROM items WHERE key = 'g:c-1'")[0][0], "1");
}

/// Article pages that are huge, slow, redirect to a forbidden address, link there
/// directly, are not HTML, have no text, or carry the XSS corpus: each item keeps the
/// feed's text, the failures are counted, shown and logged with their reasons,
/// nothing hostile is published, and the poll's other feed is unaffected.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_article_pages_leave_the_feed_s_text_and_the_poll_unharmed() {
    let server = FeedServer::start().await;
    let huge = page("Huge", &[&"migrant smuggling ".repeat(40_000)]);
    assert!(huge.len() > 512 * 1024);
    server.put("/huge.html", huge, "text/html");
    server.put("/slow.html", page("Slow", &LONG), "text/html");
    server.delay("/slow.html", std::time::Duration::from_secs(4));
    server.put_raw("/to-metadata", 302, &[("location", "http://169.254.169.254/latest/meta-data/")], vec![]);
    server.put("/report.pdf", b"%PDF-1.7 migrant smuggling".to_vec(), "application/pdf");
    server.put("/empty.html", page("Empty", &["Subscribe to read this story."]), "text/html");
    // The XSS corpus's payloads inside a real article's paragraphs.
    let corpus = String::from_utf8(crate::util::fixture("xss.xml")).unwrap();
    let payloads: Vec<&str> =
        corpus.split("<![CDATA[").skip(1).filter_map(|s| s.split("]]>").next()).collect();
    assert!(payloads.len() >= 5, "the corpus has its payloads");
    let mut xss = format!("<p>{}</p><p>{}</p>", LONG[0], LONG[1]);
    for p in &payloads {
        xss.push_str(&format!("<div>{p}</div><p>{}</p>", LONG[2]));
    }
    server.put("/xss.html", page("XSS", &[&xss]), "text/html; charset=utf-8");
    let items = [
        ("h-huge", "Huge page", "/huge.html"),
        ("h-slow", "Slow page", "/slow.html"),
        ("h-redirect", "Redirect to metadata", "/to-metadata"),
        ("h-direct", "Metadata link", "http://169.254.169.254/latest/meta-data/"),
        ("h-pdf", "A PDF", "/report.pdf"),
        ("h-empty", "Paywall", "/empty.html"),
        ("h-xss", "Hostile markup", "/xss.html"),
    ];
    server.put("/hostile", rss(&server, &items), "application/rss+xml");
    server.put_fixture("/plain", "formats/rss20.xml");
    let env = Env::with_daemon(
        "timeout = \"2s\"\nmax_feed_bytes = \"512KiB\"",
        &format!(
            "[[feed]]\nid = \"hostile\"\nurl = \"{}\"\nfull_text = true\n\n\
             [[feed]]\nid = \"plain\"\nurl = \"{}\"\n\n\
             [[topic]]\nid = \"all\"\nfeeds = [\"hostile\", \"plain\"]\nlimit = 100\n",
            server.url("/hostile"),
            server.url("/plain")
        ),
    );
    // The poll as a process, logging why each page failed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
        .arg("--config")
        .arg(&env.config_path)
        .args(["poll", "--json"])
        .env("RUST_LOG", "feedsieve=debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["fetched"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(0)), "{summary}");
    let plain: u64 = env.rows("SELECT count(*) FROM items WHERE feed_id = 'plain'")[0][0].parse().unwrap();
    assert!(plain > 0, "the other feed's items are stored");
    assert_eq!(summary["new"].as_u64(), Some(7 + plain), "{summary}");
    let log = String::from_utf8_lossy(&out.stderr);
    for why in [
        "huge.html: the body is larger than the limit of 524288 bytes",
        "slow.html: no complete answer within 2s",
        "to-metadata: redirect to http://169.254.169.254/latest/meta-data/ refused: link-local or metadata address",
        "article page http://169.254.169.254/latest/meta-data/: redirect to http://169.254.169.254/latest/meta-data/ refused",
        "report.pdf: not an HTML page (Content-Type: application/pdf)",
        "empty.html: no main text found",
    ] {
        assert!(log.contains(why), "missing {why:?} in\n{log}");
    }
    assert!(log.contains("6 of 7 article pages failed"), "{log}");
    let rows =
        env.rows("SELECT key, article, content IS NULL FROM items WHERE feed_id = 'hostile' ORDER BY key");
    for r in &rows {
        let from_page = r[0] == "g:h-xss";
        assert_eq!(r[1], if from_page { "1" } else { "0" }, "{r:?}");
        assert_eq!(r[2], if from_page { "0" } else { "1" }, "the feed gave no content: {r:?}");
    }
    let feed = env.rows("SELECT article_failures, article_error, error FROM feeds WHERE id = 'hostile'");
    assert_eq!(feed[0][0], "6", "{feed:?}");
    assert_eq!(feed[0][2], "NULL", "the feed itself polled fine");

    let status = String::from_utf8(env.cli(&["status"]).stdout).unwrap();
    assert!(status.contains("6 article pages failed"), "{status}");
    let list: serde_json::Value =
        serde_json::from_slice(&env.cli(&["feed", "list", "--json"]).stdout).unwrap();
    let hostile = list["feeds"].as_array().unwrap().iter().find(|f| f["id"] == "hostile").unwrap().clone();
    assert_eq!(hostile["article_failures"], 6);
    assert_eq!(hostile["full_text"], true);
    let page = &served(&env, &["/"]).await[0];
    assert!(page.contains("6 article pages failed"), "the / page shows it");

    // Polled again (a new pipeline, as after a restart): no page fetched again.
    env.poll().await;
    assert_eq!(server.requests("/huge.html").len(), 1, "not fetched again by the next poll");

    for format in Format::ALL {
        let body = env.export("all", format);
        let raw = String::from_utf8_lossy(&body).to_lowercase();
        let decoded = strings(format, &body).join("\n").to_lowercase();
        for bad in FORBIDDEN {
            assert!(!raw.contains(bad) && !decoded.contains(bad), "{format:?} publishes {bad}");
        }
        assert!(decoded.contains("ledger of payments"), "{format:?}: the XSS page's text is published");
    }
}

/// A summary-only item and another outlet's copy of the whole story are one story
/// once the article's text is fetched, and two without it.
#[tokio::test(flavor = "multi_thread")]
async fn the_full_article_joins_another_outlet_s_copy() {
    let server = FeedServer::start().await;
    server.put("/a1.html", page("Boats intercepted", &LONG), "text/html; charset=utf-8");
    server.put(
        "/coast",
        rss(&server, &[("c-1", "Boats intercepted off the headland", "/a1.html")]),
        "application/rss+xml",
    );
    // The wire's copy: its own headline, link, lead-in and footer around the story.
    let copy: String = LONG.iter().map(|p| format!("<p>{p}</p>")).collect();
    let wire = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Wire</title><link>https://wire.example.net/</link>\
         <description>Wire</description><item><guid>w-1</guid><title>Dozens brought ashore after boats stopped</title>\
         <link>https://wire.example.net/story/991</link><description><![CDATA[<p>HARBOURTOWN (Example Wire)</p>{copy}\
         <p>Reporting by the Example Wire coastal desk; editing by the night team.</p>]]></description></item></channel></rss>"
    );
    server.put("/wire", wire.into_bytes(), "application/rss+xml");
    let stories = |full: bool| {
        let env = Env::new(&format!(
            "[[feed]]\nid = \"coast\"\nurl = \"{}\"\nfull_text = {full}\n\n[[feed]]\nid = \"wire\"\nurl = \"{}\"\n",
            server.url("/coast"),
            server.url("/wire")
        ));
        async move {
            let summary = env.poll().await;
            assert_eq!(summary.new_items, 2, "{summary:?}");
            env.rows("SELECT count(DISTINCT story_id) FROM items")[0][0].clone()
        }
    };
    assert_eq!(stories(false).await, "2", "the one-line summary resembles nothing");
    assert_eq!(stories(true).await, "1", "the article and the wire's copy are one story");
}

/// The extractor as feedsieve runs it (decoding, dom_smoothie, sanitising) keeps
/// every story phrase of the article corpus and leaks little of the pages' furniture
/// (tests/fixtures/articles: 29 pages of different shapes; bench/EXTRACT.md compares
/// the crates on it).
#[test]
fn the_article_corpus_keeps_every_story() {
    #[derive(serde::Deserialize)]
    struct Manifest {
        page: Vec<Page>,
    }
    #[derive(serde::Deserialize)]
    struct Page {
        file: String,
        must: Vec<String>,
        must_not: Vec<String>,
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/articles");
    let manifest: Manifest =
        toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    assert!(manifest.page.len() >= 20, "{} pages", manifest.page.len());
    let (mut lost, mut leaked, mut furniture) = (Vec::new(), Vec::new(), 0);
    for p in &manifest.page {
        let page = feedsieve::article::Page {
            bytes: std::fs::read(dir.join(&p.file)).unwrap(),
            url: url::Url::parse(&format!("https://news.example.org/{}", p.file)).unwrap(),
            content_type: Some("text/html".into()),
        };
        let html = feedsieve::article::extract(&page).unwrap_or_else(|e| panic!("{}: {e}", p.file));
        let text = feedsieve::parse::html_to_text(&html);
        for bad in FORBIDDEN {
            assert!(!html.to_lowercase().contains(bad), "{}: {bad} kept", p.file);
        }
        lost.extend(p.must.iter().filter(|m| !text.contains(m.as_str())).map(|m| format!("{}: {m}", p.file)));
        furniture += p.must_not.len();
        leaked.extend(
            p.must_not.iter().filter(|m| text.contains(m.as_str())).map(|m| format!("{}: {m}", p.file)),
        );
    }
    assert!(lost.is_empty(), "story phrases lost:\n{}", lost.join("\n"));
    // Measured: 15 of 91 (bench/EXTRACT.md); more means the extraction got worse.
    assert!(
        leaked.len() <= 15,
        "{} of {furniture} furniture phrases kept:\n{}",
        leaked.len(),
        leaked.join("\n")
    );
}

/// Measured on the article corpus: each page is one outlet's summary-only item (one
/// line and a link), and another outlet carries the same story in full (the page's
/// `<p>`s, less those holding furniture the manifest names, under a dateline and a
/// footer of its own: what furniture the manifest does not name stays in). With
/// `full_text` the two become one story for nearly every page; without it, for none.
#[tokio::test(flavor = "multi_thread")]
async fn corpus_articles_join_another_outlet_s_full_copy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/articles");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".html"))
        .collect();
    files.sort();
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    let story: std::collections::HashMap<String, Vec<String>> = manifest["page"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let phrases =
                p["must"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect();
            (p["file"].as_str().unwrap().to_owned(), phrases)
        })
        .collect();
    let mut measured = Vec::new();
    let server = FeedServer::start().await;
    // Two teaser feeds: one poll fetches at most 20 pages of a feed.
    let (mut teasers, mut copies) = ([String::new(), String::new()], String::new());
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        let html = feedsieve::article::decode(&bytes, None);
        server.put(&format!("/a/{f}"), html.clone().into_bytes(), "text/html; charset=utf-8");
        // The story's paragraphs: the `<p>`s from the first to the last that holds one
        // of the manifest's story phrases (pages without such `<p>`s are left out).
        let all: Vec<String> = html
            .split("<p")
            .skip(1)
            .filter_map(|p| p.split_once("</p>").map(|(inner, _)| format!("<p{inner}</p>")))
            .collect();
        let in_story = |p: &String| {
            let text = feedsieve::parse::html_to_text(p);
            story[f].iter().any(|m| text.contains(m.as_str()))
        };
        let (Some(first), Some(last)) = (all.iter().position(in_story), all.iter().rposition(in_story))
        else {
            continue;
        };
        measured.push(i);
        let paragraphs: String = all[first..=last].concat();
        teasers[i % 2].push_str(&format!(
            "<item><guid>t-{i}</guid><title>Teaser {i}</title><link>{}</link>\
             <description>Read the full story on our website.</description></item>",
            server.url(&format!("/a/{f}"))
        ));
        copies.push_str(&format!(
            "<item><guid>w-{i}</guid><title>Wire copy {i}</title><link>https://wire.example.net/{i}</link>\
             <description><![CDATA[<p>PORTSMOUTH (Example Wire) -</p>{}<p>Reporting by the Example Wire desk.</p>]]></description></item>",
            paragraphs.replace("]]>", "")
        ));
    }
    let rss = |title: &str, items: &str| {
        format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{title}</title><link>https://x.example.org/</link><description>d</description>{items}</channel></rss>").into_bytes()
    };
    server.put("/teasers-a", rss("Teasers A", &teasers[0]), "application/rss+xml");
    server.put("/teasers-b", rss("Teasers B", &teasers[1]), "application/rss+xml");
    server.put("/wire", rss("Wire", &copies), "application/rss+xml");
    let joined = |full: bool| {
        let env = Env::with_daemon(
            "timeout = \"5s\"",
            &format!(
                "[[feed]]\nid = \"teasers-a\"\nurl = \"{}\"\nfull_text = {full}\n\n\
                 [[feed]]\nid = \"teasers-b\"\nurl = \"{}\"\nfull_text = {full}\n\n\
                 [[feed]]\nid = \"wire\"\nurl = \"{}\"\n",
                server.url("/teasers-a"),
                server.url("/teasers-b"),
                server.url("/wire")
            ),
        );
        async move {
            env.poll().await;
            let rows = env.rows(
                "SELECT substr(t.key, 5) FROM items t JOIN items w ON w.story_id = t.story_id \
                 WHERE t.feed_id LIKE 'teasers-%' AND w.feed_id = 'wire' \
                 AND substr(t.key, 5) = substr(w.key, 5)",
            );
            rows.into_iter().map(|r| r[0].parse::<usize>().unwrap()).collect::<Vec<usize>>()
        }
    };
    let (without, with) = (joined(false).await.len(), joined(true).await);
    let apart: Vec<&str> =
        measured.iter().filter(|i| !with.contains(i)).map(|i| files[*i].as_str()).collect();
    let with = with.len();
    eprintln!(
        "pages whose teaser and full copy are one story: {with} of {} with full_text, {without} without; apart: {apart:?}",
        measured.len()
    );
    assert_eq!(without, 0, "a one-line teaser resembles no full copy");
    // Measured: 28 of 28; fewer means fingerprinting or extraction got worse.
    assert!(measured.len() >= 25, "{} pages measured", measured.len());
    assert_eq!(with, measured.len(), "joined: {with} of {}; apart: {apart:?}", measured.len());
}
