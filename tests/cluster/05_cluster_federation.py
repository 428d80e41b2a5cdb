#!/usr/bin/python3
"""05_cluster_federation: a clustered node (two instances on one Redis)
federated over mTLS with a standalone node.

The clustered node "cluster.example" lists the standalone peer
"solo.example" in both instances' configs; the standalone node's peer url
points at instance 1. One instance of the cluster holds the federation
links (a Redis lock): /healthz federation.gateway is true on exactly one.

- A message published on the standalone node reaches subscribers on BOTH
  cluster instances exactly once, in order.
- Messages published on either cluster instance reach the standalone
  node's subscribers exactly once, in the cluster's order (the order its
  own subscribers see).
- The link-holding instance is SIGKILLed while the standalone node keeps
  publishing and the other instance publishes too: the other instance
  takes over the links (within ~20 s), and nothing is lost or duplicated,
  at the cluster's subscribers nor at the standalone node's.
"""
import asyncio
import os
import sys
import time

import clustertest as ct
from clustertest import check, check_eq, mids, note

sys.path.insert(0, os.path.join(ct.SOURCE_DIR, "tests", "federation"))
import fedtest as ft  # noqa: E402

CLUSTER = "cluster.example"
SOLO = "solo.example"
TAKEOVER_S = 20.0


def is_gateway(node):
    try:
        st, h = node.health()
    except OSError:
        return None
    fed = h.get("federation") or {}
    if "gateway" in fed:
        return bool(fed["gateway"])
    peers = {p.get("name"): p for p in fed.get("peers") or [] if isinstance(p, dict)}
    return (peers.get(SOLO) or {}).get("state") == "up"


async def wait_gateway(insts, timeout, exclude=()):
    """Waits until exactly one live instance is the gateway and its link
    to the standalone node is up; returns it."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        live = [i for i in insts if i.alive() and i not in exclude]
        gws = [i for i in live if is_gateway(i)]
        seen = [(i.iname, is_gateway(i), i.peer_states().get(SOLO, {}).get("state")) for i in live]
        if len(gws) == 1 and gws[0].peer_state(SOLO) == "up":
            return gws[0]
        await asyncio.sleep(0.1)
    raise ct.Failure("no single gateway with its link up within %.0f s: %r" % (timeout, seen))


async def scenario():
    if not os.path.exists(ft.GEN_CERTS):
        raise ct.Failure("%s not found (set PARLEY_SOURCE_DIR)" % ft.GEN_CERTS)
    ct.at_end(lambda: [fn() for fn in reversed(ft._CLEANUPS)])
    redis = ct.Redis().start()
    certs = ft.Certs(CLUSTER, SOLO)
    c1 = ft.Node(CLUSTER, certs, history=5000)
    c2 = ft.Node(CLUSTER, certs, history=5000)
    solo = ft.Node(SOLO, certs, history=5000)
    for k, c in enumerate((c1, c2)):
        c.config["redis"] = {"host": "127.0.0.1", "port": redis.port, "prefix": "fedcl"}
        c.iname = "c%d" % (k + 1)
        c.add_peer(SOLO, solo.fed_url())
    solo.iname = "solo"
    solo.add_peer(CLUSTER, c1.fed_url())
    for n in (c1, c2, solo):
        n.start()
    gw = await wait_gateway([c1, c2], 20)
    other = c2 if gw is c1 else c1
    await solo.wait_peers([CLUSTER], 10)
    check(True, "solo.example's link to cluster.example is up; %s holds the cluster's links "
          "(/healthz federation.gateway)" % gw.iname)
    check_eq(is_gateway(other), False, "%s is not the gateway" % other.iname)

    # Subscribers: two on each cluster instance, two on the standalone.
    subs_c = {}
    for inst in (c1, c2):
        for k in range(2):
            subs_c["%s-%d" % (inst.iname, k)] = await ft.subscriber(inst, "forum/#", name="sub-%s-%d" % (inst.iname, k))
    subs_s = [await ft.subscriber(solo, "forum/#", name="sub-solo-%d" % k) for k in range(2)]

    # 1. From the standalone node to both cluster instances.
    ps = await ft.client(solo, "alice", "pub-solo")
    m_s = await ft.burst(ps, "forum/s/a", 100, "s1")
    m_s += [ft.http_publish(solo, "forum/s/b", {"http": i}) for i in range(5)]
    for name, c in subs_c.items():
        fr = await ct.collect(c, m_s, timeout=15, quiet=0.3)
        ct.check_once_in_order(fr, m_s, "solo's 105 messages at %s" % c.name)
        check_eq(len(fr), len(m_s), "%s got nothing else" % c.name)
        check(all(f["origin"] == SOLO for f in fr), "%s: their origin is solo.example" % c.name)
    for c in subs_s:
        fr = await ct.collect(c, m_s, timeout=5, quiet=0.1)
        ct.check_once_in_order(fr, m_s, "solo's own subscriber %s" % c.name)

    # 2. From both cluster instances at once to the standalone node.
    p1 = await ft.client(c1, "alice", "pub-c1")
    p2 = await ft.client(c2, "bob", "pub-c2")
    m1, m2 = await asyncio.gather(ft.burst(p1, "forum/c/one", 100, "c1"),
                                  ft.burst(p2, "forum/c/two", 100, "c2"))
    ref = await ct.collect(subs_c["c1-0"], m1 + m2, timeout=15, quiet=0.3)
    cluster_order = [m for m in mids(ref) if m in set(m1 + m2)]
    for c in subs_s:
        fr = await ct.collect(c, m1 + m2, timeout=20, quiet=0.5)
        ct.check_no_duplicates(fr, c.name)
        ct.check_once_in_order(fr, m1, "c1's 100 messages at %s" % c.name)
        ct.check_once_in_order(fr, m2, "c2's 100 messages at %s" % c.name)
        check_eq([m for m in mids(fr) if m in set(m1 + m2)], cluster_order,
                 "%s sees the cluster's messages in the cluster's own order" % c.name)
        check(all(f["origin"] == CLUSTER for f in fr if f["mid"] in set(m1 + m2)),
              "%s: their origin is cluster.example" % c.name)
    for name, c in subs_c.items():
        fr = ref if name == "c1-0" else await ct.collect(c, m1 + m2, timeout=15, quiet=0.3)
        check_eq([m for m in mids(fr) if m in set(m1 + m2)], cluster_order,
                 "%s: the cluster's own 200 messages once, in one order (none came back from solo)" % c.name)
    for x in (p1, p2):
        await x.close()

    # 3. The gateway dies; solo and the surviving instance keep publishing.
    note("SIGKILL the gateway %s" % gw.iname)
    survivors = {n: c for n, c in subs_c.items() if n.startswith(other.iname)}
    for n, c in subs_c.items():
        if n not in survivors:
            await c.close()
    t_kill = time.monotonic()
    gw.crash()
    po = await ft.client(other, "bob", "pub-" + other.iname)
    sent_s, sent_o = [], []
    stop = asyncio.Event()

    async def solo_pub():
        i = 0
        while not stop.is_set():
            sent_s.append(await ps.pub("forum/fail/s", {"i": i}))
            i += 1
            await asyncio.sleep(0.02)

    async def other_pub():
        i = 0
        while not stop.is_set():
            sent_o.append(await po.pub("forum/fail/o", {"i": i}))
            i += 1
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(solo_pub()), asyncio.create_task(other_pub())]
    try:
        new_gw = await wait_gateway([other], TAKEOVER_S, exclude=(gw,))
        took = time.monotonic() - t_kill
        await solo.wait_peers([CLUSTER], 10)
        check(True, "%s took over the links %.1f s after the kill" % (new_gw.iname, took))
        await asyncio.sleep(1.0)  # Some traffic over the new link too.
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    note("published during the failover: %d on solo, %d on %s" % (len(sent_s), len(sent_o), other.iname))
    for n, c in survivors.items():
        fr = await ct.collect(c, sent_s + sent_o, timeout=20, quiet=0.5)
        ct.check_no_duplicates(fr, c.name)
        ct.check_once_in_order(fr, sent_s, "solo's %d failover messages at %s" % (len(sent_s), c.name))
        ct.check_once_in_order(fr, sent_o, "%s's own %d failover messages at %s" % (other.iname, len(sent_o), c.name))
    for c in subs_s:
        fr = await ct.collect(c, sent_s + sent_o, timeout=20, quiet=0.5)
        ct.check_no_duplicates(fr, c.name)
        ct.check_once_in_order(fr, sent_o, "%s's %d failover messages at %s" % (other.iname, len(sent_o), c.name))
        ct.check_once_in_order(fr, sent_s, "solo's own failover messages at %s" % c.name)

    # The killed instance comes back: it is not a second gateway, and its
    # subscribers get solo's messages through Redis.
    gw.restart()
    await asyncio.sleep(2.5)
    gws = [i.iname for i in (c1, c2) if is_gateway(i)]
    check_eq(gws, [other.iname], "after %s restarts, %s is still the only gateway" % (gw.iname, other.iname))
    back = await ft.subscriber(gw, "forum/#", name="sub-back-" + gw.iname)
    more = await ft.burst(ps, "forum/s/after", 20, "after")
    fr = await ct.collect(back, more, timeout=15, quiet=0.3)
    ct.check_once_in_order(fr, more, "solo's messages at the restarted %s" % gw.iname)
    for c in survivors.values():
        fr = await ct.collect(c, more, timeout=15, quiet=0.3)
        ct.check_once_in_order(fr, more, "solo's messages after the restart at %s" % c.name)
        check_eq(len(fr), len(more), "%s got nothing else" % c.name)
    for node in (c1, c2, solo):
        note("%s: fed dropped duplicate=%d loop=%d invalid=%d" % (
            node.iname, node.dropped(reason="duplicate"), node.dropped(reason="loop"),
            node.dropped(reason="invalid")))
    for c in list(survivors.values()) + subs_s + [ps, po, back]:
        await c.close()


if __name__ == "__main__":
    ct.run(scenario, timeout=85.0)
