/* libchanq's TLS with OpenSSL: one SSL_CTX and SSL per connection (a CLI
 * or a worker opens few), certificate and host name verification by
 * default, reads and writes that behave like the non-blocking socket's. */
#include "chanq_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clients/client-internal.h"
#include "clients/tlsconn.h"

/* OpenSSL 1.1 has no such option; there SSL_ERROR_SYSCALL with errno 0 is
 * the same unexpected EOF, handled below. */
#ifndef SSL_OP_IGNORE_UNEXPECTED_EOF
#define SSL_OP_IGNORE_UNEXPECTED_EOF 0
#endif

/* How long a read may wait for the socket to take a TLS record it must
 * send first (and a write for one it must receive): both are rare. */
#define CROSS_WAIT_MS 10000

struct tlsconn {
    SSL_CTX *ctx;   /* this connection's settings (CA, client certificate) */
    SSL *ssl;       /* the session on the socket */
    BIO_METHOD *bio_method; /* OpenSSL's socket BIO writing with MSG_NOSIGNAL */
    int fd;         /* the socket, borrowed from the connection */
    char why[256];  /* reason of the last EPROTO */
};

static void __attribute__((format(printf, 2, 3)))
tls_fail(struct chanq_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    snprintf(err->code, sizeof err->code, "io");
    err->sys_errno = EPROTO;
}

/* OpenSSL's most recent error as text; clears the queue. */
static const char *
ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(buf, len, "%s", "unknown error");
    if (e)
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static int
load_files(SSL_CTX *ctx, const struct chanq_connect_opts *o, struct chanq_error *err)
{
    char why[256];
    if (o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_fail(err, "TLS: cannot load the CA file %s: %s", o->tls_ca ? o->tls_ca : "(system)",
                 ssl_reason(why, sizeof why));
        return -1;
    }
    if (!o->tls_cert)
        return 0;
    const char *key = o->tls_key ? o->tls_key : o->tls_cert;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
        tls_fail(err, "TLS: cannot load the certificate %s: %s", o->tls_cert,
                 ssl_reason(why, sizeof why));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        tls_fail(err, "TLS: cannot use the key %s with %s: %s", key, o->tls_cert,
                 ssl_reason(why, sizeof why));
        return -1;
    }
    return 0;
}

static SSL_CTX *
ctx_new(const struct chanq_connect_opts *o, struct chanq_error *err)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_fail(err, "TLS: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* send(2)-like writes: part of a buffer may go, the rest later. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Fewer read calls; chanqi_tlsconn_read's callers read until EAGAIN, so
     * nothing decrypted is left behind a poll. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, o->tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (load_files(ctx, o, err) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* OpenSSL's socket BIO writes with write(2): a server gone away would
 * kill the caller with SIGPIPE. This write uses send(MSG_NOSIGNAL) like
 * the plain path; everything else is the socket BIO's. */
static int
bio_send(BIO *b, const char *buf, int len)
{
    int fd = (int)BIO_get_fd(b, NULL);
    BIO_clear_retry_flags(b);
    ssize_t n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static BIO_METHOD *
bio_method_new(void)
{
    const BIO_METHOD *sock = BIO_s_socket();
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "chanq socket");
    if (!m || BIO_meth_set_write(m, bio_send) != 1 ||
        BIO_meth_set_read(m, BIO_meth_get_read(sock)) != 1 ||
        BIO_meth_set_puts(m, BIO_meth_get_puts(sock)) != 1 ||
        BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) != 1 ||
        BIO_meth_set_create(m, BIO_meth_get_create(sock)) != 1 ||
        BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* Puts ssl on fd through the MSG_NOSIGNAL BIO. 0 or -1. */
static int
attach_fd(struct tlsconn *t)
{
    BIO *bio;
    if (!(t->bio_method = bio_method_new()) || !(bio = BIO_new(t->bio_method)))
        return -1;
    BIO_set_fd(bio, t->fd, BIO_NOCLOSE);
    SSL_set_bio(t->ssl, bio, bio); /* ssl owns bio now */
    return 0;
}

/* The name the certificate must carry: a DNS name (also sent as SNI) or
 * an IP address (checked against the IP names; SNI carries no addresses). */
static int
set_peer_name(SSL *ssl, const char *name)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)
        return -1;
    return 0;
}

/* Why the handshake failed, as precisely as OpenSSL says. */
static void
handshake_fail(struct tlsconn *t, int rc, struct chanq_error *err)
{
    char why[256];
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        tls_fail(err, "TLS: the server's certificate is not accepted: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (SSL_get_error(t->ssl, rc) == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        tls_fail(err, "TLS: the server closed the connection during the handshake");
    } else {
        tls_fail(err, "TLS: handshake failed: %s", ssl_reason(why, sizeof why));
    }
}

static int
handshake(struct tlsconn *t, int64_t deadline, struct chanq_error *err)
{
    for (;;) {
        ERR_clear_error();
        int rc = SSL_connect(t->ssl);
        if (rc == 1)
            return 0;
        int e = SSL_get_error(t->ssl, rc);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!want) {
            handshake_fail(t, rc, err);
            return -1;
        }
        int r = chanqi_conn_wait_fd(t->fd, want, deadline);
        if (r <= 0) {
            tls_fail(err, "TLS: handshake: %s", r == 0 ? "timed out" : strerror(errno));
            if (err)
                err->sys_errno = r == 0 ? ETIMEDOUT : errno;
            return -1;
        }
    }
}

