/* What a crowd of clients must not do to chanqd: make it spin, flood its
 * log, or hold it with connections past its limits. */
#include "chanq_config.h"

#include <check.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* Lines of the daemon's log that contain needle. */
static int
log_lines_with(const struct harness *h, const char *needle)
{
    char *log = harness_log(h);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* The daemon's CPU time so far (user + system), in ms. */
static long long
cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "cannot read %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after "(comm)": state is field 3, utime 14, stime 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    ck_assert_msg(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                              &ut, &st) == 2,
                  "cannot parse %s", path);
    return (long long)(ut + st) * 1000 / sysconf(_SC_CLK_TCK);
}

/* How many descriptors pid has open below limit. */
static int
fds_below(pid_t pid, int limit)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d, "cannot list %s", path);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.' && atoi(e->d_name) < limit;
    closedir(d);
    return n;
}

static int
count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* True when the server closed fd (end of stream or reset, after whatever
 * it said first) within timeout_ms. */
static bool
closed_by_server(int fd, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    char buf[512];
    for (;;) {
        int left = (int)(until - harness_now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) != 1)
            return false;
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
    }
}

/* A new client gets its ping answered within a few seconds. */
static bool
serves_again(struct harness *h)
{
    for (int i = 0; i < 10; i++) {
        int fd = dial(h);
        send_line(fd, "{\"op\":\"ping\"}");
        char *line = recv_line_timeout(fd, 500);
        bool ok = line && strcmp(line, "{\"ok\":true}") == 0;
        free(line);
        harness_close(fd);
        if (ok)
            return true;
    }
    return false;
}

#define NOFILE 32
#define EXTRA_CONNS 64
#define WINDOW_MS 2000

START_TEST(out_of_descriptors_neither_spins_nor_floods_the_log)
{
    struct harness *h = start_daemon(NULL);
    pid_t pid = harness_pid(h);
    /* Room for a few clients, then EMFILE on every accept (descriptors
     * already open above the limit stay usable). */
    int free_slots = NOFILE - fds_below(pid, NOFILE);
    ck_assert_msg(free_slots > 0 && free_slots < EXTRA_CONNS / 2, "%d free descriptors",
                  free_slots);
    struct rlimit lim = {.rlim_cur = NOFILE, .rlim_max = NOFILE};
    ck_assert_msg(prlimit(pid, RLIMIT_NOFILE, &lim, NULL) == 0, "prlimit: %s", strerror(errno));
    int fds[EXTRA_CONNS + WINDOW_MS / 100 * 4];
    int n = 0;
    while (n < EXTRA_CONNS)
        fds[n++] = dial(h);
    usleep(200 * 1000); /* the daemon meets EMFILE */
    char *log = harness_log(h);
    int lines_before = count_char(log, '\n');
    free(log);
    long long cpu_before = cpu_ms(pid);
    /* Keep new clients coming while measuring. */
    for (int64_t end = harness_now_ms() + WINDOW_MS; harness_now_ms() < end; usleep(100 * 1000))
        for (int i = 0; i < 4 && n < (int)(sizeof fds / sizeof fds[0]); i++)
            fds[n++] = dial(h);
    long long cpu = cpu_ms(pid) - cpu_before;
    log = harness_log(h);
    int lines = count_char(log, '\n') - lines_before;
    bool reported = strstr(log, "out of file descriptors; ") != NULL &&
                    strstr(log, "connections refused in the last second") != NULL;
    free(log);
    ck_assert_msg(cpu < WINDOW_MS / 5, "out of descriptors, chanqd used %lld ms of CPU in %d ms",
                  cpu, WINDOW_MS);
    ck_assert_msg(lines <= 2 * WINDOW_MS / 1000 + 2, "%d log lines in %d ms", lines, WINDOW_MS);
    ck_assert_msg(reported, "the refusals were not reported");
    int shed = 0;
    for (int i = 0; i < n; i++)
        shed += closed_by_server(fds[i], 10);
    ck_assert_msg(shed > 0, "no waiting connection was closed: they sit in the backlog");
    for (int i = 0; i < n; i++)
        harness_close(fds[i]);
    ck_assert_msg(serves_again(h), "descriptors back, a new client is not served");
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

static int
dial_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0,
                  "cannot connect to port %d", port);
    return fd;
}

