#!/usr/bin/env bash
# Serving throughput of cached topic feeds on loopback, measured with wrk.
#
#   bench/serve.sh [--runs N] [--duration 10s] [--connections 64] [--threads 2]
#                  [--feeds F] [--items M] [--port P] [--pin] [--no-build]
#
# 1. builds the release binary (cargo build --release; honours CARGO_TARGET_DIR);
# 2. installs wrk from Debian if missing;
# 3. in a temporary folder: a corpus from gen_corpus.py (default 200 feeds x 20
#    items, seed 1), a config from corpus_config.py with file:/// URLs, its own
#    database, listen 127.0.0.1:PORT (default 8177), schedule @daily and the
#    corpus topic "border-security" (50 entries); one `feedsieve poll` fills the
#    database, so the daemon has nothing to fetch while it is measured;
# 4. starts `feedsieve run`, waits for /healthz;
# 5. for each run, after printing `uptime`, runs
#    `wrk -t2 -c64 -d10s --latency` against
#      /topics/border-security.atom, .rss, .json  (full body, no compression),
#      /topics/border-security.atom with Accept-Encoding: gzip,
#      /topics/border-security.atom with If-None-Match: <its ETag>   (304),
#      /healthz                                  (a count(*) on the blocking pool);
# 6. prints requests/s, p50 and p99 per URL and run, and the median over runs;
# 7. stops the daemon and removes the folder (also on error or Ctrl-C).
#
# wrk runs on the same machine. Without --pin, wrk and the daemon share every
# core; with --pin the daemon runs on CPU 1 (`taskset -c 1`, so its runtime has
# one worker thread) and wrk on CPU 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=3 duration=10s connections=64 threads=2 feeds=200 items=20 port=8177 pin=0 build=1
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--connections) connections=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--feeds) feeds=$2; shift 2 ;;
	--items) items=$2; shift 2 ;;
	--port) port=$2; shift 2 ;;
	--pin) pin=1; shift ;;
	--no-build) build=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "serve.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/feedsieve
if [ "$build" = 1 ]; then
	(cd "$root" && cargo build --release --locked --bin feedsieve)
fi
[ -x "$bin" ] || { echo "serve.sh: $bin missing (build it or drop --no-build)" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
	echo "serve.sh: installing wrk from Debian" >&2
	sudo_=""
	[ "$(id -u)" -ne 0 ] && sudo_=sudo
	$sudo_ apt-get install -y wrk >/dev/null 2>&1 || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y wrk >/dev/null; }
fi
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
	echo "serve.sh: something already listens on 127.0.0.1:$port (use --port)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/feedsieve-serve.XXXXXX")
server=""
cleanup() {
	if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
		kill -TERM "$server"
		wait "$server" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$here/gen_corpus.py" --feeds "$feeds" --items "$items" --seed 1 --out "$tmp/corpus" --quiet
python3 "$here/corpus_config.py" "$tmp/corpus" -o "$tmp/feedsieve.toml" --file-urls \
	--database feedsieve.db --listen "127.0.0.1:$port" --schedule "@daily" --limit 50 2>/dev/null
"$bin" --config "$tmp/feedsieve.toml" poll >"$tmp/poll.log" 2>&1 || { cat "$tmp/poll.log" >&2; exit 1; }

server_cmd=("$bin" --config "$tmp/feedsieve.toml" run)
wrk_cmd=(wrk)
if [ "$pin" = 1 ]; then
	server_cmd=(taskset -c 1 "${server_cmd[@]}")
	wrk_cmd=(taskset -c 0 wrk)
fi
RUST_LOG=warn "${server_cmd[@]}" 2>"$tmp/server.log" &
server=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do
	curl -sf -o /dev/null "$base/healthz" && break
	kill -0 "$server" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
	sleep 0.1
done
curl -sf -o /dev/null "$base/healthz" || { echo "serve.sh: /healthz did not answer" >&2; exit 1; }

topic=$base/topics/border-security
etag=$(curl -sfI "$topic.atom" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
[ -n "$etag" ] || { echo "serve.sh: no ETag on $topic.atom" >&2; exit 1; }
echo "feedsieve: $("$bin" --version); $(nproc) CPUs; wrk -t$threads -c$connections -d$duration --latency$([ "$pin" = 1 ] && echo "; daemon on CPU 1, wrk on CPU 0")"
echo "topic: $(curl -sf "$base/healthz" | tr -d '\n'); body bytes atom $(curl -sf "$topic.atom" | wc -c)," \
	"rss $(curl -sf "$topic.rss" | wc -c), json $(curl -sf "$topic.json" | wc -c)," \
	"atom gzip $(curl -sf -H 'Accept-Encoding: gzip' "$topic.atom" | wc -c)"

# name|url|extra header (may be empty)
cases=(
	"atom|$topic.atom|"
	"rss|$topic.rss|"
	"json|$topic.json|"
	"atom gzip|$topic.atom|Accept-Encoding: gzip"
	"atom 304|$topic.atom|If-None-Match: $etag"
	"healthz|$base/healthz|"
)

# wrk's latency figures in milliseconds.
ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.3f", n }'
}

results=$tmp/results.tsv
: >"$results"
printf '%-4s %-10s %12s %9s %9s %s\n' run url "requests/s" "p50 ms" "p99 ms" notes
for run in $(seq "$runs"); do
	echo "# run $run: uptime: $(uptime)"
	for c in "${cases[@]}"; do
		IFS='|' read -r name url hdr <<<"$c"
		args=(-t"$threads" -c"$connections" -d"$duration" --latency)
		[ -n "$hdr" ] && args+=(-H "$hdr")
		out=$("${wrk_cmd[@]}" "${args[@]}" "$url")
		rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
		p50=$(ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
		p99=$(ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
		notes=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ' ' || true)
		printf '%-4s %-10s %12.0f %9s %9s %s\n' "$run" "$name" "$rps" "$p50" "$p99" "$notes"
		printf '%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" >>"$results"
	done
done
echo "# after: uptime: $(uptime)"

echo
echo "median of $runs runs:"
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99 = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99)))
print(f"{'url':<10} {'requests/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
for name, r in rows.items():
    med = [statistics.median(x[i] for x in r) for i in range(3)]
    print(f"{name:<10} {med[0]:>12,.0f} {med[1]:>9.3f} {med[2]:>9.3f}")
EOF
