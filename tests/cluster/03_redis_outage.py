#!/usr/bin/python3
"""03_redis_outage: Redis dies under a cluster and comes back.

Part 1 (Redis without persistence, SIGKILL mid-stream): every publish
sent after the kill is refused with "unavailable" (never ok), over
WebSocket and HTTP (503); connections stay open; /healthz shows redis
down or connecting and /metrics parley_redis_up 0; after Redis restarts
on the same port (empty) the instances recover by themselves within a
few seconds and delivery resumes to the existing subscribers; the data
set has a new epoch, so resubscribing `since` a cursor of before is a
history_gap; no subscriber sees a message twice and none misses an
acknowledged one.

Part 2 (Redis with an append-only file, SIGTERM and restart with its
data): the epoch is kept, cursors stay valid and keep increasing, and a
client that resubscribes `since` its last cursor through the other
instance gets exactly what it missed, then live messages.

Part 3 (Redis stays up, one instance's links are killed with CLIENT
KILL while the other keeps publishing): the cut-off instance catches up
from the node-wide log (in several reads), so its subscriber gets every
message stored while it was away (runs of one topic and alternating
topics), once and in order, then live ones."""
import asyncio
import os
import re
import signal
import time

import clustertest as ct
from clustertest import check, check_eq, mids, note

MAX_ERRORS = 10
RECOVER_S = 10.0
SETTLE_S = 0.05  # Acknowledged this long before Redis's death: must arrive.  # Bound for "recovers by itself within a few seconds".


async def wait_up_all(instances, what):
    t = []
    for i in instances:
        t.append(await i.wait_redis(("up",), RECOVER_S))
    check(True, "%s: /healthz redis.state up again on every instance (after %.1f s)" % (what, max(t)))
    return max(t)


