#!/usr/bin/env python3
"""ws_fanout.py - WebSocket fan-out through nginx: latency, loss, memory.

Starts its own stack (conf/stack.sh, free loopback ports, a temporary
folder), opens N sockets on one room with tests/bench/load_client.c (raw
sockets, two processes; built into build/bench/ on first use), then
sends M messages at R per second with /send/msg, each text carrying the wall
time its send request started. Every receiver records when each message
arrived. Reports latency (send start -> receipt) median/p99/max over all
deliveries, messages lost and duplicated, and the memory (PSS) that nginx
and chat-ws together grew by per idle connection.

Usage: tests/bench/ws_fanout.py N RATE SECONDS
       e.g. tests/bench/ws_fanout.py 1000 20 10
BIN_DIR as for make (default build/release).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "bench")


def bench_bin(name, libs=()):
    """tests/bench/NAME.c built into build/bench/NAME (again when the source
    is newer); returns the program's path."""
    src, out = os.path.join(HERE, name + ".c"), os.path.join(ROOT, "build", "bench", name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["cc", "-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-pthread", "-o", out, src]
                       + list(libs), check=True)
    return out


def load_client(mode, url, n, msgs, timeout):
    """The command of one load client process (tests/bench/load_client.c)."""
    return [bench_bin("load_client"), mode, url, str(n), str(msgs), str(timeout)]


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


def cpu_s(pids):
    """CPU seconds (user + system) the processes used so far."""
    tck, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tck


def server_pids(state):
    """([chat-ws pid], [nginx master and worker pids])"""
    with open(os.path.join(state, "chat-ws.pid")) as f:
        ws = [int(f.read())]
    with open(os.path.join(state, "nginx.run.pid")) as f:
        master = int(f.read())
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return ws, [master] + [int(p) for p in out.split()]


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else None


def syscall_counter(pids):
    """Starts counting the system calls of each pid group (perf stat on the
    raw_syscalls tracepoint); returns a function that stops and gives one
    count per group, or None where perf could not count."""
    perfs = [subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p",
                               ",".join(str(p) for p in group)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for group in pids]
    time.sleep(0.2)                   # perf attached

    def stop():
        counts = []
        for perf in perfs:
            perf.send_signal(signal.SIGINT)
            out = perf.communicate(timeout=30)[1]
            m = re.search(r"^(\d+),,raw_syscalls:sys_enter", out, re.M)
            counts.append(int(m.group(1)) if m else None)
        return counts
    return stop


def drive(cmds, n, send, msgs, rate, pids, settle=1.0, syscalls=False):
    """Starts the load clients (cmds: one command each; each prints "ready"
    once its subscribers are connected, then one JSON line of figures with
    its raw latencies and its own CPU seconds), sends msgs messages at rate
    per second with send(i), each in its own thread, and returns the
    clients' figures merged, plus the PSS growth (KiB per subscriber, n in
    all) and the CPU of each pid group while the subscribers were open, and
    each client's CPU over the run; with syscalls, the system calls of each
    pid group a delivery over the same span. Returns None when a client says
    the route is absent (a 404: the server has no such transport)."""
    before = [pss_kib(group) for group in pids]
    env = dict(os.environ, LAT="1")
    clients = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for cmd in cmds]
    for client in clients:
        line = client.stdout.readline().strip()
        if line != "ready":
            for c in clients:
                c.kill()
                c.wait(10)
            if line == "absent":
                return None
            raise SystemExit(f"load client failed: {line}")
    time.sleep(settle)
    after = [pss_kib(group) for group in pids]
    interval = 1.0 / rate
    stop_count = syscall_counter(pids) if syscalls else None
    start = time.monotonic()
    cpu0 = [cpu_s(group) for group in pids]
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
    parts = [json.loads(c.stdout.readline()) for c in clients]
    cpu = [cpu_s(group) - c0 for group, c0 in zip(pids, cpu0)]
    calls = stop_count() if stop_count else None
    secs = time.monotonic() - start
    for c in clients:
        c.wait(30)
    lat = sorted(x for p in parts for x in p["lat"])
    r = {k: sum(p.get(k, 0) for p in parts)
         for k in ("deliveries", "lost", "dup", "outOfOrder", "closedEarly", "requests", "errors")}
    r.update(p50=pct(lat, 50), p90=pct(lat, 90), p99=pct(lat, 99), max=lat[-1] if lat else None)
    r["msgs"] = msgs
    # server CPU per delivery, while messages flowed (includes the sends)
    r["cpu_us"] = [c * 1e6 / max(1, r["deliveries"]) for c in cpu]
    r["cpu_s"] = cpu
    r["calls"] = [c / max(1, r["deliveries"]) if c is not None else None for c in calls] if calls else None
    # each load client's own CPU from its ready to its last delivery, and the
    # share of one core that is over the run: near 100 % it measures itself
    r["client_cpu_s"] = [p.get("cpu_s", 0) for p in parts]
    r["client_core_pct"] = max(100 * c / secs for c in r["client_cpu_s"])
    r["secs"] = secs
    r["kib"] = [(a - b) / n for a, b in zip(after, before)]
    r["idle"], r["open"] = sum(before), sum(after)
    return r


def split(n, procs):
    """n subscribers over procs client processes."""
    return [n // procs + (1 if i < n % procs else 0) for i in range(procs) if n // procs or i < n % procs]


def fanout(url, send, n, rate, secs, pids, procs=2):
    """Opens n sockets on url (from procs client processes), sends rate*secs
    messages with send(i), and returns the figures plus the PSS growth (KiB)
    of each pid group."""
    msgs = int(rate * secs)
    cmds = [load_client("ws", url, k, msgs, secs + 30) for k in split(n, procs)]
    return drive(cmds, n, send, msgs, rate, pids)


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
        print(f"  CPU over the run: nginx {r['cpu_s'][0]:.2f} s, chat-ws {r['cpu_s'][1]:.2f} s, "
              f"load clients {' + '.join(f'{c:.2f}' for c in r['client_cpu_s'])} s")
    finally:
        subprocess.run([stack, "stop", state], env=env)


if __name__ == "__main__":
    main()
