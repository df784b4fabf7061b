/* TCP listeners: address parsing, bind, and the accept callback. */
#include "chanq_config.h"

#include "daemon/listen.h"
#include "daemon/log.h"

#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct listener {
    struct evconnlistener *evl;   /* libevent's accept loop for our socket */
    listener_accept_fn *on_accept; /* the owner's handler for new sockets */
    void *arg;                     /* passed back to on_accept */
};

int
listener_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    const char *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - addr);
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

static void
on_evl_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *peer, int peerlen,
              void *arg)
{
    struct listener *l = arg;
    l->on_accept(fd, peer, peerlen, l->arg);
}

static void
on_evl_error(struct evconnlistener *evl, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends are transient: log and keep listening. */
    log_warn("accept failed: %s", evutil_socket_error_to_string(err));
}

static void
log_bound_address(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        log_warn("listening, but the bound address is unknown");
        return;
    }
    if (ss.ss_family == AF_INET6)
        log_info("listening on [%s]:%s", host, port);
    else
        log_info("listening on %s:%s", host, port);
}

struct listener *
listener_new_tcp(struct event_base *base, const char *addr, listener_accept_fn *on_accept,
                 void *arg)
{
    char host[256], port[32];
    if (listener_split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
        log_error("bad listen address '%s' (want HOST:PORT or [V6]:PORT)", addr);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        log_error("cannot resolve listen address '%s': %s", addr, gai_strerror(rc));
        return NULL;
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l)
        goto out_free_res;
    l->on_accept = on_accept;
    l->arg = arg;
    l->evl = evconnlistener_new_bind(base, on_evl_accept, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     1024, res->ai_addr, (int)res->ai_addrlen);
    if (!l->evl) {
        log_error("cannot listen on %s: %s", addr,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto out_free_l;
    }
    evconnlistener_set_error_cb(l->evl, on_evl_error);
    log_bound_address(evconnlistener_get_fd(l->evl));
    freeaddrinfo(res);
    return l;

out_free_l:
    free(l);
out_free_res:
    freeaddrinfo(res);
    return NULL;
}

void
listener_free(struct listener *l)
{
    if (!l)
        return;
    evconnlistener_free(l->evl);
    free(l);
}
