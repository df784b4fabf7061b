/* A connection's life around its requests and jobs: every parked op ends
 * with `shutting_down` on SIGTERM; an attempt ended by a lost connection or
 * a ttr says so in the job's error, also after a restart; a producer that
 * goes away while the daemon does not read it (backpressure) is seen at
 * once; "listening on" and READY=1 come only once every listener accepts. */
#include "chanq_config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* A queue's stats field, or -1 while the queue does not exist. */
static long long
queue_stat_or(int fd, const char *queue, const char *field)
{
    json_t *r = reqf(fd, "{\"op\":\"stats\",\"queue\":\"%s\"}", queue);
    json_t *v = json_object_get(json_object_get(r, "queue"), field);
    long long n = v ? json_integer_value(v) : -1;
    json_decref(r);
    return n;
}

/* Polls until queue's field reaches want (within 5 s); returns the last value. */
static long long
await_queue_stat(int fd, const char *queue, const char *field, long long want)
{
    long long v = queue_stat_or(fd, queue, field);
    for (int i = 0; i < 500 && v != want; i++) {
        usleep(10 * 1000);
        v = queue_stat_or(fd, queue, field);
    }
    return v;
}

/* ---- SIGTERM ---- */

/* One request that parks, on a connection of its own. */
struct parked {
    const char *what; /* for the failure message */
    const char *line; /* the request, sent with its index as rid */
    int fd;
};

