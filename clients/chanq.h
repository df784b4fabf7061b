/* libchanq: the C client of chanqd (newline-delimited JSON over TCP, TLS or
 * a Unix socket, see docs/protocol.md). Blocking calls on one connection,
 * and a worker (chanq_worker_*, at the end) that runs a function for each
 * job on a pool of threads. Build with `pkg-config --cflags --libs libchanq`.
 *
 * Threads: a struct chanq_conn is used by one thread at a time (any thread;
 * different connections are independent). Every call that talks to the
 * server blocks the calling thread until the answer comes, bounded by the
 * operation's own timeout plus the connection's read timeout.
 *
 * Errors: every action returns 0, or -1 with the reason in
 * chanq_last_error(c): the protocol's error code ("queue_full",
 * "not_found", ...) and message, or code "io" with errno in sys_errno for a
 * transport failure (ETIMEDOUT when the read timeout ran out). After an
 * "io" error the connection is broken: free it and connect again. After a
 * protocol error it stays usable, and the server changed nothing.
 *
 * Events: the server may send {"event":"revoked"|"cancel",...} to a
 * connection that holds reservations, and {"event":"jobs",...} (the jobs
 * chanq_consume() has it push) to a consuming one, between responses.
 * libchanq reads them
 * whenever it reads (inside any call), and either calls the function set with
 * chanq_set_event_fn() right there, or, when none is set, queues them for
 * chanq_next_event(). chanq_poll_events() reads events while no request is
 * outstanding (e.g. while a fetched job is being worked on).
 *
 * Strings returned through `char **` out-parameters are malloc'd and owned
 * by the caller (free()). json_t out-parameters are new references
 * (json_decref()). Payloads and results are passed as JSON text. */
#ifndef CHANQ_H
#define CHANQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open connection to chanqd. Opaque. */
struct chanq_conn;

/* Why the last call failed. Filled by the library; readable by the caller. */
struct chanq_error {
    char code[32];     /* protocol code ("queue_full", ...), or "io" */
    char message[256]; /* the server's message, or strerror(sys_errno) */
    int sys_errno;     /* errno of an "io" failure, else 0 */
};

/* How to connect. Zero-initialised means: no token, no client name, 10 s
 * connect timeout, no read timeout, no TLS. The strings are borrowed for
 * the chanq_connect() call only. */
struct chanq_connect_opts {
    const char *token;          /* sent in "hello" when set */
    const char *client;         /* name sent in "hello" ("client") when set */
    int64_t connect_timeout_ms; /* <= 0: 10000 */
    int64_t read_timeout_ms;    /* time the server may take to answer, on top
                                 * of the op's own waiting time; <= 0: none */
    /* TLS (chanqd --tls-listen; TCP addresses only). The server's
     * certificate is verified against tls_ca (else the system's CAs) and
     * must name the host of the address (or tls_server_name), which is
     * also sent as SNI. A libchanq built --without-tls fails to connect
     * with code "io" and EPROTONOSUPPORT when tls is set. */
    bool tls;                    /* speak TLS (1.2 or 1.3) */
    const char *tls_ca;          /* PEM file of CAs to trust; NULL: the system's */
    const char *tls_cert;        /* PEM client certificate for mutual TLS, or NULL */
    const char *tls_key;         /* its PEM private key; NULL: read from tls_cert */
    const char *tls_server_name; /* name to verify and send; NULL: the address's host */
    bool tls_insecure;           /* verify nothing: for tests only, never in
                                  * production (the CLI prints a warning) */
};

