#!/usr/bin/env python3
"""nchan.py - this system and Nchan side by side, in one run, one table.

Starts this stack (conf/stack.sh) and an nginx with Nchan (Debian's
libnginx-mod-nchan) on loopback ports, both with 2 workers, reuseport and
no access log, then runs each workload against both in turn and prints one
table with both figures and their ratio (this system / Nchan).

  W0  the ceiling of this architecture: wrk c=16 and c=64 on a no-op FastCGI
      responder (tests/bench/noop_fcgi.c: the same libfcgi, threads and
      socket type as chat-fcgi) behind the same nginx; W2 is compared to it
  W1  wrk -t2 -c64 on a small static file through each nginx
  W2  send throughput: wrk c=16 and c=64, GET /send/msg?text=... (each
      message committed to SQLite before its 200) vs Nchan POST /pub/<ch>
  W4  WebSocket fan-out: N sockets on one room/channel, 20 messages a second
      for 10 s, latency from the start of the send request to receipt

Usage: tests/bench/nchan.py [SOCKETS] [SECONDS]   (defaults 1000 and 10)
Every load is bounded in count and time. Needs wrk, node with tests/bench's
ws package, and libnginx-mod-nchan (tests/bench/run.sh installs them).
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from ws_fanout import fanout, free_port, server_pids, pss_kib  # noqa: E402

NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"

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
            nchan_subscriber;
            nchan_channel_id $1;
        }}
    }}
}}
"""


def wrk(url, conns, secs, script=None):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency"] + (["-s", script] if script else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "errors": int(errors.group(1)) if errors else 0}


