//! The poll pipeline that `feedsieve poll` and the daemon's scheduler share.
//!
//! fetch → parse (on the blocking pool) → compare with what is stored → sanitise only
//! new and changed items → one store transaction per feed → curate → render topics
//! (and write `output_dir`). This module composes the stages; each stage's logic
//! lives in its own module.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::collections::HashSet;

use crate::article::{self, ArticleError};
use crate::config::{Config, FeedConfig};
use crate::curate::{self, TopicChange};
use crate::fetch::{FetchSettings, Fetched, Fetcher, Validators};
use crate::metrics::{FetchOutcome, Metrics};
use crate::model::{
    ArticleReport, ClaimRequest, FeedRecord, FeedRow, FetchRecord, IngestJob, NewItem, PollOutcome,
    PollSummary, PruneCounts, StoryRule,
};
use crate::publish::{self, Format, RenderedTopic, TopicMeta};
use crate::schedule;
use crate::store::{Store, StoreError, StoreHandle};
use crate::{dedup, error_chain, parse};

/// Wall-clock time that advances with tokio's clock, so that a test can pause and
/// advance time and the scheduler, the backoff and the stored times all follow.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock::starting_at(Utc::now())
    }

    /// A clock that shows `wall` now (and runs on from there).
    pub fn starting_at(wall: DateTime<Utc>) -> Clock {
        Clock { wall, at: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.at);
        self.wall + chrono::TimeDelta::from_std(elapsed).unwrap_or_default()
    }

    /// The tokio instant at which the clock shows `t` (now, if `t` is past).
    pub fn instant(&self, t: DateTime<Utc>) -> tokio::time::Instant {
        let ahead = (t - self.now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + ahead
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Everything a poll needs, shared by all feed tasks.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub fetcher: Arc<Fetcher>,
    pub store: StoreHandle,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Once cancelled, feeds not yet started are skipped; started ones finish.
    pub cancel: CancellationToken,
    /// Feeds in flight (fetched and not yet stored): bounds memory to
    /// `fetch_concurrency` bodies, whatever the number of feeds.
    in_flight: Arc<Semaphore>,
    /// Parsing and sanitising are CPU work: one at a time per core.
    cpu: Arc<Semaphore>,
    /// The daemon node whose passes these are, which claims each feed before polling
    /// it (many nodes on PostgreSQL); `None` for `feedsieve poll`, which polls what it
    /// is asked to at once, whatever the nodes are doing.
    pub node: Option<Node>,
    /// Feeds being fetched or stored now: a node that stops keeps its claims on
    /// these (their polls may still store), and gives the rest up at once.
    busy: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Where the hubs that polled feeds advertise go (`[websub] subscribe`).
    pub adverts: Option<tokio::sync::mpsc::UnboundedSender<crate::websub::Advert>>,
}

/// A daemon node as its claims name it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// How long a claim lasts.
    pub lease: std::time::Duration,
    /// The claims this node may hold on feeds it has not finished polling, all its
    /// passes together: [`CLAIMS_PER_SLOT`] per fetch slot. A feed is claimed only
    /// with a permit, which its task holds until its poll is stored.
    claims: Arc<Semaphore>,
}

/// Claims a node may hold per fetch slot (at least 16 in all). Claiming every due
/// feed at once had a node behind a slow or rate-limited server hold feeds longer
/// than the lease, so that other nodes took them over and its own polls of them were
/// refused (bench/cluster.py, 10,000 feeds at 150 requests a second).
const CLAIMS_PER_SLOT: usize = 4;

impl Node {
    /// `host:pid`: unique among processes sharing a database.
    pub fn default_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    }
}

impl Pipeline {
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(config: Arc<Config>, store: StoreHandle) -> anyhow::Result<Pipeline> {
        Pipeline::with(config, store, Clock::new(), Arc::default(), CancellationToken::new())
    }

    /// As [`Pipeline::new`], sharing a clock, counters and a cancellation token.
    ///
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn with(
        config: Arc<Config>,
        store: StoreHandle,
        clock: Clock,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Pipeline> {
        let d = &config.daemon;
        let fetcher = Fetcher::new(FetchSettings {
            timeout: d.timeout,
            max_bytes: d.max_feed_bytes,
            concurrency: d.fetch_concurrency,
            per_host: d.per_host_concurrency,
            own_address: Some(d.listen),
            proxy: d.proxy.clone(),
        })?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Pipeline {
            node: None,
            adverts: None,
            busy: std::sync::Mutex::default(),
            in_flight: Arc::new(Semaphore::new(d.fetch_concurrency.max(1))),
            cpu: Arc::new(Semaphore::new(cores)),
            fetcher: Arc::new(fetcher),
            store,
            config,
            clock,
            metrics,
            cancel,
        })
    }
}

