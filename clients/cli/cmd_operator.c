/* chanq jobs / retry / delete / purge / queue delete|configure / clients:
 * the operator's view of single jobs, queues and connections. Tables for
 * people, --json (the server's answer, one line) for scripts, as in
 * chanq stats. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/cli/cli.h"

enum {
    OPT_STATE = OPT_FIRST_OWN,
    OPT_JSON,
    OPT_LIMIT,
    OPT_CURSOR,
    OPT_NEWEST,
    OPT_PAYLOAD,
    OPT_ALL,
    OPT_FORCE,
    OPT_CAPACITY,
    OPT_TTR,
    OPT_ATTEMPTS,
};

static int64_t
num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *
text_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* "12s", "5m", "3h", "2d": how long ago (or, negative, from now) ms was. */
static void
age(char *out, size_t n, int64_t ms, int64_t now_ms)
{
    int64_t d = now_ms - ms;
    const char *sign = d < 0 ? "in " : "";
    if (d < 0)
        d = -d;
    d /= 1000;
    if (d < 120)
        snprintf(out, n, "%s%llds", sign, (long long)d);
    else if (d < 7200)
        snprintf(out, n, "%s%lldm", sign, (long long)(d / 60));
    else if (d < 172800)
        snprintf(out, n, "%s%lldh", sign, (long long)(d / 3600));
    else
        snprintf(out, n, "%s%lldd", sign, (long long)(d / 86400));
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- jobs ---- */

static const char jobs_usage[] =
    "Usage: chanq jobs QUEUE --state STATE [OPTIONS]\n"
    "Lists QUEUE's jobs in STATE (queued, delayed, reserved, dead, finished),\n"
    "oldest first, one page (100 jobs unless --limit): id, state, attempt, age,\n"
    "next run time or reservation end, holder, and the last error. When more\n"
    "follow, the last line says the --cursor of the next page.\n"
    "\nOptions:\n"
    "  --state STATE    required: queued, delayed, reserved, dead or finished\n"
    "  --limit N        jobs per page (1..1000)\n"
    "  --cursor ID      start after this job id (a page's next cursor)\n"
    "  --newest         newest first\n"
    "  --all            every page, not just one\n"
    "  --payload        include the payloads (--json only)\n"
    "  --json           the server's answer as JSON, one line per page\n";

static void
print_job_row(const json_t *j, int64_t now)
{
    char created[24] = "-", when[24] = "-", holder[96] = "-", err[64] = "-";
    age(created, sizeof created, num(j, "created"), now);
    json_t *due = json_object_get(j, "due"), *exp = json_object_get(j, "ttr_expires");
    if (json_is_integer(due))
        age(when, sizeof when, json_integer_value(due), now);
    else if (json_is_integer(exp))
        age(when, sizeof when, json_integer_value(exp), now);
    const json_t *h = json_object_get(j, "holder");
    if (json_is_object(h))
        snprintf(holder, sizeof holder, "#%lld %s %s", (long long)num(h, "conn"),
                 text_or(h, "client", "-"), text_or(h, "addr", "?"));
    json_t *errs = json_object_get(j, "errors");
    size_t ne = json_array_size(errs);
    if (ne > 0)
        snprintf(err, sizeof err, "%.60s", text_or(json_array_get(errs, ne - 1), "error", "(none)"));
    printf("%-20s %-9s %7lld %8s %8s %-30s %s\n", text_or(j, "id", "?"), text_or(j, "state", "?"),
           (long long)num(j, "attempt"), created, when, holder, err);
}

int
cmd_jobs_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"state", required_argument, NULL, OPT_STATE}, {"json", no_argument, NULL, OPT_JSON},
        {"limit", required_argument, NULL, OPT_LIMIT}, {"cursor", required_argument, NULL, OPT_CURSOR},
        {"newest", no_argument, NULL, OPT_NEWEST},     {"payload", no_argument, NULL, OPT_PAYLOAD},
        {"all", no_argument, NULL, OPT_ALL},           CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    bool as_json = false, all = false;
    struct chanq_list_opts lo = {0};
    cli_init(&g, "jobs", jobs_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        switch (opt) {
        case OPT_STATE: lo.state = optarg; break;
        case OPT_JSON: as_json = true; break;
        case OPT_LIMIT:
            lo.limit = cli_i64(&g, "--limit", optarg);
            if (lo.limit < 1 || lo.limit > 1000)
                cli_usage_error(&g, "--limit must be 1..1000, got %s", optarg);
            break;
        case OPT_CURSOR: lo.cursor = optarg; break;
        case OPT_NEWEST: lo.newest = true; break;
        case OPT_PAYLOAD: lo.payload = true; break;
        default: all = true; break;
        }
    }
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one QUEUE");
    if (!lo.state)
        cli_usage_error(&g, "--state is required (queued, delayed, reserved, dead, finished)");
    lo.queue = argv[optind];
    struct chanq_conn *c = cli_connect(&g);
    int rc = CLI_OK;
    char *cursor = lo.cursor ? strdup(lo.cursor) : NULL;
    bool header = false;
    int64_t now = wall_ms();
    for (;;) {
        json_t *jobs = NULL;
        char *next = NULL;
        lo.cursor = cursor;
        if (chanq_list(c, &lo, &jobs, &next) < 0) {
            rc = cli_report(&g, c, "list");
            break;
        }
        if (as_json) {
            json_t *page = json_pack("{s:O}", "jobs", jobs);
            if (page && next)
                json_object_set_new(page, "next", json_string(next));
            cli_print_json(page);
            json_decref(page);
        } else {
            if (!header) {
                printf("%-20s %-9s %7s %8s %8s %-30s %s\n", "ID", "STATE", "ATTEMPT", "AGE",
                       "DUE/TTR", "HOLDER", "LAST ERROR");
                header = true;
            }
            for (size_t i = 0; i < json_array_size(jobs); i++)
                print_job_row(json_array_get(jobs, i), now);
        }
        json_decref(jobs);
        free(cursor);
        cursor = next;
        if (!next || !all)
            break;
    }
    if (!as_json && rc == CLI_OK && cursor)
        printf("more: --cursor %s\n", cursor);
    free(cursor);
    chanq_conn_free(c);
    return rc;
}

