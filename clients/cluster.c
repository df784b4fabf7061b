/* libchanq: several servers, a chanqd cluster seen as one (docs/cluster.md).
 *
 * chanq_connect() given "a:1,b:2,c:3" finds the serving leader: each node's
 * hello says its role and the leader's client address, a follower's answer
 * sends the search there at once, and while no node serves (an election)
 * the list is tried again after a backoff of 25 ms doubling to 250 ms. A call
 * that may be made twice (chanqi_cluster_may_resend) and whose connection
 * died, or that a node answered not_leader or shutting_down, is made again
 * on the next leader, in place: the connection's fd and buffers are
 * replaced, its event function and queued events kept. */
#include "chanq_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clients/client-internal.h"
#include "clients/tlsconn.h"

#define PROBE_TIMEOUT_MS 2000 /* a node that does not answer hello by then is skipped */
#define BACKOFF_FIRST_MS 25
#define BACKOFF_MAX_MS 250
#define DEFAULT_SEARCH_MS 10000
#define MAX_SERVERS 64

struct chanqi_cluster {
    char **servers; /* the addresses given, in order */
    size_t nservers;
    struct chanq_connect_opts opts; /* copies of the caller's strings, owned */
    int64_t search_ms;              /* bound of one search for the leader */
};

bool
chanqi_is_server_list(const char *server)
{
    return server && strchr(server, ',') != NULL;
}

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void
chanqi_cluster_free(struct chanqi_cluster *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < cl->nservers; i++)
        free(cl->servers[i]);
    free(cl->servers);
    free((char *)cl->opts.token);
    free((char *)cl->opts.client);
    free((char *)cl->opts.tls_ca);
    free((char *)cl->opts.tls_cert);
    free((char *)cl->opts.tls_key);
    free((char *)cl->opts.tls_server_name);
    free(cl);
}

static int
copy_opts(struct chanqi_cluster *cl, const struct chanq_connect_opts *o)
{
    cl->opts = *o;
    cl->opts.token = dup_or_null(o->token);
    cl->opts.client = dup_or_null(o->client);
    cl->opts.tls_ca = dup_or_null(o->tls_ca);
    cl->opts.tls_cert = dup_or_null(o->tls_cert);
    cl->opts.tls_key = dup_or_null(o->tls_key);
    cl->opts.tls_server_name = dup_or_null(o->tls_server_name);
    if ((o->token && !cl->opts.token) || (o->client && !cl->opts.client) ||
        (o->tls_ca && !cl->opts.tls_ca) || (o->tls_cert && !cl->opts.tls_cert) ||
        (o->tls_key && !cl->opts.tls_key) || (o->tls_server_name && !cl->opts.tls_server_name))
        return -1;
    return 0;
}

/* Splits the comma-separated list; empty items are skipped. */
static int
split_list(struct chanqi_cluster *cl, const char *list)
{
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0) {
            if (cl->nservers == MAX_SERVERS)
                return -EINVAL;
            char *s = strndup(p, n);
            if (!s)
                return -ENOMEM;
            cl->servers[cl->nservers++] = s;
        }
        p = end ? end + 1 : p + strlen(p);
    }
    return cl->nservers > 0 ? 0 : -EINVAL;
}

struct chanqi_cluster *
chanqi_cluster_new(const char *list, const struct chanq_connect_opts *o, struct chanq_error *err)
{
    struct chanqi_cluster *cl = calloc(1, sizeof *cl);
    if (cl)
        cl->servers = calloc(MAX_SERVERS, sizeof *cl->servers);
    int rc = cl && cl->servers ? 0 : -ENOMEM;
    if (rc == 0)
        rc = copy_opts(cl, o) < 0 ? -ENOMEM : split_list(cl, list);
    if (rc < 0) {
        chanqi_error_set(err, "io",
                         rc == -ENOMEM ? strerror(ENOMEM)
                                       : "a server list is HOST:PORT,HOST:PORT,... (1 to 64)",
                         -rc);
        chanqi_cluster_free(cl);
        return NULL;
    }
    cl->search_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_SEARCH_MS;
    return cl;
}

/* Connects to one node and says hello. Returns the connection when the node
 * serves (role "leader", or no role: a single chanqd); else NULL, with the
 * leader it names copied into leader[] (or "") and why in *err. */
