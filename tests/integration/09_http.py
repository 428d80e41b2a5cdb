#!/usr/bin/python3
"""09_http: /healthz, /metrics (Prometheus text) and unknown paths."""
import asyncio
import json

import parleytest as pt
from parleytest import check, check_eq

METRICS = [
    "parley_connections",
    "parley_messages_in_total",
    "parley_messages_out_total",
    "parley_slow_consumer_disconnects_total",
    "parley_errors_total",
]


async def scenario():
    hub = pt.Hub(tokens=[pt.user("alice")])
    hub.start()

    st, hdr, body = hub.get("/healthz")
    check_eq(st, 200, "GET /healthz answers 200")
    check("json" in hdr.get("content-type", ""), "/healthz content-type is JSON (%r)" % hdr.get("content-type"))
    h = json.loads(body)
    check(isinstance(h, dict), "/healthz body is a JSON object")
    check_eq(h.get("status"), "ok", "/healthz status is ok")
    check_eq(h.get("node"), hub.node, "/healthz names the node")

    st, hdr, body = hub.get("/metrics")
    check_eq(st, 200, "GET /metrics answers 200")
    check(hdr.get("content-type", "").startswith("text/plain"),
          "/metrics content-type is text/plain (%r)" % hdr.get("content-type"))
    text = body.decode()
    totals, samples = pt.parse_metrics(text)
    check(True, "/metrics parses as Prometheus text (%d samples)" % len(samples))
    for name in METRICS:
        check(any(s[0] == name for s in samples), "/metrics has %s" % name)
        check(("# TYPE %s " % name) in text, "/metrics declares # TYPE %s" % name)
    check_eq(pt.metric_value(samples, "parley_connections"), 0.0, "parley_connections is 0 with no client")
    in0 = pt.metric_value(samples, "parley_messages_in_total")
    out0 = pt.metric_value(samples, "parley_messages_out_total")
    bj0 = pt.metric_value(samples, "parley_errors_total", code="bad_json") or 0.0

    # Activity moves the counters.
    a = await pt.connect(hub, pt.token_of("alice"), name="a")
    b = await pt.connect(hub, pt.token_of("alice"), name="b")
    c = await pt.connect(hub, name="c")
    await a.sub("forum/#")
    await b.sub("forum/#")
    for i in range(3):
        await c.error("pub", "forbidden", topic="forum/x", body=i)
    for i in range(5):
        await a.pub("forum/x", i)
    await a.msgs(5)
    await b.msgs(5)
    await c.send("{nope")
    f = await c.recv()
    check_eq(f.get("code"), "bad_json", "a bad_json error was sent")
    _, samples = hub.metrics()
    check_eq(pt.metric_value(samples, "parley_connections"), 3.0, "parley_connections is 3 with 3 clients")
    check_eq(pt.metric_value(samples, "parley_messages_in_total") - in0, 5.0,
             "parley_messages_in_total grew by the 5 accepted publishes")
    check_eq(pt.metric_value(samples, "parley_messages_out_total") - out0, 10.0,
             "parley_messages_out_total grew by 10 deliveries (5 messages x 2 subscribers)")
    check_eq((pt.metric_value(samples, "parley_errors_total", code="bad_json") or 0.0) - bj0, 1.0,
             'parley_errors_total{code="bad_json"} counts the bad frame')
    check(pt.metric_value(samples, "parley_errors_total", code="forbidden") >= 3.0,
          'parley_errors_total{code="forbidden"} counts the 3 forbidden publishes')
    codes = {ls.get("code") for n, ls, _ in samples if n == "parley_errors_total"}
    check(None not in codes, "every parley_errors_total sample has a code label (%s)"
          % ", ".join(sorted(x for x in codes if x)))
    for cl in (a, b, c):
        await cl.close()
    for _ in range(60):
        _, samples = hub.metrics()
        if pt.metric_value(samples, "parley_connections") == 0.0:
            break
        await asyncio.sleep(0.05)
    check_eq(pt.metric_value(samples, "parley_connections"), 0.0, "parley_connections back to 0 after the clients left")

    # Unknown paths and methods.
    for path in ("/nope", "/healthz/x", "/metricsx", "/v1/nothing"):
        st, _, _ = hub.get(path)
        check_eq(st, 404, "GET %s answers 404" % path)
    for path in ("/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.hidden", "/" + "a" * 3000):
        st, _, body = hub.get(path)
        check(st in (400, 403, 404, 414, 431) and b"root:" not in body,
              "GET %s is refused (%d)" % (path[:24], st))
    st, _, body = hub.get("/%00")
    check(st < 500 and b"root:" not in body, "GET /%%00 is answered without error (%d)" % st)
    st, _, _ = pt.http_get(hub.port, "/healthz", method="POST", body=b"{}")
    check(st in (400, 404, 405), "POST /healthz is refused (%d)" % st)

    # Keep-alive: several requests on one connection.
    conn = pt.http.client.HTTPConnection("127.0.0.1", hub.port, timeout=5)
    seen = []
    for path in ("/healthz", "/metrics", "/nope", "/healthz"):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        seen.append(r.status)
    conn.close()
    check_eq(seen, [200, 200, 404, 200], "four requests on one keep-alive connection are all answered")

    # A plain GET on the WebSocket path (no upgrade) is not a crash.
    st, _, _ = hub.get("/ws")
    check(st >= 400, "GET /ws without upgrade answers an HTTP error (%d)" % st)
    st, _, _ = hub.get("/healthz")
    check_eq(st, 200, "the hub still answers /healthz")


pt.run(scenario)
