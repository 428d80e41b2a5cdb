#!/usr/bin/python3
"""02_history: history in Redis serves every instance. Backlog `last` and
`since` through the other instance than the publisher (exact topics and
patterns); GET /v1/history the same on both; an instance restarted with
SIGTERM keeps serving history and old cursors stay valid (new ones are
larger); `since` a cursor whose messages were trimmed (history.length 5)
gives history_gap, and so does a standalone hub's cursor; a subscription
with backlog taken while another client publishes continuously gets
backlog + live with no gap and no duplicate (compared with a client
subscribed from the start); when Redis loses its script cache (SCRIPT
FLUSH), the next batch is answered NOSCRIPT and sent again with the
script itself, and no message is lost or refused."""
import asyncio
import json
import random
import time

import clustertest as ct
import parleytest as pt
from clustertest import check, check_eq, mids, note

HIST = 200    # history.length of the main cluster.
SHORT = 5     # history.length of the trimming cluster.
N_JOINERS = 30  # Clients that subscribe with backlog while a publisher runs.


async def backlog_and_restart(redis):
    i1, i2 = ct.cluster(redis, history=HIST)
    await ct.start_all([i1, i2])
    pub = await ct.client(i1, "alice", "pub-i1")
    live = await ct.subscriber(i2, "forum/#", name="live-i2")
    m_a = await ct.burst(pub, "forum/h/a", 20, "a")
    m_b = await ct.burst(pub, "forum/h/b", 10, "b")
    m_c = await ct.burst(pub, "forum/h/c/deep", 5, "c")
    frames = await ct.collect(live, m_a + m_b + m_c, timeout=10, quiet=0.2)
    by_mid = {f["mid"]: f for f in frames}
    check_eq(mids(frames), m_a + m_b + m_c, "live subscriber on i2 got the 35 messages published on i1, in order")

    c2 = await ct.client(i2, "bob", "reader-i2")
    got = await c2.sub("forum/h/a", last=5)
    check_eq(mids(got), m_a[-5:], "sub last=5 on i2: the 5 newest of forum/h/a, oldest first")
    check(got == [by_mid[m] for m in m_a[-5:]], "backlog frames equal the live frames (cursor included)")
    await c2.ok("unsub", topic="forum/h/a")
    cur10 = by_mid[m_a[9]]["cursor"]
    got = await c2.sub("forum/h/a", since=cur10)
    check_eq(mids(got), m_a[10:], "sub since=<cursor of #10> on i2: messages 11..20 of forum/h/a")
    await c2.ok("unsub", topic="forum/h/a")
    got = await c2.sub("forum/h/#", last=8)
    want = sorted(m_a + m_b + m_c, key=lambda m: ct.cursor_key(by_mid[m]["cursor"]))[-8:]
    check_eq(mids(got), want, "sub forum/h/# last=8 on i2: the 8 newest across its topics, in cursor order")
    await c2.ok("unsub", topic="forum/h/#")
    cur_a15 = by_mid[m_a[14]]["cursor"]
    got = await c2.sub("forum/h/#", since=cur_a15)
    want = m_a[15:] + m_b + m_c
    check_eq(mids(got), want, "sub forum/h/# since=<cursor of a#15> on i2: every later message of every topic")
    await c2.ok("unsub", topic="forum/h/#")
    got = await c2.sub("forum/h/+", since=cur_a15)
    check_eq(mids(got), m_a[15:] + m_b, "sub forum/h/+ since=<cursor of a#15> on i2: only one-level topics")
    await c2.ok("unsub", topic="forum/h/+")
    last_cur = by_mid[m_c[-1]]["cursor"]
    got = await c2.sub("forum/h/a", since=last_cur)
    check_eq(got, [], "sub since=<the newest cursor>: an empty backlog")
    await c2.ok("unsub", topic="forum/h/a")

    for t, want in (("forum/h/a", m_a), ("forum/h/b", m_b), ("forum/h/c/deep", m_c)):
        h1 = ct.history(i1, t, last=100)
        h2 = ct.history(i2, t, last=100)
        check(h1 == h2 and mids(h1) == want, "GET /v1/history %s: the same %d messages on i1 and i2" % (t, len(want)))
        check(h1 == [by_mid[m] for m in want], "GET /v1/history %s: the frames equal the live ones" % t)
    h = ct.history(i2, "forum/h/a", since=cur10)
    check_eq(mids(h), m_a[10:], "GET /v1/history since=<cursor of #10> on i2: messages 11..20")

    # Restart i2 (SIGTERM, start again): it still serves history, and old
    # cursors are still valid; restart i1 too, then publish more.
    await live.close()
    await c2.close()
    await i2.term_and_restart()
    await i2.wait_redis(("up",), 10)
    check(True, "i2 restarted (SIGTERM, exit 0, started again)")
    h = ct.history(i2, "forum/h/a", last=100)
    check(h == [by_mid[m] for m in m_a], "after its restart i2 serves the same history of forum/h/a")
    c2 = await ct.client(i2, "bob", "reader2-i2")
    got = await c2.sub("forum/h/#", since=cur_a15)
    check_eq(mids(got), m_a[15:] + m_b + m_c, "after the restart, sub since=<old cursor> on i2 still works")
    await pub.close()
    await i1.term_and_restart()
    await i1.wait_redis(("up",), 10)
    check(True, "i1 restarted too")
    pub = await ct.client(i1, "alice", "pub2-i1")
    m_d = await ct.burst(pub, "forum/h/a", 5, "d")
    got2 = await ct.collect(c2, m_d, timeout=10, quiet=0.2)
    check_eq(mids(got2), m_d, "i2's subscriber gets what restarted i1 publishes")
    check(all(ct.cursor_key(f["cursor"]) > ct.cursor_key(last_cur) for f in got2),
          "cursors after both restarts are larger than every cursor before")
    ct.check_cursors_increase(got2, "after the restarts")
    c1 = await ct.client(i1, "bob", "reader-i1")
    got = await c1.sub("forum/h/a", since=cur10)
    check_eq(mids(got), m_a[10:] + m_d, "sub since=<cursor from before both restarts> on i1: old and new messages")
    for c in (c1, c2, pub):
        await c.close()
    return i1, i2


