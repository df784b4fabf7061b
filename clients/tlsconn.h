/* libchanq's TLS: an OpenSSL client session over a connection's
 * non-blocking socket, read and written like the socket itself, so that
 * client.c's pipelining, polling and events work unchanged. Built from
 * clients/tlsconn.c, or clients/tlsconn_none.c (configure --without-tls)
 * whose chanqi_tlsconn_new() fails with EPROTONOSUPPORT. Never installed. */
#ifndef CHANQ_CLIENTS_TLSCONN_H
#define CHANQ_CLIENTS_TLSCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "clients/chanq.h"

struct tlsconn;

/* Does the client handshake on the connected non-blocking socket fd
 * (borrowed: chanqi_tlsconn_free does not close it) by the absolute deadline
 * (chanqi_conn_now_ms clock), verifying the server's certificate as o says; host
 * is the host of the address (checked and sent as SNI unless
 * o->tls_server_name replaces it; an IP address is checked against the
 * certificate's IP names and not sent). Returns the session, or NULL with
 * err set: code "io", errno EPROTO with OpenSSL's reason for a TLS
 * failure, ETIMEDOUT, or EPROTONOSUPPORT without TLS support. */
struct tlsconn *chanqi_tlsconn_new(int fd, const char *host, const struct chanq_connect_opts *o,
                                   int64_t deadline, struct chanq_error *err);

/* Sends close_notify if the socket takes it at once, and frees the
 * session. NULL is ignored. */
void chanqi_tlsconn_free(struct tlsconn *t);

/* Like read(2) on the socket: the bytes decrypted (> 0), 0 at the end of
 * the stream, or -1 with errno (EAGAIN: wait until the socket is readable;
 * EPROTO: a TLS error, see chanqi_tlsconn_error). */
ssize_t chanqi_tlsconn_read(struct tlsconn *t, void *buf, size_t len);

/* Like send(2): the bytes taken (> 0), or -1 with errno (EAGAIN: wait
 * until the socket is writable; EPIPE; EPROTO). */
ssize_t chanqi_tlsconn_write(struct tlsconn *t, const void *buf, size_t len);

/* True when the session holds received bytes that a read would return
 * without touching the socket: read them before polling it. */
bool chanqi_tlsconn_pending(const struct tlsconn *t);

/* The reason of the last EPROTO ("TLS: ..."), or NULL. Borrowed, valid
 * until the next call on t. */
const char *chanqi_tlsconn_error(const struct tlsconn *t);

#endif
