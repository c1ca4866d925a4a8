#!/usr/bin/env python3
"""Peak memory of one `feedsieve poll` against hostile bodies (issue "Hostile feeds
and crashes"): a gzip bomb (1 GiB decoded from 1 MiB), a 100 GB Content-Length, an
endless chunked body, a 9 MiB description and 50,000 items, beside a control run.

    python3 bench/hostile_memory.py target/release/feedsieve

Each case is one fresh database and one `/usr/bin/time -v BINARY --config X poll`
with max_feed_bytes = 10MiB; the table gives the maximum resident set size.
"""
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIMIT = 10 * 1024 * 1024


def gzip_bomb(decoded):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(b'<rss version="2.0"><channel><title>bomb</title><description>')]
    block = b"a" * (1 << 20)
    for _ in range(decoded >> 20):
        out.append(c.compress(block))
    out.append(c.flush())
    return b"".join(out)


BOMB = gzip_bomb(1 << 30)
HUGE = (
    '<rss version="2.0"><channel><title>Huge</title><item><guid>h1</guid><title>T</title><description>'
    + "word " * (9 * 1024 * 1024 // 5)
    + "</description></item></channel></rss>"
).encode()
MANY = (
    '<rss version="2.0"><channel><title>Many</title>'
    + "".join(
        f"<item><guid>m{i}</guid><title>Item {i} of many</title><description>Text of item {i}.</description></item>"
        for i in range(50_000)
    )
    + "</channel></rss>"
).encode()
CONTROL = b'<rss version="2.0"><channel><title>C</title><item><guid>c1</guid><title>Control</title></item></channel></rss>'


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def head(self, extra):
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()

    def do_GET(self):
        try:
            if self.path == "/bomb":
                self.head([("Content-Encoding", "gzip"), ("Content-Length", str(len(BOMB)))])
                self.wfile.write(BOMB)
            elif self.path == "/big":
                self.head([("Content-Length", str(100 * 1024**3))])
                while True:
                    self.wfile.write(b" " * 65536)
            elif self.path == "/chunked":
                self.head([("Transfer-Encoding", "chunked")])
                while True:
                    self.wfile.write(b"10000\r\n" + b" " * 65536 + b"\r\n")
            else:
                body = {"/huge": HUGE, "/many": MANY, "/control": CONTROL}.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.head([("Content-Length", str(len(body)))])
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/feedsieve")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    print(f"max_feed_bytes = {LIMIT} ({LIMIT >> 20} MiB); gzip bomb {len(BOMB)} bytes compressed, 1 GiB decoded")
    print(f"{'case':10} {'peak RSS (MiB)':>15}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ["control", "bomb", "big", "chunked", "huge", "many"]:
            cfg = os.path.join(tmp, f"{case}.toml")
            with open(cfg, "w") as f:
                f.write(
                    f'[daemon]\ndatabase = "{case}.db"\nlisten = "127.0.0.1:1"\ntimeout = "60s"\n'
                    f'max_feed_bytes = "10MiB"\n\n[[feed]]\nid = "{case}"\n'
                    f'url = "http://127.0.0.1:{port}/{case}"\n\n[[topic]]\nid = "all"\nfeeds = ["{case}"]\n'
                )
            r = subprocess.run(
                ["/usr/bin/time", "-v", binary, "--config", cfg, "poll"], capture_output=True, text=True
            )
            rss = next(int(l.split()[-1]) for l in r.stderr.splitlines() if "Maximum resident" in l)
            warn = next((l.split("poll failed: ", 1)[1] for l in r.stderr.splitlines() if "poll failed" in l), "stored")
            print(f"{case:10} {rss / 1024:15.1f}  exit {r.returncode}: {warn}")
    server.shutdown()


if __name__ == "__main__":
    main()
