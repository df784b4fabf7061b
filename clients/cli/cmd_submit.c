/* chanq submit: one job from the command line, or one per NDJSON line of
 * stdin, pipelined (many submits in flight on one connection). */
#include "chanq_config.h"

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
    "  --window N           submits in flight at once from stdin (default 256)\n";

enum {
    OPT_DELAY = OPT_FIRST_OWN,
    OPT_TTR,
    OPT_ATTEMPTS,
    OPT_DEADLINE,
    OPT_PARENT,
    OPT_WAIT,
    OPT_WINDOW,
    OPT_TRACEPARENT
};

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
    if (show_queue)
        printf("%s %s\n", id, queue ? queue : "");
    else
        puts(id);
    free(id);
    free(queue);
    return 0;
}

/* Submits every NDJSON line of stdin, keeping up to window in flight. */
static int
submit_stdin(const struct cli *g, struct chanq_conn *c, const struct chanq_submit_opts *o,
             long window)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, answered = 0;
    long *linenos = calloc((size_t)window, sizeof *linenos); /* ring: job -> input line */
    int rc = CLI_OK;
    bool multi = o->nqueues > 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (chanq_send_submit(c, o, line) < 0) {
            if (cli_report(g, c, "stdin") == CLI_IO)
                goto out_io;
            fprintf(stderr, "chanq submit: (line %ld)\n", lineno);
            rc = CLI_REFUSED;
            continue;
        }
        long sent = answered + (long)chanq_pending(c);
        linenos[(sent - 1) % window] = lineno;
        if ((long)chanq_pending(c) >= window) {
            int r = print_answer(g, c, linenos[answered % window], multi);
            answered++;
            if (r < 0)
                goto out_io;
            if (r > 0)
                rc = CLI_REFUSED;
        }
    }
    while (chanq_pending(c) > 0) {
        int r = print_answer(g, c, linenos[answered % window], multi);
        answered++;
        if (r < 0)
            goto out_io;
        if (r > 0)
            rc = CLI_REFUSED;
    }
    free(line);
    free(linenos);
    return rc;
out_io:
    free(line);
    free(linenos);
    return CLI_IO;
}

int
cmd_submit(int argc, char **argv)
{
    static const struct option opts[] = {{"delay-ms", required_argument, NULL, OPT_DELAY},
                                         {"ttr-ms", required_argument, NULL, OPT_TTR},
                                         {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
                                         {"deadline-ms", required_argument, NULL, OPT_DEADLINE},
                                         {"parent", required_argument, NULL, OPT_PARENT},
                                         {"wait-ms", required_argument, NULL, OPT_WAIT},
                                         {"window", required_argument, NULL, OPT_WINDOW},
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
