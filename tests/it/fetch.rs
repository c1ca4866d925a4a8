//! Redirect counting and `Retry-After`, against a real server. The hostile transport
//! scenarios (timeouts, size caps, gzip bombs, redirect targets) are in `hostile.rs`.

use crate::util::{Env, FeedServer};

fn one_feed(url: &str) -> String {
    format!("[[feed]]\nid = \"f\"\nurl = \"{url}\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_followed_up_to_ten_and_checked() {
    let server = FeedServer::start().await;
    server.put_fixture("/final", "formats/rss20.xml");
    // A chain of 10 redirects arrives; 11 does not.
    for i in 0..11 {
        let next = if i == 10 { "/final".to_owned() } else { format!("/hop{}", i + 1) };
        server.put_raw(&format!("/hop{i}"), 302, &[("location", &next)], vec![]);
    }
    server.put_raw("/file", 302, &[("location", "file:///etc/passwd")], vec![]);
    server.put_raw("/metadata", 307, &[("location", "http://169.254.169.254/latest/meta-data/")], vec![]);
    server.put_raw("/loop", 302, &[("location", "/loop")], vec![]);
    server.put_raw("/moved", 301, &[("location", "/final")], vec![]);
    let feeds = [
        ("ten", "/hop1"),
        ("eleven", "/hop0"),
        ("file", "/file"),
        ("meta", "/metadata"),
        ("loop", "/loop"),
        ("moved", "/moved"),
    ]
    .iter()
    .map(|(id, p)| format!("[[feed]]\nid = \"{id}\"\nurl = \"{}\"\n\n", server.url(p)))
    .collect::<String>();
    let env = Env::new(&feeds);
    env.poll().await;
    let store = env.store();
    let row = |id: &str| store.feed(id).unwrap().unwrap();
    assert_eq!(row("ten").items, 5, "{:?}", row("ten"));
    assert!(row("eleven").error.unwrap().contains("more than 10 redirects"));
    assert!(row("file").error.unwrap().contains("refused: only http and https"), "{:?}", row("file"));
    assert!(row("meta").error.unwrap().contains("link-local or metadata"), "{:?}", row("meta"));
    assert!(row("loop").error.unwrap().contains("more than 10 redirects"));
    assert_eq!(row("moved").items, 5);
    assert_eq!(row("moved").moved_to.as_deref(), Some(server.url("/final").as_str()), "a 301 is shown");
    assert_eq!(row("ten").moved_to, None, "a 302 is not a move");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_and_failures_count() {
    let server = FeedServer::start().await;
    server.put_raw("/busy", 429, &[("retry-after", "7200")], b"slow down".to_vec());
    let env = Env::new(&one_feed(&server.url("/busy")));
    let before = chrono::Utc::now().timestamp();
    env.poll().await;
    env.poll().await;
    let row = env.store().feed("f").unwrap().unwrap();
    assert_eq!(row.last_status, Some(429));
    assert_eq!(row.error.as_deref(), Some("HTTP 429"));
    assert_eq!(row.failures, 2);
    assert!(row.next_due.unwrap() >= before + 7200, "next due {:?} honours Retry-After", row.next_due);
}
