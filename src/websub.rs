//! WebSub (W3C Recommendation, 23 January 2018) on both ends.
//!
//! **Hub** (`[websub] hub = "self"`): `POST /websub` takes `hub.mode=subscribe` or
//! `unsubscribe` for a topic feed's URL (any of its three formats). The request is
//! checked at once (a topic feedsieve publishes, a callback the redirect rules allow,
//! a secret under 200 bytes) and answered 202; the intent is then verified with a GET
//! to the callback carrying `hub.challenge`, which must come back as the body. A
//! verified subscription is stored with its lease (bounded by [`LEASE_MIN`] and
//! [`LEASE_MAX`]). When a topic's output changes, every live subscriber of that format
//! is owed the new version ([`crate::store::Store::hub_changed`]: on many nodes one
//! delivery per change), which [`deliver`] POSTs, signed `X-Hub-Signature:
//! sha256=...` when there is a secret, retried with backoff ([`MAX_ATTEMPTS`]); a 410
//! ends the subscription. With `hub = "URL"` another hub is pinged with
//! `hub.mode=publish` on every change instead.
//!
//! **Subscriber** (`[websub] subscribe = true`): a polled feed that advertises a hub
//! and its self URL is subscribed with the callback `BASE_URL/websub/callback/FEED_ID`
//! and a secret of its own ([`manage_sources`]); the verification GET is answered only
//! for a subscription feedsieve asked for, and each push is stored at once by the
//! poll's own path ([`crate::daemon::pipeline::store_pushed`]) if its signature
//! (sha1, sha256, sha384 or sha512) holds. A push with a bad or missing signature is
//! acknowledged (as the Recommendation asks, so a forger learns nothing) and stored
//! nowhere. Leases are renewed before they end; a feed removed from the config is
//! unsubscribed; polling goes on at the feed's schedule.
//!
//! Every callback, hub and subscriber is third-party input: requests to them are held
//! to the redirect rules (`fetch::redirect_allowed`, the resolver's checks, never this
//! daemon's own address), have [`CALL_TIMEOUT`] and follow no redirects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Config, Hub};
use crate::fetch::RedirectResolver;
use crate::model::{Delivered, Delivery, HubSubscription, Source};
use crate::publish::Format;
use crate::serve::AppState;

/// Lease given when a subscriber asks for none.
pub const LEASE_DEFAULT: u64 = 10 * 86_400;
/// Shortest lease granted (a shorter request gets this).
pub const LEASE_MIN: u64 = 60;
/// Longest lease granted.
pub const LEASE_MAX: u64 = 30 * 86_400;
/// `hub.secret` must be shorter than 200 bytes (the Recommendation, 5.1).
pub const MAX_SECRET_BYTES: usize = 199;
/// Bound on each request to a callback or a hub.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed attempts at one version before it is given up (the next change is
/// delivered afresh).
pub const MAX_ATTEMPTS: i64 = 12;
/// The lease feedsieve asks source hubs for.
pub const LEASE_ASKED: u64 = 7 * 86_400;

/// A polled feed's advertised hub and self URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub feed_id: String,
    pub hub: String,
    pub topic: String,
}

