/* chanq stats: a table of queues (depth/capacity, reserved, delayed, dead,
 * waiting submitters and fetchers, rates) and the server's figures. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clients/cli/cli.h"

static const char stats_usage[] =
    "Usage: chanq stats [QUEUE] [OPTIONS]\n"
    "Prints a table of every queue (or only QUEUE): depth/capacity, reserved,\n"
    "delayed, dead, waiting submitters and fetchers, submit and ack rates per\n"
    "second (measured over --interval), state; then the server's figures.\n"
    "\nOptions:\n"
    "  --json           print the raw stats answers as JSON, once, at once\n"
    "  --watch          refresh the table every interval until interrupted\n"
    "  --interval SEC   rate window and refresh period (default 1)\n";

enum { OPT_JSON = OPT_FIRST_OWN, OPT_WATCH, OPT_INTERVAL };

static int64_t
num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* name -> fields for every queue, or for the one asked. New reference. */
static json_t *
sample(struct chanq_conn *c, const char *queue)
{
    json_t *out = NULL;
    if (queue) {
        json_t *q;
        if (chanq_stats(c, queue, &q) < 0)
            return NULL;
        out = json_object();
        json_object_set_new(out, queue, q);
        return out;
    }
    return chanq_queues(c, &out) < 0 ? NULL : out;
}

static double
rate(const json_t *now, const json_t *before, const char *key, double secs)
{
    if (!before || secs <= 0)
        return 0;
    return (double)(num(now, key) - num(before, key)) / secs;
}

static void
human_bytes(char *out, size_t n, int64_t b)
{
    if (b >= 1 << 30)
        snprintf(out, n, "%.1f GiB", (double)b / (1 << 30));
    else if (b >= 1 << 20)
        snprintf(out, n, "%.1f MiB", (double)b / (1 << 20));
    else
        snprintf(out, n, "%.1f KiB", (double)b / 1024);
}

static void
print_table(const json_t *now, const json_t *before, double secs, const json_t *server)
{
    printf("%-24s %13s %8s %8s %8s %6s %6s %10s %10s %s\n", "QUEUE", "DEPTH/CAP", "RESERVED",
           "DELAYED", "DEAD", "W.SUB", "W.FET", "SUBMIT/s", "ACK/s", "STATE");
    const char *name;
    json_t *q;
    json_object_foreach((json_t *)now, name, q) {
        char depth[32];
        json_t *cap = json_object_get(q, "capacity");
        snprintf(depth, sizeof depth, "%lld/%s", (long long)num(q, "depth"),
                 json_is_integer(cap) ? "" : "-");
        if (json_is_integer(cap))
            snprintf(depth + strlen(depth), sizeof depth - strlen(depth), "%lld",
                     (long long)json_integer_value(cap));
        const json_t *b = before ? json_object_get(before, name) : NULL;
        const char *state = json_is_true(json_object_get(q, "closed"))   ? "closed"
                            : json_is_true(json_object_get(q, "paused")) ? "paused"
                                                                         : "open";
        printf("%-24s %13s %8lld %8lld %8lld %6lld %6lld %10.0f %10.0f %s\n", name, depth,
               (long long)num(q, "reserved"), (long long)num(q, "delayed"),
               (long long)num(q, "dead"), (long long)num(q, "waiting_submitters"),
               (long long)num(q, "waiting_fetchers"), rate(q, b, "submitted", secs),
               rate(q, b, "acked", secs), state);
    }
    if (!server)
        return;
    char rss[32];
    human_bytes(rss, sizeof rss, num(server, "rss_bytes"));
    printf("\nserver: up %llds, %lld connections, %lld goroutines, %lld threads, rss %s\n",
           (long long)num(server, "uptime_s"), (long long)num(server, "connections"),
           (long long)num(server, "goroutines"), (long long)num(server, "threads"), rss);
    json_t *jobs = json_object_get(server, "jobs");
    if (json_is_object(jobs)) {
        printf("jobs:");
        const char *k;
        json_t *v;
        json_object_foreach(jobs, k, v)
            printf(" %s %lld", k, (long long)json_integer_value(v));
        printf("\n");
    }
    json_t *journal = json_object_get(server, "journal");
    if (json_is_object(journal)) {
        char *s = json_dumps(journal, JSON_COMPACT);
        printf("journal: %s\n", s ? s : "");
        free(s);
    }
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int
cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         {"watch", no_argument, NULL, OPT_WATCH},
                                         {"interval", required_argument, NULL, OPT_INTERVAL},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    bool as_json = false, watch = false;
    int64_t interval = 1;
    int opt;
    cli_init(&g, "stats", stats_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        if (opt == OPT_JSON)
            as_json = true;
        else if (opt == OPT_WATCH)
            watch = true;
        else if (opt == OPT_INTERVAL)
            interval = cli_i64(&g, "--interval", optarg);
    }
    if (argc - optind > 1)
        cli_usage_error(&g, "at most one QUEUE");
    if (interval < 1)
        interval = 1;
    const char *queue = argc - optind == 1 ? argv[optind] : NULL;
    struct chanq_conn *c = cli_connect(&g);
    int rc = CLI_OK;
    json_t *before = sample(c, queue), *server = NULL;
    if (!before) {
        rc = cli_report(&g, c, "stats");
        goto out_free_conn;
    }
    if (as_json) {
        json_t *all = json_object();
        json_object_set(all, "queues", before);
        if (chanq_stats(c, NULL, &server) == 0)
            json_object_set_new(all, "server", server);
        cli_print_json(all);
        json_decref(all);
        goto out_free_before;
    }
    bool tty = isatty(STDOUT_FILENO);
    double t0 = now_s();
    do {
        sleep((unsigned)interval);
        json_t *now = sample(c, queue);
        double t1 = now_s();
        server = NULL;
        if (!now || chanq_stats(c, NULL, &server) < 0) {
            json_decref(now);
            rc = cli_report(&g, c, "stats");
            break;
        }
        if (watch && tty)
            fputs("\033[H\033[2J", stdout);
        print_table(now, before, t1 - t0, server);
        if (watch)
            printf("\n");
        fflush(stdout);
        json_decref(server);
        json_decref(before);
        before = now;
        t0 = t1;
    } while (watch);
out_free_before:
    json_decref(before);
out_free_conn:
    chanq_conn_free(c);
    return rc;
}
