#!/usr/bin/python3
"""04_batch_peer: batch frames ({"op":"batch","msgs":[...]}) on a
federation link, both ways, against a raw peer (hostiletest.FedRaw) with
valid certificates.

a.example's peers: b.example and d.example, both played by the raw
client; their URLs point at a closed port, so the raw links are the links.

Sending: a peer whose hello does not say "batch": true gets one msg frame
per message; one that does gets batch frames when messages queue up
together, holding every message once and in order, counted in
parley_fed_batches_out_total.

Receiving: batches in parleyd's own layout and in other layouts are read
element by element, each as if it came alone: a forged, duplicate or
malformed element is dropped and counted (parley_fed_dropped_total) while
the others are delivered; a batch broken part way keeps what came before
the break and counts the break; a batch before hello is ignored. A local
subscriber must get exactly the accepted messages, each once."""
import asyncio
import json
import os
import time

import hostiletest as ht  # First: puts the other suites' harnesses on sys.path.
import fedtest as ft
import parleytest as pt
from parleytest import Failure, check

A_NAME = "a.example"
T = ht.Results("04_batch_peer: batch frames to and from a raw peer, and what a.example did")
RUN = os.urandom(3).hex()
LAYOUT = ("op", "topic", "mid", "origin", "from", "ts", "cursor", "body", "path")


def layout(m):
    """m as parleyd writes a msg: its members in that order, no spaces."""
    return json.dumps({k: m[k] for k in LAYOUT}, separators=(",", ":"))


def batch(elems, compact=True):
    """A batch frame of elems (dicts written in the layout, or text as
    is); compact=False writes the envelope and elements with spaces."""
    if compact:
        return '{"op":"batch","msgs":[%s]}' % ",".join(
            e if isinstance(e, str) else layout(e) for e in elems)
    return '{ "msgs": [ %s ], "op": "batch" }' % " , ".join(
        e if isinstance(e, str) else json.dumps(e) for e in elems)


def received(link):
    """(msg frames in arrival order, batch frames seen) from a raw link."""
    msgs, batches = [], 0
    for f in link.frames:
        if not isinstance(f, dict):
            continue
        if f.get("op") == "msg":
            msgs.append(f)
        elif f.get("op") == "batch":
            batches += 1
            msgs.extend(x for x in f.get("msgs", []) if isinstance(x, dict))
    return msgs, batches