/// A verified push for a source feed, for the daemon to store.
#[derive(Debug)]
pub struct Push {
    pub feed_id: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

/// What the HTTP handlers and the daemon's WebSub tasks share.
pub struct WebSubState {
    pub outbound: Outbound,
    /// Wakes [`deliver`] when a version is owed.
    pub wake: Arc<Notify>,
    /// Verified pushes, to the daemon loop (which owns the pipeline).
    pub pushes: Option<mpsc::Sender<Push>>,
}

impl WebSubState {
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(own: Option<SocketAddr>, pushes: Option<mpsc::Sender<Push>>) -> anyhow::Result<WebSubState> {
        Ok(WebSubState { outbound: Outbound::new(own)?, wake: Arc::new(Notify::new()), pushes })
    }
}

// ---------------------------------------------------------------------------------
// Signatures and tokens

type HmacSha1 = hmac::Hmac<sha1::Sha1>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;
type HmacSha384 = hmac::Hmac<sha2::Sha384>;
type HmacSha512 = hmac::Hmac<sha2::Sha512>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// `X-Hub-Signature` for `body`: `sha256=` and the HMAC in hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Whether `header` (`METHOD=HEX`) is `body`'s HMAC under `secret`, compared in
/// constant time. sha1, sha256, sha384 and sha512 are known.
pub fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((method, sig)) = header.trim().split_once('=') else { return false };
    let Some(sig) = unhex(sig.trim()) else { return false };
    fn check<M: Mac + KeyInit>(key: &[u8], body: &[u8], sig: &[u8]) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return false };
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    }
    let key = secret.as_bytes();
    match method.trim().to_ascii_lowercase().as_str() {
        "sha1" => check::<HmacSha1>(key, body, &sig),
        "sha256" => check::<HmacSha256>(key, body, &sig),
        "sha384" => check::<HmacSha384>(key, body, &sig),
        "sha512" => check::<HmacSha512>(key, body, &sig),
        _ => false,
    }
}

/// 32 random bytes in hex: challenges and secrets.
///
/// # Panics
/// If the operating system has no random source (then nothing here is safe).
pub fn token() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: no secret worth the name can be made.
        std::process::abort();
    }
    hex(&b)
}

// ---------------------------------------------------------------------------------
// Requests to third parties

/// HTTP to callbacks and hubs: no redirects followed, [`CALL_TIMEOUT`], and a URL the
/// operator did not write held to the redirect rules.
pub struct Outbound {
    /// Its resolver refuses link-local and metadata addresses (as for redirects).
    checked: reqwest::Client,
    /// For the hub the config names (the operator's choice).
    plain: reqwest::Client,
    own: Option<SocketAddr>,
}

impl Outbound {
    /// # Errors
    /// If the clients cannot be built.
    pub fn new(own: Option<SocketAddr>) -> anyhow::Result<Outbound> {
        crate::fetch::install_tls_provider();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(crate::fetch::USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(CALL_TIMEOUT)
                .no_proxy()
        };
        Ok(Outbound {
            checked: builder().dns_resolver(Arc::new(RedirectResolver)).build()?,
            plain: builder().build()?,
            own,
        })
    }

    /// Whether a third party's URL may be called: http(s), no link-local, metadata or
    /// unspecified address (literal or resolved), not this daemon's own address.
    ///
    /// # Errors
    /// Why not.
    pub async fn allowed(&self, url: &Url) -> Result<(), String> {
        crate::fetch::untrusted_allowed(url, self.own, true).await.map_err(|r| r.to_string())
    }

    /// Sends a request to a third party's URL (checked first), refusing an answer
    /// from this daemon's own address.
    async fn send(&self, url: &Url, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        self.allowed(url).await?;
        let resp = req.send().await.map_err(|e| crate::error_chain(&e.without_url()))?;
        if let (Some(own), Some(peer)) = (self.own, resp.remote_addr())
            && crate::fetch::is_own_address(own, peer)
        {
            return Err("the daemon's own address".into());
        }
        Ok(resp)
    }
}

/// `req` with `pairs` as its `application/x-www-form-urlencoded` body.
fn with_form(req: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body)
}

