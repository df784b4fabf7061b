/* Helpers for the black-box daemon suites. */
#include "chanq_config.h"

#include "tests/daemon/util.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct harness *
start_daemon(const char *const *extra)
{
    const char *args[32];
    size_t n = 0;
    args[n++] = "--memory";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    struct harness *h = harness_start(args);
    ck_assert_msg(h != NULL, "chanqd did not start");
    return h;
}

struct fixture fx;

void
fixture_setup(void)
{
    fx.h = start_daemon(NULL);
    fx.fd = dial(fx.h);
}

void
fixture_teardown(void)
{
    harness_close(fx.fd);
    ck_assert_msg(harness_stop(fx.h) == 0, "chanqd did not stop cleanly");
}

int
dial(struct harness *h)
{
    int fd = harness_dial(h);
    ck_assert_msg(fd >= 0, "cannot connect to chanqd");
    return fd;
}

static json_t *
__attribute__((format(printf, 2, 0)))
vreq(int fd, const char *fmt, va_list ap)
{
    char *line;
    if (vasprintf(&line, fmt, ap) < 0)
        return NULL;
    json_t *r = request(fd, line);
    free(line);
    return r;
}

json_t *
reqf(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *r = vreq(fd, fmt, ap);
    va_end(ap);
    return r;
}

bool
is_ok(const json_t *resp)
{
    return resp && json_is_true(json_object_get(resp, "ok"));
}

json_t *
req_ok(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *r = vreq(fd, fmt, ap);
    va_end(ap);
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    ck_assert_msg(is_ok(r), "request %s was answered %s", fmt, text ? text : "(nothing)");
    free(text);
    return r;
}

void
req_err(int fd, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *r = vreq(fd, fmt, ap);
    va_end(ap);
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    ck_assert_msg(r && !is_ok(r) && strcmp(error_code(r), code) == 0,
                  "request %s: want error %s, got %s", fmt, code, text ? text : "(nothing)");
    const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
    ck_assert_msg(msg && *msg, "error %s has no message", code);
    free(text);
    json_decref(r);
}

char *
submit(int fd, const char *queue, const char *payload)
{
    json_t *r = req_ok(fd, "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":%s}", queue, payload);
    const char *id = json_string_value(json_object_get(r, "id"));
    ck_assert_msg(id && *id, "submit answer has no id");
    char *copy = strdup(id);
    json_decref(r);
    return copy;
}

char *
fetch_one(int fd, const char *queue, int timeout_ms)
{
    json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queues\":[\"%s\"],\"timeout_ms\":%d}", queue,
                       timeout_ms);
    json_t *jobs = json_object_get(r, "jobs");
    ck_assert_msg(json_is_array(jobs), "fetch answer has no jobs array");
    char *id = NULL;
    if (json_array_size(jobs) > 0)
        id = strdup(json_string_value(json_object_get(json_array_get(jobs, 0), "id")));
    json_decref(r);
    return id;
}

long long
queue_stat(int fd, const char *queue, const char *field)
{
    json_t *r = req_ok(fd, "{\"op\":\"stats\",\"queue\":\"%s\"}", queue);
    json_t *v = json_object_get(json_object_get(r, "queue"), field);
    ck_assert_msg(v != NULL, "queue stats have no field %s", field);
    long long n = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
    json_decref(r);
    return n;
}

long long
server_stat(int fd, const char *field)
{
    json_t *r = req_ok(fd, "{\"op\":\"stats\"}");
    json_t *v = json_object_get(json_object_get(r, "server"), field);
    ck_assert_msg(v != NULL, "server stats have no field %s", field);
    long long n = json_integer_value(v);
    json_decref(r);
    return n;
}

long long
journal_stat(int fd, const char *group, const char *field)
{
    json_t *r = req_ok(fd, "{\"op\":\"stats\"}");
    json_t *j = json_object_get(json_object_get(r, "server"), "journal");
    json_t *v = json_object_get(group ? json_object_get(j, group) : j, field);
    ck_assert_msg(v != NULL, "journal stats have no field %s", field);
    long long n = json_integer_value(v);
    json_decref(r);
    return n;
}

json_t *
next_event(int fd, int timeout_ms)
{
    for (int i = 0; i < 100; i++) {
        char *line = recv_line_timeout(fd, timeout_ms);
        if (!line)
            return NULL;
        json_t *j = json_loads(line, 0, NULL);
        free(line);
        if (j && json_object_get(j, "event"))
            return j;
        json_decref(j);
    }
    return NULL;
}

long long
daemon_rss(struct harness *h)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)harness_pid(h));
    FILE *f = fopen(path, "r");
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

bool
tls_available(void)
{
#ifdef CHANQ_TLS
    return system("openssl version >/dev/null 2>&1") == 0;
#else
    return false;
#endif
}

int
http_port(const struct harness *h)
{
    static const char line[] = "http: serving /metrics /stats /healthz on 127.0.0.1:";
    char *log = harness_log(h);
    const char *p = strstr(log, line);
    int port = p ? atoi(p + sizeof line - 1) : 0;
    free(log);
    ck_assert_msg(port > 0, "no http port in the log");
    return port;
}
