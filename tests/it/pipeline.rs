//! The poll → store → curate → publish pipeline against a fixture server, on each
//! store engine (but for the upgrade of SQLite's content hashes, SQLite's own).

use feedsieve::publish::Format;

use crate::util::{Engine, Env, FeedServer, fixture, strings, titles};

on_both_engines!(
    every_feed_format_is_stored_and_curated,
    atom_content_urls_resolve_against_xml_base,
    a_second_poll_is_conditional_and_stores_nothing,
    a_corrected_item_updates_in_place,
    a_failing_feed_is_recorded_while_the_others_succeed,
    topics_match_exactly_the_relevant_items,
    a_changed_topic_query_is_backfilled,
    xss_payloads_never_reach_any_output,
    html_is_sanitised_once_when_published_and_never_leaves_the_store_raw,
    characters_xml_forbids_never_reach_the_output,
    outputs_are_valid_feeds_with_self_links_and_sources,
    one_link_in_two_feeds_is_one_story_with_both_sources,
    a_syndicated_copy_with_another_link_joins_the_story,
    retention_prunes_unpublished_items_and_tombstones_keep_them_out,
    a_story_keeps_its_entry_when_a_later_copy_joins,
    an_rss_ttl_still_holds_after_a_304,
);

const TOPIC: &str = r#"
[[topic]]
id = "border"
title = "Border security"
query = '"border security" OR "migrant smuggling" OR "human trafficking"'
exclude = '"job vacancy"'
"#;

fn feed(id: &str, url: &str) -> String {
    format!("[[feed]]\nid = \"{id}\"\nurl = \"{url}\"\n\n")
}

async fn every_feed_format_is_stored_and_curated(engine: Engine) {
    let server = FeedServer::start().await;
    let files = [
        ("rss091", "formats/rss091.xml", 4),
        ("rss092", "formats/rss092.xml", 4),
        // feed-rs drops the RSS 1.0 item without the <link> the RSS 1.0 spec requires;
        // rdf:about is never used as a key, so there is nothing stable to store it by.
        ("rss10", "formats/rss10.xml", 3),
        ("rss20", "formats/rss20.xml", 5),
        ("atom", "formats/atom.xml", 4),
        ("json", "formats/jsonfeed.json", 4),
    ];
    let mut cfg = String::new();
    for (id, path, _) in files {
        server.put_fixture(&format!("/{id}"), path);
        cfg.push_str(&feed(id, &server.url(&format!("/{id}"))));
    }
    cfg.push_str(TOPIC);
    let env = Env::on(engine, &cfg);
    let summary = env.poll().await;
    assert_eq!((summary.fetched, summary.failed), (6, 0), "{summary:?}");
    assert_eq!(summary.new_items, 24);

    let store = env.store();
    for (id, _, n) in files {
        let row = store.feed(id).unwrap().unwrap();
        assert_eq!(row.items, n, "items of {id}");
        assert_eq!(row.last_status, Some(200));
        assert_eq!(row.error, None);
    }

    // One matching item per format file (README: rss10 item 2, atom entry 2, …).
    let atom = env.export("border", Format::Atom);
    let mut got = titles(&atom);
    got.sort();
    let mut want = vec![
        "Ferry operator reviews border security checks at the north terminal",
        "Charity opens helpline for survivors of human trafficking",
        "Riverbend court hears migrant smuggling case",
        "Coast guard publishes annual border security review",
        "Seedlings donated to the shelter garden",
        "Police seize narrowboat in migrant smuggling inquiry",
    ];
    want.sort();
    assert_eq!(got, want);
}