/// Reads at most `limit` bytes of a response body.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > limit {
            return Err(format!("more than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// The hub

/// A topic feed's URL as `(topic id, format)`, if it is one of `config`'s.
pub fn topic_of(config: &Config, url: &str) -> Option<(String, Format)> {
    let base = config.daemon.base_url.as_str();
    let rest = url.strip_prefix(base)?.strip_prefix("topics/")?;
    let (id, ext) = rest.rsplit_once('.')?;
    let format = Format::from_extension(ext)?;
    config.topic(id).map(|t| (t.id.clone(), format))
}

/// A topic feed's URL in one format.
pub fn topic_url(config: &Config, topic: &str, format: Format) -> String {
    crate::publish::topic_url(&config.daemon.base_url, topic, format)
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", text.into()))
        .into_response()
}

/// `POST /websub`: a subscription or unsubscription request (form-encoded).
pub async fn hub_request(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let config = state.config();
    if config.websub.hub != Some(Hub::Itself) {
        return answer(
            StatusCode::NOT_FOUND,
            "this daemon is no WebSub hub ([websub] hub = \"self\" makes it one)",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mode = match get("hub.mode") {
        Some(m @ ("subscribe" | "unsubscribe")) => m.to_owned(),
        Some(other) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("hub.mode '{other}' is not subscribe or unsubscribe"),
            );
        }
        None => return answer(StatusCode::BAD_REQUEST, "hub.mode is missing"),
    };
    let Some(topic_text) = get("hub.topic") else {
        return answer(StatusCode::BAD_REQUEST, "hub.topic is missing");
    };
    let Some((topic, format)) = topic_of(&config, topic_text) else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("hub.topic {topic_text} is not a topic feed of this hub"),
        );
    };
    let Some(callback) = get("hub.callback").and_then(|c| Url::parse(c).ok()) else {
        return answer(StatusCode::BAD_REQUEST, "hub.callback is missing or not an absolute URL");
    };
    let Some(ws) = &state.websub else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "WebSub is not running");
    };
    if let Err(why) = ws.outbound.allowed(&callback).await {
        return answer(StatusCode::FORBIDDEN, format!("hub.callback refused: {why}"));
    }
    let secret = form.get("hub.secret").filter(|s| !s.is_empty()).cloned();
    if secret.as_ref().is_some_and(|s| s.len() > MAX_SECRET_BYTES) {
        return answer(
            StatusCode::BAD_REQUEST,
            format!("hub.secret must be shorter than {} bytes", MAX_SECRET_BYTES + 1),
        );
    }
    let lease = get("hub.lease_seconds")
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(LEASE_DEFAULT)
        .clamp(LEASE_MIN, LEASE_MAX);
    let subscription = HubSubscription {
        topic,
        format: format.extension().to_owned(),
        callback: callback.to_string(),
        secret,
        expires_at: 0,
    };
    let state2 = state.clone();
    let topic_text = topic_text.to_owned();
    tokio::spawn(async move { verify_and_store(state2, mode, topic_text, subscription, lease).await });
    answer(StatusCode::ACCEPTED, "accepted: the intent is verified at the callback")
}

/// Verifies a request's intent at its callback, then stores or removes it.
async fn verify_and_store(
    state: Arc<AppState>,
    mode: String,
    topic: String,
    mut s: HubSubscription,
    lease: u64,
) {
    let Some(ws) = &state.websub else { return };
    let Ok(mut url) = Url::parse(&s.callback) else { return };
    let challenge = token();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("hub.mode", &mode)
            .append_pair("hub.topic", &topic)
            .append_pair("hub.challenge", &challenge);
        if mode == "subscribe" {
            q.append_pair("hub.lease_seconds", &lease.to_string());
        }
    }
    let verified = async {
        let resp = ws.outbound.send(&url, ws.outbound.checked.get(url.clone())).await?;
        if !resp.status().is_success() {
            return Err(format!("the callback answered HTTP {}", resp.status().as_u16()));
        }
        let body = read_limited(resp, 4096).await?;
        if body.trim_ascii() != challenge.as_bytes() {
            return Err("the callback did not echo hub.challenge".to_owned());
        }
        Ok(())
    }
    .await;
    let shown = crate::model::redacted_url(&url::Url::parse(&s.callback).unwrap_or(url));
    if let Err(why) = verified {
        tracing::info!("WebSub {mode} of {topic} for {shown} not verified: {why}");
        return;
    }
    let now = chrono::Utc::now().timestamp();
    s.expires_at = now + lease as i64;
    let result = if mode == "subscribe" {
        let s2 = s.clone();
        state.store.call(move |st| st.hub_subscribe(&s2)).await
    } else {
        let (t, f, c) = (s.topic.clone(), s.format.clone(), s.callback.clone());
        state.store.call(move |st| st.hub_unsubscribe(&t, &f, &c).map(drop)).await
    };
    match result {
        Ok(()) => tracing::info!("WebSub: {shown} {mode}d to {topic} ({lease}s)"),
        Err(e) => tracing::error!("WebSub: storing the {mode} of {shown}: {}", crate::error_chain(&e)),
    }
}

