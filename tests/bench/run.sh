#!/usr/bin/env bash
# run.sh: parley beside NATS over WebSocket and Mosquitto over MQTT (its
# Debian build has no WebSocket listener: plain TCP, MQTT 3.1.1, QoS 1
# publishes, QoS 0 subscriptions), measured with parley-loadgen.
# Starts fresh servers on free loopback ports for every measurement (so
# peak RSS belongs to one workload), servers pinned to one core and the
# load generator to the other, rounds interleaved, medians reported.
# Everything is bounded in time; servers are stopped on exit.
#
# Workloads (200-byte bodies; open throttle unless a rate is given):
#   fanout1 fanout100 fanout1000   1 publisher -> K subscribers, one hub
#   topics       1,000 topics, one subscriber each, 4 publishers spread
#                over them
#   lat1 lat100  fixed rate: 5,000 msg/s to 1, 200 msg/s to 100
#   fed1 fed100  publisher on node A, K subscribers on node B, one mTLS
#                link (NATS: a leaf node linked to its hub over mutual
#                TLS, publisher on the leaf; Mosquitto: a bridge from A
#                to B over mutual TLS, QoS 1, topic bench/# out)
#   fedlat1      fed1 at 5,000 msg/s
#   chain100     A -> B -> C, subscribers on C (NATS: leaf -> hub -> leaf;
#                Mosquitto: two bridges)
#   cluster1     two instances on one Redis, publisher on the first, its
#                subscriber on the second: every message crosses Redis
#                (NATS: a two-server cluster, across the route)
#   cluster100   the same, 100 subscribers split across both instances
#                (Mosquitto has no cluster: not run)
#   (for every multi-process setup the table also gives each process's
#   CPU seconds per million deliveries)
#   idle         IDLE connections held open: RSS per connection
# Certificates for the federated setups come from deploy/gen-certs.sh.
#
#   tests/bench/run.sh            full comparison, prints a table and writes
#                                 results.json
#   tests/bench/run.sh --smoke    parleyd only, ~1 s per workload; exits 1
#                                 only when messages were lost or duplicated
#                                 (or a workload could not run at all)
#   tests/bench/run.sh --summarize RAW.jsonl
#                                 prints the table again from the raw
#                                 results of a run kept with KEEP=1
#
# Environment:
#   PARLEYD      parleyd binary (default: build/server/parleyd)
#   LOADGEN      parley-loadgen binary (default: build/tests/bench/
#                parley-loadgen, else compiled here with cc -O2)
#   NATS_SERVER  nats-server binary (default: nats-server on PATH)
#   MOSQUITTO    mosquitto binary (default: mosquitto on PATH, else
#                /usr/sbin/mosquitto)
#   ROUNDS       rounds (default 3; smoke 1)
#   DURATION     seconds per throughput/latency run (default 5)
#   IDLE         idle connections held (default 10000; smoke 100); the
#                script raises its file limit to the hard limit
#   RESULTS      JSON output (default tests/bench/results.json)
#   BATCH        parley's publishers join the publishes of one loop pass
#                into batch frames of at most BATCH bytes, as NATS's
#                publishers stream many PUBs in one frame (default 16384;
#                0: one frame per publish)
#   SERVER_CPU / LOADGEN_CPU   cores to pin to (default 0 / 1)
#   WORKLOADS    subset, e.g. "fanout1 lat1" (default: all; smoke: all
#                but fanout1000, fed100 and fedlat1)
#   NICE         e.g. -10: on a machine shared with other work, run server
#                and loadgen each in a session of its own whose autogroup
#                gets that nice level (with sched_autogroup, plain nice only
#                ranks processes within one session). Default: unchanged.
#                This takes CPU time from everyone else: use with care.
#   KEEP=1       keep the work directory (configs, logs, raw results)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

MODE=full
SUMMARIZE=
# Internal: run.sh --exec-niced NICE CMD... sets this session's autogroup
# and the process's nice, then becomes CMD (same PID).
if [[ ${1:-} == --exec-niced ]]; then
	echo "$2" >/proc/self/autogroup 2>/dev/null || true
	renice -n "$2" -p $$ >/dev/null 2>&1 || true
	shift 2
	exec "$@"
fi
case "${1:-}" in
--smoke) MODE=smoke ;;
--summarize)
	SUMMARIZE=${2:?--summarize needs a raw.jsonl file}
	[[ -r $SUMMARIZE ]] || { echo "cannot read $SUMMARIZE" >&2; exit 2; }
	;;
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--smoke | --summarize RAW.jsonl]" >&2
	exit 2
	;;
esac

if [[ $MODE == smoke ]]; then
	ROUNDS=${ROUNDS:-1}
	DURATION=${DURATION:-1}
	IDLE=${IDLE:-100}
	WORKLOADS=${WORKLOADS:-fanout1 fanout100 topics lat1 lat100 fed1 chain100 cluster100 idle}
else
	ROUNDS=${ROUNDS:-3}
	DURATION=${DURATION:-5}
	IDLE=${IDLE:-10000}
	WORKLOADS=${WORKLOADS:-fanout1 fanout100 fanout1000 topics lat1 lat100 fed1 fed100 fedlat1 chain100 cluster1 cluster100 idle}
