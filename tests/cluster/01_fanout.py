#!/usr/bin/python3
"""01_fanout: two instances of one node on one Redis, several clients on
each (exact topics, patterns like forum/# and forum/+/x, overlapping
filters). A burst of 500 messages is published through BOTH instances at
once, over WebSocket and POST /v1/publish; one publisher sends runs of
three messages to a topic (a run leaves Redis as one pub/sub message),
the other alternates topics. Every client receives every
message its filters match exactly once and no other; mids are unique;
each client's cursors strictly increase; every client sees the messages
of a topic in the same order, and clients with the same filters see the
same sequence across topics, whichever instance they are on; one
publisher's messages arrive in its order; GET /v1/history agrees on both
instances."""
import asyncio
import time

import clustertest as ct
from clustertest import check, check_eq, note

N_WS = 150    # Per instance, pipelined over one WebSocket.
N_HTTP = 100  # Per instance, POST /v1/publish.
TOPICS = ["forum/a/x", "forum/b/x", "forum/b/y", "forum/c/d/x", "forum", "chat/z", "other/q"]


def topic_ws1(i):
    return TOPICS[i // 3 % len(TOPICS)]  # Runs of three.


def topic_ws2(i):
    return TOPICS[(i + 2) % len(TOPICS)]  # A new topic each time.

# Subscriber kinds: name -> filters. Each kind is held by two clients on
# each instance.
KINDS = {
    "exact_ax": ["forum/a/x"],
    "exact_by": ["forum/b/y"],
    "forum_all": ["forum/#"],
    "plus_x": ["forum/+/x"],
    "overlap": ["forum/a/x", "forum/+/x", "forum/#"],
    "chat_and_x": ["chat/#", "forum/+/x"],
    "everything": ["#"],
}
PER_KIND = 2


def http_loop(inst, n, tag):
    """Publishes n messages over POST /v1/publish; returns [(mid, topic)]."""
    out = []
    for i in range(n):
        topic = TOPICS[(i * 3 + 1) % len(TOPICS)]
        out.append((ct.http_publish(inst, topic, {"tag": tag, "seq": i}, user="bob"), topic))
    return out


async def scenario():
    redis = ct.Redis().start()
    i1, i2 = ct.cluster(redis, history=1000)
    await ct.start_all([i1, i2])

    subs = []  # (kind, instance, client)
    for inst in (i1, i2):
        for kind, filters in KINDS.items():
            for k in range(PER_KIND):
                c = await ct.subscriber(inst, filters, name="%s-%s-%d" % (kind, inst.name, k))
                subs.append((kind, inst, c))
    check(True, "%d subscribers (%d kinds x %d) on each instance"
          % (len(subs) // 2, len(KINDS), PER_KIND))

    p1 = await ct.client(i1, "alice", "pub-i1")
    p2 = await ct.client(i2, "carol", "pub-i2")
    t0 = time.monotonic()
    ws1, ws2, h1, h2 = await asyncio.gather(
        ct.burst(p1, topic_ws1, N_WS, "ws1"),
        ct.burst(p2, topic_ws2, N_WS, "ws2"),
        asyncio.to_thread(http_loop, i1, N_HTTP, "http1"),
        asyncio.to_thread(http_loop, i2, N_HTTP, "http2"))
    total = 2 * N_WS + 2 * N_HTTP
    note("published %d messages through both instances in %.2f s" % (total, time.monotonic() - t0))

    topic_of = {}
    for mids, topic in ((ws1, topic_ws1), (ws2, topic_ws2)):
        for i, m in enumerate(mids):
            topic_of[m] = topic(i)
    for pairs in (h1, h2):
        for m, t in pairs:
            topic_of[m] = t
    all_mids = ws1 + ws2 + [m for m, _ in h1] + [m for m, _ in h2]
    check_eq(len(set(all_mids)), total, "all %d accepted messages have distinct mids" % total)

    # Collect everything each client should get.
    frames_of = {}
    for kind, inst, c in subs:
        want = [m for m in all_mids if any(ct.topic_match(f, topic_of[m]) for f in KINDS[kind])]
        frames = await ct.collect(c, want, timeout=30, quiet=0.2)
        frames_of[c.name] = frames
        got = [f["mid"] for f in frames]
        ct.check_no_duplicates(frames, c.name)
        check_eq(sorted(got), sorted(want), "%s (%s) received exactly the %d messages its filters match"
                 % (c.name, " ".join(KINDS[kind]), len(want)))
        bad_topic = [f for f in frames if f["topic"] != topic_of[f["mid"]]]
        check(not bad_topic, "%s: every msg carries the topic it was published to" % c.name)
        ct.check_cursors_increase(frames, c.name)
    # Let the last quiet periods pass for everyone: no late duplicates.
    await asyncio.sleep(0.5)
    for kind, inst, c in subs:
        extra, _ = await ct.read_msg_frames(c, lambda g: True, 0.1, quiet=0.05)
        frames_of[c.name] += extra
    late = {n: len(f) for n, f in frames_of.items()}
    check(all(len(set(f["mid"] for f in fr)) == len(fr) for fr in frames_of.values()),
          "no late duplicate at any client (frames per client: %s)" % sorted(set(late.values())))

    # One message is the same object everywhere, with one cursor.
    ref = {}
    differ = []
    for fr in frames_of.values():
        for f in fr:
            r = ref.setdefault(f["mid"], f)
            if r != f:
                differ.append((r, f))
    check(not differ, "a message is the same frame (cursor included) at every client%s"
          % ("" if not differ else ": %r vs %r" % differ[0]))
    curs = [ref[m]["cursor"] for m in ref]
    check_eq(len(set(curs)), len(curs), "cursors are unique across the %d messages" % len(curs))
    origins = {f["origin"] for f in ref.values()}
    check_eq(origins, {ct.NODE}, "every message's origin is the node's name, whichever instance took it")
    froms = {f["from"] for f in ref.values()}
    check_eq(froms, {"alice@" + ct.NODE, "bob@" + ct.NODE, "carol@" + ct.NODE},
             "from is user@node for the WebSocket and HTTP publishers")

    # Same order of each topic at every client.
    for t in TOPICS:
        orders = {}
        for name, fr in frames_of.items():
            seq = [f["mid"] for f in fr if f["topic"] == t]
            if seq:
                orders[name] = seq
        check(orders, "topic %s has subscribers" % t)
        first = next(iter(orders.values()))
        same = [n for n, s in orders.items() if s == first]
        check_eq(len(same), len(orders), "topic %s: all %d clients that get it see its %d messages in one order"
                 % (t, len(orders), len(first)))

    # Same sequence across topics for clients with the same filters, on
    # either instance.
    for kind in KINDS:
        seqs = {c.name: [f["mid"] for f in frames_of[c.name]] for k, _, c in subs if k == kind}
        first = next(iter(seqs.values()))
        check(all(s == first for s in seqs.values()),
              "kind %s: its %d clients (both instances) see the same sequence of %d messages"
              % (kind, len(seqs), len(first)))

    # The global order is the cursor order: everything merged is
    # consistent (already implied per client); and each WebSocket
    # publisher's messages come in the order it sent them.
    every = frames_of[[c.name for k, _, c in subs if k == "everything"][0]]
    for mids, who in ((ws1, "pub-i1"), (ws2, "pub-i2")):
        sub_seq = [f["mid"] for f in every if f["mid"] in set(mids)]
        check(sub_seq == mids, "%s's %d pipelined messages are delivered in the order it sent them"
              % (who, len(mids)))
    for pairs, who in ((h1, "http-i1"), (h2, "http-i2")):
        mids = [m for m, _ in pairs]
        sub_seq = [f["mid"] for f in every if f["mid"] in set(mids)]
        check(sub_seq == mids, "%s's %d sequential POSTs are delivered in the order they were accepted"
              % (who, len(mids)))

    # History agrees on both instances and with what subscribers saw.
    for t in TOPICS:
        a = ct.history(i1, t, last=1000)
        b = ct.history(i2, t, last=1000)
        check(a == b, "GET /v1/history %s: the same %d messages on both instances" % (t, len(a)))
        live = [ref[m] for m in sorted((m for m in ref if topic_of[m] == t),
                                       key=lambda m: ct.cursor_key(ref[m]["cursor"]))]
        check([m["mid"] for m in a] == [m["mid"] for m in live] and a == live,
              "GET /v1/history %s equals the live frames, in the same order" % t)

    for inst in (i1, i2):
        note("%s: parley_redis_received_total=%d redelivered=%d stored=%d" % (
            inst.name, inst.metric("parley_redis_received_total"),
            inst.metric("parley_redis_redelivered_total"), inst.metric("parley_redis_stored_total")))
    stored = i1.metric("parley_redis_stored_total") + i2.metric("parley_redis_stored_total")
    check_eq(int(stored), total, "parley_redis_stored_total summed over the instances is %d" % total)
    for _, _, c in subs:
        await c.close()
    await p1.close()
    await p2.close()


if __name__ == "__main__":
    ct.run(scenario)
