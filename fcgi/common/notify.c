/*
 * notify.c - inotify on the database's folder (see notify.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

void notify_open(struct notify *n, const char *db_path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(db_path, '/');
    const char *name = slash ? slash + 1 : db_path;

    n->fd = -1;
    n->misses = 0;
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == db_path ? 1 : (int)(slash - db_path), db_path);
    else
        snprintf(dir, sizeof dir, ".");
    if (strlen(name) + 5 > NAME_MAX)
        return;
    snprintf(n->db, sizeof n->db, "%s", name);
    snprintf(n->wal, sizeof n->wal, "%s-wal", name);
    if ((n->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
        return;
    if (inotify_add_watch(n->fd, dir, IN_MODIFY) < 0) {
        log_warn("cannot watch %s for writes (%s): new rows from other processes wait for "
                 "the next probe", dir, strerror(errno));
        close(n->fd);
        n->fd = -1;
    }
}

bool notify_drain(struct notify *n)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool written = false;
    ssize_t len;

    if (n->fd < 0)
        return false;
    while ((len = read(n->fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + len; ) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW)
                written = true;
            else if (ev->len && (strcmp(ev->name, n->wal) == 0 || strcmp(ev->name, n->db) == 0))
                written = true;
            p += sizeof *ev + ev->len;
        }
    }
    return written;
}

void notify_close(struct notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

int notify_recheck_us(struct notify *n, bool written, bool changed)
{
    if (written)
        n->misses = 0;
    else if (n->misses == 0)
        return -1;                 /* a timer probe, no write pending */
    if (changed || n->misses >= NOTIFY_RECHECKS) {
        n->misses = 0;
        return -1;
    }
    return NOTIFY_RECHECK_US << n->misses++;
}
