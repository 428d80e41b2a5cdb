#!/usr/bin/env bash
# Regenerates the key table in config/README.md from the table in
# server/config.c (through `parleyd --config-docs`).
# Usage: config/gen-docs.sh [PATH-TO-PARLEYD]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
parleyd=${1:-$here/../build/server/parleyd}
readme=$here/README.md
table=$(mktemp)
trap 'rm -f "$table" "$table.new"' EXIT
"$parleyd" --config-docs >"$table"
awk -v tf="$table" '
  /^<!-- Generated from the key table/ { print; skip = 1; next }
  skip && /-->$/ && !done { print; print ""; while ((getline l < tf) > 0) print l; print ""; done = 1; next }
  /^<!-- End of the generated table. -->/ { skip = 0 }
  !skip || !done { if (!(skip && done)) print }
' "$readme" >"$table.new"
mv "$table.new" "$readme"
echo "config/README.md: table regenerated"
