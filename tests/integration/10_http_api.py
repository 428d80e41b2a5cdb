#!/usr/bin/python3
"""10_http_api: the bot API: POST /v1/publish and GET /v1/history
(DESIGN.md "HTTP API"), checked against what WebSocket clients see."""
import json
import time
import urllib.parse

import parleytest as pt
from parleytest import check, check_eq

FRAME_LIMIT = 4096


def post(hub, body, token=None, raw=None, headers=None):
    h = {"Content-Type": "application/json"}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    data = raw if raw is not None else json.dumps(body).encode()
    st, hdr, out = pt.http_get(hub.port, "/v1/publish", method="POST", body=data, headers=h)
    try:
        obj = json.loads(out) if out else None
    except ValueError:
        obj = out
    return st, obj


def history(hub, token=None, **q):
    h = {}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    path = "/v1/history?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="/")
    st, hdr, out = pt.http_get(hub.port, path, headers=h)
    try:
        obj = json.loads(out) if out else None
    except ValueError:
        obj = out
    return st, obj


async def scenario():
    hub = pt.Hub(
        history=10, anon_sub=["forum/#"], anon_pub=[],
        tokens=[pt.user("alice", subscribe=["#"], publish=["forum/#"]),
                pt.user("bot", subscribe=["bots/#"], publish=["bots/#"])],
        limits={"max_frame_bytes": FRAME_LIMIT, "token_publish_per_second": 5})
    hub.start()
    A, B = pt.token_of("alice"), pt.token_of("bot")
    ws = await pt.connect(hub, A, name="ws")
    await ws.sub("#")

    # Publish over HTTP; WebSocket subscribers see it.
    t0 = int(time.time() * 1000)
    st, ans = post(hub, {"topic": "forum/http", "body": {"n": 1, "s": "é"}}, token=A)
    check_eq(st, 200, "POST /v1/publish with a Bearer token answers 200")
    check(isinstance(ans, dict) and isinstance(ans.get("mid"), str) and ans["mid"], "... with a mid (%r)" % ans)
    (m,) = await ws.msgs(1)
    check_eq(m["mid"], ans["mid"], "the WebSocket subscriber gets the HTTP-published message")
    check_eq(m["from"], hub.who("alice"), "from is the token's user")
    check_eq(m["origin"], hub.node, "origin is the node")
    check_eq(m["body"], {"n": 1, "s": "é"}, "body intact")
    check(abs(m["ts"] - t0) < 5000, "ts is now")
    st, ans = post(hub, {"topic": "bots/status", "body": "up", "from": "mallory@x"}, token=B)
    check_eq(st, 200, "the bot publishes to bots/status")
    (m,) = await ws.msgs(1)
    check_eq(m["from"], hub.who("bot"), "from cannot be forged over HTTP either")

    # Refusals.
    cases = [
        ("no token (anonymous may not publish)", {"topic": "forum/x", "body": 1}, None, None, 401),
        ("an unknown token", {"topic": "forum/x", "body": 1}, "nope", None, 401),
        ("a topic outside the token's patterns", {"topic": "news/x", "body": 1}, A, None, 403),
        ("a body that is not JSON", None, A, b"{nope", 400),
        ("a JSON array", None, A, b"[1]", 400),
        ("an empty body", None, A, b"", 400),
        ("no topic", {"body": 1}, A, None, 400),
        ("no body", {"topic": "forum/x"}, A, None, 400),
        ("a numeric topic", {"topic": 5, "body": 1}, A, None, 400),
        ("a pattern as topic", {"topic": "forum/#", "body": 1}, A, None, 400),
        ("an invalid topic", {"topic": "forum//x", "body": 1}, A, None, 400),
        ("a request over the size limit", {"topic": "forum/x", "body": "x" * (FRAME_LIMIT * 4)}, A, None, 413),
    ]
    for what, body, tok, raw, want in cases:
        st, ans = post(hub, body, token=tok, raw=raw)
        check_eq(st, want, "POST /v1/publish with %s answers %d" % (what, want))
        check(isinstance(ans, dict) and isinstance(ans.get("code"), str) and isinstance(ans.get("reason"), str),
              "... with a JSON error %r" % (ans if not isinstance(ans, bytes) else ans[:80],))
    st, _ = post(hub, None, token=A, raw=b'{"topic":"forum/x","body":1}',
                 headers={"Authorization": "Basic YWxpY2U6eA=="})
    check_eq(st, 401, "a non-Bearer Authorization header answers 401")
    await ws.silence(0.3)
    check(True, "no refused publish was delivered")
    st, _, _ = hub.get("/v1/publish")
    check(st in (400, 405), "GET /v1/publish is refused (%d)" % st)

    # Rate limit per token: 5/s, burst 10.
    codes = []
    for i in range(20):
        st, ans = post(hub, {"topic": "bots/rate", "body": i}, token=B)
        codes.append(st)
    check(set(codes) <= {200, 429} and codes.count(429) >= 5,
          "20 quick publishes of one token: %d x 200, %d x 429" % (codes.count(200), codes.count(429)))
    got = await ws.msgs(codes.count(200))
    check_eq([m["body"] for m in got], [i for i, c in enumerate(codes) if c == 200],
             "exactly the accepted HTTP publishes were delivered")

    # History: same shape as msg.
    await ws.silence(0.2)
    mids = []
    for i in range(3):
        st, ans = post(hub, {"topic": "forum/h", "body": i}, token=A)
        mids.append(ans["mid"])
    live = await ws.msgs(3)
    st, h = history(hub, A, topic="forum/h", last=2)
    check_eq(st, 200, "GET /v1/history?topic=forum/h&last=2 answers 200")
    check(isinstance(h, dict) and isinstance(h.get("messages"), list), "history answer holds a messages list")
    check_eq(h["messages"], live[1:], "history messages equal the live msg frames (same shape and content)")
    st, h = history(hub, A, topic="forum/h", since=live[0]["cursor"])
    check_eq([m["mid"] for m in h["messages"]], mids[1:], "since=cursor gives the later messages")
    st, h = history(hub, A, topic="forum/+", last=100)
    check_eq(st, 200, "history of a pattern (+ percent-encoded)")
    check(len(h["messages"]) == 4 and all(m["topic"].startswith("forum/") for m in h["messages"]),
          "last=100 on forum/+ gives all 4 stored forum/+ messages")
    st, h = history(hub, None, topic="forum/h", last=1)
    check(st == 200 and [m["mid"] for m in h["messages"]] == mids[2:],
          "anonymous may read history under its subscribe patterns")
    for what, tok, q, want in (
            ("no topic", A, {"last": 1}, 400),
            ("an invalid topic", A, {"topic": "forum//x"}, 400),
            ("last and since together", A, {"topic": "forum/h", "last": 1, "since": live[0]["cursor"]}, 400),
            ("a negative last", A, {"topic": "forum/h", "last": -1}, 400),
            ("a malformed cursor", A, {"topic": "forum/h", "since": "nope!"}, 400),
            ("a topic outside the token's patterns", B, {"topic": "forum/h"}, 403),
            ("anonymous outside its patterns", None, {"topic": "bots/status"}, 401),
            ("an unknown token", "nope", {"topic": "forum/h"}, 401),
    ):
        st, ans = history(hub, tok, **q)
        check_eq(st, want, "GET /v1/history with %s answers %d" % (what, want))
    ep, _, seq = live[-1]["cursor"].rpartition("-")
    future = "%s-%s" % (ep, "zzzz" + seq) if ep else None
    if future:
        st, ans = history(hub, A, topic="forum/h", since=future)
        check_eq(st, 400, "GET /v1/history with a cursor from the future answers 400")
    st, ans = history(hub, A, topic="forum/h", since="zz-1")
    check(st >= 400 and isinstance(ans, dict) and ans.get("code") == "history_gap",
          "a cursor from another run answers an error with code history_gap (%d)" % st)

    await ws.close()


pt.run(scenario)
