//! The command line: clap definitions, human and `--json` output, progress.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage or config error. Errors are
//! printed with their causes; config problems one per line as `file:line:col: msg`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::{self, Config, ConfigError};
use crate::curate::{
    self,
    query::{self, Query},
};
use crate::daemon::{self, Pipeline};
use crate::model::{Database, PollOutcome};
use crate::model::{FeedRow, TopicFilter, from_ts, rows_by_id};
use crate::publish::Format;
use crate::store::{Store, StoreHandle};

mod db;
mod manage;

use crate::daemon::load_config as load;

/// `feedsieve --version`: the version and the commit built from (see build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FEEDSIEVE_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(name = "feedsieve", version = VERSION, about = "Feed aggregator: poll feeds, curate topics, republish them")]
pub struct Cli {
    /// Config file [default: $FEEDSIEVE_CONFIG, $XDG_CONFIG_HOME/feedsieve/feedsieve.toml,
    /// /etc/feedsieve/feedsieve.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: poll on schedule, keep topics current, serve HTTP. SIGHUP reloads the
    /// config, SIGTERM/SIGINT stop it.
    Run {
        /// Listen on this address instead of the config's `listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// This node's name among the nodes sharing a PostgreSQL database [default:
        /// host name and process id].
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Validate the config; every problem as file:line:col: message (exit 2 if invalid).
    Check,
    /// One pass over all (or the named) feeds, then regenerate topics and print a summary.
    Poll {
        /// Only this feed (repeatable).
        #[arg(long = "feed", value_name = "ID")]
        feeds: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a topic feed to stdout.
    Export {
        topic: String,
        #[arg(long, default_value = "atom", value_parser = ["atom", "rss", "json"])]
        format: String,
    },
    /// Feeds with their health, items stored, topic sizes.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Topics: list them, or preview what one matches.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Feeds: add, remove, list with health.
    #[command(subcommand)]
    Feed(manage::FeedCommand),
    /// Subscriptions in and out as OPML 2.0.
    #[command(subcommand)]
    Opml(manage::OpmlCommand),
    /// Whole databases: copy one store into another (SQLite or PostgreSQL).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a folder.
    Man {
        /// Write feedsieve.1 and a page per subcommand (feedsieve-run.1, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// The configured topics and their sizes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// What a topic (or a query not yet in the config) matches now, with scores.
    Preview(PreviewArgs),
    /// Add a topic to the config file (try its query with `topic preview --query` first).
    Add(manage::TopicAddArgs),
    /// Remove a topic from the config file.
    Remove { id: String },
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// A configured topic.
    #[arg(required_unless_present = "query", conflicts_with = "query")]
    pub id: Option<String>,
    /// A query to try (FTS5 syntax).
    #[arg(long)]
    pub query: Option<String>,
    /// With --query: what to leave out.
    #[arg(long, requires = "query")]
    pub exclude: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

/// An error that is the user's to fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How the daemon tunes glibc's malloc, which would otherwise keep memory it no
/// longer needs between polls (10,000 feeds, 60 s idle after a first pass that stored
/// 200,000 items):
///
/// - One arena per CPU instead of eight: threads that parse in turn reuse the same few
///   arenas rather than each keeping freed memory in its own (42 MiB resident with the
///   default, 36 MiB with this, before the change below).
/// - A fixed 128 KiB threshold for serving allocations with their own mapping. glibc
///   starts at 128 KiB but raises the threshold to the size of each such block freed,
///   up to 32 MiB, so after a pass that read large feed bodies, buffers of that size
///   come from the arenas, and what they leave between small live blocks stays
///   resident (47 MiB resident with the raised threshold, 37 MiB with it fixed).
///
/// One-shot commands keep glibc's defaults: with two arenas for the parsing threads,
/// the runtime and the writer, a cold poll of 20,000 items spent 23 % more CPU time
/// (5.68 s instead of 4.66, much of it system time contending for arena locks) to peak
/// at 39 MiB instead of 46. glibc's own settings in the environment (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`, or either in `GLIBC_TUNABLES`) override these.
fn tune_malloc_for_daemon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let set = |var: &str, tunable: &str| std::env::var_os(var).is_some() || tunables.contains(tunable);
        if !set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
            let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
            let arenas = libc::c_int::try_from(cpus.max(2)).unwrap_or(libc::c_int::MAX);
            // SAFETY: called before any other thread exists; mallopt only sets a glibc
            // tuning value.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
        if !set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // Behave like other command-line tools when the reader of stdout goes away
        // (`feedsieve export x | head`): end quietly instead of panicking on EPIPE.
        // Not for the daemon, which must outlive any reader of its logs.
        // SAFETY: no other thread exists yet; this only resets a signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    } else {
        tune_malloc_for_daemon();
    }
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let usage =
                e.downcast_ref::<ConfigError>().is_some_and(|c| matches!(c, ConfigError::Invalid { .. }))
                    || e.downcast_ref::<UsageError>().is_some();
            match e.downcast_ref::<ConfigError>() {
                Some(c @ ConfigError::Invalid { .. }) => eprintln!("{c}"),
                _ => eprintln!("error: {e:#}"),
            }
            if usage { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,feedsieve=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs a parsed command line.
///
/// # Errors
/// Config problems as [`ConfigError`], usage problems as [`UsageError`], anything else
/// as a runtime failure.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match cli.command {
        Command::Run { listen, node } => {
            let mut config = load(&path)?;
            if let Some(addr) = listen {
                config.daemon.listen_on(addr);
                if matches!(config.daemon.database, Database::Postgres(_)) && !config.daemon.base_url_set {
                    tracing::warn!(
                        "--listen {addr} without base_url in {}: this node's feeds link to {}; set base_url to \
                         the address readers use, or nodes listening on other addresses serve other bytes",
                        config.path.display(),
                        config.daemon.base_url
                    );
                }
            }
            if let Some(n) = &node
                && (n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control))
            {
                return Err(
                    UsageError(format!("--node {n:?}: a name of 1 to 200 printable characters")).into()
                );
            }
            runtime()?.block_on(run_daemon(config, node))
        }
        Command::Check => check(&path),
        Command::Poll { feeds, json } => {
            let config = load(&path)?;
            runtime()?.block_on(poll(config, feeds, json))
        }
        Command::Export { topic, format } => export(&load(&path)?, &topic, &format),
        Command::Status { json } => status(&load(&path)?, json),
        Command::Topic(TopicCommand::List { json }) => topic_list(&load(&path)?, json),
        Command::Topic(TopicCommand::Preview(args)) => preview(&load(&path)?, &args),
        Command::Topic(TopicCommand::Add(args)) => manage::topic_add(&path, args),
        Command::Topic(TopicCommand::Remove { id }) => manage::topic_remove(&path, &id),
        Command::Feed(cmd) => manage::feed(&path, cmd),
        Command::Opml(cmd) => manage::opml(&path, cmd),
        Command::Db(cmd) => db::db(&path, cmd),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "feedsieve", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => clap_mangen::generate_to(cmd, &dir)
                    .with_context(|| format!("writing the man pages into {}", dir.display()))?,
                None => {
                    clap_mangen::Man::new(cmd)
                        .render(&mut std::io::stdout())
                        .context("writing the man page")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// `feedsieve run`: binds the listener, connects SIGHUP to reload and SIGTERM/SIGINT
/// to a graceful stop, and runs the daemon.
async fn run_daemon(config: Config, node: Option<String>) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = config.daemon.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = reload_tx.try_send(()); }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        stop.cancel();
    });
    let node = node.unwrap_or_else(daemon::Node::default_name);
    daemon::run(config, listener, daemon::Control { reload: reload_rx, shutdown, node }).await?;
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    for w in &config.warnings {
        println!("{w} (warning)");
    }
    println!("{}: ok ({} feeds, {} topics)", path.display(), config.feeds.len(), config.topics.len());
    Ok(ExitCode::SUCCESS)
}

