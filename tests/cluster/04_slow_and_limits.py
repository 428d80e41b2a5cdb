#!/usr/bin/python3
"""04_slow_and_limits: limits in cluster mode.

- A slow consumer on instance 1 (a socket that stops reading) is cut off
  with 1008 once its queue passes limits.max_queue_bytes, counted in
  /metrics, while fast clients on both instances keep receiving every
  message, in order, and the publisher on instance 2 is never slowed to a
  stop.
- A subscription whose backlog (read from Redis) is larger than
  limits.max_queue_bytes is refused with too_large, on either instance,
  with `last` and with `since`; the connection stays usable (ping, a
  smaller backlog, live messages)."""
import asyncio
import time

import clustertest as ct
import parleytest as pt
from clustertest import check, check_eq

QUEUE = 256 * 1024
BODY = 16 * 1024
MAX_MSGS = 800  # 12.5 MiB at most.


async def slow_consumer(i1, i2):
    slow = pt.RawWS(i1.port, rcvbuf=4096, headers={"Authorization": "Bearer " + pt.token_of("alice")})
    check_eq(slow.status, 101, "slow client on i1: handshake by hand")
    slow.send_json({"op": "sub", "topic": "flood/a", "id": "s"})
    f = slow.recv_json()
    check_eq(f, {"op": "ok", "id": "s"}, "slow client subscribed to flood/a on i1")
    fast1 = await ct.subscriber(i1, "flood/#", name="fast-i1")
    fast2 = await ct.subscriber(i2, "flood/a", name="fast-i2")
    calm = await ct.subscriber(i1, "calm/#", name="calm-i1")
    pub = await ct.client(i2, "bob", "pub-i2")
    payload = "q" * BODY
    sent, cut_at, got1, got2 = 0, None, 0, 0
    t0 = time.monotonic()
    while sent < MAX_MSGS and time.monotonic() - t0 < 30:
        await ct.burst(pub, "flood/a", 8, "f%d" % sent, body=lambda i, base=sent: {"i": base + i, "p": payload})
        sent += 8
        for c, n in ((fast1, got1), (fast2, got2)):
            ms = await c.msgs(8, timeout=10)
            bad = [m["body"]["i"] for k, m in enumerate(ms) if m["body"]["i"] != n + k]
            if bad:
                raise ct.Failure("%s got %r, want from %d" % (c.name, [m["body"]["i"] for m in ms], n))
        got1 += 8
        got2 += 8
        if sent % 40 == 0 and i1.metric("parley_slow_consumer_disconnects_total") > 0:
            cut_at = sent
            break
    check(cut_at is not None, "the slow consumer on i1 was cut off (after %s messages of %d bytes, queue "
          "limit %d) within %.1f s" % (cut_at, BODY, QUEUE, time.monotonic() - t0))
    check_eq((got1, got2), (sent, sent), "the fast clients on i1 and i2 got all %d messages, in order" % sent)
    check_eq(i2.metric("parley_slow_consumer_disconnects_total"), 0.0, "i2 cut nobody off")

    kind, code, drained = slow.wait_end(15)
    check(kind in ("close", "eof", "reset"), "the slow connection was ended by i1 (%s, code %s, %d frames "
          "still in flight)" % (kind, code, drained))
    if kind == "close":
        check_eq(code, 1008, "the slow consumer's close code is 1008")
    slow.close()

    extra = await ct.burst(pub, "flood/a", 20, "after", body=lambda i: {"i": sent + i, "p": "after"})
    for c in (fast1, fast2):
        fr = await ct.collect(c, extra, timeout=10, quiet=0.2)
        check_eq([m["mid"] for m in fr], extra, "%s keeps receiving after the cut" % c.name)
    m = await pub.pub("calm/x", "calm")
    (f,) = await calm.msgs(1)
    check_eq(f["mid"], m, "an unrelated subscriber on i1 was not disturbed")
    conns = None
    for _ in range(60):
        conns = i1.metric("parley_connections")
        if conns == 2.0:
            break
        await asyncio.sleep(0.05)
    check_eq(conns, 2.0, "i1's parley_connections counts its 2 remaining connections")
    t1 = time.monotonic()
    await fast1.alive()
    check(time.monotonic() - t1 < 1.0, "i1 answers promptly after the flood")
    for c in (fast1, fast2, calm, pub):
        await c.close()


async def big_backlog(i1, i2):
    pub = await ct.client(i1, "alice", "bigpub-i1")
    watch = await ct.subscriber(i1, "big/#", name="watch-big")
    mids = await ct.burst(pub, "big/t", 60, "big", body=lambda i: {"i": i, "p": "x" * 8000})
    fr = await ct.collect(watch, mids, timeout=10, quiet=0.1)
    cur0 = fr[0]["cursor"]
    # 60 x 8 KB = 480 KB of backlog > QUEUE (256 KB).
    for inst in (i2, i1):
        c = await ct.client(inst, "bob", "reader-%s" % inst.name)
        err = await c.error("sub", "too_large", topic="big/t", last=60)
        check(True, "%s: sub big/t last=60 (~480 KB > max_queue_bytes %d): too_large (%s)"
              % (inst.name, QUEUE, err.get("reason")))
        await c.alive()
        err = await c.error("sub", "too_large", topic="big/#", since=cur0)
        check(True, "%s: sub big/# since=<first cursor>: too_large" % inst.name)
        await c.alive()
        check(True, "%s: the connection is still usable (ping answered)" % inst.name)
        bl = await c.sub("big/t", last=10)
        check_eq([m["mid"] for m in bl], mids[-10:], "%s: then sub last=10 (~80 KB) gives the 10 newest" % inst.name)
        live = await pub.pub("big/t", {"i": len(mids), "p": "live"})
        mids.append(live)
        (m,) = await c.msgs(1)
        check_eq(m["mid"], live, "%s: and live messages arrive on that subscription" % inst.name)
        await c.close()
    await watch.close()
    await pub.close()


async def scenario():
    redis = ct.Redis().start()
    i1, i2 = ct.cluster(redis, history=1000, limits={"max_queue_bytes": QUEUE})
    await ct.start_all([i1, i2])
    await slow_consumer(i1, i2)
    await big_backlog(i1, i2)


if __name__ == "__main__":
    ct.run(scenario)
