/* The server's life after it is built: ready, reload, stop. The one owner
 * of SIGTERM, SIGINT and SIGHUP, of what systemd is told (READY=1,
 * RELOADING=1, STOPPING=1, STATUS=) and of the --http endpoint, whose
 * /healthz reports the stop. */
#include "chanq_config.h"

#include "daemon/server-internal.h"
#include "core/timer.h"
#include "daemon/conn.h"
#include "daemon/history.h"
#include "daemon/http.h"
#include "daemon/http_admin.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/sd.h"
#include "daemon/tls.h"

#include "core/ctx.h"
#include "core/go.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define STOP_POLL_MS 20

/* STOPPING=1 once: at the first stop signal, else when the server ends. */
static void
notify_stopping(struct server *srv)
{
    if (srv->stopping_sent)
        return;
    srv->stopping_sent = true;
    sd_notify_send("STOPPING=1\nSTATUS=stopping: draining connections");
}

/* Cluster mode: a leader that stops hands its leadership over first (the
 * replica answers within an election timeout). */
static bool
handing_over(struct server *srv)
{
#ifdef CHANQ_CLUSTER
    return server_cluster_handing_over(srv);
#else
    (void)srv;
    return false;
#endif
}

/* During a stop: once every connection is gone (or the grace period is
 * over, when the rest are closed), leave the loop. */
static void
on_stop_poll(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct conn_env *env = &srv->env;
    if (env->conns && timer_now_ms() >= srv->stop_deadline) {
        log_warn("grace period over: closing %zu connections", atomic_load(&env->connections));
        for (struct conn *c = env->conns, *next; c; c = next) {
            next = conn_next(c);
            conn_shutdown(c);
        }
    }
    if (!env->conns &&
        (go_count() <= srv->idle_goroutines || timer_now_ms() >= srv->stop_deadline) &&
        !handing_over(srv)) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    struct timeval tv = {0, STOP_POLL_MS * 1000};
    event_add(srv->stop_timer, &tv);
}

/* SIGTERM or SIGINT: the graceful stop; a second one ends the grace. */
static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    if (atomic_exchange(&srv->env.stopping, true)) {
        log_info("second stop signal: closing every connection now");
        srv->stop_deadline = 0;
        return;
    }
    log_info("received %s, stopping (grace %lld ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             (long long)config_get(srv->cfg, grace_ms));
    server_life_stop(srv, config_get(srv->cfg, grace_ms));
}

void
server_life_stop(struct server *srv, int64_t grace_ms)
{
    atomic_store(&srv->env.stopping, true);
    notify_stopping(srv);
    listener_set_free(srv->listeners);
    srv->listeners = NULL;
    /* New requests now get `shutting_down`; waits in flight end at once. */
    ctx_cancel(srv->root);
    /* Read no more: what each connection sent is answered, then it closes. */
    srv->stop_deadline = timer_now_ms() + grace_ms;
    for (struct conn *c = srv->env.conns, *next; c; c = next) {
        next = conn_next(c);
        conn_drain(c);
    }
    on_stop_poll(-1, 0, srv);
}

static void
reload_broker(void *arg, const struct config *live)
{
    struct server *srv = arg;
    struct broker_config bc = server_broker_settings(live);
    broker_set_config(srv->broker, &bc);
}

static void
reload_tls(void *arg, const struct config *live)
{
    struct server *srv = arg;
    if (srv->tls)
        tls_reload(srv->tls, live);
}

/* SIGHUP: re-read the config file and the flags over it, apply what can
 * change while running (config_reload), including to the broker and the
 * TLS context that keep their own copies. Logs go to stderr (the journal
 * under systemd), so there is no log file to reopen. */
static void
on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    sd_notify_reloading();
    log_info("received SIGHUP: reloading %s",
             srv->cfg->config_file ? srv->cfg->config_file : "the command line");
    struct config fresh;
    char err[512];
    if (config_defaults(&fresh) < 0) {
        log_error("reload failed: out of memory");
    } else if (config_parse_args(&fresh, srv->argc, srv->argv, err, sizeof err) != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
    } else {
        struct config_hooks hooks = {.arg = srv, .broker = reload_broker, .tls = reload_tls};
        int n = config_reload(srv->cfg, &fresh, &hooks);
        sd_notify_status("serving (chanqd %s); reloaded, %d setting%s changed", PACKAGE_VERSION,
                         n, n == 1 ? "" : "s");
    }
    config_free(&fresh);
    sd_notify_ready();
}