/* Connects to `server`: "HOST:PORT", "[IPV6]:PORT", "unix:PATH", or a path
 * starting with "/" or "./". Sends "hello" when opts sets a token or a client
 * name (opts may be NULL). Returns a new connection (free it with
 * chanq_conn_free()), or NULL with the reason in *err (err may be NULL).
 *
 * Several servers, "HOST:PORT,HOST:PORT,..." (a cluster, docs/cluster.md):
 * connects to the serving leader. Each node is asked "hello" (its role and
 * the leader's address; a node without a role serves), a follower's answer
 * leads to the leader at once, and while no node serves the list is tried
 * again after 25 ms, doubling to 250 ms, for up to connect_timeout_ms in all.
 * Later, a call that gets "not_leader" or "shutting_down", or whose
 * connection dies, connects to the leader again in place and is made again
 * there, when it was alone on the connection and is one of: ping, submit,
 * fetch, stats, job, wait, queues, declare, pause, resume, close, cancel,
 * chanq_request() of those (and chanq_submit_batch() makes its unanswered
 * submits again). A submit whose answer died with the leader may have been
 * committed: it is then made twice (at least once; with
 * chanq_submit_opts.key the second answers the first job, as a duplicate,
 * and makes none). Acks, nacks, touches, releases,
 * consume and kick fail as on one server ("io": the reservations and the
 * consume ended with the connection; the server gives the jobs back); the
 * next call of the list above connects again. */
struct chanq_conn *chanq_connect(const char *server, const struct chanq_connect_opts *opts,
                                 struct chanq_error *err);

/* How many times a connection of several servers was made again (0 for one
 * server). */
size_t chanq_failovers(const struct chanq_conn *c);

/* A connection of several servers: connects to the serving leader again, in
 * place (to the leader a "not_leader" error just named, first), for a
 * caller that pipelines by hand (chanq_send_submit(), chanq_consume()...):
 * the requests not answered are dropped (make them again), the consume and
 * the reservations ended with the old connection; the event function and
 * queued events stay. 0, or -1 (error set; "bad_request" for a connection
 * to one server). */
int chanq_reconnect(struct chanq_conn *c);

/* Closes the socket and frees the connection and its queued events. The
 * server then puts back every job this connection still had reserved.
 * NULL is ignored. */
void chanq_conn_free(struct chanq_conn *c);

/* The reason of the last failed call on c. Borrowed, valid until the next
 * call on c. */
const struct chanq_error *chanq_last_error(const struct chanq_conn *c);

/* The socket, for poll(2) in the caller's loop (readable: call
 * chanq_poll_events(c, 0)). Borrowed: do not read, write or close it. Over
 * TLS too: libchanq decrypts everything the socket delivered before it
 * returns, so "readable" still means "the server sent something". */
int chanq_fd(const struct chanq_conn *c);

/* What "hello" answered ({"server","version","protocol"}), or NULL when no
 * hello was sent. Borrowed, valid until chanq_conn_free(). */
const json_t *chanq_server_info(const struct chanq_conn *c);

/* {"op":"ping"}. 0 or -1. */
int chanq_ping(struct chanq_conn *c);

/* Submitting. */

/* For wait_ms: fail at once when the queue is full (sends "wait_ms":0). */
#define CHANQ_NO_WAIT ((int64_t)-1)

/* Every option of submit. Zero-initialised fields are not sent (the server's
 * defaults apply). Exactly one of queue / queues must be set.
 *
 * ABI: this struct (like every struct of this header) is allocated by the
 * caller, so its size and layout are part of libchanq's binary interface.
 * A field added to it changes the soname (libchanq.so.N, libtool's rule
 * for a changed interface: CURRENT+1, REVISION=0, AGE=0, in configure.ac),
 * so a program built against an older chanq.h never hands a smaller struct
 * to a newer library: it keeps the library it was built for, and builds
 * again to use the new fields. libchanq.so.2 is the one with key,
 * priority and run_at (and traceparent here and in struct chanq_job). */
struct chanq_submit_opts {
    const char *queue;         /* target queue */
    const char *const *queues; /* or: send-side select over these nqueues */
    size_t nqueues;
    int64_t delay_ms;     /* > 0: delayed job */
    int64_t ttr_ms;       /* > 0: time to run once reserved */
    int64_t max_attempts; /* > 0: deliveries before the job is dead */
    int64_t deadline_ms;  /* > 0: relative expiry */
    const char *parent;   /* parent job id, or NULL */
    int64_t wait_ms;      /* > 0: wait for room that long; 0: the server's
                           * --submit-wait; CHANQ_NO_WAIT: fail at once */
    const char *traceparent; /* W3C trace context to keep with the job
                              * ("00-TRACEID-PARENTID-FLAGS"), or NULL; the
                              * server refuses a malformed one (bad_request) */
    const char *key;      /* idempotency key (1..128 bytes, no control
                           * characters), or NULL: while a job submitted with
                           * it is live, and for the server's key-window
                           * after, a submit with it makes no job and answers
                           * that job's id (chanq_submit_duplicate()) */
    int priority;         /* 0..9, higher delivered first within a queue;
                           * 0: not sent (the server's default, 0) */
    int64_t run_at;       /* ms since the epoch: ready then (a past time:
                           * now), at most 365 days ahead; not with
                           * delay_ms; 0: not sent */
};

/* The server checks priority, run_at and key, not libchanq: a value out of
 * range (priority not 0..9, a run_at more than 365 days ahead, run_at with
 * delay_ms, a key too long) fails with "bad_request" and the server's
 * message, and makes no job. */

/* Submits one job. `payload` is JSON text (any JSON value; NULL means
 * null); text spanning lines is re-encoded compactly. On success stores the
 * new id in *id_out and, when queue_out is not NULL, the queue it went to
 * in *queue_out (both malloc'd, the caller frees them). 0 or -1; on -1
 * nothing is stored. Blocks while the queue is full (see wait_ms). */
int chanq_submit(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *payload,
                 char **id_out, char **queue_out);

/* Whether the last submit answer read on c (chanq_submit(),
 * chanq_recv_submit()) named a job that already held the submit's key
 * ({"duplicate":true}: no job was made; a queue_out is then set to NULL,
 * as the server does not say where that job is). false after any other
 * answer. */
bool chanq_submit_duplicate(const struct chanq_conn *c);

/* The outcome of one submit of a batch. */
struct chanq_submit_result {
    char *id;                 /* malloc'd id, or NULL when this one failed */
    char *queue;              /* malloc'd queue it went to, or NULL */
    struct chanq_error error; /* why it failed, when id is NULL */
    bool duplicate;           /* id is the job that held the key (no job made) */
};

/* Pipelined batch submit: writes the n submits without waiting (at most
 * `window` unanswered at a time; <= 0 means 256) and reads the answers in
 * order, into results[0..n-1] (the caller provides the array and frees each
 * id and queue with chanq_submit_results_free()). Returns the number of jobs
 * submitted (0..n; failed ones have id NULL and their error set), or -1 on
 * an "io" error (results then hold what was answered before it). */
long chanq_submit_batch(struct chanq_conn *c, const struct chanq_submit_opts *o,
                        const char *const *payloads, size_t n, long window,
                        struct chanq_submit_result *results);

/* Frees the strings inside results[0..n-1] (not the array itself). */
void chanq_submit_results_free(struct chanq_submit_result *results, size_t n);

/* Pipelining by hand (what chanq_submit_batch is made of):
 * chanq_send_submit() only appends the request to the output buffer;
 * chanq_flush() writes everything buffered; chanq_recv_submit() reads the
 * answer to the oldest unanswered request, which must be a submit. Answers
 * come back in request order. chanq_pending() counts unanswered requests.
 * With several servers, only a submit alone and unwritten when
 * chanq_recv_submit() is called is made again on its own after a failover;
 * else see chanq_reconnect(). */
int chanq_send_submit(struct chanq_conn *c, const struct chanq_submit_opts *o,
                      const char *payload);
int chanq_flush(struct chanq_conn *c);
int chanq_recv_submit(struct chanq_conn *c, char **id_out, char **queue_out);
size_t chanq_pending(const struct chanq_conn *c);

/* The same for acks: chanq_send_ack() buffers an ack (result: JSON text or
 * NULL); chanq_recv_ok() reads the oldest unanswered answer of any op and
 * returns 0 when it says ok, -1 otherwise (error set). */
int chanq_send_ack(struct chanq_conn *c, const char *id, const char *result);
int chanq_recv_ok(struct chanq_conn *c);

/* Working. */

/* A fetched job. Fields are read-only for the caller; free a fetch's array
 * with chanq_jobs_free(). */
struct chanq_job {
    char *id;         /* job id */
    char *queue;      /* queue it came from */
    char *payload;    /* compact JSON text */
    int64_t attempt;  /* 1 on first delivery */
    int64_t ttr_ms;   /* the reservation lasts this long unless touched */
    int64_t deadline; /* absolute expiry in ms since the epoch, 0 = none */
    char *traceparent; /* the W3C trace context it was submitted with, or NULL */
};