impl Pipeline {
    /// This pipeline's passes are a daemon node's: each feed claimed under `name`
    /// first, if due (see `Store::claim`).
    #[must_use]
    /// Hands the hubs polled feeds advertise to `adverts` (`[websub] subscribe`).
    pub fn with_adverts(
        mut self,
        adverts: Option<tokio::sync::mpsc::UnboundedSender<crate::websub::Advert>>,
    ) -> Pipeline {
        self.adverts = adverts;
        self
    }

    pub fn for_node(mut self, name: String) -> Pipeline {
        let budget = (self.config.daemon.fetch_concurrency.max(1) * CLAIMS_PER_SLOT).clamp(16, STATE_BATCH);
        self.node =
            Some(Node { name, lease: self.config.daemon.lease, claims: Arc::new(Semaphore::new(budget)) });
        self
    }

    /// The feeds being fetched or stored now.
    pub fn busy(&self) -> Vec<String> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// The result of a pass: totals, what curation did, and every topic rendered afresh.
#[derive(Debug)]
pub struct PassResult {
    pub summary: PollSummary,
    /// Feeds asked for that another node was polling (or had polled since they
    /// were due): left to it.
    pub skipped: usize,
    pub published: Published,
}

/// What curating and rendering did: the topics changed, every topic's outputs, and
/// the version of the outputs recorded in the store (see `Store::record_outputs`).
#[derive(Debug)]
pub struct Published {
    pub changes: Vec<TopicChange>,
    pub topics: Vec<RenderedTopic>,
    pub version: i64,
}

/// Makes the store's feed rows match the configured feeds (see
/// [`Store::sync_feeds`]); run it before the first pass and after a reload.
///
/// # Errors
/// When the store fails.
pub async fn sync_feeds(p: &Pipeline) -> Result<(), StoreError> {
    let ids: Vec<(String, String)> =
        p.config.feeds.iter().map(|f| (f.id.clone(), f.url.to_string())).collect();
    p.store.call(move |s| s.sync_feeds(ids.iter().map(|(a, b)| (a.as_str(), b.as_str())))).await
}

/// Feed tasks of a pass that exist at once (far more than fetch at once, so feeds
/// waiting for a busy host's turn do not hold up the others).
const MAX_FEED_TASKS: usize = 1024;

/// Polls `feeds` concurrently, then curates and publishes. `progress` is called once
/// per feed as it finishes. Feeds not yet started when the pipeline is cancelled are
/// skipped.
///
/// # Errors
/// Only when the store fails; a failing feed is recorded and counted, never an error.
pub async fn poll(
    p: &Arc<Pipeline>,
    feeds: Vec<FeedConfig>,
    progress: impl Fn(&str, &PollOutcome),
) -> Result<PassResult, StoreError> {
    // Tasks are started as earlier ones finish, at most MAX_FEED_TASKS at once: the
    // semaphores bound the work anyway, and a task waiting for its turn holds a few
    // KiB, which at 100,000 feeds was hundreds of MiB.
    let mut tasks = JoinSet::new();
    let mut feeds = Upcoming::new(feeds);
    let start = |tasks: &mut JoinSet<_>, next: Next| {
        let p = p.clone();
        tasks.spawn(async move {
            let outcome = poll_feed(&p, &next.feed, next.row, next.claim).await;
            drop(next.permit);
            (next.feed.id, outcome)
        });
    };
    for _ in 0..MAX_FEED_TASKS {
        let Some(next) = feeds.next(p).await? else { break };
        start(&mut tasks, next);
    }
    let mut summary = PollSummary::default();
    let mut store_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Some(next) = feeds.next(p).await? {
            start(&mut tasks, next);
        }
        match joined {
            Ok((id, Ok(Some(outcome)))) => {
                progress(&id, &outcome);
                summary.add(&id, &outcome);
            }
            Ok((_, Ok(None))) => {}
            Ok((id, Err(StoreError::Fenced { .. }))) => {
                // Not this node's feed any more: the other node's poll stands.
                tracing::warn!(feed = %id, "the claim on this feed ran out while it was polled, and another node took it: this poll was not stored");
                p.metrics.claim_lost();
            }
            Ok((id, Err(e))) => {
                tracing::error!(feed = %id, "storing failed: {}", error_chain(&e));
                store_error.get_or_insert(e);
            }
            Err(e) => tracing::error!("a poll task failed: {e}"),
        }
    }
    if let Some(e) = store_error {
        return Err(e);
    }
    let published = curate_and_publish(p).await?;
    Ok(PassResult { summary, skipped: feeds.skipped, published })
}

