//! A feed's credentials: HTTP Basic (`username` with `password_file`) or a bearer
//! token (`token_file`), and where a proxy takes it (`proxy`).
//!
//! Secrets come from files only, read when the config is loaded (so `check` reports a
//! missing or empty one, naming the feed) and again on every reload (so a rotated token
//! takes effect on SIGHUP). A [`Secret`] never prints itself: its `Debug` and
//! `Display` show a placeholder, so no log line, error or `--json` output can carry it
//! by accident.

use std::fmt;
use std::path::Path;

use url::Url;

/// Longest secret file read: a token is a few hundred bytes; anything this large is
/// the wrong file.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A secret's text, shown as `(secret)` wherever it is printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The text itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}

/// How a feed proves who is asking. Sent to the feed's own origin only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

impl Auth {
    /// The credentials written into a URL (`https://user:pass@host/`), percent-decoded.
    pub fn from_url(url: &Url) -> Option<Auth> {
        if url.username().is_empty() && url.password().is_none() {
            return None;
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        Some(Auth::Basic {
            username: decode(url.username()),
            password: Secret(url.password().map(decode).unwrap_or_default()),
        })
    }
}

/// Where a feed's requests go: straight to the server, or through a proxy. A feed
/// without `proxy` follows `[daemon] proxy`, and without that the environment
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
#[derive(Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `"none"`: never through a proxy, whatever the environment says.
    Direct,
    /// `http://`, `https://`, `socks5://` (names resolved here) or `socks5h://`
    /// (names resolved by the proxy).
    Via(Url),
}

impl Proxy {
    /// # Errors
    /// What is wrong with `text`, without repeating any credentials it holds.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(Proxy::Direct);
        }
        let url = Url::parse(text).map_err(|e| {
            format!("'proxy' must be a URL (http://, https://, socks5://, socks5h://) or \"none\": {e}")
        })?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(format!(
                "'proxy' scheme '{}' is not one of http, https, socks5, socks5h (or \"none\")",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("'proxy' names no host, like http://proxy.internal:3128".to_owned());
        }
        Ok(Proxy::Via(url))
    }

    /// The key under which the fetcher keeps this proxy's clients.
    pub fn key(&self) -> String {
        match self {
            Proxy::Direct => "none".to_owned(),
            Proxy::Via(u) => u.to_string(),
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The proxy as it may be shown: without credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Direct => f.write_str("none"),
            Proxy::Via(u) => f.write_str(&crate::model::redacted_url(u)),
        }
    }
}

/// Reads a secret file: at most [`MAX_SECRET_BYTES`], UTF-8, the final line break
/// dropped (editors add one), not empty, and sendable in a header.
///
/// # Errors
/// Why the file cannot serve, naming its path (never its content).
pub fn read_secret(path: &Path) -> Result<Secret, String> {
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("{shown} is larger than {MAX_SECRET_BYTES} bytes: not a secret file"));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Err(format!("{shown} is empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{shown} holds control characters or several lines: one line is sent"));
    }
    Ok(Secret(text.to_owned()))
}

/// Whether users other than the owner and group may read the file (a warning, not an
/// error: the operator may know better).
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_itself() {
        let s = Secret("hunter2".into());
        let auth = Auth::Basic { username: "reader".into(), password: s.clone() };
        assert_eq!(format!("{s} {s:?}"), "(secret) (secret)");
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer(s)).contains("hunter2"));
    }

    #[test]
    fn credentials_in_a_url() {
        let from_url = Auth::from_url(&Url::parse("https://r%40x:p%3Aw@h.example/").unwrap()).unwrap();
        assert_eq!(from_url, Auth::Basic { username: "r@x".into(), password: Secret("p:w".into()) });
        assert_eq!(Auth::from_url(&Url::parse("https://h.example/").unwrap()), None);
    }

    #[test]
    fn proxies() {
        assert_eq!(Proxy::parse("none").unwrap(), Proxy::Direct);
        for ok in
            ["http://p.internal:3128", "https://p.internal", "socks5://127.0.0.1:1080", "socks5h://t:9050"]
        {
            assert!(matches!(Proxy::parse(ok), Ok(Proxy::Via(_))), "{ok}");
        }
        for bad in ["ftp://p", "p.internal:3128", "", "socks4://p:1"] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
        let p = Proxy::parse("http://user:pw@p.internal:3128").unwrap();
        assert_eq!(p.to_string(), "http://p.internal:3128/");
        assert!(!format!("{p:?}").contains("pw"));
        let e = Proxy::parse("gopher://user:pw@p").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        assert_eq!(read_secret(&write("ok", b"t0ken\n")).unwrap().expose(), "t0ken");
        assert_eq!(read_secret(&write("crlf", b"t0ken\r\n")).unwrap().expose(), "t0ken");
        for (name, body, why) in [
            ("empty", &b"\n"[..], "is empty"),
            ("two", b"a\nb\n", "several lines"),
            ("bin", b"\xff\xfe", "not UTF-8"),
        ] {
            let e = read_secret(&write(name, body)).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        let big = write("big", &vec![b'a'; MAX_SECRET_BYTES as usize + 1]);
        assert!(read_secret(&big).unwrap_err().contains("larger than"));
        let e = read_secret(&dir.path().join("missing")).unwrap_err();
        assert!(e.starts_with("cannot read ") && e.contains("missing"), "{e}");
    }
}