/* For timeout_ms: wait until a job comes (or the connection ends). */
#define CHANQ_FOREVER ((int64_t)-1)

/* Fetch options. queues/nqueues are required. */
struct chanq_fetch_opts {
    const char *const *queues; /* wait on any of these */
    size_t nqueues;
    int64_t timeout_ms; /* 0: never wait; > 0: ms; CHANQ_FOREVER: no limit */
    int64_t count;      /* <= 0: 1; up to this many jobs */
    bool strict;        /* the first listed ready queue wins */
};

/* Reserves up to o->count jobs. Stores a malloc'd array in *jobs_out and its
 * length in *n_out (0 when the time ran out; *jobs_out is then NULL). The
 * caller frees it with chanq_jobs_free(). 0 or -1 (code "closed" when every
 * listed queue is closed and drained). */
int chanq_fetch(struct chanq_conn *c, const struct chanq_fetch_opts *o,
                struct chanq_job **jobs_out, size_t *n_out);

/* Frees an array returned by chanq_fetch() and everything in it. */
void chanq_jobs_free(struct chanq_job *jobs, size_t n);

/* Consume options. */
struct chanq_consume_opts {
    const char *const *queues; /* the queues to take from; none on a later
                                * call keeps them (only prefetch changes) */
    size_t nqueues;
    int64_t prefetch; /* unacked jobs the connection may hold; <= 0: 1 at
                       * first, unchanged later */
    bool strict;      /* with queues: the first listed ready queue wins */
};

/* Subscribes c to the queues: from now on the server pushes jobs to it as
 * "jobs" events (struct chanq_event's jobs), each reserved as if fetched,
 * as long as c holds fewer than prefetch jobs. Ack them (chanq_send_ack(),
 * chanq_send_ack_many()) without waiting for each answer: a consuming
 * worker spends no round trip per job. Called again, changes the settings.
 * Events may be delivered before it returns. The consume ends with
 * chanq_cancel_consume(), the connection, or a "consume_end" event (reason
 * "closed": every queue closed and drained; "shutting_down"). 0 or -1
 * ("unknown_op" from a server without it). */
int chanq_consume(struct chanq_conn *c, const struct chanq_consume_opts *o);

/* Stops c's consume: no "jobs" event is delivered after it returns. The
 * jobs pushed before stay reserved to c. 0 or -1. */
int chanq_cancel_consume(struct chanq_conn *c);

/* Buffers an ack of several reserved jobs (1 to 1000 ids, without
 * results), like chanq_send_ack(); chanq_recv_many() reads its answer. */
int chanq_send_ack_many(struct chanq_conn *c, const char *const *ids, size_t n);

/* Reads the oldest unanswered answer, the one to an ack (or nack) of
 * several ids: stores how many jobs it did in *done_out and, when some
 * were not, its "errors" array ([{"id":..,"code":..,"message":..}], a new
 * reference; NULL when all were done) in *failed_out (either may be NULL).
 * 0, or -1 when the request as a whole failed (error set). */
int chanq_recv_many(struct chanq_conn *c, int64_t *done_out, json_t **failed_out);

/* chanq_send_ack_many() and chanq_recv_many(). */
int chanq_ack_many(struct chanq_conn *c, const char *const *ids, size_t n, int64_t *done_out,
                   json_t **failed_out);

/* Marks a reserved job done; `result` is JSON text or NULL. 0 or -1
 * ("not_reserved", "cancelled", "not_found"). */
int chanq_ack(struct chanq_conn *c, const char *id, const char *result);

/* Gives a reserved job back. `error` (may be NULL) is stored with the job;
 * delay_ms < 0 lets the server back off exponentially; dead buries it. On
 * success stores the new state ("queued", "delayed" or "dead") in *state_out
 * when it is not NULL (malloc'd). 0 or -1. */
int chanq_nack(struct chanq_conn *c, const char *id, const char *error, int64_t delay_ms,
               bool dead, char **state_out);

