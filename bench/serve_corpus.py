#!/usr/bin/env python3
"""Serve a gen_corpus.py corpus over HTTP, the way a well-behaved feed host does.

For quick tries without nginx; the comparison with other readers
(bench/run.py) serves the corpus with nginx (bench/nginx.sh). Every file of DIR (top level only)
is read and gzip-compressed once at startup and then served from memory:

* Content-Type by format: application/rss+xml, application/atom+xml,
  application/rdf+xml (RSS 1.0), application/feed+json; XML types carry the
  charset their prolog declares (UTF-8 or ISO-8859-1);
* ETag from the file's mtime and size ("<mtime hex>-<size hex>", as nginx
  writes it) and Last-Modified from its mtime;
* If-None-Match (weak comparison, lists, "*") and, when that header is
  absent, If-Modified-Since are answered with 304 Not Modified;
* gzip when Accept-Encoding allows it (q > 0); the gzip variant's ETag is
  weak (W/"..."), again as nginx does, and both variants validate each other;
* GET and HEAD, HTTP/1.1 keep-alive, a threaded server with a large listen
  backlog, and no per-request logging unless --verbose.

Files changed after startup are not noticed: restart the server after
regenerating the corpus.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Entry:
    body: bytes
    gz: bytes | None           # None when gzip would not make it smaller
    ctype: str
    etag: str                  # strong, quoted
    mtime: int                 # whole seconds (HTTP dates have no fractions)
    last_modified: str


def content_type(name: str, head: bytes) -> str:
    """Media type from the file name and the first bytes of the file."""
    if name.endswith(".json"):
        return "application/feed+json" if b"jsonfeed.org" in head else "application/json"
    if name.endswith(".tsv"):
        return "text/tab-separated-values; charset=utf-8"
    if name.endswith(".xml"):
        m = re.search(rb'encoding="([^"]+)"', head[:100])
        charset = m.group(1).decode("ascii") if m else "utf-8"
        if b"<rss" in head:
            kind = "application/rss+xml"
        elif b"<feed" in head:
            kind = "application/atom+xml"
        elif b"<rdf:RDF" in head:
            kind = "application/rdf+xml"
        else:
            kind = "application/xml"
        return f"{kind}; charset={charset}"
    return "application/octet-stream"


def load(root: Path, level: int) -> dict[str, Entry]:
    """Read and precompress every regular file directly under root."""
    files = {}
    for p in sorted(root.iterdir()):
        if not p.is_file():
            continue
        st = p.stat()
        body = p.read_bytes()
        gz = gzip.compress(body, compresslevel=level, mtime=0)
        mtime = int(st.st_mtime)
        files["/" + p.name] = Entry(
            body=body,
            gz=gz if len(gz) < len(body) else None,
            ctype=content_type(p.name, body[:400]),
            etag=f'"{mtime:x}-{st.st_size:x}"',
            mtime=mtime,
            last_modified=formatdate(mtime, usegmt=True),
        )
    return files


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/ prefixes are ignored."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in header.split(","))


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding lists gzip (or *) with a non-zero q."""
    if not header:
        return False
    best = None
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if name not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        if name != "*" or best is None:   # an explicit gzip beats "*"
            best = q
    return bool(best and best > 0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive; every answer has a length
    files: dict[str, Entry] = {}
    verbose = False

    def version_string(self) -> str:
        return "feedsieve-bench"

    def do_GET(self) -> None:
        self.respond(head=False)

    def do_HEAD(self) -> None:
        self.respond(head=True)

    def respond(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/":
            path = "/feeds.tsv"         # a listing of the corpus
        entry = self.files.get(path)
        if entry is None:
            self.plain(HTTPStatus.NOT_FOUND, b"not found\n", head)
            return
        use_gzip = entry.gz is not None and accepts_gzip(self.headers.get("Accept-Encoding"))
        etag = "W/" + entry.etag if use_gzip else entry.etag

        if self.not_modified(entry):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            # No Content-Length: in a 304 it would have to be the 200's length.
            self.validators(entry, etag)
            self.end_headers()
            return

        body = entry.gz if use_gzip else entry.body
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", entry.ctype)
        self.send_header("Content-Length", str(len(body)))
        if use_gzip:
            self.send_header("Content-Encoding", "gzip")
        self.validators(entry, etag)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def not_modified(self, entry: Entry) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:             # RFC 9110 13.1.3: it wins over IMS
            return etag_matches(inm, entry.etag)
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                return entry.mtime <= int(parsedate_to_datetime(ims).timestamp())
            except (TypeError, ValueError, IndexError, OverflowError):
                return False            # unparsable date: ignore the header
        return False

    def validators(self, entry: Entry, etag: str) -> None:
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", entry.last_modified)
        self.send_header("Cache-Control", "max-age=60")
        if entry.gz is not None:
            self.send_header("Vary", "Accept-Encoding")

    def plain(self, status: HTTPStatus, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if self.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024          # bursts of concurrent fetches


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Serve a benchmark corpus directory over HTTP with ETag, "
                    "Last-Modified, 304s and gzip.")
    ap.add_argument("corpus", metavar="DIR", help="corpus directory (from gen_corpus.py)")
    ap.add_argument("--port", type=int, default=8099, help="port (default 8099; 0 = any free port)")
    ap.add_argument("--bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    ap.add_argument("--gzip-level", type=int, default=6, choices=range(1, 10), metavar="1-9",
                    help="gzip compression level (default 6)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)

    root = Path(args.corpus)
    if not root.is_dir():
        ap.error(f"{root} is not a directory")
    Handler.files = load(root, args.gzip_level)
    Handler.verbose = args.verbose
    server = Server((args.bind, args.port), Handler)
    host, port = server.server_address[:2]
    size = sum(len(e.body) for e in Handler.files.values())
    # One line on stdout, so a script can learn the port when it passed 0.
    print(f"serving {len(Handler.files)} files ({size / 1e6:.1f} MB) from {root} "
          f"on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
