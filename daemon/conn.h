/* One client connection. The loop thread reads and frames the socket and
 * hands each line to the connection's goroutine through a bounded channel
 * (when it is full, the loop stops reading: TCP pushes back on the
 * client). The goroutine decodes, runs and answers requests in order, and
 * hands its output back to the loop in batches (one write per batch). */
#ifndef CHANQ_DAEMON_CONN_H
#define CHANQ_DAEMON_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/util.h>

struct conn_env;
struct conn;
struct tls;
struct peer_addr;

/* Takes ownership of fd (closed on error and when the connection ends);
 * peer is its client's address (copied), already admitted in env->peers:
 * the connection releases it when its socket closes (after a NULL return
 * the caller still holds it). env is borrowed for the connection's life;
 * the connection lists and counts itself there (env->conns,
 * env->connections) while its socket is open. With tls (borrowed; may be
 * NULL for a plain connection) the socket speaks TLS with that context,
 * the handshake bounded in time. Returns the connection, or NULL (fd
 * closed) when out of memory. The connection frees itself once the peer
 * is gone and its goroutine ended. Loop thread only. */
struct conn *conn_new(struct conn_env *env, evutil_socket_t fd, const struct peer_addr *peer,
                      struct tls *tls);

/* The address the connection is counted under (daemon/peers.h). */
const struct peer_addr *conn_peer(const struct conn *c);

/* Closes c (gracefully, as at EOF) when it has been idle timeout_ms: no
 * request read, none waiting or parked, no job reserved. Called on every
 * tick of the server with the same clock. Loop thread. */
void conn_check_idle(struct conn *c, int64_t now_ms, int64_t timeout_ms);

/* Closes the socket now and cancels what the connection waits for; its
 * goroutine ends soon after. Loop thread only (server shutdown). */
void conn_shutdown(struct conn *c);

/* Stops reading: requests already received are answered, then the
 * connection closes once its answers are written. Loop thread only. */
void conn_drain(struct conn *c);

/* The server's close watch (daemon/closewatch.h) calls this for a
 * connection whose reading is paused when its peer went away: a reset
 * closes it at once, an EOF cancels its waiting requests (the requests not
 * read yet are answered once reading resumes). Loop thread only. */
void conn_peer_gone(void *arg, bool reset);

/* The live connection after c in env->conns, or NULL (loop thread). A
 * connection closed meanwhile leaves the list: take the next one first. */
struct conn *conn_next(const struct conn *c);

#endif
