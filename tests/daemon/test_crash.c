/* Durability: kill -9 under load, torn tails, corruption and repair, a
 * full disk, and compaction keeping the data dir bounded. */
#include "chanq_config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

#if defined(CHANQ_ASAN) || defined(CHANQ_TSAN)
enum { COMPACT_CYCLES = 100000 };
#else
enum { COMPACT_CYCLES = 1000000 };
#endif

/* What the client knows about each job key from answers it received. */
enum { K_SENT = 1, K_SUBMIT_OK = 2, K_ACK_SENT = 4, K_ACK_OK = 8 };

struct ledger {
    unsigned char *state; /* per key: K_* bits */
    char (*ids)[24];      /* per key: id from the submit answer */
    int nkeys;
    int answered;         /* submit answers received (the in-flight window) */
};

/* Reads every complete line available on fd (non-blocking) into fn. */
static void
drain_lines(int fd, char *buf, size_t *len, size_t cap, void (*fn)(void *, json_t *), void *arg)
{
    for (;;) {
        ssize_t r = read(fd, buf + *len, cap - *len);
        if (r <= 0)
            return;
        *len += (size_t)r;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', *len - (size_t)(start - buf)))) {
            *nl = '\0';
            json_t *j = json_loads(start, 0, NULL);
            if (j)
                fn(arg, j);
            json_decref(j);
            start = nl + 1;
        }
        *len -= (size_t)(start - buf);
        memmove(buf, start, *len);
    }
}

static void
on_submit_answer(void *arg, json_t *r)
{
    struct ledger *l = arg;
    json_int_t k = json_integer_value(json_object_get(r, "rid"));
    l->answered++;
    if (k < 0 || k >= l->nkeys || !is_ok(r))
        return;
    l->state[k] |= K_SUBMIT_OK;
    snprintf(l->ids[k], sizeof l->ids[k], "%s", json_string_value(json_object_get(r, "id")));
}

struct consumer {
    struct ledger *l;
    int fd;
    int acks_out; /* ack requests sent */
};

static void
on_consumer_answer(void *arg, json_t *r)
{
    struct consumer *c = arg;
    json_t *rid = json_object_get(r, "rid");
    if (json_is_integer(rid)) { /* an ack answer: rid is the key */
        json_int_t k = json_integer_value(rid);
        if (is_ok(r) && k >= 0 && k < c->l->nkeys)
            c->l->state[k] |= K_ACK_OK;
        return;
    }
    json_t *jobs = json_object_get(r, "jobs");
    for (size_t i = 0; i < json_array_size(jobs); i++) {
        json_t *job = json_array_get(jobs, i);
        json_int_t k = json_integer_value(json_object_get(json_object_get(job, "payload"), "k"));
        char line[128];
        snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\",\"rid\":%lld}",
                 json_string_value(json_object_get(job, "id")), (long long)k);
        if (k >= 0 && k < c->l->nkeys)
            c->l->state[k] |= K_ACK_SENT;
        send_line(c->fd, line);
    }
    send_line(c->fd, "{\"op\":\"fetch\",\"queues\":[\"crash\"],\"count\":8,\"timeout_ms\":20,\"rid\":\"f\"}");
}

