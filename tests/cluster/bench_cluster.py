#!/usr/bin/python3
"""bench_cluster: the cluster's throughput and latency beside a standalone
hub, measured with parley's load generator (not a ctest scenario).

loadgen connects every client to one --url; to put subscribers on other
instances than the publisher this script builds a copy of the load
generator (client-lib/cli/bench.c, formerly tests/bench/loadgen.c) with
loadgen-sub-url.patch applied (--sub-url URL, repeatable: subscribers go
round robin over those URLs, publishers use --url) in a temporary
directory, with `cc -O2`; LOADGEN= names a binary that already has
--sub-url.

Configurations, each with 1 publisher and SUBS subscribers on one topic,
200-byte bodies, the same limits as tests/bench/run.sh:
  standalone   one parleyd, no Redis: everything on it
  cluster-1    two instances on one Redis, publisher and subscribers on
               instance 1 (Redis still stores and fans out every message)
  cluster-split  publisher on instance 1, subscribers split across
               instances 1 and 2
  cluster-redis  publisher on instance 1, every subscriber on instance 2:
               Redis is the only path
Workloads: "open" (open throttle, DURATION s) and "rate" (RATE msg/s for
DURATION s: latency without queueing). Rounds are interleaved; the table
shows medians. Every server is fresh per measurement. Nothing is pinned:
on this 2-core machine loadgen, Redis and the instances share the cores.

"srv cpu" is the CPU time of the servers (instances and Redis) per
second of the run (2.0 = both cores). lost/dup are the largest over the
rounds.

Environment: PARLEYD, PARLEY_SOURCE_DIR, SUBS (100), DURATION (5),
RATE (200), ROUNDS (1), CONFIGS, WORKLOADS, JSON_OUT (a file for the raw
results).
"""
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile

import clustertest as ct
import parleytest as pt
from clustertest import note

HERE = os.path.dirname(os.path.abspath(__file__))
SUBS = int(os.environ.get("SUBS", "100"))
DURATION = float(os.environ.get("DURATION", "5"))
RATE = int(os.environ.get("RATE", "200"))
ROUNDS = int(os.environ.get("ROUNDS", "1"))
CONFIGS = os.environ.get("CONFIGS", "standalone cluster-1 cluster-split cluster-redis").split()
WORKLOADS = os.environ.get("WORKLOADS", "open rate").split()
LIMITS = {
    "max_frame_bytes": 65536,
    "max_subscriptions": 256,
    "max_queue_bytes": 4194304,
    "publish_per_second": 1000000,
    "publish_burst": 10000000,
    "token_publish_per_second": 10000000,
    "max_connections": 100000,
    "max_errors": 10,
}


