#!/usr/bin/python3
"""ws_clients.py - the WebSocket contract (SPEC section 4) with a real client.

Run with Debian's python3 (python3-websockets), through nginx:

  ws_clients.py BASE DB [GROUP...]    BASE http://127.0.0.1:PORT, DB the database

Prints "PASS name" / "FAIL name: detail" lines, counted by tests/lib.sh.
Groups: basic, bad, slow, many, notify, origin, refuse, full, down
(default: basic bad many).
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


def raw_http(base, query, headers=(), upgrade=True, method="GET", path="/ws", key=True):
    """One request for path?query (GET /ws) on a fresh socket: (status, headers
    lower-cased, body). upgrade: True (websocket, with a Sec-WebSocket-Key when
    key), another protocol's name, or False (a plain request)."""
    host, port = base.split("//")[1].split(":")
    lines = [f"{method} {path}?{query} HTTP/1.1", "Host: x"]
    if upgrade:
        lines += [f"Upgrade: {'websocket' if upgrade is True else upgrade}", "Connection: Upgrade",
                  "Sec-WebSocket-Version: 13"]
        lines += ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="] if key else []
    else:
        lines += ["Connection: close"]
    lines += list(headers)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        head_lines = head.decode("latin-1").split("\r\n")
        status = int(head_lines[0].split()[1]) if len(head_lines[0].split()) > 1 else 0
        hdrs = {}
        for h in head_lines[1:]:
            k, _, v = h.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        want = int(hdrs.get("content-length", "0")) if status != 101 else 0
        while len(body) < want:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
    return status, hdrs, body


def check_json_answer(name, got, status, **want_headers):
    """Reports that got (from raw_http) is a JSON error with this status and the API's headers."""
    st, hdrs, body = got
    try:
        err = json.loads(body).get("error")
    except ValueError:
        err = None
    ok = (st == status and isinstance(err, str) and err != "" and
          hdrs.get("content-type", "").startswith("application/json") and
          hdrs.get("cache-control") == "no-store" and hdrs.get("x-content-type-options") == "nosniff" and
          all(hdrs.get(k.replace("_", "-")) == v for k, v in want_headers.items()))
    report(ok, f"{name}: {status} JSON", (st, hdrs, body[:200]))
    return err


