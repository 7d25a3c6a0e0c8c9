#!/usr/bin/python3
"""sse_clients.py - server-sent events at /events (SPEC section 8), read as a browser reads them.

  sse_clients.py BASE DB STACK_DIR BIN_DIR [GROUP...]

BASE is nginx (http://127.0.0.1:PORT), DB the database, STACK_DIR the stack's
folder (its nginx.conf names chat-ws's port, its pid files the processes),
BIN_DIR where chat-ws is. Streams are read with sse_client.py, a socket-level
parser of the event-stream format as the HTML standard gives it. Prints
"PASS name" / "FAIL name: detail" lines, counted by tests/lib.sh.

Groups: basic, writers, handover, lastchunk, many, bad, limit, full, ping, slow,
sigterm, down, pruned, fivek. Every wait is bounded; no bound is under a
second (a loaded two-core machine).
"""
import asyncio
import json
import os
import re
import resource
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from checks import report
from sse_client import Body, Parser, Stream, connect, parse_head, request_bytes

BASE, DB, STACK, BIN = sys.argv[1:5]
HOST, PORT = BASE.split("//")[1].split(":")
T = 10          # seconds any expected event may take


def ws_sock():
    """chat-ws's own socket, behind nginx (conf/stack.sh)."""
    return os.path.join(STACK, "ws.sock")


def ws_tcp_port():
    """chat-ws's TCP port (conf/stack.sh's WS_PORT), read off its command line."""
    args = open(f"/proc/{ws_pid()}/cmdline", "rb").read().split(b"\0")
    return next(int(b.rsplit(b":", 1)[1]) for a, b in zip(args, args[1:]) if a == b"--listen" and b"/" not in b)


