//! The single writer and the read pool.
//!
//! A thread owns the writer's connection and runs what is sent to it in order, so
//! that one process has one writer whatever the engine; polls that queue up behind a
//! busy writer are stored together (group commit). Reads that must not wait behind
//! the writer (a poll's look at what is stored, the HTTP server's pages) go to a small
//! pool of read connections.

use std::sync::{Arc, mpsc};

use super::engine::Opener;
use super::{Store, StoreError};
use crate::model::{FeedRecord, IngestCounts, IngestJob};

enum Job {
    Call(Box<dyn FnOnce(&mut Store) + Send>),
    Ingest(Box<IngestJob>, Reply<IngestCounts>),
    Record(Box<FeedRecord>, Reply<()>),
}

/// A store error from the writer or a reader, naming the database.
fn named(store: &Store, e: StoreError) -> StoreError {
    e.named(store.name())
}

type Reply<R> = tokio::sync::oneshot::Sender<Result<R, StoreError>>;

/// At most this many feeds' polls share one transaction.
const MAX_GROUP_FEEDS: usize = 64;
/// ... and at most about this many items.
const MAX_GROUP_ITEMS: usize = 4_000;
/// At most this many polls without items (304s, failures) share one transaction.
const MAX_GROUP_RECORDS: usize = 512;

/// The single writer: a thread that owns the write connection and runs closures sent
/// to it in order. Cloning the handle is cheap; the thread ends (and the database is
/// closed cleanly) when the last handle is dropped.
///
/// Group commit: polls that arrive while the writer is busy are stored together, in
/// one transaction, when it is free (see [`Store::ingest_group`]); each caller still
/// gets its own feed's counts, and only after the commit.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
    /// Read connections for what a poll must know before it stores anything (a
    /// feed's validators, which of its items are known): such reads need not wait
    /// behind the writer's transactions, nor take its time. `None` for an in-memory
    /// store, which only the writer's connection sees.
    readers: Option<Arc<ReadPool>>,
    /// Whether polls claim their feeds first (see [`Store::claim`]): many nodes may
    /// share the database.
    claims: bool,
}