async def no_persistence():
    redis = ct.Redis().start()
    # max_errors at its default (10): refused publishes are not bad
    # requests and must not get a client disconnected.
    i1, i2 = ct.cluster(redis, history=1000, limits={"max_errors": MAX_ERRORS})
    await ct.start_all([i1, i2])
    check_eq(i1.metric("parley_redis_up"), 1.0, "parley_redis_up is 1 while Redis runs")
    sa = await ct.subscriber(i1, "forum/#", name="sa-i1")
    sb = await ct.subscriber(i2, "forum/#", name="sb-i2")
    pub = await ct.client(i1, "alice", "pub-i1")

    # A steady stream from i1; Redis is SIGKILLed in the middle.
    results = []  # (sent_at, answer)
    state = {"kill_at": None, "closed": None}
    stop = asyncio.Event()

    async def stream():
        i = 0
        while not stop.is_set():
            rid = "s%d" % i
            t = time.monotonic()
            try:
                await pub.send({"op": "pub", "id": rid, "topic": "forum/out/a", "body": {"i": i}})
                ans, _ = await pub.wait_answer(rid, timeout=10)
            except ct.websockets.exceptions.ConnectionClosed:
                state["closed"] = (pub.ws.close_code, pub.ws.close_reason, i)
                return
            results.append((t, ans, time.monotonic()))
            i += 1
            await asyncio.sleep(0.002 if state["kill_at"] is None else 0.02)

    task = asyncio.create_task(stream())
    # The kill comes at a moment of its own (not right after an ok).
    await asyncio.sleep(0.6)
    state["kill_at"] = time.monotonic()
    redis.kill()
    note("redis-server SIGKILLed after %d publishes" % len(results))
    await asyncio.sleep(1.5)
    stop.set()
    await task
    kill_at = state["kill_at"]
    after = [a for t, a, _ in results if t > kill_at]
    check(state["closed"] is None,
          "the publisher is still connected after %d refused publishes during the outage "
          "(limits.max_errors=%d)%s" % (len(after), MAX_ERRORS, "" if state["closed"] is None else
                                        ": the hub closed it with %s %r after %d publishes" % state["closed"]))
    if state["closed"] is not None:  # PARLEY_IT_SOFT: go on with a new one.
        pub = await ct.client(i1, "alice", "pub-i1-again")
    check(len(after) >= 10, "%d publishes were sent after the kill" % len(after))
    oks_after = [a for a in after if a.get("op") == "ok"]
    check(not oks_after, "no publish sent after the kill was answered ok%s"
          % ("" if not oks_after else ": %r" % oks_after[:2]))
    codes = sorted({a.get("code") for a in after})
    check_eq(codes, ["unavailable"], "every publish sent after the kill got error code unavailable")
    acked = [a["mid"] for _, a, _ in results if a.get("op") == "ok"]
    # A Redis without persistence that dies right after answering ok may
    # not have written the message to the other subscribers' sockets yet:
    # such a message is lost with Redis. Messages acknowledged well before
    # the kill must all arrive.
    settled = [a["mid"] for _, a, t_ok in results if a.get("op") == "ok" and t_ok < kill_at - SETTLE_S]
    unsure = [a for t, a, _ in results if t <= kill_at and a.get("op") != "ok"]
    note("%d acknowledged before the kill, %d in flight at the kill answered %s"
         % (len(acked), len(unsure), sorted({a.get("code") for a in unsure})))

    # HTTP publish on the other instance: 503 unavailable.
    st, j = ct.http_publish_raw(i2, "forum/out/http", "while down")
    check_eq((st, j.get("code") if isinstance(j, dict) else j), (503, "unavailable"),
             "POST /v1/publish on i2 while Redis is down: 503 unavailable")

    for inst in (i1, i2):
        s = inst.redis_state()
        check(s in ("down", "connecting"), "%s /healthz redis.state is %r (down or connecting)" % (inst.name, s))
        st, _ = inst.health()
        check_eq(st, 200, "%s /healthz still answers 200 (the instance serves its connections)" % inst.name)
        check_eq(inst.metric("parley_redis_up"), 0.0, "%s /metrics parley_redis_up is 0" % inst.name)
    for c in (sa, sb, pub):
        await c.alive()
    check(True, "the subscribers and the publisher are still connected (ping answered)")
    late = await ct.client(i2, "bob", "late-i2")
    ans, _ = await late.request("sub", topic="forum/#", last=5)
    check(ans.get("op") == "error" and ans.get("code") == "unavailable",
          "sub with backlog while Redis is down: error unavailable (got %r)" % ans)
    await late.alive()
    pre_a = await ct.collect(sa, settled, timeout=10, quiet=0.5)
    pre_b = await ct.collect(sb, settled, timeout=10, quiet=0.5)
    for who, fr in (("sa-i1", pre_a), ("sb-i2", pre_b)):
        ct.check_no_duplicates(fr, who)
        extra = [f for f in fr if f["mid"] not in set(acked)]
        got = [m for m in mids(fr) if m in set(acked)]
        note("%s: %d messages besides the acknowledged ones (in-flight publishes answered with an "
             "error); %d of the %d acknowledged within %.0f ms of the kill arrived"
             % (who, len(extra), len(got) - len(settled), len(acked) - len(settled), SETTLE_S * 1000))
        check(got[:len(settled)] == settled and got == acked[:len(got)],
              "%s got every message acknowledged before the outage once, in order (%d)" % (who, len(settled)))
    last_cursor = pre_a[-1]["cursor"]
    old_epoch = ct.cursor_key(last_cursor)[0]

    # Redis comes back empty, on the same port.
    mark = i1.log_mark()
    t0 = time.monotonic()
    redis.start()
    took = await wait_up_all([i1, i2], "after Redis restarted empty")
    note("recovery took %.1f s after redis-server was ready (%.1f s from its start)"
         % (took, time.monotonic() - t0))
    check_eq(i2.metric("parley_redis_up"), 1.0, "parley_redis_up is 1 again")
    check(i1.metric("parley_redis_outages_total") >= 1, "parley_redis_outages_total counted the outage")
    pub2 = await ct.client(i2, "carol", "pub-i2")
    new1 = await ct.burst(pub, "forum/out/b", 20, "n1")
    new2 = await ct.burst(pub2, "forum/out/c", 20, "n2")
    check(True, "publishes are accepted again on both instances")
    post_a = await ct.collect(sa, new1 + new2, timeout=10, quiet=0.3)
    post_b = await ct.collect(sb, new1 + new2, timeout=10, quiet=0.3)
    for who, fr in (("sa-i1", post_a), ("sb-i2", post_b)):
        check_eq(sorted(mids(fr)), sorted(new1 + new2),
                 "%s (subscribed before the outage, never resubscribed) receives the 40 new messages" % who)
        ct.check_once_in_order(fr, new1, "%s, i1's publisher" % who)
        ct.check_once_in_order(fr, new2, "%s, i2's publisher" % who)
        ct.check_cursors_increase(fr, who + " after the outage")
    new_epoch = ct.cursor_key(post_a[0]["cursor"])[0]
    check(new_epoch != old_epoch, "cursors after the restart name a new data set (epoch %s -> %s)"
          % (last_cursor.split("-")[0], post_a[0]["cursor"].split("-")[0]))
    check(ct.cursor_key(post_a[0]["cursor"]) > ct.cursor_key(last_cursor),
          "and still order after every cursor of before")
    all_a = pre_a + post_a
    ct.check_no_duplicates(all_a, "sa-i1 over the whole run")
    ct.check_no_duplicates(pre_b + post_b, "sb-i2 over the whole run")

    # Resubscribing since the last cursor of before: a gap (the data is
    # gone), on either instance; last=N gives the new data set.
    for c, inst in ((sa, i1), (late, i2)):
        if c is sa:
            await c.ok("unsub", topic="forum/#")
        err = await c.error("sub", "history_gap", topic="forum/#", since=last_cursor)
        check(True, "%s: resubscribe since=<last cursor before the outage> on %s: history_gap (%s)"
              % (c.name, inst.name, err.get("reason")))
        await c.alive()
        bl = await c.sub("forum/#", last=100)
        check_eq(sorted(mids(bl)), sorted(new1 + new2),
                 "%s: then last=100 gives exactly the 40 messages Redis holds now" % c.name)
    st, j = ct.history_raw(i2, "forum/out/a", since=last_cursor)
    check_eq(st, 410, "GET /v1/history since=<cursor before the outage> answers 410 history_gap")
    log = i1.log_since(mark) + i2.log_since(0)
    if "epoch" in log:
        note("a hub log mentions the epoch change: %s" % [ln for ln in log.splitlines() if "epoch" in ln][:1])
    else:
        note("no hub log line mentions the epoch change (cluster_epoch_changed is not logged)")
    for c in (sa, sb, pub, pub2, late):
        await c.close()
    return i1, i2


