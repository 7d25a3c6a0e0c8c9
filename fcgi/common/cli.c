/*
 * cli.c - bounded flag values and process limits at start-up.
 */
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "log.h"
#include "util.h"

static const char *prog = "chat";

void cli_set_name(const char *name)
{
    prog = name;
}

static unsigned cli_socket_mode(const char *s)
{
    char *end;
    unsigned long m = strtoul(s, &end, 8);

    if (!*s || *end || m > 0777) {
        fprintf(stderr, "%s: --socket-mode must be octal, like 0660\n", prog);
        exit(2);
    }
    return (unsigned)m;
}

static long cli_group(const char *s)
{
    struct group *g = getgrnam(s);
    int64_t gid;

    if (g)
        return (long)g->gr_gid;
    if (!util_parse_int(s, strlen(s), 0, INT_MAX, &gid)) {
        fprintf(stderr, "%s: --socket-group %s: no such group\n", prog, s);
        exit(2);
    }
    return (long)gid;
}

bool cli_common_flag(int ch, const char *arg, struct cli_common *c, void (*usage)(FILE *out),
                     const char *version)
{
    switch (ch) {
    case 'd': c->db_path = arg; return true;
    case 'l': c->listen = arg; return true;
    case CLI_OPT_PROBE: c->probe_ms = cli_int("--probe-ms", arg, 1, 10000); return true;
    case CLI_OPT_BUSY: c->busy_ms = cli_int("--busy-ms", arg, 0, 600000); return true;
    case CLI_OPT_SYNC: c->sync_full = cli_sync_full(arg); return true;
    case CLI_OPT_SOCKET_MODE: c->socket_mode = cli_socket_mode(arg); return true;
    case CLI_OPT_SOCKET_GROUP: c->socket_gid = cli_group(arg); return true;
    case 'v': log_set_level(LOG_DEBUG); return true;
    case 'q': log_set_level(LOG_WARN); return true;
    case 'h': usage(stdout); exit(0);
    case 'V': printf("%s %s\n", prog, version); exit(0);
    default: return false;
    }
}

void cli_no_operands(int argc, char **argv, void (*usage)(FILE *out))
{
    if (optind < argc) {
        char shown[256];
        /* Masked: a --db URI given without its flag must not show its password either. */
        log_mask(argv[optind], strlen(argv[optind]), shown, sizeof shown);
        fprintf(stderr, "%s: unexpected argument %s\n", prog, shown);
        usage(stderr);
        exit(2);
    }
}

int cli_int(const char *flag, const char *s, int min, int max)
{
    int64_t v;

    if (!util_parse_int(s, strlen(s), min, max, &v)) {
        fprintf(stderr, "%s: %s must be a number from %d to %d\n", prog, flag, min, max);
        exit(2);
    }
    return (int)v;
}

bool cli_sync_full(const char *s)
{
    if (strcmp(s, "normal") != 0 && strcmp(s, "full") != 0) {
        fprintf(stderr, "%s: --sync is normal or full\n", prog);
        exit(2);
    }
    return strcmp(s, "full") == 0;
}

long cli_raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > LONG_MAX ? -1 : (long)rl.rlim_cur;
}
