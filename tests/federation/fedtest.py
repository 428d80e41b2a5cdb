"""fedtest: the harness of parley's federation scenarios.

Builds on tests/integration/parleytest.py (checks, the parley.v1 client,
HTTP and metrics helpers, the TERM-then-KILL stop with its exit-status
check and the log dump on failure) and adds what federation needs:

- Certs: a federation CA and node certificates made at test time by
  deploy/gen-certs.sh in a temporary directory, bad ones included;
- Node: a parleyd with a `federation` section (its own mTLS port, a state
  file in its directory), link()/mesh() to make two nodes peers,
  start_all() and wait_peers() on GET /healthz's federation.peers, crash()
  (SIGKILL) and restart() with the same config and state file, and readers
  of its structured log (event=fed_refused ...);
- fed_dial(): a fake peer *client* (python ssl + websockets) presenting a
  chosen certificate, TLS version and hello;
- FakePeer: a fake peer *server* in its own thread (raw TCP, TLS, a small
  hand-written WebSocket server) that records every connection a node makes
  to it and can answer like a peer, stay silent or present a bad
  certificate;
- Proxy: a loopback TCP proxy (asyncio in its own thread) to cut and heal a
  link, or to black-hole it (burst()/collect() and the exact-once
  checks come from parleytest).

Environment: PARLEYD (the binary), PARLEY_SOURCE_DIR (the source tree, for
deploy/gen-certs.sh; default: two levels up). Run scenarios with
/usr/bin/python3 (Debian's python3-websockets is installed for it only).
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("PARLEY_SOURCE_DIR")
                             or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

import parleytest as pt  # noqa: E402
import websockets  # noqa: E402
import wsframe  # noqa: E402
import websockets.exceptions  # noqa: E402
from parleytest import Failure, check, check_eq, note  # noqa: E402,F401
from parleytest import burst, check_no_duplicates, check_once_in_order, collect  # noqa: E402,F401

# TLS 1.1 is deprecated in Python's ssl module; the mTLS scenario uses it on
# purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TLSv1.*")

FED_SUBPROTOCOL = "parley.fed.v1"
FED_PATH = "/fed"
GEN_CERTS = os.path.join(SOURCE_DIR, "deploy", "gen-certs.sh")

# Users every node grants (tokens are pt.token_of(user)).
USERS = ("alice", "bob")

# Federation timings for tests: quick redials so that outages heal fast.
FED_DEFAULTS = {
    "ping_interval_ms": 1000,
    "dead_after_ms": 5000,
    "backoff_min_ms": 50,
    "backoff_max_ms": 1000,
}

_CLEANUPS = []  # Callables run when the scenario ends.


def at_end(fn):
    """Registers fn() to run when the scenario ends (pass or fail)."""
    _CLEANUPS.append(fn)
    return fn


# ---------------------------------------------------------------- certs


class Certs:
    """A directory of certificates made by deploy/gen-certs.sh."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="parley-fed-certs-")
        at_end(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.ca = os.path.join(self.dir, "ca.pem")
        self.gen(*args)

    def gen(self, *args):
        """Runs gen-certs.sh DIR ARGS... (it is idempotent)."""
        cmd = ["bash", GEN_CERTS, self.dir] + list(args)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise Failure("gen-certs.sh %s failed (%d): %s"
                          % (" ".join(args), r.returncode, r.stdout.decode(errors="replace")))
        return self

    def pair(self, base):
        """(pem, key) paths of DIR/base.pem and DIR/base.key."""
        pem = os.path.join(self.dir, base + ".pem")
        key = os.path.join(self.dir, base + ".key")
        if not (os.path.exists(pem) and os.path.exists(key)):
            raise Failure("no certificate %s in %s" % (base, self.dir))
        return pem, key


# ---------------------------------------------------------------- logs


_KV_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    """Parses one 'ts=… level=… event=… k=v' line into a dict (quoted
    values unquoted). Returns None for a line that is not one."""
    d = {}
    for k, v in _KV_RE.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        d[k] = v
    if "event" not in d:
        return None
    d["_line"] = line
    return d


# ---------------------------------------------------------------- nodes


class Node(pt.Hub):
    """A parleyd with federation on. name is the node name; cert is the
    base name of its certificate in certs (default: name)."""

    def __init__(self, name, certs, cert=None, fed=None, history=5000, **kw):
        self.fed_port = pt.free_port()
        self.certs = certs
        pem, key = certs.pair(cert or name)
        federation = {
            "listen": {"host": "127.0.0.1", "port": self.fed_port},
            "ca": certs.ca,
            "cert": pem,
            "key": key,
            "peers": [],
        }
        federation.update(FED_DEFAULTS)
        federation.update(fed or {})
        kw.setdefault("tokens", [pt.user(u, subscribe=["#"], publish=["#"]) for u in USERS])
        kw.setdefault("anon_sub", ["#"])
        super().__init__(node=name, history=history, extra={"federation": federation}, **kw)
        # A directory of our own (config, log, state file), not a
        # parley-it-* one that other suites' cleanups might remove.
        os.rmdir(self.dir)
        self.dir = tempfile.mkdtemp(prefix="parley-fed-%s-" % name)
        self.config_path = os.path.join(self.dir, "parleyd.json")
        self.log_path = os.path.join(self.dir, "parleyd.log")
        self.name = name
        self.fed = self.config["federation"]
        self.fed.setdefault("state_file", os.path.join(self.dir, "fed-state.json"))

    def __repr__(self):
        return "Node(%s)" % self.name

    # -- config

    def fed_url(self, port=None):
        return "wss://127.0.0.1:%d%s" % (port or self.fed_port, FED_PATH)

    def add_peer(self, name, url, export=("forum/#",), import_=("forum/#",), relay=None):
        """Adds (or replaces) federation.peers entry name."""
        p = {"name": name, "url": url, "export": list(export), "import": list(import_)}
        if relay is not None:
            p["relay"] = relay
        self.fed["peers"] = [q for q in self.fed["peers"] if q["name"] != name] + [p]
        return p

    def peer_entry(self, name):
        for p in self.fed["peers"]:
            if p["name"] == name:
                return p
        return None

    def remove_peer(self, name):
        self.fed["peers"] = [q for q in self.fed["peers"] if q["name"] != name]

    def reload_config(self):
        """Writes self.config and sends SIGHUP."""
        self.reload(self.config)

    # -- health

    def health(self):
        st, _, body = self.get("/healthz", timeout=3.0)
        try:
            return st, json.loads(body.decode())
        except ValueError:
            raise Failure("%s: /healthz is not JSON: %r" % (self.name, body[:200]))

    def peer_states(self):
        """{peer name: entry} from GET /healthz federation.peers."""
        _, h = self.health()
        fed = h.get("federation")
        if not isinstance(fed, dict) or not isinstance(fed.get("peers"), list):
            raise Failure("%s: /healthz has no federation.peers: %r" % (self.name, h))
        return {p.get("name"): p for p in fed["peers"] if isinstance(p, dict)}

    def peer_state(self, name):
        e = self.peer_states().get(name)
        return e.get("state") if e else None

    async def wait_peers(self, want, timeout=15.0):
        """Waits until /healthz shows each peer in want ({name: state} or
        names, meaning "up"). Returns the peer entries."""
        if not isinstance(want, dict):
            want = {n: "up" for n in want}
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            try:
                got = self.peer_states()
                if all((got.get(n) or {}).get("state") == s if s is not None else n not in got
                       for n, s in want.items()):
                    return got
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise Failure("%s: peers not %r within %.0f s; /healthz peers: %r"
                      % (self.name, want, timeout, got))

    async def wait_settled(self, peer, timeout=15.0):
        """Waits until the link to peer is up and is the one the duplicate
        rule keeps (the lower-named node's outgoing link). Until then the
        lower-named node still has a redial pending that will replace the
        link, so connection counts are not final."""
        want = "out" if self.name < peer else "in"
        deadline = time.monotonic() + timeout
        e = None
        while time.monotonic() < deadline:
            try:
                e = self.peer_states().get(peer) or {}
                if e.get("state") == "up" and e.get("direction") == want:
                    return e
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise Failure("%s: link to %s not up as %s within %.0f s; /healthz: %r"
                      % (self.name, peer, want, timeout, e))

    async def wait_state(self, peer, states, timeout=10.0):
        """Waits until the peer's /healthz state is one of states (None:
        absent). Returns the state seen."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = self.peer_state(peer)
                if seen in states:
                    return seen
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise Failure("%s: peer %s state %r, not one of %r within %.0f s"
                      % (self.name, peer, seen, states, timeout))

    # -- metrics

    def metric(self, name, **labels):
        """Sum of the samples of name with these labels (0 when none)."""
        _, samples = self.metrics()
        v = pt.metric_value(samples, name, **labels)
        return 0.0 if v is None else v

    def dropped(self, peer=None, reason=None):
        labels = {}
        if peer is not None:
            labels["peer"] = peer
        if reason is not None:
            labels["reason"] = reason
        return self.metric("parley_fed_dropped_total", **labels)

    # -- log

    def log_mark(self):
        """The current end of the log (for events_since)."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def events(self, since=0, prefix=None):
        """Parsed log lines from offset since, optionally only events
        starting with prefix."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        out = []
        for ln in text.splitlines():
            d = parse_log_line(ln)
            if d and (prefix is None or d["event"].startswith(prefix)):
                out.append(d)
        return out

    async def wait_event(self, pred, since=0, timeout=5.0, what="a log event"):
        """Waits until a log line from since satisfies pred(dict); returns
        it."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events(since):
                if pred(e):
                    return e
            if time.monotonic() >= deadline:
                raise Failure("%s: no %s in the log within %.1f s" % (self.name, what, timeout))
            await asyncio.sleep(0.05)


def mentions(e, name):
    """Whether a log event names the node name in any value."""
    return any(name in str(v) for k, v in e.items() if k not in ("_line",))


def refused(e, name=None):
    """Predicate: an event=fed_refused line (mentioning name, if given)."""
    return e["event"] == "fed_refused" and (name is None or mentions(e, name))


# Event names of link life in the hub's log (docs/federation.md names only
# fed_refused; these match the names the hub uses for the others).
CLOSE_EVENT_RE = re.compile(r"^fed_.*(close|closed|down|dead|lost|disconnect)")
DIAL_FAILED_EVENT_RE = re.compile(r"^fed_dial_fail")
DIAL_EVENT_RE = re.compile(r"^fed_.*(dial|connecting)$")
UP_EVENT_RE = re.compile(r"^fed_.*(up|established|open|live)$")


def link_closed(e, name):
    """Predicate: a log event saying the link with peer name ended."""
    return bool(CLOSE_EVENT_RE.search(e["event"])) and mentions(e, name)


def dial_failed(e, name):
    """Predicate: a log event saying a dial of peer name failed (the
    connection ended before the link was up)."""
    return bool(DIAL_FAILED_EVENT_RE.search(e["event"])) and mentions(e, name)


def dialled(e, name):
    """Predicate: a log event saying the node dials peer name."""
    return bool(DIAL_EVENT_RE.search(e["event"])) and mentions(e, name)


def link_up(e, name):
    """Predicate: a log event saying the link with peer name is up."""
    return bool(UP_EVENT_RE.search(e["event"])) and mentions(e, name)


def link(a, b, export_ab=("forum/#",), import_ab=("forum/#",),
         export_ba=None, import_ba=None, url_ab=None, url_ba=None, relay_ab=None, relay_ba=None):
    """Makes nodes a and b peers of each other. export_ab/import_ab are a's
    policy for b; export_ba/import_ba b's for a (default: the same). url_ab
    is where a dials b (default: b's federation port)."""
    a.add_peer(b.name, url_ab or b.fed_url(), export_ab, import_ab, relay_ab)
    b.add_peer(a.name, url_ba or a.fed_url(),
               export_ab if export_ba is None else export_ba,
               import_ab if import_ba is None else import_ba, relay_ba)


def mesh(nodes, **kw):
    """Links every pair of nodes."""
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            link(a, b, **kw)


async def start_all(nodes, timeout=20.0):
    """Starts every node, then waits until each has every configured peer
    up."""
    for n in nodes:
        n.start()
        note("%s: client port %d, federation port %d, log %s" % (n.name, n.port, n.fed_port, n.log_path))
    for n in nodes:
        await n.wait_peers([p["name"] for p in n.fed["peers"]], timeout)
    check(True, "nodes %s started; every configured link is up"
          % ", ".join(n.name for n in nodes))


# ---------------------------------------------------------------- clients


async def client(node, user="alice", name=None):
    """A parley.v1 client of node with the user's token."""
    return await pt.connect(node, pt.token_of(user), name=name or "%s@%s" % (user, node.name))


async def subscriber(node, topic="forum/#", user="alice", name=None, **sub):
    """A client subscribed to topic (sub: last= or since=). The backlog
    is kept in its inbox, before anything live, for collect()."""
    c = await client(node, user, name)
    backlog = await c.sub(topic, **sub)
    c.inbox[0:0] = backlog
    return c


def http_publish(node, topic, body, user="bob"):
    """POST /v1/publish; returns the mid."""
    st, _, data = pt.http_get(node.port, "/v1/publish", method="POST",
                              body=json.dumps({"topic": topic, "body": body}),
                              headers={"Authorization": "Bearer " + pt.token_of(user),
                                       "Content-Type": "application/json"})
    if st != 200:
        raise Failure("%s: POST /v1/publish answered %d: %r" % (node.name, st, data[:200]))
    return json.loads(data)["mid"]


def history(node, topic, last=1000, user="alice"):
    """GET /v1/history?topic=…&last=N; returns the list of messages."""
    import urllib.parse
    q = urllib.parse.urlencode({"topic": topic, "last": last}, quote_via=urllib.parse.quote, safe="/")
    st, _, data = pt.http_get(node.port, "/v1/history?" + q,
                              headers={"Authorization": "Bearer " + pt.token_of(user)})
    if st != 200:
        raise Failure("%s: GET /v1/history?%s answered %d: %r" % (node.name, q, st, data[:200]))
    return json.loads(data)["messages"]


SAME_FIELDS = ("topic", "mid", "origin", "from", "ts", "body")


def same_message(a, b):
    return all(a.get(k) == b.get(k) and type(a.get(k)) is type(b.get(k)) for k in SAME_FIELDS)


# ---------------------------------------------------------------- TLS


def client_context(certs, cert=None, ca=None, tls_max=None, seclevel0=False, check_name=True):
    """An ssl context for a fake peer client. cert: base name of the
    certificate to present (None: none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or certs.ca)
    ctx.check_hostname = check_name
    if cert:
        ctx.load_cert_chain(*certs.pair(cert))
    if tls_max is not None:
        ctx.minimum_version = tls_max
        ctx.maximum_version = tls_max
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def server_context(certs, cert, ca=None, tls_max=None, require_cert=True):
    """An ssl context for a fake peer server presenting cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs.pair(cert))
    if require_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca or certs.ca)
    if tls_max is not None:
        ctx.minimum_version = tls_max
        ctx.maximum_version = tls_max
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class FedLink:
    """A parley.fed.v1 connection made by fed_dial."""

    def __init__(self, ws):
        self.ws = ws
        self.inbox = []

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def recv(self, timeout=5.0):
        if self.inbox:
            return self.inbox.pop(0)
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        return json.loads(data)

    async def frame(self, op, timeout=5.0):
        """The next frame with this op; answers pings meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("fake peer: no %s frame within %.1f s" % (op, timeout))
            try:
                f = await self.recv(left)
            except asyncio.TimeoutError:
                continue
            if f.get("op") == op:
                return f
            if f.get("op") == "ping":
                await self.send({"op": "pong", "t": f.get("t")})

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            pass


async def fed_dial(node, ctx, hello=None, server_name=None, timeout=5.0):
    """Dials node's federation listener as a fake peer with ssl context
    ctx. hello: the node name to send in hello (None: send none).
    Returns ("ok", FedLink, the node's hello) when the node sends hello
    and, after ours, live (it accepted us), or ("refused", detail) when
    the TLS or WebSocket handshake fails, the connection is closed, or
    hello or live does not come."""
    url = node.fed_url()
    try:
        ws = await websockets.connect(
            url, ssl=ctx, server_hostname=server_name or node.name,
            subprotocols=[FED_SUBPROTOCOL], open_timeout=timeout, close_timeout=2,
            ping_interval=None, max_size=2 ** 24, max_queue=None)
    except (ssl.SSLError, OSError, EOFError, asyncio.TimeoutError,
            websockets.exceptions.WebSocketException) as e:
        return ("refused", "handshake: %s: %s" % (type(e).__name__, e))
    link_ = FedLink(ws)
    if ws.subprotocol != FED_SUBPROTOCOL:
        await link_.close()
        return ("refused", "subprotocol %r" % ws.subprotocol)
    # The node sends its hello at once; it has accepted us when, after our
    # hello, it sends live (its replay is done). A refusal closes instead.
    stage = "hello"
    try:
        if hello is not None:
            await link_.send({"op": "hello", "node": hello, "cursor": None})
        f = await link_.frame("hello", timeout)
        if hello is not None:
            stage = "live"
            await link_.frame("live", timeout)
    except (Failure, ssl.SSLError, OSError, websockets.exceptions.ConnectionClosed) as e:
        code = ws.close_code
        await link_.close()
        return ("refused", "no %s from the node: %s %s (close code %s)"
                % (stage, type(e).__name__, e, code))
    return ("ok", link_, f)


async def wait_closed(link_, timeout=5.0):
    """Waits until the node closes a FedLink (answering pings). Returns
    the close code, or raises Failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            f = await link_.recv(max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            continue
        except (websockets.exceptions.ConnectionClosed, ssl.SSLError, OSError):
            return link_.ws.close_code
        if f.get("op") == "ping":
            try:
                await link_.send({"op": "pong", "t": f.get("t")})
            except websockets.exceptions.ConnectionClosed:
                return link_.ws.close_code
    raise Failure("fake peer link still open after %.1f s" % timeout)


# ---------------------------------------------------------------- fake peer server


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Conn:
    """What a FakePeer saw on one accepted connection."""

    def __init__(self, mode):
        self.mode = mode         # The FakePeer mode it was served with.
        self.t_accept = time.monotonic()
        self.tls = None          # None (not tried), "ok", or the error text.
        self.version = None      # TLS version negotiated.
        self.peer_cert = None    # The client's certificate (getpeercert()).
        self.request = None      # (path, headers) of the upgrade.
        self.hello = None        # The hello frame received.
        self.frames = []         # Every frame received (objects).
        self.t_last_sent = None  # When the fake last wrote anything.
        self.t_closed = None     # When the connection ended.
        self.ended_by = None     # "peer" (EOF/reset) or "us".

    def __repr__(self):
        return "Conn(%s, tls=%r, version=%r, request=%r, hello=%r, closed=%s by %s)" % (
            self.mode, self.tls, self.version, self.request and self.request[0], self.hello,
            None if self.t_closed is None else "%.2fs" % (self.t_closed - self.t_accept),
            self.ended_by)


class FakePeer:
    """A fake peer server on a loopback port, in its own threads.

    mode:
      "tcp_silent"  accept TCP and never answer (not even TLS);
      "tls_silent"  complete TLS, then never write;
      "ws_silent"   complete TLS and the WebSocket upgrade, then never write;
      "hello_then_silent"  also answer hello and live, then never write;
      "peer"        answer hello and live, answer pings with pongs.
    ctx: the server ssl context (server_context()); name: the node name it
    puts in its hello."""

    def __init__(self, ctx=None, mode="peer", name="b.example", port=None):
        self.ctx = ctx
        self.mode = mode
        self.name = name
        self.conns = []
        self._lock = threading.Lock()
        self._socks = []
        self._stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        at_end(self.close)

    def url(self):
        return "wss://127.0.0.1:%d%s" % (self.port, FED_PATH)

    def set(self, ctx=None, mode=None, name=None):
        """Changes what later connections see."""
        if ctx is not None:
            self.ctx = ctx
        if mode is not None:
            self.mode = mode
        if name is not None:
            self.name = name

    def snapshot(self):
        with self._lock:
            return list(self.conns)

    def close(self):
        """Stops listening and ends every connection."""
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def drop_all(self):
        """Ends every open connection (keeps listening)."""
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    async def wait_conns(self, n, timeout=10.0):
        """Waits until at least n connections were accepted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.conns) >= n:
                return self.snapshot()
            await asyncio.sleep(0.02)
        raise Failure("fake peer :%d: %d connections, want %d within %.0f s: %r"
                      % (self.port, len(self.conns), n, timeout, self.snapshot()))

    async def wait_for(self, pred, timeout=10.0, what="a connection"):
        """Waits until some connection satisfies pred(Conn); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for c in self.snapshot():
                if pred(c):
                    return c
            if time.monotonic() >= deadline:
                raise Failure("fake peer :%d: no %s within %.0f s: %r"
                              % (self.port, what, timeout, self.snapshot()))
            await asyncio.sleep(0.02)

    # -- threads

    def _accept_loop(self):
        while not self._stop:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            mode = self.mode
            c = Conn(mode)
            with self._lock:
                self.conns.append(c)
                self._socks.append(s)
            threading.Thread(target=self._serve, args=(s, c, mode, self.ctx, self.name),
                             daemon=True).start()

    def _serve(self, raw, c, mode, ctx, name):
        s = raw
        try:
            if mode == "tcp_silent":
                self._drain(raw, c)
                return
            raw.settimeout(10)
            try:
                s = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                c.tls = "%s: %s" % (type(e).__name__, e)
                c.t_closed = time.monotonic()
                c.ended_by = "tls"
                return
            c.tls = "ok"
            c.version = s.version()
            try:
                c.peer_cert = s.getpeercert()
            except (ssl.SSLError, ValueError):
                c.peer_cert = None
            with self._lock:
                self._socks.append(s)
            if mode == "tls_silent":
                self._drain(s, c)
                return
            buf = self._upgrade(s, c)
            if buf is None:
                return
            if mode == "ws_silent":
                self._drain(s, c)
                return
            self._ws_loop(s, c, buf, mode, name)
        except Exception as e:  # Record, never crash the thread noisily.
            if c.t_closed is None:
                c.t_closed = time.monotonic()
                c.ended_by = "error: %r" % e
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _drain(self, s, c):
        """Reads and discards until EOF; never writes."""
        s.settimeout(None)
        while True:
            try:
                d = s.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (OSError, ssl.SSLError):
                d = b""
            if not d:
                if c.t_closed is None:
                    c.t_closed = time.monotonic()
                    c.ended_by = "peer"
                return

    def _upgrade(self, s, c):
        """Reads the HTTP upgrade and answers 101. Returns bytes read past
        the request, or None when the connection ended."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                d = s.recv(65536)
            except (OSError, ssl.SSLError):
                d = b""
            if not d:
                c.t_closed = time.monotonic()
                c.ended_by = "peer"
                return None
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        c.request = (path, headers)
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                "Sec-WebSocket-Protocol: %s\r\n\r\n" % (accept, FED_SUBPROTOCOL))
        s.sendall(resp.encode())
        c.t_last_sent = time.monotonic()
        return rest

    def _send(self, s, c, opcode, payload):
        s.sendall(wsframe.encode(opcode, payload))
        c.t_last_sent = time.monotonic()

    def _ws_loop(self, s, c, buf, mode, name):
        s.settimeout(None)
        silent = False
        frag = b""
        while True:
            # Parse every complete frame in buf.
            while True:
                f = wsframe.parse(buf)
                if not f:
                    break
                fin, op, payload, buf = f
                if op == 0x8:  # Close: answer it and end.
                    if not silent:
                        try:
                            self._send(s, c, 0x8, payload[:2])
                        except OSError:
                            pass
                    c.t_closed = time.monotonic()
                    c.ended_by = "peer"
                    return
                if op == 0x9:  # WebSocket ping.
                    if not silent:
                        self._send(s, c, 0xA, payload)
                    continue
                if op in (0x1, 0x0):
                    frag += payload
                    if not fin:
                        continue
                    text, frag = frag, b""
                    try:
                        obj = json.loads(text)
                    except ValueError:
                        obj = {"op": "?", "raw": text[:200]}
                    c.frames.append(obj)
                    if silent:
                        continue
                    if obj.get("op") == "hello" and c.hello is None:
                        c.hello = obj
                        self._send(s, c, 0x1, json.dumps({"op": "hello", "node": name, "cursor": None}))
                        self._send(s, c, 0x1, json.dumps({"op": "live"}))
                        if mode == "hello_then_silent":
                            silent = True
                    elif obj.get("op") == "ping":
                        self._send(s, c, 0x1, json.dumps({"op": "pong", "t": obj.get("t")}))
            try:
                d = s.recv(65536)
            except (OSError, ssl.SSLError):
                d = b""
            if not d:
                if c.t_closed is None:
                    c.t_closed = time.monotonic()
                    c.ended_by = "peer"
                return
            buf += d


def tls_handshake(port, ctx, server_name, timeout=5.0):
    """A bare TLS handshake to port with ctx. Returns ("ok", version) or
    ("refused", error text). A TLS 1.3 server refuses a client
    certificate after the client's handshake completes, so a first read
    is tried too."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return ("refused", "%s: %s" % (type(e).__name__, e))
    version = s.version()
    try:
        s.settimeout(0.5)
        s.sendall(b"GET /fed HTTP/1.1\r\nHost: x\r\n\r\n")
        d = s.recv(1)
        if not d:
            return ("refused", "closed after the handshake (%s)" % version)
    except socket.timeout:
        pass
    except (ssl.SSLError, OSError) as e:
        return ("refused", "after the handshake: %s: %s" % (type(e).__name__, e))
    finally:
        s.close()
    return ("ok", version)


# ---------------------------------------------------------------- proxy


class Proxy:
    """A loopback TCP proxy listen_port -> target_port, run by an asyncio
    loop in its own thread (so that blocking harness calls never stall it).

    cut() closes every connection and stops listening (new connections
    are refused); heal() listens again on the same port. blackhole()
    keeps connections open but forwards nothing more and accepts new ones
    without forwarding them (a partition that sends no FIN or RST)."""

    def __init__(self, target_port, port=None):
        self.target = target_port
        self.port = port or pt.free_port()
        self.accepted = 0    # Connections accepted, ever.
        self.closed = 0      # Connections ended (either side), ever.
        self.mode = "forward"
        self._pairs = set()
        self._server = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())
        at_end(self.close)

    def url(self):
        return "wss://127.0.0.1:%d%s" % (self.port, FED_PATH)

    def _call(self, coro, timeout=5.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def open_count(self):
        return len(self._pairs)

    async def _listen(self):
        for _ in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True)
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise Failure("proxy: cannot listen on %d again" % self.port)

    async def _handle(self, r1, w1):
        self.accepted += 1
        if self.mode == "blackhole":
            pair = (w1, None)
            self._pairs.add(pair)
            try:
                while await r1.read(65536):
                    pass
            finally:
                self._end(pair)
            return
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w1.close()
            self.closed += 1
            return
        pair = (w1, w2)
        self._pairs.add(pair)

        async def pump(r, w):
            try:
                while True:
                    d = await r.read(65536)
                    if not d:
                        break
                    if self.mode == "blackhole":
                        continue
                    w.write(d)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                self._end(pair)

        await asyncio.gather(pump(r1, w2), pump(r2, w1))

    def _end(self, pair):
        if pair in self._pairs:
            self._pairs.discard(pair)
            self.closed += 1
            for w in pair:
                if w is not None:
                    try:
                        w.close()
                    except (OSError, RuntimeError):
                        pass

    async def _cut(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop_pairs()

    def cut(self):
        """Resets every connection and stops listening."""
        self.mode = "forward"
        self._call(self._cut())

    async def _drop_pairs(self):
        for pair in list(self._pairs):
            for w in pair:
                if w is not None:
                    try:
                        w.transport.abort()
                    except (OSError, RuntimeError, AttributeError):
                        pass
            self._end(pair)

    def heal(self):
        """Listens again (forwarding). Connections opened during a black
        hole are reset (they would otherwise resume with a gap)."""
        if self.mode == "blackhole":
            self._call(self._drop_pairs())
        self.mode = "forward"
        if self._server is None:
            self._call(self._listen(), timeout=10.0)

    def blackhole(self):
        """Stops forwarding without closing anything."""
        self.mode = "blackhole"

    def close(self):
        try:
            self._call(self._cut())
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)


# ---------------------------------------------------------------- running


def run(scenario, timeout=85.0):
    """Runs the coroutine function scenario() within timeout seconds (see
    parleytest.run: every node is stopped with SIGTERM and must exit 0;
    logs are dumped on failure), then the fake peers, proxies and
    certificate directories are removed."""
    if not os.path.exists(GEN_CERTS):
        print("not ok - %s not found (set PARLEY_SOURCE_DIR)" % GEN_CERTS)
        sys.exit(1)

    def cleanup():
        for fn in reversed(_CLEANUPS):
            try:
                fn()
            except Exception:
                pass

    try:
        pt.run(scenario, timeout)
    except SystemExit as e:
        cleanup()
        if e.code == 0:  # Keep the nodes' directories (logs) on failure.
            for h in pt._HUBS:
                shutil.rmtree(h.dir, ignore_errors=True)
        raise
