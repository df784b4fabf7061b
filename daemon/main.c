/* chanqd: parse the configuration, build the server, add the operations
 * pieces around it (systemd notify and watchdog, SIGHUP reload, the HTTP
 * endpoint), serve until told to stop. */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/http.h"
#include "daemon/http_admin.h"
#include "daemon/log.h"
#include "daemon/sd.h"
#include "daemon/server.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* What main owns besides the server. Lives on main's stack. */
struct daemon {
    int argc;                 /* the command line, re-parsed on SIGHUP */
    char **argv;
    struct config cfg;        /* the live configuration (server borrows it) */
    struct server *srv;       /* the broker and its listeners */
    struct http *http;        /* --http endpoint, or NULL */
    struct http_admin *admin; /* --http-admin routes, or NULL */
    struct sd_watchdog *wd;   /* systemd watchdog pings, or NULL */
    struct event *sig_hup;    /* reload */
    struct event *sig_term;   /* STOPPING=1 (the server does the stop itself) */
    struct event *sig_int;
    bool stopping_sent;       /* STOPPING=1 went out */
};

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

static const char *
http_unhealthy(void *srv)
{
    return server_unhealthy(srv);
}

/* First callback of the loop: every listener (TCP, Unix, TLS, HTTP)
 * accepts and the state is loaded. Only now "listening on" is logged and
 * systemd told, so a client that connects on either finds every address
 * served, and units ordered after us start. Not after a stop began. */
static void
on_started(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    if (server_stopping(d->srv))
        return;
    server_announce(d->srv);
    sd_notify_status("serving (chanqd %s)", PACKAGE_VERSION);
    sd_notify_ready();
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (d->stopping_sent)
        return;
    d->stopping_sent = true;
    sd_notify_send("STOPPING=1\nSTATUS=stopping: draining connections");
}

/* SIGHUP: re-read the config file and the flags over it, apply what can
 * change while running. Logs go to stderr (the journal under systemd), so
 * there is no log file to reopen. */
static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    sd_notify_reloading();
    log_info("received SIGHUP: reloading %s", d->cfg.config_file ? d->cfg.config_file
                                                                   : "the command line");
    struct config fresh;
    char err[512];
    if (config_defaults(&fresh) < 0) {
        log_error("reload failed: out of memory");
    } else if (config_parse_args(&fresh, d->argc, d->argv, err, sizeof err) != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
    } else {
        int n = server_reload(d->srv, &fresh);
        sd_notify_status("serving (chanqd %s); reloaded, %d setting%s changed", PACKAGE_VERSION,
                         n, n == 1 ? "" : "s");
    }
    config_free(&fresh);
    sd_notify_ready();
}

static int
add_signal(struct daemon *d, struct event **ev, int sig, event_callback_fn fn)
{
    *ev = evsignal_new(server_base(d->srv), sig, fn, d);
    return *ev && evsignal_add(*ev, NULL) == 0 ? 0 : -1;
}

/* Everything around the server: signals, HTTP, watchdog, readiness. */
static int
daemon_start(struct daemon *d)
{
    struct event_base *base = server_base(d->srv);
    if (add_signal(d, &d->sig_hup, SIGHUP, on_reload) < 0 ||
        add_signal(d, &d->sig_term, SIGTERM, on_stop) < 0 ||
        add_signal(d, &d->sig_int, SIGINT, on_stop) < 0) {
        log_error("cannot install signal handlers");
        return -1;
    }
    if (d->cfg.http &&
        !(d->http = http_new(base, d->cfg.http, server_snapshot, http_unhealthy, d->srv)))
        return -1;
    if (d->http && d->cfg.http_admin && !(d->admin = http_admin_new(d->http, d->srv)))
        return -1;
    d->wd = sd_watchdog_new(base);
    struct timeval now = {0, 0};
    if (event_base_once(base, -1, EV_TIMEOUT, on_started, d, &now) != 0) {
        log_error("cannot schedule the readiness notification");
        return -1;
    }
    return 0;
}

static void
daemon_stop(struct daemon *d)
{
    sd_watchdog_free(d->wd);
    http_free(d->http);
    http_admin_free(d->admin); /* before server_free: its ops answer through the bridge */
    struct event *evs[] = {d->sig_hup, d->sig_term, d->sig_int};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
}

int
main(int argc, char **argv)
{
    struct daemon d = {.argc = argc, .argv = argv};
    char err[512];
    if (config_defaults(&d.cfg) < 0)
        return 1;
    int rc = config_parse_args(&d.cfg, argc, argv, err, sizeof err);
    if (rc != 0 || d.cfg.check_config) {
        if (rc < 0)
            fprintf(stderr, "chanqd: %s\n", err);
        else if (rc == 0)
            printf("chanqd: configuration OK\n");
        config_free(&d.cfg);
        return rc < 0 ? 2 : 0;
    }
    log_set_level(d.cfg.log_level);
    log_info("chanqd %s starting", PACKAGE_VERSION);
    rc = 1;
    /* The ports are open before the handlers are installed: a stop or
     * reload signal in between waits, blocked, instead of killing the
     * process. The threads started meanwhile keep them blocked, so they
     * are delivered to this (the loop's) thread. */
    sigset_t stop_sigs, old_mask;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);
    if (prepare_data_dir(&d.cfg) < 0 || !(d.srv = server_new(&d.cfg)))
        goto out_free_cfg;
    if (daemon_start(&d) == 0) {
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        rc = server_run(d.srv) == 0 ? 0 : 1;
    }
    on_stop(-1, 0, &d); /* STOPPING=1 also when the loop ended otherwise */
    daemon_stop(&d);
    server_free(d.srv);
out_free_cfg:
    config_free(&d.cfg);
    return rc;
}
