"""parleytest: the harness of parley's integration scenarios.

Starts a real `parleyd` on a free loopback port with a config written to a
temporary directory, waits until `GET /healthz` answers 200, and stops it
with SIGTERM (then SIGKILL after a timeout), checking that it exits 0. The
hub's stderr goes to a log file that is printed when a scenario fails.

Also: a parley.v1 client on top of Debian's python3-websockets (10.x, asyncio
API), a raw WebSocket socket for frames no library would send, HTTP helpers,
and check() which prints each check as it passes.

Run scenarios with /usr/bin/python3 (python3-websockets is installed for the
system interpreter only). The parleyd binary is taken from $PARLEYD, or from
the first command-line argument, or from a build directory of the tree.
"""

import asyncio
import base64
import copy
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import websockets
import websockets.exceptions

import wsframe
from freeport import free_port  # noqa: F401 (tests call pt.free_port)

NODE = "test.example"
SUBPROTOCOL = "parley.v1"
CURSOR_RE = re.compile(r"^[0-9a-z-]+$")

# Every hub started by this process, so a failing scenario can dump their
# logs and none is left running.
_HUBS = []
_CHECKS = 0


class Failure(Exception):
    """A check that did not hold."""


# ---------------------------------------------------------------- checks


# PARLEY_IT_SOFT=1 makes a failed check() print "not ok" and go on (the
# scenario still exits 1): useful to see every failure of a run at once.
_SOFT = os.environ.get("PARLEY_IT_SOFT") == "1"
_SOFT_FAILED = 0


def check(cond, what):
    """Raises Failure(what) unless cond; otherwise prints 'ok - what'."""
    global _CHECKS, _SOFT_FAILED
    if not cond:
        if not _SOFT:
            raise Failure(what)
        _SOFT_FAILED += 1
        print("not ok - %s" % what, flush=True)
        return
    _CHECKS += 1
    print("ok %d - %s" % (_CHECKS, what), flush=True)


def check_eq(got, want, what):
    """check() that got == want, showing both when it fails."""
    if got != want:
        check(False, "%s: got %r, want %r" % (what, got, want))
        return
    check(True, what)


def note(text):
    """Prints an informational line (not a check)."""
    print("# " + text, flush=True)


# ---------------------------------------------------------------- basics


def sha256_hex(token):
    """Returns the lowercase hex SHA-256 of a token (str or bytes)."""
    if isinstance(token, str):
        token = token.encode()
    return hashlib.sha256(token).hexdigest()


def token_of(user):
    """The plain token the harness gives a user (see user())."""
    return "tok-%s-secret" % user


def user(name, subscribe=("#",), publish=("#",), token=None):
    """Returns one auth.tokens entry; the plain token is token_of(name)
    unless given."""
    return {
        "user": name,
        "token_sha256": sha256_hex(token if token is not None else token_of(name)),
        "subscribe": list(subscribe),
        "publish": list(publish),
    }


def parleyd_path():
    """Finds the parleyd binary: $PARLEYD, argv[1], or a build dir."""
    p = os.environ.get("PARLEYD")
    if not p and len(sys.argv) > 1:
        p = sys.argv[1]
    if not p:
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        for b in ("build-it", "build", "build-asan"):
            c = os.path.join(root, b, "server", "parleyd")
            if os.path.exists(c):
                p = c
                break
    if not p or not os.access(p, os.X_OK):
        raise Failure("parleyd not found: set PARLEYD=/path/to/parleyd (got %r)" % p)
    return os.path.abspath(p)


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


# Limits generous enough that a scenario only meets the one it tests.
DEFAULT_LIMITS = {
    "max_frame_bytes": 65536,
    "max_subscriptions": 256,
    "max_queue_bytes": 4194304,
    "publish_per_second": 10000,
    "publish_burst": 10000,
    "token_publish_per_second": 10000,
    "max_connections": 256,
    "max_errors": 100,
}


