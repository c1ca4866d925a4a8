//! The daemon: wiring of the pipeline, the scheduler, the HTTP server, reloads and
//! stops. `feedsieve poll` uses the same [`poll`] pass as the scheduler.
//!
//! The library never installs signal handlers or binds sockets by itself: [`run`]
//! takes a bound listener and a [`Control`] (a reload channel and a shutdown token)
//! that the command line connects to SIGHUP and SIGTERM/SIGINT.
//!
//! Stop order: stop scheduling; let polls in flight finish within
//! [`STOP_DEADLINE`] (feeds not yet started are skipped; a poll cut off at the
//! deadline loses nothing, as each feed is one transaction); stop the server
//! gracefully; close the store last.

mod pipeline;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use pipeline::{
    Clock, Node, PRUNE_EVERY, PassResult, Pipeline, Published, curate_and_publish, maintain, normalise,
    outputs_signature, poll, render_stored, render_topic, sync_feeds,
};

use crate::config::{self, Config, ConfigError, FeedConfig};
use crate::metrics::Metrics;
use crate::model::{FeedRow, NodeRow, from_ts, rows_by_id};
use crate::serve::{self, AppState};
use crate::store::{Listener, Notice, Store, StoreError, StoreHandle};

/// How long polls in flight may run on after a stop was asked for.
pub const STOP_DEADLINE: Duration = Duration::from_secs(7);

/// Never-polled feeds start within this window, spread out.
const FIRST_POLL_SPREAD: Duration = Duration::from_secs(5);

/// Overdue feeds (the daemon was down) are spread over this window after a start.
const OVERDUE_SPREAD: Duration = Duration::from_secs(30);

/// Loads and fully validates a config file; warnings are logged.
///
/// # Errors
/// [`ConfigError`] with every problem.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let config = config::parse(&text, path)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// How the outside world steers a running daemon.
pub struct Control {
    /// A message asks for the config file to be read again.
    pub reload: mpsc::Receiver<()>,
    /// Cancelled to stop.
    pub shutdown: CancellationToken,
    /// This node's name among the nodes sharing a PostgreSQL database.
    pub node: String,
}

