//! WebSub's rows: subscribers of topic feeds (feedsieve as a hub) and the source
//! feeds' own subscriptions (feedsieve as a subscriber). A delivery is claimed by one
//! node until `claimed_until` (`FOR UPDATE SKIP LOCKED`), so that many nodes make one
//! delivery of each change.

use postgres::{Client, GenericClient, Row};

use crate::model::{Delivered, Delivery, HubSubscription, Source};
use crate::store::StoreError;

pub fn subscribe(client: &mut Client, s: &HubSubscription) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO websub_subscriptions (topic, format, callback, secret, expires_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (topic, format, callback) DO UPDATE SET secret = excluded.secret, expires_at = excluded.expires_at",
        &[&s.topic, &s.format, &s.callback, &s.secret, &s.expires_at],
    )?;
    Ok(())
}

pub fn unsubscribe(
    client: &mut Client,
    topic: &str,
    format: &str,
    callback: &str,
) -> Result<bool, StoreError> {
    Ok(client.execute(
        "DELETE FROM websub_subscriptions WHERE topic = $1 AND format = $2 AND callback = $3",
        &[&topic, &format, &callback],
    )? > 0)
}

pub fn changed(
    client: &mut Client,
    topic: &str,
    format: &str,
    etag: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(client.execute(
        "UPDATE websub_subscriptions SET etag = $3, attempts = 0, next_attempt = $4, error = NULL
         WHERE topic = $1 AND format = $2 AND expires_at > $4
           AND etag IS DISTINCT FROM $3 AND delivered IS DISTINCT FROM $3",
        &[&topic, &format, &etag, &now],
    )? as usize)
}

/// Deliveries due at `now` that no node holds, claimed until `until`.
pub fn due(client: &mut Client, now: i64, until: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let rows = client.query(
        "WITH d AS (
             SELECT topic, format, callback FROM websub_subscriptions
             WHERE etag IS NOT NULL AND delivered IS DISTINCT FROM etag AND next_attempt <= $1 AND expires_at > $1
               AND (claimed_until IS NULL OR claimed_until <= $1)
             ORDER BY next_attempt LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE websub_subscriptions s SET claimed_until = $3 FROM d
         WHERE s.topic = d.topic AND s.format = d.format AND s.callback = d.callback
         RETURNING s.topic, s.format, s.callback, s.secret, s.etag, s.attempts",
        &[&now, &(limit as i64), &until],
    )?;
    Ok(rows
        .iter()
        .map(|r| Delivery {
            topic: r.get(0),
            format: r.get(1),
            callback: r.get(2),
            secret: r.get(3),
            etag: r.get(4),
            attempts: r.get(5),
        })
        .collect())
}

pub fn done(client: &mut Client, d: &Delivery, outcome: &Delivered) -> Result<(), StoreError> {
    let (t, f, c) = (&d.topic, &d.format, &d.callback);
    match outcome {
        Delivered::Ok { etag } => client.execute(
            "UPDATE websub_subscriptions SET delivered = $4, attempts = 0, next_attempt = NULL, error = NULL,
                 claimed_until = NULL
             WHERE topic = $1 AND format = $2 AND callback = $3",
            &[t, f, c, etag],
        )?,
        Delivered::Gone => client.execute(
            "DELETE FROM websub_subscriptions WHERE topic = $1 AND format = $2 AND callback = $3",
            &[t, f, c],
        )?,
        Delivered::Failed { error, retry_at } => client.execute(
            "UPDATE websub_subscriptions SET attempts = attempts + 1, next_attempt = $4, error = $5,
                 delivered = CASE WHEN $4::BIGINT IS NULL THEN etag ELSE delivered END, claimed_until = NULL
             WHERE topic = $1 AND format = $2 AND callback = $3",
            &[t, f, c, retry_at, error],
        )?,
        Delivered::Later { retry_at } => client.execute(
            "UPDATE websub_subscriptions SET next_attempt = $4, claimed_until = NULL
             WHERE topic = $1 AND format = $2 AND callback = $3",
            &[t, f, c, retry_at],
        )?,
    };
    Ok(())
}

pub fn subscriptions(client: &mut impl GenericClient, now: i64) -> Result<Vec<HubSubscription>, StoreError> {
    Ok(client
        .query(
            "SELECT topic, format, callback, secret, expires_at FROM websub_subscriptions WHERE expires_at > $1
             ORDER BY topic, format, callback",
            &[&now],
        )?
        .iter()
        .map(|r| HubSubscription {
            topic: r.get(0),
            format: r.get(1),
            callback: r.get(2),
            secret: r.get(3),
            expires_at: r.get(4),
        })
        .collect())
}

pub fn prune(client: &mut Client, now: i64) -> Result<usize, StoreError> {
    Ok(client.execute("DELETE FROM websub_subscriptions WHERE expires_at <= $1", &[&now])? as usize)
}

fn source(r: &Row) -> Source {
    Source {
        feed_id: r.get(0),
        hub: r.get(1),
        topic: r.get(2),
        secret: r.get(3),
        state: r.get(4),
        lease_until: r.get(5),
        requested_at: r.get(6),
        error: r.get(7),
    }
}

/// Every source's subscription, or `only` that feed's.
pub fn sources(client: &mut impl GenericClient, only: Option<&str>) -> Result<Vec<Source>, StoreError> {
    Ok(client
        .query(
            "SELECT feed_id, hub, topic, secret, state, lease_until, requested_at, error FROM websub_sources
             WHERE $1::TEXT IS NULL OR feed_id = $1 ORDER BY feed_id",
            &[&only],
        )?
        .iter()
        .map(source)
        .collect())
}

pub fn put_source(client: &mut Client, s: &Source) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO websub_sources (feed_id, hub, topic, secret, state, lease_until, requested_at, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (feed_id) DO UPDATE SET hub = excluded.hub, topic = excluded.topic, secret = excluded.secret,
             state = excluded.state, lease_until = excluded.lease_until, requested_at = excluded.requested_at,
             error = excluded.error",
        &[&s.feed_id, &s.hub, &s.topic, &s.secret, &s.state, &s.lease_until, &s.requested_at, &s.error],
    )?;
    Ok(())
}

pub fn remove_source(client: &mut Client, feed_id: &str) -> Result<(), StoreError> {
    client.execute("DELETE FROM websub_sources WHERE feed_id = $1", &[&feed_id])?;
    Ok(())
}