static struct chanq_conn *
probe(const struct chanqi_cluster *cl, const char *server, int64_t left_ms, char *leader,
      size_t leaderlen, struct chanq_error *err)
{
    struct chanq_connect_opts o = cl->opts;
    o.connect_timeout_ms = left_ms < PROBE_TIMEOUT_MS ? (left_ms > 0 ? left_ms : 1)
                                                      : PROBE_TIMEOUT_MS;
    o.read_timeout_ms = PROBE_TIMEOUT_MS;
    leader[0] = '\0';
    struct chanq_conn *c = chanqi_connect_one(server, &o, true, err);
    if (!c)
        return NULL;
    const json_t *info = chanq_server_info(c);
    const char *role = json_string_value(json_object_get(info, "role"));
    if (!role || strcmp(role, "leader") == 0) {
        chanqi_conn_set_read_timeout(c, cl->opts.read_timeout_ms);
        return c;
    }
    const char *l = json_string_value(json_object_get(info, "leader"));
    snprintf(leader, leaderlen, "%s", l ? l : "");
    char msg[768];
    snprintf(msg, sizeof msg, "%s is %s; leader: %s", server, role, *leader ? leader : "unknown");
    chanqi_error_set(err, "not_leader", msg, 0);
    chanq_conn_free(c);
    return NULL;
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One round over prefer (when set) and the list; a node that names the
 * leader sends the round there next, once. */
static struct chanq_conn *
round_over(const struct chanqi_cluster *cl, const char *prefer, int64_t deadline,
           struct chanq_error *err)
{
    char leader[256], tried_leader[256] = "";
    size_t i = prefer ? (size_t)-1 : 0;
    for (; i == (size_t)-1 || i < cl->nservers; i++) {
        const char *server = i == (size_t)-1 ? prefer : cl->servers[i];
        for (;;) {
            int64_t left = deadline - chanqi_conn_now_ms();
            if (left <= 0)
                return NULL;
            struct chanq_conn *c = probe(cl, server, left, leader, sizeof leader, err);
            if (c)
                return c;
            if (strcmp(err->code, "unauthorized") == 0)
                return NULL;
            if (!*leader || strcmp(leader, server) == 0 || strcmp(leader, tried_leader) == 0)
                break;
            snprintf(tried_leader, sizeof tried_leader, "%s", leader);
            server = tried_leader;
        }
    }
    return NULL;
}

struct chanq_conn *
chanqi_cluster_dial(const struct chanqi_cluster *cl, const char *prefer, struct chanq_error *err)
{
    struct chanq_error e = {{0}, {0}, 0};
    int64_t deadline = chanqi_conn_now_ms() + cl->search_ms;
    int64_t backoff = BACKOFF_FIRST_MS;
    for (;;) {
        struct chanq_conn *c = round_over(cl, prefer, deadline, &e);
        if (c)
            return c;
        if (strcmp(e.code, "unauthorized") == 0)
            break;
        int64_t left = deadline - chanqi_conn_now_ms();
        if (left <= 0)
            break;
        /* Jitter: many clients must not all knock on the new leader at once. */
        int64_t pause = backoff / 2 + rand() % (backoff / 2 + 1);
        sleep_ms(pause < left ? pause : left);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        prefer = NULL;
    }
    if (err) {
        char msg[sizeof e.message + 128];
        snprintf(msg, sizeof msg, "no serving leader within %lld ms (last: %s: %s)",
                 (long long)cl->search_ms, e.code[0] ? e.code : "none", e.message);
        chanqi_error_set(err, strcmp(e.code, "unauthorized") == 0 ? "unauthorized" : "io", msg,
                         e.sys_errno ? e.sys_errno : EHOSTUNREACH);
    }
    return NULL;
}

int64_t
chanqi_cluster_search_ms(const struct chanqi_cluster *cl)
{
    return cl->search_ms;
}

bool
chanqi_cluster_may_resend(const char *op)
{
    /* Ops that are the same done twice, or (submit) that the caller asked
     * to have made at least once. Acks, nacks, touches and releases name
     * reservations that died with the connection; kick and consume are
     * not the same twice. */
    static const char *const again[] = {"ping",  "hello", "submit",  "fetch",  "stats",
                                        "job",   "wait",  "queues",  "declare", "pause",
                                        "resume", "close", "cancel"};
    if (!op)
        return false;
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++)
        if (strcmp(op, again[i]) == 0)
            return true;
    return false;
}

