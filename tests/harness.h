/* Black-box test harness: start chanqd on a free loopback port with a
 * temporary data dir, dial it, and speak NDJSON. Every read has a timeout
 * so a broken daemon fails a test instead of hanging it. */
#ifndef CHANQ_TESTS_HARNESS_H
#define CHANQ_TESTS_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct harness;

/* Starts $top_builddir/daemon/chanqd --listen 127.0.0.1:0 --data-dir TMP
 * plus extra_args (NULL-terminated; NULL for none), and waits up to 10 s
 * for "listening on". Returns NULL (after printing the daemon's log) on
 * failure. */
struct harness *harness_start(const char *const *extra_args);

/* Stops the daemon with SIGTERM (SIGKILL after 10 s), removes the temp dir,
 * frees h. Returns the exit status, or -1 if it had to be killed or crashed. */
int harness_stop(struct harness *h);

/* Restarts the daemon on the same data dir and port-0 policy (after a
 * kill -9 or stop). Returns 0 or -1. */
int harness_restart(struct harness *h);

/* Kills the daemon with SIGKILL and reaps it. */
void harness_kill9(struct harness *h);

int harness_port(const struct harness *h);
pid_t harness_pid(const struct harness *h);
const char *harness_dir(const struct harness *h);
/* The daemon's stderr so far, a new malloc'd string. */
char *harness_log(const struct harness *h);

/* Connects to the daemon; returns the fd (reads time out after 10 s) or -1. */
int harness_dial(const struct harness *h);

/* Closes a dialed fd and forgets its read buffer. */
void harness_close(int fd);

/* Sends line plus "\n". Returns 0 or -1. */
int send_line(int fd, const char *line);
/* Reads one line (without "\n") within timeout_ms. Returns a malloc'd
 * string, or NULL on timeout, EOF or error. */
char *recv_line_timeout(int fd, int timeout_ms);
char *recv_line(int fd);
/* recv_line parsed as JSON (new reference), or NULL. */
json_t *recv_json(int fd);
/* Sends a request line and returns the parsed answer (new reference), skipping
 * server events ({"event":...}) that arrive before it. */
json_t *request(int fd, const char *line);
/* The monotonic clock in ms. */
int64_t harness_now_ms(void);

/* True when the fd has nothing to read within timeout_ms (still open). */
bool no_data_within(int fd, int timeout_ms);

/* Reads the "error.code" of a response, or "" when it has none. Borrowed. */
const char *error_code(const json_t *resp);

#endif
