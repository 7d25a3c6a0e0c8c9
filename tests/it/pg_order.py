#!/usr/bin/python3
"""pg_order.py - ids in commit order on PostgreSQL (SPEC section 9), with the
interleaving forced by two psql sessions.

  pg_order.py URI BASE

First the trap, on a scratch table whose ids come from a sequence:
transaction 1 inserts (id n) and stays open, transaction 2 inserts (n + 1)
and commits first; a reader then sees n + 1 without n, and one that moved
its cursor to n + 1 would never see n. Then the same interleaving on
messages: transaction 2 must wait for transaction 1 (the trigger takes the
counter's lock), its id is larger, and a long-poll reader that follows
max_index through BASE sees both, once each, in id order. Prints PASS/FAIL
lines.
"""
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request

from checks import report

URI, BASE = sys.argv[1], sys.argv[2]


class Session:
    """One psql session fed line by line; its output lines arrive on a queue."""

    def __init__(self, name):
        self.name = name
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", URI],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, bufsize=1)
        self.out = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.out.put(line.rstrip("\n"))

    def send(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def line(self, timeout):
        """The next output line, or None when none comes within timeout seconds."""
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def get(path, timeout=20):
    with urllib.request.urlopen(BASE + path, timeout=timeout) as r:
        return json.loads(r.read())


def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", URI, "-c", sql],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def trap():
    """A sequence: the later id commits first, and a reader skips the earlier one."""
    psql("create table order_trap (id bigserial primary key, text text not null)")
    t1, t2 = Session("t1"), Session("t2")
    t1.send("begin; insert into order_trap(text) values ('t1') returning id;")
    id1 = t1.line(10)
    t2.send("insert into order_trap(text) values ('t2') returning id;")
    id2 = t2.line(10)
    report(id2 is not None, "trap: with a sequence, transaction 2 is not held back", id2)
    seen = psql("select string_agg(id::text, ',' order by id) from order_trap")
    report(id1 and id2 and int(id2) > int(id1) and seen == id2,
           "trap: a reader sees the later id without the earlier one", (id1, id2, seen))
    t1.send("commit;")
    t1.close()
    t2.close()
    psql("drop table order_trap")


def ordered():
    """The messages table: transaction 2 waits for transaction 1, ids follow commits."""
    room = "order"
    cursor = get(f"/get/msg?room={room}&tail=1")["max_index"]
    seen = []
    done = threading.Event()

    def follower():
        c = cursor
        while not done.is_set():
            doc = get(f"/get/msg?room={room}&index={c}&wait=2")
            seen.extend((m["id"], m["text"]) for m in doc["messages"])
            c = doc["max_index"]

    f = threading.Thread(target=follower)
    f.start()
    t1, t2 = Session("t1"), Session("t2")
    t1.send(f"begin; insert into messages(room, text) values ('{room}', 't1') returning id;")
    id1 = t1.line(10)
    t2.send(f"insert into messages(room, text) values ('{room}', 't2') returning id;")
    held = t2.line(1.5)
    report(id1 is not None and held is None,
           "transaction 2 waits while transaction 1 holds the counter", (id1, held))
    time.sleep(0.5)
    report(not seen, "nothing is delivered while transaction 1 is open", seen)
    t0 = time.monotonic()
    t1.send("commit;")
    id2 = held or t2.line(10)
    report(id2 is not None and time.monotonic() - t0 < 5, "transaction 2 goes on once 1 commits", id2)
    report(id1 and id2 and int(id2) > int(id1), "and gets the larger id: ids in commit order", (id1, id2))
    t1.close()
    t2.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(seen) < 2:
        time.sleep(0.05)
    done.set()
    f.join(10)
    report(seen == [(int(id1), "t1"), (int(id2), "t2")],
           "a reader following max_index sees both, once each, in order", seen)


def main():
    trap()
    ordered()


if __name__ == "__main__":
    main()
