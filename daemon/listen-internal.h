/* What the listener files share: one listening socket (listen_socket.c),
 * the sockets systemd passed (listen_activated.c), and the set of them the
 * daemon serves on (listen.c). Not for other modules: they use listen.h.
 * Loop thread only. */
#ifndef CHANQ_DAEMON_LISTEN_INTERNAL_H
#define CHANQ_DAEMON_LISTEN_INTERNAL_H

#include <stdbool.h>

#include "daemon/config.h"
#include "daemon/listen.h"

/* The most sockets one set holds: the configured addresses, the Unix
 * socket, and room for what systemd passes. */
#define MAX_LISTENERS (2 * CONFIG_MAX_LISTEN + 1 + 64)

/* Where systemd's sockets start (sd_listen_fds(3)). */
#define LISTENER_FIRST_ACTIVATED_FD 3

/* One listening socket, accepting through a libevent evconnlistener. */
struct listener {
    struct accept_guard *guard;    /* pauses accepting when accept fails */
    struct evconnlistener *evl;    /* libevent's accept loop for our socket */
    listener_accept_fn *on_accept; /* the owner's handler for new sockets */
    void *arg;                     /* passed back to on_accept */
    char *unlink_path;             /* Unix socket file we created, removed on free */
    bool activated;                /* passed by systemd (said in the log line) */
    char name[128];                /* "HOST:PORT", "tls:HOST:PORT" or "unix:PATH", for logs */
};

/* listen_socket.c: each returns the listener, accepting from then on, or
 * NULL after logging why (nothing is left open). */

/* Binds and listens on "HOST:PORT" (IPv6 as "[::1]:PORT"; port 0 picks a
 * free one); its name holds the address actually bound. */
struct listener *listener_new_tcp(struct event_base *base, const char *addr,
                                  listener_accept_fn *on_accept, void *arg);

/* The same for a TLS listener: its name says "tls:HOST:PORT". */
struct listener *listener_new_tls(struct event_base *base, const char *addr,
                                  listener_accept_fn *on_accept, void *arg);

/* Listens on a Unix stream socket at path (mode 0660). A stale socket file
 * (nobody accepting on it) is removed first; a live one or a file that is
 * not a socket is an error. */
struct listener *listener_new_unix(struct event_base *base, const char *path,
                                   listener_accept_fn *on_accept, void *arg);

/* Accepts on fd, a socket that is listening already. Takes ownership of
 * fd, even on failure. */
struct listener *listener_new_fd(struct event_base *base, evutil_socket_t fd,
                                 listener_accept_fn *on_accept, void *arg);

/* Stops accepting and closes the socket (removing a Unix socket file this
 * process created). NULL is allowed. */
void listener_free(struct listener *l);

/* listen_activated.c */

/* The sockets systemd passed to this process: returns how many (0 when
 * LISTEN_FDS is unset or LISTEN_PID names another process), starting at
 * LISTENER_FIRST_ACTIVATED_FD, or -EINVAL when the variables are malformed.
 * Marks them close-on-exec and unsets LISTEN_FDS, LISTEN_PID and
 * LISTEN_FDNAMES so that children do not inherit them. Call once, before
 * opening any other file. */
int listener_activated_fds(void);

/* Accepts on systemd's socket fd (one listener_activated_fds counted),
 * which must be a listening stream socket. Takes ownership of fd. */
struct listener *listener_new_activated(struct event_base *base, evutil_socket_t fd,
                                        listener_accept_fn *on_accept, void *arg);

#endif
