/* TCP listeners for chanqd on a libevent base.
 * Loop thread only; never blocks. */
#ifndef CHANQ_DAEMON_LISTEN_H
#define CHANQ_DAEMON_LISTEN_H

#include <event2/event.h>
#include <event2/util.h>

struct listener;

/* Called on the loop thread for every accepted socket; takes ownership of fd. */
typedef void listener_accept_fn(evutil_socket_t fd, const struct sockaddr *peer, int peerlen,
                                void *arg);

/* Binds and listens on "HOST:PORT" (IPv6 as "[::1]:PORT"; port 0 picks a free
 * one) and logs "listening on HOST:PORT" with the port actually bound.
 * Returns the listener, or NULL after logging why (bad address, bind error). */
struct listener *listener_new_tcp(struct event_base *base, const char *addr,
                                  listener_accept_fn *on_accept, void *arg);

/* Stops accepting and closes the socket. NULL is allowed. */
void listener_free(struct listener *l);

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. Returns 0, or -1
 * (and leaves the outputs unspecified) when the form is wrong. */
int listener_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif
