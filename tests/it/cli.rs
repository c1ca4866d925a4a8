//! The binary: exit codes, `check` messages, `status --json`, `export`.

use crate::util::{Engine, Env, FeedServer};

on_both_engines!(poll_status_and_export_through_the_binary);

#[test]
fn check_reports_every_problem_with_positions_and_exits_2() {
    let env = Env::new(
        r#"
[[feed]]
id = "a"
url = "gopher://example.org/"
schedule = "61 * * * *"
colour = "red"

[[topic]]
id = "t"
query = 'border-security'
feeds = ["nope"]
"#,
    );
    let out = env.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = env.config_path.display().to_string();
    for want in [
        format!("{file}:9:7: 'gopher://example.org/'"),
        format!("{file}:10:12: bad schedule"),
        format!("{file}:11:1: unknown key 'colour'"),
        format!("{file}:15:16: topic 't': bad query: '-' is not allowed outside quotes"),
        format!("{file}:13:1: topic 't' names unknown feed 'nope'"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn check_accepts_the_shipped_configs() {
    for config in ["config/demo.toml", "config/feedsieve.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
            .args(["--config", config, "check"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{config}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `--version` names the version and the commit the binary was built from: the
/// checkout's HEAD when built in one (as here, and in CI's fresh clone), else "unknown".
#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve")).arg("--version").output().unwrap();
    assert!(out.status.success());
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let commit = std::env::var("FEEDSIEVE_COMMIT").ok().filter(|c| !c.trim().is_empty()).or(head);
    let want =
        format!("feedsieve {} ({})\n", env!("CARGO_PKG_VERSION"), commit.as_deref().unwrap_or("unknown"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn a_missing_config_is_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
        .args(["--config", "/nonexistent/feedsieve.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent/feedsieve.toml")
    );
}

async fn poll_status_and_export_through_the_binary(engine: Engine) {
    let server = FeedServer::start().await;
    server.put_fixture("/r", "topic/relevant.xml");
    let env = Env::on(
        engine,
        &format!(
            "[[feed]]\nid = \"r\"\nurl = \"{}\"\n\n[[feed]]\nid = \"gone\"\nurl = \"{}\"\n\n[[topic]]\nid = \"b\"\nquery = '\"border security\"'\n",
            server.url("/r"),
            server.url("/gone")
        ),
    );
    let out = tokio::task::spawn_blocking({
        let path = env.config_path.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
                .args(["--config".as_ref(), path.as_os_str(), "poll".as_ref()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "a pass with a failed feed still exits 0");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 feeds: 1 fetched, 0 not modified, 1 failed; 8 new items"), "{stdout}");
    assert!(stdout.contains("failed: gone: HTTP 404"), "{stdout}");

    let out = env.cli(&["poll", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["feeds"].as_u64(), v["not_modified"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["failures"][0]["id"], "gone");

    let out = env.cli(&["status", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items_total"], 8);
    let feeds = v["feeds"].as_array().unwrap();
    assert_eq!(feeds[0]["id"], "r");
    assert_eq!(feeds[0]["items"], 8);
    assert_eq!(feeds[0]["error"], serde_json::Value::Null);
    assert_eq!(feeds[0]["last_status"], 304, "the second poll was answered 304");
    assert!(feeds[0]["last_fetch"].as_str().unwrap().starts_with("20"));
    for key in ["id", "url", "last_fetch", "last_status", "error", "items"] {
        assert!(feeds[1].get(key).is_some(), "{key} missing");
    }
    assert_eq!(feeds[1]["error"], "HTTP 404");
    assert_eq!(feeds[1]["last_status"], 404);
    assert!(v["topics"][0]["items"].as_i64().unwrap() >= 1);

    for format in ["atom", "rss", "json"] {
        let out = env.cli(&["export", "b", "--format", format]);
        assert!(out.status.success(), "{format}");
        feed_rs::parser::parse(&out.stdout[..]).unwrap_or_else(|e| panic!("{format}: {e}"));
    }
    let out = env.cli(&["export", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no topic 'nope'"));

    let out = env.cli(&["topic", "preview", "b", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = v["matches"].as_array().unwrap();
    assert!(!m.is_empty());
    assert!(m.iter().all(|x| x["score"].as_f64().unwrap() > 0.0));
    assert!(
        m[0]["title"].as_str().unwrap().contains('[')
            || m[0]["snippet"].as_str().unwrap().contains("[border")
    );

    let out = env.cli(&["topic", "preview", "--query", "\"border security\" OR (smuggling"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected ')' at the end"), "{err}");

    let out = env.cli(&["topic", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["topics"][0]["id"], "b");
}

/// The acceptance check of the pipeline issue: poll the offline demo, export the
/// border-security topic, and find exactly the stories `config/samples/EXPECTED.md`
/// lists.
#[test]
fn the_demo_config_yields_exactly_the_border_security_stories() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::create_dir(dir.path().join("samples")).unwrap();
    for entry in std::fs::read_dir(root.join("samples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("samples").join(entry.file_name())).unwrap();
    }
    let config = dir.path().join("demo.toml");
    std::fs::copy(root.join("demo.toml"), &config).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedsieve"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let summary = String::from_utf8(run(&["poll"])).unwrap();
    assert!(summary.starts_with("6 feeds: 6 fetched, 0 not modified, 0 failed; 42 new items"), "{summary}");
    let want = [
        "Greece and Turkey agree joint coastguard patrols as Aegean crossings rise",
        "Lithuanian border guards intercept balloons carrying cigarettes from Belarus",
        "Frontex and Moldova sign working arrangement on border security cooperation",
        "Operation Tidewater: 212 arrests in global action against migrant smuggling networks",
        "Poland prolongs checks at its German and Lithuanian frontiers until March",
        "Border guards from 22 countries trained to detect forged travel documents",
        "Joint operation in the central Mediterranean targets people smuggling routes",
        "Human trafficking: 97 victims rescued in West and Central Africa operation",
        "Annual conference on trafficking indicators opens in Warsaw",
        "Standing corps officers deployed to the Western Balkans to support border management",
        "Forty more airports connected to INTERPOL databases",
    ];
    for format in ["atom", "rss", "json"] {
        let body = run(&["export", "border-security", "--format", format]);
        assert_eq!(crate::util::titles(&body), want, "{format}: newest first, one entry per story");
    }
    let status: serde_json::Value = serde_json::from_slice(&run(&["status", "--json"])).unwrap();
    assert_eq!(status["items_total"], 42);
    assert_eq!(status["topics"][0]["items"], 11);
    assert_eq!(status["topics"][1]["items"], 14);
    // output_dir got the same files.
    for ext in ["atom", "rss", "json"] {
        let file = dir.path().join(format!("demo-data/public/border-security.{ext}"));
        assert_eq!(crate::util::titles(&std::fs::read(&file).unwrap()), want, "{}", file.display());
    }
}
