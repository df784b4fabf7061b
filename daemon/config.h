/* chanqd configuration: command line -> struct config, with every default
 * in one place (config_defaults). */
#ifndef CHANQ_DAEMON_CONFIG_H
#define CHANQ_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/log.h"

#define CONFIG_MAX_LISTEN 16

struct config {
    const char *listen[CONFIG_MAX_LISTEN]; /* HOST:PORT, borrowed from argv */
    size_t n_listen;                       /* 0 means the default address */
    const char *data_dir;                  /* journal directory; NULL with --memory */
    bool memory;                           /* --memory: no persistence */
    enum log_level log_level;
};

/* Fills *cfg with the defaults. */
void config_defaults(struct config *cfg);

/* Parses argv into *cfg (which config_defaults filled). Strings point into
 * argv. Returns 0 to run, 1 when --help or --version printed and the program
 * should exit 0, and -1 after printing the reason on stderr for a bad
 * argument (the program should exit 2). */
int config_parse_args(struct config *cfg, int argc, char **argv);

#endif
