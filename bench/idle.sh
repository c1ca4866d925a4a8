#!/usr/bin/env bash
# Memory and CPU of an idle `feedsieve run` with many feeds configured (the target:
# 10,000 feeds, at most 40 MiB resident, no CPU between polls).
#
#   bench/idle.sh --corpus DIR [--feeds N] [--port P] [--idle SECONDS]
#                 [--settle SECONDS] [--bin PATH] [--no-build]
#
# 1. builds the release binary (cargo build --release; honours CARGO_TARGET_DIR)
#    unless --bin PATH or --no-build;
# 2. in a temporary folder: serves the corpus DIR (from gen_corpus.py, with its
#    feeds.tsv) with its own nginx (bench/nginx.sh, NGINX_STATE in the folder) on
#    127.0.0.1:PORT (default 8188);
# 3. writes a config with corpus_config.py for the first N feeds of feeds.tsv
#    (default 10000; an error if the corpus has fewer), schedule "0 0 1 1 *" (once
#    polled, no feed is due again before 1 January), its own database, listen
#    127.0.0.1:PORT+1;
# 4. starts `feedsieve run` on the empty database and waits until its "polled K
#    feeds" log lines add up to N (progress every 10 s, an error after 20 min);
#    prints how long that first pass took and how many new items it stored;
# 5. after --idle seconds (default 60) reads VmRSS, RssAnon, RssFile and Threads
#    from /proc/PID/status and utime+stime from /proc/PID/stat; --settle seconds
#    later (default 10) reads the CPU ticks again: their difference is the CPU
#    the idle daemon used (also the context switches of its threads, which count
#    wake-ups that take too little CPU to show as ticks);
# 6. stops the daemon with SIGINT, starts it again on the now populated database
#    (nothing is due), waits for /healthz, then --idle seconds, and measures again;
# 7. prints a Markdown table of both measurements, then stops the daemon and its
#    nginx and removes the folder (also on error or Ctrl-C).
#
# The daemon hands freed memory back to the system 15 s after a pass ends, so an
# --idle below about 20 s measures the first row before that happens.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
corpus="" feeds=10000 port=8188 idle=60 settle=10 bin="" build=1
pass_timeout=1200
while [ $# -gt 0 ]; do
	case "$1" in
	--corpus) corpus=$2; shift 2 ;;
	--feeds) feeds=$2; shift 2 ;;
	--port) port=$2; shift 2 ;;
	--idle) idle=$2; shift 2 ;;
	--settle) settle=$2; shift 2 ;;
	--bin) bin=$2; build=0; shift 2 ;;
	--no-build) build=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "idle.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

for v in feeds port idle settle; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "idle.sh: --$v wants a whole number, not '${!v}'" >&2; exit 2; }
done
[ "$feeds" -ge 1 ] || { echo "idle.sh: --feeds must be at least 1" >&2; exit 2; }
[ -n "$corpus" ] || { echo "idle.sh: --corpus DIR is required (a corpus from bench/gen_corpus.py)" >&2; exit 2; }
[ -f "$corpus/feeds.tsv" ] || { echo "idle.sh: $corpus/feeds.tsv missing (make the corpus with bench/gen_corpus.py)" >&2; exit 2; }
corpus=$(cd "$corpus" && pwd)
# feeds.tsv: a header "id<TAB>path", then one line per feed.
have=$(awk 'NR == 1 && /^id\t/ { next } NF { n++ } END { print n + 0 }' "$corpus/feeds.tsv")
if [ "$have" -lt "$feeds" ]; then
	echo "idle.sh: $corpus has $have feeds, fewer than --feeds $feeds (make a bigger corpus with bench/gen_corpus.py --feeds $feeds)" >&2
	exit 2
fi

if [ -z "$bin" ]; then
	target=${CARGO_TARGET_DIR:-$root/target}
	bin=$target/release/feedsieve
	if [ "$build" = 1 ]; then
		(cd "$root" && cargo build --release --locked --bin feedsieve)
	fi
fi
[ -x "$bin" ] || { echo "idle.sh: $bin missing (build it, drop --no-build or fix --bin)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

api_port=$((port + 1))
for p in "$port" "$api_port"; do
	if curl -s -o /dev/null "http://127.0.0.1:$p/"; then
		echo "idle.sh: something already listens on 127.0.0.1:$p (use --port; the daemon takes PORT+1)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/feedsieve-idle.XXXXXX")
daemon=""
nginx_started=0

# True while $1 runs (a child that exited but was not yet waited for is a zombie:
# /proc still has it, in state Z).
alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "${st%% *}" != Z ]
}

