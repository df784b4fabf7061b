/* chanq submit: one job from the command line, or one per NDJSON line of
 * stdin, pipelined (many submits in flight on one connection). */
#include "chanq_config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"

static const char submit_usage[] =
    "Usage: chanq submit QUEUE[,QUEUE...] [JSON] [OPTIONS]\n"
    "Submits one job with payload JSON, or, without JSON, one job per line of\n"
    "stdin (NDJSON; empty lines skipped), pipelined. Prints each new job id on\n"
    "its own line, in input order. With several queues (comma-separated), each\n"
    "job goes to whichever has room first (send-side select) and the queue is\n"
    "printed after the id.\n"
    "\nOptions:\n"
    "  --delay-ms MS        deliver no earlier than MS from now\n"
    "  --ttr-ms MS          time to run once reserved\n"
    "  --max-attempts N     deliveries before the job is dead\n"
    "  --deadline-ms MS     the job expires if not done within MS\n"
    "  --parent ID          cancelling job ID cancels this one\n"
    "  --traceparent TP     W3C trace context kept with the job (chanq work\n"
    "                       gives it to CMD as TRACEPARENT)\n"
    "  --wait-ms MS         wait at most MS for room in a full queue (0: fail\n"
    "                       at once; default: the server's --submit-wait)\n"
    "  --window N           submits in flight at once from stdin (default 256)\n"
    "  --key K              idempotency key (one job, so a JSON argument): while a\n"
    "                       job submitted with K is live, and for chanqd's\n"
    "                       key-window after it, the submit prints that job's id\n"
    "                       followed by \"duplicate\" instead of making a new one\n"
    "  --priority N         0..9 (default 0): higher levels of a queue are\n"
    "                       delivered first, FIFO within a level\n";

enum { OPT_DELAY = OPT_FIRST_OWN, OPT_TTR, OPT_ATTEMPTS, OPT_DEADLINE, OPT_PARENT, OPT_WAIT,
       OPT_WINDOW, OPT_KEY, OPT_PRIORITY, OPT_TRACEPARENT };

/* Splits "a,b,c" into a NULL-terminated malloc'd array of pointers into s
 * (which is modified). */
static char **
split_queues(char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap + 1, sizeof *v);
    *n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","))
        v[(*n)++] = tok;
    return v;
}

/* Reads the answer to the oldest submit and prints it. Returns 0, 1 (that
 * job failed) or -1 (connection lost). */
static int
print_answer(const struct cli *g, struct chanq_conn *c, long line, bool show_queue)
{
    char *id = NULL, *queue = NULL;
    if (chanq_recv_submit(c, &id, show_queue ? &queue : NULL) < 0) {
        char what[64];
        snprintf(what, sizeof what, "job %ld", line);
        return cli_report(g, c, what) == CLI_IO ? -1 : 1;
    }
    /* A keyed submit answered with the job that holds the key says so
     * (and names no queue: the server does not say where that job is). */
    bool with_queue = show_queue && queue;
    printf("%s%s%s%s\n", id, with_queue ? " " : "", with_queue ? queue : "",
           chanq_submit_duplicate(c) ? " duplicate" : "");
    free(id);
    free(queue);
    return 0;
}

/* The submits in flight from stdin, oldest first: a ring of window entries
 * with each one's input line number and text (kept to submit it again when
 * a cluster's leader changes with it unanswered). */
struct inflight {
    long window, head, n;
    long *lineno;
    char **text;
};

static void
inflight_pop(struct inflight *f)
{
    free(f->text[f->head]);
    f->text[f->head] = NULL;
    f->head = (f->head + 1) % f->window;
    f->n--;
}

/* Several servers, the oldest answer lost with the leader (or refused by a
 * node that no longer leads): connects to the leader and submits every
 * unanswered line again (at least once: a lost one may have been made).
 * 0, or -1 when that is not the case or failed. */
static int
failover(const struct cli *g, struct chanq_conn *c, const struct chanq_submit_opts *o,
         struct inflight *f)
{
    const char *code = chanq_last_error(c)->code;
    if (strcmp(code, "io") != 0 && strcmp(code, "not_leader") != 0 &&
        strcmp(code, "shutting_down") != 0)
        return -1;
    if (chanq_reconnect(c) < 0)
        return -1;
    fprintf(stderr, "chanq %s: the leader changed; %ld unanswered submits made again\n", g->cmd,
            f->n);
    for (long i = 0; i < f->n; i++)
        if (chanq_send_submit(c, o, f->text[(f->head + i) % f->window]) < 0)
            return -1;
    return 0;
}

/* Reads and prints the oldest answer. 0, 1 (that job failed) or -1
 * (connection lost). */
static int
settle_oldest(const struct cli *g, struct chanq_conn *c, const struct chanq_submit_opts *o,
              struct inflight *f)
{
    bool multi = o->nqueues > 0;
    for (int tries = 0;; tries++) {
        char *id = NULL, *queue = NULL;
        if (chanq_recv_submit(c, &id, multi ? &queue : NULL) == 0) {
            if (multi)
                printf("%s %s\n", id, queue ? queue : "");
            else
                puts(id);
            free(id);
            free(queue);
            inflight_pop(f);
            return 0;
        }
        if (tries < 10 && failover(g, c, o, f) == 0)
            continue;
        char what[64];
        snprintf(what, sizeof what, "job %ld", f->lineno[f->head]);
        int r = cli_report(g, c, what) == CLI_IO ? -1 : 1;
        inflight_pop(f);
        return r;
    }
}