/* Loads the daemon with submits and acks for run_ms, then kills it -9. */
static void
load_then_kill(struct harness *h, struct ledger *l, int first_key, int nkeys, int run_ms)
{
    int prod = dial(h), cons = dial(h);
    fcntl(prod, F_SETFL, O_NONBLOCK);
    fcntl(cons, F_SETFL, O_NONBLOCK);
    struct consumer c = {l, cons, 0};
    send_line(cons, "{\"op\":\"fetch\",\"queues\":[\"crash\"],\"count\":8,\"timeout_ms\":20,\"rid\":\"f\"}");
    static char pbuf[1 << 16], cbuf[1 << 16];
    size_t plen = 0, clen = 0;
    int next = first_key;
    l->answered = 0;
    int64_t until = harness_now_ms() + run_ms;
    while (harness_now_ms() < until) {
        /* A window of 64 submits in flight: the socket never fills, so
         * every line goes out whole. */
        for (; next - first_key - l->answered < 64 && next < first_key + nkeys; next++) {
            char line[160];
            snprintf(line, sizeof line,
                     "{\"op\":\"submit\",\"queue\":\"crash\",\"payload\":{\"k\":%d,\"pad\":\"%040d\"},"
                     "\"rid\":%d}",
                     next, next, next);
            l->state[next] |= K_SENT;
            if (send_line(prod, line) < 0)
                break;
        }
        struct pollfd p[2] = {{prod, POLLIN, 0}, {cons, POLLIN, 0}};
        poll(p, 2, 2);
        drain_lines(prod, pbuf, &plen, sizeof pbuf, on_submit_answer, l);
        drain_lines(cons, cbuf, &clen, sizeof cbuf, on_consumer_answer, &c);
    }
    harness_kill9(h);
    /* Answers already in our socket buffers were sent before the kill. */
    drain_lines(prod, pbuf, &plen, sizeof pbuf, on_submit_answer, l);
    drain_lines(cons, cbuf, &clen, sizeof cbuf, on_consumer_answer, &c);
    harness_close(prod);
    harness_close(cons);
}

/* After a restart: every job in the queue, each key at most once; the
 * promises checked against the ledger; everything acked for the next round. */
static void
verify_after_restart(struct harness *h, struct ledger *l, int nkeys)
{
    int fd = dial(h);
    unsigned char *seen = calloc((size_t)nkeys, 1);
    for (;;) {
        json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queues\":[\"crash\"],\"count\":500,\"timeout_ms\":0}");
        json_t *jobs = json_object_get(r, "jobs");
        size_t n = json_array_size(jobs);
        for (size_t i = 0; i < n; i++) {
            json_t *job = json_array_get(jobs, i);
            json_int_t k = json_integer_value(json_object_get(json_object_get(job, "payload"), "k"));
            ck_assert_msg(k >= 0 && k < nkeys, "unknown job payload came back");
            ck_assert_msg(!seen[k], "job %lld delivered twice after restart", (long long)k);
            ck_assert_msg(!(l->state[k] & K_ACK_OK), "acked job %lld came back", (long long)k);
            seen[k] = 1;
            json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}",
                               json_string_value(json_object_get(job, "id"))));
            l->state[k] |= K_ACK_OK;
        }
        json_decref(r);
        if (n == 0)
            break;
    }
    for (int k = 0; k < nkeys; k++) {
        bool promised = (l->state[k] & K_SUBMIT_OK) && !(l->state[k] & K_ACK_SENT);
        ck_assert_msg(!promised || seen[k] || (l->state[k] & K_ACK_OK),
                      "job %d (id %s) was answered ok, never acked, and is gone", k, l->ids[k]);
    }
    free(seen);
    harness_close(fd);
}

START_TEST(kill_9_under_load_loses_no_acknowledged_job_and_revives_no_acked_one)
{
    enum { ROUNDS = 10, PER_ROUND = 3000 };
    struct harness *h = harness_start(NULL); /* data dir, fsync always */
    ck_assert_msg(h, "chanqd did not start");
    struct ledger l = {calloc(ROUNDS * PER_ROUND, 1), calloc(ROUNDS * PER_ROUND, 24),
                       ROUNDS * PER_ROUND, 0};
    srand((unsigned)time(NULL));
    long long promised = 0, acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        load_then_kill(h, &l, round * PER_ROUND, PER_ROUND, 100 + rand() % 300);
        ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after kill -9 (round %d)",
                      round);
        verify_after_restart(h, &l, (round + 1) * PER_ROUND);
    }
    for (int k = 0; k < l.nkeys; k++) {
        promised += (l.state[k] & K_SUBMIT_OK) != 0;
        acked += (l.state[k] & K_ACK_OK) != 0;
    }
    fprintf(stderr, "crash: %d rounds, %lld submits answered ok, %lld acked, none lost\n", ROUNDS,
            promised, acked);
    ck_assert_msg(promised > ROUNDS * 10, "the load was too light to mean anything (%lld)", promised);
    free(l.state);
    free(l.ids);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* The newest segment file of the data dir (malloc'd path). */
static char *
newest_segment(struct harness *h)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/data", harness_dir(h));
    DIR *d = opendir(dir);
    char best[256] = "";
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".log") && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    if (d)
        closedir(d);
    char *path;
    ck_assert_msg(best[0] && asprintf(&path, "%s/%s", dir, best) > 0, "no segment in %s", dir);
    return path;
}