async fn atom_content_urls_resolve_against_xml_base(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/atom", "formats/atom.xml");
    let env = Env::on(
        engine,
        &format!("{}[[topic]]\nid = \"all\"\nfeeds = [\"atom\"]\n", feed("atom", &server.url("/atom"))),
    );
    env.poll().await;
    let json = String::from_utf8(env.export("all", Format::Json)).unwrap();
    assert!(json.contains("https://atom.example.org/blog/img/a.png"), "{json}");
    assert!(json.contains("https://atom.example.org/about.html"), "{json}");
    assert!(json.contains("https://atom.example.org/blog/posts/1.html"), "{json}");
    assert!(json.contains("\"Q&A: why the glass is whitewashed in summer\""), "no double escaping: {json}");
}

async fn a_second_poll_is_conditional_and_stores_nothing(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    let env = Env::on(engine, &format!("{}{TOPIC}", feed("f", &server.url("/feed"))));
    let first = env.poll().await;
    assert_eq!(first.new_items, 5);
    let second = env.poll().await;
    assert_eq!((second.not_modified, second.new_items, second.fetched), (1, 0, 0), "{second:?}");
    let reqs = server.requests("/feed");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].get("if-none-match").is_none());
    let etag = reqs[1].get("if-none-match").expect("second request is conditional");
    assert!(etag.to_str().unwrap().starts_with('"'));
    assert_eq!(reqs[1].get("if-modified-since").unwrap(), "Mon, 01 Jun 2026 10:00:00 GMT");
    let ua = reqs[0].get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with(concat!("feedsieve/", env!("CARGO_PKG_VERSION"))), "{ua}");
    assert_eq!(env.store().item_count().unwrap(), 5);

    // Unconditional 200 with the same body: parsed, nothing stored again, the item
    // without guid or link keeps its key.
    server.put("/feed", [fixture("formats/rss20.xml"), b"\n".to_vec()].concat(), "application/rss+xml");
    let third = env.poll().await;
    assert_eq!((third.fetched, third.new_items, third.updated_items), (1, 0, 0), "{third:?}");
    assert_eq!(env.store().item_count().unwrap(), 5);
}

/// A database from before content hashes were XXH3 (schema version 6, SHA-256
/// hashes): after the upgrade, the same items sent again are not "updated".
#[tokio::test(flavor = "multi_thread")]
async fn items_stored_before_the_hash_changed_are_not_updated_by_the_upgrade() {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    let env = Env::new(&format!("{}{TOPIC}", feed("f", &server.url("/feed"))));
    assert_eq!(env.poll().await.new_items, 5);
    {
        let feedsieve::model::Database::Sqlite(path) = env.config().daemon.database else { unreachable!() };
        let db = rusqlite::Connection::open(path).unwrap();
        let url = url::Url::parse(&server.url("/feed")).unwrap();
        let parsed =
            feedsieve::parse::parse_feed(&fixture("formats/rss20.xml"), &url, chrono::Utc::now()).unwrap();
        for item in &parsed.items {
            let old = feedsieve::dedup::legacy_content_hash(item);
            let n = db
                .execute(
                    "UPDATE items SET content_hash = ?1 WHERE key = ?2",
                    rusqlite::params![&old[..], item.key],
                )
                .unwrap();
            assert_eq!(n, 1, "{}", item.key);
        }
        db.execute("DELETE FROM meta WHERE key = 'legacy_hashes_below'", []).unwrap();
        // What the later migrations added goes too.
        // What the later migrations added goes too.
        for added in [
            "ALTER TABLE feeds DROP COLUMN ttl_minutes",
            "ALTER TABLE items DROP COLUMN article",
            "ALTER TABLE feeds DROP COLUMN article_failures",
            "ALTER TABLE feeds DROP COLUMN article_error",
            "DROP TABLE websub_subscriptions",
            "DROP TABLE websub_sources",
        ] {
            db.execute(added, []).unwrap();
        }
        db.pragma_update(None, "user_version", 6).unwrap();
    }
    // Sent again unconditionally (one more byte, so not the same body).
    server.put("/feed", [fixture("formats/rss20.xml"), b"\n".to_vec()].concat(), "application/rss+xml");
    let again = env.poll().await;
    assert_eq!((again.fetched, again.new_items, again.updated_items), (1, 0, 0), "{again:?}");
}

