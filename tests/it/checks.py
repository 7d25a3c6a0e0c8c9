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


def db_run(db, sql, params=()):
    """Runs one statement with ? parameters on the suite's database (a SQLite
    path, or a postgresql:// URI through psql) and returns its rows, as
    strings on PostgreSQL. Parameters are the tests' own values."""
    if not db.startswith(("postgresql://", "postgres://")):
        import sqlite3
        con = sqlite3.connect(db, timeout=5)
        try:
            rows = con.execute(sql, params).fetchall()
            con.commit()
            return rows
        finally:
            con.close()
    import subprocess
    parts = sql.split("?")
    assert len(parts) == len(params) + 1, "one value per ?"
    text = parts[0]
    for value, part in zip(params, parts[1:]):
        text += (str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'") + part
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", db, "-c", text],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line]