async def trimmed(redis):
    """history.length 5 in its own key prefix."""
    t1, t2 = ct.cluster(redis, history=SHORT, prefix="short")
    for i in (t1, t2):
        i.name = "short-" + i.name
    await ct.start_all([t1, t2])
    pub = await ct.client(t1, "alice", "pub-short")
    watch = await ct.subscriber(t2, "forum/t", name="watch-short")
    m = await ct.burst(pub, "forum/t", 20, "t")
    fr = await ct.collect(watch, m, timeout=10, quiet=0.2)
    by_mid = {f["mid"]: f for f in fr}
    c = await ct.client(t2, "bob", "trim-reader")
    got = await c.sub("forum/t", last=100)
    check_eq(mids(got), m[-SHORT:], "history.length %d: sub last=100 gives the %d newest" % (SHORT, SHORT))
    await c.ok("unsub", topic="forum/t")
    got = await c.sub("forum/t", since=by_mid[m[-3]]["cursor"])
    check_eq(mids(got), m[-2:], "since=<cursor of the 3rd newest> gives the 2 newer ones")
    await c.ok("unsub", topic="forum/t")
    got = await c.sub("forum/t", since=by_mid[m[-SHORT - 1]]["cursor"])
    check_eq(mids(got), m[-SHORT:], "since=<cursor just before the %d kept> gives exactly those %d" % (SHORT, SHORT))
    await c.ok("unsub", topic="forum/t")
    # A cursor whose successors are no longer all in history: gap, or
    # (if the store kept more than history.length) every later message;
    # never a part of them without saying so.
    for k in (1, 5, 10):
        ans, backlog = await c.request("sub", topic="forum/t", since=by_mid[m[k - 1]]["cursor"])
        if ans.get("op") == "error":
            check_eq(ans.get("code"), "history_gap",
                     "since=<cursor of #%d> of 20 (length %d): history_gap" % (k, SHORT))
            check_eq(backlog, [], "no backlog frames with the history_gap")
        else:
            check_eq(mids(backlog), m[k:], "since=<cursor of #%d> of 20 (length %d): either history_gap "
                     "or every later message (got %d messages and %r, no gap)" % (k, SHORT, len(backlog), ans))
            await c.ok("unsub", topic="forum/t")
    st, j = ct.history_raw(t1, "forum/t", since=by_mid[m[0]]["cursor"])
    check(st == 410 or (st == 200 and mids(j["messages"]) == m[1:]),
          "GET /v1/history since=<cursor of #1> (length %d): 410 history_gap or everything (got %d, %s)"
          % (SHORT, st, (j.get("code") if isinstance(j, dict) and st != 200
                         else "%d messages" % len(j["messages"]) if st == 200 else j)))
    # Enough messages that Redis really trims the stream (MAXLEN ~ trims
    # whole nodes of 100 entries).
    m2 = await ct.burst(pub, "forum/t", 400, "t2")
    await ct.collect(watch, m2, timeout=15, quiet=0.1)
    st, j = ct.history_raw(t1, "forum/t", since=by_mid[m[0]]["cursor"])
    check_eq(st, 410, "after 420 messages, GET /v1/history since=<cursor of #1> answers 410")
    check_eq(j.get("code") if isinstance(j, dict) else j, "history_gap", "its code is history_gap")
    err = await c.error("sub", "history_gap", topic="forum/t", since=by_mid[m[0]]["cursor"])
    check(True, "after 420 messages, sub since=<cursor of #1> on the other instance: history_gap (%s)"
          % err.get("reason"))
    await c.alive()
    check(True, "the connection is still usable after history_gap")
    got = await c.sub("forum/t", last=2)
    check_eq(mids(got), m2[-2:], "and sub last=2 then works")
    for x in (pub, watch, c):
        await x.close()
    return t1, t2


