/* chanq work: run a command for each job, with a pool of worker goroutines
 * (core/), Go's classic worker pool:
 *
 *   results := make(chan outcome, N); var wg WaitGroup
 *   for i := 0; i < N; i++ { wg.Add(1); go worker() }   // fetch, run, ack
 *   go reporter()                                         // range results
 *   wg.Wait(); close(results)
 *
 * In Go the workers would range over a jobs channel; here that channel is
 * the server's queue: each worker fetches on its own connection (a
 * reservation belongs to the connection that fetched, and the cancel/revoked
 * events for it arrive there). A closed and drained queue ends the workers'
 * loops, as closing the jobs channel ends `for j := range jobs`. SIGTERM
 * cancels the pool's context (Go's cancellation by close): workers stop
 * fetching and finish what they run.
 *
 * core/ has no poller for file descriptors: a worker waiting in poll(2) for
 * its command and its connection holds its thread, so the scheduler gets one
 * thread per worker plus two for the reporter and main goroutines, and a
 * worker yields after handing an outcome over (see worker_main). */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/cli/child.h"
#include "clients/cli/cli.h"
#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"

static const char work_usage[] =
    "Usage: chanq work QUEUE... [OPTIONS] -- CMD [ARGS...]\n"
    "Runs CMD once per job fetched from any of the queues, N at a time. The\n"
    "job's payload (JSON) is on CMD's stdin; CHANQ_JOB_ID, CHANQ_ATTEMPT and\n"
    "CHANQ_QUEUE are set. Exit status 0 acks the job with CMD's stdout as the\n"
    "result (as JSON if it parses, else as a string); any other status nacks it\n"
    "with the tail of stderr as the error. When the job is cancelled or its\n"
    "reservation revoked (ttr, deadline), CMD's process group gets SIGTERM, then\n"
    "SIGKILL after the grace period. Long jobs are touched automatically.\n"
    "SIGTERM or SIGINT: stop fetching, let running commands finish, exit 0\n"
    "(a second signal terminates the running commands). Also exits when every\n"
    "queue is closed and drained. Exits 5, fetching nothing more, when CMD\n"
    "cannot be started (checked before every fetch, like execvp finds it); a\n"
    "job fetched for a CMD that then fails to start is released, not nacked:\n"
    "back in its queue at once, the delivery not counted as an attempt.\n"
    "\nOptions:\n"
    "  -c, --concurrency N  commands running at once (default 1)\n"
    "  --grace-ms MS        SIGTERM to SIGKILL delay (default 5000)\n"
    "  --touch-ms MS        touch running jobs every MS (default: half the ttr)\n"
    "  --strict             fetch from the first listed ready queue (priorities)\n"
    "  -q, --quiet          do not log each job on stderr\n";

enum { OPT_GRACE = OPT_FIRST_OWN, OPT_TOUCH, OPT_STRICT };

#define FETCH_POLL_MS 500   /* how often an idle worker looks at the stop flag */
#define LOOP_TICK_MS 100    /* bound of one poll while a command runs */
#define RECONNECT_MS 1000

/* What a worker did with one job, for the reporter. */
enum verdict { ACKED, NACKED, CANCELLED, REVOKED, LOST, FAILED, NOT_STARTED, NOT_RELEASED };
static const char *const verdict_names[] = {"acked",
                                            "nacked",
                                            "cancelled: command stopped",
                                            "revoked: command stopped",
                                            "connection lost",
                                            "failed",
                                            "not started, released",
                                            "not started, given back by closing the connection"};

struct outcome {
    char id[80];         /* job id (cut if longer) */
    int64_t attempt;     /* its delivery number */
    enum verdict what;   /* what happened */
    int64_t ms;          /* how long the command ran */
    char note[200];      /* exit status / server error */
};

