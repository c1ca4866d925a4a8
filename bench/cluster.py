#!/usr/bin/env python3
"""Measure feedsieve as a cluster: many `feedsieve run` nodes sharing one PostgreSQL.

    python3 bench/cluster.py          # the whole run (about 10 minutes), writes bench/CLUSTER.md

Options: --bin PATH (default: cargo build --release here, then target/release/feedsieve),
--feeds 10000 --items 5 (the big corpus), --rt-feeds 1000 (the round-trip corpus),
--leases 30s,1m (the recovery runs), --slow-rate 150 (requests/s of the slow server),
--kill-at 0.25, --pg-port 5499, --only pass,rt,recovery,probe (a subset; CLUSTER.md is
then written from the new results and those kept from the last run), --render (rewrite
CLUSTER.md from bench/out/cluster/results.json without measuring).

What it does, each step logged on stderr:

1. generates the corpora with gen_corpus.py into bench/out/cluster/ (10,000 feeds x 5
   items, and 1,000 x 5), unless they are there;
2. serves bench/out/cluster/ with its own nginx (the settings of bench/nginx.sh: ETag,
   Last-Modified, `if_modified_since before`, no gzip, no Cache-Control, so a client
   that asks conditionally gets 304s) on two ports of 127.0.0.1: a fast one, and a slow
   one where `limit_req` lets through --slow-rate requests a second, all clients together
   (the rest wait in its queue, none is refused). The access log has
   `$msec $server_port $status $body_bytes_sent $request_uri` per request;
3. starts PostgreSQL with bench/pg.sh (PG_STATE=bench/out/cluster/pg, port --pg-port),
   stock but shared_buffers = 256MB;
4. passes (`pass`): for SQLite with one node, and PostgreSQL with 1, 2 and 3 nodes, a
   fresh store; the config from corpus_config.py (16 fetches at once, one topic) with
   the schedule "0 0 1 1 *", so that nothing comes due again by itself. Cold: CHECKPOINT,
   then all nodes started at once (`feedsieve --config CFG run --node nK --listen
   127.0.0.1:PORT`); done when every feed has last_fetch set (the database looked at
   every 0.2 s). Every node's /metrics is read every 0.25 s (when its fetch count last
   grew = when it went idle). Then, when every node's counters have stood still for a
   second, their CPU (/proc/PID/stat utime+stime), the server's CPU (the postmaster, its
   reaped children and its live children, as bench/run.py reads it), pg_current_wal_lsn()
   and /metrics are read, and the nodes stopped with SIGTERM. Warm: next_due set to NULL
   for every feed (the state a never-polled feed has, so that the nodes schedule every
   feed within the first seconds again, as in the cold pass), the nodes started again;
   all answers are 304s; timed from the first request nginx logged until every feed has
   a new last_fetch. For each pass nginx's log gives the requests per feed;
5. round trips (`rt`): PostgreSQL restarted with pg_stat_statements loaded
   (PG_OPTS="-c shared_preload_libraries=pg_stat_statements", see bench/pg.sh), and the
   nodes connect through a counting TCP proxy in this script that parses the frontend
   protocol (after the startup packet: 1 type byte + int32 length) and counts Query ('Q')
   and Sync ('S') messages, each one round trip; a Sync that only follows a Close is a
   statement being closed, which the client does not wait for, and is counted apart.
   1,000 feeds, 1 and 3 nodes, cold and warm, and once more starting the nodes with
   nothing due (what a start costs). pg_stat_statements' calls over the same passes
   (the script's own monitoring connects as another role and is left out);
6. recovery (`recovery`): for each --leases value, 3 nodes on PostgreSQL with that
   `lease` (and timeout = "10s", so that the lease is at least twice the timeout, as
   feedsieve's config check asks) poll the 10,000 feeds from the slow port; when a
   quarter of the feeds is polled, n3 is killed with SIGKILL; the claims it held just
   before and just after; the time until the last of them has been polled by another
   node; claims taken over and lost (metrics of n1 and n2); requests per feed (nginx);
   items stored against the corpus's, and items per (feed, guid) unique. The wait ends
   when every feed is polled, or when every lease n3 held has ended and the survivors
   have logged nothing for 30 s (what is left then is reported as never polled);
7. probe (`probe`): a synthetic feeds table in feedsieve's schema with 10,000 and then
   1,000,000 rows: the server's execution time (EXPLAIN ANALYZE) and the bytes on the
   wire of the statement with which a node reads every feed's state after each pass,
   and of a claim of 256 feeds (rolled back), for the scale plan;
8. writes bench/out/cluster/results.json and bench/CLUSTER.md (the tables, the machine,
   the scale arithmetic); the part of CLUSTER.md between the `notes` markers is written
   by hand and kept as it is.

Everything it starts (nginx, nodes, PostgreSQL) is stopped on exit, error or Ctrl-C.
Only the Python standard library; PostgreSQL (Debian's postgresql) and nginx-light are
installed by pg.sh / apt-get when missing. Run as root (pg.sh runs the server as the
`postgres` user) or as a user that can use sudo for apt-get.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out" / "cluster"
RESULTS = OUT / "results.json"
REPORT = HERE / "CLUSTER.md"
NEVER = "0 0 1 1 *"          # the schedule: nothing comes due again by itself
MONITOR = "cluster_bench"    # the role this script's own queries use
# What /healthz and /metrics ask the store (this script's monitoring, not polls).
MONITORING_SQL = {"SELECT count(*) FROM items", "SELECT count(*) FROM stories",
                  "SELECT topic_id, count(*) FROM topic_stories GROUP BY topic_id"}
# Each node logs the end of every pass (at debug when nothing was new), and no
# line per feed.
NODE_LOG = "info,feedsieve::daemon=debug,feedsieve::daemon::pipeline=info"
NOTES_BEGIN = "<!-- notes: written by hand, kept when cluster.py rewrites this file -->"
NOTES_END = "<!-- /notes -->"


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def out(cmd: list[str] | str) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, shell=isinstance(cmd, str))
        return (r.stdout or r.stderr).strip()
    except OSError as e:
        return f"({e})"


# --------------------------------------------------------------------------
# Everything started is stopped on the way out
# --------------------------------------------------------------------------
CLEANUPS: list = []


def cleanup() -> None:
    while CLEANUPS:
        f = CLEANUPS.pop()
        try:
            f()
        except Exception as e:  # noqa: BLE001 - keep stopping the rest
            log(f"cleanup: {e}")


def on_signal(signum, _frame) -> None:
    log(f"signal {signum}: stopping everything")
    cleanup()
    sys.exit(128 + signum)


# --------------------------------------------------------------------------
# A minimal PostgreSQL client (simple query protocol, trust authentication)
# --------------------------------------------------------------------------
class PgError(Exception):
    def __init__(self, fields: dict):
        self.code = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')} {self.code}: {fields.get('M', '')}")


class PgConn:
    def __init__(self, port: int, db: str, user: str = "postgres"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.received = 0
        params = b"".join(k + b"\0" + v.encode() + b"\0" for k, v in
                          ((b"user", user), (b"database", db),
                           (b"application_name", "bench-cluster"))) + b"\0"
        body = struct.pack("!i", 196608) + params
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        err = None
        while True:
            t, m = self._read()
            if t == b"R" and struct.unpack("!i", m[:4])[0] != 0:
                raise RuntimeError("the server asks for a password (pg.sh sets trust)")
            if t == b"E":
                err = PgError(self._fields(m))
                break
            if t == b"Z":
                break
        if err:
            self.sock.close()
            raise err

    def _recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("PostgreSQL closed the connection")
            self.received += len(chunk)
            self.buf += chunk
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read(self) -> tuple[bytes, bytes]:
        head = self._recv(5)
        n = struct.unpack("!i", head[1:])[0]
        return head[:1], self._recv(n - 4)

    @staticmethod
    def _fields(m: bytes) -> dict:
        out_ = {}
        for part in m.split(b"\0"):
            if part:
                out_[chr(part[0])] = part[1:].decode(errors="replace")
        return out_

    def query(self, sql: str) -> list[tuple]:
        """Rows of the last statement's result, each value a str or None."""
        q = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
        rows: list[tuple] = []
        err = None
        while True:
            t, m = self._read()
            if t == b"T":
                rows = []
            elif t == b"D":
                (k,) = struct.unpack("!h", m[:2])
                pos, row = 2, []
                for _ in range(k):
                    (n,) = struct.unpack("!i", m[pos:pos + 4])
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(m[pos:pos + n].decode())
                        pos += n
                rows.append(tuple(row))
            elif t == b"E":
                err = PgError(self._fields(m))
            elif t == b"Z":
                break
        if err:
            raise err
        return rows

    def value(self, sql: str):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def close(self) -> None:
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
            self.sock.close()
        except OSError:
            pass


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_array(ids: list[str]) -> str:
    return "ARRAY[" + ",".join(sql_str(i) for i in ids) + "]::text[]"


# --------------------------------------------------------------------------
# The PostgreSQL server (bench/pg.sh)
# --------------------------------------------------------------------------
def pg_bin() -> Path | None:
    dirs = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").exists()]
    key = lambda d: [int(x) if x.isdigit() else 0 for x in d.parent.name.split(".")]  # noqa: E731
    return max(dirs, key=key) if dirs else None


