#!/usr/bin/python3
"""06_slow_consumer: a subscriber that stops reading is cut off once its
queue passes max_queue_bytes, counted in /metrics, while a fast subscriber
on the same topic receives everything. So is a publisher that never reads
its answers."""
import asyncio
import json
import re
import time

import parleytest as pt
import wsframe
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
    await deaf_publisher()
    await burst()


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



async def deaf_publisher():
    """A publisher that never reads: its answers (many "ok"s share one
    buffer in the queue) count against max_queue_bytes like messages do,
    so it is cut off as a slow consumer, and the hub serves others."""
    hub = pt.Hub(tokens=[pt.user("alice")],
                 limits={"max_queue_bytes": 65536, "publish_per_second": 1000000})
    hub.start()
    deaf = pt.RawWS(hub.port, rcvbuf=4096, headers={"Authorization": "Bearer " + pt.token_of("alice")})
    check_eq(deaf.status, 101, "deaf publisher: handshake by hand")
    pub = json.dumps({"op": "pub", "topic": "deaf/t", "id": "i" * 120, "body": 1})
    batch = wsframe.encode(1, pub, masked=True) * 100
    sent, t0 = 0, time.monotonic()
    try:
        while sent < 60000 and time.monotonic() - t0 < 30:
            deaf.sock.sendall(batch)
            sent += 100
            if sent % 2000 == 0 and slow_count(hub) > 0:
                break
    except OSError:
        pass  # The hub ended the connection while we were writing.
    n = slow_count(hub)
    check(n is not None and n >= 1, "a publisher that never reads its %d answers was cut off as a "
          "slow consumer (parley_slow_consumer_disconnects_total = %s)" % (sent, n))
    # It was cut when its answers passed the bound, not later for some
    # other reason: the log says what was queued then.
    queued = [int(q) for q in re.findall(r"slow_consumer .*queued_bytes=(\d+)", hub.log_text())]
    check(len(queued) == 1 and 65536 - 1024 < queued[0] <= 65536,
          "the cut came when the queued answers reached max_queue_bytes (queued_bytes=%s)" % queued)
    kind, code, _ = deaf.wait_end(15)
    check(kind in ("close", "eof", "reset"), "the deaf publisher's connection was ended (%s, code %s)"
          % (kind, code))
    deaf.close()
    c = await pt.connect(hub, pt.token_of("alice"), name="after")
    await c.sub("deaf/#")
    await c.pub("deaf/t", "after")
    (m,) = await c.msgs(1)
    check_eq(m["body"], "after", "the hub serves a new publisher and subscriber afterwards")
    st, _, _ = hub.get("/healthz")
    check_eq(st, 200, "/healthz still 200 after the deaf publisher")
    await c.close()
    hub.stop()



async def burst():
    """A burst larger than max_queue_bytes that arrives in one read (the
    hub reads up to 128 KiB per pass) reaches a subscriber that reads: what
    is queued goes to the socket before the bound is judged."""
    hub = pt.Hub(tokens=[pt.user("alice")],
                 limits={"max_queue_bytes": 65536, "publish_per_second": 1000000})
    hub.start()
    sub = await pt.connect(hub, pt.token_of("alice"), name="sub")
    await sub.sub("burst/#")
    raw = pt.RawWS(hub.port, headers={"Authorization": "Bearer " + pt.token_of("alice")})
    check_eq(raw.status, 101, "burst publisher: handshake by hand")
    n, body = 100, "b" * 16000
    frames = b"".join(wsframe.encode(1, json.dumps({"op": "pub", "topic": "burst/t", "id": i,
                                                     "body": {"i": i, "p": body}}), masked=True)
                      for i in range(n))
    # Written from a thread, so this loop keeps reading for the subscriber.
    sending = asyncio.get_running_loop().run_in_executor(None, raw.sock.sendall, frames)
    got = await sub.msgs(n, timeout=20)
    await sending
    check_eq([m["body"]["i"] for m in got], list(range(n)),
             "a reading subscriber got all of a %d-byte burst with max_queue_bytes 65536" % len(frames))
    check_eq(slow_count(hub), 0.0, "and nobody was cut off as a slow consumer")
    raw.close()
    await sub.close()
    hub.stop()


pt.run(scenario)