/* Gives a reserved job back without counting this delivery, for a worker
 * that could not even start on it: the job goes to the back of its queue
 * at once with its attempt number as before the fetch, no error recorded.
 * 0 or -1 ("not_reserved", "cancelled", "not_found"; "unknown_op" from a
 * server without the op). */
int chanq_release(struct chanq_conn *c, const char *id);

/* Extends a reservation to ttr_ms from now (<= 0: the job's ttr). 0 or -1. */
int chanq_touch(struct chanq_conn *c, const char *id, int64_t ttr_ms);

/* Jobs. */

/* Cancels a job and its descendants. Stores how many became cancelled in
 * *n_out when not NULL. 0 or -1. */
int chanq_cancel(struct chanq_conn *c, const char *id, int64_t *n_out);

/* Waits up to timeout_ms (CHANQ_FOREVER: no limit) for the job to be final
 * and stores the answer ({"ok":true,"state":..,"result":..,"error":..}) in
 * *out: a new reference. 0 or -1 (code "timeout"). */
int chanq_wait(struct chanq_conn *c, const char *id, int64_t timeout_ms, json_t **out);

/* Stores the job's description (the "job" object) in *out: a new
 * reference. 0 or -1 ("not_found"). */
int chanq_job_info(struct chanq_conn *c, const char *id, json_t **out);

/* Queues. */

/* Declares (creates or checks) a queue. capacity < 0, ttr_ms <= 0 and
 * max_attempts <= 0 are not sent; capacity 0 is an unbuffered queue. When out
 * is not NULL, stores the "queue" object there (new reference). 0 or -1
 * ("conflict"). */
int chanq_declare(struct chanq_conn *c, const char *queue, int64_t capacity, int64_t ttr_ms,
                  int64_t max_attempts, json_t **out);

/* close / pause / resume a queue. 0 or -1 ("not_found"). */
int chanq_close_queue(struct chanq_conn *c, const char *queue);
int chanq_pause(struct chanq_conn *c, const char *queue);
int chanq_resume(struct chanq_conn *c, const char *queue);

/* Moves up to count (<= 0: all) dead jobs back to queued; stores how many in
 * *n_out when not NULL. 0 or -1. */
int chanq_kick(struct chanq_conn *c, const char *queue, int64_t count, int64_t *n_out);

/* Stats of one queue (queue != NULL: the "queue" object) or of the server
 * (queue == NULL: the "server" object), stored in *out: a new reference.
 * 0 or -1. */
int chanq_stats(struct chanq_conn *c, const char *queue, json_t **out);

/* Every queue: the "queues" object (name -> fields), a new reference in
 * *out, gathered page by page. 0 or -1. */
int chanq_queues(struct chanq_conn *c, json_t **out);

/* Schedules (docs/scheduling.md): named cron or interval definitions
 * whose firings are jobs. */
struct chanq_schedule_spec {
    const char *cron;     /* a cron expression or "@every DURATION" (required) */
    const char *tz;       /* IANA zone ("Europe/Berlin"); NULL: UTC */
    const char *queue;    /* where its jobs go (required) */
    const char *payload;  /* the jobs' payload template, JSON text (required) */
    int64_t ttr_ms;       /* <= 0: the queue's */
    int64_t max_attempts; /* <= 0: the queue's */
    bool missed_once;     /* after a downtime: one job for the missed times (else none) */
    bool replace;         /* replace a schedule of that name (else: conflict if it differs) */
};

/* Creates (or replaces) schedule `name`; when out is not NULL, stores its
 * "schedule" object there (new reference). 0 or -1 ("bad_request" for a
 * bad expression or zone, "conflict", "limit"). */
int chanq_schedule_add(struct chanq_conn *c, const char *name,
                       const struct chanq_schedule_spec *spec, json_t **out);
/* Pauses, resumes or deletes schedule `name`. 0 or -1 ("not_found"). */
int chanq_schedule_pause(struct chanq_conn *c, const char *name);
int chanq_schedule_resume(struct chanq_conn *c, const char *name);
int chanq_schedule_delete(struct chanq_conn *c, const char *name);
/* Every schedule: the "schedules" array, a new reference in *out. 0 or -1. */
int chanq_schedule_list(struct chanq_conn *c, json_t **out);
/* Operator ops (docs/protocol.md, "Operator ops"). */

