#!/usr/bin/env bash
# Runs the fuzz targets one after another, each for SECONDS, on one core.
#
#   fuzz/run.sh SECONDS [TARGET...]     (default: every target)
#
# Seeds fuzz/corpus/TARGET/ (git-ignored) from tests/fixtures, builds with
# `cargo +nightly fuzz build`, runs libFuzzer with one job and a memory cap, and
# prints per target the executions (libFuzzer's final "#N DONE" line) and the
# findings (crash-*, leak-*, timeout-*, oom-* files in fuzz/artifacts/TARGET/).
# Exits 1 if any target left a new finding.
#
# libFuzzer stops at the first finding. With FUZZ_KEEP_GOING=1 it runs with
# -fork=1 -ignore_crashes=1 instead (still one worker process), so a target uses its
# whole time and records every distinct finding; the executions are then read from
# the last progress line rather than from "#N DONE".
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
root=$(cd .. && pwd)

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(parse_publish sanitize html_page)
fi
rss_mb=${FUZZ_RSS_MB:-2048}
keep_going=()
if [[ ${FUZZ_KEEP_GOING:-0} == 1 ]]; then
    keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi
toolchain=${FUZZ_TOOLCHAIN:-nightly}

seed() {
    local target=$1 dir=corpus/$1
    mkdir -p "$dir"
    case $target in
        parse_publish)
            find "$root/tests/fixtures" -type f \( -name '*.xml' -o -name '*.json' -o -name '*.txt' -o -name '*.html' \) \
                -not -path '*/dedup/*' -exec cp -n {} "$dir/" \;
            ;;
        sanitize)
            # Item HTML: each fixture's text after a selector byte (0: no base URL, 1: a web base).
            local f
            for f in "$root"/tests/fixtures/xss.xml "$root"/tests/fixtures/formats/*.xml "$root"/tests/fixtures/fuzz/sanitize-*; do
                [[ -f $f ]] || continue
                { printf '\001'; cat "$f"; } >"$dir/seed-$(basename "$f")"
            done
            ;;
        html_page)
            find "$root/tests/fixtures" -maxdepth 1 -type f -name '*.html' -exec cp -n {} "$dir/" \;
            ;;
    esac
    # Reproducers of past findings for this target are seeds too.
    if [[ -d $root/tests/fixtures/fuzz ]]; then
        find "$root/tests/fixtures/fuzz" -type f -name "$target-*" -exec cp -n {} "$dir/" \;
    fi
}

echo "== building (cargo +$toolchain fuzz build)"
if [[ ${#targets[@]} -gt 1 ]]; then
    cargo "+$toolchain" fuzz build
else
    cargo "+$toolchain" fuzz build "${targets[0]}"
fi

status=0
summary=()
for t in "${targets[@]}"; do
    seed "$t"
    mkdir -p "artifacts/$t" logs
    log=logs/$t.log
    touch "logs/$t.start"
    echo "== $t: ${seconds}s (log: fuzz/$log)"
    # No -jobs, and -fork at most 1: one process on one core. -timeout flags an input
    # that takes over 10 s; the rss limit turns runaway allocation into a finding.
    set +e
    cargo "+$toolchain" fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 \
        -dict="$fuzz_dir/feeds.dict" -print_final_stats=1 ${keep_going[@]+"${keep_going[@]}"} >"$log" 2>&1
    rc=$?
    set -e
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1 || true)
    rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -n 1 || true)
    if [[ -z $done_line ]]; then
        # Fork mode, or stopped by a finding: the last progress line "#N ... exec/s: R".
        done_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
        execs=${execs:-$(sed -E 's/^#([0-9]+).*/\1/' <<<"$done_line")}
        rate=${rate:-$(sed -nE 's/.*exec\/s:? ([0-9]+).*/\1/p' <<<"$done_line")}
    fi
    mapfile -t found < <(find "artifacts/$t" -type f -newer "logs/$t.start" | sort)
    new=${#found[@]}
    if [[ $new -gt 0 || $rc -ne 0 ]]; then
        status=1
    fi
    line="$t: ${seconds}s, ${execs:-?} executions (${rate:-?} exec/s), exit $rc, $new new finding(s)"
    summary+=("$line")
    echo "   $line"
    [[ -n $done_line ]] && echo "   $done_line"
    if [[ $new -gt 0 ]]; then
        printf '   finding: fuzz/%s\n' "${found[@]}"
        grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/   /' || true
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
