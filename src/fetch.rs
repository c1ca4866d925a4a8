//! Fetching feed bodies: HTTP(S) with conditional GET, and local files.
//!
//! Input: a feed's URL and the validators (ETag, Last-Modified) it last sent. Output:
//! the raw body bytes, untouched (no charset decoding: the parser reads the XML
//! declaration), or "not modified", or a [`FetchError`]. Nothing here parses or stores.
//!
//! Limits, all enforced here: one total timeout per request (connect to last byte,
//! so a server dribbling one byte a second is cut off), a cap on the body *after*
//! decompression counted while streaming (a gzip bomb stops at the cap), at most
//! [`MAX_REDIRECTS`] redirects, each checked by [`redirect_allowed`], a global
//! concurrency limit and a per-host one.
//!
//! Redirects are followed here rather than by reqwest, so each hop is checked, the
//! conditional headers go along, and a permanent move is reported to the caller.
//!
//! A redirect target is checked twice: its URL before the request ([`redirect_allowed`]:
//! scheme, literal addresses), and the addresses its host name resolves to, by the DNS
//! resolver of the client that makes redirect hops ([`RedirectResolver`]). That
//! resolver's answer is the one the connection uses, so a name cannot pass the check
//! and then resolve elsewhere for the connection (no check-then-resolve-again race).
//! The configured URL itself is the operator's choice and goes through a plain client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use url::Url;

use crate::config::{Auth, Proxy};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// Longest a server may ask us to wait (`Retry-After`, `max-age`) before we ignore it.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(24 * 3600);

pub const USER_AGENT: &str = concat!("feedsieve/", env!("CARGO_PKG_VERSION"), " (feed aggregator)");

/// Settings of a [`Fetcher`], from `[daemon]`.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub timeout: Duration,
    pub max_bytes: u64,
    pub concurrency: usize,
    pub per_host: usize,
    /// The daemon's own listen address: a redirect never leads there.
    pub own_address: Option<SocketAddr>,
    /// `[daemon] proxy`: for requests whose feed names none. `None`: the
    /// environment's (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    pub proxy: Option<Proxy>,
}

/// What the feed last sent, to make the request conditional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug)]
pub enum Fetched {
    /// 304, or a local file whose modification time has not changed.
    NotModified {
        hints: Hints,
    },
    Body(Body),
}

/// A fetched body and what came with it.
#[derive(Debug)]
pub struct Body {
    /// Raw bytes after content decoding (gzip etc.), before any charset decoding.
    pub bytes: Vec<u8>,
    /// Where the body came from after redirects (the base for relative links).
    pub final_url: Url,
    pub validators: Validators,
    /// `Content-Type`, for telling an HTML page from a feed in error messages.
    pub content_type: Option<String>,
    pub hints: Hints,
}

/// What the server said about when to come back, and where the feed now lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// `Cache-Control: max-age` or `Expires`, capped at [`MAX_SERVER_DELAY`].
    pub fresh_for: Option<Duration>,
    /// The last URL of an unbroken chain of permanent redirects (301/308).
    pub moved_to: Option<Url>,
}

/// What a feed adds to its requests (see `FeedConfig`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    /// Sent to the feed's own origin only.
    pub headers: &'a [(String, String)],
    /// Instead of feedsieve's own.
    pub user_agent: Option<&'a str>,
    /// Sent to the feed's own origin only. Credentials written in the URL fetched
    /// are taken when this is `None`.
    pub auth: Option<&'a Auth>,
    /// The feed's own proxy setting, over `[daemon] proxy` and the environment.
    pub proxy: Option<&'a Proxy>,
    /// The feed's configured URL, whose origin alone gets `headers` and `auth`
    /// (`None`: the URL fetched). A feed that moved permanently to another host is
    /// fetched there, without them.
    pub home: Option<&'a Url>,
    /// The URL fetched came from a feed, not from the operator (an article link): it
    /// is held to the redirect rules like a redirect target.
    pub untrusted: bool,
}

