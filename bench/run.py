#!/usr/bin/env python3
"""Benchmark feedsieve against other feed readers on one corpus, cold and warm.

    bench/run.py [--feeds 1000] [--items 20] [--runs 3] [--tools LIST]

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
ALL_TOOLS = ["feedsieve", "newsboat", "sfeed", "feed2exec", "feedparser"]
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
                 "Last-Modified it stored.",
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
    "feedsieve": "feedsieve poll",
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
# Tools: each prepares a state dir, names its command, counts what it stored
# --------------------------------------------------------------------------
@dataclass
class Tool:
    name: str
    setup: callable          # (state_dir) -> None: write configs into an empty state dir
    command: callable        # (state_dir) -> list[str]
    count: callable          # (state_dir) -> dict with "items" and maybe more
    env: dict = field(default_factory=dict)


def make_tools(args, corpus_dir: Path, base: str, bin_feedsieve: Path, venv_py: Path) -> dict:
    feeds = feed_paths(corpus_dir)
    urls = [f"{base}/{p}" for _, p in feeds]

    def write_urls(s: Path) -> Path:
        p = s / "urls"
        p.write_text("\n".join(urls) + "\n")
        return p

    # feedsieve -----------------------------------------------------------
    def fs_setup(s: Path) -> None:
        sh([sys.executable, str(HERE / "corpus_config.py"), str(corpus_dir), base,
            "-o", str(s / "feedsieve.toml"), "--database", "feedsieve.db",
            "--listen", "127.0.0.1:8078"], stderr=subprocess.DEVNULL)

    def fs_count(s: Path) -> dict:
        r = subprocess.run([str(bin_feedsieve), "--config", str(s / "feedsieve.toml"),
                            "status", "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            return {"items": None, "error": r.stderr.strip()[-300:]}
        st = json.loads(r.stdout)
        failed = sum(1 for f in st["feeds"] if f.get("error"))
        topics = {t["id"]: t["items"] for t in st.get("topics", [])}
        with sqlite3.connect(f"file:{s / 'feedsieve.db'}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            stories = db.execute("SELECT count(*) FROM stories").fetchone()[0] \
                if "stories" in tables else None
        return {"items": st["items_total"], "feeds_failed": failed, "topics": topics,
                "stories": stories}

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
    t0 = time.monotonic()
    with open(logdir / f"{tag}.out", "wb") as o:
        r = subprocess.run(["/usr/bin/time", "-v", "-o", str(tfile), *cmd], cwd=state, env=env,
                           stdout=o, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    time.sleep(0.3)                  # let nginx write its last log lines
    http = alog.since()
    cpu, peak = parse_time_v(tfile.read_text())
    try:
        stored = tool.count(state)
    except (sqlite3.Error, OSError, KeyError, ValueError) as e:
        stored = {"items": None, "error": str(e)}
    return Run(wall, cpu, peak, r.returncode, stored, http)


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
        run = measure(tool, s, alog, logdir, f"cold-{i + 1}")
        log(f"  {tool.name} cold {i + 1}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, "
            f"{run.peak_kib / 1024:.1f} MiB, rc {run.rc}, stored {run.stored}, http {run.http}")
        res["cold"].append(run)
        if i < runs - 1:
            shutil.rmtree(s)
    base = root / f"cold-{runs}"
    # A warm poll must find the state exactly as the cold poll left it, mtimes
    # included (sfeed's If-Modified-Since is its TSV files' mtime).
    time.sleep(1.1)
    for i in range(runs):
        s = root / f"warm-{i + 1}"
        shutil.copytree(base, s, symlinks=True)
        run = measure(tool, s, alog, logdir, f"warm-{i + 1}")
        log(f"  {tool.name} warm {i + 1}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, "
            f"{run.peak_kib / 1024:.1f} MiB, rc {run.rc}, stored {run.stored}, http {run.http}")
        res["warm"].append(run)
        shutil.rmtree(s)
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
    }


def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def write_results(args, man: dict, results: dict, mach: dict, vers: dict,
                  commands: dict, started: str, load_before, load_after,
                  flr: dict | None = None, bnd: dict | None = None) -> str:
    fs = {m: median_run(results["feedsieve"][m]) for m in ("cold", "warm")} \
        if "feedsieve" in results else None
    L = []
    L += ["# Benchmark results", "",
          f"Generated by `bench/run.py` on {started} (UTC). Reproduce with:", "",
          "```sh", f"python3 bench/run.py --feeds {args.feeds} --items {args.items} "
          f"--runs {args.runs}" + "".join(f" --runs-for {t}={n}" for t, n in args.runs_for.items())
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
    L += ["Versions:", ""] + [f"- {k}: {v}" for k, v in vers.items()] + [""]
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

    L += ["## Results", "",
          f"Median of {args.runs} runs"
          + "".join(f" ({n} for {t})" for t, n in args.runs_for.items()) + ". CPU = user + system. Peak = largest resident set of "
          "one process (GNU time's maximum RSS). Stored = items in the tool's own store after "
          "the run. × feedsieve = the tool's wall time over feedsieve's (and its CPU time over "
          "feedsieve's, which other load on the machine disturbs less).", "",
          "| tool | mode | wall s (runs) | CPU s | peak MiB | stored | items/s | × feedsieve wall | "
          "× feedsieve CPU | HTTP 200 / 304 | body bytes |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode in ("cold", "warm"):
        for t in results:
            m = median_run(results[t][mode])
            stored = m["items"]
            st = str(stored[-1]) if len(set(stored)) == 1 else "/".join(map(str, stored))
            items = stored[-1] or 0
            ips = f"{items / m['wall']:,.0f}" if mode == "cold" and m["wall"] > 0 else "–"
            ratio = "–" if not fs else "1" if t == "feedsieve" else \
                f"{m['wall'] / fs[mode]['wall']:.1f}"
            cratio = "–" if not fs else "1" if t == "feedsieve" else \
                f"{m['cpu'] / fs[mode]['cpu']:.1f}" if fs[mode]["cpu"] > 0 else "–"
            h = m["http"]["status"]
            bad = "" if all(rc == 0 for rc in m["rcs"]) else f" (exit {m['rcs']})"
            L.append(f"| {LABEL[t]}{bad} | {mode} | {fmt_s(m['wall'])} "
                     f"({', '.join(fmt_s(w) for w in m['walls'])}) | {fmt_s(m['cpu'])} | "
                     f"{m['peak_mib']:.1f} | {st} | {ips} | {ratio} | {cratio} | "
                     f"{h.get('200', 0)} / {h.get('304', 0)}"
                     + "".join(f", {k}: {v}" for k, v in h.items() if k not in ("200", "304"))
                     + f" | {m['http']['body_bytes']:,} |")
    L += ["", "HTTP columns: what nginx logged during the last run of each row "
          "(responses by status, body bytes sent)."]
    L += [""] + [f"- {NOTES[t]}" for t in results]
    if fs:
        st = fs["cold"]["stored"]
        L += ["", f"feedsieve after the cold poll: {st.get('items')} items, "
              f"{st.get('stories')} stories, topics {st.get('topics')}, "
              f"{st.get('feeds_failed')} feeds with an error. Corpus: {man['items']} items, "
              f"{man['unique_stories']} distinct stories "
              f"({man['near_duplicate_items']} near-duplicates), "
              f"{man['topic']['matching_stories']} stories match the topic."]

    if flr:
        L += ["", f"Floor: sfeed's parser reads the whole corpus ({man['bytes'] / 1e6:.1f} MB, "
              f"all {man['feeds']} files in one stream from memory, no network, no storing) in "
              f"{flr['wall']:.2f} s (best of 3; {flr['lines']} items out); the issue quotes "
              "0.42 s."]
    if fs:
        L += ["", "## Targets", "",
              "Targets from the performance issue, against the peer times quoted there and "
              "against the peer times measured here.", "",
              "| target | feedsieve | quoted peer → limit | met? | measured peer → limit | met? |",
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
        L.append(f"| cold: CPU bound | {fmt_s(cpu)} s CPU on {n} CPUs | – | wall ≥ "
                 f"{cpu / n:.2f} s on this machine even with no other load and perfect "
                 f"parallelism | – | – |")
        pk = fs["cold"]["peak_mib"]
        L.append(f"| cold: peak ≤ {PEAK_TARGET_MIB} MiB | {pk:.1f} MiB | – | "
                 f"{'yes' if pk <= PEAK_TARGET_MIB else 'no'} | – | – |")
        h = fs["warm"]["http"]
        L.append(f"| warm: no feed body transferred | {h['status'].get('200', 0)} × 200, "
                 f"{h['body_bytes']:,} body bytes | – | "
                 f"{'yes' if h['status'].get('200', 0) == 0 and h['body_bytes'] == 0 else 'no'}"
                 " | – | – |")
        L += ["", "Quoted in the issue (1,000 × 20, median wall, peak): "
              + "; ".join(f"{LABEL[p]} {m} {w} s" + (f", {pk} MiB" if pk else "")
                          for (p, m), (w, pk) in QUOTED.items()) + "."]
    if bnd:
        L += [""] + bounds_section(bnd, results)
    text = "\n".join(L) + "\n"
    args.results.write_text(text)
    (args.out / "results.json").write_text(json.dumps(
        {t: {m: [r.__dict__ for r in runs] for m, runs in res.items() if m != "command"}
         for t, res in {k: {"cold": v["cold"], "warm": v["warm"]} for k, v in results.items()}.items()},
        indent=1, default=str))
    return text


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
                        floor(args, cdir), load_bounds(args)))
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
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help=f"comma-separated subset of {','.join(ALL_TOOLS)}, run in this order "
                         "(the table keeps the order above)")
    ap.add_argument("--port", type=int, default=8099)
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
                    help="keep the last cold state of each tool under OUT/state")
    args = ap.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if any(t not in ALL_TOOLS for t in tools):
        ap.error(f"--tools: choose from {','.join(ALL_TOOLS)}")
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
        {"started": started, "load_before": load_before}))
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
    try:
        all_tools = make_tools(args, cdir, base, bin_fs, venv_py)
        for t in tools:
            # Built when its turn comes, so that peers listed first can run
            # while a build is still going (useful only when time is short).
            if t == "feedsieve" and not args.no_build:
                build_feedsieve()
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
    results = {t: results[t] for t in ALL_TOOLS if t in results}
    commands = {t: commands[t] for t in ALL_TOOLS if t in commands}
    mach = machine()
    vers = {k: v for k, v in versions(bin_fs, venv_py).items()
            if k in tools or k in ("rustc", "nginx")}
    load_after = os.getloadavg()
    (args.out / "partial-meta.json").write_text(json.dumps(
        {"started": started, "load_before": load_before, "load_after": load_after}))
    text = write_results(args, man, results, mach, vers, commands, started,
                         load_before, load_after, floor(args, cdir), bnd)
    print(text)
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
