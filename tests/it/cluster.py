#!/usr/bin/python3
"""cluster.py - several nodes on one PostgreSQL (SPEC section 9), from outside.

  cluster.py GROUP URI STACK_DIR... (each node's stack folder, from tests/lib.sh)

Groups:
  fanout   a message sent through any node, or inserted with psql, reaches a
           long-poll, a WebSocket and an event stream on every node
  follow   concurrent senders on every node (HTTP and WebSocket), a long-poll,
           a WebSocket and an event-stream follower on each node: every
           follower sees every message exactly once, in id order; each
           sender's ids increase
  cid      a cid repeated through another node answers the first id; the
           same cid sent through every node at once is stored once
  faults   while senders and followers on every node go on (a sender retries
           its cid, and a follower resumes by id, on the next node when its
           own does not answer): kill -9 of the last node's chat-fcgi and
           chat-ws, pg_ctl restart, PostgreSQL stopped for two seconds and
           started; then every acknowledged message is stored once under its
           id, every follower saw every message once in order, refusals were
           JSON (503 with Retry-After from a node whose database was away),
           and every surviving process serves again by itself
           (environment: PG_AS, PG_CTL, PG_DATA, PG_LOG, PG_OPTS)

Prints "PASS name" / "FAIL name: detail" lines. Every wait is bounded.
"""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets

from checks import db_run, report
from sse_client import Stream

GROUP, URI, STACKS = sys.argv[1], sys.argv[2], sys.argv[3:]


def base_of(stack):
    conf = open(os.path.join(stack, "nginx", "nginx.conf")).read()
    return "http://127.0.0.1:" + re.search(r"listen\s+127\.0\.0\.1:(\d+)", conf).group(1)


BASES = [base_of(s) for s in STACKS]


def http(url, timeout=10):
    """(status, headers, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (OSError, ValueError):
        return 0, {}, b""


def get_json(base, path, timeout=20):
    st, _, body = http(base + path, timeout)
    return json.loads(body) if st == 200 else None


def send(base, text, room, cid=None):
    q = {"text": text, "room": room}
    if cid:
        q["cid"] = cid
    return http(f"{base}/send/msg?{urllib.parse.urlencode(q)}")


def latest(room):
    for b in BASES:
        doc = get_json(b, f"/get/msg?room={room}&tail=1")
        if doc:
            return doc["max_index"]
    raise RuntimeError("no node answers")


def stored(room):
    """text -> (id, count), and the room's ids in order, from the database."""
    rows = db_run(URI, "select text, min(id), count(*) from messages where room = ? group by text", (room,))
    ids = [int(i) for (i,) in db_run(URI, "select id from messages where room = ? order by id", (room,))]
    return {t: (int(i), int(n)) for t, i, n in rows}, ids


def ws_url(base, query):
    return "ws" + base[4:] + "/ws?" + query


# ---- fanout ----

async def fanout_one(room, sender_name, do_send):
    """Opens a socket and a long-poll on every node, then sends once."""
    start = latest(room)
    socks = [await websockets.connect(ws_url(b, f"room={room}&index={start}"), open_timeout=5) for b in BASES]
    streams = [Stream("127.0.0.1", b.rsplit(":", 1)[1], f"/events?room={room}&index={start}") for b in BASES]
    polls = [None] * len(BASES)

    def poll(k):
        polls[k] = get_json(BASES[k], f"/get/msg?room={room}&index={start}&wait=10", 20)

    threads = [threading.Thread(target=poll, args=(k,)) for k in range(len(BASES))]
    for t in threads:
        t.start()
    await asyncio.sleep(0.3)
    text = f"from {sender_name}"
    t0 = time.monotonic()
    await asyncio.to_thread(do_send, text)
    for k, ws in enumerate(socks):
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except Exception as e:                    # noqa: BLE001 - reported
            m = {"error": repr(e)}
        report(m.get("text") == text, f"{text} reaches a socket on node {k}", m)
        await ws.close()
    for k, st in enumerate(streams):
        got = None
        try:
            while True:
                ev = await asyncio.to_thread(st.next, 5)
                if ev is None or ev.type == "message":
                    got = ev.json()["text"] if ev else None
                    break
        except Exception as e:                    # noqa: BLE001 - reported
            got = repr(e)
        report(got == text, f"{text} reaches an event stream on node {k}", got)
        st.sock.close()
    for t in threads:
        t.join(20)
    took = time.monotonic() - t0
    for k, doc in enumerate(polls):
        got = [m["text"] for m in doc["messages"]] if doc else None
        report(got == [text], f"{text} reaches a long-poll on node {k}", got)
    report(took < 5, f"{text}: every node within 5 s", took)