/// Records that topic outputs changed (`(topic, format, etag)`), so that their
/// subscribers are owed them, and pings an external hub.
pub async fn changed(state: &Arc<AppState>, changes: Vec<(String, Format, String)>) {
    if changes.is_empty() {
        return;
    }
    let config = state.config();
    match &config.websub.hub {
        Some(Hub::Itself) => {
            let now = chrono::Utc::now().timestamp();
            let owed = state
                .store
                .call(move |s| {
                    let mut n = 0;
                    for (topic, format, etag) in &changes {
                        n += s.hub_changed(topic, format.extension(), etag, now)?;
                    }
                    Ok(n)
                })
                .await;
            match owed {
                Ok(n) if n > 0 => {
                    if let Some(ws) = &state.websub {
                        ws.wake.notify_one();
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("WebSub: recording a change: {}", crate::error_chain(&e)),
            }
        }
        Some(Hub::External(hub)) => {
            let Some(ws) = &state.websub else { return };
            for (topic, format, _) in &changes {
                let url = topic_url(&config, topic, *format);
                let form = [("hub.mode", "publish"), ("hub.url", url.as_str()), ("hub.topic", url.as_str())];
                match with_form(ws.outbound.plain.post(hub.clone()), &form).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(
                        "WebSub: the hub {hub} answered HTTP {} to a publish",
                        r.status().as_u16()
                    ),
                    Err(e) => tracing::warn!(
                        "WebSub: pinging the hub {hub}: {}",
                        crate::error_chain(&e.without_url())
                    ),
                }
            }
        }
        None => {}
    }
}

/// The wait before attempt `attempts + 2` (after `attempts + 1` failures): 5 s,
/// doubling, at most an hour (about 2.4 hours in all); `None` once [`MAX_ATTEMPTS`]
/// failed.
pub fn backoff(attempts: i64) -> Option<Duration> {
    (attempts + 1 < MAX_ATTEMPTS).then(|| Duration::from_secs((5u64 << attempts.clamp(0, 12)).min(3600)))
}

/// Deliveries in flight at once.
pub const DELIVERIES_AT_ONCE: usize = 16;

/// The delivery loop: whenever woken (a change), every few seconds (retries) and as
/// each delivery ends, takes the deliveries due (four slots' worth at a time) and POSTs
/// them, [`DELIVERIES_AT_ONCE`] in flight. A slow subscriber holds one slot, never the others. Also
/// ends expired subscriptions.
pub async fn deliver(state: Arc<AppState>, stop: CancellationToken) {
    let Some(ws) = &state.websub else { return };
    let mut prune = tokio::time::interval(Duration::from_secs(600));
    let mut flying: tokio::task::JoinSet<(Delivery, Delivered)> = tokio::task::JoinSet::new();
    // Taken from the database in batches, started as slots free up.
    let mut queue: std::collections::VecDeque<Delivery> = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = ws.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            Some(done) = flying.join_next(), if !flying.is_empty() => {
                if let Ok((d, outcome)) = done {
                    report(&state, &d, &outcome);
                }
            }
            _ = prune.tick() => {
                let now = chrono::Utc::now().timestamp();
                if let Err(e) = state.store.call(move |s| s.hub_prune(now)).await {
                    tracing::warn!("WebSub: ending expired subscriptions: {}", crate::error_chain(&e));
                }
                continue;
            }
        }
        if queue.is_empty() && flying.len() < DELIVERIES_AT_ONCE {
            let now = chrono::Utc::now().timestamp();
            // Held past the longest the batch can take (four waves of the slots, each
            // at most the call timeout), given back as each delivery ends.
            let until = now + 6 * CALL_TIMEOUT.as_secs() as i64;
            match state.store.call(move |s| s.hub_due(now, until, 4 * DELIVERIES_AT_ONCE)).await {
                Ok(d) => queue.extend(d),
                Err(e) => tracing::warn!("WebSub: reading the deliveries due: {}", crate::error_chain(&e)),
            }
        }
        while flying.len() < DELIVERIES_AT_ONCE
            && let Some(d) = queue.pop_front()
        {
            let state = state.clone();
            flying.spawn(async move {
                let outcome = deliver_one(&state, &d).await;
                let (d2, o) = (d.clone(), outcome.clone());
                if let Err(e) = state.store.call(move |s| s.hub_done(&d2, &o)).await {
                    tracing::warn!("WebSub: recording a delivery: {}", crate::error_chain(&e));
                }
                (d, outcome)
            });
        }
    }
}

