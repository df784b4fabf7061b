/* The registry of open connections (see clientreg.h). */
#include "chanq_config.h"

#include "daemon/clientreg.h"

#include "daemon/broker-internal.h"
#include "daemon/clock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct client_reg {
    pthread_mutex_t lock;
    struct client_info *head, *tail; /* oldest first */
    uint64_t next_id;
};

struct client_reg *
client_reg_new(void)
{
    struct client_reg *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->next_id = 1;
    return r;
}

void
client_reg_free(struct client_reg *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* "host:port" of fd's peer; "unix" for a Unix socket or when unknown. */
static void
peer_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    snprintf(out, cap, "unix");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

void
client_reg_add(struct client_reg *r, struct client_info *ci, int fd, struct holder *h)
{
    peer_name(fd, ci->addr, sizeof ci->addr);
    ci->since_ms = clock_wall_ms();
    ci->holder = h;
    ci->named = false;
    atomic_init(&ci->received, 0);
    atomic_init(&ci->answered, 0);
    pthread_mutex_init(&ci->lock, NULL);
    pthread_mutex_lock(&r->lock);
    ci->id = r->next_id++;
    ci->next = NULL;
    ci->prev = r->tail;
    if (r->tail)
        r->tail->next = ci;
    else
        r->head = ci;
    r->tail = ci;
    pthread_mutex_unlock(&r->lock);
}

void
client_reg_remove(struct client_reg *r, struct client_info *ci)
{
    pthread_mutex_lock(&r->lock);
    if (ci->prev)
        ci->prev->next = ci->next;
    else
        r->head = ci->next;
    if (ci->next)
        ci->next->prev = ci->prev;
    else
        r->tail = ci->prev;
    ci->prev = ci->next = NULL;
    pthread_mutex_unlock(&r->lock);
    /* Its lock lives on: a `list` may still read the name through a job
     * the connection holds until the broker takes them back. */
}

void
client_info_fini(struct client_info *ci)
{
    if (ci->id)
        pthread_mutex_destroy(&ci->lock);
}

void
client_info_set_name(struct client_info *ci, const char *name, size_t len)
{
    if (len > CLIENT_NAME_MAX) {
        len = CLIENT_NAME_MAX;
        while (len > 0 && ((unsigned char)name[len] & 0xC0) == 0x80)
            len--; /* not inside a UTF-8 character */
    }
    pthread_mutex_lock(&ci->lock);
    if (len > 0) /* name may be NULL when there is none */
        memcpy(ci->name, name, len);
    ci->name[len] = '\0';
    ci->named = len > 0;
    pthread_mutex_unlock(&ci->lock);
}

static json_t *
name_json(struct client_info *ci)
{
    pthread_mutex_lock(&ci->lock);
    json_t *v = ci->named ? json_string(ci->name) : json_null();
    pthread_mutex_unlock(&ci->lock);
    return v ? v : json_null();
}

json_t *
client_info_holder_json(struct client_info *ci)
{
    return json_pack("{s:I, s:o, s:s}", "conn", (json_int_t)ci->id, "client", name_json(ci),
                     "addr", ci->addr);
}

static json_t *
entry_json(struct client_info *ci)
{
    uint64_t got = atomic_load(&ci->received), done = atomic_load(&ci->answered);
    size_t held = ci->holder ? ci->holder->reserved.n : 0;
    return json_pack("{s:I, s:o, s:s, s:I, s:I, s:I, s:I}", "conn", (json_int_t)ci->id, "client",
                     name_json(ci), "addr", ci->addr, "since", (json_int_t)ci->since_ms,
                     "requests", (json_int_t)done, "held", (json_int_t)held, "waiting",
                     (json_int_t)(got > done ? got - done : 0));
}

json_t *
client_reg_json(struct client_reg *r, struct broker *b)
{
    json_t *all = json_array();
    if (!all)
        return NULL;
    pthread_mutex_lock(&b->lock); /* holders' reserved lists */
    pthread_mutex_lock(&r->lock);
    for (struct client_info *ci = r->head; ci; ci = ci->next) {
        json_t *e = entry_json(ci);
        if (!e || json_array_append_new(all, e) < 0) {
            json_decref(all);
            all = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_unlock(&b->lock);
    return all;
}
