//! Curation: which stories belong to which topic.
//!
//! Input: the validated topics and the items the last polls stored or corrected (the
//! store's pending queue). Output: each topic's stories, each with the score of its
//! best match. A topic is compiled to a [`TopicFilter`] (our own query tree, which the
//! store renders for its full-text search, plus the feeds it draws from); its
//! signature is stored, so a topic that is new or whose definition changed is
//! backfilled over every stored item, and an unchanged one only looks at pending
//! items.

pub mod query;

use crate::config::{Config, TopicConfig};
use crate::dedup;
use crate::model::{Scope, TopicFilter};
use crate::store::{StoreError, Writer};

/// The store's view of a topic.
pub fn filter_for(config: &Config, topic: &TopicConfig) -> TopicFilter {
    TopicFilter {
        query: topic.query.clone(),
        exclude: topic.exclude.clone(),
        feeds: Config::restricts_feeds(topic)
            .then(|| config.topic_feeds(topic).map(|f| f.id.clone()).collect()),
    }
}

/// Identifies a topic's definition: when it changes, the topic is backfilled. Made
/// of the canonical text of its queries, the same whichever store holds it.
pub fn signature(filter: &TopicFilter) -> String {
    let feeds = filter.feeds.as_ref().map(|f| f.join("\u{1}"));
    let text = |q: &Option<crate::model::Query>| q.as_ref().map(ToString::to_string);
    let (query, exclude) = (text(&filter.query), text(&filter.exclude));
    let d = dedup::digest(&[
        query.as_deref().unwrap_or("\u{0}"),
        exclude.as_deref().unwrap_or("\u{0}"),
        feeds.as_deref().unwrap_or("\u{0}"),
    ]);
    dedup::hex(&d[..16])
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
