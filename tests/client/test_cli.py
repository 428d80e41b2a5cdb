#!/usr/bin/python3
"""test_cli.py: the `parley` command against a real parleyd: pub/sub
round trip in both output formats, stdin mode (pipe and file), backlog,
-v, and the documented exit codes (0 ok, 1 other, 2 usage, 3 connect,
4 auth, 5 forbidden)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import (CLI, Hub, check, child_env, free_port, run_tests,
                     sanitizer_problems)

ALICE = ("alice", "alice-token", ["#"], ["forum/#", "open/#"])


def cli(*args, stdin=None, env=None, timeout=30):
    """Runs `parley ARGS`; returns (code, stdout, stderr)."""
    p = subprocess.run([CLI] + list(args), input=stdin, capture_output=True,
                       text=True, timeout=timeout, env=child_env(env))
    bad = sanitizer_problems(p.stderr)
    check(not bad, "sanitizer report from parley %s: %s" % (args, p.stderr))
    return p.returncode, p.stdout, p.stderr


class Sub:
    """A running `parley sub`, its output lines collected."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([CLI, "sub"] + list(args),
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env=child_env())
        self.lines = []
        self.err = []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _err(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_lines(self, n, timeout=10):
        deadline = time.time() + timeout
        while len(self.lines) < n and time.time() < deadline:
            time.sleep(0.02)
        check(len(self.lines) >= n, "sub printed %r (wanted %d); err %s"
              % (self.lines, n, "".join(self.err)))
        return self.lines

    def wait_subscribed(self, n=1, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sum("subscribed to" in e for e in self.err) >= n:
                return
            time.sleep(0.02)
        raise AssertionError("not subscribed: %s" % "".join(self.err))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        time.sleep(0.05)
        check(not sanitizer_problems("".join(self.err)),
              "sanitizer report from sub: %s" % "".join(self.err))
        return code


def test_usage_and_help():
    for args in ([], ["bogus"], ["pub"], ["pub", "a", "b", "c"],
                 ["pub", "--nope", "t"], ["pub", "bad/+", "x"],
                 ["sub"], ["sub", "a//b"], ["sub", "--last", "x", "t"],
                 ["sub", "--last", "1", "--since", "c", "t"],
                 ["pub", "-u", "http://x/ws", "t", "1"],
                 ["pub", "--cert", "/etc/hostname", "t", "1"]):
        code, out, err = cli(*args)
        check(code == 2, "%r exits 2, got %d (%s)" % (args, code, err))
        check(err, "%r explains itself" % args)
    for args in (["--help"], ["pub", "--help"], ["sub", "-h"],
                 ["help", "sub"], ["--version"]):
        code, out, err = cli(*args)
        check(code == 0 and out, "%r prints help: %d" % (args, code))
    code, out, _ = cli("pub", "--help")
    check("usage: parley pub" in out and "--url" in out, "pub help")
    code, out, _ = cli("--help")
    check("pub" in out and "sub" in out and "exit" in out.lower(),
          "top help lists commands and exit codes")


def test_connect_failure():
    port = free_port()
    url = "ws://127.0.0.1:%d/ws" % port
    t0 = time.time()
    code, _, err = cli("pub", "-u", url, "t/x", "1")
    check(code == 3, "pub with no hub exits 3, got %d" % code)
    check("connect" in err, "says it cannot connect: %s" % err)
    check(time.time() - t0 < 10, "fails fast")
    code, _, err = cli("sub", "-u", url, "t/x")
    check(code == 3, "sub with no hub exits 3, got %d" % code)
    code, _, err = cli("pub", "-u", "wss://127.0.0.1:%d/ws" % port,
                       "--ca", "/nonexistent.pem", "t", "1")
    check(code == 3, "unreadable CA exits 3, got %d: %s" % (code, err))


def test_round_trip_and_formats():
    hub = Hub(tokens=[ALICE])
    try:
        s = Sub("-v", "-u", hub.url, "forum/#")
        j = Sub("-v", "-u", hub.url, "--json", "forum/+")
        s.wait_subscribed()
        j.wait_subscribed()
        code, out, err = cli("pub", "-v", "-u", hub.url, "-T",
                             "alice-token", "forum/a", '{"k": [1, 2]}')
        check(code == 0, "pub exits 0: %s" % err)
        mid = out.strip()
        check(mid, "-v prints the mid")
        code, out, err = cli("pub", "-u", hub.url, "forum/b",
                             "two\nlines\x1b[31m")
        check(code == 0 and out == "", "quiet without -v: %r" % out)
        lines = s.wait_lines(2)
        check(lines[0].endswith(
            " client-test.example alice@client-test.example forum/a: "
            '{"k":[1,2]}'), "human format: %r" % lines[0])
        check(lines[1].endswith("forum/b: two\\nlines\\x1b[31m"),
              "string body, control characters escaped: %r" % lines[1])
        jl = j.wait_lines(2)
        o = json.loads(jl[0])
        check(o["mid"] == mid and o["topic"] == "forum/a" and
              o["body"] == {"k": [1, 2]} and o["origin"] and o["cursor"]
              and o["from"] == "alice@client-test.example" and o["ts"] > 0,
              "json format: %r" % o)
        check(json.loads(jl[1])["body"] == "two\nlines\x1b[31m",
              "json string body intact")
        check(s.stop() == 0 and j.stop() == 0, "sub exits 0 on SIGTERM")
    finally:
        hub.close()


def test_stdin_modes_and_backlog():
    hub = Hub()
    try:
        s = Sub("-v", "-u", hub.url, "--json", "open/in")
        s.wait_subscribed()
        code, out, err = cli("pub", "-v", "-u", hub.url, "open/in",
                             stdin='one\n{"n":2}\n\n  3  \r\nlast')
        check(code == 0, "stdin pub exits 0: %s" % err)
        check(len(out.split()) == 4, "4 mids with -v: %r" % out)
        bodies = [json.loads(x)["body"] for x in s.wait_lines(4)]
        check(bodies == ["one", {"n": 2}, 3, "last"],
              "one message per line, empty skipped: %r" % bodies)
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("".join("line %d\n" % i for i in range(200)))
            path = f.name
        with open(path) as f:
            p = subprocess.run([CLI, "pub", "-u", hub.url, "-s", "open/in"],
                               stdin=f, capture_output=True, text=True,
                               timeout=60, env=child_env())
        os.unlink(path)
        check(p.returncode == 0, "pub from a file: %s" % p.stderr)
        lines = s.wait_lines(204)
        check([json.loads(x)["body"] for x in lines[4:]] ==
              ["line %d" % i for i in range(200)], "file lines in order")
        s.stop()
        # Backlog with --last.
        code, out, err = cli("pub", "-u", hub.url, "-s", "open/in", "42")
        check(code == 0, "string pub")
        b = Sub("-u", hub.url, "--json", "--last", "3", "open/in")
        lines = b.wait_lines(3)
        check([json.loads(x)["body"] for x in lines] ==
              ["line 198", "line 199", "42"], "--last 3: %r" % lines)
        b.stop()
    finally:
        hub.close()


def test_tail_f_pipe():
    """`tail -f log | parley pub topic`: lines are published as they
    come, while the input stays open."""
    hub = Hub()
    try:
        s = Sub("-v", "-u", hub.url, "--json", "open/tail")
        s.wait_subscribed()
        p = subprocess.Popen([CLI, "pub", "-u", hub.url, "open/tail"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=child_env())
        p.stdin.write("first\n")
        p.stdin.flush()
        s.wait_lines(1)
        p.stdin.write("second\n")
        p.stdin.flush()
        s.wait_lines(2)
        p.stdin.close()
        check(p.wait(15) == 0, "exits 0 at the end of input")
        err = p.stderr.read()
        check(not sanitizer_problems(err), err)
        check([json.loads(x)["body"] for x in s.lines] ==
              ["first", "second"], "streamed")
        s.stop()
    finally:
        hub.close()


def test_auth_and_forbidden_codes():
    hub = Hub(tokens=[ALICE], anonymous={"subscribe": ["open/#"],
                                         "publish": ["open/#"]})
    try:
        code, _, err = cli("pub", "-u", hub.url, "-T", "nope", "open/a", "1")
        check(code == 4, "bad token exits 4, got %d: %s" % (code, err))
        code, _, err = cli("pub", "-u", hub.url, "open/a", "1",
                           env={"PARLEY_TOKEN": "nope"})
        check(code == 4, "bad $PARLEY_TOKEN exits 4, got %d" % code)
        code, _, err = cli("sub", "-u", hub.url, "-T", "nope", "open/a")
        check(code == 4, "sub with a bad token exits 4, got %d" % code)
        code, _, err = cli("pub", "-u", hub.url, "secret/a", "1")
        check(code == 5, "forbidden pub exits 5, got %d: %s" % (code, err))
        check("secret/a" in err, "names the topic: %s" % err)
        code, _, err = cli("sub", "-u", hub.url, "secret/#")
        check(code == 5, "forbidden sub exits 5, got %d: %s" % (code, err))
        code, _, err = cli("pub", "-u", hub.url, "-T", "alice-token",
                           "open/a", "1")
        check(code == 0, "alice may publish: %s" % err)
        # One forbidden line among good ones: the rest still go, exit 5.
        code, out, err = cli("pub", "-u", hub.url, "-T", "alice-token",
                             "forum/x", stdin="a\nb\n")
        check(code == 0, "alice forum: %d %s" % (code, err))
        code, _, err = cli("pub", "-u", hub.url, "forum/x", stdin="a\nb\n")
        check(code == 5, "anonymous stdin forbidden: %d" % code)
    finally:
        hub.close()


TESTS = [(f.__name__, f) for f in (
    test_usage_and_help, test_connect_failure, test_round_trip_and_formats,
    test_stdin_modes_and_backlog, test_tail_f_pipe,
    test_auth_and_forbidden_codes)]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
