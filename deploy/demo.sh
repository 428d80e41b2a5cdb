#!/usr/bin/env bash
# demo.sh: three federated parleyd nodes on this machine, to try federation.
# Run with --help for the usage; deploy/README.md explains it.
set -euo pipefail

prog=$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
	cat <<EOF
Usage: $prog [--client-port N] [--fed-port N] [--keep] [--smoke]

Starts three parley nodes, a.example, b.example and c.example, on 127.0.0.1,
with a federation CA and node certificates made by deploy/gen-certs.sh in a
temporary directory. The nodes are federated in a triangle: each exports and
imports forum/#. The script prints the web chat URLs, the tokens and curl
commands to publish, then waits; Ctrl-C stops the nodes (SIGTERM) and
removes the directory.

Options:
  --client-port N  client ports are N, N+1, N+2 (default 8081)
  --fed-port N     federation ports are N, N+1, N+2 (default 9441)
  --keep           keep the temporary directory (configs, certificates, logs;
                   it is always kept when something fails)
  --smoke          publish one message on each node, check that it reached
                   the other two, stop and exit (0 when it did)
  -h, --help       this text

The parleyd binary is \$PARLEYD, or build/server/parleyd in the source tree.
EOF
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

client_port=8081
fed_port=9441
keep=0
smoke=0
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--client-port | --fed-port)
		if ! { [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 65533 ]; }; then
			die "$1 needs a port number"
		fi
		if [ "$1" = --client-port ]; then client_port=$2; else fed_port=$2; fi
		shift 2
		;;
	--keep)
		keep=1
		shift
		;;
	--smoke)
		smoke=1
		shift
		;;
	*)
		echo "$prog: unknown argument '$1'" >&2
		echo "Try '$prog --help'." >&2
		exit 2
		;;
	esac
done

parleyd=${PARLEYD:-$root/build/server/parleyd}
[ -x "$parleyd" ] || die "no parleyd at $parleyd: build it (cmake -S . -B build && cmake --build build) or set PARLEYD"
for c in curl openssl sha256sum; do
	command -v "$c" >/dev/null || die "$c not found (apt-get install curl openssl coreutils)"
done

names=(a.example b.example c.example)
users=(alice bob carol)
pids=()

port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for i in 0 1 2; do
	for p in $((client_port + i)) $((fed_port + i)); do
		! port_busy "$p" || die "port $p is in use: choose others with --client-port/--fed-port"
	done
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-demo.XXXXXX")

# Stops the nodes: SIGTERM, up to 5 s, then SIGKILL. Sets stop_failed=1
# when one did not exit with status 0 by itself.
stop_failed=0
stop_nodes() {
	local pid i alive rc
	for pid in ${pids[@]+"${pids[@]}"}; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for i in $(seq 50); do
		alive=0
		for pid in ${pids[@]+"${pids[@]}"}; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ $alive = 1 ] || break
		sleep 0.1
	done
	for i in ${pids[@]+"${!pids[@]}"}; do
		pid=${pids[$i]}
		if kill -0 "$pid" 2>/dev/null; then
			echo "$prog: ${names[$i]} did not stop after SIGTERM: killed" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rc=0
		wait "$pid" 2>/dev/null || rc=$?
		if [ $rc -ne 0 ]; then
			echo "$prog: ${names[$i]} exited with status $rc" >&2
			stop_failed=1
		fi
	done
	pids=()
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_nodes
	if [ $keep = 1 ] || [ $rc -ne 0 ]; then
		echo "$prog: kept $tmp (configs, certificates, logs)" >&2
	else
		rm -rf -- "$tmp"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'echo; echo "$prog: stopping"; exit 0' INT TERM

"$root/deploy/gen-certs.sh" "$tmp/certs" "${names[@]}" >/dev/null

tokens=()
for i in 0 1 2; do
	tokens+=("${users[$i]}-$(openssl rand -hex 12)")
done

# peers_json I: the two other nodes, as federation.peers entries.
peers_json() {
	local i=$1 j sep=""
	for j in 0 1 2; do
		[ "$j" != "$i" ] || continue
		printf '%s\n        { "name": "%s", "url": "wss://127.0.0.1:%d/fed",\n          "export": ["forum/#"], "import": ["forum/#"] }' \
			"$sep" "${names[$j]}" $((fed_port + j))
		sep=","
	done
}

for i in 0 1 2; do
	n=${names[$i]}
	sha=$(printf %s "${tokens[$i]}" | sha256sum | cut -d' ' -f1)
	cat >"$tmp/$n.json" <<EOF
{
  "node": "$n",
  "listen": { "host": "127.0.0.1", "port": $((client_port + i)) },
  "history": { "length": 1000 },
  "auth": {
    "anonymous": { "subscribe": ["forum/#"], "publish": [] },
    "tokens": [
      { "user": "${users[$i]}", "token_sha256": "$sha",
        "subscribe": ["#"], "publish": ["forum/#"] }
    ]
  },
  "federation": {
    "listen": { "host": "127.0.0.1", "port": $((fed_port + i)) },
    "ca": "$tmp/certs/ca.pem",
    "cert": "$tmp/certs/$n.pem",
    "key": "$tmp/certs/$n.key",
    "state_file": "$tmp/$n.fedstate",
    "peers": [$(peers_json $i)
    ]
  }
}
EOF
	"$parleyd" --check -c "$tmp/$n.json" >"$tmp/$n.check" 2>&1 ||
		die "parleyd --check refused $tmp/$n.json: $(cat "$tmp/$n.check")"
