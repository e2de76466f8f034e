#!/usr/bin/env bash
# What the workspace costs to build and what each function links, for this checkout:
#   - a cold `cargo build --workspace` (a fresh target directory),
#   - incremental rebuilds after touching one line of the serving service and one of the
#     dashboard validator,
#   - a release build of every binary, and each function's size (built alone with `-p`,
#     which is how a function is deployed: `cargo lambda build -p <function>`),
#   - the crates each function links (`cargo tree -e normal`, with and without repeats).
#
#   bench/build.sh [target-dir]     (default: a fresh directory under target/bench-build)
#
# To compare two revisions, run it in a clean clone of each, one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${1:-$PWD/target/bench-build}"
rm -rf "$CARGO_TARGET_DIR"
functions=(teams connections catalog generate data precompute chat migrate bridge)
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
touch_line() { sed -i '1s|^|// touched by bench/build.sh\n|' "$1"; }
untouch() { sed -i '1{/^\/\/ touched by bench\/build.sh$/d}' "$1"; }

echo "cold cargo build --workspace: $(seconds cargo build --workspace) s"
for f in common/services/src/serving.rs common/dashboard/src/validate.rs; do
  touch_line "$f"
  echo "rebuild after touching $f: $(seconds cargo build --workspace) s"
  untouch "$f"
done
cargo build --workspace >/dev/null 2>&1
echo "cargo build --release --workspace --bins: $(seconds cargo build --release --workspace --bins) s"
for f in "${functions[@]}"; do
  cargo build --release -p "$f" >/dev/null 2>&1
  size=$(stat -c %s "$CARGO_TARGET_DIR/release/$f")
  all=$(cargo tree -p "$f" -e normal --prefix none | sort -u | wc -l)
  unique=$(cargo tree -p "$f" -e normal --prefix none | grep -v '(\*)' | sort -u | wc -l)
  printf '%-12s release %6.1f MiB   crates (cargo tree | sort -u) %4d   distinct %4d\n' \
    "$f" "$(echo "$size / 1048576" | bc -l)" "$all" "$unique"
done