fi
RESULTS=${RESULTS:-$HERE/results.json}
PARLEYD=${PARLEYD:-$ROOT/build/server/parleyd}
NATS_SERVER=${NATS_SERVER:-nats-server}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
SERVER_CPU=${SERVER_CPU:-0}
BATCH=${BATCH:-16384}
LOADGEN_CPU=${LOADGEN_CPU:-1}
TOKEN=bench-token

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench.XXXXXX")
cleanup() {
	local rc=$?
	stop_setup
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }
fail() {
	log "$*"
	exit 2
}

# ---- tools ----

PY=$(command -v python3 || true)
[[ -n $PY ]] || fail "python3 is needed (link checks, the summary)"

# Not needed to re-render a summary.
if [[ -z $SUMMARIZE ]]; then
	[[ -x $PARLEYD ]] || fail "parleyd not found at $PARLEYD (set PARLEYD)"
	if [[ -z ${LOADGEN:-} ]]; then
		for c in "$ROOT/build/tests/bench/parley-loadgen" \
			"$ROOT/build-bench/tests/bench/parley-loadgen"; do
			if [[ -x $c && $c -nt $HERE/../../client-lib/cli/bench.c ]]; then
				LOADGEN=$c
				break
			fi
		done
	fi
	if [[ -z ${LOADGEN:-} ]]; then
		LOADGEN=$WORK/parley-loadgen
		log "compiling $LOADGEN"
		${CC:-cc} -std=c11 -O2 -g -Wall -Wextra -o "$LOADGEN" "$HERE/../../client-lib/cli/bench.c" ||
			fail "cannot compile client-lib/cli/bench.c"
	fi
	[[ -x $LOADGEN ]] || fail "parley-loadgen not found at $LOADGEN"

	SERVERS="parley"
	if [[ $MODE == full ]]; then
		command -v "$NATS_SERVER" >/dev/null ||
			fail "nats-server not found: apt-get install -y nats-server"
		[[ -x $MOSQUITTO ]] ||
			fail "mosquitto not found: apt-get install -y mosquitto"
		SERVERS="parley nats mosquitto"
	fi

	PIN_SRV=()
	PIN_LG=()
	if [[ -n ${NICE:-} ]]; then
		nice -n "$NICE" true 2>/dev/null || fail "cannot run at nice $NICE"
		# A new session is a new autogroup; its nice is what counts
		# against other sessions' processes.
		PIN_SRV=(setsid "$HERE/run.sh" --exec-niced "$NICE")
		PIN_LG=("${PIN_SRV[@]}")
	fi
	if command -v taskset >/dev/null && (($(nproc) >= 2)); then
		PIN_SRV+=(taskset -c "$SERVER_CPU")
		PIN_LG+=(taskset -c "$LOADGEN_CPU")
	else
		log "fewer than 2 cores or no taskset: not pinning (figures are not comparable)"
	fi

	# Idle connections need file descriptors in both processes.
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	if (($(ulimit -n) < IDLE + 300)); then
		fail "ulimit -n is $(ulimit -n); $IDLE idle connections need more (lower IDLE=)"
	fi
fi

# ---- servers ----
#
# A setup is every server process one measurement needs: one hub (single),
# two federated nodes (fed), a chain of three (chain), or two instances of
# one node with their Redis (cluster). NATS's counterparts: one server, a
# leaf node linked to a hub over mutual TLS, a leaf -> hub -> leaf chain,
# and a two-server cluster. Every server process goes on SERVER_CPU.

SETUP_PIDS=()  # Processes of the current setup.
SETUP_NAMES=() # Their roles, for the per-process CPU figures.
PUB_URL=
SUB_URLS=()

# Prints the kind of setup workload $1 needs.
setup_of() {
	case $1 in
	fed*) echo fed ;;
	chain*) echo chain ;;
	cluster*) echo cluster ;;
	*) echo single ;;
	esac
}

# Sets each variable named in "$@" to a port that nothing listens on and
# no other port of this setup took (the setup start retries on a race).
# Below the kernel's ephemeral range, where thousands of closed client
# connections linger in TIME_WAIT after the idle workload.
PORTS_TAKEN=" "
free_ports() {
	local p lo v
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	((lo > 12000)) || lo=32768
	for v in "$@"; do
		for _ in $(seq 50); do
			p=$((10000 + RANDOM % (lo - 10000)))
			[[ $PORTS_TAKEN == *" $p "* ]] && continue
			if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				PORTS_TAKEN+="$p "
				printf -v "$v" %s "$p"
				continue 2
			fi
		done
		fail "no free port found"
	done
}

