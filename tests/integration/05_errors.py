#!/usr/bin/python3
"""05_errors: every error code a client can reach, the connection staying
usable after each; max_errors in a row closes with 1008; a frame over
max_frame_bytes closes with 1009."""
import asyncio
import json
import time

import parleytest as pt
from parleytest import check, check_eq

FRAME_LIMIT = 4096


async def expect_error(c, frame, code, what, with_id=None):
    """Sends frame (dict or raw str/bytes) and expects an error of code;
    then checks the connection still answers a ping."""
    await c.send(frame)
    f = await c.recv()
    if f.get("op") != "error" or f.get("code") != code:
        raise pt.Failure("%s: want error %s, got %r" % (what, code, f))
    check(isinstance(f.get("reason"), str) and f["reason"], "%s -> %s (reason %r)" % (what, code, f["reason"]))
    if with_id is not None:
        check(f.get("id") == with_id and type(f.get("id")) is type(with_id), "%s: the error echoes the id" % what)
    await c.alive()
    return f


async def error_codes():
    hub = pt.Hub(
        anon_sub=["forum/#"], anon_pub=[],
        tokens=[pt.user("alice", subscribe=["#"], publish=["forum/#"])],
        limits={"max_subscriptions": 4, "max_frame_bytes": FRAME_LIMIT, "max_errors": 100})
    hub.start()
    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    watch = await pt.connect(hub, pt.token_of("alice"), name="watch")
    await watch.sub("#")

    # bad_json
    for raw in ("not json", "{", '{"op":"ping"', "[1,2]", "42", '"str"', "null", "",
                '{"op":"ping"} trailing', "{'op':'ping'}"):
        await expect_error(c, raw, "bad_json", "frame %r" % raw)
    # Valid UTF-8 but a NUL escape inside a string is not accepted as-is.
    # (Either bad_json or bad_request; what matters is an error and no crash.)
    await c.send('{"op":"pub","topic":"forum/a","body":"a\\u0000b","id":"nul"}')
    f = await c.recv()
    check(f["op"] == "error" or (f["op"] == "ok" and f.get("mid")),
          "a body with an escaped NUL is refused or stored whole (%r)" % f)
    if f["op"] == "ok":
        (m,) = await watch.msgs(1)
        check_eq(m["body"], "a\u0000b", "... and then delivered intact")
    await c.alive()

    # unknown_op
    await expect_error(c, {"op": "nope", "id": "u1"}, "unknown_op", "op nope", with_id="u1")
    await expect_error(c, {"op": "PUB", "id": "u2"}, "unknown_op", "op PUB (ops are case-sensitive)", with_id="u2")
    await expect_error(c, {"op": "", "id": 3}, "unknown_op", "empty op", with_id=3)
    await expect_error(c, {"id": "u4", "topic": "forum/a"}, "unknown_op", "missing op", with_id="u4")

    # bad_request: fields missing or of the wrong type, invalid topics.
    cases = [
        ({"op": 5}, "op of type number"),
        ({"op": "pub", "body": 1}, "pub without topic"),
        ({"op": "pub", "topic": "forum/a"}, "pub without body"),
        ({"op": "pub", "topic": 7, "body": 1}, "pub topic of type number"),
        ({"op": "pub", "topic": ["forum/a"], "body": 1}, "pub topic of type array"),
        ({"op": "pub", "topic": "", "body": 1}, "pub to the empty topic"),
        ({"op": "pub", "topic": "forum//a", "body": 1}, "pub to a topic with an empty segment"),
        ({"op": "pub", "topic": "forum/a/", "body": 1}, "pub to a topic with a trailing /"),
        ({"op": "pub", "topic": "forum/\u0007", "body": 1}, "pub to a topic with a control character"),
        ({"op": "pub", "topic": "forum/\u0085", "body": 1}, "pub to a topic with a C1 control character"),
        ({"op": "pub", "topic": "forum/+", "body": 1}, "pub to a pattern"),
        ({"op": "pub", "topic": "forum/" + "x" * 250, "body": 1}, "pub to a 256-byte topic"),
        ({"op": "sub"}, "sub without topic"),
        ({"op": "sub", "topic": None}, "sub topic null"),
        ({"op": "sub", "topic": "forum/#/x"}, "sub to an invalid pattern"),
        ({"op": "sub", "topic": "forum/a", "last": -1}, "sub last -1"),
        ({"op": "sub", "topic": "forum/a", "last": "1"}, "sub last string"),
        ({"op": "sub", "topic": "forum/a", "since": 1}, "sub since number"),
        ({"op": "sub", "topic": "forum/a", "since": "garbage!"}, "sub since malformed"),
        ({"op": "sub", "topic": "forum/a", "last": 1, "since": "0-0"}, "sub with last and since"),
        ({"op": "unsub"}, "unsub without topic"),
        ({"op": "unsub", "topic": {}}, "unsub topic object"),
        ({"op": "auth"}, "auth without token"),
        ({"op": "auth", "token": 1}, "auth token number"),
    ]
    for i, (frame, what) in enumerate(cases):
        frame = dict(frame, id="b%d" % i)
        await expect_error(c, frame, "bad_request", what, with_id="b%d" % i)
    # The topic limit is 255 bytes of UTF-8: 255 is fine, multibyte counted in bytes.
    await c.pub("forum/" + "x" * 249, 1)
    check(True, "pub to a 255-byte topic is accepted")
    await watch.msgs(1)
    await expect_error(c, {"op": "pub", "topic": "forum/" + "é" * 125, "body": 1, "id": "mb"},
                       "bad_request", "pub to a topic of 256 bytes in 131 characters", with_id="mb")

    # ids: integer or string up to 128 bytes; anything else is bad_request
    # without id.
    ans, _ = await c.ok("ping", id="x" * 128)
    check_eq(ans.get("id"), "x" * 128, "a 128-byte string id is echoed")
    for bad in ("x" * 129, 1.5, True, None, [1], {"a": 1}):
        f = await expect_error(c, {"op": "ping", "id": bad}, "bad_request", "id %r" % (bad if not isinstance(bad, str) else bad[:10] + "...",))
        check("id" not in f, "an invalid id is not echoed")

    # Binary frames are refused with bad_request.
    await expect_error(c, b'{"op":"ping","id":"bin"}', "bad_request", "binary frame")

    # forbidden
    anon = await pt.connect(hub, name="anon")
    await expect_error(anon, {"op": "pub", "topic": "forum/a", "body": 1, "id": "f1"}, "forbidden",
                       "anonymous pub", with_id="f1")
    await expect_error(anon, {"op": "sub", "topic": "secret/a", "id": "f2"}, "forbidden",
                       "anonymous sub outside forum/#", with_id="f2")
    await expect_error(c, {"op": "pub", "topic": "news/a", "body": 1, "id": "f3"}, "forbidden",
                       "alice pub outside forum/#", with_id="f3")

    # unauthorized
    await expect_error(anon, {"op": "auth", "token": "bogus", "id": "a1"}, "unauthorized",
                       "auth with an unknown token", with_id="a1")

    # too_large: the subscription limit (4).
    for t in ("forum/1", "forum/2", "forum/3", "forum/4"):
        await c.sub(t)
    await c.sub("forum/4")
    check(True, "4 subscriptions held (re-subscribing one does not count twice)")
    await expect_error(c, {"op": "sub", "topic": "forum/5", "id": "s5"}, "too_large",
                       "5th subscription with max_subscriptions 4", with_id="s5")
    await c.ok("unsub", topic="forum/1")
    await c.sub("forum/5")
    check(True, "after an unsub a new subscription fits again")
    for t in ("forum/2", "forum/3", "forum/4", "forum/5"):
        await c.ok("unsub", topic=t)

    # too_large: a body over the limit. The frame itself must fit in
    # max_frame_bytes, so the body is made of reals that Jansson expands
    # when it re-encodes them (1e300 -> 1.0000000000000001e+300).
    n = (FRAME_LIMIT - 100) // 6
    frame = '{"op":"pub","id":"big","topic":"forum/big","body":[%s]}' % ",".join(["1e300"] * n)
    check(len(frame) < FRAME_LIMIT, "built a %d-byte pub frame whose body re-encodes to ~%d bytes"
          % (len(frame), n * 24))
    await expect_error(c, frame, "too_large", "pub with a body over the limit", with_id="big")
    await watch.silence(0.3)
    check(True, "the too-large body was not delivered")
    # A body just under the limit is accepted.
    body = "y" * (FRAME_LIMIT - 200)
    await c.pub("forum/big", body)
    (m,) = await watch.msgs(1)
    check_eq(m["body"], body, "a body just under the limit is accepted and delivered")

    # history_gap: a cursor from another run of a hub.
    await expect_error(c, {"op": "sub", "topic": "forum/a", "since": "zz-1", "id": "g"}, "history_gap",
                       "since a cursor of another epoch", with_id="g")

    # Every error above left nothing stored.
    back = await watch.sub("forum/#", last=100)
    stored = [m["topic"] for m in back if m["topic"] != "forum/a"]
    check_eq(stored, ["forum/" + "x" * 249, "forum/big"], "history holds only the accepted publishes")
    for cl in (c, watch, anon):
        await cl.alive()
        await cl.close()
    hub.stop()


