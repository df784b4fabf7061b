/* daemon/sd.c: notify messages reach a socket named by NOTIFY_SOCKET (a
 * path or the abstract namespace), nothing happens without it, and the
 * watchdog pings at half of WATCHDOG_USEC from the loop. */
#include "chanq_config.h"

#include <check.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/sd.h"
#include "tests/ops/unit_suites.h"

/* Binds a datagram socket for name (a path, or "@..." for the abstract
 * namespace) and points NOTIFY_SOCKET at it. Returns the fd. */
static int
notify_socket(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        unlink(name);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, salen) == 0, "cannot bind %s", name);
    setenv("NOTIFY_SOCKET", name, 1);
    return fd;
}

/* The next datagram within timeout_ms, as a static string ("" if none). */
static const char *
next_message(int fd, int timeout_ms)
{
    static char buf[1024];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    buf[0] = '\0';
    if (poll(&p, 1, timeout_ms) == 1) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
    }
    return buf;
}

START_TEST(messages_reach_a_path_socket_in_order)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/chanq-notify-%d", (int)getpid());
    int fd = notify_socket(path);
    ck_assert_int_eq(sd_notify_ready(), 0);
    ck_assert_int_eq(sd_notify_status("serving %d queues", 3), 0);
    ck_assert_int_eq(sd_notify_reloading(), 0);
    ck_assert_int_eq(sd_notify_stopping(), 0);
    ck_assert_str_eq(next_message(fd, 1000), "READY=1");
    ck_assert_str_eq(next_message(fd, 1000), "STATUS=serving 3 queues");
    const char *m = next_message(fd, 1000);
    ck_assert_msg(strncmp(m, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "reloading: '%s'", m);
    ck_assert_str_eq(next_message(fd, 1000), "STOPPING=1");
    close(fd);
    unlink(path);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(messages_reach_an_abstract_socket)
{
    char name[64];
    snprintf(name, sizeof name, "@chanq-notify-test-%d", (int)getpid());
    int fd = notify_socket(name);
    ck_assert_int_eq(sd_notify_ready(), 0);
    ck_assert_str_eq(next_message(fd, 1000), "READY=1");
    /* A status line cannot smuggle in another assignment. */
    sd_notify_status("one\nREADY=1");
    ck_assert_str_eq(next_message(fd, 1000), "STATUS=one");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(without_notify_socket_nothing_is_sent)
{
    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(sd_notify_ready(), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_msg(sd_notify_ready() < 0, "a relative NOTIFY_SOCKET was used");
    setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
    ck_assert_msg(sd_notify_ready() < 0, "sending to a missing socket reported success");
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

static void
count_ping(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n == 10 && memcmp(buf, "WATCHDOG=1", 10) == 0)
        (*(int *)arg)++;
}

START_TEST(watchdog_pings_at_half_the_interval)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/chanq-wd-%d", (int)getpid());
    int fd = notify_socket(path);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_USEC", "100000", 1); /* pings every 50 ms */
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_msg(sd_watchdog_usec() == 100000, "WATCHDOG_USEC not read");
    struct event_base *base = event_base_new();
    struct sd_watchdog *wd = sd_watchdog_new(base);
    ck_assert_msg(wd, "no watchdog although WATCHDOG_USEC is set");
    /* Count the pings on the same loop, so the socket queue never fills. */
    int pings = 0;
    struct event *rd = event_new(base, fd, EV_READ | EV_PERSIST, count_ping, &pings);
    event_add(rd, NULL);
    struct timeval run = {1, 0};
    event_base_loopexit(base, &run);
    event_base_dispatch(base);
    event_free(rd);
    /* One at start, then every 50 ms for 1 s: about 21. A loaded machine
     * may delay timers (fewer pings), but never make them more frequent. */
    ck_assert_msg(pings >= 4 && pings <= 22, "%d pings in 1 s", pings);
    sd_watchdog_free(wd);

    setenv("WATCHDOG_PID", "1", 1);
    ck_assert_msg(!sd_watchdog_new(base), "a watchdog meant for pid 1 was started");
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    ck_assert_msg(!sd_watchdog_new(base), "a watchdog started without WATCHDOG_USEC");
    event_base_free(base);
    close(fd);
    unlink(path);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

Suite *
sd_suite(void)
{
    Suite *s = suite_create("sd");
    TCase *tc = tcase_create("notify");
    tcase_add_test(tc, messages_reach_a_path_socket_in_order);
    tcase_add_test(tc, messages_reach_an_abstract_socket);
    tcase_add_test(tc, without_notify_socket_nothing_is_sent);
    tcase_add_test(tc, watchdog_pings_at_half_the_interval);
    suite_add_tcase(s, tc);
    return s;
}
