//! A throwaway PostgreSQL server for the tests.
//!
//! [`server()`] starts one server per test process, on first use, and every test of the
//! process shares it; [`PgServer::fresh_database`] gives each test a new, empty database
//! of its own, owned by the unprivileged role `feedsieve`, as a URL with the password in
//! it. Every connection, the tests' too, logs in with a real password (SCRAM-SHA-256).
//!
//! This file is included twice with `#[path]`: by the library's unit tests and by the
//! integration test binary (`tests/it`). It uses only std, `postgres` (the sync client),
//! `libc` and `tempfile`, and nothing of the `feedsieve` crate.
//!
//! # The server binaries
//!
//! `initdb` and `postgres` are taken from the folder that the environment variable
//! `FEEDSIEVE_PG_BIN` names, else from the newest `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package), else from `PATH`. Without them the tests that need PostgreSQL
//! fail, saying how to get them: `bash scripts/test` installs them. PostgreSQL 13 or
//! later is needed (`unaccent` is a trusted extension from 13 on).
//!
//! # The throwaway server
//!
//! `initdb` makes a cluster in a temporary folder (superuser `feedsieve_admin`, random
//! passwords, `-E UTF8 --locale=C.UTF-8`), and `postgres` serves it on 127.0.0.1 on a
//! free port, with no Unix socket and with durability off (`fsync`, `full_page_writes`,
//! `synchronous_commit`), logging to `postgres.log` in that folder. As root, PostgreSQL
//! refusing to run as root, `initdb` and `postgres` run as the system user `postgres`.
//! The folder is made in `FEEDSIEVE_PG_TMPDIR` if set, else in `/dev/shm` when it has
//! 2 GiB free (a RAM disk, where `CREATE DATABASE` is several times faster), else in the
//! usual temporary folder (`TMPDIR`).
//!
//! Statics are never dropped, so the server is stopped from outside: it runs under a
//! small `sh` watchdog whose standard input is a pipe that only the test process can
//! write to. When the test process ends, however it ends (normal exit, failed tests,
//! a signal, SIGKILL), that pipe reads end-of-file, and the watchdog stops PostgreSQL
//! (SIGINT, fast shutdown), waits for it and removes the folder. On a normal exit an
//! `atexit` handler closes the pipe itself and waits for the watchdog, so no server
//! outlives `cargo test`. The watchdog runs in a process group of its own, so a
//! Ctrl-C reaches only the test process (and then the pipe stops the server).
//!
//! # Another server
//!
//! With `FEEDSIEVE_TEST_PG` set to the URL of a superuser on some other server, e.g.
//! `postgres://postgres:secret@127.0.0.1:5432/postgres`, no server is started: the
//! role `feedsieve` is created there (or its password reset, to the fixed
//! `feedsieve_test_password`, so that test processes sharing the server agree) and the
//! fresh databases are created there. That server must ask TCP clients for passwords and have the
//! `unaccent` extension installed. Its test databases stay behind: they are the
//! databases that the role `feedsieve` owns.
//!
//! # Async tests
//!
//! The sync `postgres` client must not block a thread that drives a Tokio runtime, so
//! this module does its own database work on threads of its own: [`server()`] and
//! [`PgServer::fresh_database`] may be called from `#[tokio::test]` functions. A client
//! returned by [`PgServer::admin`] is the caller's: use and drop it outside the runtime
//! (e.g. in `spawn_blocking`).

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use postgres::config::Host;
use postgres::{Client, Config, NoTls};

/// The role the tests log in as: no superuser, owner of the fresh databases.
pub const TEST_ROLE: &str = "feedsieve";
/// The superuser of the throwaway server.
const ADMIN_ROLE: &str = "feedsieve_admin";
/// The test role's password on a server named by `FEEDSIEVE_TEST_PG`: fixed, so that
/// test processes sharing that server do not change it under each other's feet.
const EXTERNAL_PASSWORD: &str = "feedsieve_test_password";
/// How long the server may take to accept connections once started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports to try when the one picked is taken before PostgreSQL binds it.
const PORT_ATTEMPTS: usize = 5;

