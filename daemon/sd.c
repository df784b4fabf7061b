/* The systemd notify protocol (sd_notify(3), "Notes"): one datagram of
 * newline-separated assignments to the AF_UNIX socket named by
 * $NOTIFY_SOCKET. Written here in a few lines to avoid a dependency. */
#include "chanq_config.h"

#include "daemon/log.h"
#include "daemon/sd.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct sd_watchdog {
    struct event *timer; /* persistent, at half the interval */
};

int
sd_notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
        return -EAFNOSUPPORT;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace: no trailing NUL counted */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    /* Non-blocking: a notification dropped on a full socket queue beats a
     * stalled event loop. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : 0;
    close(fd);
    if (rc < 0)
        log_debug("sd_notify to %s failed: %s", path, strerror(-rc));
    return rc;
}

int
sd_notify_ready(void)
{
    return sd_notify_send("READY=1");
}

int
sd_notify_status(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "STATUS=");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    buf[strcspn(buf, "\n")] = '\0'; /* one line: a newline would start an assignment */
    return sd_notify_send(buf);
}

int
sd_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char buf[64];
    snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%lld",
             (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    return sd_notify_send(buf);
}

int
sd_notify_stopping(void)
{
    return sd_notify_send("STOPPING=1");
}

long long
sd_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    if (!usec)
        return 0;
    if (pid && atoll(pid) != (long long)getpid())
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(usec, &end, 10);
    return (*end || errno || v <= 0) ? 0 : v;
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    sd_notify_send("WATCHDOG=1");
}

struct sd_watchdog *
sd_watchdog_new(struct event_base *base)
{
    long long usec = sd_watchdog_usec();
    if (usec <= 0)
        return NULL;
    struct sd_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd || !(wd->timer = event_new(base, -1, EV_PERSIST, on_watchdog, wd))) {
        log_error("cannot start the systemd watchdog: out of memory");
        free(wd);
        return NULL;
    }
    long long half = usec / 2;
    struct timeval tv = {.tv_sec = half / 1000000, .tv_usec = half % 1000000};
    event_add(wd->timer, &tv);
    sd_notify_send("WATCHDOG=1");
    log_info("systemd watchdog: pinging every %lld ms", half / 1000);
    return wd;
}

void
sd_watchdog_free(struct sd_watchdog *wd)
{
    if (!wd)
        return;
    event_free(wd->timer);
    free(wd);
}
