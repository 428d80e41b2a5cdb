#!/usr/bin/python3
"""05_dead_peer: a peer that stops talking is detected as dead within
federation.dead_after_ms and redialled, whatever stage it goes silent at:
a TCP listener that never answers, a server that completes TLS and never
speaks, one that completes the WebSocket upgrade and sends no hello, one
that says hello and then goes silent, and a real node frozen with
SIGSTOP. A peer that answers pings stays up. The node's log shows the
link closed and a new dial; /healthz goes back to connecting or backoff."""
import signal
import time

import fedtest as ft
from fedtest import check, check_eq, note

DEAD_MS = 1500
PING_MS = 500
BACKOFF_MAX_MS = 300
SLACK = 1.0  # Seconds allowed beyond dead_after + one ping interval.
BOUND = (DEAD_MS + PING_MS) / 1000.0 + SLACK
DOWN = ("connecting", "backoff", "down")


FED = {"dead_after_ms": DEAD_MS, "ping_interval_ms": PING_MS,
       "backoff_min_ms": 50, "backoff_max_ms": BACKOFF_MAX_MS}


async def silent_stage(certs, mode, what):
    """A node a.example whose peer b.example is a fake server in mode:
    checks that the node gives up on the connection within the bound,
    logs it, and dials again. Each stage has its own node and fake peer,
    so that one failure does not hide the next."""
    fp = ft.FakePeer(ft.server_context(certs, "b.example"), mode=mode, name="b.example")
    A = ft.Node("a.example", certs, fed=FED)
    A.add_peer("b.example", fp.url())
    A.start()
    if mode == "hello_then_silent":
        await A.wait_peers({"b.example": "up"}, timeout=10)
        check(True, "%s: the link came up first" % what)
        mark_up = A.log_mark()
    c = None
    try:
        c = await fp.wait_for(lambda c: c.t_closed is not None, timeout=15,
                              what="a connection that the node closed")
    except ft.Failure as err:
        check(False, "%s: %s (/healthz: %s)" % (what, err, A.peer_state("b.example")))
    if c is not None:
        last_rx = c.t_last_sent if c.t_last_sent is not None else c.t_accept
        took = c.t_closed - last_rx
        check(c.ended_by == "peer", "%s: the node closed the connection (%s)" % (what, c.ended_by))
        check(took <= BOUND, "%s: closed %.2f s after the node last received anything (bound %.1f s)"
              % (what, took, BOUND))
        if mode == "hello_then_silent":
            check(took >= DEAD_MS / 1000.0 - 0.2,
                  "%s: not closed before dead_after_ms (%.2f s >= %.1f s)" % (what, took, DEAD_MS / 1000.0))
            check(any(f.get("op") == "ping" for f in c.frames),
                  "%s: a pinged the silent peer (%d frames)" % (what, len(c.frames)))
        try:
            nxt = await fp.wait_for(lambda d: d.t_accept > c.t_closed, timeout=5,
                                    what="a new dial after the close")
            check(nxt.t_accept - c.t_closed <= BACKOFF_MAX_MS / 1000.0 + 1.0,
                  "%s: redialled %.2f s after the close" % (what, nxt.t_accept - c.t_closed))
        except ft.Failure as err:
            check(False, "%s: %s; /healthz says %r; log: %s" % (
                what, err, A.peer_state("b.example"), [e["event"] for e in A.events(0, "fed_")][-4:]))
        try:
            e = await A.wait_event(lambda e: ft.link_closed(e, "b.example") or ft.dial_failed(e, "b.example"),
                                   since=0, timeout=3, what="link closed or dial failed (b.example)")
            t_close = e["ts"]
            await A.wait_event(lambda e: ft.dialled(e, "b.example") and e["ts"] >= t_close, since=0,
                               timeout=3, what="a new dial of b.example")
            check(True, "%s: a's log shows the end (%s) and a new dial"
                  % (what, e["_line"].split(" ", 2)[-1][:120]))
        except ft.Failure as err:
            check(False, "%s: %s" % (what, err))
    st = A.peer_state("b.example")
    check(st in DOWN, "%s: /healthz shows b.example %r (not up)" % (what, st))
    if mode == "hello_then_silent":
        dead = [e["_line"] for e in A.events(mark_up) if ft.link_closed(e, "b.example")]
        check(dead, "%s: the close is logged (%s)" % (what, dead[:1]))
    A.stop()
    fp.close()


async def scenario():
    certs = ft.Certs("a.example", "b.example")
    for mode, what in (("tcp_silent", "TCP accepted, never answered"),
                       ("tls_silent", "TLS completed, then silence"),
                       ("ws_silent", "WebSocket upgrade answered, no hello"),
                       ("hello_then_silent", "hello, then silence")):
        await silent_stage(certs, mode, what)

    # Control: a peer that answers pings stays up, on one connection.
    fp = ft.FakePeer(ft.server_context(certs, "b.example"), mode="peer", name="b.example")
    A = ft.Node("a.example", certs, fed=FED)
    A.add_peer("b.example", fp.url())
    A.start()
    await A.wait_peers({"b.example": "up"}, timeout=10)
    live = await fp.wait_for(lambda c: c.hello is not None and c.t_closed is None, what="a live connection")
    n0 = len(fp.conns)
    mark = A.log_mark()
    t_end = time.monotonic() + 3 * DEAD_MS / 1000.0
    states = set()
    while time.monotonic() < t_end:
        states.add(A.peer_state("b.example"))
        await ft.asyncio.sleep(0.1)
    check_eq(states, {"up"}, "control: a peer answering pings stays up for 3 x dead_after_ms")
    check(live.t_closed is None and len(fp.conns) == n0, "control: ... on the same connection")
    pings = [f for f in live.frames if f.get("op") == "ping"]
    check(len(pings) >= 4, "control: a pinged about every ping_interval_ms (%d pings in %.1f s)"
          % (len(pings), time.monotonic() - live.t_accept))
    check_eq([e["_line"] for e in A.events(mark) if ft.link_closed(e, "b.example")], [],
             "control: no link close was logged meanwhile")
    A.stop()
    fp.close()

    # A real node frozen with SIGSTOP (its kernel still ACKs TCP).
    A, B = ft.Node("a.example", certs, fed=FED), ft.Node("b.example", certs, fed=FED)
    ft.link(A, B)
    await ft.start_all([A, B])
    sub_b = await ft.subscriber(B, "forum/#", name="sub@b")
    pa = await ft.client(A)
    warm = await pa.pub("forum/warm", "before the freeze")
    await ft.collect(sub_b, [warm], timeout=10, quiet=0.1)
    mark = A.log_mark()
    B.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        await A.wait_state("b.example", DOWN, timeout=BOUND + 3)
        took = time.monotonic() - t0
        check(took <= BOUND + 0.5, "SIGSTOPped node: a saw it dead in %.2f s (bound %.1f s)" % (took, BOUND))
        await A.wait_event(lambda e: ft.link_closed(e, "b.example"), since=mark, timeout=3,
                           what="link closed after SIGSTOP")
        mids = await ft.burst(pa, "forum/frozen", 50, "frozen")
    finally:
        B.signal(signal.SIGCONT)
    await A.wait_peers({"b.example": "up"}, timeout=15)
    check(True, "after SIGCONT the link is up again")
    frames = await ft.collect(sub_b, mids, timeout=15, quiet=1.0)
    ft.check_once_in_order(frames, mids, "messages published while b was frozen, on b")
    note("b's fed events: %s" % [e["event"] for e in B.events(0, "fed_")][-8:])
    for c in (sub_b, pa):
        await c.close()


if __name__ == "__main__":
    ft.run(scenario)
