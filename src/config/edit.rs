//! Editing the config file in place, for `feed add`, `feed remove` and `opml import`.
//!
//! The file is edited through `toml_edit`, so comments, order and formatting of
//! everything the edit does not touch stay as the operator wrote them. An edit is
//! validated as a whole config before it is written, and written atomically (a
//! temporary file in the same folder, fsync, rename): a failed or interrupted edit
//! leaves the old file.

use std::path::{Path, PathBuf};

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Config, ConfigError, Position, Problem};

/// A feed to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeed {
    pub id: String,
    pub url: String,
    pub tags: Vec<String>,
    pub schedule: Option<String>,
    pub enabled: bool,
    /// Per-feed request options, written as given (`check` validates them).
    pub options: FeedOptions,
}

/// What `feed add` may set beyond the basics (see the config reference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedOptions {
    pub headers: Vec<(String, String)>,
    pub user_agent: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub token_file: Option<String>,
    pub proxy: Option<String>,
    pub full_text: bool,
}

/// A topic to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub query: Option<String>,
    pub exclude: Option<String>,
    pub feeds: Vec<String>,
    pub tags: Vec<String>,
    pub limit: Option<usize>,
    pub max_age: Option<String>,
}

fn string_array(items: &[String]) -> Array {
    let mut a = Array::new();
    for i in items {
        a.push(i.as_str());
    }
    a
}

/// A config file opened for editing.
pub struct ConfigEdit {
    path: PathBuf,
    doc: DocumentMut,
}

impl ConfigEdit {
    /// # Errors
    /// If the file cannot be read or is not TOML.
    pub fn open(path: &Path) -> Result<ConfigEdit, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let doc = text.parse::<DocumentMut>().map_err(|e| ConfigError::Invalid {
            problems: vec![Problem {
                file: path.to_owned(),
                at: Position { line: 1, col: 1 },
                message: e.message().to_owned(),
            }],
        })?;
        Ok(ConfigEdit { path: path.to_owned(), doc })
    }

    /// Appends a `[[feed]]` table after the last one (before any `[[topic]]` that
    /// follows them).
    pub fn add_feed(&mut self, f: &NewFeed) {
        let mut t = Table::new();
        t["id"] = value(&f.id);
        t["url"] = value(&f.url);
        if !f.tags.is_empty() {
            t["tags"] = value(string_array(&f.tags));
        }
        if let Some(s) = &f.schedule {
            t["schedule"] = value(s);
        }
        if !f.enabled {
            t["enabled"] = value(false);
        }
        let o = &f.options;
        if !o.headers.is_empty() {
            let mut h = toml_edit::InlineTable::new();
            for (name, v) in &o.headers {
                h.insert(name, v.as_str().into());
            }
            t["headers"] = value(h);
        }
        for (key, v) in [
            ("user_agent", &o.user_agent),
            ("username", &o.username),
            ("password_file", &o.password_file),
            ("token_file", &o.token_file),
            ("proxy", &o.proxy),
        ] {
            if let Some(v) = v {
                t[key] = value(v.as_str());
            }
        }
        if o.full_text {
            t["full_text"] = value(true);
        }
        if let Some(feeds) = self.tables_mut("feed") {
            // Tables are laid out by position; sharing the last feed's position (a
            // stable sort keeps insertion order) puts the new one right after it.
            let last = feeds.iter().filter_map(Table::position).max();
            t.set_position(last);
            feeds.push(t);
        }
    }

    /// Appends a `[[topic]]` table at the end of the file.
    pub fn add_topic(&mut self, t: &NewTopic) {
        let mut table = Table::new();
        table["id"] = value(&t.id);
        for (key, v) in [
            ("title", &t.title),
            ("description", &t.description),
            ("query", &t.query),
            ("exclude", &t.exclude),
            ("max_age", &t.max_age),
        ] {
            if let Some(v) = v {
                table[key] = value(v.as_str());
            }
        }
        if !t.feeds.is_empty() {
            table["feeds"] = value(string_array(&t.feeds));
        }
        if !t.tags.is_empty() {
            table["tags"] = value(string_array(&t.tags));
        }
        if let Some(n) = t.limit {
            table["limit"] = value(n as i64);
        }
        if let Some(topics) = self.tables_mut("topic") {
            topics.push(table);
        }
    }

    /// Removes the `[[topic]]` with this id; `false` if there is none.
    pub fn remove_topic(&mut self, id: &str) -> bool {
        self.remove_table("topic", id)
    }

    /// Removes the `[[feed]]` with this id; `false` if there is none.
    pub fn remove_feed(&mut self, id: &str) -> bool {
        self.remove_table("feed", id)
    }

    /// Removes the `[[kind]]` table with this id; `false` if there is none.
    fn remove_table(&mut self, kind: &str, id: &str) -> bool {
        let Some(tables) = self.doc.get_mut(kind).and_then(Item::as_array_of_tables_mut) else {
            return false;
        };
        let before = tables.len();
        tables.retain(|t| t.get("id").and_then(Item::as_str) != Some(id));
        before != tables.len()
    }

    /// The `[[kind]]` array of tables, created if missing.
    fn tables_mut(&mut self, kind: &str) -> Option<&mut ArrayOfTables> {
        let item = self.doc.entry(kind).or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
        if !item.is_array_of_tables() {
            // Not an array of tables: such a config would not have loaded; start afresh
            // rather than fail.
            *item = Item::ArrayOfTables(ArrayOfTables::new());
        }
        item.as_array_of_tables_mut()
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// Validates the edited file with `check` (which parses it as a config and may
    /// add checks of its own) and writes it atomically.
    ///
    /// # Errors
    /// The problems `check` finds (nothing is written then), or the write error.
    pub fn save(
        &self,
        check: impl FnOnce(&str, &Path) -> Result<Config, ConfigError>,
    ) -> Result<Config, ConfigError> {
        let text = self.text();
        let config = check(&text, &self.path)?;
        crate::write_atomically(&self.path, text.as_bytes())
            .map_err(|source| ConfigError::Write { path: self.path.clone(), source })?;
        Ok(config)
    }
}

