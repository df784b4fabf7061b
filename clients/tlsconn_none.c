/* libchanq built with configure --without-tls: asking for TLS fails. */
#include "chanq_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clients/tlsconn.h"

struct tlsconn *
chanqi_tlsconn_new(int fd, const char *host, const struct chanq_connect_opts *o, int64_t deadline,
                   struct chanq_error *err)
{
    if (err) {
        snprintf(err->code, sizeof err->code, "io");
        snprintf(err->message, sizeof err->message,
                 "TLS: this libchanq was built without TLS (configure --without-tls)");
        err->sys_errno = EPROTONOSUPPORT;
    }
    return NULL;
}

void
chanqi_tlsconn_free(struct tlsconn *t)
{
}

ssize_t
chanqi_tlsconn_read(struct tlsconn *t, void *buf, size_t len)
{
    errno = EPROTONOSUPPORT;
    return -1;
}

ssize_t
chanqi_tlsconn_write(struct tlsconn *t, const void *buf, size_t len)
{
    errno = EPROTONOSUPPORT;
    return -1;
}

bool
chanqi_tlsconn_pending(const struct tlsconn *t)
{
    return false;
}

const char *
chanqi_tlsconn_error(const struct tlsconn *t)
{
    return NULL;
}
