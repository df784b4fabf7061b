/* chanq schedule add / list / rm / pause / resume: named schedules whose
 * firings are jobs (docs/scheduling.md), through libchanq's schedule
 * calls. */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/cli/cli.h"

static const char schedule_usage[] =
    "Usage: chanq schedule add NAME (--cron EXPR | --every DURATION) --queue QUEUE\n"
    "                          --payload JSON [--tz ZONE] [--missed skip|once]\n"
    "                          [--ttr-ms MS] [--max-attempts N] [--replace]\n"
    "       chanq schedule list [--json]\n"
    "       chanq schedule rm NAME\n"
    "       chanq schedule pause NAME\n"
    "       chanq schedule resume NAME\n"
    "Named schedules: each planned time of EXPR (a 5-field cron expression, or\n"
    "@hourly, @daily, @weekly, @monthly, @yearly, @every DURATION) in ZONE\n"
    "(default UTC) submits one job to QUEUE whose payload is\n"
    "{\"schedule\":NAME,\"planned\":MS,\"payload\":JSON}.\n"
    "\nOptions:\n"
    "  --cron EXPR        when it fires, e.g. '30 2 * * mon-fri'\n"
    "  --every DURATION   a fixed interval instead (90s, 5m, 1h30m, 2d)\n"
    "  --tz ZONE          IANA time zone of the expression (Europe/Berlin)\n"
    "  --queue QUEUE      where its jobs go\n"
    "  --payload JSON     the jobs' payload template\n"
    "  --missed skip|once after a downtime: no job for the missed times (skip,\n"
    "                     the default) or one job for the latest of them (once)\n"
    "  --ttr-ms MS        the jobs' time to run (default: the queue's)\n"
    "  --max-attempts N   the jobs' deliveries before dead (default: the queue's)\n"
    "  --replace          replace a schedule of that name (else an existing one\n"
    "                     with another definition is a conflict)\n"
    "  --json             list: print the server's answer as JSON\n";

enum {
    OPT_CRON = OPT_FIRST_OWN,
    OPT_EVERY,
    OPT_TZ,
    OPT_QUEUE,
    OPT_PAYLOAD,
    OPT_MISSED,
    OPT_TTR,
    OPT_ATTEMPTS,
    OPT_REPLACE,
    OPT_JSON
};

