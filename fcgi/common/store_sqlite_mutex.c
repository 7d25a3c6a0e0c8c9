/*
 * store_sqlite_mutex.c - SQLite's process-wide settings, made once before
 * the first connection: its mutexes are glibc's adaptive ones, and it keeps
 * no memory statistics.
 *
 * Every worker thread has its own connection to the same database, and
 * each read transaction takes and releases the process's shared-memory
 * lock mutex of the WAL index twice. With SQLite's default (plain) pthread
 * mutexes a thread that finds it taken sleeps in futex() at once, though
 * its holder on the other core leaves it within a few hundred
 * instructions; an adaptive mutex spins briefly first. Memory statistics
 * would take one more process-wide mutex per allocation, and nothing here
 * reads them.
 */
#include <pthread.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "store_sqlite.h"

struct sqlite3_mutex {
    pthread_mutex_t mu;
};

/* SQLITE_MUTEX_STATIC_MAIN (2) to SQLITE_MUTEX_STATIC_VFS3 (13). */
#define STATIC_FIRST SQLITE_MUTEX_STATIC_MAIN
#define STATIC_COUNT (SQLITE_MUTEX_STATIC_VFS3 - SQLITE_MUTEX_STATIC_MAIN + 1)

static sqlite3_mutex static_mutexes[STATIC_COUNT] = {
    [0 ... STATIC_COUNT - 1] = { PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP },
};

static int mutex_init(void)
{
    return SQLITE_OK;
}

static int mutex_end(void)
{
    return SQLITE_OK;
}

static sqlite3_mutex *mutex_alloc(int type)
{
    pthread_mutexattr_t a;
    sqlite3_mutex *m;

    if (type >= STATIC_FIRST && type < STATIC_FIRST + STATIC_COUNT)
        return &static_mutexes[type - STATIC_FIRST];
    if ((type != SQLITE_MUTEX_FAST && type != SQLITE_MUTEX_RECURSIVE) || !(m = malloc(sizeof *m)))
        return NULL;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type == SQLITE_MUTEX_RECURSIVE ? PTHREAD_MUTEX_RECURSIVE
                                                                 : PTHREAD_MUTEX_ADAPTIVE_NP);
    if (pthread_mutex_init(&m->mu, &a) != 0) {
        free(m);
        m = NULL;   /* SQLite reports SQLITE_NOMEM */
    }
    pthread_mutexattr_destroy(&a);
    return m;
}

static void mutex_free(sqlite3_mutex *m)
{
    if (m < static_mutexes || m >= static_mutexes + STATIC_COUNT) {
        pthread_mutex_destroy(&m->mu);
        free(m);
    }
}

static void mutex_enter(sqlite3_mutex *m)
{
    pthread_mutex_lock(&m->mu);
}

static int mutex_try(sqlite3_mutex *m)
{
    return pthread_mutex_trylock(&m->mu) == 0 ? SQLITE_OK : SQLITE_BUSY;
}

static void mutex_leave(sqlite3_mutex *m)
{
    pthread_mutex_unlock(&m->mu);
}

/* Asked only by SQLite's own debugging builds, which may not rely on them. */
static int mutex_held(sqlite3_mutex *m)
{
    (void)m;
    return 1;
}

static const sqlite3_mutex_methods adaptive_mutexes = {
    mutex_init, mutex_end, mutex_alloc, mutex_free, mutex_enter,
    mutex_try, mutex_leave, mutex_held, mutex_held,
};

static void configure(void)
{
    /* Each refuses (SQLITE_MISUSE) once the library is initialised: then it keeps its defaults. */
    sqlite3_config(SQLITE_CONFIG_MUTEX, &adaptive_mutexes);
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

void store_sqlite_configure(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, configure);
}
