/* The accept guard (accept_guard.h): pauses a listener whose accept fails,
 * sheds its backlog when out of descriptors, and reports once a second. */
#include "chanq_config.h"

#include "daemon/accept_guard.h"

#include "core/timer.h"
#include "daemon/log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* After a failed accept the listener rests this long: the socket stays
 * readable while a connection waits, so retrying at once would spin. */
#define ACCEPT_PAUSE_MS 100
/* Connections closed at most per failed accept when out of descriptors. */
#define SHED_MAX 1024
#define REPORT_MS 1000

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
    log_warn_kv(LOG_FIELDS(LOG_STR("listen", g->name), LOG_UINT("refused", g->refused)),
                "accept on %s: %s; %llu connections refused in the last second", g->name, why,
                g->refused);
    g->failures = 0;
    g->refused = 0;
    g->reported_ms = timer_now_ms();
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
    int64_t wait = g->reported_ms + REPORT_MS - timer_now_ms();
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
    if (timer_now_ms() - g->reported_ms >= REPORT_MS)
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
    g->reported_ms = timer_now_ms() - REPORT_MS;
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