/// Counts and logs what a delivery came to.
fn report(state: &AppState, d: &Delivery, outcome: &Delivered) {
    state.metrics.websub_delivered(outcome);
    let to = crate::model::redacted_url_text(&d.callback).unwrap_or_default();
    match outcome {
        Delivered::Failed { error, retry_at } => tracing::info!(
            "WebSub: delivering {}.{} to {to}: {error}{}",
            d.topic,
            d.format,
            if retry_at.is_some() { "; retrying later" } else { "; given up until the next change" }
        ),
        Delivered::Gone => {
            tracing::info!("WebSub: {to} answered 410: its subscription to {}.{} ended", d.topic, d.format);
        }
        Delivered::Later { .. } | Delivered::Ok { .. } => {}
    }
}

/// POSTs the version `d` is owed of its topic feed to its callback.
async fn deliver_one(state: &Arc<AppState>, d: &Delivery) -> Delivered {
    let now = chrono::Utc::now().timestamp();
    let Some(format) = Format::from_extension(&d.format) else {
        return Delivered::Gone;
    };
    let Some(feed) = state.feed(&d.topic, format.extension()) else {
        // The topic is no longer configured: nothing to deliver, ever.
        return Delivered::Gone;
    };
    if feed.etag != d.etag {
        return Delivered::Later { retry_at: now + 2 };
    }
    let Some(ws) = &state.websub else { return Delivered::Later { retry_at: now + 5 } };
    let config = state.config();
    let Ok(url) = Url::parse(&d.callback) else { return Delivered::Gone };
    let topic_url = topic_url(&config, &d.topic, format);
    let mut req = ws
        .outbound
        .checked
        .post(url.clone())
        .header(header::CONTENT_TYPE, format.content_type())
        .body(feed.body.clone());
    let mut links = format!("<{topic_url}>; rel=\"self\"");
    if let Some(hub) = config.hub_url() {
        links = format!("<{hub}>; rel=\"hub\", {links}");
    }
    req = req.header(header::LINK, links);
    if let Some(secret) = &d.secret {
        req = req.header("X-Hub-Signature", sign(secret, &feed.body));
    }
    let failed = |error: String| Delivered::Failed {
        error,
        retry_at: backoff(d.attempts).map(|w| now + w.as_secs() as i64),
    };
    match ws.outbound.send(&url, req).await {
        Ok(r) if r.status().is_success() => Delivered::Ok { etag: d.etag.clone() },
        Ok(r) if r.status() == StatusCode::GONE => Delivered::Gone,
        Ok(r) => failed(format!("HTTP {}", r.status().as_u16())),
        Err(e) => failed(e),
    }
}

// ---------------------------------------------------------------------------------
// The subscriber

