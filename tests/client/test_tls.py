#!/usr/bin/python3
"""test_tls.py: wss:// with a throwaway CA made by the openssl CLI,
against the Python fake hub over TLS: the right CA works; no CA, a wrong
CA, a certificate for another name or an expired one are refused with
PARLEY_ETLS; a hub that requires a client certificate accepts one signed
by its CA and refuses a missing or foreign one; unreadable files are
refused up front."""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile

from fakehub import FakeHub
from harness import Driver, check, run_tests

DIR = tempfile.mkdtemp(prefix="parley-tls-")


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True,
                       text=True, cwd=DIR)
    check(p.returncode == 0, "openssl %s: %s" % (args, p.stderr))


def make_ca(name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % name, "-keyout", name + ".key",
            "-out", name + ".pem")


def make_cert(name, ca, san, days=2, client=False):
    """A certificate for san signed by ca; days < 0 makes one that has
    already expired."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", name + ".key", "-out", name + ".csr")
    with open(os.path.join(DIR, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\n" % san)
        f.write("extendedKeyUsage=%s\n" %
                ("clientAuth" if client else "serverAuth"))
    if days > 0:
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
                "-CAkey", ca + ".key", "-CAcreateserial", "-days",
                str(days), "-extfile", name + ".ext", "-out", name + ".pem")
    else:
        # Backdated with the "ca" command: valid in the past only.
        with open(os.path.join(DIR, "index.txt"), "w"):
            pass
        with open(os.path.join(DIR, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\n"
                    "new_certs_dir=.\nserial=serial.txt\n"
                    "default_md=sha256\npolicy=p\ncopy_extensions=copy\n"
                    "[p]\ncommonName=supplied\n")
        with open(os.path.join(DIR, "serial.txt"), "w") as f:
            f.write("1000\n")
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", ca + ".pem",
                "-keyfile", ca + ".key", "-in", name + ".csr",
                "-startdate", "20200101000000Z", "-enddate",
                "20200102000000Z", "-extfile", name + ".ext",
                "-out", name + ".pem", "-notext")


def path(name):
    return os.path.join(DIR, name)


def setup():
    make_ca("ca")
    make_ca("otherca")
    make_cert("hub", "ca", "IP:127.0.0.1,DNS:localhost")
    make_cert("wrongname", "ca", "DNS:other.example")
    make_cert("expired", "ca", "IP:127.0.0.1", days=-1)
    make_cert("bot", "ca", "DNS:bot.example", client=True)
    make_cert("stranger", "otherca", "DNS:stranger.example", client=True)


def server_ctx(cert, require_client=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(path(cert + ".pem"), path(cert + ".key"))
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(path("ca.pem"))
    return ctx


def expect_closed(hub, err, *args):
    d = Driver(hub.url, "--opt", "connect_attempts=1", "--exit-on-closed",
               *args)
    e = d.wait_ev("state", timeout=20, state="closed")
    check(e["last_error"] in err, "expected %s, got %r; errors %r"
          % (err, e, d.of("error")))
    d.quit(expect_code=1)
    return d


def test_good_ca_round_trip():
    hub = FakeHub(ssl=server_ctx("hub"))
    try:
        d = Driver(hub.url, "--ca", path("ca.pem"), "-T", "tok")
        check(d.connected()["user"] == "tester@fake.example", "over TLS")
        d.send("pub a t/x 1")
        check(d.wait_ev("pub", tag="a")["code"] == "PARLEY_OK", "pub ack")
        d.quit()
        d = Driver(hub.url, "--ca", path("ca.pem"), "--attach")
        d.connected()
        d.quit()
    finally:
        hub.close()


def test_untrusted_hub_refused():
    for cert, args in (("hub", ()),  # The system CAs do not know it.
                       ("hub", ("--ca", path("otherca.pem"))),
                       ("wrongname", ("--ca", path("ca.pem"))),
                       ("expired", ("--ca", path("ca.pem")))):
        hub = FakeHub(ssl=server_ctx(cert))
        try:
            d = expect_closed(hub, ("PARLEY_ETLS",), *args)
            check(hub.connections == 0, "%s %s: no WebSocket session"
                  % (cert, args))
        finally:
            hub.close()


def test_client_certificates():
    hub = FakeHub(ssl=server_ctx("hub", require_client=True))
    try:
        d = Driver(hub.url, "--ca", path("ca.pem"), "--cert",
                   path("bot.pem"), "--key", path("bot.key"))
        d.connected()
        d.quit()
        expect_closed(hub, ("PARLEY_ETLS", "PARLEY_ECONNECT"),
                      "--ca", path("ca.pem"))
        expect_closed(hub, ("PARLEY_ETLS", "PARLEY_ECONNECT"),
                      "--ca", path("ca.pem"), "--cert",
                      path("stranger.pem"), "--key", path("stranger.key"))
        check(hub.connections == 1, "only the good client got in")
    finally:
        hub.close()


def test_bad_files():
    hub = FakeHub(ssl=server_ctx("hub"))
    try:
        d = Driver(hub.url, "--ca", path("missing.pem"), "--no-connect")
        check(d.wait_ev("result", cmd="tls")["code"] == "PARLEY_EINVAL",
              "unreadable CA refused")
        d.quit()
        d = Driver(hub.url, "--ca", path("ca.pem"), "--cert",
                   path("bot.pem"), "--no-connect")
        check(d.wait_ev("result", cmd="tls")["code"] == "PARLEY_EINVAL",
              "cert without key refused")
        d.quit()
        # A key that does not match its certificate: lws cannot build
        # the TLS context.
        d = Driver(hub.url, "--ca", path("ca.pem"), "--cert",
                   path("bot.pem"), "--key", path("stranger.key"),
                   "--no-connect")
        d.send("connect")
        check(d.wait_ev("result", cmd="connect")["code"] == "PARLEY_ETLS",
              "mismatched key refused at connect")
        d.quit()
    finally:
        hub.close()


TESTS = [(f.__name__, f) for f in (
    test_good_ca_round_trip, test_untrusted_hub_refused,
    test_client_certificates, test_bad_files)]

if __name__ == "__main__":
    try:
        setup()
        rc = run_tests(TESTS)
    finally:
        shutil.rmtree(DIR, ignore_errors=True)
    sys.exit(rc)