async def two_with_clients(redis, prefix, tag):
    """Two instances on redis under prefix, names starting tag-; a
    forum/# subscriber on each, and a publisher on the first."""
    a, b = ct.cluster(redis, history=1000, prefix=prefix)
    for i in (a, b):
        i.name = tag + "-" + i.name
    await ct.start_all([a, b])
    sa = await ct.subscriber(a, "forum/#", name=tag + "-sub-" + a.name)
    sb = await ct.subscriber(b, "forum/#", name=tag + "-sub-" + b.name)
    pub = await ct.client(a, "alice", tag + "-pub-" + a.name)
    return a, b, sa, sb, pub


async def with_persistence():
    redis = ct.Redis(persist=True).start()
    j1, j2, sa, sc, pub = await two_with_clients(redis, "p2", "p")
    first = await ct.burst(pub, "forum/keep/a", 20, "k1")
    got_c = await ct.collect(sc, first, timeout=10, quiet=0.2)
    check_eq(mids(got_c), first, "sc on j2 got the first 20")
    sc_cursor = got_c[-1]["cursor"]
    await sc.close()
    missed1 = [ct.http_publish(j2, "forum/keep/b", {"i": i}) for i in range(10)]
    check(True, "10 more published while sc is away (POST on j2)")

    redis.stop()  # SIGTERM: the append-only file is complete.
    await asyncio.sleep(0.3)
    for j in (j1, j2):
        await j.wait_redis(("down", "connecting"), 5)
    ans, _ = await pub.request("pub", topic="forum/keep/a", body="down")
    check_eq((ans.get("op"), ans.get("code")), ("error", "unavailable"),
             "while Redis is stopped a publish is refused with unavailable")
    redis.start()
    await wait_up_all([j1, j2], "after Redis restarted with its data")
    missed2 = await ct.burst(pub, "forum/keep/a", 10, "k2")
    pub2 = await ct.client(j2, "carol", "p-pub-j2")
    missed2 += await ct.burst(pub2, "forum/keep/c", 5, "k3")
    got_a = await ct.collect(sa, first + missed1 + missed2, timeout=10, quiet=0.3)
    check_eq(mids(got_a), first + missed1 + missed2,
             "sa (connected throughout) got all 45, once, in order")
    ct.check_cursors_increase(got_a, "sa across the Redis restart")
    e_before = ct.cursor_key(sc_cursor)[0]
    e_after = ct.cursor_key(got_a[-1]["cursor"])[0]
    check_eq(e_after, e_before, "the data set's epoch is kept across a restart with data")

    # sc comes back through the OTHER instance with since.
    sc2 = await ct.client(j1, "bob", "p-sc-back-j1")
    bl = await sc2.sub("forum/#", since=sc_cursor)
    check_eq(mids(bl), missed1 + missed2,
             "resubscribe since=<sc's last cursor> on j1 fills the gap exactly (%d messages, in order)"
             % len(missed1 + missed2))
    check(bl == [f for f in got_a if f["mid"] in set(missed1 + missed2)],
          "the backlog frames equal what sa received live (cursors included)")
    live = await ct.burst(pub2, "forum/keep/d", 5, "k4")
    fr = await ct.collect(sc2, live, timeout=10, quiet=0.3)
    check_eq(mids(fr), live, "then it receives live messages, once")
    st, j = ct.history_raw(j2, "forum/keep/a", since=sc_cursor)
    check(st == 200 and mids(j["messages"]) == missed2[:10],
          "GET /v1/history since=<old cursor> on j2 after the restart: the newer messages of the topic")
    for c in (sa, sc2, pub, pub2):
        await c.close()