impl<'a> Request<'a> {
    /// A configured feed's requests: its headers, user agent, credentials and proxy,
    /// its configured URL the origin they go to.
    pub fn of(feed: &'a crate::config::FeedConfig) -> Request<'a> {
        Request {
            headers: &feed.headers,
            user_agent: feed.user_agent.as_deref(),
            auth: feed.auth.as_ref(),
            proxy: feed.proxy.as_ref(),
            home: Some(&feed.url),
            untrusted: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("redirect to {to} refused: {why}")]
    RedirectRefused { to: String, why: &'static str },
    #[error("redirect to {to} refused: its host resolves to {addr}, {why}")]
    RedirectResolvedRefused { to: String, addr: IpAddr, why: &'static str },
    #[error("bad redirect: {0}")]
    BadRedirect(String),
    #[error("request failed")]
    Http(#[source] reqwest::Error),
    #[error("cannot read {}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// The HTTP status, where there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked us to wait (`Retry-After` on 429/503), capped.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Makes ring the process's TLS crypto provider, which any reqwest client needs
/// before it is built. ring rather than aws-lc: the same protocols for a fraction of
/// the build time. Calling it again is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP clients, with the concurrency limits around them.
pub struct Fetcher {
    /// The clients of the environment's proxy setting (reqwest's default: proxies
    /// from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, minding `NO_PROXY`).
    environment: Arc<Clients>,
    /// Without any proxy: for `proxy = "none"`, and for loopback hosts, which no proxy
    /// serves (as Go's and Python's HTTP clients do; curl would need NO_PROXY).
    direct: Arc<Clients>,
    /// The clients of each configured proxy, made when first needed.
    via: Mutex<HashMap<String, Arc<Clients>>>,
    settings: FetchSettings,
    global: Arc<Semaphore>,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One way out: a client for configured URLs (the operator chose them, wherever they
/// resolve) and one for redirect hops (its resolver refuses addresses a redirect may
/// not reach).
struct Clients {
    client: reqwest::Client,
    redirect_client: reqwest::Client,
    /// Whether requests go through a proxy. The resolver then sees only the proxy's
    /// name (or nothing, with socks5h), so a redirect target's name is resolved and
    /// checked before the hop instead.
    proxied: bool,
}

/// Which proxy a [`Clients`] goes through.
enum Route {
    /// reqwest's default: proxies from the environment.
    Environment,
    Direct,
    Via(Box<reqwest::Proxy>),
}

impl Clients {
    fn new(settings: &FetchSettings, route: Route) -> Result<Clients, FetchError> {
        let builder = || {
            let b = reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(settings.per_host.max(1));
            match &route {
                Route::Environment => b,
                Route::Direct => b.no_proxy(),
                Route::Via(p) => b.proxy((**p).clone()),
            }
        };
        Ok(Clients {
            client: builder().build().map_err(FetchError::Http)?,
            redirect_client: builder()
                .dns_resolver(Arc::new(RedirectResolver))
                .build()
                .map_err(FetchError::Http)?,
            proxied: match route {
                Route::Environment => proxy_in_environment(),
                Route::Direct => false,
                Route::Via(_) => true,
            },
        })
    }
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address.
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// Whether the environment names a proxy for the clients (see [`Fetcher::proxied`]).
fn proxy_in_environment() -> bool {
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl Fetcher {
    /// # Errors
    /// If the TLS backend cannot be set up.
    pub fn new(settings: FetchSettings) -> Result<Fetcher, FetchError> {
        install_tls_provider();
        let environment = Arc::new(Clients::new(&settings, Route::Environment)?);
        // Without a proxy in the environment its clients are direct ones: building
        // a second pair cost every process a second read of the system's CA store.
        let direct = if environment.proxied {
            Arc::new(Clients::new(&settings, Route::Direct)?)
        } else {
            environment.clone()
        };
        Ok(Fetcher {
            environment,
            direct,
            via: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            per_host: Mutex::new(HashMap::new()),
        })
    }

    /// The clients for a request to `url` with the feed's `proxy`: loopback hosts
    /// directly; else the feed's proxy, `[daemon] proxy` (which minds `NO_PROXY`),
    /// or the environment's.
    fn clients(&self, url: &Url, proxy: Option<&Proxy>) -> Result<Arc<Clients>, FetchError> {
        if is_loopback_host(url) {
            return Ok(self.direct.clone());
        }
        let (chosen, daemon_wide) = match (proxy, &self.settings.proxy) {
            (Some(p), _) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => return Ok(self.environment.clone()),
        };
        let Proxy::Via(proxy_url) = chosen else { return Ok(self.direct.clone()) };
        let key = format!("{}{}", if daemon_wide { "daemon " } else { "" }, chosen.key());
        let mut via = self.via.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = via.get(&key) {
            return Ok(c.clone());
        }
        let mut p = reqwest::Proxy::all(proxy_url.as_str()).map_err(|e| FetchError::Http(e.without_url()))?;
        if daemon_wide {
            p = p.no_proxy(reqwest::NoProxy::from_env());
        }
        let clients = Arc::new(Clients::new(&self.settings, Route::Via(Box::new(p)))?);
        via.insert(key, clients.clone());
        Ok(clients)
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// Fetches `url`, conditionally on `validators`.
    ///
    /// # Errors
    /// A [`FetchError`] for any answer other than a feed body or "not modified".
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchError> {
        self.fetch_with(url, validators, &Request::default()).await
    }

    /// As [`Fetcher::fetch`], with a feed's own request options.
    ///
    /// # Errors
    /// As [`Fetcher::fetch`].
    pub async fn fetch_with(
        &self,
        url: &Url,
        validators: &Validators,
        options: &Request<'_>,
    ) -> Result<Fetched, FetchError> {
        if url.scheme() == "file" {
            return self.fetch_file(url, validators).await;
        }
        let _global = self.global.acquire().await.map_err(|_| FetchError::Timeout(Duration::ZERO))?;
        let host_sem = self.host_semaphore(url);
        let _host = host_sem.acquire().await.map_err(|_| FetchError::Timeout(Duration::ZERO))?;
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.fetch_http(url, validators, options)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }

    fn host_semaphore(&self, url: &Url) -> Arc<Semaphore> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(host).or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host.max(1)))).clone()
    }

    async fn fetch_http(
        &self,
        url: &Url,
        validators: &Validators,
        options: &Request<'_>,
    ) -> Result<Fetched, FetchError> {
        let home = options.home.unwrap_or(url);
        let origin = home.origin();
        // Credentials: the feed's, else those written in its URL; sent by us, to its
        // own origin only (a URL's user info is never left for the client to send).
        let url_auth = Auth::from_url(home);
        let auth = options.auth.or(url_auth.as_ref());
        let mut current = without_credentials(url);
        if options.untrusted {
            self.check_target(&current, &*self.clients(&current, options.proxy)?).await?;
        }
        let mut permanent_chain = true;
        let mut moved_to = None;
        for hop in 0..=MAX_REDIRECTS {
            let clients = self.clients(&current, options.proxy)?;
            let checked = hop > 0 || options.untrusted;
            let client = if checked { &clients.redirect_client } else { &clients.client };
            let mut req = client.get(current.clone());
            if let Some(etag) = &validators.etag {
                req = req.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &validators.last_modified {
                req = req.header(header::IF_MODIFIED_SINCE, lm);
            }
            if let Some(ua) = options.user_agent {
                req = req.header(header::USER_AGENT, ua);
            }
            // The feed's own headers and credentials go to its own origin only, never
            // to a host a redirect leads to.
            if same_origin(&origin, &current) {
                for (name, value) in options.headers {
                    req = req.header(name.as_str(), value.as_str());
                }
                req = match auth {
                    Some(Auth::Basic { username, password }) => {
                        req.basic_auth(username, Some(password.expose()))
                    }
                    Some(Auth::Bearer(token)) => req.bearer_auth(token.expose()),
                    None => req,
                };
            }
            let resp = req.send().await.map_err(|e| self.map_err(e, checked, &current))?;
            if checked
                && let (Some(own), Some(peer)) = (self.settings.own_address, resp.remote_addr())
                && is_own_address(own, peer)
            {
                // A name that resolved to our own address (a literal one never gets here):
                // what our own server answered is not read.
                return Err(FetchError::RedirectRefused {
                    to: crate::model::redacted_url(&current),
                    why: "the daemon's own address",
                });
            }
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location =
                    resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                        FetchError::BadRedirect(format!("HTTP {} without Location", status.as_u16()))
                    })?;
                let next = current
                    .join(location)
                    .map(|u| without_credentials(&u))
                    .map_err(|e| FetchError::BadRedirect(format!("Location '{location}': {e}")))?;
                self.check_target(&next, &clients).await?;
                let permanent =
                    matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT);
                permanent_chain &= permanent;
                if permanent_chain {
                    moved_to = Some(next.clone());
                }
                current = next;
                continue;
            }
            let mut hints =
                Hints { fresh_for: freshness(resp.headers(), Utc::now()), moved_to: moved_to.clone() };
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified { hints });
            }
            if !status.is_success() {
                let retry_after = retry_after(resp.headers(), Utc::now());
                return Err(FetchError::Status { status: status.as_u16(), retry_after });
            }
            let headers = resp.headers();
            let validators = Validators {
                etag: header_string(headers, header::ETAG),
                last_modified: header_string(headers, header::LAST_MODIFIED),
            };
            let content_type = header_string(headers, header::CONTENT_TYPE);
            let encoded = headers.contains_key(header::CONTENT_ENCODING);
            let limit = self.settings.max_bytes;
            if !encoded && resp.content_length().is_some_and(|n| n > limit) {
                return Err(FetchError::TooLarge { limit });
            }
            let bytes = read_capped(resp, limit).await.map_err(|e| match e {
                Capped::TooLarge => FetchError::TooLarge { limit },
                Capped::Http(e) => self.map_err(e, false, &current),
            })?;
            hints.moved_to = moved_to;
            return Ok(Fetched::Body(Body { bytes, final_url: current, validators, content_type, hints }));
        }
        Err(FetchError::TooManyRedirects)
    }

    /// Holds a URL the operator did not configure to the redirect rules (see
    /// [`untrusted_allowed`]); its name is resolved here only through a proxy: without
    /// one the hop's resolver checks it as it connects.
    async fn check_target(&self, next: &Url, clients: &Clients) -> Result<(), FetchError> {
        untrusted_allowed(next, self.settings.own_address, clients.proxied).await.map_err(|r| {
            let to = crate::model::redacted_url(next);
            match r.addr {
                Some(addr) => FetchError::RedirectResolvedRefused { to, addr, why: r.why },
                None => FetchError::RedirectRefused { to, why: r.why },
            }
        })
    }

    /// `redirected`: the request was a redirect hop, whose resolver may have refused.
    fn map_err(&self, e: reqwest::Error, redirected: bool, url: &Url) -> FetchError {
        if e.is_timeout() {
            return FetchError::Timeout(self.settings.timeout);
        }
        if redirected && let Some(r) = refusal(&e) {
            return FetchError::RedirectResolvedRefused {
                to: crate::model::redacted_url(url),
                addr: r.addr,
                why: r.why,
            };
        }
        // The feed's URL is the feed's, named by its id wherever this is shown; the
        // error keeps none (it may carry credentials).
        FetchError::Http(e.without_url())
    }

    async fn fetch_file(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchError> {
        let path = url.to_file_path().map_err(|()| FetchError::File {
            path: url.path().into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a local path"),
        })?;
        let file_err = |source| FetchError::File { path: path.clone(), source };
        let mut file = tokio::fs::File::open(&path).await.map_err(file_err)?;
        let meta = file.metadata().await.map_err(file_err)?;
        let last_modified = meta.modified().ok().map(|t| crate::http_date(DateTime::<Utc>::from(t)));
        if last_modified.is_some() && last_modified == validators.last_modified {
            return Ok(Fetched::NotModified { hints: Hints::default() });
        }
        let limit = self.settings.max_bytes;
        if meta.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&mut file).take(limit + 1).read_to_end(&mut bytes).await.map_err(file_err)?;
        if bytes.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(Fetched::Body(Body {
            bytes,
            final_url: url.clone(),
            validators: Validators { etag: None, last_modified },
            content_type: None,
            hints: Hints::default(),
        }))
    }
}

/// Whether `url` is of the feed's origin `home`: the same scheme, host and port, or
/// the same host upgraded from http to https on the default ports (a redirect to
/// the https address of the same site keeps the feed's credentials, as on the wire
/// they are then safer, not exposed).
fn same_origin(home: &url::Origin, url: &Url) -> bool {
    let here = url.origin();
    if here == *home {
        return true;
    }
    match (home, &here) {
        (url::Origin::Tuple(s1, h1, p1), url::Origin::Tuple(s2, h2, p2)) => {
            s1 == "http" && s2 == "https" && h1 == h2 && *p1 == 80 && *p2 == 443
        }
        _ => false,
    }
}

/// `url` without the user name and password written in it.
fn without_credentials(url: &Url) -> Url {
    let mut u = url.clone();
    // Only a URL that cannot have credentials refuses these, and it has none.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

enum Capped {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a response body, failing as soon as more than `limit` decoded bytes arrive.
/// The buffer never grows past `limit` (plain doubling could reserve twice that).
async fn read_capped(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, Capped> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(resp.content_length().map_or(16 * 1024, |n| n as usize).min(limit));
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Http)? {
        let needed = out.len().saturating_add(chunk.len());
        if needed > limit {
            return Err(Capped::TooLarge);
        }
        if needed > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(needed).min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_SERVER_DELAY`].
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => (crate::parse_http_date(v)? - now).to_std().ok()?,
    };
    Some(d.min(MAX_SERVER_DELAY))
}

/// How long the answer stays fresh: `Cache-Control: max-age`, else `Expires`.
pub fn freshness(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let cc = headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let max_age =
        cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.trim_matches('"').parse::<u64>().ok());
    let d = match max_age {
        Some(secs) => Duration::from_secs(secs),
        None => {
            let exp = headers.get(header::EXPIRES)?.to_str().ok()?;
            (crate::parse_http_date(exp)? - now).to_std().ok()?
        }
    };
    Some(d.min(MAX_SERVER_DELAY))
}

/// Whether a redirect may lead to `url`, as far as the URL tells: its scheme and a
/// literal address. A host name is checked after resolution, by [`RedirectResolver`].
///
/// Configured URLs are the operator's choice; a redirect is the remote server's, so it
/// may not send us to another scheme, to link-local or cloud metadata addresses, to an
/// unspecified address, or back to our own listen address.
///
/// # Errors
/// Why the target is refused.
pub fn redirect_allowed(url: &Url, own: Option<SocketAddr>) -> Result<(), &'static str> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https redirects are followed");
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        Some(url::Host::Domain(d)) => {
            if d.eq_ignore_ascii_case("metadata.google.internal") {
                return Err("cloud metadata host");
            }
            return Ok(());
        }
        None => return Err("no host"),
    };
    address_allowed(ip)?;
    if let (Some(own), Some(port)) = (own, url.port_or_known_default())
        && is_own_address(own, SocketAddr::new(ip, port))
    {
        return Err("the daemon's own address");
    }
    Ok(())
}

/// Why a URL a third party chose (a redirect's target, an article link, a WebSub
/// callback) may not be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The address its name resolved to, when that is the reason.
    pub addr: Option<IpAddr>,
    pub why: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(a) => write!(f, "its host resolves to {a}, {}", self.why),
            None => f.write_str(self.why),
        }
    }
}

/// Holds a URL a third party chose to the redirect rules before any request: its
/// scheme and a literal address ([`redirect_allowed`]); with `resolve`, the addresses
/// its name resolves to here ([`resolved_allowed`]; a name that does not resolve here
/// is left to whoever connects); and never the daemon's own address `own`.
///
/// # Errors
/// Why the URL is refused.
pub async fn untrusted_allowed(url: &Url, own: Option<SocketAddr>, resolve: bool) -> Result<(), Refusal> {
    redirect_allowed(url, own).map_err(|why| Refusal { addr: None, why })?;
    let (Some(url::Host::Domain(host)), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return Ok(());
    };
    if resolve {
        let found: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map(Iterator::collect).unwrap_or_default();
        if !found.is_empty() {
            resolved_allowed(&found).map_err(|r| Refusal { addr: Some(r.addr), why: r.why })?;
        }
        if own.is_some_and(|own| found.iter().any(|a| is_own_address(own, *a))) {
            return Err(Refusal { addr: None, why: "the daemon's own address" });
        }
    } else if let Some(own) = own
        && points_at(url, own).await
    {
        return Err(Refusal { addr: None, why: "the daemon's own address" });
    }
    Ok(())
}

/// Whether a host name in `url` resolves to the daemon's own listen address, so that
/// the usual case (`localhost:PORT`) sends no request there at all. Not the guard
/// itself: the name could resolve elsewhere next time; the address a hop connected to
/// is checked after connecting.
async fn points_at(url: &Url, own: SocketAddr) -> bool {
    let (Some(url::Host::Domain(host)), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return false;
    };
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs.any(|a| is_own_address(own, a)),
        Err(_) => false,
    }
}

/// Whether `peer` is the daemon's own listen address `own` (any loopback address when
/// it listens on all addresses).
pub(crate) fn is_own_address(own: SocketAddr, peer: SocketAddr) -> bool {
    let ip = unmap(peer.ip());
    let own_ip = unmap(own.ip());
    peer.port() == own.port() && (ip == own_ip || (own_ip.is_unspecified() && ip.is_loopback()))
}

/// An IPv4 address written in IPv6 form (`::ffff:a.b.c.d`, the deprecated
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) as the IPv4 address it reaches.
fn unmap(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && u32::from(tail) > 1; // not :: or ::1
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 { IpAddr::V4(tail) } else { ip }
}

/// Why the resolver of the redirect client refused a name: the one address it found
/// that a redirect may not reach.
#[derive(Debug, thiserror::Error)]
#[error("resolves to {addr}: {why}")]
pub struct RefusedAddress {
    pub addr: IpAddr,
    pub why: &'static str,
}

/// The [`RefusedAddress`] behind a failed request, if the resolver refused.
fn refusal(e: &reqwest::Error) -> Option<&RefusedAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RefusedAddress>() {
            return Some(r);
        }
        source = s.source();
    }
    None
}

/// The DNS resolver of redirect hops: the system resolver, then [`resolved_allowed`]
/// over its answer. The connection uses exactly the addresses returned here.
///
/// The daemon's own listen address is not refused here: a resolver sees no port, and a
/// name resolving to loopback is fine on any other port. [`Fetcher`] checks the address
/// a redirect hop actually connected to instead, and reads nothing from its own server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedirectResolver;

impl reqwest::dns::Resolve for RedirectResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = resolved_allowed(&found)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses a redirect hop may connect to, out of what its name resolved to.
/// Any refused address refuses the name: a name that resolves to the metadata service
/// among others is hostile, not unlucky.
///
/// # Errors
/// The first refused address, and why; also when the name resolved to nothing.
pub fn resolved_allowed(found: &[SocketAddr]) -> Result<Vec<SocketAddr>, RefusedAddress> {
    for a in found {
        address_allowed(a.ip()).map_err(|why| RefusedAddress { addr: a.ip(), why })?;
    }
    if found.is_empty() {
        return Err(RefusedAddress { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), why: "no address" });
    }
    Ok(found.to_vec())
}

/// Refuses addresses a redirect must never reach: unspecified (and the rest of
/// 0.0.0.0/8), link-local (which holds the 169.254.169.254 metadata service), and the
/// other cloud metadata addresses, in IPv4-mapped, IPv4-compatible and NAT64 forms too.
/// Loopback and private addresses stay allowed: operators run feeds there.
///
/// # Errors
/// Why the address is refused.
pub fn address_allowed(ip: IpAddr) -> Result<(), &'static str> {
    match unmap(ip) {
        IpAddr::V4(a) if a.octets()[0] == 0 => Err("unspecified address"),
        IpAddr::V4(a) if a.is_link_local() => Err("link-local or metadata address"),
        IpAddr::V4(a) if a == Ipv4Addr::new(100, 100, 100, 200) => Err("cloud metadata address"),
        IpAddr::V6(a) if a.is_unspecified() => Err("unspecified address"),
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Err("link-local address"),
        IpAddr::V6(a) if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Err("cloud metadata address")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn credentials_stay_with_the_feed_s_origin() {
        let home = Url::parse("http://partner.example.org/feed").unwrap().origin();
        let same = |s: &str| same_origin(&home, &Url::parse(s).unwrap());
        assert!(same("http://partner.example.org/other"));
        assert!(same("https://partner.example.org/feed"), "the same site over TLS");
        assert!(!same("http://partner.example.org:8080/feed"));
        assert!(!same("https://partner.example.org:8443/feed"));
        assert!(!same("http://cdn.example.org/feed"));
        assert!(!same("http://partner.example.org.evil.test/feed"));
        let tls = Url::parse("https://partner.example.org/feed").unwrap().origin();
        assert!(
            !same_origin(&tls, &Url::parse("http://partner.example.org/feed").unwrap()),
            "never downgraded"
        );
    }

    #[test]
    fn redirect_targets() {
        let ok = |s: &str| redirect_allowed(&Url::parse(s).unwrap(), "127.0.0.1:8077".parse().ok());
        assert!(ok("https://example.org/feed").is_ok());
        assert!(ok("http://127.0.0.1:9000/feed").is_ok());
        for bad in [
            "file:///etc/passwd",
            "gopher://example.org/",
            "ftp://example.org/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://127.0.0.1:8077/topics/x.atom",
            "http://metadata.google.internal/",
        ] {
            assert!(ok(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn refused_address_forms() {
        let refused = |s: &str| address_allowed(s.parse().unwrap()).is_err();
        for bad in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.255.255",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
            "::ffff:100.100.100.200",
        ] {
            assert!(refused(bad), "{bad} should be refused");
        }
        for good in [
            "127.0.0.1",
            "127.0.0.53",
            "::1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "93.184.216.34",
            "2001:db8::1",
            "fd00:ec2::253",
            "fec0::1",
            "169.253.255.255",
            "169.255.0.0",
        ] {
            assert!(!refused(good), "{good} should be allowed");
        }
    }

    #[test]
    fn resolved_addresses_are_checked_as_a_whole() {
        let addrs =
            |list: &[&str]| list.iter().map(|a| SocketAddr::new(a.parse().unwrap(), 0)).collect::<Vec<_>>();
        let ok = addrs(&["127.0.0.1", "::1"]);
        assert_eq!(resolved_allowed(&ok).unwrap(), ok);
        let mixed = addrs(&["93.184.216.34", "169.254.169.254"]);
        let e = resolved_allowed(&mixed).unwrap_err();
        assert_eq!(e.addr, "169.254.169.254".parse::<IpAddr>().unwrap());
        assert_eq!(e.to_string(), "resolves to 169.254.169.254: link-local or metadata address");
        assert!(resolved_allowed(&addrs(&["::ffff:a9fe:a9fe"])).is_err());
        assert!(resolved_allowed(&addrs(&["fd00:ec2::254"])).is_err());
        assert!(resolved_allowed(&addrs(&["0.0.0.0"])).is_err());
        assert!(resolved_allowed(&[]).is_err());
    }

    #[test]
    fn own_listen_address_in_every_form() {
        let own: SocketAddr = "127.0.0.1:8077".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8077".parse().unwrap();
        let any6: SocketAddr = "[::]:8077".parse().unwrap();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(is_own_address(own, at("127.0.0.1:8077")));
        assert!(is_own_address(own, at("[::ffff:127.0.0.1]:8077")));
        assert!(!is_own_address(own, at("127.0.0.1:8078")));
        assert!(!is_own_address(own, at("127.0.0.2:8077")));
        assert!(is_own_address(any, at("127.0.0.2:8077")));
        assert!(is_own_address(any, at("[::1]:8077")));
        assert!(is_own_address(any6, at("127.0.0.1:8077")));
        let redirect = |s: &str, own: SocketAddr| redirect_allowed(&Url::parse(s).unwrap(), Some(own));
        assert!(redirect("http://[::ffff:127.0.0.1]:8077/", own).is_err());
        assert!(redirect("http://127.0.0.1:8077/", any).is_err());
        assert!(redirect("http://127.0.0.1:8076/", any).is_ok());
        let public: SocketAddr = "203.0.113.7:80".parse().unwrap();
        assert!(redirect("http://203.0.113.7/topics.opml", public).is_err());
        assert!(redirect("https://203.0.113.7/", public).is_ok(), "another port");
    }

    #[tokio::test]
    async fn the_redirect_resolver_checks_what_it_resolved() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let addrs: Vec<SocketAddr> = RedirectResolver.resolve(name).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    /// The refusal travels from the resolver through reqwest's error chain, and no
    /// connection is attempted (a name resolving to the metadata service, as a
    /// resolver under an attacker's control would answer).
    #[tokio::test]
    async fn a_refusal_by_the_resolver_is_recognised() {
        struct Metadata;
        impl reqwest::dns::Resolve for Metadata {
            fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
                Box::pin(async {
                    let found = [SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 0)];
                    let ok = resolved_allowed(&found)?;
                    Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
                })
            }
        }
        install_tls_provider();
        let client = reqwest::Client::builder().dns_resolver(Arc::new(Metadata)).no_proxy().build().unwrap();
        let e = client.get("http://metadata.test/latest/").send().await.unwrap_err();
        let r = refusal(&e).expect("the resolver's refusal is found in the chain");
        assert_eq!(r.addr, IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
        assert_eq!(r.why, "link-local or metadata address");
    }

    #[test]
    fn server_delays_are_read_and_capped() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("99999999999"));
        assert_eq!(retry_after(&h, now), Some(MAX_SERVER_DELAY));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=600"));
        assert_eq!(freshness(&h, now), Some(Duration::from_secs(600)));
        let later = crate::http_date(now + chrono::TimeDelta::seconds(3600));
        let mut h = HeaderMap::new();
        h.insert(header::EXPIRES, HeaderValue::from_str(&later).unwrap());
        let f = freshness(&h, now).unwrap().as_secs();
        assert!((3598..=3600).contains(&f), "{f}");
    }
}
