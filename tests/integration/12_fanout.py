#!/usr/bin/python3
"""12_fanout: encode-once batched delivery under load: many subscribers,
pipelined publishes of mixed sizes (tiny to near the frame limit, around
the 64 KiB batch size), every message delivered intact and in order."""
import asyncio
import hashlib
import random
import time

import parleytest as pt
from parleytest import check, check_eq

SUBS = 20
MSGS = 120


def body_for(i, rnd):
    # Sizes around the interesting edges: tiny, the 125/126 and 65535/65536
    # frame-header boundaries, and just under the 64 KiB limit.
    sizes = [0, 1, 100, 110, 111, 112, 1000, 16000, 32000, 60000, 64900, 65200]
    n = sizes[i % len(sizes)] if i % 3 else rnd.randint(0, 65200)
    s = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789é€😀") for _ in range(min(n, 64)))
    s = (s * (n // max(1, len(s)) + 1))[:n] if s else ""
    while len(s.encode()) > 65200:
        s = s[:-100]
    return {"i": i, "s": s, "h": hashlib.sha256(s.encode()).hexdigest()}


async def scenario():
    hub = pt.Hub(tokens=[pt.user("alice")], history=MSGS,
                 limits={"max_frame_bytes": 65536, "max_queue_bytes": 64 * 1024 * 1024})
    hub.start()
    subs = []
    for k in range(SUBS):
        c = await pt.connect(hub, pt.token_of("alice"), name="s%d" % k)
        await c.sub("load/#" if k % 2 else "load/t")
        subs.append(c)
    pub = await pt.connect(hub, pt.token_of("alice"), name="pub")
    rnd = random.Random(1234)
    bodies = [body_for(i, rnd) for i in range(MSGS)]
    t0 = time.monotonic()
    # Pipelined: all sent before any answer is read.
    for i, b in enumerate(bodies):
        await pub.send({"op": "pub", "id": i, "topic": "load/t", "body": b})
    mids = {}
    for _ in range(MSGS):
        f = await pub.recv(20)
        if f.get("op") != "ok":
            raise pt.Failure("pub %r answered %r" % (f.get("id"), f))
        mids[f["id"]] = f["mid"]
    check_eq(len(mids), MSGS, "%d pipelined publishes (0 to 65200 bytes) all accepted" % MSGS)

    async def drain(c):
        return await c.msgs(MSGS, timeout=30)

    results = await asyncio.gather(*(drain(c) for c in subs))
    dt = time.monotonic() - t0
    for k, got in enumerate(results):
        ok = all(m["body"] == bodies[j] and m["mid"] == mids[j] for j, m in enumerate(got))
        if not ok:
            bad = next(j for j, m in enumerate(got) if m["body"] != bodies[j] or m["mid"] != mids[j])
            raise pt.Failure("s%d: message %d differs (got i=%r)" % (k, bad, got[bad]["body"].get("i")))
    check(True, "%d subscribers each got all %d messages intact and in order (%.1f s, %d deliveries)"
          % (SUBS, MSGS, dt, SUBS * MSGS))
    for c in subs:
        await c.silence(0.01)
    check(True, "no duplicates")
    # Bodies hash-check themselves too (catches corruption that happens to
    # produce equal-looking JSON).
    check(all(hashlib.sha256(m["body"]["s"].encode()).hexdigest() == m["body"]["h"] for m in results[0]),
          "body contents verified by hash")

    _, samples = hub.metrics()
    out = pt.metric_value(samples, "parley_messages_out_total")
    check(out >= SUBS * MSGS, "parley_messages_out_total %s >= %d" % (out, SUBS * MSGS))

    # A late subscriber gets the same bytes from history.
    late = await pt.connect(hub, pt.token_of("alice"), name="late")
    back = await late.sub("load/t", last=MSGS)
    check_eq([m["body"] for m in back], bodies, "the backlog holds the same %d bodies" % MSGS)
    for c in subs + [pub, late]:
        await c.close()


pt.run(scenario)