/// Feeds of a pass not started yet, with their stored state read a batch at a time
/// (one read for [`STATE_BATCH`] feeds instead of one per feed: on PostgreSQL each
/// read is a round trip, and a warm pass over 1,000 feeds was 1,000 of them). Where
/// polls claim their feeds (PostgreSQL), that read is the claim: feeds another node
/// holds, or has polled since they were due, are left out of the pass.
struct Upcoming {
    feeds: std::vec::IntoIter<FeedConfig>,
    ready: std::collections::VecDeque<Next>,
    /// Feeds left out: another node's.
    skipped: usize,
}

/// A feed of a pass to poll: its stored state (empty for a feed never stored), and
/// where polls claim their feeds, its claim's token and its permit among the node's
/// claims (held until its poll is stored).
struct Next {
    feed: FeedConfig,
    row: FeedRow,
    claim: Option<i64>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Feeds whose state one read fetches.
const STATE_BATCH: usize = 256;

/// How far past now a daemon's claim counts a feed as due: the scheduler starts
/// feeds due within the next second together.
const DUE_AHEAD: i64 = 2;

impl Upcoming {
    fn new(feeds: Vec<FeedConfig>) -> Upcoming {
        Upcoming { feeds: feeds.into_iter(), ready: std::collections::VecDeque::new(), skipped: 0 }
    }

