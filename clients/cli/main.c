/* chanq: the command-line client of chanqd. Dispatches to one function per
 * subcommand (see cli.h); each parses its own options, including the common
 * ones, which may also come before the subcommand (as with git). */
#include "chanq_config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
    {"queues", cmd_queues, "list the server's queues"},
    {"stats", cmd_stats, "table of queues and server figures"},
    {"work", cmd_work, "run a command for each job (a worker pool)"},
    {"loadtest", cmd_loadtest, "producers and consumers at full speed; rates and latencies"},
    {"cluster", cmd_cluster, "a cluster's members and their state; membership changes"},
    {"schedule", cmd_schedule, "named schedules: cron or interval jobs (add, list, rm, pause, resume)"},
    /* operator commands */
    {"jobs", cmd_jobs_list, "list a queue's jobs in one state, page by page"},
    {"retry", cmd_retry, "run a dead or delayed job now"},
    {"delete", cmd_delete, "delete a job (a reserved one with --force)"},
    {"purge", cmd_purge, "delete every job of a queue in one state"},
    {"queue", cmd_queue, "delete a queue, or change its settings"},
    {"clients", cmd_clients, "list the server's connections"},
};

#define NSUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

static void
usage(FILE *out)
{
    fputs("Usage: chanq [COMMON OPTIONS] COMMAND [OPTIONS] [ARGS]\n\nCommands:\n", out);
    for (size_t i = 0; i < NSUBCOMMANDS; i++)
        fprintf(out, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    fputs("\nCommon options, before or after COMMAND:\n" CLI_COMMON_HELP
          "  --version           print the version\n"
          "'chanq COMMAND --help' shows a command's own options. See chanq(1).\n",
          out);
}

static const struct subcommand *
find_subcommand(const char *name)
{
    for (size_t i = 0; i < NSUBCOMMANDS; i++)
        if (strcmp(name, subcommands[i].name) == 0)
            return &subcommands[i];
    return NULL;
}

static int
unknown_command(const char *name)
{
    fprintf(stderr, "chanq: unknown command '%s'\n", name);
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < NSUBCOMMANDS; i++) {
        size_t d = cli_edit_distance(name, subcommands[i].name);
        if (d < best_d && cli_near(name, subcommands[i].name)) {
            best = subcommands[i].name;
            best_d = d;
        }
    }
    if (best)
        fprintf(stderr, "chanq: did you mean '%s'?\n", best);
    fputs("Try 'chanq --help'.\n", stderr);
    return CLI_USAGE;
}

/* Runs sc with the common options given before it (argv[1..nglobal]) moved
 * right after its name: its own parser then handles them like options
 * given after it, and one repeated after the command wins (parsed later). */
static int
run_subcommand(const struct subcommand *sc, int nglobal, int argc, char **argv, int cmd_at)
{
    int nrest = argc - cmd_at - 1;
    char **sub = calloc((size_t)(1 + nglobal + nrest + 1), sizeof *sub);
    if (!sub) {
        perror("chanq");
        return CLI_IO;
    }
    char prog[32]; /* getopt's messages say "chanq stats: ..." */
    snprintf(prog, sizeof prog, "chanq %s", sc->name);
    sub[0] = prog;
    memcpy(sub + 1, argv + 1, (size_t)nglobal * sizeof *sub);
    memcpy(sub + 1 + nglobal, argv + cmd_at + 1, (size_t)nrest * sizeof *sub);
    int rc = sc->run(1 + nglobal + nrest, sub);
    free(sub);
    return rc;
}

int
main(int argc, char **argv)
{
    static const struct option global_opts[] = {{"version", no_argument, NULL, 'V'},
                                                CLI_COMMON_OPTIONS};
    int opt;
    argv[0] = "chanq"; /* getopt's messages name the program with it */
    /* "+": stop at the first non-option, the command. */
    while ((opt = getopt_long(argc, argv, "+h", global_opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            usage(stdout);
            return CLI_OK;
        case 'V':
            printf("chanq %s\n", PACKAGE_VERSION);
            return CLI_OK;
        case '?':
            cli_suggest_option("chanq", argv[optind - 1], global_opts);
            fputs("Try 'chanq --help'.\n", stderr);
            return CLI_USAGE;
        default:
            break; /* a common option: the command parses it */
        }
    }
    int nglobal = optind - 1;
    if (nglobal > 0 && strcmp(argv[optind - 1], "--") == 0)
        nglobal--; /* "--" ended the common options; not the command's */
    if (optind >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[optind], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    const struct subcommand *sc = find_subcommand(argv[optind]);
    if (!sc)
        return unknown_command(argv[optind]);
    return run_subcommand(sc, nglobal, argc, argv, optind);
}
