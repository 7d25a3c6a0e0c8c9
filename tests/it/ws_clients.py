#!/usr/bin/python3
"""ws_clients.py - the WebSocket contract (SPEC section 4) with a real client.

Run with Debian's python3 (python3-websockets), through nginx:

  ws_clients.py BASE DB [GROUP...]    BASE http://127.0.0.1:PORT, DB the database

Prints "PASS name" / "FAIL name: detail" lines, counted by tests/lib.sh.
Groups: basic, bad, slow, many, origin (default: basic bad many).
Every wait is bounded.
"""
import asyncio
import json
import socket
import sys
import time
import urllib.parse
import urllib.request

import websockets

T = 5  # seconds any single expected frame may take
CLOSE_T = 15  # seconds for a close: the client waits for the TCP close after the close frames


from checks import db_run, report


def http_json(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


class Ctx:
    def __init__(self, base, db):
        self.base = base
        self.ws = "ws" + base[len("http"):] + "/ws"
        self.db = db

    def send_http(self, text, room="lobby", **kw):
        q = urllib.parse.urlencode(dict(text=text, room=room, **kw))
        return http_json(f"{self.base}/send/msg?{q}")

    def latest(self, room="lobby"):
        return http_json(f"{self.base}/get/msg?room={room}&tail=1")["max_index"]

    def connect(self, query, **kw):
        return websockets.connect(f"{self.ws}?{query}", max_size=2 ** 22, **kw)


async def recv_json(ws, timeout=T):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_n(ws, n, timeout=T):
    out = []
    for _ in range(n):
        out.append(await recv_json(ws, timeout))
    return out


async def silent(ws, seconds=0.3):
    """True when nothing arrives within seconds."""
    try:
        await asyncio.wait_for(ws.recv(), seconds)
        return False
    except asyncio.TimeoutError:
        return True


async def basic(c):
    room = "wsbasic"
    for i in range(5):
        c.send_http(f"old{i}", room)
    first = c.latest(room) - 4

    async with c.connect(f"room={room}&index={first + 1}") as ws:
        got = await recv_n(ws, 3)
        report([m["text"] for m in got] == ["old2", "old3", "old4"], "replay after index", got)
        report(set(got[0]) == {"id", "room", "user", "text", "ts"}, "frames are message objects", got[0])
        report(await silent(ws), "replay ends without duplicates")

    async with c.connect(f"room={room}&tail=2") as ws:
        got = await recv_n(ws, 2)
        report([m["text"] for m in got] == ["old3", "old4"], "replay of the last tail", got)

    async with c.connect(f"room={room}") as live, c.connect(f"room={room}&index=0") as full:
        report(await silent(live), "without index or tail: no replay")
        old = await recv_n(full, 5)
        report(len(old) == 5, "index=0 replays the whole room", len(old))

        sent = c.send_http("via http", room, user="h")
        a, b = await recv_json(live), await recv_json(full)
        report(a["text"] == "via http" and a["id"] == sent["id"], "an HTTP send reaches a live socket", a)
        report(b == a, "and every socket of the room gets the same frame", b)

        cursor = sent["id"]
        poll = asyncio.get_running_loop().run_in_executor(
            None, http_json, f"{c.base}/get/msg?room={room}&index={cursor}&wait=10")
        await asyncio.sleep(0.3)
        await live.send(json.dumps({"text": "via ws", "user": "w", "cid": "ws-basic-1", "room": "ignored"}))
        echo = await recv_json(live)
        report(echo["text"] == "via ws" and echo["user"] == "w" and echo["room"] == room,
               "a WS send is echoed to its sender, in the connection's room", echo)
        other = await recv_json(full)
        report(other == echo, "a WS send reaches the room's other sockets", other)
        held = await asyncio.wait_for(poll, 10)
        report(held["data"] == ["via ws"], "a WS send wakes a held long-poll", held)
        got = http_json(f"{c.base}/get/msg?room={room}&index={cursor}")
        report(got["messages"][0]["id"] == echo["id"], "a WS send is in /get/msg", got)

        await live.send(json.dumps({"text": "via ws again", "cid": "ws-basic-1"}))
        dup = await recv_json(live)
        report(dup == {"duplicate": True, "id": echo["id"]}, "a repeated cid gets duplicate with the first id", dup)
        report(await silent(full), "a repeated cid reaches nobody else")
        again = c.send_http("http retry", room, cid="ws-basic-1")
        report(again.get("duplicate") is True and again["id"] == echo["id"],
               "the same cid over HTTP is a duplicate too", again)

        db_run(c.db, "insert into messages(room, \"user\", text) values(?, 'ops', 'from sqlite3')", (room,))
        t0 = time.monotonic()
        cli = await recv_json(live)
        report(cli["text"] == "from sqlite3" and cli["user"] == "ops", "a sqlite3 insert reaches sockets", cli)
        report(time.monotonic() - t0 < 2.0, "within 2 s (the timer probes every 5 ms, the sender waits on nothing)", time.monotonic() - t0)
        await recv_json(full)

        # keys other than text, user and cid are ignored, whatever their type
        await live.send(json.dumps({"text": "extra keys", "room": 5, "limit": [1], "index": None}))
        got = await recv_json(live)
        report(got.get("text") == "extra keys" and got.get("room") == room,
               "other keys of a frame are ignored", got)
        await recv_json(full)

        # fragments of one message are reassembled
        await live.send(iter(['{"text":', '"in three', ' parts"}']))
        frag = await recv_json(live)
        report(frag.get("text") == "in three parts", "a fragmented message is reassembled", frag)
        last_seen = frag["id"]

    # Resume: what was sent while away comes back once, in order
    for i in range(3):
        c.send_http(f"away{i}", room)
    async with c.connect(f"room={room}&index={last_seen}") as ws:
        got = await recv_n(ws, 3)
        texts = [m["text"] for m in got]
        report(texts == ["away0", "away1", "away2"], "a reconnect with the last id resumes without gap", texts)
        report(await silent(ws), "and without duplicate")
    ids = [m["id"] for m in got]
    report(ids == sorted(set(ids)) and ids[0] > last_seen, "in id order", ids)

    # A cursor ahead of the database resyncs: live messages still come
    async with c.connect(f"room={room}&index=999999999") as ws:
        await asyncio.sleep(0.2)
        c.send_http("after a cursor from the future", room)
        got = await recv_json(ws)
        report(got.get("text") == "after a cursor from the future", "a cursor ahead of the store still gets live messages", got)

    # A row in a room no client can join does not stop the feed
    db_run(c.db, "insert into messages(room, text) values(?, 'odd')", ("r" * 80,))
    async with c.connect(f"room={room}") as ws:
        await asyncio.sleep(0.2)
        c.send_http("after an odd row", room)
        got = await recv_json(ws)
        report(got.get("text") == "after an odd row", "a row with an over-long room does not stop delivery", got)

    # A long unknown argument does not hide the cursor after it
    async with c.connect(f"x={'y' * 200}&room={room}&index={ids[0] - 1}") as ws:
        got = await recv_json(ws)
        report(got.get("id") == ids[0], "arguments after a long one are read", got)


async def bad(c):
    room = "wsbad"
    async with c.connect(f"room={room}") as ws:
        cases = [
            ("not json", 400, "a frame that is not JSON"),
            ('["text"]', 400, "a JSON array"),
            ('{"user":"x"}', 400, "no text"),
            ('{"text":""}', 400, "empty text"),
            ('{"text":5}', 400, "a number as text"),
            ('{"text":"a\\u0001b"}', 400, "a control character"),
            ('{"text":"ok","cid":"bad cid"}', 400, "a bad cid"),
            (json.dumps({"text": "x", "user": "u" * 65}), 400, "a user over 64 bytes"),
            (json.dumps({"text": "x" * 4097}), 413, "a text over 4096 bytes"),
        ]
        for frame, code, name in cases:
            await ws.send(frame)
            got = await recv_json(ws)
            report(got.get("code") == code and isinstance(got.get("error"), str) and got["error"],
                   f"{name}: error frame {code}", got)
        await ws.send(json.dumps({"text": "still open"}))
        got = await recv_json(ws)
        report(got.get("text") == "still open", "the connection stays open after bad frames", got)

    async with c.connect(f"room={room}") as ws:
        await ws.send(b"\x01\x02")
        try:
            await asyncio.wait_for(ws.recv(), CLOSE_T)
            report(False, "a binary message closes with 1003", "got a frame")
        except websockets.ConnectionClosed as e:
            report(e.code == 1003, "a binary message closes with 1003", e.code)

    async with c.connect(f"room={room}") as ws:
        await ws.send(json.dumps({"text": "y" * 70000}))
        try:
            await asyncio.wait_for(ws.recv(), CLOSE_T)
            report(False, "a message over 64 KiB closes with 1009", "got a frame")
        except websockets.ConnectionClosed as e:
            report(e.code == 1009, "a message over 64 KiB closes with 1009", e.code)

    async with c.connect(f"room={room}") as ws:
        await ws.send(iter(['{"text":"', "z" * 40000, "z" * 40000, '"}']))
        try:
            await asyncio.wait_for(ws.recv(), CLOSE_T)
            report(False, "fragments over 64 KiB together close with 1009", "got a frame")
        except websockets.ConnectionClosed as e:
            report(e.code == 1009, "fragments over 64 KiB together close with 1009", e.code)

    for query, name in (("room=bad%20room", "an invalid room"), ("index=-1", "a negative index"),
                        ("tail=0", "tail 0")):
        try:
            async with c.connect(query):
                report(False, f"{name} is refused", "connected")
        except (websockets.InvalidStatusCode, websockets.InvalidHandshake) as e:
            report(True, f"{name} is refused", e)


async def slow(c):
    """A socket that stops reading is closed with 1008; the others get everything."""
    room = "wsslow"
    big = "s" * 4000
    host, port = c.base.split("//")[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /ws?room={room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = sock.recv(1024)
    report(head.startswith(b"HTTP/1.1 101"), "the stalled client completes its handshake", head[:40])
    n = 3000
    got = []
    # The sender hears its own echoes: it buffers them all, so it keeps up too.
    async with c.connect(f"room={room}") as good, c.connect(f"room={room}", max_queue=None) as sender:
        async def reader():
            while len(got) < n:
                got.append(await recv_json(good, 20))
        task = asyncio.create_task(reader())
        for i in range(n):
            # The reading socket is never more than 50 behind (the stalled one is).
            deadline = time.monotonic() + 20
            while len(got) < i - 50 and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.005)
            await sender.send(json.dumps({"text": f"{i} {big}"}))
        await asyncio.wait_for(task, 60)
        seq = [int(m["text"].split()[0]) for m in got]
        report(seq == list(range(n)), f"a reading socket gets all {n} in order beside a stalled one",
               seq[:5])
    # the stalled socket: read what was buffered; it must end with a 1008 close frame
    sock.settimeout(10)
    data = b""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    report(b"\x88" in data and b"\x03\xf0" in data[data.rfind(b"\x88"):],
           "the stalled socket is closed with 1008", data[-40:])


async def many(c, n=1000, msgs=100):
    room = "wsmany"
    start = c.latest(room)
    conns = []
    for i in range(n):
        conns.append(await c.connect(f"room={room}&index={start}", ping_interval=None).__aenter__())
    report(len(conns) == n, f"{n} sockets open on one room", len(conns))

    async def collect(ws):
        got = []
        while len(got) < msgs:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 60))["text"])
        return got

    tasks = [asyncio.create_task(collect(ws)) for ws in conns]
    loop = asyncio.get_running_loop()
    for i in range(msgs):
        await loop.run_in_executor(None, c.send_http, f"m{i}", room)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    want = [f"m{i}" for i in range(msgs)]
    good = sum(1 for r in results if r == want)
    bad_one = next((r for r in results if r != want), None)
    report(good == n, f"{n} sockets each receive all {msgs} messages in order", f"{good} good; {str(bad_one)[:200]}")
    for ws in conns:
        await ws.close()


