/* chanq fetch / ack / nack / touch / cancel / wait / job: one operation per
 * command, for scripts. Reservations belong to the connection that fetched,
 * so `fetch` keeps its connection open and takes ack/nack/touch lines on
 * stdin (see chanq.1). */
#include "chanq_config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/cli/cli.h"

static const char fetch_usage[] =
    "Usage: chanq fetch QUEUE... [OPTIONS]\n"
    "Reserves jobs from any of the queues (like Go's select) and prints each as\n"
    "one JSON line {id,queue,payload,attempt,ttr_ms[,deadline][,traceparent]}. The jobs stay\n"
    "reserved by this command's connection: unless --ack is given, it then\n"
    "reads lines from stdin until EOF and answers each with the server's JSON:\n"
    "  ack ID [RESULT-JSON]        nack ID [ERROR TEXT]\n"
    "  bury ID [ERROR TEXT]        touch ID [TTR-MS]\n"
    "Server events (revoked, cancel) are printed as they come. At EOF, jobs\n"
    "not acked go back to their queue.\n"
    "Exit status 0 also when no job came in time (nothing is printed).\n"
    "\nOptions:\n"
    "  --timeout-ms MS  wait at most MS for a job (0: don't wait; default: forever)\n"
    "  --count N        up to N jobs\n"
    "  --strict         the first listed ready queue wins (priorities)\n"
    "  --ack            ack the jobs right after printing them (consume)\n";

enum { OPT_TIMEOUT = OPT_FIRST_OWN, OPT_COUNT, OPT_STRICT, OPT_ACK };

static void
print_job(const struct chanq_job *j)
{
    json_t *o = json_pack("{s:s,s:s?,s:o,s:I,s:I}", "id", j->id, "queue", j->queue, "payload",
                          json_loads(j->payload, JSON_DECODE_ANY, NULL), "attempt",
                          (json_int_t)j->attempt, "ttr_ms", (json_int_t)j->ttr_ms);
    if (o && j->deadline)
        json_object_set_new(o, "deadline", json_integer(j->deadline));
    if (o && j->traceparent)
        json_object_set_new(o, "traceparent", json_string(j->traceparent));
    cli_print_json(o);
    json_decref(o);
}

static void
print_event(const struct chanq_event *ev, void *arg)
{
    json_t *o = json_pack("{s:s?,s:s?}", "event", ev->type, "id", ev->id);
    if (o && ev->reason)
        json_object_set_new(o, "reason", json_string(ev->reason));
    cli_print_json(o);
    json_decref(o);
    fflush(stdout);
}

/* One stdin command line -> a request object, or NULL (message printed). */
static json_t *
session_request(char *line)
{
    char *verb = strtok(line, " \t");
    char *id = strtok(NULL, " \t");
    char *rest = strtok(NULL, "");
    if (!verb || !id) {
        fprintf(stderr, "chanq fetch: expected 'ack|nack|bury|touch ID ...'\n");
        return NULL;
    }
    while (rest && (*rest == ' ' || *rest == '\t'))
        rest++;
    if (rest && !*rest)
        rest = NULL;
    if (strcmp(verb, "ack") == 0) {
        json_t *req = json_pack("{s:s,s:s}", "op", "ack", "id", id);
        if (rest) {
            json_t *r = json_loads(rest, JSON_DECODE_ANY, NULL);
            json_object_set_new(req, "result", r ? r : json_string(rest));
        }
        return req;
    }
    if (strcmp(verb, "nack") == 0 || strcmp(verb, "bury") == 0) {
        json_t *req = json_pack("{s:s,s:s}", "op", "nack", "id", id);
        if (rest)
            json_object_set_new(req, "error", json_string(rest));
        if (verb[0] == 'b')
            json_object_set_new(req, "dead", json_true());
        return req;
    }
    if (strcmp(verb, "touch") == 0) {
        json_t *req = json_pack("{s:s,s:s}", "op", "touch", "id", id);
        if (rest)
            json_object_set_new(req, "ttr_ms", json_integer(atoll(rest)));
        return req;
    }
    fprintf(stderr, "chanq fetch: unknown command '%s'\n", verb);
    return NULL;
}

