#!/usr/bin/env python3
"""keepconn.py - FastCGI connections kept between requests (FCGI_KEEP_CONN).

  keepconn.py direct PROG DB LOG DIR
      a raw FastCGI client on chat-fcgi's socket (no nginx): a connection
      whose requests ask to be kept serves request after request (GET,
      POST with a body, a long-poll parked then answered, an error); one
      that does not ask is closed after its answer; kept idle connections
      and parked long-polls on kept connections pin no worker (--threads
      2); a kept connection that the client closes is released; SIGTERM
      with kept connections open stops the process promptly.
  keepconn.py nginx BASE PIDFILE
      through nginx (conf/: fastcgi_keep_conn on, an upstream keepalive
      pool): many requests reuse the same few connections, a long-poll's
      connection is reused after its answer, and a client that leaves a
      held long-poll releases it within a second.
Prints PASS/FAIL lines (tests/lib.sh counts them). Every loop is bounded.
"""
import json
import os
import socket
import sqlite3
import struct
import sys
import threading
import time
import urllib.request

from checks import report
from fcgi_raw import (BEGIN, END, PARAMS, STDIN, STDOUT, connect, jbody, nv, parse_cgi, record,
                      start, try_request, wait_answering, wait_exit, stop)

KEEP_CONN = 1


def encode_keep(path, query="", method="GET", body=b"", keep=True):
    """One request as nginx sends it with fastcgi_keep_conn on (flag FCGI_KEEP_CONN)."""
    params = {"REQUEST_METHOD": method, "QUERY_STRING": query, "DOCUMENT_URI": path,
              "CONTENT_TYPE": "application/x-www-form-urlencoded" if body else "",
              "CONTENT_LENGTH": str(len(body)) if body else ""}
    pdata = b"".join(nv(k.encode(), v.encode()) for k, v in params.items())
    out = record(BEGIN, struct.pack(">HB5x", 1, KEEP_CONN if keep else 0))
    out += record(PARAMS, pdata) + record(PARAMS, b"")
    if body:
        out += record(STDIN, body)
    return out + record(STDIN, b"")


class Conn:
    """One FastCGI connection, answers read record by record (nothing read past END_REQUEST)."""

    def __init__(self, addr, timeout=10):
        self.s = connect(addr, timeout)
        self.buf = b""

    def ask(self, path, query="", method="GET", body=b"", keep=True):
        self.s.sendall(encode_keep(path, query, method, body, keep))
        return self.answer()

    def answer(self):
        out = b""
        while True:
            while len(self.buf) >= 8:
                _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", self.buf[:8])
                if len(self.buf) < 8 + clen + plen:
                    break
                content, self.buf = self.buf[8:8 + clen], self.buf[8 + clen + plen:]
                if rtype == STDOUT:
                    out += content
                elif rtype == END:
                    return parse_cgi(out)
            data = self.s.recv(65536)
            if not data:
                return parse_cgi(out) if out else (0, {}, b"")
            self.buf += data

    def closed_by_server(self, limit):
        self.s.settimeout(limit)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.s.close()


def held(addr):
    doc = jbody(try_request(addr, "/healthz", timeout=2))
    return doc.get("held") if doc else None


