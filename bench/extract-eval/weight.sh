#!/usr/bin/env bash
# Build weight of each candidate on its own: the crates its normal dependency tree holds
# (cargo tree -e normal, unique package names and versions, the candidate included, the
# empty probe crate not) and the wall time of a clean `cargo build --release` of a probe
# crate that depends on it alone, each with its own target folder under target/weight/.
# The dependency line is the same as in Cargo.toml. Usage: [BASE=<commit>] bash weight.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")"
build=1
[[ ${1:-} == --no-build ]] && build=0

declare -A deps=(
    [dom_smoothie]='dom_smoothie = "0.19"'
    [article_scraper]='article_scraper = { version = "3", default-features = false }'
    [legible]='legible = "0.5"'
    [readabilityrs]='readabilityrs = "0.1"'
    [llm_readability]='llm_readability = "0.0.17"'
    [readability]='readability = { version = "0.3", default-features = false }'
)
# The third column counts the crates (name and version) of that tree that feedsieve's own
# normal dependency tree does not already hold: what adding the candidate would add to
# feedsieve's build. feedsieve is taken as committed at BASE (default HEAD; unpacked under
# target/weight/, its Cargo.lock read with --locked), not as the work tree has it. Once a
# candidate is in feedsieve, pass the commit before it, e.g. BASE=bafe7bc (before full_text).
tree() { cargo tree -q --locked -e normal --prefix none 2>/dev/null | sed 's/ (\*)$//; s/ (proc-macro)$//; s/ (.*)$//' | sort -u; }
head=target/weight/feedsieve-head
rm -rf "$head" && mkdir -p "$head"
git -C ../.. archive "${BASE:-HEAD}" | tar -x -C "$head"
grep -q '^\[workspace\]' "$head/Cargo.toml" || printf '\n[workspace]\n' >>"$head/Cargo.toml" # not ours
base=$(cd "$head" && tree) || true
[[ -n $base ]] || { echo "cargo tree failed on feedsieve's HEAD" >&2; exit 1; }
echo "feedsieve at ${BASE:-HEAD} ($(git -C ../.. rev-parse --short "${BASE:-HEAD}")): $(wc -l <<<"$base") crates in its normal dependency tree"
echo

printf '| crate | crates in its normal dependency tree | of them not yet in feedsieve | clean release build alone (s, 2 cores) |\n|---|---|---|---|\n'
for name in dom_smoothie article_scraper legible readabilityrs llm_readability readability; do
    dir=target/weight/$name
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "probe-$name"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
${deps[$name]}
EOF
    echo 'fn main() {}' >"$dir/src/main.rs"
    (cd "$dir" && cargo generate-lockfile -q)
    mine=$(cd "$dir" && tree | grep -v "^probe-$name ")
    count=$(wc -l <<<"$mine")
    new=$(comm -23 <(echo "$mine") <(echo "$base") | wc -l)
    secs=-
    if ((build)); then
        rm -rf "$dir/target"
        start=$(date +%s.%N)
        (cd "$dir" && cargo build -q --release >/dev/null 2>&1)
        secs=$(printf '%.0f' "$(echo "$(date +%s.%N) - $start" | bc)")
    fi
    printf '| %s | %s | %s | %s |\n' "$name" "$count" "$new" "$secs"
done
