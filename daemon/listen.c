/* Listeners: TCP and Unix sockets bound from the configuration or passed
 * by systemd, each driven by a libevent evconnlistener. */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/listen.h"
#include "daemon/log.h"

#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 1024
/* After a failed accept the listener rests this long: the socket stays
 * readable while a connection waits, so retrying at once would spin. */
#define ACCEPT_PAUSE_MS 100
/* Connections closed at most per failed accept when out of descriptors. */
#define SHED_MAX 1024
#define REPORT_MS 1000
#define MAX_LISTENERS (2 * CONFIG_MAX_LISTEN + 1 + 64)

/* Keeps a listening socket whose accept fails from spinning the loop and
 * flooding the log: pauses it, sheds what waits in the backlog when out of
 * descriptors, and reports once a second. */
struct accept_guard {
    struct evconnlistener *evl;  /* the guarded listener */
    struct event *retry;         /* ends the pause; later prints the last report */
    char name[128];              /* for the report */
    int err;                     /* the last accept error */
    unsigned long long failures; /* failed accepts since the last report */
    unsigned long long refused;  /* connections closed unserved since the last report */
    int64_t reported_ms;         /* when the last report was printed */
    bool paused;                 /* disabled by us, to enable when retry fires */
    struct accept_guard *next;   /* in guards */
};

/* libevent hands the error callback the listener and its user data, which
 * for the HTTP endpoint is evhttp's own: guards are found by listener.
 * Loop thread only. */
static struct accept_guard *guards;

/* One descriptor kept in reserve: out of descriptors, it is closed for a
 * moment to accept and close the connections waiting in the backlog, so
 * their clients learn at once instead of waiting unserved. Process-wide,
 * like the limit it works around. Loop thread only. */
static int spare_fd = -1;

struct listener {
    struct accept_guard *guard;    /* pauses accepting when accept fails */
    struct evconnlistener *evl;    /* libevent's accept loop for our socket */
    listener_accept_fn *on_accept; /* the owner's handler for new sockets */
    void *arg;                     /* passed back to on_accept */
    char *unlink_path;             /* Unix socket file we created, removed on free */
    bool activated;                /* passed by systemd (said in the log line) */
    char name[128];                /* "HOST:PORT", "tls:HOST:PORT" or "unix:PATH", for logs */
};

struct listener_set {
    struct listener *l[MAX_LISTENERS]; /* every socket we accept on */
    size_t n;
    bool activated; /* sockets came from systemd, not from the config */
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

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
reserve_spare(void)
{
    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Accepts and closes what waits on lfd, using the spare descriptor's slot.
 * Returns how many connections were closed. */
static unsigned long long
shed_backlog(evutil_socket_t lfd)
{
    if (spare_fd < 0)
        return 0; /* another thread took the slot: the next pause tries again */
    close(spare_fd);
    spare_fd = -1;
    unsigned long long n = 0;
    int fd;
    while (n < SHED_MAX && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(fd);
        n++;
    }
    reserve_spare();
    return n;
}

static void
report(struct accept_guard *g)
{
    const char *why = g->err == EMFILE   ? "out of file descriptors"
                      : g->err == ENFILE ? "out of file descriptors (system-wide)"
                                         : evutil_socket_error_to_string(g->err);
    log_warn("accept on %s: %s; %llu connections refused in the last second", g->name, why,
             g->refused);
    g->failures = 0;
    g->refused = 0;
    g->reported_ms = mono_ms();
}

static void
on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct accept_guard *g = arg;
    if (g->paused) {
        g->paused = false;
        evconnlistener_enable(g->evl);
    }
    if (g->failures == 0)
        return;
    /* Failures since the last report are told a second after it. */
    int64_t wait = g->reported_ms + REPORT_MS - mono_ms();
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000 * 1000)};
    if (wait <= 0)
        report(g);
    else
        evtimer_add(g->retry, &tv);
}

static void
on_accept_error(struct evconnlistener *evl, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct accept_guard *g = guards;
    while (g && g->evl != evl)
        g = g->next;
    evconnlistener_disable(evl);
    if (!g)
        return; /* cannot happen: every listener we wire here has a guard */
    g->err = err;
    g->failures++;
    if (err == EMFILE || err == ENFILE)
        g->refused += shed_backlog(evconnlistener_get_fd(evl));
    g->paused = true;
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(g->retry, &tv);
    if (mono_ms() - g->reported_ms >= REPORT_MS)
        report(g);
}

