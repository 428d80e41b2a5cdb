#!/usr/bin/env bash
# Runs the main integration scenarios (01-09) with parleyd under valgrind
# (memcheck, full leak check). Not part of CI (slow); run it by hand:
#   tests/valgrind.sh [BUILD_DIR]      (default: build)
# Every hub's report is kept in $OUT (default /tmp/parley-valgrind); the
# script fails when a scenario fails or a report shows errors or leaks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
out=${OUT:-/tmp/parley-valgrind}
mkdir -p "$out"
rm -f "$out"/vg.*.log
wrapper=$out/parleyd-valgrind.sh
cat >"$wrapper" <<WRAP
#!/bin/sh
exec valgrind --leak-check=full --show-leak-kinds=definite,indirect \
  --error-exitcode=99 --num-callers=30 --log-file=$out/vg.%p.log \
  $build/server/parleyd "\$@"
WRAP
chmod +x "$wrapper"
for t in "$root"/tests/integration/0[1-9]_*.py; do
  echo "== $(basename "$t")"
  PARLEYD=$wrapper /usr/bin/python3 "$t" >"$out/$(basename "$t").log" 2>&1 ||
    { echo "FAILED: $t (see $out)"; exit 1; }
done
bad=$(grep -L "ERROR SUMMARY: 0 errors" "$out"/vg.*.log || true)
leaks=$(grep -l "definitely lost: [1-9]\|indirectly lost: [1-9]" "$out"/vg.*.log || true)
echo "reports: $(ls "$out"/vg.*.log | wc -l), with errors: $(echo -n "$bad" | grep -c . || true), with leaks: $(echo -n "$leaks" | grep -c . || true)"
[ -z "$bad$leaks" ]
