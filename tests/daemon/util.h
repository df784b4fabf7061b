/* Small helpers shared by the black-box daemon suites. */
#ifndef CHANQ_TESTS_DAEMON_UTIL_H
#define CHANQ_TESTS_DAEMON_UTIL_H

#include <jansson.h>
#include <stdbool.h>

#include "tests/harness.h"

/* The fixture of the suites that want one in-memory daemon and one
 * connection per test: tcase_add_checked_fixture(tc, fixture_setup,
 * fixture_teardown), then use fx.h and fx.fd. The teardown checks that the
 * daemon stops cleanly (exit 0 on SIGTERM). */
struct fixture {
    struct harness *h; /* the daemon */
    int fd;            /* a connection to it */
};
extern struct fixture fx;
void fixture_setup(void);
void fixture_teardown(void);

/* chanqd --memory plus extra (NULL-terminated, may be NULL); aborts the
 * test if it does not start. */
struct harness *start_daemon(const char *const *extra);
/* harness_dial that fails the test when it cannot connect. */
int dial(struct harness *h);

/* Sends a printf-formatted request line and returns the answer (events
 * skipped); NULL on timeout. New reference. */
json_t *reqf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like reqf but the answer must be ok: returns it (new reference). */
json_t *req_ok(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends the request and checks that it fails with `code`. */
void req_err(int fd, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

bool is_ok(const json_t *resp);
/* Submits payload (JSON text) to queue; returns the id (malloc'd). */
char *submit(int fd, const char *queue, const char *payload);
/* Fetches one job from queue within timeout_ms; returns its id (malloc'd)
 * or NULL when none came. */
char *fetch_one(int fd, const char *queue, int timeout_ms);
/* A queue's stats object field as an integer. */
long long queue_stat(int fd, const char *queue, const char *field);
/* The server stats field (e.g. "goroutines"). */
long long server_stat(int fd, const char *field);
/* A journal stat: server.journal[group][field] (group NULL: .journal[field]). */
long long journal_stat(int fd, const char *group, const char *field);

/* True when chanqd was built with TLS and the openssl command (which makes
 * the test certificates) is there. */
bool tls_available(void);
/* The port of chanqd's --http endpoint, from its log line. */
int http_port(const struct harness *h);

/* The daemon's resident memory in bytes (VmRSS), or -1024 when unknown. */
long long daemon_rss(struct harness *h);

/* Reads lines until an event object arrives (within timeout_ms); returns it
 * (new reference) or NULL. Non-event lines are discarded. */
json_t *next_event(int fd, int timeout_ms);

#endif