/// The process's test PostgreSQL server. See the module documentation.
pub struct PgServer {
    host: String,
    port: u16,
    /// The test role's password.
    password: String,
    /// The superuser's connection settings, without a database name.
    admin: Config,
    /// The database the superuser connects to for `CREATE DATABASE`.
    admin_db: String,
    /// One superuser connection that creates the databases, one at a time.
    creator: Mutex<Option<Client>>,
    /// `CREATE DATABASE`'s strategy: a file copy (from PostgreSQL 15 on) is the faster.
    strategy: &'static str,
    /// Makes database names unique within the process.
    counter: AtomicU64,
    /// Makes database names unique across hosts sharing an external server.
    token: String,
    /// The throwaway server, or `None` with `FEEDSIEVE_TEST_PG`.
    local: Option<Local>,
}

struct Local {
    /// The temporary folder: `data/`, `postgres.log`; removed when the server stops.
    folder: PathBuf,
    postmaster_pid: u32,
    bin: PathBuf,
}

/// The process's throwaway server, started on first use (a `OnceLock`), shared by every
/// test of the process. Panics, in every test that calls it, if it cannot be started.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    let started = SERVER.get_or_init(|| {
        // On a thread of its own: the first caller may be a #[tokio::test].
        match std::thread::Builder::new().name("feedsieve-pg-start".into()).spawn(start) {
            Ok(thread) => {
                thread.join().unwrap_or_else(|_| Err("the thread starting PostgreSQL panicked".to_string()))
            }
            Err(e) => Err(format!("cannot spawn a thread to start PostgreSQL: {e}")),
        }
    });
    match started {
        Ok(server) => server,
        Err(e) => panic!("the test PostgreSQL server is not available: {e}"),
    }
}

impl PgServer {
    /// A new, empty database on the server, owned by the test role `feedsieve`; returns
    /// its URL with the password in it: `postgres://feedsieve:PASSWORD@127.0.0.1:PORT/NAME`.
    ///
    /// The name is `prefix` (lowercased, other characters than `[a-z0-9_]` made `_`,
    /// cut to 24 characters) followed by the process id, a random token and a counter.
    /// Safe to call from many threads at once.
    pub fn fresh_database(&self, prefix: &str) -> String {
        let name = self.database_name(prefix);
        let sql = format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'{}",
            quote_ident(&name),
            quote_ident(TEST_ROLE),
            self.strategy
        );
        off_runtime(|| {
            let mut creator = self.creator.lock().unwrap_or_else(PoisonError::into_inner);
            if creator.as_ref().is_none_or(Client::is_closed) {
                *creator = Some(connect(&self.admin, &self.admin_db).unwrap_or_else(|e| {
                    panic!("cannot connect to the test PostgreSQL server as {ADMIN_ROLE}: {e}")
                }));
            }
            let Some(client) = creator.as_mut() else { unreachable!("connected just above") };
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("creating the test database {name}: {}", describe(&e)));
        });
        self.url(&name, true)
    }

    /// The URL of database `db` (a name, or a URL from [`fresh_database`](Self::fresh_database))
    /// without the password: `postgres://feedsieve@127.0.0.1:PORT/NAME`, to test password
    /// files, `PGPASSWORD` and `~/.pgpass`.
    pub fn url_without_password(&self, db: &str) -> String {
        self.url(database_of(db), false)
    }

    /// The test role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1` for the throwaway server; the host of `FEEDSIEVE_TEST_PG` otherwise.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The test role's name, `feedsieve`.
    pub fn user(&self) -> &str {
        TEST_ROLE
    }

    /// A new connection as the superuser to database `db` (a name, or a URL from
    /// [`fresh_database`](Self::fresh_database)), for tests that inspect or tamper.
    /// Use and drop it outside a Tokio runtime.
    pub fn admin(&self, db: &str) -> Client {
        let db = database_of(db);
        off_runtime(|| connect(&self.admin, db)).unwrap_or_else(|e| {
            panic!("cannot connect to the test PostgreSQL server as {ADMIN_ROLE} to database {db}: {e}")
        })
    }

    /// The throwaway server's temporary folder (removed when it stops); `None` with
    /// `FEEDSIEVE_TEST_PG`.
    pub fn data_folder(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.folder.as_path())
    }

    /// The process id of the throwaway server's postmaster; `None` with `FEEDSIEVE_TEST_PG`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.local.as_ref().map(|l| l.postmaster_pid)
    }

    /// The folder of the `initdb` and `postgres` in use; `None` with `FEEDSIEVE_TEST_PG`.
    pub fn bin_folder(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.bin.as_path())
    }

    fn database_name(&self, prefix: &str) -> String {
        let mut lead: String = prefix
            .chars()
            .take(24)
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        if !lead.starts_with(|c: char| c.is_ascii_lowercase()) {
            lead.insert_str(0, "db_");
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{lead}_{}_{}_{n}", std::process::id(), self.token)
    }

    fn url(&self, db: &str, with_password: bool) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let password = if with_password { format!(":{}", self.password) } else { String::new() };
        format!("postgres://{TEST_ROLE}{password}@{host}:{}/{db}", self.port)
    }
}