def build_loadgen(work):
    """Returns a load generator that knows --sub-url: $LOADGEN, else the
    tree's bench.c / loadgen.c built here (patched with
    loadgen-sub-url.patch when it lacks the option)."""
    if os.environ.get("LOADGEN"):
        return os.environ["LOADGEN"]
    for rel in ("client-lib/cli/bench.c", "tests/bench/loadgen.c"):
        src = os.path.join(ct.SOURCE_DIR, rel)
        if os.path.exists(src):
            break
    else:
        raise pt.Failure("no load generator source (client-lib/cli/bench.c or tests/bench/loadgen.c)")
    dst = os.path.join(work, os.path.basename(src))
    shutil.copy(src, dst)
    with open(dst) as f:
        has = "sub-url" in f.read()
    if not has:
        r = subprocess.run(["patch", "-s", dst, os.path.join(HERE, "loadgen-sub-url.patch")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            raise pt.Failure("loadgen-sub-url.patch does not apply to %s: %s" % (rel, r.stdout.decode()))
    exe = os.path.join(work, "parley-loadgen")
    subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-O2", "-o", exe, dst], check=True)
    note("load generator: %s%s" % (rel, "" if has else " + loadgen-sub-url.patch"))
    return exe


def start(config):
    """Starts the servers of a configuration; returns (pub_url, sub_urls,
    pids, things to stop)."""
    kw = dict(tokens=[pt.user("bench")], history=1000, limits=LIMITS, log_level="warn",
              anon_sub=["#"])
    if config == "standalone":
        h = pt.Hub(**kw)
        h.start()
        return h.url(), [h.url()], [h.proc.pid], [h], None
    redis = ct.Redis().start()
    i1, i2 = ct.cluster(redis, **kw)
    i1.start()
    i2.start()
    subs = {"cluster-1": [i1.url()], "cluster-split": [i1.url(), i2.url()],
            "cluster-redis": [i2.url()]}[config]
    return i1.url(), subs, [i1.proc.pid, i2.proc.pid, redis.proc.pid], [i1, i2], redis


async def wait_up(hubs):
    for h in hubs:
        if isinstance(h, ct.Instance):
            await h.wait_redis(("up",), 10)


def run_one(exe, config, workload):
    pub_url, sub_urls, pids, hubs, redis = start(config)
    try:
        asyncio.run(wait_up(hubs))
        args = [exe, "--url", pub_url, "--subs", str(SUBS), "--pubs", "1", "--topic", "bench/t",
                "--duration", str(DURATION), "--token", pt.token_of("bench"), "--json",
                "--pid", ",".join(str(p) for p in pids), "--label", "%s/%s" % (config, workload)]
        for u in sub_urls:
            args += ["--sub-url", u]
        args += ["--rate", "0" if workload == "open" else str(RATE)]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=DURATION + 40)
        if r.returncode == 2:
            raise pt.Failure("loadgen setup failed for %s/%s: %s" % (config, workload, r.stderr.decode()))
        res = json.loads(r.stdout)
        res["_cmd"] = " ".join(args)
        return res
    finally:
        for h in hubs:
            h.stop()
        if redis:
            redis.cleanup()
        for h in hubs:
            shutil.rmtree(h.dir, ignore_errors=True)


def pick(res, *names):
    for n in names:
        cur = res
        for part in n.split("."):
            if not isinstance(cur, dict) or part not in cur:
                cur = None
                break
            cur = cur[part]
        if cur is not None:
            return cur
    return None


def main():
    work = tempfile.mkdtemp(prefix="parley-cl-bench-")
    try:
        exe = build_loadgen(work)
        results = {}
        for rnd in range(ROUNDS):
            for wl in WORKLOADS:
                for cfg in CONFIGS:
                    res = run_one(exe, cfg, wl)
                    results.setdefault((cfg, wl), []).append(res)
                    note("round %d %s/%s: %s" % (rnd + 1, cfg, wl, json.dumps(
                        {k: res.get(k) for k in ("delivered_per_s", "latency_us", "lost",
                                                 "duplicated", "reordered", "published")})))
        if os.environ.get("JSON_OUT"):
            with open(os.environ["JSON_OUT"], "w") as f:
                json.dump({"%s/%s" % k: v for k, v in results.items()}, f, indent=1)
        print("%-14s %-5s %12s %14s %9s %9s %9s %8s %5s %5s" % (
            "config", "load", "published/s", "delivered/s", "p50 ms", "p99 ms", "p99.9 ms",
            "srv cpu", "lost", "dup"))
        for wl in WORKLOADS:
            for cfg in CONFIGS:
                rs = results[(cfg, wl)]

                def med(*names):
                    vals = [pick(r, *names) for r in rs]
                    vals = [v for v in vals if isinstance(v, (int, float))]
                    return statistics.median(vals) if vals else float("nan")
                print("%-14s %-5s %12.0f %14.0f %9.2f %9.2f %9.2f %8.2f %5d %5d" % (
                    cfg, wl, med("published_per_s"), med("delivered_per_s"),
                    med("latency_us.p50") / 1000, med("latency_us.p99") / 1000,
                    med("latency_us.p999") / 1000, med("server_cpu_util"),
                    max(pick(r, "lost") or 0 for r in rs), max(pick(r, "duplicated") or 0 for r in rs)))
        print("commands (last round):")
        for k, rs in results.items():
            print("  " + rs[-1]["_cmd"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
