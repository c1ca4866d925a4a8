//! Fetch limits and redirect policy, against a real server.

use std::io::Write;

use crate::util::{Env, FeedServer, fixture};

fn one_feed(url: &str) -> String {
    format!("[[feed]]\nid = \"f\"\nurl = \"{url}\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_bomb_stops_at_the_decoded_size_cap() {
    let server = FeedServer::start().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"<rss version=\"2.0\"><channel><title>bomb</title><description>").unwrap();
    for _ in 0..(32 * 1024) {
        gz.write_all(&[b'a'; 1024]).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 256 * 1024, "compressed {} bytes", bomb.len());
    server.put_raw(
        "/bomb",
        200,
        &[("content-encoding", "gzip"), ("content-type", "application/rss+xml")],
        bomb,
    );
    server.put_fixture("/ok", "formats/rss20.xml");
    let env = Env::with_daemon(
        "max_feed_bytes = \"1MiB\"",
        &format!(
            "{}\n[[feed]]\nid = \"ok\"\nurl = \"{}\"\n",
            one_feed(&server.url("/bomb")),
            server.url("/ok")
        ),
    );
    let s = env.poll().await;
    assert_eq!((s.fetched, s.failed), (1, 1), "{s:?}");
    let row = env.store().feed("f").unwrap().unwrap();
    assert!(row.error.as_deref().unwrap().contains("larger than the limit of 1048576 bytes"), "{row:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_cap_is_refused() {
    let server = FeedServer::start().await;
    let mut big = fixture("formats/rss20.xml");
    big.extend(std::iter::repeat_n(b' ', 2 << 20));
    server.put("/big", big, "application/rss+xml");
    let env = Env::with_daemon("max_feed_bytes = \"1MiB\"", &one_feed(&server.url("/big")));
    let s = env.poll().await;
    assert_eq!(s.failed, 1);
    assert!(env.store().feed("f").unwrap().unwrap().error.unwrap().contains("larger than the limit"));
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

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let env = Env::with_daemon("timeout = \"1s\"", &one_feed(&format!("http://{addr}/feed")));
    let s = env.poll().await;
    assert_eq!(s.failed, 1);
    let err = env.store().feed("f").unwrap().unwrap().error.unwrap();
    assert!(err.contains("no complete answer within 1s"), "{err}");
    hold.abort();
}