struct tlsconn *
chanqi_tlsconn_new(int fd, const char *host, const struct chanq_connect_opts *o, int64_t deadline,
                   struct chanq_error *err)
{
    struct tlsconn *t = calloc(1, sizeof *t);
    if (!t) {
        tls_fail(err, "TLS: out of memory");
        return NULL;
    }
    t->fd = fd;
    if (!(t->ctx = ctx_new(o, err)))
        goto out_free;
    const char *name = o->tls_server_name ? o->tls_server_name : host;
    if (!(t->ssl = SSL_new(t->ctx)) || attach_fd(t) < 0 ||
        (!o->tls_insecure && set_peer_name(t->ssl, name) < 0)) {
        char why[256];
        tls_fail(err, "TLS: cannot set up a session for %s: %s", name,
                 ssl_reason(why, sizeof why));
        goto out_free;
    }
    if (handshake(t, deadline, err) < 0)
        goto out_free;
    return t;

out_free:
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio_method);
    free(t);
    return NULL;
}

void
chanqi_tlsconn_free(struct tlsconn *t)
{
    if (!t)
        return;
    /* close_notify, best effort: a non-blocking socket never waits here. */
    if (SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    ERR_clear_error();
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio_method);
    free(t);
}

/* Maps an SSL_read/SSL_write failure to errno; -1, or 0 for a clean end
 * (reads only). want_other: the direction the call is stuck on that its
 * caller does not poll for; waited for here, then the call is retried (1). */
static int
io_result(struct tlsconn *t, int rc, short want_other)
{
    int e = SSL_get_error(t->ssl, rc);
    short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (want && want != want_other) {
        errno = EAGAIN;
        return -1;
    }
    if (want) {
        int r = chanqi_conn_wait_fd(t->fd, want, chanqi_conn_now_ms() + CROSS_WAIT_MS);
        if (r > 0)
            return 1;
        errno = r == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        if (errno == 0)
            return 0; /* EOF without close_notify: the end all the same */
        return -1;
    }
    char why[200];
    snprintf(t->why, sizeof t->why, "TLS: %s", ssl_reason(why, sizeof why));
    errno = EPROTO;
    return -1;
}

ssize_t
chanqi_tlsconn_read(struct tlsconn *t, void *buf, size_t len)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        int r = io_result(t, n, POLLOUT);
        if (r <= 0)
            return r;
    }
}

ssize_t
chanqi_tlsconn_write(struct tlsconn *t, const void *buf, size_t len)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        int r = io_result(t, n, POLLIN);
        if (r == 0) {
            errno = EPIPE;
            return -1;
        }
        if (r < 0)
            return -1;
    }
}

bool
chanqi_tlsconn_pending(const struct tlsconn *t)
{
    return SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl);
}

const char *
chanqi_tlsconn_error(const struct tlsconn *t)
{
    return t->why[0] ? t->why : NULL;
}