/// `db` itself, or the database name at the end of a URL.
fn database_of(db: &str) -> &str {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let path = db.rsplit('/').next().unwrap_or(db);
        path.split('?').next().unwrap_or(path)
    } else {
        db
    }
}

fn start() -> Result<PgServer, String> {
    let token = random_hex(3)?;
    match std::env::var("FEEDSIEVE_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => start_external(url.trim(), token),
        Ok(_) | Err(std::env::VarError::NotPresent) => start_local(token),
        Err(std::env::VarError::NotUnicode(_)) => Err("FEEDSIEVE_TEST_PG is not valid UTF-8".to_string()),
    }
}

/// Uses the server that `FEEDSIEVE_TEST_PG` names.
fn start_external(url: &str, token: String) -> Result<PgServer, String> {
    // The URL is not repeated in messages: it holds a password.
    let mut admin: Config =
        url.parse().map_err(|e| format!("FEEDSIEVE_TEST_PG is not a PostgreSQL URL: {e}"))?;
    let host = match admin.get_hosts() {
        [Host::Tcp(host), ..] => host.clone(),
        _ => {
            return Err("FEEDSIEVE_TEST_PG must name a TCP host (e.g. 127.0.0.1), \
                        not a Unix socket or nothing"
                .to_string());
        }
    };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    let admin_db = admin.get_dbname().unwrap_or("postgres").to_string();
    if admin.get_connect_timeout().is_none() {
        admin.connect_timeout(Duration::from_secs(10));
    }
    let mut client = connect(&admin, &admin_db)
        .map_err(|e| format!("cannot connect to the server of FEEDSIEVE_TEST_PG: {e}"))?;
    let version = setup(&mut client, EXTERNAL_PASSWORD)
        .map_err(|e| format!("on the server of FEEDSIEVE_TEST_PG: {e}"))?;
    Ok(PgServer {
        host,
        port,
        password: EXTERNAL_PASSWORD.to_string(),
        admin,
        admin_db,
        creator: Mutex::new(Some(client)),
        strategy: strategy(version),
        counter: AtomicU64::new(0),
        token,
        local: None,
    })
}

/// Checks the server and creates (or resets) the test role; returns the server's
/// version number (e.g. 150004).
fn setup(client: &mut Client, password: &str) -> Result<i32, String> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                    EXISTS (SELECT FROM pg_available_extensions WHERE name = 'unaccent')",
            &[],
        )
        .map_err(|e| format!("checking the server: {}", describe(&e)))?;
    let (version, superuser, unaccent): (i32, Option<bool>, bool) = (row.get(0), row.get(1), row.get(2));
    if version < 130000 {
        return Err(format!(
            "PostgreSQL {version} is too old: the tests need 13 or later (unaccent is a trusted extension from 13 on)"
        ));
    }
    if superuser != Some(true) {
        return Err("the administrator's connection is not a superuser's".to_string());
    }
    if !unaccent {
        return Err("the server has no unaccent extension (Debian's postgresql-NN ships it; \
                    elsewhere it is in postgresql-contrib)"
            .to_string());
    }
    let role = quote_ident(TEST_ROLE);
    let password = quote_literal(password);
    // Test processes sharing a server may create the role at the same time.
    let sql = format!(
        "SET password_encryption = 'scram-sha-256';
         DO $$ BEGIN
             CREATE ROLE {role};
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;
         ALTER ROLE {role} WITH LOGIN CREATEDB NOSUPERUSER PASSWORD {password};"
    );
    client.batch_execute(&sql).map_err(|e| format!("creating the role {TEST_ROLE}: {}", describe(&e)))?;
    Ok(version)
}

