#!/usr/bin/python3
"""nginx_errors.py - the errors nginx answers itself are JSON (SPEC section 5).

  nginx_errors.py PORT [HOST]

Sends raw requests to 127.0.0.1:PORT (Host: HOST, default 127.0.0.1) that
nginx refuses before chat-fcgi or chat-ws see them, most before nginx has
chosen a location: a header or a cookie over the 16 KiB buffers (494, sent
as 400), a Transfer-Encoding other than chunked (501), HTTP/2.0 in the
request line (505), a bad request line, a request line over 16 KiB (414),
TRACE (405), and bodies over 64 KiB and malformed chunked bodies on the
locations of chat-ws (413, 400). Each answer must be a JSON error with its
status, Content-Type application/json, Cache-Control: no-store and
X-Content-Type-Options: nosniff. Prints PASS/FAIL lines.
"""
import json
import socket
import sys

PORT = int(sys.argv[1])
HOST = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
BIG = "a" * (17 * 1024)


from checks import report


def complete(out):
    """True when out holds a whole answer (headers and Content-Length bytes)."""
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v)
    return False


def exchange(raw):
    """Sends raw bytes, reads one answer (until its Content-Length, nginx's
    close, or 10 s); returns (status, headers with lower-case names, body)."""
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    except OSError as e:
        return None, {}, str(e).encode()
    out = b""
    try:
        s.sendall(raw)
        while not complete(out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, out
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, body


def json_error(name, raw, status):
    got, headers, body = exchange(raw)
    report(got == status, f"{name}: {status}", f"got {got}: {body[:120]!r}")
    ctype = headers.get("content-type", "")
    report(ctype.startswith("application/json"), f"{name}: application/json", ctype)
    report(headers.get("cache-control") == "no-store", f"{name}: Cache-Control no-store",
           headers.get("cache-control"))
    report(headers.get("x-content-type-options") == "nosniff", f"{name}: nosniff",
           headers.get("x-content-type-options"))
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    report(isinstance(error, str) and error != "", f"{name}: {{\"error\": ...}}", body[:120])


def request(line, *headers, body=b""):
    return (line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


host = "Host: " + HOST
json_error("a header over 16 KiB", request("GET /get/msg HTTP/1.1", host, "X-Big: " + BIG), 400)
json_error("a cookie over 16 KiB", request("GET /get/msg HTTP/1.1", host, "Cookie: c=" + BIG), 400)
json_error("a header over 16 KiB before Host",
           request("GET /get/msg HTTP/1.1", "X-Big: " + BIG, host), 400)
json_error("a header over 16 KiB on /send/msg",
           request("POST /send/msg HTTP/1.1", host, "X-Big: " + BIG, "Content-Length: 6",
                   body=b"text=a"), 400)
json_error("a header over 16 KiB on /ws",
           request("GET /ws HTTP/1.1", host, "Upgrade: websocket", "Connection: Upgrade",
                   "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                   "X-Big: " + BIG), 400)
json_error("Transfer-Encoding: gzip on POST /send/msg",
           request("POST /send/msg HTTP/1.1", host, "Transfer-Encoding: gzip",
                   "Content-Type: application/x-www-form-urlencoded", body=b"text=a"), 501)
json_error("Transfer-Encoding: gzip, chunked on POST /send/msg",
           request("POST /send/msg HTTP/1.1", host, "Transfer-Encoding: gzip, chunked",
                   body=b"6\r\ntext=a\r\n0\r\n\r\n"), 501)
json_error("HTTP/2.0 in the request line", request("GET /get/msg HTTP/2.0", host), 505)
json_error("a malformed request line", request("GET /get/msg HTTP/1.1 extra", host), 400)
json_error("a request line over 16 KiB", request("GET /get/msg?x=" + BIG + " HTTP/1.1", host), 414)


def line_of(n):
    """A request line of exactly n bytes (its CRLF not counted), for the page."""
    head, tail = "GET /?", " HTTP/1.1"
    return head + "a" * (n - len(head) - len(tail)) + tail


got, _, _ = exchange(request(line_of(16384), host))
report(got == 200, "a request line of exactly 16 KiB is served: 200", got)
json_error("a request line of 16 KiB and a byte", request(line_of(16385), host), 414)
json_error("TRACE", request("TRACE /send/msg HTTP/1.1", host), 405)
for path, allow in (("/send/msg", "GET, POST"), ("/send/msg/?text=a", "GET, POST"), ("/get/msg", "GET, HEAD"),
                    ("/events/", "GET"), ("/ws", "GET"), ("/metrics/ws", "GET"), ("/", "GET, HEAD")):
    _, headers, _ = exchange(request(f"TRACE {path} HTTP/1.1", host))
    report(headers.get("allow") == allow, f"TRACE {path}: Allow: {allow}", headers.get("allow"))
for path in ("/ws", "/metrics/ws"):
    json_error(f"a body over 64 KiB on {path}",
               request(f"POST {path} HTTP/1.1", host, "Content-Length: 70000"), 413)
    json_error(f"a malformed chunked body on {path}",
               request(f"POST {path} HTTP/1.1", host, "Transfer-Encoding: chunked", body=b"zz\r\n"),
               400)