def http(url, timeout=10, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def send(text, room, **extra):
    q = urllib.parse.urlencode({"text": text, "room": room, **extra})
    st, _, body = http(f"{BASE}/send/msg?{q}")
    assert st == 200, (st, body)
    return json.loads(body)["id"]


def get(room, query):
    return json.loads(http(f"{BASE}/get/msg?room={room}&{query}")[2])


def latest(room):
    return get(room, "tail=1")["max_index"]


def stream(query, port=None, **kw):
    return Stream(HOST, port or PORT, "/events" + (("?" + query) if query else ""), **kw)


def metric(name):
    body = http(f"{BASE}/metrics/ws")[2].decode()
    m = re.search(rf"^{name} (\d+)", body, re.M)
    return int(m.group(1)) if m else -1


def ready_of(s, name):
    """The stream's first event, which must be ready; its (id, data) or None."""
    ev = s.next(T)
    ok = ev is not None and ev.type == "ready"
    report(ok, f"{name}: the first event is ready", ev)
    return (int(ev.id), ev.json()) if ok else (None, None)


def ids_of(events):
    return [int(e.id) for e in events if e.type == "message"]


def g_basic():
    room = "sse-basic"
    ids = [send(f"b{i}", room, user="ann") for i in range(5)]
    top = ids[-1]

    s = stream(f"room={room}&index={ids[1]}")
    report(s.status == 200, "a stream answers 200", s.status)
    report(s.headers.get("content-type", "").startswith("text/event-stream"), "as text/event-stream",
           s.headers.get("content-type"))
    report(s.headers.get("cache-control") == "no-store", "with Cache-Control: no-store", s.headers)
    rid, data = ready_of(s, "index")
    report(s.parser.lines[0].startswith("retry: ") and s.retry and s.retry >= 1000,
           "a retry: line comes first", s.parser.lines[:2])
    report(rid == ids[1], "index: ready's id is the index given", rid)
    report(data == {"room": room, "max_index": top}, "ready carries the room and its latest id", data)
    got = s.messages_until(top, T)
    want = get(room, f"index={ids[1]}")["messages"]
    report([e.json() for e in got] == want, "then the messages after it, as /get/msg's messages",
           [e.data for e in got])
    report([e.id for e in got] == [str(m["id"]) for m in want] and all(e.type == "message" for e in got),
           "one event each: id is the message's id, default type", got)
    nid = send("live one", room)
    ev = s.next(T)
    report(ev and ev.id == str(nid) and ev.json()["text"] == "live one", "then new messages as they are stored", ev)
    s.close()

    s = stream(f"room={room}&tail=2")
    rid, data = ready_of(s, "tail")
    report(rid == ids[4] - 1, "tail=2: ready's id is one less than the first of the last 2", (rid, ids))
    got = s.messages_until(nid, T)
    report(ids_of(got) == [ids[4], nid], "tail=2: the last 2 messages", ids_of(got))
    s.close()

    s = stream(f"room={room}&tail=1000")
    rid, _ = ready_of(s, "tail over the room's size")
    report(rid == ids[0] - 1, "tail over the room's size: from before its first message", (rid, ids[0]))
    report(ids_of(s.messages_until(nid, T)) == ids + [nid], "and all of them", None)
    s.close()

    s = stream("room=sse-empty&tail=5")
    rid, data = ready_of(s, "tail of an empty room")
    report(rid == 0 and data["max_index"] == 0, "tail of an empty room: ready id 0 (its latest)", (rid, data))
    s.close()

    s = stream(f"room={room}")
    rid, data = ready_of(s, "live only")
    report(rid == nid and data["max_index"] == nid, "neither index nor tail: ready's id is the room's latest",
           (rid, data))
    send("elsewhere", "sse-other-room")
    nid2 = send("after the ready", room)
    ev = s.next(T)
    report(ev and ev.id == str(nid2), "live only: no replay, the next message (not another room's)", ev)
    s.close()

    s = stream("room=sse-quiet")
    rid, _ = ready_of(s, "a room with no messages")
    report(rid == 0, "a room with no messages, live only: ready id 0 though other rooms have some", rid)
    s.close()

    s = stream(f"room={room}&index={nid2 + 1000}")
    rid, data = ready_of(s, "cursor ahead")
    report(rid == nid2 and data["max_index"] == nid2,
           "a cursor ahead of the room: ready's id is the room's latest", (rid, data))
    nid3 = send("after the resync", room)
    ev = s.next(T)
    report(ev and ev.id == str(nid3), "and the stream goes on from there", ev)
    s.close()

    s = stream(f"room={room}&index=0&tail=3", last_event_id=str(ids[2]))
    rid, _ = ready_of(s, "Last-Event-ID")
    report(rid == ids[2], "Last-Event-ID overrides index and tail: ready's id is it", rid)
    report(ids_of(s.messages_until(nid3, T)) == [ids[3], ids[4], nid, nid2, nid3],
           "and the replay starts after it", None)
    s.close()

    s = stream(f"room={room}&tail=1", last_event_id="000" + str(ids[3]))
    rid, _ = ready_of(s, "Last-Event-ID with leading zeros")
    report(rid == ids[3], "Last-Event-ID follows index's rules (leading zeros)", rid)
    s.close()

    s = stream(f"room={room}", last_event_id=str(nid3 + 50))
    rid, _ = ready_of(s, "Last-Event-ID ahead")
    report(rid == nid3, "a Last-Event-ID ahead of the room: from the room's latest", rid)
    s.close()

    s = stream("")
    _, data = ready_of(s, "no arguments")
    report(data and data["room"] == "lobby", "the default room is lobby", data)
    s.close()

    # What an EventSource does: reconnect with the last id it saw, the ready's included.
    s = stream(f"room={room}")
    rid, _ = ready_of(s, "resume from a ready")
    s.close()
    gone = [send(f"while away {i}", room) for i in range(3)]
    s = stream(f"room={room}", last_event_id=str(rid))
    ready_of(s, "resume")
    report(ids_of(s.messages_until(gone[-1], T)) == gone,
           "a stream resumed with the ready's id gets what it missed, once", None)
    s.close()

    s = stream(f"room={room}&index=0", port=ws_sock())
    report(s.status == 200 and s.headers.get("x-accel-buffering") == "no",
           "chat-ws itself says X-Accel-Buffering: no (for a proxy that buffers)", s.headers)
    s.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def g_leave():
    """A client that goes away is noticed, and costs nothing meanwhile."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and metric("chat_ws_open_streams") != 0:
        time.sleep(0.1)               # the earlier groups' streams
    n0 = metric("chat_ws_open_streams")
    streams = [stream("room=sse-leave") for _ in range(20)]
    for s in streams:
        ready_of(s, "leave") if s is streams[0] else s.next(T)
    report(metric("chat_ws_open_streams") == n0 + 20, "20 streams open", metric("chat_ws_open_streams"))
    for s in streams:
        s.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and metric("chat_ws_open_streams") != n0:
        time.sleep(0.1)
    report(metric("chat_ws_open_streams") == n0,
           f"streams whose clients left are closed ({time.monotonic() - t0:.2f} s)", metric("chat_ws_open_streams"))
    # Straight to chat-ws: its stream sees the client's close itself (nginx is not in between).
    s = stream("room=sse-leave", port=ws_sock())
    s.next(T)
    s.close()
    pid = ws_pid()
    time.sleep(0.3)
    a = cpu_ticks(pid)
    time.sleep(2)
    used = cpu_ticks(pid) - a
    report(used < 40, f"and chat-ws does not spin meanwhile ({used} ticks of CPU in 2 s)", used)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and metric("chat_ws_open_streams") != n0:
        time.sleep(0.1)
    report(metric("chat_ws_open_streams") == n0, "a client that closed its socket to chat-ws: closed too",
           metric("chat_ws_open_streams"))


def g_writers():
    room = "sse-writers"
    s = stream(f"room={room}")
    ready_of(s, "writers")
    a = send("over http", room, user="h")
    ev = s.next(T)
    report(ev and ev.id == str(a) and ev.json() == {"id": a, "room": room, "user": "h", "text": "over http",
                                                     "ts": ev.json()["ts"]},
           "a message sent over HTTP arrives", ev)
    st, _, body = http(f"{BASE}/send/msg", data=json.dumps({"text": "posted json", "room": room}).encode(),
                       headers={"Content-Type": "application/json"})
    b = json.loads(body)["id"]
    ev = s.next(T)
    report(ev and ev.id == str(b) and ev.json()["text"] == "posted json", "a POSTed JSON message arrives", ev)

    async def over_ws():
        import websockets
        async with websockets.connect(f"ws{BASE[4:]}/ws?room={room}") as ws:
            await ws.send(json.dumps({"text": "over a websocket", "cid": f"sse-w{time.time_ns()}"}))
            m = json.loads(await asyncio.wait_for(ws.recv(), T))
            return m["id"]
    c = asyncio.run(over_ws())
    ev = s.next(T)
    report(ev and ev.id == str(c) and ev.json()["text"] == "over a websocket", "a WebSocket send arrives", ev)
    subprocess.run(["sqlite3", DB, f"insert into messages(room, user, text) values('{room}', 'ops', 'by sqlite3')"],
                   check=True)
    ev = s.next(T)
    report(ev and ev.json()["text"] == "by sqlite3" and ev.json()["user"] == "ops",
           "a row written with the sqlite3 CLI arrives", ev)
    d = int(ev.id) if ev else 0
    subprocess.run(["sqlite3", DB, f"insert into messages(room, text) values('{room}', cast(x'41ff42' as text))"],
                   check=True)
    ev = s.next(T)
    report(ev and ev.json()["text"] == "A\ufffdB", "a row with invalid UTF-8 arrives repaired", ev)
    e = int(ev.id) if ev else 0
    report([a, b, c, d, e] == sorted({a, b, c, d, e}) and d > c, "each once, in id order", [a, b, c, d, e])
    for name, text in [("a text with newlines and a tab", "line one\nline two\n\n\tline three"),
                       ("the longest text, all escapes (an event of over 8 KiB)", '"' * 4096)]:
        st, _, body = http(f"{BASE}/send/msg", data=json.dumps({"text": text, "room": room}).encode(),
                           headers={"Content-Type": "application/json"})
        ev = s.next(T)
        report(st == 200 and ev and ev.json()["text"] == text and ev.id == str(json.loads(body)["id"]),
               f"{name}: one event, the text exact", (st, ev))
    try:
        extra = s.next(1.5)
    except TimeoutError:
        extra = None
    report(extra is None or extra.type != "message", "and nothing twice", extra)
    s.close()


def g_handover():
    """Replay and live meet with no gap and no duplicate while a writer keeps going."""
    room = "sse-handover"
    db = sqlite3.connect(DB, timeout=10)
    with db:
        db.executemany("insert into messages(room, text) values(?, ?)", [(room, f"old {i}") for i in range(350)])
    db.close()
    stop = threading.Event()
    sent = []

    def writer():
        i = 0
        while not stop.is_set() and i < 400:
            sent.append(send(f"new {i}", room))
            i += 1

    def reader(query, out):
        """Reads as EventSource does while the writer runs: the ready event, then messages to the
        top; a stream ended as too slow (a loaded machine) is resumed with Last-Event-ID."""
        s = stream(query)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ev = s.next(0.5)
            except TimeoutError:
                if done.is_set() and out["ids"] and out["ids"][-1] >= top[0]:
                    break
                continue
            if ev is None:
                if out["resumes"] == 20:
                    break
                out["resumes"] += 1
                s.close()
                s = stream(query, last_event_id=s.last_id)
                continue
            if "ready" not in out:
                out["ready"] = ev
            elif ev.type == "message":
                out["ids"].append(int(ev.id))
                if done.is_set() and out["ids"][-1] >= top[0]:
                    break
        s.close()

    done = threading.Event()
    top = [0]
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    queries = [f"room={room}&index=0"] * 3 + [f"room={room}&tail=1000"]
    outs = [{"ids": [], "resumes": 0} for _ in queries]
    readers = [threading.Thread(target=reader, args=(q, o)) for q, o in zip(queries, outs)]
    for r in readers:
        r.start()
    time.sleep(1.5)
    stop.set()
    t.join(30)
    top[0] = latest(room)
    done.set()
    for r in readers:
        r.join(70)
    want = [m for (m,) in sqlite3.connect(DB).execute("select id from messages where room = ? order by id", (room,))]
    for k, out in enumerate(outs):
        ev = out.get("ready")
        report(ev is not None and ev.type == "ready", f"hand-over {k}: the first event is ready", ev)
        rid = int(ev.id) if ev is not None and ev.type == "ready" else 0
        got, exp = out["ids"], [i for i in want if i > rid]
        report(got == exp, f"stream {k}: replay then live, every message once, in order "
               f"({len(got)} of {len(exp)}, {len(sent)} sent meanwhile, resumed {out['resumes']} times)",
               f"first difference at {next((n for n, (x, y) in enumerate(zip(got, exp)) if x != y), min(len(got), len(exp)))}")


class Many:
    """Many streams on one selector: each parses its own events."""

    def __init__(self, n, path, port=None):
        self.sel = selectors.DefaultSelector()
        self.items = []
        for i in range(n):
            sock = connect(HOST, port or PORT, timeout=30)
            sock.sendall(request_bytes(path))
            sock.setblocking(False)
            item = {"sock": sock, "head": b"", "body": None, "parser": Parser(), "events": [], "ended": False}
            self.items.append(item)
            self.sel.register(sock, selectors.EVENT_READ, item)

    def pump(self, until, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            for key, _ in self.sel.select(0.2):
                it = key.data
                try:
                    data = it["sock"].recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    it["ended"] = True
                    self.sel.unregister(it["sock"])
                    continue
                if it["body"] is None:
                    it["head"] += data
                    if b"\r\n\r\n" not in it["head"]:
                        continue
                    head, _, data = it["head"].partition(b"\r\n\r\n")
                    it["status"], hdrs = parse_head(head)
                    it["body"] = Body(hdrs)
                it["events"] += it["parser"].feed(it["body"].feed(data))
        return until()

    def close(self):
        for it in self.items:
            try:
                it["sock"].close()
            except OSError:
                pass
        self.sel.close()


def g_many(n=300, port=None, room="sse-many", label="through nginx", while_open=None):
    m = Many(n, f"/events?room={room}", port)
    ready = m.pump(lambda: all(any(e.type == "ready" for e in it["events"]) for it in m.items), 60)
    report(ready, f"{n} streams {label} all get their ready event",
           sum(1 for it in m.items if it["events"]))
    base_id = max(int(it["events"][0].id) for it in m.items if it["events"]) if ready else 0
    sent = [send(f"to all {i}", room) for i in range(3)]
    done = m.pump(lambda: all(ids_of(it["events"]) == sent for it in m.items), 60)
    wrong = [ids_of(it["events"]) for it in m.items if ids_of(it["events"]) != sent]
    report(done, f"each of the {n} streams gets each message once, in order", wrong[:3])
    report(all(not it["ended"] for it in m.items), "and they all stay open", None)
    if while_open:
        while_open()
    m.close()
    return base_id


def check_json_error(name, st, hdrs, body, status):
    try:
        err = json.loads(body).get("error")
    except ValueError:
        err = None
    report(st == status and isinstance(err, str) and err and hdrs.get("content-type", "").startswith("application/json")
           and hdrs.get("cache-control") == "no-store", f"{name}: {status} JSON", (st, hdrs.get("content-type"), body[:120]))


def g_bad():
    for name, q in [("room with a space", "room=bad%20room"), ("room too long", "room=" + "r" * 65),
                    ("index not a number", "index=x"), ("index negative", "index=-1"),
                    ("index over 2^62-1", "index=4611686018427387904"), ("index empty", "index="),
                    ("tail 0", "tail=0"), ("tail over 1000", "tail=1001"), ("index twice", "index=1&index=2")]:
        st, hdrs, body = http(f"{BASE}/events?{q}")
        check_json_error(f"bad parameter: {name}", st, hdrs, body, 400)
    for name, v in [("a word", "abc"), ("negative", "-1"), ("over 2^62-1", "4611686018427387904"),
                    ("two numbers", "1 2"), ("a fraction", "1.5")]:
        st, hdrs, body = http(f"{BASE}/events?room=sse-bad", headers={"Last-Event-ID": v})
        check_json_error(f"bad Last-Event-ID: {name}", st, hdrs, body, 400)
    st, hdrs, body = http(f"{BASE}/events?index=x", headers={"Last-Event-ID": "5"})
    check_json_error("a bad index is refused even with a good Last-Event-ID", st, hdrs, body, 400)
    st, hdrs, body = http(f"{BASE}/events", data=b"x=1")
    check_json_error("POST /events", st, hdrs, body, 405)
    report(hdrs.get("allow") == "GET", "with Allow: GET", hdrs)
    s = stream("room=sse-bad&tail=1", last_event_id="")
    report(s.status == 200, "an empty Last-Event-ID is none (as before a browser's first id)", s.status)
    s.close()


def refusal(s, name, code=503):
    """A 200 retry stream: a retry: line and one event: error, then the end."""
    report(s.status == 200 and s.headers.get("content-type", "").startswith("text/event-stream") and
           s.headers.get("cache-control") == "no-store", f"{name}: a 200 event stream", (s.status, s.headers))
    ev = s.next(T)
    ok = ev is not None and ev.type == "error"
    data = ev.json() if ok else {}
    report(ok and isinstance(data.get("error"), str) and data["error"] and data.get("code") == code,
           f"{name}: one event: error with {{error, code: {code}}}", ev)
    report(s.retry is not None and s.retry >= 1000, f"{name}: and a retry: line", s.parser.lines[:3])
    report(s.next(T) is None, f"{name}: then the stream ends", s.raw[-200:])


def g_limit():
    """--max-streams 2."""
    a, b = stream("room=sse-limit"), stream("room=sse-limit")
    ready_of(a, "limit: first stream")
    ready_of(b, "limit: second stream")
    before = metric("chat_ws_streams_refused_total")
    c = stream("room=sse-limit", last_event_id="1")
    refusal(c, "beyond --max-streams")
    report(metric("chat_ws_streams_refused_total") == before + 1, "the refusal is counted",
           metric("chat_ws_streams_refused_total"))
    report(metric("chat_ws_open_streams") == 2, "open streams: 2", metric("chat_ws_open_streams"))

    async def ws_ok():
        import websockets
        async with websockets.connect(f"ws{BASE[4:]}/ws?room=sse-limit", open_timeout=T):
            return True
    report(asyncio.run(ws_ok()), "a WebSocket is still let in (the stream limit is the streams')")
    a.close()
    ok = False
    deadline = time.monotonic() + T
    while time.monotonic() < deadline and not ok:
        d = stream("room=sse-limit")
        ev = d.next(T)
        ok = ev is not None and ev.type == "ready"
        if not ok:
            time.sleep(0.2)
        d.close()
    report(ok, "a stream that closed makes room for another", None)
    b.close()


def g_full():
    """--max-conns 2: sockets and streams share it."""
    async def run():
        import websockets
        async with websockets.connect(f"ws{BASE[4:]}/ws?room=sse-full", open_timeout=T):
            async with websockets.connect(f"ws{BASE[4:]}/ws?room=sse-full", open_timeout=T):
                s = stream("room=sse-full")
                refusal(s, "beyond --max-conns (two WebSockets open)")
                s.close()
        ok = False
        deadline = time.monotonic() + T
        while time.monotonic() < deadline and not ok:
            s = stream("room=sse-full")
            ev = s.next(T)
            ok = ev is not None and ev.type == "ready"
            s.close()
            if not ok:
                await asyncio.sleep(0.2)
        report(ok, "once they closed, a stream is let in", None)
    asyncio.run(run())


def g_ping():
    """--sse-ping-secs 1 --handshake-secs 1 --ping-secs 1."""
    s = stream("room=sse-ping")
    ready_of(s, "ping")
    t0 = time.monotonic()
    while not s.comments and time.monotonic() - t0 < 10:
        s.fill(10 - (time.monotonic() - t0))
    first = time.monotonic() - t0
    report(s.comments[:1] == ["ping"], "an idle stream gets a ': ping' comment", s.raw[-80:])
    report(0.9 <= first < 5, f"after --sse-ping-secs without a write ({first:.2f} s)", first)
    while len(s.comments) < 3 and time.monotonic() - t0 < 15:
        s.fill(1)
    report(len(s.comments) >= 3 and not s.ended,
           "and again: the stream outlives the HTTP and handshake timeouts (1 s here)",
           (len(s.comments), s.ended, time.monotonic() - t0))
    nid = send("after the pings", "sse-ping")
    ev = s.next(T)
    report(ev and ev.id == str(nid), "and still delivers", ev)
    s.close()


def g_slow():
    """--max-queue 100: a reader that stops reading is ended; it resumes by Last-Event-ID."""
    room = "sse-slow"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and metric("chat_ws_open_streams") != 0:
        time.sleep(0.1)               # the earlier groups' streams
    before = metric("chat_ws_streams_closed_slow_total")
    s = stream(f"room={room}", port=ws_sock(), rcvbuf=4096)
    rid, _ = ready_of(s, "slow")
    db = sqlite3.connect(DB, timeout=10)
    # First it keeps up, then it stops reading while messages keep coming.
    with db:
        db.executemany("insert into messages(room, text) values(?, ?)", [(room, f"first {i}") for i in range(20)])
    first = s.messages_until(latest(room), T)
    report(len(first) == 20, "the reader keeps up at first", len(first))
    for k in range(30):
        with db:
            db.executemany("insert into messages(room, text) values(?, ?)",
                           [(room, f"{k:02d} {i:03d} " + "x" * 4000) for i in range(100)])
        time.sleep(0.02)
    db.close()
    top = latest(room)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metric("chat_ws_streams_closed_slow_total") <= before:
        time.sleep(0.2)
    report(metric("chat_ws_streams_closed_slow_total") == before + 1, "a reader too slow for its queue is ended",
           metric("chat_ws_streams_closed_slow_total"))
    while time.monotonic() < deadline and metric("chat_ws_open_streams") != 0:
        time.sleep(0.1)
    report(metric("chat_ws_open_streams") == 0, "and its stream is closed (not waiting for it to read)",
           metric("chat_ws_open_streams"))
    t0 = time.monotonic()
    report(s.wait_end(30), "the reader sees the end of its stream", time.monotonic() - t0)
    got = ids_of(first) + ids_of(s.pending)
    report(len(got) >= 20 and got[-1] < top, f"having read part of it ({len(got)} events)", len(got))
    s2 = stream(f"room={room}&index=0", last_event_id=s.last_id)
    rid2, _ = ready_of(s2, "resumed")
    report(rid2 == (got[-1] if got else rid), "it resumes from its last complete event", (rid2, got[-1:]))
    more = ids_of(s2.messages_until(top, 60))
    want = [i for (i,) in sqlite3.connect(DB).execute("select id from messages where room = ? and id > ? order by id",
                                                       (room, rid))]
    report(got + more == want, "nothing lost, nothing twice", (len(got), len(more), len(want)))
    s2.close()
    log = open(os.path.join(STACK, "logs", "chat-ws.log")).read()
    report("too slow: ended" in log, "the slow end is logged", None)


def start_ws(flags=()):
    path = ws_sock()
    logf = open(os.path.join(STACK, "logs", "chat-ws.log"), "a")
    p = subprocess.Popen([os.path.join(BIN, "chat-ws"), "--db", DB, "--listen", path, *flags],
                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(STACK, "chat-ws.pid"), "w") as f:
        f.write(str(p.pid))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            connect(HOST, path, timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    return p


def wait_gone(p, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{p}/status") as f:
                if "State:\tZ" in f.read():
                    return
        except OSError:
            return
        time.sleep(0.05)


def ws_pid():
    return int(open(os.path.join(STACK, "chat-ws.pid")).read())


def g_sigterm():
    room = "sse-term"
    s = stream(f"room={room}")
    ready_of(s, "sigterm")
    a = send("before the stop", room)
    ev = s.next(T)
    report(ev and ev.id == str(a), "a stream before SIGTERM", ev)
    p = ws_pid()
    t0 = time.monotonic()
    os.kill(p, signal.SIGTERM)
    ended = s.wait_end(10)
    report(ended and time.monotonic() - t0 < 5, f"SIGTERM ends the stream ({time.monotonic() - t0:.2f} s)", ended)
    wait_gone(p)
    missed = [send(f"while stopped {i}", room) for i in range(3)]
    start_ws()
    s2 = stream(f"room={room}", last_event_id=s.last_id)
    ready_of(s2, "after the restart")
    report(ids_of(s2.messages_until(missed[-1], T)) == missed,
           "resumed by Last-Event-ID after the restart: what was sent meanwhile, once", None)
    s2.close()


def g_down():
    """kill -9 of chat-ws: open streams end, nginx answers the retry stream, then all resumes."""
    room = "sse-down"
    s = stream(f"room={room}")
    ready_of(s, "down")
    a = send("before the kill", room)
    ev = s.next(T)
    report(ev and ev.id == str(a), "a stream before the kill", ev)
    p = ws_pid()
    os.kill(p, signal.SIGKILL)
    report(s.wait_end(10), "kill -9 of chat-ws ends the open stream", None)
    wait_gone(p)
    missed = [send(f"while down {i}", room) for i in range(3)]
    r = stream(f"room={room}", last_event_id=s.last_id)
    refusal(r, "chat-ws unreachable: nginx's retry stream")
    r.close()
    st, hdrs, body = http(f"{BASE}/events?room={room}&index=x")
    report(st == 200 and hdrs.get("content-type", "").startswith("text/event-stream"),
           "(even for a bad URL: nginx cannot check it)", (st, body[:80]))
    start_ws()
    s2 = stream(f"room={room}", last_event_id=s.last_id)
    ready_of(s2, "after the restart")
    report(ids_of(s2.messages_until(missed[-1], T)) == missed,
           "chat-ws back: resumed by Last-Event-ID, nothing lost, nothing twice", None)
    s2.close()


def g_pruned():
    """chat-fcgi --retain-per-room 3."""
    room = "sse-pruned"
    for i in range(10):
        send(f"p{i}", room)
    deadline = time.monotonic() + 15
    db = sqlite3.connect(DB, timeout=10)
    while time.monotonic() < deadline and db.execute("select count(*) from messages where room = ?", (room,)).fetchone()[0] > 3:
        time.sleep(0.1)
    kept = [i for (i,) in db.execute("select id from messages where room = ? order by id", (room,))]
    report(len(kept) == 3, "retention kept 3", kept)
    s = stream(f"room={room}&index=0")
    rid, data = ready_of(s, "pruned")
    report(rid == 0 and data.get("pruned") is True and data.get("max_index") == kept[-1],
           "a cursor older than what is kept: ready says pruned", data)
    report(ids_of(s.messages_until(kept[-1], T)) == kept, "then what is kept", None)
    s.close()
    s = stream(f"room={room}&index={kept[0]}")
    rid, data = ready_of(s, "not pruned")
    report(data is not None and "pruned" not in data, "a cursor within what is kept: no pruned", data)
    s.close()
    s = stream(f"room={room}&tail=10")
    rid, data = ready_of(s, "tail under retention")
    report(rid == kept[0] - 1 and data is not None and "pruned" not in data, "tail: from the first kept, no pruned",
           (rid, data))
    s.close()


def g_fivek():
    """5,000 streams on one chat-ws, straight to its port."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 6000:
        print(f"INFO 5,000 streams skipped: the descriptor limit is {hard}", flush=True)
        return
    if soft != resource.RLIM_INFINITY and soft < 6000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (6000 if hard == resource.RLIM_INFINITY else min(hard, 20000), hard))
    pid = ws_pid()

    def rss():
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
    r0 = rss()
    t0 = time.monotonic()
    seen = {}
    # Over TCP: a burst of 5,000 connects can outrun the accepts, and a full
    # unix socket backlog refuses at once (EAGAIN) where TCP retries the SYN.
    g_many(5000, port=ws_tcp_port(), room="sse-5k", label="on one chat-ws",
           while_open=lambda: seen.update(rss=rss(), t=time.monotonic() - t0))
    if seen:
        print(f"INFO 5,000 streams opened and each given 3 messages in {seen['t']:.1f} s; chat-ws RSS "
              f"{r0 // 1024} MiB before, {seen['rss'] // 1024} MiB with them open "
              f"(about {(seen['rss'] - r0) * 1024 // 5000} bytes a stream)", flush=True)


