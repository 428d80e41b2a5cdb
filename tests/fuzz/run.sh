#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time (default 30 s each).
# New inputs go to a scratch corpus, not the repository; a crash is copied
# to tests/fuzz/artifacts/ and makes the script fail (move the input to
# tests/fuzz/regressions/<target>/ once fixed, so ctest replays it).
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CC=clang cmake -S "$root" -B "$build" -DPARLEY_FUZZ=ON -DPARLEY_CLIENT=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target $(cd "$root/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//') >/dev/null
mkdir -p "$root/tests/fuzz/artifacts"
status=0 total=0
printf '%-16s %12s %8s %8s\n' target execs corpus crashes
for src in "$root"/tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); short=${name#fuzz_}
  mkdir -p "$work/$short"
  cp -r "$root/tests/fuzz/corpus/$short/." "$work/$short/" 2>/dev/null || true
  log=$work/$short.log
  set +e
  ASAN_OPTIONS=detect_leaks=1 "$build/tests/fuzz/$name" -max_total_time="$secs" \
    -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$root/tests/fuzz/artifacts/$short-" "$work/$short" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#')
  crashes=0; [ $rc -eq 0 ] || { crashes=1; status=1; tail -40 "$log"; }
  total=$((total + ${execs:-0}))
  printf '%-16s %12s %8s %8s\n' "$short" "${execs:-?}" "$(ls "$work/$short" | wc -l)" "$crashes"
done
echo "total executions: $total"
exit $status
