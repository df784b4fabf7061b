/* TLS with OpenSSL: one SSL_CTX per certificate generation (a SIGHUP makes
 * a new one; each SSL keeps a reference to the context it was made from, so
 * open connections are not disturbed), and libevent's OpenSSL bufferevents
 * in accepting mode for the connections. */
#include "chanq_config.h"

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/tls.h"

#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls {
    SSL_CTX *ctx; /* what new connections use; replaced on SIGHUP */
};

/* TLS 1.2 suites with forward secrecy and AEAD only (1.3 has only such). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define SESSION_ID_CONTEXT "chanqd"

/* The most recent OpenSSL error as text ("" when none); clears the queue. */
static const char *
ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e)
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Checks that the file behind key can be opened, so that the log says
 * "No such file or directory" rather than an OpenSSL code. */
static int
check_readable(const char *key, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("%s %s: cannot read: %s", key, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int
load_identity(SSL_CTX *ctx, const struct config *cfg)
{
    char why[256];
    if (check_readable("tls-cert", cfg->tls_cert) < 0 || check_readable("tls-key", cfg->tls_key) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        log_error("tls-cert %s: not a usable PEM certificate: %s", cfg->tls_cert,
                  ssl_reason(why, sizeof why));
        return -1;
    }
    /* OpenSSL compares the key with the certificate as it loads it. */
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        log_error(mismatch ? "tls-key %s does not match the certificate in tls-cert %s: %s"
                           : "tls-key %s: not a usable PEM private key (tls-cert %s): %s",
                  cfg->tls_key, cfg->tls_cert, ssl_reason(why, sizeof why));
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_error("tls-key %s does not match the certificate in tls-cert %s: %s", cfg->tls_key,
                  cfg->tls_cert, ssl_reason(why, sizeof why));
        return -1;
    }
    return 0;
}

/* Mutual TLS: a client must present a certificate the CAs signed. */
static int
load_client_ca(SSL_CTX *ctx, const char *path)
{
    char why[256];
    if (check_readable("tls-client-ca", path) < 0)
        return -1;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
    if (!names || SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
        log_error("tls-client-ca %s: no usable PEM CA certificate: %s", path,
                  ssl_reason(why, sizeof why));
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership of names */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

/* A new server context from cfg, or NULL after logging why. */
static SSL_CTX *
ctx_new(const struct config *cfg)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_error("tls: cannot create a context: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    /* 1.2 at least; OpenSSL picks the highest both sides have (1.3). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* Resumed sessions must keep the client-certificate check. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT,
                                   sizeof SESSION_ID_CONTEXT - 1);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || load_identity(ctx, cfg) < 0 ||
        (cfg->tls_client_ca && load_client_ca(ctx, cfg->tls_client_ca) < 0)) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

struct tls *
tls_new(const struct config *cfg)
{
    struct tls *t = calloc(1, sizeof *t);
    if (!t) {
        log_error("tls: out of memory");
        return NULL;
    }
    if (!(t->ctx = ctx_new(cfg))) {
        free(t);
        return NULL;
    }
    log_info("tls: certificate %s, key %s%s%s (%s)", cfg->tls_cert, cfg->tls_key,
             cfg->tls_client_ca ? ", client certificates required, CA " : "",
             cfg->tls_client_ca ? cfg->tls_client_ca : "", OpenSSL_version(OPENSSL_VERSION));
    return t;
}

int
tls_reload(struct tls *t, const struct config *cfg)
{
    SSL_CTX *fresh = ctx_new(cfg);
    if (!fresh) {
        log_error("tls: reload failed, new connections keep the running certificate");
        return -1;
    }
    SSL_CTX_free(t->ctx); /* connections made from it hold their own reference */
    t->ctx = fresh;
    log_info("tls: reloaded certificate %s and key %s for new connections", cfg->tls_cert,
             cfg->tls_key);
    return 0;
}

void
tls_free(struct tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

struct bufferevent *
tls_bufferevent_new(struct tls *t, struct event_base *base, evutil_socket_t fd)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    /* CLOSE_ON_FREE: freeing the bufferevent frees ssl and closes fd. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL; /* libevent freed ssl (CLOSE_ON_FREE) */
    /* A client that closes without close_notify has still said all it
     * will: treat it as EOF (answer, then close), like a TCP FIN. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void
tls_log_error(struct bufferevent *bev)
{
    if (!bufferevent_openssl_get_ssl(bev))
        return;
    unsigned long e;
    bool any = false;
    char buf[256];
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) == 0)
            continue; /* libevent's own marker, not an OpenSSL reason */
        ERR_error_string_n(e, buf, sizeof buf);
        log_debug("tls: connection failed: %s", buf);
        any = true;
    }
    if (!any)
        log_debug("tls: connection failed: %s",
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}