async def standalone_cursor(i1):
    solo = pt.Hub(tokens=ct.default_tokens(), anon_sub=["#"], node=ct.NODE)
    solo.start()
    sc = await ct.client(solo, "alice", "solo")
    await sc.sub("forum/h/a")
    mid = await sc.pub("forum/h/a", "standalone")
    (f,) = await sc.msgs(1)
    check_eq(f["mid"], mid, "a standalone hub of the same node name delivered its message")
    c = await ct.client(i1, "bob", "reader-solo-cursor")
    err = await c.error("sub", "history_gap", topic="forum/h/a", since=f["cursor"])
    check(True, "a standalone hub's cursor %s on a cluster instance: history_gap (%s)"
          % (f["cursor"], err.get("reason")))
    st, j = ct.history_raw(i1, "forum/h/a", since=f["cursor"])
    check_eq(st, 410, "and GET /v1/history with it answers 410")
    await c.alive()
    await c.close()
    await sc.close()
    solo.stop()


async def backlog_while_publishing(i1, i2):
    """Subscribers join with backlog while a publisher keeps going; each
    must see a contiguous suffix of the full sequence."""
    topic = "forum/race"
    full = await ct.subscriber(i1, topic, name="full-i1")
    full_pat = await ct.subscriber(i2, "forum/+", name="full-pat-i2")
    pub = await ct.client(i1, "alice", "racer")
    stop = asyncio.Event()
    sent = []

    async def publisher():
        i = 0
        while not stop.is_set() and i < 3000:
            rid = "r%d" % i
            await pub.send({"op": "pub", "id": rid, "topic": topic, "body": {"i": i}})
            ans, _ = await pub.wait_answer(rid, timeout=10)
            if ans.get("op") != "ok":
                raise ct.Failure("racer: pub answered %r" % ans)
            sent.append(ans["mid"])
            i += 1

    ptask = asyncio.create_task(publisher())
    seen = []  # What the full subscriber has read so far, live.
    reading = asyncio.Event()

    async def reader():
        while not reading.is_set() or (len(seen) < len(sent) or not ptask.done()):
            try:
                data = await asyncio.wait_for(full.ws.recv(), 0.2)
            except asyncio.TimeoutError:
                if reading.is_set() and ptask.done():
                    return
                continue
            f = json.loads(data)
            if f.get("op") == "msg":
                seen.append(f)

    rtask = asyncio.create_task(reader())
    joiners = []  # (client, mode, value, backlog)
    rnd = random.Random(2)
    for k in range(N_JOINERS):
        await asyncio.sleep(0.02 + rnd.random() * 0.04)
        inst = (i1, i2)[k % 2]
        c = await ct.client(inst, "bob", "joiner%d-%s" % (k, inst.name))
        if k % 3 == 2 and seen:
            # since: the cursor of the newest message the full
            # subscriber has seen (well within history.length).
            f = seen[-1]
            bl = await c.sub(topic if k % 2 else "forum/#", since=f["cursor"])
            joiners.append((c, "since", f["mid"], bl))
        else:
            n = 5 + k * 3
            bl = await c.sub(topic if k % 2 == 0 else "forum/+", last=n)
            joiners.append((c, "last", n, bl))
    await asyncio.sleep(0.2)
    stop.set()
    await ptask
    reading.set()
    try:
        await asyncio.wait_for(rtask, 15)
    except asyncio.TimeoutError:
        pass  # The comparison below says what is missing.
    check(len(sent) >= 50, "the publisher sent %d messages while %d clients joined" % (len(sent), N_JOINERS))
    ref = seen
    check_eq(mids(ref), sent, "the client subscribed from the start got all %d in order" % len(sent))
    ref_pat = await ct.collect(full_pat, sent, timeout=15, quiet=0.3)
    check_eq(mids(ref_pat), sent, "the pattern client on the other instance got the same sequence")
    pos = {m: i for i, m in enumerate(sent)}
    note("publisher stopped after %d messages; checking the joiners" % len(sent))
    for c, mode, val, bl in joiners:
        live, _ = await ct.read_msg_frames(c, lambda g: sent[-1] in {f["mid"] for f in bl + g}, 10, quiet=0.3)
        fr = bl + live
        seq = mids(fr)
        ct.check_no_duplicates(fr, c.name)
        if not seq:
            # A since-joiner whose cursor is the very last message has
            # nothing to get; anyone else must get something.
            check(mode == "since" and pos.get(val) == len(sent) - 1,
                  "%s got nothing" % c.name)
            await c.close()
            continue
        start = pos.get(seq[0], -1) if seq else -1
        idx = [pos.get(m) for m in seq]
        lost = sorted(set(range(max(start, 0), len(sent))) - set(idx))
        check(start >= 0 and seq == sent[start:],
              "%s (%s %s): backlog (%d) + live (%d) is the full sequence from #%d on, no gap, no "
              "duplicate%s" % (c.name, mode, val, len(bl), len(live), start,
                               "" if not lost else " (missing #%s of %d; backlog #%s..#%s, live from #%s)"
                               % (lost[:10], len(sent), idx[0] if bl else None,
                                  idx[len(bl) - 1] if bl else None,
                                  idx[len(bl)] if len(idx) > len(bl) else None)))
        if mode == "last":
            check_eq(len(bl), min(val, start + len(bl)), "%s: its backlog has the %d asked for" % (c.name, val))
        else:
            check_eq(start, pos[val] + 1, "%s: it starts right after the since cursor" % c.name)
        ct.check_cursors_increase(fr, c.name)
        await c.close()
    for c in (full, full_pat, pub):
        await c.close()


