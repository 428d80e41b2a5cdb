#!/usr/bin/python3
"""04_outage: links survive outages without loss or duplicates.

1. b is killed (SIGKILL); a accepts N=200 messages meanwhile; b restarts
   with the same config and state file: all N reach b's subscribers once,
   in order, and nothing that b already had arrives again.
2. The a-b link runs through loopback TCP proxies that are cut (every
   connection reset, nothing listening) while both sides publish, then
   healed: everything arrives once, in order, both ways.
3. The same with a black hole (the proxies keep the connections open but
   forward nothing, like a partition without FIN or RST): the dead link is
   detected (federation.dead_after_ms) and nothing is lost."""
import os
import time

import fedtest as ft
from fedtest import check, check_eq, note

N = 200
DOWN = ("connecting", "backoff", "down", "refused")


async def killed_peer(certs):
    A, B = ft.Node("a.example", certs), ft.Node("b.example", certs)
    ft.link(A, B)
    await ft.start_all([A, B])
    sub_a = await ft.subscriber(A, "forum/#", name="sub@a")
    sub_b = await ft.subscriber(B, "forum/#", name="sub@b")
    pa = await ft.client(A)

    warm = await ft.burst(pa, "forum/warm", 20, "warm")
    ft.check_once_in_order(await ft.collect(sub_b, warm, timeout=10), warm, "warm-up a->b on b")
    # The state file is written every second: let b save its cursor.
    await ft.asyncio.sleep(2.5)
    check(os.path.exists(B.fed["state_file"]), "b wrote its state file %s" % B.fed["state_file"])

    B.crash()
    check(True, "b killed with SIGKILL")
    await A.wait_state("b.example", DOWN, timeout=10)
    check(True, "a's /healthz shows b.example not up")
    out = await ft.burst(pa, "forum/outage", N, "out")
    check_eq(len(out), N, "a accepted %d messages while b was down" % N)

    B.restart()
    check(True, "b restarted with the same config and state file")
    # A subscriber with last= sees what b stored since the restart, then
    # live: the replay cannot slip between the two.
    sub_b2 = await ft.subscriber(B, "forum/#", name="sub2@b", last=5000)
    await A.wait_peers(["b.example"], timeout=15)
    await B.wait_peers(["a.example"], timeout=15)
    check(True, "the a-b link is up again")
    frames = await ft.collect(sub_b2, out, timeout=20, quiet=1.0)
    ft.check_once_in_order(frames, out, "the %d messages of the outage on b" % N)
    again = [f["mid"] for f in frames if f["mid"] in set(warm)]
    check_eq(again, [], "b did not receive again what it had before the crash (its cursor was saved)")
    ft.check_no_duplicates(frames, "b after the restart")
    # Both nodes read batch frames, so the replay went as batches.
    sent = A.metric("parley_fed_batches_out_total", peer="b.example")
    got = B.metric("parley_fed_batches_in_total", peer="a.example")
    check(got >= 1 and sent >= got,
          "the replay went in batch frames (a wrote %d, b read %d since its restart)" % (sent, got))
    hist = [m["mid"] for m in ft.history(B, "forum/outage", 1000)]
    check_eq(hist, out, "b's history of forum/outage is the %d messages once, in order" % N)

    # And b -> a still works, once.
    pb = await ft.client(B)
    back = await ft.burst(pb, "forum/back", 10, "back")
    frames = await ft.collect(sub_a, back, timeout=10, quiet=1.0)
    ft.check_once_in_order(frames, back, "b -> a after the restart")
    ft.check_no_duplicates(frames, "a's subscriber over the whole outage")
    check_eq(len([f for f in frames if f["mid"] in set(warm + out)]), 20 + N,
             "a's own subscriber saw its own %d messages once each" % (20 + N))
    for c in (sub_a, sub_b, sub_b2, pa, pb):
        await c.close()
    A.stop()
    B.stop()