/// The fastest `CREATE DATABASE` strategy the server knows.
fn strategy(version: i32) -> &'static str {
    if version >= 150000 { " STRATEGY FILE_COPY" } else { "" }
}

/// Makes and starts the throwaway server.
fn start_local(token: String) -> Result<PgServer, String> {
    let bin = find_bin()?;
    // PostgreSQL does not run as root: then initdb and postgres run as the user postgres.
    // SAFETY: geteuid has no preconditions.
    let owner = if unsafe { libc::geteuid() } == 0 {
        Some(system_user("postgres")?.ok_or_else(|| {
            "the tests run as root, and PostgreSQL refuses to run as root, but there is no \
             system user `postgres` to run it as (Debian's postgresql package creates it; \
             or run the tests as another user, or set FEEDSIEVE_TEST_PG)"
                .to_string()
        })?)
    } else {
        None
    };
    let temp = temp_folder(owner)?;
    let folder = temp.path().to_path_buf();
    // Only PostgreSQL's user may look in: the password file passes through it.
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private: {e}", folder.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&folder, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to the user postgres: {e}", folder.display()))?;
    }
    let data = folder.join("data");
    let admin_password = random_hex(16)?;
    let password = random_hex(16)?;
    initdb(&bin, &folder, &data, &admin_password, owner)?;

    let log_path = folder.join("postgres.log");
    let mut last_failure = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let mut watchdog = Watchdog::start(&bin, &folder, &data, &log_path, port, owner)?;
        let mut admin = Config::new();
        admin
            .host("127.0.0.1")
            .port(port)
            .user(ADMIN_ROLE)
            .password(admin_password.as_str())
            .connect_timeout(Duration::from_secs(5))
            .application_name("feedsieve-test-harness");
        match wait_until_ready(&mut watchdog, &admin, &data, port, &log_path, log_start) {
            Ok(mut client) => {
                let version = setup(&mut client, &password)?;
                let pid = postmaster_pid(&data)?;
                watchdog.hand_over_to_atexit()?;
                // From now on the watchdog removes the folder.
                let _ = temp.keep();
                return Ok(PgServer {
                    host: "127.0.0.1".to_string(),
                    port,
                    password,
                    admin,
                    admin_db: "postgres".to_string(),
                    creator: Mutex::new(Some(client)),
                    strategy: strategy(version),
                    counter: AtomicU64::new(0),
                    token,
                    local: Some(Local { folder, postmaster_pid: pid, bin }),
                });
            }
            Err(Start::PortTaken(why)) => last_failure = why,
            Err(Start::Failed(why)) => return Err(why),
        }
    }
    Err(format!(
        "PostgreSQL could not listen on a free port in {PORT_ATTEMPTS} attempts; the last: {last_failure}"
    ))
}