/// Tells systemd (when it started us) what we are doing.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(state)
    {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// When each enabled feed is due, and which are being polled.
///
/// With many nodes every node schedules every feed, and the claim decides which node
/// polls it (see `Store::claim`): a feed another node polled or holds is put back
/// to its stored due time or to the end of that node's claim, whichever is later.
struct Scheduler {
    due: HashMap<String, DateTime<Utc>>,
    in_flight: HashSet<String>,
    /// This node's name, as claims name it.
    node: String,
    /// Whether other nodes may poll the same feeds (PostgreSQL): each node then wakes
    /// for a feed at a moment of its own within [`NODE_SPREAD`] after it is due, so
    /// that the first node to ask (which gets it) is a different one from feed to
    /// feed, and the work is shared.
    many_nodes: bool,
}

/// See [`Scheduler::many_nodes`].
const NODE_SPREAD: Duration = Duration::from_secs(2);

impl Scheduler {
    /// Due times from the stored state: a feed never polled is due at once (spread
    /// over a few seconds), an overdue one soon (spread wider), the rest when stored.
    fn new(config: &Config, rows: &[FeedRow], now: DateTime<Utc>, node: &str, many_nodes: bool) -> Scheduler {
        let mut s =
            Scheduler { due: HashMap::new(), in_flight: HashSet::new(), node: node.to_owned(), many_nodes };
        s.apply(config, rows, now);
        s
    }

    /// When the feed of `row` is due by the store: while another node holds an
    /// unexpired claim on it, when that claim ends (that node polls it until then, or
    /// dies and leaves it to the others); at once if another node's claim ran out
    /// without its poll being stored (storing ends a claim: that node died), or if
    /// no poll of the feed was ever stored; else at its stored next due time. Never
    /// before `now` plus a second, so that a feed skipped for a moment is not asked
    /// for again at once.
    fn stored_due(&self, row: &FeedRow, now: DateTime<Utc>) -> DateTime<Utc> {
        let others_claim = row
            .claim_until
            .map(from_ts)
            .filter(|_| row.claimed_by.as_deref().is_some_and(|n| n != self.node));
        let due = match (others_claim, row.next_due.map(from_ts)) {
            (Some(until), next) if until > now => next.map_or(until, |t| t.max(until)),
            (Some(_), _) | (None, None) => now,
            (None, Some(t)) => t,
        };
        due.max(now + TimeDelta::seconds(1)) + self.spread(&row.id, due)
    }

    /// This node's moment for feed `id` due at `due` (see [`Scheduler::many_nodes`]).
    fn spread(&self, id: &str, due: DateTime<Utc>) -> TimeDelta {
        if !self.many_nodes {
            return TimeDelta::zero();
        }
        let d = crate::dedup::digest(&[&self.node, id, &due.timestamp().to_string()]);
        let ms = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
            % NODE_SPREAD.as_millis() as u64;
        TimeDelta::milliseconds(ms as i64)
    }

    /// Claims were given up somewhere: the feeds not being polled here take their
    /// due times from the store again (a feed given up by a stopping node is due at
    /// once, not when its lease would have run out).
    fn resync(&mut self, rows: &[FeedRow], now: DateTime<Utc>) {
        let rows = rows_by_id(rows);
        let ids: Vec<String> = self.due.keys().filter(|id| !self.in_flight.contains(*id)).cloned().collect();
        for id in ids {
            if let Some(row) = rows.get(id.as_str()) {
                let due = self.stored_due(row, now);
                self.due.insert(id, due);
            }
        }
    }

    /// Brings the set of scheduled feeds in line with `config`: removed and disabled
    /// feeds are dropped, new ones scheduled, the rest keep their due time.
    fn apply(&mut self, config: &Config, rows: &[FeedRow], now: DateTime<Utc>) {
        let enabled: Vec<&FeedConfig> = config.feeds.iter().filter(|f| f.enabled).collect();
        let enabled_ids: HashSet<&str> = enabled.iter().map(|f| f.id.as_str()).collect();
        self.due.retain(|id, _| enabled_ids.contains(id.as_str()));
        let rows = rows_by_id(rows);
        let n = enabled.len().max(1) as f64;
        for (i, f) in enabled.iter().enumerate() {
            if self.due.contains_key(&f.id) {
                continue;
            }
            let row = rows.get(f.id.as_str()).copied();
            if row.is_some_and(gone) {
                continue;
            }
            let spread = |window: Duration| {
                now + TimeDelta::milliseconds((window.as_millis() as f64 * i as f64 / n) as i64)
            };
            let due = match row.and_then(|r| r.next_due) {
                Some(t) if from_ts(t) > now => from_ts(t),
                Some(_) => spread(OVERDUE_SPREAD),
                None => spread(FIRST_POLL_SPREAD),
            };
            let due = due + self.spread(&f.id, due);
            self.due.insert(f.id.clone(), due);
        }
    }

    fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.due.iter().filter(|(id, _)| !self.in_flight.contains(*id)).map(|(_, t)| *t).min()
    }

    fn take_due(&mut self, config: &Config, now: DateTime<Utc>) -> Vec<FeedConfig> {
        let due: Vec<FeedConfig> = config
            .feeds
            .iter()
            .filter(|f| !self.in_flight.contains(&f.id) && self.due.get(&f.id).is_some_and(|t| *t <= now))
            .cloned()
            .collect();
        self.in_flight.extend(due.iter().map(|f| f.id.clone()));
        due
    }

    /// After a pass: the pipeline stored each feed's next due time.
    fn finished(&mut self, ids: &[String], rows: &[FeedRow], config: &Config, now: DateTime<Utc>) {
        let rows = rows_by_id(rows);
        for id in ids {
            self.in_flight.remove(id);
            let Some(feed) = config.feed(id).filter(|f| f.enabled) else {
                self.due.remove(id);
                continue;
            };
            let row = rows.get(id.as_str()).copied();
            if row.is_some_and(gone) {
                tracing::warn!(feed = %id, url = %feed.url, "the feed answered 410 Gone: polling stopped until the config changes");
                self.due.remove(id);
                continue;
            }
            let due = match row {
                Some(r) => self.stored_due(r, now),
                None => feed.schedule.as_ref().unwrap_or(&config.daemon.schedule).next_after(now),
            };
            self.due.insert(id.clone(), due);
        }
    }
}

/// How long after the last pass ends freed memory is handed back: after the
/// blocking threads that parsed have exited (tokio keeps them 10 s).
const TRIM_AFTER: Duration = Duration::from_secs(15);

/// Hands memory a pass freed back to the system when the daemon goes idle: glibc
/// keeps freed memory in its per-thread arenas, and a pass over thousands of feeds
/// frees tens of MiB at once.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers and
    // touches no memory that Rust code owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A feed that answered 410 Gone is not polled again (until its URL changes).
