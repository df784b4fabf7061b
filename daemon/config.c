/* Command-line parsing for chanqd. */
#include "chanq_config.h"

#include "daemon/config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LISTEN "127.0.0.1:7420"
#define DEFAULT_DATA_DIR "./var"

void
config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->data_dir = DEFAULT_DATA_DIR;
    cfg->log_level = LOG_INFO;
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: chanqd [--listen HOST:PORT]... [--data-dir DIR | --memory]\n"
                 "              [--log-level error|warn|info|debug] [--help] [--version]\n"
                 "\n"
                 "  --listen HOST:PORT  TCP address to serve (repeatable; default " DEFAULT_LISTEN
                 ";\n"
                 "                      port 0 picks a free port, logged at start)\n"
                 "  --data-dir DIR      where state is kept (default " DEFAULT_DATA_DIR ")\n"
                 "  --memory            keep nothing on disk\n"
                 "  --log-level LEVEL   most verbose level logged (default info)\n");
}

enum { OPT_LISTEN = 256, OPT_DATA_DIR, OPT_MEMORY, OPT_LOG_LEVEL, OPT_HELP, OPT_VERSION };

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"memory", no_argument, NULL, OPT_MEMORY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static int
apply_option(struct config *cfg, int opt, const char *arg)
{
    switch (opt) {
    case OPT_LISTEN:
        if (cfg->n_listen == CONFIG_MAX_LISTEN) {
            fprintf(stderr, "chanqd: at most %d --listen addresses\n", CONFIG_MAX_LISTEN);
            return -1;
        }
        cfg->listen[cfg->n_listen++] = arg;
        return 0;
    case OPT_DATA_DIR:
        cfg->data_dir = arg;
        cfg->memory = false;
        return 0;
    case OPT_MEMORY:
        cfg->memory = true;
        return 0;
    case OPT_LOG_LEVEL:
        if (log_level_parse(arg, &cfg->log_level) < 0) {
            fprintf(stderr, "chanqd: --log-level: '%s' is not error, warn, info or debug\n", arg);
            return -1;
        }
        return 0;
    default:
        return -1;
    }
}

int
config_parse_args(struct config *cfg, int argc, char **argv)
{
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (opt == OPT_VERSION) {
            printf("chanqd %s\n", PACKAGE_VERSION);
            return 1;
        }
        if (opt == '?') {
            fprintf(stderr, "chanqd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        }
        if (apply_option(cfg, opt, optarg) < 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "chanqd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (cfg->n_listen == 0)
        cfg->listen[cfg->n_listen++] = DEFAULT_LISTEN;
    return 0;
}
