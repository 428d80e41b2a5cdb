#!/usr/bin/python3
"""13_config: the command line and the config file: --check, errors that
name the key and the line, a bad config or a busy port refusing to start,
--hash-token agreeing with the harness's sha256."""
import json
import os
import shutil
import socket
import subprocess
import tempfile

import parleytest as pt
from parleytest import check, check_eq


def run(args, stdin=None, timeout=10):
    p = subprocess.run([pt.parleyd_path()] + args, input=stdin, capture_output=True,
                       timeout=timeout, text=True)
    return p.returncode, p.stdout + p.stderr


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


async def scenario():
    d = tempfile.mkdtemp(prefix="parley-it-cfg-")
    good = pt.make_config(pt.free_port(), tokens=[pt.user("alice")])
    gp = write(d, "good.json", json.dumps(good, indent=2))
    rc, out = run(["--check", "-c", gp])
    check_eq(rc, 0, "--check accepts the harness's full config (%s)" % out.strip())
    minimal = write(d, "min.json", '{"node": "min.example", "listen": {"host": "127.0.0.1", "port": 8080}}')
    rc, out = run(["--check", "-c", minimal])
    check_eq(rc, 0, "--check accepts a config with only node and listen")

    # Errors name the key and the line.
    base = '{\n  "node": "x.example",\n  "listen": {"host": "127.0.0.1", "port": 8080},\n%s\n}\n'
    cases = [
        ("an unknown key", '  "bogus": 1', "bogus", 4),
        ("a wrong type", '  "limits": {"max_frame_bytes": "big"}', "limits.max_frame_bytes", 4),
        ("a value out of bounds", '  "limits": {"max_frame_bytes": 1}', "limits.max_frame_bytes", 4),
        ("an unknown nested key", '  "auth": {"anonymous": {"subscribe": [], "write": []}}', "write", 4),
        ("an invalid pattern", '  "auth": {"anonymous": {"subscribe": ["a/#/b"]}}', "auth.anonymous.subscribe", 4),
        ("a bad token hash", '  "auth": {"tokens": [{"user": "u", "token_sha256": "abc"}]}', "token_sha256", 4),
        ("a bad log level", '  "log_level": "loud"', "log_level", 4),
    ]
    for what, line, key, lineno in cases:
        p = write(d, "bad.json", base % line)
        rc, out = run(["--check", "-c", p])
        check(rc != 0, "--check refuses %s (exit %d)" % (what, rc))
        check(key in out and (":%d" % lineno) in out,
              "... and the message names %s and line %d: %r" % (key, lineno, out.strip()[:150]))
    for what, text in (("a missing node", '{"listen": {"host": "127.0.0.1", "port": 8080}}'),
                       ("broken JSON", '{"node": "x.example", '),
                       ("an empty file", ""),
                       ("a JSON array", "[]")):
        p = write(d, "bad.json", text)
        rc, out = run(["--check", "-c", p])
        check(rc != 0 and out.strip(), "--check refuses %s: %r" % (what, out.strip()[:120]))
    rc, out = run(["--check", "-c", os.path.join(d, "missing.json")])
    check(rc != 0 and "missing.json" in out, "a missing file is refused naming it")

    # A bad config stops the daemon from starting.
    p = write(d, "bad.json", base % '  "bogus": 1')
    rc, out = run(["-c", p])
    check(rc != 0, "parleyd -c with a bad config exits non-zero (%d)" % rc)

    # A busy port: the daemon says so and exits non-zero.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    p = write(d, "busy.json", json.dumps(pt.make_config(busy)))
    rc, out = run(["-c", p])
    s.close()
    check(rc != 0, "parleyd on a busy port exits non-zero (%d)" % rc)
    check(str(busy) in out and "listen" in out, "... and its log says it cannot listen on port %d" % busy)

    # --hash-token prints what the config expects.
    rc, out = run(["--hash-token", "s3cret"])
    check(rc == 0 and pt.sha256_hex("s3cret") in out, "--hash-token TOKEN prints its sha256")
    rc, out = run(["--hash-token"], stdin="s3cret\n")
    check(rc == 0 and pt.sha256_hex("s3cret") in out, "--hash-token reads the token from stdin")
    rc, out = run(["--version"])
    check(rc == 0 and out.strip(), "--version prints a version (%r)" % out.strip())

    # A hub started from the good config serves.
    hub = pt.Hub(tokens=[pt.user("alice")])
    hub.start()
    c = await pt.connect(hub, pt.token_of("alice"))
    await c.alive()
    await c.close()
    check(True, "a hub started from a checked config serves")
    shutil.rmtree(d, ignore_errors=True)


pt.run(scenario)
