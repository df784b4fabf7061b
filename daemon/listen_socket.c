/* One listening socket (listen-internal.h): TCP or TLS bound from a
 * "HOST:PORT" address, a Unix socket at a path, or a socket that listens
 * already, each accepting through a libevent evconnlistener with an
 * accept guard. */
#include "chanq_config.h"

#include "daemon/accept_guard.h"
#include "daemon/listen-internal.h"
#include "daemon/log.h"

#include <errno.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKLOG 1024

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

/* Names the socket's local address: "1.2.3.4:80", "[::1]:80", "unix:/p". */
static void
describe_fd(evutil_socket_t fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(buf, len, "fd %d", (int)fd);
    } else if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = sl > off ? sl - off : 0;
        if (plen > 0 && su->sun_path[0] == '\0') /* abstract namespace */
            snprintf(buf, len, "unix:@%.*s", (int)(plen - 1), su->sun_path + 1);
        else
            snprintf(buf, len, "unix:%.*s", (int)strnlen(su->sun_path, plen), su->sun_path);
    } else if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                           NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "fd %d", (int)fd);
    } else {
        snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    }
}

struct listener *
listener_new_fd(struct event_base *base, evutil_socket_t fd, listener_accept_fn *on_accept,
                void *arg)
{
    struct listener *l = calloc(1, sizeof *l);
    if (!l || evutil_make_socket_nonblocking(fd) != 0)
        goto out_close;
    l->on_accept = on_accept;
    l->arg = arg;
    /* Backlog 0: the socket listens already, with the backlog its opener chose. */
    l->evl = evconnlistener_new(base, on_evl_accept, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!l->evl)
        goto out_close;
    describe_fd(fd, l->name, sizeof l->name);
    if (!(l->guard = accept_guard_new(l->evl, l->name))) {
        listener_free(l); /* closes fd */
        log_error("cannot listen on fd %d: out of memory", (int)fd);
        return NULL;
    }
    return l;

out_close:
    log_error("cannot listen on fd %d: %s", (int)fd, strerror(errno));
    evutil_closesocket(fd);
    free(l);
    return NULL;
}

/* Binds addr; prefix ("" or "tls:") starts the listener's name. */
static struct listener *
listen_tcp(struct event_base *base, const char *addr, const char *prefix,
           listener_accept_fn *on_accept, void *arg)
{
    char host[256], port[32];
    if (listener_split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
        log_error("bad listen address '%s' (want HOST:PORT or [V6]:PORT)", addr);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
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
    /* IPV6ONLY so that 0.0.0.0:P and [::]:P can both be listed. */
    unsigned v6only = res->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0;
    l->evl = evconnlistener_new_bind(base, on_evl_accept, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC | v6only,
                                     BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    if (!l->evl) {
        log_error("cannot listen on %s: %s", addr,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto out_free_l;
    }
    size_t plen = strlen(prefix);
    memcpy(l->name, prefix, plen);
    describe_fd(evconnlistener_get_fd(l->evl), l->name + plen, sizeof l->name - plen);
    if (!(l->guard = accept_guard_new(l->evl, l->name))) {
        log_error("cannot listen on %s: out of memory", addr);
        listener_free(l);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    return l;

out_free_l:
    free(l);
out_free_res:
    freeaddrinfo(res);
    return NULL;
}

struct listener *
listener_new_tcp(struct event_base *base, const char *addr, listener_accept_fn *on_accept,
                 void *arg)
{
    return listen_tcp(base, addr, "", on_accept, arg);
}

struct listener *
listener_new_tls(struct event_base *base, const char *addr, listener_accept_fn *on_accept,
                 void *arg)
{
    return listen_tcp(base, addr, "tls:", on_accept, arg);
}

/* Removes path if it is a Unix socket nobody accepts on. Returns 0 when
 * path is free to bind, -1 after logging why not. */
static int
remove_stale_socket(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (log_error("cannot stat %s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        log_error("cannot listen on unix:%s: the file exists and is not a socket", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -1;
    int rc = connect(probe, (const struct sockaddr *)sa, sizeof *sa);
    int err = errno;
    close(probe);
    if (rc == 0) {
        log_error("cannot listen on unix:%s: another process is accepting on it", path);
        return -1;
    }
    if (err != ECONNREFUSED && err != ENOENT) {
        log_error("cannot listen on unix:%s: %s", path, strerror(err));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        log_error("cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    log_info("removed stale socket file %s", path);
    return 0;
}

struct listener *
listener_new_unix(struct event_base *base, const char *path, listener_accept_fn *on_accept,
                  void *arg)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        log_error("unix socket path too long: %s", path);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (remove_stale_socket(path, &sa) < 0)
        return NULL;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        log_error("cannot create a unix socket: %s", strerror(errno));
        return NULL;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        log_error("cannot listen on unix:%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    /* Group access: clients join the daemon's group to connect. */
    if (chmod(path, 0660) != 0 || listen(fd, BACKLOG) != 0) {
        log_error("cannot listen on unix:%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return NULL;
    }
    struct listener *l = listener_new_fd(base, fd, on_accept, arg);
    if (!l || !(l->unlink_path = strdup(path))) {
        listener_free(l);
        unlink(path);
        return NULL;
    }
    return l;
}

void
listener_free(struct listener *l)
{
    if (!l)
        return;
    accept_guard_free(l->guard);
    if (l->evl)
        evconnlistener_free(l->evl);
    if (l->unlink_path) {
        unlink(l->unlink_path);
        free(l->unlink_path);
    }
    free(l);
}