/* Answers stdin command lines until EOF, printing events meanwhile. */
static int
fetch_session(const struct cli *g, struct chanq_conn *c)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = CLI_OK;
    chanq_set_event_fn(c, print_event, NULL);
    for (;;) {
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = chanq_fd(c), .events = POLLIN}};
        fflush(stdout);
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents && chanq_poll_events(c, 0) < 0) {
            rc = cli_report(g, c, "connection");
            break;
        }
        if (!p[0].revents)
            continue;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        json_t *req = session_request(line), *resp = NULL;
        if (!req) {
            rc = CLI_USAGE;
            continue;
        }
        if (chanq_request(c, req, &resp) < 0 && !resp) {
            json_decref(req);
            rc = cli_report(g, c, "request");
            break;
        }
        cli_print_json(resp);
        json_decref(resp);
        json_decref(req);
    }
    free(line);
    return rc;
}

int
cmd_fetch(int argc, char **argv)
{
    static const struct option opts[] = {{"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
                                         {"count", required_argument, NULL, OPT_COUNT},
                                         {"strict", no_argument, NULL, OPT_STRICT},
                                         {"ack", no_argument, NULL, OPT_ACK},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    struct chanq_fetch_opts o = {.timeout_ms = CHANQ_FOREVER, .count = 1};
    bool ack = false;
    int opt;
    cli_init(&g, "fetch", fetch_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        switch (opt) {
        case OPT_TIMEOUT: o.timeout_ms = cli_i64(&g, "--timeout-ms", optarg); break;
        case OPT_COUNT: o.count = cli_i64(&g, "--count", optarg); break;
        case OPT_STRICT: o.strict = true; break;
        case OPT_ACK: ack = true; break;
        }
    }
    if (optind >= argc)
        cli_usage_error(&g, "missing QUEUE");
    o.queues = (const char *const *)argv + optind;
    o.nqueues = (size_t)(argc - optind);
    struct chanq_conn *c = cli_connect(&g);
    struct chanq_job *jobs;
    size_t n;
    int rc = CLI_OK;
    if (chanq_fetch(c, &o, &jobs, &n) < 0) {
        rc = cli_report(&g, c, "fetch");
        goto out_free_conn;
    }
    for (size_t i = 0; i < n; i++)
        print_job(&jobs[i]);
    fflush(stdout);
    if (ack) {
        for (size_t i = 0; i < n; i++)
            if (chanq_ack(c, jobs[i].id, NULL) < 0)
                rc = cli_report(&g, c, "ack");
    } else if (n > 0) {
        rc = fetch_session(&g, c);
    }
    chanq_jobs_free(jobs, n);
out_free_conn:
    chanq_conn_free(c);
    return rc;
}

static const char ack_usage[] =
    "Usage: chanq ack ID [RESULT-JSON]\n"
    "Marks job ID done with an optional result (JSON, else kept as a string).\n"
    "A job is reserved by the connection that fetched it, so from a separate\n"
    "process this answers not_reserved; scripts ack through `chanq fetch`'s\n"
    "stdin or let `chanq work` ack by exit status.\n";

/* Parses only the shared options; returns the index of the first argument. */
static int
parse_common(struct cli *g, int argc, char **argv, int min_args, int max_args)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS};
    int opt;
    while ((opt = cli_getopt(g, argc, argv, "h", opts)) != -1)
        cli_common_opt(g, opt, optarg);
    if (argc - optind < min_args)
        cli_usage_error(g, "missing argument");
    if (argc - optind > max_args)
        cli_usage_error(g, "too many arguments");
    return optind;
}

int
cmd_ack(int argc, char **argv)
{
    struct cli g;
    cli_init(&g, "ack", ack_usage);
    int i = parse_common(&g, argc, argv, 1, 2);
    json_t *req = json_pack("{s:s,s:s}", "op", "ack", "id", argv[i]);
    if (argc - i == 2) {
        json_t *r = json_loads(argv[i + 1], JSON_DECODE_ANY, NULL);
        json_object_set_new(req, "result", r ? r : json_string(argv[i + 1]));
    }
    return cli_run_request(&g, req);
}

static const char nack_usage[] =
    "Usage: chanq nack ID [OPTIONS]\n"
    "Gives reserved job ID back: retried after --delay-ms (default: exponential\n"
    "backoff), or dead with --dead or when its attempts are used up. Like ack,\n"
    "only the fetching connection may nack (see chanq fetch).\n"
    "\nOptions:\n"
    "  --error TEXT    why it failed (kept with the job)\n"
    "  --delay-ms MS   retry after MS\n"
    "  --dead          no retry\n";

enum { OPT_ERROR = OPT_FIRST_OWN, OPT_NDELAY, OPT_DEAD };

