#!/usr/bin/env bash
# instructions.sh: instructions per message of the K=1 fan-out, counted by
# callgrind. Wall-clock figures on the development VM drift by up to 2x
# within minutes; a count of instructions repeats exactly from run to run,
# so a small change to the delivery path can be judged by one run before
# and one after (confirm with interleaved wall-clock pairs: instructions
# are not time). Prints the count per message and the functions that
# execute the most instructions themselves.
#
# usage: tests/bench/instructions.sh [PARLEYD] [COUNT]
#   PARLEYD  default build/server/parleyd (a RelWithDebInfo build)
#   COUNT    publishes counted (default 40000), after 2000 to warm up
# Needs valgrind (apt-get install -y valgrind). Loopback only, bounded:
# each load run stops after its count or 120 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PARLEYD=${1:-$root/build/server/parleyd}
COUNT=${2:-40000}
LOADGEN=${LOADGEN:-$root/build/tests/bench/parley-loadgen}
TOKEN=bench-token

for tool in valgrind callgrind_control callgrind_annotate; do
	command -v "$tool" >/dev/null ||
		{ echo "$tool not found: apt-get install -y valgrind" >&2; exit 1; }
done
[[ -x $PARLEYD && -x $LOADGEN ]] ||
	{ echo "build first: cmake --build build --target parleyd parley-loadgen" >&2; exit 1; }

work=$(mktemp -d /tmp/parley-instr.XXXXXX)
vg=
cleanup() {
	[[ -n $vg ]] && kill "$vg" 2>/dev/null && wait "$vg" 2>/dev/null
	[[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sha=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
cat >"$work/hub.json" <<EOF
{
  "node": "bench.local",
  "listen": { "host": "127.0.0.1", "port": $port, "path": "/ws" },
  "history": { "length": 1000 },
  "auth": {
    "tokens": [ { "user": "bench", "token_sha256": "$sha",
                  "subscribe": ["bench/#"], "publish": ["bench/#"] } ]
  },
  "limits": { "publish_per_second": 1000000, "publish_burst": 10000000,
              "token_publish_per_second": 10000000 }
}
EOF

valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
	"$PARLEYD" -c "$work/hub.json" >"$work/hub.log" 2>&1 &
vg=$!
for _ in $(seq 150); do
	curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.2
done
curl -s -o /dev/null "http://127.0.0.1:$port/healthz" ||
	{ echo "parleyd under valgrind did not start:" >&2; tail "$work/hub.log" >&2; exit 1; }

load() {
	"$LOADGEN" --url "ws://127.0.0.1:$port/ws" --token "$TOKEN" --subs 1 \
		--count "$1" --duration 120 --settle 0.5 --json
}
load 2000 >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
delivered=$(load "$COUNT" | jq -r '.delivered')
callgrind_control -d "$vg" >/dev/null 2>&1
out=$(ls "$work"/cg.out.* | head -1)
total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "parleyd $PARLEYD"
echo "messages $delivered (1 publisher -> 1 subscriber, pipelined)"
echo "instructions per message $((total / delivered))"
echo
echo "by function (own instructions), per message:"
callgrind_annotate --inclusive=no --threshold=100 "$out" |
	awk -v n="$delivered" '/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ {
		c = $1; gsub(",", "", c)
		# The loop and main hold everything (inclusive); skip them.
		if (/:(server_run|main|\(below main\)|__libc_start_main[^ ]*|0x0*1ab70) \[/) next
		if (c / n < 40) exit
		sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, ""); sub(/ \[.*/, "")
		printf "%8.0f  %s\n", c / n, $0 }' | head -30
