#!/usr/bin/python3
"""11_presence: who is on a topic (docs/protocol.md "Presence"): the list
after a sub, joins and leaves announced to the others, several sessions of
one identity counting once, patterns not making anyone present, topics
outside presence.topics staying quiet."""
import parleytest as pt
from parleytest import check, check_eq


def norm(f):
    return (f.get("topic"), sorted(f.get("joined", [])), sorted(f.get("left", [])))


async def presence(c, timeout=3.0):
    f = await c.frame("presence", timeout)
    check(isinstance(f.get("joined"), list) and isinstance(f.get("left"), list),
          "%s: presence frame has joined and left lists" % c.name)
    return norm(f)


async def scenario():
    hub = pt.Hub(presence=["room/#"], anon_sub=["room/#"],
                 tokens=[pt.user(u) for u in ("alice", "bob", "carol", "dave")])
    hub.start()
    W = hub.who
    ANON = W("anonymous")

    alice = await pt.connect(hub, pt.token_of("alice"), name="alice")
    ans, back = await alice.ok("sub", topic="room/a")
    check_eq(await presence(alice), ("room/a", [W("alice")], []),
             "after sub, alice gets the list of who is there (herself)")

    bob = await pt.connect(hub, pt.token_of("bob"), name="bob")
    await bob.sub("room/a")
    check_eq(await presence(bob), ("room/a", sorted([W("alice"), W("bob")]), []),
             "bob gets everyone present, himself included")
    check_eq(await presence(alice), ("room/a", [W("bob")], []), "alice is told bob joined")
    await alice.silence(0.2)
    check(True, "... once")

    # A second session of bob: no new announcement; it gets the list.
    bob2 = await pt.connect(hub, pt.token_of("bob"), name="bob2")
    await bob2.sub("room/a")
    check_eq(await presence(bob2), ("room/a", sorted([W("alice"), W("bob")]), []),
             "bob's second session gets the list (bob counted once)")
    await alice.silence(0.3)
    await bob.silence(0.01)
    check(True, "a second session of a present identity is not announced")

    # Messages still flow normally beside presence.
    mid = await alice.pub("room/a", "hello")
    for c in (alice, bob, bob2):
        (m,) = await c.msgs(1)
        check_eq(m["mid"], mid, "%s receives the message" % c.name)

    # bob's first session leaves: bob is still present through bob2.
    await bob.ok("unsub", topic="room/a")
    await alice.silence(0.3)
    check(True, "unsub of one of bob's two sessions announces nothing")
    # bob2 closes: now bob left.
    await bob2.close()
    check_eq(await presence(alice), ("room/a", [], [W("bob")]),
             "when bob's last session goes, alice is told bob left")

    # A pattern subscription does not make anyone present.
    carol = await pt.connect(hub, pt.token_of("carol"), name="carol")
    await carol.sub("room/#")
    await carol.sub("room/+")
    await alice.silence(0.3)
    check(True, "a subscription to a pattern announces nobody")
    await carol.ok("unsub", topic="room/#")
    await carol.ok("unsub", topic="room/+")
    await carol.alive()
    carol.inbox = [f for f in carol.inbox if f["op"] != "presence"]

    # Anonymous sessions count once as anonymous@node.
    an1 = await pt.connect(hub, name="anon1")
    await an1.sub("room/a")
    check_eq(await presence(an1), ("room/a", sorted([W("alice"), ANON]), []),
             "an anonymous session is present as anonymous@node")
    check_eq(await presence(alice), ("room/a", [ANON], []), "alice is told anonymous joined")
    an2 = await pt.connect(hub, name="anon2")
    await an2.sub("room/a")
    check_eq(await presence(an2), ("room/a", sorted([W("alice"), ANON]), []),
             "a second anonymous session sees anonymous once")
    await alice.silence(0.3)
    check(True, "the second anonymous session is not announced")

    # Changing identity with auth hands presence over.
    await an2.ok("auth", token=pt.token_of("dave"))
    frames = []
    for _ in range(4):
        try:
            frames.append(await presence(alice, 0.5))
        except pt.Failure:
            break
    joined = sorted(j for f in frames for j in f[1])
    left = sorted(x for f in frames for x in f[2])
    check_eq((joined, left), ([W("dave")], []),
             "anon2 authenticating as dave: dave joins; anonymous stays (anon1 is still there)")
    await an1.close()
    check_eq(await presence(alice), ("room/a", [], [ANON]), "the last anonymous session leaving is announced")

    # A topic outside presence.topics is quiet.
    q1 = await pt.connect(hub, pt.token_of("alice"), name="q1")
    q2 = await pt.connect(hub, pt.token_of("bob"), name="q2")
    await q1.sub("other/x")
    await q2.sub("other/x")
    await q1.silence(0.3)
    await q2.silence(0.01)
    check(True, "no presence frames on a topic outside presence.topics")

    # Closing announces left to the others, and does not bother the closed.
    await an2.close()
    check_eq(await presence(alice), ("room/a", [], [W("dave")]), "dave's session closing is announced as left")
    await alice.alive()

    # A reload that removes carol's right to room/# and revokes dave's
    # token: both are announced as left.
    carol2 = await pt.connect(hub, pt.token_of("carol"), name="carol2")
    await carol2.sub("room/a")
    await presence(carol2)
    dave = await pt.connect(hub, pt.token_of("dave"), name="dave")
    await dave.sub("room/a")
    await presence(dave)
    got = [await presence(alice), await presence(alice)]
    check_eq(sorted(j for f in got for j in f[1]), sorted([W("carol"), W("dave")]), "carol and dave joined")
    cfg = dict(hub.config, auth=dict(hub.config["auth"], tokens=[
        pt.user("alice"), pt.user("bob"), pt.user("carol", subscribe=["other/#"])]))
    hub.reload(cfg)
    err = await carol2.frame("error")
    check(err.get("code") == "forbidden" and err.get("topic") == "room/a",
          "after the reload carol loses room/a with forbidden")
    check_eq(await dave.closed(), 1008, "dave's revoked session is closed with 1008")
    got = [await presence(alice), await presence(alice)]
    check_eq(sorted(x for f in got for x in f[2]), sorted([W("carol"), W("dave")]),
             "both are announced as left")
    await alice.silence(0.3)
    for c in (alice, bob, carol, carol2, q1, q2):
        await c.close()


pt.run(scenario)
