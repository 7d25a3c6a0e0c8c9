#!/usr/bin/env python3
"""cluster.py - two nodes on one PostgreSQL beside one node on SQLite, in one run.

Starts a private PostgreSQL 15 (initdb in a temporary folder, a unix socket
only, fsync on, as the postgres user when root), two nodes on it
(conf/stack.sh start, each its nginx, chat-fcgi and chat-ws) and one node on
SQLite, then runs each workload on both set-ups and prints one table (the
issue's aims in brackets):

  C1  sends per second: wrk through both nodes at once (half the
      connections each, c=16 and c=64 in all) vs wrk on the SQLite node
      [two nodes at least half the SQLite rate]; and messages a commit
      (each node's /metrics: stored over commits, the nodes' mean)
  C2  wake-up: one long-poll and one socket on node 1, 200 sends one at a
      time through node 0 (send start -> delivery) vs the same on the one
      SQLite node [cross-node p50 under 5 ms]
  C3  fan-out: 200 messages at 20/s through node 0 to 1,000 subscribers,
      500 on each node, long-poll and WebSocket, vs 1,000 on the SQLite node
      [latency within 1.5x the single node; lost 0]

Usage: tests/bench/cluster.py [--runs R] [--secs S] [--only C1,C2,C3]
       (defaults: 3 runs, 10 s; the median run is reported, lost and
       duplicated summed over every run)
Subscribers are tests/bench/load_client.c (raw sockets, as in nchan.py);
server CPU counts every node's processes and, for two nodes, PostgreSQL's.
Needs wrk (tests/bench/run.sh installs it) and postgresql-15. The machine's two cores run the servers,
PostgreSQL and the load clients alike: the figures are this machine's.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from nchan import CLIENT_PROCS, http, median_run, w7_once, wrk  # noqa: E402
from ws_fanout import drive, free_port, load_client, split  # noqa: E402

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
STACK = os.path.join(ROOT, "conf", "stack.sh")


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + cmd


class Postgres:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        if os.getuid() == 0:
            os.chmod(tmp, 0o755)
            shutil.chown(self.dir, "postgres")
        self.ctl = [os.path.join(PG_BIN, "pg_ctl"), "-D", os.path.join(self.dir, "data"), "-w", "-t", "60"]
        subprocess.run(as_pg([os.path.join(PG_BIN, "initdb"), "-D", os.path.join(self.dir, "data"), "-A", "trust",
                              "-U", "chat", "-E", "UTF8", "--locale=C"]),
                       cwd="/", check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_pg(self.ctl + ["-l", os.path.join(self.dir, "server.log"), "-o",
                                         f"-c listen_addresses='' -c unix_socket_directories='{self.dir}'"
                                         " -c max_connections=200", "start"]),
                       cwd="/", check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["psql", "-X", "-q", f"postgresql:///postgres?host={self.dir}&user=chat",
                        "-c", "CREATE DATABASE chat"], check=True)
        self.uri = f"postgresql:///chat?host={self.dir}&user=chat"

    def stop(self):
        subprocess.run(as_pg(self.ctl + ["-m", "fast", "stop"]), cwd="/", stdout=subprocess.DEVNULL)

    def pids(self):
        """The postmaster and its children, for server CPU."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as fh:
            master = int(fh.readline())
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
        return [master] + [int(p) for p in kids.split()]


class Node:
    def __init__(self, tmp, name, db=None):
        self.dir = os.path.join(tmp, name)
        self.port = free_port()
        self.env = dict(os.environ, PORT=str(self.port), WS_PORT=str(free_port()),
                        BIN_DIR=os.environ.get("BIN_DIR", "build/release"))
        if db:
            self.env["DB"] = db
        self.base = f"http://127.0.0.1:{self.port}"
        subprocess.run([STACK, "start", self.dir], env=self.env, check=True)

    def stop(self):
        subprocess.run([STACK, "stop", self.dir], env=self.env)

    def pids(self):
        out = []
        for f in ("chat-fcgi.pid", "chat-ws.pid", "nginx.run.pid"):
            with open(os.path.join(self.dir, f)) as fh:
                out.append(int(fh.read()))
        kids = subprocess.run(["pgrep", "-P", str(out[-1])], capture_output=True, text=True).stdout
        return out + [int(p) for p in kids.split()]

    def stored_commits(self):
        """chat-fcgi's counters of messages stored and of the commits that stored them."""
        text = http(f"{self.base}/metrics")[0].decode()
        return [int(re.search(rf"^{k} (\d+)", text, re.M).group(1))
                for k in ("chat_messages_stored_total", "chat_commits_total")]

    def send(self, room):
        """Message i's text is "<i> <wall time the send started>", as the load clients expect."""
        def send(i):
            http(f"{self.base}/send/msg?room={room}&text={i}+{time.time():.6f}")
        return send


def per_commit(nodes, f):
    """f()'s result, with the messages a commit of its run ("per_commit"), over all nodes."""
    before = [n.stored_commits() for n in nodes]
    out = f()
    after = [n.stored_commits() for n in nodes]
    stored, commits = (sum(a[i] - b[i] for a, b in zip(after, before)) for i in (0, 1))
    return dict(out, per_commit=stored / commits if commits else None)