async def fanout():
    room = "fan"
    for i, b in enumerate(BASES):
        await fanout_one(room, f"node {i}", lambda text, b=b: send(b, text, room))
    await fanout_one(room, "psql", lambda text: db_run(URI, "insert into messages(room, \"user\", text) values(?, 'ops', ?)",
                                                     (room, text)))


# ---- follow ----

class Followers:
    """A long-poll and a WebSocket follower per node, each resuming by id, on
    the next node when its own stops answering."""

    def __init__(self, room, start):
        self.room, self.start = room, start
        self.got = {}
        self.stop = threading.Event()
        self.threads = []
        for k in range(len(BASES)):
            self.got[f"long-poll on node {k}"] = []
            self.got[f"socket on node {k}"] = []
            self.got[f"event stream on node {k}"] = []
            self.threads.append(threading.Thread(target=self.long_poll, args=(k, self.got[f"long-poll on node {k}"])))
            self.threads.append(threading.Thread(target=self.stream, args=(k, self.got[f"event stream on node {k}"])))
            self.threads.append(threading.Thread(target=lambda k=k: asyncio.run(self.socket(k, self.got[f"socket on node {k}"]))))
        for t in self.threads:
            t.start()

    def long_poll(self, k, out):
        cursor = self.start
        while not self.stop.is_set():
            doc = get_json(BASES[k], f"/get/msg?room={self.room}&index={cursor}&wait=2", 15)
            if doc is None:
                k = (k + 1) % len(BASES)          # this node is away: the next one
                time.sleep(0.1)
                continue
            out.extend(m["id"] for m in doc["messages"])
            if doc["messages"]:
                cursor = doc["max_index"]

    def stream(self, k, out):
        """As an EventSource does: Last-Event-ID on every reconnect."""
        last = str(self.start)
        while not self.stop.is_set():
            try:
                st = Stream("127.0.0.1", BASES[k].rsplit(":", 1)[1], f"/events?room={self.room}",
                            last_event_id=last, timeout=3)
                if st.status != 200:
                    raise ConnectionError(st.status)
                while not self.stop.is_set():
                    try:
                        ev = st.next(0.5)
                    except TimeoutError:
                        continue
                    if ev is None:
                        break                     # ended (a shutdown): reconnect
                    if ev.type == "error":
                        raise ConnectionError(ev.data)   # the node's push process is away
                    if ev.type == "message":
                        out.append(int(ev.id))
                    if ev.id:
                        last = ev.id
                st.sock.close()
            except Exception:                     # noqa: BLE001 - resume by id, on the next node
                k = (k + 1) % len(BASES)
                time.sleep(0.2)

    async def socket(self, k, out):
        cursor = self.start
        while not self.stop.is_set():
            try:
                async with websockets.connect(ws_url(BASES[k], f"room={self.room}&index={cursor}"),
                                              open_timeout=3, max_queue=None) as ws:
                    while not self.stop.is_set():
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except asyncio.TimeoutError:
                            continue
                        if "id" in m and "text" in m:
                            out.append(m["id"])
                            cursor = m["id"]
            except Exception:                     # noqa: BLE001 - resume by id, on the next node
                k = (k + 1) % len(BASES)
                await asyncio.sleep(0.2)

    def finish(self, last, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(g and g[-1] >= last for g in self.got.values()):
            time.sleep(0.1)
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def check(self, ids):
        want = [i for i in ids if i > self.start]
        for name, have in self.got.items():
            first_diff = next((n for n, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
            report(have == want, f"the {name} saw every message once, in id order",
                   f"{len(have)} received, {len(want)} stored; first difference at {first_diff}")


class Senders:
    """HTTP senders and a WebSocket sender per node; each message has a cid
    and is retried with it (on the next node when its own does not answer)
    until acknowledged."""

    def __init__(self, room, per_node=2, count=None, pause=0.02):
        self.room, self.count, self.pause = room, count, pause
        self.acked = {}          # text -> id
        self.order = {}          # sender -> [ids in send order]
        self.refusals = []       # (phase, node, status, is_json, retry_after)
        self.phase = "start"
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.http_sender, args=(k, j))
                        for k in range(len(BASES)) for j in range(per_node)]
        self.threads += [threading.Thread(target=lambda k=k: asyncio.run(self.ws_sender(k))) for k in range(len(BASES))]
        for t in self.threads:
            t.start()

    def done(self, n):
        return self.stop.is_set() or (self.count is not None and n > self.count)

    def ack(self, name, text, i):
        with self.lock:
            self.acked[text] = i
            self.order.setdefault(name, []).append(i)

    def http_sender(self, k, j):
        name, n = f"h{k}.{j}", 0
        while True:
            n += 1
            if self.done(n):
                return
            text = f"{name}-{n}"
            node = k
            for _ in range(300):                  # bounded: about a minute
                st, hd, body = send(BASES[node], text, self.room, cid=text)
                if st == 200:
                    self.ack(name, text, json.loads(body)["id"])
                    break
                try:
                    is_json = "error" in json.loads(body)
                except ValueError:
                    is_json = False
                self.refusals.append((self.phase, node, st, is_json, hd.get("Retry-After")))
                if st in (0, 502, 504) or (st == 503 and b"database" not in body):
                    node = (node + 1) % len(BASES)   # the node (its nginx or chat-fcgi) is away
                time.sleep(0.1)
            time.sleep(self.pause)

    async def ws_sender(self, k):
        name, n, node = f"w{k}", 0, k
        pending = None
        while True:
            try:
                async with websockets.connect(ws_url(BASES[node], f"room={self.room}"), open_timeout=3) as ws:
                    tries = 0
                    while True:
                        if pending is None:
                            n += 1
                            if self.done(n):
                                return
                            pending, tries = f"{name}-{n}", 0
                        await ws.send(json.dumps({"text": pending, "cid": pending}))
                        tries += 1
                        deadline = time.monotonic() + 5
                        while time.monotonic() < deadline:   # the echo or a duplicate acknowledges it
                            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                            if m.get("text") == pending or m.get("duplicate"):
                                self.ack(name, pending, m["id"])
                                if m.get("text") and tries > 1:
                                    # A try refused with 503 may have been stored all the same (the
                                    # connection broke after COMMIT): the retry's duplicate answer
                                    # is still on its way, and is not the next message's.
                                    await self.drain_duplicate(ws, m["id"])
                                pending = None
                                break
                            if m.get("error"):
                                self.refusals.append((self.phase, node, m.get("code"), True, "frame"))
                                await asyncio.sleep(0.2)
                                break
                        await asyncio.sleep(self.pause * 2)
            except Exception:                     # noqa: BLE001 - the same cid again, on the next node
                node = (node + 1) % len(BASES)
                await asyncio.sleep(0.2)

    @staticmethod
    async def drain_duplicate(ws, first_id):
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                return
            if m.get("duplicate") and m.get("id") == first_id:
                return

    def join(self, timeout=90):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        report(not any(t.is_alive() for t in self.threads), "every sender finished")

    def check(self, room):
        rows, ids = stored(room)
        missing = [t for t in self.acked if t not in rows]
        report(not missing, f"every acknowledged message is stored ({len(self.acked)})", missing[:5])
        twice = [t for t, (_, n) in rows.items() if n != 1]
        report(not twice, "each exactly once", twice[:5])
        wrong = [t for t, i in self.acked.items() if t in rows and rows[t][0] != i]
        report(not wrong, "under the id it was acknowledged with", wrong[:5])
        backwards = [s for s, got in self.order.items() if got != sorted(got) or len(set(got)) != len(got)]
        report(not backwards, "each sender's ids increase in its send order", backwards[:5])
        return ids


def follow():
    room = "follow"
    start = latest(room)
    f = Followers(room, start)
    time.sleep(0.5)
    s = Senders(room, per_node=2, count=60)
    s.join()
    ids = s.check(room)
    report(len(ids) == len(BASES) * 3 * 60, f"{len(BASES)} nodes x 3 senders x 60 messages stored", len(ids))
    f.finish(ids[-1] if ids else 0)
    f.check(ids)


# ---- cid ----

def cid():
    room = f"cid{len(BASES)}"
    st, _, body = send(BASES[0], "first", room, cid="same")
    first = json.loads(body)
    report(st == 200 and not first.get("duplicate"), "a cid through node 0 is stored", first)
    for k in range(1, len(BASES)):
        st, _, body = send(BASES[k], "again", room, cid="same")
        doc = json.loads(body)
        report(st == 200 and doc.get("duplicate") is True and doc.get("id") == first.get("id"),
               f"the same cid through node {k}: duplicate, the first id", doc)

    async def ws_dup():
        async with websockets.connect(ws_url(BASES[-1], f"room={room}"), open_timeout=5) as ws:
            await ws.send(json.dumps({"text": "over ws", "cid": "same"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))
    m = asyncio.run(ws_dup())
    report(m == {"duplicate": True, "id": first.get("id")}, f"and over a socket on node {len(BASES) - 1}", m)

    # The same cid through every node at once, twenty times: one row each.
    bad = []
    for i in range(20):
        barrier = threading.Barrier(len(BASES))
        answers = [None] * len(BASES)

        def go(k):
            barrier.wait(5)
            st, _, body = send(BASES[k], f"race {i} via {k}", room, cid=f"race-{i}")
            answers[k] = json.loads(body) if st == 200 else {"status": st}

        threads = [threading.Thread(target=go, args=(k,)) for k in range(len(BASES))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        ids = {a.get("id") for a in answers}
        fresh = [a for a in answers if not a.get("duplicate")]
        if len(ids) != 1 or None in ids or len(fresh) != 1:
            bad.append(answers)
    report(not bad, "a cid raced through every node: one stored, the others told its id", bad[:2])
    rows = db_run(URI, "select count(*), count(distinct cid) from messages where room = ? and cid like 'race-%'", (room,))
    report(rows == [("20", "20")], "twenty rows for twenty raced cids", rows)


# ---- faults ----

def pg_ctl(*args):
    cmd = os.environ.get("PG_AS", "").split() + [os.environ["PG_CTL"], "-D", os.environ["PG_DATA"],
                                                  "-l", os.environ["PG_LOG"], "-w", "-t", "60"] + list(args)
    return subprocess.run(cmd, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=90).returncode


def pid(stack, name):
    with open(os.path.join(stack, name)) as f:
        return int(f.read())


def faults():
    room = "faults"
    start = latest(room)
    f = Followers(room, start)
    time.sleep(0.5)
    s = Senders(room, per_node=1, pause=0.05)
    time.sleep(2)

    victim = STACKS[-1]
    s.phase = "node killed"
    for name in ("chat-fcgi.pid", "chat-ws.pid"):
        os.kill(pid(victim, name), signal.SIGKILL)
    time.sleep(2.5)
    s.phase = "pg_ctl restart"
    rc = pg_ctl("-m", "fast", "restart")
    report(rc == 0, "pg_ctl restart under load", rc)
    time.sleep(2.5)
    s.phase = "database away"
    rc = pg_ctl("-m", "fast", "stop")
    time.sleep(2)
    rc |= pg_ctl("-o", os.environ["PG_OPTS"], "start")
    report(rc == 0, "PostgreSQL stopped for 2 s and started again", rc)
    s.phase = "database back"
    time.sleep(3)
    s.stop.set()
    s.join()
    ids = s.check(room)
    report(len(s.acked) > 50, f"messages acknowledged through the faults ({len(s.acked)})", len(s.acked))
    f.finish(ids[-1] if ids else 0)
    f.check(ids)

    away = [(n, st, j, r) for ph, n, st, j, r in s.refusals if ph == "database away"]
    from_db = [r for r in away if r[0] != len(BASES) - 1]
    report(from_db and all(st == 503 and j and r in ("1", "frame") for _, st, j, r in from_db),
           "while PostgreSQL was away the live nodes answered 503 JSON with Retry-After (or a 503 frame)",
           (len(from_db), from_db[:5]))
    bad = [r for r in s.refusals if r[2] == 500 or (r[2] != 0 and not r[3])]
    report(not bad, "never a 500 or a non-JSON answer", bad[:5])

    # Every surviving process serves again by itself: each chat-fcgi worker
    # (/healthz many times), each watcher (a long-poll on node j woken by a
    # send on node i), each chat-ws (a socket on every node gets it).
    live = BASES[:-1]
    for k, b in enumerate(live):
        codes = {http(b + "/healthz")[0] for _ in range(16)}
        report(codes == {200}, f"node {k}: /healthz 200 from every worker", codes)
    for i, b in enumerate(live):
        room2 = f"after{i}"
        start2 = latest(room2)
        polls = [None] * len(live)

        def poll(j):
            polls[j] = get_json(live[j], f"/get/msg?room={room2}&index={start2}&wait=10", 20)

        async def sockets():
            socks = [await websockets.connect(ws_url(x, f"room={room2}&index={start2}"), open_timeout=5) for x in live]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(send, b, f"after via {i}", room2)
            got = []
            for ws in socks:
                try:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)).get("text"))
                except Exception as e:            # noqa: BLE001 - reported
                    got.append(repr(e))
                await ws.close()
            return got

        threads = [threading.Thread(target=poll, args=(j,)) for j in range(len(live))]
        for t in threads:
            t.start()
        time.sleep(0.3)
        got = asyncio.run(sockets())
        for t in threads:
            t.join(20)
        report(got == [f"after via {i}"] * len(live), f"after the faults a send on node {i} reaches a socket on every live node", got)
        lp = [[m["text"] for m in p["messages"]] if p else None for p in polls]
        report(lp == [[f"after via {i}"]] * len(live), f"and a long-poll on every live node", lp)


def main():
    {"fanout": lambda: asyncio.run(fanout()), "follow": follow, "cid": cid, "faults": faults}[GROUP]()


if __name__ == "__main__":
    main()
