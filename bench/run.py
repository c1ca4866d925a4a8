#!/usr/bin/env python3
"""Benchmark feedsieve against other feed readers on one corpus, cold and warm.

    bench/run.py [--feeds 1000] [--items 20] [--runs 3] [--tools LIST]
                 [--database sqlite|postgres|both]

Steps, each printed as it happens:

1. installs what is missing: from Debian nginx-light, newsboat, sfeed,
   feed2exec, curl and GNU time (apt-get install -y); feedparser from PyPI
   into the venv bench/.venv;
2. builds feedsieve (cargo build --release);
3. generates the corpus with gen_corpus.py into bench/out/corpus-FxM, in the
   formats every peer reads (RSS 2.0, Atom, RSS 1.0: no JSON Feed, which
   sfeed, newsboat and feed2exec's parser do not all read), unless a corpus
   with the same parameters is already there;
4. serves it with bench/nginx.sh on 127.0.0.1 (ETag, Last-Modified, 304s;
   an access log of "status bytes uri" lines);
5. for each tool: --runs cold polls, each into an empty state directory;
   then --runs warm polls, each from a fresh copy (mtimes kept) of the state
   the last cold poll left; every feed answers 304 to a client that asks
   conditionally. Before each poll, sync(2) writes the state (and whatever the
   run before left) to disk, so that no tool pays for writing back the bench's
   own copies. Each poll runs under /usr/bin/time -v: wall time, user+sys
   CPU and peak RSS. After each poll the items the tool stored are counted in
   its own store, and the access-log lines the poll added are counted
   (responses by status, body bytes);
6. with --bounds: builds feedsieve with the bench-bounds feature and polls
   cold with more and more of storing left out (the full-text index, the
   near-duplicate band keys, all of it), the modes taking turns, to show
   what each part of a cold poll costs;
7. writes bench/RESULTS.md: the machine, the tool versions, the exact
   commands, medians, ratios, the targets and whether feedsieve meets them.

--database postgres (or both) measures feedsieve storing into PostgreSQL too
(the tool feedsieve-pg; plain feedsieve is SQLite; with `postgres` alone only
the PostgreSQL one runs beside the peers). bench/pg.sh starts a private
server (bench/out/pg, 127.0.0.1:--pg-port, stock settings but shared_buffers)
before the runs and stops it after them (not with --keep-state). Not measured,
before each poll: a cold one gets an empty database (DROP DATABASE IF EXISTS
fs_cold; CREATE DATABASE fs_cold); after the last cold poll its database
becomes the template fs_state (CREATE DATABASE fs_state TEMPLATE fs_cold), and
each warm poll gets a fresh copy of it (DROP/CREATE DATABASE fs_warm TEMPLATE
fs_state), the analogue of the copied SQLite state. Then CHECKPOINT, so that
the server writes back the bench's copy and the run before now rather than
during the poll, and sync(2) as for every tool. CPU and peak are the client's
(GNU time); the server's CPU during the poll (all its processes: the
postmaster's own and its reaped children's times from /proc, plus those of its
live children) is reported beside it, and the wall time includes the server's
work.

Peak RSS is what GNU time reports: the largest resident set of any single
process of the run (the kernel's ru_maxrss for waited-for children), not a
sum. For sfeed_update, a shell script that runs curl, sfeed, iconv and sort
per feed, that is the largest of those processes; the others are one process.

Peers and their settings (as in the performance issue):
  newsboat -x reload, reload-threads 8, its own cache.db (conditional GET is
    newsboat's default);
  sfeed_update with maxjobs=16; its fetch() sends If-Modified-Since (curl -z,
    the mtime of the feed's TSV file) once the feed has been fetched;
  feed2exec fetch (sequential, its default) with the null output plugin; its
    HTTP cache (cachecontrol, in its database) revalidates with ETag;
  bench/ref_feedparser.py: 16 threads, urllib with ETag/If-Modified-Since,
    feedparser, SQLite.
feedsieve: `feedsieve poll` with a config from corpus_config.py (16 fetches at
once, one topic), i.e. fetch, parse, store, dedup and curate into the topic.

Only the Python standard library; run as root or with sudo for apt-get.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALL_TOOLS = ["feedsieve", "feedsieve-pg", "newsboat", "sfeed", "feed2exec", "feedparser"]
FEEDSIEVES = ["feedsieve", "feedsieve-pg"]     # the same binary: SQLite, PostgreSQL
DATABASES = {"sqlite": ["feedsieve"], "postgres": ["feedsieve-pg"],
             "both": ["feedsieve", "feedsieve-pg"]}
# PostgreSQL against SQLite (wall time, median): the targets from the issue.
PG_TARGETS = {"cold": 2.0, "warm": 1.5}
# The databases of feedsieve-pg (see the docstring).
PG_COLD, PG_TEMPLATE, PG_WARM = "fs_cold", "fs_state", "fs_warm"
PEER_FORMATS = "rss2,atom,rss1"

# Where the peers stand according to the performance issue (1,000 x 20,
# nginx on 127.0.0.1, median wall and peak memory), and the targets.
QUOTED = {
    ("newsboat", "cold"): (23.0, 52), ("sfeed", "cold"): (20.0, 11),
    ("feedparser", "cold"): (15.0, 153), ("feed2exec", "cold"): (83.0, 216),
    ("feedparser", "warm"): (0.94, None), ("feed2exec", "warm"): (4.8, None),
    ("sfeed", "warm"): (10.9, None), ("newsboat", "warm"): (26.8, None),
}
TARGETS = [
    # (mode, peer, divisor): feedsieve wall <= peer wall / divisor
    ("cold", "newsboat", 20),
    ("cold", "sfeed", 15),
    ("warm", "feedparser", 3),
]
PEAK_TARGET_MIB = 64
# --bounds: cold polls of a build with the bench-bounds feature, each leaving more
# of storing out (FEEDSIEVE_BENCH_SKIP, see src/store/skip.rs), so that the
# table shows what each part of a cold poll costs. (what is left out, value)
BOUNDS = [
    ("nothing (the poll as shipped)", ""),
    ("the full-text index", "fts"),
    ("that and the near-duplicate band keys", "fts,bands"),
    ("everything stored (only fetch, parse, normalise, fingerprint)", "store"),
]
BUILD_INPUTS = ["src", "Cargo.toml", "Cargo.lock", "build.rs"]

# Said under the table for each tool that ran: what a reader of the numbers
# needs to know to compare them.
NOTES = {
    "feedsieve": "feedsieve: one `poll` does fetch, parse, sanitise, store, dedup (within and "
                 "across feeds) and curate into the topic; the warm poll sends the ETag and "
                 "Last-Modified it stored. Stored in SQLite (one file in WAL mode).",
    "feedsieve-pg": "feedsieve (PostgreSQL): the same binary and poll, with `[daemon] database = "
                    "\"postgres://postgres@127.0.0.1:PORT/DB\"`: a private PostgreSQL server "
                    "(bench/pg.sh: Debian's binaries, stock settings except shared_buffers = "
                    "256MB, data on the same disk as the SQLite state, TCP on 127.0.0.1). Its CPU "
                    "and peak columns are the client's only; the wall time includes the server's "
                    "work, and the server's own CPU is in the PostgreSQL section below.",
    "newsboat": "newsboat 2.21: on a feed's first reload it tries to save the ETag and "
                "Last-Modified before the feed's row exists in cache.db (its debug log shows the "
                "UPDATE; rss_feed.lastmodified stays 0), so the poll after the first one is not "
                "conditional and downloads every feed again (the 200s in its warm rows). From "
                "the third poll on it would ask conditionally. The issue's own figure (warm "
                "26.8 s > cold 23 s) shows the same.",
    "sfeed": "sfeed: sfeed_update is a shell script that runs curl, sfeed_xmlenc, iconv, sfeed "
             "and sort per feed, 16 feeds at a time; its peak is the largest of those "
             "processes, not their sum. If-Modified-Since is curl -z with the mtime of the "
             "feed's TSV file, so a warm poll is, per feed, a curl that gets a 304 and the rest of the pipeline on empty input.",
    "feed2exec": "feed2exec: `fetch` without -j polls one feed after another (the issue's "
                 "setup); items are counted in its feedcache table (null output plugin). Its "
                 "HTTP cache (cachecontrol, bodies kept in its SQLite database) revalidates "
                 "with If-None-Match.",
    "feedparser": "Python reference: bench/ref_feedparser.py, 16 threads of urllib (a new "
                  "connection per request), feedparser.parse, INSERT OR IGNORE into SQLite "
                  "per feed; ETag and Last-Modified kept per feed.",
}

LABEL = {
    "feedsieve": "feedsieve (SQLite)",
    "feedsieve-pg": "feedsieve (PostgreSQL)",
    "newsboat": "newsboat -x reload (8 threads)",
    "sfeed": "sfeed_update (16 jobs)",
    "feed2exec": "feed2exec fetch",
    "feedparser": "Python feedparser (16 threads)",
}


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def out(cmd: list[str] | str, **kw) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, shell=isinstance(cmd, str), **kw)
        return (r.stdout or r.stderr).strip()
    except OSError as e:
        return f"({e})"


# --------------------------------------------------------------------------
# Installing
# --------------------------------------------------------------------------
def apt_install(pkgs: list[str]) -> None:
    if not pkgs:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"apt-get install -y {' '.join(pkgs)}")
    r = subprocess.run(sudo + ["apt-get", "install", "-y", *pkgs], env=env,
                       stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        sh(sudo + ["apt-get", "update", "-qq"], env=env)
        sh(sudo + ["apt-get", "install", "-y", *pkgs], env=env, stdout=subprocess.DEVNULL)


def install(tools: list[str]) -> Path:
    """Install what is missing; return the venv's python."""
    need = {"nginx-light": "/usr/sbin/nginx", "time": "/usr/bin/time", "curl": "curl"}
    if "newsboat" in tools:
        need["newsboat"] = "newsboat"
    if "sfeed" in tools:
        need["sfeed"] = "sfeed_update"
    if "feed2exec" in tools:
        need["feed2exec"] = "feed2exec"
    apt_install([p for p, exe in need.items() if not shutil.which(exe)])
    venv = HERE / ".venv"
    py = venv / "bin" / "python"
    if "feedparser" in tools:
        if not py.exists():
            log(f"python3 -m venv {venv}")
            sh([sys.executable, "-m", "venv", str(venv)])
        if subprocess.run([str(py), "-c", "import feedparser"], capture_output=True).returncode:
            log("pip install feedparser")
            sh([str(py), "-m", "pip", "install", "-q", "feedparser"])
    return py