def eval_calls(redis):
    """Calls of EVAL (the script sent whole) Redis has counted."""
    for line in redis.cmd("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_eval:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def script_cache_flushed(redis, i1, i2):
    live = await ct.subscriber(i2, "forum/s/#", name="live-s")
    pub = await ct.client(i1, "alice", "pub-s")
    redis.cmd("SCRIPT", "FLUSH")
    before = eval_calls(redis)
    m = await ct.burst(pub, lambda i: "forum/s/%d" % (i // 4), 40, "s")
    check_eq(len(m), 40, "after SCRIPT FLUSH every one of 40 pipelined publishes is acknowledged")
    check(eval_calls(redis) > before, "the batch answered NOSCRIPT went out again as EVAL")
    frames = await ct.collect(live, m, timeout=10, quiet=0.2)
    check_eq(mids(frames), m, "the subscriber on i2 got the 40 messages, in order")
    hist = ct.history(i2, "forum/s/9", last=4)
    check_eq([f["mid"] for f in hist], m[-4:], "and they are in Redis's history")
    await pub.close()
    await live.close()


async def scenario():
    redis = ct.Redis().start()
    i1, i2 = await backlog_and_restart(redis)
    await script_cache_flushed(redis, i1, i2)
    await trimmed(redis)
    await standalone_cursor(i1)
    t0 = time.monotonic()
    await backlog_while_publishing(i1, i2)
    note("backlog-while-publishing took %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    ct.run(scenario)