async def rate_limits():
    hub = pt.Hub(
        anon_sub=["#"], anon_pub=["rl/#"],
        tokens=[pt.user("alice", subscribe=["#"], publish=["#"])],
        limits={"publish_per_second": 5, "publish_burst": 5,
                "token_publish_per_second": 3, "max_errors": 100})
    hub.start()
    watch = await pt.connect(hub, name="watch")
    await watch.sub("#")

    # Per connection: burst 5 at 5/s. Anonymous has no token bucket.
    a = await pt.connect(hub, name="anon-pub")
    n = 15
    t0 = time.monotonic()
    for i in range(n):
        await a.send({"op": "pub", "id": i, "topic": "rl/conn", "body": i})
    answers = {}
    for _ in range(n):
        f = await a.recv()
        answers[f.get("id")] = f
    dt = time.monotonic() - t0
    oks = [i for i in range(n) if answers[i]["op"] == "ok"]
    limited = [i for i in range(n) if answers[i]["op"] == "error" and answers[i]["code"] == "rate_limited"]
    check_eq(len(oks) + len(limited), n, "every pub answered ok or rate_limited")
    check(5 <= len(oks) <= 5 + int(dt * 5) + 1,
          "burst of %d pubs: %d accepted (burst 5 at 5/s over %.2f s)" % (n, len(oks), dt))
    check(len(limited) >= n - 6 - int(dt * 5), "%d rate_limited" % len(limited))
    got = await watch.msgs(len(oks))
    check_eq([m["body"] for m in got], oks, "exactly the accepted publishes were delivered")
    await watch.silence(0.3)
    check(True, "rate_limited publishes were not stored")
    await asyncio.sleep(1.1)
    await a.pub("rl/conn", "later")
    check(True, "after a pause the connection may publish again")
    await watch.msgs(1)
    await a.alive()

    # Per token: 3/s (burst 6) over all of alice's connections, each of
    # which is under its own per-connection burst of 5.
    b1 = await pt.connect(hub, pt.token_of("alice"), name="b1")
    b2 = await pt.connect(hub, pt.token_of("alice"), name="b2")
    t0 = time.monotonic()
    for i in range(4):
        await b1.send({"op": "pub", "id": i, "topic": "rl/tok", "body": "b1-%d" % i})
        await b2.send({"op": "pub", "id": i, "topic": "rl/tok", "body": "b2-%d" % i})
    res = []
    for cl in (b1, b2):
        for _ in range(4):
            res.append(await cl.recv())
    dt = time.monotonic() - t0
    ok = sum(1 for f in res if f["op"] == "ok")
    lim = sum(1 for f in res if f["op"] == "error" and f["code"] == "rate_limited")
    check_eq(ok + lim, 8, "every pub of the token answered ok or rate_limited")
    check(lim >= 1 and ok <= 6 + int(dt * 3) + 1,
          "token bucket shared by two connections: %d ok, %d rate_limited" % (ok, lim))
    await watch.msgs(ok)
    await watch.silence(0.2)
    for cl in (watch, a, b1, b2):
        await cl.close()
    hub.stop()


