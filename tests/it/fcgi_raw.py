#!/usr/bin/env python3
"""fcgi_raw.py - a raw FastCGI client, and the scenarios that need one.

Talks to chat-fcgi directly on its socket (no nginx), so that a test sees
exactly what the process does with a connection. Each scenario prints one
line per check, "PASS name" or "FAIL name: detail", which tests/lib.sh
counts. Every loop is bounded in count and time.

  fcgi_raw.py inherit MODE PROG DB LOG DIR
      MODE fd3 (systemd: LISTEN_FDS=1, LISTEN_PID) or fd0 (spawn-fcgi): a
      holder (this process) keeps a listening unix socket, starts chat-fcgi
      on it, SIGTERMs it, makes a request while none runs, starts a second
      one on the same socket and checks that it answers, that request too.
  fcgi_raw.py conns PROG DB LOG DIR
      connections that send nothing, stop half-way or trickle pin no worker
      for long, on TCP and unix sockets; SIGTERM stops the process within a
      few seconds with them open; a held long-poll outlives the read bound;
      FCGI_WEB_SERVER_ADDRS is applied.
  fcgi_raw.py held_cap BASE LOG M
      M long-polls through nginx against a chat-fcgi whose --max-held is
      capped by its descriptor limit: as many as the cap are held, the
      others get 503 JSON with Retry-After at once, short requests stay
      prompt, one send answers every held one.
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

BEGIN, END, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7


from checks import parse_http_response, report


def record(rtype, content, req_id=1):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, rtype, req_id, len(content), pad, 0) + content + b"\0" * pad


def nv(name, value):
    out = b""
    for s in (name, value):
        n = len(s)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def encode(path, query="", method="GET", body=b""):
    """The bytes nginx would send for one request."""
    params = {"REQUEST_METHOD": method, "QUERY_STRING": query, "DOCUMENT_URI": path,
              "CONTENT_TYPE": "application/x-www-form-urlencoded" if body else "",
              "CONTENT_LENGTH": str(len(body)) if body else ""}
    pdata = b"".join(nv(k.encode(), v.encode()) for k, v in params.items())
    out = record(BEGIN, struct.pack(">HB5x", 1, 0))
    out += record(PARAMS, pdata) + record(PARAMS, b"")
    if body:
        out += record(STDIN, body)
    return out + record(STDIN, b"")


def connect(addr, timeout):
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX)
    else:
        s = socket.socket()
    s.settimeout(timeout)
    s.connect(addr)
    return s


def read_answer(s):
    """Reads records up to END_REQUEST: (status, headers, body); status 0 if none."""
    buf, out = b"", b""
    while True:
        while len(buf) >= 8:
            _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
            if rtype == STDOUT:
                out += content
            elif rtype == END:
                return parse_cgi(out)
        data = s.recv(65536)
        if not data:
            return parse_cgi(out) if out else (0, {}, b"")
        buf += data


def parse_cgi(out):
    head, _, body = out.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(headers.get("status", "200").split()[0]) if head else 0
    return status, headers, body


def request(addr, path, query="", timeout=10, method="GET", body=b""):
    """One request on its own connection: (status, headers, body)."""
    s = connect(addr, timeout)
    try:
        s.sendall(encode(path, query, method, body))
        return read_answer(s)
    finally:
        s.close()


def try_request(addr, path, query="", timeout=10):
    try:
        return request(addr, path, query, timeout)
    except OSError as e:
        return 0, {}, repr(e).encode()


def jbody(answer):
    try:
        return json.loads(answer[2])
    except ValueError:
        return None


def wait_answering(addr, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if try_request(addr, "/healthz", timeout=2)[0] == 200:
            return True
        time.sleep(0.05)
    return False


def wait_exit(proc, limit):
    """Seconds until proc exited, or None when it did not within limit."""
    t0 = time.monotonic()
    try:
        proc.wait(limit)
        return time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return None


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def later(fn, *args):
    """Runs fn(*args) on a thread; returns a dict that gets "result"."""
    box = {}

    def run():
        box["result"] = fn(*args)
    box["thread"] = threading.Thread(target=run, daemon=True)
    box["thread"].start()
    return box


def held(addr):
    doc = jbody(try_request(addr, "/healthz", timeout=2))
    return doc.get("held") if doc else None


# -- inherit ----------------------------------------------------------------

def inherit(mode, prog, db, log, tmp):
    path = os.path.join(tmp, "inherit-" + mode + ".sock")
    if os.path.exists(path):
        os.unlink(path)
    holder = socket.socket(socket.AF_UNIX)
    holder.bind(path)
    holder.listen(64)
    logf = open(log, "ab")
    tag = "inherited " + mode + ": "

    def spawn():
        if mode == "fd3":
            if holder.fileno() != 3:
                os.dup2(holder.fileno(), 3)
            # LISTEN_PID is the pid of the exec'd program: the shell's own.
            return subprocess.Popen(
                ["sh", "-c", 'exec env LISTEN_FDS=1 LISTEN_PID=$$ "$0" "$@"', prog, "--db", db],
                pass_fds=(3,), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        return subprocess.Popen([prog, "--db", db], stdin=holder.fileno(), stdout=logf, stderr=logf)

    first = spawn()
    try:
        report(wait_answering(path), tag + "the first process answers")
        text = "before-restart-" + mode
        sent = jbody(try_request(path, "/send/msg", "text=" + text))
        report(bool(sent and sent.get("ok")), tag + "the first process stores", sent)
        since = sent["id"] if sent else 0
        poll = later(try_request, path, "/get/msg", f"index={since}&wait=30", 20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and held(path) != 1:
            time.sleep(0.02)
        first.send_signal(signal.SIGTERM)
        took = wait_exit(first, 10)
        report(took is not None and took < 1.0, tag + "SIGTERM stops the first within a second", took)
        report(first.returncode == 0, tag + "the first exits 0", first.returncode)
        poll["thread"].join(10)
        answer = poll.get("result", (0, {}, b""))
        report(answer[0] == 200 and jbody(answer) and jbody(answer)["data"] == [],
               tag + "its held long-poll is answered as expired", answer)

        # Nobody serves the socket now: a request must queue, not be refused.
        queued = later(try_request, path, "/get/msg", f"index={since - 1}", 20)
        time.sleep(0.5)
        report(queued["thread"].is_alive(), tag + "a request while none runs waits (not refused)",
               queued.get("result"))
        second = spawn()
        try:
            queued["thread"].join(15)
            answer = queued.get("result", (0, {}, b"no answer"))
            doc = jbody(answer)
            report(answer[0] == 200 and doc and doc["data"] == [text],
                   tag + "that request is answered by the second process", answer)
            report(wait_answering(path, 5), tag + "the second process answers")
            again = jbody(try_request(path, "/send/msg", "text=after-restart"))
            report(bool(again and again.get("id", 0) > since), tag + "the second process stores", again)
            second.send_signal(signal.SIGTERM)
            took = wait_exit(second, 10)
            report(took is not None and second.returncode == 0, tag + "SIGTERM stops the second",
                   (took, second.returncode))
        finally:
            stop(second)
        # The socket still works for whoever comes next.
        try:
            c = connect(path, 2)
            c.close()
            report(True, tag + "the socket still takes connections after both")
        except OSError as e:
            report(False, tag + "the socket still takes connections after both", e)
    finally:
        stop(first)
        holder.close()


# -- conns ------------------------------------------------------------------

def start(prog, db, log, listen, extra=(), env=None, cpus=None):
    """chat-fcgi on listen; with cpus (a set), allowed those CPUs only."""
    logf = open(log, "ab")
    return subprocess.Popen([prog, "--db", db, "--listen", listen, *extra], stdin=subprocess.DEVNULL,
                            stdout=logf, stderr=logf, env=env,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def open_stalled(addr, n, payload):
    """n connections that send payload (maybe nothing) and then nothing more."""
    out = []
    for _ in range(n):
        s = connect(addr, 30)
        if payload:
            s.sendall(payload)
        out.append(s)
    return out


def closed_by_server(conns, limit):
    """How many of conns the server closed within limit seconds."""
    deadline = time.monotonic() + limit
    n = 0
    for s in conns:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if s.recv(1) == b"":
                n += 1
        except OSError:
            pass
    return n


def timed(addr, path, query="", timeout=15):
    t0 = time.monotonic()
    answer = try_request(addr, path, query, timeout)
    return answer, time.monotonic() - t0


def trickle(addr, stop_at):
    """Sends a request one byte every 0.3 s until stop_at (monotonic)."""
    data = encode("/get/msg", "index=0")
    try:
        s = connect(addr, 30)
        for b in data:
            if time.monotonic() >= stop_at:
                break
            s.send(bytes([b]))
            time.sleep(0.3)
        s.close()
    except OSError:
        pass


def conns(prog, db, log, tmp):
    port = free_port()
    tcp = ("127.0.0.1", port)
    unix = os.path.join(tmp, "conns.sock")
    # On one CPU, one of three workers serves at a time: a worker stuck on a
    # slow client must hand its turn on.
    for name, addr, listen, threads, cpus in (("TCP", tcp, f"127.0.0.1:{port}", 2, None),
                                              ("unix", unix, unix, 2, None),
                                              ("unix, one CPU", unix, unix, 3, {min(os.sched_getaffinity(0))})):
        proc = start(prog, db, log, listen, ("--threads", str(threads)), cpus=cpus)
        try:
            report(wait_answering(addr), f"{name}: chat-fcgi answers")
            if cpus:
                with open(log, errors="replace") as fh:
                    said = [line for line in fh if "serving at once" in line]
                report(said and "with 3 threads (1 serving at once)" in said[-1],
                       f"{name}: one of its three workers serves at once", said[-1:])
                # A request that comes in two parts, 1.5 s apart: its turn is
                # lent meanwhile, and the request still answered when whole.
                data = encode("/get/msg", "index=0")
                s = connect(addr, 10)
                t0 = time.monotonic()
                try:
                    s.sendall(data[:20])
                    time.sleep(1.5)
                    s.sendall(data[20:])
                    answer = read_answer(s)
                except OSError as e:
                    answer = (0, {}, repr(e).encode())
                finally:
                    s.close()
                took = time.monotonic() - t0
                report(answer[0] == 200 and took < 4.0,
                       f"{name}: a request sent in two parts 1.5 s apart is answered once whole",
                       (answer[0], round(took, 2)))
            # As many silent connections as workers, then a real request.
            idle = open_stalled(addr, threads, b"")
            time.sleep(0.2)
            answer, took = timed(addr, "/get/msg", "index=0")
            report(answer[0] == 200 and took < 5.0,
                   f"{name}: a request is answered within seconds with {threads} silent connections open",
                   (answer[0], round(took, 2)))
            report(closed_by_server(idle, 5) == threads, f"{name}: the silent connections are closed")
            # Stopped half-way through the begin record.
            half = open_stalled(addr, threads, encode("/healthz")[:5])
            time.sleep(0.2)
            answer, took = timed(addr, "/get/msg", "index=0")
            report(answer[0] == 200 and took < 5.0,
                   f"{name}: a request is answered within seconds with {threads} half-sent requests open",
                   (answer[0], round(took, 2)))
            report(closed_by_server(half, 5) == threads, f"{name}: the half-sent requests are closed")
            # Requests trickled in a byte at a time.
            until = time.monotonic() + 12
            tricklers = [later(trickle, addr, until) for _ in range(threads)]
            time.sleep(0.5)
            answer, took = timed(addr, "/get/msg", "index=0")
            report(answer[0] == 200 and took < 6.0,
                   f"{name}: a request is answered within seconds with {threads} trickling clients",
                   (answer[0], round(took, 2)))
            # A held long-poll is not cut by the read bound (it waits in epoll).
            start_id = (jbody(try_request(addr, "/get/msg", "tail=1")) or {}).get("max_index", 0)
            lp = later(timed, addr, "/get/msg", f"index={start_id}&wait=10")
            time.sleep(3.5)
            sent = jbody(try_request(addr, "/send/msg", "text=past+the+read+bound"))
            lp["thread"].join(10)
            answer, took = lp.get("result", ((0, {}, b""), 0))
            doc = jbody(answer)
            report(answer[0] == 200 and doc and doc["data"] == ["past the read bound"] and took > 3.0,
                   f"{name}: a long-poll held past the read bound gets its message",
                   (answer, round(took, 2), sent))
            # SIGTERM with silent connections in the workers' hands.
            idle = open_stalled(addr, threads * 2, b"")
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            took = wait_exit(proc, 10)
            report(took is not None and took < 4.0,
                   f"{name}: SIGTERM stops it within seconds with silent connections open", took)
            report(proc.returncode == 0, f"{name}: and it exits 0", proc.returncode)
            for s in idle:
                s.close()
            for t in tricklers:
                t["thread"].join(15)
        finally:
            stop(proc)

    # libfcgi's allow-list of web servers still applies to TCP peers.
    for allowed, expect in (("127.0.0.2", False), ("127.0.0.2,127.0.0.1", True)):
        port = free_port()
        env = dict(os.environ, FCGI_WEB_SERVER_ADDRS=allowed)
        proc = start(prog, db, log, f"127.0.0.1:{port}", env=env)
        try:
            ok = wait_answering(("127.0.0.1", port), 5 if expect else 1.5)
            report(ok == expect, f"FCGI_WEB_SERVER_ADDRS={allowed}: 127.0.0.1 is "
                   + ("served" if expect else "refused"), ok)
        finally:
            proc.send_signal(signal.SIGTERM)
            wait_exit(proc, 10)
            stop(proc)


# -- held_cap ---------------------------------------------------------------

def http_get(host, port, path, timeout):
    s = socket.create_connection((host, port), timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return parse_http_response(data)


def held_cap(base, log, m):
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname, u.port
    caps = re.findall(r"--max-held \d+ capped to (\d+)", open(log, errors="replace").read())
    report(bool(caps), "the cap by the descriptor limit is logged")
    cap = int(caps[-1]) if caps else 0
    report(0 < cap < m, f"the cap ({cap}) is below the {m} long-polls tried")

    def get_json(path):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError) as e:
            return {"failed": repr(e)}

    start_id = get_json("/get/msg?tail=1").get("max_index", 0)
    path = f"/get/msg?index={start_id}&wait=30"
    results = [None] * m

    def one(i):
        t0 = time.monotonic()
        try:
            results[i] = http_get(host, port, path, 40) + (time.monotonic() - t0,)
        except OSError as e:
            results[i] = (0, {}, repr(e).encode(), time.monotonic() - t0)
    polls = []
    for i in range(m):
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        polls.append(t)
        time.sleep(0.005)

    # Every long-poll beyond the cap is refused at once; the rest are held.
    deadline = time.monotonic() + 20
    count = refused = 0
    while time.monotonic() < deadline:
        count = get_json("/healthz").get("held", count)
        refused = sum(1 for r in results if r is not None)
        if count + refused >= m:
            break
        time.sleep(0.1)
    report(count == cap, f"{cap} long-polls held (the cap)", f"held {count}")
    report(count + refused == m, f"the {m - count} others answered at once", f"{refused} answered")
    extras = [r for r in results if r is not None]
    bad = [r[:3] for r in extras if not (r[0] == 503 and r[1].get("retry-after") == "1"
                                         and r[1].get("content-type", "").startswith("application/json")
                                         and b'"error"' in r[2])]
    report(extras and not bad, "each is a 503 JSON error with Retry-After: 1", bad[:2])
    slow = [round(r[3], 2) for r in extras if r[3] > 5.0]
    report(not slow, "each within seconds", slow[:5])

    # Short requests stay prompt with the hold full.
    for i in range(5):
        t0 = time.monotonic()
        try:
            status = http_get(host, port, "/get/msg?index=0&limit=1", 10)[0]
        except OSError as e:
            status = repr(e)
        took = time.monotonic() - t0
        report(status == 200 and took < 2.0, f"short request {i + 1} answered with the hold full",
               (status, round(took, 2)))

    text = f"cap-wake-{time.time()}"
    get_json("/send/msg?text=" + urllib.parse.quote(text))
    for t in polls:
        t.join(15)
    good = sum(1 for r in results if r and r[0] == 200 and (jbody(r) or {}).get("data") == [text])
    report(good == cap, f"one send answers the {cap} held", f"{good} answered with it")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "inherit" and len(sys.argv) == 7:
        inherit(*sys.argv[2:])
    elif cmd == "conns" and len(sys.argv) == 6:
        conns(*sys.argv[2:])
    elif cmd == "held_cap" and len(sys.argv) == 5:
        held_cap(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
