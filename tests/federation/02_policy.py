#!/usr/bin/python3
"""02_policy: what flows between peers is what their export and import
patterns say. A topic outside a's export for b is never sent to b; a topic
b sends outside a's import is dropped and counted
(parley_fed_dropped_total{peer="b.example",reason="import"}) and never
delivered or stored on a; a peer with "relay": false may only send what it
originated (reason="relay")."""
import fedtest as ft
from fedtest import check, check_eq


async def scenario():
    certs = ft.Certs("a.example", "b.example", "c.example")
    A, B, C = (ft.Node(n, certs) for n in ("a.example", "b.example", "c.example"))
    # a -> b: only forum/public/#; a accepts from b: forum/public/# and forum/fromb/#.
    # b sends a everything and takes everything.
    ft.link(A, B, export_ab=["forum/public/#"], import_ab=["forum/public/#", "forum/fromb/#"],
            export_ba=["#"], import_ba=["#"])
    # b - c (a chain a - b - c): c takes everything from b but only what b
    # originated (relay false).
    ft.link(B, C, export_ab=["#"], import_ab=["#"], export_ba=["#"], import_ba=["#"], relay_ba=False)
    await ft.start_all([A, B, C])

    sub_a = await ft.subscriber(A, "#", name="sub@a")
    sub_b = await ft.subscriber(B, "#", name="sub@b")
    sub_c = await ft.subscriber(C, "#", name="sub@c")
    pa = await ft.client(A)
    pb = await ft.client(B)

    # ---- export: a never sends b a topic outside its export.
    secret = await pa.pub("forum/secret/x", "not for b")
    other_top = await pa.pub("internal/y", "not for b either")
    marker = await pa.pub("forum/public/m1", "for b")
    frames = await ft.collect(sub_b, [marker], timeout=10, quiet=1.0)
    mids = [f["mid"] for f in frames]
    check(marker in mids, "b got a's forum/public/m1 (inside a's export)")
    check(secret not in mids and other_top not in mids,
          "b never got forum/secret/x nor internal/y (outside a's export)")
    check_eq(ft.history(B, "forum/secret/x"), [], "b's history of forum/secret/x is empty")
    check_eq(ft.history(B, "internal/y"), [], "b's history of internal/y is empty")
    check_eq(B.dropped(peer="a.example"), 0,
             "b dropped nothing from a: the topics were never sent (not dropped on arrival)")
    frames = await ft.collect(sub_a, [secret, other_top, marker], timeout=5, quiet=0.2)
    check_eq(len(frames), 3, "a's own subscriber got all three (policy is only about peers)")

    # ---- import: a drops what b sends outside a's import, and counts it.
    before = A.dropped(peer="b.example", reason="import")
    bad1 = await pb.pub("forum/other/y", "a does not import this")
    bad2 = await pb.pub("private/z", "nor this")
    good = await pb.pub("forum/fromb/ok", "a imports this")
    frames = await ft.collect(sub_a, [good], timeout=10, quiet=1.0)
    mids = [f["mid"] for f in frames]
    check(good in mids, "a got b's forum/fromb/ok (inside a's import)")
    check(bad1 not in mids and bad2 not in mids,
          "a never delivered b's forum/other/y nor private/z (outside a's import)")
    check_eq(ft.history(A, "forum/other/y"), [], "a's history of forum/other/y is empty")
    check_eq(ft.history(A, "private/z"), [], "a's history of private/z is empty")
    after = A.dropped(peer="b.example", reason="import")
    check(after - before >= 2,
          'parley_fed_dropped_total{peer="b.example",reason="import"} on a rose by >= 2 (%g -> %g)'
          % (before, after))
    st, _, text = A.get("/metrics")
    check('parley_fed_dropped_total{' in text.decode() and 'reason="import"' in text.decode(),
          "a's /metrics shows the import drop series")

    # The import-dropped messages are fine elsewhere: b's own subscriber
    # and c (b exports everything to c) have them.
    frames = await ft.collect(sub_c, [bad1, bad2, good], timeout=10, quiet=0.5)
    check_eq(sorted(f["mid"] for f in frames if f["mid"] in (bad1, bad2, good)), sorted([bad1, bad2, good]),
             "c got b's three messages (b exports # to c)")

    # ---- relay false: c refuses what b relays from a, takes b's own.
    before = C.dropped(peer="b.example", reason="relay")
    relayed = await pa.pub("forum/public/relay", "a -> b -> c?")
    frames = await ft.collect(sub_b, [relayed], timeout=10, quiet=0.2)
    check(any(f["mid"] == relayed for f in frames), "b got a's forum/public/relay")
    own = await pb.pub("forum/fromb/own", "b's own, after the relayed one")
    frames = await ft.collect(sub_c, [own], timeout=10, quiet=1.0)
    mids = [f["mid"] for f in frames]
    check(own in mids, "c got b's own message")
    check(relayed not in mids, "c never delivered the message b relayed from a (relay false)")
    check_eq(ft.history(C, "forum/public/relay"), [], "c's history of the relayed topic is empty")
    after = C.dropped(peer="b.example", reason="relay")
    check(after - before >= 1,
          'parley_fed_dropped_total{peer="b.example",reason="relay"} on c rose (%g -> %g)' % (before, after))

    # Nothing from b outside a's import reached a's subscriber, ever.
    rest = await ft.collect(sub_a, [], timeout=1, quiet=0.5)
    leaked = [f for f in rest if f["origin"] != "a.example"
              and not (f["topic"].startswith("forum/public/") or f["topic"].startswith("forum/fromb/"))]
    check_eq(leaked, [], "a's subscriber got nothing from b outside a's import")
    for n in (A, B, C):
        await n.wait_peers([p["name"] for p in n.fed["peers"]], timeout=2)
    check(True, "every link stayed up (a policy drop does not break a link)")
    for c in (sub_a, sub_b, sub_c, pa, pb):
        await c.close()


if __name__ == "__main__":
    ft.run(scenario)