async def closing():
    hub = pt.Hub(tokens=[pt.user("alice")],
                 limits={"max_errors": 5, "max_frame_bytes": FRAME_LIMIT})
    hub.start()

    # Errors not in a row do not close.
    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    for rnd in range(3):
        for _ in range(4):
            await c.send("garbage")
            f = await c.recv()
            check_eq(f.get("code"), "bad_json", "round %d: bad frame answered" % rnd)
        await c.alive()
    check(True, "4 bad frames then a good one, three times: still open (max_errors 5)")

    # max_errors in a row closes with 1008, after answering each.
    for i in range(5):
        await c.send({"op": "nope", "id": i})
    code = await c.closed(5)
    codes = [f.get("code") for f in c.inbox]
    check_eq(codes, ["unknown_op"] * 5, "each of the 5 bad requests was answered before the close")
    check_eq(code, 1008, "5 bad requests in a row close the connection with 1008")

    # Mixed kinds of errors count too.
    c = await pt.connect(hub, pt.token_of("alice"), name="c2")
    for frame in ("x", {"op": "nope"}, {"op": "pub"}, b"bin", {"op": "sub", "topic": "a//b"}):
        await c.send(frame)
    code = await c.closed(5)
    check_eq(code, 1008, "5 mixed bad requests in a row close with 1008")

    # A frame over max_frame_bytes closes with 1009.
    c = await pt.connect(hub, pt.token_of("alice"), name="c3")
    await c.send({"op": "pub", "topic": "t/a", "body": "z" * FRAME_LIMIT})
    code = await c.closed(5)
    check_eq(code, 1009, "a %d-byte frame with max_frame_bytes %d closes with 1009"
             % (FRAME_LIMIT + 40, FRAME_LIMIT))
    c = await pt.connect(hub, pt.token_of("alice"), name="c4")
    await c.send(b"\0" * (FRAME_LIMIT + 1))
    code = await c.closed(5)
    check_eq(code, 1009, "a binary frame over max_frame_bytes closes with 1009")

    # A frame of exactly max_frame_bytes is fine.
    c = await pt.connect(hub, pt.token_of("alice"), name="c5")
    head = '{"op":"ping","id":"exact","pad":"'
    frame = head + "p" * (FRAME_LIMIT - len(head) - 2) + '"}'
    check_eq(len(frame), FRAME_LIMIT, "built a frame of exactly max_frame_bytes")
    await c.send(frame)
    f = await c.recv()
    check_eq(f, {"op": "pong", "id": "exact"}, "a frame of exactly max_frame_bytes is served")

    # The hub is fine afterwards.
    d = await pt.connect(hub, pt.token_of("alice"), name="d")
    await d.sub("t/#")
    await c.pub("t/a", "still here")
    (m,) = await d.msgs(1)
    check_eq(m["body"], "still here", "the hub keeps serving other connections")
    await c.close()
    await d.close()
    hub.stop()


