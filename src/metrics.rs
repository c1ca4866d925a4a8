//! Counters the pipeline bumps and `/metrics` reports (Prometheus text format).
//!
//! Only what happens in this process is counted here (fetches, items stored); sizes
//! that live in the database (items, stories, topics, failing feeds) are read at
//! scrape time and passed to [`Metrics::render`].

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the fetch duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    fetch_ok: AtomicU64,
    fetch_not_modified: AtomicU64,
    fetch_failed: AtomicU64,
    items_new: AtomicU64,
    items_updated: AtomicU64,
    /// Cumulative counts per bucket, plus +Inf last.
    duration_buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_micros: AtomicU64,
    polls: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    claims: AtomicU64,
    claims_taken_over: AtomicU64,
    claims_lost: AtomicU64,
    notifications: AtomicU64,
    articles_fetched: AtomicU64,
    articles_failed: AtomicU64,
    articles_skipped: AtomicU64,
    websub_delivered: AtomicU64,
    websub_failed: AtomicU64,
    websub_gone: AtomicU64,
    pushes_ok: AtomicU64,
    pushes_refused: AtomicU64,
}

/// How a fetch ended, for the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum FetchOutcome {
    Ok,
    NotModified,
    Failed,
}

/// Database-held sizes for one scrape.
#[derive(Debug, Default, Clone)]
pub struct Sizes {
    pub items: i64,
    pub stories: i64,
    pub feeds: i64,
    pub feeds_failing: i64,
    pub topics: Vec<(String, i64)>,
}

