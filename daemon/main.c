/* chanqd: parse the configuration, build the server, serve until told to stop. */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int
prepare_data_dir(const struct config *cfg)
{
    if (cfg->memory)
        return 0;
    if (mkdir(cfg->data_dir, 0750) != 0 && errno != EEXIST) {
        log_error("cannot create data dir %s: %s", cfg->data_dir, strerror(errno));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct config cfg;
    char err[512];
    if (config_defaults(&cfg) < 0)
        return 1;
    int rc = config_parse_args(&cfg, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "chanqd: %s\n", err);
        config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    log_set_level(cfg.log_level);
    log_info("chanqd %s starting", PACKAGE_VERSION);
    if (prepare_data_dir(&cfg) < 0)
        return 1;
    struct server *srv = server_new(&cfg);
    if (!srv)
        return 1;
    rc = server_run(srv);
    server_free(srv);
    return rc == 0 ? 0 : 1;
}
