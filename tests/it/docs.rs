//! The documentation holds to the code: docs/configuration.md documents every config
//! key the code accepts, and only those, each with its type, default, store and an
//! example the code accepts; no document points outside the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use feedsieve::config::{self, DAEMON_KEYS, FEED_KEYS, TABLES, TOPIC_KEYS, WEBSUB_KEYS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One documented key: its table, and the bullet lines of its entry by label.
#[derive(Debug)]
struct Entry {
    table: String,
    key: String,
    fields: BTreeMap<String, String>,
}

/// The entries of docs/configuration.md: `## \`[table]\`` sections, `### \`key\``
/// entries, and `- **Label:** value` lines.
fn entries(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            table = h
                .trim()
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .map(|t| t.trim_matches(|c| c == '[' || c == ']').to_owned());
        } else if let Some(h) = line.strip_prefix("### ") {
            if let Some(t) = &table {
                let key = h.trim().trim_matches('`').to_owned();
                out.push(Entry { table: t.clone(), key, fields: BTreeMap::new() });
            }
        } else if let (Some(rest), Some(e)) = (line.strip_prefix("- **"), out.last_mut())
            && table.is_some()
            && let Some((label, value)) = rest.split_once(":** ")
        {
            e.fields.entry(label.to_owned()).or_insert_with(|| value.trim().to_owned());
        }
    }
    out
}

fn code_keys(table: &str) -> &'static [&'static str] {
    match table {
        "daemon" => DAEMON_KEYS,
        "feed" => FEED_KEYS,
        "topic" => TOPIC_KEYS,
        "websub" => WEBSUB_KEYS,
        other => panic!("docs/configuration.md documents a table [{other}] the code has not"),
    }
}

