"""clustertest: the harness of parley's cluster scenarios.

Builds on tests/integration/parleytest.py (checks, the parley.v1 client,
HTTP and metrics helpers, the TERM-then-KILL stop with its exit-status and
sanitizer check, the log dump on failure) and adds what cluster mode needs:

- Redis: a redis-server of the scenario's own on a free loopback port, in
  a temporary directory, without persistence (or with an append-only file
  that survives a SIGTERM restart); kill() (SIGKILL), stop() (SIGTERM),
  start() again on the same port; a tiny RESP client (cmd()).
- Instance: a parleyd with a "redis" section pointing at such a Redis,
  with crash() (SIGKILL), restart(), health() and redis_state().
- http_publish()/history(): the HTTP API (burst()/collect() and the
  exact-once checks come from parleytest).
- cursor_key(): the (epoch, seq) order of a cursor ("<epoch>-<seq>", both
  base 36), to check that cursors increase.
- run(): like parleytest.run, and also kills every Redis, checks every
  hub log (SIGKILLed ones too) for sanitizer reports, and dumps the Redis
  logs when a scenario fails.

Environment: PARLEYD (the binary), PARLEY_SOURCE_DIR (the source tree;
default: two levels up), REDIS_SERVER (default: redis-server on PATH).
Run scenarios with /usr/bin/python3 (Debian's python3-websockets is
installed for it only).
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("PARLEY_SOURCE_DIR")
                             or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

import parleytest as pt  # noqa: E402
import websockets  # noqa: E402,F401
import websockets.exceptions  # noqa: E402,F401
from parleytest import Failure, check, check_eq, note  # noqa: E402,F401
from parleytest import burst, check_no_duplicates, check_once_in_order, collect, mids, read_msg_frames  # noqa: E402,F401

NODE = "cluster.example"
USERS = ("alice", "bob", "carol")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")

_REDISES = []
_CLEANUPS = []


def at_end(fn):
    """Registers fn() to run when the scenario ends (pass or fail)."""
    _CLEANUPS.append(fn)
    return fn


# ---------------------------------------------------------------- redis


class RedisError(Exception):
    """An error reply of Redis."""


class Redis:
    """One redis-server on a loopback port of its own.

    persist=False: no RDB, no AOF (a restart loses every key).
    persist=True: no RDB, AOF with appendfsync always in a fixed directory
    (a SIGTERM restart keeps every key)."""

    def __init__(self, persist=False, port=None):
        self.port = port or pt.free_port()
        self.persist = persist
        self.dir = tempfile.mkdtemp(prefix="parley-cl-redis-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.starts = 0
        _REDISES.append(self)

    def argv(self):
        a = [os.environ.get("REDIS_SERVER", "redis-server"),
             "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--dir", self.dir, "--daemonize", "no",
             "--protected-mode", "yes", "--loglevel", "notice"]
        if self.persist:
            a += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            a += ["--appendonly", "no"]
        return a

    def start(self, timeout=10.0):
        """Starts redis-server and waits until PING answers PONG."""
        if self.alive():
            raise Failure("redis :%d: start() while running" % self.port)
        log = open(self.log_path, "ab")
        log.write(("---- clustertest: start %d ----\n" % self.starts).encode())
        log.flush()
        self.starts += 1
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise Failure("redis-server not found: apt-get install -y redis-server")
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("redis-server exited with %s at start:\n%s"
                              % (self.proc.returncode, self.log_tail()))
            try:
                if self.cmd("PING", timeout=1.0) == "PONG":
                    return self
            except (OSError, RedisError) as e:  # LOADING while reading the AOF.
                last = e
            time.sleep(0.05)
        raise Failure("redis-server :%d not ready within %.0f s (%r)" % (self.port, timeout, last))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: every key is lost unless persist (and then only what
        the append-only file holds)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout=10.0):
        """SIGTERM: with persist, the append-only file is complete."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cmd(self, *args, timeout=5.0):
        """Sends one command; returns the decoded reply (str, int, list,
        None) or raises RedisError."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp_read(f)
        finally:
            s.close()

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:].rstrip(b"\r\n")
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RedisError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP line %r" % line)


# ---------------------------------------------------------------- instances


def default_tokens():
    return [pt.user(u, subscribe=["#"], publish=["#"]) for u in USERS]


class Instance(pt.Hub):
    """One parleyd of a cluster: a "redis" section pointing at redis (a
    Redis), node name node, key prefix prefix. Other keyword arguments
    are those of parleytest.make_config."""

    def __init__(self, redis, name="i1", node=NODE, prefix="parley", **kw):
        kw.setdefault("tokens", default_tokens())
        kw.setdefault("anon_sub", ["#"])
        extra = kw.pop("extra", None) or {}
        extra = pt._merge({"redis": {"host": "127.0.0.1", "port": redis.port, "prefix": prefix}},
                          extra)
        super().__init__(node=node, extra=extra, **kw)
        os.rmdir(self.dir)
        self.dir = tempfile.mkdtemp(prefix="parley-cl-%s-" % name)
        self.config_path = os.path.join(self.dir, "parleyd.json")
        self.log_path = os.path.join(self.dir, "parleyd.log")
        self.redis = redis
        self.name = name

    def __repr__(self):
        return "Instance(%s :%d)" % (self.name, self.port)

    async def term_and_restart(self):
        """SIGTERM (checking a clean exit), then start again."""
        self.signal(signal.SIGTERM)
        rc, killed = await self.wait_exit_async(10)
        self.check_exit(rc, killed)
        self.restart()

    def health(self):
        st, _, body = self.get("/healthz", timeout=3.0)
        try:
            return st, json.loads(body.decode())
        except ValueError:
            raise Failure("%s: /healthz is not JSON: %r" % (self.name, body[:200]))

    def redis_state(self):
        _, h = self.health()
        r = h.get("redis")
        return r.get("state") if isinstance(r, dict) else None

    async def wait_redis(self, states=("up",), timeout=10.0):
        """Waits until /healthz redis.state is one of states; returns the
        seconds it took."""
        t0 = time.monotonic()
        seen = None
        while time.monotonic() - t0 < timeout:
            try:
                seen = self.redis_state()
                if seen in states:
                    return time.monotonic() - t0
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise Failure("%s: redis.state %r, not one of %r within %.0f s"
                      % (self.name, seen, states, timeout))

    def metric(self, name, **labels):
        _, samples = self.metrics()
        v = pt.metric_value(samples, name, **labels)
        return 0.0 if v is None else v

    def log_mark(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, mark=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def cluster(redis, n=2, **kw):
    """n Instances i1..in of one node on redis (not started)."""
    return [Instance(redis, name="i%d" % (i + 1), **kw) for i in range(n)]


async def start_all(instances, timeout=10.0):
    for i in instances:
        i.start()
    for i in instances:
        await i.wait_redis(("up",), timeout)
    check(True, "%d instances started on one Redis; /healthz redis.state is up on each"
          % len(instances))


# ---------------------------------------------------------------- clients


async def client(hub, user="alice", name=None):
    return await pt.connect(hub, pt.token_of(user),
                            name=name or "%s@%s" % (user, getattr(hub, "name", hub.port)))


async def subscriber(hub, topics=("forum/#",), user="alice", name=None, **sub):
    if isinstance(topics, str):
        topics = (topics,)
    c = await client(hub, user, name)
    for t in topics:
        await c.sub(t, **sub)
    return c


def http_publish_raw(hub, topic, body, user="bob", timeout=10.0):
    """POST /v1/publish; returns (status, parsed JSON or raw bytes)."""
    st, _, data = pt.http_get(hub.port, "/v1/publish", method="POST",
                              body=json.dumps({"topic": topic, "body": body}),
                              headers={"Authorization": "Bearer " + pt.token_of(user),
                                       "Content-Type": "application/json"},
                              timeout=timeout)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, data


def http_publish(hub, topic, body, user="bob"):
    """POST /v1/publish that must succeed; returns the mid."""
    st, j = http_publish_raw(hub, topic, body, user)
    if st != 200 or not isinstance(j, dict) or not j.get("mid"):
        raise Failure("%s: POST /v1/publish answered %d: %r" % (hub, st, j))
    return j["mid"]


def history_raw(hub, topic, last=None, since=None, user="alice"):
    """GET /v1/history; returns (status, parsed JSON or raw bytes)."""
    q = {"topic": topic}
    if last is not None:
        q["last"] = last
    if since is not None:
        q["since"] = since
    qs = urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="/")
    st, _, data = pt.http_get(hub.port, "/v1/history?" + qs,
                              headers={"Authorization": "Bearer " + pt.token_of(user)})
    try:
        return st, json.loads(data)
    except ValueError:
        return st, data


def history(hub, topic, last=None, since=None, user="alice"):
    st, j = history_raw(hub, topic, last, since, user)
    if st != 200:
        raise Failure("%s: GET /v1/history %s last=%s since=%s answered %d: %r"
                      % (hub, topic, last, since, st, j))
    return j["messages"]


_B36 = re.compile(r"^[0-9a-z]+$")


def cursor_key(cursor):
    """(epoch, seq) of a cursor "<epoch>-<seq>" (base 36), for ordering.
    Raises Failure when the cursor does not have that shape."""
    if not isinstance(cursor, str) or not pt.CURSOR_RE.match(cursor):
        raise Failure("cursor %r is not a [0-9a-z-]+ string" % (cursor,))
    parts = cursor.split("-")
    if len(parts) != 2 or not all(_B36.match(p) for p in parts):
        raise Failure("cursor %r is not <epoch>-<seq>" % (cursor,))
    return int(parts[0], 36), int(parts[1], 36)


def check_cursors_increase(frames, who):
    keys = [cursor_key(f["cursor"]) for f in frames]
    bad = [i for i in range(1, len(keys)) if not keys[i - 1] < keys[i]]
    check(not bad, "%s: cursors strictly increase over %d messages%s"
          % (who, len(keys), "" if not bad else " (not at %d: %s then %s)"
             % (bad[0], frames[bad[0] - 1]["cursor"], frames[bad[0]]["cursor"])))


def topic_match(filt, topic):
    """MQTT-style match of a filter against a concrete topic."""
    fs, ts = filt.split("/"), topic.split("/")
    for i, f in enumerate(fs):
        if f == "#" and i == len(fs) - 1:
            return True
        if i >= len(ts):
            return False
        if f != "+" and f != ts[i]:
            return False
    return len(fs) == len(ts)


def sanitizer_reports():
    """Names of hub logs with a sanitizer report."""
    out = []
    for h in pt._HUBS:
        text = h.log_text()
        found = [m for m in SANITIZER_MARKS if m in text]
        if found:
            out.append("%s (%s): %s" % (getattr(h, "name", h.port), h.log_path, found))
    return out


# ---------------------------------------------------------------- running


def _stop_hubs(failed):
    ok = True
    for h in pt._HUBS:
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


def run(scenario, timeout=85.0):
    """Runs scenario() within timeout seconds, stops every hub (each must
    exit 0 after SIGTERM unless it was crashed on purpose), checks every
    hub log for sanitizer reports, kills every Redis. Exits 0 when
    everything held, 1 otherwise (dumping hub and Redis logs)."""
    start = time.monotonic()
    failed = False
    try:
        asyncio.run(asyncio.wait_for(scenario(), timeout))
    except asyncio.TimeoutError:
        print("not ok - scenario did not finish within %.0f s" % timeout)
        traceback.print_exc(file=sys.stdout)
        failed = True
    except BaseException as e:
        print("not ok - %s: %s" % (type(e).__name__, e))
        traceback.print_exc(file=sys.stdout)
        failed = True
    if not failed:
        failed = not _stop_hubs(False)
    if not failed:
        try:
            reports = sanitizer_reports()
            check(not reports, "no sanitizer report in any hub log (killed ones included)%s"
                  % ("" if not reports else ": " + "; ".join(reports)))
        except Failure as e:
            print("not ok - %s" % e)
            failed = True
    if pt._SOFT_FAILED:
        failed = True
    if failed:
        for h in pt._HUBS:
            if h.proc is not None:
                h.dump_log()
        for r in _REDISES:
            print("---- redis :%d log %s ----" % (r.port, r.log_path))
            print(r.log_tail())
            print("---- end of redis log ----", flush=True)
        _stop_hubs(True)
    for fn in reversed(_CLEANUPS):
        try:
            fn()
        except Exception:
            pass
    for r in _REDISES:
        if failed:
            r.kill()
        else:
            r.cleanup()
    if failed:
        print("FAILED: %d passed, %d failed (%.1f s)"
              % (pt._CHECKS, pt._SOFT_FAILED + (0 if pt._SOFT_FAILED else 1),
                 time.monotonic() - start))
        sys.stdout.flush()
        sys.exit(1)
    for h in pt._HUBS:
        shutil.rmtree(h.dir, ignore_errors=True)
    print("%d passed, 0 failed (%.1f s)" % (pt._CHECKS, time.monotonic() - start))
    sys.stdout.flush()
    sys.exit(0)