/* One page of list. queue and state ("queued", "delayed", "reserved",
 * "dead", "finished") are required; zero-initialised, the rest means
 * oldest first, from the start, the server's page size (100), no
 * payloads. */
struct chanq_list_opts {
    const char *queue;
    const char *state;
    bool newest;        /* newest (highest id) first */
    const char *cursor; /* the previous page's next; NULL: from the start */
    int64_t limit;      /* 1..1000; <= 0: the server's default */
    bool payload;       /* include each job's payload */
};

/* Lists one page: the "jobs" array in *jobs_out (new reference) and, when
 * more may follow, the cursor of the next page in *next_out (malloc'd;
 * NULL when the listing is complete; next_out may be NULL). 0 or -1
 * ("not_found", "bad_request"). */
int chanq_list(struct chanq_conn *c, const struct chanq_list_opts *o, json_t **jobs_out,
               char **next_out);

/* A dead job runs again with fresh attempts, a delayed one runs now.
 * 0 or -1 ("conflict" for a job in another state, "not_found"). */
int chanq_retry(struct chanq_conn *c, const char *id);

/* Deletes a job in any state; a reserved one only with force (its holder
 * gets a "cancel" event). Stores the state it was in in *state_out when
 * not NULL (malloc'd). 0 or -1 ("conflict", "not_found"). */
int chanq_delete(struct chanq_conn *c, const char *id, bool force, char **state_out);

/* Deletes every job of the queue in state ("queued", "delayed", "dead",
 * "finished"); stores how many in *n_out when not NULL. 0 or -1. */
int chanq_purge(struct chanq_conn *c, const char *queue, const char *state, int64_t *n_out);

/* Deletes a queue and its jobs; stores how many jobs in *n_out when not
 * NULL. Requests waiting on it are answered "closed". 0 or -1. */
int chanq_queue_delete(struct chanq_conn *c, const char *queue, int64_t *n_out);

/* Changes an existing queue's settings: capacity < 0, ttr_ms <= 0 and
 * max_attempts <= 0 are left as they are (at least one must be given).
 * When out is not NULL, stores the "queue" object there (new reference).
 * 0 or -1 ("not_found", "bad_request"). */
int chanq_configure(struct chanq_conn *c, const char *queue, int64_t capacity, int64_t ttr_ms,
                    int64_t max_attempts, json_t **out);

/* The open connections: the "clients" array (new reference) in *out.
 * 0 or -1. */
int chanq_clients(struct chanq_conn *c, json_t **out);

/* Any request: `req` (a JSON object with "op"; borrowed) is sent as is and
 * the whole answer is stored in *out (new reference), also when it is an
 * error answer. Returns 0 when the answer says ok, -1 otherwise (error set;
 * *out is NULL only after an "io" error). */
int chanq_request(struct chanq_conn *c, const json_t *req, json_t **out);

/* Events. */

/* A server event. */
struct chanq_event {
    char *type;   /* "revoked", "cancel", "jobs", "consume_end" (or a newer kind) */
    char *id;     /* revoked, cancel: the job it is about; else NULL */
    char *reason; /* revoked: "ttr" or "deadline"; consume_end: "closed" or
                   * "shutting_down"; else NULL */
    struct chanq_job *jobs; /* jobs: the jobs pushed, owned by the event
                             * (copy what outlives it); else NULL */
    size_t njobs;
};

/* Called for each event as soon as any libchanq call on c reads it, on the
 * calling thread, inside that call. ev is borrowed for the call only. The
 * function must not call libchanq on c. */
typedef void chanq_event_fn(const struct chanq_event *ev, void *arg);

/* Sets (fn != NULL) or clears the event function of c. While none is set,
 * events are queued for chanq_next_event(). */
void chanq_set_event_fn(struct chanq_conn *c, chanq_event_fn *fn, void *arg);

/* Pops the oldest queued event. Returns a new event (free it with
 * chanq_event_free()), or NULL when none is queued. Never blocks. */
struct chanq_event *chanq_next_event(struct chanq_conn *c);

/* Frees an event from chanq_next_event(). NULL is ignored. */
void chanq_event_free(struct chanq_event *ev);

