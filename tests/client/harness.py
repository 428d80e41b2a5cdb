"""harness.py: shared helpers of the client tests: free ports, a real
parleyd with readiness wait, log dump and TERM-then-KILL cleanup, a TCP
proxy that can cut the link, the scriptable driver (tests/client/driver.c)
with sanitizer checks, and a tiny test runner that prints
"N passed, N failed"."""

import hashlib
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
from freeport import free_port  # noqa: E402,F401 (the tests import it from here)

DRIVER = os.environ.get("PARLEY_DRIVER", "")
CLI = os.environ.get("PARLEY_CLI", "")
PARLEYD = os.environ.get("PARLEYD", "")
SANITIZE = os.environ.get("PARLEY_SANITIZE", "0") in ("1", "ON", "TRUE", "true")

# Sanitizer reports make a child "fail" even when it exited 0.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def child_env(extra=None):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def sanitizer_problems(text):
    return [m for m in SANITIZER_MARKS if m in text]


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


class Hub:
    """One real parleyd on a free loopback port."""

    def __init__(self, tokens=None, anonymous=None, history=100,
                 limits=None, port=None, redis=None, node=None):
        if not PARLEYD or not os.access(PARLEYD, os.X_OK):
            raise TestFailure("PARLEYD is not set to a parleyd binary")
        self.dir = tempfile.mkdtemp(prefix="parley-client-hub-")
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "parleyd.log")
        cfg = {
            "node": node or "client-test.example",
            "listen": {"host": "127.0.0.1", "port": self.port},
            "history": {"length": history},
            "auth": {
                "anonymous": anonymous if anonymous is not None else
                {"subscribe": ["forum/#", "open/#"],
                 "publish": ["forum/#", "open/#"]},
                "tokens": [
                    {"user": user,
                     "token_sha256": hashlib.sha256(tok.encode()).hexdigest(),
                     "subscribe": sub, "publish": pub}
                    for (user, tok, sub, pub) in (tokens or [])
                ],
            },
        }
        if limits:
            cfg["limits"] = limits
        if redis:
            cfg["redis"] = redis
        self.config = os.path.join(self.dir, "parleyd.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.start()

    @property
    def url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([PARLEYD, "-c", self.config],
                                     stdout=self.log, stderr=self.log,
                                     env=child_env({"ASAN_OPTIONS":
                                                    "detect_leaks=0"}))
        if not wait_port(self.port):
            self.dump()
            raise TestFailure("parleyd did not start listening")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def restart(self):
        self.stop()
        self.start()

    def dump(self):
        try:
            with open(self.log_path) as f:
                sys.stderr.write("---- parleyd log ----\n" + f.read()[-4000:])
        except OSError:
            pass

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A throwaway redis-server on a free port, or None if there is none."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="parley-client-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
             self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.close()
            raise TestFailure("redis-server did not start")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A TCP proxy from a free port to target_port that can cut every
    connection and refuse new ones (an outage), then recover."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.up = True
        self.pairs = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    def _accept(self):
        while not self.stopping:
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.1)
                if not r:
                    continue
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                s = socket.create_connection(("127.0.0.1", self.target), 2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.pairs.append((c, s))
            threading.Thread(target=self._pump, args=(c, s),
                             daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 0.2)
                if self.stopping:
                    break
                for x in r:
                    data = x.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if x is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        for x in socks:
            try:
                x.close()
            except OSError:
                pass

    def cut(self):
        """Closes every proxied connection and refuses new ones."""
        self.up = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self):
        self.up = True

    def close(self):
        self.stopping = True
        self.cut()
        self.lsock.close()


class Driver:
    """The scriptable client: commands on stdin, JSON events on stdout."""

    def __init__(self, url, *args, name="driver"):
        if not DRIVER:
            raise TestFailure("PARLEY_DRIVER is not set")
        self.name = name
        self.proc = subprocess.Popen([DRIVER, "-u", url] + list(args),
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env=child_env(), text=True, bufsize=1)
        self.events = []
        self.q = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "garbage", "line": line}
            self.q.put(ev)
        self.q.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def pump(self, timeout=0.0):
        """Moves available events into self.events; waits up to timeout
        for the first one."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            try:
                ev = self.q.get(timeout=max(left, 0.001)) if left > 0 \
                    else self.q.get_nowait()
            except queue.Empty:
                return
            if ev is None:
                return
            self.events.append(ev)
            timeout = 0
            deadline = time.time()

    def wait(self, pred, timeout=10.0, what="event"):
        """Waits for an event matching pred (a function of the event);
        returns it. Already seen events count."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if pred(ev):
                    return ev
            seen = len(self.events)
            left = deadline - time.time()
            if left <= 0:
                raise TestFailure("%s: timed out waiting for %s; events: %s"
                                  % (self.name, what,
                                     json.dumps(self.events[-15:])))
            try:
                ev = self.q.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if ev is None:
                raise TestFailure("%s exited while waiting for %s: %s"
                                  % (self.name, what,
                                     "".join(self.stderr[-30:])))
            self.events.append(ev)

    def wait_ev(self, kind, timeout=10.0, **fields):
        return self.wait(lambda e: e.get("ev") == kind and all(
            e.get(k) == v for k, v in fields.items()), timeout,
            "%s %s" % (kind, fields))

    def of(self, kind, **fields):
        self.pump()
        return [e for e in self.events if e.get("ev") == kind and all(
            e.get(k) == v for k, v in fields.items())]

    def msgs(self, sub=None):
        return [e for e in self.of("msg") if sub is None or e["sub"] == sub]

    def bodies(self, sub=None):
        return [e["body"] for e in self.msgs(sub)]

    def connected(self, timeout=10.0):
        return self.wait_ev("state", timeout, state="connected")

    def quit(self, timeout=20.0, expect_code=0):
        """Ends the driver and checks a clean exit with no sanitizer
        report."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("%s did not exit after quit" % self.name)
        time.sleep(0.05)
        self.pump()
        err = "".join(self.stderr)
        bad = sanitizer_problems(err)
        check(not bad, "%s: sanitizer report: %s\n%s" % (self.name, bad,
                                                          err[-6000:]))
        check(self.proc.returncode == expect_code,
              "%s exited %s (expected %s): %s" % (
                  self.name, self.proc.returncode, expect_code, err[-2000:]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_tests(tests, setup=None):
    """Runs each (name, function) and prints the ctest-readable tally."""
    passed = failed = skipped = 0
    only = os.environ.get("PARLEY_TEST_ONLY")
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.time()
        try:
            r = fn()
            if r == "skip":
                skipped += 1
                print("skip %s" % name, flush=True)
                continue
            passed += 1
            print("ok   %s (%.1fs)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0