def wrk_both(nodes, conns, secs, room):
    """wrk on every node at once, conns split among them: the sum of their rates."""
    results = [None] * len(nodes)

    def one(k):
        results[k] = wrk(f"{nodes[k].base}/send/msg?text=hello+world&room={room}", conns // len(nodes), secs)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(secs + 60)
    return {"rps": sum(r["rps"] for r in results), "p50": max(r["p50"] for r in results),
            "p99": max(r["p99"] for r in results), "errors": sum(r["errors"] for r in results)}


def wakeup(sub, pub, room, count=200):
    lp = load_client("lp", f"{sub.base}/get/msg?room={room}", 1, count, 60)
    ws = load_client("ws", f"ws://127.0.0.1:{sub.port}/ws?room={room}", 1, count, 60)
    return w7_once(lp, ws, pub.send(room), count)


def fanout(subs, pub, kind, room, n, rate, secs, pg=None):
    msgs = int(rate * secs)
    cmds = []
    per_node = split(n, len(subs))
    for s, k in zip(subs, per_node):
        url = f"{s.base}/get/msg?room={room}" if kind == "lp" else f"ws://127.0.0.1:{s.port}/ws?room={room}"
        # The same light client as nchan.py, in the same number of processes over all.
        cmds += [load_client(kind, url, part, msgs, secs + 30) for part in split(k, max(1, CLIENT_PROCS // len(subs)))]
    pids = [p for s in subs for p in s.pids()] + (pg.pids() if pg else [])
    return drive(cmds, n, pub.send(room), msgs, rate, [pids])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--only", default="C1,C2,C3")
    a = ap.parse_args()
    only, runs, secs = set(a.only.split(",")), a.runs, a.secs
    tmp = tempfile.mkdtemp(prefix="chat-bench-cluster-")
    counter = [0]

    def room(prefix):
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    pg = Postgres(tmp)
    nodes, lite = [], None
    rows = []
    try:
        nodes = [Node(tmp, "n0", pg.uri), Node(tmp, "n1", pg.uri)]
        lite = Node(tmp, "lite")
        time.sleep(1)
        if "C1" in only:
            for c in (16, 64):
                two = median_run(lambda: per_commit(nodes, lambda: wrk_both(nodes, c, secs, room("c1_"))),
                                 runs, "rps")
                one = median_run(lambda: per_commit([lite], lambda: wrk(
                    f"{lite.base}/send/msg?text=hello+world&room={room('c1_')}", c, secs)), runs, "rps")
                rows.append((f"C1 sends c={c}, req/s [>= 0.5x]", two["rps"], one["rps"]))
                rows.append((f"C1 sends c={c}, messages a commit", two["per_commit"], one["per_commit"]))
                rows.append((f"C1 sends c={c}, p99 ms", two["p99"], one["p99"]))
                rows.append((f"C1 sends c={c}, errors", two["errors"], one["errors"]))
        if "C2" in only:
            def pick(f):
                results = [f() for _ in range(runs)]
                out = {}
                for kind in ("lp", "ws"):
                    rs = sorted((r[kind] for r in results), key=lambda r: r["p50"])
                    out[kind] = dict(rs[len(rs) // 2], lost=sum(r["lost"] for r in rs))
                return out
            cross = pick(lambda: wakeup(nodes[1], nodes[0], room("c2_")))
            same = pick(lambda: wakeup(lite, lite, room("c2_")))
            for kind, label in (("lp", "long-poll"), ("ws", "socket")):
                rows.append((f"C2 {label} wake-up, p50 ms [< 5]", cross[kind]["p50"], same[kind]["p50"]))
                rows.append((f"C2 {label} wake-up, p99 ms", cross[kind]["p99"], same[kind]["p99"]))
                rows.append((f"C2 {label}, lost", cross[kind]["lost"], same[kind]["lost"]))
        if "C3" in only:
            for kind, label in (("lp", "long-poll"), ("ws", "ws")):
                two = median_run(lambda: fanout(nodes, nodes[0], kind, room("c3_"), 1000, 20, secs, pg), runs, "p50")
                one = median_run(lambda: fanout([lite], lite, kind, room("c3_"), 1000, 20, secs), runs, "p50")
                name = f"C3 {label} N=1000 at 20/s"
                for key in ("p50", "p99"):
                    rows.append((f"{name}, {key} ms [<= 1.5x]", two[key], one[key]))
                rows.append((f"{name}, lost [0]", two["lost"], one["lost"]))
                rows.append((f"{name}, duplicated", two["dup"], one["dup"]))
                rows.append((f"{name}, server CPU us/delivery", sum(two["cpu_us"]), sum(one["cpu_us"])))
                # Near 100 the client measures itself, not the servers.
                rows.append((f"{name}, busiest load client, % of a core", two["client_core_pct"],
                             one["client_core_pct"]))
    finally:
        for n in nodes + ([lite] if lite else []):
            n.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def fmt(v):
        return "-" if v is None else f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}"
    print(f"two nodes on PostgreSQL vs one node on SQLite ({runs} runs of {secs} s, median):")
    print(f"  {'figure':48} {'2 nodes+PG':>12} {'1 node SQLite':>14} {'ratio':>7}")
    for name, two, one in rows:
        ratio = f"{two / one:.2f}" if two is not None and one else "-"
        print(f"  {name:48} {fmt(two):>12} {fmt(one):>14} {ratio:>7}")


if __name__ == "__main__":
    main()
