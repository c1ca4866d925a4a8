//! Redirect counting and `Retry-After`, against a real server. The hostile transport
//! scenarios (timeouts, size caps, gzip bombs, redirect targets) are in `hostile.rs`.

use std::sync::{Arc, Mutex};

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

/// A forward proxy for plain HTTP: records each request's target and answers with
/// what the target answers, reaching the host `feeds.example.test`, which only it can
/// resolve, at `upstream`.
async fn forward_proxy(upstream: String) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::body::{Body, Bytes};
    use axum::http::{Request, Response};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    feedsieve::fetch::install_tls_provider();
    let client =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let app = axum::Router::new().fallback({
        let seen = seen.clone();
        move |req: Request<Body>| {
            let (seen, client, upstream) = (seen.clone(), client.clone(), upstream.clone());
            async move {
                let target = req.uri().to_string();
                seen.lock().unwrap().push(target.clone());
                let mut forwarded = client.get(target.replacen("http://feeds.example.test", &upstream, 1));
                for (k, v) in req.headers() {
                    if k != "host" && k != "proxy-connection" {
                        forwarded = forwarded.header(k, v);
                    }
                }
                let answer = forwarded.send().await.unwrap();
                let mut out = Response::builder().status(answer.status().as_u16());
                for (k, v) in answer.headers() {
                    out = out.header(k, v);
                }
                let body: Bytes = answer.bytes().await.unwrap();
                out.body(Body::from(body)).unwrap()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// Issue "Feeds in the wild": HTTP_PROXY was ignored (the client was built without
/// proxies). The proxy from the environment carries the polls (here of a host only it
/// can resolve), loopback hosts and NO_PROXY's stay off it, and a redirect through it
/// is still held to the address rules.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_of_the_environment_is_used_and_no_proxy_honoured() {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    server.put_fixture("/local", "formats/atom.xml");
    server.put_raw("/metadata", 307, &[("location", "http://169.254.169.254/latest/meta-data/")], vec![]);
    let upstream = server.url("");
    let (proxy, seen) = forward_proxy(upstream.trim_end_matches('/').to_owned()).await;
    let env = Env::new(&format!(
        "[[feed]]\nid = \"far\"\nurl = \"http://feeds.example.test/feed\"\n\n\
         [[feed]]\nid = \"meta\"\nurl = \"http://feeds.example.test/metadata\"\n\n\
         [[feed]]\nid = \"local\"\nurl = \"{}\"\n",
        server.url("/local")
    ));
    let poll = |no_proxy: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"));
        cmd.arg("--config").arg(&env.config_path).args(["poll", "--json"]);
        for k in
            ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "http_proxy"]
        {
            cmd.env_remove(k);
        }
        cmd.env("HTTP_PROXY", &proxy);
        if let Some(hosts) = no_proxy {
            cmd.env("NO_PROXY", hosts);
        }
        cmd
    };
    let mut cmd = poll(None);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["fetched"], 2, "far through the proxy, local directly: {result}");
    let through: Vec<String> = seen.lock().unwrap().clone();
    assert!(through.contains(&"http://feeds.example.test/feed".to_owned()), "{through:?}");
    assert!(!through.iter().any(|t| t.contains("/local")), "loopback is not proxied: {through:?}");
    assert_eq!(server.requests("/local").len(), 1);
    let failure = result["failures"].as_array().unwrap().iter().find(|f| f["id"] == "meta").cloned().unwrap();
    assert!(failure["error"].as_str().unwrap().contains("169.254.169.254"), "{failure}");
    assert!(!through.iter().any(|t| t.contains("169.254")), "the refused redirect never reached the proxy");

    // NO_PROXY: the host is then looked up here, where it does not resolve.
    let before = seen.lock().unwrap().len();
    let mut cmd = poll(Some("feeds.example.test"));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen.lock().unwrap().len(), before, "NO_PROXY kept the host off the proxy");
    assert!(result["failures"].as_array().unwrap().iter().any(|f| f["id"] == "far"), "{result}");
}

/// `proxy` in a feed and in `[daemon]`: the feed's own proxy carries its requests,
/// the daemon's carries the others', "none" goes straight out (where the proxy's host
/// does not resolve), and a feed's credentials travel through its proxy to the feed.
#[tokio::test(flavor = "multi_thread")]
async fn configured_proxies_carry_the_feeds_that_name_them() {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    server.put_fixture("/own", "formats/atom.xml");
    server.put_fixture("/none", "formats/atom.xml");
    server.require_authorization("/own", "Bearer tok-through-proxy");
    let upstream = server.url("");
    let upstream = upstream.trim_end_matches('/');
    let (daemon_proxy, via_daemon) = forward_proxy(upstream.to_owned()).await;
    let (feed_proxy, via_feed) = forward_proxy(upstream.to_owned()).await;
    let env = Env::with_daemon(
        &format!("timeout = \"5s\"\nproxy = \"{daemon_proxy}\""),
        &format!(
            "[[feed]]\nid = \"far\"\nurl = \"http://feeds.example.test/feed\"\n\n\
             [[feed]]\nid = \"own\"\nurl = \"http://feeds.example.test/own\"\nproxy = \"{feed_proxy}\"\ntoken_file = \"own.token\"\n\n\
             [[feed]]\nid = \"none\"\nurl = \"http://feeds.example.test/none\"\nproxy = \"none\"\n"
        ),
    );
    std::fs::write(env.config_path.parent().unwrap().join("own.token"), "tok-through-proxy\n").unwrap();
    let summary = env.poll().await;
    assert_eq!((summary.fetched, summary.failed), (2, 1), "{summary:?}");
    assert_eq!(*via_daemon.lock().unwrap(), vec!["http://feeds.example.test/feed".to_owned()]);
    assert_eq!(*via_feed.lock().unwrap(), vec!["http://feeds.example.test/own".to_owned()]);
    let auth = server.requests("/own")[0].get("authorization").cloned();
    assert_eq!(auth.unwrap(), "Bearer tok-through-proxy");
    assert!(server.requests("/none").is_empty(), "\"none\" went to no proxy");
    let error = &env.rows("SELECT error FROM feeds WHERE id = 'none'")[0][0];
    assert!(error.contains("request failed"), "{error}");

    let bad = Env::with_daemon(
        "proxy = \"ftp://p.internal\"",
        "[[feed]]\nid = \"f\"\nurl = \"https://example.org/\"\nproxy = \"socks4://user:hunter2@p:1\"\n",
    );
    let out = bad.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'proxy' scheme 'ftp' is not one of http, https, socks5, socks5h"), "{err}");
    assert!(err.contains("'proxy' scheme 'socks4'") && !err.contains("hunter2"), "{err}");
}