# Waits until 127.0.0.1:$1 accepts, while process $2 lives; returns 1 if
# it died or 5 s passed.
wait_port() {
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# Waits up to 10 s until at least $3 lines of http://127.0.0.1:$1$2
# match the extended regex $4 (a link up, Redis reachable).
wait_http() {
	"$PY" - "http://127.0.0.1:$1$2" "$3" "$4" <<'EOF'
import re, sys, time, urllib.request
url, want, rx = sys.argv[1], int(sys.argv[2]), re.compile(sys.argv[3])
end = time.monotonic() + 10
while time.monotonic() < end:
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
        if sum(1 for l in body.splitlines() if rx.search(l)) >= want:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# Starts process $1 (a role name) running "$@" pinned, logging to
# $WORK/$1.log.
spawn() {
	local name=$1
	shift
	"${PIN_SRV[@]}" "$@" >"$WORK/$name.log" 2>&1 &
	SETUP_PIDS+=($!)
	SETUP_NAMES+=("$name")
}

# Certificates for the federated setups, made once by deploy/gen-certs.sh
# (a.bench, b.bench, c.bench for parley; localhost for NATS's leaf TLS).
certs() {
	[[ -e $WORK/certs/ca.pem ]] && return 0
	"$ROOT/deploy/gen-certs.sh" "$WORK/certs" a.bench b.bench c.bench localhost \
		>"$WORK/gen-certs.log" 2>&1 || {
		cat "$WORK/gen-certs.log" >&2
		fail "deploy/gen-certs.sh failed"
	}
}

# Writes $WORK/$1.json: node $2 on client port $3, with the extra
# top-level JSON members $4 (federation, redis), if any.
write_parley_config() {
	local sha
	sha=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
	cat >"$WORK/$1.json" <<EOF
{
  "node": "$2",
  "log_level": "info",
  "listen": { "host": "127.0.0.1", "port": $3, "path": "/ws" },
  "history": { "length": 1000 },
  "auth": {
    "anonymous": { "subscribe": ["bench/#"], "publish": [] },
    "tokens": [
      { "user": "bench", "token_sha256": "$sha",
        "subscribe": ["bench/#"], "publish": ["bench/#"] }
    ]
  },${4:+
  $4,}
  "limits": {
    "max_frame_bytes": 65536,
    "max_subscriptions": 256,
    "max_queue_bytes": 4194304,
    "publish_per_second": 1000000,
    "publish_burst": 10000000,
    "token_publish_per_second": 10000000,
    "max_connections": 100000,
    "max_connections_per_ip": 100000,
    "max_errors": 10,
    "max_topics": 100000
  }
}
EOF
}

# The federation member for node $1 (a letter) on port $2, linked with
# the nodes "letter:port" in $3...
fed_json() {
	local me=$1 port=$2 peers="" sep="" p
	shift 2
	for p in "$@"; do
		peers+="$sep{ \"name\": \"${p%%:*}.bench\", \"url\": \"wss://127.0.0.1:${p##*:}/fed\", \"export\": [\"bench/#\"], \"import\": [\"bench/#\"] }"
		sep=", "
	done
	printf '"federation": { "listen": { "host": "127.0.0.1", "port": %s }, "ca": "%s", "cert": "%s", "key": "%s", "state_file": "%s", "peers": [ %s ] }' \
		"$port" "$WORK/certs/ca.pem" "$WORK/certs/$me.bench.pem" \
		"$WORK/certs/$me.bench.key" "$WORK/$me.fedstate" "$peers"
}

# Starts parleyd with config $WORK/$1.json as role $1.
spawn_parley() {
	spawn "$1" "$PARLEYD" -c "$WORK/$1.json"
}

# Writes $WORK/$1.conf for nats-server with its WebSocket on port $2,
# monitoring on $3, and the extra configuration text $4.
write_nats_config() {
	cat >"$WORK/$1.conf" <<EOF
listen: "127.0.0.1:-1"
http: "127.0.0.1:$3"
max_connections: 100000
websocket {
  listen: "127.0.0.1:$2"
  no_tls: true
  compression: false
}
$4
EOF
}

# nats-server's leaf node TLS block (mutual: verify).
nats_tls() {
	echo "tls { cert_file: \"$WORK/certs/localhost.pem\", key_file: \"$WORK/certs/localhost.key\", ca_file: \"$WORK/certs/ca.pem\"${1:+, verify: true}, timeout: 5 }"
}

# Writes $WORK/$1.conf for mosquitto: an anonymous MQTT listener on port
# $2, then the extra configuration text $3. It stays root when started
# as root (it would switch to user mosquitto, which cannot read $WORK).
# No bound on queued QoS 1 messages: by default a bridge that falls behind
# drops what is over 1,000, and parley's links drop nothing.
write_mosquitto_config() {
	cat >"$WORK/$1.conf" <<EOF
per_listener_settings false
allow_anonymous true
user root
persistence false
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
listener $2 127.0.0.1
max_connections -1
$3
EOF
}

# mosquitto's bridge to the broker whose mutual-TLS listener is on port $1,
# under the connection name $2, with the client certificate of node $3.
mosquitto_bridge() {
	cat <<EOF
connection $2
address localhost:$1
topic bench/# out 1
bridge_protocol_version mqttv311
cleansession true
bridge_cafile $WORK/certs/ca.pem
bridge_certfile $WORK/certs/$3.bench.pem
bridge_keyfile $WORK/certs/$3.bench.key
EOF
}

# mosquitto's mutual-TLS listener for bridges on port $1.
mosquitto_tls_listener() {
	cat <<EOF
listener $1 127.0.0.1
cafile $WORK/certs/ca.pem
certfile $WORK/certs/localhost.pem
keyfile $WORK/certs/localhost.key
require_certificate true
use_identity_as_username true
EOF
}

# Waits up to 10 s until file $1 has $2 lines matching the extended regex
# $3 (mosquitto logs each bridge it accepts).
wait_log() {
	for _ in $(seq 200); do
		(($(grep -Ec "$3" "$1" 2>/dev/null || true) >= $2)) && return 0
		sleep 0.05
	done
	return 1
}

# Starts mosquitto's setup of workload kind $1 on ports $2 $3 $4 (the
# brokers' MQTT listeners); sets PUB_URL and SUB_URLS. Returns 1 when it
# did not come up.
start_mosquitto() {
	local kind=$1 p1=$2 p2=$3 p3=$4 f2 f3
	case $kind in
	single)
		write_mosquitto_config mq "$p1" ""
		spawn mq "$MOSQUITTO" -c "$WORK/mq.conf"
		wait_port "$p1" "${SETUP_PIDS[0]}" || return 1
		SUB_URLS=("mqtt://127.0.0.1:$p1")
		;;
	fed | chain)
		certs
		free_ports f2 f3
		write_mosquitto_config a "$p1" "$(mosquitto_bridge "$f2" b a)"
		if [[ $kind == fed ]]; then
			write_mosquitto_config b "$p2" "$(mosquitto_tls_listener "$f2")"
		else
			write_mosquitto_config b "$p2" "$(mosquitto_tls_listener "$f2")
$(mosquitto_bridge "$f3" c b)"
			write_mosquitto_config c "$p3" "$(mosquitto_tls_listener "$f3")"
			spawn c "$MOSQUITTO" -c "$WORK/c.conf"
			wait_port "$p3" "${SETUP_PIDS[0]}" || return 1
		fi
		spawn b "$MOSQUITTO" -c "$WORK/b.conf"
		wait_port "$p2" "${SETUP_PIDS[-1]}" || return 1
		spawn a "$MOSQUITTO" -c "$WORK/a.conf"
		wait_port "$p1" "${SETUP_PIDS[-1]}" || return 1
		# The bridges are up when the far brokers logged their clients.
		wait_log "$WORK/b.log" 1 "New (bridge|client) connected .*u'a.bench'" || return 1
		if [[ $kind == chain ]]; then
			wait_log "$WORK/c.log" 1 "New (bridge|client) connected .*u'b.bench'" || return 1
			SUB_URLS=("mqtt://127.0.0.1:$p3")
		else
			SUB_URLS=("mqtt://127.0.0.1:$p2")
		fi
		;;
	*) return 1 ;;
	esac
	PUB_URL="mqtt://127.0.0.1:$p1"
	return 0
}