/* The pool, shared read-only by the goroutines (counters are atomic). */
struct pool {
    struct cli g;            /* server, token */
    char **queues;           /* queues to fetch from */
    size_t nqueues;
    char **cmd;              /* CMD ARGS..., NULL-terminated */
    int concurrency;         /* worker goroutines */
    int64_t grace_ms;        /* SIGTERM -> SIGKILL */
    int64_t touch_ms;        /* touch interval, 0: ttr/2 */
    bool strict;             /* fetch priority order */
    bool quiet;              /* no per-job log */
    struct ctx *ctx;         /* cancelled on SIGTERM: stop fetching */
    atomic_bool hard_stop;   /* second signal: stop running commands too */
    struct chan *results;    /* struct outcome: workers -> reporter */
    struct wg *wg;           /* running workers */
    struct chan *reported;   /* closed by the reporter when results drained */
    pthread_t sig_thread;    /* sigwait()s for SIGTERM/SIGINT */
    atomic_long jobs_done;   /* acked + nacked, for the exit message */
    atomic_bool cannot_run;  /* CMD failed to start: stopping, exit 5 */
};

/* One worker's state while it runs a job; the event function writes it. */
struct worker {
    struct pool *pool;
    int n;                   /* worker number, for logs */
    const char *job_id;      /* job being run, or NULL */
    const char *stop_reason; /* "cancel" / "revoked" once the server took it back */
};

static void
on_event(const struct chanq_event *ev, void *arg)
{
    struct worker *w = arg;
    if (!w->job_id || !ev->id || strcmp(ev->id, w->job_id) != 0)
        return;
    if (ev->type && strcmp(ev->type, "cancel") == 0)
        w->stop_reason = "cancel";
    else if (ev->type && strcmp(ev->type, "revoked") == 0)
        w->stop_reason = "revoked";
}

/* stdout -> ack result text: JSON when it parses, else a JSON string.
 * Returns malloc'd JSON text, or NULL for an empty output. */
static char *
result_text(const char *out, size_t len)
{
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' '))
        len--;
    if (len == 0)
        return NULL;
    json_t *v = json_loadb(out, len, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_stringn(out, len);
    if (!v) /* not UTF-8 */
        v = json_string("(output is not UTF-8)");
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return text;
}

static void
error_text(char *buf, size_t n, int status, const char *tail)
{
    size_t len = strlen(tail);
    while (len > 0 && (tail[len - 1] == '\n' || tail[len - 1] == ' '))
        len--;
    int off = WIFSIGNALED(status) ? snprintf(buf, n, "killed by signal %d", WTERMSIG(status))
                                  : snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    if (len > 0 && (size_t)off + 3 < n)
        snprintf(buf + off, n - (size_t)off, ": %.*s", (int)len, tail);
}

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Watches the command, the connection's events, touches and kill timers
 * until the command is done. Returns false when the connection broke. */
static bool
supervise(struct worker *w, struct chanq_conn *c, struct child *ch, const struct chanq_job *job)
{
    struct pool *p = w->pool;
    int64_t interval = p->touch_ms > 0 ? p->touch_ms : (job->ttr_ms > 0 ? job->ttr_ms / 2 : 15000);
    int64_t next_touch = timer_now_ms() + (interval > 0 ? interval : 1);
    int64_t kill_at = -1;
    bool conn_ok = true;
    while (!child_done(ch)) {
        struct pollfd pf[5];
        int n = child_pollfds(ch, pf);
        pf[n] = (struct pollfd){.fd = chanq_fd(c), .events = POLLIN};
        int64_t now = timer_now_ms();
        int64_t wait = min64(LOOP_TICK_MS, next_touch - now);
        if (kill_at >= 0)
            wait = min64(wait, kill_at - now);
        poll(pf, (nfds_t)(n + (conn_ok ? 1 : 0)), wait < 0 ? 0 : (int)wait);
        child_pump(ch, pf, n);
        if (conn_ok && pf[n].revents && chanq_poll_events(c, 0) < 0) {
            conn_ok = false;
            w->stop_reason = "lost";
        }
        now = timer_now_ms();
        if ((w->stop_reason || atomic_load(&p->hard_stop)) && kill_at < 0) {
            child_signal(ch, SIGTERM);
            kill_at = now + p->grace_ms;
        } else if (kill_at >= 0 && now >= kill_at) {
            child_signal(ch, SIGKILL);
            kill_at = INT64_MAX / 2;
        }
        if (conn_ok && !w->stop_reason && now >= next_touch) {
            if (chanq_touch(c, job->id, job->ttr_ms) < 0 &&
                strcmp(chanq_last_error(c)->code, "io") == 0) {
                conn_ok = false;
                w->stop_reason = "lost";
            }
            next_touch = now + interval;
        }
    }
    return conn_ok;
}

