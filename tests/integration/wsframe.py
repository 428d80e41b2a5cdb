"""wsframe.py: RFC 6455 frames for the test harnesses that speak WebSocket
by hand, so that they can send what a library refuses to (a false length,
reserved bits, an unmasked client frame) and read a peer byte by byte.
Pure functions on bytes: the blocking, threaded and asyncio harnesses all
use them."""

import os
import struct


def encode(opcode, payload=b"", fin=True, rsv=0, masked=False,
           declared_len=None):
    """Returns one frame. Clients mask (masked=True), servers do not.
    declared_len overrides the length field; the payload is sent as given."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if declared_len is None else declared_len
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mb = 0x80 if masked else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mb | n)
    elif n <= 0xffff:
        hdr = struct.pack("!BBH", b0, mb | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mb | 127, n)
    if masked:
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        hdr += mask
    return hdr + payload


def parse(buf):
    """Parses the first frame of buf. Returns (fin, opcode, payload, rest),
    payload unmasked, or None while buf holds less than a whole frame."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, off = b1 & 0x7f, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    mask = None
    if b1 & 0x80:
        if len(buf) < off + 4:
            return None
        mask, off = buf[off:off + 4], off + 4
    if len(buf) < off + n:
        return None
    payload = buf[off:off + n]
    if mask:
        payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0f, payload, buf[off + n:]
