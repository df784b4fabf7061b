/* The chanq CLI: what the subcommands share (options every command takes,
 * connecting, reporting errors, exit codes). */
#ifndef CHANQ_CLI_H
#define CHANQ_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "clients/chanq.h"

/* Exit codes, the same for every subcommand (documented in chanq.1). */
enum cli_exit {
    CLI_OK = 0,         /* done */
    CLI_REFUSED = 1,    /* the server answered with an error */
    CLI_USAGE = 2,      /* bad command line */
    CLI_IO = 3,         /* could not reach the server / connection lost */
    CLI_NOT_DONE = 4,   /* wait: the job ended in another state than done */
    CLI_CANNOT_RUN = 5, /* work: CMD cannot be started */
};

/* Options every subcommand accepts. */
struct cli {
    const char *cmd;    /* subcommand name, for messages */
    const char *usage;  /* its --help text */
    const char *server; /* --server, else $CHANQ_SERVER, else 127.0.0.1:7420 */
    const char *token;  /* --token, else $CHANQ_TOKEN */
    bool tls;           /* --tls (implied by every --tls-* option) */
    const char *tls_ca;   /* --tls-ca: CAs to trust instead of the system's */
    const char *tls_cert; /* --tls-cert: client certificate (mutual TLS) */
    const char *tls_key;  /* --tls-key: its key (default: in tls_cert) */
    const char *tls_server_name; /* --tls-server-name: name to verify */
    bool tls_insecure;  /* --tls-insecure: verify nothing (tests only) */
};

/* getopt_long codes of the shared options; commands add theirs below 256
 * or from OPT_FIRST_OWN on. */
enum {
    OPT_SERVER = 256,
    OPT_TOKEN,
    OPT_TLS,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_SERVER_NAME,
    OPT_TLS_INSECURE,
    OPT_SERVERS,
    OPT_FIRST_OWN
};

#define CLI_COMMON_OPTIONS                                                                         \
    {"server", required_argument, NULL, OPT_SERVER}, {"token", required_argument, NULL, OPT_TOKEN}, \
        {"tls", no_argument, NULL, OPT_TLS}, {"tls-ca", required_argument, NULL, OPT_TLS_CA},      \
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},                                       \
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},                                         \
        {"tls-server-name", required_argument, NULL, OPT_TLS_SERVER_NAME},                         \
        {"tls-insecure", no_argument, NULL, OPT_TLS_INSECURE}, {"help", no_argument, NULL, 'h'},   \
        {"servers", required_argument, NULL, OPT_SERVERS},                                         \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* Text of the shared options, appended to every usage. */
#define CLI_COMMON_HELP                                                                            \
    "  --server HOST:PORT  chanqd address, or unix:PATH (env CHANQ_SERVER;\n"                     \
    "                      default 127.0.0.1:7420)\n"                                             \
    "  --servers A,B,C     the nodes of a cluster (env CHANQ_SERVERS): the leader\n"              \
    "                      is found, and followed when it changes\n"                              \
    "  --token TOKEN       say hello with this token (env CHANQ_TOKEN)\n"                         \
    "  --tls               connect with TLS (chanqd --tls-listen); the server's\n"                \
    "                      certificate must be trusted and name the host\n"                       \
    "  --tls-ca FILE       trust the CAs in this PEM file (default: the system's)\n"              \
    "  --tls-cert FILE     client certificate for mutual TLS (PEM)\n"                            \
    "  --tls-key FILE      its private key (default: in --tls-cert)\n"                           \
    "  --tls-server-name NAME  verify this name instead of the address's host\n"                 \
    "  --tls-insecure      verify nothing (tests only: anyone can intercept)\n"                  \
    "  -h, --help          this help\n"

/* Fills the defaults of g for subcommand `cmd` with help text `usage`. */
void cli_init(struct cli *g, const char *cmd, const char *usage);

/* getopt_long() for a subcommand's argv; after an unknown long option it
 * also prints the closest known one ("did you mean '--server'?"). */
int cli_getopt(const struct cli *g, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* Levenshtein distance of a and b (for "did you mean" hints). */
size_t cli_edit_distance(const char *a, const char *b);

/* True when `typed` is close enough to `known` to be a likely typo of it. */
bool cli_near(const char *typed, const char *known);

/* When `arg` (argv[optind - 1] after getopt_long returned '?') is a long
 * option that matches none of `longopts`, prints "PROG: did you mean
 * '--NAME'?" for the closest one, if any is near. */
void cli_suggest_option(const char *prog, const char *arg, const struct option *longopts);

/* Handles a shared option (server, token, help, '?'); returns false when
 * opt is the command's own. Exits for --help (0) and bad options (2). */
bool cli_common_opt(struct cli *g, int opt, const char *arg);

/* Prints "chanq CMD: msg" and the usage hint; exits 2. */
void cli_usage_error(const struct cli *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Parses a decimal integer option value or exits 2. */
int64_t cli_i64(const struct cli *g, const char *what, const char *s);

/* Fills o with the token and the TLS options of g (o is zeroed first). */
void cli_connect_opts(const struct cli *g, struct chanq_connect_opts *o);

/* Connects (hello with the token if any). Prints the reason and exits 3 on
 * failure. Returns a new connection. */
struct chanq_conn *cli_connect(const struct cli *g);

/* Prints "chanq CMD: what: code: message" for the last error of c and
 * returns the exit code for it (1 refused, 3 io). */
int cli_report(const struct cli *g, const struct chanq_conn *c, const char *what);

/* Prints a JSON value compactly on one line to stdout. */
void cli_print_json(const json_t *v);
/* Connects, sends req (taken, even on failure), prints the server's answer
 * as JSON. Returns CLI_OK or the exit code cli_report chose. */
int cli_run_request(struct cli *g, json_t *req);

/* Subcommands: argc/argv start at the subcommand name. Return the exit code. */
int cmd_submit(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_ack(int argc, char **argv);
int cmd_nack(int argc, char **argv);
int cmd_touch(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_declare(int argc, char **argv);
int cmd_close(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_kick(int argc, char **argv);
int cmd_ping(int argc, char **argv);
int cmd_queues(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_work(int argc, char **argv);
int cmd_loadtest(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_schedule(int argc, char **argv);
/* cmd_operator.c */
int cmd_jobs_list(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_queue(int argc, char **argv);
int cmd_clients(int argc, char **argv);

#endif
