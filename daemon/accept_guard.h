/* A guard on a listening socket whose accept fails (any evconnlistener:
 * chanqd's own listeners and evhttp's). Without it, a socket that stays
 * readable while a connection waits makes the loop spin and the log flood.
 * Loop thread only; never blocks. */
#ifndef CHANQ_DAEMON_ACCEPT_GUARD_H
#define CHANQ_DAEMON_ACCEPT_GUARD_H

struct accept_guard;
struct evconnlistener;

/* Guards evl (borrowed; it must outlive the guard): on an accept error it
 * stops accepting for 100 ms; out of descriptors (EMFILE, ENFILE) it first
 * accepts and closes the connections waiting in the backlog, with the one
 * descriptor kept in reserve; it logs "accept on NAME: out of file
 * descriptors; N connections refused in the last second" at most once a
 * second. Sets evl's error callback. name is copied. Returns NULL when out
 * of memory (evl is then left as it was). */
struct accept_guard *accept_guard_new(struct evconnlistener *evl, const char *name);

/* Frees g (NULL is allowed). Free it before its listener. */
void accept_guard_free(struct accept_guard *g);

#endif
