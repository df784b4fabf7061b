/* Sockets whose reading is paused, watched for their peer going away. See
 * closewatch.h. */
#include "chanq_config.h"

#include "daemon/closewatch.h"
#include "daemon/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BATCH 64

struct closewatch {
    int epfd;           /* the watched sockets */
    struct event *ev;   /* epfd readable on the loop: one of them went away */
    closewatch_fn *fn;  /* the owner's handler */
};

static void
on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct closewatch *w = arg;
    struct epoll_event evs[BATCH];
    int n;
    do {
        n = epoll_wait(w->epfd, evs, BATCH, 0);
        /* Each handler removes its own socket (level-triggered: it would be
         * reported again) and never another one, so the entries later in
         * this batch are still valid. */
        for (int i = 0; i < n; i++)
            w->fn(evs[i].data.ptr, (evs[i].events & (EPOLLERR | EPOLLHUP)) != 0);
    } while (n == BATCH);
}

struct closewatch *
closewatch_new(struct event_base *base, closewatch_fn *fn)
{
    struct closewatch *w = calloc(1, sizeof *w);
    if (!w)
        goto out_fail;
    w->fn = fn;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        goto out_fail;
    w->ev = event_new(base, w->epfd, EV_READ | EV_PERSIST, on_ready, w);
    if (!w->ev || event_add(w->ev, NULL) != 0)
        goto out_fail;
    return w;

out_fail:
    log_error("cannot watch paused connections for closes: %s", strerror(errno));
    closewatch_free(w);
    return NULL;
}

void
closewatch_free(struct closewatch *w)
{
    if (!w)
        return;
    if (w->ev)
        event_free(w->ev);
    if (w->epfd >= 0)
        close(w->epfd);
    free(w);
}

int
closewatch_add(struct closewatch *w, int fd, void *arg)
{
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = arg};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void
closewatch_del(struct closewatch *w, int fd)
{
    if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) != 0)
        log_debug("closewatch: removing fd %d: %s", fd, strerror(errno));
}