/* Where a segment's records end (with --fsync always the file is
 * preallocated: zeros follow them), walking the frames' length fields:
 * a 16-byte header, then [4-byte length][4-byte CRC][payload] until a
 * zero length or the end of the file (docs/durability.md). */
static off_t
records_end(const char *path)
{
    int fd = open(path, O_RDONLY);
    off_t off = 16;
    unsigned char len[4];
    while (fd >= 0 && pread(fd, len, 4, off) == 4) {
        uint32_t n = (uint32_t)len[0] | (uint32_t)len[1] << 8 | (uint32_t)len[2] << 16 |
                     (uint32_t)len[3] << 24;
        if (n == 0)
            break;
        off += 8 + (off_t)n;
    }
    if (fd >= 0)
        close(fd);
    return off;
}

/* Submits n jobs and stops the daemon cleanly. */
static void
fill_and_stop(struct harness *h, int n)
{
    int fd = dial(h);
    for (int i = 0; i < n; i++)
        free(submit(fd, "dur", "{\"x\":\"some payload to take room\"}"));
    harness_close(fd);
}

/* With --fsync always a segment is allocated whole up front: the zeros
 * after its records read as the end (no torn-tail warning, nothing lost)
 * and are given back on the next start. */
START_TEST(a_preallocated_segment_ends_at_its_last_record_and_is_trimmed_on_restart)
{
    const char *args[] = {"--journal-segment", "256K", NULL};
    struct harness *h = harness_start(args);
    ck_assert_msg(h, "chanqd did not start");
    fill_and_stop(h, 10);
    harness_kill9(h);
    char *seg = newest_segment(h);
    struct stat st;
    ck_assert_int_eq(stat(seg, &st), 0);
    off_t end = records_end(seg);
    ck_assert_msg(end > 16, "the segment holds no records");
    /* fallocate may be unsupported where the tests run; then the file
     * just has no zeros after its records. */
    ck_assert_msg(st.st_size == 256 * 1024 || st.st_size == end,
                  "segment of %lld bytes, records end at %lld", (long long)st.st_size,
                  (long long)end);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not start on a preallocated segment");
    char *log = harness_log(h);
    ck_assert_msg(!strstr(log, "torn tail"), "the preallocated zeros were taken for a torn tail:\n%s",
                  log);
    free(log);
    ck_assert_int_eq(stat(seg, &st), 0);
    ck_assert_msg(st.st_size == end, "the old segment was not trimmed to its records (%lld, %lld)",
                  (long long)st.st_size, (long long)end);
    int fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "dur", "depth"), 10);
    free(submit(fd, "dur", "{\"x\":\"one more\"}"));
    harness_close(fd);
    free(seg);
    /* A clean stop gives the preallocated rest back itself. */
    kill(harness_pid(h), SIGTERM);
    int status = 0;
    waitpid(harness_pid(h), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM exit status %d", status);
    harness_kill9(h); /* already reaped: only clears the pid */
    seg = newest_segment(h);
    ck_assert_int_eq(stat(seg, &st), 0);
    ck_assert_msg(st.st_size == records_end(seg) && st.st_size > 16,
                  "after a clean stop the segment has %lld bytes, its records end at %lld",
                  (long long)st.st_size, (long long)records_end(seg));
    free(seg);
    harness_stop(h);
}
END_TEST

START_TEST(a_torn_tail_is_cut_off_with_a_log_line)
{
    struct harness *h = harness_start(NULL);
    fill_and_stop(h, 20);
    harness_kill9(h);
    char *seg = newest_segment(h);
    /* A record header cut short right after the last record (in the
     * preallocated zeros, as a crash mid-write leaves it). */
    int sfd = open(seg, O_RDWR);
    ck_assert_msg(pwrite(sfd, "\x40\x00\x00\x00\x12\x34", 6, records_end(seg)) == 6,
                  "cannot tear the segment");
    close(sfd);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not start on a torn tail");
    char *log = harness_log(h);
    ck_assert_msg(strstr(log, "torn tail"), "no log line about the torn tail:\n%s", log);
    free(log);
    int fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "dur", "depth"), 20);
    harness_close(fd);
    free(seg);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* Runs chanqd --repair on h's data dir for a moment; its log goes to
 * DIR/repair.log. */