/* "2026-01-01 02:30:00Z" from ms, or "-" for a JSON null. */
static const char *
when(const json_t *ms, char *buf, size_t len)
{
    if (!json_is_integer(ms))
        return "-";
    time_t t = (time_t)(json_integer_value(ms) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

static void
print_table(const json_t *list)
{
    size_t i;
    json_t *s;
    printf("%-20s %-20s %-16s %-16s %-21s %-21s %s\n", "NAME", "CRON", "TZ", "QUEUE", "NEXT",
           "LAST", "STATE");
    json_array_foreach(list, i, s)
    {
        char next[32], last[32];
        printf("%-20s %-20s %-16s %-16s %-21s %-21s %s\n",
               json_string_value(json_object_get(s, "name")),
               json_string_value(json_object_get(s, "cron")),
               json_string_value(json_object_get(s, "tz")),
               json_string_value(json_object_get(s, "queue")),
               when(json_object_get(s, "next"), next, sizeof next),
               when(json_object_get(s, "last"), last, sizeof last),
               json_is_true(json_object_get(s, "paused")) ? "paused" : "active");
    }
}

struct sched_args {
    struct chanq_schedule_spec spec;
    char every[80];
    bool json;
};

static void
parse_opts(struct cli *g, int argc, char **argv, struct sched_args *a)
{
    static const struct option opts[] = {{"cron", required_argument, NULL, OPT_CRON},
                                         {"every", required_argument, NULL, OPT_EVERY},
                                         {"tz", required_argument, NULL, OPT_TZ},
                                         {"queue", required_argument, NULL, OPT_QUEUE},
                                         {"payload", required_argument, NULL, OPT_PAYLOAD},
                                         {"missed", required_argument, NULL, OPT_MISSED},
                                         {"ttr-ms", required_argument, NULL, OPT_TTR},
                                         {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
                                         {"replace", no_argument, NULL, OPT_REPLACE},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         CLI_COMMON_OPTIONS};
    int opt;
    while ((opt = cli_getopt(g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(g, opt, optarg))
            continue;
        switch (opt) {
        case OPT_CRON:
            a->spec.cron = optarg;
            break;
        case OPT_EVERY:
            snprintf(a->every, sizeof a->every, "@every %s", optarg);
            a->spec.cron = a->every;
            break;
        case OPT_TZ:
            a->spec.tz = optarg;
            break;
        case OPT_QUEUE:
            a->spec.queue = optarg;
            break;
        case OPT_PAYLOAD:
            a->spec.payload = optarg;
            break;
        case OPT_MISSED:
            if (strcmp(optarg, "skip") != 0 && strcmp(optarg, "once") != 0)
                cli_usage_error(g, "--missed: skip or once, not '%s'", optarg);
            a->spec.missed_once = strcmp(optarg, "once") == 0;
            break;
        case OPT_TTR:
            a->spec.ttr_ms = cli_i64(g, "--ttr-ms", optarg);
            break;
        case OPT_ATTEMPTS:
            a->spec.max_attempts = cli_i64(g, "--max-attempts", optarg);
            break;
        case OPT_REPLACE:
            a->spec.replace = true;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        }
    }
}

static int
run_add(struct cli *g, const char *name, struct sched_args *a)
{
    if (!a->spec.cron || !a->spec.queue || !a->spec.payload)
        cli_usage_error(g, "add needs --cron (or --every), --queue and --payload");
    json_t *probe = json_loads(a->spec.payload, JSON_DECODE_ANY, NULL);
    if (!probe)
        cli_usage_error(g, "--payload: not JSON");
    json_decref(probe);
    struct chanq_conn *c = cli_connect(g);
    json_t *out = NULL;
    int rc = chanq_schedule_add(c, name, &a->spec, &out) < 0 ? cli_report(g, c, "add") : CLI_OK;
    if (rc == CLI_OK)
        cli_print_json(out);
    json_decref(out);
    chanq_conn_free(c);
    return rc;
}

static int
run_list(struct cli *g, const struct sched_args *a)
{
    struct chanq_conn *c = cli_connect(g);
    json_t *list = NULL;
    int rc = chanq_schedule_list(c, &list) < 0 ? cli_report(g, c, "list") : CLI_OK;
    if (rc == CLI_OK && a->json)
        cli_print_json(list);
    else if (rc == CLI_OK)
        print_table(list);
    json_decref(list);
    chanq_conn_free(c);
    return rc;
}

static int
run_named(struct cli *g, const char *action, const char *name)
{
    struct chanq_conn *c = cli_connect(g);
    int r = strcmp(action, "pause") == 0    ? chanq_schedule_pause(c, name)
            : strcmp(action, "resume") == 0 ? chanq_schedule_resume(c, name)
                                            : chanq_schedule_delete(c, name);
    int rc = r < 0 ? cli_report(g, c, action) : CLI_OK;
    chanq_conn_free(c);
    return rc;
}

int
cmd_schedule(int argc, char **argv)
{
    struct cli g;
    struct sched_args a = {.json = false};
    cli_init(&g, "schedule", schedule_usage);
    parse_opts(&g, argc, argv, &a);
    int nargs = argc - optind;
    const char *action = nargs > 0 ? argv[optind] : "";
    if (strcmp(action, "list") == 0 && nargs == 1)
        return run_list(&g, &a);
    if (nargs != 2)
        cli_usage_error(&g, "expected add NAME, list, rm NAME, pause NAME or resume NAME");
    const char *name = argv[optind + 1];
    if (strcmp(action, "add") == 0)
        return run_add(&g, name, &a);
    if (strcmp(action, "rm") == 0 || strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0)
        return run_named(&g, action, name);
    cli_usage_error(&g, "unknown action '%s' (add, list, rm, pause, resume)", action);
}