    /// The next feed to poll. Where polls claim their feeds, this waits for permits
    /// among the node's claims first, so that it claims no more than it can poll soon.
    async fn next(&mut self, p: &Pipeline) -> Result<Option<Next>, StoreError> {
        while self.ready.is_empty() {
            let claiming = p.node.clone().filter(|_| p.store.has_claims());
            let (take, mut permits) = match &claiming {
                Some(node) => {
                    // As many as are free now (at least one, waited for): a batch never
                    // waits for permits its own earlier feeds hold.
                    let free = node.claims.available_permits().clamp(1, STATE_BATCH);
                    let permits = node
                        .claims
                        .clone()
                        .acquire_many_owned(free as u32)
                        .await
                        .map_err(|_| StoreError::Closed)?;
                    (free, Some(permits))
                }
                None => (STATE_BATCH, None),
            };
            let batch: Vec<FeedConfig> = self.feeds.by_ref().take(take).collect();
            if batch.is_empty() {
                return Ok(None);
            }
            let ids: Vec<String> = batch.iter().map(|f| f.id.clone()).collect();
            if let Some(node) = claiming {
                let now = p.clock.now().timestamp();
                let claimed = p
                    .store
                    .call(move |s| {
                        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                        let lease = i64::try_from(node.lease.as_secs()).unwrap_or(i64::MAX / 2);
                        s.claim(
                            &ids,
                            &ClaimRequest {
                                node: &node.name,
                                now,
                                due_by: Some(now + DUE_AHEAD),
                                until: now.saturating_add(lease),
                            },
                        )
                    })
                    .await?;
                let taken_over = claimed.iter().filter(|c| c.taken_over).count();
                p.metrics.claimed(claimed.len(), taken_over);
                if taken_over > 0 {
                    tracing::info!(
                        "took over {taken_over} feeds whose claims had run out (a node stopped, or held them past its lease)"
                    );
                }
                let mut by_id: std::collections::HashMap<String, (FeedRow, Option<i64>)> =
                    claimed.into_iter().map(|c| (c.row.id.clone(), (c.row, c.token))).collect();
                for f in batch {
                    match by_id.remove(&f.id) {
                        Some((row, token)) => {
                            let permit = permits.as_mut().and_then(|p| p.split(1));
                            self.ready.push_back(Next { feed: f, row, claim: token, permit });
                        }
                        None => self.skipped += 1,
                    }
                }
            } else {
                let rows = p
                    .store
                    .read(move |s| s.feed_states_of(&ids.iter().map(String::as_str).collect::<Vec<_>>()))
                    .await?;
                let mut by_id: std::collections::HashMap<String, FeedRow> =
                    rows.into_iter().map(|r| (r.id.clone(), r)).collect();
                // Without claims of its own (`feedsieve poll`), a pass still leaves a
                // feed alone while a node holds it: that node is polling it now.
                let now = p.clock.now().timestamp();
                for f in batch {
                    let row = by_id.remove(&f.id).unwrap_or_default();
                    if row.claimed_by.is_some() && row.claim_until.is_some_and(|until| until > now) {
                        self.skipped += 1;
                    } else {
                        self.ready.push_back(Next { feed: f, row, claim: None, permit: None });
                    }
                }
            }
        }
        Ok(self.ready.pop_front())
    }
}

/// Files pending items into topics, renders every topic, and rewrites `output_dir`
/// files whose content changed; records the outputs in the store, which tells the
/// other nodes when they changed. One node at a time (see `Store::curating`).
///
/// # Errors
/// When the store fails.
pub async fn curate_and_publish(p: &Pipeline) -> Result<Published, StoreError> {
    let config = p.config.clone();
    let now = p.clock.now();
    p.store
        .call(move |s| {
            s.flush_bands()?;
            s.curating(|s| {
                let changes = s.write(|w| curate::curate(w, &config, now.timestamp()))?;
                let mut topics = Vec::with_capacity(config.topics.len());
                for t in &config.topics {
                    s.sanitize_published(&t.id, t.limit, t.since(now.timestamp()))?;
                    let outputs: Vec<_> =
                        render_topic(s, &config, &t.id, now)?.into_iter().flatten().map(|(_, r)| r).collect();
                    if let Some(dir) = &config.daemon.output_dir {
                        for r in &outputs {
                            write_if_changed(
                                &dir.join(format!("{}.{}", t.id, r.format.extension())),
                                &r.body,
                            );
                        }
                    }
                    topics.push(RenderedTopic { id: t.id.clone(), outputs });
                }
                let version = s.record_outputs(outputs_signature(&topics), now.timestamp())?;
                Ok(Published { changes, topics, version })
            })
        })
        .await
}

/// A digest of every topic's outputs (their ETags, which hash their bytes).
pub fn outputs_signature(topics: &[RenderedTopic]) -> i64 {
    let mut parts: Vec<&str> = Vec::new();
    for t in topics {
        parts.push(&t.id);
        parts.extend(t.outputs.iter().map(|r| r.etag.as_str()));
    }
    let d = dedup::digest(&parts);
    i64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Renders every topic as stored, with `as_of` bounding `max_age` (a node renders
/// what another node curated with that node's time, for the same bytes).
///
/// # Errors
/// When the store fails.
pub fn render_stored(
    reader: &Store,
    config: &Config,
    as_of: DateTime<Utc>,
) -> Result<Vec<RenderedTopic>, StoreError> {
    let mut topics = Vec::with_capacity(config.topics.len());
    for t in &config.topics {
        let outputs =
            render_topic(reader, config, &t.id, as_of)?.into_iter().flatten().map(|(_, r)| r).collect();
        topics.push(RenderedTopic { id: t.id.clone(), outputs });
    }
    Ok(topics)
}

/// How often retention runs at most.
pub const PRUNE_EVERY: i64 = 6 * 3600;

/// Applies `retention` (and drops near-duplicate search keys older than
/// `dedup_window`), at most every [`PRUNE_EVERY`] seconds. Items shown in any topic
/// output are kept whatever their age. Returns what was pruned, or `None` when it was
/// not yet time.
///
/// # Errors
/// When the store fails.
pub async fn maintain(p: &Pipeline) -> Result<Option<PruneCounts>, StoreError> {
    let config = p.config.clone();
    let now = p.clock.now().timestamp();
    p.store
        .call(move |s| {
            match s.last_prune()? {
                // A new database has nothing old: its first maintenance is due a
                // period after its first pass, not in the middle of it.
                None => {
                    s.set_last_prune(now)?;
                    return Ok(None);
                }
                Some(t) if now - t < PRUNE_EVERY && t <= now => return Ok(None),
                Some(_) => {}
            }
            let mut keep = Vec::new();
            for t in &config.topics {
                keep.extend(s.topic_output_items(&t.id, t.limit, t.since(now))?);
            }
            let d = &config.daemon;
            let counts = s.prune(
                now - d.retention.as_secs() as i64,
                now - d.dedup_window.as_secs() as i64,
                &keep,
                now,
            )?;
            if counts.items > 0 {
                tracing::info!("retention: pruned {} items and {} stories", counts.items, counts.stories);
            }
            Ok(Some(counts))
        })
        .await
}

/// Writes a topic file atomically unless it already holds these bytes.
fn write_if_changed(path: &std::path::Path, body: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == body) {
        return;
    }
    if let Err(e) = crate::write_atomically(path, body) {
        tracing::error!(path = %path.display(), "cannot write topic file: {e}");
    }
}

/// Renders a topic in every format; `None` if the topic is not configured. `now`
/// bounds `max_age`.
///
/// # Errors
/// When the store fails.
#[allow(clippy::type_complexity)]
pub fn render_topic(
    store: &Store,
    config: &Config,
    topic_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Vec<(Format, publish::Rendered)>>, StoreError> {
    let Some(t) = config.topic(topic_id) else { return Ok(None) };
    let entries = store.topic_entries(&t.id, t.limit, t.since(now.timestamp()))?;
    let hub = config.hub_url();
    let meta = TopicMeta {
        id: &t.id,
        title: &t.title,
        description: t.description.as_deref(),
        base_url: &config.daemon.base_url,
        hub: hub.as_deref(),
    };
    Ok(Some(Format::ALL.iter().map(|&f| (f, publish::render(f, &meta, &entries))).collect()))
}

/// An RSS `<ttl>` in minutes as a wait, capped at a day like every hint a server gives.
fn ttl_duration(minutes: i64) -> Option<std::time::Duration> {
    u64::try_from(minutes)
        .ok()
        .filter(|m| *m > 0)
        .map(|m| std::time::Duration::from_secs(m.min(24 * 60) * 60))
}

/// A jitter in `[0, 1)` that differs between feeds and between polls.
fn jitter(feed_id: &str, now: DateTime<Utc>) -> f64 {
    let d = crate::dedup::digest(&[feed_id, &now.timestamp_millis().to_string()]);
    f64::from(u32::from_le_bytes([d[0], d[1], d[2], d[3]])) / (f64::from(u32::MAX) + 1.0)
}

async fn poll_feed(
    p: &Pipeline,
    feed: &FeedConfig,
    row: FeedRow,
    claim: Option<i64>,
) -> Result<Option<PollOutcome>, StoreError> {
    let slot = tokio::select! {
        biased;
        () = p.cancel.cancelled() => return Ok(None),
        slot = p.in_flight.acquire() => slot.map_err(|_| StoreError::Closed)?,
    };
    let started = StdInstant::now();
    p.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(feed.id.clone());
    let outcome = poll_feed_inner(p, feed, row, claim, slot).await;
    p.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&feed.id);
    let outcome = outcome?;
    let kind = match &outcome {
        PollOutcome::Fetched { new, updated, .. } => {
            p.metrics.stored(*new, *updated);
            FetchOutcome::Ok
        }
        PollOutcome::NotModified => FetchOutcome::NotModified,
        PollOutcome::Failed { .. } => FetchOutcome::Failed,
    };
    p.metrics.fetched(kind, started.elapsed());
    Ok(Some(outcome))
}

/// `slot` is the feed's turn among [`Pipeline::in_flight`]: held while a body is read,
/// parsed and stored, and given back before a 304 or a failure is recorded, which has
/// no body to hold (on PostgreSQL the record's round trip would otherwise keep the next
/// feed waiting: a warm pass of 1,000 feeds took 0.10 s instead of 0.08).
async fn poll_feed_inner(
    p: &Pipeline,
    feed: &FeedConfig,
    row: FeedRow,
    claim: Option<i64>,
    slot: tokio::sync::SemaphorePermit<'_>,
) -> Result<PollOutcome, StoreError> {
    let validators = Validators { etag: row.etag.clone(), last_modified: row.last_modified.clone() };
    let schedule = feed.schedule.as_ref().unwrap_or(&p.config.daemon.schedule).clone();
    let failures = u32::try_from(row.failures).unwrap_or(u32::MAX);

    // A feed that moved permanently (301/308) is polled at its new address.
    let target =
        row.moved_to.as_deref().and_then(|u| url::Url::parse(u).ok()).unwrap_or_else(|| feed.url.clone());
    let moved = |hinted: Option<url::Url>| hinted.or_else(|| (target != feed.url).then(|| target.clone()));
    let options = crate::fetch::Request::of(feed);
    let fetched = p.fetcher.fetch_with(&target, &validators, &options).await;
    let now = p.clock.now();
    let j = jitter(&feed.id, now);
    let body = match fetched {
        Ok(Fetched::NotModified { hints }) => {
            // The response's own freshness, else the <ttl> of the last 200: a 304 has
            // no body to say it again.
            let not_before = hints
                .fresh_for
                .or(row.ttl_minutes.and_then(ttl_duration))
                .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                .map(|d| now + d);
            let due = schedule::next_due(now, &schedule, 0, not_before, j);
            let id = feed.id.clone();
            let moved = moved(hints.moved_to).map(|u| u.to_string());
            drop(slot);
            p.store
                .record(FeedRecord::NotModified {
                    feed_id: id,
                    status: 304,
                    now,
                    next_due: Some(due),
                    moved_to: moved,
                    claim,
                })
                .await?;
            return Ok(PollOutcome::NotModified);
        }
        Ok(Fetched::Body(b)) => b,
        Err(e) => {
            drop(slot);
            let not_before =
                e.retry_after().and_then(|d| chrono::TimeDelta::from_std(d).ok()).map(|d| now + d);
            let msg = match e.status() {
                Some(410) => {
                    "HTTP 410 Gone: the feed was removed; polling stopped (remove or change it in the config)"
                        .into()
                }
                _ => error_chain(&e),
            };
            return fail(p, (feed, claim), e.status(), msg, now, &schedule, failures, not_before).await;
        }
    };
    let moved_to = moved(body.hints.moved_to.clone()).map(|u| u.to_string());
    let outcome = store_body(p, (feed, claim, failures), body, moved_to, now).await;
    drop(slot);
    outcome
}

/// A feed's items as one poll stores them, from a `body` that a fetch got or a hub
/// pushed: parsed, its new and changed items (with their pages, `full_text`)
/// normalised and stored with the feed's health. The caller holds the feed's turn.
/// Stores a feed document a WebSub hub pushed for `feed_id` (its signature already
/// checked), by the path a poll's body takes. The feed keeps its validators, so the
/// next poll is still conditional.
///
/// # Errors
/// On database failure; an unknown feed is `Ok(None)`.
pub async fn store_pushed(
    p: &Pipeline,
    feed_id: &str,
    bytes: Vec<u8>,
    content_type: Option<String>,
) -> Result<Option<PollOutcome>, StoreError> {
    let Some(feed) = p.config.feed(feed_id) else { return Ok(None) };
    let id = feed.id.clone();
    let row =
        p.store.read(move |s| s.feed_states_of(&[id.as_str()])).await?.into_iter().next().unwrap_or_default();
    let slot = p.in_flight.acquire().await.map_err(|_| StoreError::Closed)?;
    let url =
        row.moved_to.as_deref().and_then(|u| url::Url::parse(u).ok()).unwrap_or_else(|| feed.url.clone());
    let body = crate::fetch::Body {
        bytes,
        final_url: url,
        validators: Validators { etag: row.etag.clone(), last_modified: row.last_modified.clone() },
        content_type,
        hints: crate::fetch::Hints::default(),
    };
    let failures = u32::try_from(row.failures).unwrap_or(u32::MAX);
    let started = StdInstant::now();
    let outcome = store_body(p, (feed, None, failures), body, row.moved_to.clone(), p.clock.now()).await;
    drop(slot);
    if let Ok(PollOutcome::Fetched { new, updated, .. }) = &outcome {
        p.metrics.stored(*new, *updated);
    }
    tracing::debug!(feed = %feed_id, took = ?started.elapsed(), "stored a push");
    outcome.map(Some)
}

/// `failures`: the feed's failed polls in a row so far, for the backoff of a body that
/// cannot be read.
async fn store_body(
    p: &Pipeline,
    (feed, claim, failures): (&FeedConfig, Option<i64>, u32),
    body: crate::fetch::Body,
    moved_to: Option<String>,
    now: DateTime<Utc>,
) -> Result<PollOutcome, StoreError> {
    let schedule = feed.schedule.as_ref().unwrap_or(&p.config.daemon.schedule).clone();
    let j = jitter(&feed.id, now);

    // Parse off the async workers.
    let cpu = p.cpu.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
    let url = body.final_url.clone();
    let bytes = body.bytes;
    let content_type = body.content_type.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        parse::parse_response(&bytes, content_type.as_deref(), &url, now)
    })
    .await;
    drop(cpu);
    let mut parsed = match parsed {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            let mut msg = error_chain(&e);
            if let Some(ct) = &body.content_type {
                msg.push_str(&format!(" (Content-Type: {ct})"));
            }
            return fail(p, (feed, claim), Some(200), msg, now, &schedule, failures, None).await;
        }
        Err(e) => {
            return fail(
                p,
                (feed, claim),
                Some(200),
                format!("parser crashed: {e}"),
                now,
                &schedule,
                failures,
                None,
            )
            .await;
        }
    };

    if let (Some(tx), Some(hub), Some(topic)) = (&p.adverts, &parsed.hub, &parsed.self_url)
        && p.config.websub.subscribe
        && matches!(feed.url.scheme(), "http" | "https")
    {
        let _ = tx.send(crate::websub::Advert {
            feed_id: feed.id.clone(),
            hub: hub.clone(),
            topic: topic.clone(),
        });
    }

    // Only new and changed items are worth fingerprinting.
    let id = feed.id.clone();
    let listed: Vec<String> = parsed.items.iter().map(|i| i.key.clone()).collect();
    let (known, mut boilerplate) = p
        .store
        .read(move |s| Ok((s.known_keys(&id, listed.iter().map(String::as_str))?, s.boilerplate(&id)?)))
        .await?;
    let is_candidate = |i: &crate::model::Item| match known.get(&i.key) {
        None => true,
        Some(None) => false, // tombstoned
        Some(Some(k)) => !k.same_as(i),
    };
    let total = parsed.items.len();
    let wanted: Vec<bool> = parsed.items.iter().map(is_candidate).collect();
    let unchanged = wanted.iter().filter(|w| !**w).count();
    let (from_pages, articles) = if feed.full_text && unchanged < total {
        full_text(p, feed, &mut parsed.items, &known, &wanted).await?
    } else {
        (HashSet::new(), None)
    };
    let items = std::mem::take(&mut parsed.items);
    let cpu = p.cpu.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
    let prepared = tokio::task::spawn_blocking(move || {
        if unchanged == total {
            return (Vec::new(), Vec::new());
        }
        normalise(items, &wanted, &mut boilerplate)
    })
    .await;
    drop(cpu);
    let (mut prepared, new_boilerplate) = match prepared {
        Ok(v) => v,
        Err(e) => {
            return fail(
                p,
                (feed, claim),
                Some(200),
                format!("sanitiser crashed: {e}"),
                now,
                &schedule,
                failures,
                None,
            )
            .await;
        }
    };

    for n in &mut prepared {
        n.article = from_pages.contains(&n.item.key);
    }
    if let Some(report) = &articles {
        p.metrics.articles(report);
    }

    let not_before = body
        .hints
        .fresh_for
        .or(parsed.ttl_minutes.and_then(|m| ttl_duration(i64::from(m))))
        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
        .map(|d| now + d);
    let record = FetchRecord {
        status: 200,
        etag: body.validators.etag,
        last_modified: body.validators.last_modified,
        title: parsed.title,
        site_link: parsed.site_link,
        moved_to,
        next_due: Some(schedule::next_due(now, &schedule, 0, not_before, j)),
        ttl_minutes: parsed.ttl_minutes.map(i64::from),
        boilerplate: new_boilerplate,
        articles,
        claim,
    };
    let rule = StoryRule {
        threshold: p.config.daemon.dedup_threshold,
        window: p.config.daemon.dedup_window.as_secs() as i64,
    };
    let job = IngestJob { feed_id: feed.id.clone(), items: prepared, record, rule, now };
    let counts = p.store.ingest(job).await?;
    tracing::debug!(feed = %feed.id, new = counts.new, updated = counts.updated, "stored");
    Ok(PollOutcome::Fetched {
        new: counts.new,
        updated: counts.updated,
        unchanged: unchanged + counts.unchanged,
    })
}

