"""freeport.py: loopback ports for the servers a test starts.

A port the kernel hands out for bind(0) comes from the ephemeral range,
which it also uses for the source ports of outgoing connections: between
our probe and the server's bind, another test's client connection can take
it, and the server then fails to start. Ports are drawn instead from below
that range, where the kernel never assigns one by itself, and are probed
on 127.0.0.1 before they are returned."""
import random
import socket


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """Returns a loopback TCP port that was free a moment ago."""
    hi = min(_ephemeral_low(), 65536) - 1
    lo = 10000 if hi > 12000 else 1024
    for _ in range(200):
        port = random.randint(lo, hi)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    # Everything probed was taken: fall back to the kernel's choice.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()
