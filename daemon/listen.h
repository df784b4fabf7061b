/* The sockets chanqd serves on, on a libevent base: TCP (IPv4/IPv6), Unix
 * sockets, TLS addresses, or the sockets systemd passed (socket
 * activation, LISTEN_FDS). Loop thread only; never blocks.
 *
 * Files: listen.c (the set), listen_socket.c (one socket: TCP, Unix, or
 * one that listens already), listen_activated.c (systemd's sockets);
 * accept_guard.h keeps a failing accept from spinning the loop. */
#ifndef CHANQ_DAEMON_LISTEN_H
#define CHANQ_DAEMON_LISTEN_H

#include <stddef.h>

#include <event2/event.h>
#include <event2/util.h>

struct config;
struct listener_set;

/* Called on the loop thread for every accepted socket; takes ownership of fd. */
typedef void listener_accept_fn(evutil_socket_t fd, const struct sockaddr *peer, int peerlen,
                                void *arg);

/* Opens every listener the daemon serves on: the sockets systemd passed
 * (LISTEN_FDS with LISTEN_PID equal to our pid; the configured addresses
 * are then not bound), else every cfg->listen address and cfg->unix_path.
 * Each accepts (into the kernel's backlog) from then on; "listening on" is
 * logged by listener_set_announce, but a warning for each non-loopback TCP
 * address when cfg has no token_file is logged here. Returns the set, or
 * NULL after logging why (nothing is left open). Call once, before opening
 * any other file: systemd's sockets start at fd 3. */
struct listener_set *listener_set_new(struct event_base *base, const struct config *cfg,
                                      listener_accept_fn *on_accept, void *arg);

/* Adds a listener for every cfg->tls_listen address, bound by chanqd
 * itself (also under socket activation), with its own accept function
 * (the server wraps those connections in TLS). Returns 0, or -1 after
 * logging why (the listeners added so far stay in the set; free it). */
int listener_set_add_tls(struct listener_set *ls, struct event_base *base, const struct config *cfg,
                         listener_accept_fn *on_accept, void *arg);

/* Stops accepting, closes every socket and removes the Unix socket files
 * this process created (not those systemd passed). NULL is allowed. */
void listener_set_free(struct listener_set *ls);

/* Logs "listening on ADDRESS" for every listener of the set ("HOST:PORT",
 * "unix:PATH", "tls:HOST:PORT", plus " (socket activation)" for systemd's
 * sockets). Said once every listener of the daemon accepts: a client that
 * waits for the line may connect to any of them at once. */
void listener_set_announce(const struct listener_set *ls);

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. Returns 0, or -1
 * (and leaves the outputs unspecified) when the form is wrong. Any thread. */
int listener_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif
