/* systemd socket activation (listen-internal.h): the listening sockets
 * passed in LISTEN_FDS, served instead of the configured addresses. */
#include "chanq_config.h"

#include "daemon/listen-internal.h"
#include "daemon/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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

struct listener *
listener_new_activated(struct event_base *base, evutil_socket_t fd, listener_accept_fn *on_accept,
                       void *arg)
{
    if (!is_listening_stream(fd)) {
        log_error("socket activation: fd %d is not a listening stream socket", (int)fd);
        close(fd);
        return NULL;
    }
    struct listener *l = listener_new_fd(base, fd, on_accept, arg);
    if (l)
        l->activated = true;
    return l;
}
