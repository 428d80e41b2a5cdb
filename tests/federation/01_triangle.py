#!/usr/bin/python3
"""01_triangle: three nodes federated in a triangle (a cycle). A message
published on any node reaches the subscribers of every node exactly once,
with the same mid, origin, ts, from and body; per-origin order holds for a
burst of 1,000 messages, and for bursts from two nodes at once."""
import asyncio

import fedtest as ft
from fedtest import check, check_eq, note

N_BURST = 1000


def check_copies(copies, origin, user, what):
    """copies: {node name: msg frame} of one message on every node."""
    ref = copies[origin.name]
    check_eq(ref["origin"], origin.name, "%s: origin is %s" % (what, origin.name))
    check_eq(ref["from"], "%s@%s" % (user, origin.name), "%s: from is %s@%s" % (what, user, origin.name))
    for name, m in copies.items():
        if name == origin.name:
            continue
        diff = [k for k in ft.SAME_FIELDS if m.get(k) != ref.get(k) or type(m.get(k)) is not type(ref.get(k))]
        check(not diff, "%s: the copy on %s has the origin's topic, mid, origin, from, ts and body%s"
              % (what, name, " (differs: %s)" % diff if diff else ""))


async def scenario():
    certs = ft.Certs("a.example", "b.example", "c.example")
    nodes = [ft.Node(n, certs) for n in ("a.example", "b.example", "c.example")]
    A, B, C = nodes
    ft.mesh(nodes)
    await ft.start_all(nodes)

    subs = {}
    for n in nodes:
        subs[n.name] = await ft.subscriber(n, "forum/#", name="sub@" + n.name)

    # One message from each node, each published another way.
    pa = await ft.client(A, "alice")
    pc = await ft.client(C, "alice")
    body_a = {"text": "hello from a", "unicode": "héllo 世界 🚀", "n": [1, 2.5, None, True]}
    mid_a = await pa.pub("forum/tri/a", body_a)
    mid_b = ft.http_publish(B, "forum/tri/b", "from b over POST /v1/publish", user="bob")
    mid_c = await pc.pub("forum/tri/c", ["from c", {"deep": {"x": -1}}])
    check_eq(len({mid_a, mid_b, mid_c}), 3, "three distinct mids")

    got = {}
    for n in nodes:
        frames = await ft.collect(subs[n.name], [mid_a, mid_b, mid_c], timeout=15, quiet=1.0)
        ft.check_no_duplicates(frames, "subscriber on %s" % n.name)
        check_eq(sorted(f["mid"] for f in frames), sorted([mid_a, mid_b, mid_c]),
                 "subscriber on %s got exactly the three messages" % n.name)
        got[n.name] = {f["mid"]: f for f in frames}
    check_copies({k: v[mid_a] for k, v in got.items()}, A, "alice", "message of a (parley.v1)")
    check_copies({k: v[mid_b] for k, v in got.items()}, B, "bob", "message of b (HTTP)")
    check_copies({k: v[mid_c] for k, v in got.items()}, C, "alice", "message of c (parley.v1)")
    check_eq(got["c.example"][mid_a]["body"], body_a, "the body of a's message is intact on c")

    # The copies are stored too: history on c has a's message.
    items = ft.history(C, "forum/tri/a", 10)
    check(any(m.get("mid") == mid_a and ft.same_message(m, got["c.example"][mid_a]) for m in items),
          "GET /v1/history on c holds a's message, same fields")

    # A burst of 1,000 from a.
    mids = await ft.burst(pa, "forum/burst/a", N_BURST, "a")
    check_eq(len(set(mids)), N_BURST, "a accepted %d messages with distinct mids" % N_BURST)
    for n in nodes:
        frames = await ft.collect(subs[n.name], mids, timeout=30, quiet=1.0)
        ft.check_once_in_order(frames, mids, "burst of a on %s" % n.name)
        ft.check_no_duplicates(frames, "subscriber on %s" % n.name)
        if n is not A:
            seqs = [f["body"]["seq"] for f in frames if f["mid"] in set(mids)]
            check_eq(seqs, list(range(N_BURST)), "burst of a on %s: bodies in publish order" % n.name)

    # Bursts from a and b at the same time.
    pb = await ft.client(B, "bob")
    mids_a, mids_b = await asyncio.gather(ft.burst(pa, "forum/burst/ab", N_BURST, "a2"),
                                          ft.burst(pb, "forum/burst/ab", N_BURST, "b2"))
    for n in nodes:
        frames = await ft.collect(subs[n.name], mids_a + mids_b, timeout=30, quiet=1.0)
        ft.check_no_duplicates(frames, "two bursts on %s" % n.name)
        ft.check_once_in_order(frames, mids_a, "concurrent burst of a on %s" % n.name)
        ft.check_once_in_order(frames, mids_b, "concurrent burst of b on %s" % n.name)

    # Every link is still up, nothing was lost or looped.
    for n in nodes:
        await n.wait_peers([p["name"] for p in n.fed["peers"]], timeout=2)
    check(True, "every link is still up after the bursts")
    for n in nodes:
        note("%s: parley_fed_dropped_total duplicate=%d loop=%d" % (
            n.name, n.dropped(reason="duplicate"), n.dropped(reason="loop")))
        check_eq(n.dropped(reason="invalid"), 0, "%s dropped no invalid message" % n.name)

    for c in list(subs.values()) + [pa, pb, pc]:
        await c.close()


if __name__ == "__main__":
    ft.run(scenario)