/* CMD cannot be started: every job fetched for it would fail, so stop
 * fetching like on SIGTERM (running commands finish) and exit 5. Says why
 * once, even with --quiet. */
static void
pool_cannot_run(struct pool *p, const char *why)
{
    if (!atomic_exchange(&p->cannot_run, true))
        fprintf(stderr, "chanq work: cannot run %s: %s; stopping\n", p->cmd[0], why);
    ctx_cancel(p->ctx);
}

/* Gives back a job that was fetched but never run: release, so that the
 * delivery does not count as an attempt. False when it could not (a server
 * without release, a broken connection): the caller then closes the
 * connection, which gives the job back with the delivery counted. */
static bool
release_job(struct worker *w, struct chanq_conn *c, const char *id)
{
    if (chanq_release(c, id) == 0)
        return true;
    fprintf(stderr, "chanq work: worker %d: release %s: %s: %s\n", w->n, id,
            chanq_last_error(c)->code, chanq_last_error(c)->message);
    return false;
}

/* Runs the command for one job and acks or nacks it. A command that does
 * not start is neither: the job did not fail, so it is released and no
 * attempt counts against it (see NOT_STARTED in worker_main). */
static void
run_job(struct worker *w, struct chanq_conn *c, const struct chanq_job *job, struct outcome *o)
{
    struct pool *p = w->pool;
    char env_id[160], env_attempt[48], env_queue[160];
    snprintf(env_id, sizeof env_id, "CHANQ_JOB_ID=%s", job->id);
    snprintf(env_attempt, sizeof env_attempt, "CHANQ_ATTEMPT=%lld", (long long)job->attempt);
    snprintf(env_queue, sizeof env_queue, "CHANQ_QUEUE=%s", job->queue ? job->queue : "");
    char *env[] = {env_id, env_attempt, env_queue, NULL};
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", job->id);
    o->attempt = job->attempt;
    int64_t t0 = timer_now_ms();
    struct child *ch = child_spawn(p->cmd, env, job->payload, strlen(job->payload));
    if (!ch) {
        snprintf(o->note, sizeof o->note, "%s", strerror(errno));
        o->what = release_job(w, c, job->id) ? NOT_STARTED : NOT_RELEASED;
        return;
    }
    w->job_id = job->id;
    w->stop_reason = NULL;
    bool conn_ok = supervise(w, c, ch, job);
    o->ms = timer_now_ms() - t0;
    int status = child_status(ch);
    if (!conn_ok) {
        o->what = LOST;
    } else if (w->stop_reason) {
        o->what = w->stop_reason[0] == 'c' ? CANCELLED : REVOKED;
        error_text(o->note, sizeof o->note, status, "");
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        size_t len;
        const char *out = child_stdout(ch, &len);
        char *result = result_text(out, len);
        o->what = chanq_ack(c, job->id, result) == 0 ? ACKED : FAILED;
        free(result);
        snprintf(o->note, sizeof o->note, "exit status 0");
    } else {
        error_text(o->note, sizeof o->note, status, child_stderr_tail(ch));
        o->what = chanq_nack(c, job->id, o->note, -1, false, NULL) == 0 ? NACKED : FAILED;
    }
    if (o->what == FAILED)
        snprintf(o->note, sizeof o->note, "%.30s: %.160s", chanq_last_error(c)->code,
                 chanq_last_error(c)->message);
    w->job_id = NULL;
    child_free(ch);
}

