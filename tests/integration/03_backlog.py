#!/usr/bin/python3
"""03_backlog: sub with last / since, malformed and future cursors,
history_gap after the ring wraps and after a restart."""
import re

import parleytest as pt
from parleytest import check, check_eq

HIST = 5


def future_cursor(cursor):
    """Returns a cursor of the same hub run that lies in the future: the
    last run of digits/letters is read as the sequence number (decimal when
    it is all digits, else base 36) and increased by a lot. Cursors are
    opaque; this relies only on the documented alphabet and on cursors
    ending with their position, which is checked first."""
    m = re.search(r"([0-9a-z]+)$", cursor)
    s = m.group(1)
    if s.isdigit():
        new = str(int(s) + 1000000)
    else:
        n = int(s, 36) + 36 ** 4
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        new = ""
        while n:
            n, r = divmod(n, 36)
            new = digits[r] + new
    return cursor[:m.start(1)] + new


def bodies(msgs):
    return [m["body"] for m in msgs]


async def scenario():
    hub = pt.Hub(history=HIST, tokens=[pt.user("alice")])
    hub.start()
    pub = await pt.connect(hub, pt.token_of("alice"), name="pub")
    watch = await pt.connect(hub, pt.token_of("alice"), name="watch")
    await watch.sub("t/#")

    # 8 messages on t/a: the ring (length 5) keeps 4..8.
    for i in range(1, 9):
        await pub.pub("t/a", i)
    live = await watch.msgs(8)
    cur = {m["body"]: m["cursor"] for m in live}
    check_eq(bodies(live), list(range(1, 9)), "live subscriber got 1..8 in order")

    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    back = await c.sub("t/a", last=3)
    check_eq(bodies(back), [6, 7, 8], "last=3 sends the 3 most recent, oldest first, before ok")
    check_eq([m["cursor"] for m in back], [cur[6], cur[7], cur[8]],
             "backlog msgs carry the same cursors as live ones")
    check(all(m["from"] == hub.who("alice") and m["origin"] == hub.node for m in back),
          "backlog msgs carry from and origin")
    await c.ok("unsub", topic="t/a")

    back = await c.sub("t/a", last=100)
    check_eq(bodies(back), [4, 5, 6, 7, 8], "last=100 is clamped to history.length (5)")
    await c.ok("unsub", topic="t/a")
    back = await c.sub("t/a", last=0)
    check_eq(back, [], "last=0 sends no backlog")

    # The subscription made with a backlog is live afterwards.
    await pub.pub("t/a", 9)
    (m,) = await c.msgs(1)
    check_eq(m["body"], 9, "after a backlog sub, live messages follow")
    await watch.msgs(1)
    await c.ok("unsub", topic="t/a")

    # Re-subscribing with last sends the backlog again.
    back = await c.sub("t/a", last=2)
    back2 = await c.sub("t/a", last=2)
    check_eq(bodies(back2), bodies(back), "sub again to a held filter with last resends the backlog")
    await c.ok("unsub", topic="t/a")

    # since: ring now holds 5..9.
    back = await c.sub("t/a", since=cur[6])
    check_eq(bodies(back), [7, 8, 9], "since=cursor(6) sends 7, 8, 9")
    await c.ok("unsub", topic="t/a")
    latest = live[-1]["cursor"]
    back = await c.sub("t/a", since=cur[8])
    check_eq(bodies(back), [9], "since=cursor(8) sends only 9")
    await pub.pub("t/a", 10)
    (m,) = await c.msgs(1)
    check_eq(m["body"], 10, "since-subscription then receives live messages")
    await watch.msgs(1)
    await c.ok("unsub", topic="t/a")

    # since across several topics of a pattern: ordered by the hub.
    d = await pt.connect(hub, pt.token_of("alice"), name="d")
    await pub.pub("t/b", "b1")
    await pub.pub("t/c", "c1")
    await pub.pub("t/b", "b2")
    got = await watch.msgs(3)
    back = await d.sub("t/+", since=got[0]["cursor"])
    check_eq(bodies(back), ["c1", "b2"], "since on a pattern covers every matching topic, in order")
    await d.ok("unsub", topic="t/+")
    back = await d.sub("t/#", last=3)
    check_eq(bodies(back), ["b1", "c1", "b2"], "last=3 on a pattern: the 3 most recent over all topics")
    await d.ok("unsub", topic="t/#")

    # Malformed cursors, wrong types, last+since together.
    for bad in ("", "!!!", "not a cursor", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
                "-", "9" * 60, latest + "x!"):
        await d.error("sub", "bad_request", topic="t/a", since=bad)
        check(True, "since=%r is bad_request" % bad[:30])
    for bad in (123, ["x"], {"c": latest}, True):
        await d.error("sub", "bad_request", topic="t/a", since=bad)
        check(True, "since of type %s is bad_request" % type(bad).__name__)
    for bad in (-1, "3", 2.5, True, [1]):
        await d.error("sub", "bad_request", topic="t/a", last=bad)
        check(True, "last=%r is bad_request" % (bad,))
    await d.error("sub", "bad_request", topic="t/a", last=1, since=latest)
    check(True, "last and since together is bad_request")

    # A cursor from the future is bad_request.
    fut = future_cursor(latest)
    check(fut != latest and pt.CURSOR_RE.match(fut) is not None, "built a future cursor %r" % fut)
    await d.error("sub", "bad_request", topic="t/a", since=fut)
    check(True, "since=<cursor from the future> is bad_request")

    # None of the refused subscriptions was made.
    await pub.pub("t/a", "probe")
    await d.silence(0.3)
    check(True, "no subscription was made by a refused sub")
    await watch.msgs(1)

    # history_gap: a cursor whose successors were evicted.
    old = cur[2]  # Message 3 (the one after it) left the ring long ago.
    ans = await d.error("sub", "history_gap", topic="t/a", since=old)
    check("id" in ans, "history_gap answers the request (carries its id)")
    await pub.pub("t/a", "after gap")
    await d.silence(0.3)
    check(True, "history_gap: the subscription is not made")
    await watch.msgs(1)
    # The client then resubscribes without backlog: that works.
    await d.sub("t/a")
    await pub.pub("t/a", "resubscribed")
    (m,) = await d.msgs(1)
    check_eq(m["body"], "resubscribed", "after history_gap a plain sub works")
    await watch.msgs(1)

    # since exactly at the edge: the cursor just before the oldest kept
    # message is still complete (no gap).
    e = await pt.connect(hub, pt.token_of("alice"), name="e")
    for i in range(HIST):
        await pub.pub("t/e", "e%d" % i)
    eg = await watch.msgs(HIST)
    await pub.pub("t/e", "e%d" % HIST)  # Evicts e0; cursor(e0) still complete.
    await watch.msgs(1)
    back = await e.sub("t/e", since=eg[0]["cursor"])
    check_eq(bodies(back), ["e%d" % i for i in range(1, HIST + 1)],
             "since=cursor of an evicted message whose successors are all kept works")
    await e.ok("unsub", topic="t/e")
    await pub.pub("t/e", "e%d" % (HIST + 1))
    await watch.msgs(1)
    await e.error("sub", "history_gap", topic="t/e", since=eg[0]["cursor"])
    check(True, "one more message and the same cursor is a history_gap")

    # Backlog then live with no gap and no duplicate, while publishes are
    # in flight: since= a cursor taken mid-stream.
    g = await pt.connect(hub, pt.token_of("alice"), name="g")
    await pub.pub("t/g", -1)
    (start,) = await watch.msgs(1)
    for i in range(40):
        await pub.send({"op": "pub", "id": "g%d" % i, "topic": "t/g", "body": i})
        if i == 2:
            back = await g.sub("t/g", since=start["cursor"])
    for i in range(40):
        await pub.wait_answer("g%d" % i)
    got = await watch.msgs(40)
    seen = [m["body"] for m in back]
    n_live = 40 - len(seen)
    live = await g.msgs(n_live) if n_live > 0 else []
    seen += [m["body"] for m in live]
    check_eq(seen, list(range(40)), "since while publishing: backlog + live = every message once, in order "
             "(%d from backlog)" % len(back))
    await g.silence(0.2)
    await g.close()

    for cl in (pub, watch, c, d, e):
        await cl.close()

    # A cursor from before a restart is a history_gap.
    old_mids = set(m["mid"] for m in live)
    hub.stop()
    hub2 = pt.Hub(history=HIST, tokens=[pt.user("alice")])
    hub2.start()
    f = await pt.connect(hub2, pt.token_of("alice"), name="f")
    p2 = await pt.connect(hub2, pt.token_of("alice"), name="p2")
    new_mids = set()
    for i in range(20):  # Make the new run's sequence pass the old cursor.
        new_mids.add(await p2.pub("t/a", i))
    check(not (old_mids & new_mids), "mids of the restarted hub do not repeat those of the previous run")
    await f.error("sub", "history_gap", topic="t/a", since=latest)
    check(True, "a cursor from a previous run of the hub is history_gap")
    back = await f.sub("t/a", last=2)
    check_eq(bodies(back), [18, 19], "the restarted hub has only its own history")
    await f.close()
    await p2.close()


pt.run(scenario)
