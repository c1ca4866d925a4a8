#!/usr/bin/env python3
"""Scale benchmark: feedsieve polling 100,000 feeds into a store of 2 million items.

    bench/scale.py [--feeds 100000] [--items 20] [--steps 10] [--out /tmp/scale]

The performance issue's scale target: "100,000 feeds and 2 million stored items.
A full poll cycle completes; the cost per new item stays flat as the store grows;
report database bytes per item." Steps, each printed as it happens:

1. builds feedsieve (nice -n 19 cargo build --release --locked);
2. generates the corpus under OUT/corpus-FxM, unless one with the same
   parameters is there. gen_corpus.py keeps every story's token tree in memory
   until the last file is written (about 0.45 MB of RSS per feed of 20 items,
   measured), so --feeds 100000 in one process would need some 45 GB. The corpus
   is therefore made of --steps shards, one gen_corpus.py run each
   (`--feeds F/K --items M --seed SEED+k-1 --now NOW --formats rss2,atom,rss1`)
   in OUT/corpus-FxM/sKK/, with a merged feeds.tsv (feed ids sKK-feed-NNNNN)
   and manifest.json on top. Near-duplicates pair feeds within a shard; site
   names repeat across shards (item links and guids do not);
3. serves it with bench/nginx.sh on 127.0.0.1:--port (NGINX_STATE=OUT/nginx);
4. for k = 1..K: writes the config for the first k*F/K feeds (corpus_config.py's
   render(); one topic, 16 fetches at once, database OUT/state/feedsieve.db)
   and runs `feedsieve --config CONF poll` under /usr/bin/time -v (run.py's
   measure()). Poll k gets 304s for the feeds already stored and 200s for F/K
   new feeds: F/K*M new items into a store that holds (k-1)*F/K*M. Then
   `feedsieve status --json` and the database (read-only) are checked against
   the shard manifests: items stored, feeds failed, HTTP 200/304 counts;
5. one more poll of all F feeds when nothing changed (all 304): the warm cycle;
6. the database's size per table and index (SQLite's dbstat, read-only);
7. writes bench/SCALE.md (and OUT/scale.json): machine, commands, the per-step
   table, last/first ratios of the cost per new item, the warm cycle, bytes per
   item, load averages.

Wall times on a shared machine include other work: each step also records the
CPU time the rest of the machine used while it ran (/proc/stat busy time minus
the poll's own CPU time). The CPU time per new item is the figure to judge
flatness by. `--report-only` rewrites SCALE.md from OUT/scale.json.

Only the Python standard library; reuses run.py (measuring, machine and
versions) and corpus_config.py (the config) by import.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from argparse import Namespace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus_config  # noqa: E402
from run import AccessLog, Tool, apt_install, log, machine, measure, sh, versions  # noqa: E402

REPO = HERE.parent
FORMATS = "rss2,atom,rss1"
STORE_THREAD = "feedsieve-store"   # the SQLite writer thread's name (comm)


# --------------------------------------------------------------------------
# Corpus: K shards made by gen_corpus.py, merged
# --------------------------------------------------------------------------
def shard_dir(cdir: Path, k: int) -> Path:
    return cdir / f"s{k:02d}"


def shard_cmd(args, k: int, now: str, d: Path) -> list[str]:
    return [sys.executable, str(HERE / "gen_corpus.py"), "--feeds", str(args.feeds // args.steps),
            "--items", str(args.items), "--seed", str(args.seed + k - 1), "--now", now,
            "--formats", FORMATS, "--out", str(d)]


def shard_ok(args, k: int, now: str, d: Path) -> dict | None:
    m = d / "manifest.json"
    if not m.exists():
        return None
    man = json.loads(m.read_text())
    n = args.feeds // args.steps
    if man.get("feeds") == n and man.get("items") == n * args.items and \
            man.get("seed") == args.seed + k - 1 and man.get("formats") == FORMATS.split(",") and \
            datetime.fromisoformat(man.get("now")) == datetime.fromisoformat(now) and \
            len((d / "feeds.tsv").read_text().splitlines()) == n + 1:
        return man
    return None


def parse_gen_time(p: Path) -> dict | None:
    if not p.exists():
        return None
    t = p.read_text()
    try:
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
        secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
        sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    except AttributeError:
        return None
    return {"wall": secs, "cpu": user + sys_, "peak_kib": peak}


def corpus(args) -> tuple[Path, dict]:
    """The sharded corpus (generated where missing) and its merged manifest."""
    cdir = args.out / f"corpus-{args.feeds}x{args.items}"
    cdir.mkdir(parents=True, exist_ok=True)
    top = cdir / "manifest.json"
    now = args.now
    if now is None and top.exists():
        now = json.loads(top.read_text()).get("now")
    if now is None:
        first = shard_dir(cdir, 1) / "manifest.json"
        now = json.loads(first.read_text())["now"] if first.exists() else \
            datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    gdir = args.out / "genlogs"
    gdir.mkdir(exist_ok=True)
    todo = [k for k in range(1, args.steps + 1) if not shard_ok(args, k, now, shard_dir(cdir, k))]
    if todo:
        log(f"generating {len(todo)} of {args.steps} corpus shards ({args.feeds // args.steps} feeds "
            f"x {args.items} items each, {args.gen_jobs} at a time, nice -n 19) -> {cdir}")
    running: list[tuple[int, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < args.gen_jobs:
            k = todo.pop(0)
            d = shard_dir(cdir, k)
            cmd = ["nice", "-n", "19", "/usr/bin/time", "-v", "-o", str(gdir / f"s{k:02d}.time"),
                   *shard_cmd(args, k, now, d)]
            running.append((k, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                stderr=open(gdir / f"s{k:02d}.log", "wb"))))
        time.sleep(2)
        for k, p in list(running):
            if p.poll() is not None:
                running.remove((k, p))
                if p.returncode != 0:
                    raise SystemExit(f"gen_corpus.py for shard {k} failed; see {gdir}/s{k:02d}.log")
                g = parse_gen_time(gdir / f"s{k:02d}.time") or {}
                log(f"  shard {k} done ({g.get('wall', 0):.0f} s, "
                    f"{g.get('peak_kib', 0) / 1024:.0f} MiB peak)")
    shards = []
    tsv = ["id\tpath"]
    for k in range(1, args.steps + 1):
        d = shard_dir(cdir, k)
        man = shard_ok(args, k, now, d)
        assert man, f"shard {d} incomplete"
        for n, line in enumerate((d / "feeds.tsv").read_text().splitlines()):
            if n == 0 or not line:
                continue
            fid, path = line.split("\t")[:2]
            tsv.append(f"s{k:02d}-{fid}\t{d.name}/{path}")
        shards.append({
            "shard": k, "dir": d.name, "seed": man["seed"], "feeds": man["feeds"],
            "items": man["items"], "bytes": man["bytes"],
            "unique_stories": man["unique_stories"],
            "near_duplicate_items": man["near_duplicate_items"],
            "topic_matching_items": man["topic"]["matching_items"],
            "topic_matching_stories": man["topic"]["matching_stories"],
            "latin1_feeds": man["latin1_feeds"],
            "by_format": {f: v["feeds"] for f, v in man["by_format"].items() if v["feeds"]},
            "gen": parse_gen_time(gdir / f"s{k:02d}.time"),
        })
    (cdir / "feeds.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")
    merged = {
        "generator": "bench/scale.py: gen_corpus.py per shard",
        "now": now, "seed": args.seed, "formats": FORMATS.split(","),
        "feeds": sum(s["feeds"] for s in shards), "items": sum(s["items"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "unique_stories": sum(s["unique_stories"] for s in shards),
        "near_duplicate_items": sum(s["near_duplicate_items"] for s in shards),
        "topic_matching_stories": sum(s["topic_matching_stories"] for s in shards),
        "latin1_feeds": sum(s["latin1_feeds"] for s in shards),
        "shards": shards,
    }
    top.write_text(json.dumps(merged, indent=1) + "\n")
    log(f"corpus {cdir}: {merged['feeds']} feeds, {merged['items']} items, "
        f"{merged['bytes'] / 1e9:.2f} GB")
    return cdir, merged


def feed_rows(cdir: Path) -> list[tuple[str, str]]:
    return corpus_config.read_feeds(cdir)


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------
class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, every: float = 10.0):
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0]))
            self.stop.wait(self.every)


class ThreadCpu(threading.Thread):
    """CPU seconds of each thread of the `feedsieve ... poll` process running with
    config `conf`, read from /proc every half second (the last reading stands, so
    up to half a second at the end is missed). feedsieve writes to SQLite on one
    thread (feedsieve-store): its CPU time against the poll's wall time says
    whether the poll waits on that one thread."""

    def __init__(self, conf: Path):
        super().__init__(daemon=True)
        self.needle = str(conf).encode()
        self.ticks: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()

    def find(self) -> int | None:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"feedsieve") and self.needle in cmd and b"poll" in cmd:
                return int(d)
        return None

    def run(self) -> None:
        pid = None
        while not self.stop.wait(0.5):
            pid = pid or self.find()
            if not pid:
                continue
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    st = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                    comm = st[st.index("(") + 1:st.rindex(")")]
                    f = st[st.rindex(")") + 2:].split()
                    self.ticks[int(tid)] = (comm, int(f[11]) + int(f[12]))
            except (OSError, ValueError):
                continue

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        hz = os.sysconf("SC_CLK_TCK")
        for comm, t in self.ticks.values():
            out[comm] = out.get(comm, 0.0) + t / hz
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all CPUs, /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def db_bytes(state: Path) -> dict:
    def size(name: str) -> int:
        p = state / name
        return p.stat().st_size if p.exists() else 0
    return {"db": size("feedsieve.db"), "wal": size("feedsieve.db-wal"),
            "shm": size("feedsieve.db-shm")}


def write_config(cdir: Path, rows: list[tuple[str, str]], args, conf: Path) -> None:
    ns = Namespace(base_url=f"http://127.0.0.1:{args.port}", listen=f"127.0.0.1:{args.port + 1}",
                   self_url=None, database="feedsieve.db", schedule="*/30 * * * *",
                   concurrency=16, file_urls=False, limit=50)
    conf.write_text(corpus_config.render(rows, cdir, ns), encoding="utf-8")


FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def libfaketime() -> Path:
    """libfaketime, installed from Debian if missing."""
    if not FAKETIME_LIB.exists():
        apt_install(["faketime"])
    if not FAKETIME_LIB.exists():
        sys.exit(f"{FAKETIME_LIB} not found after installing faketime")
    return FAKETIME_LIB


def shift_clock(tool: Tool, lib: Path, days: float) -> None:
    """The polls that follow see the wall clock `days` ahead (the monotonic clock,
    which tokio's timers use, is left alone)."""
    tool.env.update(LD_PRELOAD=str(lib), FAKETIME=f"+{round(days * 24)}h",
                    FAKETIME_DONT_FAKE_MONOTONIC="1")


def make_tool(bin_fs: Path) -> Tool:
    def count(s: Path) -> dict:
        t0 = time.monotonic()
        r = subprocess.run([str(bin_fs), "--config", str(s / "feedsieve.toml"), "status", "--json"],
                           capture_output=True, text=True)
        status_wall = time.monotonic() - t0
        if r.returncode != 0:
            return {"items": None, "error": r.stderr.strip()[-300:]}
        st = json.loads(r.stdout)
        with sqlite3.connect(f"file:{s / 'feedsieve.db'}?mode=ro", uri=True) as db:
            stories = db.execute("SELECT count(*) FROM stories").fetchone()[0]
            items = db.execute("SELECT count(*) FROM items").fetchone()[0]
        return {"items": st["items_total"], "items_sql": items, "stories": stories,
                "feeds": len(st["feeds"]),
                "feeds_failed": sum(1 for f in st["feeds"] if f.get("error")),
                "feeds_without_items": sum(1 for f in st["feeds"] if not f.get("items")),
                "topics": {t["id"]: t["items"] for t in st.get("topics", [])},
                "status_wall": status_wall}

    return Tool("feedsieve", lambda s: None,
                lambda s: [str(bin_fs), "--config", str(s / "feedsieve.toml"), "poll"], count)


SUMMARY = re.compile(r"(\d+) feeds: (\d+) fetched, (\d+) not modified, (\d+) failed; "
                     r"(\d+) new items, (\d+) updated \(([\d.]+)s\)")


def poll_summary(p: Path) -> dict:
    m = None
    for line in p.read_text(errors="replace").splitlines():
        m = SUMMARY.search(line) or m
    if not m:
        return {}
    k = ["feeds", "fetched", "not_modified", "failed", "new", "updated", "seconds"]
    return {a: (float(b) if a == "seconds" else int(b)) for a, b in zip(k, m.groups())}


def time_details(p: Path) -> dict:
    """User and system time, and the I/O GNU time reports (file system blocks are
    512 bytes: what the process read from and wrote to the block layer, so page
    cache hits are not inputs, and outputs are counted when written back)."""
    t = p.read_text()

    def num(label: str) -> float:
        m = re.search(re.escape(label) + r": ([\d.]+)", t)
        return float(m.group(1)) if m else 0.0
    return {"user": num("User time (seconds)"), "sys": num("System time (seconds)"),
            "fs_in_bytes": int(num("File system inputs")) * 512,
            "fs_out_bytes": int(num("File system outputs")) * 512,
            "major_faults": int(num("Major (requiring I/O) page faults")),
            "vol_ctx": int(num("Voluntary context switches"))}


def one_poll(tool: Tool, state: Path, alog: AccessLog, logdir: Path, tag: str) -> dict:
    load0, busy0 = os.getloadavg(), busy_seconds()
    threads = ThreadCpu(state / "feedsieve.toml")
    threads.start()
    run = measure(tool, state, alog, logdir, tag)
    busy = busy_seconds() - busy0
    threads.stop.set()
    threads.join()
    return {"wall": run.wall, "cpu": run.cpu, "peak_kib": run.peak_kib, "rc": run.rc,
            "stored": run.stored, "http": run.http, "summary": poll_summary(logdir / f"{tag}.out"),
            "db": db_bytes(state), "load_before": load0, "load_after": os.getloadavg(),
            "others_cpu": max(0.0, busy - run.cpu), "threads_cpu": threads.by_name(),
            **time_details(logdir / f"{tag}.time")}


def dbstat(db: Path) -> list[dict]:
    """Bytes per table and index (SQLite's dbstat), largest first."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name "
                         "ORDER BY 2 DESC").fetchall()
    return [{"name": n, "bytes": b} for n, b in rows]


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def write_report(res: dict, path: Path) -> str:
    a, man, steps, warm = res["args"], res["corpus"], res["steps"], res.get("warm")
    mach = res["machine"]
    nshard = a["feeds"] // a["steps"]
    L = ["# Scale benchmark", "",
         f"Generated by `bench/scale.py` on {res['started']} (UTC); the run took "
         f"{res['runtime'] / 60:.0f} min"
         + (f", of which {res['gen_runtime'] / 60:.0f} min generating the corpus"
            if res["gen_runtime"] > 60 else
            " (the corpus shards were there already, made by the same commands: see Corpus)")
         + ". Reproduce with:", "",
         "```sh", f"python3 bench/scale.py --feeds {a['feeds']} --items {a['items']} "
         f"--steps {a['steps']} --out {a['out']} --port {a['port']}"
         + (f" --days-between {a['days_between']:g}" if a.get("days_between") else ""), "```", "",
         "The performance issue's scale target: *100,000 feeds and 2 million stored items. A full "
         "poll cycle completes; the cost per new item stays flat as the store grows; report "
         "database bytes per item.*", ""]
    lb, la = res["load_before"], res["load_after"]
    loads = [x for _, x in res["load_samples"]]
    busy_machine = lb[0] > 0.5 * (mach["cpus"] or 1)
    if busy_machine:
        L += [f"**Other work was running on this {mach['cpus']}-CPU machine** (1-minute load "
              f"average {lb[0]:.1f} before the run, {sum(loads) / len(loads):.1f} on average "
              f"during it): wall times are inflated and noisy. The CPU times, and the CPU time "
              "per new item in particular, are the figures to judge by; the *others' CPU* "
              "column says how much CPU the rest of the machine used during each poll.", ""]
    L += ["## Machine", "",
          f"- CPU: {mach['cpu']}, {mach['cpus']} logical CPUs",
          f"- RAM: {mach['ram_gib']:.1f} GiB",
          f"- OS: {mach['os']}, kernel {mach['kernel']}",
          "- load average (1, 5, 15 min) before the run: "
          f"{', '.join(f'{x:.2f}' for x in lb)}; after: {', '.join(f'{x:.2f}' for x in la)}; "
          f"1-minute load during the run (sampled every 10 s): mean {sum(loads) / len(loads):.2f}, "
          f"min {min(loads):.2f}, max {max(loads):.2f}",
          ""]
    L += ["Versions:", ""] + [f"- {k}: {v}" for k, v in res["versions"].items()] + [""]

    sh0 = man["shards"][0]
    gens = [s["gen"] for s in man["shards"] if s.get("gen")]
    L += ["## Corpus", "",
          f"{man['feeds']:,} feeds, {man['items']:,} items, {man['bytes'] / 1e9:.2f} GB "
          f"({man['bytes'] / man['items']:.0f} B per item) of RSS 2.0, Atom and RSS 1.0; "
          f"{man['latin1_feeds']:,} feeds in ISO-8859-1; {man['near_duplicate_items']:,} "
          f"syndicated near-duplicates; {man['unique_stories']:,} distinct stories; "
          f"{man['topic_matching_stories']:,} stories match the topic. Served by nginx "
          "(`bench/nginx.sh`) on 127.0.0.1 with ETag and Last-Modified, no gzip, no Cache-Control.",
          "",
          f"It is {a['steps']} shards of {nshard:,} feeds, one `gen_corpus.py` run each (shard k "
          f"= the feeds step k adds), because one `gen_corpus.py --feeds {a['feeds']}` run "
          "keeps every story's token tree in memory until it has written the last file"
          + (f": a shard of {nshard:,} feeds peaked at "
             f"{max(g['peak_kib'] for g in gens) / 2**20:.1f} GiB, so the whole corpus in one "
             f"process would need about {max(g['peak_kib'] for g in gens) * a['steps'] / 2**20:.0f} "
             f"GiB (this machine has {mach['ram_gib']:.1f} GiB, no swap)" if gens else "")
          + (f". Generating one shard took {sum(g['wall'] for g in gens) / len(gens) / 60:.0f} min "
             f"wall ({sum(g['cpu'] for g in gens) / len(gens) / 60:.0f} min CPU) on average at "
             f"nice 19, {a['gen_jobs']} at a time" if gens else "")
          + ". Consequences: a near-duplicate's original is in the same shard (so in the "
          "same step), and site names (hence self links and some guid prefixes) repeat "
          "across shards; item links do not (they carry a per-shard story number and a "
          "random slug).", "",
          "## Commands", "",
          "```sh",
          f"# corpus, shard k = 1..{a['steps']} (nice -n 19, {a['gen_jobs']} at a time)",
          f"gen_corpus.py --feeds {nshard} --items {a['items']} --seed {a['seed']}+k-1 "
          f"--now {man['now']} --formats {FORMATS} --out $CORPUS/sKK",
          "# merged $CORPUS/feeds.tsv: id sKK-feed-NNNNN, path sKK/feed-NNNNN.xml",
          f"NGINX_STATE={a['out']}/nginx bench/nginx.sh start $CORPUS {a['port']}",
          f"# step k: $STATE/feedsieve.toml = corpus_config.render() of the first k*{nshard} "
          "feeds,",
          "#   database = \"feedsieve.db\" (in $STATE), fetch_concurrency = "
          "per_host_concurrency = 16, topic border-security",
          "/usr/bin/time -v target/release/feedsieve --config $STATE/feedsieve.toml poll",
          "target/release/feedsieve --config $STATE/feedsieve.toml status --json   # check",
          "```", "",
          f"`$STATE` = `{a['out']}/state`, one directory kept from step 1 to the warm cycle; "
          f"`$CORPUS` = `{a['out']}/corpus-{a['feeds']}x{a['items']}`. feedsieve was built with "
          "`cargo build --release --locked`.", ""]

    if a.get("days_between"):
        L += [f"**Simulated time**: step k ran with the wall clock moved (k−1)×"
              f"{a['days_between']:g} days ahead (libfaketime: `LD_PRELOAD=libfaketime.so.1 "
              f"FAKETIME=+Nh FAKETIME_DONT_FAKE_MONOTONIC=1`), so {nshard * a['items']:,} new items "
              f"arrive every {a['days_between']:g} days and the near-duplicate window (7 days: "
              "the band keys of items first seen within it) holds the latest steps' items, as "
              "in a daemon that has run for months, while the store grows to the full size. "
              "Without it (`--days-between 0`) every step's items are first seen within the same "
              "hour: the window then holds the whole store, and the cost per new item measures "
              "the ingest rate as much as the store size.", ""]
    L += ["## Per step", "",
          "Step k polls the first k×" f"{nshard:,} feeds: 304 for the (k−1)×{nshard:,} already "
          f"stored, 200 for {nshard:,} new ones. CPU = user + system time of the poll. µs per new "
          "item = the whole poll's time over the items it stored (so it includes the 304s of "
          "the feeds already stored, see below). Store thread = CPU time of feedsieve's one "
          "SQLite writer thread (from /proc, sampled every 0.5 s). Peak = maximum resident set. "
          "Others' CPU = CPU seconds the rest of the machine used while the poll ran.", "",
          "| step | feeds | HTTP 200 / 304 | items before | new items | wall s | CPU s (user + sys) "
          "| store thread CPU s | peak MiB | µs wall / new item | µs CPU / new item "
          "| µs user / new item | µs sys / new item | others' CPU s | load 1m after |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        h = s["http"]["status"]
        extra = "".join(f", {c}: {n}" for c, n in h.items() if c not in ("200", "304"))
        n = max(1, s["new_items"])
        L.append(
            f"| {s['step']}{'' if s['rc'] == 0 else ' (exit ' + str(s['rc']) + ')'} "
            f"| {s['feeds']:,} | {h.get('200', 0):,} / {h.get('304', 0):,}{extra} "
            f"| {s['items_before']:,} | {s['new_items']:,} "
            f"| {fmt_s(s['wall'])} | {fmt_s(s['cpu'])} ({fmt_s(s['user'])} + {fmt_s(s['sys'])}) "
            f"| {fmt_s(s.get('threads_cpu', {}).get(STORE_THREAD, 0))} | {s['peak_kib'] / 1024:.0f} "
            f"| {s['us_wall']:.0f} | {s['us_cpu']:.0f} | {s['user'] / n * 1e6:.0f} "
            f"| {s['sys'] / n * 1e6:.0f} | {s['others_cpu']:.0f} | {s['load_after'][0]:.1f} |")
    L += ["", "What each poll left in the store, and the I/O it did. Written / read = the "
          "poll's file system outputs / inputs as GNU time reports them (block I/O: pages "
          "written back, and reads the page cache did not serve).", "",
          "| step | stored after (expected) | stories (distinct in corpus) | DB MB (db + wal) "
          "| B / item | written GB | KB written / new item | read from disk MB | major faults "
          "| `status --json` s |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        st = s["stored"]
        ok = "" if st.get("items") == s["expected_items"] else " **≠**"
        dbt = s["db"]["db"] + s["db"]["wal"]
        L.append(
            f"| {s['step']} | {st.get('items') or 0:,} ({s['expected_items']:,}){ok} "
            f"| {st.get('stories') or 0:,} ({s['expected_stories']:,}) "
            f"| {s['db']['db'] / 1e6:,.0f} + {s['db']['wal'] / 1e6:,.0f} "
            f"| {dbt / max(1, st.get('items') or 1):,.0f} | {s['fs_out_bytes'] / 1e9:.1f} "
            f"| {s['fs_out_bytes'] / max(1, s['new_items']) / 1e3:,.0f} "
            f"| {s['fs_in_bytes'] / 1e6:,.0f} | {s['major_faults']:,} "
            f"| {st.get('status_wall', 0):.2f} |")
    first, last = steps[0], steps[-1]
    L += [""]
    if len(steps) > 1:
        def per(s: dict, k: str) -> float:
            return s[k] / max(1, s["new_items"])
        ratio = {k: per(last, k) / per(first, k) if per(first, k) else float("nan")
                 for k in ("wall", "cpu", "user", "sys", "fs_out_bytes")}
        mid = steps[1:]
        cpus = sorted(s["us_cpu"] for s in mid)
        L += [f"**Cost per new item, last step over first** (store of "
              f"{last['items_before']:,} items vs empty): wall {ratio['wall']:.2f}×, "
              f"CPU {ratio['cpu']:.2f}× ({first['us_wall']:.0f} → {last['us_wall']:.0f} µs wall, "
              f"{first['us_cpu']:.0f} → {last['us_cpu']:.0f} µs CPU per new item); of the CPU, "
              f"user {ratio['user']:.2f}× ({per(first, 'user') * 1e6:.0f} → "
              f"{per(last, 'user') * 1e6:.0f} µs) and system {ratio['sys']:.2f}× "
              f"({per(first, 'sys') * 1e6:.0f} → {per(last, 'sys') * 1e6:.0f} µs); bytes written "
              f"per new item {ratio['fs_out_bytes']:.2f}× ({per(first, 'fs_out_bytes') / 1e3:.0f} → "
              f"{per(last, 'fs_out_bytes') / 1e3:.0f} KB).", "",
              f"Steps 2 to {last['step']} (store of {mid[0]['items_before']:,} to "
              f"{last['items_before']:,} items): CPU per new item between {cpus[0]:.0f} and "
              f"{cpus[-1]:.0f} µs, median {cpus[len(cpus) // 2]:.0f} µs.", ""]
        if warm and warm["feeds"]:
            pw = warm["cpu"] / warm["feeds"]
            adj = [(s["cpu"] - pw * (s["feeds"] - s["new_feeds"])) / s["new_items"] * 1e6
                   for s in (first, last)]
            L += [f"The 304s are part of each step's cost: the warm cycle costs {pw * 1e6:.0f} µs "
                  f"CPU per feed, so step {last['step']}'s {last['feeds'] - last['new_feeds']:,} "
                  f"not-modified feeds account for about {pw * (last['feeds'] - last['new_feeds']):.1f} "
                  f"s of its {last['cpu']:.1f} s CPU. Without them (estimate: step CPU minus "
                  f"304 feeds × warm CPU per feed) the CPU per new item goes "
                  f"{adj[0]:.0f} → {adj[1]:.0f} µs ({adj[1] / adj[0]:.2f}×).", ""]
    if warm:
        h = warm["http"]["status"]
        dbt = warm["db"]["db"] + warm["db"]["wal"]
        L += ["## Warm cycle", "",
              f"All {warm['feeds']:,} feeds once more, nothing changed (store of "
              f"{warm['stored'].get('items') or 0:,} items):", "",
              "| feeds | HTTP 200 / 304 | new items | wall s | CPU s (user + sys) | store thread CPU s "
              "| peak MiB | µs CPU / feed | written MB | others' CPU s |",
              "|---|---|---|---|---|---|---|---|---|---|",
              f"| {warm['feeds']:,} | {h.get('200', 0):,} / {h.get('304', 0):,} | "
              f"{warm['summary'].get('new', '?')} | {fmt_s(warm['wall'])} | {fmt_s(warm['cpu'])} "
              f"({fmt_s(warm['user'])} + {fmt_s(warm['sys'])}) | "
              f"{fmt_s(warm.get('threads_cpu', {}).get(STORE_THREAD, 0))} | "
              f"{warm['peak_kib'] / 1024:.0f} | {warm['cpu'] / warm['feeds'] * 1e6:.0f} | "
              f"{warm['fs_out_bytes'] / 1e6:,.0f} | {warm['others_cpu']:.0f} |", ""]
    stored = (warm or last)["stored"].get("items") or 0
    dbt = (warm or last)["db"]["db"] + (warm or last)["db"]["wal"]
    L += ["## Database bytes per item", "",
          f"After the last poll: feedsieve.db {((warm or last)['db']['db']) / 1e9:.2f} GB, -wal "
          f"{((warm or last)['db']['wal']) / 1e6:.0f} MB, for {stored:,} items: "
          f"**{dbt / max(1, stored):,.0f} bytes per item** "
          f"({(warm or last)['db']['db'] / max(1, stored):,.0f} without the -wal; the corpus has "
          f"{man['bytes'] / man['items']:.0f} B of feed XML per item).", ""]
    if res.get("dbstat"):
        tot = sum(r["bytes"] for r in res["dbstat"])
        L += ["Where the bytes are (SQLite dbstat: pages of each table and index):", "",
              "| table or index | MB | B / item | share |", "|---|---|---|---|"]
        for r in res["dbstat"]:
            if r["bytes"] < tot * 0.001:
                continue
            L.append(f"| {r['name']} | {r['bytes'] / 1e6:,.1f} | {r['bytes'] / max(1, stored):,.0f} "
                     f"| {r['bytes'] / tot:.1%} |")
        L += [""]
    chk = [s for s in steps if s["stored"].get("items") != s["expected_items"]
           or s["stored"].get("feeds_failed")]
    L += ["## Checks", "",
          "After every step `status --json` reported the stored items the shard manifests "
          "predict (items_total = feeds configured × items per feed), no feed with an error, "
          "and nginx logged one 200 per new feed and one 304 per stored feed."
          if not chk and all(s["http_ok"] for s in steps) else
          "Mismatches: " + "; ".join(
              f"step {s['step']}: stored {s['stored'].get('items')} (expected "
              f"{s['expected_items']}), failed feeds {s['stored'].get('feeds_failed')}, "
              f"http {s['http']['status']}" for s in steps
              if s in chk or not s["http_ok"]), ""]
    if res.get("notes"):
        L += ["## Findings", ""] + [f"- {n}" for n in res["notes"]] + [""]
    text = "\n".join(L) + "\n"
    path.write_text(text)
    return text


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="feedsieve at 100,000 feeds and 2 million items: "
                                 "cost per new item as the store grows, bytes per item.")
    ap.add_argument("--feeds", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10, help="polls, each adding feeds/steps feeds")
    ap.add_argument("--seed", type=int, default=1, help="seed of shard 1 (shard k: seed+k-1)")
    ap.add_argument("--now", help="gen_corpus.py --now (default: the existing corpus's, "
                    "else the start of the current UTC day)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/scale"),
                    help="corpus, state, logs (default /tmp/scale; the database grows to GBs)")
    ap.add_argument("--port", type=int, default=8199)
    ap.add_argument("--gen-jobs", type=int, default=2, help="corpus shards generated at once")
    ap.add_argument("--days-between", type=float, default=0.0,
                    help="simulated days between steps: step k runs with the clock moved "
                    "(k-1)*D days ahead (libfaketime), so the 7-day dedup window holds the "
                    "recent steps' items only; 0 (default): every step now, all in one window")
    ap.add_argument("--results", type=Path, default=HERE / "SCALE.md")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-dbstat", action="store_true", help="skip the per-table size breakdown")
    ap.add_argument("--note", action="append", default=[],
                    help="a finding to list in SCALE.md (repeatable)")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rewrite SCALE.md from OUT/scale.json")
    args = ap.parse_args(argv)
    if args.feeds % args.steps:
        ap.error("--feeds must be a multiple of --steps")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    rjson = args.out / "scale.json"
    if args.report_only:
        res = json.loads(rjson.read_text())
        if args.note:
            res["notes"] = args.note
            rjson.write_text(json.dumps(res, indent=1))
        print(write_report(res, args.results))
        return 0

    t_start = time.monotonic()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    sampler = LoadSampler()
    sampler.start()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    bin_fs = (target if target.is_absolute() else REPO / target) / "release" / "feedsieve"
    if not args.no_build:
        log("nice -n 19 cargo build --release --locked --bin feedsieve")
        sh(["nice", "-n", "19", "cargo", "build", "--release", "--locked", "--bin", "feedsieve"],
           cwd=REPO)
    # Recorded now, from the binary just built: the source may change during the run.
    built = {k: v for k, v in versions(bin_fs, Path("/nonexistent")).items()
             if k in ("feedsieve", "rustc", "nginx")}
    t_gen = time.monotonic()
    cdir, man = corpus(args)
    gen_runtime = time.monotonic() - t_gen
    rows = feed_rows(cdir)
    nshard = args.feeds // args.steps
    assert len(rows) == args.feeds, f"{len(rows)} feeds in {cdir}/feeds.tsv"

    nstate = args.out / "nginx"
    env = dict(os.environ, NGINX_STATE=str(nstate))
    subprocess.run([str(HERE / "nginx.sh"), "stop"], env=env, capture_output=True)
    sh([str(HERE / "nginx.sh"), "start", str(cdir), str(args.port)], env=env)
    alog = AccessLog(nstate / "access.log")
    state = args.out / "state"
    if state.exists():
        shutil.rmtree(state)
    state.mkdir()
    logdir = args.out / "logs"
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir()
    tool = make_tool(bin_fs)
    faketime = libfaketime() if args.days_between else None
    conf = state / "feedsieve.toml"
    res = {"args": {**vars(args), "out": str(args.out), "results": str(args.results)},
           "corpus": man, "started": started, "load_before": load_before, "steps": [],
           "notes": args.note}

    def save() -> None:
        res["runtime"] = time.monotonic() - t_start
        res["gen_runtime"] = gen_runtime
        res["load_samples"] = sampler.samples
        res["load_after"] = os.getloadavg()
        rjson.write_text(json.dumps(res, indent=1, default=str))

    try:
        items_before = 0
        for k in range(1, args.steps + 1):
            nfeeds = k * nshard
            write_config(cdir, rows[:nfeeds], args, conf)
            log(f"step {k}/{args.steps}: {nfeeds} feeds ({nshard} new), store holds {items_before}")
            if faketime:
                shift_clock(tool, faketime, (k - 1) * args.days_between)
            r = one_poll(tool, state, alog, logdir, f"step-{k:02d}")
            expected = sum(s["items"] for s in man["shards"][:k])
            # Near-duplicates pair feeds of one shard, so the shards' distinct
            # stories add up (the dedup's recall decides whether they are met).
            expected_stories = sum(s["unique_stories"] for s in man["shards"][:k])
            new = (r["stored"].get("items") or 0) - items_before
            h = r["http"]["status"]
            r.update(step=k, feeds=nfeeds, new_feeds=nshard, items_before=items_before,
                     new_items=new, expected_items=expected, expected_stories=expected_stories,
                     us_wall=r["wall"] / max(1, new) * 1e6, us_cpu=r["cpu"] / max(1, new) * 1e6,
                     http_ok=h.get("200", 0) == nshard and h.get("304", 0) == nfeeds - nshard
                     and len(h) == (2 if k > 1 else 1))
            res["steps"].append(r)
            save()
            log(f"  {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['peak_kib'] / 1024:.0f} MiB, "
                f"rc {r['rc']}, new {new}, stored {r['stored'].get('items')} (expected {expected}), "
                f"{r['us_cpu']:.0f} µs CPU/new item, http {h}, db {r['db']}, "
                f"others' CPU {r['others_cpu']:.0f} s")
            if r["rc"] != 0:
                log(f"  poll failed: see {logdir}/step-{k:02d}.out")
                break
            items_before = r["stored"].get("items") or items_before
        if res["steps"] and res["steps"][-1]["rc"] == 0:
            log(f"warm cycle: {len(rows[:args.steps * nshard])} feeds, nothing changed")
            time.sleep(1.1)
            w = one_poll(tool, state, alog, logdir, "warm")
            w["feeds"] = args.steps * nshard
            res["warm"] = w
            save()
            log(f"  {w['wall']:.1f} s wall, {w['cpu']:.1f} s CPU, {w['peak_kib'] / 1024:.0f} MiB, "
                f"http {w['http']['status']}, summary {w['summary']}")
    finally:
        subprocess.run([str(HERE / "nginx.sh"), "stop"], env=env, capture_output=True)
    if not args.no_dbstat and (state / "feedsieve.db").exists():
        log("dbstat: bytes per table and index")
        try:
            res["dbstat"] = dbstat(state / "feedsieve.db")
        except sqlite3.Error as e:
            log(f"  dbstat unavailable: {e}")
    res["machine"] = machine()
    res["versions"] = built
    sampler.stop.set()
    save()
    print(write_report(res, args.results))
    log(f"wrote {args.results} and {rjson}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
