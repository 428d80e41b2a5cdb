"""hostiletest: the harness of parley's hardening scenarios (issue 8).

Builds on tests/integration/parleytest.py (hubs, checks, the parley.v1
client, the raw WebSocket socket, metrics) and, for the scenarios that
need them, tests/federation/fedtest.py (certificates, federation nodes)
and tests/cluster/clustertest.py (a redis-server of our own, cluster
instances). It adds what hostile traffic needs:

- rss(hub): VmRSS and VmHWM (KiB) of the hub from /proc/PID/status;
- probe(hub): a new client's connect and ping round trip (ms), the
  "hub still answers within normal latency" check;
- Results: the table of cases tried, the expected and the observed
  outcome, printed at the end of every run (pass or fail);
- known hub bugs: a case whose failure is the hub's fault and is
  recorded in docs/security.md / the issue is reported as "HUB BUG" and
  does not fail the run, unless PARLEY_HOSTILE_STRICT=1 (then it fails
  like any check). When such a case passes, the table says so;
- FaultProxy: a loopback TCP proxy (asyncio, in its own thread) that can
  forward, cut (reset everything, refuse new connections), stall (stop
  forwarding, keep every socket; TCP back-pressure builds up) and
  black-hole (accept, read and drop everything);
- run(): runs a scenario within a time bound, stops every hub (each must
  exit 0 after SIGTERM unless it was SIGKILLed on purpose), then fails
  the run when any hub log (killed ones included) holds an
  "ERROR: AddressSanitizer", "runtime error" or "LeakSanitizer" line.

A sanitizer build is detected from the binary (it links __asan_init);
then the sanitizers' options are set for the hubs (leak detection on,
tests/lsan.supp) and memory bounds are reported, not enforced (ASan's
quarantine keeps freed memory resident by design; LeakSanitizer at exit
is the leak check there).

Environment: PARLEYD (the binary), PARLEY_SOURCE_DIR (the source tree;
default: two levels up), PARLEY_HOSTILE_STRICT=1 (known hub bugs fail).
Run with /usr/bin/python3 (Debian's python3-websockets is installed for
it only).
"""

import asyncio
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("PARLEY_SOURCE_DIR")
                             or os.path.join(HERE, "..", ".."))
for _d in ("integration", "federation", "cluster"):
    _p = os.path.join(SOURCE_DIR, "tests", _d)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import parleytest as pt  # noqa: E402
import wsframe  # noqa: E402
from parleytest import Failure, check, check_eq, note  # noqa: E402,F401 (re-exported)

__all__ = ["Failure", "check", "check_eq", "note"]

STRICT = os.environ.get("PARLEY_HOSTILE_STRICT") == "1"
SANITIZER_LINES = ("ERROR: AddressSanitizer", "runtime error", "LeakSanitizer",
                   "UndefinedBehaviorSanitizer")
MIB = 1024  # KiB per MiB (rss() returns KiB).


# ---------------------------------------------------------------- build


_SANITIZED = None


def sanitized():
    """Whether the parleyd under test is a sanitizer build."""
    global _SANITIZED
    if _SANITIZED is None:
        try:
            with open(pt.parleyd_path(), "rb") as f:
                _SANITIZED = b"__asan_init" in f.read()
        except (OSError, Failure):
            _SANITIZED = False
    return _SANITIZED


def _sanitizer_env():
    if not sanitized():
        return
    supp = os.path.join(SOURCE_DIR, "tests", "lsan.supp")
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:"
                          "detect_stack_use_after_return=1")
    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    os.environ.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0" % supp)


# ---------------------------------------------------------------- memory