static void
run_repair(struct harness *h)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s/daemon/chanqd --repair --data-dir %s/data --listen 127.0.0.1:0"
                              " 2>%s/repair.log & pid=$!; sleep 2; kill $pid; wait $pid",
             getenv("top_builddir"), harness_dir(h), harness_dir(h));
    ck_assert_msg(system(cmd) == 0, "chanqd --repair did not run and stop cleanly");
}

/* Flips bit 2 of byte `at` of the file. */
static void
flip_bit_at(const char *path, off_t at)
{
    int sfd = open(path, O_RDWR);
    unsigned char c;
    ck_assert_msg(pread(sfd, &c, 1, at) == 1, "cannot read the segment");
    c ^= 0x04;
    ck_assert_msg(pwrite(sfd, &c, 1, at) == 1, "cannot corrupt the segment");
    close(sfd);
}

START_TEST(a_flipped_byte_stops_start_up_and_repair_keeps_every_record_that_checks)
{
    struct harness *h = harness_start(NULL);
    fill_and_stop(h, 50);
    harness_kill9(h);
    char *seg = newest_segment(h);
    flip_bit_at(seg, records_end(seg) / 2);
    ck_assert_msg(harness_restart(h) < 0, "chanqd started on a corrupt journal");
    char *log = harness_log(h);
    ck_assert_msg(strstr(log, "bad checksum") && strstr(log, "offset") && strstr(log, ".log") &&
                      strstr(log, "records that check follow it"),
                  "the refusal does not name the file, offset and what follows:\n%s", log);
    free(log);
    run_repair(h);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -q 'keeping the .* records that check' %s/repair.log",
             harness_dir(h));
    ck_assert_msg(system(cmd) == 0, "--repair did not say what it kept");
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not start after --repair");
    int fd = dial(h);
    long long depth = queue_stat(fd, "dur", "depth");
    ck_assert_msg(depth == 49, "after repair depth is %lld, not 49 (only the damaged job lost)",
                  depth);
    harness_close(fd);
    free(seg);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* One flipped bit in the segment header used to read as a torn tail at
 * offset 0: the whole segment, every acknowledged job in it, was deleted. */
START_TEST(a_flipped_header_bit_refuses_start_up_and_repair_keeps_every_job)
{
    static const off_t where[] = {3, 8, 13};
    for (size_t k = 0; k < 3; k++) {
        struct harness *h = harness_start(NULL);
        fill_and_stop(h, 200);
        harness_kill9(h);
        char *seg = newest_segment(h);
        flip_bit_at(seg, where[k]);
        ck_assert_msg(harness_restart(h) < 0, "byte %lld: chanqd started on a bad header",
                      (long long)where[k]);
        char *log = harness_log(h);
        ck_assert_msg(strstr(log, "bad segment header") && strstr(log, seg) &&
                          !strstr(log, "torn tail"),
                      "byte %lld: the refusal does not name the damaged header:\n%s",
                      (long long)where[k], log);
        free(log);
        run_repair(h);
        ck_assert_msg(harness_restart(h) == 0, "chanqd did not start after --repair");
        int fd = dial(h);
        long long depth = queue_stat(fd, "dur", "depth");
        ck_assert_msg(depth == 200, "byte %lld: after repair depth is %lld, not 200",
                      (long long)where[k], depth);
        harness_close(fd);
        free(seg);
        ck_assert_int_eq(harness_stop(h), 0);
    }
}
END_TEST