async fn poll(config: Config, only: Vec<String>, json: bool) -> anyhow::Result<ExitCode> {
    for id in &only {
        if config.feed(id).is_none() {
            return Err(UsageError(format!("no feed '{id}' in {}", config.path.display())).into());
        }
    }
    let feeds: Vec<_> = config
        .feeds
        .iter()
        .filter(|f| if only.is_empty() { f.enabled } else { only.contains(&f.id) })
        .cloned()
        .collect();
    let store = Store::open(&config.daemon.database)?;
    let (handle, writer) = StoreHandle::spawn(store).context("cannot start the database writer")?;
    let config = Arc::new(config);
    let pipeline = Arc::new(Pipeline::new(config.clone(), handle)?);
    daemon::sync_feeds(&pipeline).await?;
    let bar = progress_bar(feeds.len() as u64);
    let started = std::time::Instant::now();
    let result = daemon::poll(&pipeline, feeds, |id, outcome| {
        if let Some(b) = &bar {
            b.set_message(id.to_owned());
            b.inc(1);
            if let PollOutcome::Failed { error } = outcome {
                b.println(format!("{id}: {error}"));
            }
        }
    })
    .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let pruned = match &result {
        Ok(_) => daemon::maintain(&pipeline).await?,
        Err(_) => None,
    };
    drop(pipeline);
    // The writer thread ends once every handle is gone; wait so the database is closed.
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    let crate::daemon::PassResult { summary, skipped, published } = result?;
    let changes = published.changes;
    let elapsed = started.elapsed();
    if json {
        let topics: Vec<_> =
            changes.iter().map(|c| json!({"id": c.topic_id, "matched": c.matched})).collect();
        let out = json!({
            "feeds": summary.feeds, "fetched": summary.fetched, "not_modified": summary.not_modified,
            "failed": summary.failed, "new": summary.new_items, "updated": summary.updated_items,
            "failures": summary.failures.iter().map(|(id, e)| json!({"id": id, "error": e})).collect::<Vec<_>>(),
            "topics": topics, "seconds": elapsed.as_secs_f64(), "skipped": skipped,
        });
        println!("{out}");
    } else {
        println!(
            "{} feeds: {} fetched, {} not modified, {} failed; {} new items, {} updated ({:.2}s)",
            summary.feeds,
            summary.fetched,
            summary.not_modified,
            summary.failed,
            summary.new_items,
            summary.updated_items,
            elapsed.as_secs_f64()
        );
        for (id, e) in &summary.failures {
            println!("  failed: {id}: {e}");
        }
        if skipped > 0 {
            println!("  skipped {skipped} feeds another node is polling");
        }
        if let Some(p) = pruned.filter(|p| p.items > 0) {
            println!("  retention: pruned {} items and {} stories", p.items, p.stories);
        }
        for c in &changes {
            if c.matched > 0 || c.backfilled {
                println!(
                    "  topic {}: {} matched{}",
                    c.topic_id,
                    c.matched,
                    if c.backfilled { " (backfilled)" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || len < 2 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let style =
        indicatif::ProgressStyle::with_template("{spinner} polling [{bar:30}] {pos}/{len} {wide_msg}")
            .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    Some(bar)
}

/// The database for reading, with a hint when no poll has created it yet.
fn open_for_reading(config: &Config) -> anyhow::Result<Option<Store>> {
    let path = &config.daemon.database;
    if path.is_missing_file() {
        return Ok(None);
    }
    Ok(Some(Store::open_read_only(path)?))
}

fn export(config: &Config, topic: &str, format: &str) -> anyhow::Result<ExitCode> {
    let Some(format) = Format::from_extension(format) else {
        bail!(UsageError(format!("unknown format '{format}'")))
    };
    if config.topic(topic).is_none() {
        let known: Vec<_> = config.topics.iter().map(|t| t.id.as_str()).collect();
        return Err(UsageError(format!(
            "no topic '{topic}' in {} (topics: {})",
            config.path.display(),
            known.join(", ")
        ))
        .into());
    }
    let store = match open_for_reading(config)? {
        Some(s) => s,
        None => Store::open_in_memory()?,
    };
    let rendered = daemon::render_topic(&store, config, topic, chrono::Utc::now())?.unwrap_or_default();
    let body = rendered.into_iter().find(|(f, _)| *f == format).map(|(_, r)| r.body).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    out.write_all(&body)?;
    if !body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `[feed, ...]` as [`feed_json`] shows each, one at a time: a tree of JSON
/// values for 100,000 feeds took over 500 MiB.
fn write_feeds_json(
    out: &mut impl Write,
    config: &Config,
    row: impl Fn(&str) -> FeedRow,
) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (i, f) in config.feeds.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &feed_json(config, f, &row(&f.id)))?;
    }
    out.write_all(b"]")
}

/// A feed and its stored health as `status --json` and `feed list --json` show it.
fn feed_json(config: &Config, f: &crate::config::FeedConfig, r: &FeedRow) -> serde_json::Value {
    json!({
        "id": f.id, "url": crate::model::redacted_url(&f.url), "tags": f.tags,
        "schedule": f.schedule.as_ref().unwrap_or(&config.daemon.schedule).to_string(), "enabled": f.enabled,
        "next_due": rfc3339(r.next_due), "last_fetch": rfc3339(r.last_fetch), "last_status": r.last_status,
        "error": r.error, "items": r.items, "failures": r.failures, "full_text": f.full_text,
        "article_failures": r.article_failures, "article_error": r.article_error,
        "moved_to": r.moved_to.as_deref().and_then(crate::model::redacted_url_text),
    })
}

fn rfc3339(t: Option<i64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(from_ts(t).to_rfc3339()))
}

fn status(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let store = open_for_reading(config)?;
    let rows = match &store {
        Some(s) => s.feeds()?,
        None => Vec::new(),
    };
    let sizes = match &store {
        Some(s) => s.topic_sizes()?,
        None => Default::default(),
    };
    let total = match &store {
        Some(s) => s.item_count()?,
        None => 0,
    };
    let by_id = rows_by_id(&rows);
    let row = |id: &str| by_id.get(id).map(|r| (*r).clone()).unwrap_or_default();
    if as_json {
        let topics: Vec<_> = config
            .topics
            .iter()
            .map(|t| json!({"id": t.id, "items": sizes.get(&t.id).copied().unwrap_or(0)}))
            .collect();
        // The keys in the order serde_json sorts them, as for one json! object.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        out.write_all(b"{\"feeds\":")?;
        write_feeds_json(&mut out, config, row)?;
        write!(out, ",\"items_total\":{total}")?;
        if matches!(config.daemon.database, Database::Postgres(_)) {
            // The nodes sharing the database, each with the feeds it holds claims on.
            let now = chrono::Utc::now().timestamp();
            let nodes = match &store {
                Some(s) => s.nodes(now)?,
                None => Vec::new(),
            };
            let nodes: Vec<_> = nodes
                .iter()
                .map(|n| json!({"node": n.node, "last_seen": rfc3339(Some(n.last_seen)), "claimed": n.claimed}))
                .collect();
            write!(out, ",\"nodes\":{}", serde_json::Value::from(nodes))?;
        }
        writeln!(out, ",\"topics\":{}}}", serde_json::Value::from(topics))?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if store.is_none() {
        println!("no database yet at {} (run `feedsieve poll`)", config.daemon.database);
    }
    println!("{:<24} {:>6} {:>6}  {:<20}  error", "feed", "status", "items", "last fetch");
    for f in &config.feeds {
        let r = row(&f.id);
        let last =
            r.last_fetch.map(|t| from_ts(t).format("%Y-%m-%d %H:%M").to_string()).unwrap_or("never".into());
        let st = r.last_status.map(|s| s.to_string()).unwrap_or("-".into());
        println!("{:<24} {:>6} {:>6}  {:<20}  {}", f.id, st, r.items, last, r.problem().unwrap_or_default());
    }
    println!("{total} items stored");
    for t in &config.topics {
        println!("topic {}: {} stories", t.id, sizes.get(&t.id).copied().unwrap_or(0));
    }
    if let Some(s) = &store {
        for n in s.nodes(chrono::Utc::now().timestamp())? {
            println!(
                "node {}: last seen {}, claims on {} feeds",
                n.node,
                from_ts(n.last_seen).format("%Y-%m-%d %H:%M:%S"),
                n.claimed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn topic_list(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let sizes = match open_for_reading(config)? {
        Some(s) => s.topic_sizes()?,
        None => Default::default(),
    };
    if as_json {
        let topics: Vec<_> = config
            .topics
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "title": t.title, "description": t.description,
                    "query": t.query.as_ref().map(|q| q.to_string()),
                    "exclude": t.exclude.as_ref().map(|q| q.to_string()),
                    "feeds": config.topic_feeds(t).map(|f| f.id.as_str()).collect::<Vec<_>>(),
                    "tags": t.tags, "limit": t.limit, "max_age": t.max_age.map(crate::schedule::format_duration),
                    "items": sizes.get(&t.id).copied().unwrap_or(0),
                })
            })
            .collect();
        println!("{}", json!({"topics": topics}));
        return Ok(ExitCode::SUCCESS);
    }
    for t in &config.topics {
        let n = config.topic_feeds(t).count();
        println!("{} — {} ({} stories, {} feeds)", t.id, t.title, sizes.get(&t.id).copied().unwrap_or(0), n);
        if let Some(q) = &t.query {
            println!("    query:   {q}");
        }
        if let Some(q) = &t.exclude {
            println!("    exclude: {q}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a query given on the command line, pointing at the error.
fn parse_cli_query(flag: &str, q: &str) -> anyhow::Result<Query> {
    query::parse(q).map_err(|e| {
        let caret = format!("{}^", " ".repeat(e.offset));
        UsageError(format!("bad {flag}: {}\n  {q}\n  {caret}", e.message)).into()
    })
}

fn preview(config: &Config, args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let (label, filter, terms) = match (&args.id, &args.query) {
        (Some(id), _) => {
            let Some(t) = config.topic(id) else {
                return Err(UsageError(format!("no topic '{id}' in {}", config.path.display())).into());
            };
            let terms = t.query.as_ref().map(Query::positive_terms).unwrap_or_default();
            (id.clone(), curate::filter_for(config, t), terms)
        }
        (None, Some(q)) => {
            let expr = parse_cli_query("--query", q)?;
            let exclude = args.exclude.as_deref().map(|e| parse_cli_query("--exclude", e)).transpose()?;
            let terms = expr.positive_terms();
            (format!("--query {q}"), TopicFilter { query: Some(expr), exclude, feeds: None }, terms)
        }
        (None, None) => return Err(UsageError("give a topic id or --query".into()).into()),
    };
    let rows = match open_for_reading(config)? {
        Some(s) => s
            .preview(&filter, args.limit)
            .map_err(|e| UsageError(format!("the store rejects the query: {}", crate::error_chain(&e))))?,
        None => Vec::new(),
    };
    if args.json {
        let matches: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"feed": r.feed_id, "title": r.title, "link": r.link, "score": r.score,
                       "snippet": r.snippet, "date": rfc3339(Some(r.date)), "sources": r.sources})
            })
            .collect();
        println!("{}", json!({"topic": label, "terms": terms, "matches": matches}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{label}: {} matches shown (terms: {})", rows.len(), terms.join(", "));
    for r in &rows {
        println!(
            "{:>7.2}  {}  {:<16} {}{}",
            r.score,
            from_ts(r.date).format("%Y-%m-%d"),
            r.feed_id,
            r.title,
            if r.sources > 1 { format!("  [{} sources]", r.sources) } else { String::new() }
        );
        if !r.snippet.is_empty() {
            println!("         {}", r.snippet);
        }
    }
    Ok(ExitCode::SUCCESS)
}
