#!/bin/sh
# A private PostgreSQL server for the benchmark, on 127.0.0.1 only.
#
#   bench/pg.sh start [PORT]   (PORT default 5499)
#   bench/pg.sh stop           (pg_ctl stop -m fast)
#   bench/pg.sh status
#
# Debian's binaries: the newest /usr/lib/postgresql/VERSION/bin (initdb,
# pg_ctl); Debian's `postgresql` package is installed (apt-get install -y) if
# there is none. The cluster is our own, not Debian's pg_createcluster one:
#
#   $PG_STATE (default bench/out/pg)   owned by the user the server runs as
#     data/      the cluster (initdb on the first start, or when its major
#                version is not the newest installed one)
#     .s.PGSQL.PORT   the unix socket
#     server.log      what the server logs
#
# Run as root, initdb and pg_ctl run as the `postgres` system user
# (runuser -u postgres --) and $PG_STATE is chowned to it; otherwise they run
# as the caller. Either way the superuser is called `postgres`, so a bench
# connects with postgres://postgres@127.0.0.1:PORT/DB.
#
# Authentication: trust, for TCP on 127.0.0.1 (and ::1) and for the unix
# socket, i.e. any local user can connect as any role without a password.
# Fine for a throwaway cluster on loopback that holds only generated feeds;
# never point this at data that matters.
#
# Settings: PostgreSQL's defaults (fsync, synchronous_commit, WAL, autovacuum,
# JIT, ... all as shipped), because the bench measures a stock server, except
#   shared_buffers = 256MB    (the default 128MB is the one setting nearly every
#                              installation raises)
# plus where to listen: listen_addresses = '127.0.0.1', port = PORT,
# unix_socket_directories = $PG_STATE. They are given on pg_ctl's command line
# (-o "-c ..."), so data/postgresql.conf stays initdb's. initdb uses UTF8 and
# the C.UTF-8 locale.
#
# $PG_OPTS (default empty, which changes nothing above) is appended to those
# server options, for a bench that needs more, e.g.
#   PG_OPTS="-c shared_preload_libraries=pg_stat_statements" bench/pg.sh start
# (bench/cluster.py does that to count statements per feed poll).
#
# The data folder must be on the same disk as the SQLite state (bench/out),
# not in RAM, or the comparison favours PostgreSQL: `start` refuses a tmpfs or
# ramfs $PG_STATE.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
state=${PG_STATE:-$here/out/pg}
data=$state/data

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

find_bin() {
	# The newest major version installed (sort -V: 9.6 < 10 < 15 < 16).
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	return 1
}

install_pg() {
	if ! find_bin >/dev/null; then
		echo "pg.sh: installing postgresql from Debian" >&2
		sudo_=""
		[ "$(id -u)" -ne 0 ] && sudo_=sudo
		$sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null 2>&1 || {
			$sudo_ apt-get update -qq &&
				$sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null
		}
	fi
	# Debian starts its own cluster (port 5432) after installing; that one is
	# not ours and is left alone.
	find_bin
}

running() {
	bin=$(find_bin) || return 1
	[ -f "$data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start() {
	port=${1:-5499}
	bin=$(install_pg)
	version=$(basename "$(dirname "$bin")")
	mkdir -p "$state"
	state=$(cd "$state" && pwd)
	data=$state/data
	case $(stat -f -c %T "$state") in
	tmpfs | ramfs)
		echo "pg.sh: $state is in RAM ($(stat -f -c %T "$state")); put PG_STATE on the disk bench/out is on" >&2
		exit 2
		;;
	esac
	if running; then
		echo "pg.sh: already running ($data); stop it first" >&2
		exit 1
	fi
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || { echo "pg.sh: no postgres user (is Debian's postgresql package installed?)" >&2; exit 1; }
		chown -R postgres:postgres "$state"
	fi
	if [ -f "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" != "$version" ]; then
		echo "pg.sh: $data is a PostgreSQL $(cat "$data/PG_VERSION") cluster; making a $version one" >&2
		rm -rf "$data"
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust \
			-E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 || {
			echo "pg.sh: initdb failed; see $state/initdb.log" >&2
			exit 1
		}
	fi
	as_pg "$bin/pg_ctl" -D "$data" -l "$state/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$state -c shared_buffers=256MB${PG_OPTS:+ $PG_OPTS}" \
		start >/dev/null || {
		echo "pg.sh: the server did not start (port $port taken?); see $state/server.log:" >&2
		tail -n 5 "$state/server.log" >&2
		exit 1
	}
	echo "PostgreSQL $version on 127.0.0.1:$port (data $data, socket in $state, log $state/server.log)"
}

stop() {
	if running; then
		as_pg "$(find_bin)/pg_ctl" -D "$data" -m fast -w stop >/dev/null
		echo "stopped PostgreSQL ($data)"
	else
		echo "pg.sh: not running"
	fi
}

case "${1:-}" in
start) start "${2:-}" ;;
stop) stop ;;
status)
	if running; then
		echo "running (pid $(head -n 1 "$data/postmaster.pid"), port $(sed -n 4p "$data/postmaster.pid"), data $data)"
	else
		echo "not running"
		exit 1
	fi
	;;
*) echo "usage: $0 start [PORT] | stop | status" >&2; exit 2 ;;
esac