/* Reads what the server sent, waiting up to timeout_ms (0: don't wait; < 0:
 * no limit) for the first byte, and delivers the events in it. Only while
 * no request is unanswered. Returns the number of events delivered, or -1
 * (code "io"; EPIPE when the server closed the connection). */
int chanq_poll_events(struct chanq_conn *c, int64_t timeout_ms);

/* The worker: a pool of slot threads calling a job function for each job of
 * the listed queues, like `chanq work` does with a command, on one
 * connection that consumes (chanq_consume(), prefetch: the number of
 * slots): the server pushes jobs to it as they come, so no slot ever waits
 * to ask for one.
 *
 *   - an I/O thread owns the connection: it takes the pushed jobs, sends
 *     what the slots settle (the acks without a result of several slots in
 *     one request), touches running jobs every half ttr (or touch_ms) and
 *     reads the server's events;
 *   - the function's verdict acks (with its result), nacks (with its error
 *     text), buries or releases the job; the slot waits for the answer, then
 *     calls the outcome hook;
 *   - a "cancel" or "revoked" event, a refused touch or a broken connection
 *     marks the job cancelled (chanq_work_cancelled(), chanq_work_cancel_fd());
 *     the server took it back, so it is then neither acked nor nacked (a job
 *     taken back before it started is not started);
 *   - chanq_worker_stop() (from a signal handler too) stops taking jobs
 *     (cancel_consume): running jobs finish and are acked or nacked, jobs
 *     pushed but not started are released, then chanq_worker_run() returns.
 *
 * The server must know `consume` (chanqd since the version that has it);
 * the worker logs and connects again otherwise. Call chanq_worker_run() from
 * one thread; everything else on a worker may be called from any thread
 * while it runs. The hooks (fn, outcome, ready, log) run on the worker's
 * threads, concurrently when concurrency > 1: fn and outcome on the job's
 * slot, ready on a slot or the I/O thread, log on either. */
struct chanq_worker;

/* One job as the job function sees it. Opaque; valid during the call only. */
struct chanq_work;

/* What the job function returns. */
enum chanq_verdict {
    CHANQ_WORK_ACK = 0, /* done: ack, with the result set by chanq_work_set_result() */
    CHANQ_WORK_FAIL,    /* failed: nack with chanq_work_set_error()'s text; the server
                         * retries it after its backoff (or chanq_work_set_retry()'s
                         * delay) until max_attempts, then it is dead */
    CHANQ_WORK_BURY,    /* failed for good: nack it straight to dead */
    CHANQ_WORK_RELEASE, /* not started (a missing resource, not the job's fault):
                         * back to its queue at once, this delivery not counted */
};

/* Runs one job. Called on a slot's thread; may take as long as it needs (the
 * job is touched meanwhile) and should watch chanq_work_cancelled(). */
typedef enum chanq_verdict chanq_work_fn(struct chanq_work *w, const struct chanq_job *job,
                                         void *arg);

/* Sets the ack's result: JSON text, copied (NULL: none). 0, or -1 when the
 * text is not JSON or memory ran out (the result is then unchanged). */
int chanq_work_set_result(struct chanq_work *w, const char *json);

/* Sets the nack's error text (printf-like; a later call replaces it).
 * Without one a failed job is nacked with "job function failed". */