/* GET /healthz on a new connection answers 200. */
static bool
http_healthy(int port)
{
    int fd = dial_port(port);
    send_line(fd, "GET /healthz HTTP/1.0\r\n\r");
    char *line = recv_line_timeout(fd, 2000);
    bool ok = line && strstr(line, " 200 ");
    free(line);
    harness_close(fd);
    return ok;
}

#define HTTP_CAP 64 /* HTTP_MAX_CONNECTIONS in daemon/http.c */
#define HTTP_EXTRA 16

START_TEST(idle_http_connections_are_capped)
{
    struct harness *h = start_daemon((const char *const[]){"--http", "127.0.0.1:0", NULL});
    int port = http_port(h);
    int fds[HTTP_CAP + HTTP_EXTRA];
    for (int i = 0; i < HTTP_CAP + HTTP_EXTRA; i++)
        fds[i] = dial_port(port);
    int closed = 0;
    for (int i = 0; i < HTTP_CAP + HTTP_EXTRA; i++)
        closed += closed_by_server(fds[i], i < HTTP_CAP ? 50 : 2000);
    ck_assert_msg(closed == HTTP_EXTRA, "%d of %d idle http connections were closed, want %d",
                  closed, HTTP_CAP + HTTP_EXTRA, HTTP_EXTRA);
    ck_assert_msg(log_lines_with(h, "http: refused a connection") <= 2,
                  "every refusal was logged");
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"ping\"}"));
    harness_close(fd);
    for (int i = 0; i < HTTP_CAP + HTTP_EXTRA; i++)
        harness_close(fds[i]);
    bool healthy = false;
    for (int i = 0; i < 20 && !healthy; i++)
        healthy = http_healthy(port);
    ck_assert_msg(healthy, "the http endpoint does not serve once the idle clients left");
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(refused_connections_are_logged_once_a_second)
{
    struct harness *h = start_daemon((const char *const[]){"--max-connections", "1", NULL});
    int held = dial(h);
    json_decref(req_ok(held, "{\"op\":\"ping\"}"));
    int64_t start = harness_now_ms();
    for (int i = 0; i < 500; i++) {
        int fd = dial(h);
        char *line = recv_line(fd); /* the limit error: the refusal is done */
        ck_assert_msg(line && strstr(line, "\"limit\""), "connection %d was not refused", i);
        free(line);
        harness_close(fd);
    }
    int64_t secs = (harness_now_ms() - start) / 1000;
    int lines = log_lines_with(h, "refused a connection");
    ck_assert_msg(lines >= 1, "the refusals were not logged at all");
    ck_assert_msg(lines <= secs + 2, "500 refusals in %llds gave %d log lines", (long long)secs,
                  lines);
    harness_close(held);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

static const char open_warning[] = "listening on a non-loopback address (0.0.0.0:";

/* 0.0.0.0 is only bound for the start-up log: nothing connects to it. */
START_TEST(non_loopback_listen_without_token_is_warned_about)
{
    struct harness *h = start_daemon((const char *const[]){"--listen", "0.0.0.0:0", NULL});
    char *log = harness_log(h);
    ck_assert_msg(strstr(log, open_warning) &&
                      strstr(log, "without --token-file: anyone who can reach it can submit "
                                  "and read jobs"),
                  "no warning about 0.0.0.0 without a token: %s", log);
    ck_assert_msg(!strstr(log, "non-loopback address (127.0.0.1:"), "loopback warned about");
    free(log);
    ck_assert_int_eq(harness_stop(h), 0);

    char tokens[] = "/tmp/chanq-tokens-XXXXXX";
    int tfd = mkstemp(tokens);
    ck_assert_msg(tfd >= 0 && write(tfd, "s3cret\n", 7) == 7, "cannot write a token file");
    close(tfd);
    h = start_daemon(
        (const char *const[]){"--listen", "0.0.0.0:0", "--token-file", tokens, NULL});
    ck_assert_msg(log_lines_with(h, "non-loopback") == 0, "warned despite --token-file");
    ck_assert_int_eq(harness_stop(h), 0);
    unlink(tokens);

    h = start_daemon(NULL);
    ck_assert_msg(log_lines_with(h, "non-loopback") == 0, "warned about the default listener");
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, refused_connections_are_logged_once_a_second);
    tcase_add_test(tc, out_of_descriptors_neither_spins_nor_floods_the_log);
    tcase_add_test(tc, idle_http_connections_are_capped);
    tcase_add_test(tc, non_loopback_listen_without_token_is_warned_about);
    suite_add_tcase(s, tc);
    return s;
}
