/* chanqd: parse the configuration, build the server, serve until told to
 * stop. The server owns everything else: listeners, the HTTP endpoint,
 * signals, systemd's notifications (daemon/server.h). */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

/* A cluster node that lost its leadership starts again as a follower: the
 * same program and arguments in this process (exec: nothing of the old
 * serving state survives). Sockets systemd handed over are gone by now, so
 * a socket-activated chanqd exits instead and systemd starts it again.
 * Returns only on failure: the exit status. */
static int
start_again(char **argv, bool socket_activated)
{
    if (socket_activated) {
        log_warn("stepped down: exiting so that systemd starts chanqd again");
        return 1;
    }
    log_info("stepped down: starting again as a follower");
    execv("/proc/self/exe", argv);
    log_error("cannot start again (%s); exiting", strerror(errno));
    return 1;
}

/* A configuration error comes before the logger is set up: as a JSON line
 * when the command line asks for JSON logs (so a log shipper still gets
 * an object), else as "chanqd: REASON". *cfg holds what was parsed before
 * the error, which may not include --log-format yet: the flag is looked
 * for on the command line too. */
static void
report_config_error(const struct config *cfg, int argc, char **argv, const char *err)
{
    enum log_format f = cfg->log_format;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc)
            log_format_parse(argv[i + 1], &f);
        else if (strncmp(argv[i], "--log-format=", 13) == 0)
            log_format_parse(argv[i] + 13, &f);
    }
    if (f != LOG_FORMAT_JSON) {
        fprintf(stderr, "chanqd: %s\n", err);
        return;
    }
    log_set_format(f);
    log_error("%s", err);
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
            report_config_error(&cfg, argc, argv, err);
        else if (rc == 0)
            printf("chanqd: configuration OK\n");
        config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    log_detect_journal();
    log_set_level(cfg.log_level);
    log_set_format(cfg.log_format);
    log_info("chanqd %s starting", PACKAGE_VERSION);
    bool socket_activated = getenv("LISTEN_FDS") != NULL; /* server_new unsets it */
    int ran = -1; /* server_run's answer; -1 when the server did not start */
    struct server *srv = NULL;
    if (prepare_data_dir(&cfg) == 0 && (srv = server_new(&cfg, argc, argv)))
        ran = server_run(srv);
    server_free(srv);
    config_free(&cfg);
    if (ran == SERVER_STEPPED_DOWN)
        return start_again(argv, socket_activated);
    return ran == 0 ? 0 : 1;
}
