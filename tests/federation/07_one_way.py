#!/usr/bin/python3
"""07_one_way: a link that only one side can dial.

b.example can reach a.example, but a cannot reach b (a's URL for b leads
nowhere, as for a node behind NAT or a firewall that allows only
outgoing connections). b dials a and the link comes up. a is the
lower name, so by the duplicate rule it still tries once to replace b's
link with its own; that dial fails. a's /healthz must go on showing b
as up for as long as the link is up (a failed replacement dial changes
nothing), and messages must flow both ways over b's link."""
import time

import fedtest as ft
from fedtest import check, note

N = 50


async def scenario():
    certs = ft.Certs("a.example", "b.example")
    A, B = ft.Node("a.example", certs), ft.Node("b.example", certs)
    nowhere = "wss://127.0.0.1:%d/fed" % ft.pt.free_port()
    ft.link(A, B, url_ab=nowhere)
    mark = A.log_mark()
    await ft.start_all([A, B])

    # The redial a had pending when b's link came up: wait until it has
    # been tried and has failed, then watch a's view of b.
    def failed_after_up(evs):
        ups = [i for i, e in enumerate(evs) if ft.link_up(e, "b.example")]
        return ups and any(ft.dial_failed(e, "b.example") for e in evs[ups[0]:])

    t_end = time.monotonic() + 10.0
    while not failed_after_up(A.events(mark)):
        if time.monotonic() > t_end:
            check(False, "a dialled b after the link came up, and that dial failed, within 10 s")
        await ft.asyncio.sleep(0.05)
    check(True, "a dialled b after b's link came up, and that dial failed")
    seen, t_end = set(), time.monotonic() + 2.0
    while time.monotonic() < t_end:
        seen.add(A.peer_state("b.example"))
        await ft.asyncio.sleep(0.05)
    check(seen == {"up"}, "a's /healthz showed b only as up for 2 s after the failed dial (%s)"
          % sorted(map(str, seen)))
    note("a's peer entry for b: %r" % A.peer_states().get("b.example"))

    sub_a = await ft.subscriber(A, "forum/#", name="sub@a")
    sub_b = await ft.subscriber(B, "forum/#", name="sub@b")
    pa, pb = await ft.client(A), await ft.client(B)
    ab = await ft.burst(pa, "forum/ab", N, "ab")
    ba = await ft.burst(pb, "forum/ba", N, "ba")
    ft.check_once_in_order(await ft.collect(sub_b, ab, timeout=10), ab, "a -> b over b's link")
    ft.check_once_in_order(await ft.collect(sub_a, ba, timeout=10), ba, "b -> a over b's link")
    check(A.peer_state("b.example") == "up", "a still shows b up")
    for c in (sub_a, sub_b, pa, pb):
        await c.close()


if __name__ == "__main__":
    ft.run(scenario)