/// The server's temporary folder: in `FEEDSIEVE_PG_TMPDIR` if set; else in `/dev/shm`
/// when it has room (a RAM disk: `CREATE DATABASE` there takes a tenth of the time it
/// takes on a disk, even with `fsync` off), else in the usual temporary folder, or in
/// `/tmp` when PostgreSQL's user cannot reach that one.
fn temp_folder(owner: Option<(u32, u32)>) -> Result<tempfile::TempDir, String> {
    let make = |parent: &Path| tempfile::Builder::new().prefix("feedsieve-pg-").tempdir_in(parent);
    if let Some(parent) = std::env::var_os("FEEDSIEVE_PG_TMPDIR") {
        let parent = PathBuf::from(parent);
        return make(&parent).map_err(|e| {
            format!("cannot make a temporary folder in {} (FEEDSIEVE_PG_TMPDIR): {e}", parent.display())
        });
    }
    let shm = Path::new("/dev/shm");
    let mut candidates = Vec::new();
    if available_bytes(shm) >= SHM_ROOM {
        candidates.push(shm.to_path_buf());
    }
    candidates.push(std::env::temp_dir());
    candidates.push(PathBuf::from("/tmp"));
    let mut failures = Vec::new();
    for parent in candidates {
        if let Some((uid, gid)) = owner
            && !reachable_by(&parent, uid, gid)
        {
            failures.push(format!("{}: the user postgres cannot reach it", parent.display()));
            continue;
        }
        match make(&parent) {
            Ok(temp) => return Ok(temp),
            Err(e) => failures.push(format!("{}: {e}", parent.display())),
        }
    }
    Err(format!("cannot make a temporary folder for PostgreSQL: {}", failures.join("; ")))
}

/// The room `/dev/shm` must have free to hold the server (each database takes 8 MB).
const SHM_ROOM: u64 = 2 << 30;

/// The bytes free for unprivileged users on the file system of `path`; 0 if unknown.
#[allow(clippy::useless_conversion)] // the fields' types vary with the target
fn available_bytes(path: &Path) -> u64 {
    let Ok(cpath) = CString::new(path.as_os_str().as_encoded_bytes()) else { return 0 };
    // SAFETY: statvfs is plain data, all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: cpath is a valid C string, stat a valid statvfs to fill.
    if unsafe { libc::statvfs(cpath.as_ptr(), &mut stat) } != 0 {
        return 0;
    }
    u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize))
}

/// The folder holding `initdb` and `postgres`.
fn find_bin() -> Result<PathBuf, String> {
    fn has_server(dir: &Path) -> bool {
        dir.join("initdb").is_file() && dir.join("postgres").is_file()
    }
    if let Some(dir) = std::env::var_os("FEEDSIEVE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "FEEDSIEVE_PG_BIN is {}, which does not hold both initdb and postgres",
                dir.display()
            ))
        };
    }
    // Debian: /usr/lib/postgresql/<major>/bin, the newest major.
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|v| v.split('.').map(|n| n.parse::<u64>().ok()).collect::<Option<Vec<_>>>())
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_server(&bin) {
                found.push((version, bin));
            }
        }
    }
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    // Elsewhere: an initdb on PATH (through its symbolic links) next to a postgres.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = fs::canonicalize(dir.join("initdb"))
                && let Some(bin) = initdb.parent()
                && has_server(bin)
            {
                return Ok(bin.to_path_buf());
            }
        }
    }
    Err("PostgreSQL's server binaries (initdb and postgres) were not found: not in \
         FEEDSIEVE_PG_BIN (unset), /usr/lib/postgresql/*/bin or PATH. Run the tests with \
         `bash scripts/test`, which installs them (Debian's postgresql package), or install \
         them with `apt-get install postgresql`, or set FEEDSIEVE_PG_BIN to the folder that \
         holds initdb and postgres, or set FEEDSIEVE_TEST_PG to a superuser's URL on a \
         PostgreSQL server to use instead"
        .to_string())
}