/// `GET /websub/callback/{feed}`: a hub verifying a (un)subscription. Echoed only for
/// what feedsieve asked: the feed's hub and topic, in the mode it last requested.
pub async fn callback_verify(
    State(state): State<Arc<AppState>>,
    Path(feed_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = feed_id.clone();
    let Some(mut source) = state.store.read(move |s| s.source(&id)).await.ok().flatten() else {
        return answer(StatusCode::NOT_FOUND, "no subscription for this callback");
    };
    let (mode, topic, challenge) =
        (q.get("hub.mode").map(String::as_str), q.get("hub.topic"), q.get("hub.challenge"));
    let Some(challenge) = challenge.filter(|c| !c.is_empty() && c.len() <= 1024) else {
        return answer(StatusCode::BAD_REQUEST, "hub.challenge is missing");
    };
    if topic != Some(&source.topic) {
        return answer(StatusCode::NOT_FOUND, "hub.topic is not the topic subscribed to");
    }
    let asked = match (mode, source.state.as_str()) {
        (Some("subscribe"), "requested" | "active") => true,
        (Some("unsubscribe"), "unsubscribing") => true,
        (Some("denied"), _) => {
            source.error = Some(format!(
                "the hub denied the subscription: {}",
                q.get("hub.reason").map_or("", String::as_str)
            ));
            let s = source.clone();
            let _ = state.store.call(move |st| st.put_source(&s)).await;
            return answer(StatusCode::OK, "noted");
        }
        _ => false,
    };
    if !asked {
        return answer(StatusCode::NOT_FOUND, "not a request this subscriber made");
    }
    let now = chrono::Utc::now().timestamp();
    if mode == Some("subscribe") {
        let lease =
            q.get("hub.lease_seconds").and_then(|l| l.parse::<i64>().ok()).unwrap_or(LEASE_ASKED as i64);
        source.state = "active".into();
        source.lease_until = Some(now + lease.max(0));
        source.error = None;
        let s = source.clone();
        if let Err(e) = state.store.call(move |st| st.put_source(&s)).await {
            tracing::error!("WebSub: recording the subscription of {feed_id}: {}", crate::error_chain(&e));
            return answer(StatusCode::SERVICE_UNAVAILABLE, "cannot record the subscription");
        }
        tracing::info!("WebSub: {feed_id} subscribed at {} for {lease}s", source.hub);
    } else {
        let id = feed_id.clone();
        let _ = state.store.call(move |st| st.remove_source(&id)).await;
        tracing::info!("WebSub: {feed_id} unsubscribed at {}", source.hub);
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], challenge.clone()).into_response()
}