/// Read-only connections to the writer's database, opened as needed, at most
/// [`MAX_READERS`] (each keeps a page cache), each used by one task at a time.
struct ReadPool {
    open: Opener,
    idle: std::sync::Mutex<Vec<Store>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Read connections a writer's handle opens at most.
const MAX_READERS: usize = 4;

thread_local! {
    /// Set while this thread does the store's own blocking work (a read on the blocking
    /// pool): an engine may block here, whatever runtime the thread belongs to.
    static STORE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether an engine may block this thread: no Tokio runtime drives tasks on it, or it
/// is doing the store's own blocking work.
pub(crate) fn may_block() -> bool {
    tokio::runtime::Handle::try_current().is_err() || STORE_THREAD.with(std::cell::Cell::get)
}

impl ReadPool {
    fn run<R>(&self, f: impl FnOnce(&Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        STORE_THREAD.with(|c| c.set(true));
        let result = self.run_here(f);
        STORE_THREAD.with(|c| c.set(false));
        result
    }

    fn run_here<R>(&self, f: impl FnOnce(&Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let store = match idle {
            Some(s) => s,
            None => Store::with((self.open)()?),
        };
        let result = f(&store).map_err(|e| named(&store, e));
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
        result
    }
}

impl StoreHandle {
    /// Moves `store` onto its own thread.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(store: Store) -> std::io::Result<(StoreHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let claims = store.engine.has_claims();
        let readers = store.engine.reader().map(|open| {
            Arc::new(ReadPool {
                open,
                idle: std::sync::Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            })
        });
        let join = std::thread::Builder::new().name("feedsieve-store".into()).spawn(move || {
            let mut store = store;
            store.engine.writer_started();
            let mut next = None;
            while let Some(job) = next.take().or_else(|| rx.recv().ok()) {
                match job {
                    Job::Call(f) => f(&mut store),
                    Job::Ingest(job, reply) => {
                        let take = |j| match j {
                            Job::Ingest(job, reply) => Ok((job, reply)),
                            other => Err(other),
                        };
                        let size = |(job, _): &(Box<IngestJob>, _)| job.items.len();
                        let group = gather(
                            &rx,
                            &mut next,
                            (job, reply),
                            take,
                            MAX_GROUP_FEEDS,
                            size,
                            MAX_GROUP_ITEMS,
                        );
                        run_group(&mut store, group, Store::ingest_group, Store::ingest, "storing");
                    }
                    Job::Record(record, reply) => {
                        let take = |j| match j {
                            Job::Record(record, reply) => Ok((record, reply)),
                            other => Err(other),
                        };
                        let group =
                            gather(&rx, &mut next, (record, reply), take, MAX_GROUP_RECORDS, |_| 0, 1);
                        run_group(&mut store, group, Store::record_group, Store::record, "recording");
                    }
                }
            }
            store.engine.writer_stopping();
        })?;
        Ok((StoreHandle { tx, readers, claims }, join))
    }

    /// Whether polls claim their feeds before polling them (PostgreSQL, where many
    /// nodes may share the database); without claims a feed's state is read instead.
    pub fn has_claims(&self) -> bool {
        self.claims
    }

    /// Frees the writer's caches ([`Store::release_memory`]) and closes idle read
    /// connections (opened again when needed): for a daemon going idle.
    ///
    /// # Errors
    /// On database failure.
    pub async fn release_memory(&self) -> Result<(), StoreError> {
        if let Some(pool) = &self.readers {
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.call(Store::release_memory).await
    }

    /// Runs `f` on a read connection, off the writer thread: it sees what the writer
    /// has committed, never a transaction in progress. On the writer itself for an
    /// in-memory store.
    ///
    /// # Errors
    /// What `f` returns, or the failure to open a read connection, with the database
    /// named.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    {
        let Some(pool) = self.readers.clone() else {
            return self.call(move |s| f(s)).await;
        };
        let permit = pool.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let result = pool.run(f);
            drop(permit);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer thread and returns its result.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; otherwise what `f` returns,
    /// with a bare SQLite error turned into [`StoreError::In`] naming the database.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Call(Box::new(move |s: &mut Store| {
                let result = f(s).map_err(|e| named(s, e));
                let _ = done.send(result);
            })))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores one feed's poll, possibly in one transaction with other feeds' polls.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; a database failure of this
    /// feed's own writes (nothing of its poll is then stored).
    pub async fn ingest(&self, job: IngestJob) -> Result<IngestCounts, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Job::Ingest(Box::new(job), done)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Records a poll that stored no items, possibly in one transaction with others.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer has stopped; a database failure of this
    /// feed's own update.
    pub async fn record(&self, record: FeedRecord) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Job::Record(Box::new(record), done)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }
}

/// Takes more jobs of `first`'s kind off the queue, as long as the group has fewer
/// than `max_len` and their `size`s add up to less than `max_size`; a job of another
/// kind is left in `next`.
fn gather<J>(
    rx: &mpsc::Receiver<Job>,
    next: &mut Option<Job>,
    first: J,
    take: impl Fn(Job) -> Result<J, Job>,
    max_len: usize,
    size: impl Fn(&J) -> usize,
    max_size: usize,
) -> Vec<J> {
    let mut total = size(&first);
    let mut group = vec![first];
    while group.len() < max_len && total < max_size {
        let Ok(job) = rx.try_recv() else { break };
        match take(job) {
            Ok(j) => {
                total += size(&j);
                group.push(j);
            }
            Err(other) => {
                *next = Some(other);
                break;
            }
        }
    }
    group
}

/// Runs a group of jobs in one transaction (`all`); if that fails, each on its own
/// (`one`), so that one feed's failure is that feed's alone.
fn run_group<J, R>(
    store: &mut Store,
    group: Vec<(Box<J>, Reply<R>)>,
    all: impl FnOnce(&mut Store, &[&J]) -> Result<Vec<R>, StoreError>,
    one: impl Fn(&mut Store, &J) -> Result<R, StoreError>,
    what: &str,
) {
    let jobs: Vec<&J> = group.iter().map(|(job, _)| &**job).collect();
    match all(store, &jobs) {
        Ok(results) => {
            for ((_, reply), r) in group.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some((_, reply)) = group.into_iter().next() {
                let _ = reply.send(Err(named(store, e)));
            }
        }
        Err(e) => {
            tracing::debug!(error = %crate::error_chain(&e), feeds = group.len(), "{what} a group failed; one by one");
            for (job, reply) in group {
                let _ = reply.send(one(store, &job).map_err(|e| named(store, e)));
            }
        }
    }
}
