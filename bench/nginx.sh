#!/bin/sh
# Serve a benchmark corpus with nginx on 127.0.0.1, as the current user.
#
#   bench/nginx.sh start CORPUS_DIR [PORT]   (PORT default 8099)
#   bench/nginx.sh stop
#   bench/nginx.sh status
#
# nginx is installed from Debian (apt-get install -y nginx-light) if missing.
# It runs with a private config under $NGINX_STATE (default bench/out/nginx):
# its own pid file, error log, temp dirs and an access log whose lines are
#
#   <status> <body bytes sent> <request uri>
#
# so a script can count what a poll fetched (200 vs 304, and bytes) by
# reading the lines appended during the poll; bench/run.py does that.
#
# Validators: ETag (nginx's "<mtime hex>-<size hex>") and Last-Modified from
# the file's mtime, on every response. If-None-Match and If-Modified-Since are
# answered with 304. `if_modified_since before` makes any If-Modified-Since at
# or after the file's mtime count (nginx's default, `exact`, needs the date to
# equal the mtime, which a client that sends its cache file's mtime, as
# sfeed_update with `curl -z` does, never matches).
#
# No Cache-Control or Expires: every client revalidates on every poll (an
# HTTP-caching client such as feed2exec's cachecontrol would otherwise answer
# from its own cache without asking, and we want to measure the 304 path).
# No gzip: the transfer is on loopback, and compressing on the fly would take
# CPU from the clients being measured on a small machine.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
state=${NGINX_STATE:-$here/out/nginx}
conf=$state/nginx.conf
pidfile=$state/nginx.pid

running() {
	[ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

find_nginx() {
	for n in /usr/sbin/nginx "$(command -v nginx 2>/dev/null || true)"; do
		[ -n "$n" ] && [ -x "$n" ] && { echo "$n"; return 0; }
	done
	return 1
}

install_nginx() {
	if ! find_nginx >/dev/null; then
		echo "nginx.sh: installing nginx-light from Debian" >&2
		sudo_=""
		[ "$(id -u)" -ne 0 ] && sudo_=sudo
		$sudo_ apt-get install -y nginx-light >/dev/null 2>&1 || {
			$sudo_ apt-get update -qq && $sudo_ apt-get install -y nginx-light >/dev/null
		}
	fi
	# Debian starts the system nginx on port 80 after installing it; that one
	# is not ours and is left alone.
	find_nginx
}

start() {
	corpus=$(cd "$1" && pwd)
	port=${2:-8099}
	[ -f "$corpus/feeds.tsv" ] || { echo "nginx.sh: $corpus/feeds.tsv missing (run gen_corpus.py)" >&2; exit 2; }
	if running; then
		echo "nginx.sh: already running (pid $(cat "$pidfile")); stop it first" >&2
		exit 1
	fi
	nginx=$(install_nginx)
	mkdir -p "$state/tmp"
	user_line=""
	# As root, nginx would switch its workers to "nobody"; stay the caller.
	[ "$(id -u)" -eq 0 ] && user_line="user root root;"
	cat >"$conf" <<EOF
# written by bench/nginx.sh; regenerated on every start
$user_line
worker_processes 1;
pid $pidfile;
error_log $state/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
    types { application/xml xml; application/feed+json json; text/tab-separated-values tsv; }
    default_type application/octet-stream;
    log_format bench '\$status \$body_bytes_sent \$request_uri';
    access_log $state/access.log bench;
    client_body_temp_path $state/tmp/body;
    proxy_temp_path $state/tmp/proxy;
    fastcgi_temp_path $state/tmp/fastcgi;
    uwsgi_temp_path $state/tmp/uwsgi;
    scgi_temp_path $state/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    server_tokens off;
    etag on;
    if_modified_since before;
    gzip off;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $corpus;
        location / { try_files \$uri =404; }
    }
}
EOF
	"$nginx" -c "$conf" -p "$state" -e "$state/error.log"
	i=0
	while ! running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	running || { echo "nginx.sh: nginx did not start; see $state/error.log" >&2; exit 1; }
	echo "serving $corpus on http://127.0.0.1:$port (nginx pid $(cat "$pidfile"), log $state/access.log)"
}

stop() {
	if running; then
		pid=$(cat "$pidfile")
		kill -QUIT "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		echo "stopped nginx (pid $pid)"
	else
		echo "nginx.sh: not running"
	fi
}

case "${1:-}" in
start) [ $# -ge 2 ] || { echo "usage: $0 start CORPUS_DIR [PORT]" >&2; exit 2; }; start "$2" "${3:-}" ;;
stop) stop ;;
status) if running; then echo "running (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
*) echo "usage: $0 start CORPUS_DIR [PORT] | stop | status" >&2; exit 2 ;;
esac