/* GET path from 127.0.0.1:port; the whole answer (malloc'd), or NULL. */
static char *
http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    ck_assert_msg(write(fd, req, (size_t)n) == n, "cannot send the HTTP request");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (len + 1 < cap && (r = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

/* Reads datagrams from a notify socket for up to timeout_ms until one holds
 * want; true when one did. */
static bool
notify_says(int fd, const char *want, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    char msg[1024];
    while (harness_now_ms() < until) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
        if (n <= 0)
            continue;
        msg[n] = '\0';
        if (strstr(msg, want))
            return true;
    }
    return false;
}

/* Starts chanqd with the LD_PRELOAD shim that fails journal writes with
 * ENOSPC while the file flag_out names exists; probe_out only lends a temp
 * dir for the flag. */
static struct harness *
start_with_failwrite_args(struct harness **probe_out, char *flag_out, size_t flag_size,
                          const char *const *args)
{
    struct harness *probe = harness_start(NULL);
    snprintf(flag_out, flag_size, "%s/enospc", harness_dir(probe));
    char preload[4200];
    snprintf(preload, sizeof preload, "%s/tests/daemon/failwrite.so", getenv("top_builddir"));
    ck_assert_msg(access(preload, R_OK) == 0, "missing %s", preload);
    setenv("CHANQ_FAILWRITE_FLAG", flag_out, 1);
    setenv("LD_PRELOAD", preload, 1);
    setenv("ASAN_OPTIONS", "detect_stack_use_after_return=0:verify_asan_link_order=0", 1);
    struct harness *h = harness_start(args);
    unsetenv("LD_PRELOAD");
    ck_assert_msg(h, "chanqd did not start with the write-failure shim");
    *probe_out = probe;
    return h;
}

static struct harness *
start_with_failwrite(struct harness **probe_out, char *flag_out, size_t flag_size)
{
    return start_with_failwrite_args(probe_out, flag_out, flag_size, NULL);
}

START_TEST(a_full_disk_fails_the_request_and_serving_goes_on)
{
    char flag[400];
    struct harness *probe;
    struct harness *h = start_with_failwrite(&probe, flag, sizeof flag);
    int fd = dial(h);
    char *id = submit(fd, "disk", "1");
    FILE *f = fopen(flag, "w"); /* from now on every journal write fails: ENOSPC */
    fclose(f);
    json_t *r = reqf(fd, "{\"op\":\"submit\",\"queue\":\"disk\",\"payload\":2}");
    ck_assert_msg(r && !is_ok(r), "a submit was acknowledged while the disk was full");
    const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
    ck_assert_msg(msg && strstr(msg, "space"), "the error does not say why: %s", msg ? msg : "");
    json_decref(r);
    /* Reads go on; the refused job does not exist. */
    ck_assert_int_eq(queue_stat(fd, "disk", "depth"), 1);
    json_decref(req_ok(fd, "{\"op\":\"ping\"}"));
    unlink(flag); /* space is back */
    free(submit(fd, "disk", "3"));
    ck_assert_int_eq(queue_stat(fd, "disk", "depth"), 2);
    harness_close(fd);
    harness_kill9(h);
    unsetenv("CHANQ_FAILWRITE_FLAG");
    ck_assert_msg(harness_restart(h) == 0, "no restart after the full disk");
    fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "disk", "depth"), 2);
    harness_close(fd);
    free(id);
    ck_assert_int_eq(harness_stop(h), 0);
    ck_assert_int_eq(harness_stop(probe), 0);
}
END_TEST

static long long
dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    long long sum = 0;
    struct dirent *e;
    char path[1024];
    while (d && (e = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] != '.' && stat(path, &st) == 0)
            sum += st.st_size;
    }
    if (d)
        closedir(d);
    return sum;
}

/* A job goes to a waiting worker while its submit record is on its way to
 * the disk. When that write fails, the producer gets the error and the job
 * is taken back: the worker holding it gets a cancel event, its ack fails,
 * and the queue is as before. */
/* After an fsync fails and the failed batch cannot even be cut off again,
 * the journal refuses every write (the page cache can no longer be trusted)
 * and says so: /healthz 503 with the reason, the stats, systemd's STATUS.
 * A restart replays from disk and serves again. */
