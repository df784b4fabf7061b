/* A client connection on a bufferevent: split the input into lines, answer
 * each line in order. */
#include "chanq_config.h"

#include "daemon/conn.h"
#include "daemon/log.h"
#include "daemon/server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME (1024 * 1024)

struct conn {
    struct server *srv;      /* owner, for accounting */
    struct bufferevent *bev; /* socket and its buffers */
    int discarding;          /* skipping an oversize line up to its '\n' */
};

static void
reply_json(struct conn *c, json_t *resp)
{
    char *s = json_dumps(resp, JSON_COMPACT);
    if (s) {
        evbuffer_add(bufferevent_get_output(c->bev), s, strlen(s));
        evbuffer_add(bufferevent_get_output(c->bev), "\n", 1);
        free(s);
    }
    json_decref(resp);
}

static void
reply_error(struct conn *c, json_t *rid, const char *code, const char *message)
{
    json_t *resp = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", code, "message",
                             message);
    if (rid)
        json_object_set(resp, "rid", rid);
    reply_json(c, resp);
}

static void
handle_line(struct conn *c, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req || !json_is_object(req)) {
        reply_error(c, NULL, "bad_request", req ? "request is not a JSON object" : jerr.text);
        json_decref(req);
        return;
    }
    json_t *rid = json_object_get(req, "rid");
    json_t *op = json_object_get(req, "op");
    if (!json_is_string(op)) {
        reply_error(c, rid, "bad_request", "field 'op': missing or not a string");
    } else if (strcmp(json_string_value(op), "ping") == 0) {
        json_t *resp = json_pack("{s:b}", "ok", 1);
        if (rid)
            json_object_set(resp, "rid", rid);
        reply_json(c, resp);
    } else {
        reply_error(c, rid, "unknown_op", "unknown op");
    }
    json_decref(req);
}

static void
conn_free(struct conn *c)
{
    server_conn_closed(c->srv);
    bufferevent_free(c->bev);
    free(c);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > MAX_FRAME) {
                if (!c->discarding)
                    reply_error(c, NULL, "frame_too_large", "line longer than the frame limit");
                c->discarding = 1;
                evbuffer_drain(in, evbuffer_get_length(in));
            }
            return;
        }
        if (c->discarding) {
            c->discarding = 0;
        } else if (len > MAX_FRAME) {
            reply_error(c, NULL, "frame_too_large", "line longer than the frame limit");
        } else if (len > 0) {
            handle_line(c, line, len);
        }
        free(line);
    }
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

struct conn *
conn_new(struct server *srv, evutil_socket_t fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->srv = srv;
    c->bev = bufferevent_socket_new(server_base(srv), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    server_conn_opened(srv);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ);
    return c;
}
