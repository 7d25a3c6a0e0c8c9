#!/usr/bin/env python3
"""nchan.py - this system and Nchan side by side, in one run, one table.

Starts this stack (conf/stack.sh) and an nginx with Nchan (Debian's
libnginx-mod-nchan) on loopback ports, both with 2 workers, reuseport,
keepalive_timeout 65s (no access log on Nchan's, only failed requests
logged on ours, as make run does), then runs each workload against
both in turn and prints one table with both figures and their ratio (this
system / Nchan; for latency and memory, lower is better).

  W0  the old ceiling of this architecture: wrk c=16 and c=64 on a no-op
      FastCGI responder (tests/bench/noop_fcgi.c: the same libfcgi and
      socket type as chat-fcgi, and as many threads as chat-fcgi's serve at
      once on SQLite, one per CPU) behind the same nginx
      and the same fastcgi settings (conf/nginx/chat-fastcgi.conf) but one
      connection a request (fastcgi_keep_conn off)
  W0k the ceiling with connection reuse: the same no-op responder serving
      kept connections as chat-fcgi does (`noop_fcgi ... keep`), behind the
      same upstream keepalive pool and fastcgi_keep_conn on as chat-fcgi's;
      W2 and W6 are compared to both
  W1  wrk -c64 on a small static file through each nginx
  W2  send throughput: wrk c=16 and c=64, GET /send/msg?text=... (each
      message committed to SQLite before its 200) vs Nchan POST /pub/<ch>
  W3  long-poll fan-out: N subscribers re-polling with their cursor (Nchan:
      If-Modified-Since/If-None-Match), 20 messages a second for SECONDS,
      latency from the start of the send request to delivery, N = 100, 1000
  W4  WebSocket fan-out: the same with sockets, N = 100 and 1000 at 20/s and
      5000 at 2/s, plus memory per connection (nginx and chat-ws together)
  W8  SSE fan-out: the same with event streams (GET /events?room=R over
      HTTP/1.0; Nchan's eventsource subscriber), N = 100 and 1000 at 20/s
      and 5000 at 2/s; skipped for
      this system while /events answers 404
  W6  short-poll reads: wrk c=64 on /get/msg?index=<latest> vs Nchan
      interval-poll with the latest message's If-Modified-Since/If-None-Match
  W7  wake-up: one long-poll and one socket, 200 sends one at a time:
      send start -> delivery; for this system also rows inserted by another
      SQLite writer (Python's sqlite3 module, the library the sqlite3 CLI uses)

The fan-out load client is tests/bench/load_client.c: raw sockets, one
epoll loop a process, keep-alive, two processes (built into build/bench/ on
first use). Each run reports its CPU beside the servers': a client near a
whole core measures itself. `--client node` runs W3, W4 and W7 with the
older Node clients instead (lp_client.js, ws_client.js; Node with
tests/bench's ws package), to compare the two on the same servers.

`--check-clients` runs only Nchan's W3 and W4 at N=1000 from load_client.c
in 1, 2 and 4 processes and from the Node clients, one table.

conf/stack.sh runs chat-fcgi and nginx under the SCHED_BATCH policy (as
make run does; SCHED=other in the environment turns it off), and the W0
and W0k no-ops run under it too. Nchan's nginx runs under the default
policy, as a plain install does; `--nchan-batch` gives it SCHED_BATCH too.

Usage: tests/bench/nchan.py [--runs R] [--secs S] [--only W2,W3,...] [--n 1000] [--syscalls] [--client c|node] [--nchan-batch]
       tests/bench/nchan.py --check-clients [--secs S]
       (defaults: 3 runs, 10 s; the median run is reported; lost and
       duplicated messages are summed over every run; --n keeps the fan-out
       cases of those subscriber counts; --syscalls adds each server
       process's system calls a delivery, counted with perf stat)
Every load is bounded in count and time. Needs wrk, a C compiler and
libnginx-mod-nchan (tests/bench/run.sh installs them).
"""
import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from ws_fanout import bench_bin, cpu_s, drive, free_port, load_client, server_pids, split  # noqa: E402

NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
# conf/stack.sh runs chat-fcgi and nginx under SCHED_BATCH unless SCHED says otherwise.
BATCH = ["chrt", "--batch", "0"] if os.environ.get("SCHED", "batch") == "batch" and shutil.which("chrt") and \
    subprocess.run(["chrt", "--batch", "0", "true"], capture_output=True).returncode == 0 else []
DEFAULT_THREADS = len(os.sched_getaffinity(0))  # chat-fcgi's workers serving at once on SQLite, which W0 and W0k mirror

NCHAN_CONF = """
load_module {module};
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
{user}
worker_rlimit_nofile 65536;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {htdocs};
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber websocket eventsource;
            nchan_channel_id $1;
        }}
        location ~ ^/lp/(\\w+)$ {{
            nchan_subscriber longpoll;
            nchan_channel_id $1;
        }}
        location ~ ^/poll/(\\w+)$ {{
            nchan_subscriber interval-poll;
            nchan_channel_id $1;
        }}
    }}
}}
"""


def wrk(url, conns, secs, script=None, headers=(), pids=()):
    """wrk's figures, and the CPU the pids used per request (cpu_us)."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd += (["-s", script] if script else []) + [url]
    cpu0 = cpu_s(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30).stdout
    cpu = cpu_s(pids) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = (int(errors.group(1)) if errors else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "errors": n_err,
            "cpu_us": cpu * 1e6 / max(1, requests)}


def median_run(f, runs, key, reverse=False, first=None):
    """Runs f() runs times (first, when given, is the first run's result);
    returns the run whose key is the median, with lost and dup (when
    present) summed over all runs, and the memory growth of the first run
    (later runs reuse what the servers allocated)."""
    results = ([first] if first is not None else []) + [f() for _ in range(runs - (first is not None))]
    pick = dict(sorted(results, key=lambda r: r[key], reverse=reverse)[len(results) // 2])
    for k in ("lost", "dup", "errors"):
        if k in pick:
            pick[k] = sum(r[k] for r in results)
    if "kib" in pick:
        pick["kib"] = results[0]["kib"]   # memory: the first run, on fresh servers
    return pick


def total(values):
    """The sum of a list of figures, or None for a side that did not run (or a figure not taken)."""
    return None if values is None or None in values else sum(values)


def http(url, data=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read(), r.headers


class Stacks:
    """This system (with the W0 no-op responder beside it) and Nchan."""

    def __init__(self, tmp, nchan_batch=False):
        self.tmp = tmp
        self.nchan_batch = nchan_batch
        self.ours_dir, self.nchan_dir = os.path.join(tmp, "ours"), os.path.join(tmp, "nchan")
        os.makedirs(os.path.join(self.nchan_dir, "tmp"), exist_ok=True)
        self.port, self.nport = free_port(), free_port()
        self.env = dict(os.environ, PORT=str(self.port), WS_PORT=str(free_port()),
                        BIN_DIR=os.environ.get("BIN_DIR", "build/release"))
        self.stack = os.path.join(ROOT, "conf", "stack.sh")
        self.base, self.nbase = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.nport}"
        self.noop = self.nchan = None

    def start(self):
        subprocess.run([self.stack, "start", self.ours_dir], env=self.env, check=True)
        noop_bin = bench_bin("noop_fcgi", ["-lfcgi"])
        noop_sock, noopk_sock = os.path.join(self.ours_dir, "noop.sock"), os.path.join(self.ours_dir, "noopk.sock")
        # The no-ops under the scheduling policy conf/stack.sh gives chat-fcgi.
        self.noop = [subprocess.Popen(BATCH + [noop_bin, noop_sock, str(DEFAULT_THREADS)]),
                     subprocess.Popen(BATCH + [noop_bin, noopk_sock, str(DEFAULT_THREADS), "keep"])]
        # Ours as make run ships it (its access log takes only failed
        # requests, so none in a benchmark, though the check is paid); W0's and W0k's
        # locations have the chat locations' fastcgi settings, pointed at the
        # no-op responders: W0's without connection reuse, W0k's with the
        # upstream keepalive pool of chat_fcgi.
        conf = os.path.join(self.ours_dir, "nginx", "nginx.conf")
        fastcgi = open(os.path.join(ROOT, "conf", "nginx", "chat-fastcgi.conf")).read()
        fastcgi_k = fastcgi.replace("fastcgi_pass chat_fcgi;", "fastcgi_pass chat_noopk;")
        fastcgi = fastcgi.replace("fastcgi_pass chat_fcgi;", "fastcgi_pass chat_noop;")
        fastcgi = re.sub(r"fastcgi_keep_conn on;", "fastcgi_keep_conn off;", fastcgi)
        text = open(conf).read()
        pool = re.search(r"upstream chat_fcgi \{[^}]*?(\n\s*keepalive[^;]*;)", text)
        text = text.replace("    upstream chat_fcgi {", "    upstream chat_noop {\n        server unix:%s;\n"
                            "    }\n    upstream chat_noopk {\n        server unix:%s;%s\n"
                            "    }\n    upstream chat_fcgi {" % (noop_sock, noopk_sock,
                                                             pool.group(1) if pool else ""))
        text = text.replace("        include snippets/chat-locations.conf;",
                            "        location = /noop {\n%s\n        }\n"
                            "        location = /noopk {\n%s\n        }\n"
                            "        include snippets/chat-locations.conf;" % (fastcgi, fastcgi_k))
        open(conf, "w").write(text)
        subprocess.run(["nginx", "-p", os.path.join(self.ours_dir, "nginx"), "-c", conf, "-s", "reload"],
                       check=True)
        open(os.path.join(self.nchan_dir, "nginx.conf"), "w").write(NCHAN_CONF.format(
            module=NCHAN_MODULE, dir=self.nchan_dir, port=self.nport, htdocs=os.path.join(ROOT, "htdocs"),
            user="user root;" if os.getuid() == 0 else ""))
        self.nchan = subprocess.Popen((BATCH if self.nchan_batch else []) + ["nginx", "-p", self.nchan_dir, "-c",
                                       os.path.join(self.nchan_dir, "nginx.conf"),
                                       "-e", os.path.join(self.nchan_dir, "error.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)

    def stop(self):
        for p in self.noop or ():
            p.terminate()
            p.wait(10)
        if self.nchan:
            self.nchan.terminate()
            self.nchan.wait(10)
        self.noop = self.nchan = None
        subprocess.run([self.stack, "stop", self.ours_dir], env=self.env)

    def restart(self):
        """Fresh server processes, so that memory growth starts from nothing."""
        self.stop()
        self.start()

    def pids(self):
        """{"nginx": [...], "ws": [...], "fcgi": [...], "nchan": [...]}"""
        ws, nginx = server_pids(self.ours_dir)
        with open(os.path.join(self.ours_dir, "chat-fcgi.pid")) as f:
            fcgi = [int(f.read())]
        out = subprocess.run(["pgrep", "-P", str(self.nchan.pid)], capture_output=True, text=True).stdout
        return {"nginx": nginx, "ws": ws, "fcgi": fcgi, "nchan": [self.nchan.pid] + [int(p) for p in out.split()]}

    # Senders: the text of message i is "<i> <wall time the send started>".
    def ours_send(self, room):
        def send(i):
            t0 = time.time()
            http(f"{self.base}/send/msg?room={room}&text={i}+{t0:.6f}")
        return send

    def nchan_send(self, channel):
        def send(i):
            t0 = time.time()
            http(f"{self.nbase}/pub/{channel}", data=f"{i} {t0:.6f}".encode())
        return send


def node(script, *args):
    return ["node", os.path.join(HERE, script)] + [str(a) for a in args]


CLIENT_PROCS = 2   # load client processes for fan-out, one a core
CLIENT = "c"       # --client: "c" (load_client.c) or "node" (the older Node clients)


def client_cmd(kind, nchan, url, n, msgs, timeout):
    """One load client process: kind "lp", "ws" or "sse", for Nchan or this system."""
    if CLIENT == "node" and kind == "lp":
        return node("lp_client.js", url, n, msgs, timeout, *(("nchan",) if nchan else ()))
    if CLIENT == "node" and kind == "ws":
        return node("ws_client.js", url, n, msgs, timeout, *(("raw",) if nchan else ()))
    return load_client(kind + ("-nchan" if nchan else ""), url, n, msgs, timeout)


def clients(kind, nchan, url, n, msgs, timeout):
    """One command per load client process, the n subscribers split among them."""
    return [client_cmd(kind, nchan, url, k, msgs, timeout) for k in split(n, CLIENT_PROCS)]


def subscribers(st, kind):
    """For W3 (kind "lp"), W4 ("ws") or W8 ("sse"), this system's side then
    Nchan's: (URL with {room}, our server process, or None for Nchan)."""
    if kind == "lp":
        return [(st.base + "/get/msg?room={room}", "fcgi"), (st.nbase + "/lp/{room}", None)]
    if kind == "ws":
        return [(f"ws://127.0.0.1:{st.port}/ws?room={{room}}", "ws"),
                (f"ws://127.0.0.1:{st.nport}/sub/{{room}}", None)]
    return [(st.base + "/events?room={room}", "ws"), (st.nbase + "/sub/{room}", None)]


def check_clients(st, secs, n=1000, rate=20):
    """Nchan's W3 and W4 at n subscribers from several client designs on the
    same servers: load_client.c in 1, 2 and 4 processes, and the older Node
    clients in 2. When the figure does not move with the client's design
    and no client is near a whole core, it is the server's."""
    global CLIENT, CLIENT_PROCS
    saved = CLIENT, CLIENT_PROCS
    rows = []
    try:
        for kind, label in (("lp", "W3 long-poll"), ("ws", "W4 ws")):
            for design, procs in (("c", 1), ("c", 2), ("c", 4), ("node", 2)):
                CLIENT, CLIENT_PROCS = design, procs
                st.restart()
                url = (f"{st.nbase}/lp/{{room}}" if kind == "lp" else f"ws://127.0.0.1:{st.nport}/sub/{{room}}")
                room = f"check_{kind}_{design}_{procs}"
                r = drive(clients(kind, True, url.format(room=room), n, int(rate * secs), secs + 30),
                          n, st.nchan_send(room), int(rate * secs), rate, [st.pids()["nchan"]])
                rows.append((f"{label} N={n}, {design} client x{procs}", r))
    finally:
        CLIENT, CLIENT_PROCS = saved
    print(f"Nchan from several load clients, N={n} at {rate}/s for {secs} s "
          f"(tests/bench/nchan.py --check-clients --secs {secs})")
    print(f"| {'workload, client':<36} | {'p50 ms':>8} | {'p99 ms':>8} | {'lost':>5} | "
          f"{'server CPU s':>12} | {'client CPU s':>12} | {'busiest client':>14} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|{'-' * 7}|{'-' * 14}|{'-' * 14}|{'-' * 16}|")
    for name, r in rows:
        print(f"| {name:<36} | {r['p50']:>8.1f} | {r['p99']:>8.1f} | {r['lost']:>5} | "
              f"{sum(r['cpu_s']):>12.2f} | {sum(r['client_cpu_s']):>12.2f} | "
              f"{r['client_core_pct']:>12.0f} % |")


def fan_out(st, kind, n, rate, secs, runs, run_id, syscalls=False):
    """W3, W4 or W8 at n subscribers, this system then Nchan, on fresh
    servers. A side whose route is absent (404) gives None."""
    msgs = int(rate * secs)
    st.restart()
    pids = st.pids()
    out = []
    for url, proc in subscribers(st, kind):
        def once():
            room = f"{kind}_{n}_{run_id()}"
            send = st.ours_send(room) if proc else st.nchan_send(room)
            # Ours: every process make run starts (nginx, chat-fcgi, chat-ws), in that order.
            groups = [pids["nginx"], pids["fcgi"], pids["ws"]] if proc else [pids["nchan"]]
            return drive(clients(kind, proc is None, url.format(room=room), n, msgs, secs + 30),
                         n, send, msgs, rate, groups, syscalls=syscalls)
        first = once()
        if first is None:
            out.append(None)
            continue
        out.append(median_run(once, runs, "p50", first=first))
    return out


def w7_once(lp_cmd, ws_cmd, write, count=200, gap=0.02):
    """One long-poll and one socket; count writes one at a time."""
    clients = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for cmd in (lp_cmd, ws_cmd)]
    for c in clients:
        if c.stdout.readline().strip() != "ready":
            raise SystemExit("W7 load client failed")
    time.sleep(0.5)
    for i in range(count):
        write(i)
        time.sleep(gap)
    res = [json.loads(c.stdout.readline()) for c in clients]
    for c in clients:
        c.wait(30)
    return {"lp": res[0], "ws": res[1]}


