/*
 * notify.h - a wake-up when any process writes the database.
 *
 * SQLite gives other processes no signal of a commit, but every commit
 * writes the WAL file (and a checkpoint, the database file). An inotify
 * watch on their folder turns readable on such writes, so a watcher that
 * probes PRAGMA data_version on a timer can probe at once instead: a row
 * from chat-fcgi reaches chat-ws, and a row from the sqlite3 CLI reaches
 * both, without waiting for the next tick. The timer stays, as the
 * fallback where inotify is missing.
 *
 * The write that wakes the watcher comes just before the commit is visible
 * (SQLite publishes it in shared memory, which inotify does not see), and
 * the writer may be preempted in between: a probe woken this way that finds
 * nothing probes again after 0.1, 0.2, 0.4 ... 25.6 ms (notify_recheck_us).
 * The first look comes soon: what is left of a commit after its first WAL
 * write is a few more writes and the shared-memory update.
 */
#ifndef CHAT_NOTIFY_H
#define CHAT_NOTIFY_H

#include <limits.h>
#include <stdbool.h>

#define NOTIFY_RECHECK_US 100  /* the first look again after a write not yet visible */
#define NOTIFY_RECHECKS 9      /* 0.1 + 0.2 + ... + 25.6 ms (51 ms) after a write */

struct notify {
    int fd;                   /* readable on a write; -1 without inotify */
    int misses;               /* rechecks since the write that found nothing */
    char db[NAME_MAX + 1];    /* the database's file name, and its WAL's */
    char wal[NAME_MAX + 1];
};

/* Watches the folder of db_path. Without inotify, n->fd is -1 (the timer alone). */
void notify_open(struct notify *n, const char *db_path);
/* Reads every pending event; true when the database or its WAL was written. */
bool notify_drain(struct notify *n);
void notify_close(struct notify *n);

/*
 * After a probe: written when a write woke it, changed when it found a new
 * commit. Returns the microseconds until the next probe must look again,
 * or -1 when the usual timer will do.
 */
int notify_recheck_us(struct notify *n, bool written, bool changed);

#endif