impl Metrics {
    pub fn fetched(&self, outcome: FetchOutcome, took: Duration) {
        match outcome {
            FetchOutcome::Ok => &self.fetch_ok,
            FetchOutcome::NotModified => &self.fetch_not_modified,
            FetchOutcome::Failed => &self.fetch_failed,
        }
        .fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let slot = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.duration_buckets[slot].fetch_add(1, Relaxed);
        self.duration_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub fn stored(&self, new: usize, updated: usize) {
        self.items_new.fetch_add(new as u64, Relaxed);
        self.items_updated.fetch_add(updated as u64, Relaxed);
    }

    pub fn reloaded(&self, ok: bool) {
        if ok { &self.reloads_ok } else { &self.reloads_failed }.fetch_add(1, Relaxed);
    }

    pub fn poll_pass(&self) {
        self.polls.fetch_add(1, Relaxed);
    }

    /// Feeds claimed to poll, `taken_over` of them from a node whose lease ran out.
    pub fn claimed(&self, claimed: usize, taken_over: usize) {
        self.claims.fetch_add(claimed as u64, Relaxed);
        self.claims_taken_over.fetch_add(taken_over as u64, Relaxed);
    }

    /// A poll not stored: its claim ran out and another node took the feed.
    pub fn claim_lost(&self) {
        self.claims_lost.fetch_add(1, Relaxed);
    }

    /// A notice from another node (or process) came in.
    pub fn notified(&self) {
        self.notifications.fetch_add(1, Relaxed);
    }

    /// What one poll's article pages (`full_text`) came to.
    pub fn articles(&self, report: &crate::model::ArticleReport) {
        self.articles_fetched.fetch_add(u64::from(report.fetched), Relaxed);
        self.articles_failed.fetch_add(u64::from(report.failed), Relaxed);
        self.articles_skipped.fetch_add(u64::from(report.skipped), Relaxed);
    }

    /// A delivery to a subscriber of a topic feed (feedsieve as a hub).
    pub fn websub_delivered(&self, outcome: &crate::model::Delivered) {
        use crate::model::Delivered;
        match outcome {
            Delivered::Ok { .. } => &self.websub_delivered,
            Delivered::Failed { .. } => &self.websub_failed,
            Delivered::Gone => &self.websub_gone,
            Delivered::Later { .. } => return,
        }
        .fetch_add(1, Relaxed);
    }

    /// A hub's push to a source feed's callback: signed right (stored) or not.
    pub fn websub_push(&self, ok: bool) {
        if ok { &self.pushes_ok } else { &self.pushes_refused }.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, sizes: &Sizes) -> String {
        let mut o = String::with_capacity(2048);
        let _ = writeln!(o, "# HELP feedsieve_fetches_total Feed fetches by outcome.");
        let _ = writeln!(o, "# TYPE feedsieve_fetches_total counter");
        for (label, c) in [
            ("ok", &self.fetch_ok),
            ("not_modified", &self.fetch_not_modified),
            ("failed", &self.fetch_failed),
        ] {
            let _ = writeln!(o, "feedsieve_fetches_total{{outcome=\"{label}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(o, "# HELP feedsieve_fetch_duration_seconds Time from request to complete body.");
        let _ = writeln!(o, "# TYPE feedsieve_fetch_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.duration_buckets[i].load(Relaxed);
            let _ = writeln!(o, "feedsieve_fetch_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.duration_buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(o, "feedsieve_fetch_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.duration_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "feedsieve_fetch_duration_seconds_sum {sum}");
        let _ = writeln!(o, "feedsieve_fetch_duration_seconds_count {cumulative}");
        let counters = [
            (
                "feedsieve_items_stored_total",
                "Items stored for the first time by this process.",
                &self.items_new,
            ),
            (
                "feedsieve_items_updated_total",
                "Items corrected in place by this process.",
                &self.items_updated,
            ),
            ("feedsieve_poll_passes_total", "Scheduled poll passes run.", &self.polls),
            ("feedsieve_claims_total", "Feeds this node claimed to poll (PostgreSQL).", &self.claims),
            (
                "feedsieve_claims_taken_over_total",
                "Claims taken from a node whose lease had run out (PostgreSQL).",
                &self.claims_taken_over,
            ),
            (
                "feedsieve_claims_lost_total",
                "Polls not stored because their claim ran out and another node took the feed (PostgreSQL).",
                &self.claims_lost,
            ),
            (
                "feedsieve_notifications_total",
                "Notices of changes by other nodes or processes received (PostgreSQL LISTEN).",
                &self.notifications,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Relaxed));
        }
        let _ = writeln!(
            o,
            "# HELP feedsieve_articles_total Article pages of new items (full_text) by outcome: fetched and \
             extracted, failed (the item keeps the feed's text), skipped (past the per-poll limit)."
        );
        let _ = writeln!(o, "# TYPE feedsieve_articles_total counter");
        for (label, c) in [
            ("fetched", &self.articles_fetched),
            ("failed", &self.articles_failed),
            ("skipped", &self.articles_skipped),
        ] {
            let _ = writeln!(o, "feedsieve_articles_total{{outcome=\"{label}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(
            o,
            "# HELP feedsieve_websub_deliveries_total Topic feed versions POSTed to WebSub subscribers, by outcome (gone: the subscriber answered 410)."
        );
        let _ = writeln!(o, "# TYPE feedsieve_websub_deliveries_total counter");
        for (label, c) in
            [("ok", &self.websub_delivered), ("failed", &self.websub_failed), ("gone", &self.websub_gone)]
        {
            let _ =
                writeln!(o, "feedsieve_websub_deliveries_total{{outcome=\"{label}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(
            o,
            "# HELP feedsieve_websub_pushes_total Pushes hubs sent to source feeds' callbacks, by outcome (refused: a bad or missing signature)."
        );
        let _ = writeln!(o, "# TYPE feedsieve_websub_pushes_total counter");
        for (label, c) in [("stored", &self.pushes_ok), ("refused", &self.pushes_refused)] {
            let _ = writeln!(o, "feedsieve_websub_pushes_total{{outcome=\"{label}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(o, "# HELP feedsieve_config_reloads_total Config reloads by result.");
        let _ = writeln!(o, "# TYPE feedsieve_config_reloads_total counter");
        let _ =
            writeln!(o, "feedsieve_config_reloads_total{{result=\"ok\"}} {}", self.reloads_ok.load(Relaxed));
        let _ = writeln!(
            o,
            "feedsieve_config_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Relaxed)
        );
        let gauges = [
            ("feedsieve_items", "Items in the database.", sizes.items),
            ("feedsieve_stories", "Stories in the database.", sizes.stories),
            ("feedsieve_feeds", "Feeds configured.", sizes.feeds),
            ("feedsieve_feeds_failing", "Configured feeds whose last poll failed.", sizes.feeds_failing),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(o, "# HELP feedsieve_topic_stories Stories in each topic.");
        let _ = writeln!(o, "# TYPE feedsieve_topic_stories gauge");
        for (id, n) in &sizes.topics {
            let _ = writeln!(
                o,
                "feedsieve_topic_stories{{topic=\"{}\"}} {n}",
                id.replace(['\\', '"', '\n'], "_")
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.fetched(FetchOutcome::Ok, Duration::from_millis(5));
        m.fetched(FetchOutcome::Failed, Duration::from_millis(300));
        m.fetched(FetchOutcome::NotModified, Duration::from_secs(60));
        let text = m.render(&Sizes { topics: vec![("t".into(), 3)], ..Sizes::default() });
        assert!(text.contains("feedsieve_fetches_total{outcome=\"ok\"} 1"));
        assert!(text.contains("feedsieve_fetch_duration_seconds_bucket{le=\"0.01\"} 1"));
        assert!(text.contains("feedsieve_fetch_duration_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("feedsieve_fetch_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("feedsieve_fetch_duration_seconds_count 3"));
        assert!(text.contains("feedsieve_topic_stories{topic=\"t\"} 3"));
    }

    #[test]
    fn article_pages_are_counted_by_outcome() {
        let m = Metrics::default();
        let report =
            |fetched, failed, skipped| crate::model::ArticleReport { fetched, failed, skipped, error: None };
        m.articles(&report(3, 1, 0));
        m.articles(&report(1, 1, 5));
        let text = m.render(&Sizes::default());
        assert!(text.contains("feedsieve_articles_total{outcome=\"fetched\"} 4"), "{text}");
        assert!(text.contains("feedsieve_articles_total{outcome=\"failed\"} 2"));
        assert!(text.contains("feedsieve_articles_total{outcome=\"skipped\"} 5"));
    }
}
