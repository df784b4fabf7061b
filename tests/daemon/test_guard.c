/* Clients that hold connections without using them, and token guessers:
 * the TLS handshake has a deadline counted from the accept (a byte at a
 * time does not extend it); idle-timeout closes connections that wait on
 * nothing and hold no job; max-connections-per-address keeps one address
 * from taking every slot; failed hellos are slow, end the connection after
 * three, are logged per address with a count, and de-authenticate. */
#include "chanq_config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clients/chanq.h"
#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* ---- helpers ---- */

/* A TCP connection to port from the local address src ("127.0.0.2"). */
static int
dial_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    ck_assert_msg(bind(fd, (struct sockaddr *)&me, sizeof me) == 0, "bind %s: %s", src,
                  strerror(errno));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&to, sizeof to) == 0, "connect from %s: %s", src,
                  strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Whether the peer closed fd (EOF or reset) without sending anything. */
static bool
peer_closed_now(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Ms until the server closes fd (sending nothing first), or -1 when it
 * sends something or is still open after timeout_ms. */
static int64_t
closed_after(int fd, int timeout_ms)
{
    int64_t start = harness_now_ms();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) <= 0 || !peer_closed_now(fd))
        return -1;
    return harness_now_ms() - start;
}

/* Lines of the daemon's log that contain needle. */
static int
log_count(struct harness *h, const char *needle)
{
    char *log = harness_log(h);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* ---- TLS handshake deadline ---- */

/* A CA and a server certificate for 127.0.0.1 in dir (ca.crt, srv.*). */
static void
make_pki(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.crt -days 2 -subj '/CN=test CA' && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out srv.key && "
             "openssl req -new -key srv.key -subj /CN=srv -out srv.csr && "
             "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > srv.ext && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile srv.ext -out srv.crt) 2>/dev/null",
             dir);
    ck_assert_msg(system(cmd) == 0, "cannot make test certificates");
}

static int
tls_port(struct harness *h)
{
    static const char tag[] = "listening on tls:127.0.0.1:";
    char *log = harness_log(h);
    const char *p = strstr(log, tag);
    int port = p ? atoi(p + strlen(tag)) : -1;
    free(log);
    ck_assert_msg(port > 0, "no TLS listener in the log");
    return port;
}

static struct chanq_conn *
tls_client(int port, const char *dir)
{
    char addr[64], ca[512];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    struct chanq_connect_opts o = {
        .tls = true, .tls_ca = ca, .connect_timeout_ms = 3000, .read_timeout_ms = 3000};
    return chanq_connect(addr, &o, NULL);
}

#define TRICKLERS 4
#define HANDSHAKE_MS 10000