struct accept_guard *
accept_guard_new(struct evconnlistener *evl, const char *name)
{
    struct accept_guard *g = calloc(1, sizeof *g);
    if (!g || !(g->retry = evtimer_new(evconnlistener_get_base(evl), on_accept_retry, g))) {
        free(g);
        return NULL;
    }
    g->evl = evl;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->reported_ms = mono_ms() - REPORT_MS;
    g->next = guards;
    guards = g;
    reserve_spare();
    evconnlistener_set_error_cb(evl, on_accept_error);
    return g;
}

void
accept_guard_free(struct accept_guard *g)
{
    if (!g)
        return;
    struct accept_guard **pp = &guards;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    event_free(g->retry);
    free(g);
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

/* Wraps a bound socket (listening already when backlog is 0). Takes
 * ownership of fd, even on failure. */
static struct listener *
listener_wrap(struct event_base *base, evutil_socket_t fd, int backlog,
              listener_accept_fn *on_accept, void *arg)
{
    struct listener *l = calloc(1, sizeof *l);
    if (!l || evutil_make_socket_nonblocking(fd) != 0)
        goto out_close;
    l->on_accept = on_accept;
    l->arg = arg;
    l->evl = evconnlistener_new(base, on_evl_accept, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, backlog, fd);
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
    struct listener *l = listener_wrap(base, fd, 0, on_accept, arg);
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

int
listener_activated_fds(void)
{
    const char *pid_s = getenv("LISTEN_PID");
    const char *fds_s = getenv("LISTEN_FDS");
    if (!fds_s)
        return 0;
    char *end;
    errno = 0;
    long pid = pid_s ? strtol(pid_s, &end, 10) : -1;
    if (!pid_s || *end || errno)
        return -EINVAL;
    if (pid != (long)getpid())
        return 0; /* meant for another process (we inherited the env) */
    errno = 0;
    long n = strtol(fds_s, &end, 10);
    if (*end || errno || n < 0 || n > MAX_LISTENERS)
        return -EINVAL;
    for (long i = 0; i < n; i++) {
        int fd = LISTENER_FIRST_ACTIVATED_FD + (int)i;
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
            return -EINVAL;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)n;
}

/* Checks that fd is a listening stream socket we can serve on. */
static bool
is_listening_stream(int fd)
{
    int type = 0, acc = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return false;
    len = sizeof acc;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc;
}

static int
set_add(struct listener_set *ls, struct listener *l)
{
    if (!l)
        return -1;
    ls->l[ls->n++] = l;
    return 0;
}

static int
open_activated(struct listener_set *ls, struct event_base *base, int n,
               listener_accept_fn *on_accept, void *arg)
{
    for (int i = 0; i < n; i++) {
        int fd = LISTENER_FIRST_ACTIVATED_FD + i;
        if (!is_listening_stream(fd)) {
            log_error("socket activation: fd %d is not a listening stream socket", fd);
            return -1;
        }
        struct listener *l = listener_wrap(base, fd, 0, on_accept, arg);
        if (set_add(ls, l) < 0)
            return -1;
        l->activated = true;
    }
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
            log_warn("listening on a non-loopback address (%s) without --token-file: anyone "
                     "who can reach it can submit and read jobs",
                     ls->l[i]->name);
}

struct listener_set *
listener_set_new(struct event_base *base, const struct config *cfg,
                 listener_accept_fn *on_accept, void *arg)
{
    struct listener_set *ls = calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    int n = listener_activated_fds();
    if (n < 0) {
        log_error("socket activation: malformed LISTEN_FDS or LISTEN_PID");
        goto out_free;
    }
    if (n > 0) {
        ls->activated = true;
        if (open_activated(ls, base, n, on_accept, arg) < 0)
            goto out_free;
        warn_if_unauthenticated(ls, 0, cfg, false);
        return ls;
    }
    for (size_t i = 0; i < cfg->n_listen; i++)
        if (set_add(ls, listener_new_tcp(base, cfg->listen[i], on_accept, arg)) < 0)
            goto out_free;
    if (cfg->unix_path && set_add(ls, listener_new_unix(base, cfg->unix_path, on_accept, arg)) < 0)
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
listener_set_enable(struct listener_set *ls, bool on)
{
    for (size_t i = 0; i < ls->n; i++) {
        if (on)
            evconnlistener_enable(ls->l[i]->evl);
        else
            evconnlistener_disable(ls->l[i]->evl);
    }
}

void
listener_set_announce(const struct listener_set *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        log_info("listening on %s%s", ls->l[i]->name,
                 ls->l[i]->activated ? " (socket activation)" : "");
}

bool
listener_set_activated(const struct listener_set *ls)
{
    return ls->activated;
}

void
listener_set_describe(const struct listener_set *ls, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ls->n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", ls->l[i]->name);
}
