/* Listeners for chanqd on a libevent base: TCP (IPv4/IPv6), Unix sockets,
 * and sockets passed by systemd (socket activation, LISTEN_FDS).
 * Loop thread only; never blocks. */
#ifndef CHANQ_DAEMON_LISTEN_H
#define CHANQ_DAEMON_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <event2/util.h>

struct config;
struct listener;
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
 * NULL after logging why (nothing is left open). */
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

/* Pauses (false) or resumes (true) accepting on every listener, e.g. while
 * at --max-connections; pending connections wait in the kernel backlog. */
void listener_set_enable(struct listener_set *ls, bool on);

/* Logs "listening on ADDRESS" for every listener of the set ("HOST:PORT",
 * "unix:PATH", "tls:HOST:PORT", plus " (socket activation)" for systemd's
 * sockets). Said once every listener of the daemon accepts: a client that
 * waits for the line may connect to any of them at once. */
void listener_set_announce(const struct listener_set *ls);

/* True when the sockets came from systemd socket activation. */
bool listener_set_activated(const struct listener_set *ls);

/* Writes "127.0.0.1:7420, unix:/run/chanqd.sock" (the addresses actually
 * bound) into buf, truncated to len. */
void listener_set_describe(const struct listener_set *ls, char *buf, size_t len);

/* Binds and listens on "HOST:PORT" (IPv6 as "[::1]:PORT"; port 0 picks a free
 * one); its name holds the port actually bound. Returns the listener, or
 * NULL after logging why (bad address, bind error). */
struct listener *listener_new_tcp(struct event_base *base, const char *addr,
                                  listener_accept_fn *on_accept, void *arg);

/* The same for a TLS listener: its name says "tls:HOST:PORT". */
struct listener *listener_new_tls(struct event_base *base, const char *addr,
                                  listener_accept_fn *on_accept, void *arg);

/* Listens on a Unix stream socket at path (mode 0660). A stale socket file
 * (nobody accepting on it) is removed first; a live one or a file that is
 * not a socket is an error. Returns the listener, or NULL after logging why. */
struct listener *listener_new_unix(struct event_base *base, const char *path,
                                   listener_accept_fn *on_accept, void *arg);

/* Stops accepting and closes the socket (removing a Unix socket file this
 * process created). NULL is allowed. */
void listener_free(struct listener *l);

/* Guards a listening socket against failing accepts (any listener, also
 * evhttp's): on an error it stops accepting for 100 ms instead of letting
 * the loop spin on a socket that stays readable; out of descriptors
 * (EMFILE, ENFILE) it first accepts and closes the connections waiting in
 * the backlog, with the one descriptor kept in reserve; it logs "accept on
 * NAME: out of file descriptors; N connections refused in the last second"
 * at most once a second. Sets evl's error callback. Returns NULL when out
 * of memory. Free it before evl. Loop thread only. */
struct accept_guard;
struct evconnlistener;
struct accept_guard *accept_guard_new(struct evconnlistener *evl, const char *name);
void accept_guard_free(struct accept_guard *g); /* NULL is allowed */

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. Returns 0, or -1
 * (and leaves the outputs unspecified) when the form is wrong. */
int listener_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

/* The sockets systemd passed to this process: returns how many (0 when
 * LISTEN_FDS is unset or LISTEN_PID names another process), starting at fd
 * 3, or -EINVAL when the variables are malformed. Marks them close-on-exec
 * and unsets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES so that children do
 * not inherit them. Call once, before opening any other file. */
int listener_activated_fds(void);

#define LISTENER_FIRST_ACTIVATED_FD 3

#endif
