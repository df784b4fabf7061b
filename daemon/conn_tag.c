/* Connection tags for log lines (conn_tag.h). */
#include "chanq_config.h"

#include "daemon/conn_tag.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The peer's address as text; "unix" for a Unix socket, "?" when the
 * socket no longer has one (the peer already left). */
static void
format_remote(char *out, size_t len, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    snprintf(out, len, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            snprintf(out, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            snprintf(out, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        snprintf(out, len, "unix");
    }
}

void
conn_tag_init(struct conn_tag *t, uint64_t id, int fd)
{
    t->id = id;
    format_remote(t->remote, sizeof t->remote, fd);
    t->client[0] = '\0';
    atomic_init(&t->client_set, false);
}

void
conn_tag_set_client(struct conn_tag *t, const char *name, size_t len)
{
    if (len == 0 || atomic_load_explicit(&t->client_set, memory_order_relaxed))
        return;
    if (len >= sizeof t->client)
        len = sizeof t->client - 1;
    memcpy(t->client, name, len);
    t->client[len] = '\0';
    atomic_store_explicit(&t->client_set, true, memory_order_release);
}

const char *
conn_tag_client(const struct conn_tag *t)
{
    return atomic_load_explicit(&t->client_set, memory_order_acquire) ? t->client : NULL;
}
