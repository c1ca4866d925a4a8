#!/usr/bin/env python3
"""The Python reference aggregator for the benchmark: feedparser + SQLite.

Polls every feed of a list once with a pool of threads (urllib, HTTP/1.1,
one connection per request), sends the ETag and Last-Modified that the feed
last answered (If-None-Match / If-Modified-Since), parses each body with
feedparser and stores new entries in SQLite, keyed per feed on the entry id
(else link, else a hash of title and summary). This is what a careful
weekend aggregator does; it is the yardstick for warm polls.

    ref_feedparser.py URLS_FILE DB [--threads 16]

URLS_FILE: one URL per line. DB: created if missing; run it again on the
same DB for a warm poll. Prints one summary line on stdout:
"feeds N fetched N not_modified N failed N items_new N items_total N".
Needs feedparser (pip install feedparser); stdlib otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import feedparser

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, title TEXT, status INTEGER);
CREATE TABLE IF NOT EXISTS item (
    feed_url TEXT NOT NULL, key TEXT NOT NULL, title TEXT, link TEXT,
    published TEXT, content TEXT, PRIMARY KEY (feed_url, key));
"""


def entry_key(e) -> str:
    k = e.get("id") or e.get("link")
    if k:
        return k
    blob = (e.get("title", "") + "\0" + e.get("summary", "")).encode("utf-8")
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def entry_content(e) -> str:
    if e.get("content"):
        return e["content"][0].get("value", "")
    return e.get("summary", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="feedparser + SQLite reference poller")
    ap.add_argument("urls", help="file with one feed URL per line")
    ap.add_argument("db", help="SQLite database (created if missing)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args(argv)

    urls = [u.strip() for u in open(args.urls, encoding="utf-8") if u.strip()]
    db = sqlite3.connect(args.db, check_same_thread=False)
    db.executescript(SCHEMA)
    validators = {u: (e, lm) for u, e, lm in db.execute("SELECT url, etag, last_modified FROM feed")}
    lock = threading.Lock()          # one writer; sqlite3 connections are not thread-safe
    counts = {"fetched": 0, "not_modified": 0, "failed": 0, "items_new": 0}

    def poll(url: str) -> None:
        etag, lm = validators.get(url, (None, None))
        req = urllib.request.Request(url, headers={"User-Agent": "feedsieve-bench-ref/1"})
        if etag:
            req.add_header("If-None-Match", etag)
        if lm:
            req.add_header("If-Modified-Since", lm)
        try:
            with urllib.request.urlopen(req, timeout=args.timeout) as resp:
                body = resp.read()
                etag, lm = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                status = resp.status
        except urllib.error.HTTPError as e:
            with lock:
                if e.code == 304:
                    counts["not_modified"] += 1
                else:
                    counts["failed"] += 1
            return
        except (urllib.error.URLError, OSError):
            with lock:
                counts["failed"] += 1
            return
        parsed = feedparser.parse(body)
        rows = [(url, entry_key(e), e.get("title"), e.get("link"),
                 e.get("published") or e.get("updated"), entry_content(e))
                for e in parsed.entries]
        with lock:
            counts["fetched"] += 1
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO item VALUES (?, ?, ?, ?, ?, ?)", rows)
            counts["items_new"] += db.total_changes - before
            db.execute("INSERT OR REPLACE INTO feed VALUES (?, ?, ?, ?, ?)",
                       (url, etag, lm, parsed.feed.get("title"), status))
            db.commit()

    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(poll, urls))
    total = db.execute("SELECT count(*) FROM item").fetchone()[0]
    db.close()
    print(f"feeds {len(urls)} fetched {counts['fetched']} not_modified {counts['not_modified']} "
          f"failed {counts['failed']} items_new {counts['items_new']} items_total {total}")
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