def rss(hub):
    """(VmRSS, VmHWM) of the hub's process in KiB."""
    out = {}
    with open("/proc/%d/status" % hub.proc.pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


async def settle_rss(hub, bound_kib, timeout=5.0):
    """Waits (bounded) for the hub's RSS to fall under bound_kib; returns
    the last VmRSS seen (KiB)."""
    deadline = time.monotonic() + timeout
    cur = rss(hub)[0]
    while cur > bound_kib and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        cur = rss(hub)[0]
    return cur


# ---------------------------------------------------------------- liveness


async def probe(hub, timeout=5.0):
    """Connects a new anonymous client and pings it. Returns (connect ms,
    ping round trip ms); raises Failure when the hub does not answer."""
    t0 = time.monotonic()
    c = await pt.connect(hub, name="probe", timeout=timeout)
    t1 = time.monotonic()
    try:
        ans, _ = await c.request("ping", timeout=timeout)
        t2 = time.monotonic()
        if ans.get("op") != "pong":
            raise Failure("probe: ping answered %r" % ans)
    finally:
        await c.close()
    return (t1 - t0) * 1000.0, (t2 - t1) * 1000.0


# ---------------------------------------------------------------- results


class Results:
    """The table a scenario prints: one row per case."""

    def __init__(self, title, cols=("case", "tried", "expected", "observed", "result")):
        self.title = title
        self.cols = cols
        self.rows = []
        self.bugs = []   # (case, observed, reproduction)
        self.extra = []  # Lines printed under the table.
        _TABLES.append(self)

    def row(self, *cells):
        self.rows.append([str(c) for c in cells])

    def case(self, case, tried, expected, observed, ok, bug=None, extra=()):
        """Records a case and checks it. bug: a short reproduction when a
        failure is a known fault of the hub (reported, not failed,
        unless PARLEY_HOSTILE_STRICT=1)."""
        if ok:
            verdict = "ok" if not bug else "ok (known bug no longer reproduces)"
        elif bug and not STRICT:
            verdict = "HUB BUG"
            self.bugs.append((case, observed, bug))
        else:
            verdict = "FAIL"
        self.row(case, tried, expected, observed, *extra, verdict)
        if ok:
            check(True, "%s: %s" % (case, observed))
        elif bug and not STRICT:
            note("HUB BUG %s: expected %s, observed %s" % (case, expected, observed))
        else:
            check(False, "%s: expected %s, observed %s" % (case, expected, observed))
        return ok

    def info(self, case, tried, expected, observed, verdict="noted", extra=()):
        """A row that is reported only (behaviour of a dependency, or a
        measurement)."""
        self.row(case, tried, expected, observed, *extra, verdict)
        note("%s: %s (%s)" % (case, observed, verdict))

    def print(self):
        widths = [len(c) for c in self.cols]
        for r in self.rows:
            for i, c in enumerate(r):
                widths[i] = min(max(widths[i], len(c)), 90)

        def fmt(cells):
            out = []
            for i, c in enumerate(cells):
                out.append(c if len(c) <= widths[i] else c[:widths[i] - 1] + "~")
            return "| " + " | ".join(o.ljust(widths[i]) for i, o in enumerate(out)) + " |"

        print("")
        print("== %s" % self.title)
        print(fmt(self.cols))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in self.rows:
            print(fmt(r))
        for line in self.extra:
            print(line)
        seen = []
        for _, _, bug in self.bugs:
            if bug not in seen:
                seen.append(bug)
        for bug in seen:
            cases = ["%s (%s)" % (c, o) for c, o, b in self.bugs if b == bug]
            print("HUB BUG in %d case(s): %s\n  reproduction: %s" % (len(cases), "; ".join(cases), bug))
        sys.stdout.flush()


_TABLES = []


# ---------------------------------------------------------------- proxy


class FaultProxy:
    """A loopback TCP proxy 127.0.0.1:port -> 127.0.0.1:target, run by an
    asyncio loop in its own thread (blocking harness calls never stall
    it). Modes:

      forward    bytes flow both ways;
      cut()      every connection is reset and the port stops listening
                 (new connections are refused) until heal();
      stall()    nothing more is forwarded and nothing is read, but
                 every socket stays open (back-pressure builds up); new
                 connections are accepted and held the same way; heal()
                 resumes forwarding on the same connections;
      blackhole() everything is read and dropped, sockets stay open; new
                 connections are accepted and drained; heal() resets the
                 black-holed connections (their streams lost bytes).
    """

    def __init__(self, target_port, port=None, name="proxy"):
        self.target = target_port
        self.port = port or pt.free_port()
        self.name = name
        self.mode = "forward"
        self.accepted = 0
        self.bytes = 0
        self._pairs = set()
        self._resume = None
        self._server = None
        self._objs = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._init())
        self._call(self._listen())
        _CLEANUPS.append(self.close)

    async def _init(self):
        self._resume = asyncio.Event()
        self._resume.set()

    def _call(self, coro, timeout=10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self):
        for _ in range(100):
            try:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True)
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise Failure("%s: cannot listen on %d" % (self.name, self.port))

    async def _handle(self, r1, w1):
        self.accepted += 1
        pair = [w1, None, "forward"]
        key = id(pair)
        self._pairs.add(key)
        self._objs[key] = pair
        try:
            if self.mode == "blackhole":
                pair[2] = "blackhole"
                while await r1.read(65536):
                    pass
                return
            await self._resume.wait()  # A stalled proxy holds new ones.
            if self.mode == "blackhole":
                pair[2] = "blackhole"
                while await r1.read(65536):
                    pass
                return
            try:
                r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                return
            pair[1] = w2

            async def pump(r, w):
                try:
                    while True:
                        await self._resume.wait()
                        d = await r.read(65536)
                        if not d:
                            break
                        if self.mode == "blackhole":
                            pair[2] = "blackhole"
                            continue
                        await self._resume.wait()
                        w.write(d)
                        self.bytes += len(d)
                        await w.drain()
                except (OSError, asyncio.CancelledError):
                    pass
                finally:
                    self._end(key)

            await asyncio.gather(pump(r1, w2), pump(r2, w1))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._end(key)

    def _end(self, key, abort=False):
        pair = self._objs.pop(key, None)
        self._pairs.discard(key)
        if not pair:
            return
        for w in pair[:2]:
            if w is None:
                continue
            try:
                if abort:
                    w.transport.abort()
                else:
                    w.close()
            except (OSError, RuntimeError, AttributeError):
                pass

    async def _drop(self, only_blackholed=False):
        for key in list(self._pairs):
            pair = self._objs.get(key)
            if pair is None:
                continue
            if only_blackholed and pair[2] != "blackhole":
                continue
            self._end(key, abort=True)

    async def _cut(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._resume.set()
        await self._drop()

    async def _set(self, mode):
        self.mode = mode
        if mode == "stall":
            self._resume.clear()
        else:
            self._resume.set()

    def open_count(self):
        return len(self._pairs)

    def cut(self):
        self._call(self._set("forward"))
        self._call(self._cut())
        self.mode = "cut"

    def stall(self):
        self._call(self._set("stall"))

    def blackhole(self):
        self._call(self._set("blackhole"))

    def heal(self):
        was = self.mode
        self._call(self._set("forward"))
        if was == "blackhole":
            self._call(self._drop(only_blackholed=True))
        if self._server is None:
            self._call(self._listen())

    def close(self):
        try:
            self._call(self._cut(), timeout=5.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)


# ---------------------------------------------------------------- running


_CLEANUPS = []


def at_end(fn):
    _CLEANUPS.append(fn)
    return fn


def sanitizer_reports():
    """Hub logs (every hub of the run, SIGKILLed ones included) holding a
    sanitizer line."""
    out = []
    for h in pt._HUBS:
        text = h.log_text()
        found = sorted({m for m in SANITIZER_LINES if m in text})
        if found:
            lines = [ln for ln in text.splitlines() if any(m in ln for m in SANITIZER_LINES)]
            out.append("%s: %s, e.g. %r" % (h.log_path, found, lines[0][:200]))
    return out


def _stop_hubs(failed):
    ok = True
    for h in pt._HUBS:
        if h.proc is None:
            continue
        if failed:
            h.kill()
            continue
        try:
            h.stop(timeout=20.0 if sanitized() else 10.0)
        except Failure as e:
            print("not ok - %s" % e, flush=True)
            ok = False
    return ok


def _module_cleanups():
    fns = list(reversed(_CLEANUPS))
    for name in ("fedtest", "clustertest"):
        m = sys.modules.get(name)
        if m is not None:
            fns += list(reversed(getattr(m, "_CLEANUPS", [])))
    return fns


def run(scenario, timeout=110.0):
    """Runs scenario() within timeout seconds, stops every hub, checks
    every hub log for sanitizer lines, prints the result tables and exits
    0 (everything held) or 1."""
    _sanitizer_env()
    start = time.monotonic()
    failed = False
    try:
        asyncio.run(asyncio.wait_for(scenario(), timeout))
    except asyncio.TimeoutError:
        print("not ok - scenario did not finish within %.0f s" % timeout)
        traceback.print_exc(file=sys.stdout)
        failed = True
    except BaseException as e:  # Failure included: report and go on.
        print("not ok - %s: %s" % (type(e).__name__, e))
        traceback.print_exc(file=sys.stdout)
        failed = True
    if not failed:
        failed = not _stop_hubs(False)
    else:
        _stop_hubs(True)
    reports = sanitizer_reports()
    if reports:
        print("not ok - sanitizer reports in hub logs:\n  " + "\n  ".join(reports))
        failed = True
    else:
        check(True, "no sanitizer line in any hub log (%d hubs, killed ones included)"
              % len([h for h in pt._HUBS if h.proc is not None]))
    if pt._SOFT_FAILED:
        failed = True
    for t in _TABLES:
        t.print()
    bugs = sum(len(t.bugs) for t in _TABLES)
    if failed:
        for h in pt._HUBS:
            if h.proc is not None:
                h.dump_log(120)
    for fn in _module_cleanups():
        try:
            fn()
        except Exception:
            pass
    cl = sys.modules.get("clustertest")
    if cl is not None:
        for r in getattr(cl, "_REDISES", []):
            if failed:
                r.kill()
            else:
                r.cleanup()
    if failed:
        print("FAILED: %d passed, %d failed, %d known hub bugs (%.1f s)"
              % (pt._CHECKS, pt._SOFT_FAILED + (0 if pt._SOFT_FAILED else 1), bugs,
                 time.monotonic() - start))
        sys.stdout.flush()
        sys.exit(1)
    for h in pt._HUBS:
        shutil.rmtree(h.dir, ignore_errors=True)
    print("%d passed, 0 failed, %d known hub bugs reported%s (%.1f s)"
          % (pt._CHECKS, bugs, " (sanitizer build)" if sanitized() else "",
             time.monotonic() - start))
    sys.stdout.flush()
    sys.exit(0)


# ---------------------------------------------------------------- sockets


def raw_connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def wait_eof(sock, timeout):
    """Reads (discarding) until EOF or reset; returns the seconds it took,
    or None when the socket is still open after timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            return time.monotonic() - t0
        if not d:
            return time.monotonic() - t0


_WORD_RE = re.compile(r"[^a-z0-9]+")


def slug(text):
    return _WORD_RE.sub("-", text.lower()).strip("-")[:40]


# ---------------------------------------------------------------- raw peer


class FedRaw:
    """A parley.fed.v1 peer written by hand: TLS (python ssl, a chosen
    client certificate) and a hand-made WebSocket client over asyncio
    streams, so that it can send any frame. A reader task answers
    WebSocket pings and parley "ping" ops (unless mute), and keeps every
    text frame it receives (parsed) in self.frames."""

    def __init__(self):
        self.reader = self.writer = None
        self.status = None
        self.frames = []
        self.closed = None   # ("close", code) or ("eof", None) once ended.
        self.mute = False
        self._task = None
        self._new = None

    @classmethod
    async def connect(cls, port, ctx, server_name, path="/fed",
                      protocol="parley.fed.v1", timeout=5.0):
        import base64
        self = cls()
        self._new = asyncio.Event()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_name),
            timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: %s\r\n\r\n" % (path, server_name, key, protocol))
        self.writer.write(req.encode())
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        try:
            self.status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.status = 0
        if self.status == 101:
            self._task = asyncio.create_task(self._read_loop())
        return self

    def write_frame(self, opcode, payload, fin=True, masked=True, rsv=0):
        """Queues a frame (no drain)."""
        self.writer.write(wsframe.encode(opcode, payload, fin=fin, rsv=rsv,
                                         masked=masked))

    async def send_frame(self, opcode, payload, **kw):
        self.write_frame(opcode, payload, **kw)
        await self.writer.drain()

    async def send(self, obj):
        import json as js
        await self.send_frame(0x1, obj if isinstance(obj, (str, bytes)) else js.dumps(obj))

    async def _read_loop(self):
        import json as js
        import struct as st
        buf = b""
        frag = b""
        try:
            while True:
                d = await self.reader.read(65536)
                if not d:
                    self.closed = self.closed or ("eof", None)
                    break
                buf += d
                while True:
                    f = wsframe.parse(buf)
                    if not f:
                        break
                    fin, op, payload, buf = f
                    if op == 0x8:
                        code = st.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                        self.closed = ("close", code)
                        try:
                            await self.send_frame(0x8, payload[:2])
                        except (OSError, RuntimeError):
                            pass
                        return
                    if op == 0x9:
                        if not self.mute:
                            await self.send_frame(0xA, payload)
                        continue
                    if op in (0x0, 0x1):
                        frag += payload
                        if not fin:
                            continue
                        text, frag = frag, b""
                        try:
                            obj = js.loads(text)
                        except ValueError:
                            obj = {"op": "?", "raw": text[:200]}
                        if isinstance(obj, dict) and obj.get("op") == "ping" and not self.mute:
                            await self.send({"op": "pong", "t": obj.get("t")})
                        self.frames.append(obj)
                        self._new.set()
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            self.closed = self.closed or ("eof", None)
        except asyncio.CancelledError:
            pass
        finally:
            self._new.set()

    async def frame(self, op, timeout=5.0, start=0):
        """The first frame with this op at index >= start; None when none
        came within timeout (or the link ended)."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.frames):
                f = self.frames[i]
                i += 1
                if isinstance(f, dict) and f.get("op") == op:
                    return f
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def hello(self, node, cursor=None, timeout=5.0):
        """Sends hello; returns True when the node answers hello and live."""
        await self.send({"op": "hello", "node": node, "cursor": cursor})
        h = await self.frame("hello", timeout)
        if h is None:
            return False
        return await self.frame("live", timeout) is not None

    async def wait_closed(self, timeout):
        """Seconds until the link ended, or None."""
        t0 = time.monotonic()
        while not self.closed and time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.05)
        return time.monotonic() - t0 if self.closed else None

    async def close(self):
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.writer:
            try:
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError, Exception):
                pass


