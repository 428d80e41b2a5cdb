#!/usr/bin/python3
"""04_auth: tokens on the upgrade (Bearer, ?token=) and by the auth op,
refused unknown tokens, anonymous and per-user permissions, unforgeable
from."""
import urllib.parse

import parleytest as pt
from parleytest import check, check_eq


async def whoami(hub, c, watcher, topic):
    """Publishes on topic and returns the from that watcher sees."""
    mid = await c.pub(topic, "who")
    (m,) = await watcher.msgs(1)
    check_eq(m["mid"], mid, "watcher got the probe on %s" % topic)
    return m["from"]


async def scenario():
    hub = pt.Hub(
        anon_sub=["forum/#"], anon_pub=["forum/open"],
        tokens=[
            pt.user("alice", subscribe=["#"], publish=["forum/#", "secret/#"]),
            pt.user("bob", subscribe=["forum/#"], publish=["forum/bob/#"]),
            pt.user("carol", subscribe=["forum/+/public", "news/#"], publish=[]),
            pt.user("dora", subscribe=["forum/#"], publish=["forum/#"], token="t0k+/=&%~!;,$"),
        ])
    hub.start()
    A, B, C = (pt.token_of(u) for u in ("alice", "bob", "carol"))

    watch = await pt.connect(hub, A, name="watch")
    await watch.sub("#")

    # Token on the upgrade: Authorization header, ?token=.
    a1 = await pt.connect(hub, A, via="header", name="a-header")
    check_eq(await whoami(hub, a1, watch, "forum/x"), hub.who("alice"),
             "Authorization: Bearer token on the upgrade identifies alice")
    a2 = await pt.connect(hub, A, via="query", name="a-query")
    check_eq(await whoami(hub, a2, watch, "forum/x"), hub.who("alice"),
             "?token= on the upgrade identifies alice")

    # A token with characters that need escaping in a URL.
    odd = "t0k+/=&%~!;,$"
    for via in ("header", "query"):
        if via == "query":
            url_tok = urllib.parse.quote(odd, safe="")
        else:
            url_tok = odd
        c0 = await pt.connect(hub, url_tok, via=via, name="odd-" + via)
        check_eq(await whoami(hub, c0, watch, "forum/odd"), hub.who("dora"),
                 "a token with + / = & %% characters works via %s" % via)
        await c0.close()
    c0 = await pt.connect(hub, name="odd-op")
    ans, _ = await c0.ok("auth", token=odd)
    check_eq(ans.get("user"), hub.who("dora"), "... and via the auth op")
    await c0.close()

    # Unknown token on the upgrade: HTTP 401.
    st = await pt.refused_status(hub, token="wrong-token", via="header")
    check_eq(st, 401, "unknown Bearer token on the upgrade is refused with HTTP 401")
    st = await pt.refused_status(hub, token="wrong-token", via="query")
    check_eq(st, 401, "unknown ?token= on the upgrade is refused with HTTP 401")
    st = await pt.refused_status(hub, token="", via="header")
    check_eq(st, 401, "empty Bearer token on the upgrade is refused with HTTP 401")

    # auth op.
    c = await pt.connect(hub, name="c")
    ans, _ = await c.ok("auth", token=B, id="a1")
    check_eq(ans, {"op": "ok", "id": "a1", "user": hub.who("bob")}, "auth op answers ok with user bob@node")
    check_eq(await whoami(hub, c, watch, "forum/bob/1"), hub.who("bob"), "after auth op, from is bob@node")
    ans = await c.error("auth", "unauthorized", token="nope")
    check(ans.get("id") is not None, "unknown token in auth op is unauthorized (with id)")
    check_eq(await whoami(hub, c, watch, "forum/bob/2"), hub.who("bob"),
             "after a failed auth the connection keeps its previous identity")
    for bad in (None, 5, ["x"], {}):
        await c.error("auth", "bad_request", token=bad)
        check(True, "auth with token %r is bad_request" % (bad,))
    await c.error("auth", "bad_request")
    check(True, "auth without token is bad_request")
    ans, _ = await c.ok("auth", token=A)
    check_eq(ans.get("user"), hub.who("alice"), "a second auth op switches identity to alice")
    check_eq(await whoami(hub, c, watch, "secret/1"), hub.who("alice"), "now publishing as alice")

    # Switching to a less privileged identity drops the subscriptions it
    # may not hold, each with a forbidden error naming the topic.
    await c.sub("secret/#")
    await c.sub("forum/a")
    ans, _ = await c.ok("auth", token=B)
    check_eq(ans.get("user"), hub.who("bob"), "auth back to bob")
    err = await c.frame("error")
    check(err.get("code") == "forbidden" and err.get("topic") == "secret/#",
          "subscription bob may not hold is dropped with forbidden naming the topic (%r)" % err)
    await watch.alive()
    await a1.pub("secret/2", "hidden")
    await watch.msgs(1)
    await a1.pub("forum/a", "visible")
    (m,) = await c.msgs(1)
    check_eq(m["body"], "visible", "the permitted subscription is kept")
    await c.silence(0.3)
    check(True, "the dropped subscription delivers nothing")
    await watch.msgs(1)

    # Anonymous permissions.
    anon = await pt.connect(hub, name="anon")
    await anon.sub("forum/#")
    check(True, "anonymous may subscribe to forum/#")
    await anon.sub("forum/x/y")
    check(True, "anonymous may subscribe to a topic under forum/#")
    for t in ("secret/x", "#", "+/x", "news/1"):
        ans = await anon.error("sub", "forbidden", topic=t)
        check(True, "anonymous sub to %r is forbidden" % t)
    await anon.error("pub", "forbidden", topic="forum/x", body="no")
    check(True, "anonymous pub to forum/x is forbidden")
    mid = await anon.pub("forum/open", "anon hello")
    (m,) = await watch.msgs(1)
    check(m["mid"] == mid, "anonymous may publish to forum/open (granted by auth.anonymous.publish)")
    check(m["from"].endswith("@" + hub.node) and m["from"] not in
          (hub.who("alice"), hub.who("bob"), hub.who("carol")),
          "anonymous message has an anonymous from on this node (%r)" % m["from"])
    await anon.msgs(1)

    # Per-user permissions.
    bob = await pt.connect(hub, B, name="bob")
    await bob.error("pub", "forbidden", topic="forum/x", body="no")
    check(True, "bob pub outside forum/bob/# is forbidden")
    await bob.error("sub", "forbidden", topic="secret/x")
    check(True, "bob sub to secret/x is forbidden")
    await bob.error("sub", "forbidden", topic="#")
    check(True, "bob sub to # (wider than forum/#) is forbidden")
    carol = await pt.connect(hub, C, name="carol")
    await carol.sub("forum/+/public")
    await carol.sub("forum/zev/public")
    await carol.sub("news/x/#")
    check(True, "carol may subscribe to filters covered by her patterns")
    for t in ("forum/#", "forum/+/+", "forum/zev/private", "forum/+/public/x"):
        await carol.error("sub", "forbidden", topic=t)
        check(True, "carol sub to %r (not covered) is forbidden" % t)
    await carol.error("pub", "forbidden", topic="news/1", body=1)
    check(True, "carol with no publish patterns cannot publish")

    # A forbidden publish stores nothing.
    await bob.error("pub", "forbidden", topic="forum/x", body="nope")
    await watch.silence(0.3)
    check(True, "a forbidden publish is not delivered")
    back = await anon.sub("forum/x", last=10)
    check(all(m["body"] != "nope" and m["body"] != "no" for m in back),
          "a forbidden publish is not stored in history")
    await anon.ok("unsub", topic="forum/x")
    await anon.ok("unsub", topic="forum/x/y")

    # from (and origin, mid, ts, cursor) cannot be forged.
    ans, _ = await a1.request("pub", topic="forum/forge", body="f", **{
        "from": "mallory@evil.example", "origin": "evil.example",
        "mid": "forged-mid", "ts": 1, "cursor": "0"})
    if ans.get("op") == "ok":
        (m,) = await watch.msgs(1)
        check_eq(m["from"], hub.who("alice"), "a client-sent from is ignored: from is alice@node")
        check_eq(m["origin"], hub.node, "a client-sent origin is ignored")
        check(m["mid"] != "forged-mid" and m["mid"] == ans["mid"], "a client-sent mid is ignored")
        check(m["ts"] != 1, "a client-sent ts is ignored")
        (m2,) = await anon.msgs(1)
        check_eq(m2["from"], hub.who("alice"), "every receiver sees the true from")
    else:
        check_eq(ans.get("code"), "bad_request", "a pub carrying from is refused with bad_request")
        await watch.silence(0.3)
        check(True, "... and nothing was delivered")

    for cl in (watch, a1, a2, c, anon, bob, carol):
        await cl.alive()
        await cl.close()
    check(True, "every connection is still usable")


pt.run(scenario)
