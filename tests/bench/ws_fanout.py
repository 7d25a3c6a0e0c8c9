#!/usr/bin/env python3
"""ws_fanout.py - WebSocket fan-out through nginx: latency, loss, memory.

Starts its own stack (conf/stack.sh, free loopback ports, a temporary
folder), opens N sockets on one room with tests/bench/ws_client.js (Node and
the ws package: npm install in tests/bench), then
sends M messages at R per second with /send/msg, each text carrying the wall
time its send request started. Every receiver records when each message
arrived. Reports latency (send start -> receipt) median/p99/max over all
deliveries, messages lost and duplicated, and the memory (PSS) that nginx
and chat-ws together grew by per idle connection.

Usage: tests/bench/ws_fanout.py N RATE SECONDS
       e.g. tests/bench/ws_fanout.py 1000 20 10
BIN_DIR as for make (default build/release).
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def server_pids(state):
    """([chat-ws pid], [nginx master and worker pids])"""
    with open(os.path.join(state, "chat-ws.pid")) as f:
        ws = [int(f.read())]
    with open(os.path.join(state, "nginx.run.pid")) as f:
        master = int(f.read())
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return ws, [master] + [int(p) for p in out.split()]


def fanout(url, send, n, rate, secs, pids, raw=False):
    """Opens n sockets on url, sends rate*secs messages with send(i), and
    returns the client's figures plus the PSS growth (KiB) of each pid group."""
    msgs = int(rate * secs)
    before = [pss_kib(group) for group in pids]
    client = subprocess.Popen(["node", os.path.join(ROOT, "tests", "bench", "ws_client.js"), url,
                               str(n), str(msgs), str(secs + 30)] + (["raw"] if raw else []),
                              stdout=subprocess.PIPE, text=True)
    line = client.stdout.readline().strip()
    if line != "ready":
        raise SystemExit(f"load client failed: {line}")
    time.sleep(1.0)
    after = [pss_kib(group) for group in pids]
    interval = 1.0 / rate
    start = time.monotonic()
    threads = []
    for i in range(msgs):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=send, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(10)
    r = json.loads(client.stdout.readline())
    client.wait(30)
    r["msgs"] = msgs
    r["kib"] = [(a - b) / n for a, b in zip(after, before)]
    r["idle"], r["open"] = sum(before), sum(after)
    return r


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    n, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    state = tempfile.mkdtemp(prefix="chat-bench-ws-")
    port = free_port()
    env = dict(os.environ, PORT=str(port), WS_PORT=str(free_port()),
               BIN_DIR=os.environ.get("BIN_DIR", "build/release"))
    stack = os.path.join(ROOT, "conf", "stack.sh")
    subprocess.run([stack, "start", state], env=env, check=True)
    base = f"http://127.0.0.1:{port}"
    try:
        ws_pids, nginx_pids = server_pids(state)
        time.sleep(0.5)

        def send(i):
            t0 = time.time()
            urllib.request.urlopen(f"{base}/send/msg?room=bench&text={i}+{t0:.6f}", timeout=10).read()

        r = fanout(f"ws://127.0.0.1:{port}/ws?room=bench", send, n, rate, secs, [nginx_pids, ws_pids])
        print(f"ws fan-out: {n} sockets, {r['msgs']} messages at {rate:g}/s "
              f"(tests/bench/ws_fanout.py {n} {rate:g} {secs:g})")
        print(f"  deliveries {r['deliveries']}, lost {r['lost']}, duplicated {r['dup']}, "
              f"sockets out of order {r['outOfOrder']}, closed early {r['closedEarly']}")
        print(f"  latency send start -> receipt: median {r['p50']:.1f} ms, p90 {r['p90']:.1f} ms, "
              f"p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms")
        print(f"  memory, nginx + chat-ws PSS: {r['idle']} KiB idle, {r['open']} KiB with {n} sockets: "
              f"{sum(r['kib']):.1f} KiB per connection (nginx {r['kib'][0]:.1f}, chat-ws {r['kib'][1]:.1f})")
    finally:
        subprocess.run([stack, "stop", state], env=env)


if __name__ == "__main__":
    main()
