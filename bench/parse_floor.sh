#!/usr/bin/env bash
# sfeed's parse-only time on a corpus, and how feedsieve's parsing compares with it.
#
#     bench/parse_floor.sh [CORPUS_DIR] [RUNS]
#
# The performance issue's target: "Parse and normalise: at least 50 MB/s per core on
# the corpus (criterion), within 3x of sfeed's parse-only time." sfeed's time is
# measured as bench/run.py measures its "Floor": every feed file of the corpus, in
# feeds.tsv order, in one stream on sfeed's stdin (here from one file that holds
# them all, so no `cat` runs beside it), no network, nothing stored. hyperfine
# times RUNS runs (default 10) after one warm-up and subtracts the shell's start-up.
#
# CORPUS_DIR defaults to $FEEDSIEVE_BENCH_CORPUS, else to the corpus that
# `cargo bench --bench parse` generates. sfeed reads XML only: JSON Feed files are
# left out (and counted). When criterion has results for the same corpus
# (target/criterion/{parse,parse_normalise}/FxI), their mean times are set against
# sfeed's mean wall time; results measured with FEEDSIEVE_BENCH_CLOCK=cpu
# (FxI-cpu) against sfeed's user+system time.
#
# Installs sfeed and hyperfine with apt-get when they are missing (as bench/run.py
# does). Run it on an idle machine, or under the same `nice` as the criterion run.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
corpus=${1:-${FEEDSIEVE_BENCH_CORPUS:-$target/bench-corpus/seed1-rss2-atom-rss1-600x20}}
runs=${2:-10}
[[ -f $corpus/feeds.tsv ]] || {
    echo "$corpus: no feeds.tsv; generate a corpus with bench/gen_corpus.py (or run cargo bench --bench parse)" >&2
    exit 1
}

missing=()
command -v sfeed >/dev/null || missing+=(sfeed)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if ((${#missing[@]})); then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "apt-get install -y ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}" >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}" >/dev/null; }
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
all=$work/corpus.xml
files=0
skipped=0
while IFS=$'\t' read -r _ path; do
    case $path in
    *.xml) cat "$corpus/$path" >>"$all" && files=$((files + 1)) ;;
    *) skipped=$((skipped + 1)) ;;
    esac
done < <(tail -n +2 "$corpus/feeds.tsv")
bytes=$(stat -c %s "$all")
items=$(sfeed <"$all" | wc -l)

hyperfine --style basic --warmup 1 --runs "$runs" --export-csv "$work/sfeed.csv" "sfeed < $all" >&2
# command,mean,stddev,median,user,system,min,max
read -r mean stddev min cpu < <(awk -F, 'NR == 2 { print $2, $3, $7, $5 + $6 }' "$work/sfeed.csv")

echo
echo "corpus: $corpus ($files XML files, $bytes bytes; $skipped other files left out)"
echo "load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v b="$bytes" -v m="$mean" -v s="$stddev" -v lo="$min" -v c="$cpu" -v n="$items" -v r="$runs" 'BEGIN {
    printf "sfeed parse-only: %.3f s mean (± %.3f, min %.3f; user+sys %.3f s) of %d runs: %.1f MB/s, %d items out\n",
        m, s, lo, c, r, b / m / 1e6, n
}'

if ((skipped)); then
    echo "note: criterion parsed the $skipped non-XML files too; the times below compare different file sets"
fi
name=$(sed -nE 's/.*"feeds": ([0-9]+),.*/\1/p' "$corpus/manifest.json" 2>/dev/null | head -1)
per=$(sed -nE 's/.*"items": ([0-9]+),.*/\1/p' "$corpus/manifest.json" 2>/dev/null | head -1)
[[ -n $name && -n $per ]] || exit 0
name="${name}x$((per / name))"
for group in parse parse_normalise; do
    for clock in wall cpu; do
        if [[ $clock == cpu ]]; then id=$name-cpu sfeed=$cpu; else id=$name sfeed=$mean; fi
        est=$target/criterion/$group/$id/new/estimates.json
        [[ -f $est ]] || continue
        ns=$(sed -nE 's/^\{"mean":\{"confidence_interval":\{[^}]*\},"point_estimate":([0-9.eE+-]+).*/\1/p' "$est")
        awk -v g="$group/$id" -v c="$clock" -v ns="$ns" -v m="$sfeed" -v b="$bytes" 'BEGIN {
            s = ns / 1e9
            printf "feedsieve %s (criterion, %s time): %.3f s mean: %.1f MB/s, %.2fx sfeed'"'"'s %s time (target: at most 3x)\n",
                g, c, s, b / s / 1e6, s / m, c == "cpu" ? "user+sys" : "wall"
        }'
        found=1
    done
done
[[ -n ${found:-} ]] || echo "no criterion results for $name under $target/criterion: run cargo bench --bench parse"
