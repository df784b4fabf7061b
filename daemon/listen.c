/* The set of sockets chanqd serves on (listen.h): systemd's, or those the
 * configuration names, then the TLS ones; and the warning for a socket
 * open to the network with nothing asking who connects. */
#include "chanq_config.h"

#include "daemon/listen-internal.h"
#include "daemon/log.h"

#include <event2/listener.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

struct listener_set {
    struct listener *l[MAX_LISTENERS]; /* every socket we accept on */
    size_t n;
};

static int
set_add(struct listener_set *ls, struct listener *l)
{
    if (!l)
        return -1;
    ls->l[ls->n++] = l;
    return 0;
}

/* True when fd accepts TCP connections from other hosts: bound to an
 * address other than loopback (0.0.0.0 and [::] included). */
static bool
reachable_from_afar(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ((const uint8_t *)&((const struct sockaddr_in *)&ss)->sin_addr)[0] != 127;
    if (ss.ss_family != AF_INET6)
        return false; /* a Unix socket: its file mode decides */
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return a->s6_addr[12] != 127;
    return !IN6_IS_ADDR_LOOPBACK(a);
}

/* Open to the network with nothing asking who connects: say so at start,
 * the default being loopback only. Listeners from index `from` on. */
static void
warn_if_unauthenticated(const struct listener_set *ls, size_t from, const struct config *cfg,
                        bool tls)
{
    if (cfg->token_file || (tls && cfg->tls_client_ca))
        return;
    for (size_t i = from; i < ls->n; i++)
        if (reachable_from_afar(evconnlistener_get_fd(ls->l[i]->evl)))
            log_warn_kv(LOG_FIELDS(LOG_STR("listen", ls->l[i]->name)),
                        "listening on a non-loopback address (%s) without --token-file: anyone "
                        "who can reach it can submit and read jobs",
                        ls->l[i]->name);
}

/* Wraps the n sockets systemd passed. Returns 0, or -1 after logging why
 * (the listeners added so far stay in the set). */
static int
open_activated(struct listener_set *ls, struct event_base *base, int n,
               listener_accept_fn *on_accept, void *arg)
{
    for (int i = 0; i < n; i++) {
        evutil_socket_t fd = LISTENER_FIRST_ACTIVATED_FD + i;
        if (set_add(ls, listener_new_activated(base, fd, on_accept, arg)) < 0)
            return -1;
    }
    return 0;
}

/* Binds every configured --listen address and the --unix socket. Returns
 * 0, or -1 after logging why (the listeners added so far stay in the set). */
static int
open_configured(struct listener_set *ls, struct event_base *base, const struct config *cfg,
                listener_accept_fn *on_accept, void *arg)
{
    for (size_t i = 0; i < cfg->n_listen; i++)
        if (set_add(ls, listener_new_tcp(base, cfg->listen[i], on_accept, arg)) < 0)
            return -1;
    if (cfg->unix_path && set_add(ls, listener_new_unix(base, cfg->unix_path, on_accept, arg)) < 0)
        return -1;
    return 0;
}

struct listener_set *
listener_set_new(struct event_base *base, const struct config *cfg, listener_accept_fn *on_accept,
                 void *arg)
{
    struct listener_set *ls = calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    int n = listener_activated_fds();
    if (n < 0) {
        log_error("socket activation: malformed LISTEN_FDS or LISTEN_PID");
        goto out_free;
    }
    int rc = n > 0 ? open_activated(ls, base, n, on_accept, arg)
                   : open_configured(ls, base, cfg, on_accept, arg);
    if (rc < 0)
        goto out_free;
    warn_if_unauthenticated(ls, 0, cfg, false);
    return ls;

out_free:
    listener_set_free(ls);
    return NULL;
}

int
listener_set_add_tls(struct listener_set *ls, struct event_base *base, const struct config *cfg,
                     listener_accept_fn *on_accept, void *arg)
{
    size_t from = ls->n;
    for (size_t i = 0; i < cfg->n_tls_listen; i++) {
        if (ls->n == MAX_LISTENERS) {
            log_error("tls-listen: too many listeners");
            return -1;
        }
        if (set_add(ls, listener_new_tls(base, cfg->tls_listen[i], on_accept, arg)) < 0)
            return -1;
    }
    warn_if_unauthenticated(ls, from, cfg, true);
    return 0;
}

void
listener_set_free(struct listener_set *ls)
{
    if (!ls)
        return;
    for (size_t i = 0; i < ls->n; i++)
        listener_free(ls->l[i]);
    free(ls);
}

void
listener_set_announce(const struct listener_set *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        log_info_kv(LOG_FIELDS(LOG_STR("listen", ls->l[i]->name)), "listening on %s%s",
                    ls->l[i]->name, ls->l[i]->activated ? " (socket activation)" : "");
}