# ---------------------------------------------------------------- peer messages
# What the federation scenarios send as a peer and how they read a.example's
# answers (its drop counters, the ping barrier).

SEQ = [0]
RUN = os.urandom(3).hex()


def now_ms():
    return int(time.time() * 1000)


def msg(topic="forum/x", origin="b.example", path=None, frm=None, mid=None, body=None,
        cursor=None, sender="b.example"):
    SEQ[0] += 1
    i = SEQ[0]
    return {"op": "msg", "topic": topic, "mid": mid or "hx%s%06d" % (RUN, i), "origin": origin,
            "from": frm if frm is not None else "mallory@" + origin, "ts": now_ms(),
            "body": body if body is not None else {"i": i},
            "path": path if path is not None else ([origin] if origin == sender else [origin, sender]),
            "cursor": cursor or "c%d" % i}


def drops(node, peer):
    """{reason: count} of parley_fed_dropped_total for one peer."""
    _, samples = node.metrics()
    out = {}
    for n, labels, v in samples:
        if n == "parley_fed_dropped_total" and labels.get("peer") == peer:
            out[labels.get("reason")] = out.get(labels.get("reason"), 0) + v
    return out


def delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


def fmt_delta(d):
    return ", ".join("%s +%d" % (k, v) for k, v in sorted(d.items())) or "no drop counted"


