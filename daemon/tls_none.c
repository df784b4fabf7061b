/* The TLS module of a chanqd built with configure --without-tls: every
 * TLS setting is refused at start-up, nothing else changes. */
#include "chanq_config.h"

#include "daemon/log.h"
#include "daemon/tls.h"

struct tls *
tls_new(const struct config *cfg)
{
    log_error("tls-listen: this chanqd was built without TLS (configure --without-tls)");
    return NULL;
}

int
tls_reload(struct tls *t, const struct config *cfg)
{
    return -1;
}

void
tls_free(struct tls *t)
{
}

struct bufferevent *
tls_bufferevent_new(struct tls *t, struct event_base *base, evutil_socket_t fd)
{
    return NULL;
}

void
tls_log_error(struct bufferevent *bev)
{
}