/// A SOCKS5 proxy without authentication (RFC 1928, CONNECT only): records each
/// target as the client named it and connects `feeds.example.test` to `upstream`.
async fn socks5_proxy(upstream: std::net::SocketAddr) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                client.read_exact(&mut head).await.unwrap();
                let mut methods = vec![0u8; head[1] as usize];
                client.read_exact(&mut methods).await.unwrap();
                client.write_all(&[5, 0]).await.unwrap();
                let mut req = [0u8; 4];
                client.read_exact(&mut req).await.unwrap();
                let host = match req[3] {
                    3 => {
                        let len = client.read_u8().await.unwrap();
                        let mut name = vec![0u8; len as usize];
                        client.read_exact(&mut name).await.unwrap();
                        String::from_utf8(name).unwrap()
                    }
                    1 => {
                        let mut ip = [0u8; 4];
                        client.read_exact(&mut ip).await.unwrap();
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    other => panic!("address type {other}"),
                };
                let port = client.read_u16().await.unwrap();
                record.lock().unwrap().push(format!("{host}:{port}"));
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("socks5h://{addr}"), seen)
}

/// `proxy = "socks5h://..."`: the feed's name goes to the proxy unresolved, and the
/// proxy carries the poll.
#[tokio::test(flavor = "multi_thread")]
async fn a_socks5h_proxy_carries_a_feed_by_name() {
    let server = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    let (proxy, seen) = socks5_proxy(server.addr).await;
    let env = Env::new(&format!(
        "[[feed]]\nid = \"far\"\nurl = \"http://feeds.example.test/feed\"\nproxy = \"{proxy}\"\n"
    ));
    let summary = env.poll().await;
    assert_eq!((summary.fetched, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(*seen.lock().unwrap(), vec!["feeds.example.test:80".to_owned()]);
    assert_eq!(server.requests("/feed").len(), 1);
}

/// A feed's `headers` and `user_agent` reach its server; on a redirect to another
/// origin the headers stay behind (the user agent goes on).
#[tokio::test(flavor = "multi_thread")]
async fn a_feed_s_headers_go_to_its_own_origin_only() {
    let server = FeedServer::start().await;
    let other = FeedServer::start().await;
    server.put_fixture("/feed", "formats/rss20.xml");
    other.put_fixture("/elsewhere", "formats/atom.xml");
    server.put_raw("/away", 302, &[("location", &other.url("/elsewhere"))], vec![]);
    server.put_raw("/here", 302, &[("location", "/feed")], vec![]);
    let options = "headers = { \"Accept-Language\" = \"en\", \"X-Partner-Id\" = \"desk-7\" }\n\
                   user_agent = \"Mozilla/5.0 (compatible; partner-reader)\"\n";
    let env = Env::new(&format!(
        "{}{options}\n[[feed]]\nid = \"away\"\nurl = \"{}\"\n{options}\n[[feed]]\nid = \"here\"\nurl = \"{}\"\n{options}",
        one_feed(&server.url("/feed")),
        server.url("/away"),
        server.url("/here")
    ));
    let summary = env.poll().await;
    assert_eq!(summary.fetched, 3, "{summary:?}");
    let sent = |reqs: Vec<axum::http::HeaderMap>| {
        reqs.into_iter()
            .map(|h| {
                let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_owned());
                (get("accept-language"), get("x-partner-id"), get("user-agent"))
            })
            .collect::<Vec<_>>()
    };
    let ua = Some("Mozilla/5.0 (compatible; partner-reader)".to_owned());
    let full = (Some("en".to_owned()), Some("desk-7".to_owned()), ua.clone());
    // f directly, and "here" redirected within the origin: with the headers, twice.
    assert_eq!(sent(server.requests("/feed")), vec![full.clone(), full.clone()]);
    assert_eq!(sent(server.requests("/away")), vec![full]);
    assert_eq!(sent(other.requests("/elsewhere")), vec![(None, None, ua)], "no headers to another origin");
}

#[test]
fn headers_that_carry_credentials_or_belong_to_feedsieve_are_refused() {
    let env = Env::new(
        "[[feed]]\nid = \"f\"\nurl = \"https://example.org/feed\"\n\
         headers = { Authorization = \"Bearer x\", Host = \"h\", \"bad name\" = \"v\", \"X-Ok\" = 3 }\n\
         user_agent = \"\"\n",
    );
    let out = env.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "header 'Authorization' cannot be set here: credentials come from files",
        "header 'Host' cannot be set here: feedsieve sets it itself",
        "'bad name' is not a header name",
        "header 'X-Ok' must be a string",
        "'user_agent' = '' is not a usable User-Agent",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains("Bearer x"), "{err}");
}
