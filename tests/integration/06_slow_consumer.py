#!/usr/bin/python3
"""06_slow_consumer: a subscriber that stops reading is cut off once its
queue passes max_queue_bytes, counted in /metrics, while a fast subscriber
on the same topic receives everything."""
import asyncio
import time

import parleytest as pt
from parleytest import check, check_eq

QUEUE = 256 * 1024
BODY = 16 * 1024
MAX_MSGS = 800  # 12.5 MiB at most: far beyond socket buffers + QUEUE.


def slow_count(hub):
    _, samples = hub.metrics()
    return pt.metric_value(samples, "parley_slow_consumer_disconnects_total")


async def scenario():
    hub = pt.Hub(tokens=[pt.user("alice")], limits={"max_queue_bytes": QUEUE})
    hub.start()
    check_eq(slow_count(hub), 0.0, "parley_slow_consumer_disconnects_total starts at 0")

    # The slow one: a raw socket with a small receive buffer that
    # subscribes, reads the ok, and then never reads again.
    slow = pt.RawWS(hub.port, rcvbuf=4096, headers={"Authorization": "Bearer " + pt.token_of("alice")})
    check_eq(slow.status, 101, "slow client: handshake by hand")
    slow.send_json({"op": "sub", "topic": "flood/a", "id": "s"})
    f = slow.recv_json()
    check_eq(f, {"op": "ok", "id": "s"}, "slow client subscribed")

    fast = await pt.connect(hub, pt.token_of("alice"), name="fast")
    await fast.sub("flood/#")
    other = await pt.connect(hub, pt.token_of("alice"), name="other")
    await other.sub("calm/#")
    pub = await pt.connect(hub, pt.token_of("alice"), name="pub")

    payload = "q" * BODY
    sent, cut_at, received = 0, None, 0
    t0 = time.monotonic()
    for i in range(MAX_MSGS):
        # Pipeline a few publishes, then wait for their oks.
        await pub.send({"op": "pub", "id": i, "topic": "flood/a", "body": {"i": i, "p": payload}})
        sent += 1
        if sent % 8 == 0:
            for _ in range(8):
                f = await pub.recv(10)
                if f.get("op") != "ok":
                    raise pt.Failure("publish %r answered %r" % (f.get("id"), f))
            # Drain the fast client as we go.
            got = await fast.msgs(8, timeout=10)
            for m in got:
                if m["body"]["i"] != received:
                    raise pt.Failure("fast client got %r, want %d" % (m["body"]["i"], received))
                received += 1
        if sent % 40 == 0 and cut_at is None and slow_count(hub) > 0:
            cut_at = sent
            break
        if time.monotonic() - t0 > 30:
            break
    check(cut_at is not None, "the slow consumer was cut off (after %s messages of %d bytes, queue limit %d)"
          % (cut_at, BODY, QUEUE))
    check_eq(received, sent, "the fast client received all %d messages, in order, while the slow one stalled" % sent)

    # Publishing goes on normally after the cut.
    for i in range(sent, sent + 20):
        await pub.pub("flood/a", {"i": i, "p": "after"})
    got = await fast.msgs(20)
    check_eq([m["body"]["i"] for m in got], list(range(sent, sent + 20)),
             "after the cut the fast client keeps receiving")
    await pub.pub("calm/x", "calm")
    (m,) = await other.msgs(1)
    check_eq(m["body"], "calm", "an unrelated subscriber was not disturbed")

    # The slow connection ends (close frame 1008 if it gets through, else
    # the hub drops the socket after its grace period). Draining it now is
    # bounded: the hub freed its queue, so little is left to read.
    kind, code, drained = slow.wait_end(15)
    check(kind in ("close", "eof", "reset"), "the slow connection was ended by the hub (%s, code %s, "
          "%d frames were still in flight)" % (kind, code, drained))
    if kind == "close":
        check_eq(code, 1008, "the slow consumer's close code is 1008")
    slow.close()

    n = slow_count(hub)
    check(n is not None and n >= 1, "/metrics parley_slow_consumer_disconnects_total = %s (> 0)" % n)
    conns = None
    for _ in range(60):  # The hub notices the closed socket shortly.
        _, samples = hub.metrics()
        conns = pt.metric_value(samples, "parley_connections")
        if conns == 3.0:
            break
        await asyncio.sleep(0.05)
    check_eq(conns, 3.0, "parley_connections counts the 3 remaining connections")

    # The hub is still healthy and quick.
    st, _, _ = hub.get("/healthz")
    check_eq(st, 200, "/healthz still 200")
    t1 = time.monotonic()
    await fast.alive()
    check(time.monotonic() - t1 < 1.0, "the hub answers promptly after the flood")
    for cl in (fast, other, pub):
        await cl.close()
    hub.stop()
    await big_backlog()


async def big_backlog():
    """A client that reads at full speed and asks for a backlog larger
    than max_queue_bytes is not a slow consumer: it gets the backlog and
    ok, or an error answer, but is not cut off with 1008."""
    hub = pt.Hub(tokens=[pt.user("alice")], history=100, limits={"max_queue_bytes": 65536})
    hub.start()
    pub = await pt.connect(hub, pt.token_of("alice"), name="pub")
    for i in range(20):
        await pub.pub("big/t", {"i": i, "p": "x" * 8000})
    c = await pt.connect(hub, pt.token_of("alice"), name="reader")
    try:
        ans, back = await c.request("sub", topic="big/t", last=20)
    except Exception as e:  # Closed instead of answered.
        check(False, "a 160 KB backlog with max_queue_bytes 64 KiB is answered, not cut off "
              "(%s, close code %s)" % (type(e).__name__, c.ws.close_code))
        return
    if ans["op"] == "ok":
        check_eq([m["body"]["i"] for m in back], list(range(20)),
                 "a backlog larger than max_queue_bytes reaches a reading client whole")
    else:
        check(ans.get("code") == "too_large", "a backlog larger than max_queue_bytes is refused with "
              "too_large (%r)" % ans)
        await c.alive()
    n = slow_count(hub)
    check_eq(n, 0.0, "a client asking for a big backlog is not counted as a slow consumer")
    for cl in (pub, c):
        await cl.close()


pt.run(scenario)