/// Runs `initdb`: C.UTF-8, else no locale.
fn initdb(
    bin: &Path,
    folder: &Path,
    data: &Path,
    password: &str,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let pwfile = folder.join("pwfile");
    fs::write(&pwfile, format!("{password}\n"))
        .map_err(|e| format!("cannot write {}: {e}", pwfile.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to the user postgres: {e}", pwfile.display()))?;
    }
    let mut failures = Vec::new();
    for locale in ["--locale=C.UTF-8", "--no-locale"] {
        let mut cmd = Command::new(bin.join("initdb"));
        cmd.arg("-D")
            .arg(data)
            .args(["-U", ADMIN_ROLE, "--auth=scram-sha-256", "-E", "UTF8", locale, "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(folder)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", bin.join("initdb").display()))?;
        if out.status.success() {
            let _ = fs::remove_file(&pwfile);
            return Ok(());
        }
        failures.push(format!(
            "initdb {locale}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        // initdb removes the data folder it made when it fails; make sure.
        let _ = fs::remove_dir_all(data);
    }
    Err(format!("initdb failed ({}):\n{}", bin.display(), failures.join("\n")))
}

/// The `sh` script that runs PostgreSQL for one test process. `$1` is the folder to
/// remove at the end, the rest is the `postgres` command line. Its standard input is a
/// pipe whose writing end only the test process holds: end-of-file there means that the
/// test process is gone (or is ending), and then PostgreSQL gets SIGINT (fast shutdown).
/// If PostgreSQL stops by itself (e.g. its port was taken), the script exits 1 and leaves
/// the folder to the test process.
const WATCHDOG: &str = r#"
folder=$1
shift
trap '' INT TERM HUP
exec 3<&0 0</dev/null
"$@" 3<&- &
pg=$!
(
    while read -r _ <&3; do :; done
    : > "$folder/stopping"
    kill -INT "$pg" 2>/dev/null
) &
reader=$!
exec 3<&-
wait "$pg"
status=$?
if [ -e "$folder/stopping" ]; then
    rm -rf -- "$folder"
    exit 0
fi
kill -KILL "$reader" 2>/dev/null
echo "feedsieve-pg-watchdog: postgres stopped by itself (status $status)" >&2
exit 1
"#;

/// The watchdog process, stopped (with the server) when dropped.
struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    fn start(
        bin: &Path,
        folder: &Path,
        data: &Path,
        log_path: &Path,
        port: u16,
        owner: Option<(u32, u32)>,
    ) -> Result<Watchdog, String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let settings = [
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={port}"),
            "unix_socket_directories=".to_string(),
            "fsync=off".to_string(),
            "synchronous_commit=off".to_string(),
            "full_page_writes=off".to_string(),
            "max_connections=300".to_string(),
            "shared_buffers=64MB".to_string(),
            "password_encryption=scram-sha-256".to_string(),
            "lc_messages=C".to_string(),
            "log_line_prefix=%m [%p] ".to_string(),
        ];
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("feedsieve-pg-watchdog")
            .arg(folder)
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(data);
        for setting in &settings {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdin(Stdio::piped()).stdout(log).stderr(log_err).current_dir(folder).process_group(0);
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot run /bin/sh to start PostgreSQL: {e}"))?;
        Ok(Watchdog { child: Some(child) })
    }

    /// Whether the watchdog has exited (PostgreSQL stopped by itself), and how.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot tell ({e})")),
        }
    }

    /// Leaves the watchdog running until the process ends: the pipe's writing end is
    /// kept open, and closed by an atexit handler that then waits for the watchdog.
    fn hand_over_to_atexit(mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Err("the watchdog is gone".to_string()) };
        let Some(stdin) = child.stdin.take() else { return Err("the watchdog has no pipe".to_string()) };
        let Ok(pid) = i32::try_from(child.id()) else { return Err("odd process id".to_string()) };
        WATCHDOG_FD.store(stdin.into_raw_fd(), Ordering::SeqCst);
        WATCHDOG_PID.store(pid, Ordering::SeqCst);
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            // If registering fails, the pipe's end-of-file at exit still stops the
            // server, only a moment after the process has gone.
            // SAFETY: stop_at_exit is an extern "C" fn that neither panics nor unwinds.
            unsafe { libc::atexit(stop_at_exit) };
        });
        Ok(())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

static WATCHDOG_FD: AtomicI32 = AtomicI32::new(-1);
static WATCHDOG_PID: AtomicI32 = AtomicI32::new(0);