# Starts the setup of workload $1 for server $2 (parley|nats|mosquitto):
# sets SETUP_PIDS, PUB_URL, SUB_URLS. Returns 1 when it did not come up.
start_setup_once() {
	local kind p1 p2 p3 f1 f2 f3 m1 m2 m3 lp
	kind=$(setup_of "$1")
	PORTS_TAKEN=" "
	free_ports p1 p2 p3
	SUB_URLS=()
	if [[ $2 == parley ]]; then
		case $kind in
		single)
			write_parley_config hub bench.local "$p1"
			spawn_parley hub
			wait_port "$p1" "${SETUP_PIDS[0]}" || return 1
			;;
		fed | chain)
			certs
			free_ports f1 f2 f3
			write_parley_config a a.bench "$p1" "$(fed_json a "$f1" "b:$f2")"
			if [[ $kind == fed ]]; then
				write_parley_config b b.bench "$p2" "$(fed_json b "$f2" "a:$f1")"
			else
				write_parley_config b b.bench "$p2" "$(fed_json b "$f2" "a:$f1" "c:$f3")"
				write_parley_config c c.bench "$p3" "$(fed_json c "$f3" "b:$f2")"
			fi
			spawn_parley a
			spawn_parley b
			[[ $kind == chain ]] && spawn_parley c
			wait_port "$p1" "${SETUP_PIDS[0]}" || return 1
			wait_port "$p2" "${SETUP_PIDS[1]}" || return 1
			wait_http "$p1" /metrics 1 'parley_fed_link_up\{.*\} 1$' || return 1
			if [[ $kind == chain ]]; then
				wait_port "$p3" "${SETUP_PIDS[2]}" || return 1
				wait_http "$p2" /metrics 2 'parley_fed_link_up\{.*\} 1$' || return 1
				wait_http "$p3" /metrics 1 'parley_fed_link_up\{.*\} 1$' || return 1
			else
				wait_http "$p2" /metrics 1 'parley_fed_link_up\{.*\} 1$' || return 1
			fi
			;;
		cluster)
			command -v redis-server >/dev/null ||
				fail "redis-server not found: apt-get install -y redis-server"
			spawn redis redis-server --bind 127.0.0.1 --port "$p3" \
				--save "" --appendonly no --dir "$WORK"
			wait_port "$p3" "${SETUP_PIDS[0]}" || return 1
			local r="\"redis\": { \"host\": \"127.0.0.1\", \"port\": $p3, \"prefix\": \"bench\" }"
			write_parley_config i1 bench.local "$p1" "$r"
			write_parley_config i2 bench.local "$p2" "$r"
			spawn_parley i1
			spawn_parley i2
			wait_port "$p1" "${SETUP_PIDS[1]}" || return 1
			wait_port "$p2" "${SETUP_PIDS[2]}" || return 1
			wait_http "$p1" /metrics 1 '^parley_redis_up 1$' || return 1
			wait_http "$p2" /metrics 1 '^parley_redis_up 1$' || return 1
			;;
		esac
		PUB_URL="ws://127.0.0.1:$p1/ws"
		case $kind in
		single) SUB_URLS=("$PUB_URL") ;;
		fed) SUB_URLS=("ws://127.0.0.1:$p2/ws") ;;
		chain) SUB_URLS=("ws://127.0.0.1:$p3/ws") ;;
		cluster)
			# cluster1: every message crosses Redis to the other
			# instance; else subscribers are split.
			SUB_URLS=("ws://127.0.0.1:$p2/ws")
			[[ $1 == cluster1 ]] || SUB_URLS=("$PUB_URL" "${SUB_URLS[@]}")
			;;
		esac
		return 0
	fi
	if [[ $2 == mosquitto ]]; then
		start_mosquitto "$kind" "$p1" "$p2" "$p3"
		return
	fi
	free_ports m1 m2 m3 lp
	case $kind in
	single)
		write_nats_config nats "$p1" "$m1" ""
		spawn nats "$NATS_SERVER" -c "$WORK/nats.conf"
		wait_port "$p1" "${SETUP_PIDS[0]}" || return 1
		SUB_URLS=("ws://127.0.0.1:$p1/")
		;;
	fed | chain)
		# The leaf (publisher side) dials the hub, as a parley node dials
		# its peer; chain: a second leaf holds the subscribers.
		certs
		write_nats_config hub "$p2" "$m2" "leafnodes { listen: \"127.0.0.1:$lp\"
  $(nats_tls verify) }"
		write_nats_config leaf "$p1" "$m1" "leafnodes { remotes [ { url: \"tls://localhost:$lp\"
  $(nats_tls) } ] }"
		spawn hub "$NATS_SERVER" -c "$WORK/hub.conf"
		wait_port "$p2" "${SETUP_PIDS[0]}" || return 1
		spawn leaf "$NATS_SERVER" -c "$WORK/leaf.conf"
		wait_port "$p1" "${SETUP_PIDS[1]}" || return 1
		if [[ $kind == chain ]]; then
			write_nats_config leaf2 "$p3" "$m3" "leafnodes { remotes [ { url: \"tls://localhost:$lp\"
  $(nats_tls) } ] }"
			spawn leaf2 "$NATS_SERVER" -c "$WORK/leaf2.conf"
			wait_port "$p3" "${SETUP_PIDS[2]}" || return 1
			wait_http "$m2" /leafz 1 '"leafnodes": *2' || return 1
			SUB_URLS=("ws://127.0.0.1:$p3/")
		else
			wait_http "$m2" /leafz 1 '"leafnodes": *1' || return 1
			SUB_URLS=("ws://127.0.0.1:$p2/")
		fi
		;;
	cluster)
		local r1 r2
		free_ports r1 r2
		write_nats_config n1 "$p1" "$m1" "cluster { name: bench, listen: \"127.0.0.1:$r1\", routes: [\"nats-route://127.0.0.1:$r2\"] }"
		write_nats_config n2 "$p2" "$m2" "cluster { name: bench, listen: \"127.0.0.1:$r2\", routes: [\"nats-route://127.0.0.1:$r1\"] }"
		spawn n1 "$NATS_SERVER" -c "$WORK/n1.conf"
		spawn n2 "$NATS_SERVER" -c "$WORK/n2.conf"
		wait_port "$p1" "${SETUP_PIDS[0]}" || return 1
		wait_port "$p2" "${SETUP_PIDS[1]}" || return 1
		wait_http "$m1" /routez 1 '"num_routes": *[1-9]' || return 1
		SUB_URLS=("ws://127.0.0.1:$p2/")
		[[ $1 == cluster1 ]] || SUB_URLS=("ws://127.0.0.1:$p1/" "${SUB_URLS[@]}")
		;;
	esac
	PUB_URL="ws://127.0.0.1:$p1/"
	return 0
}