START_TEST(sigterm_answers_every_parked_request_with_shutting_down)
{
    struct harness *h = start_daemon(NULL);
    int ctl = dial(h);
    /* Two full queues, an unbuffered one, and a job nobody works on. */
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"full\",\"capacity\":1}"));
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"full2\",\"capacity\":1}"));
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"rv\",\"capacity\":0}"));
    free(submit(ctl, "full", "1"));
    free(submit(ctl, "full2", "1"));
    char *id = submit(ctl, "idle", "1");
    char wait_forever[128], wait_long[128];
    snprintf(wait_forever, sizeof wait_forever, "{\"op\":\"wait\",\"id\":\"%s\"}", id);
    snprintf(wait_long, sizeof wait_long,
             "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":60000}", id);
    struct parked p[] = {
        {"fetch without timeout", "{\"op\":\"fetch\",\"queue\":\"empty\"}", -1},
        {"fetch of several queues with a timeout",
         "{\"op\":\"fetch\",\"queues\":[\"e1\",\"e2\"],\"count\":5,\"timeout_ms\":60000}",
         -1},
        {"submit waiting for room",
         "{\"op\":\"submit\",\"queue\":\"full\",\"payload\":2,\"wait_ms\":60000}", -1},
        {"send-side select waiting for room",
         "{\"op\":\"submit\",\"queues\":[\"full\",\"full2\"],\"payload\":2,\"wait_ms\":60000}",
         -1},
        {"submit to an unbuffered queue",
         "{\"op\":\"submit\",\"queue\":\"rv\",\"payload\":2,\"wait_ms\":60000}", -1},
        {"wait without timeout", wait_forever, -1},
        {"wait with a timeout", wait_long, -1},
    };
    size_t n = sizeof p / sizeof p[0];
    for (size_t i = 0; i < n; i++) {
        char line[256];
        snprintf(line, sizeof line, "%.*s,\"rid\":%d}", (int)strlen(p[i].line) - 1, p[i].line,
                 (int)i);
        p[i].fd = dial(h);
        send_line(p[i].fd, line);
    }
    /* Every one of them is parked. */
    ck_assert_int_eq(await_queue_stat(ctl, "empty", "waiting_fetchers", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "e2", "waiting_fetchers", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "full", "waiting_submitters", 2), 2);
    ck_assert_int_eq(await_queue_stat(ctl, "full2", "waiting_submitters", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "rv", "waiting_submitters", 1), 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(no_data_within(p[i].fd, i == 0 ? 200 : 0), "the %s did not park",
                      p[i].what);

    kill(harness_pid(h), SIGTERM);
    char failures[2048] = "";
    for (size_t i = 0; i < n; i++) {
        json_t *r = recv_json(p[i].fd);
        char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
        if (!r || json_integer_value(json_object_get(r, "rid")) != (json_int_t)i ||
            strcmp(error_code(r), "shutting_down") != 0)
            snprintf(failures + strlen(failures), sizeof failures - strlen(failures),
                     "\n  %s: %s", p[i].what, text ? text : "(no answer)");
        free(text);
        json_decref(r);
        harness_close(p[i].fd);
    }
    ck_assert_msg(failures[0] == '\0', "on SIGTERM, want shutting_down for every parked request:%s",
                  failures);
    int status = 0;
    waitpid(harness_pid(h), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    free(id);
    harness_close(ctl);
    harness_kill9(h); /* already reaped: only clears the pid */
    harness_stop(h);
}
END_TEST

/* ---- why an attempt ended ---- */

/* The job's "error" (malloc'd) and state, from the `job` op. */
static char *
job_error(int fd, const char *id, char *state, size_t state_len)
{
    json_t *r = req_ok(fd, "{\"op\":\"job\",\"id\":\"%s\"}", id);
    json_t *job = json_object_get(r, "job");
    const char *e = json_string_value(json_object_get(job, "error"));
    snprintf(state, state_len, "%s", json_string_value(json_object_get(job, "state")));
    char *copy = e ? strdup(e) : NULL;
    json_decref(r);
    return copy;
}

/* The job is in want_state with want_error as its error (job op), and a
 * dead one answers `wait` with that error too. */
static void
check_error(int fd, const char *id, const char *want_state, const char *want_error,
            const char *when)
{
    char state[32];
    char *e = job_error(fd, id, state, sizeof state);
    ck_assert_msg(strcmp(state, want_state) == 0, "%s: job %s is %s, want %s", when, id, state,
                  want_state);
    ck_assert_msg(e && strcmp(e, want_error) == 0, "%s: job %s has error '%s', want '%s'", when,
                  id, e ? e : "(none)", want_error);
    free(e);
    if (strcmp(want_state, "dead") != 0)
        return;
    json_t *r = req_ok(fd, "{\"op\":\"wait\",\"id\":\"%s\",\"timeout_ms\":0}", id);
    const char *we = json_string_value(json_object_get(r, "error"));
    ck_assert_msg(we && strcmp(we, want_error) == 0, "%s: wait on dead job %s says error '%s'",
                  when, id, we ? we : "(none)");
    json_decref(r);
}

static char *
submit_with(int fd, const char *queue, const char *fields)
{
    json_t *r = req_ok(fd, "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":1,%s}", queue,
                       fields);
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    return id;
}

START_TEST(a_lost_connection_is_the_error_of_its_attempt_and_survives_a_restart)
{
    struct harness *h = harness_start(NULL); /* a journal: the error is persisted */
    ck_assert_msg(h, "chanqd did not start");
    int ctl = dial(h);
    char *last = submit_with(ctl, "cl", "\"max_attempts\":1");
    char *more = submit_with(ctl, "cl", "\"max_attempts\":3");
    int worker = dial(h);
    json_decref(req_ok(worker, "{\"op\":\"fetch\",\"queue\":\"cl\",\"count\":2}"));
    ck_assert_int_eq(queue_stat(ctl, "cl", "reserved"), 2);
    harness_close(worker);
    ck_assert_int_eq(await_queue_stat(ctl, "cl", "dead", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "cl", "depth", 1), 1);
    check_error(ctl, last, "dead", "connection lost", "after the disconnect");
    check_error(ctl, more, "queued", "connection lost", "after the disconnect");
    harness_close(ctl);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart");
    ctl = dial(h);
    check_error(ctl, last, "dead", "connection lost", "after a restart");
    check_error(ctl, more, "queued", "connection lost", "after a restart");
    free(last);
    free(more);
    harness_close(ctl);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}
END_TEST

