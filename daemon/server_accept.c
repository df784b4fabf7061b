/* Accepting connections: the server-wide and per-address limits, then a
 * plain or TLS connection for each admitted socket; and the tick that
 * closes idle connections and flushes the per-address log lines. */
#include "chanq_config.h"

#include "daemon/server-internal.h"
#include "core/timer.h"
#include "daemon/conn.h"
#include "daemon/log.h"
#include "daemon/peers.h"

#include <event2/event.h>
#include <stdio.h>
#include <unistd.h>

/* Whether a new connection from peer may be served: under max-connections,
 * and under max-connections-per-address (then counted for its address).
 * *why says which limit refused it. */
static bool
admit(struct server *srv, const struct peer_addr *peer, const char **why)
{
    uint64_t max = config_get(srv->cfg, max_connections);
    if (atomic_load(&srv->env.connections) >= max) {
        *why = "too many connections";
        log_warn_limited("refused a connection: %llu connections is the limit",
                         (unsigned long long)max);
        return false;
    }
    /* Logged per address, once per interval, by peers_tick. */
    *why = "too many connections from this address";
    return peers_admit(srv->peers, peer, config_get(srv->cfg, max_connections_per_address));
}

/* A plain or TLS connection for an admitted socket; undoes the count for
 * its address when it cannot be made. */
static void
open_conn(struct server *srv, evutil_socket_t fd, const struct peer_addr *peer, struct tls *tls)
{
    if (!conn_new(&srv->env, fd, peer, tls)) {
        peers_release(srv->peers, peer);
        log_warn_limited("dropped a new %sconnection: out of memory", tls ? "TLS " : "");
    }
}

void
server_on_accept(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg)
{
    struct server *srv = arg;
    struct peer_addr addr;
    const char *why;
    peer_addr_from_sa(&addr, peerlen > 0 ? peer : NULL);
    if (!admit(srv, &addr, &why)) {
        char msg[160];
        int n = snprintf(msg, sizeof msg,
                         "{\"ok\":false,\"error\":{\"code\":\"limit\",\"message\":\"%s\"}}\n",
                         why);
        ssize_t w = write(fd, msg, (size_t)n);
        (void)w; /* best effort: the client learns why, then the socket closes */
        evutil_closesocket(fd);
        return;
    }
    open_conn(srv, fd, &addr, NULL);
}

/* A --tls-listen socket: over a limit it is just closed (a cleartext
 * answer would mean nothing to a TLS client). */
void
server_on_accept_tls(evutil_socket_t fd, const struct sockaddr *peer, int peerlen, void *arg)
{
    struct server *srv = arg;
    struct peer_addr addr;
    const char *why;
    peer_addr_from_sa(&addr, peerlen > 0 ? peer : NULL);
    if (!admit(srv, &addr, &why)) {
        evutil_closesocket(fd);
        return;
    }
    open_conn(srv, fd, &addr, srv->tls);
}

/* The tick's period: a fraction of idle-timeout (a connection is closed
 * at most an eighth of it late), else once a second for the peers' log. */
static int64_t
tick_ms(const struct config *cfg)
{
    int64_t idle = config_get(cfg, idle_timeout_ms);
    int64_t t = idle > 0 ? idle / 8 : 1000;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

void
server_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    int64_t idle = config_get(srv->cfg, idle_timeout_ms);
    if (idle > 0 && !conn_env_stopping(&srv->env)) {
        int64_t now = timer_now_ms();
        for (struct conn *c = srv->env.conns, *next; c; c = next) {
            next = conn_next(c); /* an idle one leaves the list */
            conn_check_idle(c, now, idle);
        }
    }
    peers_tick(srv->peers);
    int64_t t = tick_ms(srv->cfg);
    struct timeval tv = {t / 1000, (t % 1000) * 1000};
    event_add(srv->tick, &tv);
}