/// At exit: closes the watchdog's pipe and waits (30 s at most) for it to stop the
/// server and remove its folder.
extern "C" fn stop_at_exit() {
    let fd = WATCHDOG_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: fd is the pipe's writing end, which nothing else closes.
        unsafe { libc::close(fd) };
    }
    let pid = WATCHDOG_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        for _ in 0..3000 {
            let mut status = 0;
            // SAFETY: pid is our child, which nothing else waits for.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

enum Start {
    /// PostgreSQL could not bind its port: try another.
    PortTaken(String),
    Failed(String),
}

/// Waits until the server accepts the superuser's connections, and checks that it is
/// ours (its data directory).
fn wait_until_ready(
    watchdog: &mut Watchdog,
    admin: &Config,
    data: &Path,
    port: u16,
    log_path: &Path,
    log_start: u64,
) -> Result<Client, Start> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = watchdog.exited() {
            let log = log_tail(log_path, log_start);
            let why = format!(
                "PostgreSQL ({}) stopped while starting on 127.0.0.1:{port} ({status}); \
                 the end of its log {}:\n{log}",
                data.display(),
                log_path.display()
            );
            return Err(
                if log.contains("could not create any TCP/IP sockets")
                    || log.contains("Address already in use")
                {
                    Start::PortTaken(why)
                } else {
                    Start::Failed(why)
                },
            );
        }
        let last_error = match connect(admin, "postgres") {
            Ok(mut client) => {
                return match client.query_one("SHOW data_directory", &[]) {
                    Ok(row) if Path::new(row.get::<_, &str>(0)) == data => Ok(client),
                    Ok(row) => Err(Start::Failed(format!(
                        "the server on 127.0.0.1:{port} serves {}, not {}",
                        row.get::<_, &str>(0),
                        data.display()
                    ))),
                    Err(e) => Err(Start::Failed(format!("SHOW data_directory: {}", describe(&e)))),
                };
            }
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Start::Failed(format!(
                "PostgreSQL ({}) did not accept connections on 127.0.0.1:{port} within {} s \
                 (last error: {last_error}); the end of its log {}:\n{}",
                data.display(),
                START_TIMEOUT.as_secs(),
                log_path.display(),
                log_tail(log_path, log_start)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The postmaster's process id, from the first line of `postmaster.pid`.
fn postmaster_pid(data: &Path) -> Result<u32, String> {
    let path = data.join("postmaster.pid");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{} does not start with a process id", path.display()))
}

/// The last 40 lines of the log written since `start`.
fn log_tail(path: &Path, start: u64) -> String {
    let mut bytes = Vec::new();
    match fs::File::open(path) {
        Ok(mut file) => {
            if let Err(e) = file.seek(SeekFrom::Start(start)).and_then(|_| file.read_to_end(&mut bytes)) {
                return format!("(cannot read it: {e})");
            }
        }
        Err(e) => return format!("(cannot read it: {e})"),
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot read a bound port: {e}"))
}

/// Connects with `config` to database `db`.
fn connect(config: &Config, db: &str) -> Result<Client, String> {
    let mut config = config.clone();
    config.dbname(db);
    config.connect(NoTls).map_err(|e| describe(&e))
}

/// An error with the server's message and detail when there is one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            text
        }
        None => e.to_string(),
    }
}

/// Runs `f` on a thread of its own, out of any Tokio runtime (the sync client panics
/// on a thread that drives one); its panics go on in the caller.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// `n` random bytes, in hexadecimal.
fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A system user's uid and gid; `None` when there is no such user.
fn system_user(name: &str) -> Result<Option<(u32, u32)>, String> {
    let cname = CString::new(name).map_err(|_| format!("odd user name {name:?}"))?;
    // SAFETY: passwd is plain data, all zeroes is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, buf.len() is buf's length.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 {
        return Err(format!("cannot look up the user {name}: {}", io::Error::from_raw_os_error(rc)));
    }
    Ok((!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
}

/// Whether the user can reach into `dir` (search permission on it and its parents).
fn reachable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    dir.ancestors().all(|a| match fs::metadata(a) {
        Ok(m) => {
            let mode = m.mode();
            if m.uid() == uid {
                mode & 0o100 != 0
            } else if m.gid() == gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        }
        Err(_) => false,
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