async def cut_link(certs):
    fed = {"ping_interval_ms": 500, "dead_after_ms": 2000}
    A, B = ft.Node("a.example", certs, fed=fed), ft.Node("b.example", certs, fed=fed)
    p_ab = ft.Proxy(B.fed_port)   # a dials b through this one
    p_ba = ft.Proxy(A.fed_port)   # b dials a through this one
    ft.link(A, B, url_ab=p_ab.url(), url_ba=p_ba.url())
    await ft.start_all([A, B])
    check(p_ab.accepted + p_ba.accepted >= 1, "the link runs through the proxies")
    sub_a = await ft.subscriber(A, "forum/#", name="sub@a")
    sub_b = await ft.subscriber(B, "forum/#", name="sub@b")
    pa, pb = await ft.client(A), await ft.client(B)
    warm = await ft.burst(pa, "forum/warm", 10, "warm")
    ft.check_once_in_order(await ft.collect(sub_b, warm, timeout=10), warm, "warm-up through the proxy")

    # -- cut: connections reset, nothing listening.
    p_ab.cut()
    p_ba.cut()
    await A.wait_state("b.example", DOWN, timeout=10)
    await B.wait_state("a.example", DOWN, timeout=10)
    check(True, "proxies cut: both sides see the link down")
    out_a = await ft.burst(pa, "forum/cut/a", N, "cut-a")
    out_b = await ft.burst(pb, "forum/cut/b", 50, "cut-b")
    await ft.asyncio.sleep(0.5)
    before = p_ab.accepted + p_ba.accepted
    p_ab.heal()
    p_ba.heal()
    await A.wait_peers(["b.example"], timeout=15)
    await B.wait_peers(["a.example"], timeout=15)
    check(p_ab.accepted + p_ba.accepted > before, "proxies healed: the link is up again through them")
    fb = await ft.collect(sub_b, out_a, timeout=20, quiet=1.0)
    ft.check_once_in_order(fb, out_a, "a's %d messages from the cut, on b" % N)
    fa = await ft.collect(sub_a, out_b, timeout=20, quiet=1.0)
    ft.check_once_in_order(fa, out_b, "b's 50 messages from the cut, on a")
    check_eq([f["mid"] for f in fb if f["mid"] in set(warm)], [], "nothing from before the cut came again")

    # -- black hole: connections stay open, nothing passes.
    t0 = time.monotonic()
    p_ab.blackhole()
    p_ba.blackhole()
    await A.wait_state("b.example", DOWN, timeout=10)
    await B.wait_state("a.example", DOWN, timeout=10)
    took = time.monotonic() - t0
    check(took < 2.0 + 0.5 + 2.0,
          "black hole: the dead link was detected in %.1f s (dead_after_ms 2000, ping 500)" % took)
    out_a2 = await ft.burst(pa, "forum/hole/a", N, "hole-a")
    p_ab.heal()
    p_ba.heal()
    await A.wait_peers(["b.example"], timeout=15)
    await B.wait_peers(["a.example"], timeout=15)
    check(True, "healed: the link is up again")
    fb2 = await ft.collect(sub_b, out_a2, timeout=20, quiet=1.0)
    ft.check_once_in_order(fb2, out_a2, "a's %d messages from the black hole, on b" % N)
    ft.check_no_duplicates(fb + fb2, "b's subscriber over both outages")
    ft.check_no_duplicates(fa + await ft.collect(sub_a, [], timeout=1, quiet=0.5),
                           "a's subscriber over both outages")
    note("gaps counted: a=%g b=%g" % (A.metric("parley_fed_gaps_total"), B.metric("parley_fed_gaps_total")))
    check_eq(A.metric("parley_fed_gaps_total") + B.metric("parley_fed_gaps_total"), 0,
             "no gap was reported (nothing was trimmed from history)")
    for c in (sub_a, sub_b, pa, pb):
        await c.close()


async def scenario():
    certs = ft.Certs("a.example", "b.example")
    t0 = time.monotonic()
    await killed_peer(certs)
    note("part 1 took %.1f s" % (time.monotonic() - t0))
    t0 = time.monotonic()
    await cut_link(certs)
    note("parts 2 and 3 took %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    ft.run(scenario)