/* Submits every NDJSON line of stdin, keeping up to window in flight. */
static int
submit_stdin(const struct cli *g, struct chanq_conn *c, const struct chanq_submit_opts *o,
             long window)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    struct inflight f = {.window = window,
                         .lineno = calloc((size_t)window, sizeof *f.lineno),
                         .text = calloc((size_t)window, sizeof *f.text)};
    int rc = f.lineno && f.text ? CLI_OK : CLI_IO;
    while (rc != CLI_IO && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *copy = strdup(line);
        if (!copy || chanq_send_submit(c, o, line) < 0) {
            free(copy);
            if (cli_report(g, c, "stdin") == CLI_IO)
                goto out_io;
            fprintf(stderr, "chanq submit: (line %ld)\n", lineno);
            rc = CLI_REFUSED;
            continue;
        }
        long tail = (f.head + f.n++) % window;
        f.lineno[tail] = lineno;
        f.text[tail] = copy;
        if (f.n >= window) {
            int r = settle_oldest(g, c, o, &f);
            if (r < 0)
                goto out_io;
            if (r > 0)
                rc = CLI_REFUSED;
        }
    }
    while (rc != CLI_IO && f.n > 0) {
        int r = settle_oldest(g, c, o, &f);
        if (r < 0)
            goto out_io;
        if (r > 0)
            rc = CLI_REFUSED;
    }
    goto out;
out_io:
    rc = CLI_IO;
out:
    while (f.n > 0)
        inflight_pop(&f);
    free(line);
    free(f.lineno);
    free(f.text);
    return rc;
}

/* --priority N: passed on as given for the server to check (0..9, its
 * message on bad_request); only what does not fit an int is refused here. */
static int
cli_priority(const struct cli *g, const char *arg)
{
    int64_t v = cli_i64(g, "--priority", arg);
    if (v < INT_MIN || v > INT_MAX)
        cli_usage_error(g, "--priority: a level 0..9");
    return (int)v;
}

int
cmd_submit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"delay-ms", required_argument, NULL, OPT_DELAY},
        {"ttr-ms", required_argument, NULL, OPT_TTR},
        {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
        {"deadline-ms", required_argument, NULL, OPT_DEADLINE},
        {"parent", required_argument, NULL, OPT_PARENT},
        {"wait-ms", required_argument, NULL, OPT_WAIT},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"key", required_argument, NULL, OPT_KEY},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"traceparent", required_argument, NULL, OPT_TRACEPARENT},
        CLI_COMMON_OPTIONS};
    struct cli g;
    struct chanq_submit_opts o = {0};
    long window = 256;
    int opt;
    cli_init(&g, "submit", submit_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1) {
        if (cli_common_opt(&g, opt, optarg))
            continue;
        switch (opt) {
        case OPT_DELAY: o.delay_ms = cli_i64(&g, "--delay-ms", optarg); break;
        case OPT_TTR: o.ttr_ms = cli_i64(&g, "--ttr-ms", optarg); break;
        case OPT_ATTEMPTS: o.max_attempts = cli_i64(&g, "--max-attempts", optarg); break;
        case OPT_DEADLINE: o.deadline_ms = cli_i64(&g, "--deadline-ms", optarg); break;
        case OPT_PARENT: o.parent = optarg; break;
        case OPT_WAIT: {
            int64_t w = cli_i64(&g, "--wait-ms", optarg);
            o.wait_ms = w <= 0 ? CHANQ_NO_WAIT : w;
            break;
        }
        case OPT_WINDOW: window = (long)cli_i64(&g, "--window", optarg); break;
        case OPT_KEY: o.key = optarg; break;
        case OPT_PRIORITY: o.priority = cli_priority(&g, optarg); break;
        case OPT_TRACEPARENT:
            o.traceparent = optarg;
            break;
        }
    }
    if (optind >= argc)
        cli_usage_error(&g, "missing QUEUE");
    if (argc - optind > 2)
        cli_usage_error(&g, "too many arguments (quote the JSON payload)");
    if (window < 1)
        window = 1;
    if (o.key && argc - optind != 2)
        cli_usage_error(&g, "--key names one job: give its JSON payload as an argument");
    size_t nq;
    char *qarg = strdup(argv[optind]);
    char **queues = split_queues(qarg, &nq);
    if (nq == 0)
        cli_usage_error(&g, "missing QUEUE");
    if (nq == 1) {
        o.queue = queues[0];
    } else {
        o.queues = (const char *const *)queues;
        o.nqueues = nq;
    }
    struct chanq_conn *c = cli_connect(&g);
    int rc;
    if (argc - optind == 2) {
        rc = chanq_send_submit(c, &o, argv[optind + 1]) < 0 ? cli_report(&g, c, "submit")
             : print_answer(&g, c, 1, nq > 1) == 0         ? CLI_OK
                                                            : CLI_REFUSED;
        if (rc == CLI_REFUSED && !strcmp(chanq_last_error(c)->code, "io"))
            rc = CLI_IO;
    } else {
        rc = submit_stdin(&g, c, &o, window);
    }
    chanq_conn_free(c);
    free(queues);
    free(qarg);
    return rc;
}