# Stops the daemon with SIGINT (SIGKILL if it is not gone within 15 s, beyond the
# 10 s the spec allows) and waits for it; its exit status goes to $stop_rc.
stop_daemon() {
	stop_rc=0
	[ -n "$daemon" ] || return 0
	if alive "$daemon"; then
		kill -INT "$daemon" 2>/dev/null || true
		for _ in $(seq 150); do alive "$daemon" || break; sleep 0.1; done
		if alive "$daemon"; then
			echo "idle.sh: the daemon (pid $daemon) did not stop within 15 s of SIGINT; killing it" >&2
			kill -KILL "$daemon" 2>/dev/null || true
		fi
	fi
	wait "$daemon" 2>/dev/null || stop_rc=$?
	daemon=""
}

cleanup() {
	stop_daemon || true
	if [ "$nginx_started" = 1 ]; then
		NGINX_STATE=$tmp/nginx "$here/nginx.sh" stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

uptime_before=$(uptime)
echo "# $(date -u +%FT%TZ) uptime: $uptime_before"

NGINX_STATE=$tmp/nginx "$here/nginx.sh" start "$corpus" "$port" >"$tmp/nginx-start.log" 2>&1 || {
	cat "$tmp/nginx-start.log" >&2
	exit 1
}
nginx_started=1
echo "# $(cat "$tmp/nginx-start.log")"

# The first N lines of feeds.tsv; the URLs point at nginx serving the whole corpus,
# so the subset folder needs nothing but the list.
mkdir "$tmp/subset"
awk -v n="$feeds" 'NR == 1 && /^id\t/ { print; next } NF && k < n { print; k++ }' \
	"$corpus/feeds.tsv" >"$tmp/subset/feeds.tsv"
cfg=$tmp/feedsieve.toml
python3 "$here/corpus_config.py" "$tmp/subset" "http://127.0.0.1:$port" -o "$cfg" \
	--database feedsieve.db --listen "127.0.0.1:$api_port" --schedule "0 0 1 1 *" 2>/dev/null
configured=$(grep -c '^\[\[feed\]\]$' "$cfg")
[ "$configured" = "$feeds" ] || { echo "idle.sh: the config has $configured feeds, not $feeds" >&2; exit 1; }
"$bin" --config "$cfg" check >"$tmp/check.log" 2>&1 || {
	echo "idle.sh: $bin --config $cfg check failed:" >&2
	cat "$tmp/check.log" >&2
	exit 1
}

# A batch with nothing new or failed is logged at debug level only; let those lines
# through too so the count of polled feeds is complete (not the per-feed "stored"
# lines of the pipeline).
log_filter="warn,feedsieve=info,feedsieve::daemon=debug,feedsieve::daemon::pipeline=info"

# Starts the daemon, logging to $1; its pid goes to $daemon.
start_daemon() {
	RUST_LOG=$log_filter "$bin" --config "$cfg" run >"$1" 2>&1 &
	daemon=$!
}

# Sums of the "polled K feeds: ... F failed, X new" lines in log $1:
# "polled failed new".
pass_counts() {
	awk '/polled [0-9]+ feeds/ {
		for (i = 1; i < NF; i++) {
			if ($i == "polled") p += $(i + 1)
			if ($(i + 1) ~ /^failed,?$/) f += $i
			if ($(i + 1) ~ /^new,?$/) x += $i
		}
	} END { print p + 0, f + 0, x + 0 }' "$1"
}

clk_tck=$(getconf CLK_TCK)

# utime + stime of the whole process (all threads, living or not), in clock ticks.
# The command name in field 2 may hold spaces; count the fields after its ")".
cpu_ticks() {
	sed 's/.*) //' "/proc/$daemon/stat" | awk '{ print $12 + $13 }'
}

# "tid switches" for each thread: voluntary plus involuntary context switches.
ctxt_switches() {
	local t
	for t in /proc/"$daemon"/task/*; do
		awk -v tid="${t##*/}" '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { if (NR) print tid, s }' \
			"$t/status" 2>/dev/null || true
	done
}

# /proc/PID/status field $1 in MiB (from kB), one decimal.
status_mib() {
	awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "$tmp/status"
}

