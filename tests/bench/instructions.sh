#!/usr/bin/env bash
# instructions.sh: instructions per message, counted by callgrind, of
# the K=1 fan-out (WORKLOAD=fanout, the default: one hub) or of the
# receiving node of a federated K=1 link (WORKLOAD=fed: node A runs
# normally, node B under callgrind, linked over mutual TLS with
# certificates from deploy/gen-certs.sh) or of its sending node
# (WORKLOAD=fedsend: A counted, B normal). Wall-clock figures on the
# development VM drift by up to 2x within minutes; a count of instructions repeats exactly from run to run,
# so a small change to the delivery path can be judged by one run before
# and one after (confirm with interleaved wall-clock pairs: instructions
# are not time). Prints the count per message and the functions that
# execute the most instructions themselves.
#
# usage: [WORKLOAD=fed|fedsend] [LOADGEN_ARGS=...] tests/bench/instructions.sh [PARLEYD] [COUNT]
#   LOADGEN_ARGS  more parley-loadgen options (e.g. --batch 16384)
#   PARLEYD  default build/server/parleyd (a RelWithDebInfo build)
#   COUNT    publishes counted (default 40000), after 2000 to warm up
# Needs valgrind (apt-get install -y valgrind). Loopback only, bounded:
# each load run stops after its count or 120 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PARLEYD=${1:-$root/build/server/parleyd}
COUNT=${2:-40000}
LOADGEN=${LOADGEN:-$root/build/tests/bench/parley-loadgen}
WORKLOAD=${WORKLOAD:-fanout}
TOKEN=bench-token
[[ $WORKLOAD == fanout || $WORKLOAD == fed || $WORKLOAD == fedsend ]] ||
	{ echo "WORKLOAD must be fanout, fed or fedsend" >&2; exit 1; }

for tool in valgrind callgrind_control callgrind_annotate; do
	command -v "$tool" >/dev/null ||
		{ echo "$tool not found: apt-get install -y valgrind" >&2; exit 1; }
done
[[ -x $PARLEYD && -x $LOADGEN ]] ||
	{ echo "build first: cmake --build build --target parleyd parley-loadgen" >&2; exit 1; }

work=$(mktemp -d /tmp/parley-instr.XXXXXX)
vg=
pa=
cleanup() {
	[[ -n $pa ]] && kill "$pa" 2>/dev/null && wait "$pa" 2>/dev/null
	[[ -n $vg ]] && kill "$vg" 2>/dev/null && wait "$vg" 2>/dev/null
	[[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
sha=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
# config FILE NODE PORT [FEDERATION-MEMBER]
config() {
	cat >"$1" <<EOF
{
  "node": "$2",
  "listen": { "host": "127.0.0.1", "port": $3, "path": "/ws" },
  "history": { "length": 1000 },
  "auth": {
    "tokens": [ { "user": "bench", "token_sha256": "$sha",
                  "subscribe": ["bench/#"], "publish": ["bench/#"] } ]
  },${4:+
  $4,}
  "limits": { "publish_per_second": 1000000, "publish_burst": 10000000,
              "token_publish_per_second": 10000000 }
}
EOF
}
# fed_member ME PORT PEER PEER_PORT
fed_member() {
	printf '"federation": { "listen": { "host": "127.0.0.1", "port": %s }, "ca": "%s", "cert": "%s", "key": "%s", "state_file": "%s", "peers": [ { "name": "%s.bench", "url": "wss://127.0.0.1:%s/fed", "export": ["bench/#"], "import": ["bench/#"] } ] }' \
		"$2" "$work/certs/ca.pem" "$work/certs/$1.bench.pem" \
		"$work/certs/$1.bench.key" "$work/$1.fedstate" "$3" "$4"
}
wait_up() {
	for _ in $(seq 150); do
		curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
		sleep 0.2
	done
	echo "parleyd on port $1 did not start:" >&2
	tail "$work"/*.log >&2
	exit 1
}

port=$(free_port)
pub_port=$port
counted=hub
counted_port=$port
if [[ $WORKLOAD == fed* ]]; then
	pub_port=$(free_port)
	fa=$(free_port)
	fb=$(free_port)
	"$root/deploy/gen-certs.sh" "$work/certs" a.bench b.bench \
		>"$work/gen-certs.log" 2>&1 ||
		{ cat "$work/gen-certs.log" >&2; exit 1; }
	config "$work/a.json" a.bench "$pub_port" "$(fed_member a "$fa" b "$fb")"
	config "$work/b.json" b.bench "$port" "$(fed_member b "$fb" a "$fa")"
	other=a
	other_port=$pub_port
	counted=b
	if [[ $WORKLOAD == fedsend ]]; then
		other=b
		other_port=$port
		counted=a
		counted_port=$pub_port
	fi
	"$PARLEYD" -c "$work/$other.json" >"$work/$other.log" 2>&1 &
	pa=$!
	wait_up "$other_port"
else
	config "$work/hub.json" bench.local "$port"
fi

valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
	"$PARLEYD" -c "$work/$counted.json" >"$work/$counted.log" 2>&1 &
vg=$!
wait_up "$counted_port"
if [[ $WORKLOAD == fed* ]]; then
	# Counting starts once B's link to A is up.
	for _ in $(seq 150); do
		curl -s "http://127.0.0.1:$port/healthz" | grep -q '"up"' && break
		sleep 0.2
	done
fi

load() {
	"$LOADGEN" --url "ws://127.0.0.1:$pub_port/ws" \
		--sub-url "ws://127.0.0.1:$port/ws" --token "$TOKEN" --subs 1 \
		--count "$1" --duration 120 --settle 1 --json ${LOADGEN_ARGS:-}
}
load 2000 >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
delivered=$(load "$COUNT" | jq -r '.delivered')
callgrind_control -d "$vg" >/dev/null 2>&1
out=$(ls "$work"/cg.out.* | head -1)
total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "parleyd $PARLEYD"
if [[ $WORKLOAD == fed* ]]; then
	echo "messages $delivered (publisher on node A -> mTLS link -> 1 subscriber on node B, pipelined; ${counted^^} counted)"
else
	echo "messages $delivered (1 publisher -> 1 subscriber, pipelined)"
fi
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
