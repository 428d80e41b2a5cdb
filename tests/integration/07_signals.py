#!/usr/bin/python3
"""07_signals: SIGHUP reloads tokens and permissions without dropping the
clients that keep their rights; a bad config on SIGHUP keeps the old one;
SIGTERM closes clients with 1001 and exits 0."""
import asyncio
import copy
import json
import signal
import time

import parleytest as pt
from parleytest import check, check_eq
import websockets.exceptions


async def can_connect(hub, token):
    try:
        c = await pt.connect(hub, token, name="probe")
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await c.close()
    return 101


async def wait_until(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise pt.Failure("timed out waiting until %s" % what)


def tokens_v1():
    return [
        pt.user("alice", subscribe=["#"], publish=["#"]),
        pt.user("carol", subscribe=["forum/#", "secret/#"], publish=["forum/#", "secret/#"]),
        pt.user("dave", subscribe=["#"], publish=["#"]),
    ]


async def scenario():
    hub = pt.Hub(tokens=tokens_v1(), anon_sub=["forum/#"])
    hub.start()
    A, C, D, E = (pt.token_of(u) for u in ("alice", "carol", "dave", "erin"))

    alice = await pt.connect(hub, A, name="alice")
    await alice.sub("#")
    carol = await pt.connect(hub, C, name="carol")
    await carol.sub("secret/x")
    await carol.sub("secret/#")
    await carol.sub("forum/a")
    dave = await pt.connect(hub, D, name="dave")
    await dave.sub("forum/#")
    dave2 = await pt.connect(hub, None, name="dave-by-op")
    await dave2.ok("auth", token=D)
    anon = await pt.connect(hub, name="anon")
    await anon.sub("forum/#")
    check_eq(await can_connect(hub, E), 401, "erin's token is unknown before the reload")

    # Reload: carol loses secret/#, dave's token is revoked, erin is added.
    cfg = copy.deepcopy(hub.config)
    cfg["auth"]["tokens"] = [
        pt.user("alice", subscribe=["#"], publish=["#"]),
        pt.user("carol", subscribe=["forum/#"], publish=["forum/#"]),
        pt.user("erin", subscribe=["forum/#"], publish=["forum/#"]),
    ]
    hub.reload(cfg)

    errs = []
    for _ in range(2):
        errs.append(await carol.frame("error", timeout=5))
    check(all(e.get("code") == "forbidden" for e in errs), "carol gets forbidden errors after the reload")
    check_eq(sorted(e.get("topic") for e in errs), ["secret/#", "secret/x"],
             "each forbidden error names a removed subscription's topic")
    code = await dave.closed(5)
    check_eq(code, 1008, "dave's connection (token revoked) is closed with 1008")
    code = await dave2.closed(5)
    check_eq(code, 1008, "a connection authenticated by the auth op with the revoked token is closed with 1008")
    await wait_until(lambda: _eq(can_connect(hub, E), 101), "erin's token is accepted")
    check(True, "erin's new token is accepted after the reload")
    check_eq(await can_connect(hub, D), 401, "dave's revoked token is refused after the reload")

    # The others stay, with their remaining subscriptions.
    await alice.alive()
    await carol.alive()
    await anon.alive()
    check(True, "alice, carol and the anonymous client stay connected")
    await alice.pub("secret/x", "hidden")
    await alice.pub("forum/a", "shown")
    got = await alice.msgs(2)
    check_eq([m["body"] for m in got], ["hidden", "shown"], "alice still subscribed to #")
    (m,) = await carol.msgs(1)
    check_eq(m["body"], "shown", "carol keeps forum/a and no longer gets secret/x")
    await carol.silence(0.3)
    (m,) = await anon.msgs(1)
    check_eq(m["body"], "shown", "anonymous subscription kept")
    await carol.error("sub", "forbidden", topic="secret/y")
    check(True, "carol can no longer subscribe to secret/y")
    await carol.error("pub", "forbidden", topic="secret/y", body=1)
    check(True, "carol can no longer publish to secret/y")
    erin = await pt.connect(hub, E, name="erin")
    mid = await erin.pub("forum/e", "from erin")
    got = await alice.msgs(1)
    check(got[0]["mid"] == mid and got[0]["from"] == hub.who("erin"), "erin publishes as erin@node")

    # The history survives a reload.
    back = await erin.sub("forum/a", last=1)
    check_eq([m["body"] for m in back], ["shown"], "history is kept across a reload")

    # A bad config on SIGHUP keeps the running one.
    good = copy.deepcopy(hub.config)
    for raw in ('{"node": "test.example", "listen": ', '{"node": 5}',
                json.dumps(dict(good, limits=dict(good["limits"], max_frame_bytes="big"))),
                json.dumps(dict(good, unknown_key=1))):
        hub.reload(raw=raw)
        await asyncio.sleep(0.5)
        check(hub.alive(), "hub survives SIGHUP with a bad config %r" % raw[:40])
        check_eq(await can_connect(hub, E), 101, "erin's token (old config) still works")
        await alice.alive()
        await carol.alive()
        await erin.alive()
        check(True, "connections survive a rejected reload")
    log = hub.log_text()
    check("reload" in log.lower(), "the log mentions the reload")
    hub.write_config(good)
    # Reloading the same good config again changes nothing for clients.
    hub.signal(signal.SIGHUP)
    await asyncio.sleep(0.3)
    await alice.alive()
    await erin.alive()
    check(True, "reloading an unchanged config keeps every connection")
    _, samples = hub.metrics()
    n = pt.metric_value(samples, "parley_connections")
    check_eq(n, 4.0, "parley_connections = 4 (alice, carol, anon, erin)")

    # SIGTERM: close frames with 1001, then exit 0 - also with a client
    # that never reads (it must not hold the shutdown forever).
    stuck = pt.RawWS(hub.port, rcvbuf=4096)
    check_eq(stuck.status, 101, "a raw client that will never read connects")
    stuck.send_json({"op": "sub", "topic": "forum/a", "id": 1})
    for i in range(30):
        await alice.pub("forum/a", "z" * 8000)
    await alice.msgs(30)
    await anon.msgs(30)
    t0 = time.monotonic()
    hub.signal(signal.SIGTERM)
    for c in (alice, carol, anon, erin):
        code = await c.closed(5)
        check_eq(code, 1001, "%s gets close code 1001 on SIGTERM" % c.name)
    rc, killed = await hub.wait_exit_async(15)
    hub.check_exit(rc, killed)
    check(time.monotonic() - t0 < 12, "shutdown finished in %.1f s despite a client that never reads"
          % (time.monotonic() - t0))
    stuck.close()
    await sigint()


async def sigint():
    """SIGINT shuts down like SIGTERM."""
    hub = pt.Hub(tokens=[pt.user("alice")])
    hub.start()
    c = await pt.connect(hub, pt.token_of("alice"), name="c")
    await c.sub("forum/#")
    hub.signal(signal.SIGINT)
    code = await c.closed(5)
    check_eq(code, 1001, "SIGINT: the client gets close code 1001")
    rc, killed = await hub.wait_exit_async(10)
    hub.check_exit(rc, killed)


async def _eq(coro, want):
    return (await coro) == want


pt.run(scenario)
