#!/usr/bin/python3
"""supervise.py - `conf/stack.sh run` (what `make run` runs) as a supervisor.

  supervise.py BASE STACK_DIR BIN_DIR RUN_PID PIDS_FILE

The stack in STACK_DIR runs under `stack.sh run` (pid RUN_PID). While two
HTTP senders and a WebSocket sender push messages (with a cid) and a
long-poll, a short-poll and a WebSocket subscriber follow the room (the
clients of tests/it/faults.py, which reads the same first three arguments),
it kills chat-fcgi with SIGKILL, then chat-ws, reloads nginx (SIGHUP to its
master), then kills nginx's master; nothing but the supervisor starts them
again. Then it checks that every acknowledged message is stored once and
reached every subscriber once, in order. Then back-off: chat-ws is killed
again each time it is back; the delays must grow while HTTP keeps serving,
and come back to 0.5 s once chat-ws has stayed up. Every pid seen goes to
PIDS_FILE (one a line). Prints PASS/FAIL.
"""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import faults  # noqa: E402 - its clients, on BASE and STACK_DIR from argv

from faults import alive, http, pid, report  # noqa: E402

BASE, STACK = faults.BASE, faults.STACK
RUN_PID, PIDS_FILE = int(sys.argv[4]), sys.argv[5]
faults.ROOM = "supervise"
seen = set()


def log(name):
    with open(os.path.join(STACK, "logs", {"nginx": "nginx-error.log"}.get(name, name + ".log"))) as f:
        return f.read()


def pidfile(name):
    return {"nginx": "nginx.run.pid"}.get(name, name + ".pid")


def current(name):
    """The live pid in NAME's pid file, or None."""
    try:
        p = pid(pidfile(name))
    except (OSError, ValueError):
        return None
    if alive(p):
        seen.add(p)
        return p
    return None


def children(p):
    out = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
    seen.update(int(c) for c in out)
    return [int(c) for c in out]


def healthy():
    try:
        return http(f"{BASE}/healthz", timeout=2)[0] == 200
    except Exception:                              # noqa: BLE001 - not yet
        return False