/// An id for a feed from its title (or, without one, its URL's host): lower-case
/// letters and digits joined by `-`, at most 40 characters, made unique against
/// `taken` with a numeric suffix.
pub fn derive_id(title: Option<&str>, url: &str, taken: &[&str]) -> String {
    let from_host = || {
        url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_start_matches("www.").to_owned()))
            .or_else(|| url.rsplit('/').next().map(str::to_owned))
            .unwrap_or_default()
    };
    let source = title.filter(|t| t.chars().any(char::is_alphanumeric)).map_or_else(from_host, str::to_owned);
    let mut id = String::new();
    for c in source.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
        if id.len() >= 40 {
            break;
        }
    }
    let id = id.trim_end_matches('-').to_owned();
    let id = if id.is_empty() { "feed".to_owned() } else { id };
    if !taken.contains(&id.as_str()) {
        return id;
    }
    (2..).map(|n| format!("{id}-{n}")).find(|c| !taken.contains(&c.as_str())).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# My feeds
[daemon]
listen = "127.0.0.1:8077"   # local only

# --- police ---
[[feed]]
id = "a"     # first
url = "https://a.example/feed"

[[feed]]
id = "b"
url = "https://b.example/feed"
tags = ["x"]

# Topics below
[[topic]]
id = "t"
query = 'border'
"#;

    fn edit(text: &str) -> ConfigEdit {
        let dir = std::env::temp_dir();
        ConfigEdit { path: dir.join("x.toml"), doc: text.parse().unwrap() }
    }

    #[test]
    fn adding_a_feed_keeps_comments_and_goes_after_the_last_feed() {
        let mut e = edit(FILE);
        e.add_feed(&NewFeed {
            id: "c".into(),
            url: "https://c.example/rss".into(),
            tags: vec!["news".into(), "wire".into()],
            schedule: Some("@hourly".into()),
            enabled: true,
            options: Default::default(),
        });
        let out = e.text();
        let expected_tail = "tags = [\"x\"]\n\n[[feed]]\nid = \"c\"\nurl = \"https://c.example/rss\"\ntags = [\"news\", \"wire\"]\nschedule = \"@hourly\"\n\n# Topics below\n[[topic]]";
        assert!(out.contains(expected_tail), "{out}");
        assert!(out.starts_with("# My feeds\n[daemon]\nlisten = \"127.0.0.1:8077\"   # local only\n\n# --- police ---\n[[feed]]\nid = \"a\"     # first\n"), "{out}");
        assert!(super::super::parse(&out, Path::new("/x.toml")).is_ok());
    }

    #[test]
    fn removing_a_feed_leaves_the_rest_as_written() {
        let mut e = edit(FILE);
        assert!(e.remove_feed("b"));
        assert!(!e.remove_feed("nope"));
        let out = e.text();
        assert!(!out.contains("b.example"));
        assert!(out.contains("id = \"a\"     # first"), "{out}");
        assert!(out.contains("# Topics below\n[[topic]]"), "{out}");
    }

    #[test]
    fn adding_to_a_file_without_feeds() {
        let mut e = edit("[daemon]\nlisten = \"127.0.0.1:1\" # here\n\n# the end\n");
        e.add_feed(&NewFeed {
            id: "x".into(),
            url: "https://x/".into(),
            tags: vec![],
            schedule: None,
            enabled: true,
            options: Default::default(),
        });
        // A comment after the last table stays at the end of the file.
        assert_eq!(
            e.text(),
            "[daemon]\nlisten = \"127.0.0.1:1\" # here\n\n[[feed]]\nid = \"x\"\nurl = \"https://x/\"\n\n# the end\n"
        );
    }

    #[test]
    fn ids_from_titles_and_hosts() {
        assert_eq!(
            derive_id(Some("INTERPOL News — Press Releases!"), "https://x/", &[]),
            "interpol-news-press-releases"
        );
        assert_eq!(derive_id(None, "https://www.frontex.europa.eu/feed.rss", &[]), "frontex-europa-eu");
        assert_eq!(derive_id(Some("  "), "https://a.example/", &["a-example"]), "a-example-2");
        assert_eq!(derive_id(Some("Ünïcode Wire"), "https://x/", &[]), "n-code-wire");
    }
}
