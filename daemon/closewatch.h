/* Watches sockets whose reading is paused (backpressure) for their peer
 * going away: a FIN (EOF, half-close) or an RST. The requests waiting in
 * such a socket are not read, so without this the close would be seen only
 * once reading resumes, which for a producer parked on a full queue may be
 * never.
 *
 * An epoll set of its own, registered on the loop as one readable fd: each
 * socket is in it with EPOLLRDHUP only (EPOLLERR and EPOLLHUP are always
 * reported), so the data waiting in the socket wakes nothing. A libevent
 * EV_CLOSED event would not do: its epoll backend reports an RST as
 * EV_READ|EV_WRITE, never EV_CLOSED, and the paused socket must not have
 * EV_READ armed. Linux only, like the rest of chanqd. Loop thread only. */
#ifndef CHANQ_DAEMON_CLOSEWATCH_H
#define CHANQ_DAEMON_CLOSEWATCH_H

#include <stdbool.h>

#include <event2/event.h>

struct closewatch;

/* Called on the loop thread when a watched socket's peer went away; reset
 * is true for an error or a reset (the connection is gone), false for an
 * EOF (the peer may still read). It must stop watching that socket
 * (closewatch_del, else it is reported again) and no other. */
typedef void closewatch_fn(void *arg, bool reset);

/* A watch on base calling fn. NULL (logged) when out of resources. */
struct closewatch *closewatch_new(struct event_base *base, closewatch_fn *fn);
/* No socket may be watched any more. NULL is allowed. */
void closewatch_free(struct closewatch *w);

/* Watches fd; arg is passed to fn. 0, or a negative errno (not watched). */
int closewatch_add(struct closewatch *w, int fd, void *arg);
/* Stops watching fd (call before closing it). */
void closewatch_del(struct closewatch *w, int fd);

#endif
