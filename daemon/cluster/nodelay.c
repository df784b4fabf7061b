/* The TCP_NODELAY transport (see nodelay.h): each call goes to libraft's
 * own TCP transport; the accept and connect callbacks are intercepted to
 * set the option on the new stream. */
#include "chanq_config.h"

#include "daemon/cluster/nodelay.h"

#include "daemon/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* libraft >= 0.16 and the cowsql fork have a version field that the user
 * of a transport must fill; 0.15 has none. */
#ifdef HAVE_STRUCT_RAFT_UV_TRANSPORT_VERSION
static void
set_version(struct raft_uv_transport *t)
{
    t->version = 1;
}
#else
static void
set_version(struct raft_uv_transport *t)
{
    (void)t;
}
#endif

static struct nodelay_transport *
self(struct raft_uv_transport *outer)
{
    return outer->impl;
}

static void
set_nodelay(struct uv_stream_s *stream)
{
    if (stream && stream->type == UV_TCP) {
        int rc = uv_tcp_nodelay((uv_tcp_t *)stream, 1);
        if (rc != 0)
            log_warn("cluster: TCP_NODELAY: %s", uv_strerror(rc));
    }
}

/* The Raft part of a member's address: the configuration may carry the
 * client address after a slash (replica.h); libraft's transport must see
 * "IPv4:port" only. False when it does not fit. */
static bool
raft_part(const char *address, char *out, size_t outlen)
{
    size_t n = strcspn(address, "/");
    if (n >= outlen)
        return false;
    memcpy(out, address, n);
    out[n] = '\0';
    return true;
}

static int
t_init(struct raft_uv_transport *outer, raft_id id, const char *address)
{
    struct nodelay_transport *t = self(outer);
    /* Kept in t: the inner transport may hold on to the string. */
    if (!raft_part(address, t->self_address, sizeof t->self_address))
        return RAFT_INVALID;
    int rc = t->inner.init(&t->inner, id, t->self_address);
    if (rc != 0)
        snprintf(outer->errmsg, sizeof outer->errmsg, "%s", t->inner.errmsg);
    return rc;
}

/* raft_uv keeps its state in the transport's data: it must get back the
 * transport it knows, the outer one. */
static void
on_accept(struct raft_uv_transport *inner, raft_id id, const char *address,
          struct uv_stream_s *stream)
{
    struct nodelay_transport *t = inner->data;
    set_nodelay(stream);
    t->accept_cb(&t->outer, id, address, stream);
}

static int
t_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct nodelay_transport *t = self(outer);
    t->accept_cb = cb;
    int rc = t->inner.listen(&t->inner, on_accept);
    if (rc != 0)
        snprintf(outer->errmsg, sizeof outer->errmsg, "%s", t->inner.errmsg);
    return rc;
}

/* One connect in flight: libraft's request and callback. */
struct connect {
    struct raft_uv_connect req; /* given to the inner transport */
    struct raft_uv_connect *outer_req;
    raft_uv_connect_cb outer_cb;
    char address[NODELAY_ADDRESS_MAX]; /* the Raft part, alive until the answer */
};

static void
on_connect(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct connect *c = req->data;
    struct raft_uv_connect *outer_req = c->outer_req;
    raft_uv_connect_cb cb = c->outer_cb;
    free(c);
    if (status == 0)
        set_nodelay(stream);
    cb(outer_req, stream, status);
}

static int
t_connect(struct raft_uv_transport *outer, struct raft_uv_connect *req, raft_id id,
          const char *address, raft_uv_connect_cb cb)
{
    struct nodelay_transport *t = self(outer);
    struct connect *c = calloc(1, sizeof *c);
    if (!c)
        return RAFT_NOMEM;
    if (!raft_part(address, c->address, sizeof c->address)) {
        free(c);
        return RAFT_INVALID;
    }
    c->req.data = c;
    c->outer_req = req;
    c->outer_cb = cb;
    req->cb = cb;
    int rc = t->inner.connect(&t->inner, &c->req, id, c->address, on_connect);
    if (rc != 0) {
        snprintf(outer->errmsg, sizeof outer->errmsg, "%s", t->inner.errmsg);
        free(c);
    }
    return rc;
}

static void
on_close(struct raft_uv_transport *inner)
{
    struct nodelay_transport *t = inner->data;
    if (t->close_cb)
        t->close_cb(&t->outer);
}

static void
t_close(struct raft_uv_transport *outer, raft_uv_transport_close_cb cb)
{
    struct nodelay_transport *t = self(outer);
    t->close_cb = cb;
    t->inner.close(&t->inner, on_close);
}

int
nodelay_init(struct nodelay_transport *t, struct uv_loop_s *loop)
{
    *t = (struct nodelay_transport){0};
    set_version(&t->inner);
    int rc = raft_uv_tcp_init(&t->inner, loop);
    if (rc != 0)
        return rc;
    t->inner.data = t;
    set_version(&t->outer);
    t->outer.impl = t;
    t->outer.init = t_init;
    t->outer.listen = t_listen;
    t->outer.connect = t_connect;
    t->outer.close = t_close;
    return 0;
}

int
nodelay_set_bind_address(struct nodelay_transport *t, const char *address)
{
    return raft_uv_tcp_set_bind_address(&t->inner, address);
}

struct raft_uv_transport *
nodelay_transport(struct nodelay_transport *t)
{
    return &t->outer;
}

void
nodelay_close(struct nodelay_transport *t)
{
    raft_uv_tcp_close(&t->inner);
}