def make_config(port, node=NODE, history=100, tokens=(), anon_sub=("forum/#",),
                anon_pub=(), limits=None, log_level="info", presence=(), extra=None):
    """Returns a config dict with the keys of DESIGN.md "Configuration".
    Presence is off unless presence= gives its topic filters, so that
    scenarios about other things see only the frames they expect."""
    cfg = {
        "node": node,
        "listen": {"host": "127.0.0.1", "port": port},
        "history": {"length": history},
        "auth": {
            "anonymous": {"subscribe": list(anon_sub), "publish": list(anon_pub)},
            "tokens": list(tokens),
        },
        "limits": dict(DEFAULT_LIMITS),
        "presence": {"topics": list(presence)},
        "log_level": log_level,
    }
    if limits:
        cfg["limits"].update(limits)
    if extra:
        _merge(cfg, extra)
    return cfg


# ---------------------------------------------------------------- the hub


class Hub:
    """One parleyd process. Keyword arguments are those of make_config."""

    def __init__(self, **kw):
        self.port = free_port()
        kw.setdefault("node", NODE)
        self.node = kw["node"]
        self.config = make_config(self.port, **kw)
        self.dir = tempfile.mkdtemp(prefix="parley-it-")
        self.config_path = os.path.join(self.dir, "parleyd.json")
        self.log_path = os.path.join(self.dir, "parleyd.log")
        self.proc = None
        self.exit_checked = False
        self.terms_sent = 0  # SIGTERM/SIGINT sent by the harness.
        self._log = None
        _HUBS.append(self)

    # -- lifecycle

    def write_config(self, cfg=None, raw=None):
        """Writes cfg (a dict) or raw text as the config file."""
        text = raw if raw is not None else json.dumps(cfg or self.config, indent=2)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, timeout=10.0):
        """Starts parleyd and waits until /healthz answers 200."""
        self.write_config()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [parleyd_path(), "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.exit_checked = False
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("parleyd exited with %s before it was ready"
                              % self.proc.returncode)
            try:
                st, _, _ = http_get(self.port, "/healthz", timeout=1.0)
                if st == 200:
                    return self
                last = "status %d" % st
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise Failure("parleyd not ready after %.0f s (%s)" % (timeout, last))

    def signal(self, sig):
        """Sends a signal to the running hub."""
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.terms_sent += 1
        self.proc.send_signal(sig)

    def reload(self, cfg=None, raw=None):
        """Writes a new config (dict or raw text) and sends SIGHUP."""
        if cfg is not None:
            self.config = cfg
        self.write_config(cfg, raw)
        self.signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=10.0):
        """Waits (blocking) for the process; SIGKILLs it after timeout.
        Returns (returncode, killed)."""
        try:
            return self.proc.wait(timeout), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5), True

    async def wait_exit_async(self, timeout=10.0):
        """Like wait_exit, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return rc, False
            await asyncio.sleep(0.05)
        self.proc.kill()
        return self.proc.wait(5), True

    def check_exit(self, rc, killed):
        """Checks a clean exit after SIGTERM."""
        self.exit_checked = True
        check(not killed, "parleyd exited by itself after SIGTERM (not killed)")
        check_eq(rc, 0, "parleyd exit status after SIGTERM")
        log = self.log_text()
        found = [b for b in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if b in log]
        check(not found, "no sanitizer report in the hub's log %s" % (found or ""))

    def stop(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL after timeout; checks exit status 0."""
        if self.proc is None or self.exit_checked:
            return
        if self.proc.poll() is not None:
            self.exit_checked = True
            raise Failure("parleyd died unexpectedly with status %s"
                          % self.proc.returncode)
        self.signal(signal.SIGTERM)
        rc, killed = self.wait_exit(timeout)
        self.check_exit(rc, killed)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def crash(self):
        """SIGKILL; the harness no longer expects a clean exit from this
        run (restart() starts a new one)."""
        self.kill()
        self.exit_checked = True

    def restart(self, timeout=10.0):
        """Starts again with the same config, port and log (and state
        files, which live in the same directory)."""
        if self.alive():
            raise Failure("%r (port %d): restart() while running" % (self, self.port))
        with open(self.log_path, "ab") as f:
            f.write(b"---- restart ----\n")
        return self.start(timeout)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def dump_log(self, lines=300):
        text = self.log_text().splitlines()
        print("---- parleyd log %s (last %d of %d lines) ----"
              % (self.log_path, min(lines, len(text)), len(text)))
        for ln in text[-lines:]:
            print(ln)
        print("---- end of log ----", flush=True)
        if self.terms_sent == 0 and re.search(r"signal=(15|2)\b", self.log_text()):
            print("# NOTE: this hub got a SIGTERM/SIGINT the harness did not send: "
                  "another process on this machine killed it (e.g. pkill parleyd)", flush=True)

    # -- addresses

    def url(self, path="/ws", token=None):
        u = "ws://127.0.0.1:%d%s" % (self.port, path)
        if token is not None:
            u += "?token=" + token
        return u

    def who(self, name):
        """user@node for a user of this hub."""
        return "%s@%s" % (name, self.node)

    # -- helpers over HTTP

    def get(self, path, timeout=5.0):
        return http_get(self.port, path, timeout)

    def metrics(self):
        """Returns {name: total over its label sets} and the raw samples."""
        st, _, body = self.get("/metrics")
        if st != 200:
            raise Failure("/metrics answered %d" % st)
        return parse_metrics(body.decode())