static void
worker_main(void *arg)
{
    struct worker *w = arg;
    struct pool *p = w->pool;
    struct chanq_conn *c = NULL;
    struct chanq_fetch_opts fo = {.queues = (const char *const *)p->queues,
                                  .nqueues = p->nqueues,
                                  .timeout_ms = FETCH_POLL_MS,
                                  .count = 1,
                                  .strict = p->strict};
    char why[512];
    while (ctx_err(p->ctx) == 0) {
        /* Before each fetch, so a CMD deleted while the pool idles costs no
         * job a delivery. */
        if (child_check_command(p->cmd[0], why, sizeof why) < 0) {
            pool_cannot_run(p, why);
            break;
        }
        if (!c) {
            struct chanq_connect_opts co;
            cli_connect_opts(&p->g, &co);
            co.client = "chanq-work";
            struct chanq_error err;
            c = chanq_connect(p->g.server, &co, &err);
            if (!c) {
                fprintf(stderr, "chanq work: worker %d: %s: %s (retrying)\n", w->n, err.code,
                        err.message);
                go_sleep(RECONNECT_MS, p->ctx);
                continue;
            }
            chanq_set_event_fn(c, on_event, w);
        }
        struct chanq_job *jobs;
        size_t n;
        if (chanq_fetch(c, &fo, &jobs, &n) < 0) {
            const struct chanq_error *e = chanq_last_error(c);
            if (strcmp(e->code, "closed") == 0)
                break; /* every queue closed and drained: the range ends */
            fprintf(stderr, "chanq work: worker %d: fetch: %s: %s\n", w->n, e->code, e->message);
            chanq_conn_free(c);
            c = NULL;
            go_sleep(RECONNECT_MS, p->ctx);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            struct outcome o;
            run_job(w, c, &jobs[i], &o);
            chan_send(p->results, &o, NULL);
            /* The reporter was readied on this thread's run queue; let it
             * run now, before this goroutine blocks its thread in poll(2). */
            go_yield();
            bool not_started = o.what == NOT_STARTED || o.what == NOT_RELEASED;
            /* The rest of the batch will not run either: released too. */
            bool given_back = o.what == NOT_STARTED;
            for (size_t k = i + 1; not_started && given_back && k < n; k++)
                given_back = release_job(w, c, jobs[k].id);
            if (o.what == LOST || (not_started && !given_back)) {
                /* Closing the connection gives what it still holds back at
                 * once, without an error or a retry delay, but counted
                 * (docs/clients.md). */
                chanq_conn_free(c);
                c = NULL;
            }
            if (not_started) {
                pool_cannot_run(p, o.note);
                break;
            }
        }
        chanq_jobs_free(jobs, n);
    }
    chanq_conn_free(c);
    wg_done(p->wg);
}

/* Logs every outcome until the workers are gone and results is closed. */
static void
reporter_main(void *arg)
{
    struct pool *p = arg;
    struct outcome o;
    while (chan_recv(p->results, &o, NULL) == 0) {
        if (o.what == ACKED || o.what == NACKED)
            atomic_fetch_add(&p->jobs_done, 1);
        if (!p->quiet)
            fprintf(stderr, "chanq work: job %s attempt %lld: %s (%s, %lld ms)\n", o.id,
                    (long long)o.attempt, verdict_names[o.what], o.note, (long long)o.ms);
    }
    chan_close(p->reported);
}

/* SIGTERM/SIGINT arrive here (blocked everywhere else); SIGUSR1 ends it. */
static void *
signal_main(void *arg)
{
    struct pool *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    int signals = 0, sig;
    while (sigwait(&set, &sig) == 0 && sig != SIGUSR1) {
        if (signals++ == 0) {
            fprintf(stderr, "chanq work: %s: no more fetching; waiting for running commands\n",
                    strsignal(sig));
            ctx_cancel(p->ctx);
        } else {
            fprintf(stderr, "chanq work: %s again: stopping running commands\n", strsignal(sig));
            atomic_store(&p->hard_stop, true);
        }
    }
    return NULL;
}