async def connection_limit():
    hub = pt.Hub(tokens=[pt.user("alice")], limits={"max_connections": 3})
    hub.start()
    cs = [await pt.connect(hub, pt.token_of("alice"), name="c%d" % i) for i in range(3)]
    st = await pt.refused_status(hub, token=pt.token_of("alice"))
    check_eq(st, 503, "a 4th connection with max_connections 3 is refused with HTTP 503")
    for c in cs:
        await c.alive()
    check(True, "the 3 connections are unaffected")
    await cs[0].close()
    for _ in range(40):
        try:
            c = await pt.connect(hub, pt.token_of("alice"), name="again")
            break
        except pt.websockets.exceptions.InvalidStatusCode:
            await asyncio.sleep(0.05)
    else:
        raise pt.Failure("no room again after a client left")
    await c.alive()
    check(True, "after one leaves, a new connection is accepted")
    for x in cs[1:] + [c]:
        await x.close()
    hub.stop()


async def topic_limit():
    """limits.max_topics bounds the topics held in history: a publish to a
    new topic beyond it is refused (too_large) and stores nothing; known
    topics keep working."""
    hub = pt.Hub(tokens=[pt.user("alice")], limits={"max_topics": 3})
    hub.start()
    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    w = await pt.connect(hub, pt.token_of("alice"), name="w")
    await w.sub("#")
    for i in range(3):
        await c.pub("t/%d" % i, i)
    await w.msgs(3)
    await expect_error(c, {"op": "pub", "topic": "t/3", "body": 3, "id": "t3"}, "too_large",
                       "a publish to a 4th topic with max_topics 3", with_id="t3")
    await w.silence(0.3)
    check(True, "the refused publish was not delivered")
    await c.pub("t/1", "again")
    (m,) = await w.msgs(1)
    check_eq(m["body"], "again", "a known topic still accepts publishes")
    for x in (c, w):
        await x.close()
    hub.stop()


async def scenario():
    await error_codes()
    await topic_limit()
    await rate_limits()
    await closing()
    await connection_limit()


pt.run(scenario)
