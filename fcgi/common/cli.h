/*
 * cli.h - start-up helpers shared by chat-fcgi and chat-ws: bounded flag
 * values and process limits. Only start-up may exit, so these may.
 */
#ifndef CHAT_CLI_H
#define CHAT_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

/* The program name in messages about bad flags. */
void cli_set_name(const char *name);

/*
 * The flags both programs take, and what they set. Their help lines for
 * --socket-mode and --socket-group are CLI_SOCKET_HELP.
 */
struct cli_common {
    const char *db_path;      /* --db: a SQLite path or a postgresql:// URI */
    const char *listen;       /* --listen */
    int probe_ms;             /* --probe-ms */
    int busy_ms;              /* --busy-ms */
    bool sync_full;           /* --sync */
    unsigned socket_mode;     /* --socket-mode: of a unix socket --listen makes */
    long socket_gid;          /* --socket-group: its group, or -1 for the process's */
};

enum { CLI_OPT_PROBE = 200, CLI_OPT_BUSY, CLI_OPT_SYNC, CLI_OPT_SOCKET_MODE,
       CLI_OPT_SOCKET_GROUP };   /* a program's own start at 256 */

/* The defaults of --socket-mode and --socket-group. */
#define CLI_SOCKET_DEFAULTS .socket_mode = 0660, .socket_gid = -1

/* The rows of the common flags in a program's getopt_long table, and their short letters. */
#define CLI_COMMON_OPTIONS \
    { "db", required_argument, NULL, 'd' }, { "listen", required_argument, NULL, 'l' }, \
    { "probe-ms", required_argument, NULL, CLI_OPT_PROBE }, \
    { "busy-ms", required_argument, NULL, CLI_OPT_BUSY }, \
    { "sync", required_argument, NULL, CLI_OPT_SYNC }, \
    { "socket-mode", required_argument, NULL, CLI_OPT_SOCKET_MODE }, \
    { "socket-group", required_argument, NULL, CLI_OPT_SOCKET_GROUP }, \
    { "verbose", no_argument, NULL, 'v' }, \
    { "quiet", no_argument, NULL, 'q' }, { "help", no_argument, NULL, 'h' }, \
    { "version", no_argument, NULL, 'V' }
#define CLI_COMMON_SHORT "d:l:vqhV"
#define CLI_SOCKET_HELP \
    "      --socket-mode MODE permissions of a unix socket, octal (default: 0660)\n" \
    "      --socket-group G   its group, a name or number (default: the process's;\n" \
    "                         the process must be in G, e.g. SupplementaryGroups=)\n"

/*
 * Handles getopt_long's ch when it is a common flag: true when it was. -h
 * prints usage to stdout and exits 0, -V prints the version and exits 0, a
 * bad value exits 2.
 */
bool cli_common_flag(int ch, const char *arg, struct cli_common *c, void (*usage)(FILE *out),
                     const char *version);
/* After getopt_long: an argument left over prints usage and exits 2. */
void cli_no_operands(int argc, char **argv, void (*usage)(FILE *out));

/* The value of a numeric flag in [min, max]; exits 2 with a message otherwise. */
int cli_int(const char *flag, const char *s, int min, int max);

/* --sync normal|full: true for full; exits 2 with a message otherwise. */
bool cli_sync_full(const char *s);

/*
 * Raises the soft limit of open descriptors to the hard one. Returns the
 * limit in force, or -1 when there is none (or it cannot be read).
 */
long cli_raise_fd_limit(void);

#endif
