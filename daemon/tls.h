/* TLS for chanqd's --tls-listen sockets: the server's OpenSSL context
 * (certificate, key, optional client CA for mutual TLS) and the libevent
 * OpenSSL bufferevents of TLS connections. daemon/tls.c builds it with
 * OpenSSL; daemon/tls_none.c (configure --without-tls) is the stub whose
 * tls_new() refuses with "built without TLS". Loop thread only. */
#ifndef CHANQ_DAEMON_TLS_H
#define CHANQ_DAEMON_TLS_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

struct config;
struct tls;

/* Loads cfg->tls_cert and cfg->tls_key (and, when cfg->tls_client_ca is
 * set, requires client certificates signed by those CAs) into a context
 * that accepts TLS 1.2 and 1.3 (1.3 when the client has it). Returns the
 * new context, or NULL after logging which file could not be used and why
 * (unreadable, not PEM, key does not match the certificate). */
struct tls *tls_new(const struct config *cfg);

/* SIGHUP: reads the same keys again into a fresh context that new
 * connections use; connections already open keep the context they began
 * with (OpenSSL counts its references). Returns 0, or -1 after logging why,
 * with the running context unchanged. */
int tls_reload(struct tls *t, const struct config *cfg);

/* Frees the context (open connections hold their own reference). NULL is
 * allowed. */
void tls_free(struct tls *t);

/* A bufferevent doing the server side of TLS on the accepted socket fd:
 * the handshake first, then plain bytes in and out like
 * bufferevent_socket_new(). Freeing it closes fd. Returns NULL when out of
 * memory; fd is then still the caller's to close. */
struct bufferevent *tls_bufferevent_new(struct tls *t, struct event_base *base,
                                        evutil_socket_t fd);

/* Logs at debug why a TLS bufferevent failed (a cleartext client on a TLS
 * port, an untrusted client certificate, ...). Does nothing for a plain
 * bufferevent. */
void tls_log_error(struct bufferevent *bev);

#endif