/* The address a not_leader message ends with ("leader: HOST:PORT"), copied
 * into buf; NULL when it names none. */
static const char *
named_leader(const char *msg, char *buf, size_t len)
{
    const char *p = strstr(msg, "leader: ");
    if (!p)
        return NULL;
    p += strlen("leader: ");
    if (!*p || strcmp(p, "unknown") == 0)
        return NULL;
    snprintf(buf, len, "%s", p);
    return buf;
}

int
chanqi_conn_reconnect(struct chanq_conn *c, const char *prefer)
{
    struct chanq_conn *n = chanqi_cluster_dial(c->cluster, prefer, &c->err);
    if (!n) {
        c->broken = true;
        return -1;
    }
    /* Swap the transport into c; n then holds the old one, and freeing it
     * closes it. Events already queued on c stay. */
    struct chanq_conn old = *c;
    c->fd = n->fd;
    c->tls = n->tls;
    c->in = n->in;
    c->in_off = n->in_off;
    c->in_len = n->in_len;
    c->in_cap = n->in_cap;
    c->server_info = n->server_info;
    c->out.len = 0;
    c->pending = 0;
    c->broken = false;
    c->failovers++;
    n->fd = old.fd;
    n->tls = old.tls;
    n->in = old.in;
    n->in_off = old.in_off;
    n->in_len = old.in_len;
    n->in_cap = old.in_cap;
    n->server_info = old.server_info;
    chanq_conn_free(n);
    return 0;
}

int
chanqi_conn_revive(struct chanq_conn *c)
{
    if (c->broken && c->cluster)
        return chanqi_conn_reconnect(c, NULL);
    return c->broken ? -1 : 0;
}

/* Whether the failure just recorded on c is one to make the call again for
 * on another node: nothing was done (not_leader, shutting_down), or the
 * connection died and the call may be made twice. */
static bool
worth_again(const struct chanq_conn *c, bool resend)
{
    if (c->broken)
        return resend;
    return strcmp(c->err.code, "not_leader") == 0 || strcmp(c->err.code, "shutting_down") == 0;
}

int
chanqi_conn_failover(struct chanq_conn *c, bool resend)
{
    if (!c->cluster || !worth_again(c, resend))
        return -1;
    char buf[256];
    const char *prefer = c->broken ? NULL : named_leader(c->err.message, buf, sizeof buf);
    return chanqi_conn_reconnect(c, prefer);
}

int
chanqi_conn_recv_again(struct chanq_conn *c, int64_t wait_ms, json_t **resp, bool resend)
{
    /* Only a request alone on the connection and not yet written can be
     * made again: its text is still in c->out. */
    if (!c->cluster || c->pending != 1 || c->out.len == 0)
        return chanqi_conn_recv(c, wait_ms, resp);
    size_t len = c->out.len;
    char *req = malloc(len);
    if (!req)
        return chanqi_conn_recv(c, wait_ms, resp);
    memcpy(req, c->out.data, len);
    int64_t deadline = chanqi_conn_now_ms() + chanqi_cluster_search_ms(c->cluster);
    int rc;
    for (;;) {
        rc = chanqi_conn_recv(c, wait_ms, resp);
        if (rc == 0 || !worth_again(c, resend) || chanqi_conn_now_ms() > deadline)
            break;
        json_decref(*resp);
        *resp = NULL;
        if (chanqi_conn_failover(c, resend) < 0)
            break;
        if (chanqi_wbuf_put(&c->out, req, len) < 0) {
            rc = chanqi_conn_fail_io(c, ENOMEM);
            break;
        }
        chanqi_conn_request_done(c);
    }
    free(req);
    return rc;
}

int
chanq_reconnect(struct chanq_conn *c)
{
    if (!c->cluster)
        return chanqi_conn_fail(c, "bad_request", "a connection to one server is not made again");
    char buf[256];
    const char *prefer = !c->broken && strcmp(c->err.code, "not_leader") == 0
                             ? named_leader(c->err.message, buf, sizeof buf)
                             : NULL;
    return chanqi_conn_reconnect(c, prefer);
}

size_t
chanq_failovers(const struct chanq_conn *c)
{
    return c->failovers;
}
