/* chanq declare / close / pause / resume / kick / ping / queues: queue
 * administration. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"

static const char declare_usage[] =
    "Usage: chanq declare QUEUE [OPTIONS]\n"
    "Creates QUEUE, or checks that it has these settings (conflict otherwise).\n"
    "Prints the queue's settings and counts.\n"
    "\nOptions:\n"
    "  --capacity N       queued jobs it holds before submits wait (0: unbuffered)\n"
    "  --ttr-ms MS        default time to run\n"
    "  --max-attempts N   default deliveries before a job is dead\n"
    "  --concurrency N    at most N of its jobs reserved at once (0: no limit)\n"
    "  --rate N[/DUR]     at most N deliveries per DUR (default 1s; e.g. 100/1s,\n"
    "                     5/500ms, 60/1m; 0: no limit)\n"
    "  --burst N          deliveries the rate lets through at once (default: N)\n";

enum { OPT_CAPACITY = OPT_FIRST_OWN, OPT_TTR, OPT_ATTEMPTS, OPT_COUNT, OPT_JSON,
       OPT_CONCURRENCY, OPT_RATE, OPT_BURST };

/* ---- declare's delivery limits ---- */

/* "N", "N/DUR" with DUR [COUNT](ms|s|m|h) (COUNT default 1) into the
 * request's rate and rate_per_ms; a usage error otherwise. */
static void
set_rate(struct cli *g, json_t *req, const char *arg)
{
    char *end;
    long long n = strtoll(arg, &end, 10);
    long long per_ms = 1000;
    if (end == arg || n < 0)
        cli_usage_error(g, "--rate: expected N or N/DURATION (e.g. 100/1s)");
    if (*end == '/') {
        const char *d = end + 1;
        long long count = strtoll(d, &end, 10);
        if (end == d)
            count = 1;
        static const struct {
            const char *unit;
            long long ms;
        } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
        long long unit = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (!strcmp(end, units[i].unit))
                unit = units[i].ms;
        if (!unit || count <= 0 || count > 86400000 / unit)
            cli_usage_error(g, "--rate: the duration must be like 1s, 500ms, 1m (at most a day)");
        per_ms = count * unit;
    } else if (*end) {
        cli_usage_error(g, "--rate: expected N or N/DURATION (e.g. 100/1s)");
    }
    json_object_set_new(req, "rate", json_integer(n));
    if (n > 0)
        json_object_set_new(req, "rate_per_ms", json_integer(per_ms));
}

int
cmd_declare(int argc, char **argv)
{
    static const struct option opts[] = {{"capacity", required_argument, NULL, OPT_CAPACITY},
                                         {"ttr-ms", required_argument, NULL, OPT_TTR},
                                         {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
                                         {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
                                         {"rate", required_argument, NULL, OPT_RATE},
                                         {"burst", required_argument, NULL, OPT_BURST},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    cli_init(&g, "declare", declare_usage);
    json_t *req = json_pack("{s:s}", "op", "declare");
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        if (opt == OPT_RATE) {
            set_rate(&g, req, optarg);
            continue;
        }
        const char *key = opt == OPT_CAPACITY      ? "capacity"
                          : opt == OPT_TTR         ? "ttr_ms"
                          : opt == OPT_CONCURRENCY ? "concurrency"
                          : opt == OPT_BURST       ? "burst"
                                                   : "max_attempts";
        json_object_set_new(req, key, json_integer(cli_i64(&g, key, optarg)));
    }
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one QUEUE");
    json_object_set_new(req, "queue", json_string(argv[optind]));
    return cli_run_request(&g, req);
}

/* close / pause / resume: QUEUE is the only argument. */
static int
queue_command(int argc, char **argv, const char *op, const char *usage)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    cli_init(&g, op, usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        cli_common_opt(&g, opt, optarg);
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one QUEUE");
    return cli_run_request(&g, json_pack("{s:s,s:s}", "op", op, "queue", argv[optind]));
}

int
cmd_close(int argc, char **argv)
{
    return queue_command(argc, argv, "close",
                         "Usage: chanq close QUEUE\n"
                         "Closes QUEUE: submits fail with 'closed'; fetches drain what is\n"
                         "queued, then every waiting fetch (and chanq work) ends.\n");
}

int
cmd_pause(int argc, char **argv)
{
    return queue_command(argc, argv, "pause",
                         "Usage: chanq pause QUEUE\n"
                         "Pauses QUEUE: it still accepts submits but delivers nothing.\n");
}

int
cmd_resume(int argc, char **argv)
{
    return queue_command(argc, argv, "resume",
                         "Usage: chanq resume QUEUE\nDelivers a paused QUEUE's jobs again.\n");
}

static const char kick_usage[] =
    "Usage: chanq kick QUEUE [--count N]\n"
    "Moves up to N (default: all) dead jobs of QUEUE back to queued with fresh\n"
    "attempts. Prints {\"ok\":true,\"kicked\":N}.\n";

int
cmd_kick(int argc, char **argv)
{
    static const struct option opts[] = {{"count", required_argument, NULL, OPT_COUNT},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    int64_t count = 0;
    cli_init(&g, "kick", kick_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            count = cli_i64(&g, "--count", optarg);
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one QUEUE");
    json_t *req = json_pack("{s:s,s:s}", "op", "kick", "queue", argv[optind]);
    if (count > 0)
        json_object_set_new(req, "count", json_integer(count));
    return cli_run_request(&g, req);
}

int
cmd_ping(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    cli_init(&g, "ping", "Usage: chanq ping\nExits 0 when the server answers a ping.\n");
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        cli_common_opt(&g, opt, optarg);
    if (argc != optind)
        cli_usage_error(&g, "no arguments expected");
    return cli_run_request(&g, json_pack("{s:s}", "op", "ping"));
}

static const char queues_usage[] =
    "Usage: chanq queues [--json]\n"
    "Prints the name of every queue the server has, one per line, sorted (shell\n"
    "completion uses it), or with --json the whole answer on one line: each\n"
    "queue's settings and counts.\n"
    "\nOptions:\n"
    "  --json           the queues object (name -> settings and counts) as JSON\n";

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The object's keys, one per line, sorted. */
static int
print_names(const json_t *queues)
{
    size_t n = json_object_size(queues), i = 0;
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) {
        perror("chanq queues");
        return CLI_IO;
    }
    const char *name;
    const json_t *v;
    json_object_foreach ((json_t *)queues, name, v)
        names[i++] = name;
    qsort(names, n, sizeof *names, cmp_names);
    for (i = 0; i < n; i++)
        puts(names[i]);
    free(names);
    return CLI_OK;
}

int
cmd_queues(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    bool as_json = false;
    cli_init(&g, "queues", queues_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            as_json = true;
    if (argc != optind)
        cli_usage_error(&g, "no arguments expected");
    struct chanq_conn *c = cli_connect(&g);
    json_t *queues = NULL;
    int rc = CLI_OK;
    if (chanq_queues(c, &queues) < 0)
        rc = cli_report(&g, c, "queues");
    else if (as_json)
        cli_print_json(queues);
    else
        rc = print_names(queues);
    json_decref(queues);
    chanq_conn_free(c);
    return rc;
}