int
cmd_nack(int argc, char **argv)
{
    static const struct option opts[] = {{"error", required_argument, NULL, OPT_ERROR},
                                         {"delay-ms", required_argument, NULL, OPT_NDELAY},
                                         {"dead", no_argument, NULL, OPT_DEAD},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    const char *error = NULL;
    int64_t delay = -1;
    bool dead = false;
    int opt;
    cli_init(&g, "nack", nack_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        switch (opt) {
        case OPT_ERROR: error = optarg; break;
        case OPT_NDELAY: delay = cli_i64(&g, "--delay-ms", optarg); break;
        case OPT_DEAD: dead = true; break;
        }
    }
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one job ID");
    json_t *req = json_pack("{s:s,s:s}", "op", "nack", "id", argv[optind]);
    if (error)
        json_object_set_new(req, "error", json_string(error));
    if (delay >= 0)
        json_object_set_new(req, "delay_ms", json_integer(delay));
    if (dead)
        json_object_set_new(req, "dead", json_true());
    return cli_run_request(&g, req);
}

static const char touch_usage[] =
    "Usage: chanq touch ID [TTR-MS]\n"
    "Extends the reservation of job ID (only from the fetching connection).\n";

int
cmd_touch(int argc, char **argv)
{
    struct cli g;
    cli_init(&g, "touch", touch_usage);
    int i = parse_common(&g, argc, argv, 1, 2);
    json_t *req = json_pack("{s:s,s:s}", "op", "touch", "id", argv[i]);
    if (argc - i == 2)
        json_object_set_new(req, "ttr_ms", json_integer(cli_i64(&g, "TTR-MS", argv[i + 1])));
    return cli_run_request(&g, req);
}

static const char cancel_usage[] =
    "Usage: chanq cancel ID\n"
    "Cancels job ID and every descendant (by parent) that is not final. A\n"
    "worker holding one gets a cancel event (chanq work stops its command).\n"
    "Prints {\"ok\":true,\"cancelled\":N}.\n";

int
cmd_cancel(int argc, char **argv)
{
    struct cli g;
    cli_init(&g, "cancel", cancel_usage);
    int i = parse_common(&g, argc, argv, 1, 1);
    return cli_run_request(&g, json_pack("{s:s,s:s}", "op", "cancel", "id", argv[i]));
}

static const char job_usage[] =
    "Usage: chanq job ID\n"
    "Prints the server's description of job ID as JSON.\n";

int
cmd_job(int argc, char **argv)
{
    struct cli g;
    cli_init(&g, "job", job_usage);
    int i = parse_common(&g, argc, argv, 1, 1);
    return cli_run_request(&g, json_pack("{s:s,s:s}", "op", "job", "id", argv[i]));
}

static const char wait_usage[] =
    "Usage: chanq wait ID [--timeout-ms MS]\n"
    "Waits until job ID is final and prints the answer\n"
    "{\"ok\":true,\"state\":..,\"result\":..}. With --result, prints only the\n"
    "result. Exit status 0 when the state is done, 4 when it ended otherwise\n"
    "(dead, cancelled, expired), 1 on timeout.\n"
    "\nOptions:\n"
    "  --timeout-ms MS  give up after MS (default: wait forever)\n"
    "  --result         print only the result JSON\n";

enum { OPT_WTIMEOUT = OPT_FIRST_OWN, OPT_RESULT };

int
cmd_wait(int argc, char **argv)
{
    static const struct option opts[] = {{"timeout-ms", required_argument, NULL, OPT_WTIMEOUT},
                                         {"result", no_argument, NULL, OPT_RESULT},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int64_t timeout = CHANQ_FOREVER;
    bool only_result = false;
    int opt;
    cli_init(&g, "wait", wait_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        if (opt == OPT_WTIMEOUT)
            timeout = cli_i64(&g, "--timeout-ms", optarg);
        else if (opt == OPT_RESULT)
            only_result = true;
    }
    if (argc - optind != 1)
        cli_usage_error(&g, "expected one job ID");
    struct chanq_conn *c = cli_connect(&g);
    json_t *resp = NULL;
    int rc;
    if (chanq_wait(c, argv[optind], timeout, &resp) < 0) {
        rc = cli_report(&g, c, "wait");
    } else {
        const char *state = json_string_value(json_object_get(resp, "state"));
        json_t *result = json_object_get(resp, "result");
        cli_print_json(only_result ? (result ? result : json_null()) : resp);
        rc = state && strcmp(state, "done") == 0 ? CLI_OK : CLI_NOT_DONE;
    }
    json_decref(resp);
    chanq_conn_free(c);
    return rc;
}
