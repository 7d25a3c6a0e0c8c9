#!/usr/bin/python3
"""faults.py - break things on purpose while messages flow, count every message.

  faults.py BASE STACK_DIR BIN_DIR

While two HTTP senders and one WebSocket sender push messages at a steady
rate, and a long-poll, a short-poll, a WebSocket and a server-sent events
subscriber follow the room (each resuming from its last id; the events
one by Last-Event-ID, as a browser's EventSource), it kills chat-fcgi with SIGKILL and
restarts it, does the same to chat-ws, reloads nginx and stops and starts it,
and holds the database's write lock (a sqlite3 session in BEGIN IMMEDIATE)
for longer than the busy timeout. Then it checks that every message that got
a 200 or an echo is stored exactly once, that every subscriber received every
stored message exactly once and in order, that the database is intact, and
what senders were told while things were down. Prints PASS/FAIL lines.
"""
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets

from sse_client import Stream

BASE, STACK, BIN = sys.argv[1], sys.argv[2], sys.argv[3]
DB = os.path.join(STACK, "chat.db")
ROOM = "faults"
stop = threading.Event()        # senders stop
stop_subs = threading.Event()   # subscribers stop, once they caught up
lock = threading.Lock()
sent = {}            # text -> id, for every 200 or echo
refusals = []        # (phase, status, is_json, retry_after) of every non-200 answer
sse_errors = []      # (phase, data) of every `event: error` a stream was answered with
phase = "start"


from checks import report