async fn a_corrected_item_updates_in_place(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/gazette", "poll/v1.xml");
    let env = Env::on(
        engine,
        &format!("{}[[topic]]\nid = \"all\"\nfeeds = [\"g\"]\n", feed("g", &server.url("/gazette"))),
    );
    env.poll().await;
    let before = String::from_utf8(env.export("all", Format::Json)).unwrap();
    assert!(before.contains("12 arrests"));
    let ids_before = json_ids(&before);

    server.put_fixture("/gazette", "poll/v2.xml");
    let s = env.poll().await;
    assert_eq!((s.new_items, s.updated_items), (0, 1), "{s:?}");
    assert_eq!(env.store().item_count().unwrap(), 3);
    let after = String::from_utf8(env.export("all", Format::Json)).unwrap();
    assert!(after.contains("14 arrests") && !after.contains("12 arrests"), "{after}");
    assert!(after.contains("(updated)"));
    assert_eq!(json_ids(&after), ids_before, "entry ids are stable across a correction");
    let atom = env.export("all", Format::Atom);
    assert_eq!(titles(&atom).len(), 3);
}

fn json_ids(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut ids: Vec<String> =
        v["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

async fn a_failing_feed_is_recorded_while_the_others_succeed(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/good", "topic/relevant.xml");
    server.put_fixture("/page", "html_page.html");
    server.put_fixture("/cut", "broken/truncated.xml");
    server.put("/empty", Vec::new(), "application/rss+xml");
    let cfg = [
        feed("good", &server.url("/good")),
        feed("page", &server.url("/page")),
        feed("cut", &server.url("/cut")),
        feed("empty", &server.url("/empty")),
        feed("missing", &server.url("/nowhere")),
        feed("refused", "http://127.0.0.1:9/feed"),
        TOPIC.to_owned(),
    ]
    .concat();
    let env = Env::on(engine, &cfg);
    let s = env.poll().await;
    assert_eq!((s.fetched, s.failed), (1, 5), "{s:?}");
    let store = env.store();
    let good = store.feed("good").unwrap().unwrap();
    assert_eq!((good.items, good.error), (8, None));
    let err = |id: &str| store.feed(id).unwrap().unwrap();
    assert!(err("page").error.unwrap().contains("HTML page"), "{:?}", err("page"));
    assert_eq!(err("page").items, 0);
    assert!(err("cut").error.unwrap().contains("malformed"), "{:?}", err("cut"));
    assert_eq!(err("cut").items, 0, "nothing of a truncated feed is stored");
    assert!(err("empty").error.unwrap().contains("empty"));
    assert_eq!(err("missing").last_status, Some(404));
    assert_eq!(err("missing").error.as_deref(), Some("HTTP 404"));
    assert!(err("refused").error.is_some());
    assert_eq!(err("refused").failures, 1);
    assert_eq!(titles(&env.export("border", Format::Atom)).len(), 8);
}

async fn topics_match_exactly_the_relevant_items(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.put_fixture("/near", "topic/near_miss.xml");
    let cfg =
        [feed("relevant", &server.url("/relevant")), feed("near", &server.url("/near")), TOPIC.to_owned()]
            .concat();
    let env = Env::on(engine, &cfg);
    env.poll().await;
    let expected = titles(&fixture("topic/relevant.xml"));
    assert_eq!(expected.len(), 8);
    for format in Format::ALL {
        let body = env.export("border", format);
        let mut got = titles(&body);
        got.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(got, want, "{format:?}: precision and recall on the fixtures");
    }
}

async fn a_changed_topic_query_is_backfilled(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.put_fixture("/near", "topic/near_miss.xml");
    let feeds = [feed("relevant", &server.url("/relevant")), feed("near", &server.url("/near"))].concat();
    let env = Env::on(engine, &format!("{feeds}[[topic]]\nid = \"border\"\nquery = '\"border collie\"'\n"));
    env.poll().await;
    assert_eq!(titles(&env.export("border", Format::Rss)).len(), 1);
    std::fs::write(
        &env.config_path,
        std::fs::read_to_string(&env.config_path)
            .unwrap()
            .replace("\"border collie\"", "\"migrant smuggling\""),
    )
    .unwrap();
    let s = env.poll().await;
    assert_eq!(s.new_items, 0);
    let got = titles(&env.export("border", Format::Rss));
    assert!(!got.is_empty() && got.iter().all(|t| !t.to_lowercase().contains("collie")), "{got:?}");
}

pub const FORBIDDEN: [&str; 17] = [
    "<script",
    "javascript:",
    "vbscript:",
    "onerror",
    "onload",
    "<iframe",
    "srcdoc",
    "<form",
    "<svg",
    "<math",
    "<object",
    "<embed",
    "<style",
    "<meta",
    "<base",
    "data:text/html",
    "style=",
];

async fn xss_payloads_never_reach_any_output(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/xss", "xss.xml");
    let env = Env::on(engine, &format!("{}{TOPIC}", feed("xss", &server.url("/xss"))));
    let s = env.poll().await;
    assert_eq!(s.new_items, 6);
    for format in Format::ALL {
        let body = env.export("border", format);
        let raw = String::from_utf8_lossy(&body).to_lowercase();
        let decoded = strings(format, &body).join("\n").to_lowercase();
        for bad in FORBIDDEN {
            assert!(!raw.contains(bad), "{format:?} raw body contains {bad}");
            assert!(!decoded.contains(bad), "{format:?} decoded text contains {bad}");
        }
        for n in 1..=6 {
            assert!(decoded.contains(&format!("xssmarker{n}")), "{format:?}: item {n} missing");
            assert!(
                decoded.contains(&format!("https://xss.example.com/ok/{n}")),
                "{format:?}: safe link {n} lost"
            );
        }
    }
}

/// HTML is stored as the feed sent it and sanitised once, when first published; what
/// leaves the store is sanitised even where that step has not run yet.
async fn html_is_sanitised_once_when_published_and_never_leaves_the_store_raw(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/xss", "xss.xml");
    server.put(
        "/other",
        br#"<rss version="2.0"><channel><title>Other</title><item><guid>o1</guid><title>Weather</title>
        <description>&lt;p onclick="x()"&gt;Sunny&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;</description>
        </item></channel></rss>"#
            .to_vec(),
        "application/rss+xml",
    );
    let env = Env::on(
        engine,
        &format!("{}{}{TOPIC}", feed("xss", &server.url("/xss")), feed("other", &server.url("/other"))),
    );
    env.poll().await;
    // Published: sanitised in place. Never published: kept as sent, to be sanitised
    // if a topic ever shows it.
    let stored = env.rows(
        "SELECT feed_id, CASE WHEN sanitized THEN 1 ELSE 0 END, COALESCE(summary, '') FROM items ORDER BY id",
    );
    assert_eq!(stored.len(), 7);
    for row in &stored {
        let (feed, sanitized, summary) = (&row[0], &row[1], &row[2]);
        let lower = summary.to_lowercase();
        if feed == "xss" {
            assert_eq!(sanitized, "1", "published items are sanitised: {summary}");
            assert!(!lower.contains("<script") && !lower.contains("onerror"), "{summary}");
        } else {
            assert_eq!(sanitized, "0", "an item no topic shows is not sanitised");
            assert!(lower.contains("<script"), "kept as sent: {summary}");
        }
    }
    // Undo the sanitising: reading must still never hand out raw HTML.
    env.execute(
        "UPDATE items SET summary = '<p>xssmarker0</p><script>alert(1)</script><img src=x onerror=alert(1)>',
             sanitized = (1 = 0) WHERE feed_id = 'xss'",
    );
    for format in Format::ALL {
        let body = env.export("border", format);
        let raw = String::from_utf8_lossy(&body).to_lowercase();
        let decoded = strings(format, &body).join("\n").to_lowercase();
        assert!(decoded.contains("xssmarker0"), "{format:?}");
        for bad in FORBIDDEN {
            assert!(!raw.contains(bad) && !decoded.contains(bad), "{format:?} contains {bad}");
        }
    }
}

async fn characters_xml_forbids_never_reach_the_output(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/ctrl", "control_chars.json");
    let env = Env::on(
        engine,
        &format!("{}[[topic]]\nid = \"all\"\nfeeds = [\"ctrl\"]\n", feed("ctrl", &server.url("/ctrl"))),
    );
    env.poll().await;
    for format in Format::ALL {
        let body = env.export("all", format);
        let all = strings(format, &body).join("\n");
        assert!(all.contains("CTRLMARKER1 Radio relay station reopens"), "{format:?}: {all}");
    }
}

async fn outputs_are_valid_feeds_with_self_links_and_sources(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/rss20", "formats/rss20.xml");
    let env = Env::on(
        engine,
        &format!(
            "{}[[topic]]\nid = \"all\"\ntitle = \"Everything\"\nfeeds = [\"r\"]\n",
            feed("r", &server.url("/rss20"))
        ),
    );
    env.poll().await;
    for format in Format::ALL {
        let body = env.export("all", format);
        let parsed = feed_rs::parser::parse(&body[..]).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(parsed.entries.len(), 5, "{format:?}");
        assert_eq!(parsed.title.unwrap().content, "Everything");
        // Newest first; dates as the source gave them.
        let dates: Vec<_> = parsed.entries.iter().map(|e| e.published.unwrap()).collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{format:?}: {dates:?}");
        assert_eq!(parsed.entries[0].links[0].href, "https://rss20.example.com/2025/06/coastguard-review");
        strings(format, &body);
    }
    let atom = String::from_utf8(env.export("all", Format::Atom)).unwrap();
    assert!(atom.contains(r#"<link href="http://feeds.test/topics/all.atom" rel="self""#), "{atom}");
    assert!(atom.contains("<source><title>Harbour Signal</title>"), "{atom}");
    // RFC 4287 4.1.2 (the W3C validator's "Missing entry element: author"): every entry
    // has an author, in itself or in its atom:source, as the feed has none.
    assert!(!atom.split("<entry>").next().unwrap().contains("<author>"), "no feed-level author");
    for entry in atom.split("<entry>").skip(1) {
        let entry = entry.split("</entry>").next().unwrap();
        assert!(entry.contains("<author><name>"), "an entry without an author: {entry}");
    }
    assert!(
        atom.contains("<updated><author><name>Harbour Signal</name></author>")
            || atom.contains("</updated><author><name>Harbour Signal</name></author>"),
        "the source feed as author: {atom}"
    );
    assert!(
        atom.contains("<updated>2025-06-09T08:00:00+00:00</updated>"),
        "feed updated = newest entry: {atom}"
    );
    let rss = String::from_utf8(env.export("all", Format::Rss)).unwrap();
    assert!(rss.contains(r#"href="http://feeds.test/topics/all.rss""#), "{rss}");
    let json: serde_json::Value = serde_json::from_slice(&env.export("all", Format::Json)).unwrap();
    assert_eq!(json["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(json["feed_url"], "http://feeds.test/topics/all.json");
    assert_eq!(json["items"][0]["_feedsieve"]["source"]["feed_id"], "r");
    // Stable output: rendering twice gives the same bytes.
    assert_eq!(env.export("all", Format::Atom), env.export("all", Format::Atom));
}

async fn one_link_in_two_feeds_is_one_story_with_both_sources(engine: Engine) {
    let server = FeedServer::start().await;
    let a = r#"<rss version="2.0"><channel><title>Agency</title><link>https://agency.example/</link>
        <item><guid>a1</guid><title>Border security pact signed</title><link>https://agency.example/news/1</link>
        <pubDate>Mon, 16 Nov 2026 10:00:00 GMT</pubDate></item></channel></rss>"#;
    let b = r#"<rss version="2.0"><channel><title>Wire</title><link>https://wire.example/</link>
        <item><guid>w9</guid><title>Pact on border security signed</title>
        <link>https://AGENCY.example:443/news/1?utm_source=wire&amp;fbclid=x#top</link>
        <pubDate>Mon, 16 Nov 2026 11:00:00 GMT</pubDate></item></channel></rss>"#;
    server.put("/a", a.as_bytes().to_vec(), "application/rss+xml");
    server.put("/b", b.as_bytes().to_vec(), "application/rss+xml");
    let env = Env::on(
        engine,
        &[feed("agency", &server.url("/a")), feed("wire", &server.url("/b")), TOPIC.to_owned()].concat(),
    );
    env.poll().await;
    assert_eq!(env.store().item_count().unwrap(), 2);
    let atom = String::from_utf8(env.export("border", Format::Atom)).unwrap();
    assert_eq!(titles(atom.as_bytes()).len(), 1, "{atom}");
    assert!(atom.contains(r#"rel="related""#), "{atom}");
    let json: serde_json::Value = serde_json::from_slice(&env.export("border", Format::Json)).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    let also = &json["items"][0]["_feedsieve"]["also_reported_by"];
    assert_eq!(also.as_array().unwrap().len(), 1, "{json}");
}

/// Issue 3: a press release carried by two outlets under different links and
/// headlines is one story; a different story from the same source that shares only
/// the agency's standard footer is not.
async fn a_syndicated_copy_with_another_link_joins_the_story(engine: Engine) {
    let body = "Police and immigration services in 31 countries arrested 212 suspects during Operation \
        Tidewater, a six-week action against migrant smuggling networks operating along sea routes in the \
        Mediterranean, the Gulf of Aden and the Bay of Bengal. Officers identified 4,100 irregular migrants, \
        among them 380 unaccompanied children, and seized 27 boats, forged visas and cash.";
    let other = "Border guards in Lithuania found 37 helium balloons carrying contraband cigarettes that drifted \
        across from Belarus overnight. The airport in Vilnius was closed for three hours as a precaution while \
        the government asked Minsk to stop the launches, calling them a hybrid attack on border security.";
    let footer = "About the agency: the agency coordinates police cooperation between member countries and \
        publishes news, reports and data every working day.";
    let item = |guid: &str, title: &str, link: &str, text: &str| {
        format!(
            "<item><guid>{guid}</guid><title>{title}</title><link>{link}</link><description>{text}</description></item>"
        )
    };
    let agency = format!(
        "<rss version=\"2.0\"><channel><title>Agency</title>{}{}{}{}</channel></rss>",
        item(
            "a1",
            "Operation Tidewater: 212 arrests",
            "https://agency.example/news/1",
            &format!("{body} {footer}")
        ),
        item("a2", "Balloons over the border", "https://agency.example/news/2", &format!("{other} {footer}")),
        item(
            "a3",
            "Annual report published",
            "https://agency.example/news/3",
            &format!("The annual report on cooperation is out today with figures for every region. {footer}")
        ),
        item(
            "a4",
            "Training week",
            "https://agency.example/news/4",
            &format!("Sixty officers completed a week of training on forged documents in Nairobi. {footer}")
        ),
    );
    let wire = format!(
        "<rss version=\"2.0\"><channel><title>Wire</title>{}</channel></rss>",
        item(
            "w1",
            "Police in 31 countries arrest 212 in crackdown on sea smuggling routes",
            "https://wire.example/world/tidewater",
            &format!(
                "LYON (Harbour Wire) - {} Reporting by Ana Ruiz; Editing by Tom Bell.",
                body.replace("six-week", "six week")
            )
        ),
    );
    let server = FeedServer::start().await;
    server.put("/agency", agency.into_bytes(), "application/rss+xml");
    server.put("/wire", wire.into_bytes(), "application/rss+xml");
    let env = Env::on(
        engine,
        &[feed("agency", &server.url("/agency")), feed("wire", &server.url("/wire")), TOPIC.to_owned()]
            .concat(),
    );
    env.poll().await;
    let store = env.store();
    assert_eq!(store.item_count().unwrap(), 5);
    assert_eq!(
        store.story_count().unwrap(),
        4,
        "the wire copy joined the agency's story, nothing else merged"
    );
    let json: serde_json::Value = serde_json::from_slice(&env.export("border", Format::Json)).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{json}");
    // Both copies were first seen in the same pass, so either may stand for the story;
    // the other is listed as a source.
    let story =
        items.iter().find(|i| !i["_feedsieve"]["also_reported_by"].as_array().unwrap().is_empty()).unwrap();
    let also = story["_feedsieve"]["also_reported_by"].as_array().unwrap();
    assert_eq!(also.len(), 1);
    let links = [story["url"].as_str().unwrap(), also[0]["url"].as_str().unwrap()];
    assert!(
        links.contains(&"https://wire.example/world/tidewater")
            && links.contains(&"https://agency.example/news/1")
    );
    assert!(story["content_html"].as_str().unwrap().contains("Also reported by"));
    let other = items.iter().find(|i| i != &story).unwrap();
    assert_eq!(other["url"], "https://agency.example/news/2");
}

/// Issue 3: retention prunes old items that no topic shows, tombstones keep them from
/// coming back, and topic outputs are untouched.
async fn retention_prunes_unpublished_items_and_tombstones_keep_them_out(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/relevant", "topic/relevant.xml");
    server.put_fixture("/near", "topic/near_miss.xml");
    let topic = TOPIC.replace("exclude", "limit = 3\nexclude");
    let env = Env::on(
        engine,
        &[feed("relevant", &server.url("/relevant")), feed("near", &server.url("/near")), topic].concat(),
    );
    env.poll().await;
    assert_eq!(env.store().item_count().unwrap(), 18);
    let before = env.export("border", Format::Atom);
    assert_eq!(titles(&before).len(), 3);

    // 200 days on (retention is 180d by default), with the feeds unchanged but resent.
    let later = feedsieve::daemon::Clock::starting_at(chrono::Utc::now() + chrono::TimeDelta::days(200));
    server.put("/relevant", [fixture("topic/relevant.xml"), b" ".to_vec()].concat(), "application/rss+xml");
    server.put("/near", [fixture("topic/near_miss.xml"), b" ".to_vec()].concat(), "application/rss+xml");
    let s = env.poll_at(later).await;
    assert_eq!((s.fetched, s.new_items), (2, 0), "pruned items are not stored again: {s:?}");
    let store = env.store();
    assert_eq!(store.item_count().unwrap(), 3, "only the three items a topic shows are kept");
    assert_eq!(store.story_count().unwrap(), 3);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(titles(&env.export("border", Format::Atom)), titles(&before), "topic output unchanged");

    // The feeds still list the pruned items: the tombstones keep them out.
    server.put("/relevant", [fixture("topic/relevant.xml"), b"  ".to_vec()].concat(), "application/rss+xml");
    server.put("/near", [fixture("topic/near_miss.xml"), b"  ".to_vec()].concat(), "application/rss+xml");
    let s = env.poll_at(later).await;
    assert_eq!((s.fetched, s.new_items, s.updated_items), (2, 0, 0), "{s:?}");
    assert_eq!(env.store().item_count().unwrap(), 3);
}

/// Issue 3: the entry of a story keeps its id (and its item) when a copy arrives
/// later from another feed; a later copy that backdates itself cannot take over.
async fn a_story_keeps_its_entry_when_a_later_copy_joins(engine: Engine) {
    let body = "Police and immigration services in 31 countries arrested 212 suspects during Operation \
        Tidewater, a six-week action against migrant smuggling networks operating along sea routes in the \
        Mediterranean. Officers identified 4,100 irregular migrants and seized 27 boats, forged visas and cash.";
    let first = format!(
        "<rss version=\"2.0\"><channel><title>Agency</title><item><guid>a1</guid><title>Operation Tidewater</title>\
         <link>https://agency.example/1</link><pubDate>Mon, 16 Nov 2026 10:00:00 GMT</pubDate>\
         <description>{body}</description></item></channel></rss>"
    );
    let copy = format!(
        "<rss version=\"2.0\"><channel><title>Wire</title><item><guid>w1</guid><title>212 held in smuggling sweep</title>\
         <link>https://wire.example/9</link><pubDate>Sun, 01 Nov 2026 10:00:00 GMT</pubDate>\
         <description>PARIS (Wire) - {body}</description></item></channel></rss>"
    );
    let server = FeedServer::start().await;
    server.put("/a", first.into_bytes(), "application/rss+xml");
    server.put("/w", copy.into_bytes(), "application/rss+xml");
    let topic = "[[topic]]\nid = \"t\"\nquery = '\"migrant smuggling\"'\n";
    let env = Env::on(engine, &[feed("agency", &server.url("/a")), topic.to_owned()].concat());
    env.poll().await;
    let before: serde_json::Value = serde_json::from_slice(&env.export("t", Format::Json)).unwrap();
    let id = before["items"][0]["id"].clone();

    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("[[topic]]", &format!("{}[[topic]]", feed("wire", &server.url("/w")))),
    )
    .unwrap();
    env.poll().await;
    let after: serde_json::Value = serde_json::from_slice(&env.export("t", Format::Json)).unwrap();
    let items = after["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{after}");
    assert_eq!(items[0]["id"], id, "the entry id is stable");
    assert_eq!(items[0]["url"], "https://agency.example/1", "the first-seen item stays the entry");
    assert_eq!(items[0]["_feedsieve"]["also_reported_by"][0]["url"], "https://wire.example/9");
}

/// Issue "Feeds in the wild": an RSS `<ttl>` was honoured after a 200 and forgotten
/// after the 304 that followed (the feed fell back to its schedule).
async fn an_rss_ttl_still_holds_after_a_304(engine: Engine) {
    let server = FeedServer::start().await;
    let body = String::from_utf8(fixture("formats/rss20.xml")).unwrap().replacen(
        "<channel>",
        "<channel><ttl>180</ttl>",
        1,
    );
    assert!(body.contains("<ttl>180</ttl>"));
    server.put("/feed", body.into_bytes(), "application/rss+xml");
    let env = Env::with_daemon_on(
        engine,
        "timeout = \"5s\"\nschedule = \"every 5m\"",
        &feed("f", &server.url("/feed")),
    );
    let due = |env: &Env| {
        let row = env.store().feed("f").unwrap().unwrap();
        row.next_due.unwrap() - row.last_fetch.unwrap()
    };
    let first = env.poll().await;
    assert_eq!(first.fetched, 1);
    // 180 minutes, less up to a quarter of jitter: far beyond the 5-minute schedule.
    assert!(due(&env) >= 135 * 60, "after the 200: due in {} s", due(&env));
    let second = env.poll().await;
    assert_eq!(second.not_modified, 1, "{second:?}");
    assert!(due(&env) >= 135 * 60, "after the 304: due in {} s", due(&env));
    // A 200 without a ttl forgets it.
    let plain = String::from_utf8(fixture("formats/rss20.xml")).unwrap().replacen(
        "<channel>",
        "<channel><!-- changed -->",
        1,
    );
    server.put("/feed", plain.into_bytes(), "application/rss+xml");
    env.poll().await;
    env.poll().await;
    assert!(due(&env) <= 10 * 60, "the schedule again: due in {} s", due(&env));
}