def median_of(f, runs):
    results = [f() for _ in range(runs)]
    return sorted(results, key=lambda r: r["rps"])[len(results) // 2]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    secs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = 3
    tmp = tempfile.mkdtemp(prefix="chat-bench-nchan-")
    ours_dir, nchan_dir = os.path.join(tmp, "ours"), os.path.join(tmp, "nchan")
    os.makedirs(os.path.join(nchan_dir, "tmp"))
    port, nport = free_port(), free_port()
    env = dict(os.environ, PORT=str(port), WS_PORT=str(free_port()),
               BIN_DIR=os.environ.get("BIN_DIR", "build/release"))
    stack = os.path.join(ROOT, "conf", "stack.sh")
    subprocess.run([stack, "start", ours_dir], env=env, check=True)
    noop_bin, noop_sock = os.path.join(tmp, "noop_fcgi"), os.path.join(ours_dir, "noop.sock")
    subprocess.run(["cc", "-O2", "-std=c11", "-pthread", "-o", noop_bin, os.path.join(HERE, "noop_fcgi.c"),
                    "-lfcgi"], check=True)
    noop = subprocess.Popen([noop_bin, noop_sock, "8"])
    # Same footing: no access log on ours either; and W0's location.
    conf = os.path.join(ours_dir, "nginx", "nginx.conf")
    text = re.sub(r"access_log [^;]*;", "access_log off;", open(conf).read())
    text = text.replace("    upstream chat_fcgi {", "    upstream chat_noop {\n        server unix:%s;\n    }\n"
                        "    upstream chat_fcgi {" % noop_sock)
    text = text.replace("        include snippets/chat-locations.conf;",
                        "        location = /noop {\n            fastcgi_pass chat_noop;\n"
                        "            fastcgi_param REQUEST_METHOD $request_method;\n"
                        "            fastcgi_param QUERY_STRING $query_string;\n        }\n"
                        "        include snippets/chat-locations.conf;")
    open(conf, "w").write(text)
    subprocess.run(["nginx", "-p", os.path.join(ours_dir, "nginx"), "-c", conf, "-s", "reload"], check=True)
    open(os.path.join(nchan_dir, "nginx.conf"), "w").write(NCHAN_CONF.format(
        module=NCHAN_MODULE, dir=nchan_dir, port=nport, htdocs=os.path.join(ROOT, "htdocs"),
        user="user root;" if os.getuid() == 0 else ""))
    nchan = subprocess.Popen(["nginx", "-p", nchan_dir, "-c", os.path.join(nchan_dir, "nginx.conf"),
                              "-e", os.path.join(nchan_dir, "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    base, nbase = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nport}"
    post = os.path.join(tmp, "post.lua")
    open(post, "w").write('wrk.method = "POST"\nwrk.body = "hello world"\n'
                          'wrk.headers["Content-Type"] = "text/plain"\n')
    rows = []
    w0 = {}
    try:
        for c in (16, 64):
            w0[c] = median_of(lambda: wrk(base + "/noop?text=hello+world", c, secs), runs)
        a = median_of(lambda: wrk(base + "/chat.css", 64, secs), runs)
        b = median_of(lambda: wrk(nbase + "/chat.css", 64, secs), runs)
        rows.append(("W1 static file, c=64, req/s", a["rps"], b["rps"]))
        for c in (16, 64):
            a = median_of(lambda: wrk(base + "/send/msg?text=hello+world&room=w2", c, secs), runs)
            b = median_of(lambda: wrk(nbase + "/pub/w2", c, secs, post), runs)
            rows.append((f"W0 no-op FastCGI c={c} vs W2 send, req/s", w0[c]["rps"], a["rps"]))
            rows.append((f"W2 send c={c}, req/s", a["rps"], b["rps"]))
            rows.append((f"W2 send c={c}, p50 ms", a["p50"], b["p50"]))
            rows.append((f"W2 send c={c}, p99 ms", a["p99"], b["p99"]))
            rows.append((f"W2 send c={c}, errors", a["errors"], b["errors"]))

        ws_pids, nginx_pids = server_pids(ours_dir)
        out = subprocess.run(["pgrep", "-P", str(nchan.pid)], capture_output=True, text=True).stdout
        nchan_pids = [nchan.pid] + [int(p) for p in out.split()]

        def ours_send(i):
            t0 = time.time()
            urllib.request.urlopen(f"{base}/send/msg?room=w4&text={i}+{t0:.6f}", timeout=10).read()

        def nchan_send(i):
            t0 = time.time()
            urllib.request.urlopen(urllib.request.Request(f"{nbase}/pub/w4", data=f"{i} {t0:.6f}".encode(),
                                                          method="POST"), timeout=10).read()

        a = fanout(f"ws://127.0.0.1:{port}/ws?room=w4", ours_send, n, 20, secs, [nginx_pids + ws_pids])
        b = fanout(f"ws://127.0.0.1:{nport}/sub/w4", nchan_send, n, 20, secs, [nchan_pids], raw=True)
        for key, label in (("p50", "median ms"), ("p90", "p90 ms"), ("p99", "p99 ms"), ("max", "max ms")):
            rows.append((f"W4 ws {n} sockets at 20/s, {label}", a[key], b[key]))
        rows.append((f"W4 ws {n} sockets, lost", a["lost"], b["lost"]))
        rows.append((f"W4 ws {n} sockets, duplicated", a["dup"], b["dup"]))
        rows.append((f"W4 ws {n} sockets, KiB per socket", a["kib"][0], b["kib"][0]))
    finally:
        noop.terminate()
        nchan.terminate()
        nchan.wait(10)
        subprocess.run([stack, "stop", ours_dir], env=env)

    print(f"this system vs Nchan, 2 workers each, median of {runs} runs for wrk "
          f"(tests/bench/nchan.py {n} {secs})")
    print("(the W0 row compares the no-op responder, left, with this system's sends, right)")
    print(f"| {'workload':<40} | {'this system':>12} | {'Nchan':>10} | {'ratio':>6} |")
    print(f"|{'-' * 42}|{'-' * 14}|{'-' * 12}|{'-' * 8}|")
    for name, x, y in rows:
        ratio = f"{x / y:.2f}" if y else "-"
        print(f"| {name:<40} | {x:>12.1f} | {y:>10.1f} | {ratio:>6} |")


if __name__ == "__main__":
    main()