async def sync(link, timeout=30.0):
    """Sends a parley ping op and waits for its pong: a.example has
    handled every frame sent before it."""
    t = now_ms() * 1000 + SEQ[0]
    SEQ[0] += 1
    start = len(link.frames)
    await link.send({"op": "ping", "t": t})
    deadline = time.monotonic() + timeout
    i = start
    while time.monotonic() < deadline:
        f = await link.frame("pong", max(0.01, deadline - time.monotonic()), start=i)
        if f is None:
            break
        i = link.frames.index(f) + 1
        if f.get("t") == t:
            return True
    return False


async def dial(node, certs, cert, hello=None, mute=False):
    import fedtest as ft
    ctx = ft.client_context(certs, cert=cert)
    link = await FedRaw.connect(node.fed_port, ctx, node.name)
    link.mute = mute
    if link.status != 101:
        raise Failure("%s: upgrade answered %s" % (cert, link.status))
    if hello is not None:
        ok = await link.hello(hello)
        if not ok:
            raise Failure("%s: hello %s not answered with hello+live (closed %r)"
                          % (cert, hello, link.closed))
    return link


async def try_peer(node, certs, cert, name=None):
    """Dials as cert and says hello name: 'accepted' when the node
    answers hello and live, else why not."""
    import fedtest as ft
    try:
        link = await FedRaw.connect(node.fed_port, ft.client_context(certs, cert=cert), node.name)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, Exception) as e:
        return "refused (%s)" % type(e).__name__
    try:
        if link.status != 101:
            return "refused (HTTP %s)" % link.status
        ok = await link.hello(name or cert, timeout=3.0)
        if ok:
            await asyncio.sleep(0.3)
            if not link.closed:
                return "accepted"
        return "refused (%s)" % (link.closed or "no hello/live")
    finally:
        await link.close()


async def collect_all(c, quiet=1.0, timeout=30.0):
    """Every msg frame the client has or gets until quiet seconds pass
    without one."""
    got = [f for f in c.inbox if f.get("op") == "msg"]
    c.inbox = [f for f in c.inbox if f.get("op") != "msg"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = await asyncio.wait_for(c.ws.recv(), quiet)
        except asyncio.TimeoutError:
            break
        f = json.loads(d)
        (got if f.get("op") == "msg" else c.inbox).append(f)
    return got
