#!/usr/bin/python3
"""15_batch: batch frames ({"op":"batch","msgs":[...]}) from a real
client: each request is answered as if it came alone, in order; what a
broken batch held before the break is kept and the break named; limits
apply per request; the frame bound holds for the whole batch."""
import json

import parleytest as pt
from parleytest import check, check_eq


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pub(i, topic="forum/a", body=None):
    return {"op": "pub", "topic": topic, "id": i, "body": body if body is not None else {"n": i}}


async def answers(c, n):
    """The next n frames that are not msg frames."""
    out = []
    while len(out) < n:
        f = await c.recv()
        if f["op"] != "msg":
            out.append(f)
    return out


async def scenario():
    hub = pt.Hub(
        tokens=[pt.user("alice", subscribe=["#"], publish=["forum/#"])],
        limits={"max_frame_bytes": 65536, "max_errors": 50,
                "publish_per_second": 100000, "publish_burst": 100000})
    hub.start()
    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    watch = await pt.connect(hub, pt.token_of("alice"), name="watch")
    await watch.sub("forum/#")
    before = hub.metrics()[0].get("parley_batches_in_total", 0)

    # 300 publishes in batches of 100, in parley's layout (read in place).
    for k in range(3):
        await c.send(compact({"op": "batch", "msgs": [pub(k * 100 + i) for i in range(100)]}))
    oks = await answers(c, 300)
    check([f["op"] for f in oks] == ["ok"] * 300 and [f["id"] for f in oks] == list(range(300)),
          "300 batched publishes: 300 ok answers, in order, each with its id")
    got = await watch.msgs(300)
    check_eq([m["mid"] for m in got], [f["mid"] for f in oks],
             "the subscriber gets each once, in order, with the mid of its ok")
    check([m["body"] for m in got] == [{"n": i} for i in range(300)], "... with its body intact")
    check_eq(hub.metrics()[0].get("parley_batches_in_total", 0) - before, 3,
             "parley_batches_in_total counts the 3 batch frames")

    # Requests of every kind, each answered on its own.
    await c.send(compact({"op": "batch", "msgs": [
        {"op": "ping", "id": "p"},
        {"op": "sub", "topic": "forum/z", "id": "s"},
        pub("f", topic="news/x"),
        7,
        {"op": "batch", "msgs": []},
        {"topic": "forum/z", "body": "other order", "op": "pub", "id": "o"},
        {"op": "nope", "id": "u"},
    ]}))
    a = await answers(c, 7)
    check_eq([(f["op"], f.get("code"), f.get("id")) for f in a],
             [("pong", None, "p"), ("ok", None, "s"), ("error", "forbidden", "f"),
              ("error", "bad_json", None), ("error", "bad_request", None),
              ("ok", None, "o"), ("error", "unknown_op", "u")],
             "a mixed batch: pong, sub ok, forbidden, not an object, a nested batch, "
             "a publish in another member order, an unknown op, in that order")
    (m,) = await watch.msgs(1)
    check(m["body"] == "other order" and m["mid"] == a[5]["mid"],
          "only the accepted publish of the mixed batch is delivered")

    # Whitespace and another member order: parsed whole, answered alike.
    await c.send(json.dumps({"msgs": [pub(1000), pub(1001)], "op": "batch"}, indent=1))
    a = await answers(c, 2)
    check([f.get("id") for f in a] == [1000, 1001] and all(f["op"] == "ok" for f in a),
          "an indented batch with msgs first: both publishes accepted")
    await watch.msgs(2)

    # Broken part way: the requests before the break stay handled.
    text = compact({"op": "batch", "msgs": [pub(2000), pub(2001), pub(2002), pub(2003)]})
    await c.send(text[:text.rindex('{"op":"pub"') + 12])
    a = await answers(c, 4)
    check([f.get("id") for f in a[:3]] == [2000, 2001, 2002] and all(f["op"] == "ok" for f in a[:3]),
          "a batch cut inside its fourth request: the first three are accepted")
    check(a[3]["op"] == "error" and a[3]["code"] == "bad_json" and "msgs[3]" in a[3]["reason"],
          "... and one bad_json error names msgs[3] (%r)" % a[3].get("reason"))
    got = await watch.msgs(3)
    check_eq([m["mid"] for m in got], [f["mid"] for f in a[:3]], "... exactly those three are delivered")
    await watch.silence()
    await c.send('{"op":"batch","msgs":5,"id":"b"}')
    f = await c.recv()
    check(f["op"] == "error" and f["code"] == "bad_request" and f.get("id") == "b",
          "msgs that is not an array: bad_request with the batch's id")
    await c.alive()

    # The publish rate limit counts each request of a batch.
    hub2 = pt.Hub(tokens=[pt.user("alice", subscribe=["#"], publish=["forum/#"])],
                  limits={"publish_per_second": 1, "publish_burst": 5, "max_errors": 1000})
    hub2.start()
    c2 = await pt.connect(hub2, pt.token_of("alice"), name="c2")
    w2 = await pt.connect(hub2, pt.token_of("alice"), name="w2")
    await w2.sub("forum/#")
    await c2.send(compact({"op": "batch", "msgs": [pub(i) for i in range(20)]}))
    a = await answers(c2, 20)
    ok = [f for f in a if f["op"] == "ok"]
    limited = [f for f in a if f.get("code") == "rate_limited"]
    check(len(ok) == 5 and len(limited) == 15,
          "a batch of 20 against a burst of 5: 5 accepted, 15 rate_limited (%d, %d)" % (len(ok), len(limited)))
    got = await w2.msgs(5)
    check_eq([m["mid"] for m in got], [f["mid"] for f in ok], "... and only the 5 accepted are delivered")
    await w2.silence()

    # max_errors counts the requests of a batch: 60 bad ones close the session.
    await c.send(compact({"op": "batch", "msgs": [{"op": "nope"}] * 60}))
    code = await c.closed()
    check_eq(code, 1008, "a batch of 60 bad requests (max_errors 50) closes with 1008")
    errors = [f for f in c.inbox if f["op"] == "error"]
    check_eq(len(errors), 50, "... after answering the first 50, and handling nothing after them")

    # The frame bound is the whole batch's.
    c3 = await pt.connect(hub, pt.token_of("alice"), name="c3")
    big = compact({"op": "batch", "msgs": [pub(i, body="x" * 1000) for i in range(70)]})
    check(len(big) > 65536, "a batch of 70 KiB")
    await c3.send(big)
    check_eq(await c3.closed(), 1009, "a batch over max_frame_bytes closes with 1009")
    await watch.silence()
    hub2.stop()
    hub.stop()


pt.run(scenario)
