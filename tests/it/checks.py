"""checks.py - the one result line of the Python test clients.

Each check prints "PASS name" or "FAIL name: detail"; tests/lib.sh's
run_checks counts them. tests/lib.sh puts this folder on PYTHONPATH, so
clients and heredocs alike `from checks import report`.
"""


def parse_http_response(data):
    """(status, headers with lower-cased names, body) of a whole HTTP/1.x answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[:300]), flush=True)