def until(cond, seconds):
    """Polls cond every 0.05 s for up to seconds; the time it took, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def kill_and_wait(name, ready, bound=3.0):
    """SIGKILL NAME; PASS when the supervisor has started a new one that is
    ready (ready() true) within bound seconds."""
    old = current(name)
    if old is None:
        report(False, f"{name} is running before it is killed", log(name).splitlines()[-3:])
        return
    workers = children(old) if name == "nginx" else []
    listening = log(name).count("listening")
    os.kill(old, signal.SIGKILL)
    took = until(lambda: (current(name) or old) != old and ready(listening), bound)
    report(took is not None, f"{name} killed with SIGKILL: started again and serving within {bound:.0f} s",
           f"pid file {current(name)}; last log lines {log(name).splitlines()[-3:]}")
    if took is not None:
        print(f"INFO {name} back in {took:.2f} s", flush=True)
    line = f"{name} exited (signal 9); restarting in 0.5 s"
    report(line in log(name), f"the supervisor logged '{line}'", log(name).splitlines()[-3:])
    if workers:
        report(until(lambda: not any(alive(w) for w in workers), 5) is not None,
               "the killed master's workers are gone", [w for w in workers if alive(w)])
    report(alive(RUN_PID), f"stack.sh run still running after {name} was killed")


def flow():
    subs = {"long-poll": [], "short-poll": [], "websocket": []}
    start_id = json.loads(http(f"{BASE}/get/msg?room={faults.ROOM}&tail=1")[2])["max_index"]
    threads = [threading.Thread(target=faults.sender, args=(k,)) for k in (1, 2)]
    threads += [threading.Thread(target=faults.long_poller, args=(subs["long-poll"], 5)),
                threading.Thread(target=faults.long_poller, args=(subs["short-poll"], 0)),
                threading.Thread(target=faults.ws_thread, args=(faults.ws_subscriber(subs["websocket"], start_id),)),
                threading.Thread(target=faults.ws_thread, args=(faults.ws_sender(),))]
    for t in threads:
        t.start()
    time.sleep(1.5)

    kill_and_wait("chat-fcgi", lambda _: healthy())
    time.sleep(1.5)
    kill_and_wait("chat-ws", lambda n: log("chat-ws").count("listening") > n)
    time.sleep(1.5)

    master = current("nginx")
    if master is not None:
        os.kill(master, signal.SIGHUP)                 # a reload: same master, new workers
    time.sleep(1.5)
    report(current("nginx") == master and "nginx exited" not in log("nginx"),
           "nginx reloaded (SIGHUP): the same master, not taken for a death", log("nginx").splitlines()[-3:])
    report(healthy(), "serving after the reload")
    kill_and_wait("nginx", lambda _: healthy())
    time.sleep(1.5)

    faults.stop.set()
    for t in threads[:2] + threads[-1:]:
        t.join(30)
    last = json.loads(http(f"{BASE}/get/msg?room={faults.ROOM}&tail=1")[2])["max_index"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(got and got[-1] == last for got in subs.values()):
        time.sleep(0.1)
    faults.stop_subs.set()
    for t in threads:
        t.join(30)

    sent = faults.sent
    db = sqlite3.connect(faults.DB)
    stored = {t: (i, n) for t, i, n in db.execute(
        "select cid, min(id), count(*) from messages where room = ? group by cid", (faults.ROOM,))}
    ids = [i for (i,) in db.execute("select id from messages where room = ? order by id", (faults.ROOM,))]
    report(len(sent) > 50 and any(t.startswith("w-") for t in sent),
           f"messages acknowledged on both transports through the kills ({len(sent)})", len(sent))
    report(all(t in stored and stored[t][1] == 1 for t in sent), "every acknowledged message is stored once (by cid)",
           [(t, stored.get(t)) for t in sent if t not in stored or stored[t][1] != 1][:5])
    report(all(stored[t][0] == i for t, i in sent.items() if t in stored), "under the id it was acknowledged with")
    for name, got in subs.items():
        want = [i for i in ids if i > got[0][1]]
        report(got[1:] == want, f"the {name} subscriber got every message once, in order",
               f"{len(got) - 1} received, {len(want)} stored")


def backoff():
    """chat-ws killed again each time it is back: the delays must grow. (Not
    by taking its port: libwebsockets 4.1 leaks when it cannot bind, which
    the SAN=1 run would report.)"""
    before = len(log("chat-ws").splitlines())

    def delays():
        lines = log("chat-ws").splitlines()[before:]
        return [float(m.group(1)) for m in (re.search(r"chat-ws exited \(.*\); restarting in ([0-9.]+) s", x)
                                            for x in lines) if m]
    killed = []
    for _ in range(3):
        if until(lambda: current("chat-ws") not in (None, *killed), 40) is None:
            break
        p = current("chat-ws")
        if p is not None:
            os.kill(p, signal.SIGKILL)
            killed.append(p)
    report(len(killed) == 3, "chat-ws killed again as soon as it was back, 3 times", killed)
    until(lambda: len(delays()) >= 3, 10)
    d = delays()
    # 0.5, 1 and 2 s (or 1, 2, 4 when the first kill came soon after a start)
    report(len(d) == 3 and all(b == 2 * a for a, b in zip(d, d[1:])),
           "a process that keeps dying is restarted with doubling delays", d)
    ok = healthy() and http(f"{BASE}/send/msg?text=during+back-off&room={faults.ROOM}")[0] == 200
    report(ok and alive(RUN_PID), "meanwhile chat-fcgi and nginx keep serving")
    n = log("chat-ws").count("listening")
    took = until(lambda: log("chat-ws").count("listening") > n, 2 * d[-1] + 10 if d else 30)
    report(took is not None, "chat-ws is back after the last delay", log("chat-ws").splitlines()[-3:])
    current("chat-ws")
    time.sleep(11)                                 # up for longer than the supervisor's 10 s
    kill_and_wait("chat-ws", lambda n: log("chat-ws").count("listening") > n)
    d = delays()
    report(d and d[-1] == 0.5, "after staying up, the delay is back to 0.5 s", d)

    # A clean exit is an exit too (SIGTERM to chat-fcgi: status 0).
    old = current("chat-fcgi")
    os.kill(old, signal.SIGTERM)
    took = until(lambda: (current("chat-fcgi") or old) != old and healthy(), 5)
    report(took is not None and "chat-fcgi exited (status 0); restarting in" in log("chat-fcgi"),
           "chat-fcgi ended by SIGTERM: its status 0 logged, started again", log("chat-fcgi").splitlines()[-3:])


def main():
    for name in ("chat-fcgi", "chat-ws", "nginx"):
        current(name)
    children(current("nginx"))
    try:
        flow()
        backoff()
    finally:
        faults.stop.set()                          # the clients end, whatever happened
        faults.stop_subs.set()
        for name in ("chat-fcgi", "chat-ws", "nginx"):
            p = current(name)
            if name == "nginx" and p:
                children(p)
        with open(PIDS_FILE, "w") as f:
            f.write("".join(f"{p}\n" for p in sorted(seen)))


if __name__ == "__main__":
    main()