START_TEST(tls_handshake_deadline_counts_from_the_accept)
{
    if (!tls_available()) {
        fprintf(stderr, "SKIP: no TLS build or no openssl command\n");
        return;
    }
    char dir[] = "/tmp/chanq-guard-XXXXXX", cert[600], key[600], cmd[700];
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp failed");
    make_pki(dir);
    snprintf(cert, sizeof cert, "%s/srv.crt", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    /* Every slot: the bystander and the tricklers. */
    const char *args[] = {"--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
                          "--max-connections", "5", NULL};
    struct harness *h = start_daemon(args);
    int port = tls_port(h);
    struct chanq_conn *bystander = tls_client(port, dir);
    ck_assert_msg(bystander && chanq_ping(bystander) == 0, "the bystander cannot ping");

    /* A ClientHello record header announcing 512 bytes, then its body, one
     * byte a second: the handshake would take minutes. */
    static const char hello[] = "\x16\x03\x01\x02\x00";
    int fd[TRICKLERS];
    int64_t start = harness_now_ms(), closed_at[TRICKLERS];
    for (int i = 0; i < TRICKLERS; i++) {
        fd[i] = dial_from(port, "127.0.0.1");
        closed_at[i] = -1;
    }
    int64_t worst_ping = 0;
    int open = TRICKLERS;
    for (int sent = 0; open > 0 && harness_now_ms() - start < HANDSHAKE_MS + 6000;) {
        for (int i = 0; i < TRICKLERS; i++) {
            if (closed_at[i] >= 0)
                continue;
            if (peer_closed_now(fd[i])) {
                closed_at[i] = harness_now_ms() - start;
                open--;
            } else if (harness_now_ms() - start >= sent * 1000) {
                char b = sent < 5 ? hello[sent] : 0;
                send(fd[i], &b, 1, MSG_NOSIGNAL);
            }
        }
        if (harness_now_ms() - start >= sent * 1000)
            sent++;
        int64_t t = harness_now_ms();
        ck_assert_msg(chanq_ping(bystander) == 0, "the bystander's ping failed");
        if (harness_now_ms() - t > worst_ping)
            worst_ping = harness_now_ms() - t;
        usleep(50 * 1000);
    }
    for (int i = 0; i < TRICKLERS; i++) {
        fprintf(stderr, "trickler %d closed after %lld ms\n", i, (long long)closed_at[i]);
        ck_assert_msg(closed_at[i] >= HANDSHAKE_MS - 500 && closed_at[i] <= HANDSHAKE_MS + 2500,
                      "a trickling handshake was closed after %lld ms, want about %d",
                      (long long)closed_at[i], HANDSHAKE_MS);
        close(fd[i]);
    }
    fprintf(stderr, "bystander's slowest TLS ping meanwhile: %lld ms\n", (long long)worst_ping);
    ck_assert_msg(worst_ping < 1000, "the bystander's ping took %lld ms", (long long)worst_ping);
    /* The slots are free again: a valid client is served at once. */
    int64_t t = harness_now_ms();
    struct chanq_conn *late = tls_client(port, dir);
    ck_assert_msg(late && chanq_ping(late) == 0, "a valid TLS client was not served");
    fprintf(stderr, "a new TLS client connected and pinged in %lld ms\n",
            (long long)(harness_now_ms() - t));
    chanq_conn_free(late);
    chanq_conn_free(bystander);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_msg(system(cmd) == 0, "cannot remove %s", dir);
}
END_TEST

/* ---- idle-timeout ---- */

#define IDLE_MS 300

START_TEST(idle_connection_is_closed_after_the_timeout)
{
    const char *args[] = {"--idle-timeout", "300", NULL};
    struct harness *h = start_daemon(args);
    int silent = dial(h), used = dial(h);
    int64_t start = harness_now_ms();
    json_decref(req_ok(used, "{\"op\":\"ping\"}"));
    int64_t a = closed_after(silent, 5000);
    a = a < 0 ? -1 : harness_now_ms() - start;
    int64_t b = closed_after(used, 5000);
    b = b < 0 ? -1 : harness_now_ms() - start;
    fprintf(stderr, "idle connections closed after %lld and %lld ms (idle-timeout %d)\n",
            (long long)a, (long long)b, IDLE_MS);
    ck_assert_msg(a >= IDLE_MS - 50 && a < 3 * IDLE_MS, "a silent connection closed after %lld ms",
                  (long long)a);
    ck_assert_msg(b >= 0 && b < 3 * IDLE_MS, "an idle connection closed after %lld ms",
                  (long long)b);
    harness_close(silent);
    harness_close(used);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}
END_TEST

START_TEST(parked_fetch_and_reserved_job_are_not_idle)
{
    const char *args[] = {"--idle-timeout", "300", NULL};
    struct harness *h = start_daemon(args);
    int fetcher = dial(h), worker = dial(h);
    send_line(fetcher, "{\"op\":\"fetch\",\"queue\":\"empty\",\"timeout_ms\":1500}");
    free(submit(worker, "q", "1"));
    char *id = fetch_one(worker, "q", 1000);
    ck_assert_msg(id != NULL, "no job fetched");
    /* Five idle timeouts later both are still there. */
    json_t *r = recv_json(fetcher);
    ck_assert_msg(is_ok(r), "the parked fetch was not answered");
    json_decref(r);
    ck_assert_msg(no_data_within(worker, 0) && !peer_closed_now(worker),
                  "a connection holding a job was closed");
    json_decref(req_ok(worker, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
    /* Answered and holding nothing: now they are idle. */
    ck_assert_msg(closed_after(fetcher, 3000) >= 0, "the fetcher was not closed once idle");
    ck_assert_msg(closed_after(worker, 3000) >= 0, "the worker was not closed once idle");
    free(id);
    harness_close(fetcher);
    harness_close(worker);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}
END_TEST

/* ---- max-connections-per-address ---- */

START_TEST(one_address_cannot_take_every_connection)
{
    const char *args[] = {"--max-connections-per-address", "2", NULL};
    struct harness *h = start_daemon(args);
    int port = harness_port(h);
    int a1 = dial_from(port, "127.0.0.2"), a2 = dial_from(port, "127.0.0.2");
    json_decref(req_ok(a1, "{\"op\":\"ping\"}"));
    json_decref(req_ok(a2, "{\"op\":\"ping\"}"));
    int a3 = dial_from(port, "127.0.0.2");
    json_t *r = recv_json(a3);
    ck_assert_msg(r && strcmp(error_code(r), "limit") == 0, "a third connection from 127.0.0.2 "
                  "was not refused with limit");
    json_decref(r);
    ck_assert_msg(closed_after(a3, 2000) >= 0, "the refused connection stays open");
    int b = dial_from(port, "127.0.0.3");
    json_decref(req_ok(b, "{\"op\":\"ping\"}"));
    /* A slot given back is free again for its address. */
    harness_close(a1);
    usleep(100 * 1000);
    int a4 = dial_from(port, "127.0.0.2");
    json_decref(req_ok(a4, "{\"op\":\"ping\"}"));
    usleep(1500 * 1000); /* the per-address report comes with the next tick */
    ck_assert_int_eq(log_count(h, "client 127.0.0.2: 1 connections refused"), 1);
    int fds[] = {a2, a3, b, a4};
    for (size_t i = 0; i < 4; i++) {
        harness_close(fds[i]);
    }
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
}
END_TEST

/* ---- failed hellos ---- */

/* chanqd with a token file holding "right". */
static struct harness *
start_with_token(char *path)
{
    int tfd = mkstemp(path);
    ck_assert_msg(tfd >= 0, "mkstemp failed");
    ck_assert_msg(write(tfd, "right\n", 6) == 6, "cannot write the token file");
    close(tfd);
    const char *args[] = {"--token-file", path, NULL};
    return start_daemon(args);
}

#define WRONG "{\"op\":\"hello\",\"token\":\"wrong\"}"

START_TEST(guessing_on_one_connection_is_slow_and_ends_it)
{
    char path[] = "/tmp/chanq-token-XXXXXX";
    struct harness *h = start_with_token(path);
    int fd = dial(h);
    int64_t start = harness_now_ms();
    for (int i = 0; i < 10; i++)
        send_line(fd, WRONG);
    int answers = 0;
    json_t *r;
    while ((r = recv_json(fd)) != NULL) {
        ck_assert_str_eq(error_code(r), "unauthorized");
        json_decref(r);
        answers++;
    }
    int64_t ms = harness_now_ms() - start;
    double rate = answers * 1000.0 / (double)ms;
    fprintf(stderr, "one connection: %d guesses in %lld ms (%.1f/s), then closed\n", answers,
            (long long)ms, rate);
    ck_assert_int_eq(answers, 3);
    ck_assert_msg(ms >= 600 && rate < 10, "%d guesses in %lld ms", answers, (long long)ms);
    harness_close(fd);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
    unlink(path);
}
END_TEST

#define GUESSERS 20
#define GUESS_MS 4000

START_TEST(guessing_over_many_connections_from_one_address_is_bounded)
{
    char path[] = "/tmp/chanq-token-XXXXXX";
    struct harness *h = start_with_token(path);
    int fd[GUESSERS];
    long checked = 0, refused = 0, connections = 0;
    for (int i = 0; i < GUESSERS; i++, connections++) {
        fd[i] = dial(h);
        send_line(fd[i], WRONG);
    }
    int64_t start = harness_now_ms();
    while (harness_now_ms() - start < GUESS_MS) {
        struct pollfd p[GUESSERS];
        for (int i = 0; i < GUESSERS; i++)
            p[i] = (struct pollfd){.fd = fd[i], .events = POLLIN};
        if (poll(p, GUESSERS, 100) <= 0)
            continue;
        for (int i = 0; i < GUESSERS; i++) {
            if (!p[i].revents)
                continue;
            char *line = recv_line_timeout(fd[i], 50);
            json_t *r = line ? json_loads(line, 0, NULL) : NULL;
            free(line);
            if (r) { /* an answer: guess again on the same connection */
                strcmp(error_code(r), "limit") == 0 ? refused++ : checked++;
                json_decref(r);
                send_line(fd[i], WRONG);
                continue;
            }
            harness_close(fd[i]); /* closed: a new connection, a new guess */
            fd[i] = dial(h);
            connections++;
            send_line(fd[i], WRONG);
        }
    }
    double rate = checked * 1000.0 / GUESS_MS;
    fprintf(stderr, "%d connections from one address: %ld tokens checked in %d ms (%.1f/s), "
            "%ld hellos refused unchecked, %ld connections\n",
            GUESSERS, checked, GUESS_MS, rate, refused, connections);
    ck_assert_msg(rate < 25, "%.1f guesses/s from one address", rate);
    for (int i = 0; i < GUESSERS; i++)
        harness_close(fd[i]);
    /* Reported per address, with a count, at most once per 10 s. */
    usleep(1500 * 1000);
    int lines = log_count(h, "client 127.0.0.1: ");
    fprintf(stderr, "log lines about it: %d\n", lines);
    ck_assert_msg(lines >= 1 && lines <= 2, "%d log lines about failed hellos", lines);
    ck_assert_msg(log_count(h, " failed hellos (") == 1 || log_count(h, " failed hellos in") >= 1,
                  "no count of failed hellos in the log");
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
    unlink(path);
}
END_TEST

START_TEST(a_wrong_hello_after_a_good_one_deauthenticates)
{
    char path[] = "/tmp/chanq-token-XXXXXX";
    struct harness *h = start_with_token(path);
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"hello\",\"token\":\"right\"}"));
    json_decref(req_ok(fd, "{\"op\":\"ping\"}"));
    req_err(fd, "unauthorized", WRONG);
    req_err(fd, "unauthorized", "{\"op\":\"ping\"}");
    json_decref(req_ok(fd, "{\"op\":\"hello\",\"token\":\"right\"}"));
    json_decref(req_ok(fd, "{\"op\":\"ping\"}"));
    harness_close(fd);
    ck_assert_msg(harness_stop(h) == 0, "chanqd did not stop cleanly");
    unlink(path);
}
END_TEST

Suite *
guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("guard");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tls_handshake_deadline_counts_from_the_accept);
    tcase_add_test(tc, idle_connection_is_closed_after_the_timeout);
    tcase_add_test(tc, parked_fetch_and_reserved_job_are_not_idle);
    tcase_add_test(tc, one_address_cannot_take_every_connection);
    tcase_add_test(tc, guessing_on_one_connection_is_slow_and_ends_it);
    tcase_add_test(tc, guessing_over_many_connections_from_one_address_is_bounded);
    tcase_add_test(tc, a_wrong_hello_after_a_good_one_deauthenticates);
    suite_add_tcase(s, tc);
    return s;
}