class PgServer:
    def __init__(self, port: int, state: Path):
        self.port = port
        self.state = state
        self.opts = ""

    def env(self) -> dict:
        return dict(os.environ, PG_STATE=str(self.state), PG_OPTS=self.opts)

    def start(self, opts: str = "") -> None:
        self.opts = opts
        subprocess.run([str(HERE / "pg.sh"), "stop"], env=self.env(), capture_output=True)
        log(f"bench/pg.sh start {self.port}" + (f" (PG_OPTS={opts!r})" if opts else ""))
        sh([str(HERE / "pg.sh"), "start", str(self.port)], env=self.env(), stdout=subprocess.DEVNULL)
        admin = self.conn()
        if not admin.value(f"SELECT 1 FROM pg_roles WHERE rolname = {sql_str(MONITOR)}"):
            admin.query(f"CREATE ROLE {MONITOR} LOGIN SUPERUSER")
        admin.close()

    def stop(self) -> None:
        subprocess.run([str(HERE / "pg.sh"), "stop"], env=self.env(), capture_output=True)

    def conn(self, db: str = "postgres", user: str = "postgres") -> PgConn:
        return PgConn(self.port, db, user)

    def url(self, db: str, port: int | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{db}?sslmode=disable"

    def cpu(self) -> float:
        """CPU seconds (user + system) of the whole server so far: the postmaster's
        own, its reaped children's (a backend's times go there when it exits) and
        those of its children still running (bench/run.py's Pg.server_cpu)."""
        pid = int((self.state / "data" / "postmaster.pid").read_text().split()[0])
        ticks = sum(int(x) for x in proc_stat(pid)[11:15])     # utime stime cutime cstime
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    g = proc_stat(int(d))
                except OSError:
                    continue
                if int(g[1]) == pid:
                    ticks += sum(int(x) for x in g[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_mark(self) -> int:
        p = self.state / "server.log"
        return p.stat().st_size if p.exists() else 0

    def checkpoint_warnings(self, since: int) -> list[int]:
        """The server's "checkpoints are occurring too frequently (N seconds apart)"
        since `since`: the Ns."""
        with open(self.state / "server.log", "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [int(x) for x in re.findall(r"occurring too frequently \((\d+) seconds? apart\)", text)]

    def version(self) -> str:
        b = pg_bin()
        return out([str(b / "postgres"), "--version"]) if b else "?"


def proc_stat(pid: int) -> list[str]:
    st = Path(f"/proc/{pid}/stat").read_text()
    return st[st.rindex(")") + 2:].split()                      # from field 3 (state) on


def proc_cpu(pid: int) -> float:
    f = proc_stat(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# The stores: a PostgreSQL database or a SQLite file, as the script looks at them
# --------------------------------------------------------------------------
class PgDb:
    engine = "postgres"

    def __init__(self, server: PgServer, name: str):
        self.server = server
        self.name = name
        self.mon: PgConn | None = None

    def create(self) -> None:
        admin = self.server.conn()
        admin.query(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        admin.query(f"CREATE DATABASE {self.name}")
        admin.close()
        self.mon = self.server.conn(self.name, MONITOR)

    def drop(self) -> None:
        if self.mon:
            self.mon.close()
            self.mon = None
        admin = self.server.conn()
        admin.query(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        admin.close()

    def url(self, port: int | None = None) -> str:
        return self.server.url(self.name, port)

    def q(self, sql: str) -> list[tuple]:
        return self.mon.query(sql)

    def v(self, sql: str):
        return self.mon.value(sql)

    def fetched_since(self, since: int) -> int:
        try:
            return int(self.v(f"SELECT count(*) FROM feeds WHERE last_fetch >= {since}"))
        except PgError as e:
            if e.code == "42P01":            # no feeds table yet: the nodes are migrating
                return 0
            raise

    def max_last_fetch(self) -> int:
        return int(self.v("SELECT coalesce(max(last_fetch), 0) FROM feeds"))

    def clear_due(self) -> None:
        self.q("UPDATE feeds SET next_due = NULL")

    def checkpoint(self) -> None:
        self.q("CHECKPOINT")

    def lsn(self) -> str:
        return self.v("SELECT pg_current_wal_lsn()")

    def wal_bytes(self, a: str, b: str) -> int:
        return int(float(self.v(f"SELECT pg_wal_lsn_diff('{b}', '{a}')")))

    def size(self) -> int:
        return int(self.v("SELECT pg_database_size(current_database())"))

    def autovacuums(self) -> tuple[int, int]:
        """Autovacuum and autoanalyze runs on this database's tables so far."""
        try:
            r = self.q("SELECT coalesce(sum(autovacuum_count), 0), coalesce(sum(autoanalyze_count), 0) "
                       "FROM pg_stat_user_tables")[0]
            return int(r[0]), int(r[1])
        except PgError:
            return 0, 0

    def vacuum(self) -> None:
        self.q("VACUUM (ANALYZE)")

    def store_checks(self) -> dict:
        r = self.q("""SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM stories),
                      (SELECT count(*) FROM (SELECT 1 FROM items WHERE guid IS NOT NULL
                                             GROUP BY feed_id, guid HAVING count(*) > 1) d),
                      (SELECT count(*) FROM (SELECT 1 FROM items GROUP BY feed_id, key
                                             HAVING count(*) > 1) k),
                      (SELECT count(*) FROM feeds WHERE error IS NOT NULL),
                      (SELECT count(*) FROM feeds WHERE claimed_by IS NOT NULL)""")[0]
        keys = ["items", "stories", "dup_feed_guid", "dup_feed_key", "feeds_with_error",
                "claims_left"]
        return {k: int(x) for k, x in zip(keys, r)}


class SqliteDb:
    engine = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    def create(self) -> None:
        for x in ("", "-wal", "-shm"):
            p = Path(str(self.path) + x)
            if p.exists():
                p.unlink()

    def drop(self) -> None:
        self.create()

    def url(self, port: int | None = None) -> str:
        return str(self.path)

    def _conn(self, write: bool = False) -> sqlite3.Connection:
        if write:
            return sqlite3.connect(self.path, timeout=30)
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)

    def fetched_since(self, since: int) -> int:
        if not self.path.exists():
            return 0
        try:
            with self._conn() as c:
                return c.execute("SELECT count(*) FROM feeds WHERE last_fetch >= ?",
                                 (since,)).fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def max_last_fetch(self) -> int:
        with self._conn() as c:
            return c.execute("SELECT coalesce(max(last_fetch), 0) FROM feeds").fetchone()[0]

    def clear_due(self) -> None:
        with self._conn(write=True) as c:
            c.execute("UPDATE feeds SET next_due = NULL")

    def checkpoint(self) -> None:
        pass

    def size(self) -> int:
        return sum(Path(str(self.path) + x).stat().st_size for x in ("", "-wal")
                   if Path(str(self.path) + x).exists())

    def store_checks(self) -> dict:
        with self._conn() as c:
            r = c.execute("""SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM stories),
                      (SELECT count(*) FROM (SELECT 1 FROM items WHERE guid IS NOT NULL
                                             GROUP BY feed_id, guid HAVING count(*) > 1)),
                      (SELECT count(*) FROM (SELECT 1 FROM items GROUP BY feed_id, key
                                             HAVING count(*) > 1)),
                      (SELECT count(*) FROM feeds WHERE error IS NOT NULL)""").fetchone()
        keys = ["items", "stories", "dup_feed_guid", "dup_feed_key", "feeds_with_error"]
        return dict(zip(keys, r))


# --------------------------------------------------------------------------
# nginx, as bench/nginx.sh configures it, on a fast and a slow port
# --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, root: Path, state: Path, slow_rate: int):
        self.root = root
        self.state = state
        self.slow_rate = slow_rate
        self.fast = free_port()
        self.slow = free_port()
        self.log = state / "access.log"
        self.pidfile = state / "nginx.pid"

    def start(self) -> None:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(exe).exists():
            apt_install(["nginx-light"])
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "tmp").mkdir(exist_ok=True)
        if self.log.exists():
            self.log.unlink()
        user = "user root root;" if os.geteuid() == 0 else ""
        s = self.state
        conf = f"""# written by bench/cluster.py; the settings of bench/nginx.sh, on two ports
{user}
worker_processes 1;
pid {self.pidfile};
error_log {s}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    types {{ application/xml xml; application/feed+json json; text/tab-separated-values tsv; }}
    default_type application/octet-stream;
    log_format cluster '$msec $server_port $status $body_bytes_sent $request_uri';
    access_log {self.log} cluster;
    client_body_temp_path {s}/tmp/body;
    proxy_temp_path {s}/tmp/proxy;
    fastcgi_temp_path {s}/tmp/fastcgi;
    uwsgi_temp_path {s}/tmp/uwsgi;
    scgi_temp_path {s}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    server_tokens off;
    etag on;
    if_modified_since before;
    gzip off;
    # The slow port: at most {self.slow_rate} requests a second, all clients together;
    # the others wait their turn in the queue (burst), none is refused.
    limit_req_zone $server_port zone=slow:1m rate={self.slow_rate}r/s;
    limit_req_status 503;
    server {{
        listen 127.0.0.1:{self.fast} backlog=4096;
        root {self.root};
        location / {{ try_files $uri =404; }}
    }}
    server {{
        listen 127.0.0.1:{self.slow} backlog=4096;
        root {self.root};
        location / {{ limit_req zone=slow burst=100000; try_files $uri =404; }}
    }}
}}
"""
        (s / "nginx.conf").write_text(conf)
        sh([exe, "-c", str(s / "nginx.conf"), "-p", str(s), "-e", str(s / "error.log")])
        CLEANUPS.append(self.stop)
        for _ in range(50):
            if self.pid():
                break
            time.sleep(0.1)
        log(f"nginx on 127.0.0.1:{self.fast} (fast) and :{self.slow} ({self.slow_rate} req/s), "
            f"root {self.root}")

    def pid(self) -> int | None:
        try:
            p = int(self.pidfile.read_text().strip())
            os.kill(p, 0)
            return p
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        p = self.pid()
        if p:
            os.kill(p, signal.SIGQUIT)
            for _ in range(50):
                try:
                    os.kill(p, 0)
                except OSError:
                    break
                time.sleep(0.1)

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def lines(self, since: int) -> list[tuple[float, int, int, int, str]]:
        time.sleep(0.3)                       # nginx writes each line as it logs it
        rows = []
        with open(self.log, "rb") as f:
            f.seek(since)
            for line in f:
                p = line.split()
                if len(p) >= 5:
                    rows.append((float(p[0]), int(p[1]), int(p[2]), int(p[3]), p[4].decode()))
        return rows


def per_feed(lines: list, paths: list[str], port: int) -> dict:
    """Requests per feed path: how many feeds were asked for 0, 1, 2, 3+ times."""
    c = Counter(uri for _, p, _, _, uri in lines if p == port)
    hist = Counter(min(c.get(path, 0), 3) for path in paths)
    status = Counter(str(st) for _, p, st, _, _ in lines if p == port)
    body = sum(b for _, p, _, b, _ in lines if p == port)
    return {"0": hist[0], "1": hist[1], "2": hist[2], "3+": hist[3],
            "max": max((c.get(path, 0) for path in paths), default=0),
            "status": dict(sorted(status.items())), "body_bytes": body,
            "requests": sum(c.values())}


# --------------------------------------------------------------------------
# A counting proxy between the nodes and PostgreSQL
# --------------------------------------------------------------------------
class CountingProxy:
    """Forwards TCP to PostgreSQL and parses what the clients send: after the
    startup packet (and an SSLRequest before it, answered by the server), every
    frontend message is 1 type byte and an int32 length that counts itself. A
    Query ('Q') is one round trip, and so is a Sync ('S') of the extended
    protocol, but for a Sync that only follows Close messages: the client closing
    a statement it no longer needs, which it does not wait for."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.reset()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.msgs: Counter = Counter()
            self.kinds: Counter = Counter()     # what each round trip was
            self.by_sql: Counter = Counter()    # round trips by statement text
            self.conns = 0

    def snapshot(self) -> dict:
        with self.lock:
            rt = self.msgs["Q"] + self.kinds["sync"]
            monitoring = sum(n for q, n in self.by_sql.items() if q in MONITORING_SQL)
            return {"round_trips": rt, "monitoring_round_trips": monitoring,
                    "messages": dict(self.msgs), "kinds": dict(self.kinds),
                    "by_sql": self.by_sql.most_common(40), "connections": self.conns}

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._client, args=(c, u), daemon=True).start()
            threading.Thread(target=self._server, args=(u, c), daemon=True).start()

    @staticmethod
    def _server(u: socket.socket, c: socket.socket) -> None:
        try:
            while data := u.recv(262144):
                c.sendall(data)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _client(self, c: socket.socket, u: socket.socket) -> None:
        buf = bytearray()
        startup = True
        conn = {"group": set(), "sql": None, "names": {}}
        try:
            while data := c.recv(262144):
                u.sendall(data)
                buf += data
                pos = 0
                while True:
                    if startup:
                        if len(buf) - pos < 8:
                            break
                        n = struct.unpack_from("!i", buf, pos)[0]
                        if len(buf) - pos < n:
                            break
                        code = struct.unpack_from("!i", buf, pos + 4)[0]
                        if code not in (80877103, 80877104):    # SSLRequest, GSSENCRequest
                            startup = False                     # the startup packet
                        pos += n
                        continue
                    if len(buf) - pos < 5:
                        break
                    t = chr(buf[pos])
                    n = struct.unpack_from("!i", buf, pos + 1)[0]
                    if len(buf) - pos < 1 + n:
                        break
                    body = bytes(buf[pos + 5:pos + 1 + n]) if t in "QPB" else b""
                    pos += 1 + n
                    self._count(t, body, conn)
                del buf[:pos]
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count(self, t: str, body: bytes, conn: dict) -> None:
        group = conn["group"]
        with self.lock:
            self.msgs[t] += 1
            if t == "Q":
                self.kinds["simple query"] += 1
                self.by_sql[norm_sql(body.rstrip(b"\0"))] += 1
            elif t == "P":
                name, _, rest = body.partition(b"\0")
                conn["sql"] = norm_sql(rest.split(b"\0")[0])
                conn["names"][name] = conn["sql"]
                group.add(t)
            elif t == "B":
                parts = body.split(b"\0", 2)
                if len(parts) >= 2 and parts[1] in conn["names"]:
                    conn["sql"] = conn["names"][parts[1]]
                group.add(t)
            elif t == "S":
                if group and group <= {"C"}:
                    self.kinds["close (not waited for)"] += 1
                else:
                    self.kinds["sync"] += 1
                    self.by_sql[conn["sql"] or "?"] += 1
                    if "P" in group and "B" in group:
                        self.kinds["parse+bind+execute in one"] += 1
                    elif "P" in group:
                        self.kinds["prepare"] += 1
                    elif "B" in group:
                        self.kinds["execute prepared"] += 1
                    else:
                        self.kinds["other sync"] += 1
                group.clear()
            elif t in "EDCHdcf":
                group.add(t)


def norm_sql(b: bytes) -> str:
    s = re.sub(r"\s+", " ", b.decode(errors="replace")).strip()
    return s[:90]


# --------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------
class Node:
    def __init__(self, bin_: Path, cfg: Path, name: str, logdir: Path, tag: str):
        self.bin, self.cfg, self.name = bin_, cfg, name
        self.logpath = logdir / f"{tag}-{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [str(self.bin), "--config", str(self.cfg), "run", "--node", self.name,
             "--listen", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_LOG=NODE_LOG))
        CLEANUPS.append(self.kill)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.read().decode()
        except OSError:
            return None

    def wait_healthy(self, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if not self.alive():
                raise RuntimeError(f"node {self.name} exited; log {self.logpath}:\n{self.tail()}")
            if self.get("/healthz", 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {self.name} not healthy after {timeout}s; log:\n{self.tail()}")

    def metrics(self) -> dict | None:
        text = self.get("/metrics")
        if text is None:
            return None
        m = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    m[k] = float(v)
                except ValueError:
                    pass
        return m

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def term(self, timeout: float = 30) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"node {self.name} still running {timeout}s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        self.logf.close()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def last_pass_end(self) -> tuple[float | None, int]:
        """When this node last logged the end of a pass, and how many it logged."""
        last, k = None, 0
        for line in self.logpath.read_text(errors="replace").splitlines():
            if "feedsieve::daemon: polled " in line:
                k += 1
                last = datetime.fromisoformat(line.split()[0]).timestamp()
        return last, k

    def wait_logged(self, what: str, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if not self.alive():
                raise RuntimeError(f"node {self.name} exited; log {self.logpath}:\n{self.tail()}")
            if what in self.logpath.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not log {what!r} in {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def fetches(m: dict | None) -> int:
    if not m:
        return 0
    return int(sum(v for k, v in m.items() if k.startswith("feedsieve_fetches_total{")))


def metric(m: dict | None, name: str) -> int:
    return int((m or {}).get(name, 0))


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------
def write_config(path: Path, corpus: Path, base: str, database: str, lease: str | None = None,
                 timeout: str | None = None) -> Path:
    sh([sys.executable, str(HERE / "corpus_config.py"), str(corpus), base, "-o", str(path),
        "--database", database, "--schedule", NEVER, "--concurrency", "16"],
       stderr=subprocess.DEVNULL)
    text = path.read_text()
    extra = ""
    if lease:
        extra += f'lease = "{lease}"\n'
    if timeout:
        text = text.replace('timeout = "30s"', f'timeout = "{timeout}"')
    text = text.replace("[daemon]\n", "[daemon]\n" + extra, 1)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------
# One pass of some nodes over every feed
# --------------------------------------------------------------------------
def run_pass(ctx, db, cfg: Path, names: list[str], tag: str, since: int, port: int,
             on_settled=None, timeout: float = 900) -> dict:
    """Starts `names` at once on `cfg`; done when every feed has last_fetch >= since."""
    n_feeds = ctx["n_feeds"]
    nginx: Nginx = ctx["nginx"]
    pg: PgServer | None = ctx["pg"] if db.engine == "postgres" else None
    db.checkpoint()
    lsn0 = db.lsn() if pg else None
    av0 = db.autovacuums() if pg else None
    pg0 = pg.cpu() if pg else None
    mark = nginx.mark()
    slog = pg.log_mark() if pg else None
    nodes = [Node(ctx["bin"], cfg, n, ctx["logs"], tag) for n in names]
    t0 = time.time()
    for n in nodes:
        n.start()
    timeline = []
    next_sample = 0.0
    while True:
        now = time.time()
        c = db.fetched_since(since)
        if now >= next_sample:
            next_sample = now + 1.0
            timeline.append((round(now - t0, 2), c))
        if c >= n_feeds:
            t_done = now
            break
        for n in nodes:
            if not n.alive():
                raise RuntimeError(f"node {n.name} exited during {tag}:\n{n.tail()}")
        if now - t0 > timeout:
            raise RuntimeError(f"{tag}: {c} of {n_feeds} feeds polled after {timeout}s")
        time.sleep(0.2)
    # Settled: no node has logged anything for 1.5 s (each logs the end of every
    # pass, after its curation). Nothing asks the nodes anything meanwhile.
    sizes, still_since = None, time.time()
    while time.time() - t_done < 30:
        now_sizes = [n.logpath.stat().st_size for n in nodes]
        if now_sizes != sizes:
            sizes, still_since = now_sizes, time.time()
        elif time.time() - still_since >= 1.5:
            break
        time.sleep(0.25)
    t_settled = time.time()
    cpus = {n.name: n.cpu() for n in nodes}
    pg1 = pg.cpu() if pg else None
    lsn1 = db.lsn() if pg else None
    av1 = db.autovacuums() if pg else None
    extra = on_settled() if on_settled else None
    busy_until = {n.name: n.last_pass_end() for n in nodes}
    metrics = {n.name: n.metrics() for n in nodes}
    for n in nodes:
        n.term()
    lines = nginx.lines(mark)
    mine = [x for x in lines if x[1] == port]
    first_req = min((x[0] for x in mine), default=t0)
    last_req = max((x[0] for x in mine), default=t0)
    res = {
        "nodes": len(nodes),
        "wall_from_start": t_done - t0,
        "first_request_after": first_req - t0,
        "wall_from_first_request": t_done - first_req,
        "requests_span": last_req - first_req,
        "settled_after": t_settled - t0,
        "feedsieve_cpu": sum(cpus.values()),
        "cpu_by_node": cpus,
        "pg_cpu": (pg1 - pg0) if pg else None,
        "wal_bytes": db.wal_bytes(lsn0, lsn1) if pg else None,
        "autovacuum": [av1[0] - av0[0], av1[1] - av0[1]] if pg else None,
        "checkpoints_too_frequent": pg.checkpoint_warnings(slog) if pg else None,
        "per_node": {name: {"fetches": fetches(m),
                            "claims": metric(m, "feedsieve_claims_total"),
                            "taken_over": metric(m, "feedsieve_claims_taken_over_total"),
                            "lost": metric(m, "feedsieve_claims_lost_total"),
                            "notifications": metric(m, "feedsieve_notifications_total"),
                            "passes": metric(m, "feedsieve_poll_passes_total"),
                            "busy_until": (busy_until[name][0] - t0) if busy_until[name][0] else None,
                            "pass_lines": busy_until[name][1]}
                     for name, m in metrics.items()},
        "http": per_feed(mine, ctx["paths"], port),
        "timeline": timeline,
        "extra": extra,
    }
    res["claims"] = sum(v["claims"] for v in res["per_node"].values())
    res["fetches"] = sum(v["fetches"] for v in res["per_node"].values())
    return res


def after_pass(db) -> int:
    """Waits until the clock is a second past every stored last_fetch, so that the
    next pass's polls are told apart by last_fetch >= that second."""
    t = db.max_last_fetch() + 1
    while time.time() < t + 0.05:
        time.sleep(0.05)
    return int(time.time())


def pass_pair(ctx, db, names: list[str], tag: str, base: str, corpus: Path, port: int,
              hooks: dict | None = None) -> dict:
    hooks = hooks or {}
    db.create()
    cfg = write_config(ctx["state"] / f"{tag}.toml", corpus, base,
                       db.url(hooks.get("db_port")))
    result = {"engine": db.engine, "nodes": len(names)}
    if "before" in hooks:
        hooks["before"]("cold")
    log(f"{tag}: cold pass, {len(names)} node(s)")
    cold = run_pass(ctx, db, cfg, names, f"{tag}-cold", 0, port, hooks.get("settled"))
    cold["store"] = db.store_checks()
    cold["db_bytes"] = db.size()
    result["cold"] = cold
    log(f"{tag}: cold {cold['wall_from_start']:.1f} s, {cold['store']['items']} items, "
        f"http {cold['http']['status']}, per feed 0/1/2/3+ = {cold['http']['0']}/"
        f"{cold['http']['1']}/{cold['http']['2']}/{cold['http']['3+']}")
    db.clear_due()
    if db.engine == "postgres":
        # Not measured: what autovacuum would have done a while after the first
        # pass, so that the warm pass does not pay for the cold one's inserts.
        db.vacuum()
    since = after_pass(db)
    if "before" in hooks:
        hooks["before"]("warm")
    log(f"{tag}: warm pass")
    warm = run_pass(ctx, db, cfg, names, f"{tag}-warm", since, port, hooks.get("settled"))
    warm["store"] = db.store_checks()
    result["warm"] = warm
    log(f"{tag}: warm {warm['wall_from_first_request']:.2f} s from the first request, "
        f"http {warm['http']['status']}, per feed 0/1/2/3+ = {warm['http']['0']}/"
        f"{warm['http']['1']}/{warm['http']['2']}/{warm['http']['3+']}")
    if "startup" in hooks:
        result["startup"] = hooks["startup"](cfg)
    return result


# --------------------------------------------------------------------------
# The three measurements
# --------------------------------------------------------------------------
def measure_passes(ctx) -> dict:
    pg: PgServer = ctx["pg"]
    big = ctx["corpus_big"]
    ctx["n_feeds"], ctx["paths"] = ctx["big_feeds"], ctx["big_paths"]
    base = f"http://127.0.0.1:{ctx['nginx'].fast}/{big.name}"
    res = {}
    db = SqliteDb(ctx["state"] / "sqlite-1.db")
    res["sqlite-1"] = pass_pair(ctx, db, ["n1"], "sqlite-1", base, big, ctx["nginx"].fast)
    res["sqlite-1"]["cold"]["db_bytes"] = db.size()
    db.drop()
    for k in (1, 2, 3):
        db = PgDb(pg, f"cl_pg{k}")
        res[f"pg-{k}"] = pass_pair(ctx, db, [f"n{i}" for i in range(1, k + 1)], f"pg-{k}",
                                   base, big, ctx["nginx"].fast)
        db.drop()
    return res


def measure_round_trips(ctx) -> dict:
    pg: PgServer = ctx["pg"]
    small = ctx["corpus_small"]
    ctx["n_feeds"], ctx["paths"] = ctx["small_feeds"], ctx["small_paths"]
    base = f"http://127.0.0.1:{ctx['nginx'].fast}/{small.name}"
    proxy = CountingProxy(pg.port)
    stats = pg.conn("postgres", MONITOR)
    stats.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    res = {}
    for k in (1, 3):
        db = PgDb(pg, f"cl_rt{k}")
        names = [f"n{i}" for i in range(1, k + 1)]

        def before(_phase):
            stats.query("SELECT pg_stat_statements_reset()")
            proxy.reset()

        def pgss() -> dict:
            mon = ", ".join(sql_str(q) for q in sorted(MONITORING_SQL))
            where = (f"dbid = (SELECT oid FROM pg_database WHERE datname = {sql_str(db.name)}) "
                     f"AND userid <> (SELECT oid FROM pg_roles WHERE rolname = {sql_str(MONITOR)}) "
                     f"AND query NOT IN ({mon})")
            total = int(stats.value(f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {where}"))
            top = stats.query(
                "SELECT calls, round(total_exec_time::numeric, 1), rows, "
                f"left(regexp_replace(query, '\\s+', ' ', 'g'), 100) "
                f"FROM pg_stat_statements WHERE {where} ORDER BY calls DESC LIMIT 30")
            return {"calls": total,
                    "top": [(int(c), float(t), int(n), q) for c, t, n, q in top]}

        def settled():
            return {"proxy": proxy.snapshot(), "pgss": pgss()}

        def startup(cfg: Path) -> dict:
            # The nodes once more, with nothing due: what starting (and idling a
            # moment) costs, to tell it from the passes' polls.
            before("startup")
            nodes = [Node(ctx["bin"], cfg, n, ctx["logs"], f"rt-{k}-startup") for n in names]
            for n in nodes:
                n.start()
            for n in nodes:
                n.wait_logged("serving on")
            time.sleep(2)
            snap = settled()
            for n in nodes:
                n.term()
            return snap

        log(f"round trips: {k} node(s) through the counting proxy on :{proxy.port}")
        res[f"pg-{k}"] = pass_pair(ctx, db, names, f"rt-{k}", base, small, ctx["nginx"].fast,
                                   {"db_port": proxy.port, "before": before,
                                    "settled": settled, "startup": startup})
        db.drop()
    stats.close()
    return res


def measure_recovery(ctx, lease: str) -> dict:
    pg: PgServer = ctx["pg"]
    big = ctx["corpus_big"]
    nginx: Nginx = ctx["nginx"]
    ctx["n_feeds"], ctx["paths"] = ctx["big_feeds"], ctx["big_paths"]
    n_feeds = ctx["n_feeds"]
    base = f"http://127.0.0.1:{nginx.slow}/{big.name}"
    tag = f"recovery-{lease}"
    db = PgDb(pg, "cl_recovery")
    db.create()
    cfg = write_config(ctx["state"] / f"{tag}.toml", big, base, db.url(), lease=lease,
                       timeout="10s")
    mark = nginx.mark()
    nodes = {n: Node(ctx["bin"], cfg, n, ctx["logs"], tag) for n in ("n1", "n2", "n3")}
    log(f"{tag}: 3 nodes, slow server ({nginx.slow_rate} req/s); n3 killed when "
        f"{ctx['kill_at']:.0%} of the feeds are polled")
    t0 = time.time()
    for n in nodes.values():
        n.start()
    while db.fetched_since(0) < ctx["kill_at"] * n_feeds:
        if time.time() - t0 > 900:
            raise RuntimeError(f"{tag}: too slow")
        time.sleep(0.2)
    held_before = int(db.v("SELECT count(*) FROM feeds WHERE claimed_by = 'n3' "
                           f"AND claim_until > {int(time.time())}"))
    m3 = nodes["n3"].metrics()
    nodes["n3"].kill()
    t_kill = time.time()
    polled_at_kill = db.fetched_since(0)
    rows = db.q("SELECT id, claim_until, last_fetch FROM feeds WHERE claimed_by = 'n3'")
    held = [r[0] for r in rows]
    until = [int(r[1]) for r in rows]
    log(f"{tag}: killed n3 at {t_kill - t0:.1f} s, {polled_at_kill} feeds polled; it held "
        f"{held_before} claims just before, {len(held)} just after")
    arr = sql_array(held) if held else "ARRAY[]::text[]"
    t_recovered = None
    t_done = None
    timeline = []
    lease_end = t_kill + (max(until) - t_kill if until else 0)
    survivors = ("n1", "n2")
    seen = {n: -1 for n in survivors}
    last_activity = time.time()
    left = len(held)
    while True:
        now = time.time()
        left = int(db.v(f"SELECT count(*) FROM feeds WHERE id = ANY({arr}) "
                        "AND (last_fetch IS NULL OR claimed_by = 'n3')"))
        done = db.fetched_since(0)
        timeline.append((round(now - t_kill, 2), left, done))
        if left == 0 and t_recovered is None:
            t_recovered = now
        if done >= n_feeds and t_done is None:
            t_done = now
        if t_recovered and t_done:
            break
        for name in survivors:
            if not nodes[name].alive():
                raise RuntimeError(f"{tag}: node {name} exited:\n{nodes[name].tail()}")
            f = nodes[name].logpath.stat().st_size
            if f != seen[name]:
                seen[name] = f
                last_activity = now
        # Every lease n3 held has ended and the survivors have fetched nothing for
        # 30 s: what is left is not coming (see CLUSTER.md).
        if now > lease_end + 30 and now - last_activity > 30:
            log(f"{tag}: {left} of n3's feeds and {n_feeds - done} feeds in all still not "
                f"polled {now - t_kill:.0f} s after the kill, every lease over and the "
                "survivors idle for 30 s: giving up waiting")
            break
        if now - t_kill > 900:
            raise RuntimeError(f"{tag}: {left} of n3's feeds still not polled after 900 s")
        time.sleep(0.25)
    stuck = db.q(f"SELECT id, claimed_by, claim_until, next_due, last_fetch FROM feeds "
                 f"WHERE last_fetch IS NULL ORDER BY id")
    last_held = db.v(f"SELECT max(last_fetch) FROM feeds WHERE id = ANY({arr})")
    # Settle the survivors (nothing logged for 1.5 s), then read them.
    sizes, still_since = None, time.time()
    while time.time() - still_since < 1.5 and time.time() - t_kill < 960:
        now_sizes = [nodes[n].logpath.stat().st_size for n in survivors]
        if now_sizes != sizes:
            sizes, still_since = now_sizes, time.time()
        time.sleep(0.25)
    ms = {n: nodes[n].metrics() for n in survivors}
    per_node = {name: {"fetches": fetches(m), "claims": metric(m, "feedsieve_claims_total"),
                       "taken_over": metric(m, "feedsieve_claims_taken_over_total"),
                       "lost": metric(m, "feedsieve_claims_lost_total")}
                for name, m in ms.items()}
    per_node["n3"] = {"fetches": fetches(m3), "claims": metric(m3, "feedsieve_claims_total"),
                      "taken_over": metric(m3, "feedsieve_claims_taken_over_total"),
                      "lost": metric(m3, "feedsieve_claims_lost_total"),
                      "note": "read 0-0.25 s before the kill"}
    for name in ("n1", "n2"):
        nodes[name].term()
    lines = nginx.lines(mark)
    http = per_feed(lines, ctx["paths"], nginx.slow)
    held_paths = {f"/{big.name}/{ctx['path_of'][i]}" for i in held}
    c = Counter(uri for _, p, _, _, uri in lines if p == nginx.slow)
    held_twice = sum(1 for pth in held_paths if c.get(pth, 0) >= 2)
    store = db.store_checks()
    res = {
        "lease": lease,
        "slow_rate": nginx.slow_rate,
        "killed_after": t_kill - t0,
        "polled_at_kill": polled_at_kill,
        "held_before_kill": held_before,
        "held_after_kill": len(held),
        "lease_ends_after_kill": [min(until) - t_kill, max(until) - t_kill] if until else None,
        "recovered_after_kill": (t_recovered - t_kill) if t_recovered else None,
        "last_held_polled_after_kill": (int(last_held) - t_kill) if last_held else None,
        "held_never_polled": left,
        "never_polled": [list(r) for r in stuck],
        "pass_done_after_kill": (t_done - t_kill) if t_done else None,
        "pass_wall": (t_done - t0) if t_done else None,
        "survivors_idle_after_kill": last_activity - t_kill,
        "per_node": per_node,
        "taken_over": sum(per_node[n]["taken_over"] for n in ("n1", "n2")),
        "lost": sum(per_node[n]["lost"] for n in ("n1", "n2")),
        "http": http,
        "held_fetched_twice": held_twice,
        "store": store,
        "expected_items": ctx["big_manifest"]["items"],
        "expected_stories": ctx["big_manifest"]["unique_stories"],
        "timeline": timeline[::4],
    }
    log(f"{tag}: n3's feeds: {len(held) - left} of {len(held)} polled by another node, the last "
        f"{res['last_held_polled_after_kill'] or 0:.0f} s after the kill; "
        f"taken over {res['taken_over']}, lost {res['lost']}; per feed 0/1/2/3+ = "
        f"{http['0']}/{http['1']}/{http['2']}/{http['3+']}; items {store['items']}")
    db.drop()
    return res


# The statement with which a node, after each pass, reads every feed's state
# (Store::feed_states, src/store/postgres/feeds.rs), and a claim of 256 feeds.
FEED_STATES = ("SELECT f.id, f.url, f.title, f.etag, f.last_modified, f.last_fetch, f.last_status, "
               "f.error, f.failures, f.next_due, f.moved_to, f.claimed_by, f.claim_until, 0::BIGINT "
               "FROM feeds f WHERE NULL::text[] IS NULL OR f.id = ANY(NULL::text[]) ORDER BY f.id")


def claim_sql(first: int, now: int) -> str:
    ids = sql_array([f"feed-{i:07d}" for i in range(first, first + 256)])
    return (f"WITH free AS (SELECT id, claimed_by AS before FROM feeds WHERE id = ANY({ids}) "
            f"AND (claim_until IS NULL OR claim_until <= {now}) "
            f"AND (next_due IS NULL OR next_due <= {now + 2}) ORDER BY id FOR UPDATE SKIP LOCKED) "
            f"UPDATE feeds f SET claimed_by = 'probe', claim_until = {now + 300}, "
            f"claim_token = nextval('claim_tokens') FROM free WHERE f.id = free.id "
            f"RETURNING f.id, f.url, f.etag, f.claim_token, free.before IS NOT NULL")


def measure_probe(ctx) -> dict:
    """The feeds table at 10,000 and 1,000,000 rows (synthetic, in feedsieve's own
    schema): what reading every feed's state costs, and what a claim costs."""
    pg: PgServer = ctx["pg"]
    db = PgDb(pg, "cl_probe")
    db.create()
    cfg = ctx["state"] / "probe.toml"
    cfg.write_text(f'[daemon]\ndatabase = "{db.url()}"\n')
    sh([str(ctx["bin"]), "--config", str(cfg), "status"], stdout=subprocess.DEVNULL,
       stderr=subprocess.DEVNULL)                          # makes the schema
    now = int(time.time())
    res = {}
    have = 0
    for total in (10_000, 1_000_000):
        log(f"probe: feeds table with {total:,} rows")
        db.q(f"""INSERT INTO feeds (id, url, title, etag, last_modified, last_fetch, last_success,
                                    last_status, next_due)
                 SELECT 'feed-' || lpad(g::text, 7, '0'),
                        'https://site' || (g % 50000) || '.example.org/feeds/' || g || '/rss.xml',
                        'Feed number ' || g, '"' || to_hex(g::bigint * 7919) || '-2a3b"',
                        'Sun, 06 Dec 2026 00:00:00 GMT', {now - 900}, {now - 900}, 200,
                        {now} + (g % 1800)
                 FROM generate_series({have + 1}, {total}) g""")
        have = total
        db.q("VACUUM (ANALYZE) feeds")
        times, sizes = [], []
        for _ in range(3):
            plan = db.q("EXPLAIN (ANALYZE, TIMING OFF) " + FEED_STATES)
            times.append(float(re.search(r"([\d.]+) ms", plan[-1][0]).group(1)))
            r0 = db.mon.received
            t0 = time.perf_counter()
            rows = db.q(FEED_STATES)
            sizes.append((db.mon.received - r0, time.perf_counter() - t0))
            assert len(rows) == total
            del rows
        claims = []
        for k in range(5):
            db.q("BEGIN")
            plan = db.q("EXPLAIN (ANALYZE, TIMING OFF) " + claim_sql(1 + k * (total // 5), now))
            db.q("ROLLBACK")
            claims.append(float(re.search(r"([\d.]+) ms", plan[-1][0]).group(1)))
        res[str(total)] = {
            "feed_states_exec_ms": sorted(times)[1],
            "feed_states_bytes": sizes[0][0],
            "feed_states_python_client_s": sorted(x[1] for x in sizes)[1],
            "claim_256_exec_ms": sorted(claims)[2],
            "feeds_table_bytes": int(db.v("SELECT pg_total_relation_size('feeds')")),
        }
        log(f"probe: {total:,} rows: reading every feed's state {res[str(total)]['feed_states_exec_ms']:.1f} ms "
            f"in the server, {res[str(total)]['feed_states_bytes'] / 1e6:.1f} MB; a claim of 256 "
            f"{res[str(total)]['claim_256_exec_ms']:.2f} ms")
    db.drop()
    return res


# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------
def apt_install(pkgs: list[str]) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"apt-get install -y {' '.join(pkgs)}")
    if subprocess.run(sudo + ["apt-get", "install", "-y", *pkgs], env=env,
                      stdout=subprocess.DEVNULL).returncode:
        sh(sudo + ["apt-get", "update", "-qq"], env=env)
        sh(sudo + ["apt-get", "install", "-y", *pkgs], env=env, stdout=subprocess.DEVNULL)


def build() -> Path:
    log("cargo build --release --bin feedsieve")
    sh(["cargo", "build", "--release", "--bin", "feedsieve"], cwd=REPO)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "feedsieve"


def corpus(feeds: int, items: int) -> tuple[Path, dict]:
    d = OUT / f"corpus-{feeds}x{items}"
    m = d / "manifest.json"
    if m.exists():
        man = json.loads(m.read_text())
        if man.get("feeds") == feeds and man.get("items") == feeds * items and man.get("seed") == 1:
            log(f"corpus {d.relative_to(REPO)} is there")
            return d, man
    log(f"gen_corpus.py --feeds {feeds} --items {items} --out {d.relative_to(REPO)}")
    sh([sys.executable, str(HERE / "gen_corpus.py"), "--feeds", str(feeds), "--items", str(items),
        "--seed", "1", "--out", str(d), "--quiet"])
    return d, json.loads(m.read_text())


def feed_paths(d: Path) -> tuple[list[str], dict]:
    paths, path_of = [], {}
    for n, line in enumerate((d / "feeds.tsv").read_text().splitlines()):
        if n == 0 or not line:
            continue
        fid, path = line.split("\t")[:2]
        paths.append(f"/{d.name}/{path}")
        path_of[fid] = path
    return paths, path_of


def machine(bin_: Path, pg: PgServer) -> dict:
    lscpu = out(["lscpu"])
    model = re.search(r"Model name:\s*(.+)", lscpu)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "nproc": int(out(["nproc"]) or 0),
        "ram_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "os": out("grep PRETTY_NAME /etc/os-release | cut -d= -f2 | tr -d '\"'"),
        "postgres": pg.version(),
        "nginx": out(["/usr/sbin/nginx", "-v"]),
        "feedsieve": out([str(bin_), "--version"]),
        "commit": out(["git", "-C", str(bin_.parent.parent.parent), "log", "-1", "--format=%h %s"])[:100],
    }


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------
def f0(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def f1(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def f2(x) -> str:
    return "–" if x is None else f"{x:,.2f}"


def mb(x) -> str:
    return "–" if x is None else f"{x / 1e6:,.1f}"


def label(key: str) -> tuple[str, str]:
    engine, n = key.split("-")
    return ("SQLite" if engine == "sqlite" else "PostgreSQL"), n


# The figures this report takes from the other bench reports, as they state them.
STORES_BYTES_PER_ITEM = 5891        # bench/STORES.md, PostgreSQL at 1,000,000 items
STORES_WALL_US_PER_ITEM = 394.7     # bench/STORES.md, wall per item ingested (PostgreSQL, 1M)
STORES_CPU_US_PER_ITEM = 39.7       # bench/STORES.md, feedsieve CPU per item (PostgreSQL, 1M)
STORES_RENDER_MS = 29.2             # bench/STORES.md, "a pass with nothing pending, rendering
                                    # included", PostgreSQL, 1M items
STORES_TOPIC_RENDER_MS = 5.7        # bench/STORES.md, regenerating one topic, PostgreSQL, 1M
                                    # items: "sanitise, entries, render (3 formats)"
FEEDS_1M = 1_000_000
EVERY_S = 1800
ITEM_RATES = [(2, "base: 2 new items per feed a day"),
              (20, "busy: 20 new items per feed a day (news-heavy)")]
RETENTION_DAYS = 30
MAX_READERS_NOTE = 4                # src/store/writer.rs MAX_READERS


def report(r: dict) -> str:
    m = r["machine"]
    L: list[str] = []
    add = L.append
    load = r.get("load_during") or []
    add("# Cluster benchmark: many `feedsieve run` nodes on one PostgreSQL\n")
    add(f"Generated by `bench/cluster.py` on {r['started']}; the run took "
        f"{r['took_s'] / 60:.0f} min. Reproduce with:\n")
    add("```sh\npython3 bench/cluster.py\n```\n")
    add(f"**On {m['nproc']} cores these numbers measure coordination overhead, not speed-up.** "
        "Every node, the PostgreSQL server and nginx share the same "
        f"{m['nproc']} CPUs, so a second or third node adds processes that compete for them "
        "and cannot add capacity. What the runs show is what sharing the work costs (wall "
        "time, CPU, round trips, WAL) and whether it stays correct (each feed polled once, "
        "each item stored once, a killed node's claims taken over).\n")
    if load:
        add(f"1-minute load average: {r['loadavg_before'][0]:.2f} before the run, "
            f"{r['loadavg_after'][0]:.2f} after; during it (every 10 s) mean "
            f"{sum(load) / len(load):.2f}, max {max(load):.2f}. Anything above about "
            f"{m['nproc'] * 0.5:.0f} that the run itself does not explain is other work on "
            "the machine, which inflates wall times more than CPU times.\n")
    add("## Machine\n")
    add(f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}; RAM {m['ram_gib']} GiB; {m['os']}, "
        f"kernel {m['kernel']}")
    add(f"- PostgreSQL: {m['postgres']}, through `bench/pg.sh` (stock settings except "
        "`shared_buffers = 256MB`; for sections 2 and 3 also "
        "`PG_OPTS=\"-c shared_preload_libraries=pg_stat_statements\"`), data on the same disk "
        "as bench/out, TCP on 127.0.0.1")
    add(f"- {m['nginx']}")
    add(f"- {m['feedsieve']} (`--version`: the version and the commit it was built from), "
        "release profile\n")

    c = r["corpus"]["big"]
    cs = r["corpus"]["small"]
    a = r["args"]
    add("## Setup\n")
    add(f"- Corpus: `gen_corpus.py --feeds {c['feeds']} --items {a['items']} --seed 1` "
        f"(all four formats): {c['feeds']:,} feeds, {c['items']:,} items, "
        f"{c['bytes'] / 1e6:.1f} MB, {c['unique_stories']:,} distinct stories "
        f"({c['near_duplicate_items']:,} syndicated near-duplicates). Section 2 uses "
        f"`--feeds {cs['feeds']}` ({cs['items']:,} items).")
    add("- Served by nginx on 127.0.0.1 with bench/nginx.sh's settings (ETag and "
        "Last-Modified, `if_modified_since before`, no gzip, no Cache-Control, so a "
        "conditional request gets a 304), the access log extended with `$msec` and the port. "
        f"Section 3 uses a second port where `limit_req` lets {a['slow_rate']} requests a "
        "second through, all nodes together (the others wait in nginx's queue; none is "
        "refused).")
    add("- Config: `bench/corpus_config.py` (fetch_concurrency = per_host_concurrency = 16, "
        "timeout 30 s, one topic), `schedule = \"0 0 1 1 *\"` so that nothing comes due "
        "again by itself; default `lease` (5m) but in section 3.")
    add("- Nodes: `feedsieve --config CFG run --node nK --listen 127.0.0.1:PORT`, started "
        "together; `RUST_LOG=" + NODE_LOG + "` (a line per pass, none per feed). "
        "Stopped with SIGTERM.")
    add("- Cold pass: a new, empty store, `CHECKPOINT`, nodes started; done when every feed "
        "has `last_fetch` set (the script asks the database every 0.2 s, its only load on "
        "the cluster during a pass; it reads no node's /metrics until the pass is over). "
        "Warm pass: the nodes stopped, `UPDATE feeds SET next_due = NULL` (the state of a "
        "feed never polled: the nodes schedule every feed within their first seconds, as in "
        "the cold pass), on PostgreSQL `VACUUM (ANALYZE)` (not measured: what autovacuum "
        "would have done a while after the first pass), `CHECKPOINT`, nodes started again; "
        "timed from the first request nginx logged until every feed has a new `last_fetch`; "
        "every answer is a 304.")
    add("- CPU: feedsieve = utime + stime of the node processes (/proc/PID/stat) when they "
        "have gone idle after the pass (nothing logged for 1.5 s); PostgreSQL = the whole "
        "server over the same span (postmaster, its reaped children, its live children), "
        "so it includes its background processes (checkpointer, WAL writer, autovacuum). "
        "WAL = `pg_wal_lsn_diff` of `pg_current_wal_lsn()` over the same span (the pass "
        "starts right after a CHECKPOINT, so the first change of every page writes a "
        "full-page image).\n")

    P = r.get("passes")
    if P:
        add("## 1. One pass over 10,000 feeds: SQLite (1 node), PostgreSQL (1, 2, 3 nodes)\n")
        for phase in ("cold", "warm"):
            add(f"### {phase.capitalize()} pass\n")
            if phase == "cold":
                add("Wall: from starting the nodes until every feed has `last_fetch`. "
                    "Claims/s: the nodes' `feedsieve_claims_total` added up, over the wall. "
                    "Per feed: how many feeds nginx served 0 / 1 / 2 / 3+ times during the "
                    "pass.\n")
            else:
                add("Wall: from the first request nginx logged (the first feed polled "
                    "again) until every feed has a new `last_fetch`; in brackets, from "
                    "starting the nodes.\n")
            add("| store | nodes | wall s | claims/s | fetches per node | per feed 0 / 1 / 2 / 3+ "
                "| HTTP | feedsieve CPU s | PostgreSQL CPU s | CPU ms per feed (feedsieve + PG) "
                "| WAL MB | WAL per feed; server log | items / stories | autovacuum runs |")
            add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for key, v in P.items():
                x = v[phase]
                eng, n = label(key)
                wall = x["wall_from_start"] if phase == "cold" else x["wall_from_first_request"]
                wall_s = f2(wall) if phase == "cold" else f"{f2(wall)} ({f2(x['wall_from_start'])})"
                claims = f0(x["claims"] / wall) if x["claims"] else "–"
                per_node = " / ".join(f"{d['fetches']:,}" for d in x["per_node"].values())
                h = x["http"]
                hist = f"{h['0']} / {h['1']:,} / {h['2']} / {h['3+']}"
                http = ", ".join(f"{k}: {v_:,}" for k, v_ in h["status"].items())
                pgc = x["pg_cpu"]
                per_feed_ms = 1000 * (x["feedsieve_cpu"] + (pgc or 0)) / c["feeds"]
                split = (f"{1000 * x['feedsieve_cpu'] / c['feeds']:.3f} + "
                         f"{1000 * pgc / c['feeds']:.3f}" if pgc is not None
                         else f"{1000 * x['feedsieve_cpu'] / c['feeds']:.3f}")
                wal = x["wal_bytes"]
                wal_pf = f"{wal / c['feeds'] / 1e3:,.1f} kB" if wal is not None else "–"
                if wal is not None and phase == "cold":
                    wal_pf += f" ({wal / x['store']['items'] / 1e3:,.1f} kB per item)"
                cw = x.get("checkpoints_too_frequent")
                if cw:
                    apart = f"{min(cw)}" if min(cw) == max(cw) else f"{min(cw)}–{max(cw)}"
                    wal_pf += (f"; {len(cw)} × \"checkpoints are occurring too frequently\" "
                               f"({apart} s apart)")
                st = x["store"]
                av = x.get("autovacuum")
                av_s = f"{av[0]} vacuum, {av[1]} analyze" if av else "–"
                add(f"| {eng} | {n} | {wall_s} | {claims} | {per_node} | {hist} | {http} "
                    f"| {f2(x['feedsieve_cpu'])} | {f2(pgc)} | {per_feed_ms:.3f} ({split}) "
                    f"| {mb(wal)} | {wal_pf} | {st['items']:,} / {st['stories']:,} | {av_s} |")
            add("")
        add("When each node logged the end of its last pass (seconds after the nodes "
            "started; cold, then warm) and its share of the claims:\n")
        add("| store | nodes | cold: last pass ended (per node) | cold: claims per node | "
            "warm: last pass ended | warm: claims per node | notices received per node (cold) |")
        add("|---|---|---|---|---|---|---|")
        for key, v in P.items():
            eng, n = label(key)
            cells = []
            for phase in ("cold", "warm"):
                pn = v[phase]["per_node"]
                cells.append(" / ".join(f1(d["busy_until"]) for d in pn.values()))
                cells.append(" / ".join(f"{d['claims']:,}" for d in pn.values())
                             if eng == "PostgreSQL" else "–")
            notes = " / ".join(str(d["notifications"]) for d in v["cold"]["per_node"].values())
            add(f"| {eng} | {n} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {notes} |")
        add("")
        pg1 = P.get("pg-1", {}).get("cold")
        if pg1:
            items = pg1["store"]["items"]
            add(f"Per item stored (cold, PostgreSQL, 1 node): WAL {pg1['wal_bytes'] / items:,.0f} "
                f"bytes, database {pg1['db_bytes'] / items:,.0f} bytes (`pg_database_size` "
                f"after the pass over {items:,} items; bench/STORES.md gives "
                f"{STORES_BYTES_PER_ITEM:,} at 1,000,000), PostgreSQL CPU "
                f"{1e6 * pg1['pg_cpu'] / items:,.0f} µs, feedsieve CPU "
                f"{1e6 * pg1['feedsieve_cpu'] / items:,.0f} µs (both include fetching and "
                "parsing the feed, and the topic).\n")

    RT = r.get("round_trips")
    if RT:
        nf = r["corpus"]["small"]["feeds"]
        add(f"## 2. Database round trips per feed poll ({nf:,} feeds)\n")
        add("Measured by a counting TCP proxy in the script between the nodes and PostgreSQL: "
            "it parses the frontend protocol (after the startup packet, 1 type byte + int32 "
            "length) and counts each Query (`Q`) and each Sync (`S`) as one round trip. "
            "feedsieve's client prepares each statement before running it (Parse/Describe, "
            "Sync; then Bind/Execute, Sync: two round trips) and closes it after (Close, Sync, "
            "not waited for: counted apart, not as a round trip); a few statements go as one "
            "Parse/Bind/Execute, Sync. The passes are as in section 1 (a pass includes the "
            "nodes' start: the *start* row is the nodes started again with nothing due, until "
            "they serve plus 2 s, and *net* subtracts it). Nothing asks the nodes' /healthz or "
            "/metrics meanwhile. pg_stat_statements (`calls` of the pass's database, the "
            "script's own role left out) counts statements executed, so a prepared statement "
            "is one call.\n")
        add("| nodes | pass | round trips | per feed | net of the start, per feed | closes (not waited for) "
            "| prepare / execute / one-shot / simple query | pg_stat_statements calls | per feed "
            "| connections opened |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for key, v in RT.items():
            _, n = label(key)
            st = v["startup"]["proxy"]
            for phase in ("cold", "warm", "startup"):
                e = v[phase]["extra"] if phase != "startup" else v[phase]
                p, g = e["proxy"], e["pgss"]
                k = p["kinds"]
                kinds = (f"{k.get('prepare', 0):,} / {k.get('execute prepared', 0):,} / "
                         f"{k.get('parse+bind+execute in one', 0):,} / {k.get('simple query', 0):,}")
                if phase == "startup":
                    add(f"| {n} | start (nothing due) | {p['round_trips']:,} | – | – "
                        f"| {k.get('close (not waited for)', 0):,} | {kinds} | {g['calls']:,} | – "
                        f"| {p['connections']} |")
                else:
                    net = (p["round_trips"] - st["round_trips"]) / nf
                    add(f"| {n} | {phase} | {p['round_trips']:,} | {p['round_trips'] / nf:.2f} "
                        f"| {net:.2f} | {k.get('close (not waited for)', 0):,} | {kinds} "
                        f"| {g['calls']:,} | {g['calls'] / nf:.2f} | {p['connections']} |")
        add("")
        for key in RT:
            _, n = label(key)
            w = RT[key]["warm"]["extra"]
            add(f"<details><summary>Warm pass, {n} node(s): round trips by statement "
                "(proxy) and pg_stat_statements' top statements</summary>\n")
            add("| round trips | statement (first 90 characters) |")
            add("|---|---|")
            for q, k in w["proxy"]["by_sql"][:20]:
                add(f"| {k:,} | `{q}` |")
            add("")
            add("| calls | total ms | rows | statement (first 100 characters) |")
            add("|---|---|---|---|")
            for calls, ms, rows, q in w["pgss"]["top"][:20]:
                add(f"| {calls:,} | {ms:,.1f} | {rows:,} | `{q}` |")
            add("\n</details>\n")

    REC = r.get("recovery")
    if REC:
        add("## 3. Recovery from a killed node\n")
        add(f"Three nodes on PostgreSQL poll the {c['feeds']:,} feeds cold from the slow port "
            f"({REC[0]['slow_rate']} requests/s for all nodes together); `lease` as below and "
            "`timeout = \"10s\"` (feedsieve warns when the lease is less than twice the "
            f"timeout). When {a['kill_at']:.0%} of the feeds have `last_fetch`, n3 is killed "
            "with SIGKILL. Held: `SELECT count(*) FROM feeds WHERE claimed_by = 'n3'` (with "
            "`claim_until` in the future) just before the kill, and the rows still naming n3 "
            "just after it, which are the claims it left. Recovered: until each of those "
            "feeds has `last_fetch` and no longer names n3. Taken over / lost: the survivors' "
            "`feedsieve_claims_taken_over_total` and `feedsieve_claims_lost_total`.\n")
        add("| lease | killed at s (feeds polled) | claims held before / after the kill "
            "| those leases ended s after the kill | last of them polled s after the kill "
            "| of them never polled | taken over (n1 + n2) | lost (n1 + n2) "
            "| per feed 0 / 1 / 2 / 3+ (most) | held feeds fetched twice | items / expected "
            "| duplicate (feed, guid) | stories / expected | whole pass s |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in REC:
            h = x["http"]
            le = x["lease_ends_after_kill"]
            le_s = f"{le[0]:.0f} – {le[1]:.0f}" if le else "–"
            st = x["store"]
            pn = x["per_node"]
            add(f"| {x['lease']} | {x['killed_after']:.1f} ({x['polled_at_kill']:,}) "
                f"| {x['held_before_kill']:,} / {x['held_after_kill']:,} | {le_s} "
                f"| {f1(x['recovered_after_kill']) if x['held_never_polled'] == 0 else '(' + f0(x['last_held_polled_after_kill']) + ')'} "
                f"| {x['held_never_polled']} "
                f"| {pn['n1']['taken_over']:,} + {pn['n2']['taken_over']:,} "
                f"| {pn['n1']['lost']:,} + {pn['n2']['lost']:,} "
                f"| {h['0']} / {h['1']:,} / {h['2']:,} / {h['3+']} ({h['max']}) | {x['held_fetched_twice']:,} "
                f"| {st['items']:,} / {x['expected_items']:,} | {st['dup_feed_guid']} "
                f"| {st['stories']:,} / {x['expected_stories']:,} "
                f"| {f1(x['pass_wall']) if x['pass_wall'] else 'not finished'} |")
        add("")
        add("A last-polled figure in brackets: not every held feed was polled again; it is "
            "the `last_fetch` (whole seconds) of the last one that was. Feeds never polled "
            "at the end of each run:\n")
        for x in REC:
            stuck = x["never_polled"]
            if stuck:
                ex = ", ".join(f"{row[0]} (claimed_by {row[1]}, claim_until {row[2]}, next_due "
                               f"{row[3]})" for row in stuck[:3])
                add(f"- lease {x['lease']}: {len(stuck)}, e.g. {ex}")
            else:
                add(f"- lease {x['lease']}: none")
        add("")

    add("## 4. Scale plan on paper: 1,000,000 feeds polled every 30 minutes\n")
    add(scale_plan(r))
    add("@@NOTES@@\n")
    return "\n".join(L)


def scale_plan(r: dict) -> str:
    L: list[str] = []
    add = L.append
    P = r.get("passes", {})
    RT = r.get("round_trips", {})
    PR = r.get("probe", {})
    nf = r["corpus"]["big"]["feeds"]
    polls = FEEDS_1M / EVERY_S
    add(f"**Polls.** {FEEDS_1M:,} feeds ÷ {EVERY_S:,} s = **{polls:,.1f} polls/s** on "
        "average. With a cron schedule such as the default `*/30 * * * *` every feed is due "
        "at the same slot plus a jitter of at most 30 s (`schedule::next_due`), so the polls "
        f"come as {FEEDS_1M:,} ÷ 30 s = {FEEDS_1M / 30:,.0f}/s for half a minute every half "
        "hour; `every 30m` keeps each feed 30 minutes after its own last poll, which spreads "
        "them as evenly as the first pass was. The plan assumes `every 30m`.\n")
    w3 = P.get("pg-3", {}).get("warm")
    w1 = P.get("pg-1", {}).get("warm")
    c1 = P.get("pg-1", {}).get("cold")
    if w3 and w1 and c1:
        items = c1["store"]["items"]
        add("**Measured costs used below** (section 1, this machine):\n")
        add("| | per warm poll (304), 1 node | per warm poll, 3 nodes | per item stored (cold, 1 node) |")
        add("|---|---|---|---|")
        add(f"| feedsieve CPU | {1e3 * w1['feedsieve_cpu'] / nf:.3f} ms | "
            f"{1e3 * w3['feedsieve_cpu'] / nf:.3f} ms | {1e3 * c1['feedsieve_cpu'] / items:.3f} ms |")
        add(f"| PostgreSQL CPU | {1e3 * w1['pg_cpu'] / nf:.3f} ms | "
            f"{1e3 * w3['pg_cpu'] / nf:.3f} ms | {1e3 * c1['pg_cpu'] / items:.3f} ms |")
        add(f"| WAL | {w1['wal_bytes'] / nf / 1e3:,.2f} kB | {w3['wal_bytes'] / nf / 1e3:,.2f} kB | "
            f"{c1['wal_bytes'] / items / 1e3:,.1f} kB |")
        if RT:
            rtw = RT["pg-3"]["warm"]["extra"]["proxy"]["round_trips"]
            rts = RT["pg-3"]["startup"]["proxy"]["round_trips"]
            rtc = RT["pg-1"]["cold"]["extra"]["proxy"]["round_trips"]
            rcs = RT["pg-1"]["startup"]["proxy"]["round_trips"]
            rn = r["corpus"]["small"]["feeds"]
            rni = r["corpus"]["small"]["items"]
            add(f"| round trips | – | {(rtw - rts) / rn:.2f} (section 2, net) | "
                f"{(rtc - rcs) / rni:.2f} (section 2, cold, net, per item) |")
        add("")
        add("The cold column charges everything a cold pass does (fetch, parse, claim, store, "
            "full-text index, stories, topic) to its items. bench/STORES.md measured ingest "
            f"alone at 1,000,000 stored items: {STORES_WALL_US_PER_ITEM} µs wall and "
            f"{STORES_CPU_US_PER_ITEM} µs feedsieve CPU per item, {STORES_BYTES_PER_ITEM:,} "
            "database bytes per item.\n")
        pg_w = w3["pg_cpu"] / nf
        fs_w = w3["feedsieve_cpu"] / nf
        wal_w = w3["wal_bytes"] / nf
        pg_i = c1["pg_cpu"] / items
        fs_i = c1["feedsieve_cpu"] / items
        wal_i = c1["wal_bytes"] / items
        add("**Items, storage, WAL, CPU.** The corpus is no guide to a rate (its 5 items per "
            "feed are spread over 60 days, 0.08 a day). Assumed instead: 2 new items per "
            "feed a day as the base (most feeds are blogs and agencies that publish a few "
            "times a week, a few are wires that publish hundreds), and 20 a day as a "
            "news-heavy mix. Every poll is counted as a warm one (a 304, or a 200 without "
            "anything new costs more: parsing) plus the new items at the cold cost per item.\n")
        add("| | base (2/feed/day) | busy (20/feed/day) | arithmetic |")
        add("|---|---|---|---|")
        rows = []
        for per_day, _ in ITEM_RATES:
            day = FEEDS_1M * per_day
            rows.append({
                "day": day, "per_s": day / 86400, "per_poll": per_day / (86400 / EVERY_S),
                "kept": day * RETENTION_DAYS,
                "db": day * RETENTION_DAYS * STORES_BYTES_PER_ITEM,
                "wal_day": polls * 86400 * wal_w + day * wal_i,
                "pg_cores": polls * pg_w + day / 86400 * pg_i,
                "fs_cores": polls * fs_w + day / 86400 * fs_i,
                "writer": day / 86400 * STORES_WALL_US_PER_ITEM / 1e6,
            })
        b, h = rows
        add(f"| new items a day | {b['day']:,.0f} | {h['day']:,.0f} | 1,000,000 × rate |")
        add(f"| new items a second | {b['per_s']:,.1f} | {h['per_s']:,.1f} | ÷ 86,400 |")
        add(f"| new items per poll | {b['per_poll']:.3f} | {h['per_poll']:.3f} | rate ÷ 48 polls a day |")
        add(f"| items kept ({RETENTION_DAYS}-day retention) | {b['kept'] / 1e6:,.0f} M | "
            f"{h['kept'] / 1e6:,.0f} M | × {RETENTION_DAYS} |")
        add(f"| database size | {b['db'] / 1e9:,.0f} GB | {h['db'] / 1e12:,.2f} TB | "
            f"× {STORES_BYTES_PER_ITEM:,} B/item (STORES.md) |")
        add(f"| WAL a day | {b['wal_day'] / 1e9:,.0f} GB | {h['wal_day'] / 1e9:,.0f} GB | "
            f"{polls:,.1f} × 86,400 × {wal_w / 1e3:.2f} kB + items × {wal_i / 1e3:.1f} kB |")
        add(f"| PostgreSQL CPU | {b['pg_cores']:.2f} cores | {h['pg_cores']:.2f} cores | "
            f"{polls:,.1f} × {1e3 * pg_w:.3f} ms + items/s × {1e3 * pg_i:.3f} ms |")
        add(f"| feedsieve CPU, all nodes | {b['fs_cores']:.2f} cores | {h['fs_cores']:.2f} cores | "
            f"{polls:,.1f} × {1e3 * fs_w:.3f} ms + items/s × {1e3 * fs_i:.3f} ms |")
        add(f"| one writer connection busy ingesting | {100 * b['writer']:.1f} % | "
            f"{100 * h['writer']:.1f} % | items/s × {STORES_WALL_US_PER_ITEM} µs |")
        add("")
    if PR:
        p1, p10 = PR["1000000"], PR["10000"]
        add("**Reading every feed's state.** A node reads every feed's row when it starts, "
            "on a reload, and when another node gives its claims up (a claims notice: each "
            "node stopped with SIGTERM makes every other node read them once); after a pass "
            "it reads the rows of that pass's feeds only. Until 1af9a14 it read every row "
            "after every pass, which a run of this script found to be the first bottleneck "
            "(a node ends about a pass a second). Every `/metrics` request still reads every "
            "row to count the failing feeds (`serve.rs`). Measured on a synthetic feeds table "
            "(feedsieve's schema, realistic URLs and validators) with the same statement: "
            f"{p10['feed_states_exec_ms']:.1f} ms of server execution and "
            f"{p10['feed_states_bytes'] / 1e6:.1f} MB on the wire at 10,000 rows, "
            f"**{p1['feed_states_exec_ms']:.0f} ms and {p1['feed_states_bytes'] / 1e6:.0f} MB at "
            "1,000,000** (text format; the client then decodes a million rows): a scrape "
            f"every 15 s costs a node {p1['feed_states_exec_ms'] / 15:.0f} ms/s of server time "
            f"and {p1['feed_states_bytes'] / 15e6:.0f} MB/s, to be replaced by a count in SQL "
            "before such a size. A claim of "
            f"256 feeds costs {p1['claim_256_exec_ms']:.2f} ms at 1,000,000 rows "
            f"({p10['claim_256_exec_ms']:.2f} ms at 10,000); a node claims at most 4 feeds per "
            "fetch slot ahead (64 at `fetch_concurrency = 16`), so the claims need "
            f"{polls:,.1f} ÷ 64 = {polls / 64:.1f} statements/s in all "
            f"({polls / 64 * p1['claim_256_exec_ms']:.1f} ms/s).\n")
    RT = r.get("round_trips", {})
    if RT and P:
        c1n = RT["pg-1"]["cold"]["extra"]["proxy"]["connections"]
        c3n = RT["pg-3"]["cold"]["extra"]["proxy"]["connections"]
        add(f"**Connections.** A node holds one writer connection, up to {MAX_READERS_NOTE} "
            "read connections (`MAX_READERS` in src/store/writer.rs, opened as needed) and "
            f"one LISTEN connection: the proxy saw one node open {c1n} over a cold pass and "
            f"three nodes {c3n}. PostgreSQL's default `max_connections = 100` (3 kept for "
            f"superusers) is therefore about {97 // 6} nodes with nothing else connected, far "
            "more than the plan needs (below). A pooler in transaction mode does not fit "
            "feedsieve's sessions as they are: LISTEN needs its own session (it must bypass "
            "a transaction pooler), and so do the read connections (they `SET "
            "default_transaction_read_only = on` once per session), curation (a session "
            "`pg_advisory_lock` taken and released in separate statements), the client's "
            "named prepared statements (Parse and Sync in one round trip, Bind/Execute and "
            "Sync in the next: outside a transaction, so they may reach different server "
            "connections, unless PgBouncer 1.21 or later tracks them with "
            "`max_prepared_statements`), and the `options` startup parameter that sets "
            "`synchronous_commit=off` (a pooler that does not pass it on drops the setting; "
            "`ALTER ROLE ... SET synchronous_commit = off` does the same server-side). Where a pooler is wanted (many `feedsieve poll` or "
            "`status` processes, replicas' readers), session mode works, or transaction "
            "mode with those four changed.\n")
        n3 = P["pg-3"]["cold"]["per_node"]
        n1 = P["pg-1"]["cold"]["per_node"]["n1"]
        add("**Notification fan-out.** A pass whose curation changes the outputs sends one "
            "NOTIFY, and every node (the sender too) receives every notice: in the cold "
            f"pass one node received {n1['notifications']} over its {n1['passes']} passes, "
            "three nodes " + " / ".join(str(d["notifications"]) for d in n3.values()) +
            " each. A node that receives another node's notice reads the outputs version "
            "and renders every topic again from the store: what that costs at scale is the "
            "first bottleneck, below.\n")
        p1 = PR.get("1000000") if PR else None
        inflight = polls * 0.5
        need = -(-inflight // 100)
        add("**Nodes.** The fetches, not the CPU, set the count: on loopback a fetch takes "
            "milliseconds, on the internet (DNS, TLS, a slow server) assume 0.5 s on average "
            f"(an assumption, not measured here): {polls:,.1f} × 0.5 s = {inflight:,.0f} "
            f"fetches in flight, i.e. {inflight / 16:,.1f} nodes at the default "
            f"`fetch_concurrency = 16`, or {inflight / 100:,.1f} at 100 (per_host_concurrency "
            f"keeps each host polite either way): {need:.0f} nodes at `fetch_concurrency = "
            f"100`, {need + 1:.0f} to keep up with one down. Their feedsieve CPU for polls and "
            "items is a small fraction of a core (table above), plus parsing the 200s of "
            "servers that ignore conditional requests.\n")
        if p1:
            w1 = P["pg-1"]["warm"]
            w1 = P["pg-1"]["warm"]
            add("**The first bottleneck** is the fan-out of changes to the nodes' topic bytes. "
                "Each pass whose curation changes an output sends a notice, and every other "
                "node then renders every topic again from the store: a cost of changes/s × "
                "(N − 1) × topics × the rendering of one topic, about "
                f"{STORES_TOPIC_RENDER_MS} ms at 1,000,000 items (bench/STORES.md: sanitise, "
                "entries, render of one topic on PostgreSQL), each with its reads in the "
                "database. Outputs change at most once a pass, and at most as often as items "
                "that match a topic arrive: say 1 % of new items, 0.23/s at the base rate and "
                "2.3/s at the busy one. With 3 nodes and 20 topics that is 0.23 × 2 × 20 × "
                f"{STORES_TOPIC_RENDER_MS} ms = {0.23 * 2 * 20 * STORES_TOPIC_RENDER_MS / 1000:.2f} s/s "
                f"(base) and {2.3 * 2 * 20 * STORES_TOPIC_RENDER_MS / 1000:.2f} s/s (busy) of node CPU; "
                f"with 5 nodes and 50 topics, busy: 2.3 × 4 × 50 × {STORES_TOPIC_RENDER_MS} ms = "
                f"{2.3 * 4 * 50 * STORES_TOPIC_RENDER_MS / 1000:.1f} s/s, more than the nodes' polling "
                "and storing together, and growing with every node and topic added. The others are far below it: "
                f"claims {polls / 64 * p1['claim_256_exec_ms']:.0f} ms/s of server time, the polls' "
                f"own statements {polls * (w1['pg_cpu'] / nf):.2f} cores (measured per warm poll), "
                f"polls and items together {b['pg_cores']:.2f} to {h['pg_cores']:.2f} server "
                "cores with the full-text index included (table above), serving nothing in the database (topics are served from each "
                "node's memory). The remedy is in the design's grain: the node that curates "
                "stores the rendered bytes of the topics that changed (with their ETag) beside "
                "the outputs version, and the notice names those topics, so that each change is "
                "rendered once in the cluster and the other nodes read bytes instead of "
                "rendering (and a node refreshes at most once a second, however many notices "
                "arrive). Next come the write path's volume (the WAL, below) and retention.\n")
        add("**How the design meets it.**\n")
        add("- Items partitioned by time (say by day of `first_seen`): retention drops a "
            "partition instead of deleting 2–20 million rows a day and vacuuming them out "
            "of the heap, the GIN index and the other indexes. The unique key (feed, key) "
            "then has to include the partition key or move to a table of its own (the "
            "tombstones already keep keys of pruned items).")
        cw = [w for v in P.values() for w in (v["cold"].get("checkpoints_too_frequent") or [])]
        add("- The WAL: "
            + (f"at stock settings the cold passes made the server log \"checkpoints are "
               f"occurring too frequently\" {len(cw)} times ({min(cw)} to {max(cw)} s apart; "
               "`max_wal_size = 1GB`), so a good part of the WAL per item is likely full-page "
               "images written after each checkpoint (not measured apart); " if cw else
               "each pass here starts right after a CHECKPOINT, so its WAL includes a "
               "full-page image of every page it changes; ")
            + "`max_wal_size` of tens of GB and `wal_compression = on` cut that, and it is "
            "also what replicas and WAL archiving receive.")
        add("- Serving: every node serves the topics from memory (refreshed on notices), "
            "so serving scales with nodes and costs the database nothing per request; read "
            "replicas take `topic preview`, `status` and dashboards (and `/metrics` while it "
            "reads every feed).")
        add("- A pooler (PgBouncer) only where many short-lived clients connect, in session "
            "mode or with the changes above; the LISTEN connection always direct.")
        add("- Three to five nodes (fetch concurrency above), the default `lease` (a node "
            "holds at most 4 claims per fetch slot, so a claim waits seconds, not minutes, "
            "for its fetch), and `every 30m` schedules.\n")
    return "\n".join(L)


def write_report(r: dict) -> None:
    text = report(r)
    notes = f"{NOTES_BEGIN}\n(no notes yet)\n{NOTES_END}"
    if REPORT.exists():
        old = REPORT.read_text()
        if NOTES_BEGIN in old and NOTES_END in old:
            notes = old[old.index(NOTES_BEGIN):old.index(NOTES_END) + len(NOTES_END)]
    REPORT.write_text(text.replace("@@NOTES@@", notes))
    log(f"wrote {REPORT.relative_to(REPO)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, help="feedsieve binary (default: cargo build --release here)")
    ap.add_argument("--feeds", type=int, default=10000)
    ap.add_argument("--items", type=int, default=5)
    ap.add_argument("--rt-feeds", type=int, default=1000)
    ap.add_argument("--leases", default="30s,1m")
    ap.add_argument("--slow-rate", type=int, default=150)
    ap.add_argument("--kill-at", type=float, default=0.25)
    ap.add_argument("--pg-port", type=int, default=5499)
    ap.add_argument("--only", default="pass,rt,recovery,probe")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    if args.render:
        write_report(json.loads(RESULTS.read_text()))
        return 0
    only = set(args.only.split(","))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(cleanup)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bin_ = (args.bin or build()).resolve()
    big, big_man = corpus(args.feeds, args.items)
    small, small_man = corpus(args.rt_feeds, args.items)
    logs = OUT / "logs"
    state = OUT / "state"
    for d in (logs, state):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    nginx = Nginx(OUT, OUT / "nginx", args.slow_rate)
    nginx.start()
    pg = PgServer(args.pg_port, OUT / "pg")
    CLEANUPS.append(pg.stop)
    pg.start()
    big_paths, big_path_of = feed_paths(big)
    small_paths, _ = feed_paths(small)
    ctx = {"bin": bin_, "nginx": nginx, "pg": pg, "logs": logs, "state": state,
           "corpus_big": big, "corpus_small": small, "big_manifest": big_man,
           "big_feeds": len(big_paths), "big_paths": big_paths, "path_of": big_path_of,
           "small_feeds": len(small_paths), "small_paths": small_paths,
           "kill_at": args.kill_at}
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(bin_, pg),
        "loadavg_before": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "corpus": {"big": {k: big_man[k] for k in ("feeds", "items", "bytes", "unique_stories",
                                                  "near_duplicate_items")},
                   "small": {k: small_man[k] for k in ("feeds", "items", "bytes")}},
    })
    load = []
    stop_load = threading.Event()

    def sample_load():
        while not stop_load.wait(10):
            load.append(os.getloadavg()[0])
    threading.Thread(target=sample_load, daemon=True).start()
    try:
        if "pass" in only:
            results["passes"] = measure_passes(ctx)
        if "rt" in only or "recovery" in only:
            pg.start("-c shared_preload_libraries=pg_stat_statements")
        if "rt" in only:
            results["round_trips"] = measure_round_trips(ctx)
        if "recovery" in only:
            results["recovery"] = [measure_recovery(ctx, lease) for lease in args.leases.split(",")]
        if "probe" in only:
            results["probe"] = measure_probe(ctx)
    finally:
        stop_load.set()
        results["loadavg_after"] = os.getloadavg()
        results["load_during"] = load
        results["took_s"] = time.time() - started
        RESULTS.write_text(json.dumps(results, indent=1))
        cleanup()
    write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