START_TEST(a_ttr_expiry_is_the_error_of_its_attempt_and_survives_a_restart)
{
    struct harness *h = harness_start(NULL);
    ck_assert_msg(h, "chanqd did not start");
    int ctl = dial(h);
    char *last = submit_with(ctl, "tt", "\"max_attempts\":1,\"ttr_ms\":100");
    char *more = submit_with(ctl, "tt", "\"max_attempts\":3,\"ttr_ms\":100");
    int worker = dial(h);
    json_decref(req_ok(worker, "{\"op\":\"fetch\",\"queue\":\"tt\",\"count\":2}"));
    /* The worker stays connected and never acks: the ttr runs out. */
    ck_assert_int_eq(await_queue_stat(ctl, "tt", "dead", 1), 1);
    ck_assert_int_eq(await_queue_stat(ctl, "tt", "depth", 1), 1);
    check_error(ctl, last, "dead", "ttr expired", "after the ttr");
    check_error(ctl, more, "queued", "ttr expired", "after the ttr");
    harness_close(worker);
    harness_close(ctl);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart");
    ctl = dial(h);
    check_error(ctl, last, "dead", "ttr expired", "after a restart");
    check_error(ctl, more, "queued", "ttr expired", "after a restart");
    free(last);
    free(more);
    harness_close(ctl);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}
END_TEST

/* ---- start-up: "listening on" and READY=1 ---- */

/* A loopback port nobody listens on right now. */
static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                      getsockname(fd, (struct sockaddr *)&sa, &len) == 0,
                  "no free port");
    close(fd);
    return ntohs(sa.sin_port);
}