void chanq_work_set_error(struct chanq_work *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For CHANQ_WORK_FAIL: retry after delay_ms instead of the server's backoff. */
void chanq_work_set_retry(struct chanq_work *w, int64_t delay_ms);

/* Why the job should stop: NULL while it may run on; "cancel" (the job was
 * cancelled), "revoked" (its ttr or deadline ran out, or a touch was
 * refused) and "lost" (the connection broke) mean the server took it back
 * and the verdict is ignored; "stop" means chanq_worker_stop(w, true): the
 * worker is shutting down and wants running jobs to end early (the verdict
 * still counts). Borrowed, static. */
const char *chanq_work_cancelled(const struct chanq_work *w);

/* An fd that becomes readable once chanq_work_cancelled() is not NULL, for
 * poll(2) in a job function that waits on other fds. Borrowed: do not read
 * or close it. */
int chanq_work_cancel_fd(const struct chanq_work *w);

/* Which slot runs the job, 0 .. concurrency-1: an index for the caller's
 * per-slot state. */
int chanq_work_slot(const struct chanq_work *w);

/* What became of a job after its function returned. */
enum chanq_outcome {
    CHANQ_ACKED,     /* acked */
    CHANQ_NACKED,    /* nacked, to be retried or dead as the server decided */
    CHANQ_BURIED,    /* nacked dead */
    CHANQ_RELEASED,  /* released: queued again, this delivery not counted */
    CHANQ_CANCELLED, /* cancelled while it ran: left alone */
    CHANQ_REVOKED,   /* reservation revoked (ttr, deadline, refused touch): left alone */
    CHANQ_LOST,      /* connection broken: the server gives the job back */
    CHANQ_REFUSED,   /* the ack, nack or release was refused (detail says why) */
};

/* An outcome, for logs and counters. */
struct chanq_work_outcome {
    enum chanq_outcome what;
    const char *name;   /* "acked", "nacked", ... (static) */
    const char *detail; /* the nack's error text, the revoked event's reason,
                         * or "code: message" of a refusal; "" when none */
    int slot;           /* as chanq_work_slot() */
    int64_t run_ms;     /* how long the job function ran */
};

/* Called after each job, on its slot's thread, once the server answered
 * the verdict. Arguments are borrowed for the call. */
typedef void chanq_outcome_fn(const struct chanq_job *job, const struct chanq_work_outcome *o,
                              void *arg);

/* Called before connecting, before each job, and every half second while
 * no job runs or waits; returning false stops the worker like
 * chanq_worker_stop(w, false) (e.g. when what the jobs need is gone), and
 * the job it was asked for is released unstarted. slot is the job's slot,
 * 0 for the other calls. */
typedef bool chanq_ready_fn(int slot, void *arg);

/* Called with a line on what went wrong and what the worker does about it
 * (a failed connect or a broken connection, connected again after a
 * second). */
typedef void chanq_log_fn(const char *msg, void *arg);

struct chanq_worker_opts {
    const char *const *queues; /* required: take jobs from these (copied) */
    size_t nqueues;
    bool strict;              /* the first listed ready queue wins (priorities) */
    int concurrency;          /* slots (threads); <= 0: 1; at most 1000 */
    int64_t touch_ms;         /* touch running jobs this often; <= 0: half their ttr */
    chanq_work_fn *fn;        /* required */
    chanq_outcome_fn *outcome; /* optional */
    chanq_ready_fn *ready;     /* optional */
    chanq_log_fn *log;         /* optional; without it problems are retried silently */
    void *arg;                 /* passed to every hook */
};

/* Makes a worker for `server` (as chanq_connect(); opts may be NULL, its
 * strings are copied). Connects nothing yet. Returns a new worker (free it
 * with chanq_worker_free()), or NULL with the reason in *err ("bad_request"
 * for missing queues or fn; "io" with ENOMEM or EMFILE). */
struct chanq_worker *chanq_worker_new(const char *server, const struct chanq_connect_opts *opts,
                                      const struct chanq_worker_opts *o, struct chanq_error *err);

/* Runs the worker until chanq_worker_stop(), a ready hook saying false, or
 * every listed queue closed and drained. A connection that fails is made
 * again a second later (said to the log hook). Returns 0 once every slot has
 * finished its job and the connection is closed, or -1 with err set (err may be
 * NULL; "io" when a thread could not start, "bad_request" on a second call):
 * nothing then runs. Blocks the calling thread. */
int chanq_worker_run(struct chanq_worker *w, struct chanq_error *err);

/* Stops the worker: no more jobs taken, a job pushed meanwhile is released
 * unstarted, running jobs finish, then chanq_worker_run() returns. With
 * cancel_running, running jobs also see chanq_work_cancelled() == "stop".
 * Any thread, and async-signal-safe: call it from a SIGTERM handler. Before
 * chanq_worker_run(), it makes run return at once. */
void chanq_worker_stop(struct chanq_worker *w, bool cancel_running);

/* Frees a worker that is not running (after chanq_worker_run() returned, or
 * one never run). NULL is ignored. */
void chanq_worker_free(struct chanq_worker *w);

#ifdef __cplusplus
}
#endif

#endif
