#!/usr/bin/env bash
# run.sh: parley beside NATS over WebSocket, measured with parley-loadgen
# (issue 2's figures). Starts a fresh parleyd and a fresh nats-server on free
# loopback ports for every measurement (so peak RSS belongs to one
# workload), server pinned to one core and load generator to the other,
# rounds interleaved, medians reported. Everything is bounded in time;
# servers are stopped on exit.
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
#   ROUNDS       rounds (default 3; smoke 1)
#   DURATION     seconds per throughput/latency run (default 5)
#   IDLE         idle connections held (default 1000)
#   RESULTS      JSON output (default tests/bench/results.json)
#   SERVER_CPU / LOADGEN_CPU   cores to pin to (default 0 / 1)
#   WORKLOADS    subset, e.g. "fanout1 lat1" (default: all)
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
else
	ROUNDS=${ROUNDS:-3}
	DURATION=${DURATION:-5}
	IDLE=${IDLE:-1000}
fi
RESULTS=${RESULTS:-$HERE/results.json}
PARLEYD=${PARLEYD:-$ROOT/build/server/parleyd}
NATS_SERVER=${NATS_SERVER:-nats-server}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
WORKLOADS=${WORKLOADS:-fanout1 fanout100 lat1 lat100 idle}
TOKEN=bench-token

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench.XXXXXX")
SRV_PID=
cleanup() {
	local rc=$?
	stop_server
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
		SERVERS="parley nats"
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

# Prints a port that nothing listens on (the server start retries on a
# race).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port found"
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

write_parley_config() {
	local sha
	sha=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
	cat >"$WORK/parley.json" <<EOF
{
  "node": "bench.local",
  "log_level": "info",
  "listen": { "host": "127.0.0.1", "port": $1, "path": "/ws" },
  "history": { "length": 1000 },
  "auth": {
    "anonymous": { "subscribe": ["bench/#"], "publish": [] },
    "tokens": [
      { "user": "bench", "token_sha256": "$sha",
        "subscribe": ["bench/#"], "publish": ["bench/#"] }
    ]
  },
  "limits": {
    "max_frame_bytes": 65536,
    "max_subscriptions": 256,
    "max_queue_bytes": 4194304,
    "publish_per_second": 1000000,
    "publish_burst": 10000000,
    "token_publish_per_second": 10000000,
    "max_connections": 100000,
    "max_errors": 10,
    "max_topics": 100000
  }
}
EOF
}

write_nats_config() {
	cat >"$WORK/nats.conf" <<EOF
listen: "127.0.0.1:-1"
max_connections: 100000
websocket {
  listen: "127.0.0.1:$1"
  no_tls: true
  compression: false
}
EOF
}

# Starts server $1 (parley|nats) on a free port: sets SRV_PID and SRV_URL.
start_server() {
	local port try
	for try in 1 2 3 4 5; do
		port=$(free_port)
		if [[ $1 == parley ]]; then
			write_parley_config "$port"
			"${PIN_SRV[@]}" "$PARLEYD" -c "$WORK/parley.json" \
				>"$WORK/server.log" 2>&1 &
			SRV_URL="ws://127.0.0.1:$port/ws"
		else
			write_nats_config "$port"
			"${PIN_SRV[@]}" "$NATS_SERVER" -c "$WORK/nats.conf" \
				>"$WORK/server.log" 2>&1 &
			SRV_URL="ws://127.0.0.1:$port/"
		fi
		SRV_PID=$!
		if wait_port "$port" "$SRV_PID"; then
			return 0
		fi
		stop_server
		log "$1 did not start on port $port (try $try):"
		tail -n 5 "$WORK/server.log" >&2 || true
	done
	fail "$1 would not start"
}

# Stops the current server: TERM, then KILL after 3 s.
stop_server() {
	[[ -n $SRV_PID ]] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null || true
	for _ in $(seq 60); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}

# ---- workloads ----

# Loadgen arguments of workload $1.
workload_args() {
	local d=$DURATION
	case "$1:$MODE" in
	fanout1:full) echo "--subs 1 --rate 0 --duration $d" ;;
	fanout100:full) echo "--subs 100 --rate 0 --duration $d" ;;
	fanout1:smoke) echo "--subs 1 --rate 0 --duration $d --count 50000" ;;
	fanout100:smoke) echo "--subs 100 --rate 0 --duration $d --count 5000" ;;
	lat1:*) echo "--subs 1 --rate 5000 --duration $d" ;;
	lat100:*) echo "--subs 100 --rate 200 --duration $d" ;;
	idle:full) echo "--subs 0 --idle $IDLE --duration 2" ;;
	idle:smoke) echo "--subs 0 --idle $IDLE --duration 0.5" ;;
	*) fail "unknown workload $1" ;;
	esac
}

RAW=$WORK/raw.jsonl
: >"$RAW"
FAILED=0