#[test]
fn the_configuration_reference_documents_every_key_and_no_other() {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let entries = entries(&text);
    let mut problems = Vec::new();
    for table in TABLES {
        let documented: Vec<&str> =
            entries.iter().filter(|e| e.table == *table).map(|e| e.key.as_str()).collect();
        for key in code_keys(table) {
            if !documented.contains(key) {
                problems.push(format!("[{table}] {key}: accepted by the code, missing from the reference"));
            }
        }
        for key in &documented {
            if !code_keys(table).contains(key) {
                problems.push(format!("[{table}] {key}: in the reference, refused by the code"));
            }
            if documented.iter().filter(|k| *k == key).count() > 1 {
                problems.push(format!("[{table}] {key}: documented twice"));
            }
        }
    }
    for e in &entries {
        code_keys(&e.table);
        for label in ["Type", "Default", "Applies to", "Example"] {
            if e.fields.get(label).is_none_or(|v| v.is_empty()) {
                problems.push(format!("[{}] {}: no '- **{label}:**' line", e.table, e.key));
            }
        }
        if let Some(stores) = e.fields.get("Applies to")
            && !["SQLite and PostgreSQL", "PostgreSQL", "SQLite"].contains(&stores.as_str())
        {
            problems.push(format!("[{}] {}: Applies to {stores:?}", e.table, e.key));
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md:\n{}", problems.join("\n"));
}

/// A config holding `example` in its table, with what the table needs around it.
fn config_with(table: &str, key: &str, example: &str, dir: &Path) -> String {
    let value: toml::Table = toml::from_str(example).unwrap_or_else(|e| panic!("{example}: not TOML: {e}"));
    let feeds_named: Vec<String> = match value.get("feeds") {
        Some(toml::Value::Array(a)) if table == "topic" => {
            a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    };
    let tags: Vec<String> = match value.get("tags") {
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let mut feeds = String::new();
    for id in &feeds_named {
        feeds.push_str(&format!("[[feed]]\nid = \"{id}\"\nurl = \"https://example.org/{id}\"\n\n"));
    }
    // A feed carrying the example's tags, for a topic that selects by tag.
    feeds.push_str(&format!(
        "[[feed]]\nid = \"tagged\"\nurl = \"https://example.org/tagged\"\ntags = {tags:?}\n\n"
    ));
    let with = |base: &[(&str, String)]| {
        let mut s = String::new();
        for (k, v) in base {
            if *k != key {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s.push_str(example);
        s.push('\n');
        s
    };
    match table {
        "daemon" => {
            let mut base = Vec::new();
            if key == "database_password_file" {
                base.push(("database", "\"postgres://feedsieve@db.internal/feedsieve\"".to_owned()));
                let file = value.get(key).and_then(|v| v.as_str()).unwrap_or("db.pass");
                let path = dir.join(file);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).unwrap();
                }
                std::fs::write(path, "secret\n").unwrap();
            }
            format!("[daemon]\n{}\n{feeds}", with(&base))
        }
        "feed" => {
            let mut base =
                vec![("id", "\"x\"".to_owned()), ("url", "\"https://example.org/feed\"".to_owned())];
            // Credentials come in pairs, from files that must exist.
            let secret = |file: &str| std::fs::write(dir.join(file), "secret\n").unwrap();
            let named = |default: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or(default).to_owned();
            match key {
                "username" => {
                    base.push(("password_file", "\"partner.pass\"".into()));
                    secret("partner.pass");
                }
                "password_file" => {
                    base.push(("username", "\"reader\"".into()));
                    secret(&named("partner.pass"));
                }
                "token_file" => secret(&named("partner.token")),
                _ => {}
            }
            format!("[[feed]]\n{}\n", with(&base))
        }
        "topic" => {
            format!("{feeds}[[topic]]\n{}", with(&[("id", "\"t\"".into()), ("query", "\"border\"".into())]))
        }
        "websub" => format!("[daemon]\nbase_url = \"https://feeds.example.org/\"\n\n[websub]\n{}", with(&[])),
        other => panic!("table {other}"),
    }
}

#[test]
fn every_example_in_the_configuration_reference_is_accepted() {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut refused = Vec::new();
    for e in entries(&text) {
        let Some(example) = e.fields.get("Example") else { continue };
        let example = example.trim_matches('`');
        assert!(
            example.split('=').next().is_some_and(|k| k.trim() == e.key),
            "[{}] {}: the example {example:?} sets another key",
            e.table,
            e.key
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedsieve.toml");
        let text = config_with(&e.table, &e.key, example, dir.path());
        if let Err(err) = config::parse(&text, &path) {
            refused.push(format!("[{}] {example}: {err}\n--- the config:\n{text}", e.table));
        }
    }
    assert!(refused.is_empty(), "examples the code refuses:\n{}", refused.join("\n\n"));
}

/// Text files of the repository, outside build output and local state.
fn repository_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let skip = name.starts_with('.') && name != ".ci"
                || name.starts_with("target")
                || ["out", "demo-data", "corpus", "__pycache__", ".venv"].contains(&name.as_str());
            if !skip {
                repository_files(&path, out);
            }
        } else if ["md", "rs", "py", "sh", "toml", "service", "txt"]
            .iter()
            .any(|x| path.extension().is_some_and(|e| e == *x))
            || path.parent().and_then(Path::file_name).is_some_and(|p| p == "scripts" || p == ".ci")
        {
            out.push(path);
        }
    }
}

/// No file of the repository names a folder outside it or a path of a build machine, and no
/// Markdown file links to a file the repository does not have.
#[test]
fn the_documents_refer_only_to_the_repository() {
    let mut files = Vec::new();
    repository_files(&root(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("docs/configuration.md")) && files.len() > 50, "{files:?}");
    // Written in pieces, so that this file does not name them either.
    let outside =
        [concat!("sha", "red", "/SPEC.md"), concat!("../", "sha", "red", "/"), concat!("/", "wo", "rk/")];
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for bad in outside {
            if text.contains(bad) {
                problems.push(format!("{}: names {bad}", file.display()));
            }
        }
        if file.extension().is_none_or(|e| e != "md") {
            continue;
        }
        // Relative Markdown links: [text](path) with no scheme, checked on disk.
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.contains(' ')
            {
                continue;
            }
            let path = file.parent().unwrap().join(target);
            if !path.exists() {
                problems
                    .push(format!("{}: links to {target}, which is not in the repository", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