/// `POST /websub/callback/{feed}`: a hub's push. Stored at once if signed with the
/// subscription's secret; acknowledged, and dropped, otherwise.
pub async fn callback_push(
    State(state): State<Arc<AppState>>,
    Path(feed_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = state.config();
    let limit = usize::try_from(config.daemon.max_feed_bytes).unwrap_or(usize::MAX);
    let id = feed_id.clone();
    let source = state.store.read(move |s| s.source(&id)).await.ok().flatten();
    let Some(source) = source.filter(|s| s.state != "unsubscribing") else {
        // The Recommendation: 410 tells the hub this subscription is over.
        return answer(StatusCode::GONE, "no subscription for this callback");
    };
    if body.len() > limit {
        state.metrics.websub_push(false);
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than max_feed_bytes");
    }
    let signature = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    if !signature.is_some_and(|s| signature_valid(&source.secret, s, &body)) {
        state.metrics.websub_push(false);
        tracing::warn!(
            feed = %feed_id,
            "WebSub: a push {} signature was dropped",
            if signature.is_some() { "with a bad" } else { "without a" }
        );
        // Acknowledged all the same (the Recommendation, 8), and stored nowhere.
        return answer(StatusCode::ACCEPTED, "accepted");
    }
    state.metrics.websub_push(true);
    let push = Push {
        feed_id,
        body: body.to_vec(),
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    match state.websub.as_ref().and_then(|w| w.pushes.as_ref()) {
        Some(tx) if tx.send(push).await.is_ok() => answer(StatusCode::ACCEPTED, "accepted"),
        _ => answer(StatusCode::SERVICE_UNAVAILABLE, "not storing pushes now"),
    }
}

/// What to do about one source feed now.
fn source_action(config: &Config, s: &Source, now: i64) -> Option<&'static str> {
    let wanted = config.websub.subscribe && config.feed(&s.feed_id).is_some();
    match s.state.as_str() {
        _ if !wanted => (s.state != "unsubscribing" || now - s.requested_at > 3600).then_some("unsubscribe"),
        // A hub that never verified is asked again after an hour.
        "requested" => (now - s.requested_at > 3600).then_some("subscribe"),
        // Renewed when a tenth of the lease (at least an hour) is left.
        "active" => s
            .lease_until
            .is_none_or(|until| {
                let lease = (until - s.requested_at).max(0);
                until - now <= (lease / 10).max(3600)
            })
            .then_some("subscribe"),
        _ => None,
    }
}

/// Subscribes source feeds to the hubs they advertise (`adverts` from polls), renews
/// leases before they end, and unsubscribes feeds no longer configured.
pub async fn manage_sources(
    state: Arc<AppState>,
    mut adverts: mpsc::UnboundedReceiver<Advert>,
    stop: CancellationToken,
) {
    // A look at every subscription this often: renewals, feeds removed by a reload.
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let advert = tokio::select! {
            () = stop.cancelled() => return,
            a = adverts.recv() => match a { Some(a) => Some(a), None => return },
            _ = tick.tick() => None,
        };
        let config = state.config();
        let now = chrono::Utc::now().timestamp();
        let mut work: Vec<(Source, &'static str)> = Vec::new();
        if let Some(a) = advert {
            // Each poll of an advertising feed says so: only its own row is read.
            let id = a.feed_id.clone();
            let known = match state.store.read(move |s| s.source(&id)).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!("WebSub: reading a subscription: {}", crate::error_chain(&e));
                    continue;
                }
            };
            let changed = known.is_none_or(|s| s.hub != a.hub || s.topic != a.topic);
            if changed && config.websub.subscribe {
                let s = Source {
                    feed_id: a.feed_id,
                    hub: a.hub,
                    topic: a.topic,
                    secret: token(),
                    state: "requested".into(),
                    lease_until: None,
                    requested_at: now,
                    error: None,
                };
                work.push((s, "subscribe"));
            }
        } else {
            match state.store.read(|s| s.sources()).await {
                Ok(sources) => {
                    for s in sources {
                        if let Some(action) = source_action(&config, &s, now) {
                            work.push((s, action));
                        }
                    }
                }
                Err(e) => tracing::warn!("WebSub: reading subscriptions: {}", crate::error_chain(&e)),
            }
        }
        for (mut s, mode) in work {
            s.requested_at = now;
            s.state =
                if mode == "subscribe" && s.state != "active" { "requested".into() } else { s.state.clone() };
            if mode == "unsubscribe" {
                s.state = "unsubscribing".into();
            }
            // Recorded before the request: the hub may verify before it answers.
            let s2 = s.clone();
            if let Err(e) = state.store.call(move |st| st.put_source(&s2)).await {
                tracing::warn!(
                    "WebSub: recording the subscription of {}: {}",
                    s.feed_id,
                    crate::error_chain(&e)
                );
                continue;
            }
            if let Err(e) = request_at_hub(&state, &config, &s, mode).await {
                tracing::warn!("WebSub: {mode} of {} at {}: {e}", s.feed_id, s.hub);
                s.error = Some(e);
                let s2 = s.clone();
                let _ = state.store.call(move |st| st.put_source(&s2)).await;
            }
        }
    }
}

