#!/usr/bin/python3
"""06_reload: SIGHUP changes federation.peers without dropping the links
that stay. One reload of a removes peer c (its link closes and its redials
are refused), adds peer d (the link comes up) and narrows b's export; the
a-b link keeps its very TCP connection (it runs through counting proxies)
and messages keep flowing both ways across the reload. A second reload
changes b's url: a redials b there, without loss."""
import asyncio
import time

import fedtest as ft
from fedtest import check, check_eq, note


async def stream(c, topic, n, tag, pause=0.01):
    """Publishes n messages one by one with a pause; returns the mids."""
    mids = []
    for i in range(n):
        mids.append(await c.pub(topic, {"tag": tag, "seq": i}))
        await asyncio.sleep(pause)
    return mids


async def scenario():
    certs = ft.Certs("a.example", "b.example", "c.example", "d.example")
    A, B, C, D = (ft.Node(n, certs) for n in ("a.example", "b.example", "c.example", "d.example"))
    p_ab = ft.Proxy(B.fed_port)   # a dials b through this
    p_ba = ft.Proxy(A.fed_port)   # b dials a through this
    ft.link(A, B, url_ab=p_ab.url(), url_ba=p_ba.url())
    ft.link(A, C)
    # d lists a, but a does not list d yet: d's dials are refused.
    D.add_peer("a.example", A.fed_url())
    for n in (A, B, C):
        n.start()
    D.start()
    await A.wait_peers(["b.example", "c.example"])
    await B.wait_peers(["a.example"])
    await C.wait_peers(["a.example"])
    check(D.peer_state("a.example") != "up", "d's link to a is not up while a does not list d")
    check(True, "a is linked with b (through proxies) and c")

    subs = {n.name: await ft.subscriber(n, "forum/#", name="sub@" + n.name) for n in (A, B, C, D)}
    pa, pb = await ft.client(A), await ft.client(B)
    m0 = await pa.pub("forum/x", "before the reload")
    for n in ("b.example", "c.example"):
        await ft.collect(subs[n], [m0], timeout=10, quiet=0.1)
    check(True, "before the reload, b and c get a's forum/x")

    # ---- reload 1: remove c, add d, narrow b's export.
    conns_before = (p_ab.accepted + p_ba.accepted, p_ab.closed + p_ba.closed)
    open_before = p_ab.open_count() + p_ba.open_count()
    mark_a, mark_b = A.log_mark(), B.log_mark()
    flow = asyncio.ensure_future(stream(pb, "forum/flow", 150, "flow"))
    await asyncio.sleep(0.3)
    A.remove_peer("c.example")
    A.add_peer("d.example", D.fed_url())
    A.peer_entry("b.example")["export"] = ["forum/b-only/#"]
    A.reload_config()
    await A.wait_event(lambda e: e["event"] == "reloaded", since=mark_a, timeout=5, what="event=reloaded")
    check(True, "a reloaded its config (SIGHUP)")

    await A.wait_peers({"d.example": "up", "c.example": None}, timeout=10)
    check(True, "a's /healthz: d.example up, c.example gone")
    await D.wait_peers(["a.example"], timeout=10)
    check(True, "d's link to a is up")
    st = await C.wait_state("a.example", ("connecting", "backoff", "down", "refused"), timeout=10)
    check(True, "c's link to a closed (c sees %s)" % st)
    e = await A.wait_event(lambda e: ft.refused(e, "c.example"), since=mark_a, timeout=10,
                           what="fed_refused for the removed peer c.example")
    check(True, "a refuses c's redial: %s" % e["_line"].split(" ", 2)[-1][:160])

    flow_mids = await flow
    frames = await ft.collect(subs["a.example"], flow_mids, timeout=15, quiet=0.5)
    ft.check_once_in_order(frames, flow_mids, "b's messages published across the reload, on a")

    # The a-b link is the same connection.
    conns_after = (p_ab.accepted + p_ba.accepted, p_ab.closed + p_ba.closed)
    check_eq(conns_after, conns_before, "no TCP connection of the a-b link was opened or closed (accepted, closed)")
    check_eq(p_ab.open_count() + p_ba.open_count(), open_before, "the a-b link's connection is still open")
    check(B.peer_state("a.example") == "up" and A.peer_state("b.example") == "up", "a-b is up on both sides")
    for node, mark in ((A, mark_a), (B, mark_b)):
        other = "b.example" if node is A else "a.example"
        bad = [e["_line"] for e in node.events(mark) if ft.link_closed(e, other) or ft.dialled(e, other)]
        check_eq(bad, [], "%s's log shows no close or dial of %s since the reload" % (node.name, other))

    # b's export is narrower now; d gets everything; c nothing.
    x2 = await pa.pub("forum/x2", "b no longer gets this")
    y = await pa.pub("forum/b-only/y", "b gets this")
    fb = await ft.collect(subs["b.example"], [y], timeout=10, quiet=1.0)
    check(y in [f["mid"] for f in fb], "b gets forum/b-only/y (inside its new export)")
    check(x2 not in [f["mid"] for f in fb], "b does not get forum/x2 (outside its new export)")
    fd = await ft.collect(subs["d.example"], [x2, y], timeout=10, quiet=0.2)
    check_eq([f["mid"] for f in fd if f["mid"] in (x2, y)], [x2, y], "d (the new peer) gets both, in order")
    fc = await ft.collect(subs["c.example"], [], timeout=1, quiet=1.0)
    check(not any(f["mid"] in (x2, y) for f in fc), "c (removed) gets neither")

    # ---- reload 2: b's url changes (direct, not through the proxy).
    mark_a = A.log_mark()
    flow = asyncio.ensure_future(stream(pb, "forum/flow2", 100, "flow2"))
    await asyncio.sleep(0.2)
    A.peer_entry("b.example")["url"] = B.fed_url()
    A.reload_config()
    await A.wait_event(lambda e: e["event"] == "reloaded", since=mark_a, timeout=5, what="event=reloaded")
    await A.wait_event(lambda e: ft.dialled(e, "b.example"), since=mark_a, timeout=10,
                       what="a dial of b.example at its new url")
    check(True, "a changed url: a dials b.example again")
    await A.wait_peers(["b.example", "d.example"], timeout=10)
    await B.wait_peers(["a.example"], timeout=10)
    deadline = time.monotonic() + 10
    while p_ab.open_count() + p_ba.open_count() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    check_eq(p_ab.open_count() + p_ba.open_count(), 0,
             "the link no longer runs through the proxies (the new url is used; one link survives)")
    flow_mids = await flow
    frames = await ft.collect(subs["a.example"], flow_mids, timeout=15, quiet=0.5)
    ft.check_once_in_order(frames, flow_mids, "b's messages published across the url change, on a")
    z = await pa.pub("forum/b-only/z", "after the url change")
    fb = await ft.collect(subs["b.example"], [z], timeout=10, quiet=0.5)
    ft.check_no_duplicates(fb, "b's subscriber")
    check(True, "a -> b flows on the new link")
    note("a's fed events: %s" % [e["event"] for e in A.events(0, "fed_")][-12:])
    for c in list(subs.values()) + [pa, pb]:
        await c.close()


if __name__ == "__main__":
    ft.run(scenario)
