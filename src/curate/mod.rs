//! Curation: which stories belong to which topic.
//!
//! Input: the validated topics and the items the last polls stored or corrected (the
//! store's `pending` queue). Output: rows of `topic_stories`, each with the bm25 score
//! of its best match. A topic is compiled to a [`TopicFilter`] (an FTS5 expression
//! rendered from our own query tree, plus the feeds it draws from); its signature is
//! stored, so a topic that is new or whose definition changed is backfilled over every
//! stored item, and an unchanged one only looks at pending items.

pub mod query;

use crate::config::{Config, Problem, TopicConfig};
use crate::dedup;
use crate::store::{Scope, Store, StoreError, TopicFilter, Writer};

/// The store's view of a topic.
pub fn filter_for(config: &Config, topic: &TopicConfig) -> TopicFilter {
    TopicFilter {
        fts: topic.query.as_ref().map(|q| q.to_fts5()),
        exclude: topic.exclude.as_ref().map(|q| q.to_fts5()),
        feeds: Config::restricts_feeds(topic)
            .then(|| config.topic_feeds(topic).map(|f| f.id.clone()).collect()),
    }
}

/// Identifies a topic's definition: when it changes, the topic is backfilled.
pub fn signature(filter: &TopicFilter) -> String {
    let feeds = filter.feeds.as_ref().map(|f| f.join("\u{1}"));
    let d = dedup::digest(&[
        filter.fts.as_deref().unwrap_or("\u{0}"),
        filter.exclude.as_deref().unwrap_or("\u{0}"),
        feeds.as_deref().unwrap_or("\u{0}"),
    ]);
    dedup::hex(&d[..16])
}

/// Compiles every topic query and exclude against SQLite's FTS5, reporting those it
/// rejects at their place in the config file. Our parser already accepts only FTS5
/// syntax; this is the check that the store agrees.
pub fn check_queries(config: &Config) -> Vec<Problem> {
    let store = match Store::open_in_memory() {
        Ok(s) => s,
        Err(e) => {
            return vec![Problem {
                file: config.path.clone(),
                at: crate::config::Position { line: 1, col: 1 },
                message: format!("cannot check topic queries: {e}"),
            }];
        }
    };
    let mut problems = Vec::new();
    for t in &config.topics {
        for (what, expr, at) in [("query", &t.query, t.query_at), ("exclude", &t.exclude, t.exclude_at)] {
            let (Some(expr), Some(at)) = (expr, at) else { continue };
            if let Err(e) = store.check_fts(&expr.to_fts5()) {
                problems.push(Problem {
                    file: config.path.clone(),
                    at,
                    message: format!("topic '{}': SQLite rejects the {what}: {e}", t.id),
                });
            }
        }
    }
    problems
}

/// What one curation pass did to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicChange {
    pub topic_id: String,
    /// Rebuilt from every stored item (new or changed definition).
    pub backfilled: bool,
    /// Items matched in this pass.
    pub matched: usize,
}

/// Files pending items into every topic (backfilling topics whose definition changed),
/// then empties the queue. Runs inside one write transaction.
///
/// # Errors
/// On database failure; nothing is applied then and the queue is kept.
pub fn curate(w: &mut Writer<'_>, config: &Config, now: i64) -> Result<Vec<TopicChange>, StoreError> {
    let mut changes = Vec::with_capacity(config.topics.len());
    for topic in &config.topics {
        let filter = filter_for(config, topic);
        let sig = signature(&filter);
        let change = if w.topic_signature(&topic.id)?.as_deref() == Some(sig.as_str()) {
            let m = w.matches(&filter, Scope::Pending)?;
            w.update_topic(&topic.id, now, &m)?;
            TopicChange { topic_id: topic.id.clone(), backfilled: false, matched: m.len() }
        } else {
            let m = w.matches(&filter, Scope::All)?;
            w.replace_topic(&topic.id, &sig, now, &m)?;
            TopicChange { topic_id: topic.id.clone(), backfilled: true, matched: m.len() }
        };
        changes.push(change);
    }
    let keep: Vec<&str> = config.topics.iter().map(|t| t.id.as_str()).collect();
    w.retain_topics(&keep)?;
    w.clear_pending()?;
    Ok(changes)
}
