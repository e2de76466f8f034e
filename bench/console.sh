#!/usr/bin/env bash
# The developer console's two figures:
#   1. its transfer size, compressed as a browser asks (br, and gzip), every file a first
#      visit loads (the page, its modules, its styles, the service worker, the vendored
#      uPlot and js-yaml), fetched from `bridge serve`;
#   2. the time from opening the console to a generated dashboard drawn on the demo
#      warehouse (sign in, team, demo warehouse connected, validated and scanned, generate
#      with the `builtin` provider, grid drawn), the median of RUNS runs of the headless
#      Chromium test (functions/bridge/tests/console.rs), which prints it.
#
#   bench/console.sh            # RUNS=5 by default; needs Chromium and Postgres as the tests do
#
# Uses bench/lib.sh (Postgres at $BENCH_DATABASE_URL); BRIDGE_BIN defaults to the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs="${RUNS:-5}"
export BRIDGE_BIN="${BRIDGE_BIN:-target/debug/bridge}"
cargo build --locked -p bridge >/dev/null 2>&1

start_bridge console
files="console/ console/app.css console/app.js console/api.js console/tiles.js console/sw.js
  console/vendor/uPlot.iife.min.js console/vendor/uPlot.min.css console/vendor/js-yaml.min.js"
for enc in identity gzip br; do
  total=0
  for f in $files; do
    n=$(curl -s -o /dev/null -H "Accept-Encoding: $enc" -w '%{size_download}' "$base/$f")
    total=$((total + n))
  done
  awk -v e="$enc" -v t="$total" 'BEGIN {printf "console transfer size (%s): %d bytes (%.1f KB)\n", e, t, t / 1024}'
done

times=()
for i in $(seq "$runs"); do
  t=$(cargo test --locked -q -p bridge --test console a_person -- --nocapture 2>&1 |
    sed -n 's/.*FIGURE open-to-rendered-dashboard: \([0-9.]*\) s; generate-to-rendered: \([0-9.]*\) s.*/\1 \2/p')
  [ -n "$t" ] || { echo "run $i: the browser test printed no figure (is Chromium installed?)" >&2; exit 1; }
  echo "run $i: open-to-rendered ${t% *} s, generate-to-rendered ${t#* } s"
  times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n -k1 | awk '{a[NR]=$1} END {printf "median open-to-rendered-dashboard over %d runs: %s s\n", NR, a[int((NR+1)/2)]}'
printf '%s\n' "${times[@]}" | sort -n -k2 | awk '{a[NR]=$2} END {printf "median generate-to-rendered over %d runs: %s s\n", NR, a[int((NR+1)/2)]}'