done

# Each node in a session of its own: Ctrl-C in the terminal reaches only
# this script, which then stops every node once, with SIGTERM (a second
# signal would make a node skip its clean shutdown).
for i in 0 1 2; do
	n=${names[$i]}
	if command -v setsid >/dev/null; then
		setsid "$parleyd" -c "$tmp/$n.json" >"$tmp/$n.log" 2>&1 </dev/null &
	else
		"$parleyd" -c "$tmp/$n.json" >"$tmp/$n.log" 2>&1 </dev/null &
	fi
	pids+=($!)
done

# Readiness: /healthz answers, then each node has both peers up.
deadline=$((SECONDS + 20))
for i in 0 1 2; do
	until curl -fsS -o /dev/null "http://127.0.0.1:$((client_port + i))/healthz" 2>/dev/null; do
		kill -0 "${pids[$i]}" 2>/dev/null ||
			die "${names[$i]} exited; its log:"$'\n'"$(tail -20 "$tmp/${names[$i]}.log")"
		[ $SECONDS -lt $deadline ] || die "${names[$i]} is not ready; see $tmp/${names[$i]}.log"
		sleep 0.1
	done
done
for i in 0 1 2; do
	until [ "$(curl -fsS "http://127.0.0.1:$((client_port + i))/healthz" 2>/dev/null |
		grep -o '"state"[[:space:]]*:[[:space:]]*"up"' | wc -l)" -ge 2 ]; do
		[ $SECONDS -lt $deadline ] || {
			echo "$prog: ${names[$i]}'s links are not all up yet:" >&2
			curl -sS "http://127.0.0.1:$((client_port + i))/healthz" >&2 || true
			echo >&2
			break
		}
		sleep 0.2
	done
done

if [ $smoke = 1 ]; then
	fail=0
	for i in 0 1 2; do
		body="{\"topic\":\"forum/demo\",\"body\":\"hello from ${names[$i]}\"}"
		out=$(curl -fsS -H "Authorization: Bearer ${tokens[$i]}" -d "$body" \
			"http://127.0.0.1:$((client_port + i))/v1/publish") || {
			echo "$prog: publish on ${names[$i]} failed" >&2
			fail=1
			continue
		}
		mid=$(printf %s "$out" | sed -n 's/.*"mid"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
		for j in 0 1 2; do
			ok=0
			for _ in $(seq 50); do
				if curl -fsS "http://127.0.0.1:$((client_port + j))/v1/history?topic=forum/demo&last=10" |
					grep -q "\"$mid\""; then
					ok=1
					break
				fi
				sleep 0.1
			done
			if [ $ok = 1 ]; then
				echo "ok - message $mid of ${names[$i]} is on ${names[$j]}"
			else
				echo "not ok - message $mid of ${names[$i]} is not on ${names[$j]}"
				fail=1
			fi
		done
	done
	stop_nodes
	[ $stop_failed = 0 ] && echo "ok - the three nodes stopped with status 0" || fail=1
	exit $fail
fi

cat <<EOF

parley demo: three federated nodes are running (configs and logs in $tmp).

  node        web chat                  user   token
  a.example   http://127.0.0.1:$client_port/    alice  ${tokens[0]}
  b.example   http://127.0.0.1:$((client_port + 1))/    bob    ${tokens[1]}
  c.example   http://127.0.0.1:$((client_port + 2))/    carol  ${tokens[2]}

Open two or three of the pages, sign in with that node's token and join a
topic under forum/ (forum/demo): what you post on one node appears on all.

Publish from the command line (here as alice on a.example):

  curl -H 'Authorization: Bearer ${tokens[0]}' \\
       -d '{"topic":"forum/demo","body":"hello from a"}' \\
       http://127.0.0.1:$client_port/v1/publish

and read it on b.example:

  curl 'http://127.0.0.1:$((client_port + 1))/v1/history?topic=forum/demo&last=10'

Links and counters: curl http://127.0.0.1:$client_port/healthz
                    curl http://127.0.0.1:$client_port/metrics
Logs: tail -f $tmp/*.log

Press Ctrl-C to stop the three nodes.
EOF

# Wait until Ctrl-C, or until a node dies.
while :; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			wait "${pids[$i]}" && rc=0 || rc=$?
			echo "$prog: ${names[$i]} exited with status $rc; the end of its log:" >&2
			tail -20 "$tmp/${names[$i]}.log" >&2
			unset "pids[$i]"
			exit 1
		fi
	done
	sleep 1
done
