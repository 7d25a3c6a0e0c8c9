#!/usr/bin/env python3
"""wakeup.py - how fast a held long-poll is answered, and what waiting costs.

Starts its own stack (conf/stack.sh, free loopback port, temporary folder),
then measures, each bounded in count and time:

  send    latency from the start of a /send/msg request (same chat-fcgi) to
          the held long-poll's answer, N times
  sqlite  latency from the commit of a row by another writer (this script's
          own SQLite connection, as the sqlite3 CLI would) to the answer
  probes  change probes per second while 1,000 long-polls are held for 5 s

Usage: tests/bench/wakeup.py [N]      (default N=200; BIN_DIR as for make)
"""
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_fanout import free_port, pct  # noqa: E402


def get(url, timeout=15):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_held(base, n, limit=5.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if get(base + "/healthz")["held"] >= n:
            return True
        time.sleep(0.001)
    return False


def measure(base, n, write):
    """n rounds: park one long-poll, write, time until its answer."""
    lat = []
    for i in range(n):
        cursor = get(base + "/get/msg?tail=1")["max_index"]
        box = {}

        def poll():
            box["doc"] = get(f"{base}/get/msg?index={cursor}&wait=10")
            box["t"] = time.perf_counter()

        t = threading.Thread(target=poll)
        t.start()
        if not wait_held(base, 1):
            raise SystemExit("long-poll was not held")
        t0 = write(i)
        t.join(15)
        if box.get("doc", {}).get("data") != [f"m{i}"]:
            raise SystemExit(f"round {i}: unexpected answer {box.get('doc')}")
        lat.append((box["t"] - t0) * 1000)
    return lat


async def hold_many(host, port, path, n, seconds):
    async def one():
        r, w = await asyncio.open_connection(host, port)
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await w.drain()
        await asyncio.wait_for(r.read(), seconds + 30)
        w.close()
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(seconds)
    return tasks


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    state = tempfile.mkdtemp(prefix="chat-bench-")
    port = free_port()
    env = dict(os.environ, PORT=str(port), BIN_DIR=os.environ.get("BIN_DIR", "build/release"))
    stack = os.path.join(ROOT, "conf", "stack.sh")
    subprocess.run([stack, "start", state], env=env, check=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def http_send(i):
            t0 = time.perf_counter()
            get(f"{base}/send/msg?text=m{i}")
            return t0

        db = sqlite3.connect(os.path.join(state, "chat.db"), isolation_level=None)
        db.execute("pragma busy_timeout=5000")

        def sqlite_send(i):
            db.execute("insert into messages(room, text) values('lobby', ?)", (f"m{i}",))
            return time.perf_counter()   # autocommit: the row is committed here

        # Re-number the messages of the second series so texts match rounds.
        send_lat = measure(base, n, http_send)
        get(f"{base}/send/msg?text=separator")
        sqlite_lat = measure(base, n, sqlite_send)

        path = "/get/msg?index=%d&wait=60" % get(base + "/get/msg?tail=1")["max_index"]

        async def probes():
            tasks = await hold_many("127.0.0.1", port, path, 1000, 1.0)
            if not wait_held(base, 1000, 20):
                raise SystemExit("1000 long-polls were not held")
            p0, t0 = get(base + "/healthz")["probes"], time.monotonic()
            await asyncio.sleep(5)
            p1, t1 = get(base + "/healthz")["probes"], time.monotonic()
            get(f"{base}/send/msg?text=release")
            await asyncio.gather(*tasks)
            return (p1 - p0) / (t1 - t0)

        rate = asyncio.run(probes())
        print(f"wake-up benchmark, {n} rounds each (tests/bench/wakeup.py {n})")
        print(f"  send through chat-fcgi -> held long-poll: median {statistics.median(send_lat):.2f} ms, "
              f"p99 {pct(send_lat, 99):.2f} ms")
        print(f"  row committed by another writer -> held long-poll: median {statistics.median(sqlite_lat):.2f} ms, "
              f"p99 {pct(sqlite_lat, 99):.2f} ms")
        print(f"  change probes while 1,000 long-polls are held: {rate:.0f} per second")
    finally:
        subprocess.run([stack, "stop", state], env=env)


if __name__ == "__main__":
    main()