def build_feedsieve() -> Path:
    log("cargo build --release")
    sh(["cargo", "build", "--release", "--bin", "feedsieve"], cwd=REPO)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "feedsieve"


# --------------------------------------------------------------------------
# Corpus and server
# --------------------------------------------------------------------------
def corpus(args) -> tuple[Path, dict]:
    d = args.out / f"corpus-{args.feeds}x{args.items}"
    m = d / "manifest.json"
    want = {"feeds": args.feeds, "seed": args.seed, "formats": PEER_FORMATS.split(",")}
    if m.exists():
        man = json.loads(m.read_text())
        if all(man.get(k) == v for k, v in want.items()) and \
                man["items"] == args.feeds * args.items:
            log(f"corpus {d} is there ({man['items']} items, {man['bytes'] / 1e6:.1f} MB)")
            return d, man
    log(f"generating corpus {args.feeds} x {args.items} -> {d}")
    sh([sys.executable, str(HERE / "gen_corpus.py"), "--feeds", str(args.feeds),
        "--items", str(args.items), "--seed", str(args.seed), "--formats", PEER_FORMATS,
        "--out", str(d)])
    return d, json.loads(m.read_text())


def feed_paths(d: Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate((d / "feeds.tsv").read_text().splitlines()):
        if n == 0 or not line:
            continue
        fid, path = line.split("\t")[:2]
        rows.append((fid, path))
    return rows


class AccessLog:
    """The lines nginx appended since mark()."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since(self) -> dict:
        counts: dict[str, int] = {}
        body = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for line in f:
                parts = line.split()
                if len(parts) < 2:
                    continue
                counts[parts[0].decode()] = counts.get(parts[0].decode(), 0) + 1
                body += int(parts[1])
        return {"status": dict(sorted(counts.items())), "body_bytes": body}


# --------------------------------------------------------------------------
# PostgreSQL (feedsieve-pg): the server of bench/pg.sh, psql over TCP
# --------------------------------------------------------------------------
def pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/VERSION/bin, as bench/pg.sh picks it."""
    dirs = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").exists()]
    key = lambda d: [int(x) if x.isdigit() else 0 for x in d.parent.name.split(".")]
    return max(dirs, key=key) if dirs else None


class Pg:
    """The bench's PostgreSQL server: databases made and dropped with psql as the
    superuser over TCP, and the server's CPU time read from /proc."""

    def __init__(self, port: int, state: Path):
        self.port = port
        self.state = state
        b = pg_bin()
        self.psql_exe = shutil.which("psql") or (str(b / "psql") if b else "psql")

    def env(self) -> dict:
        return dict(os.environ, PG_STATE=str(self.state))

    def start(self) -> None:
        subprocess.run([str(HERE / "pg.sh"), "stop"], env=self.env(), capture_output=True)
        sh([str(HERE / "pg.sh"), "start", str(self.port)], env=self.env())

    def stop(self) -> None:
        subprocess.run([str(HERE / "pg.sh"), "stop"], env=self.env(), capture_output=True)

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Runs sql; retried while a database it needs is still held by a session
        that is ending (a client that has just exited, a template in use)."""
        cmd = [self.psql_exe, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql]
        for attempt in range(100):
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env=dict(os.environ, PGCONNECT_TIMEOUT="10"))
            if r.returncode == 0:
                return r.stdout.strip()
            if "being accessed by other users" not in r.stderr or attempt == 99:
                raise RuntimeError(f"psql -c {sql!r}: {r.stderr.strip()}")
            time.sleep(0.1)
        raise AssertionError

    def recreate(self, db: str, template: str | None = None) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {db}")
        self.psql(f"CREATE DATABASE {db}" + (f" TEMPLATE {template}" if template else ""))

    def checkpoint(self) -> None:
        self.psql("CHECKPOINT")
        time.sleep(0.2)              # let psql's backend exit before the CPU snapshot

    def server_cpu(self) -> float | None:
        """CPU seconds (user + system) of the whole server so far: the postmaster's
        own, its reaped children's (a backend's times go there when it exits), and
        those of its children still running. The difference over a poll is what the
        server spent on it (plus any background work of the server meanwhile)."""
        try:
            pid = int((self.state / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

        def fields(p) -> list[str]:
            st = Path(f"/proc/{p}/stat").read_text()
            return st[st.rindex(")") + 2:].split()     # from field 3 (state) on

        try:
            f = fields(pid)
        except OSError:
            return None
        ticks = sum(int(x) for x in f[11:15])           # utime stime cutime cstime
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                g = fields(d)
            except OSError:
                continue
            if int(g[1]) == pid:                         # ppid
                ticks += sum(int(x) for x in g[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# Tools: each prepares a state dir, names its command, counts what it stored
# --------------------------------------------------------------------------
@dataclass
class Tool:
    name: str
    setup: callable          # (state_dir) -> None: write configs into an empty state dir
    command: callable        # (state_dir) -> list[str]
    count: callable          # (state_dir) -> dict with "items" and maybe more
    env: dict = field(default_factory=dict)
    # For a store outside the state dir (feedsieve-pg), not measured:
    prepare: callable = None     # (state_dir, mode) -> None: before each poll
    after_cold: callable = None  # (state_dir) -> None: after the last cold poll
    finish: callable = None      # (keep: bool) -> None: after the last warm poll
    server_cpu: callable = None  # () -> float | None: the server's CPU seconds so far


def make_tools(args, corpus_dir: Path, base: str, bin_feedsieve: Path, venv_py: Path,
               pg: Pg | None = None) -> dict:
    feeds = feed_paths(corpus_dir)
    urls = [f"{base}/{p}" for _, p in feeds]

    def write_urls(s: Path) -> Path:
        p = s / "urls"
        p.write_text("\n".join(urls) + "\n")
        return p

    # feedsieve -----------------------------------------------------------
    def fs_config(s: Path, database: str) -> None:
        sh([sys.executable, str(HERE / "corpus_config.py"), str(corpus_dir), base,
            "-o", str(s / "feedsieve.toml"), "--database", database,
            "--listen", "127.0.0.1:8078"], stderr=subprocess.DEVNULL)

    def fs_setup(s: Path) -> None:
        fs_config(s, "feedsieve.db")

    def fs_status(s: Path) -> dict:
        r = subprocess.run([str(bin_feedsieve), "--config", str(s / "feedsieve.toml"),
                            "status", "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            return {"items": None, "error": r.stderr.strip()[-300:]}
        st = json.loads(r.stdout)
        failed = sum(1 for f in st["feeds"] if f.get("error"))
        topics = {t["id"]: t["items"] for t in st.get("topics", [])}
        return {"items": st["items_total"], "feeds_failed": failed, "topics": topics}

    def fs_count(s: Path) -> dict:
        # The file sizes first: as the poll left them (status opens the database).
        size = {k: (s / f"feedsieve.db{x}").stat().st_size
                if (s / f"feedsieve.db{x}").exists() else 0
                for k, x in (("db_bytes", ""), ("wal_bytes", "-wal"))}
        res = fs_status(s)
        if res["items"] is None:
            return res
        with sqlite3.connect(f"file:{s / 'feedsieve.db'}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            stories = db.execute("SELECT count(*) FROM stories").fetchone()[0] \
                if "stories" in tables else None
        return {**res, "stories": stories, **size}

    # feedsieve on PostgreSQL ---------------------------------------------
    # The state dir holds only the config; the store is database PG_COLD (cold
    # polls) or PG_WARM (warm polls, each a fresh copy of the template PG_TEMPLATE
    # that the last cold poll's database became). pg_db remembers which.
    pg_db = {}

    def pg_setup(s: Path) -> None:
        fs_config(s, pg.url(PG_COLD))
        pg_db[s] = PG_COLD

    def pg_prepare(s: Path, mode: str) -> None:
        if mode == "cold":
            pg.recreate(PG_COLD)
            # What an empty store costs before the first poll (its catalogs).
            pg_db["empty_bytes"] = int(pg.psql(f"SELECT pg_database_size('{PG_COLD}')"))
        else:
            pg.recreate(PG_WARM, template=PG_TEMPLATE)
            fs_config(s, pg.url(PG_WARM))
            pg_db[s] = PG_WARM
        pg.checkpoint()

    def pg_after_cold(s: Path) -> None:
        pg.psql(f"DROP DATABASE IF EXISTS {PG_TEMPLATE}")
        pg.psql(f"CREATE DATABASE {PG_TEMPLATE} TEMPLATE {PG_COLD}")
        # The template holds what the last cold poll left; the cold database itself
        # goes, so that autovacuum (which would find its 20,000 fresh rows) does not
        # work on a copy the bench keeps while a warm poll is measured. A database
        # made from a template starts with no statistics, so it is left alone.
        pg.psql(f"DROP DATABASE {PG_COLD}")

    def pg_finish(keep: bool) -> None:
        if not keep:
            for db in (PG_WARM, PG_TEMPLATE, PG_COLD):
                pg.psql(f"DROP DATABASE IF EXISTS {db}")

    def pg_count(s: Path) -> dict:
        res = fs_status(s)
        if res["items"] is None:
            return res
        db = pg_db.get(s, PG_COLD)
        stories, dbsize, items = pg.psql(
            "SELECT (SELECT count(*) FROM stories), pg_database_size(current_database()), "
            "pg_total_relation_size('items')", db=db).split("|")
        return {**res, "stories": int(stories), "database": db, "db_bytes": int(dbsize),
                "items_table_bytes": int(items), "empty_db_bytes": pg_db.get("empty_bytes")}

    # newsboat ------------------------------------------------------------
    def nb_setup(s: Path) -> None:
        write_urls(s)
        (s / "config").write_text("reload-threads 8\nshow-read-feeds yes\n")

    def nb_cmd(s: Path) -> list[str]:
        return ["newsboat", "-x", "reload", "-u", str(s / "urls"), "-c", str(s / "cache.db"),
                "-C", str(s / "config")]

    def nb_count(s: Path) -> dict:
        with sqlite3.connect(f"file:{s / 'cache.db'}?mode=ro", uri=True) as db:
            return {"items": db.execute("SELECT count(*) FROM rss_item").fetchone()[0],
                    "feeds": db.execute("SELECT count(*) FROM rss_feed").fetchone()[0]}

    # sfeed ---------------------------------------------------------------
    def sf_setup(s: Path) -> None:
        lines = [
            "# sfeedrc written by bench/run.py",
            f'sfeedpath="{s}/feeds"',
            "maxjobs=16",
            "# sfeed_update's fetch(), plus If-Modified-Since (curl -z: the mtime of",
            "# the feed's TSV file) once the feed has been fetched; an empty file is",
            "# one sfeed_update has just created, so no condition then.",
            "fetch() {",
            '\tif [ -s "$3" ]; then',
            '\t\tcurl -L --max-redirs 0 -H "User-Agent:" -f -s -m 15 -z "$3" "$2" 2>/dev/null',
            "\telse",
            '\t\tcurl -L --max-redirs 0 -H "User-Agent:" -f -s -m 15 "$2" 2>/dev/null',
            "\tfi",
            "}",
            "feeds() {",
        ]
        lines += [f'\tfeed "{fid}" "{base}/{p}"' for fid, p in feeds]
        lines += ["}", ""]
        (s / "sfeedrc").write_text("\n".join(lines))

    def sf_count(s: Path) -> dict:
        n = 0
        files = 0
        for p in (s / "feeds").iterdir():
            files += 1
            with open(p, "rb") as f:
                n += sum(1 for line in f if line.strip())
        return {"items": n, "feeds": files}

    # feed2exec -----------------------------------------------------------
    def f2e_setup(s: Path) -> None:
        lines = []
        for fid, p in feeds:
            lines += [f"[{fid}]", f"url = {base}/{p}", "output = feed2exec.plugins.null", ""]
        (s / "feed2exec.ini").write_text("\n".join(lines))

    def f2e_cmd(s: Path) -> list[str]:
        return ["feed2exec", "--config", str(s / "feed2exec.ini"),
                "--database", str(s / "feed2exec.db"), "fetch"]

    def f2e_count(s: Path) -> dict:
        with sqlite3.connect(f"file:{s / 'feed2exec.db'}?mode=ro", uri=True) as db:
            return {"items": db.execute("SELECT count(*) FROM feedcache").fetchone()[0]}

    # Python feedparser reference -------------------------------------------
    def fp_setup(s: Path) -> None:
        write_urls(s)

    def fp_cmd(s: Path) -> list[str]:
        return [str(venv_py), str(HERE / "ref_feedparser.py"), str(s / "urls"),
                str(s / "ref.db"), "--threads", "16"]

    def fp_count(s: Path) -> dict:
        with sqlite3.connect(f"file:{s / 'ref.db'}?mode=ro", uri=True) as db:
            return {"items": db.execute("SELECT count(*) FROM item").fetchone()[0]}

    return {
        "feedsieve": Tool("feedsieve", fs_setup,
                          lambda s: [str(bin_feedsieve), "--config", str(s / "feedsieve.toml"),
                                     "poll"],
                          fs_count),
        "feedsieve-pg": Tool("feedsieve-pg", pg_setup,
                             lambda s: [str(bin_feedsieve), "--config",
                                        str(s / "feedsieve.toml"), "poll"],
                             pg_count, prepare=pg_prepare, after_cold=pg_after_cold,
                             finish=pg_finish,
                             server_cpu=pg.server_cpu if pg else None),
        "newsboat": Tool("newsboat", nb_setup, nb_cmd, nb_count),
        "sfeed": Tool("sfeed", sf_setup, lambda s: ["sfeed_update", str(s / "sfeedrc")], sf_count),
        "feed2exec": Tool("feed2exec", f2e_setup, f2e_cmd, f2e_count),
        "feedparser": Tool("feedparser", fp_setup, fp_cmd, fp_count),
    }


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------
@dataclass
class Run:
    wall: float
    cpu: float
    peak_kib: int
    rc: int
    stored: dict
    http: dict
    server_cpu: float | None = None   # feedsieve-pg: the PostgreSQL server's CPU seconds


def parse_time_v(text: str) -> tuple[float, int]:
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return user + sys_, peak


def measure(tool: Tool, state: Path, alog: AccessLog, logdir: Path, tag: str) -> Run:
    cmd = tool.command(state)
    tfile = logdir / f"{tag}.time"
    env = dict(os.environ, HOME=str(state), XDG_CONFIG_HOME=str(state / ".config"),
               XDG_DATA_HOME=str(state / ".local/share"), XDG_CACHE_HOME=str(state / ".cache"),
               **tool.env)
    env.pop("FEEDSIEVE_CONFIG", None)
    # Written to disk first: the state a warm poll starts from is a copy made just
    # before it, and the last run's files may still be in the page cache. A tool that
    # syncs its database would otherwise pay for writing back the bench's own copy
    # (62 ms of a 0.12 s warm feedsieve poll was that one fsync), and one that does
    # not would run beside the kernel's writeback of the run before.
    os.sync()
    alog.mark()
    srv0 = tool.server_cpu() if tool.server_cpu else None
    t0 = time.monotonic()
    with open(logdir / f"{tag}.out", "wb") as o:
        r = subprocess.run(["/usr/bin/time", "-v", "-o", str(tfile), *cmd], cwd=state, env=env,
                           stdout=o, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    time.sleep(0.3)                  # let nginx write its last log lines
    # (and the server reap the poll's backends, whose CPU then shows in its cutime)
    srv1 = tool.server_cpu() if tool.server_cpu else None
    server_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    http = alog.since()
    cpu, peak = parse_time_v(tfile.read_text())
    try:
        stored = tool.count(state)
    except (sqlite3.Error, OSError, KeyError, ValueError, RuntimeError) as e:
        stored = {"items": None, "error": str(e)}
    return Run(wall, cpu, peak, r.returncode, stored, http, server_cpu)


def run_line(run: Run) -> str:
    srv = f" (+ {run.server_cpu:.2f} s server CPU)" if run.server_cpu is not None else ""
    return (f"{run.wall:.2f} s wall, {run.cpu:.2f} s CPU{srv}, {run.peak_kib / 1024:.1f} MiB, "
            f"rc {run.rc}, stored {run.stored}, http {run.http}")


def bench_tool(tool: Tool, args, alog: AccessLog, runs: int) -> dict:
    root = args.out / "state" / tool.name
    if root.exists():
        shutil.rmtree(root)
    logdir = args.out / "logs" / tool.name
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    res = {"cold": [], "warm": [], "command": None}
    for i in range(runs):
        s = root / f"cold-{i + 1}"
        s.mkdir(parents=True)
        tool.setup(s)
        res["command"] = " ".join(tool.command(Path("$STATE"))).replace(str(REPO) + "/", "")
        if tool.prepare:
            tool.prepare(s, "cold")
        run = measure(tool, s, alog, logdir, f"cold-{i + 1}")
        log(f"  {tool.name} cold {i + 1}: {run_line(run)}")
        res["cold"].append(run)
        if i < runs - 1:
            shutil.rmtree(s)
    base = root / f"cold-{runs}"
    if tool.after_cold:
        tool.after_cold(base)
    # A warm poll must find the state exactly as the cold poll left it, mtimes
    # included (sfeed's If-Modified-Since is its TSV files' mtime).
    time.sleep(1.1)
    for i in range(runs):
        s = root / f"warm-{i + 1}"
        shutil.copytree(base, s, symlinks=True)
        if tool.prepare:
            tool.prepare(s, "warm")
        run = measure(tool, s, alog, logdir, f"warm-{i + 1}")
        log(f"  {tool.name} warm {i + 1}: {run_line(run)}")
        res["warm"].append(run)
        shutil.rmtree(s)
    if tool.finish:
        tool.finish(args.keep_state)
    if not args.keep_state:
        shutil.rmtree(root)
    return res


def floor(args, cdir: Path) -> dict | None:
    """The issue's floor: sfeed's C parser over the whole corpus in one stream
    (no network, no storing): the least time anything can take to read it.
    Best of 3; cached in OUT/partial-floor.json."""
    p = args.out / "partial-floor.json"
    if p.exists():
        return json.loads(p.read_text())
    if not shutil.which("sfeed"):
        return None
    files = sorted(str(f) for f in cdir.glob("feed-*.xml"))
    best = None
    for _ in range(3):
        t0 = time.monotonic()
        proc = subprocess.Popen(["sfeed"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        # Fed from this process rather than `cat`, so that only the parser runs.
        def feed() -> None:
            for f in files:
                with open(f, "rb") as fh:
                    proc.stdin.write(fh.read())
            proc.stdin.close()
        th = threading.Thread(target=feed)
        th.start()
        lines = sum(1 for _ in proc.stdout)
        proc.wait()
        th.join()
        wall = time.monotonic() - t0
        if best is None or wall < best["wall"]:
            best = {"wall": wall, "lines": lines}
    p.write_text(json.dumps(best))
    return best


def build_bounds() -> Path:
    """feedsieve with the bench-bounds feature, in a target directory of its own so
    that target/release/feedsieve stays the build that ships."""
    tdir = REPO / "target" / "bench-bounds"
    log(f"cargo build --release --features bench-bounds --target-dir {tdir}")
    sh(["cargo", "build", "--release", "--bin", "feedsieve", "--features", "bench-bounds",
        "--target-dir", str(tdir)], cwd=REPO)
    return tdir / "release" / "feedsieve"


def bounds(args, cdir: Path, base: str, venv_py: Path, alog: AccessLog) -> dict:
    """Cold polls that leave parts of storing out, the modes of BOUNDS taking turns
    (this machine's speed drifts between runs). Saved in OUT/partial-bounds.json."""
    binary = build_bounds()
    tool = make_tools(args, cdir, base, binary, venv_py)["feedsieve"]
    root = args.out / "state" / "bounds"
    logdir = args.out / "logs" / "bounds"
    for d in (root, logdir):
        if d.exists():
            shutil.rmtree(d)
    logdir.mkdir(parents=True)
    res: dict = {skip: [] for _, skip in BOUNDS}
    runs = args.runs_for.get("bounds", args.runs)
    for i in range(runs):
        for _, skip in BOUNDS:
            tag = f"{skip.replace(',', '+') or 'none'}-{i + 1}"
            s = root / tag
            s.mkdir(parents=True)
            tool.setup(s)
            run = measure(replace(tool, env={"FEEDSIEVE_BENCH_SKIP": skip}), s, alog, logdir, tag)
            log(f"  bounds, skipping {skip or 'nothing'} ({i + 1}): {run.wall:.2f} s wall, "
                f"{run.cpu:.2f} s CPU, {run.peak_kib / 1024:.1f} MiB, rc {run.rc}, "
                f"stored {run.stored.get('items')}")
            res[skip].append(run)
            shutil.rmtree(s)
    (args.out / "partial-bounds.json").write_text(json.dumps(
        {k: [r.__dict__ for r in v] for k, v in res.items()}, indent=1))
    return res


def load_bounds(args) -> dict | None:
    p = args.out / "partial-bounds.json"
    if not p.exists():
        return None
    return {k: [Run(**r) for r in v] for k, v in json.loads(p.read_text()).items()}


def median_run(runs: list[Run]) -> dict:
    return {
        "wall": statistics.median(r.wall for r in runs),
        "cpu": statistics.median(r.cpu for r in runs),
        "peak_mib": statistics.median(r.peak_kib for r in runs) / 1024,
        "walls": [r.wall for r in runs],
        "items": [r.stored.get("items") for r in runs],
        "rcs": [r.rc for r in runs],
        "http": runs[-1].http,
        "stored": runs[-1].stored,
        "stored_all": [r.stored for r in runs],
        "server_cpu": statistics.median(r.server_cpu for r in runs)
        if all(r.server_cpu is not None for r in runs) else None,
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def machine() -> dict:
    lscpu = out(["lscpu"])
    model = re.search(r"Model name:\s*(.+)", lscpu)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cpus": os.cpu_count(),
        "ram_gib": int(mem.group(1)) / 1024 / 1024 if mem else None,
        "kernel": platform.release(),
        "os": out("grep PRETTY_NAME /etc/os-release | cut -d= -f2 | tr -d '\"'"),
        "loadavg": os.getloadavg(),
    }


def versions(bin_feedsieve: Path, venv_py: Path) -> dict:
    def dpkg(p: str) -> str:
        return out(["dpkg-query", "-W", "-f", "${Version}", p])
    return {
        # The last commit that changed what the binary is built from (bench/
        # and docs changes do not change the binary).
        "feedsieve": out([str(bin_feedsieve), "--version"]) + ", source as of commit " +
        out(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", *BUILD_INPUTS]) +
        (" (with uncommitted changes)" if out(["git", "-C", str(REPO), "status", "--porcelain",
                                               "--untracked-files=no", "--", *BUILD_INPUTS])
         else ""),
        "rustc": out(["rustc", "--version"]),
        "newsboat": "newsboat " + dpkg("newsboat"),
        "sfeed": "sfeed " + dpkg("sfeed") + ", curl " + dpkg("curl"),
        "feed2exec": "feed2exec " + dpkg("feed2exec") + " (Debian python3 " +
        out(["/usr/bin/python3", "-c", "import platform;print(platform.python_version())"]) + ")",
        "feedparser": "feedparser " + out([str(venv_py), "-c",
                                          "import feedparser;print(feedparser.__version__)"]) +
        " (python " + out([str(venv_py), "-c",
                           "import platform;print(platform.python_version())"]) + ")",
        "nginx": out(["/usr/sbin/nginx", "-v"]),
        "feedsieve-pg": pg_version(),
    }


def pg_version() -> str:
    b = pg_bin()
    if not b:
        return "PostgreSQL not installed"
    return (out([str(b / "postgres"), "--version"]) + ", Debian package postgresql-"
            + b.parent.name + " " + out(["dpkg-query", "-W", "-f", "${Version}",
                                          f"postgresql-{b.parent.name}"])
            + "; defaults except shared_buffers = 256MB (bench/pg.sh)")


def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def short(t: str) -> str:
    return {"feedsieve": "SQLite", "feedsieve-pg": "PostgreSQL"}[t]


def fmt_b(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def write_results(args, man: dict, results: dict, mach: dict, vers: dict,
                  commands: dict, started: str, load_before, load_after,
                  flr: dict | None = None, bnd: dict | None = None,
                  pg_port: int | None = None) -> str:
    # The feedsieves that ran (SQLite, PostgreSQL), each a reference for the ratios.
    refs = {t: {m: median_run(results[t][m]) for m in ("cold", "warm")}
            for t in FEEDSIEVES if t in results}
    both = len(refs) == 2
    database = "both" if both else "postgres" if "feedsieve-pg" in refs else None
    pg_port = pg_port or args.pg_port
    L = []
    L += ["# Benchmark results", "",
          f"Generated by `bench/run.py` on {started} (UTC). Reproduce with:", "",
          "```sh", f"python3 bench/run.py --feeds {args.feeds} --items {args.items} "
          f"--runs {args.runs}" + "".join(f" --runs-for {t}={n}" for t, n in args.runs_for.items())
          + (f" --database {database}" if database else "")
          + (" --bounds" if bnd else ""),
          "```", ""]
    if args.note:
        L += [f"**{args.note}**", ""]
    # The load after the runs includes the benchmark's own last runs; only the load
    # before them says whether other work was on the machine.
    if load_before[0] > 0.5 * (mach["cpus"] or 1):
        L += [f"Other work was running on this {mach['cpus']}-CPU machine during the runs "
              f"(1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after): "
              "wall times are inflated and noisy, CPU times less so. Re-run on a quiet machine "
              "before quoting these numbers.", ""]
    L += ["## Machine", "",
          f"- CPU: {mach['cpu']}, {mach['cpus']} logical CPUs",
          f"- RAM: {mach['ram_gib']:.1f} GiB",
          f"- OS: {mach['os']}, kernel {mach['kernel']}",
          f"- load average (1, 5, 15 min) before the runs: "
          f"{', '.join(f'{x:.2f}' for x in load_before)}; after: "
          f"{', '.join(f'{x:.2f}' for x in load_after)}",
          ""]
    L += ["Versions:", ""] + [f"- {'PostgreSQL' if k == 'feedsieve-pg' else k}: {v}"
                              for k, v in vers.items()] + [""]
    bf = man["by_format"]
    L += ["## Corpus", "",
          f"`gen_corpus.py --feeds {args.feeds} --items {args.items} --seed {args.seed} "
          f"--formats {PEER_FORMATS}`: {man['feeds']} feeds, {man['items']} items, "
          f"{man['bytes'] / 1e6:.1f} MB ({man['bytes_per_item']:.0f} B per item); "
          + ", ".join(f"{k} {v['feeds']} feeds" for k, v in bf.items() if v["feeds"])
          + f"; {man['latin1_feeds']} feeds in ISO-8859-1; {man['near_duplicate_items']} "
          f"syndicated near-duplicates; {man['unique_stories']} distinct stories. No JSON Feed, "
          "which not every peer reads. Served by nginx (`bench/nginx.sh`) on 127.0.0.1 with "
          "ETag and Last-Modified, no gzip, no Cache-Control.", ""]
    L += ["## Commands", "",
          "`$STATE` is a fresh directory per run: empty (plus the tool's config) for a cold "
          "poll; a copy of what the last cold poll left for a warm one, written to disk "
          "(sync) before the run. Each command runs under `/usr/bin/time -v`.", ""]
    L += [f"- {LABEL[t]}: `{c}`" for t, c in commands.items()] + [""]
    if "feedsieve-pg" in results:
        url = f"postgres://postgres@127.0.0.1:{pg_port}"
        L += ["feedsieve (PostgreSQL): `$STATE` holds only the config, whose `[daemon] database` "
              f"is `{url}/{PG_COLD}` for a cold poll and `{url}/{PG_WARM}` for a warm one; the "
              "server is `bench/pg.sh start` (PostgreSQL's default settings except "
              "`shared_buffers = 256MB`; its data folder beside the SQLite state, on the same "
              "disk). Not measured, with `psql` as the superuser over TCP: before each cold poll "
              f"`DROP DATABASE IF EXISTS {PG_COLD}; CREATE DATABASE {PG_COLD}`; after the last one "
              f"`CREATE DATABASE {PG_TEMPLATE} TEMPLATE {PG_COLD}` (then `{PG_COLD}` is dropped, so "
              "that autovacuum does not work on it during the warm polls); before each warm poll "
              f"`DROP DATABASE IF EXISTS {PG_WARM}; CREATE DATABASE {PG_WARM} TEMPLATE "
              f"{PG_TEMPLATE}`. Then `CHECKPOINT` (the server writes back the new database and "
              "what the run before left, as sync does for files) and sync.", ""]

    multi = "" if len(refs) < 2 else " ({})"
    ref_cols = "".join(f"× feedsieve{multi.format(short(r))} wall | "
                       f"× feedsieve{multi.format(short(r))} CPU | " for r in refs)
    L += ["## Results", "",
          f"Median of {args.runs} runs"
          + "".join(f" ({n} for {t})" for t, n in args.runs_for.items()) + ". CPU = user + system. Peak = largest resident set of "
          "one process (GNU time's maximum RSS). Stored = items in the tool's own store after "
          "the run. × feedsieve = the tool's wall time over feedsieve's (and its CPU time over "
          "feedsieve's, which other load on the machine disturbs less)"
          + (", against each of the two stores" if both else "") + "."
          + (" For feedsieve (PostgreSQL) CPU and peak are the client's (the feedsieve "
             "process); the CPU the PostgreSQL server spent during the poll is added in "
             "brackets, and the wall time includes the server's work. Its × CPU ratios use "
             "the client's CPU only." if "feedsieve-pg" in refs else ""), "",
          "| tool | mode | wall s (runs) | CPU s | peak MiB | stored | items/s | " + ref_cols
          + "HTTP 200 / 304 | body bytes |",
          "|---|---|---|---|---|---|---|" + "---|---|" * len(refs) + "---|---|"]
    for mode in ("cold", "warm"):
        for t in results:
            m = median_run(results[t][mode])
            stored = m["items"]
            st = str(stored[-1]) if len(set(stored)) == 1 else "/".join(map(str, stored))
            items = stored[-1] or 0
            ips = f"{items / m['wall']:,.0f}" if mode == "cold" and m["wall"] > 0 else "–"
            ratios = ""
            for r, ref in refs.items():
                f = ref[mode]
                if t == r:
                    ratios += "1 | 1 | "
                    continue
                ratios += f"{m['wall'] / f['wall']:.1f} | " if f["wall"] > 0 else "– | "
                ratios += f"{m['cpu'] / f['cpu']:.1f} | " if f["cpu"] > 0 else "– | "
            cpu = fmt_s(m["cpu"]) + (f" (+ {fmt_s(m['server_cpu'])} server)"
                                     if m["server_cpu"] is not None else "")
            h = m["http"]["status"]
            bad = "" if all(rc == 0 for rc in m["rcs"]) else f" (exit {m['rcs']})"
            L.append(f"| {LABEL[t]}{bad} | {mode} | {fmt_s(m['wall'])} "
                     f"({', '.join(fmt_s(w) for w in m['walls'])}) | {cpu} | "
                     f"{m['peak_mib']:.1f} | {st} | {ips} | {ratios}"
                     f"{h.get('200', 0)} / {h.get('304', 0)}"
                     + "".join(f", {k}: {v}" for k, v in h.items() if k not in ("200", "304"))
                     + f" | {m['http']['body_bytes']:,} |")
    L += ["", "HTTP columns: what nginx logged during the last run of each row "
          "(responses by status, body bytes sent)."]
    L += [""] + [f"- {NOTES[t]}" for t in results]
    for r, ref in refs.items():
        st = ref["cold"]["stored"]
        L += ["", f"{LABEL[r]} after the cold poll: {st.get('items')} items, "
              f"{st.get('stories')} stories, topics {st.get('topics')}, "
              f"{st.get('feeds_failed')} feeds with an error. Corpus: {man['items']} items, "
              f"{man['unique_stories']} distinct stories "
              f"({man['near_duplicate_items']} near-duplicates), "
              f"{man['topic']['matching_stories']} stories match the topic."]

    if "feedsieve-pg" in refs:
        L += [""] + pg_section(refs)

    if flr:
        L += ["", f"Floor: sfeed's parser reads the whole corpus ({man['bytes'] / 1e6:.1f} MB, "
              f"all {man['feeds']} files in one stream from memory, no network, no storing) in "
              f"{flr['wall']:.2f} s (best of 3; {flr['lines']} items out); the issue quotes "
              "0.42 s."]
    if refs:
        L += ["", "## Targets", "",
              "Targets from the performance issue, against the peer times quoted there and "
              "against the peer times measured here."]
    for r, ref in refs.items():
        fs = ref
        if both:
            L += ["", f"### {LABEL[r]}"]
        L += ["", "| target | feedsieve | quoted peer → limit | met? | measured peer → limit | met? |",
              "|---|---|---|---|---|---|"]
        for mode, peer, div in TARGETS:
            mine = fs[mode]["wall"]
            q = QUOTED[(peer, mode)][0]
            row = f"| {mode}: ≤ 1/{div} of {LABEL[peer]} | {fmt_s(mine)} s | "
            if (args.feeds, args.items) == (1000, 20):   # the figures are for this size
                row += f"{q} s → {q / div:.3f} s | " \
                       f"{'yes' if mine <= q / div else 'no'} ({mine / (q / div):.1f}× the limit) | "
            else:
                row += "quoted for 1,000 × 20 only | – | "
            if peer in results:
                pm = median_run(results[peer][mode])["wall"]
                row += f"{fmt_s(pm)} s → {pm / div:.3f} s | " \
                       f"{'yes' if mine <= pm / div else 'no'} ({mine / (pm / div):.1f}× the limit) |"
            else:
                row += "not run | – |"
            L.append(row)
        cpu, n = fs["cold"]["cpu"], mach["cpus"] or 1
        if fs["cold"]["server_cpu"] is not None:
            cpu += fs["cold"]["server_cpu"]
            what = f"{fmt_s(cpu)} s CPU (client + server) on {n} CPUs"
        else:
            what = f"{fmt_s(cpu)} s CPU on {n} CPUs"
        L.append(f"| cold: CPU bound | {what} | – | wall ≥ "
                 f"{cpu / n:.2f} s on this machine even with no other load and perfect "
                 f"parallelism | – | – |")
        pk = fs["cold"]["peak_mib"]
        L.append(f"| cold: peak ≤ {PEAK_TARGET_MIB} MiB | {pk:.1f} MiB"
                 + (" (client)" if r == "feedsieve-pg" else "") + " | – | "
                 f"{'yes' if pk <= PEAK_TARGET_MIB else 'no'} | – | – |")
        h = fs["warm"]["http"]
        L.append(f"| warm: no feed body transferred | {h['status'].get('200', 0)} × 200, "
                 f"{h['body_bytes']:,} body bytes | – | "
                 f"{'yes' if h['status'].get('200', 0) == 0 and h['body_bytes'] == 0 else 'no'}"
                 " | – | – |")
    if refs:
        L += ["", "Quoted in the issue (1,000 × 20, median wall, peak): "
              + "; ".join(f"{LABEL[p]} {m} {w} s" + (f", {pk} MiB" if pk else "")
                          for (p, m), (w, pk) in QUOTED.items()) + "."]
    if bnd:
        L += [""] + bounds_section(bnd, results)
    # Measurements made apart from this script (the stores at a million items), kept
    # in their own file with their commands, and carried into every RESULTS.md.
    stores = HERE / "STORES.md"
    if stores.exists():
        L += ["", stores.read_text().rstrip()]
    text = "\n".join(L) + "\n"
    args.results.write_text(text)
    (args.out / "results.json").write_text(json.dumps(
        {t: {m: [r.__dict__ for r in runs] for m, runs in res.items() if m != "command"}
         for t, res in {k: {"cold": v["cold"], "warm": v["warm"]} for k, v in results.items()}.items()},
        indent=1, default=str))
    return text


def pg_section(refs: dict) -> list[str]:
    """feedsieve on PostgreSQL against feedsieve on SQLite: wall time against the
    issue's targets, CPU (client and server), memory, and bytes per item."""
    pg = refs["feedsieve-pg"]
    sq = refs.get("feedsieve")
    L = ["## feedsieve on PostgreSQL against SQLite", ""]
    if sq:
        L += ["The same binary, corpus and polls; only `[daemon] database` differs. Targets "
              "from the issue: PostgreSQL's wall time within "
              + " and ".join(f"{x:g}× SQLite's {m}" for m, x in PG_TARGETS.items()) + ".", "",
              "| mode | SQLite wall s | PostgreSQL wall s | PostgreSQL ÷ SQLite | target | met? |",
              "|---|---|---|---|---|---|"]
        verdict = []
        for mode, lim in PG_TARGETS.items():
            a, b = sq[mode]["wall"], pg[mode]["wall"]
            ok = b <= lim * a
            verdict.append(f"{mode} {'met' if ok else 'NOT met'} ({b / a:.2f}× against ≤ {lim:g}×)")
            L.append(f"| {mode} | {fmt_s(a)} | {fmt_s(b)} | {b / a:.2f} | ≤ {lim:g} | "
                     f"{'yes' if ok else 'no'} |")
        L += ["", "Targets: " + "; ".join(verdict) + ".", ""]
    L += ["CPU: the client is the feedsieve process (GNU time); the server is every process "
          "of the PostgreSQL server during the poll (the backends that served it, which have "
          "exited by then and are counted through the postmaster's reaped-children times in "
          "/proc, plus the checkpointer, WAL writer and the rest). Peak is the client's; the "
          "server's memory (shared_buffers and its backends) is not in it.", "",
          "| mode | "
          + ("SQLite CPU s | " if sq else "")
          + "PostgreSQL client CPU s | server CPU s | client + server CPU s | "
          + ("(client + server) ÷ SQLite | SQLite peak MiB | " if sq else "")
          + "PostgreSQL client peak MiB |",
          "|---|" + ("---|" if sq else "") + "---|---|---|" + ("---|---|" if sq else "") + "---|"]
    for mode in ("cold", "warm"):
        p = pg[mode]
        srv = p["server_cpu"]
        tot = p["cpu"] + (srv or 0)
        row = f"| {mode} | "
        if sq:
            row += f"{fmt_s(sq[mode]['cpu'])} | "
        row += f"{fmt_s(p['cpu'])} | {fmt_s(srv) if srv is not None else '–'} | {fmt_s(tot)} | "
        if sq:
            row += (f"{tot / sq[mode]['cpu']:.2f} | " if sq[mode]["cpu"] > 0 else "– | ")
            row += f"{sq[mode]['peak_mib']:.1f} | "
        row += f"{p['peak_mib']:.1f} |"
        L.append(row)

    # Bytes per item, after the cold poll (median over the cold runs).
    def med(ref, key):
        xs = [s.get(key) for s in ref["cold"]["stored_all"] if s.get(key) is not None]
        return statistics.median(xs) if xs else None
    items = pg["cold"]["stored"].get("items") or 0
    L += ["", "Bytes per item after the cold poll (median over the cold runs): what the store "
          "takes on disk, divided by the items stored.", "",
          "| store | measured | bytes | items | bytes per item |", "|---|---|---|---|---|"]
    if sq:
        db, wal = med(sq, "db_bytes"), med(sq, "wal_bytes")
        n = sq["cold"]["stored"].get("items") or 0
        if db is not None and n:
            tot = db + (wal or 0)
            L.append(f"| SQLite | `feedsieve.db` + `feedsieve.db-wal` after the process exited "
                     f"({fmt_b(db)} + {fmt_b(wal or 0)}) | {tot:,.0f} | {n} | {tot / n:,.0f} |")
    dbb, empty, itb = med(pg, "db_bytes"), med(pg, "empty_db_bytes"), med(pg, "items_table_bytes")
    if dbb is not None and items:
        L.append(f"| PostgreSQL | `pg_database_size('{PG_COLD}')` | {dbb:,.0f} | {items} | "
                 f"{dbb / items:,.0f} |")
        if empty is not None:
            L.append(f"| PostgreSQL | the same less the empty database's size before the poll "
                     f"({fmt_b(empty)}: the system catalogs) | {dbb - empty:,.0f} | {items} | "
                     f"{(dbb - empty) / items:,.0f} |")
    if itb is not None and items:
        L.append(f"| PostgreSQL | `pg_total_relation_size('items')`: the items table, its TOAST "
                 f"and its indexes | {itb:,.0f} | {items} | {itb / items:,.0f} |")
    L += ["", "PostgreSQL's write-ahead log is the cluster's, outside the database, and not "
          "counted; SQLite's -wal file is counted (it is empty or gone after a clean exit "
          "when the last checkpoint has run)."]
    return L


def bounds_section(bnd: dict, results: dict) -> list[str]:
    meds = [(what, skip, median_run(bnd[skip])) for what, skip in BOUNDS if bnd.get(skip)]
    runs = max(len(bnd[skip]) for _, skip, _ in meds)
    limits = [(peer, div, median_run(results[peer]["cold"])["wall"] / div)
              for mode, peer, div in TARGETS if mode == "cold" and peer in results]
    L = ["## Where a cold poll's time goes", "",
         "Cold polls, as above, of the same source built with the `bench-bounds` feature "
         "(`cargo build --release --features bench-bounds`): the environment variable "
         "`FEEDSIEVE_BENCH_SKIP` makes storing leave parts out (src/store/skip.rs). "
         f"The modes took turns, {runs} runs each; medians. Each row leaves out more than "
         "the one above it; Δ is what that saves (this row less the one above): what the "
         "full-text index costs, what the band keys cost, and what the rest of storing "
         "costs (item and story rows, their indexes, the log and its checkpoints). "
         "Without the full-text index the topic's query matches nothing, so its Δ includes "
         "filing into the topic; without band keys written, they are still looked up.",
         "",
         "| left out | FEEDSIEVE_BENCH_SKIP | wall s (runs) | CPU s | Δ wall s | Δ CPU s | "
         "peak MiB | stored |"
         + "".join(f" {p} wall ÷ this |" for p, _, _ in limits),
         "|---|---|---|---|---|---|---|---|" + "---|" * len(limits)]
    for i, (what, skip, m) in enumerate(meds):
        above = meds[i - 1][2] if i > 0 else None
        dw = f"{m['wall'] - above['wall']:+.2f}" if above else "–"
        dc = f"{m['cpu'] - above['cpu']:+.2f}" if above else "–"
        L.append(f"| {what} | {f'`{skip}`' if skip else 'unset'} | {fmt_s(m['wall'])} "
                 f"({', '.join(fmt_s(w) for w in m['walls'])}) | {fmt_s(m['cpu'])} | {dw} | "
                 f"{dc} | {m['peak_mib']:.1f} | {m['items'][-1]} |"
                 + "".join(f" {div * lim / m['wall']:.1f} |" for _, div, lim in limits))
    if limits:
        L += ["", "The cold targets' limits in this run: "
              + "; ".join(f"1/{div} of {LABEL[p]} = {lim:.2f} s" for p, div, lim in limits)
              + ". " + " ".join(
                  f"Leaving out {what}: {fmt_s(m['wall'])} s, "
                  + ("within every limit." if all(m["wall"] <= lim for _, _, lim in limits)
                     else "over " + " and ".join(
                         f"1/{div} of {p}" for p, div, lim in limits if m["wall"] > lim) + ".")
                  for what, _, m in meds[1:])]
    return L


def report_only(args, tools: list[str], venv_py: Path) -> int:
    """Write RESULTS.md from the partial-TOOL.json files of an earlier run
    (one that was interrupted, or whose tools ran in separate invocations)."""
    cdir = args.out / f"corpus-{args.feeds}x{args.items}"
    man = json.loads((cdir / "manifest.json").read_text())
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    bin_fs = (target if target.is_absolute() else REPO / target) / "release" / "feedsieve"
    meta_p = args.out / "partial-meta.json"
    meta = json.loads(meta_p.read_text()) if meta_p.exists() else \
        {"started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
         "load_before": os.getloadavg()}
    all_tools = make_tools(args, cdir, f"http://127.0.0.1:{args.port}", bin_fs, venv_py)
    results, commands = {}, {}
    for t in ALL_TOOLS:
        p = args.out / f"partial-{t}.json"
        if t not in tools or not p.exists():
            continue
        d = json.loads(p.read_text())
        results[t] = {m: [Run(**r) for r in d[m]] for m in ("cold", "warm")}
        commands[t] = " ".join(all_tools[t].command(Path("$STATE"))).replace(str(REPO) + "/", "")
    if not results:
        log(f"no partial-*.json in {args.out}")
        return 1
    vers = {k: v for k, v in versions(bin_fs, venv_py).items()
            if k in results or k in ("rustc", "nginx")}
    print(write_results(args, man, results, machine(), vers, commands, meta["started"],
                        meta["load_before"], meta.get("load_after") or os.getloadavg(),
                        floor(args, cdir), load_bounds(args), meta.get("pg_port")))
    log(f"wrote {args.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark feedsieve against other feed readers "
                                 "(cold and warm polls of one corpus served by nginx).")
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="cold and warm runs per tool (default 3)")
    ap.add_argument("--runs-for", action="append", default=[], metavar="TOOL=N",
                    help="a different number of runs for one tool (repeatable), "
                         "e.g. feed2exec=1 when time is short")
    ap.add_argument("--tools",
                    help=f"comma-separated subset of {','.join(ALL_TOOLS)}, run in this order "
                         "(the table keeps the order above); default all of them, with "
                         "feedsieve as --database says. feedsieve stands for the feedsieves "
                         "--database selects; feedsieve-pg is feedsieve on PostgreSQL whatever "
                         "--database says")
    ap.add_argument("--database", choices=sorted(DATABASES),
                    help="the store(s) feedsieve is measured with: sqlite (the default), "
                         "postgres (a private server started with bench/pg.sh; the tool "
                         "feedsieve-pg), or both. With --report-only and no --tools, the "
                         "default is every partial-TOOL.json there is")
    ap.add_argument("--port", type=int, default=8099, help="nginx's port (default 8099)")
    ap.add_argument("--pg-port", type=int, default=5499,
                    help="the PostgreSQL server's port on 127.0.0.1 (default 5499)")
    ap.add_argument("--out", type=Path, default=HERE / "out",
                    help="corpus, state and logs (default bench/out)")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--note", help="a sentence put at the top of RESULTS.md "
                    "(e.g. about other load on the machine)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get/pip install")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: write RESULTS.md from OUT/partial-TOOL.json")
    ap.add_argument("--bounds", action="store_true",
                    help="after the tools, cold polls of a bench-bounds build that leave parts "
                         "of storing out, to show what each costs (runs: --runs, or "
                         "--runs-for bounds=N)")
    ap.add_argument("--keep-state", action="store_true",
                    help="keep the last cold state of each tool under OUT/state (and, for "
                         f"feedsieve-pg, the database {PG_TEMPLATE} and the server running)")
    args = ap.parse_args(argv)
    if args.report_only and args.tools is None and args.database is None:
        tools = list(ALL_TOOLS)      # whatever partial results there are
    else:
        asked = [t.strip() for t in (args.tools or ",".join(ALL_TOOLS)).split(",") if t.strip()]
        if any(t not in ALL_TOOLS for t in asked):
            ap.error(f"--tools: choose from {','.join(ALL_TOOLS)}")
        if args.tools is None:
            asked.remove("feedsieve-pg")          # "feedsieve" brings it with --database
        tools = []
        for t in asked:
            for u in DATABASES[args.database or "sqlite"] if t == "feedsieve" else [t]:
                if u not in tools:
                    tools.append(u)
    try:
        args.runs_for = {k: int(v) for k, v in (x.split("=", 1) for x in args.runs_for)}
    except ValueError:
        ap.error("--runs-for: TOOL=N")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()

    venv_py = HERE / ".venv" / "bin" / "python"
    if args.report_only:
        return report_only(args, tools, venv_py)
    (args.out / "partial-meta.json").write_text(json.dumps(
        {"started": started, "load_before": load_before, "pg_port": args.pg_port}))
    if not args.no_install:
        venv_py = install(tools)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    bin_fs = (target if target.is_absolute() else REPO / target) / "release" / "feedsieve"
    cdir, man = corpus(args)
    base = f"http://127.0.0.1:{args.port}"
    nstate = args.out / "nginx"
    env = dict(os.environ, NGINX_STATE=str(nstate))
    subprocess.run([str(HERE / "nginx.sh"), "stop"], env=env, capture_output=True)
    sh([str(HERE / "nginx.sh"), "start", str(cdir), str(args.port)], env=env)
    alog = AccessLog(nstate / "access.log")
    results: dict = {}
    commands: dict = {}
    bnd = None
    pg = None
    built = args.no_build
    try:
        if "feedsieve-pg" in tools:
            # Its data folder beside the SQLite state, on the same disk (pg.sh
            # refuses a folder in RAM).
            pg = Pg(args.pg_port, args.out / "pg")
            pg.start()
        all_tools = make_tools(args, cdir, base, bin_fs, venv_py, pg)
        for t in tools:
            # Built when its turn comes, so that peers listed first can run
            # while a build is still going (useful only when time is short).
            if t in FEEDSIEVES and not built:
                build_feedsieve()
                built = True
            runs = args.runs_for.get(t, args.runs)
            log(f"{t}: {runs} cold + {runs} warm")
            res = bench_tool(all_tools[t], args, alog, runs)
            commands[t] = res.pop("command")
            results[t] = res
            # Partial results survive a later failure or an interrupted run.
            (args.out / f"partial-{t}.json").write_text(json.dumps(
                {m: [r.__dict__ for r in res[m]] for m in ("cold", "warm")}, indent=1))
        if args.bounds:
            log("bounds: cold polls that leave parts of storing out")
            bnd = bounds(args, cdir, base, venv_py, alog)
    finally:
        subprocess.run([str(HERE / "nginx.sh"), "stop"], env=env, capture_output=True)
        if pg and not args.keep_state:
            pg.stop()
    results = {t: results[t] for t in ALL_TOOLS if t in results}
    commands = {t: commands[t] for t in ALL_TOOLS if t in commands}
    mach = machine()
    vers = {k: v for k, v in versions(bin_fs, venv_py).items()
            if k in tools or k in ("rustc", "nginx")}
    load_after = os.getloadavg()
    (args.out / "partial-meta.json").write_text(json.dumps(
        {"started": started, "load_before": load_before, "load_after": load_after,
         "pg_port": args.pg_port}))
    text = write_results(args, man, results, mach, vers, commands, started,
                         load_before, load_after, floor(args, cdir), bnd, args.pg_port)
    print(text)
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