def frames_after_refusal(c, room, payload, opcode=2):
    """A raw socket on /ws?room=room sends one masked frame that chat-ws
    refuses (a binary one, or text over 64 KiB), never answers the close,
    and reads for a second while a message is sent to the room: the
    opcodes of the frames that came, in order."""
    host, port = c.base.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    try:
        s.sendall((f"GET /ws?room={room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return ["no handshake"]
            data += chunk
        data = data.partition(b"\r\n\r\n")[2]
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        s.sendall(head + b"\0\0\0\0" + payload)   # mask 0: the payload as it is
        time.sleep(0.2)   # the close frame is out before the message comes
        c.send_http("after the refusal", room=room)
        s.settimeout(0.2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            data += chunk
        ops = []
        while len(data) >= 2:
            ln, at = data[1] & 0x7f, 2
            if ln == 126:
                ln, at = int.from_bytes(data[2:4], "big"), 4
            elif ln == 127:
                ln, at = int.from_bytes(data[2:10], "big"), 10
            ops.append(data[0] & 0x0f)
            data = data[at + ln:]
        return ops
    finally:
        s.close()


async def refused_status(c, query, **kw):
    """The status a real WebSocket client is refused with (None when it connects)."""
    try:
        async with c.connect(query, **kw):
            return None
    except websockets.InvalidStatusCode as e:
        return e.status_code


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

    # Live only, its start fixed before the handshake's answer: a message sent
    # the moment the socket is open comes (each try in a new room)
    missed = []
    for i in range(30):
        r = f"{room}-live{i}"
        async with c.connect(f"room={r}") as ws:
            c.send_http("right after the handshake", r)
            try:
                await recv_json(ws, 3)
            except asyncio.TimeoutError:
                missed.append(i)
    report(not missed, "a live-only socket gets a message sent as soon as it is open (30 tries)", missed)

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
            ('{"text":"n","n":NaN}', 400, "NaN (JSON has none)"),
            ('{"text":"raw\nnewline"}', 400, "a raw newline in a JSON string"),
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

    # While lws waits for the client to answer its close, the room's new
    # messages must not follow the close frame (RFC 6455 5.5.1).
    for payload, opcode, name in ((b"\x01\x02", 2, "a binary message"),
                                  (b'{"text":"' + b"y" * 70000 + b'"}', 1, "a message over 64 KiB")):
        ops = frames_after_refusal(c, room, payload, opcode)
        report(ops == [8], f"{name}: the close frame comes, and no message after it", ops)

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



async def refuse(c):
    """A refused handshake gets a real JSON answer (SPEC section 4), not nginx's 503."""
    for query, name in (("room=bad%20room", "an invalid room"), ("room=" + "r" * 65, "a room over 64 bytes"),
                        ("index=-1", "a negative index"), ("index=x", "an index that is not a number"),
                        ("index=4611686018427387904", "an index above 2^62 - 1"),
                        ("tail=0", "tail 0"), ("tail=1001", "tail over 1000"),
                        ("room=a&room=b", "a room given twice")):
        report(await refused_status(c, query) == 400, f"{name}: a WebSocket client is refused with 400")
        check_json_answer(f"{name}: the handshake", raw_http(c.base, query), 400)
        check_json_answer(f"{name}: a plain GET", raw_http(c.base, query, upgrade=False), 400)
    err = check_json_answer("a plain GET of a good URL", raw_http(c.base, "room=fine&index=0", upgrade=False),
                            426, upgrade="websocket")
    report(err is not None and "WebSocket" in err, "426 says what the URL takes", err)
    check_json_answer("a plain GET without arguments", raw_http(c.base, "", upgrade=False), 426,
                      upgrade="websocket")
    # A refused handshake leaves the server serving
    async with c.connect("room=fine") as ws:
        await ws.send(json.dumps({"text": "after refusals"}))
        got = await recv_json(ws)
        report(got.get("text") == "after refusals", "sockets still open after refusals", got)


async def edges(c):
    """The route's edges: a trailing slash, other methods, other upgrades, no key."""
    async with websockets.connect(f"{c.ws}/?room=wsedge", max_size=2 ** 22) as ws:
        await ws.send(json.dumps({"text": "slash"}))
        got = await recv_json(ws)
        report(got.get("text") == "slash", "/ws/ (a trailing slash) takes a WebSocket", got)
    check_json_answer("a plain GET of /ws/", raw_http(c.base, "room=x", upgrade=False, path="/ws/"), 426,
                      upgrade="websocket")
    for method in ("POST", "PUT", "DELETE"):
        check_json_answer(f"{method} /ws", raw_http(c.base, "room=x", upgrade=False, method=method), 405,
                          allow="GET")
    check_json_answer("Upgrade: foo", raw_http(c.base, "room=x", upgrade="foo"), 426, upgrade="websocket")
    check_json_answer("a handshake without Sec-WebSocket-Key", raw_http(c.base, "room=x", key=False), 400)
    st, hdrs, body = raw_http(c.base, "", upgrade=False, path="/metrics/ws/")
    report(st == 200 and b"chat_ws_open_sockets" in body and hdrs.get("cache-control") == "no-store",
           "/metrics/ws/: 200, no-store", (st, hdrs))
    st, hdrs, body = raw_http(c.base, "", upgrade=False, path="/metrics/ws")
    report(st == 200 and hdrs.get("cache-control") == "no-store", "/metrics/ws: no-store", (st, hdrs))
    check_json_answer("POST /metrics/ws", raw_http(c.base, "", upgrade=False, method="POST", path="/metrics/ws"),
                      405, allow="GET")


async def burst_open(c):
    """60 messages at once from one socket, as make run starts chat-ws: all stored, none refused."""
    async with c.connect("room=wsburst") as ws:
        for i in range(60):
            await ws.send(json.dumps({"text": f"b{i}"}))
        got = await recv_n(ws, 60)
    limited = sum(g.get("code") == 429 for g in got)
    stored = sum(str(g.get("text", "")).startswith("b") for g in got)
    report(limited == 0 and stored == 60, "60 messages at once from one socket all stored: no rate limit",
           (limited, stored))


async def full(c):
    """Run with chat-ws --max-conns 2: the third socket gets 503 with Retry-After, then gets in."""
    a = await c.connect("room=full").__aenter__()
    b = await c.connect("room=full").__aenter__()
    report(await refused_status(c, "room=full") == 503, "a WebSocket client beyond --max-conns gets 503")
    check_json_answer("the handshake beyond --max-conns", raw_http(c.base, "room=full"), 503, retry_after="1")
    check_json_answer("a plain GET while full", raw_http(c.base, "room=full", upgrade=False), 503,
                      retry_after="1")
    check_json_answer("a bad room while full is still told so", raw_http(c.base, "room=bad%20room"), 400)
    await a.close()
    deadline = time.monotonic() + T
    status = 503
    while status == 503 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        status = await refused_status(c, "room=full")
    report(status is None, "once a socket closes, the next one gets in", status)
    await b.close()


async def down(c):
    """chat-ws stopped: nginx answers 503 JSON with Retry-After (retry, not fix the URL)."""
    check_json_answer("the handshake while chat-ws is down", raw_http(c.base, "room=x"), 503, retry_after="1")
    check_json_answer("a plain GET while chat-ws is down", raw_http(c.base, "room=x", upgrade=False), 503,
                      retry_after="1")


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
    echoed = []
    # The sender reads its own echoes as it goes, so it keeps up too: a
    # sender that fell more than --max-queue frames (and what the kernel
    # buffers between chat-ws and nginx) behind would rightly be closed as
    # too slow.
    async with c.connect(f"room={room}") as good, c.connect(f"room={room}", max_queue=None) as sender:
        async def reader(ws, into):
            while len(into) < n:
                into.append(await recv_json(ws, 20))
        tasks = [asyncio.create_task(reader(good, got)), asyncio.create_task(reader(sender, echoed))]
        for i in range(n):
            # The reading sockets are never more than 50 behind (the stalled one is).
            deadline = time.monotonic() + 20
            while (min(len(got), len(echoed)) < i - 50 and time.monotonic() < deadline
                   and not any(t.done() for t in tasks)):
                await asyncio.sleep(0.005)
            await sender.send(json.dumps({"text": f"{i} {big}"}))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        seq = [int(m["text"].split()[0]) for m in got]
        report(seq == list(range(n)), f"a reading socket gets all {n} in order beside a stalled one",
               seq[:5])
        report([int(m["text"].split()[0]) for m in echoed] == list(range(n)),
               f"the sender, reading too, gets its {n} echoes in order", len(echoed))
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
    report(await refused_status(c, "room=o", origin="http://evil.example") == 403,
           "a foreign Origin: a WebSocket client is refused with 403")
    check_json_answer("a foreign Origin: the handshake", raw_http(c.base, "room=o", ["Origin: http://evil.example"]), 403)
    check_json_answer("a foreign Origin: a plain GET",
                      raw_http(c.base, "room=o", ["Origin: http://evil.example"], upgrade=False), 403)
    check_json_answer("an allowed Origin: a plain GET",
                      raw_http(c.base, "room=o", ["Origin: http://good.example"], upgrade=False), 426,
                      upgrade="websocket")
    check_json_answer("a foreign Origin with a bad room: the Origin is told first",
                      raw_http(c.base, "room=bad%20room", ["Origin: http://evil.example"]), 403)
    try:
        async with c.connect("room=o", origin="http://good.example") as ws:
            await ws.send(json.dumps({"text": "hi"}))
            got = await recv_json(ws)
            report(got.get("text") == "hi", "an allowed Origin is served", got)
    except Exception as e:  # noqa: BLE001 - reported
        report(False, "an allowed Origin is served", e)
    # Without an Origin, refused too: the page's plain GET that asks why its
    # socket failed sends none, and must hear the socket's answer
    report(await refused_status(c, "room=o") == 403, "no Origin, with --origin set: refused with 403")


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