# Waits --idle seconds, then measures; appends a table row labelled $1 to $tmp/rows.
measure() {
	local label=$1 t0 t1 c0 c1 sw
	echo "# $label: idle for ${idle} s"
	sleep "$idle"
	alive "$daemon" || { echo "idle.sh: the daemon exited while idle; log:" >&2; cat "$cur_log" >&2; exit 1; }
	cat "/proc/$daemon/status" >"$tmp/status"
	t0=$(cpu_ticks)
	ctxt_switches >"$tmp/ctxt0"
	echo "# $label: measuring CPU over ${settle} s"
	sleep "$settle"
	alive "$daemon" || { echo "idle.sh: the daemon exited while idle; log:" >&2; cat "$cur_log" >&2; exit 1; }
	t1=$(cpu_ticks)
	ctxt_switches >"$tmp/ctxt1"
	# Switches of the threads alive at both readings (a thread that ended took its
	# count with it).
	sw=$(awk 'NR == FNR { a[$1] = $2; next } $1 in a { s += $2 - a[$1] } END { print s + 0 }' \
		"$tmp/ctxt0" "$tmp/ctxt1")
	c0=$((t1 - t0))
	c1=$(awk -v t="$c0" -v hz="$clk_tck" 'BEGIN { printf "%.0f", t * 1000 / hz }')
	printf '| %s | %s | %s | %s | %s | %s ticks = %s ms in %s s | %s |\n' "$label" \
		"$(status_mib VmRSS)" "$(status_mib RssAnon)" "$(status_mib RssFile)" \
		"$(awk '$1 == "Threads:" { print $2 }' "$tmp/status")" "$c0" "$c1" "$settle" "$sw" >>"$tmp/rows"
	peaks="$peaks${peaks:+; }$label $(status_mib VmHWM) MiB"
	echo "# $label: resident $(status_mib VmRSS) MiB, CPU $c0 ticks ($c1 ms) in ${settle} s, $sw context switches"
}

: >"$tmp/rows"
peaks=""

# --- first pass on an empty database
cur_log=$tmp/daemon-1.log
echo "# starting $bin on an empty database: $feeds feeds, first pass"
start=$(date +%s.%N)
start_daemon "$cur_log"
last_progress=$(date +%s)
while :; do
	read -r polled failed new < <(pass_counts "$cur_log")
	[ "$polled" -ge "$feeds" ] && break
	alive "$daemon" || { echo "idle.sh: the daemon exited during the first pass; log:" >&2; cat "$cur_log" >&2; exit 1; }
	now=$(date +%s)
	if [ $((now - ${start%.*})) -ge "$pass_timeout" ]; then
		echo "idle.sh: timed out after ${pass_timeout} s: the daemon polled $polled of $feeds feeds; last log lines:" >&2
		tail -n 20 "$cur_log" >&2
		exit 1
	fi
	if [ $((now - last_progress)) -ge 10 ]; then
		echo "# $((now - ${start%.*})) s: polled $polled of $feeds feeds ($failed failed), $new new items"
		last_progress=$now
	fi
	sleep 0.5
done
pass_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "# first pass: $polled feeds polled in $pass_s s (to within 0.5 s), $failed failed, $new new items stored"
if [ "$failed" != 0 ]; then
	echo "idle.sh: warning: $failed polls failed; the first warnings and errors:" >&2
	grep -m 5 -E 'WARN|ERROR' "$cur_log" >&2 || true
fi
measure "after the first pass"

# --- restarted on the populated database
stop_daemon
[ "$stop_rc" = 0 ] || echo "idle.sh: warning: the daemon exited with status $stop_rc after SIGINT" >&2
echo "# stopped the daemon; restarting it on the populated database"
cur_log=$tmp/daemon-2.log
start_daemon "$cur_log"
base=http://127.0.0.1:$api_port
for _ in $(seq 600); do
	curl -sf -o /dev/null "$base/healthz" && break
	alive "$daemon" || { echo "idle.sh: the restarted daemon exited; log:" >&2; cat "$cur_log" >&2; exit 1; }
	sleep 0.1
done
curl -sf -o /dev/null "$base/healthz" || { echo "idle.sh: /healthz did not answer within 60 s of the restart" >&2; exit 1; }
echo "# restarted: /healthz: $(curl -sf "$base/healthz" | tr -d '\n')"
measure "restarted"
read -r polled2 _ _ < <(pass_counts "$cur_log")
[ "$polled2" = 0 ] || echo "idle.sh: warning: the restarted daemon polled $polled2 feeds (nothing should be due)" >&2
stop_daemon
[ "$stop_rc" = 0 ] || echo "idle.sh: warning: the daemon exited with status $stop_rc after SIGINT" >&2

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo
echo "feedsieve idle with $feeds feeds: $("$bin" --version); commit $commit$([ "$build" = 1 ] || echo " (binary $bin, not built here)"); $(nproc) CPUs; CLK_TCK $clk_tck"
echo "first pass: $polled feeds in $pass_s s, $failed failed, $new new items; measured after ${idle} s idle, CPU over ${settle} s"
echo
echo "| daemon | resident MiB | anonymous MiB | file-backed MiB | threads | idle CPU | context switches |"
echo "|---|---:|---:|---:|---:|---|---:|"
cat "$tmp/rows"
echo
echo "peak resident (VmHWM): $peaks"
echo "uptime before: $uptime_before"
echo "uptime after:  $(uptime)"
