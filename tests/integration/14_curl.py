#!/usr/bin/python3
"""14_curl: the bot API driven by curl, an independent HTTP client: every
status code of POST /v1/publish, a body that is too large, the rate limit,
history with last and since, and the operator endpoints."""
import json
import subprocess
import time

import parleytest as pt
from parleytest import check, check_eq

FRAME_LIMIT = 4096


def curl(hub, path, token=None, data=None):
    """Runs curl; returns (status, parsed JSON body or text)."""
    cmd = ["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}",
           "http://127.0.0.1:%d%s" % (hub.port, path)]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    out = subprocess.run(cmd, input=data.encode() if data is not None else None,
                         capture_output=True, timeout=20).stdout.decode()
    body, _, code = out.rpartition("\n")
    try:
        return int(code), json.loads(body)
    except ValueError:
        return int(code), body


async def scenario():
    hub = pt.Hub(history=5, anon_sub=["forum/#"], anon_pub=[],
                 tokens=[pt.user("bot", subscribe=["#"], publish=["forum/#"])],
                 limits={"max_frame_bytes": FRAME_LIMIT,
                         "token_publish_per_second": 4})
    hub.start()
    T = pt.token_of("bot")

    st, ans = curl(hub, "/v1/publish", T, json.dumps({"topic": "forum/a", "body": "x1"}))
    check_eq(st, 200, "curl POST /v1/publish: 200")
    check(isinstance(ans, dict) and ans.get("mid"), "... answers {\"mid\"} (%r)" % ans)
    first = ans["mid"]
    for what, token, data, want in [
            ("not JSON", T, "{nope", 400),
            ("no topic", T, json.dumps({"body": 1}), 400),
            ("no token", None, json.dumps({"topic": "forum/a", "body": 1}), 401),
            ("an unknown token", "wrong", json.dumps({"topic": "forum/a", "body": 1}), 401),
            ("a topic outside the token's patterns", T, json.dumps({"topic": "news/a", "body": 1}), 403),
            ("a body over the limit", T, json.dumps({"topic": "forum/a", "body": "x" * (FRAME_LIMIT * 2)}), 413)]:
        st, ans = curl(hub, "/v1/publish", token, data)
        check_eq(st, want, "curl POST /v1/publish with %s: %d" % (what, want))
        check(isinstance(ans, dict) and ans.get("code") and ans.get("reason"),
              "... with a JSON error naming a code and a reason (%r)" % (ans,))

    for i in range(3):
        curl(hub, "/v1/publish", T, json.dumps({"topic": "forum/b", "body": i}))
    st, ans = curl(hub, "/v1/history?topic=forum/a&last=3", T)
    check_eq(st, 200, "curl GET /v1/history last=3: 200")
    check(isinstance(ans, dict) and [m["mid"] for m in ans["messages"]] == [first],
          "... holds the one message of forum/a")
    cursor = ans["messages"][0]["cursor"]
    st, ans = curl(hub, "/v1/history?topic=forum/%2B&since=" + cursor, T)
    check_eq(st, 200, "curl GET /v1/history since a cursor on a pattern: 200")
    check([m["body"] for m in ans["messages"]] == [0, 1, 2],
          "... gives the three later messages of forum/b (%r)" % ans)
    time.sleep(2)  # Let the token's bucket refill.
    for _ in range(6):  # Evict first and the message right after it.
        curl(hub, "/v1/publish", T, json.dumps({"topic": "forum/a", "body": "y"}))
    st, ans = curl(hub, "/v1/history?topic=forum/a&since=" + cursor, T)
    check_eq(st, 410, "a cursor whose messages were trimmed: 410")
    check(isinstance(ans, dict) and ans.get("code") == "history_gap", "... code history_gap")
    time.sleep(2)
    # The token's bucket holds 2 x 4 publishes: a burst runs into 429.
    codes = [curl(hub, "/v1/publish", T, json.dumps({"topic": "forum/c", "body": i}))[0]
             for i in range(12)]
    check(429 in codes, "a burst of 12 publishes meets the rate limit (429): %s" % codes)
    check(codes.count(200) >= 1, "... after accepting some")
    st, _ = curl(hub, "/v1/history?topic=forum//x&last=1", T)
    check_eq(st, 400, "an invalid topic in a history query: 400")
    st, _ = curl(hub, "/v1/history?topic=news/x&last=1", None)
    check_eq(st, 401, "history outside anonymous patterns without a token: 401")

    st, ans = curl(hub, "/healthz")
    check_eq(st, 200, "curl GET /healthz: 200")
    check(isinstance(ans, dict) and ans.get("status") == "ok", "... status ok")
    st, text = curl(hub, "/metrics")
    check(st == 200 and "parley_messages_in_total" in text, "curl GET /metrics: Prometheus text")


pt.run(scenario)