# Runs workload $1 against server $2 in round $3; appends one JSON line.
run_one() {
	local wl=$1 srv=$2 round=$3 out rc=0 alive=true errs tok=() load
	load=$(cut -d' ' -f1 /proc/loadavg)
	start_server "$srv"
	if [[ $srv == parley ]]; then
		tok=(--token "$TOKEN")
	fi
	# shellcheck disable=SC2046
	out=$("${PIN_LG[@]}" "$LOADGEN" --proto "$srv" --url "$SRV_URL" \
		"${tok[@]}" --pid "$SRV_PID" --size 200 --json --check \
		--label "$wl" $(workload_args "$wl")) || rc=$?
	kill -0 "$SRV_PID" 2>/dev/null || alive=false
	errs=$(grep -c 'level=error' "$WORK/server.log" || true)
	stop_server
	if [[ -z $out ]]; then
		out='{"label":"'$wl'","setup_failed":true}'
	fi
	# Annotate with round, server, exit status and server health.
	out=${out%\}}
	echo "$out,\"server\":\"$srv\",\"round\":$round,\"rc\":$rc,\"server_alive\":$alive,\"server_log_errors\":${errs:-0},\"loadavg\":$load}" >>"$RAW"
	if ((rc != 0)) || [[ $alive != true ]]; then
		log "$wl/$srv round $round: loadgen exit $rc, server alive: $alive"
		if [[ $alive != true ]] && grep -q 'signal=15' "$WORK/server.log"; then
			log "the server got a SIGTERM run.sh did not send (another process killed it?)"
		fi
		cp "$WORK/server.log" "$WORK/server-$wl-$srv-$round.log"
		tail -n 20 "$WORK/server.log" >&2 || true
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
	order=$SERVERS
	# Alternate which server goes first, so neither always runs on a
	# freshly quiet machine.
	if [[ $MODE == full ]] && ((round % 2 == 0)); then
		order="nats parley"
	fi
	for wl in $WORKLOADS; do
		for srv in $order; do
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

PY=$(command -v python3 || true)
[[ -n $PY ]] || fail "python3 is needed for the summary (raw results: $RAW)"
"$PY" - "$RAW" "$RESULTS" "$ROUNDS" "$LOAD_BEFORE" "$LOAD_AFTER" \
	"$("$NATS_SERVER" --version 2>&1 | head -n1)" "$PARLEYD" <<'EOF'
import json, os, platform, statistics, subprocess, sys, time

raw, out, rounds, load0, load1, nats_ver, parleyd = sys.argv[1:8]
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
        "nats_server": nats_ver, "parleyd": parleyd,
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
          "lat1": "latency K=1 at 5,000 msg/s",
          "lat100": "latency K=100 at 200 msg/s",
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
print(f"\nparley vs NATS {nats_ver.split()[-1] if nats_ver else ''} over WebSocket: "
      f"200-byte bodies, median of {rounds} interleaved rounds, "
      f"server on CPU {meta['pinning']['server_cpu']}, loadgen on CPU {meta['pinning']['loadgen_cpu']}"
      + (f", nice {meta['nice']}" if meta['nice'] else ""))
print(f"1-minute load average during the runs: {load0} to {load1} ({os.cpu_count()} cores)")
if max(float(load0.split()[0]), float(load1.split()[0])) > (os.cpu_count() or 1):
    print("!! the machine was busy with other work (load average above the core count):\n"
          "!! throughput and latency are understated; CPU-s per delivery still holds")
print()
print(f"{'workload / metric':<44} {'parley':>12} {'nats':>12}")
print("-" * 70)
for wl in summary:
    kind = "fanout" if wl.startswith("fanout") else "lat" if wl.startswith("lat") else "idle"
    title = TITLES.get(wl, wl)
    if wl == "idle":
        n = next((r.get("idle") for r in runs if r["label"] == "idle"), None)
        title = f"{n} idle connections"
    print(title)
    for name, key, k in ROWS[kind]:
        vals = []
        for srv in ("parley", "nats"):
            s = summary[wl].get(srv)
            if not s: vals.append("-"); continue
            v = s[key[0]][key[1]] if isinstance(key, tuple) else s.get(key)
            vals.append(fmt(v, k))
        print(f"  {name:<42} {vals[0]:>12} {vals[1]:>12}")
    lossy = []
    for srv in ("parley", "nats"):
        s = summary[wl].get(srv)
        if s and (s["lost_total"] or s["duplicated_total"] or s["failed_runs"]):
            lossy.append(f"{srv}: lost {s['lost_total']}, duplicated {s['duplicated_total']}, failed runs {s['failed_runs']}")
    if kind != "idle":
        print(f"  {'lost / duplicated (all rounds)':<42} " +
              " ".join(f"{(str(summary[wl][s]['lost_total'])+' / '+str(summary[wl][s]['duplicated_total'])) if s in summary[wl] else '-':>12}"
                       for s in ("parley", "nats")))
    for l in lossy:
        print(f"  !! {l}")
print(f"\nresults: {out}")
EOF
