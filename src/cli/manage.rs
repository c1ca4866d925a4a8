//! `feed add|remove|list` and `opml import|export`: managing subscriptions without
//! opening the config file in an editor, and without mangling it (see
//! [`crate::config::edit`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use url::Url;

use super::{UsageError, load, open_for_reading, progress_bar, runtime, write_feeds_json};
use crate::config::edit::{ConfigEdit, FeedOptions, NewFeed, NewTopic, derive_id};
use crate::config::{self, Config, FeedConfig, opml};
use crate::fetch::{FetchSettings, Fetched, Fetcher, Request, Validators};
use crate::model::{from_ts, redacted_url, rows_by_id};
use crate::store::Store;
use crate::{dedup, parse};

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Add a feed to the config file. An HTML page's advertised feed is found.
    Add {
        /// The feed, or a web page that advertises it.
        url: String,
        /// Id of the feed [default: from its title, else its host].
        #[arg(long)]
        id: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Poll schedule (5-field cron, @hourly, "every 20m") [default: the daemon's].
        #[arg(long)]
        schedule: Option<String>,
        /// When the page advertises several feeds: the one to take (1, 2, …).
        #[arg(long, value_name = "N")]
        pick: Option<usize>,
        /// Do not fetch the URL: add it as given (needs no network).
        #[arg(long)]
        no_fetch: bool,
        #[command(flatten)]
        options: Box<FeedOptionArgs>,
    },
    /// Remove a feed from the config file (its stored items are kept unless --purge).
    Remove {
        id: String,
        /// Also delete everything stored from the feed.
        #[arg(long)]
        purge: bool,
    },
    /// The feeds with their health.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `feed add`'s per-feed request options, as in the config file (see its reference).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FeedOptionArgs {
    /// A header sent with the feed's requests, "Name: value" (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Instead of feedsieve's own User-Agent.
    #[arg(long, value_name = "TEXT")]
    pub user_agent: Option<String>,
    /// HTTP Basic user name (with --password-file).
    #[arg(long, value_name = "NAME", requires = "password_file")]
    pub username: Option<String>,
    /// File holding the HTTP Basic password (relative: to $CREDENTIALS_DIRECTORY, else the config folder).
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<String>,
    /// File holding a bearer token (relative as --password-file).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["username", "password_file"])]
    pub token_file: Option<String>,
    /// The feed's proxy: http://, https://, socks5://, socks5h:// URL, or "none".
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Fetch each new item's page and keep its main text as the item's content.
    #[arg(long)]
    pub full_text: bool,
}