async def notify(c):
    """Run with --probe-ms 10000: rows from another process still arrive at once."""
    room = "wsnotify"
    async with c.connect(f"room={room}") as ws:
        await asyncio.sleep(0.3)
        for i in range(3):
            db_run(c.db, "insert into messages(room, text) values(?, ?)", (room, f"cli {i}"))
            t0 = time.monotonic()
            got = await recv_json(ws)
            took = time.monotonic() - t0
            report(got.get("text") == f"cli {i}" and took < 2.5,
                   f"a sqlite3 insert reaches a socket before the next timer probe ({i})", (got, took))
            t0 = time.monotonic()
            c.send_http(f"http {i}", room)
            got = await recv_json(ws)
            took = time.monotonic() - t0
            report(got.get("text") == f"http {i}" and took < 2.5,
                   f"a send through chat-fcgi reaches a socket before the next timer probe ({i})", (got, took))
            await asyncio.sleep(0.1)


async def origin(c):
    try:
        async with c.connect("room=o", origin="http://evil.example"):
            report(False, "a foreign Origin is refused", "connected")
    except (websockets.InvalidStatusCode, websockets.InvalidHandshake):
        report(True, "a foreign Origin is refused")
    try:
        async with c.connect("room=o", origin="http://good.example") as ws:
            await ws.send(json.dumps({"text": "hi"}))
            got = await recv_json(ws)
            report(got.get("text") == "hi", "an allowed Origin is served", got)
    except Exception as e:  # noqa: BLE001 - reported
        report(False, "an allowed Origin is served", e)


async def main():
    base, db = sys.argv[1], sys.argv[2]
    groups = sys.argv[3:] or ["basic", "bad", "many"]
    c = Ctx(base, db)
    for g in groups:
        try:
            await asyncio.wait_for(globals()[g](c), 180)
        except Exception as e:  # noqa: BLE001 - any escape is a failure of its group
            report(False, f"group {g} ran to its end", repr(e))


if __name__ == "__main__":
    asyncio.run(main())