/* Connects to a Unix path (port < 0) or a loopback port; 0 or an errno. */
static int
try_connect(const char *path, int port)
{
    int fd;
    int rc;
    if (port < 0) {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        rc = connect(fd, (struct sockaddr *)&su, sizeof su);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    int err = rc == 0 ? 0 : errno;
    close(fd);
    return err;
}

/* chanqd with its stderr on a pipe, read line by line as it is written, so
 * that the test connects the moment a line appears. */
struct live {
    pid_t pid;
    int err;        /* read end of its stderr */
    char buf[8192]; /* unread log bytes */
    size_t len;
};

static void
live_start(struct live *d, const char *const *args)
{
    int p[2];
    ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe");
    const char *top = getenv("top_builddir");
    char exe[4096];
    snprintf(exe, sizeof exe, "%s/daemon/chanqd", top ? top : ".");
    const char *argv[16] = {exe};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    d->len = 0;
    d->pid = fork();
    ck_assert_msg(d->pid >= 0, "fork");
    if (d->pid == 0) {
        dup2(p[1], STDERR_FILENO);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    d->err = p[0];
}

/* The next log line that contains `what` (copied into line), within 10 s. */
static bool
live_wait_line(struct live *d, const char *what, char *line, size_t size)
{
    int64_t until = harness_now_ms() + 10000;
    for (;;) {
        char *nl;
        while ((nl = memchr(d->buf, '\n', d->len))) {
            size_t n = (size_t)(nl - d->buf);
            *nl = '\0';
            bool hit = strstr(d->buf, what) != NULL;
            if (hit) {
                size_t k = n < size - 1 ? n : size - 1;
                memcpy(line, d->buf, k);
                line[k] = '\0';
            }
            memmove(d->buf, nl + 1, d->len - n - 1);
            d->len -= n + 1;
            if (hit)
                return true;
        }
        int left = (int)(until - harness_now_ms());
        struct pollfd pfd = {.fd = d->err, .events = POLLIN};
        if (left <= 0 || d->len == sizeof d->buf || poll(&pfd, 1, left) <= 0)
            return false;
        ssize_t r = read(d->err, d->buf + d->len, sizeof d->buf - d->len);
        if (r <= 0)
            return false;
        d->len += (size_t)r;
    }
}

static int
live_stop(struct live *d)
{
    kill(d->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid)
            break;
        if (i == 999) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
        }
        usleep(10 * 1000);
    }
    close(d->err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(listening_and_ready_are_said_once_every_listener_accepts)
{
    char dir[] = "/tmp/chanq-listen-XXXXXX";
    ck_assert_msg(mkdtemp(dir), "mkdtemp");
    char path[64], npath[64];
    snprintf(path, sizeof path, "%s/chanqd.sock", dir);
    snprintf(npath, sizeof npath, "%s/notify", dir);
    int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un nsa = {.sun_family = AF_UNIX};
    snprintf(nsa.sun_path, sizeof nsa.sun_path, "%s", npath);
    ck_assert_msg(bind(ns, (struct sockaddr *)&nsa, sizeof nsa) == 0, "bind %s", npath);
    setenv("NOTIFY_SOCKET", npath, 1);
    for (int round = 0; round < 30; round++) {
        if (round % 2) { /* a stale socket file from an earlier run */
            struct sockaddr_un su = {.sun_family = AF_UNIX};
            snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
            int st = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            ck_assert_msg(bind(st, (struct sockaddr *)&su, sizeof su) == 0, "bind %s", path);
            close(st);
        }
        char http[64];
        int hport = free_port();
        snprintf(http, sizeof http, "127.0.0.1:%d", hport);
        const char *args[] = {"--memory", "--listen", "127.0.0.1:0", "--unix", path,
                              "--http", http, NULL};
        struct live d;
        live_start(&d, args);
        char line[512];
        /* The moment the first "listening on" line is out, all accept. */
        ck_assert_msg(live_wait_line(&d, "listening on ", line, sizeof line),
                      "round %d: no 'listening on' line", round);
        int eu = try_connect(path, -1), eh = try_connect(NULL, hport);
        ck_assert_msg(eu == 0, "round %d: unix:%s refused right after '%s': %s", round, path,
                      line, strerror(eu));
        ck_assert_msg(eh == 0, "round %d: http port %d refused right after '%s': %s", round,
                      hport, line, strerror(eh));
        if (!strstr(line, "listening on 127.0.0.1:"))
            ck_assert_msg(live_wait_line(&d, "listening on 127.0.0.1:", line, sizeof line),
                          "round %d: no TCP 'listening on' line", round);
        int port = atoi(strstr(line, "127.0.0.1:") + strlen("127.0.0.1:"));
        int et = try_connect(NULL, port);
        ck_assert_msg(et == 0, "round %d: port %d refused right after '%s': %s", round, port,
                      line, strerror(et));
        /* And the moment READY=1 arrives. */
        char msg[256] = "";
        for (;;) {
            struct pollfd pfd = {.fd = ns, .events = POLLIN};
            ck_assert_msg(poll(&pfd, 1, 10000) == 1, "round %d: no READY=1", round);
            ssize_t r = recv(ns, msg, sizeof msg - 1, 0);
            msg[r > 0 ? r : 0] = '\0';
            if (strstr(msg, "READY=1"))
                break;
        }
        eu = try_connect(path, -1);
        et = try_connect(NULL, port);
        eh = try_connect(NULL, hport);
        ck_assert_msg(eu == 0 && et == 0 && eh == 0,
                      "round %d: after READY=1: unix %s, tcp %s, http %s", round, strerror(eu),
                      strerror(et), strerror(eh));
        ck_assert_msg(live_stop(&d) == 0, "round %d: chanqd did not stop cleanly", round);
    }
    unsetenv("NOTIFY_SOCKET");
    close(ns);
    unlink(npath);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* ---- a producer that goes away while its requests are not read ---- */

/* A queue at capacity, a producer that pipelines n submits into it (the
 * first parks, the daemon stops reading the rest: backpressure), then goes
 * away with a FIN (close) or an RST (SO_LINGER 0). Its parked submit must
 * end and its connection close within about a second.
 *
 * A FIN is sent only after the data queued before it: with a close, n is
 * small enough for every byte to reach the daemon's socket buffer (checked
 * with SIOCOUTQ), as a FIN stuck behind unsent data reaches nobody. An RST
 * goes at once, whatever is left unsent. */
static void
producer_goes_away_while_not_read(bool reset, size_t n)
{
    struct harness *h = start_daemon(NULL);
    int ctl = dial(h);
    json_decref(req_ok(ctl, "{\"op\":\"declare\",\"queue\":\"bp\",\"capacity\":1}"));
    free(submit(ctl, "bp", "0"));
    int p = dial(h);
    static const char line[] = "{\"op\":\"submit\",\"queue\":\"bp\",\"payload\":1}\n";
    size_t len = sizeof line - 1, total = n * len, off = 0;
    char *buf = malloc(total);
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * len, line, len);
    fcntl(p, F_SETFL, fcntl(p, F_GETFL) | O_NONBLOCK);
    /* Send what the socket takes; once the daemon stops reading, the
     * buffers fill up and sending stops within a short while. */
    while (off < total) {
        ssize_t w = send(p, buf + off, total - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EINTR), "send: %s", strerror(errno));
        struct pollfd pfd = {.fd = p, .events = POLLOUT};
        if (poll(&pfd, 1, 300) == 0)
            break; /* nobody reads any more */
    }
    free(buf);
    ck_assert_msg(off >= 100 * len, "only %zu bytes of submits were sent", off);
    ck_assert_int_eq(await_queue_stat(ctl, "bp", "waiting_submitters", 1), 1);
    ck_assert_int_eq(server_stat(ctl, "connections"), 2);
    /* The daemon is not reading the producer any more. */
    usleep(200 * 1000);
    long long submitted = queue_stat(ctl, "bp", "submitted");
    int unsent = -1;
    for (int i = 0; i < 200 && !reset && unsent != 0; i++) {
        ioctl(p, SIOCOUTQ, &unsent);
        if (unsent)
            usleep(10 * 1000);
    }
    ck_assert_msg(reset || unsent == 0, "%d bytes of submits stay unsent: lower n", unsent);
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(p, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    int64_t start = harness_now_ms();
    harness_close(p);
    long long waiting = -1, conns = -1;
    int64_t took;
    do {
        usleep(10 * 1000);
        waiting = queue_stat(ctl, "bp", "waiting_submitters");
        conns = server_stat(ctl, "connections");
        took = harness_now_ms() - start;
    } while ((waiting != 0 || conns != 1) && took < 1000);
    ck_assert_msg(waiting == 0 && conns == 1,
                  "%s with %zu bytes of submits unread: after %lld ms still %lld waiting "
                  "submitters and %lld connections (want 0 and 1)",
                  reset ? "an RST" : "a close", off, (long long)took, waiting, conns);
    /* Nothing of the departed producer got in meanwhile. */
    ck_assert_int_eq(queue_stat(ctl, "bp", "depth"), 1);
    ck_assert_int_eq(queue_stat(ctl, "bp", "submitted"), submitted);
    harness_close(ctl);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}

START_TEST(a_producer_closing_while_not_read_is_seen_at_once)
{
    /* 100 KB: more than one read of the daemon (64 KiB), less than its
     * socket buffer takes. */
    producer_goes_away_while_not_read(false, 2500);
}
END_TEST

START_TEST(a_producer_resetting_while_not_read_is_seen_at_once)
{
    producer_goes_away_while_not_read(true, 20000);
}
END_TEST

Suite *
conn_suite(void)
{
    Suite *s = suite_create("daemon_conn");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sigterm_answers_every_parked_request_with_shutting_down);
    suite_add_tcase(s, tc);
    tc = tcase_create("attempt_errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_lost_connection_is_the_error_of_its_attempt_and_survives_a_restart);
    tcase_add_test(tc, a_ttr_expiry_is_the_error_of_its_attempt_and_survives_a_restart);
    suite_add_tcase(s, tc);
    tc = tcase_create("close_watch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_producer_closing_while_not_read_is_seen_at_once);
    tcase_add_test(tc, a_producer_resetting_while_not_read_is_seen_at_once);
    suite_add_tcase(s, tc);
    tc = tcase_create("startup");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, listening_and_ready_are_said_once_every_listener_accepts);
    suite_add_tcase(s, tc);
    return s;
}