fn gone(row: &FeedRow) -> bool {
    row.last_status == Some(410)
}

/// How often a node says it is alive (and learns of the others).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// A node silent for longer is not warned about (stopped, or killed).
const NODE_SILENT: i64 = 120;

/// How often the outputs' version is looked at: often where nothing tells the daemon
/// of a change (SQLite, where a `poll` process may store one), seldom where
/// notices do (a safety net for a notice missed while the listening connection was
/// down).
const OUTPUTS_CHECK: Duration = Duration::from_secs(2);
const OUTPUTS_CHECK_LISTENING: Duration = Duration::from_secs(30);

/// Runs the daemon until `control.shutdown` is cancelled.
///
/// # Errors
/// If the database cannot be opened or the HTTP client built; once running, failures
/// of single polls are logged and stored, never fatal.
pub async fn run(config: Config, listener: TcpListener, mut control: Control) -> anyhow::Result<()> {
    let clock = Clock::new();
    let metrics = Arc::new(Metrics::default());
    let shutdown = control.shutdown.clone();
    let node = control.node.clone();
    let started = clock.now().timestamp();
    let db = config.daemon.database.clone();
    // Their errors name the database (and call a damaged one corrupt).
    let store = Store::open(&db)?;
    let (handle, writer) = StoreHandle::spawn(store).context("starting the database writer")?;
    let config = Arc::new(config);
    // WebSub: hubs' pushes come to this loop; polled feeds' adverts to the task that
    // subscribes to their hubs.
    let (push_tx, mut pushes) = mpsc::channel::<crate::websub::Push>(64);
    let (advert_tx, adverts) = mpsc::unbounded_channel::<crate::websub::Advert>();
    let mut pipeline = {
        let mut p =
            Pipeline::with(config.clone(), handle.clone(), clock, metrics.clone(), shutdown.child_token())?
                .for_node(node.clone());
        p.adverts = Some(advert_tx);
        Arc::new(p)
    };
    // A database that cannot be written (a read-only file, a lock held by another
    // process) must not keep the daemon from serving what it holds: the problem is
    // reported, topics are rendered from the reader, and each pass tries again.
    let mut synced = match sync_feeds(&pipeline).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("cannot record the configured feeds: {}", crate::error_chain(&e));
            false
        }
    };
    let state = Arc::new(AppState {
        config: RwLock::new(config.clone()),
        feeds: RwLock::new(HashMap::new()),
        store: handle.clone(),
        metrics: metrics.clone(),
        node: node.clone(),
        websub: Some(crate::websub::WebSubState::new(Some(config.daemon.listen), Some(push_tx))?),
    });
    tokio::spawn(crate::websub::deliver(state.clone(), shutdown.clone()));
    tokio::spawn(crate::websub::manage_sources(state.clone(), adverts, shutdown.clone()));
    // The version of the outputs served (see `Store::record_outputs`).
    let mut outputs_seen = match curate_and_publish(&pipeline).await {
        Ok(published) => {
            state.update_topics(published.topics, &topic_ids(&config));
            published.version
        }
        Err(e) => {
            tracing::error!("cannot update topics: {}; serving what is stored", crate::error_chain(&e));
            let (config, now) = (config.clone(), clock.now());
            let topics = handle
                .read(move |s| render_stored(s, &config, now))
                .await
                .with_context(|| format!("reading the database {db}"))?;
            state.update_topics(topics, &topic_ids(&pipeline.config));
            -1
        }
    };

    let addr = listener.local_addr().ok();
    let server = tokio::spawn({
        let app = serve::router(state.clone());
        let stop = shutdown.clone();
        async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await }
    });
    tracing::info!(
        "serving on {} with {} feeds and {} topics{}",
        addr.map_or("?".into(), |a| a.to_string()),
        config.feeds.len(),
        config.topics.len(),
        if handle.has_claims() { format!(" as node {node}") } else { String::new() }
    );
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled()
        .map(|every| tokio::spawn(watchdog(handle.clone(), every / 2, shutdown.clone())));

    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    let (watching, watching_rx) = tokio::sync::watch::channel(pipeline.config.daemon.watch_config);
    tokio::spawn(watch_config(pipeline.config.path.clone(), watching_rx, changed_tx, shutdown.clone()));

    // Notices from other nodes and processes (PostgreSQL's LISTEN).
    let (notice_tx, mut notices) = mpsc::channel::<Notice>(64);
    let listening = match handle.call(|s| s.listener()).await {
        Ok(Some(l)) => {
            spawn_listener(l, handle.clone(), notice_tx, metrics.clone(), shutdown.clone());
            // What other nodes changed between this node's first rendering and its
            // LISTEN was announced to nobody here: look once, now that later changes
            // will be (missed, a node served older bytes until its 30 s look).
            refresh_outputs(&pipeline, &state, &mut outputs_seen).await;
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(
                "cannot listen for other nodes' changes: {}; looking every {}s instead",
                crate::error_chain(&e),
                OUTPUTS_CHECK.as_secs()
            );
            false
        }
    };
    let mut outputs_check =
        tokio::time::interval(if listening { OUTPUTS_CHECK_LISTENING } else { OUTPUTS_CHECK });
    outputs_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = handle.has_claims().then(|| {
        let mut t = tokio::time::interval(HEARTBEAT);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut config_digest = digest_file(&pipeline.config.path);
    let mut warned: HashSet<(String, String)> = HashSet::new();

    let rows = handle.call(|s| s.feed_states()).await?;
    let mut sched = Scheduler::new(&pipeline.config, &rows, clock.now(), &node, handle.has_claims());
    let mut batches: JoinSet<(Vec<String>, Result<PassResult, StoreError>)> = JoinSet::new();
    let mut reload_open = true;
    // When to hand freed memory back (see `release_free_memory`), once passes are done.
    let mut trim_at: Option<tokio::time::Instant> = None;
    loop {
        let wake = sched
            .next_wake()
            .map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600), |t| clock.instant(t));
        tokio::select! {
            () = shutdown.cancelled() => break,
            msg = control.reload.recv(), if reload_open => {
                match msg {
                    Some(()) => {
                        if let Some(p) = reload(&pipeline, &state, &watching, &mut sched, &clock).await {
                            pipeline = p;
                            config_digest = digest_file(&pipeline.config.path);
                        }
                    }
                    None => reload_open = false,
                }
                continue;
            }
            Some(()) = changed.recv() => {
                tracing::info!("{} changed", pipeline.config.path.display());
                if let Some(p) = reload(&pipeline, &state, &watching, &mut sched, &clock).await {
                    pipeline = p;
                    config_digest = digest_file(&pipeline.config.path);
                }
                continue;
            }
            Some(notice) = notices.recv() => {
                match notice {
                    Notice::Outputs => refresh_outputs(&pipeline, &state, &mut outputs_seen).await,
                    Notice::Claims => match handle.read(|s| s.feed_states()).await {
                        Ok(rows) => sched.resync(&rows, clock.now()),
                        Err(e) => tracing::warn!("reading feeds after a node gave up its claims: {}", crate::error_chain(&e)),
                    },
                }
                continue;
            }
            Some(push) = pushes.recv() => {
                let id = push.feed_id.clone();
                match pipeline::store_pushed(&pipeline, &id, push.body, push.content_type).await {
                    Ok(Some(crate::model::PollOutcome::Fetched { new, updated, .. })) => {
                        tracing::info!(feed = %id, "WebSub push stored: {new} new, {updated} updated");
                        if new + updated > 0 {
                            match curate_and_publish(&pipeline).await {
                                Ok(published) if published.version >= outputs_seen => {
                                    outputs_seen = published.version;
                                    state.update_topics(published.topics, &topic_ids(&pipeline.config));
                                }
                                Ok(_) => {}
                                Err(e) => tracing::error!("cannot update topics after a push: {}", crate::error_chain(&e)),
                            }
                        }
                    }
                    Ok(Some(crate::model::PollOutcome::Failed { error })) => {
                        tracing::warn!(feed = %id, "WebSub push not stored: {error}");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(feed = %id, "storing a WebSub push: {}", crate::error_chain(&e)),
                }
                continue;
            }
            _ = outputs_check.tick() => {
                refresh_outputs(&pipeline, &state, &mut outputs_seen).await;
                continue;
            }
            _ = async { if let Some(h) = heartbeat.as_mut() { h.tick().await; } }, if heartbeat.is_some() => {
                let (n, digest, now) = (node.clone(), config_digest.clone(), clock.now().timestamp());
                match handle.call(move |s| s.heartbeat(&n, started, &digest, now)).await {
                    Ok(nodes) => warn_of_other_configs(&nodes, &node, &config_digest, now, &mut warned),
                    Err(e) => tracing::warn!("recording this node as alive failed: {}", crate::error_chain(&e)),
                }
                continue;
            }
            Some(done) = batches.join_next(), if !batches.is_empty() => {
                match done {
                    Ok((ids, Ok(pass))) => {
                        synced = true; // the pass wrote the feed rows first if they were missing
                        metrics.poll_pass();
                        // Outputs of a newer version (another node's, rendered since)
                        // are not replaced by this pass's.
                        if pass.published.version >= outputs_seen {
                            outputs_seen = pass.published.version;
                            state.update_topics(pass.published.topics, &topic_ids(&pipeline.config));
                        }
                        let s = &pass.summary;
                        if s.failed + s.new_items + s.updated_items > 0 {
                            tracing::info!("polled {} feeds: {} fetched, {} not modified, {} failed, {} new, {} updated",
                                s.feeds, s.fetched, s.not_modified, s.failed, s.new_items, s.updated_items);
                        } else {
                            tracing::debug!("polled {} feeds: nothing new ({} left to other nodes)", s.feeds, pass.skipped);
                        }
                        // The state of this pass's feeds only: reading every feed after
                        // every pass cost a node 129 ms of server time per pass at
                        // 1,000,000 feeds (bench/CLUSTER.md).
                        let pass_ids = ids.clone();
                        let rows = handle
                            .call(move |s| s.feed_states_of(&pass_ids.iter().map(String::as_str).collect::<Vec<_>>()))
                            .await
                            .unwrap_or_default();
                        sched.finished(&ids, &rows, &pipeline.config, clock.now());
                        if let Err(e) = maintain(&pipeline).await {
                            tracing::error!("retention failed: {}", crate::error_chain(&e));
                        }
                        if batches.is_empty() {
                            trim_at = Some(tokio::time::Instant::now() + TRIM_AFTER);
                        }
                    }
                    Ok((ids, Err(e))) => {
                        tracing::error!("a poll pass failed: {}; retrying in a minute", crate::error_chain(&e));
                        let retry = clock.now() + TimeDelta::minutes(1);
                        for id in ids {
                            sched.in_flight.remove(&id);
                            sched.due.insert(id, retry);
                        }
                    }
                    Err(e) => tracing::error!("a poll pass panicked: {e}"),
                }
                continue;
            }
            () = async { if let Some(at) = trim_at { tokio::time::sleep_until(at).await } },
                if trim_at.is_some() && batches.is_empty() =>
            {
                trim_at = None;
                if let Err(e) = pipeline.store.release_memory().await {
                    tracing::warn!("releasing the store's caches failed: {}", crate::error_chain(&e));
                }
                release_free_memory();
                continue;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        // Feeds due within the next second go in the same pass: one curation and one
        // rendering for all of them.
        let due = sched.take_due(&pipeline.config, clock.now() + TimeDelta::seconds(1));
        if !due.is_empty() {
            let p = pipeline.clone();
            let ids: Vec<String> = due.iter().map(|f| f.id.clone()).collect();
            let resync = !synced;
            batches.spawn(async move {
                if resync && let Err(e) = sync_feeds(&p).await {
                    return (ids, Err(e));
                }
                (ids, poll(&p, due, |_, _| {}).await)
            });
        }
    }

    tracing::info!("stopping");
    notify(&[sd_notify::NotifyState::Stopping]);
    // Claims on feeds not being polled go at once, to the other nodes.
    release_claims(&handle, &node, pipeline.busy()).await;
    if tokio::time::timeout(STOP_DEADLINE, async { while batches.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            "polls still running after {STOP_DEADLINE:?}: abandoning them (each feed is one transaction)"
        );
        batches.abort_all();
        while batches.join_next().await.is_some() {}
    }
    if handle.has_claims() {
        release_claims(&handle, &node, Vec::new()).await;
        let n = node.clone();
        if let Err(e) = handle.call(move |s| s.forget_node(&n)).await {
            tracing::warn!("removing this node from the list failed: {}", crate::error_chain(&e));
        }
    }
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => tracing::error!("HTTP server: {e}"),
        Err(_) => tracing::warn!("HTTP connections still open at exit"),
        _ => {}
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    drop(pipeline);
    drop(handle);
    drop(state);
    // The writer finishes the job it is on (a whole transaction) and exits once the
    // last handle is gone.
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    tracing::info!("stopped");
    Ok(())
}

/// Gives up this node's claims but those on `keep` (see `Store::release_claims`).
async fn release_claims(handle: &StoreHandle, node: &str, keep: Vec<String>) {
    if !handle.has_claims() {
        return;
    }
    let n = node.to_owned();
    match handle
        .call(move |s| s.release_claims(&n, &keep.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
    {
        Ok(0) => {}
        Ok(released) => tracing::info!("gave up claims on {released} feeds to the other nodes"),
        Err(e) => tracing::warn!(
            "giving up this node's claims failed: {}; other nodes take the feeds when the lease runs out",
            crate::error_chain(&e)
        ),
    }
}

/// Renders the topics again if another node or process recorded new outputs: with
/// the time they were rendered at, for the same bytes.
async fn refresh_outputs(p: &Arc<Pipeline>, state: &Arc<AppState>, seen: &mut i64) {
    let config = p.config.clone();
    let seen_now = *seen;
    let fresh = p
        .store
        .read(move |s| match s.outputs_version()? {
            Some((version, as_of)) if version != seen_now => {
                Ok(Some((version, render_stored(s, &config, from_ts(as_of))?)))
            }
            _ => Ok(None),
        })
        .await;
    match fresh {
        Ok(Some((version, topics))) => {
            tracing::debug!("outputs changed elsewhere (version {version}): rendered again");
            *seen = version;
            state.update_topics(topics, &topic_ids(&p.config));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("reading changed outputs failed: {}", crate::error_chain(&e)),
    }
}

/// Waits for notices on `listener`'s connection and hands them to the daemon, on a
/// thread of its own (the wait blocks); a lost connection is opened again, and the
/// daemon then looks for what it may have missed.
fn spawn_listener(
    mut listener: Box<dyn Listener>,
    handle: StoreHandle,
    to: mpsc::Sender<Notice>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let rt = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name("feedsieve-listen".into()).spawn(move || {
        while !stop.is_cancelled() {
            match listener.wait(Duration::from_secs(1)) {
                Ok(notices) => {
                    for n in notices {
                        metrics.notified();
                        if to.blocking_send(n).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "lost the connection listening for other nodes: {}",
                        crate::error_chain(&e)
                    );
                    loop {
                        std::thread::sleep(Duration::from_secs(2));
                        if stop.is_cancelled() {
                            return;
                        }
                        match rt.block_on(handle.call(|s| s.listener())) {
                            Ok(Some(l)) => {
                                listener = l;
                                tracing::info!("listening for other nodes again");
                                for n in [Notice::Outputs, Notice::Claims] {
                                    if to.blocking_send(n).is_err() {
                                        return;
                                    }
                                }
                                break;
                            }
                            Ok(None) => return,
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the thread listening for other nodes: {e}");
    }
}

/// A short digest of the config file's bytes (every node should load the same).
fn digest_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let d = crate::dedup::digest_bytes(&[&bytes]);
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Warns, once per node and digest, of live nodes whose config file differs.
fn warn_of_other_configs(
    nodes: &[NodeRow],
    me: &str,
    mine: &str,
    now: i64,
    warned: &mut HashSet<(String, String)>,
) {
    for n in nodes {
        if n.node != me
            && n.config != mine
            && now - n.last_seen <= NODE_SILENT
            && warned.insert((n.node.clone(), n.config.clone()))
        {
            tracing::warn!(
                "node {} runs with another config file (digest {}, this node's {}): every node should load the same file",
                n.node,
                n.config,
                mine
            );
        }
    }
}

fn topic_ids(config: &Config) -> Vec<&str> {
    config.topics.iter().map(|t| t.id.as_str()).collect()
}

/// Reads the config file again. An invalid file is reported problem by problem and
/// the running config kept; a valid one is swapped in: feeds added and removed,
/// topics whose definition changed backfilled, outputs refreshed, and the config
/// watcher told whether to watch (`watching`).
async fn reload(
    current: &Arc<Pipeline>,
    state: &Arc<AppState>,
    watching: &tokio::sync::watch::Sender<bool>,
    sched: &mut Scheduler,
    clock: &Clock,
) -> Option<Arc<Pipeline>> {
    notify(&[sd_notify::NotifyState::Reloading]);
    let path = current.config.path.clone();
    tracing::info!("reloading {}", path.display());
    let result = reload_inner(current, state, sched, clock, &path).await;
    notify(&[sd_notify::NotifyState::Ready]);
    current.metrics.reloaded(result.is_ok());
    match result {
        Ok(p) => {
            watching.send_replace(p.config.daemon.watch_config);
            Some(p)
        }
        Err(e) => {
            match e.downcast_ref::<ConfigError>() {
                Some(ConfigError::Invalid { problems }) => {
                    for p in problems {
                        tracing::error!("{p}");
                    }
                }
                _ => tracing::error!("{}", format!("{e:#}")),
            }
            tracing::error!("reload failed: still running the previous config");
            None
        }
    }
}

async fn reload_inner(
    current: &Arc<Pipeline>,
    state: &Arc<AppState>,
    sched: &mut Scheduler,
    clock: &Clock,
    path: &Path,
) -> anyhow::Result<Arc<Pipeline>> {
    let new = load_config(path)?;
    let old = &current.config.daemon;
    if new.daemon.listen != old.listen {
        tracing::warn!("'listen' changed to {}: this takes a restart", new.daemon.listen);
    }
    if new.daemon.database != old.database {
        tracing::warn!("'database' changed to {}: this takes a restart", new.daemon.database);
    }
    let mut new = new;
    new.daemon.database = old.database.clone();
    new.daemon.listen = old.listen;
    let config = Arc::new(new);
    let p = Arc::new(
        Pipeline::with(
            config.clone(),
            current.store.clone(),
            *clock,
            current.metrics.clone(),
            current.cancel.clone(),
        )?
        .for_node(current.node.as_ref().map_or_else(Node::default_name, |n| n.name.clone()))
        .with_adverts(current.adverts.clone()),
    );
    sync_feeds(&p).await?;
    let rows = p.store.call(|s| s.feed_states()).await?;
    sched.apply(&config, &rows, clock.now());
    let Published { changes, topics, .. } = curate_and_publish(&p).await?;
    *state.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
    state.update_topics(topics, &topic_ids(&config));
    let backfilled: Vec<&str> =
        changes.iter().filter(|c| c.backfilled).map(|c| c.topic_id.as_str()).collect();
    tracing::info!(
        "reloaded: {} feeds, {} topics{}",
        config.feeds.len(),
        config.topics.len(),
        if backfilled.is_empty() {
            String::new()
        } else {
            format!(" (backfilled: {})", backfilled.join(", "))
        }
    );
    Ok(p)
}

/// How often the config file's modification time is looked at with `watch_config`.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// With `watch_config = true` (`watching`, which a reload can turn on or off), asks
/// for a reload when the config file's modification time or size changes and then
/// stays the same for one more look (an editor's save in several writes triggers one
/// reload). Turned off, it sleeps until a reload turns it on: an idle daemon has no
/// timer but the next due feed's.
async fn watch_config(
    path: std::path::PathBuf,
    mut watching: tokio::sync::watch::Receiver<bool>,
    changed: mpsc::Sender<()>,
    stop: CancellationToken,
) {
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = stamp(&path);
    let mut pending: Option<Option<(Option<std::time::SystemTime>, u64)>> = None;
    loop {
        let enabled = *watching.borrow_and_update();
        if !enabled {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = watching.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            // Changes made while not watching are not news.
            seen = stamp(&path);
            pending = None;
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        if !*watching.borrow() {
            continue; // turned off while asleep
        }
        let now = stamp(&path);
        match pending.take() {
            Some(prev) if prev == now => {
                seen = now;
                if changed.send(()).await.is_err() {
                    return;
                }
            }
            _ if now != seen => pending = Some(now),
            _ => {}
        }
    }
}

/// Pings systemd's watchdog while the store answers within the interval.
async fn watchdog(store: StoreHandle, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match tokio::time::timeout(every, store.call(|s| s.ping())).await {
            Ok(Ok(())) => notify(&[sd_notify::NotifyState::Watchdog]),
            Ok(Err(e)) => {
                tracing::error!("watchdog: the database does not answer: {}", crate::error_chain(&e))
            }
            Err(_) => tracing::error!("watchdog: the database did not answer within {every:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{self, Schedule};
    use chrono::TimeZone;

    fn config(feeds: &[(&str, bool)]) -> Config {
        let mut text = String::from("[daemon]\nschedule = \"every 1m\"\n");
        for (id, enabled) in feeds {
            text.push_str(&format!(
                "[[feed]]\nid = \"{id}\"\nurl = \"https://x.example/{id}\"\nenabled = {enabled}\n"
            ));
        }
        config::parse(&text, Path::new("/tmp/t.toml")).unwrap()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    #[test]
    fn new_feeds_are_spread_over_the_first_seconds_and_stored_dues_kept() {
        let c = config(&[("a", true), ("b", true), ("c", true), ("off", false), ("known", true)]);
        let later = t0() + TimeDelta::minutes(7);
        let rows =
            vec![FeedRow { id: "known".into(), next_due: Some(later.timestamp()), ..FeedRow::default() }];
        let s = Scheduler::new(&c, &rows, t0(), "me", false);
        assert!(!s.due.contains_key("off"));
        assert_eq!(s.due["known"], later);
        let mut firsts: Vec<_> = ["a", "b", "c"].iter().map(|id| s.due[*id]).collect();
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 3, "not all at the same instant");
        assert!(firsts.iter().all(|t| *t >= t0() && *t < t0() + TimeDelta::seconds(5)));
    }

    #[test]
    fn a_failing_feed_backs_off_and_a_success_resets_it() {
        // Drive the scheduler with the pipeline's arithmetic for one feed on a
        // one-minute schedule that fails for two hours, then recovers.
        let c = config(&[("f", true)]);
        let every = Schedule::parse("every 1m").unwrap();
        let mut s = Scheduler::new(&c, &[], t0(), "me", false);
        let mut now = t0();
        let (mut failures, mut polls_while_failing, mut polls_after) = (0u32, 0, 0);
        while now < t0() + TimeDelta::hours(3) {
            let due = s.take_due(&c, now);
            if !due.is_empty() {
                let failing = now < t0() + TimeDelta::hours(2);
                failures = if failing { failures + 1 } else { 0 };
                if failing {
                    polls_while_failing += 1
                } else {
                    polls_after += 1
                }
                let next = schedule::next_due(now, &every, failures, None, 0.5);
                let row = FeedRow { id: "f".into(), next_due: Some(next.timestamp()), ..FeedRow::default() };
                s.finished(&["f".into()], &[row], &c, now);
            }
            now = s.next_wake().unwrap().max(now + TimeDelta::seconds(1));
        }
        // Every minute would be 120 polls in 2 h; backing off 2, 4, 8 … minutes gives 6.
        assert_eq!(polls_while_failing, 6);
        // The first success resets the backoff: back to every minute.
        assert!(polls_after >= 50, "{polls_after} polls in the hour after recovery");
    }

    /// Found by bench/cluster.py: a node whose pass outlasted the lease of a node
    /// that died holding claims put those feeds back to their next schedule slot
    /// (a year away there) instead of taking them over.
    #[test]
    fn feeds_another_node_holds_are_due_when_its_claim_ends_or_at_once_if_it_ran_out() {
        let c = config(&[
            ("held", true),
            ("expired", true),
            ("expired-late", true),
            ("released", true),
            ("mine", true),
        ]);
        let mut s = Scheduler::new(&c, &[], t0(), "me", false);
        let now = t0() + TimeDelta::seconds(10);
        let ids: Vec<String> = s.take_due(&c, now).into_iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), 5);
        let row = |id: &str, by: Option<&str>, until: Option<i64>, next: Option<i64>| FeedRow {
            id: id.into(),
            claimed_by: by.map(str::to_owned),
            claim_until: until,
            next_due: next,
            ..FeedRow::default()
        };
        let n = now.timestamp();
        let rows = vec![
            row("held", Some("other"), Some(n + 300), None),
            row("expired", Some("other"), Some(n - 5), None),
            row("expired-late", Some("other"), Some(n - 5), Some(n - 60)),
            row("released", None, None, None),
            row("mine", None, None, Some(n + 1800)),
        ];
        s.finished(&ids, &rows, &c, now);
        let soon = now + TimeDelta::seconds(1);
        assert_eq!(s.due["held"], now + TimeDelta::seconds(300));
        assert_eq!(s.due["expired"], soon, "a dead node's claim is taken over at once");
        assert_eq!(s.due["expired-late"], soon);
        assert_eq!(s.due["released"], soon, "a feed never polled is due at once");
        assert_eq!(s.due["mine"], now + TimeDelta::seconds(1800));
    }

    #[test]
    fn gone_feeds_and_removed_feeds_are_not_polled_again() {
        let c = config(&[("g", true), ("r", true)]);
        let mut s = Scheduler::new(&c, &[], t0(), "me", false);
        let due = s.take_due(&c, t0() + TimeDelta::seconds(10));
        assert_eq!(due.len(), 2);
        let rows = vec![FeedRow { id: "g".into(), last_status: Some(410), ..FeedRow::default() }];
        s.finished(&["g".into()], &rows, &c, t0());
        assert!(!s.due.contains_key("g"));
        let c2 = config(&[("g", true)]);
        s.finished(&["r".into()], &[], &c2, t0());
        assert!(!s.due.contains_key("r"), "a feed removed by a reload is dropped");
        assert_eq!(s.next_wake(), None);
    }
}
