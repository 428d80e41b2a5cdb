#!/usr/bin/python3
"""03_mtls: the federation's mutual-TLS rejection matrix, with the node as
server (fake peers dial it) and as client (it dials fake peer servers).
Refused: no client certificate, a certificate from another CA, an expired
one, a valid one whose identity is not a configured peer (also when only
its CN names a peer), a configured peer's certificate presented by another
node (its hello names someone else; a real node configured with another
node's certificate too), a server certificate that is not the dialled
peer's, TLS 1.1. Each refusal is logged (event=fed_refused). Accepted: a
correct certificate, and one that names the node in its CN only."""
import ssl
import time

import fedtest as ft
from fedtest import check, check_eq, note

TLS11 = ssl.TLSVersion.TLSv1_1


async def expect_refusal(node, what, attempt, name=None, timeout=5.0):
    """Runs attempt() (a coroutine returning an ft.fed_dial-like tuple or
    None), checks that it was refused (when it returns a result) and that
    node logged event=fed_refused (naming name, if given) after it."""
    mark = node.log_mark()
    res = await attempt()
    if res is not None:
        check(res[0] == "refused", "%s: refused (%s)" % (what, res[1] if res[0] == "refused" else "accepted!"))
        if res[0] == "ok":
            await res[1].close()
    try:
        e = await node.wait_event(lambda e: ft.refused(e, name), since=mark, timeout=timeout,
                                  what="event=fed_refused" + (" naming " + name if name else ""))
    except ft.Failure as err:
        check(False, "%s: %s" % (what, err))
        return None
    check(True, "%s: %s logged %s" % (what, node.name, e["_line"].split(" ", 2)[-1][:200]))
    return e


async def server_side(certs, B):
    """B is b.example with peers a.example and c.example; nothing it dials
    answers (c.example's URL is X's port, not started yet)."""

    def dial(cert, hello, **ctxkw):
        async def go():
            ctx = ft.client_context(certs, cert, **ctxkw)
            return await ft.fed_dial(B, ctx, hello=hello)
        return go

    await expect_refusal(B, "server: a peer without a client certificate", dial(None, "a.example"))
    await expect_refusal(B, "server: a certificate from another CA (same CA name)",
                         dial("a.example-other-ca", "a.example"))
    await expect_refusal(B, "server: an expired certificate", dial("a.example-expired", "a.example"))
    await expect_refusal(B, "server: a valid certificate of z.example, not a configured peer",
                         dial("z.example", "z.example"), name="z.example")
    await expect_refusal(B, "server: CN=a.example but SAN z.example (the SAN is the identity)",
                         dial("a.example-as-z.example", "a.example"), name="z.example")
    await expect_refusal(B, "server: a.example's certificate presented by a node whose hello says c.example",
                         dial("a.example", "c.example"))

    # TLS 1.1: refused by the node; the same client context completes a
    # TLS 1.1 handshake with a Python server that allows it (the control
    # that the client really offered TLS 1.1).
    ctx11 = ft.client_context(certs, "a.example", tls_max=TLS11, seclevel0=True)

    async def tls11():
        return ft.tls_handshake(B.fed_port, ctx11, "b.example")
    await expect_refusal(B, "server: TLS 1.1 (with a valid certificate)", tls11)
    fake11 = ft.FakePeer(ft.server_context(certs, "b.example", tls_max=TLS11), mode="tls_silent")
    res = ft.tls_handshake(fake11.port, ctx11, "b.example")
    check_eq(res, ("ok", "TLSv1.1"),
             "control: the same client completes TLS 1.1 with a TLS 1.1 server (it really offers 1.1)")
    fake11.close()
    st, _ = B.health()
    check_eq(st, 200, "b still serves after the refusals")
    states = B.peer_states()
    check(all(p.get("state") != "up" for p in states.values()),
          "no refused attempt brought a link up: %r" % {k: v.get("state") for k, v in states.items()})

    # Accepted: the right certificate and hello.
    res = await ft.fed_dial(B, ft.client_context(certs, "a.example"), hello="a.example")
    check(res[0] == "ok", "server: a.example with its own certificate is accepted (%s)"
          % (res[1] if res[0] == "refused" else "hello %r" % res[2]))
    if res[0] == "ok":
        check_eq(res[2].get("node"), "b.example", "b's hello names b.example")
        check("cursor" in res[2], "b's hello carries a cursor field")
        await B.wait_peers({"a.example": "up"}, timeout=5)
        check(True, "b's /healthz shows a.example up")
        await res[1].close()
        await B.wait_state("a.example", ("connecting", "backoff", "down", "refused"), timeout=10)
        check(True, "b's /healthz shows a.example no longer up once the fake peer left")
    res = await ft.fed_dial(B, ft.client_context(certs, "c.example-cn-only"), hello="c.example")
    check(res[0] == "ok", "server: a certificate naming c.example only in its CN (no SAN) is accepted (%s)"
          % (res[1] if res[0] == "refused" else "ok"))
    if res[0] == "ok":
        await res[1].close()