START_TEST(a_failing_disk_stops_writes_visibly_and_a_restart_recovers)
{
    char flag[400], fsync_flag[400], sock[400];
    struct harness *probe = harness_start(NULL);
    snprintf(fsync_flag, sizeof fsync_flag, "%s/eio", harness_dir(probe));
    snprintf(sock, sizeof sock, "%s/notify", harness_dir(probe));
    int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_msg(strlen(sock) < sizeof sa.sun_path, "socket path too long: %s", sock);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    ck_assert_msg(bind(nfd, (struct sockaddr *)&sa, sizeof sa) == 0, "cannot bind %s", sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("CHANQ_FAILFSYNC_FLAG", fsync_flag, 1);
    struct harness *extra_probe;
    const char *args[] = {"--http", "127.0.0.1:0", NULL};
    struct harness *h = start_with_failwrite_args(&extra_probe, flag, sizeof flag, args);
    unsetenv("NOTIFY_SOCKET");
    int port = http_port(h);
    int fd = dial(h);
    free(submit(fd, "disk", "1"));
    FILE *f = fopen(fsync_flag, "w"); /* every fsync fails with EIO from now on */
    fclose(f);
    json_t *r = reqf(fd, "{\"op\":\"submit\",\"queue\":\"disk\",\"payload\":2}");
    ck_assert_msg(r && !is_ok(r), "a submit was acknowledged although its fsync failed");
    ck_assert_str_eq(error_code(r), "internal");
    json_decref(r);
    unlink(fsync_flag); /* the disk answers again: the journal must not trust it */
    r = reqf(fd, "{\"op\":\"submit\",\"queue\":\"disk\",\"payload\":3}");
    ck_assert_msg(r && !is_ok(r), "the journal took writes again after an fsync failure");
    json_decref(r);
    char *health = http_get(port, "/healthz");
    ck_assert_msg(health && strstr(health, " 503 ") && strstr(health, "journal failed") &&
                      strstr(health, "restart"),
                  "/healthz does not say the journal failed: %s", health ? health : "");
    free(health);
    r = req_ok(fd, "{\"op\":\"stats\"}");
    const char *failed = json_string_value(
        json_object_get(json_object_get(json_object_get(r, "server"), "journal"), "failed"));
    ck_assert_msg(failed && strstr(failed, "Input/output error"),
                  "the stats do not show the journal as failed");
    json_decref(r);
    char *metrics = http_get(port, "/metrics");
    ck_assert_msg(metrics && strstr(metrics, "\nchanq_journal_failed 1\n"),
                  "/metrics does not show the journal as failed");
    free(metrics);
    ck_assert_msg(notify_says(nfd, "STATUS=journal failed", 5000),
                  "systemd was not told that the journal failed");
    harness_close(fd);
    /* The documented way back: a restart replays from disk. */
    harness_kill9(h);
    unsetenv("CHANQ_FAILWRITE_FLAG");
    unsetenv("CHANQ_FAILFSYNC_FLAG");
    ck_assert_msg(harness_restart(h) == 0, "no restart after the failing disk");
    fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "disk", "depth"), 1);
    free(submit(fd, "disk", "4"));
    ck_assert_int_eq(queue_stat(fd, "disk", "depth"), 2);
    harness_close(fd);
    health = http_get(http_port(h), "/healthz");
    ck_assert_msg(health && strstr(health, " 200 "), "/healthz after the restart: %s", health);
    free(health);
    close(nfd);
    ck_assert_int_eq(harness_stop(h), 0);
    ck_assert_int_eq(harness_stop(extra_probe), 0);
    ck_assert_int_eq(harness_stop(probe), 0);
}
END_TEST