def http(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sender(k):
    n = 0
    while not stop.is_set():
        n += 1
        text = f"h{k}-{n}"
        q = urllib.parse.urlencode({"text": text, "room": ROOM, "cid": text})
        for _ in range(50):                       # retry with the same cid until stored
            try:
                st, hd, body = http(f"{BASE}/send/msg?{q}")
            except Exception:                     # noqa: BLE001 - connection refused while nginx is down
                st, hd, body = 0, {}, b""
            if st == 200:
                with lock:
                    sent[text] = json.loads(body)["id"]
                break
            try:
                is_json = "error" in json.loads(body)
            except ValueError:
                is_json = False
            refusals.append((phase, st, is_json, hd.get("Retry-After")))
            time.sleep(0.1)
        time.sleep(0.02)


def long_poller(out, wait):
    cursor = http(f"{BASE}/get/msg?room={ROOM}&tail=1")[2]
    cursor = json.loads(cursor)["max_index"]
    out.append(("start", cursor))
    while not stop_subs.is_set():
        try:
            st, _, body = http(f"{BASE}/get/msg?room={ROOM}&index={cursor}&wait={wait}", timeout=wait + 15)
        except Exception:                         # noqa: BLE001 - retried
            time.sleep(0.1)
            continue
        if st != 200:
            time.sleep(0.1)
            continue
        doc = json.loads(body)
        for m in doc["messages"]:
            out.append(m["id"])
        if doc["messages"]:
            cursor = doc["max_index"]
        if not wait:
            time.sleep(0.2)


async def ws_subscriber(out, start):
    cursor = start
    out.append(("start", cursor))
    while not stop_subs.is_set():
        try:
            async with websockets.connect(f"ws{BASE[4:]}/ws?room={ROOM}&index={cursor}", open_timeout=3) as ws:
                while not stop_subs.is_set():
                    try:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    except asyncio.TimeoutError:
                        continue
                    if "id" in m and "text" in m:
                        out.append(m["id"])
                        cursor = m["id"]
        except Exception:                         # noqa: BLE001 - reconnect from the last id
            await asyncio.sleep(0.2)


def sse_subscriber(out, start):
    """Follows the room over /events, resuming with Last-Event-ID as EventSource does."""
    host, port = BASE.split("//")[1].split(":")
    last = str(start)
    out.append(("start", start))
    while not stop_subs.is_set():
        s = None
        try:
            s = Stream(host, port, f"/events?room={ROOM}&index={start}", last_event_id=last, timeout=3)
            while s.status == 200 and not stop_subs.is_set():
                try:
                    ev = s.next(0.5)
                except TimeoutError:
                    continue
                if ev is None:
                    break
                if ev.type == "message":
                    out.append(json.loads(ev.data)["id"])
                elif ev.type == "error":
                    sse_errors.append((phase, ev.data))
        except (OSError, ValueError):             # refused while nginx is down; reconnect
            pass
        finally:
            if s:
                last = s.last_id or last
                s.close()
        time.sleep(0.2)


async def ws_sender():
    n = 0
    while not stop.is_set():
        try:
            async with websockets.connect(f"ws{BASE[4:]}/ws?room={ROOM}", open_timeout=3) as ws:
                while not stop.is_set():
                    n += 1
                    text = f"w-{n}"
                    await ws.send(json.dumps({"text": text, "cid": text}))
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:    # its echo, or a duplicate, is the acknowledgement
                        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                        if m.get("text") == text or m.get("duplicate"):
                            with lock:
                                sent[text] = m["id"]
                            break
                        if m.get("error"):
                            break
                    await asyncio.sleep(0.05)
        except Exception:                         # noqa: BLE001 - resend the same cid after reconnecting
            n -= 1
            await asyncio.sleep(0.2)


def ws_thread(coro):
    asyncio.run(coro)


def pid(name):
    with open(os.path.join(STACK, name)) as f:
        return int(f.read())


def alive(p):
    try:
        with open(f"/proc/{p}/status") as f:
            return not any(line.startswith("State:") and "Z" in line for line in f)
    except OSError:
        return False


def start(cmd, pidfile, log):
    p = subprocess.Popen(cmd, stdout=open(os.path.join(STACK, "logs", log), "a"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(STACK, pidfile), "w") as f:
        f.write(str(p.pid))
    return p


def main():
    global phase
    nginx = ["nginx", "-p", os.path.join(STACK, "nginx"), "-c", os.path.join(STACK, "nginx", "nginx.conf"),
             "-e", os.path.join(STACK, "logs", "nginx-error.log")]
    fcgi = [os.path.join(BIN, "chat-fcgi"), "--db", DB, "--listen", os.path.join(STACK, "fcgi.sock"), "--busy-ms", "500"]
    wscmd = [os.path.join(BIN, "chat-ws"), "--db", DB, "--listen", os.path.join(STACK, "ws.sock"), "--busy-ms", "500"]

    # The stack's chat-fcgi runs with the default busy timeout: use our own.
    os.kill(pid("chat-fcgi.pid"), signal.SIGTERM)
    time.sleep(0.5)
    start(fcgi, "chat-fcgi.pid", "chat-fcgi.log")
    time.sleep(0.5)

    subs = {"long-poll": [], "short-poll": [], "websocket": [], "server-sent events": []}
    start_id = json.loads(http(f"{BASE}/get/msg?room={ROOM}&tail=1")[2])["max_index"]
    threads = [threading.Thread(target=sender, args=(k,)) for k in (1, 2)]
    threads += [threading.Thread(target=long_poller, args=(subs["long-poll"], 5)),
                threading.Thread(target=long_poller, args=(subs["short-poll"], 0)),
                threading.Thread(target=ws_thread, args=(ws_subscriber(subs["websocket"], start_id),)),
                threading.Thread(target=sse_subscriber, args=(subs["server-sent events"], start_id)),
                threading.Thread(target=ws_thread, args=(ws_sender(),))]
    for t in threads:
        t.start()
    time.sleep(1.5)

    phase = "chat-fcgi down"
    os.kill(pid("chat-fcgi.pid"), signal.SIGKILL)
    time.sleep(1.0)
    start(fcgi, "chat-fcgi.pid", "chat-fcgi.log")
    phase = "after chat-fcgi"
    time.sleep(1.5)

    phase = "chat-ws down"
    os.kill(pid("chat-ws.pid"), signal.SIGKILL)
    time.sleep(1.0)
    start(wscmd, "chat-ws.pid", "chat-ws.log")
    phase = "after chat-ws"
    time.sleep(1.5)

    phase = "nginx reload"
    subprocess.run(nginx + ["-s", "reload"], check=False)
    time.sleep(1.5)
    phase = "nginx down"
    master = pid("nginx.run.pid")
    os.kill(master, signal.SIGTERM)
    for _ in range(100):
        if not alive(master):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    start(nginx, "nginx.run.pid", "nginx-error.log")
    phase = "after nginx"
    time.sleep(1.5)

    phase = "database locked"
    locker = subprocess.Popen(["sqlite3", DB], stdin=subprocess.PIPE, text=True)
    # .timeout: the session waits its turn for the lock (a send may be committing).
    locker.stdin.write(".timeout 5000\nBEGIN IMMEDIATE;\nINSERT INTO messages(room, text) VALUES('elsewhere', 'held');\n")
    locker.stdin.flush()
    time.sleep(2.0)                               # four times the 500 ms busy timeout
    locker.stdin.write("COMMIT;\n.quit\n")
    locker.stdin.close()
    locker.wait(10)
    phase = "after the lock"
    time.sleep(1.5)

    stop.set()
    for t in threads[:2] + threads[-1:]:
        t.join(30)
    last = json.loads(http(f"{BASE}/get/msg?room={ROOM}&tail=1")[2])["max_index"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(got and got[-1] == last for got in subs.values()):
        time.sleep(0.1)
    stop_subs.set()
    for t in threads:
        t.join(30)

    db = sqlite3.connect(DB)
    stored = {t: (i, n) for t, i, n in db.execute(
        "select text, min(id), count(*) from messages where room = ? group by text", (ROOM,))}
    ids = [i for (i,) in db.execute("select id from messages where room = ? order by id", (ROOM,))]
    report(len(sent) > 100, f"messages acknowledged through the faults ({len(sent)})", len(sent))
    missing = [t for t in sent if t not in stored]
    report(not missing, "every acknowledged message is stored", missing[:5])
    twice = [t for t, (_, n) in stored.items() if n != 1]
    report(not twice, "each exactly once", twice[:5])
    wrong = [t for t, i in sent.items() if t in stored and stored[t][0] != i]
    report(not wrong, "under the id it was acknowledged with", wrong[:5])
    report(db.execute("pragma integrity_check").fetchone()[0] == "ok", "integrity_check ok")
    for name, got in subs.items():
        first = got[0][1]
        want = [i for i in ids if i > first]
        have = got[1:]
        report(have == want, f"{name} subscriber got every message once, in order",
               f"{len(have)} received, {len(want)} stored; first difference at "
               f"{next((k for k, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))}")
    by_phase = {}
    for ph, st, is_json, retry in refusals:
        by_phase.setdefault(ph, []).append((st, is_json, retry))
    down = by_phase.get("chat-fcgi down", [])
    report(down and all(st == 503 and j for st, j, _ in down),
           "while chat-fcgi was down nginx answered 503 JSON", down[:5])
    locked = by_phase.get("database locked", [])
    report(locked and all(st == 503 and j and r == "1" for st, j, r in locked),
           "while the database was locked senders got 503 JSON with Retry-After", locked[:5])
    down = [json.loads(d) for ph, d in sse_errors if ph == "chat-ws down"]
    report(down and all(d.get("code") == 503 and d.get("error") for d in down),
           "while chat-ws was down /events answered nginx's 200 retry stream (event: error 503)", sse_errors[:5])
    bad = [r for r in refusals if r[1] == 500 or (r[1] not in (0,) and not r[2])]
    report(not bad, "never a 500 or a non-JSON answer", bad[:5])


if __name__ == "__main__":
    main()
