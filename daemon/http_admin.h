/* --http-admin: protocol ops behind POST /admin/OP on the --http endpoint,
 * for the status page and for curl. The body is a JSON object of the op's
 * protocol fields (docs/protocol.md), ?queue=NAME a shorthand for one; the
 * answer is the op's own JSON line. Only the ops that administer queues
 * and jobs (pause, resume, close, kick, retry, delete, purge,
 * queue_delete, configure) and read them (list, job, clients, queues) are
 * served; none that reserves or waits. Changes are logged at info with the
 * client's address, reads at debug. */
#ifndef CHANQ_DAEMON_HTTP_ADMIN_H
#define CHANQ_DAEMON_HTTP_ADMIN_H

struct http;
struct conn_env;
struct http_admin;

/* Turns h's admin routes on, running the ops through ops_handle on env (both
 * borrowed; they outlive the result). With --token-file set, a request
 * needs "Authorization: Bearer TOKEN" with one of env's tokens
 * (401 otherwise). Each op runs on a goroutine, so the loop never waits for
 * the journal. Loop thread, before serving. Returns NULL when out of
 * memory (the routes stay off). */
struct http_admin *http_admin_new(struct http *h, const struct conn_env *env);

/* Waits (at most a few seconds) for ops still running to hand their answer
 * to the loop, then frees a. Main thread, after the loop stopped and while
 * env's bridge still exists. NULL is allowed. */
void http_admin_free(struct http_admin *a);

#endif