START_TEST(a_job_whose_submit_was_not_written_is_taken_back_from_its_worker)
{
    char flag[400];
    struct harness *probe;
    struct harness *h = start_with_failwrite(&probe, flag, sizeof flag);
    int producer = dial(h), worker = dial(h);
    json_decref(req_ok(producer, "{\"op\":\"declare\",\"queue\":\"wd\"}"));
    ck_assert_int_eq(send_line(worker, "{\"op\":\"fetch\",\"queue\":\"wd\",\"timeout_ms\":5000}"), 0);
    usleep(100 * 1000); /* the fetch parks */
    FILE *f = fopen(flag, "w"); /* every journal write fails from now on */
    fclose(f);
    json_t *r = reqf(producer, "{\"op\":\"submit\",\"queue\":\"wd\",\"payload\":\"x\"}");
    ck_assert_msg(r && !is_ok(r), "a submit was acknowledged while the disk was full");
    json_decref(r);
    /* The worker got the job and its withdrawal; an event may come before
     * the answer it is about (docs/protocol.md), so in either order. */
    json_t *got = NULL, *ev = NULL;
    for (int i = 0; i < 2; i++) {
        char *line = recv_line_timeout(worker, 3000);
        ck_assert_msg(line, "the waiting worker got no %s", got ? "event" : "answer");
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j, "not JSON: %s", line);
        free(line);
        if (json_object_get(j, "event") && !ev)
            ev = j;
        else if (!got)
            got = j;
        else
            ck_abort_msg("two answers to one fetch");
    }
    ck_assert_msg(is_ok(got), "the fetch failed");
    json_t *jobs = json_object_get(got, "jobs");
    const char *id = json_string_value(json_object_get(json_array_get(jobs, 0), "id"));
    ck_assert_msg(id, "the fetch answer carries no job");
    ck_assert_msg(ev, "the worker holding the unwritten job got no event");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "cancel");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), id);
    json_decref(ev);
    unlink(flag); /* space is back */
    json_t *ack = reqf(worker, "{\"op\":\"ack\",\"id\":\"%s\"}", id);
    ck_assert_msg(ack && !is_ok(ack), "the withdrawn job could still be acked");
    json_decref(ack);
    json_decref(got);
    ck_assert_int_eq(queue_stat(producer, "wd", "depth"), 0);
    ck_assert_int_eq(queue_stat(producer, "wd", "reserved"), 0);
    harness_close(producer);
    harness_close(worker);
    unsetenv("CHANQ_FAILWRITE_FLAG");
    ck_assert_int_eq(harness_stop(h), 0);
    ck_assert_int_eq(harness_stop(probe), 0);
}
END_TEST

/* A pipeline of durable requests on one connection: answered in order with
 * their rid, and sharing fsyncs (the connection reads on while the first
 * answers wait for the journal), with an error and a ping in between. */
