/* chanq work: run a command for each job. The pool is libchanq's worker
 * (chanq_worker_*, clients/worker.c): a thread per slot and one connection
 * that consumes, the job touched while it runs, the cancel and revoked events
 * turned into a cancel fd, acks and nacks from the verdict. This file adds
 * what is about commands: the job function spawns CMD with the payload on
 * stdin, waits for it while watching the cancel fd (SIGTERM to its process
 * group, SIGKILL after the grace period), and turns its exit status and
 * output into the verdict; the outcome hook logs each job; a thread of its
 * own sigwait()s for SIGTERM and SIGINT and stops the worker. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "clients/cli/child.h"
#include "clients/cli/cli.h"

static const char work_usage[] =
    "Usage: chanq work QUEUE... [OPTIONS] -- CMD [ARGS...]\n"
    "Runs CMD once per job of any of the queues, N at a time. The\n"
    "job's payload (JSON) is on CMD's stdin; CHANQ_JOB_ID, CHANQ_ATTEMPT,\n"
    "CHANQ_QUEUE and TRACEPARENT (the job's W3C trace context, empty when it\n"
    "has none) are set. Exit status 0 acks the job with CMD's stdout as the\n"
    "result (as JSON if it parses, else as a string); any other status nacks it\n"
    "with the tail of stderr as the error. When the job is cancelled or its\n"
    "reservation revoked (ttr, deadline), CMD's process group gets SIGTERM, then\n"
    "SIGKILL after the grace period. Long jobs are touched automatically.\n"
    "SIGTERM or SIGINT: take no more jobs, let running commands finish, exit 0\n"
    "(a second signal terminates the running commands). Also exits when every\n"
    "queue is closed and drained. Exits 5, taking no more jobs, when CMD\n"
    "cannot be started (checked before every job and every half second while\n"
    "idle, like execvp finds it); a job taken for a CMD that then fails to\n"
    "start is released, not nacked:\n"
    "back in its queue at once, the delivery not counted as an attempt.\n"
    "\nOptions:\n"
    "  -c, --concurrency N  commands running at once (default 1)\n"
    "  --grace-ms MS        SIGTERM to SIGKILL delay (default 5000)\n"
    "  --touch-ms MS        touch running jobs every MS (default: half the ttr)\n"
    "  --strict             take from the first listed ready queue (priorities)\n"
    "  -q, --quiet          do not log each job on stderr\n";

enum { OPT_GRACE = OPT_FIRST_OWN, OPT_TOUCH, OPT_STRICT };

#define POLL_BOUND_MS 1000 /* longest poll(2) while a command runs */

/* What one slot's command did, for the log line of its outcome. */
struct note {
    char text[200];   /* "exit status 0", "exit status 7: <stderr tail>", strerror */
    bool not_started; /* CMD could not be started */
};

/* The pool's settings and state, shared by the slots' threads. */
struct pool {
    struct cli g;            /* server, token, TLS */
    char **queues;           /* queues to fetch from */
    size_t nqueues;
    char **cmd;              /* CMD ARGS..., NULL-terminated */
    int concurrency;         /* slots */
    int64_t grace_ms;        /* SIGTERM -> SIGKILL */
    int64_t touch_ms;        /* touch interval, 0: ttr/2 */
    bool strict;             /* fetch priority order */
    bool quiet;              /* no per-job log */
    struct chanq_worker *w;
    struct note *notes;      /* one per slot, written by that slot only */
    atomic_long jobs_done;   /* acked + nacked, for the exit message */
    atomic_bool cannot_run;  /* CMD failed to start: stopping, exit 5 */
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* CMD cannot be started: every job fetched for it would fail, so stop
 * fetching like on SIGTERM (running commands finish) and exit 5. Says why
 * once, even with --quiet. */
static void
pool_cannot_run(struct pool *p, const char *why)
{
    if (!atomic_exchange(&p->cannot_run, true))
        fprintf(stderr, "chanq work: cannot run %s: %s; stopping\n", p->cmd[0], why);
}

/* The ready hook, before every job and while the pool idles: so that a CMD
 * deleted while the pool idles costs no job a delivery. */
static bool
command_ready(int slot, void *arg)
{
    struct pool *p = arg;
    char why[512];
    if (child_check_command(p->cmd[0], why, sizeof why) == 0)
        return true;
    pool_cannot_run(p, why);
    return false;
}

/* Waits for the command, pumping its pipes; once the job is cancelled
 * (the server took it back, or a second signal), SIGTERM to its process
 * group and SIGKILL after the grace period. */
static void
supervise(struct pool *p, struct chanq_work *wk, struct child *ch)
{
    int64_t kill_at = -1;
    while (!child_done(ch)) {
        struct pollfd pf[5];
        int n = child_pollfds(ch, pf);
        /* Watched until seen: it stays readable. */
        pf[n] = (struct pollfd){.fd = kill_at < 0 ? chanq_work_cancel_fd(wk) : -1,
                                .events = POLLIN};
        int64_t wait = POLL_BOUND_MS;
        if (kill_at >= 0 && kill_at - now_ms() < wait)
            wait = kill_at - now_ms();
        poll(pf, (nfds_t)n + 1, wait < 0 ? 0 : (int)wait);
        child_pump(ch, pf, n);
        if (kill_at < 0 && chanq_work_cancelled(wk)) {
            child_signal(ch, SIGTERM);
            kill_at = now_ms() + p->grace_ms;
        } else if (kill_at >= 0 && now_ms() >= kill_at) {
            child_signal(ch, SIGKILL);
            kill_at = INT64_MAX / 2;
        }
    }
}

/* The job function: runs CMD for the job. Exit 0 acks with stdout as the
 * result; anything else nacks with the stderr tail. A command that does
 * not start is not the job's fault: released, not nacked, and the pool
 * stops (exit 5). */
static enum chanq_verdict
run_command(struct chanq_work *wk, const struct chanq_job *job, void *arg)
{
    struct pool *p = arg;
    struct note *note = &p->notes[chanq_work_slot(wk)];
    char env_id[160], env_attempt[48], env_queue[160], env_trace[300];
    snprintf(env_id, sizeof env_id, "CHANQ_JOB_ID=%s", job->id);
    snprintf(env_attempt, sizeof env_attempt, "CHANQ_ATTEMPT=%lld", (long long)job->attempt);
    snprintf(env_queue, sizeof env_queue, "CHANQ_QUEUE=%s", job->queue ? job->queue : "");
    /* The job's trace context where OpenTelemetry SDKs look for it: the
     * command's span joins the producer's trace (docs/operations.md).
     * Always set, and TRACESTATE emptied, so that a trace context in
     * chanq work's own environment never leaks into a job. */
    snprintf(env_trace, sizeof env_trace, "TRACEPARENT=%s",
             job->traceparent ? job->traceparent : "");
    char env_state[] = "TRACESTATE=";
    char *env[] = {env_id, env_attempt, env_queue, env_trace, env_state, NULL};
    *note = (struct note){0};
    struct child *ch = child_spawn(p->cmd, env, job->payload, strlen(job->payload));
    if (!ch) {
        snprintf(note->text, sizeof note->text, "%s", strerror(errno));
        note->not_started = true;
        pool_cannot_run(p, note->text);
        chanq_worker_stop(p->w, false);
        return CHANQ_WORK_RELEASE;
    }
    supervise(p, wk, ch);
    int status = child_status(ch);
    enum chanq_verdict v = CHANQ_WORK_FAIL;
    /* After a cancel or revoke the verdict is ignored; after a second
     * signal ("stop") a command that still exits 0 is acked. */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        size_t len;
        const char *out = child_stdout(ch, &len);
        char *result = result_text(out, len);
        chanq_work_set_result(wk, result);
        free(result);
        snprintf(note->text, sizeof note->text, "exit status 0");
        v = CHANQ_WORK_ACK;
    } else {
        error_text(note->text, sizeof note->text, status, child_stderr_tail(ch));
        chanq_work_set_error(wk, "%s", note->text);
    }
    child_free(ch);
    return v;
}

