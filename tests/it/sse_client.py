"""sse_client.py - a server-sent events reader on a plain socket, parsing as a browser does.

The parser follows the HTML standard's event-stream rules ("9.2.6 Interpreting
an event stream"), which a browser's EventSource applies:
  - UTF-8, a leading BOM dropped; lines end with CRLF, LF or CR;
  - a line starting with ":" is a comment (kept here, to see pings);
  - "field: value" (one space after the colon dropped), a line without a
    colon is a field with an empty value;
  - event sets the type, data appends a line, id sets the last event id
    (unless it holds NUL), retry sets the reconnection time (digits only),
    any other field is ignored;
  - an empty line dispatches: the last event id is updated even when there
    is no data; with no data nothing is dispatched; the type defaults to
    "message";
  - at the end of the stream an event not yet dispatched is dropped.
The HTTP answer may be chunked (through nginx), have a length (a refusal),
or end with the connection.

  s = Stream("127.0.0.1", port, "/events?room=r&index=0", last_event_id="41")
  s.status, s.headers      the answer's status and headers (names lower-cased)
  ev = s.next(timeout)     the next Event, or None at the end of the stream
  s.last_id, s.retry       what an EventSource would reconnect with
  s.comments               every comment line (": ping" gives "ping")

Parser and Dechunker are incremental, for many streams on one selector.
"""
import json
import socket
import time


class Event:
    def __init__(self, type_, data, last_id):
        self.type = type_
        self.data = data
        self.id = last_id          # the last event id once this event was dispatched

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return f"Event({self.type!r}, id={self.id!r}, data={self.data[:80]!r})"


class Parser:
    """Bytes of an event stream in, events out (feed), as the HTML standard says."""

    def __init__(self, last_id=""):
        self.buf = b""
        self.started = False
        self.last_id = last_id
        self.retry = None
        self.comments = []
        self.lines = []             # every line, in order (to check what comes first)
        self._type = ""
        self._data = []
        self._id = last_id

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            if not self.started:
                if len(self.buf) < 3 and b"\xef\xbb\xbf".startswith(self.buf):
                    break
                if self.buf.startswith(b"\xef\xbb\xbf"):
                    self.buf = self.buf[3:]
                self.started = True
            ends = [i for i in (self.buf.find(b"\n"), self.buf.find(b"\r")) if i >= 0]
            if not ends:
                break
            cut = min(ends)
            if self.buf[cut] == 13 and cut + 1 == len(self.buf):
                break                   # a CR at the end: it may be a CRLF's first half
            line = self.buf[:cut].decode("utf-8", "replace")
            skip = 2 if self.buf[cut:cut + 2] == b"\r\n" else 1
            self.buf = self.buf[cut + skip:]
            ev = self._line(line)
            if ev:
                out.append(ev)
        return out

    def _line(self, line):
        self.lines.append(line)
        if line == "":
            self.last_id = self._id
            data, type_ = self._data, self._type
            self._data, self._type = [], ""
            if not data:
                return None
            return Event(type_ or "message", "\n".join(data), self.last_id)
        if line.startswith(":"):
            self.comments.append(line[1:].lstrip(" "))
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry":
            if value.isdigit() and value.isascii():
                self.retry = int(value)
        return None


class Dechunker:
    """An HTTP/1.1 chunked body, incrementally: bytes in, body bytes out; done at the last chunk."""

    def __init__(self):
        self.buf = b""
        self.left = 0               # bytes of the current chunk still to come
        self.crlf = False           # the CRLF after a chunk is due
        self.done = False

    def feed(self, data):
        self.buf += data
        out = b""
        while not self.done:
            if self.left:
                take = self.buf[:self.left]
                out += take
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left:
                    break
                self.crlf = True
            if self.crlf:
                if len(self.buf) < 2:
                    break
                self.buf = self.buf[2:]
                self.crlf = False
            head, sep, rest = self.buf.partition(b"\r\n")
            if not sep:
                break
            size = int(head.split(b";")[0].strip() or b"0", 16)
            self.buf = rest
            if size == 0:
                self.done = True
                break
            self.left = size
        return out


def request_bytes(path, last_event_id=None, headers=(), method="GET", host="x"):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: text/event-stream",
             "Cache-Control: no-cache"]
    if last_event_id is not None:
        lines.append(f"Last-Event-ID: {last_event_id}")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    hdrs = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


class Body:
    """What follows the head: chunked, with a length, or up to the end of the connection."""

    def __init__(self, hdrs):
        self.chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
        self.dechunk = Dechunker() if self.chunked else None
        cl = hdrs.get("content-length")
        self.left = int(cl) if cl is not None and not self.chunked else None

    def feed(self, data):
        if self.dechunk:
            return self.dechunk.feed(data)
        if self.left is not None:
            data = data[:self.left]
            self.left -= len(data)
        return data

    @property
    def done(self):
        return (self.dechunk is not None and self.dechunk.done) or self.left == 0


def connect(host, port, timeout=10, rcvbuf=None):
    """A connected socket: to host:port, or to the unix socket at port when it is a path."""
    unix = isinstance(port, str) and "/" in port
    sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(port if unix else (host, int(port)))
    return sock


class Stream:
    """One GET on its own socket, read with blocking calls and deadlines."""

    def __init__(self, host, port, path, last_event_id=None, headers=(), timeout=10, rcvbuf=None,
                 method="GET"):
        self.sock = connect(host, port, timeout, rcvbuf)
        self.sock.sendall(request_bytes(path, last_event_id, headers, method))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        self.status, self.headers = parse_head(head)
        self.body = Body(self.headers)
        self.raw = b""              # the body as it came, dechunked
        self.parser = Parser(last_event_id or "")
        self.pending = []
        self.ended = False
        self._take(rest)

    def _take(self, data):
        body = self.body.feed(data)
        self.raw += body
        self.pending += self.parser.feed(body)
        if self.body.done:
            self.ended = True

    @property
    def last_id(self):
        return self.parser.last_id

    @property
    def retry(self):
        return self.parser.retry

    @property
    def comments(self):
        return self.parser.comments

    def fill(self, timeout):
        """Reads once (at most timeout seconds); False at the end of the stream."""
        if self.ended:
            return False
        self.sock.settimeout(max(0.01, timeout))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.ended = True
            return False
        self._take(chunk)
        return True

    def next(self, timeout=10):
        """The next event; None when the stream ended first; raises TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event within {timeout} s")
            if not self.fill(left) and not self.pending:
                return None
        return self.pending.pop(0)

    def messages_until(self, last, timeout=10):
        """Events up to the one whose id is str(last), or the end; the list of events read."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            if ev is None:
                return got
            got.append(ev)
            if ev.id == str(last):
                return got

    def wait_end(self, timeout=10):
        """Reads until the stream ends; True when it did within timeout. Keeps the events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.fill(deadline - time.monotonic()):
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
