/* Clients that hold connections without using them: the TLS handshake
 * has a deadline counted from the accept (a byte at a time does not
 * extend it). */
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

/* ---- TLS handshake deadline ---- */

static bool
tls_available(void)
{
#ifdef CHANQ_TLS
    return system("openssl version >/dev/null 2>&1") == 0;
#else
    return false;
#endif
}

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

Suite *
guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("guard");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tls_handshake_deadline_counts_from_the_accept);
    suite_add_tcase(s, tc);
    return s;
}
