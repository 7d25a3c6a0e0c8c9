"""checks.py - the one result line of the Python test clients.

Each check prints "PASS name" or "FAIL name: detail"; tests/lib.sh's
run_checks counts them. tests/lib.sh puts this folder on PYTHONPATH, so
clients and heredocs alike `from checks import report`.
"""


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[:300]), flush=True)