def w7(st, runs, run_id, count=200):
    def ours(kind):
        room = f"w7{kind}_{run_id()}"
        if kind == "db":
            db = sqlite3.connect(os.path.join(st.ours_dir, "chat.db"), isolation_level=None)
            db.execute("pragma busy_timeout=5000")

            def write(i):
                db.execute("insert into messages(room, text) values(?, ?)", (room, f"{i} {time.time():.6f}"))
        else:
            send = st.ours_send(room)

            def write(i):
                send(i)
        lp_cmd = client_cmd("lp", False, f"{st.base}/get/msg?room={room}", 1, count, 60)
        ws_cmd = client_cmd("ws", False, f"ws://127.0.0.1:{st.port}/ws?room={room}", 1, count, 60)
        return w7_once(lp_cmd, ws_cmd, write, count)

    def nchan():
        ch = f"w7_{run_id()}"
        send = st.nchan_send(ch)
        return w7_once(client_cmd("lp", True, f"{st.nbase}/lp/{ch}", 1, count, 60),
                       client_cmd("ws", True, f"ws://127.0.0.1:{st.nport}/sub/{ch}", 1, count, 60),
                       send, count)

    def pick(f):
        results = [f() for _ in range(runs)]
        out = {}
        for kind in ("lp", "ws"):
            rs = sorted((r[kind] for r in results), key=lambda r: r["p50"])
            out[kind] = dict(rs[len(rs) // 2], lost=sum(r["lost"] for r in rs), dup=sum(r["dup"] for r in rs))
        return out

    return pick(lambda: ours("http")), pick(lambda: ours("db")), pick(nchan)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--only", default="W0,W1,W2,W3,W4,W6,W7,W8")
    ap.add_argument("--client", choices=("c", "node"), default="c",
                    help="fan-out load client: load_client.c (default) or the older Node clients")
    ap.add_argument("--n", default="",
                    help="only the fan-out cases with these subscriber counts (e.g. 1000), comma-separated")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count each server process's system calls a fan-out delivery (perf stat)")
    ap.add_argument("--nchan-batch", action="store_true",
                    help="run Nchan's nginx under SCHED_BATCH too, as conf/stack.sh runs ours")
    ap.add_argument("--check-clients", action="store_true",
                    help="only Nchan's W3 and W4 at N=1000 from several load client designs")
    a = ap.parse_args()
    global CLIENT
    CLIENT = a.client
    if a.check_clients:
        st = Stacks(tempfile.mkdtemp(prefix="chat-bench-nchan-"))
        st.start()
        try:
            check_clients(st, a.secs)
        finally:
            st.stop()
        return
    only, runs, secs, syscalls = set(a.only.split(",")), a.runs, a.secs, a.syscalls
    sizes = {int(x) for x in a.n.split(",") if x}
    tmp = tempfile.mkdtemp(prefix="chat-bench-nchan-")
    st = Stacks(tmp, a.nchan_batch)
    counter = [0]

    def run_id():
        counter[0] += 1
        return counter[0]

    rows, ceiling = [], []
    st.start()
    try:
        base, nbase = st.base, st.nbase
        w0, w0k = {}, {}
        if only & {"W0", "W2", "W6"}:
            for c in (16, 64):
                w0[c] = median_run(lambda: wrk(base + "/noop?text=hello+world", c, secs), runs, "rps")
                w0k[c] = median_run(lambda: wrk(base + "/noopk?text=hello+world", c, secs), runs, "rps")
                ceiling.append((f"W0k no-op, reuse / W0 no-op, close, c={c}", w0k[c]["rps"], w0[c]["rps"]))
        if "W1" in only:
            a_ = median_run(lambda: wrk(base + "/chat.css", 64, secs), runs, "rps")
            b_ = median_run(lambda: wrk(nbase + "/chat.css", 64, secs), runs, "rps")
            rows.append(("W1 static file c=64, req/s", a_["rps"], b_["rps"]))
        if "W2" in only:
            post = os.path.join(tmp, "post.lua")
            open(post, "w").write('wrk.method = "POST"\nwrk.body = "hello world"\n'
                                  'wrk.headers["Content-Type"] = "text/plain"\n')
            pids = st.pids()
            for c in (16, 64):
                a_ = median_run(lambda: wrk(base + "/send/msg?text=hello+world&room=w2", c, secs,
                                            pids=pids["nginx"] + pids["fcgi"] + pids["ws"]), runs, "rps")
                b_ = median_run(lambda: wrk(nbase + "/pub/w2", c, secs, post, pids=pids["nchan"]), runs, "rps")
                rows.append((f"W2 send c={c}, req/s", a_["rps"], b_["rps"]))
                rows.append((f"W2 send c={c}, p50 ms", a_["p50"], b_["p50"]))
                rows.append((f"W2 send c={c}, p99 ms", a_["p99"], b_["p99"]))
                rows.append((f"W2 send c={c}, errors", a_["errors"], b_["errors"]))
                rows.append((f"W2 send c={c}, server CPU us/request", a_["cpu_us"], b_["cpu_us"]))
                ceiling.append((f"W2 send c={c} / W0k no-op c={c}", a_["rps"], w0k[c]["rps"]))
                ceiling.append((f"W2 send c={c} / W0 no-op c={c}", a_["rps"], w0[c]["rps"]))
        if "W6" in only:
            http(f"{base}/send/msg?room=w6&text=hello")
            latest = http(f"{base}/get/msg?room=w6&tail=1")[0].decode()
            index = latest.split('"max_index":')[1].split(",")[0]
            http(f"{nbase}/pub/w6", data=b"hello")
            _, h = http(f"{nbase}/poll/w6")
            cond = [f"If-Modified-Since: {h['Last-Modified']}", f"If-None-Match: {h['Etag']}"]
            pids = st.pids()
            a_ = median_run(lambda: wrk(f"{base}/get/msg?room=w6&index={index}", 64, secs,
                                        pids=pids["nginx"] + pids["fcgi"] + pids["ws"]), runs, "rps")
            b_ = median_run(lambda: wrk(f"{nbase}/poll/w6", 64, secs, headers=cond, pids=pids["nchan"]),
                            runs, "rps")
            rows.append(("W6 short poll c=64, req/s", a_["rps"], b_["rps"]))
            rows.append(("W6 short poll c=64, p99 ms", a_["p99"], b_["p99"]))
            rows.append(("W6 short poll c=64, server CPU us/request", a_["cpu_us"], b_["cpu_us"]))
            ceiling.append(("W6 short poll c=64 / W0k no-op c=64", a_["rps"], w0k[64]["rps"]))
            ceiling.append(("W6 short poll c=64 / W0 no-op c=64", a_["rps"], w0[64]["rps"]))
        for w, kind, label, cases in (("W3", "lp", "long-poll", ((100, 20), (1000, 20))),
                                      ("W4", "ws", "ws", ((100, 20), (1000, 20), (5000, 2))),
                                      ("W8", "sse", "SSE", ((100, 20), (1000, 20), (5000, 2)))):
            if w not in only:
                continue
            for n, rate in cases:
                if sizes and n not in sizes:
                    continue
                a_, b_ = fan_out(st, kind, n, rate, secs, runs, run_id, syscalls)
                name = f"{w} {label} N={n}"
                if a_ is None:   # no such route here yet (404): Nchan's figures alone
                    a_ = {k: None for k in b_}
                for key in ("p50", "p90", "p99", "max"):
                    rows.append((f"{name} at {rate}/s, {key} ms", a_[key], b_[key]))
                rows.append((f"{name}, lost", a_["lost"], b_["lost"]))
                rows.append((f"{name}, duplicated", a_["dup"], b_["dup"]))
                rows.append((f"{name}, KiB per subscriber", total(a_["kib"]), total(b_["kib"])))
                rows.append((f"{name}, server CPU us/delivery", total(a_["cpu_us"]), total(b_["cpu_us"])))
                for part, us in zip(("nginx", "chat-fcgi", "chat-ws"), a_["cpu_us"] or ()):
                    rows.append((f"{name}, of which {part}, us/delivery", us, None))
                if syscalls:
                    rows.append((f"{name}, system calls a delivery", total(a_["calls"]), total(b_["calls"])))
                    for part, calls in zip(("nginx", "chat-fcgi", "chat-ws"), a_["calls"] or ()):
                        rows.append((f"{name}, of which {part}", calls, None))
                rows.append((f"{name}, server CPU s", total(a_["cpu_s"]), total(b_["cpu_s"])))
                rows.append((f"{name}, load clients CPU s", total(a_["client_cpu_s"]),
                             total(b_["client_cpu_s"])))
                rows.append((f"{name}, busiest client, % of a core", a_["client_core_pct"],
                             b_["client_core_pct"]))
        if "W7" in only:
            via_http, via_db, nch = w7(st, runs, run_id)
            for kind, label in (("lp", "long-poll"), ("ws", "socket")):
                for key in ("p50", "p99"):
                    rows.append((f"W7 {label} wake-up, {key} ms", via_http[kind][key], nch[kind][key]))
                rows.append((f"W7 {label}, lost", via_http[kind]["lost"], nch[kind]["lost"]))
            for kind, label in (("lp", "long-poll"), ("ws", "socket")):
                for key in ("p50", "p99"):
                    rows.append((f"W7 {label}, other writer, {key} ms", via_db[kind][key], None))
                rows.append((f"W7 {label}, other writer, lost", via_db[kind]["lost"], None))
    finally:
        st.stop()

    print(f"this system vs Nchan, 2 nginx workers each, median of {runs} runs of {secs} s, "
          f"{CLIENT} load client (tests/bench/nchan.py --runs {runs} --secs {secs} --client {CLIENT}"
          f"{' --nchan-batch' if a.nchan_batch else ''}); ours {'under SCHED_BATCH' if BATCH else 'without SCHED_BATCH'}"
          f", Nchan {'under it too' if a.nchan_batch and BATCH else 'without it'}")
    print(f"| {'workload':<46} | {'this system':>11} | {'Nchan':>9} | {'ratio':>6} |")
    print(f"|{'-' * 48}|{'-' * 13}|{'-' * 11}|{'-' * 8}|")
    for name, x, y in rows:
        ratio = f"{x / y:.2f}" if x is not None and y else "-"
        xs = f"{x:>11.1f}" if x is not None else f"{'-':>11}"
        ys = f"{y:>9.1f}" if y is not None else f"{'-':>9}"
        print(f"| {name:<46} | {xs} | {ys} | {ratio:>6} |")
    if ceiling:
        print()
        print("against the ceiling of the architecture (W0k: no-op libfcgi responder with the same "
              "connection reuse; W0: the same closing every connection; same nginx)")
        print(f"| {'workload':<46} | {'req/s':>11} | {'ceiling':>9} | {'ratio':>6} |")
        print(f"|{'-' * 48}|{'-' * 13}|{'-' * 11}|{'-' * 8}|")
        for name, x, y in ceiling:
            print(f"| {name:<46} | {x:>11.1f} | {y:>9.1f} | {x / y:>6.2f} |")


if __name__ == "__main__":
    main()
