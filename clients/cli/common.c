/* The chanq CLI: shared options, connecting and error reporting. */
#include "chanq_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"

void
cli_init(struct cli *g, const char *cmd, const char *usage)
{
    const char *env_server = getenv("CHANQ_SERVERS");
    if (!env_server || !*env_server)
        env_server = getenv("CHANQ_SERVER");
    const char *env_token = getenv("CHANQ_TOKEN");
    *g = (struct cli){0};
    g->cmd = cmd;
    g->usage = usage;
    g->server = env_server && *env_server ? env_server : "127.0.0.1:7420";
    g->token = env_token && *env_token ? env_token : NULL;
    /* Each subcommand parses its own argv from the start. 0, not 1: main()
     * already ran getopt_long on the global options with "+" (stop at the
     * command), and only optind = 0 makes glibc forget that mode and permute
     * again (options may follow the arguments). */
    optind = 0;
}

#define NEAR_MAX_LEN 64 /* longer words are never typos of our names */

size_t
cli_edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, NEAR_MAX_LEN), lb = strnlen(b, NEAR_MAX_LEN);
    size_t row[NEAR_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0]; /* row[i-1][j-1] */
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

bool
cli_near(const char *typed, const char *known)
{
    /* Two edits, or a third of the name for long names: catches swapped and
     * missing letters without suggesting unrelated options. */
    size_t limit = strlen(known) / 3;
    return cli_edit_distance(typed, known) <= (limit > 2 ? limit : 2);
}

void
cli_suggest_option(const char *prog, const char *arg, const struct option *longopts)
{
    if (strncmp(arg, "--", 2) != 0 || !arg[2])
        return;
    char name[NEAR_MAX_LEN + 1];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
    const struct option *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const struct option *o = longopts; o->name; o++) {
        /* A prefix of a known option is an ambiguous abbreviation, or the
         * option itself missing its argument: getopt said so already. */
        if (strncmp(o->name, name, strlen(name)) == 0)
            return;
        size_t d = cli_edit_distance(name, o->name);
        if (d < best_d && cli_near(name, o->name)) {
            best = o;
            best_d = d;
        }
    }
    if (best)
        fprintf(stderr, "%s: did you mean '--%s'?\n", prog, best->name);
}

int
cli_getopt(const struct cli *g, int argc, char **argv, const char *shortopts,
           const struct option *longopts)
{
    int opt = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (opt == '?' && optind > 0 && optind <= argc) {
        char prog[64];
        snprintf(prog, sizeof prog, "chanq %s", g->cmd);
        cli_suggest_option(prog, argv[optind - 1], longopts);
    }
    return opt;
}

void
cli_usage_error(const struct cli *g, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "chanq %s: ", g->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'chanq %s --help'.\n", g->cmd);
    exit(CLI_USAGE);
}

bool
cli_common_opt(struct cli *g, int opt, const char *arg)
{
    switch (opt) {
    case OPT_SERVER:
    case OPT_SERVERS: /* a comma-separated list: libchanq finds the leader */
        g->server = arg;
        return true;
    case OPT_TOKEN:
        g->token = arg;
        return true;
    case OPT_TLS:
        g->tls = true;
        return true;
    case OPT_TLS_CA:
        g->tls = true;
        g->tls_ca = arg;
        return true;
    case OPT_TLS_CERT:
        g->tls = true;
        g->tls_cert = arg;
        return true;
    case OPT_TLS_KEY:
        g->tls = true;
        g->tls_key = arg;
        return true;
    case OPT_TLS_SERVER_NAME:
        g->tls = true;
        g->tls_server_name = arg;
        return true;
    case OPT_TLS_INSECURE:
        g->tls = g->tls_insecure = true;
        fprintf(stderr, "chanq %s: warning: --tls-insecure: the server's certificate is not "
                        "verified; anyone on the path can read and change the traffic (for "
                        "tests only)\n",
                g->cmd);
        return true;
    case 'h':
        fputs(g->usage, stdout);
        fputs("\nCommon options:\n" CLI_COMMON_HELP, stdout);
        exit(CLI_OK);
    case '?':
        fprintf(stderr, "Try 'chanq %s --help'.\n", g->cmd);
        exit(CLI_USAGE);
    default:
        return false;
    }
}

int64_t
cli_i64(const struct cli *g, const char *what, const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        cli_usage_error(g, "%s must be an integer, not '%s'", what, s);
    return (int64_t)v;
}

void
cli_connect_opts(const struct cli *g, struct chanq_connect_opts *o)
{
    memset(o, 0, sizeof *o);
    o->token = g->token;
    o->tls = g->tls;
    o->tls_ca = g->tls_ca;
    o->tls_cert = g->tls_cert;
    o->tls_key = g->tls_key;
    o->tls_server_name = g->tls_server_name;
    o->tls_insecure = g->tls_insecure;
}

struct chanq_conn *
cli_connect(const struct cli *g)
{
    struct chanq_connect_opts o;
    cli_connect_opts(g, &o);
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(g->server, &o, &err);
    if (!c) {
        fprintf(stderr, "chanq %s: cannot connect to %s: %s: %s\n", g->cmd, g->server, err.code,
                err.message);
        exit(strcmp(err.code, "io") == 0 ? CLI_IO : CLI_REFUSED);
    }
    return c;
}

int
cli_report(const struct cli *g, const struct chanq_conn *c, const char *what)
{
    const struct chanq_error *e = chanq_last_error(c);
    fprintf(stderr, "chanq %s: %s: %s: %s\n", g->cmd, what, e->code, e->message);
    return strcmp(e->code, "io") == 0 ? CLI_IO : CLI_REFUSED;
}

void
cli_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

int
cli_run_request(struct cli *g, json_t *req)
{
    struct chanq_conn *c = cli_connect(g);
    json_t *resp = NULL;
    int rc = CLI_OK;
    if (chanq_request(c, req, &resp) < 0)
        rc = cli_report(g, c, g->cmd);
    else
        cli_print_json(resp);
    json_decref(resp);
    json_decref(req);
    chanq_conn_free(c);
    return rc;
}