# ---------------------------------------------------------------- HTTP


def http_get(port, path, timeout=5.0, method="GET", body=None, headers=None):
    """Returns (status, headers dict lowercased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Parses Prometheus text. Returns (totals, samples): totals maps a
    metric name to the sum of its samples; samples is a list of
    (name, {label: value}, float)."""
    totals, samples = {}, []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise Failure("bad metrics line: %r" % line)
        name, labels, value = m.group(1), dict(_LABEL_RE.findall(m.group(3) or "")), float(m.group(4))
        samples.append((name, labels, value))
        totals[name] = totals.get(name, 0.0) + value
    return totals, samples


def metric_value(samples, name, **labels):
    """Sum of the samples of name whose labels include labels."""
    total, seen = 0.0, False
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == w for k, w in labels.items()):
            total += v
            seen = True
    return total if seen else None


# ---------------------------------------------------------------- client


class Client:
    """A parley.v1 connection over websockets' asyncio client."""

    def __init__(self, ws, name="client"):
        self.ws = ws
        self.name = name
        self.inbox = []  # Frames read while waiting for something else.
        self._n = 0

    async def send(self, obj):
        """Sends a dict as JSON, or str/bytes as they are."""
        if isinstance(obj, (dict, list)):
            obj = json.dumps(obj, ensure_ascii=False)
        await self.ws.send(obj)

    async def _read(self, timeout):
        try:
            data = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise Failure("%s: nothing received within %.1f s" % (self.name, timeout))
        if isinstance(data, bytes):
            raise Failure("%s: hub sent a binary frame" % self.name)
        try:
            obj = json.loads(data)
        except ValueError:
            raise Failure("%s: hub sent non-JSON text %r" % (self.name, data[:200]))
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise Failure("%s: hub frame is not an object with op: %r" % (self.name, data[:200]))
        return obj

    async def recv(self, timeout=5.0):
        """Returns the next frame (oldest buffered one first)."""
        if self.inbox:
            return self.inbox.pop(0)
        return await self._read(timeout)

    async def request(self, op, timeout=5.0, id=None, **fields):
        """Sends {op, id, fields...} and waits for the answer with that id.
        Returns (answer, backlog): for a sub, backlog is the msg frames
        read while waiting (they come before the ok); for other ops it is
        [] and such frames stay in the inbox for msgs(). Other frames go
        to the inbox."""
        if id is None:
            self._n += 1
            id = "%s-%d" % (self.name, self._n)
        req = {"op": op, "id": id}
        req.update(fields)
        await self.send(req)
        ans, msgs = await self.wait_answer(id, timeout)
        if op != "sub":
            self.inbox.extend(msgs)
            msgs = []
        return ans, msgs

    async def wait_answer(self, id, timeout=5.0):
        """Reads until the answer with this id. Returns (answer, msg
        frames read meanwhile); other frames go to the inbox."""
        for f in self.inbox:
            if f.get("op") != "msg" and "id" in f and f["id"] == id:
                self.inbox.remove(f)
                return f, []
        msgs = []
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            f = await self._read(left)
            if f["op"] != "msg" and "id" in f and f["id"] == id and type(f["id"]) is type(id):
                return f, msgs
            if f["op"] == "msg":
                msgs.append(f)
            else:
                self.inbox.append(f)
        raise Failure("%s: no answer to id %r within %.1f s" % (self.name, id, timeout))

    async def ok(self, op, **fields):
        """request() that must be answered with ok (or pong for ping)."""
        ans, msgs = await self.request(op, **fields)
        want = "pong" if op == "ping" else "ok"
        if ans.get("op") != want:
            raise Failure("%s: %s %r answered %r" % (self.name, op, fields, ans))
        return ans, msgs

    async def error(self, op, code, **fields):
        """request() that must be answered with an error of this code."""
        ans, _ = await self.request(op, **fields)
        if ans.get("op") != "error" or ans.get("code") != code:
            raise Failure("%s: %s %r: want error %s, got %r" % (self.name, op, fields, code, ans))
        return ans

    async def sub(self, topic, **fields):
        """Subscribes; returns the backlog."""
        _, msgs = await self.ok("sub", topic=topic, **fields)
        return msgs

    async def pub(self, topic, body, **fields):
        """Publishes; returns the mid."""
        ans, _ = await self.ok("pub", topic=topic, body=body, **fields)
        if not isinstance(ans.get("mid"), str) or not ans["mid"]:
            raise Failure("%s: pub ok without mid: %r" % (self.name, ans))
        return ans["mid"]

    async def alive(self):
        """Checks that the connection still answers a ping."""
        await self.ok("ping")

    async def msgs(self, n, timeout=5.0):
        """Returns the next n msg frames; other frames go to the inbox."""
        out, keep = [], []
        for f in self.inbox:
            if f["op"] == "msg" and len(out) < n:
                out.append(f)
            else:
                keep.append(f)
        self.inbox = keep
        deadline = time.monotonic() + timeout
        extra = []
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: got %d of %d msg frames within %.1f s"
                              % (self.name, len(out), n, timeout))
            f = await self._read(left)
            if f["op"] == "msg":
                out.append(f)
            else:
                extra.append(f)
        self.inbox.extend(extra)
        return out

    async def frame(self, op, timeout=5.0):
        """Returns the next frame with this op (others are kept)."""
        for f in self.inbox:
            if f["op"] == op:
                self.inbox.remove(f)
                return f
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: no %s frame within %.1f s" % (self.name, op, timeout))
            f = await self._read(left)
            if f["op"] == op:
                return f
            self.inbox.append(f)

    async def silence(self, duration=0.3):
        """Fails when any frame arrives within duration seconds."""
        if self.inbox:
            raise Failure("%s: unexpected frame %r" % (self.name, self.inbox[0]))
        try:
            data = await asyncio.wait_for(self.ws.recv(), duration)
        except asyncio.TimeoutError:
            return
        raise Failure("%s: unexpected frame %r" % (self.name, data[:300]))

    async def closed(self, timeout=5.0):
        """Waits for the hub to close the connection, reading (and
        keeping) frames meanwhile. Returns the close code (None if none)."""
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: still open after %.1f s" % (self.name, timeout))
            try:
                data = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except websockets.exceptions.ConnectionClosed:
                break
            if isinstance(data, str):
                try:
                    self.inbox.append(json.loads(data))
                except ValueError:
                    pass
        return self.ws.close_code

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            pass