impl FeedOptionArgs {
    fn options(&self) -> Result<FeedOptions, UsageError> {
        let mut headers = Vec::new();
        for h in &self.headers {
            let Some((name, value)) = h.split_once(':') else {
                return Err(UsageError(format!("--header '{h}': write it as \"Name: value\"")));
            };
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(FeedOptions {
            headers,
            user_agent: self.user_agent.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            token_file: self.token_file.clone(),
            proxy: self.proxy.clone(),
            full_text: self.full_text,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum OpmlCommand {
    /// Add the subscriptions of an OPML file to the config file (folders become tags).
    Import { file: PathBuf },
    /// Print the configured feeds as OPML 2.0.
    Export,
}

const APPLY_HINT: &str = "A running daemon applies it on reload (`systemctl reload feedsieve`, or SIGHUP), \
     or by itself with `watch_config = true` in [daemon].";

/// The form in which two feed URLs are compared: canonical for the web, as-is for files.
fn comparable(url: &Url) -> String {
    dedup::canonical_link(url.as_str()).unwrap_or_else(|| url.to_string())
}

fn already(config: &Config, url: &Url) -> Option<String> {
    let want = comparable(url);
    config.feeds.iter().find(|f| comparable(&f.url) == want).map(|f| f.id.clone())
}

/// # Errors
/// Usage and config errors (exit 2) and fetch or store failures (exit 1).
pub fn feed(path: &Path, cmd: FeedCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FeedCommand::Add { url, id, tags, schedule, pick, no_fetch, options } => {
            add(path, &url, id, tags, schedule, pick, no_fetch, &options)
        }
        FeedCommand::Remove { id, purge } => remove(path, &id, purge),
        FeedCommand::List { json } => list(&load(path)?, json),
    }
}

#[allow(clippy::too_many_arguments)]
fn add(
    path: &Path,
    url: &str,
    id: Option<String>,
    tags: Vec<String>,
    schedule: Option<String>,
    pick: Option<usize>,
    no_fetch: bool,
    options: &FeedOptionArgs,
) -> anyhow::Result<ExitCode> {
    let options = options.options()?;
    let config = load(path)?;
    if let Some(s) = &schedule {
        crate::schedule::Schedule::parse(s).map_err(|e| UsageError(format!("--schedule: {e}")))?;
    }
    if let Some(id) = &id {
        config::check_id(id).map_err(|e| UsageError(format!("--id '{id}': {e}")))?;
        if config.feed(id).is_some() {
            return Err(UsageError(format!("a feed with id '{id}' is already configured")).into());
        }
    }
    let given = config::feed_url(url.trim(), &config::folder_of(&config.path)).map_err(UsageError)?;
    let shown = redacted_url(&given);
    if let Some(other) = already(&config, &given) {
        return Err(UsageError(format!("{shown} is already configured as feed '{other}'")).into());
    }
    // The feed as the file will have it, options and secret files checked, before
    // anything is fetched with them.
    let trial_id = id.clone().unwrap_or_else(|| "feed-being-added".to_owned());
    let new_feed = |id: String, url: String| NewFeed {
        id,
        url,
        tags: tags.clone(),
        schedule: schedule.clone(),
        enabled: true,
        options: options.clone(),
    };
    let mut trial = ConfigEdit::open(path)?;
    trial.add_feed(&new_feed(trial_id.clone(), url.trim().to_owned()));
    let trial = config::parse(&trial.text(), path)?;
    let Some(feed) = trial.feed(&trial_id) else {
        anyhow::bail!("the feed added for a trial is missing from the config")
    };
    let (url_text, title) = if no_fetch {
        (url.trim().to_owned(), None)
    } else {
        let (found, title) = runtime()?.block_on(discover(&config, feed, pick))?;
        if let Some(other) = already(&config, &found) {
            return Err(UsageError(format!(
                "{} is already configured as feed '{other}'",
                redacted_url(&found)
            ))
            .into());
        }
        if found != given {
            println!("{shown} is a web page; it advertises {}", redacted_url(&found));
        }
        (if found == given { url.trim().to_owned() } else { found.to_string() }, title)
    };
    let taken: Vec<&str> = config.feeds.iter().map(|f| f.id.as_str()).collect();
    let id = id.unwrap_or_else(|| derive_id(title.as_deref(), &url_text, &taken));
    let mut edit = ConfigEdit::open(path)?;
    edit.add_feed(&new_feed(id.clone(), url_text.clone()));
    edit.save(config::parse)?;
    println!(
        "added feed '{id}' ({}){} to {}",
        config::feed_url(&url_text, &config::folder_of(path))
            .map_or_else(|_| "?".to_owned(), |u| redacted_url(&u)),
        title.map(|t| format!(" \"{t}\"")).unwrap_or_default(),
        path.display()
    );
    println!("{APPLY_HINT}");
    Ok(ExitCode::SUCCESS)
}

/// Fetches `url`: a feed is taken as it is; an HTML page's advertised feed is taken
/// if it advertises one (or `pick` says which). Returns the feed URL and its title.
async fn discover(
    config: &Config,
    feed: &FeedConfig,
    pick: Option<usize>,
) -> anyhow::Result<(Url, Option<String>)> {
    let d = &config.daemon;
    let fetcher = Fetcher::new(FetchSettings {
        timeout: d.timeout,
        max_bytes: d.max_feed_bytes,
        concurrency: 1,
        per_host: 1,
        own_address: None,
        proxy: d.proxy.clone(),
    })?;
    let request = Request::of(feed);
    let url = &feed.url;
    let get = |u: Url| {
        let fetcher = &fetcher;
        async move {
            let shown = redacted_url(&u);
            match fetcher.fetch_with(&u, &Validators::default(), &request).await {
                Ok(Fetched::Body(b)) => Ok(b),
                Ok(Fetched::NotModified { .. }) => {
                    anyhow::bail!("{shown} answered 304 to an unconditional request")
                }
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("cannot fetch {shown} (use --no-fetch to add it without checking)"))),
            }
        }
    };
    let body = get(url.clone()).await?;
    let feed_url_given = url.clone();
    let url = redacted_url(url);
    let now = chrono::Utc::now();
    match parse::parse_response(&body.bytes, body.content_type.as_deref(), &body.final_url, now) {
        Ok(feed) => return Ok((feed_url_given.clone(), feed.title)),
        Err(parse::ParseError::NotAFeed(_)) => {}
        Err(e) => return Err(UsageError(format!("{url} is not a usable feed: {e}")).into()),
    }
    let found = parse::advertised_feeds(&body.bytes, &body.final_url);
    let chosen = match (found.len(), pick) {
        (0, _) => {
            return Err(UsageError(format!("{url} is neither a feed nor a page that advertises one")).into());
        }
        (_, Some(n)) if n >= 1 && n <= found.len() => &found[n - 1],
        (_, Some(n)) => {
            return Err(UsageError(format!("--pick {n}: the page advertises {} feeds", found.len())).into());
        }
        (1, None) => &found[0],
        (_, None) => {
            let mut msg = format!("{url} advertises {} feeds; choose one with --pick N:", found.len());
            for (i, a) in found.iter().enumerate() {
                msg.push_str(&format!(
                    "\n  {}. {} ({}{})",
                    i + 1,
                    a.url,
                    a.media_type,
                    a.title.as_deref().map(|t| format!(", \"{t}\"")).unwrap_or_default()
                ));
            }
            return Err(UsageError(msg).into());
        }
    };
    let feed_url = Url::parse(&chosen.url).context("advertised URL")?;
    let body = get(feed_url.clone()).await?;
    let feed = parse::parse_response(&body.bytes, body.content_type.as_deref(), &body.final_url, now)
        .map_err(|e| UsageError(format!("{feed_url}, advertised by {url}, is not a usable feed: {e}")))?;
    Ok((feed_url, feed.title.or_else(|| chosen.title.clone())))
}

fn remove(path: &Path, id: &str, purge: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let mut edit = ConfigEdit::open(path)?;
    if !edit.remove_feed(id) {
        return Err(UsageError(format!("no feed '{id}' in {}", path.display())).into());
    }
    if let Some(t) = config.topics.iter().find(|t| t.feeds.iter().any(|f| f == id)) {
        return Err(UsageError(format!(
            "topic '{}' names feed '{id}' in its `feeds`: remove it there first (nothing was changed)",
            t.id
        ))
        .into());
    }
    edit.save(config::parse)?;
    println!("removed feed '{id}' from {}", path.display());
    if purge {
        let db = &config.daemon.database;
        if !db.is_missing_file() {
            let mut store = Store::open(db)?;
            let n = store.purge_feed(id)?;
            println!("deleted {n} stored items of '{id}' from {db}");
        }
    } else {
        println!("its stored items are kept (use --purge to delete them)");
    }
    println!("{APPLY_HINT}");
    Ok(ExitCode::SUCCESS)
}

fn list(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let rows = match open_for_reading(config)? {
        Some(s) => s.feeds()?,
        None => Vec::new(),
    };
    let by_id = rows_by_id(&rows);
    let row = |id: &str| by_id.get(id).map(|r| (*r).clone()).unwrap_or_default();
    let schedule =
        |f: &config::FeedConfig| f.schedule.as_ref().unwrap_or(&config.daemon.schedule).to_string();
    if as_json {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        out.write_all(b"{\"feeds\":")?;
        write_feeds_json(&mut out, config, row)?;
        out.write_all(b"}\n")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: Option<i64>| t.map_or("-".to_owned(), |t| from_ts(t).format("%Y-%m-%d %H:%M").to_string());
    println!(
        "{:<24} {:>6} {:>6}  {:<16}  {:<16}  {:<14} error",
        "feed", "status", "items", "last fetch", "next due", "schedule"
    );
    for f in &config.feeds {
        let r = row(&f.id);
        let status = r.last_status.map_or("-".to_owned(), |s| s.to_string());
        let mut error = r.problem().unwrap_or_default();
        if let Some(m) = &r.moved_to {
            error = format!("moved to {m}{}{error}", if error.is_empty() { "" } else { "; " });
        }
        if !f.enabled {
            error = format!("(disabled) {error}");
        }
        println!(
            "{:<24} {:>6} {:>6}  {:<16}  {:<16}  {:<14} {}",
            f.id,
            status,
            r.items,
            when(r.last_fetch),
            when(r.next_due),
            schedule(f),
            error
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// # Errors
/// Usage and config errors (exit 2) and I/O failures (exit 1).
pub fn opml(path: &Path, cmd: OpmlCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OpmlCommand::Export => {
            print!("{}", opml::export(&load(path)?.feeds));
            Ok(ExitCode::SUCCESS)
        }
        OpmlCommand::Import { file } => import(path, &file),
    }
}

fn import(path: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let subs = opml::parse(&String::from_utf8_lossy(&text))
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let mut edit = ConfigEdit::open(path)?;
    let mut seen: Vec<String> = config.feeds.iter().map(|f| comparable(&f.url)).collect();
    let mut taken: Vec<String> = config.feeds.iter().map(|f| f.id.clone()).collect();
    let (mut added, mut duplicates) = (0, 0);
    let bar = progress_bar(subs.feeds.len() as u64);
    for o in &subs.feeds {
        if let Some(b) = &bar {
            b.inc(1);
        }
        let Ok(url) = Url::parse(&o.url) else { continue };
        let key = comparable(&url);
        if seen.contains(&key) {
            duplicates += 1;
            continue;
        }
        let schedule = o.schedule.clone().filter(|s| crate::schedule::Schedule::parse(s).is_ok());
        let taken_refs: Vec<&str> = taken.iter().map(String::as_str).collect();
        let id = derive_id(o.title.as_deref(), &o.url, &taken_refs);
        let tags: Vec<String> =
            o.tags.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        edit.add_feed(&NewFeed {
            id: id.clone(),
            url: o.url.clone(),
            tags,
            schedule,
            enabled: o.enabled,
            options: FeedOptions::default(),
        });
        seen.push(key);
        taken.push(id);
        added += 1;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if added > 0 {
        edit.save(config::parse)?;
    }
    println!(
        "imported {added} feeds from {} into {} ({duplicates} already configured or repeated, {} broken outlines skipped)",
        file.display(),
        path.display(),
        subs.broken
    );
    if added > 0 {
        println!("{APPLY_HINT}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct TopicAddArgs {
    /// Id of the topic (used in its URLs: /topics/ID.atom).
    pub id: String,
    /// FTS5 query (words, "phrases", prefix*, AND/OR/NOT, NEAR, title:).
    #[arg(long)]
    pub query: Option<String>,
    #[arg(long)]
    pub exclude: Option<String>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Only items of this feed (repeatable).
    #[arg(long = "feed", value_name = "ID")]
    pub feeds: Vec<String>,
    /// Only items of feeds with this tag (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Entries in the output [default: 50].
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only stories this recent, e.g. 30d.
    #[arg(long)]
    pub max_age: Option<String>,
}

/// # Errors
/// Usage and config errors (exit 2): the edited file is validated before writing.
pub fn topic_add(path: &Path, a: TopicAddArgs) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    if config.topic(&a.id).is_some() {
        return Err(UsageError(format!("a topic with id '{}' is already configured", a.id)).into());
    }
    let mut edit = ConfigEdit::open(path)?;
    edit.add_topic(&NewTopic {
        id: a.id.clone(),
        title: a.title,
        description: a.description,
        query: a.query,
        exclude: a.exclude,
        feeds: a.feeds,
        tags: a.tags,
        limit: a.limit,
        max_age: a.max_age,
    });
    // An invalid topic (a bad query, an unknown feed) is reported as `check` would,
    // pointing into the would-be file, and nothing is written.
    edit.save(config::parse)?;
    println!(
        "added topic '{}' to {}; its feed will be /topics/{}.atom (.rss, .json)",
        a.id,
        path.display(),
        a.id
    );
    println!("{APPLY_HINT}");
    Ok(ExitCode::SUCCESS)
}

/// # Errors
/// Usage and config errors (exit 2).
pub fn topic_remove(path: &Path, id: &str) -> anyhow::Result<ExitCode> {
    load(path)?;
    let mut edit = ConfigEdit::open(path)?;
    if !edit.remove_topic(id) {
        return Err(UsageError(format!("no topic '{id}' in {}", path.display())).into());
    }
    edit.save(config::parse)?;
    println!("removed topic '{id}' from {}", path.display());
    println!("{APPLY_HINT}");
    Ok(ExitCode::SUCCESS)
}
