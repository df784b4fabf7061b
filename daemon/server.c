/* The server: owns the libevent loop, listeners and signal handling. */
#include "chanq_config.h"

#include "daemon/server.h"
#include "daemon/conn.h"
#include "daemon/listen.h"
#include "daemon/log.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdlib.h>

struct server {
    const struct config *cfg;            /* borrowed from main */
    struct event_base *base;             /* the I/O loop */
    struct listener *listeners[CONFIG_MAX_LISTEN]; /* one per --listen */
    size_t n_listeners;
    struct event *sig_term, *sig_int;    /* graceful stop */
    size_t connections;                  /* open client connections */
};

static void
on_accept(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg)
{
    struct server *srv = arg;
    if (!conn_new(srv, fd))
        log_warn("dropped a new connection: out of memory");
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    for (size_t i = 0; i < srv->n_listeners; i++) {
        listener_free(srv->listeners[i]);
        srv->listeners[i] = NULL;
    }
    event_base_loopexit(srv->base, NULL);
}

struct server *
server_new(const struct config *cfg)
{
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->cfg = cfg;
    if (evthread_use_pthreads() != 0 || !(srv->base = event_base_new())) {
        log_error("cannot create the event loop");
        goto out_free;
    }
    for (size_t i = 0; i < cfg->n_listen; i++) {
        struct listener *l = listener_new_tcp(srv->base, cfg->listen[i], on_accept, srv);
        if (!l)
            goto out_free;
        srv->listeners[srv->n_listeners++] = l;
    }
    srv->sig_term = evsignal_new(srv->base, SIGTERM, on_stop_signal, srv);
    srv->sig_int = evsignal_new(srv->base, SIGINT, on_stop_signal, srv);
    if (!srv->sig_term || !srv->sig_int || evsignal_add(srv->sig_term, NULL) != 0 ||
        evsignal_add(srv->sig_int, NULL) != 0) {
        log_error("cannot install signal handlers");
        goto out_free;
    }
    return srv;

out_free:
    server_free(srv);
    return NULL;
}

int
server_run(struct server *srv)
{
    signal(SIGPIPE, SIG_IGN);
    if (event_base_dispatch(srv->base) < 0) {
        log_error("event loop failed");
        return -1;
    }
    log_info("stopped");
    return 0;
}

void
server_free(struct server *srv)
{
    if (!srv)
        return;
    for (size_t i = 0; i < srv->n_listeners; i++)
        listener_free(srv->listeners[i]);
    if (srv->sig_term)
        event_free(srv->sig_term);
    if (srv->sig_int)
        event_free(srv->sig_int);
    if (srv->base)
        event_base_free(srv->base);
    free(srv);
}

struct event_base *
server_base(struct server *srv)
{
    return srv->base;
}

const struct config *
server_config(const struct server *srv)
{
    return srv->cfg;
}

void
server_conn_opened(struct server *srv)
{
    srv->connections++;
}

void
server_conn_closed(struct server *srv)
{
    srv->connections--;
}
