#!/usr/bin/env python3
"""clients.py - concurrent HTTP clients for the load-shaped integration tests.

Each command prints one line per check, "PASS name" or "FAIL name: detail",
which tests/lib.sh counts. Every loop is bounded in count and time.

  clients.py held BASE N       N long-polls held at once, the next refused with
                               503, all N answered by one send
  clients.py senders BASE K M [SIZE]  K concurrent senders x M messages each
                               (texts padded to SIZE bytes)
"""
import asyncio
import json
import sys
import threading
import time
import urllib.parse
import urllib.request


from checks import parse_http_response, report


async def http_get(host, port, path, timeout):
    """One GET on its own connection: (status, headers dict, body bytes)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_http_response(data)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def held(base, n):
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname, u.port
    start = get_json(base + "/get/msg?tail=1")["max_index"]
    path = f"/get/msg?index={start}&wait=30"
    tasks = [asyncio.create_task(http_get(host, port, path, 40)) for _ in range(n)]

    # Wait (bounded) until chat-fcgi reports all of them held.
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        count = (await asyncio.to_thread(get_json, base + "/healthz"))["held"]
        if count >= n:
            break
        await asyncio.sleep(0.1)
    report(count == n, f"{n} long-polls held at once", f"held {count}")

    t0 = time.monotonic()
    status, headers, body = await http_get(host, port, path, 10)
    took = time.monotonic() - t0
    report(status == 503, f"long-poll {n + 1} refused with 503", status)
    report(headers.get("retry-after") == "1", "503 carries Retry-After: 1", headers)
    report(took < 1.0, "the refusal comes at once", f"{took:.3f}s")
    try:
        report("error" in json.loads(body), "503 is a JSON error", body[:100])
    except ValueError:
        report(False, "503 is a JSON error", body[:100])

    # Short requests stay prompt while they are held.
    t0 = time.monotonic()
    status, _, _ = await http_get(host, port, "/get/msg?index=0&limit=1", 10)
    took = time.monotonic() - t0
    report(status == 200 and took < 2.0, "a short poll is prompt while held", f"{status} {took:.3f}s")

    text = f"wake-{n}-{time.time()}"
    t0 = time.monotonic()
    sent = await asyncio.to_thread(get_json, base + "/send/msg?text=" + urllib.parse.quote(text))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    took = time.monotonic() - t0
    good = 0
    bad = None
    for r in results:
        if isinstance(r, Exception):
            bad = repr(r)
            continue
        status, _, body = r
        try:
            doc = json.loads(body)
            if status == 200 and doc["data"] == [text] and doc["max_index"] == sent["id"]:
                good += 1
                continue
            bad = (status, body[:200])
        except ValueError:
            bad = (status, body[:200])
    report(good == n, f"all {n} held long-polls answered by one send", f"{good} good; e.g. {bad}")
    report(took < 5.0, f"the fan-out to {n} took under 5 s", f"{took:.3f}s")


def senders(base, k, m, size=0):
    results = [[] for _ in range(k)]
    errors = []

    def run(i):
        for j in range(m):
            text = urllib.parse.quote(f"s{i}-{j}".ljust(size, "x"))
            try:
                doc = get_json(f"{base}/send/msg?text={text}&user=sender{i}")
                results[i].append(doc["id"])
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - t0
    report(not errors, f"{k} x {m} sends all answered 200", errors[:3])
    ids = [i for r in results for i in r]
    report(len(ids) == k * m and len(set(ids)) == len(ids), "every send got its own id",
           f"{len(ids)} ids, {len(set(ids))} distinct")
    report(all(r == sorted(r) and len(set(r)) == len(r) for r in results),
           "each sender's ids strictly increase", "")
    print(f"INFO {k * m} sends in {took:.2f}s ({k * m / took:.0f}/s)", flush=True)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "held" and len(sys.argv) == 4:
        asyncio.run(held(sys.argv[2], int(sys.argv[3])))
    elif cmd == "senders" and len(sys.argv) in (5, 6):
        senders(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *map(int, sys.argv[5:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