def redis_client_ids(redis, pid):
    """Redis CLIENT ids of the connections process pid holds to redis:
    its sockets' local ports, matched with CLIENT LIST's addr."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                p = line.split()
                if p[9] in inodes and int(p[2].rsplit(":", 1)[1], 16) == redis.port:
                    ports.add(int(p[1].rsplit(":", 1)[1], 16))
    ids = []
    for line in redis.cmd("CLIENT", "LIST").splitlines():
        kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if int(kv["addr"].rsplit(":", 1)[1]) in ports:
            ids.append(kv["id"])
    return ids


async def link_drop():
    redis = ct.Redis().start()
    k1, k2, sa, sb, pub = await two_with_clients(redis, "p3", "d")
    first = await ct.burst(pub, "forum/drop/a", 20, "d0")
    check_eq(mids(await ct.collect(sb, first, timeout=10, quiet=0.2)), first,
             "sb on k2 got the first 20 live")
    ids = redis_client_ids(redis, k2.proc.pid)
    check(len(ids) >= 2, "k2 holds %d connections to Redis (commands and pub/sub)" % len(ids))
    mark = k2.log_mark()
    # k2 is stopped right after its links are killed, so it cannot
    # reconnect before the publishes below: only the log has them for it.
    for cid in ids:
        redis.cmd("CLIENT", "KILL", "ID", cid)
    os.kill(k2.proc.pid, signal.SIGSTOP)
    try:
        # Runs of two messages of one topic between single ones of
        # another; then one at a time, each its own batch and log entry,
        # so the catch-up takes several reads.
        away = await ct.burst(pub, lambda i: "forum/drop/" + ("b" if i % 3 == 0 else "a"),
                              60, "d1")
        for i in range(40):
            away += await ct.burst(pub, "forum/drop/a", 1, "d1s%d" % i)
    finally:
        os.kill(k2.proc.pid, signal.SIGCONT)
    await k2.wait_redis(("up",), RECOVER_S)
    live = await ct.burst(pub, "forum/drop/c", 20, "d2")
    got_b = await ct.collect(sb, away + live, timeout=10, quiet=0.3)
    check_eq(mids(got_b), away + live,
             "sb on k2 got the 100 stored while k2 was cut off, then 20 live: once, in order")
    ct.check_cursors_increase(got_b, "sb across k2's catch-up")
    log = k2.log_since(mark)
    m = re.search(r"event=cluster_caught_up last_seq=(\d+) reads=(\d+)", log)
    check(m is not None and int(m.group(2)) >= 3,
          "k2 caught up from the log in several reads (%s)" % (m.group(0) if m else "no cluster_caught_up in its log"))
    got_a = await ct.collect(sa, first + away + live, timeout=10, quiet=0.2)
    check_eq(mids(got_a), first + away + live, "sa on k1 (never cut off) got all 140")
    for c in (sa, sb, pub):
        await c.close()


async def scenario():
    await no_persistence()
    await with_persistence()
    await link_drop()


if __name__ == "__main__":
    ct.run(scenario)