def g_lastchunk():
    """--max-queue 100: a stream is not ended for what its replay queued; it goes live with room to spare.

    99 stored messages fill the queue beside the ready event, each one 24 KiB
    on the wire (control characters, escaped). The reader, on a small receive
    buffer, lets them wait while 200 more as large are stored: more than the
    kernel's buffers and the queue hold. Live with its queue full it would be
    ended as too slow; it stays on the replay instead, and reads them from the
    database as its queue drains."""
    room = "sse-lastchunk"
    before = metric("chat_ws_streams_closed_slow_total")
    big = "\x01" * 4000
    db = sqlite3.connect(DB, timeout=10)
    with db:
        db.executemany("insert into messages(room, text) values(?, ?)", [(room, f"old {i} {big}") for i in range(99)])
    s = stream(f"room={room}&index=0", port=ws_sock(), rcvbuf=4096)
    ready_of(s, "last chunk")
    time.sleep(0.5)
    with db:
        db.executemany("insert into messages(room, text) values(?, ?)", [(room, f"new {i} {big}") for i in range(200)])
    db.close()
    time.sleep(1.5)                  # the feed has seen them
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)     # now it reads fast
    top = latest(room)
    got = ids_of(s.messages_until(top, 60))
    want = [i for (i,) in sqlite3.connect(DB).execute("select id from messages where room = ? order by id", (room,))]
    report(got == want, f"the reader gets all {len(want)}, in order ({len(got)}{', ended' if s.ended else ''})",
           got[-3:])
    report(metric("chat_ws_streams_closed_slow_total") == before, "and is not ended as too slow",
           metric("chat_ws_streams_closed_slow_total"))
    s.close()


def main():
    groups = sys.argv[5:] or ["basic"]
    for g in groups:
        try:
            globals()["g_" + g]()
        except Exception as e:                    # noqa: BLE001 - a failed group is a FAIL line, not a crash
            import traceback
            report(False, f"group {g} ran to its end", traceback.format_exc()[-600:])


if __name__ == "__main__":
    main()
