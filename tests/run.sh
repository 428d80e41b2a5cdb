#!/usr/bin/env bash
# The whole test suite: a normal build and an ASan+UBSan build, each built
# once and run through ctest (unit, integration, client, fuzz regression).
# Usage: tests/run.sh [--fast]   (--fast skips the sanitizer build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
  local dir=$1; shift
  cmake -S "$root" -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  ctest --test-dir "$dir" --output-on-failure --timeout 300
}

echo "== normal build"
run_suite "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${1:-}" != "--fast" ]; then
  echo "== sanitizer build (ASan + UBSan + LeakSanitizer)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  run_suite "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DPARLEY_SANITIZE=ON
fi
if [ "${1:-}" != "--fast" ]; then
  echo "== bounded fuzzing (${FUZZ_SECONDS:-20} s per target, clang + libFuzzer)"
  "$root/tests/fuzz/run.sh" "${FUZZ_SECONDS:-20}"
fi
echo "== all suites passed"