/* First callback of the loop: every listener (TCP, Unix, TLS, HTTP)
 * accepts and the state is loaded. Only now "listening on" is logged and
 * systemd told, so a client that connects on either finds every address
 * served, and units ordered after us start. Not after a stop began. */
static void
on_started(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    if (conn_env_stopping(&srv->env))
        return;
    if (srv->listeners)
        listener_set_announce(srv->listeners);
    sd_notify_status("serving (chanqd %s)", PACKAGE_VERSION);
    sd_notify_ready();
}

/* http_snapshot_fn: the stats document. */
static json_t *
snapshot(void *arg)
{
    struct server *srv = arg;
    return stats_snapshot(&srv->stats);
}

/* history_sample_fn: the queues' counters, summed. Once per history
 * period, so building the queues' document is cheap enough. */
static int
sample(void *arg, struct history_counts *out)
{
    struct server *srv = arg;
    json_t *queues = broker_queues_json(srv->broker);
    if (!queues)
        return -1;
    *out = (struct history_counts){0};
    const char *name;
    json_t *q;
    json_object_foreach(queues, name, q) {
        out->submitted += (uint64_t)json_integer_value(json_object_get(q, "submitted"));
        out->processed += (uint64_t)json_integer_value(json_object_get(q, "acked"));
        out->failed += (uint64_t)json_integer_value(json_object_get(q, "nacked")) +
                       (uint64_t)json_integer_value(json_object_get(q, "expired"));
    }
    json_decref(queues);
    return 0;
}

/* http_unhealthy_fn: "stopping", or the journal's failure, or NULL. */
static const char *
unhealthy(void *arg)
{
    struct server *srv = arg;
    if (conn_env_stopping(&srv->env))
        return "stopping";
    return stats_journal_failure(&srv->stats, srv->health, sizeof srv->health);
}

void
server_life_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/* The loop's one reader of the stop and reload signals, in the order sent. */
static void
on_signals(evutil_socket_t fd, short what, void *arg)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP)
            on_reload((int)si.ssi_signo, what, arg);
        else
            on_stop_signal((int)si.ssi_signo, what, arg);
    }
}

static int
read_signals(struct server *srv)
{
    sigset_t sigs;
    server_life_signals(&sigs);
    srv->sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (srv->sigfd < 0)
        return -1;
    srv->sig_ev = event_new(srv->base, srv->sigfd, EV_READ | EV_PERSIST, on_signals, srv);
    return srv->sig_ev && event_add(srv->sig_ev, NULL) == 0 ? 0 : -1;
}

int
server_life_start(struct server *srv)
{
    srv->life_started = true;
    srv->stop_timer = evtimer_new(srv->base, on_stop_poll, srv);
    if (!srv->stop_timer || read_signals(srv) < 0) {
        log_error("cannot read signals: %s", strerror(errno));
        return -1;
    }
    const struct config *cfg = srv->cfg;
    if (cfg->http &&
        !(srv->http = http_new(srv->base, cfg->http, snapshot, unhealthy, srv)))
        return -1;
    if (srv->http && cfg->http_admin && !(srv->admin = http_admin_new(srv->http, &srv->env)))
        return -1;
    if (srv->http) {
        srv->history = history_new(srv->base, HISTORY_PERIOD_MS, HISTORY_SLOTS, sample, srv);
        if (!srv->history)
            return -1;
        http_set_history(srv->http, srv->history);
    }
    srv->wd = sd_watchdog_new(srv->base);
    struct timeval now = {0, 0};
    if (event_base_once(srv->base, -1, EV_TIMEOUT, on_started, srv, &now) != 0) {
        log_error("cannot schedule the readiness notification");
        return -1;
    }
    return 0;
}

void
server_life_free(struct server *srv)
{
    if (srv->life_started)
        notify_stopping(srv); /* also when the loop ended otherwise */
    sd_watchdog_free(srv->wd);
    http_free(srv->http);
    history_free(srv->history);
    http_admin_free(srv->admin); /* while the bridge exists: its ops answer through it */
    struct event *evs[] = {srv->sig_ev, srv->stop_timer};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (srv->sigfd >= 0)
        close(srv->sigfd);
    srv->sigfd = -1;
}
