#!/usr/bin/python3
"""02_patterns: + and # matching; overlapping filters deliver one copy."""
import parleytest as pt
from parleytest import check, check_eq

TOPICS = [
    "forum",
    "forum/zev",
    "forum/zev/heavy-duty",
    "forum/bus/heavy-duty",
    "forum/zev/light/heavy-duty",
    "forum/zev/heavy-duty/extra",
    "news/zev/heavy-duty",
    "a",
    "a/b/c/d/e/f",
]

# filter -> topics of TOPICS it must receive (MQTT semantics; a final #
# also matches its parent, see server/topic.h).
EXPECT = {
    "forum/+/heavy-duty": {"forum/zev/heavy-duty", "forum/bus/heavy-duty"},
    "forum/#": {"forum", "forum/zev", "forum/zev/heavy-duty", "forum/bus/heavy-duty",
                "forum/zev/light/heavy-duty", "forum/zev/heavy-duty/extra"},
    "forum/zev/#": {"forum/zev", "forum/zev/heavy-duty", "forum/zev/light/heavy-duty",
                    "forum/zev/heavy-duty/extra"},
    "+/zev/heavy-duty": {"forum/zev/heavy-duty", "news/zev/heavy-duty"},
    "+": {"forum", "a"},
    "+/+": {"forum/zev"},
    "#": set(TOPICS),
    "+/zev/#": {"forum/zev", "forum/zev/heavy-duty", "forum/zev/light/heavy-duty",
                "forum/zev/heavy-duty/extra", "news/zev/heavy-duty"},
    "forum/zev/heavy-duty": {"forum/zev/heavy-duty"},
    "a/+/c/+/e/#": {"a/b/c/d/e/f"},
}


async def scenario():
    hub = pt.Hub(tokens=[pt.user("alice")])
    hub.start()
    pub = await pt.connect(hub, pt.token_of("alice"), name="pub")

    subs = {}
    for i, flt in enumerate(EXPECT):
        c = await pt.connect(hub, pt.token_of("alice"), name="s%d" % i)
        await c.sub(flt)
        subs[flt] = c

    mids = {}
    for t in TOPICS:
        mids[t] = await pub.pub(t, {"topic": t})

    for flt, c in subs.items():
        want = [t for t in TOPICS if t in EXPECT[flt]]
        got = await c.msgs(len(want)) if want else []
        check_eq([m["topic"] for m in got], want,
                 "filter %r receives exactly %d matching topics, in order" % (flt, len(want)))
        for m in got:
            check_eq(m["mid"], mids[m["topic"]], "filter %r: mid of %s" % (flt, m["topic"]))
        await c.silence(0.1)
    check(True, "no filter receives a non-matching topic")

    # One connection, overlapping filters: one copy of each message.
    ov = await pt.connect(hub, pt.token_of("alice"), name="overlap")
    for flt in ("forum/#", "forum/+/heavy-duty", "forum/zev/heavy-duty", "#", "+/zev/#"):
        await ov.sub(flt)
    check(True, "one connection subscribed to 5 overlapping filters")
    for t in ("forum/zev/heavy-duty", "forum/bus/heavy-duty", "news/zev/heavy-duty"):
        mid = await pub.pub(t, "overlap")
        (m,) = await ov.msgs(1)
        check_eq(m["mid"], mid, "overlapping filters: %s delivered" % t)
        await ov.silence(0.25)
        check(True, "overlapping filters: %s delivered exactly once" % t)

    # Unsubscribing one of the overlapping filters keeps the others.
    await ov.ok("unsub", topic="#")
    await ov.ok("unsub", topic="forum/#")
    mid = await pub.pub("forum/zev/heavy-duty", "still")
    (m,) = await ov.msgs(1)
    check_eq(m["mid"], mid, "after removing two overlapping filters the others still deliver")
    await ov.silence(0.25)
    check(True, "... exactly once")
    await pub.pub("forum/other", "gone")
    await ov.silence(0.25)
    check(True, "a topic matched only by removed filters is no longer delivered")
    await ov.ok("unsub", topic="forum/+/heavy-duty")
    await ov.ok("unsub", topic="forum/zev/heavy-duty")
    await ov.ok("unsub", topic="+/zev/#")
    await pub.pub("forum/zev/heavy-duty", "none")
    await ov.silence(0.25)
    check(True, "nothing delivered once every filter is removed")

    # Non-ASCII topics and patterns.
    u = await pt.connect(hub, pt.token_of("alice"), name="unicode")
    await u.sub("forum/+/日本")
    await u.sub("forum/café/#")
    for t, want in (("forum/café/日本", True), ("forum/Café/日本", True), ("forum/café/x", True),
                    ("forum/cafe/x", False), ("forum/x/日本語", False)):
        mid = await pub.pub(t, t)
        if want:
            (m,) = await u.msgs(1)
            check(m["mid"] == mid and m["topic"] == t, "non-ASCII topic %r delivered to a matching filter" % t)
        else:
            await u.silence(0.15)
            check(True, "non-ASCII topic %r not delivered (no filter matches)" % t)
    await u.close()

    # Invalid patterns are refused.
    for bad in ("forum/#/x", "fo+rum", "forum/a#", "forum//x", "/forum", "forum/", "", "##",
                "forum/+x"):
        await ov.error("sub", "bad_request", topic=bad)
        check(True, "sub %r is bad_request" % bad)
    # A pattern is not a topic to publish to.
    for bad in ("forum/+", "forum/#", "#"):
        await pub.error("pub", "bad_request", topic=bad, body=1)
        check(True, "pub to pattern %r is bad_request" % bad)
    await ov.alive()
    await pub.alive()
    for c in [pub, ov] + list(subs.values()):
        await c.close()


pt.run(scenario)
