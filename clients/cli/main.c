/* chanq: the command-line client of chanqd. Dispatches to one function per
 * subcommand (see cli.h); each parses its own options. */
#include "chanq_config.h"

#include <stdio.h>
#include <string.h>

#include "clients/cli/cli.h"

struct subcommand {
    const char *name;                 /* as typed */
    int (*run)(int argc, char **argv); /* argv[0] is the name */
    const char *summary;              /* one line for `chanq --help` */
};

static const struct subcommand subcommands[] = {
    {"submit", cmd_submit, "submit jobs (JSON argument, or NDJSON lines on stdin)"},
    {"fetch", cmd_fetch, "reserve jobs and print them; ack/nack them from stdin"},
    {"ack", cmd_ack, "mark a job done (on this connection's reservation)"},
    {"nack", cmd_nack, "give a job back for a retry, or bury it"},
    {"touch", cmd_touch, "extend a reservation"},
    {"cancel", cmd_cancel, "cancel a job and its descendants"},
    {"wait", cmd_wait, "wait until a job is final and print its result"},
    {"job", cmd_job, "print what the server knows of a job"},
    {"declare", cmd_declare, "create a queue or check its settings"},
    {"close", cmd_close, "close a queue (no more submits; fetches drain it)"},
    {"pause", cmd_pause, "stop delivering a queue's jobs"},
    {"resume", cmd_resume, "deliver a paused queue's jobs again"},
    {"kick", cmd_kick, "move dead jobs back to their queue"},
    {"ping", cmd_ping, "check that the server answers"},
    {"stats", cmd_stats, "table of queues and server figures"},
    {"work", cmd_work, "run a command for each job (a worker pool)"},
    {"loadtest", cmd_loadtest, "producers and consumers at full speed; rates and latencies"},
};

static void
usage(FILE *out)
{
    fputs("Usage: chanq COMMAND [OPTIONS] [ARGS]\n\nCommands:\n", out);
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    fputs("\nEvery command takes --server HOST:PORT (env CHANQ_SERVER, default\n"
          "127.0.0.1:7420), --token TOKEN (env CHANQ_TOKEN) and --help.\n"
          "See chanq(1).\n",
          out);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("chanq %s\n", PACKAGE_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "chanq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