START_TEST(pipelined_durable_requests_share_fsyncs_and_keep_their_order)
{
    enum { N = 600 };
    struct harness *h = harness_start(NULL); /* --fsync always */
    ck_assert_msg(h, "chanqd did not start");
    int fd = dial(h);
    long long fsyncs_before = journal_stat(fd, "fsync_hist", "count");
    long long records_before = journal_stat(fd, NULL, "records");
    long long batches_before = journal_stat(fd, NULL, "batches");
    char *all = malloc(N * 128);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        if (i % 10 == 5)
            len += (size_t)sprintf(all + len, "{\"op\":\"ping\",\"rid\":%d}\n", i);
        else if (i % 10 == 7)
            len += (size_t)sprintf(all + len, "{\"op\":\"ack\",\"id\":\"1\",\"rid\":%d}\n", i);
        else
            len += (size_t)sprintf(all + len,
                                   "{\"op\":\"submit\",\"queue\":\"pd\",\"payload\":%d,\"rid\":%d}\n", i, i);
    }
    ck_assert_msg(write(fd, all, len) == (ssize_t)len, "could not send the pipeline");
    free(all);
    for (int i = 0; i < N; i++) {
        char *line = recv_line_timeout(fd, 10000);
        ck_assert_msg(line, "answer %d missing", i);
        json_t *r = json_loads(line, 0, NULL);
        ck_assert_msg(r && json_integer_value(json_object_get(r, "rid")) == i,
                      "answer %d out of order: %s", i, line);
        ck_assert_msg(i % 10 == 7 ? !is_ok(r) : is_ok(r), "answer %d has the wrong outcome: %s",
                      i, line);
        free(line);
        json_decref(r);
    }
    int submits = N - 2 * (N / 10);
    ck_assert_int_eq(queue_stat(fd, "pd", "depth"), submits);
    long long fsyncs = journal_stat(fd, "fsync_hist", "count") - fsyncs_before;
    ck_assert_msg(fsyncs > 0 && fsyncs <= submits / 4,
                  "%lld fsyncs for %d pipelined submits: they did not share batches", fsyncs,
                  submits);
    /* The stats say so too: a record per submit, far fewer batches. */
    long long records = journal_stat(fd, NULL, "records") - records_before;
    long long batches = journal_stat(fd, NULL, "batches") - batches_before;
    ck_assert_msg(records >= submits && batches > 0 && batches <= fsyncs,
                  "stats: %lld records in %lld batches (%lld fsyncs) for %d submits", records,
                  batches, fsyncs, submits);
    harness_close(fd);
    /* And they are durable. */
    harness_kill9(h);
    ck_assert_msg(harness_restart(h) == 0, "no restart");
    fd = dial(h);
    ck_assert_int_eq(queue_stat(fd, "pd", "depth"), submits);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(compaction_keeps_the_data_dir_bounded_over_many_cycles)
{
    const char *args[] = {"--fsync", "never", "--journal-segment", "1M", "--journal-compact",
                          "2M", "--keep-results", "100", NULL};
    struct harness *h = harness_start(args);
    ck_assert_msg(h, "chanqd did not start");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/data", harness_dir(h));
    int fd = dial(h);
    enum { BATCH = 500 };
    char *batch = malloc(BATCH * 128);
    long long peak = 0;
    for (int done = 0; done < COMPACT_CYCLES; done += BATCH) {
        size_t len = 0;
        for (int i = 0; i < BATCH; i++)
            len += (size_t)sprintf(batch + len,
                                   "{\"op\":\"submit\",\"queue\":\"cyc\",\"payload\":{\"n\":%d}}\n",
                                   done + i);
        ck_assert_msg(write(fd, batch, len) == (ssize_t)len, "write failed");
        for (int i = 0; i < BATCH; i++)
            json_decref(recv_json(fd));
        json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queues\":[\"cyc\"],\"count\":%d,\"timeout_ms\":1000}",
                           BATCH);
        json_t *jobs = json_object_get(r, "jobs");
        len = 0;
        for (size_t i = 0; i < json_array_size(jobs); i++)
            len += (size_t)sprintf(batch + len, "{\"op\":\"ack\",\"id\":\"%s\"}\n",
                                   json_string_value(json_object_get(json_array_get(jobs, i), "id")));
        size_t n = json_array_size(jobs);
        json_decref(r);
        ck_assert_msg(write(fd, batch, len) == (ssize_t)len, "write failed");
        for (size_t i = 0; i < n; i++)
            json_decref(recv_json(fd));
        long long now = dir_bytes(dir);
        if (now > peak)
            peak = now;
    }
    free(batch);
    ck_assert_int_eq(queue_stat(fd, "cyc", "acked"), COMPACT_CYCLES);
    fprintf(stderr, "compaction: %d cycles, data dir peaked at %lld KiB, ends at %lld KiB\n",
            COMPACT_CYCLES, peak / 1024, dir_bytes(dir) / 1024);
    ck_assert_msg(peak < 8 * 1024 * 1024, "data dir grew to %lld bytes", peak);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
crash_suite(void)
{
    Suite *s = suite_create("daemon_crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kill_9_under_load_loses_no_acknowledged_job_and_revives_no_acked_one);
    tcase_add_test(tc, a_torn_tail_is_cut_off_with_a_log_line);
    tcase_add_test(tc, a_preallocated_segment_ends_at_its_last_record_and_is_trimmed_on_restart);
    tcase_add_test(tc, a_flipped_byte_stops_start_up_and_repair_keeps_every_record_that_checks);
    tcase_add_test(tc, a_flipped_header_bit_refuses_start_up_and_repair_keeps_every_job);
    tcase_add_test(tc, a_full_disk_fails_the_request_and_serving_goes_on);
    tcase_add_test(tc, a_failing_disk_stops_writes_visibly_and_a_restart_recovers);
    tcase_add_test(tc, a_job_whose_submit_was_not_written_is_taken_back_from_its_worker);
    tcase_add_test(tc, pipelined_durable_requests_share_fsyncs_and_keep_their_order);
    tcase_add_test(tc, compaction_keeps_the_data_dir_bounded_over_many_cycles);
    suite_add_tcase(s, tc);
    return s;
}