def wait_held(addr, n, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if held(addr) == n:
            return True
        time.sleep(0.02)
    return False


def direct(prog, db, log, tmp):
    path = os.path.join(tmp, "keepconn.sock")
    proc = start(prog, db, log, path, ("--threads", "2"))
    try:
        report(wait_answering(path), "chat-fcgi answers")
        c = Conn(path)
        a = c.ask("/send/msg", "text=kept+one")
        first = jbody(a) or {}
        report(a[0] == 200 and first.get("ok"), "a kept connection: the first request is answered", a)
        a = c.ask("/send/msg", method="POST", body=b"text=kept+two")
        second = jbody(a) or {}
        report(a[0] == 200 and second.get("id") == first.get("id", 0) + 1,
               "the same connection: a POST with a body", a)
        a = c.ask("/get/msg", f"index={first.get('id', 0) - 1}")
        report(a[0] == 200 and (jbody(a) or {}).get("data") == ["kept one", "kept two"],
               "the same connection: a read sees both", a)
        a = c.ask("/nowhere")
        report(a[0] == 404, "the same connection: an error answer", a)
        a = c.ask("/send/msg", "text=" + "x" * 5000)
        report(a[0] == 413, "the same connection: a refused send", a)
        # A long-poll parked on the kept connection, answered, then the next request on it.
        box = {}
        t = threading.Thread(target=lambda: box.update(a=c.ask("/get/msg", f"index={second.get('id', 0)}&wait=20")))
        t.start()
        report(wait_held(path, 1), "a long-poll on the kept connection is held")
        try_request(path, "/send/msg", "text=wakes+the+kept")
        t.join(10)
        a = box.get("a", (0, {}, b""))
        report(a[0] == 200 and (jbody(a) or {}).get("data") == ["wakes the kept"],
               "it is answered with the new message", a)
        # (the hold counts an answered request out just after writing it)
        deadline = time.monotonic() + 3
        while True:
            a = c.ask("/healthz")
            if a[0] != 200 or (jbody(a) or {}).get("held") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        report(a[0] == 200 and (jbody(a) or {}).get("held") == 0,
               "the same connection serves the next requests after the long-poll", a)
        # A long answer to a parked long-poll (rows from another writer, in one
        # transaction): several FastCGI records, then the connection goes on.
        big = (jbody(c.ask("/get/msg", "room=big&tail=1")) or {}).get("max_index", 0)
        c.s.sendall(encode_keep("/get/msg", f"room=big&index={big}&wait=20&limit=1000"))
        report(wait_held(path, 1), "a long-poll for a long answer is held")
        texts = [f"{i:04d} " + "x" * 3000 for i in range(300)]
        db_conn = sqlite3.connect(db, timeout=10)
        with db_conn:
            db_conn.executemany("insert into messages(room, text) values('big', ?)", [(t,) for t in texts])
        db_conn.close()
        a = c.answer()
        doc = jbody(a) or {}
        report(a[0] == 200 and doc.get("data") == texts and int(a[1].get("content-length", 0)) == len(a[2]),
               "it is answered whole (about 1.8 MB, 29 records)", (a[0], len(a[2]), len(doc.get("data", []))))
        a = c.ask("/healthz")
        report(a[0] == 200, "and the connection serves the next request", a)
        # Without FCGI_KEEP_CONN the connection is closed after the answer.
        d = Conn(path)
        a = d.ask("/healthz", keep=False)
        report(a[0] == 200 and d.closed_by_server(3), "without FCGI_KEEP_CONN the connection is closed", a)
        d.close()

        # Kept idle connections and held long-polls pin no worker (2 threads).
        idle = [Conn(path) for _ in range(6)]
        ok = all(k.ask("/healthz")[0] == 200 for k in idle)
        report(ok, "six kept connections each served once")
        t0 = time.monotonic()
        a = try_request(path, "/get/msg", "index=0&limit=1", 10)
        report(a[0] == 200 and time.monotonic() - t0 < 2.0,
               "a new connection is answered at once with six kept idle (2 threads)",
               (a[0], round(time.monotonic() - t0, 2)))
        latest = (jbody(try_request(path, "/get/msg", "tail=1")) or {}).get("max_index", 0)
        for k in idle[:4]:
            k.s.sendall(encode_keep("/get/msg", f"index={latest}&wait=20"))
        report(wait_held(path, 4), "four long-polls held on kept connections")
        t0 = time.monotonic()
        a = idle[4].ask("/healthz")
        report(a[0] == 200 and time.monotonic() - t0 < 2.0,
               "another kept connection is served with four held (2 threads)", a)
        try_request(path, "/send/msg", "text=for+the+four")
        answers = [k.answer() for k in idle[:4]]
        report(all(x[0] == 200 and (jbody(x) or {}).get("data") == ["for the four"] for x in answers),
               "the four are answered", answers[:1])
        latest = (jbody(answers[0]) or {}).get("max_index", latest)
        again = [k.ask("/healthz") for k in idle[:4]]
        report(all(x[0] == 200 for x in again), "and each of their connections serves another request")
        # A kept connection closed by its client while a long-poll is held is released.
        idle[5].s.sendall(encode_keep("/get/msg", f"index={latest}&wait=20"))
        report(wait_held(path, 1), "a long-poll held on a kept connection")
        idle[5].close()
        report(wait_held(path, 0, 2.0), "its client closing releases it within a second or two")
        # SIGTERM with kept connections open (idle and held).
        idle[0].s.sendall(encode_keep("/get/msg", f"index={latest}&wait=20"))
        wait_held(path, 1)
        proc.send_signal(15)
        took = wait_exit(proc, 10)
        report(took is not None and took < 3.0 and proc.returncode == 0,
               "SIGTERM stops it promptly with kept connections open", (took, proc.returncode))
        a = idle[0].answer()
        report(a[0] == 200 and (jbody(a) or {}).get("data") == [], "the held one is answered as expired", a)
        for k in idle:
            k.close()
        c.close()
    finally:
        stop(proc)


def conn_inodes(pid):
    """The socket inodes chat-fcgi has open."""
    out = set()
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target)
    return out


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def nginx(base, pidfile):
    pid = int(open(pidfile).read())
    for i in range(30):
        get(f"{base}/get/msg?index=0&limit=1")
    kept = conn_inodes(pid)   # the listening socket and the kept connections
    report(len(kept) >= 2, "through nginx: a kept connection stays open between requests", len(kept))
    for i in range(100):
        get(f"{base}/send/msg?text=reuse{i}" if i % 2 else f"{base}/get/msg?index=0&limit=1")
    now = conn_inodes(pid)
    # (a worker of nginx that had no request yet opens its first)
    report(len(now - kept) <= 1 and len(kept - now) <= 1,
           "100 more requests reuse the same connections", (len(kept), len(now - kept), len(kept - now)))
    # A long-poll: its connection is reused after its answer.
    latest = get(f"{base}/get/msg?tail=1")[1]["max_index"]
    box = {}
    t = threading.Thread(target=lambda: box.update(r=get(f"{base}/get/msg?index={latest}&wait=20", 30)))
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and get(f"{base}/healthz")[1]["held"] != 1:
        time.sleep(0.02)
    get(f"{base}/send/msg?text=lp+through+nginx")
    t.join(10)
    r = box.get("r", (0, {}))
    report(r[0] == 200 and r[1].get("data") == ["lp through nginx"], "a long-poll through nginx is answered", r)
    for i in range(20):
        get(f"{base}/healthz")
    after = conn_inodes(pid)
    report(len(after) <= len(kept) + 1, "its connection went back to the pool", (len(kept), len(after)))
    # A client that leaves a held long-poll: nginx closes the kept connection, the hold releases it.
    host, port = base.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), 5)
    s.sendall(f"GET /get/msg?index={latest + 1}&wait=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and get(f"{base}/healthz")[1]["held"] != 1:
        time.sleep(0.02)
    s.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3 and get(f"{base}/healthz")[1]["held"] != 0:
        time.sleep(0.02)
    took = time.monotonic() - t0
    report(took < 1.5, "a client leaving a held long-poll releases it within a second", round(took, 2))
    report(get(f"{base}/healthz")[0] == 200, "and requests are still answered")


def main():
    try:
        if len(sys.argv) == 6 and sys.argv[1] == "direct":
            direct(*sys.argv[2:])
        elif len(sys.argv) == 4 and sys.argv[1] == "nginx":
            nginx(sys.argv[2], sys.argv[3])
        else:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
    except (OSError, ValueError, KeyError) as e:
        report(False, f"{sys.argv[1]}: the scenario ran to its end", repr(e))


if __name__ == "__main__":
    main()