async def client_side(certs, A):
    """A (a.example) dials b.example at a fake peer server whose
    certificate and behaviour each case sets."""
    fb = A.fake_b
    cases = [
        ("client: the server's certificate is from another CA", "b.example-other-ca", None, "b.example"),
        ("client: the server's certificate is expired", "b.example-expired", None, "b.example"),
        ("client: the server presents c.example's certificate (a configured peer, not the one dialled)",
         "c.example", None, "c.example"),
        ("client: the server presents z.example's certificate (not a peer)", "z.example", None, "z.example"),
        ("client: the server's certificate has CN=b.example but SAN z.example", "b.example-as-z.example",
         None, "b.example"),
        ("client: the server offers only TLS 1.1", "b.example", TLS11, "b.example"),
        ("client: the right certificate, but the hello names c.example", "b.example", None, "c.example"),
    ]
    for what, cert, tls, hello_name in cases:
        fb.set(ctx=ft.server_context(certs, cert, tls_max=tls), mode="peer", name=hello_name)
        # The first connection served this way may overlap a refusal of
        # the previous case in the log: judge the one after it.
        n0 = len(fb.conns)
        await fb.wait_conns(n0 + 1, timeout=10)
        await fb.wait_for(lambda c: fb.conns.index(c) == n0 and c.t_closed is not None, timeout=10,
                          what="the end of the first connection of this case")
        n1 = len(fb.conns)

        async def attempt():
            await fb.wait_conns(n1 + 1, timeout=10)
            return None
        await expect_refusal(A, what, attempt, name="b.example", timeout=10)
        conn = fb.snapshot()[n1]
        note("  the fake server saw: %r" % conn)
        check(A.peer_state("b.example") != "up", "%s: a's link to b.example is not up" % what)
        if tls is not None:
            check(conn.tls != "ok", "%s: the TLS handshake failed at the server too (%s)" % (what, conn.tls))

    # The right certificate and hello: the link comes up.
    fb.set(ctx=ft.server_context(certs, "b.example"), mode="peer", name="b.example")
    await A.wait_peers({"b.example": "up"}, timeout=10)
    check(True, "client: with b.example's certificate and hello the link is up")
    c = await fb.wait_for(lambda c: c.hello is not None, what="a hello")
    subj = dict(x[0] for x in (c.peer_cert or {}).get("subject", ()))
    check_eq(subj.get("commonName"), "a.example", "a presented its own certificate (CN=a.example)")
    check_eq(c.request[0], "/fed", "a dialled the path /fed")
    check_eq(c.request[1].get("sec-websocket-protocol"), ft.FED_SUBPROTOCOL,
             "a offered the subprotocol parley.fed.v1")
    check_eq(c.hello.get("node"), "a.example", "a's hello names a.example")
    check(c.version in ("TLSv1.2", "TLSv1.3"), "the link uses TLS 1.2+ (%s)" % c.version)


async def scenario():
    certs = ft.Certs("a.example", "b.example", "c.example", "z.example",
                     "--expired", "a.example", "--expired", "b.example",
                     "--other-ca", "a.example", "--other-ca", "b.example",
                     "--cn-only", "c.example",
                     "--wrong-name", "a.example", "z.example",
                     "--wrong-name", "b.example", "z.example")
    # c.example running with a.example's certificate.
    X = ft.Node("c.example", certs, cert="a.example")
    closed_port = ft.pt.free_port()  # Nothing listens there.
    B = ft.Node("b.example", certs)
    B.add_peer("a.example", "wss://127.0.0.1:%d/fed" % closed_port)
    B.add_peer("c.example", X.fed_url())
    B.start()
    t0 = time.monotonic()
    await server_side(certs, B)
    note("server side took %.1f s" % (time.monotonic() - t0))

    fb = ft.FakePeer(ft.server_context(certs, "b.example-other-ca"), name="b.example")
    A = ft.Node("a.example", certs, fed={"backoff_min_ms": 50, "backoff_max_ms": 300})
    A.fake_b = fb
    A.add_peer("b.example", fb.url())
    A.add_peer("c.example", "wss://127.0.0.1:%d/fed" % closed_port)
    A.start()
    await client_side(certs, A)

    # A real node c.example running with a.example's certificate; b lists
    # c.example at X's address, and X lists b. As a client, b refuses X's
    # certificate (not c.example's); as a server, b refuses X's dial (the
    # certificate is a configured peer's, a.example, but the hello says
    # c.example).
    X.add_peer("b.example", B.fed_url())
    mark = B.log_mark()
    X.start()
    e = await B.wait_event(lambda e: ft.refused(e, "c.example") and e.get("direction") == "out",
                           since=mark, timeout=10,
                           what="fed_refused direction=out for c.example presenting a.example's certificate")
    check(True, "client: b dialling c.example refuses a.example's certificate: %s"
          % e["_line"].split(" ", 2)[-1][:200])
    e = await B.wait_event(lambda e: ft.refused(e, "c.example") and e.get("direction") != "out",
                           since=mark, timeout=10,
                           what="fed_refused for an inbound c.example with a.example's certificate")
    check(True, "server: a real c.example presenting a.example's certificate is refused by b: %s"
          % e["_line"].split(" ", 2)[-1][:200])
    seen = set()
    time_end = time.monotonic() + 2.0
    while time.monotonic() < time_end:
        seen.add((X.peer_state("b.example"), B.peer_state("c.example")))
        await ft.asyncio.sleep(0.1)
    check(all("up" not in pair for pair in seen),
          "the link between b and that c.example never came up in 2 s (states seen: %r)" % sorted(seen, key=str))

if __name__ == "__main__":
    ft.run(scenario)