/* ---- retry, delete, purge ---- */

/* A command whose only argument is a job id. */
static int
id_command(int argc, char **argv, const char *op, const char *usage, bool with_force)
{
    static const struct option force_opts[] = {{"force", no_argument, NULL, OPT_FORCE},
                                               CLI_COMMON_OPTIONS};
    static const struct option plain_opts[] = {CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    bool force = false;
    cli_init(&g, op, usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", with_force ? force_opts : plain_opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            force = true;
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one job ID");
    json_t *req = json_pack("{s:s,s:s}", "op", op, "id", argv[optind]);
    if (force)
        json_object_set_new(req, "force", json_true());
    return cli_run_request(&g, req);
}

int
cmd_retry(int argc, char **argv)
{
    return id_command(argc, argv, "retry",
                      "Usage: chanq retry ID\n"
                      "Runs a dead job again with fresh attempts, or a delayed job now.\n"
                      "Prints {\"ok\":true,\"state\":\"queued\"}.\n",
                      false);
}

int
cmd_delete(int argc, char **argv)
{
    return id_command(argc, argv, "delete",
                      "Usage: chanq delete ID [--force]\n"
                      "Deletes a job, whatever its state; a reserved one only with --force\n"
                      "(its worker gets a cancel event). Prints the state it was in.\n"
                      "\nOptions:\n"
                      "  --force          also delete a reserved job\n",
                      true);
}

static const char purge_usage[] =
    "Usage: chanq purge QUEUE --state STATE\n"
    "Deletes every job of QUEUE in STATE (queued, delayed, dead, finished).\n"
    "Prints {\"ok\":true,\"purged\":N}.\n";

int
cmd_purge(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, NULL, OPT_STATE},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    const char *state = NULL;
    cli_init(&g, "purge", purge_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            state = optarg;
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one QUEUE");
    if (!state)
        cli_usage_error(&g, "--state is required (queued, delayed, dead, finished)");
    return cli_run_request(
        &g, json_pack("{s:s,s:s,s:s}", "op", "purge", "queue", argv[optind], "state", state));
}

/* ---- queue delete, queue configure ---- */

static const char queue_usage[] =
    "Usage: chanq queue delete NAME\n"
    "       chanq queue configure NAME [--capacity N] [--ttr-ms MS] [--max-attempts N]\n"
    "delete: deletes the queue and every job in it; requests waiting on it are\n"
    "  answered 'closed'. Prints {\"ok\":true,\"deleted\":JOBS}.\n"
    "configure: changes an existing queue's settings (at least one); a larger\n"
    "  capacity lets waiting submitters in at once. Prints the queue.\n"
    "\nOptions:\n"
    "  --capacity N       queued jobs it holds before submits wait\n"
    "  --ttr-ms MS        default time to run of new jobs\n"
    "  --max-attempts N   default deliveries of new jobs before they are dead\n";

int
cmd_queue(int argc, char **argv)
{
    static const struct option opts[] = {{"capacity", required_argument, NULL, OPT_CAPACITY},
                                         {"ttr-ms", required_argument, NULL, OPT_TTR},
                                         {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    cli_init(&g, "queue", queue_usage);
    json_t *set = json_object();
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        const char *key = opt == OPT_CAPACITY ? "capacity" : opt == OPT_TTR ? "ttr_ms" : "max_attempts";
        json_object_set_new(set, key, json_integer(cli_i64(&g, key, optarg)));
    }
    if (argc - optind != 2)
        cli_usage_error(&g, "expected 'delete NAME' or 'configure NAME'");
    const char *what = argv[optind], *name = argv[optind + 1];
    json_t *req;
    if (strcmp(what, "delete") == 0) {
        if (json_object_size(set) > 0)
            cli_usage_error(&g, "queue delete takes no settings");
        req = json_pack("{s:s,s:s}", "op", "queue_delete", "queue", name);
    } else if (strcmp(what, "configure") == 0) {
        if (json_object_size(set) == 0)
            cli_usage_error(&g, "give at least one of --capacity, --ttr-ms, --max-attempts");
        req = json_pack("{s:s,s:s}", "op", "configure", "queue", name);
        json_object_update(req, set);
    } else {
        cli_usage_error(&g, "unknown queue command '%s' (delete, configure)", what);
    }
    json_decref(set);
    return cli_run_request(&g, req);
}

/* ---- clients ---- */

static const char clients_usage[] =
    "Usage: chanq clients [--json]\n"
    "Lists the server's open connections: number, client name (from hello),\n"
    "address, connected for, requests answered, jobs held, requests waiting.\n"
    "\nOptions:\n"
    "  --json           the server's answer as JSON\n";

int
cmd_clients(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    bool as_json = false;
    cli_init(&g, "clients", clients_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            as_json = true;
    if (argc != optind)
        cli_usage_error(&g, "no arguments expected");
    if (as_json)
        return cli_run_request(&g, json_pack("{s:s}", "op", "clients"));
    struct chanq_conn *c = cli_connect(&g);
    json_t *all = NULL;
    int rc = CLI_OK;
    if (chanq_clients(c, &all) < 0) {
        rc = cli_report(&g, c, "clients");
    } else {
        int64_t now = wall_ms();
        printf("%6s %-24s %-24s %8s %10s %6s %7s\n", "CONN", "CLIENT", "ADDR", "SINCE",
               "REQUESTS", "HELD", "WAITING");
        for (size_t i = 0; i < json_array_size(all); i++) {
            const json_t *e = json_array_get(all, i);
            char since[24];
            age(since, sizeof since, num(e, "since"), now);
            printf("%6lld %-24.24s %-24s %8s %10lld %6lld %7lld\n", (long long)num(e, "conn"),
                   text_or(e, "client", "-"), text_or(e, "addr", "?"), since,
                   (long long)num(e, "requests"), (long long)num(e, "held"),
                   (long long)num(e, "waiting"));
        }
    }
    json_decref(all);
    chanq_conn_free(c);
    return rc;
}