async def connect(hub, token=None, via="header", name="client", path="/ws",
                  subprotocols=(SUBPROTOCOL,), max_size=2 ** 24, timeout=5.0):
    """Opens a parley.v1 connection to hub. via: "header" sends the token
    as Authorization: Bearer, "query" as ?token=. Raises
    websockets.exceptions.InvalidStatusCode when refused."""
    headers = {}
    url = hub.url(path)
    if token is not None:
        if via == "header":
            headers["Authorization"] = "Bearer " + token
        else:
            url = hub.url(path, token)
    ws = await websockets.connect(
        url, subprotocols=list(subprotocols), extra_headers=headers,
        open_timeout=timeout, close_timeout=2, ping_interval=None,
        max_size=max_size, max_queue=None)
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise Failure("hub did not select subprotocol parley.v1 (got %r)" % ws.subprotocol)
    return Client(ws, name)


async def refused_status(hub, **kw):
    """Tries to connect; returns the HTTP status of the refusal, or fails
    when the handshake succeeds."""
    try:
        c = await connect(hub, **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    except websockets.exceptions.InvalidHandshake as e:
        return str(e)
    await c.close()
    raise Failure("handshake accepted but should have been refused: %r" % (kw,))


# ---------------------------------------------------------------- raw ws


# ---------------------------------------------------------------- many messages


async def burst(c, topic, n, tag, body=None, timeout=30.0):
    """Publishes n messages pipelined (all sent before the answers are
    read). Returns their mids in order. Each body is {"tag","seq"} unless
    body(i) is given; topic may be a function of i."""
    ids = ["%s-%d" % (tag, i) for i in range(n)]
    for i, rid in enumerate(ids):
        b = body(i) if body else {"tag": tag, "seq": i}
        t = topic(i) if callable(topic) else topic
        await c.send({"op": "pub", "id": rid, "topic": t, "body": b})
    mids = []
    for rid in ids:
        ans, _ = await c.wait_answer(rid, timeout=timeout)
        if ans.get("op") != "ok" or not ans.get("mid"):
            raise Failure("%s: pub %s answered %r" % (c.name, rid, ans))
        mids.append(ans["mid"])
    return mids


async def read_msg_frames(c, until, timeout, quiet=0.5):
    """Reads msg frames (inbox first) until until(frames) holds, then for
    quiet more seconds. Returns every msg frame read in order; other
    frames go to the inbox."""
    got = [f for f in c.inbox if f.get("op") == "msg"]
    c.inbox = [f for f in c.inbox if f.get("op") != "msg"]
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            return got, False
        try:
            data = await asyncio.wait_for(c.ws.recv(), min(left, 1.0))
        except asyncio.TimeoutError:
            continue
        f = json.loads(data)
        (got if f.get("op") == "msg" else c.inbox).append(f)
    end = time.monotonic() + quiet
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            data = await asyncio.wait_for(c.ws.recv(), left)
        except asyncio.TimeoutError:
            break
        f = json.loads(data)
        (got if f.get("op") == "msg" else c.inbox).append(f)
    return got, True


async def collect(c, mids, timeout=20.0, quiet=0.5):
    """Reads msg frames until every mid in mids has arrived, then for
    quiet more seconds. Returns every msg frame read, in arrival order."""
    want = set(mids)
    got, done = await read_msg_frames(
        c, lambda g: want.issubset({f["mid"] for f in g}), timeout, quiet)
    if not done:
        missing = want - {f["mid"] for f in got}
        raise Failure("%s: %d of %d messages missing after %.0f s (e.g. %s)"
                      % (c.name, len(missing), len(want), timeout, sorted(missing)[:3]))
    return got


def mids(frames):
    """The mids of msg frames, in order."""
    return [f["mid"] for f in frames]


def check_once_in_order(frames, mids, who):
    """frames hold each of mids exactly once and in that order (other
    messages may be interleaved)."""
    ms = set(mids)
    seq = [f["mid"] for f in frames if f["mid"] in ms]
    dups = len(seq) - len(set(seq))
    check(dups == 0, "%s: each of the %d messages arrived once (%d duplicates)"
          % (who, len(mids), dups))
    check(seq == list(mids), "%s: the %d messages arrived in the order they were published" % (who, len(mids)))


def check_no_duplicates(frames, who):
    mids = [f["mid"] for f in frames]
    check_eq(len(mids) - len(set(mids)), 0, "%s: no message arrived twice (of %d)" % (who, len(mids)))


class RawWS:
    """A WebSocket client written by hand over a blocking socket, to send
    frames that a library refuses to produce."""

    def __init__(self, port, path="/ws", protocols=(SUBPROTOCOL,), headers=None,
                 rcvbuf=None, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline or len(self.buf) > 65536:
                raise Failure("no complete handshake response")
            try:
                d = self.sock.recv(4096)
            except socket.timeout:
                raise Failure("handshake response timed out")
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        hl = head.decode("latin-1").split("\r\n")
        parts = hl[0].split(" ", 2) if hl and hl[0] else ["", "0"]
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self.status = 0  # Connection closed without an answer.
        self.headers = {}
        for ln in hl[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, masked=True,
                   declared_len=None):
        """Sends one frame. declared_len overrides the length field (the
        payload is sent as given)."""
        self.sock.sendall(wsframe.encode(opcode, payload, fin=fin, rsv=rsv,
                                         masked=masked,
                                         declared_len=declared_len))

    def send_text(self, text):
        self.send_frame(0x1, text)

    def send_json(self, obj):
        self.send_frame(0x1, json.dumps(obj))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            d = self.sock.recv(65536)
            if not d:
                return False
            self.buf += d
        return True

    def recv_frame(self, timeout=5.0):
        """Returns (fin, opcode, payload), or None at end of stream.
        Raises socket.timeout."""
        deadline = time.monotonic() + timeout
        while True:
            f = wsframe.parse(self.buf)
            if f:
                fin, op, payload, self.buf = f
                return fin, op, payload
            if not self._need(len(self.buf) + 1, deadline):
                return None

    def recv_json(self, timeout=5.0):
        """Returns the next text frame as an object (skips control frames)."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                raise Failure("raw: connection ended")
            if f[1] == 0x1:
                return json.loads(f[2])
            if f[1] == 0x8:
                raise Failure("raw: closed with %r" % (f[2][:2],))
        raise Failure("raw: no text frame")

    def wait_end(self, timeout=5.0):
        """Reads (and drops) frames until the hub ends the connection.
        Returns (kind, code, drained): kind is "close" (code from the
        close frame, or None), "eof", "reset", "error" (another socket
        error) or "open" (still open after timeout); drained counts the
        other frames read on the way."""
        deadline = time.monotonic() + timeout
        drained = 0
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                f = self.recv_frame(left)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                return "reset", None, drained
            except OSError:
                return "error", None, drained
            if f is None:
                return "eof", None, drained
            if f[1] == 0x8:
                code = struct.unpack("!H", f[2][:2])[0] if len(f[2]) >= 2 else None
                return "close", code, drained
            drained += 1
        return "open", None, drained

    def close_code(self, timeout=5.0):
        """Reads until a close frame or the end of the stream. Returns
        ("close", code or None) or ("eof", None); raises Failure when
        the connection is still open after timeout."""
        kind, code, _ = self.wait_end(timeout)
        if kind == "error":
            raise Failure("raw: socket error while waiting for the close")
        if kind == "reset":
            return "eof", None
        if kind == "open":
            raise Failure("raw: connection still open after %.1f s" % timeout)
        return kind, code

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- running


def _cleanup(failed):
    """Stops every hub still running; returns False if one fails its exit
    check."""
    ok = True
    for h in _HUBS:
        if h.proc is None:
            continue
        if failed:
            h.kill()
            continue
        try:
            h.stop()
        except Failure as e:
            print("not ok - %s" % e, flush=True)
            ok = False
    return ok


def run(scenario, timeout=55.0):
    """Runs the coroutine function scenario() within timeout seconds, then
    stops every hub it started (checking each exits 0). Exits the process
    with 0 when everything held, 1 otherwise, dumping the hubs' logs."""
    start = time.monotonic()
    failed = False
    try:
        asyncio.run(asyncio.wait_for(scenario(), timeout))
    except asyncio.TimeoutError:
        print("not ok - scenario did not finish within %.0f s" % timeout)
        traceback.print_exc(file=sys.stdout)
        failed = True
    except BaseException as e:  # Report everything, including Failure.
        print("not ok - %s: %s" % (type(e).__name__, e))
        traceback.print_exc(file=sys.stdout)
        failed = True
    if not failed:
        failed = not _cleanup(False)
    if _SOFT_FAILED:
        failed = True
    if failed:
        for h in _HUBS:
            if h.proc is not None:
                h.dump_log()
        _cleanup(True)
        print("FAILED: %d passed, %d failed (%.1f s)"
              % (_CHECKS, _SOFT_FAILED + (0 if _SOFT_FAILED else 1), time.monotonic() - start))
        sys.stdout.flush()
        sys.exit(1)
    for h in _HUBS:  # Logs are kept only when something failed.
        shutil.rmtree(h.dir, ignore_errors=True)
    print("%d passed, 0 failed (%.1f s)" % (_CHECKS, time.monotonic() - start))
    sys.stdout.flush()
    sys.exit(0)