/// POSTs a (un)subscription request for `s` to its hub.
async fn request_at_hub(
    state: &Arc<AppState>,
    config: &Config,
    s: &Source,
    mode: &str,
) -> Result<(), String> {
    let Some(ws) = &state.websub else { return Err("WebSub is not running".into()) };
    let hub = Url::parse(&s.hub).map_err(|e| format!("hub URL: {e}"))?;
    let callback = config
        .daemon
        .base_url
        .join(&format!("websub/callback/{}", s.feed_id))
        .map_err(|e| format!("callback URL: {e}"))?;
    let lease = LEASE_ASKED.to_string();
    let mut form =
        vec![("hub.mode", mode), ("hub.topic", s.topic.as_str()), ("hub.callback", callback.as_str())];
    if mode == "subscribe" {
        form.push(("hub.secret", s.secret.as_str()));
        form.push(("hub.lease_seconds", lease.as_str()));
    }
    let resp = ws.outbound.send(&hub, with_form(ws.outbound.checked.post(hub.clone()), &form)).await?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the hub answered HTTP {}", resp.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_every_method_are_checked() {
        let body = b"<feed/>";
        let ours = sign("s3cret", body);
        assert!(ours.starts_with("sha256=") && signature_valid("s3cret", &ours, body));
        assert!(!signature_valid("other", &ours, body));
        assert!(!signature_valid("s3cret", &ours, b"<feed/> "));
        // Known answers (RFC 2202 and 4231, test case 2: key "Jefe").
        let msg = b"what do ya want for nothing?";
        assert!(signature_valid("Jefe", "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", msg));
        assert!(signature_valid(
            "Jefe",
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            msg
        ));
        let sha512 = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
        assert!(signature_valid("Jefe", &format!("sha512={sha512}"), msg));
        for bad in ["", "sha256", "sha256=zz", "md5=00", "sha256=5bdc"] {
            assert!(!signature_valid("Jefe", bad, msg), "{bad}");
        }
    }

    #[test]
    fn retries_back_off_and_end() {
        assert_eq!(backoff(0), Some(Duration::from_secs(5)));
        assert_eq!(backoff(1), Some(Duration::from_secs(10)));
        assert_eq!(backoff(9), Some(Duration::from_secs(2560)));
        assert_eq!(backoff(10), Some(Duration::from_secs(3600)));
        assert_eq!(backoff(MAX_ATTEMPTS - 1), None);
    }

    #[test]
    fn sources_are_renewed_asked_again_and_left() {
        let config = crate::config::parse(
            "[daemon]\nbase_url = \"https://f.example.org/\"\n[websub]\nsubscribe = true\n\
             [[feed]]\nid = \"kept\"\nurl = \"https://src.example.org/feed\"\n",
            std::path::Path::new("/x.toml"),
        )
        .unwrap();
        let source = |id: &str, state: &str, requested_at: i64, lease_until: Option<i64>| Source {
            feed_id: id.into(),
            hub: "https://hub.example/".into(),
            topic: "https://src.example.org/feed".into(),
            secret: "k".into(),
            state: state.into(),
            lease_until,
            requested_at,
            error: None,
        };
        let now = 1_000_000;
        let day = 86_400;
        // A 10-day lease: renewed in its last day, not before.
        assert_eq!(
            source_action(&config, &source("kept", "active", now - 8 * day, Some(now + 2 * day)), now),
            None
        );
        assert_eq!(
            source_action(&config, &source("kept", "active", now - 9 * day, Some(now + day - 1)), now),
            Some("subscribe")
        );
        // A short lease: renewed when an hour is left.
        assert_eq!(
            source_action(&config, &source("kept", "active", now - 60, Some(now + 3000)), now),
            Some("subscribe")
        );
        // A hub that never verified: asked again after an hour.
        assert_eq!(source_action(&config, &source("kept", "requested", now - 60, None), now), None);
        assert_eq!(
            source_action(&config, &source("kept", "requested", now - 3601, None), now),
            Some("subscribe")
        );
        // A feed no longer configured: unsubscribed (again after an hour unanswered).
        assert_eq!(
            source_action(&config, &source("gone", "active", now, Some(now + day)), now),
            Some("unsubscribe")
        );
        assert_eq!(source_action(&config, &source("gone", "unsubscribing", now - 60, None), now), None);
        assert_eq!(
            source_action(&config, &source("gone", "unsubscribing", now - 3601, None), now),
            Some("unsubscribe")
        );
    }

    #[test]
    fn tokens_are_random() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
