#!/usr/bin/python3
"""01_pubsub: publish and subscribe round trip; every field of msg."""
import time

import parleytest as pt
from parleytest import check, check_eq

BODIES = [
    "plain text",
    "unicode: héllo wörld, 世界, emoji 🚀, rtl שלום",
    "",
    0,
    -42,
    1234567890123,
    1.5,
    True,
    False,
    None,
    [],
    [1, "two", [3], {"four": 4}],
    {},
    {"nested": {"deep": {"list": [1, 2, {"x": None}], "s": "é"}}, "n": -0.25},
    "quotes \" backslash \\ newline \n tab \t control \u0001",
]


async def scenario():
    hub = pt.Hub(tokens=[pt.user("alice", subscribe=["#"], publish=["forum/#"]),
                         pt.user("bob", subscribe=["forum/#"], publish=[])])
    hub.start()
    alice = await pt.connect(hub, pt.token_of("alice"), name="alice")
    bob = await pt.connect(hub, pt.token_of("bob"), name="bob")
    anon = await pt.connect(hub, name="anon")

    # ping with string and integer ids.
    ans, _ = await alice.ok("ping", id="p-1")
    check_eq(ans, {"op": "pong", "id": "p-1"}, "ping with string id answers pong echoing the id")
    ans, _ = await alice.ok("ping", id=77)
    check(ans.get("id") == 77 and type(ans["id"]) is int, "ping with integer id echoes the integer")

    for pid in ["é\n\"\\\u0001/", "", "😀" * 32, -1, 0, 2 ** 53, 2 ** 63 - 1, -2 ** 63]:
        ans, _ = await alice.ok("ping", id=pid)
        check(ans.get("id") == pid and type(ans["id"]) is type(pid),
              "id %r is echoed exactly" % (pid if not isinstance(pid, str) else pid[:12],))

    backlog = await bob.sub("forum/a")
    check_eq(backlog, [], "sub without last/since sends no backlog")
    await anon.sub("forum/a")

    mids = []
    t0 = int(time.time() * 1000)
    for i, body in enumerate(BODIES):
        ans, _ = await alice.ok("pub", topic="forum/a", body=body, id=1000 + i)
        check(ans.get("id") == 1000 + i, "pub ok echoes id %d" % (1000 + i))
        check(isinstance(ans.get("mid"), str) and ans["mid"], "pub ok carries a mid")
        mids.append(ans["mid"])
    t1 = int(time.time() * 1000)
    check_eq(len(set(mids)), len(mids), "every mid is unique")

    for who in (bob, anon):
        got = await who.msgs(len(BODIES))
        cursors = []
        for i, m in enumerate(got):
            body = BODIES[i]
            check_eq(sorted(m.keys()),
                     sorted(["op", "topic", "mid", "origin", "from", "ts", "cursor", "body"]),
                     "%s msg %d has exactly the documented fields" % (who.name, i))
            check_eq(m["topic"], "forum/a", "%s msg %d topic" % (who.name, i))
            check_eq(m["mid"], mids[i], "%s msg %d mid equals the pub's mid (in order)" % (who.name, i))
            check_eq(m["origin"], hub.node, "%s msg %d origin is the node name" % (who.name, i))
            check_eq(m["from"], "alice@" + hub.node, "%s msg %d from is alice@node" % (who.name, i))
            check(isinstance(m["ts"], int) and t0 - 2000 <= m["ts"] <= t1 + 2000,
                  "%s msg %d ts %r is ms since epoch, close to now" % (who.name, i, m["ts"]))
            check(isinstance(m["cursor"], str) and pt.CURSOR_RE.match(m["cursor"]) is not None,
                  "%s msg %d cursor %r is a [0-9a-z-] string" % (who.name, i, m["cursor"]))
            check(m["body"] == body and type(m["body"]) is type(body),
                  "%s msg %d body round-trips (%s %r)" % (who.name, i, type(body).__name__, body))
            cursors.append(m["cursor"])
        check_eq(len(set(cursors)), len(cursors), "%s: every cursor is distinct" % who.name)
        await who.silence(0.2)
    check(True, "each subscriber got each message exactly once")

    # ts is non-decreasing in publish order.
    # (Checked on bob's copy of a fresh pair.)
    await alice.pub("forum/a", "t1")
    await alice.pub("forum/a", "t2")
    m1, m2 = await bob.msgs(2)
    check(m1["ts"] <= m2["ts"], "ts does not go backwards between consecutive messages")
    await anon.msgs(2)

    # The publisher receives its own message when subscribed.
    await alice.sub("forum/#")
    mid = await alice.pub("forum/b", {"self": True})
    (m,) = await alice.msgs(1)
    check(m["mid"] == mid and m["topic"] == "forum/b", "publisher subscribed to forum/# gets its own message")

    # A topic nobody subscribed to is not delivered to bob.
    await alice.pub("forum/b", "not for bob")
    await alice.msgs(1)
    await bob.silence(0.3)
    check(True, "bob (subscribed to forum/a) does not get forum/b")

    # Same subscription twice is not an error; still one copy.
    await bob.sub("forum/a")
    await alice.pub("forum/a", "once")
    (m,) = await bob.msgs(1)
    check_eq(m["body"], "once", "re-subscribing to the same filter is ok")
    await bob.silence(0.3)
    check(True, "re-subscribing does not duplicate delivery")
    await anon.msgs(1)
    await alice.msgs(1)

    # unsub stops delivery; unsub of something not held is ok.
    ans, _ = await bob.ok("unsub", topic="forum/a")
    check_eq(ans.get("op"), "ok", "unsub answers ok")
    ans, _ = await bob.ok("unsub", topic="forum/never")
    check_eq(ans.get("op"), "ok", "unsub of a filter not held answers ok")
    await alice.pub("forum/a", "after unsub")
    await bob.silence(0.3)
    check(True, "no delivery after unsub")
    (m,) = await anon.msgs(1)
    check_eq(m["body"], "after unsub", "other subscribers still receive")
    await alice.msgs(1)

    # Large-ish body (under the frame limit) round-trips.
    big = {"blob": "x" * 30000, "list": list(range(500))}
    mid = await alice.pub("forum/a", big)
    (m,) = await anon.msgs(1)
    check(m["mid"] == mid and m["body"] == big, "a 32 KiB body round-trips intact")
    await alice.msgs(1)

    # A request without id is still answered (without id).
    await bob.send({"op": "ping"})
    f = await bob.recv()
    check(f.get("op") == "pong" and "id" not in f, "ping without id answers pong without id")

    for c in (alice, bob, anon):
        await c.close()


pt.run(scenario)
