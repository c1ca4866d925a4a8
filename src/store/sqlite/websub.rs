//! WebSub's rows: subscribers of topic feeds (feedsieve as a hub) and the source
//! feeds' own subscriptions (feedsieve as a subscriber).

use rusqlite::{Connection, params};

use crate::model::{Delivered, Delivery, HubSubscription, Source};
use crate::store::StoreError;

pub fn subscribe(conn: &Connection, s: &HubSubscription) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO websub_subscriptions (topic, format, callback, secret, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (topic, format, callback) DO UPDATE SET secret = excluded.secret, expires_at = excluded.expires_at",
    )?
    .execute(params![s.topic, s.format, s.callback, s.secret, s.expires_at])?;
    Ok(())
}

pub fn unsubscribe(conn: &Connection, topic: &str, format: &str, callback: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM websub_subscriptions WHERE topic = ?1 AND format = ?2 AND callback = ?3",
        )?
        .execute(params![topic, format, callback])?
        > 0)
}

pub fn changed(
    conn: &Connection,
    topic: &str,
    format: &str,
    etag: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE websub_subscriptions SET etag = ?3, attempts = 0, next_attempt = ?4, error = NULL
             WHERE topic = ?1 AND format = ?2 AND expires_at > ?4 AND etag IS NOT ?3 AND delivered IS NOT ?3",
        )?
        .execute(params![topic, format, etag, now])?)
}

/// Deliveries due at `now` that are not in flight, held until `until`.
pub fn due(conn: &Connection, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE websub_subscriptions SET claimed_until = ?2
         WHERE rowid IN (
             SELECT rowid FROM websub_subscriptions
             WHERE etag IS NOT NULL AND delivered IS NOT etag AND next_attempt <= ?1 AND expires_at > ?1
               AND (claimed_until IS NULL OR claimed_until <= ?1)
             ORDER BY next_attempt LIMIT ?3)
         RETURNING topic, format, callback, secret, etag, attempts",
    )?;
    let rows = stmt.query_map(params![now, until, limit as i64], |r| {
        Ok(Delivery {
            topic: r.get(0)?,
            format: r.get(1)?,
            callback: r.get(2)?,
            secret: r.get(3)?,
            etag: r.get(4)?,
            attempts: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn done(conn: &Connection, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError> {
    let key = params![d.topic, d.format, d.callback];
    match outcome {
        Delivered::Ok { etag } => conn
            .prepare_cached(
                "UPDATE websub_subscriptions SET delivered = ?4, attempts = 0, next_attempt = NULL, error = NULL,
                     claimed_until = NULL
                 WHERE topic = ?1 AND format = ?2 AND callback = ?3",
            )?
            .execute(params![d.topic, d.format, d.callback, etag])?,
        Delivered::Gone => conn
            .prepare_cached("DELETE FROM websub_subscriptions WHERE topic = ?1 AND format = ?2 AND callback = ?3")?
            .execute(key)?,
        Delivered::Failed { error, retry_at } => conn
            .prepare_cached(
                "UPDATE websub_subscriptions SET attempts = attempts + 1, next_attempt = ?4, error = ?5,
                     delivered = CASE WHEN ?4 IS NULL THEN etag ELSE delivered END, claimed_until = NULL
                 WHERE topic = ?1 AND format = ?2 AND callback = ?3",
            )?
            .execute(params![d.topic, d.format, d.callback, retry_at, error])?,
        Delivered::Later { retry_at } => conn
            .prepare_cached(
                "UPDATE websub_subscriptions SET next_attempt = ?4, claimed_until = NULL
                 WHERE topic = ?1 AND format = ?2 AND callback = ?3",
            )?
            .execute(params![d.topic, d.format, d.callback, retry_at])?,
    };
    Ok(())
}

pub fn subscriptions(conn: &Connection, now: i64) -> Result<Vec<HubSubscription>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT topic, format, callback, secret, expires_at FROM websub_subscriptions WHERE expires_at > ?1
         ORDER BY topic, format, callback",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(HubSubscription {
            topic: r.get(0)?,
            format: r.get(1)?,
            callback: r.get(2)?,
            secret: r.get(3)?,
            expires_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn prune(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached("DELETE FROM websub_subscriptions WHERE expires_at <= ?1")?.execute([now])?)
}

/// Every source's subscription, or `only` that feed's.
pub fn sources(conn: &Connection, only: Option<&str>) -> Result<Vec<Source>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT feed_id, hub, topic, secret, state, lease_until, requested_at, error FROM websub_sources
         WHERE ?1 IS NULL OR feed_id = ?1 ORDER BY feed_id",
    )?;
    let rows = stmt.query_map([only], |r| {
        Ok(Source {
            feed_id: r.get(0)?,
            hub: r.get(1)?,
            topic: r.get(2)?,
            secret: r.get(3)?,
            state: r.get(4)?,
            lease_until: r.get(5)?,
            requested_at: r.get(6)?,
            error: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn put_source(conn: &Connection, s: &Source) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO websub_sources (feed_id, hub, topic, secret, state, lease_until, requested_at, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (feed_id) DO UPDATE SET hub = excluded.hub, topic = excluded.topic, secret = excluded.secret,
             state = excluded.state, lease_until = excluded.lease_until, requested_at = excluded.requested_at,
             error = excluded.error",
    )?
    .execute(params![s.feed_id, s.hub, s.topic, s.secret, s.state, s.lease_until, s.requested_at, s.error])?;
    Ok(())
}

pub fn remove_source(conn: &Connection, feed_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM websub_sources WHERE feed_id = ?1")?.execute([feed_id])?;
    Ok(())
}