/* The main goroutine: the pool itself. */
static void
pool_main(void *arg)
{
    struct pool *p = arg;
    p->ctx = ctx_with_cancel(NULL);
    p->results = chan_new(sizeof(struct outcome), (size_t)p->concurrency);
    p->reported = chan_new(0, 0);
    p->wg = wg_new();
    sched_external_ref(); /* the signal thread may cancel p->ctx */
    pthread_create(&p->sig_thread, NULL, signal_main, p);
    struct worker *workers = calloc((size_t)p->concurrency, sizeof *workers);
    for (int i = 0; i < p->concurrency; i++) {
        workers[i] = (struct worker){.pool = p, .n = i + 1};
        wg_add(p->wg, 1);
        go(worker_main, &workers[i]);
    }
    go(reporter_main, p);
    wg_wait(p->wg, NULL);
    chan_close(p->results);
    chan_recv(p->reported, NULL, NULL);
    pthread_kill(p->sig_thread, SIGUSR1);
    pthread_join(p->sig_thread, NULL);
    sched_external_unref();
    if (!p->quiet)
        fprintf(stderr, "chanq work: done, %ld jobs acked or nacked\n",
                atomic_load(&p->jobs_done));
    free(workers);
    wg_free(p->wg);
    chan_unref(p->reported);
    chan_unref(p->results);
    ctx_release(p->ctx);
}

int
cmd_work(int argc, char **argv)
{
    static const struct option opts[] = {{"concurrency", required_argument, NULL, 'c'},
                                         {"grace-ms", required_argument, NULL, OPT_GRACE},
                                         {"touch-ms", required_argument, NULL, OPT_TOUCH},
                                         {"strict", no_argument, NULL, OPT_STRICT},
                                         {"quiet", no_argument, NULL, 'q'},
                                         CLI_COMMON_OPTIONS};
    struct pool *p = calloc(1, sizeof *p);
    int opt;
    cli_init(&p->g, "work", work_usage);
    p->concurrency = 1;
    p->grace_ms = 5000;
    /* QUEUE... [OPTIONS] -- CMD ARGS: options are parsed before "--" only. */
    int dash = 1;
    while (dash < argc && strcmp(argv[dash], "--") != 0)
        dash++;
    while ((opt = cli_getopt(&p->g, dash, argv, "hc:q", opts)) != -1) {
        if (cli_common_opt(&p->g, opt, optarg))
            continue;
        switch (opt) {
        case 'c': p->concurrency = (int)cli_i64(&p->g, "--concurrency", optarg); break;
        case OPT_GRACE: p->grace_ms = cli_i64(&p->g, "--grace-ms", optarg); break;
        case OPT_TOUCH: p->touch_ms = cli_i64(&p->g, "--touch-ms", optarg); break;
        case OPT_STRICT: p->strict = true; break;
        case 'q': p->quiet = true; break;
        }
    }
    if (dash >= argc - 1)
        cli_usage_error(&p->g, "expected QUEUE... -- CMD [ARGS...]");
    p->cmd = argv + dash + 1;
    p->queues = argv + optind;
    p->nqueues = (size_t)(dash - optind);
    if (p->nqueues == 0)
        cli_usage_error(&p->g, "missing QUEUE");
    if (p->concurrency < 1)
        cli_usage_error(&p->g, "--concurrency must be at least 1");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    char why[512];
    if (child_check_command(p->cmd[0], why, sizeof why) < 0) {
        fprintf(stderr, "chanq work: cannot run %s: %s\n", p->cmd[0], why);
        free(p);
        return CLI_CANNOT_RUN;
    }
    int rc = sched_run_main(pool_main, p, p->concurrency + 2);
    bool cannot_run = atomic_load(&p->cannot_run);
    free(p);
    if (rc < 0) {
        fprintf(stderr, "chanq work: cannot start the scheduler: %s\n", strerror(-rc));
        return CLI_IO;
    }
    return cannot_run ? CLI_CANNOT_RUN : CLI_OK;
}