/* The outcome hook: one log line per job. */
static void
log_outcome(const struct chanq_job *job, const struct chanq_work_outcome *o, void *arg)
{
    struct pool *p = arg;
    const struct note *note = &p->notes[o->slot];
    const char *what = o->name, *detail = note->text;
    switch (o->what) {
    case CHANQ_ACKED:
    case CHANQ_NACKED:
    case CHANQ_BURIED: atomic_fetch_add(&p->jobs_done, 1); break;
    case CHANQ_CANCELLED: what = "cancelled: command stopped"; break;
    case CHANQ_REVOKED: what = "revoked: command stopped"; break;
    case CHANQ_LOST: what = "connection lost"; break;
    case CHANQ_RELEASED: what = "not started, released"; break;
    case CHANQ_REFUSED:
        what = note->not_started ? "not started, release refused" : "failed";
        detail = o->detail;
        break;
    }
    if (!p->quiet)
        fprintf(stderr, "chanq work: job %s attempt %lld: %s (%s, %lld ms)\n", job->id,
                (long long)job->attempt, what, detail, (long long)o->run_ms);
}

static void
log_problem(const char *msg, void *arg)
{
    fprintf(stderr, "chanq work: %s\n", msg);
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
            fprintf(stderr, "chanq work: %s: no more jobs taken; waiting for running commands\n",
                    strsignal(sig));
            chanq_worker_stop(p->w, false);
        } else {
            fprintf(stderr, "chanq work: %s again: stopping running commands\n", strsignal(sig));
            chanq_worker_stop(p->w, true);
        }
    }
    return NULL;
}

/* Runs the pool until a signal, a CMD that cannot start, or every queue
 * closed and drained. */
static int
pool_run(struct pool *p)
{
    struct chanq_connect_opts co;
    cli_connect_opts(&p->g, &co);
    co.client = "chanq-work";
    struct chanq_worker_opts wo = {.queues = (const char *const *)p->queues,
                                   .nqueues = p->nqueues,
                                   .strict = p->strict,
                                   .concurrency = p->concurrency,
                                   .touch_ms = p->touch_ms,
                                   .fn = run_command,
                                   .outcome = log_outcome,
                                   .ready = command_ready,
                                   .log = log_problem,
                                   .arg = p};
    struct chanq_error err;
    p->notes = calloc((size_t)p->concurrency, sizeof *p->notes);
    p->w = p->notes ? chanq_worker_new(p->g.server, &co, &wo, &err) : NULL;
    if (!p->w) {
        fprintf(stderr, "chanq work: %s\n", p->notes ? err.message : strerror(ENOMEM));
        free(p->notes);
        return CLI_IO;
    }
    pthread_t sig_thread;
    pthread_create(&sig_thread, NULL, signal_main, p);
    int rc = chanq_worker_run(p->w, &err);
    pthread_kill(sig_thread, SIGUSR1);
    pthread_join(sig_thread, NULL);
    if (rc < 0)
        fprintf(stderr, "chanq work: %s\n", err.message);
    else if (!p->quiet)
        fprintf(stderr, "chanq work: done, %ld jobs acked or nacked\n",
                atomic_load(&p->jobs_done));
    chanq_worker_free(p->w);
    free(p->notes);
    return rc < 0 ? CLI_IO : atomic_load(&p->cannot_run) ? CLI_CANNOT_RUN : CLI_OK;
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
    int rc = pool_run(p);
    free(p);
    return rc;
}
