"""fakehub.py: a scripted parley.v1 server in Python (websockets) for the
client tests: it answers like a hub (auth, sub, unsub, pub with an echo)
and lets a test inject anything a broken or hostile hub could send:
invalid JSON, wrong types, oversized or fragmented or binary frames,
raw bytes, truncated frames, odd close codes, silence. Runs its asyncio
loop in a background thread."""

import asyncio
import json
import os
import sys
import threading

import websockets

from harness import free_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import wsframe  # noqa: E402


def raw_frame(payload, opcode=0x1, fin=True, length=None):
    """Returns an unmasked server-to-client WebSocket frame whose header
    announces length (default: the real length) bytes."""
    return wsframe.encode(opcode, payload, fin=fin, declared_len=length)


class Fragments(list):
    """A text message to send as one WebSocket fragment per item."""


class Session:
    """One client connection as the fake hub sees it."""

    def __init__(self, hub, ws):
        self.hub = hub
        self.ws = ws
        self.cursor = 0
        self.subs = []

    async def send(self, obj):
        if isinstance(obj, Fragments):
            await self.ws.send(iter(obj))
            return
        await self.ws.send(obj if isinstance(obj, (str, bytes))
                           else json.dumps(obj))

    def raw(self, data):
        self.ws.transport.write(data)

    async def msg(self, topic, body, mid=None):
        self.hub.seq += 1
        await self.send({"op": "msg", "topic": topic,
                         "mid": mid or "m%d" % self.hub.seq,
                         "origin": "fake.example",
                         "from": "bot@fake.example",
                         "ts": 1700000000000 + self.hub.seq,
                         "cursor": "c%d" % self.hub.seq, "body": body})

    async def answer(self, req):
        """The normal hub behaviour for one request."""
        op, rid = req.get("op"), req.get("id")
        if op == "auth":
            if req.get("token") == "bad":
                await self.send({"op": "error", "id": rid,
                                 "code": "unauthorized",
                                 "reason": "unknown token"})
            else:
                await self.send({"op": "ok", "id": rid,
                                 "user": "tester@fake.example"})
        elif op == "sub":
            self.subs.append(req.get("topic"))
            await self.send({"op": "ok", "id": rid})
        elif op == "unsub":
            await self.send({"op": "ok", "id": rid})
        elif op == "pub":
            self.hub.seq += 1
            await self.send({"op": "ok", "id": rid,
                             "mid": "p%d" % self.hub.seq})
        elif op == "ping":
            await self.send({"op": "pong", "id": rid})


class FakeHub:
    """A fake hub on a free port. script(session, request) is awaited for
    every request; it returns True when it handled the request itself,
    else the normal answer is sent. on_connect(session) runs first."""

    def __init__(self, script=None, on_connect=None, ssl=None,
                 subprotocols=("parley.v1",), process_request=None):
        self.port = free_port()
        self.script = script
        self.on_connect = on_connect
        self.seq = 0
        self.connections = 0
        self.requests = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.ssl = ssl
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.process_request = process_request
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    @property
    def url(self):
        return "%s://127.0.0.1:%d/ws" % ("wss" if self.ssl else "ws",
                                         self.port)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(websockets.serve(
            self._handler, "127.0.0.1", self.port,
            subprotocols=self.subprotocols, max_size=None,
            compression=None, ssl=self.ssl,
            process_request=self.process_request, ping_interval=None))
        self.ready.set()
        self.loop.run_forever()

    async def _handler(self, ws, path):
        self.connections += 1
        s = Session(self, ws)
        try:
            if self.on_connect and await self.on_connect(s):
                return
            async for text in ws:
                try:
                    req = json.loads(text)
                except ValueError:
                    continue
                self.requests.append(req)
                if self.script and await self.script(s, req):
                    continue
                await s.answer(req)
        except websockets.ConnectionClosed:
            pass

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