/// An item's text: of its summary and content (markup, scripts and style sheets
/// removed, entities decoded) and the main one split into sentences.
struct ItemText {
    summary: String,
    content: String,
    sentences: dedup::Sentences,
}

impl ItemText {
    fn of(item: &crate::model::Item) -> ItemText {
        let (summary, content) =
            (parse::index_text(item.summary.as_deref()), parse::index_text(item.content.as_deref()));
        let sentences = dedup::sentences(if content.is_empty() { &summary } else { &content });
        ItemText { summary, content, sentences }
    }

    fn body(&self) -> &str {
        if self.content.is_empty() { &self.summary } else { &self.content }
    }
}

/// What a poll does to a feed's parsed items before storing the `wanted` ones (new
/// or changed): extracts each item's text, learns the sentences the feed repeats
/// across its items (all of them, new or not) as boilerplate, added to the feed's
/// known `boilerplate`, and fingerprints the wanted items without it. Each item's
/// text is extracted and split once, for both uses and the index. Returns the items
/// to store and the newly learnt boilerplate. CPU work only.
pub fn normalise(
    items: Vec<crate::model::Item>,
    wanted: &[bool],
    boilerplate: &mut std::collections::HashSet<u64>,
) -> (Vec<NewItem>, Vec<u64>) {
    let texts: Vec<ItemText> = items.iter().map(ItemText::of).collect();
    let new_boilerplate: Vec<u64> = dedup::repeated_among(texts.iter().map(|t| &t.sentences))
        .into_iter()
        .filter(|h| !boilerplate.contains(h))
        .collect();
    boilerplate.extend(&new_boilerplate);
    let candidates =
        items.into_iter().zip(texts).zip(wanted).filter(|(_, w)| **w).map(|(it, _)| it).collect();
    (prepare(candidates, boilerplate), new_boilerplate)
}

