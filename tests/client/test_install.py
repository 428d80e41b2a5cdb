#!/usr/bin/python3
"""test_install.py: `cmake --install` of the build tree into a temporary
prefix puts the header, both libraries, parley.pc and the `parley`
command in place; only parley_* symbols are exported; the example bot
builds there with its Makefile and with its CMakeLists.txt (pkg-config);
a program links the static library with `pkg-config --static`; and the
installed bot and command work against a real parleyd."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import Hub, check, child_env, run_tests, SANITIZE

SRC = os.environ.get("PARLEY_SOURCE_DIR", "")
BIN = os.environ.get("PARLEY_BINARY_DIR", "")
STATE = {}


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       **kw)
    check(p.returncode == 0, "%s failed (%d):\n%s%s" % (
        " ".join(cmd), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return p.stdout


def prefix():
    if "prefix" not in STATE:
        d = tempfile.mkdtemp(prefix="parley-install-")
        run(["cmake", "--install", BIN, "--prefix", d])
        STATE["prefix"] = d
    return STATE["prefix"]


def find(root, name):
    for dirpath, _, files in os.walk(root):
        if name in files:
            return os.path.join(dirpath, name)
    return None


def pc_env():
    pc = find(prefix(), "parley.pc")
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = os.path.dirname(pc)
    if SANITIZE:  # The installed library is instrumented.
        env["CFLAGS"] = "-g -fsanitize=address,undefined"
        env["LDFLAGS"] = "-fsanitize=address,undefined"
    return env


def test_installed_files():
    p = prefix()
    for name in ("parley.h", "libparley.a", "parley.pc", "parley"):
        check(find(p, name), "%s installed" % name)
    so = find(p, "libparley.so")
    check(so and os.path.islink(so), "libparley.so (link to the soname)")
    check(find(p, "libparley.so.0"), "soname libparley.so.0")
    out = run(["nm", "-D", "--defined-only", so])
    syms = [l.split()[-1] for l in out.splitlines() if l.strip()]
    bad = [s for s in syms if not s.startswith("parley_")]
    check(not bad, "only parley_* exported: %r" % bad[:20])
    check("parley_publish" in syms and "parley_subscribe" in syms,
          "API exported")
    env = pc_env()
    check(run(["pkg-config", "--libs", "parley"], env=env).split()[-1] ==
          "-lparley", "pkg-config --libs")
    inc = run(["pkg-config", "--variable=includedir", "parley"], env=env)
    check(os.path.exists(os.path.join(inc.strip(), "parley.h")),
          "relocatable includedir: %s" % inc)
    check(find(p, "line-bot.c"), "example installed with the docs")


def test_example_builds_with_make_and_cmake():
    env = pc_env()
    d = tempfile.mkdtemp(prefix="parley-bot-")
    try:
        ex = os.path.join(SRC, "client-lib", "examples", "line-bot")
        for f in ("line-bot.c", "Makefile", "CMakeLists.txt"):
            shutil.copy(os.path.join(ex, f), d)
        run(["make", "-C", d], env=env)
        check(os.access(os.path.join(d, "line-bot"), os.X_OK), "make built")
        STATE["bot"] = os.path.join(d, "line-bot")
        b = os.path.join(d, "cmake-build")
        cenv = dict(env)
        cenv.pop("CFLAGS", None)
        cenv.pop("LDFLAGS", None)
        flags = ["-DCMAKE_C_FLAGS=-fsanitize=address,undefined",
                 "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"] \
            if SANITIZE else []
        run(["cmake", "-S", d, "-B", b] + flags, env=cenv)
        run(["cmake", "--build", b], env=cenv)
        check(os.access(os.path.join(b, "line-bot"), os.X_OK),
              "cmake built")
    finally:
        STATE.setdefault("cleanup", []).append(d)


def test_static_link():
    env = pc_env()
    d = tempfile.mkdtemp(prefix="parley-static-")
    STATE.setdefault("cleanup", []).append(d)
    src = os.path.join(d, "v.c")
    with open(src, "w") as f:
        f.write('#include <parley.h>\n#include <stdio.h>\n'
                'int main(void) { parley_client *c;\n'
                '  if (parley_client_new(&c, NULL)) return 1;\n'
                '  parley_client_free(c);\n'
                '  printf("%s\\n", parley_version()); return 0; }\n')
    cflags = run(["pkg-config", "--cflags", "parley"], env=env).split()
    libs = run(["pkg-config", "--static", "--libs", "parley"],
               env=env).split()
    libdir = run(["pkg-config", "--variable=libdir", "parley"],
                 env=env).strip()
    exe = os.path.join(d, "v")
    san = ["-fsanitize=address,undefined"] if SANITIZE else []
    libs = [os.path.join(libdir, "libparley.a") if x == "-lparley" else x
            for x in libs]
    run(["cc"] + san + cflags + [src, "-o", exe] + libs)
    out = run([exe], env=child_env())
    check(out.strip() == "0.1.0", "static program runs: %r" % out)


def test_installed_bot_and_cli_work():
    if "bot" not in STATE:
        test_example_builds_with_make_and_cmake()
    p = prefix()
    cli = find(p, "parley")
    env = child_env({"LD_LIBRARY_PATH": os.path.dirname(
        find(p, "libparley.so"))})
    hub = Hub()
    try:
        bot = subprocess.Popen([STATE["bot"], "-u", hub.url, "open/out",
                                "open/in"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        sub = subprocess.Popen([cli, "sub", "-u", hub.url, "--json",
                                "open/out"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.0)  # Both connected and subscribed.
        r = subprocess.run([cli, "pub", "-u", hub.url, "open/in",
                            "hello bot"], capture_output=True, text=True,
                           env=env, timeout=30)
        check(r.returncode == 0, "installed parley pub: %s" % r.stderr)
        line = bot.stdout.readline()
        check("open/in" in line and "hello bot" in line,
              "bot printed the message: %r" % line)
        bot.stdin.write("from the bot\n")
        bot.stdin.close()
        check(bot.wait(20) == 0, "bot exits 0 at the end of its input")
        got = sub.stdout.readline()
        check('"body":"from the bot"' in got, "bot posted its line: %r"
              % got)
        sub.terminate()
        check(sub.wait(10) == 0, "sub exits 0")
        err = bot.stderr.read()
        check("Sanitizer" not in err, err)
    finally:
        hub.close()


def cleanup():
    for d in STATE.get("cleanup", []) + [STATE.get("prefix")]:
        if d:
            shutil.rmtree(d, ignore_errors=True)


TESTS = [(f.__name__, f) for f in (
    test_installed_files, test_example_builds_with_make_and_cmake,
    test_static_link, test_installed_bot_and_cli_work)]

if __name__ == "__main__":
    if not SRC or not BIN:
        print("PARLEY_SOURCE_DIR / PARLEY_BINARY_DIR not set")
        sys.exit(1)
    try:
        rc = run_tests(TESTS)
    finally:
        cleanup()
    sys.exit(rc)
