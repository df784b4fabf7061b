/* chanqd: parse the configuration, build the server, serve until told to
 * stop. The server owns everything else: listeners, the HTTP endpoint,
 * signals, systemd's notifications (daemon/server.h). */
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
        log_error_kv(LOG_FIELDS(LOG_STR("path", cfg->data_dir), LOG_STR("error", strerror(errno))),
                     "cannot create data dir %s: %s", cfg->data_dir, strerror(errno));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct config cfg; /* the live configuration (the server borrows it) */
    char err[512];
    if (config_defaults(&cfg) < 0)
        return 1;
    int rc = config_parse_args(&cfg, argc, argv, err, sizeof err);
    if (rc != 0 || cfg.check_config) {
        if (rc < 0)
            fprintf(stderr, "chanqd: %s\n", err);
        else if (rc == 0)
            printf("chanqd: configuration OK\n");
        config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    log_detect_journal();
    log_set_level(cfg.log_level);
    log_set_format(cfg.log_format);
    log_info("chanqd %s starting", PACKAGE_VERSION);
    rc = 1;
    struct server *srv = NULL;
    if (prepare_data_dir(&cfg) == 0 && (srv = server_new(&cfg, argc, argv)))
        rc = server_run(srv) == 0 ? 0 : 1;
    server_free(srv);
    config_free(&cfg);
    return rc;
}