/// Fingerprints new and changed items and gives them their index text. Their HTML
/// is sanitised when first published (see `Store::sanitize_published`), and the
/// text comes from the markup as sent: sanitising removes markup and active content,
/// never the text a reader sees.
fn prepare(
    items: Vec<(crate::model::Item, ItemText)>,
    boilerplate: &std::collections::HashSet<u64>,
) -> Vec<NewItem> {
    items
        .into_iter()
        .map(|(item, text)| {
            let fingerprint = dedup::fingerprint_split(text.body(), &text.sentences, boilerplate);
            NewItem {
                summary_text: text.summary,
                content_text: text.content,
                fingerprint,
                item,
                article: false,
            }
        })
        .collect()
}

/// `full_text`: the pages of a poll's new items become their content, fetched
/// concurrently under the fetcher's limits, at most [`article::MAX_ARTICLES_PER_POLL`]
/// of them (the newest first) and within [`article::budget`] in all; a failure leaves
/// the item as the feed gave it. A correction of an item whose content is its page's
/// keeps that content (a page is fetched once per item, never again). Returns the keys
/// whose content is their page's, and what the poll's pages came to (`None`: it had no
/// new item with a page to fetch).
async fn full_text(
    p: &Pipeline,
    feed: &FeedConfig,
    items: &mut [crate::model::Item],
    known: &std::collections::HashMap<String, Option<crate::store::Known>>,
    wanted: &[bool],
) -> Result<(HashSet<String>, Option<ArticleReport>), StoreError> {
    let mut from_pages = HashSet::new();
    let kept: Vec<String> = items
        .iter()
        .zip(wanted)
        .filter(|(it, w)| **w && matches!(known.get(&it.key), Some(Some(k)) if k.article))
        .map(|(it, _)| it.key.clone())
        .collect();
    if !kept.is_empty() {
        let id = feed.id.clone();
        let stored = p
            .store
            .read(move |s| s.article_contents(&id, &kept.iter().map(String::as_str).collect::<Vec<_>>()))
            .await?;
        for it in items.iter_mut() {
            if let Some(content) = stored.get(&it.key) {
                it.content = Some(content.clone());
                from_pages.insert(it.key.clone());
            }
        }
    }
    let mut new: Vec<(usize, url::Url)> = items
        .iter()
        .enumerate()
        .filter(|(i, it)| wanted[*i] && !known.contains_key(&it.key))
        .filter_map(|(i, it)| Some((i, article::fetchable(it.link.as_deref()?)?)))
        .collect();
    if new.is_empty() {
        return Ok((from_pages, None));
    }
    // The newest first (stable: a feed's own order among equal dates).
    new.sort_by_key(|(i, _)| std::cmp::Reverse(items[*i].published));
    let mut report = ArticleReport::default();
    if new.len() > article::MAX_ARTICLES_PER_POLL {
        report.skipped = (new.len() - article::MAX_ARTICLES_PER_POLL) as u32;
        new.truncate(article::MAX_ARTICLES_PER_POLL);
    }
    let deadline = tokio::time::Instant::now() + article::budget(p.config.daemon.timeout);
    let mut tasks = JoinSet::new();
    for (i, link) in new {
        let (config, fetcher, cpu, id) =
            (p.config.clone(), p.fetcher.clone(), p.cpu.clone(), feed.id.clone());
        tasks.spawn(async move {
            let work = async {
                let Some(feed) = config.feed(&id) else {
                    return Err(ArticleError::NoText("feed removed".into()));
                };
                // `article::fetch` holds the link to the redirect rules.
                let page = article::fetch(&fetcher, &link, &crate::fetch::Request::of(feed)).await?;
                let _cpu = cpu.acquire_owned().await.map_err(|_| ArticleError::Crashed)?;
                tokio::task::spawn_blocking(move || article::extract(&page))
                    .await
                    .map_err(|_| ArticleError::Crashed)?
            };
            let outcome = match tokio::time::timeout_at(deadline, work).await {
                Ok(r) => r.map_err(|e| crate::error_chain(&e)),
                Err(_) => Err("not fetched within the poll's time for article pages".to_owned()),
            };
            (i, link, outcome)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let Ok((i, link, outcome)) = done else {
            report.failed += 1;
            continue;
        };
        match outcome {
            Ok(html) => {
                items[i].content = Some(html);
                from_pages.insert(items[i].key.clone());
                report.fetched += 1;
            }
            Err(e) => {
                let shown = crate::model::redacted_url(&link);
                tracing::debug!(feed = %feed.id, "article page {shown}: {e}");
                report.failed += 1;
                report.error = Some(format!("{shown}: {e}"));
            }
        }
    }
    if report.failed > 0 {
        tracing::info!(
            feed = %feed.id,
            "{} of {} article pages failed; their items keep the feed's text (last: {})",
            report.failed,
            report.failed + report.fetched,
            report.error.as_deref().unwrap_or("")
        );
    }
    Ok((from_pages, Some(report)))
}

#[allow(clippy::too_many_arguments)]
async fn fail(
    p: &Pipeline,
    (feed, claim): (&FeedConfig, Option<i64>),
    status: Option<u16>,
    error: String,
    now: DateTime<Utc>,
    schedule: &schedule::Schedule,
    failures: u32,
    not_before: Option<DateTime<Utc>>,
) -> Result<PollOutcome, StoreError> {
    tracing::warn!(feed = %feed.id, url = %feed.url, "poll failed: {error}");
    let due =
        schedule::next_due(now, schedule, failures.saturating_add(1), not_before, jitter(&feed.id, now));
    let id = feed.id.clone();
    let msg = error.clone();
    p.store
        .record(FeedRecord::Failure { feed_id: id, status, error: msg, now, next_due: Some(due), claim })
        .await?;
    Ok(PollOutcome::Failed { error })
}