async def wait_msgs(link, mids, timeout=20.0):
    want = set(mids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, _ = received(link)
        if want.issubset({m.get("mid") for m in got}):
            return True
        await asyncio.sleep(0.05)
    return False


async def sending_cases(A, certs):
    """What a.example sends to a peer that reads batches and to one that
    does not."""
    pub = await pt.connect(A, pt.token_of("alice"), name="pub@a")
    for cert, hello, want_batches in (("b.example", {}, False), ("d.example", {"batch": True}, True)):
        link = await ht.dial(A, certs, cert)
        await link.send(dict({"op": "hello", "node": cert, "cursor": None}, **hello))
        if await link.frame("live", 5.0) is None:
            raise Failure("%s: no hello/live (closed %r)" % (cert, link.closed))
        # The replay of what the node holds (the first burst) is done:
        # count from here.
        before = A.metric("parley_fed_batches_out_total", peer=cert)
        _, seen = received(link)
        mids = await pt.burst(pub, "forum/burst", 2000, "burst-%s-%s" % (cert, RUN))
        ok = await wait_msgs(link, mids)
        got, batches = received(link)
        batches -= seen
        seq = [m["mid"] for m in got if m.get("mid") in set(mids)]
        counted = A.metric("parley_fed_batches_out_total", peer=cert) - before
        sizes = [len(f["msgs"]) for f in link.frames
                 if isinstance(f, dict) and f.get("op") == "batch"][seen:]
        T.case("to a peer %s batch" % ("reading" if want_batches else "not reading"),
               "hello %s \"batch\"; 2,000 publishes pipelined" % ("with" if want_batches else "without"),
               "every message once, in order; %s" % ("batch frames" if want_batches else "no batch frame"),
               "%d of 2000 (in order: %s); %d batch frames (%s elements; counted %d)"
               % (len(set(seq)), seq == mids, batches,
                  "%d-%d" % (min(sizes), max(sizes)) if sizes else "-", counted),
               ok and seq == mids and (batches > 0 and counted == batches if want_batches
                                       else batches == 0 and counted == 0))
        await link.close()
        deadline = time.monotonic() + 10
        while A.peer_state(cert) == "up" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    await pub.close()


async def receiving_cases(A, b):
    """Batches b sends. Returns the mids that may reach a.example's
    subscribers."""
    allowed = []

    async def case(name, frame, accepted, want, note):
        before = ht.drops(A, "b.example")
        n_before = A.metric("parley_fed_batches_in_total", peer="b.example")
        await b.send(frame)
        alive = await ht.sync(b)
        d = ht.delta(before, ht.drops(A, "b.example"))
        counted = A.metric("parley_fed_batches_in_total", peer="b.example") - n_before
        allowed.extend(m["mid"] for m in accepted)
        T.case(name, note, ("dropped: %s; " % ht.fmt_delta(want) if want else "") +
               "%d accepted; link stays up" % len(accepted),
               "%s; batch counted %d; link %s" % (ht.fmt_delta(d), counted, "up" if alive else "closed"),
               alive and d == want and counted == 1)

    good = [ht.msg(topic="forum/batch") for _ in range(50)]
    await case("batch in the layout", batch(good), good, {}, "50 msgs in parleyd's layout")
    spaced = [ht.msg(topic="forum/batch") for _ in range(5)]
    await case("batch in another layout", batch(spaced, compact=False), spaced, {},
               "5 msgs, spaces, members in another order")
    g1, forged, g2 = ht.msg(topic="forum/batch"), ht.msg(origin="c.example", path=["b.example"]), \
        ht.msg(topic="forum/batch")
    await case("forged element", batch([g1, forged, g2]), [g1, g2], {"invalid": 1},
               "good, path not starting with origin, good")
    g3, g4 = ht.msg(topic="forum/batch"), ht.msg(topic="forum/batch")
    await case("element that is not a msg", batch([g3, '{"op":"ping","t":1}', g4]), [g3, g4],
               {"invalid": 1}, "good, ping, good")
    g5 = ht.msg(topic="forum/batch")
    dup = dict(g5, cursor="c-dup")
    await case("duplicate inside a batch", batch([g5, dup]), [g5], {"duplicate": 1},
               "a msg and the same mid again")
    g6, loop = ht.msg(topic="forum/batch"), ht.msg(origin=A_NAME, path=[A_NAME, "b.example"],
                                                   frm="x@" + A_NAME)
    secret = ht.msg(topic="secret/x")
    await case("loop and import drops", batch([loop, g6, secret]), [g6], {"loop": 1, "import": 1},
               "origin a.example, good, topic outside import")
    g7, g8, g9 = ht.msg(topic="forum/batch"), ht.msg(topic="forum/batch"), ht.msg(topic="forum/batch")
    broken = batch([g7, g8, g9])
    broken = broken[:broken.index(g9["mid"]) - 20]
    await case("batch broken part way", broken, [g7, g8], {"invalid": 1},
               "3 msgs, cut inside the third")
    deep = ht.msg(topic="forum/batch", body=json.loads("[" * 40 + "]" * 40))
    g10 = ht.msg(topic="forum/batch")
    await case("body the scanner leaves to Jansson", batch([g10, deep]), [g10, deep], {},
               "good, a body nested 40 deep")
    return allowed


async def before_hello(A, certs):
    """A batch before hello is ignored, like a msg."""
    link = await ht.dial(A, certs, "b.example")
    early = ht.msg(topic="forum/early")
    await link.send(batch([early]))
    ok = await link.hello("b.example")
    alive = await ht.sync(link)
    T.case("batch before hello", "a batch of one valid msg, then hello",
           "ignored (never delivered), link comes up", "link %s" % ("up" if ok and alive else "down"),
           ok and alive)
    return link, early["mid"]


async def scenario():
    certs = ft.Certs(A_NAME, "b.example", "d.example")
    A = ft.Node(A_NAME, certs, fed={"dedup_window": 1000})
    dead = "wss://127.0.0.1:%d/fed" % pt.free_port()
    A.add_peer("b.example", dead, export=["forum/#"], import_=["forum/#"])
    A.add_peer("d.example", dead, export=["forum/#"], import_=["forum/#"])
    A.start(timeout=30 if ht.sanitized() else 10)
    S = await ft.subscriber(A, "#", name="sub@a")

    await sending_cases(A, certs)
    b, early = await before_hello(A, certs)
    allowed = await receiving_cases(A, b)
    await b.close()

    frames = await ht.collect_all(S, quiet=1.0)
    got = [f["mid"] for f in frames if f["topic"] == "forum/batch"]
    leaked = [f for f in frames if f["topic"] != "forum/burst" and f["mid"] not in set(allowed)]
    T.case("local subscriber", "every forum/batch msg a subscriber to # got on a.example",
           "exactly the accepted ones, each once, in order",
           "%d of %d; %d not allowed; %d duplicated; early msg %s"
           % (len(set(got) & set(allowed)), len(allowed), len(leaked), len(got) - len(set(got)),
              "delivered" if early in got else "not delivered"),
           got == allowed and not leaked)
    await S.close()
    c_ms, p_ms = await ht.probe(A)
    check(A.alive() and p_ms < 200, "a.example alive and a new client's ping answered in %.1f ms" % p_ms)


if __name__ == "__main__":
    ht.run(scenario, timeout=110.0)