# start_setup_once with retries (a port taken in between, a slow start).
start_setup() {
	local try
	for try in 1 2 3; do
		start_setup_once "$@" && return 0
		log "$2 setup for $1 did not come up (try $try):"
		for n in "${SETUP_NAMES[@]}"; do
			tail -n 5 "$WORK/$n.log" >&2 2>/dev/null || true
		done
		stop_setup
	done
	fail "$2 setup for $1 would not start"
}

# Stops every process of the setup: TERM, then KILL after 3 s.
stop_setup() {
	local pid
	((${#SETUP_PIDS[@]})) || return 0
	kill -TERM "${SETUP_PIDS[@]}" 2>/dev/null || true
	for _ in $(seq 60); do
		pid=
		for p in "${SETUP_PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && pid=$p
		done
		[[ -n $pid ]] || break
		sleep 0.05
	done
	kill -KILL "${SETUP_PIDS[@]}" 2>/dev/null || true
	for p in "${SETUP_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	SETUP_PIDS=()
	SETUP_NAMES=()
	rm -f "$WORK"/*.fedstate
}

# Prints the CPU seconds (user + system) process $1 has used.
proc_cpu() {
	awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' \
		"/proc/$1/stat" 2>/dev/null || echo 0
}

# ---- workloads ----

# Loadgen arguments of workload $1.
workload_args() {
	local d=$DURATION
	case "$1:$MODE" in
	fanout1:full | fed1:full | cluster1:full) echo "--subs 1 --rate 0 --duration $d" ;;
	fanout100:full | fed100:full | chain100:full | cluster100:full)
		echo "--subs 100 --rate 0 --duration $d" ;;
	fanout1000:full) echo "--subs 1000 --rate 0 --duration $d" ;;
	topics:full) echo "--subs 1000 --pubs 4 --topics 1000 --rate 0 --duration $d" ;;
	fanout1:smoke | fed1:smoke | cluster1:smoke) echo "--subs 1 --rate 0 --duration $d --count 50000" ;;
	fanout100:smoke | fed100:smoke | chain100:smoke | cluster100:smoke)
		echo "--subs 100 --rate 0 --duration $d --count 5000" ;;
	fanout1000:smoke) echo "--subs 1000 --rate 0 --duration $d --count 500" ;;
	topics:smoke) echo "--subs 100 --pubs 4 --topics 100 --rate 0 --duration $d --count 20000" ;;
	lat1:*) echo "--subs 1 --rate 5000 --duration $d" ;;
	lat100:*) echo "--subs 100 --rate 200 --duration $d" ;;
	fedlat1:*) echo "--subs 1 --rate 5000 --duration $d" ;;
	idle:full) echo "--subs 0 --idle $IDLE --duration 2" ;;
	idle:smoke) echo "--subs 0 --idle $IDLE --duration 0.5" ;;
	*) fail "unknown workload $1" ;;
	esac
	# Subscriptions cross links and routes after they are confirmed.
	[[ $(setup_of "$1") == single ]] || echo "--settle 1"
	# Time for what is still in flight after the last publish (the run
	# ends as soon as everything arrived): a slow broker's backlog of
	# 4,000 messages x 100 subscribers takes seconds.
	echo "--drain 10"
}

RAW=$WORK/raw.jsonl
: >"$RAW"
FAILED=0

# Runs workload $1 against server $2 in round $3; appends one JSON line.
run_one() {
	local wl=$1 srv=$2 round=$3 out rc=0 alive=true errs=0 tok=() load
	local subs=() cpu0=() names=() pcpu="" i n proto=$srv
	load=$(cut -d' ' -f1 /proc/loadavg)
	[[ $srv == mosquitto ]] && proto=mqtt
	start_setup "$wl" "$srv"
	if [[ $srv == parley ]]; then
		tok=(--token "$TOKEN" --batch "$BATCH")
	fi
	for u in "${SUB_URLS[@]}"; do
		subs+=(--sub-url "$u")
	done
	for i in "${!SETUP_PIDS[@]}"; do
		cpu0+=("$(proc_cpu "${SETUP_PIDS[$i]}")")
	done
	# shellcheck disable=SC2046
	out=$("${PIN_LG[@]}" "$LOADGEN" --proto "$proto" --url "$PUB_URL" "${subs[@]}" \
		"${tok[@]}" --pid "$(
			IFS=,
			echo "${SETUP_PIDS[*]}"
		)" --size 200 --json --check \
		--label "$wl" $(workload_args "$wl")) || rc=$?
	for i in "${!SETUP_PIDS[@]}"; do
		kill -0 "${SETUP_PIDS[$i]}" 2>/dev/null || alive=false
		n=$(awk -v a="${cpu0[$i]}" -v b="$(proc_cpu "${SETUP_PIDS[$i]}")" 'BEGIN { printf "%.3f", b - a }')
		pcpu+="${pcpu:+,}\"${SETUP_NAMES[$i]}\":$n"
		if [[ $srv == parley ]]; then
			errs=$((errs + $(grep -c 'level=error' "$WORK/${SETUP_NAMES[$i]}.log" || true)))
		fi
	done
	names=("${SETUP_NAMES[@]}")
	if [[ $rc != 0 || $alive != true ]]; then
		for n in "${names[@]}"; do
			cp "$WORK/$n.log" "$WORK/$n-$wl-$srv-$round.log"
		done
	fi
	stop_setup
	if [[ -z $out ]]; then
		out='{"label":"'$wl'","setup_failed":true}'
	fi
	# Annotate with round, server, exit status, server health and the
	# CPU seconds of each server process during the run.
	out=${out%\}}
	echo "$out,\"server\":\"$srv\",\"round\":$round,\"rc\":$rc,\"server_alive\":$alive,\"server_log_errors\":${errs:-0},\"loadavg\":$load,\"proc_cpu_s\":{$pcpu}}" >>"$RAW"
	if ((rc != 0)) || [[ $alive != true ]]; then
		log "$wl/$srv round $round: loadgen exit $rc, servers alive: $alive (logs: $WORK/*-$wl-$srv-$round.log)"
		for n in "${names[@]}"; do
			tail -n 20 "$WORK/$n-$wl-$srv-$round.log" >&2 2>/dev/null || true
		done
		if [[ $srv == parley ]]; then
			FAILED=1
		fi
	fi
	log "$wl/$srv round $round done"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -n $SUMMARIZE ]]; then
	cp "$SUMMARIZE" "$RAW"
	ROUNDS=$(jq -s 'map(.round) | max' "$RAW" 2>/dev/null || echo "?")
	WORKLOADS=
	log "summarizing $SUMMARIZE"
else
	log "mode $MODE, $ROUNDS round(s), servers: $SERVERS, parleyd $PARLEYD"
fi
for round in $(seq "$((${#WORKLOADS} ? ROUNDS : 0))"); do
	# Rotate which server goes first, so none always runs on a freshly
	# quiet machine.
	read -ra order <<<"$SERVERS"
	for ((i = 1; i < round; i++)); do
		order=("${order[@]:1}" "${order[0]}")
	done
	for wl in $WORKLOADS; do
		for srv in "${order[@]}"; do
			# Mosquitto has no cluster of its own.
			[[ $srv == mosquitto && $(setup_of "$wl") == cluster ]] && continue
			run_one "$wl" "$srv" "$round"
		done
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ $MODE == smoke ]]; then
	if command -v jq >/dev/null; then
		jq -r '"\(.label): delivered \(.delivered // 0) lost \(.lost // "?") duplicated \(.duplicated // "?") rc \(.rc)"' "$RAW" >&2
	else
		cat "$RAW" >&2
	fi
	if ((FAILED)); then
		log "smoke FAILED: messages lost or duplicated, or a workload could not run"
		exit 1
	fi
	log "smoke passed"
	exit 0
fi

# ---- summary ----

"$PY" - "$RAW" "$RESULTS" "$ROUNDS" "$LOAD_BEFORE" "$LOAD_AFTER" \
	"$("$NATS_SERVER" --version 2>&1 | head -n1)" "$PARLEYD" \
	"$("$MOSQUITTO" -h 2>&1 | sed -n 's/^mosquitto version //p' | head -n1)" <<'EOF'
import json, os, platform, statistics, subprocess, sys, time

raw, out, rounds, load0, load1, nats_ver, parleyd, mosq_ver = sys.argv[1:9]
runs = [json.loads(l) for l in open(raw) if l.strip()]
loads = [r["loadavg"] for r in runs if isinstance(r.get("loadavg"), (int, float))]
if loads:
    load0, load1 = f"{min(loads):.2f}", f"{max(loads):.2f}"

def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and v >= 0]
    return statistics.median(vals) if vals else None

FIELDS = ["delivered_per_s", "published_per_s", "server_cpu_s_per_M",
          "server_cpu_util", "loadgen_cpu_util", "server_peak_rss_kb",
          "idle_rss_per_conn_bytes", "idle_server_cpu_util"]
LAT = ["p50", "p90", "p99", "p999", "max"]
summary = {}
for r in runs:
    s = summary.setdefault(r["label"], {}).setdefault(r["server"], {"runs": []})
    s["runs"].append(r)
for wl, by in summary.items():
    for srv, s in by.items():
        rs = s.pop("runs")
        for f in FIELDS:
            s[f] = med([r.get(f) for r in rs])
        # 1e6 / (CPU-s per 1M): what one fully available core would
        # deliver; robust when other processes share the machine.
        s["per_cpu_s"] = 1e6 / s["server_cpu_s_per_M"] if s["server_cpu_s_per_M"] else None
        s["latency_us"] = {q: med([r.get("latency_us", {}).get(q) for r in rs]) for q in LAT}
        for f in ["lost", "duplicated", "reordered", "pub_errors", "closed_during_run"]:
            s[f + "_total"] = sum(r.get(f, 0) or 0 for r in rs)
        s["rounds"] = len(rs)
        s["failed_runs"] = sum(1 for r in rs if r.get("rc") or r.get("setup_failed") or not r.get("server_alive", True))

cpu = ""
try:
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip(); break
except OSError:
    pass
meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": int(rounds),
        "host_cpu": cpu, "nproc": os.cpu_count(), "kernel": platform.release(),
        "loadavg_min": load0, "loadavg_max": load1,
        "nats_server": nats_ver, "mosquitto": mosq_ver, "parleyd": parleyd,
        "pinning": {"server_cpu": os.environ.get("SERVER_CPU", "0"),
                    "loadgen_cpu": os.environ.get("LOADGEN_CPU", "1")},
        "nice": os.environ.get("NICE", ""),
        "body_bytes": 200}
json.dump({"meta": meta, "summary": summary, "runs": runs}, open(out, "w"), indent=1)

def fmt(v, kind):
    if v is None: return "-"
    if kind == "rate": return f"{v/1e6:.2f}M" if v >= 1e6 else f"{v/1e3:.1f}k"
    if kind == "cpu": return f"{v:.3f}"
    if kind == "pct": return f"{v*100:.0f}%"
    if kind == "us": return f"{v/1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"
    if kind == "kb": return f"{v/1024:.1f} MiB"
    if kind == "b": return f"{v/1024:.1f} KiB"
    if kind == "n": return str(v)
    return str(v)

TITLES = {"fanout1": "fan-out K=1, open throttle",
          "fanout100": "fan-out K=100, open throttle",
          "fanout1000": "fan-out K=1000, open throttle",
          "topics": "many-topics: 1,000 topics x 1 subscriber, 4 publishers",
          "lat1": "latency K=1 at 5,000 msg/s",
          "lat100": "latency K=100 at 200 msg/s",
          "fed1": "federated K=1 (parley: A -> B over mTLS; nats: leaf -> hub over mTLS; mosquitto: bridge over mTLS)",
          "fed100": "federated K=100 (same setups)",
          "fedlat1": "federated K=1 at 5,000 msg/s",
          "chain100": "federated chain K=100 (parley: A -> B -> C; nats: leaf -> hub -> leaf; mosquitto: 2 bridges)",
          "cluster1": "cluster K=1 across instances (parley: i1 -> Redis -> i2; nats: n1 -> route -> n2)",
          "cluster100": "cluster K=100 split over 2 instances (parley: + Redis; nats: 2-server cluster)",
          "idle": "idle connections"}
ROWS = {
    "fanout": [("deliveries/s", "delivered_per_s", "rate"),
               ("publishes/s", "published_per_s", "rate"),
               ("server CPU-s per 1M deliveries", "server_cpu_s_per_M", "cpu"),
               ("deliveries per server CPU-second", "per_cpu_s", "rate"),
               ("server CPU use", "server_cpu_util", "pct"),
               ("loadgen CPU use", "loadgen_cpu_util", "pct"),
               ("latency p50", ("latency_us", "p50"), "us"),
               ("latency p99", ("latency_us", "p99"), "us"),
               ("server peak RSS", "server_peak_rss_kb", "kb")],
    "lat": [("deliveries/s", "delivered_per_s", "rate"),
            ("latency p50", ("latency_us", "p50"), "us"),
            ("latency p90", ("latency_us", "p90"), "us"),
            ("latency p99", ("latency_us", "p99"), "us"),
            ("latency p99.9", ("latency_us", "p999"), "us"),
            ("latency max", ("latency_us", "max"), "us"),
            ("server CPU-s per 1M deliveries", "server_cpu_s_per_M", "cpu"),
            ("server CPU use", "server_cpu_util", "pct")],
    "idle": [("server RSS per connection", "idle_rss_per_conn_bytes", "b"),
             ("server CPU use while idle", "idle_server_cpu_util", "pct"),
             ("server peak RSS", "server_peak_rss_kb", "kb")],
}
SRVS = ("parley", "nats", "mosquitto")
print(f"\nparley vs NATS {nats_ver.split()[-1] if nats_ver else ''} over WebSocket "
      f"and Mosquitto {mosq_ver} over MQTT/TCP: "
      f"200-byte bodies, median of {rounds} interleaved rounds, "
      f"server on CPU {meta['pinning']['server_cpu']}, loadgen on CPU {meta['pinning']['loadgen_cpu']}"
      + (f", nice {meta['nice']}" if meta['nice'] else ""))
batches = sorted({r.get("batch", 0) for r in runs if r.get("server") == "parley"})
print("parley's publishers: " + ", ".join(
    f"batch frames of at most {b} bytes" if b else "one frame per publish"
    for b in batches) + " (BATCH)")
print(f"1-minute load average during the runs: {load0} to {load1} ({os.cpu_count()} cores)")
if max(float(load0.split()[0]), float(load1.split()[0])) > (os.cpu_count() or 1):
    print("!! the machine was busy with other work (load average above the core count):\n"
          "!! throughput and latency are understated; CPU-s per delivery still holds")
print()
print(f"{'workload / metric':<44} {'parley':>12} {'nats':>12} {'mosquitto':>12}")
print("-" * 83)
for wl in summary:
    kind = "idle" if wl == "idle" else "lat" if "lat" in wl else "fanout"
    title = TITLES.get(wl, wl)
    if wl == "idle":
        n = next((r.get("idle") for r in runs if r["label"] == "idle"), None)
        title = f"{n} idle connections"
    print(title)
    for name, key, k in ROWS[kind]:
        vals = []
        for srv in SRVS:
            s = summary[wl].get(srv)
            if not s: vals.append("-"); continue
            v = s[key[0]][key[1]] if isinstance(key, tuple) else s.get(key)
            vals.append(fmt(v, k))
        print(f"  {name:<42} {vals[0]:>12} {vals[1]:>12} {vals[2]:>12}")
    lossy = []
    for srv in SRVS:
        s = summary[wl].get(srv)
        if s and (s["lost_total"] or s["duplicated_total"] or s["failed_runs"]):
            lossy.append(f"{srv}: lost {s['lost_total']}, duplicated {s['duplicated_total']}, failed runs {s['failed_runs']}")
    procs = []
    for srv in SRVS:
        rs = [r for r in runs if r["label"] == wl and r["server"] == srv and r.get("delivered")]
        names = sorted({n for r in rs for n in r.get("proc_cpu_s", {})})
        if len(names) < 2:
            continue
        parts = []
        for n in names:
            v = med([r["proc_cpu_s"][n] / r["delivered"] * 1e6 for r in rs if n in r.get("proc_cpu_s", {})])
            parts.append(f"{n} {v:.3f}" if v is not None else f"{n} -")
        procs.append(f"{srv}: " + ", ".join(parts))
    for p in procs:
        print(f"  CPU-s per 1M deliveries by process, {p}")
    if kind != "idle":
        print(f"  {'lost / duplicated (all rounds)':<42} " +
              " ".join(f"{(str(summary[wl][s]['lost_total'])+' / '+str(summary[wl][s]['duplicated_total'])) if s in summary[wl] else '-':>12}"
                       for s in SRVS))
    for l in lossy:
        print(f"  !! {l}")
print(f"\nresults: {out}")
EOF
