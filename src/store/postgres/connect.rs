//! Connecting: the URL, where the password comes from, and TLS.
//!
//! The password, in order: the URL's own, `database_password_file`, `PGPASSWORD`,
//! then the password file libpq reads (`PGPASSFILE`, else `~/.pgpass`). The user,
//! when the URL names none: `PGUSER`, else the system user. TLS is rustls (no
//! OpenSSL): `sslmode=disable|prefer|require` as in libpq (`prefer` by default),
//! except that a server's certificate is always verified, against the system's
//! roots or, with `sslrootcert=FILE` in the URL, the certificates in that file.

use std::path::Path;
use std::time::Duration;

use postgres::Client;
use postgres::config::Host;

use crate::model::PgTarget;
use crate::store::BoxError;

/// How long connecting may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the URL that feedsieve reads itself (libpq's names) and takes out
/// before the client parses the rest.
const OWN_OPTIONS: &[&str] = &["sslrootcert"];

/// A connection to `target`.
///
/// # Errors
/// An unparsable URL, an unreadable password file or root certificate, or what the
/// server says (unreachable, login refused). The password never appears in them.
pub fn client(target: &PgTarget) -> Result<Client, BoxError> {
    let (mut config, own) = config(&target.url)?;
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER").ok().filter(|u| !u.is_empty()).or_else(system_user);
        let user = user.ok_or("the database URL names no user and the system user is unknown")?;
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(pw) = password(target, &config)?
    {
        config.password(pw);
    }
    config.application_name("feedsieve");
    if config.get_options().is_none() {
        // Commits as durable as SQLite's in WAL mode with synchronous=NORMAL: a crash of
        // the server may lose the last commits, never half of one. And no JIT: its
        // compile time dwarfs the short statements feedsieve runs. A URL's own
        // `options` take their place.
        config.options("-c synchronous_commit=off -c jit=off");
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    let root = own.iter().find(|(k, _)| k == "sslrootcert").map(|(_, v)| v.as_str());
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(root)?);
    Ok(config.connect(tls)?)
}

/// The client's settings from a URL, and the options feedsieve reads itself.
///
/// # Errors
/// A URL the client cannot take (an unknown option, a port that is no number).
pub fn config(url: &str) -> Result<(postgres::Config, Vec<(String, String)>), String> {
    let (url, own) = split_options(url);
    let config = url.parse().map_err(|e| format!("the database URL does not parse: {e}"))?;
    Ok((config, own))
}

/// The URL without [`OWN_OPTIONS`], and those options (percent-decoded).
fn split_options(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), Vec::new()) };
    let (mut keep, mut own) = (Vec::new(), Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if OWN_OPTIONS.contains(&k) {
            let v = url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map_or_else(|| v.to_owned(), |(_, v)| v.into_owned());
            own.push((k.to_owned(), v));
        } else {
            keep.push(pair);
        }
    }
    let url = if keep.is_empty() { base.to_owned() } else { format!("{base}?{}", keep.join("&")) };
    (url, own)
}

/// The login name of the user running feedsieve.
fn system_user() -> Option<String> {
    std::env::var("USER").ok().filter(|u| !u.is_empty())
}

/// The password from the sources after the URL's own (see the module comment).
fn password(target: &PgTarget, config: &postgres::Config) -> Result<Option<String>, BoxError> {
    if let Some(file) = &target.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read database_password_file {}: {e}", file.display()))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Ok(Some(pw));
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
    let Some(file) = file else { return Ok(None) };
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(None) };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let db = config.get_dbname().or(config.get_user()).unwrap_or_default();
    let user = config.get_user().unwrap_or_default();
    Ok(pgpass_lookup(&text, [&host, &port, db, user]))
}

/// The password of the first line of a `.pgpass` file that matches host, port,
/// database and user (`*` matches anything; `\:` and `\\` are escapes).
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = pgpass_fields(line);
        if fields.len() != 5 {
            return None;
        }
        let hits = fields[..4].iter().zip(wanted).all(|(f, w)| f == "*" || f == w);
        hits.then(|| fields[4].clone())
    })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some(escaped) => escaped,
                None => break,
            },
            ':' if fields.len() < 5 => {
                fields.push(String::new());
                continue;
            }
            c => c,
        };
        if let Some(f) = fields.last_mut() {
            f.push(c);
        }
    }
    fields
}

/// rustls with the ring provider (never a process-wide default that another part of
/// the process may or may not have installed), trusting the system's roots, or the
/// certificates of `root` (a PEM file) when given.
fn tls_config(root: Option<&str>) -> Result<rustls::ClientConfig, BoxError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(file) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?;
            for c in certs {
                roots.add(c).map_err(|e| format!("sslrootcert {file}: {e}"))?;
            }
        }
        None => {
            // Unreadable system certificates leave those roots out; a TLS server then
            // fails verification with a clear error, and plain connections still work.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_options_are_taken_out_of_the_url() {
        let (url, own) =
            split_options("postgres://u@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        assert_eq!(own, [("sslrootcert".to_owned(), "/etc/ca.pem".to_owned())]);
        assert_eq!(split_options("postgres://u@h/db").0, "postgres://u@h/db");
        assert_eq!(split_options("postgres://u@h/db?sslrootcert=a").0, "postgres://u@h/db");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text = "# comment\n\
                    other:5432:*:u:wrong\n\
                    db.internal:5432:feeds:feedsieve:s3cr\\:et\n\
                    *:*:*:*:fallback\n";
        let find = |h, p, d, u| pgpass_lookup(text, [h, p, d, u]);
        assert_eq!(find("db.internal", "5432", "feeds", "feedsieve").as_deref(), Some("s3cr:et"));
        assert_eq!(find("db.internal", "5433", "feeds", "feedsieve").as_deref(), Some("fallback"));
        assert_eq!(find("other", "5432", "x", "u").as_deref(), Some("wrong"));
        assert_eq!(pgpass_lookup("h:1:d:u\n", ["h", "1", "d", "u"]), None, "a line with four fields");
    }
}
